//! The command line (README "Commands"). The only module that prints to stdout and picks
//! exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

/// Writes to stdout like `print!`; see [`write_out`].
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*)) };
}

/// Writes a line to stdout like `println!`; see [`write_out`].
macro_rules! outln {
    () => { $crate::cli::write_out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($t)*))) };
}

mod events;
mod export;
mod ledger;
mod run;
mod sessions;
mod stats;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat, UsageError};

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
        /// The provider's second id for the payment (Moflay: the `trxn_…` transaction id)
        #[arg(long = "provider-ref")]
        provider_ref: Option<String>,
    },
    /// Bulk enqueue from CSV (header: provider,session_id,reference,amount,currency,created_at,provider_ref)
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
        /// Who decides; recorded on the transition, in the event and the audit log [default: the
        /// Unix user running the command]
        #[arg(long)]
        by: Option<String>,
        /// Needed when two providers have the same session id
        #[arg(long)]
        provider: Option<String>,
    },
    /// The audit log: people's decisions and actions, newest first
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
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
    /// Payments a provider lists as paid that no session holds (open ones unless --all)
    Unmatched {
        #[command(subcommand)]
        command: Option<UnmatchedCommand>,
        /// Matched and dismissed ones too, and those still within their grace window
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
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
        /// Send providers' signed callbacks to this payrecon API (http://127.0.0.1:9188) for
        /// sessions registered with "callback"; Moflay's and Vesicash's signed with
        /// $PAYRECON_SIM_WEBHOOK_SECRET (a whsec_ secret), Little's with the simulator's own key
        #[arg(long = "callbacks-to", value_name = "URL")]
        callbacks_to: Option<String>,
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
    /// Copy the SQLite ledger of [ledger] path to FILE while daemons run (SQLite's online
    /// backup), checked (integrity_check, rows per table, sums per status); FILE must not exist
    Backup {
        /// The new file to write (never overwritten)
        file: PathBuf,
    },
    /// Write a backup back into the SQLite ledger of [ledger] path (stop every daemon first):
    /// checked first, the ledger as it was kept beside it as a backup
    Restore {
        /// The backup to restore (from `ledger backup`)
        file: PathBuf,
    },
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
pub enum UnmatchedCommand {
    /// Close an open one: a person's decision, recorded with their name, the reason and the time
    Dismiss {
        /// Its id (the first column of `payrecon unmatched`)
        id: i64,
        /// Who decides [default: the Unix user running the command]
        #[arg(long)]
        by: Option<String>,
        /// Why (a refund made by hand, a test payment, …)
        #[arg(long)]
        reason: String,
    },
    /// Tie an open one to the PENDING or REVIEW session it belongs to (its id becomes the
    /// session's provider_ref; the provider's answer still decides the session)
    Match {
        /// Its id (the first column of `payrecon unmatched`)
        id: i64,
        /// The session id, at the payment's provider
        #[arg(long)]
        session: String,
        /// Who decides [default: the Unix user running the command]
        #[arg(long)]
        by: Option<String>,
        /// Why (the order it paid for, how it was found, …)
        #[arg(long)]
        reason: String,
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
        /// Who asks; recorded in the audit log [default: the Unix user running the command]
        #[arg(long)]
        by: Option<String>,
    },
}

/// Parses the command line, runs the command, and returns its exit code.
/// Writes to stdout. A reader that closed it (`payrecon stats | head -1`) ends the command
/// at once, quietly and successfully: whatever the command did (a committed write) is done,
/// and nobody wants the rest of what it prints. Any other write error ends it with status 1.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("payrecon: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    match result {
        Ok(code) => code,
        // A reader that closed stdout (an export piped into `head`): quiet, as above.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
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

/// Who a command acts as: `--by`, else the Unix user running it (by the process's uid in
/// `/etc/passwd`, else `uid N`), so every decision names a person.
pub(crate) fn actor(by: &Option<String>) -> String {
    if let Some(by) = by {
        return by.clone();
    }
    use std::os::unix::fs::MetadataExt as _;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown user".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid.to_string()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The most threads blocking calls (the ledger's, mostly) run on at once.
const MOST_BLOCKING_THREADS: usize = 32;

/// The async runtime with one worker thread per core (`TOKIO_WORKER_THREADS` overrides).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(None)
}

/// The async runtime with `workers` worker threads (`None`: tokio's default).
fn runtime_with(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // The ledger's calls wait on its connections' locks in blocking threads: a flood of API
    // requests queues for these rather than growing the process by a thread each.
    builder.max_blocking_threads(MOST_BLOCKING_THREADS);
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
        Command::Completions { shell } => tools::completions(&cli, shell),
        Command::Man => tools::man(&cli),
        Command::Verify {
            session_id,
            provider,
        } => run::verify(&cli, session_id, provider),
        Command::Demo => tools::demo(&cli),
        Command::Simulate {
            listen,
            api_key_env,
            write_config,
            callbacks_to,
        } => tools::simulate(&cli, listen, api_key_env, write_config, callbacks_to),
        Command::CheckConfig => run::check_config(&cli),
        Command::Run => run::run(&cli),
        Command::Once { all } => run::once(&cli, all),
        Command::Add {
            provider,
            session_id,
            reference,
            amount,
            currency,
            created_at,
            provider_ref,
        } => sessions::add(
            &cli,
            &crate::ledger::SessionInput {
                provider: Some(provider),
                session_id: Some(session_id),
                reference: reference.as_deref(),
                amount: amount.as_deref(),
                currency: currency.as_deref(),
                created_at: created_at.as_deref(),
                provider_ref: provider_ref.as_deref(),
            },
        ),
        Command::Import { file } => sessions::import(&cli, file),
        Command::List {
            status,
            provider,
            limit,
        } => sessions::list(&cli, status, provider, limit),
        Command::Show {
            session_id,
            provider,
        } => sessions::show(&cli, session_id, provider),
        Command::Stats => stats::stats(&cli),
        Command::Resolve {
            session_id,
            to,
            reason,
            by,
            provider,
        } => sessions::resolve(&cli, session_id, to, reason, &actor(by), provider),
        Command::Audit { limit } => events::audit(&cli, *limit),
        Command::Export {
            format,
            since,
            until,
            status,
            provider,
            output,
            skip_unreadable,
        } => export::export(
            &cli,
            format,
            since,
            until,
            status,
            provider,
            output,
            skip_unreadable,
        ),
        Command::Ledger {
            command: LedgerCommand::Copy { to, password_env },
        } => ledger::copy(&cli, to, password_env.as_deref()),
        Command::Ledger {
            command: LedgerCommand::Backup { file },
        } => ledger::backup(&cli, file),
        Command::Ledger {
            command: LedgerCommand::Restore { file },
        } => ledger::restore(&cli, file),
        Command::Events { command } => events::events(&cli, command),
        Command::Unmatched {
            command,
            all,
            limit,
        } => events::unmatched(&cli, command.as_ref(), *all, *limit),
    }
}
