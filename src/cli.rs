//! The command line (DESIGN.md "Command line"). The only module that prints to stdout and picks
//! exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::clock;
use crate::config::{self, Config, LogFormat, UsageError};
use crate::daemon;
use crate::ledger::{Enqueued, ListFilter, NewSession, Session, Status};
use crate::simulator::{self, Sim};

/// payrecon: reconciles payment sessions whose outcome is unknown.
#[derive(Debug, Parser)]
#[command(name = "payrecon", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon: reconcile on the cron schedule until SIGTERM/SIGINT
    Run,
    /// One pass over the sessions due now, then exit
    Once {
        /// Every PENDING session, ignoring its schedule (transitions get source `backfill`)
        #[arg(long)]
        all: bool,
    },
    /// Enqueue one session
    Add {
        #[arg(long)]
        provider: String,
        #[arg(long = "session-id")]
        session_id: String,
        #[arg(long)]
        reference: Option<String>,
        /// Decimal in major units, such as 100.00
        #[arg(long)]
        amount: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// RFC 3339; defaults to now
        #[arg(long = "created-at")]
        created_at: Option<String>,
    },
    /// Bulk enqueue from CSV (header: provider,session_id,reference,amount,currency,created_at)
    Import { file: PathBuf },
    /// List sessions, newest first
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One session with its transitions and events
    Show {
        session_id: String,
        /// Needed when two providers have the same session id
        #[arg(long)]
        provider: Option<String>,
    },
    /// Sessions by provider × status, events waiting and dead
    Stats,
    /// Validate the config and report problems; exit 2 on any
    CheckConfig,
    /// Run the provider simulator
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: String,
        /// Require `Authorization: Bearer <value of this variable>` on every call
        #[arg(long = "api-key-env", value_name = "VAR")]
        api_key_env: Option<String>,
    },
    /// The embedded demo: simulator + temporary ledger + sample sessions, reconciled to the end
    Demo,
}

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("payrecon: {e:#}");
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs go to stderr; `RUST_LOG` filters (default `default_level`).
fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    let cfg = Config::load(&path)?;
    init_logging(cfg.log_format, "info");
    Ok(cfg)
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo => {
            init_logging(LogFormat::Text, "error");
            let out = runtime()?.block_on(crate::demo::run())?;
            print!("{out}");
        }
        Command::Simulate {
            listen,
            api_key_env,
        } => {
            init_logging(LogFormat::Text, "info");
            let key = match api_key_env {
                None => None,
                Some(var) => Some(config::process_env(var).ok_or_else(|| {
                    UsageError::new(format!(
                        "--api-key-env: environment variable {var} is not set"
                    ))
                })?),
            };
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| UsageError::new(format!("--listen {listen}: cannot bind: {e}")))?;
                let addr = listener.local_addr()?;
                println!("simulator listening on http://{addr}");
                println!("  create: POST http://{addr}/api/external/payment (description \"sim:BEHAVIOUR\")");
                println!("  status: GET  http://{addr}/api/external/session/v1/{{sessionId}}");
                simulator::serve(listener, Sim::new(key), daemon::shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::CheckConfig => {
            let cfg = load(&cli)?;
            print!("{}", describe(&cfg));
            println!("config OK");
        }
        Command::Run => {
            let cfg = load(&cli)?;
            runtime()?.block_on(daemon::run(&cfg))?;
        }
        Command::Once { all } => {
            let cfg = load(&cli)?;
            let report = runtime()?.block_on(daemon::once(&cfg, *all))?;
            println!("{}", report.summary());
            if !report.refused.is_empty() {
                anyhow::bail!(
                    "credentials refused by {}; their sessions were not checked",
                    report.refused.join(", ")
                );
            }
            if report.ledger_errors > 0 {
                anyhow::bail!(
                    "{} outcomes could not be recorded; they will be checked again",
                    report.ledger_errors
                );
            }
        }
        Command::Add {
            provider,
            session_id,
            reference,
            amount,
            currency,
            created_at,
        } => {
            let cfg = load(&cli)?;
            if cfg.provider(provider).is_none() {
                return Err(UsageError::new(format!(
                    "--provider: {provider:?} is not configured (configured: {})",
                    cfg.providers
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
            }
            let created_at = match created_at {
                None => None,
                Some(t) => Some(clock::parse(t).ok_or_else(|| {
                    UsageError::new(format!(
                        "--created-at: {t:?} is not an RFC 3339 time such as 2026-11-24T10:00:00Z"
                    ))
                })?),
            };
            let s = NewSession {
                provider: provider.clone(),
                session_id: session_id.clone(),
                reference: reference.clone(),
                amount: amount.clone(),
                currency: currency.clone(),
                created_at,
            };
            s.validate().map_err(|e| {
                UsageError::new(format!(
                    "--{}",
                    crate::import::field_error(&e).replace('_', "-")
                ))
            })?;
            let ledger = daemon::open_ledger(&cfg)?;
            match ledger.enqueue(&s)? {
                Enqueued::Added => println!("added {provider} {session_id}, due now"),
                Enqueued::AlreadyPresent => {
                    println!("already present: {provider} {session_id} (left unchanged)")
                }
            }
        }
        Command::Import { file } => {
            let cfg = load(&cli)?;
            let ledger = daemon::open_ledger(&cfg)?;
            let started = std::time::Instant::now();
            let out = crate::import::run(&cfg, &ledger, file)?;
            let secs = started.elapsed().as_secs_f64();
            let rows = out.added + out.already_present;
            println!(
                "imported {}: {} added, {} already present, {} rows in {:.2}s ({:.0} rows/s)",
                file.display(),
                out.added,
                out.already_present,
                rows,
                secs,
                rows as f64 / secs.max(1e-9)
            );
        }
        Command::List {
            status,
            provider,
            limit,
        } => {
            let cfg = load(&cli)?;
            let status = status
                .as_deref()
                .map(|s| {
                    s.parse::<Status>()
                        .map_err(|e| UsageError::new(format!("--status: {e}")))
                })
                .transpose()?;
            let ledger = daemon::open_ledger(&cfg)?;
            let rows = ledger.list(&ListFilter {
                status,
                provider: provider.clone(),
                limit: *limit,
            })?;
            println!(
                "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  last error",
                "provider", "session_id", "status", "amount", "checks", "next check / resolved"
            );
            for s in rows {
                println!(
                    "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  {}",
                    s.provider,
                    s.session_id,
                    s.status,
                    s.amount.as_deref().unwrap_or("-"),
                    s.checks,
                    if s.status == "PENDING" {
                        &s.next_check_at
                    } else {
                        s.resolved_at.as_deref().unwrap_or("-")
                    },
                    s.last_error.as_deref().unwrap_or("")
                );
            }
        }
        Command::Show {
            session_id,
            provider,
        } => {
            let cfg = load(&cli)?;
            let ledger = daemon::open_ledger(&cfg)?;
            let mut found = ledger.find(session_id)?;
            if let Some(p) = provider {
                found.retain(|s| &s.provider == p);
            }
            match found.len() {
                0 => {
                    return Err(UsageError::new(format!(
                        "no session {session_id:?} in the ledger"
                    ))
                    .into());
                }
                1 => {}
                _ => {
                    return Err(UsageError::new(format!(
                        "session id {session_id:?} exists for several providers ({}); pass --provider",
                        found.iter().map(|s| s.provider.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                    .into());
                }
            }
            let s = &found[0];
            print!("{}", show_session(s));
            println!("\ntransitions:");
            for t in ledger.transitions(s.rowid)? {
                println!(
                    "  {}  {} -> {}  source={}  {}",
                    t.at,
                    t.from,
                    t.to,
                    t.source,
                    t.reason.as_deref().unwrap_or("")
                );
            }
            println!("\nevents:");
            for e in ledger.session_events(s.rowid)? {
                let state = if e.delivered_at.is_some() {
                    "delivered"
                } else if e.dead_at.is_some() {
                    "dead"
                } else {
                    "waiting"
                };
                println!(
                    "  {}  {}  {}  attempts={}  {state}",
                    e.created_at, e.id, e.kind, e.attempts
                );
            }
        }
        Command::Stats => {
            let cfg = load(&cli)?;
            let ledger = daemon::open_ledger(&cfg)?;
            let st = ledger.stats(clock::now())?;
            print!("{:<12}", "provider");
            for s in Status::ALL {
                print!(" {:>10}", s.as_str());
            }
            println!();
            let mut providers: Vec<&str> = st.sessions.iter().map(|(p, _, _)| p.as_str()).collect();
            providers.dedup();
            for p in providers {
                print!("{p:<12}");
                for s in Status::ALL {
                    let n = st
                        .sessions
                        .iter()
                        .find(|(pp, ss, _)| pp == p && ss == s.as_str())
                        .map_or(0, |r| r.2);
                    print!(" {n:>10}");
                }
                println!();
            }
            println!("\ndue now: {}", st.due_now);
            println!(
                "events: {} total, {} waiting, {} dead",
                st.events_total, st.events_waiting, st.events_dead
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_session(s: &Session) -> String {
    let fields: [(&str, Option<&str>); 17] = [
        ("provider", Some(&s.provider)),
        ("session_id", Some(&s.session_id)),
        ("status", Some(&s.status)),
        ("reference", s.reference.as_deref()),
        ("amount", s.amount.as_deref()),
        ("currency", s.currency.as_deref()),
        ("created_at", Some(&s.created_at)),
        (
            "next_check_at",
            (s.status == "PENDING").then_some(s.next_check_at.as_str()),
        ),
        ("last_checked_at", s.last_checked_at.as_deref()),
        ("last_error", s.last_error.as_deref()),
        ("lease_owner", s.lease_owner.as_deref()),
        ("lease_until", s.lease_until.as_deref()),
        ("provider_status", s.provider_status.as_deref()),
        ("transaction_id", s.transaction_id.as_deref()),
        ("payment_method", s.payment_method.as_deref()),
        ("provider_completed_at", s.provider_completed_at.as_deref()),
        ("resolved_at", s.resolved_at.as_deref()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k:<22} {}\n", v.unwrap_or("-")));
    }
    out.push_str(&format!(
        "{:<22} {} ({} answered)\n",
        "checks", s.checks, s.answered_checks
    ));
    out.push_str(&format!(
        "{:<22} {}\n",
        "not_found_count", s.not_found_count
    ));
    out
}

/// The effective config for `check-config`, secrets shown only as set or not.
fn describe(cfg: &Config) -> String {
    let mut out = String::new();
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    out.push_str(&format!(
        "ledger.path          {}\n",
        cfg.ledger_path.display()
    ));
    out.push_str(&format!(
        "schedule             cron {:?}, batch_size {}, concurrency {}, lease {}\n",
        cfg.schedule.cron_expr,
        cfg.schedule.batch_size,
        cfg.schedule.concurrency,
        d(cfg.schedule.lease)
    ));
    out.push_str(&format!(
        "backoff              initial {}, ×{}, max {}, jitter {}, max_age {}, not_found_after {}, late_check {}\n",
        d(cfg.backoff.initial),
        cfg.backoff.multiplier,
        d(cfg.backoff.max),
        cfg.backoff.jitter,
        d(cfg.backoff.max_age),
        cfg.backoff.not_found_after,
        d(cfg.backoff.late_check)
    ));
    out.push_str(&format!(
        "http                 timeout {}, retries {}, retry {}..{}, max_body {} bytes; longest check {}\n",
        d(cfg.http.timeout),
        cfg.http.retries,
        d(cfg.http.retry_initial),
        d(cfg.http.retry_max),
        cfg.http.max_body,
        d(cfg.http.worst_check_time())
    ));
    if cfg.providers.is_empty() {
        out.push_str("providers            none configured: add a [providers.NAME] table\n");
    }
    for p in &cfg.providers {
        let key = match (&p.api_key_env, &p.api_key) {
            (Some(var), Some(_)) => format!("key from ${var} (set)"),
            (Some(var), None) => format!("key from ${var} (NOT SET)"),
            (None, _) => "no key".to_string(),
        };
        let limits: Vec<String> = p
            .rate_limits
            .iter()
            .map(|(n, per)| format!("{n}/{}", d(*per)))
            .collect();
        out.push_str(&format!(
            "providers.{:<10} kind {}, {}, {key}, rate limit {}\n",
            p.name,
            p.kind,
            p.base_url,
            if limits.is_empty() {
                "off".to_string()
            } else {
                limits.join(" and ")
            }
        ));
    }
    out.push_str(&format!("log.format           {:?}\n", cfg.log_format));
    out
}
