//! The command line (README "Commands"). The only module that prints to stdout and picks
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
    /// Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)
    #[arg(long = "log-format", global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
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
    /// Sessions by provider × status, COMPLETED totals per currency, events waiting and dead
    Stats,
    /// Check one session with its provider now, record any transition, print the recorded state
    Verify {
        session_id: String,
        /// Needed when two providers have the same session id
        #[arg(long)]
        provider: Option<String>,
    },
    /// A person's decision on a PENDING or REVIEW session (source `manual`)
    Resolve {
        session_id: String,
        /// COMPLETED, FAILED, CANCELLED or EXPIRED
        #[arg(long)]
        to: String,
        /// Why; recorded on the transition and in the event
        #[arg(long)]
        reason: String,
        /// Needed when two providers have the same session id
        #[arg(long)]
        provider: Option<String>,
    },
    /// One row per session for accounting
    Export {
        #[arg(long, value_enum)]
        format: crate::export::Format,
        /// Only sessions resolved at or after this time (RFC 3339)
        #[arg(long)]
        since: Option<String>,
        /// Only sessions resolved before this time (RFC 3339)
        #[arg(long)]
        until: Option<String>,
        /// Only these statuses (repeatable)
        #[arg(long)]
        status: Vec<String>,
        #[arg(long)]
        provider: Option<String>,
        /// Write here (atomically) instead of stdout
        #[arg(long)]
        output: Option<PathBuf>,
        /// Leave out rows payrecon cannot read (each is logged) instead of refusing to export
        #[arg(long)]
        skip_unreadable: bool,
    },
    /// The events outbox
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The ledger itself
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Validate the config and report problems; exit 2 on any
    CheckConfig,
    /// Run the provider simulator
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: String,
        /// Demand this variable's value as every provider's key (Bearer, X-API-KEY, secret key,
        /// Mopay Nigeria's signing secret); without it any credentials are accepted
        #[arg(long = "api-key-env", value_name = "VAR")]
        api_key_env: Option<String>,
        /// Write a config for all five providers against this simulator to FILE, then serve
        #[arg(long = "write-config", value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
    /// The embedded demo: simulator + temporary ledger + sample sessions, reconciled to the end
    Demo,
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Copy the SQLite ledger of [ledger] path into an empty PostgreSQL ledger, verified (stop
    /// the daemons first)
    Copy {
        /// The PostgreSQL ledger, postgres://user@host/db
        #[arg(long)]
        to: String,
        /// The environment variable holding its password (not on the command line)
        #[arg(long)]
        password_env: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events, newest first
    List {
        /// Only dead events
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Put events back in line with a fresh schedule
    Replay {
        /// One event (dead, delivered or waiting)
        #[arg(long, conflicts_with = "dead", required_unless_present = "dead")]
        id: Option<String>,
        /// Every dead event
        #[arg(long)]
        dead: bool,
    },
}

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors may quote a session id, a database's message or a file's line: escaped.
            eprintln!("payrecon: {}", crate::escape::shown(&format!("{e:#}")));
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The async runtime with one worker thread per core (`TOKIO_WORKER_THREADS` overrides).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(None)
}

/// The async runtime with `workers` worker threads (`None`: tokio's default).
fn runtime_with(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs a reconciling command: its future is a task on one worker thread per core but one (at
/// least one; `TOKIO_WORKER_THREADS` overrides), so the ledger's thread — the single writer,
/// which every outcome waits for — keeps a core, and no third thread polls beside them.
/// Measured with `once` on 2 cores (interleaved runs): a few per cent fewer CPU-seconds per
/// session than a worker per core with the command polled on the main thread.
fn run_reconciling<T: Send + 'static>(
    command: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    let workers = std::env::var_os("TOKIO_WORKER_THREADS").is_none().then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    });
    runtime_with(workers)?.block_on(async move {
        match tokio::spawn(command).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(anyhow::anyhow!("the command's task was stopped: {e}")),
        }
    })
}

/// Logs go to stderr; `RUST_LOG` filters (default `default_level`).
fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: a journal or a log file gets plain `key=value` text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // Text lines: every field's value with control characters escaped, so no session id,
    // reference or provider word can forge a line or drive a terminal. JSON escapes by itself.
    use tracing_subscriber::field::MakeExt as _;
    let escaped = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::escape::shown(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(escaped).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    let cfg = Config::load(&path)?;
    init_logging(log_format(cli, cfg.log_format), "info");
    Ok(cfg)
}

/// `--log-format`, else the config's.
fn log_format(cli: &Cli, configured: LogFormat) -> LogFormat {
    match cli.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => configured,
    }
}

/// Loads the config for a command that calls providers or signs webhooks: every secret it
/// names must be in the environment.
fn load_with_secrets(cli: &Cli) -> anyhow::Result<Config> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    let cfg = load(cli)?;
    cfg.require_secrets()
        .map_err(|e| UsageError::new(format!("{}: {}", path.display(), e.0)))?;
    Ok(cfg)
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "payrecon", &mut std::io::stdout());
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
        }
        Command::Verify {
            session_id,
            provider,
        } => {
            let cfg = load_with_secrets(&cli)?;
            let ledger = daemon::open_ledger(&cfg)?;
            let s = one_session(&ledger, session_id, provider.as_deref())?;
            let recorded =
                runtime()?.block_on(daemon::verify(&cfg, &ledger, &s.provider, &s.session_id))?;
            let s = recorded.context("the session disappeared while it was verified")?;
            print!("{}", show_session(&s));
        }
        Command::Demo => {
            init_logging(log_format(&cli, LogFormat::Text), "error");
            let out = runtime()?.block_on(crate::demo::run())?;
            print!("{out}");
        }
        Command::Simulate {
            listen,
            api_key_env,
            write_config,
        } => {
            init_logging(log_format(&cli, LogFormat::Text), "info");
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
                println!("  MoPay    create: POST /api/external/payment (description \"sim:BEHAVIOUR\")");
                println!("  MoPay    status: GET  /api/external/session/v1/{{sessionId}}");
                println!("  Little   status: GET  /api/payments-v2/{{key}}[?longPoll=true]");
                println!("  Moflay   status: GET  /v1/payments/{{id}}");
                println!("  Vesicash status: GET  /v1/payment/{{reference}}");
                println!("  Mopay NG status: GET  /?req={}&reference={{id}}", simulator::NG_STATUS_ENDPOINT);
                if let Some(path) = write_config {
                    let text = simulator::sample_config(&format!("http://{addr}"));
                    std::fs::write(path, text)
                        .map_err(|e| UsageError::new(format!("--write-config {}: {e}", path.display())))?;
                    println!(
                        "wrote {}: a config for all five providers against this simulator; \
                         export PAYRECON_SIM_KEY and PAYRECON_SIM_PUBLIC_KEY (any values) before using it",
                        path.display()
                    );
                }
                simulator::serve(listener, Sim::new(key), daemon::shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::CheckConfig => {
            let cfg = load_with_secrets(&cli)?;
            print!("{}", describe(&cfg));
            let mut problems = cfg.warnings.clone();
            problems.extend(ledger_problem(&cfg.ledger));
            if !problems.is_empty() {
                let path = cli.config.clone().unwrap_or_else(config::default_path);
                return Err(UsageError::new(format!(
                    "{}: {}",
                    path.display(),
                    problems.join("; ")
                ))
                .into());
            }
            println!("config OK");
        }
        Command::Run => {
            let cfg = load_with_secrets(&cli)?;
            run_reconciling(async move { daemon::run(&cfg).await })?;
        }
        Command::Once { all } => {
            let cfg = load_with_secrets(&cli)?;
            let all = *all;
            let once = run_reconciling(async move { daemon::once(&cfg, all).await })?;
            let report = once.pass;
            println!("{}", report.summary());
            if let Some((delivered, retried, dead)) = once.deliveries {
                println!("events: {delivered} delivered, {retried} to retry later, {dead} dead");
            }
            if let Some(left) = once.interrupted {
                anyhow::bail!(
                    "interrupted: {left} sessions were left unchecked; run it again to go on"
                );
            }
            if !report.refused.is_empty() {
                anyhow::bail!(
                    "credentials refused by {}; their sessions were not checked",
                    report.refused.join(", ")
                );
            }
            if !report.misdirected.is_empty() {
                anyhow::bail!(
                    "{} answered \"not found\" for every session; their 404s were not counted: check base_url",
                    report.misdirected.join(", ")
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
            let input = crate::ledger::SessionInput {
                provider: Some(provider),
                session_id: Some(session_id),
                reference: reference.as_deref(),
                amount: amount.as_deref(),
                currency: currency.as_deref(),
                created_at: created_at.as_deref(),
            };
            let flag = |e: &crate::ledger::FieldError| {
                UsageError::new(format!("--{}: {}", e.field.replace('_', "-"), e.message))
            };
            let s = NewSession::from_input(&input, |p| cfg.provider(p).is_some()).map_err(|e| {
                if e.field == "provider" {
                    let known: Vec<_> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
                    UsageError::new(format!(
                        "--provider: {} (configured: {})",
                        e.message,
                        known.join(", ")
                    ))
                } else {
                    flag(&e)
                }
            })?;
            let ledger = daemon::open_ledger(&cfg)?;
            let shown = (
                crate::escape::shown(provider),
                crate::escape::shown(session_id),
            );
            match ledger.enqueue(&s) {
                Ok(Enqueued::Added) => println!("added {} {}, due now", shown.0, shown.1),
                Ok(Enqueued::AlreadyPresent) => {
                    println!("already present: {} {} (left unchanged)", shown.0, shown.1)
                }
                Err(crate::ledger::Error::Conflict(c)) => {
                    return Err(UsageError::new(format!(
                        "--{}",
                        c.to_string().replacen('_', "-", 1)
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
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
            use crate::escape::{shown, shown_or_dash};
            for row in rows {
                let s = match row {
                    Ok(s) => s,
                    Err(u) => {
                        println!(
                            "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  {}",
                            u.provider,
                            format!("(row {})", u.rowid),
                            "UNREADABLE",
                            "-",
                            "-",
                            "-",
                            shown(&u.error)
                        );
                        continue;
                    }
                };
                println!(
                    "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  {}",
                    shown(&s.provider),
                    shown(&s.session_id),
                    s.status,
                    shown_or_dash(s.amount.as_deref()),
                    s.checks,
                    if s.status == Status::Pending {
                        &s.next_check_at
                    } else {
                        s.resolved_at.as_deref().unwrap_or("-")
                    },
                    shown(s.last_error.as_deref().unwrap_or(""))
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
                    crate::escape::shown(t.reason.as_deref().unwrap_or(""))
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
                print!("{:<12}", crate::escape::shown(p));
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
            println!("\ncompleted    currency      count                 sum");
            for (currency, n, sum) in &st.completed {
                println!(
                    "             {:<8} {n:>10} {sum:>19}",
                    crate::escape::shown_or_dash(Some(currency.as_str()).filter(|c| !c.is_empty()))
                );
            }
            println!("\ndue now: {}", st.due_now);
            println!(
                "late checks waiting: {}; anomalies: {}",
                st.late_checks_waiting, st.anomalies
            );
            if st.unreadable > 0 {
                println!(
                    "UNREADABLE ROWS: {} PENDING sessions rows payrecon cannot read are set aside \
                     (`payrecon list` shows them; fix or delete them)",
                    st.unreadable
                );
            }
            for p in &st.providers {
                if let (Some(at), Some(err)) = (&p.auth_refused_at, &p.auth_error) {
                    println!(
                        "provider {}: CREDENTIALS REFUSED at {at}: {err}",
                        p.provider
                    );
                }
                if let (Some(at), Some(err)) = (&p.misdirected_at, &p.misdirected_error) {
                    println!(
                        "provider {}: NOT FOUND FOR EVERY SESSION since {at}: {err}",
                        p.provider
                    );
                }
                if let Some(until) = p
                    .paused_until
                    .as_deref()
                    .filter(|u| clock::parse(u).is_some_and(|t| t > clock::now()))
                {
                    println!(
                        "provider {}: paused after HTTP 429 until {until}",
                        p.provider
                    );
                }
            }
            println!(
                "events: {} total, {} waiting, {} dead",
                st.events_total, st.events_waiting, st.events_dead
            );
        }
        Command::Resolve {
            session_id,
            to,
            reason,
            provider,
        } => {
            let cfg = load(&cli)?;
            let to: Status = to
                .parse()
                .map_err(|e| UsageError::new(format!("--to: {e}")))?;
            let ledger = daemon::open_ledger(&cfg)?;
            let s = one_session(&ledger, session_id, provider.as_deref())?;
            let from = s.status;
            let record =
                crate::reconcile::manual(&s, to, reason, clock::now(), cfg.backoff.late_check)
                    .map_err(UsageError::new)?;
            let written = ledger.record("manual", clock::now(), &[record])?;
            let Some(event) = written.first() else {
                anyhow::bail!(
                    "session {session_id:?} changed while resolving it; look at it again with `payrecon show`"
                );
            };
            if cfg.events_log {
                crate::events::log(event);
            }
            println!(
                "{} {}: {from} -> {to} (event {})",
                s.provider,
                crate::escape::shown(&s.session_id),
                event.id
            );
        }
        Command::Export {
            format,
            since,
            until,
            status,
            provider,
            output,
            skip_unreadable,
        } => {
            let cfg = load(&cli)?;
            let time = |flag: &str, t: &Option<String>| -> Result<_, UsageError> {
                t.as_deref()
                    .map(|t| {
                        clock::parse(t).ok_or_else(|| {
                            UsageError::new(format!("--{flag}: {t:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"))
                        })
                    })
                    .transpose()
            };
            let filter = crate::ledger::ExportFilter {
                since: time("since", since)?,
                until: time("until", until)?,
                statuses: status
                    .iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|e| UsageError::new(format!("--status: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                provider: provider.clone(),
                skip_unreadable: *skip_unreadable,
            };
            let ledger = daemon::open_ledger(&cfg)?;
            let started = std::time::Instant::now();
            let n = match output {
                Some(path) => crate::export::write_file(&ledger, &filter, *format, path)?,
                None => {
                    match crate::export::write(&ledger, &filter, *format, std::io::stdout().lock())
                    {
                        Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
                        other => other?,
                    }
                }
            };
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "exported {n} sessions in {secs:.2}s ({:.0} rows/s)",
                n as f64 / secs.max(1e-9)
            );
        }
        Command::Ledger {
            command: LedgerCommand::Copy { to, password_env },
        } => {
            let cfg = load(&cli)?;
            let to = &config::pg_url(
                to,
                password_env.as_deref(),
                &config::process_env,
                ("--to", "--password-env"),
            )?;
            let ledger = daemon::open_ledger(&cfg)?;
            let started = std::time::Instant::now();
            let bar =
                crate::progress::bar(None, "copy {bar:40} {pos}/{len} rows {per_sec} eta {eta}");
            let copied = crate::ledger::copy::copy(&ledger, to, |p| match p {
                crate::ledger::copy::Progress::Total(n) => bar.set_length(n),
                crate::ledger::copy::Progress::Rows(n) => bar.inc(n),
            });
            bar.finish_and_clear();
            let copied = match copied {
                Ok(c) => c,
                Err(crate::ledger::copy::CopyError::Refused(why)) => {
                    return Err(UsageError::new(why).into());
                }
                Err(e) => return Err(e.into()),
            };
            for (table, n) in &copied.rows {
                println!("{table:<15} {n:>10} rows");
            }
            for ((status, currency), (n, sum)) in &copied.totals {
                let currency = crate::escape::shown(currency);
                println!("{status:<10} {currency:<4} {n:>10} sessions {sum:>18}");
            }
            println!(
                "copied and verified into {} in {:.1}s; point [ledger] url at it",
                crate::ledger::db::redact(to),
                started.elapsed().as_secs_f64()
            );
        }
        Command::Events { command } => {
            let cfg = load(&cli)?;
            let ledger = daemon::open_ledger(&cfg)?;
            match command {
                EventsCommand::List { dead, limit } => {
                    let filter = if *dead {
                        crate::ledger::EventFilter::Dead
                    } else {
                        crate::ledger::EventFilter::All
                    };
                    println!(
                        "{:<30} {:<18} {:<32} {:<9} {:>8}  last error",
                        "id", "type", "session_id", "state", "attempts"
                    );
                    for (session_id, e) in ledger.list_events(filter, *limit)? {
                        println!(
                            "{:<30} {:<18} {:<32} {:<9} {:>8}  {}",
                            e.id,
                            e.kind,
                            crate::escape::shown(&session_id),
                            e.state(),
                            e.attempts,
                            crate::escape::shown(e.last_error.as_deref().unwrap_or(""))
                        );
                    }
                }
                EventsCommand::Replay { id, dead } => {
                    let n =
                        ledger.replay(if *dead { None } else { id.as_deref() }, clock::now())?;
                    if n == 0 && id.is_some() && !dead {
                        return Err(UsageError::new(format!(
                            "no event {:?} in the ledger",
                            id.as_deref().unwrap_or("")
                        ))
                        .into());
                    }
                    println!(
                        "{n} event(s) back in line; `payrecon run` or `payrecon once` delivers them"
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the ledger cannot be used. A database must connect (and is migrated, as the daemon
/// would). A file is checked without creating anything: an existing file must open as a ledger;
/// otherwise its directory must exist and take a new file.
fn ledger_problem(location: &crate::ledger::Location) -> Option<String> {
    let path = match location {
        crate::ledger::Location::Url(_) => {
            return crate::ledger::Ledger::connect(location)
                .err()
                .map(|e| format!("ledger.url: {e}"));
        }
        crate::ledger::Location::Path(path) => path,
    };
    if path.exists() {
        return crate::ledger::Ledger::open(path)
            .err()
            .map(|e| format!("ledger.path: {e}"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Some(format!(
            "ledger.path: the directory {} does not exist",
            dir.display()
        ));
    }
    tempfile::tempfile_in(dir).err().map(|e| {
        format!(
            "ledger.path: cannot create files in {} ({e})",
            dir.display()
        )
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}

/// The one session with this id (narrowed by provider when given), or a usage error.
fn one_session(
    ledger: &crate::ledger::Ledger,
    session_id: &str,
    provider: Option<&str>,
) -> anyhow::Result<Session> {
    let mut found = ledger.find(session_id)?;
    if let Some(p) = provider {
        found.retain(|s| s.provider == p);
    }
    match found.len() {
        0 => Err(UsageError::new(format!("no session {session_id:?} in the ledger")).into()),
        1 => Ok(found.remove(0)),
        _ => Err(UsageError::new(format!(
            "session id {session_id:?} exists for several providers ({}); pass --provider",
            found
                .iter()
                .map(|s| s.provider.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

fn show_session(s: &Session) -> String {
    let fields: [(&str, Option<&str>); 18] = [
        ("provider", Some(&s.provider)),
        ("session_id", Some(&s.session_id)),
        ("status", Some(s.status.as_str())),
        ("reference", s.reference.as_deref()),
        ("amount", s.amount.as_deref()),
        ("currency", s.currency.as_deref()),
        ("created_at", Some(&s.created_at)),
        (
            "next_check_at",
            (s.status == Status::Pending).then_some(s.next_check_at.as_str()),
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
        ("late_check_at", s.late_check_at.as_deref()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k:<22} {}\n", crate::escape::shown_or_dash(v)));
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
    out.push_str(&match &cfg.ledger {
        crate::ledger::Location::Path(p) => format!("ledger.path          {}\n", p.display()),
        url => format!("ledger.url           {url}\n"),
    });
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
        let shown = |what: &str, var: &Option<String>, value: bool| match (var, value) {
            (Some(var), true) => Some(format!("{what} from ${var} (set)")),
            (Some(var), false) => Some(format!("{what} from ${var} (NOT SET)")),
            (None, _) => None,
        };
        let keys: Vec<String> = [
            shown("key", &p.api_key_env, p.api_key.is_some()),
            shown("public key", &p.public_key_env, p.public_key.is_some()),
            shown("secret key", &p.secret_key_env, p.secret_key.is_some()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let key = if keys.is_empty() {
            "no key".to_string()
        } else {
            keys.join(", ")
        };
        let limits: Vec<String> = p
            .rate_limits
            .iter()
            .map(|(n, per)| format!("{n}/{}", d(*per)))
            .collect();
        out.push_str(&format!(
            "providers.{:<10} kind {}, {}, {key}, rate limit {}, timeout {}{}\n",
            p.name,
            p.kind,
            p.base_url,
            if limits.is_empty() {
                "off".to_string()
            } else {
                limits.join(" and ")
            },
            d(p.timeout),
            if p.long_poll { " (long poll)" } else { "" }
        ));
    }
    out.push_str(&format!(
        "admin.listen         {}\n",
        cfg.admin_listen
            .map_or("off".to_string(), |a| a.to_string())
    ));
    out.push_str(&format!(
        "api.listen           {}\n",
        cfg.api.as_ref().map_or("off".to_string(), |a| format!(
            "{}{}",
            a.listen,
            a.token_env
                .as_deref()
                .map_or(String::new(), |v| format!(", token from ${v}"))
        ))
    ));
    if let Some(w) = &cfg.webhook {
        out.push_str(&format!(
            "events.webhook       {} ({} secret(s) from ${}, {} attempts)\n",
            w.url,
            w.secrets.len(),
            w.secret_env,
            w.schedule.len() + 1
        ));
    }
    out.push_str(&format!("log.format           {:?}\n", cfg.log_format));
    out
}
