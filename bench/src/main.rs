//! `payrecon-bench`: payrecon's benchmark, a program of its own beside the product. It runs
//! the real `payrecon` binary (built first, from the same workspace and profile) as child
//! processes against the simulator on loopback and prints one table (docs/benchmark.md has
//! the figures and their history):
//!
//!   cargo run --release -p payrecon-bench [-- --sessions 20000 …]
//!
//! `--soak` runs the soak instead ([`soak`]): the promise of no lost or doubled transition or
//! event under network faults, SIGKILLs and a PostgreSQL restart, a few minutes per engine.
//!
//! `load` and `ideal` are this program's own roles in child processes of its own.

mod bench;
mod console;
mod flood;
mod moflay;
mod pace;
mod soak;
mod truth;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// payrecon's benchmark: throughput, scale, memory, webhooks, calls per resolution, rate limit
/// and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "payrecon-bench", version)]
struct Cli {
    /// Sessions for the throughput run
    #[arg(long, default_value_t = 100_000)]
    sessions: u64,
    /// Rows of the large ledger
    #[arg(long, default_value_t = 5_000_000)]
    large: u64,
    /// Due sessions in the small and the large ledger
    #[arg(long, default_value_t = 10_000)]
    due: u64,
    /// Sessions for the memory runs (also run at a tenth of it)
    #[arg(long, default_value_t = 1_000_000)]
    memory: u64,
    /// Provider calls in flight
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds of the throughput run and of the pass in a small and a large ledger; the round
    /// with the median ratio is reported
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Sessions for each PostgreSQL run (1, 2 and 4 daemons on one throwaway PostgreSQL);
    /// 0 skips them
    #[arg(long, default_value_t = 20_000)]
    pg_sessions: u64,
    /// Where to write the results as JSON
    #[arg(long, default_value = "bench-results.json")]
    output: PathBuf,
    /// Run only row 8, time to truth (a few minutes)
    #[arg(long)]
    truth_only: bool,
    /// Run only row 9, a flood of callbacks (under a minute)
    #[arg(long)]
    flood_only: bool,
    /// Run only row 10, Moflay at its production limits (a few minutes)
    #[arg(long)]
    moflay_only: bool,
    /// Run only row 1, throughput (a minute at the quick sizes)
    #[arg(long)]
    throughput_only: bool,
    /// Run only row 11, console pages on a large ledger (a few minutes)
    #[arg(long)]
    console_only: bool,
    /// Run only row 12, when to ask: fixed and learned schedules side by side (about 25
    /// minutes)
    #[arg(long)]
    pace_only: bool,
    /// Row 11: sessions in the ledger the console serves
    #[arg(long, default_value_t = 1_000_000)]
    console_sessions: u64,
    /// Row 10: real minutes of session arrivals
    #[arg(long, default_value_t = 30.0)]
    moflay_minutes: f64,
    /// Row 10: time compression
    #[arg(long, default_value_t = 30.0)]
    moflay_compress: f64,
    /// Row 8: time compression (delays and schedules divided, limits multiplied)
    #[arg(long, default_value_t = 10.0)]
    compress: f64,
    /// Row 8: real minutes of session arrivals
    #[arg(long, default_value_t = 10.0)]
    truth_minutes: f64,
    /// Run the soak instead of the benchmark: faults, SIGKILLs and a PostgreSQL restart, then
    /// every session, transition, event and lease checked (exit 1 if any is wrong)
    #[arg(long)]
    soak: bool,
    /// The soak: sessions per engine
    #[arg(long, default_value_t = 20_000)]
    soak_sessions: usize,
    /// The soak: which engines (4 daemons on PostgreSQL, 2 on SQLite)
    #[arg(long, value_enum, default_value = "both")]
    soak_engine: soak::SoakEngine,
    /// The soak: the seed of its fault switches, kills and timings (the proxies' draws per
    /// chunk are not seeded)
    #[arg(long, default_value_t = 20_261_202)]
    soak_seed: u64,
    /// The soak: keep the daemons' logs also when it passes
    #[arg(long)]
    soak_keep: bool,
    #[command(subcommand)]
    role: Option<Role>,
}

/// What a child process of the benchmark does.
#[derive(Debug, Subcommand)]
enum Role {
    /// The load generator: the simulator's own ceiling
    #[command(hide = true)]
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        requests: u64,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        concurrency: usize,
    },
    /// Runs a command and prints its peak memory and CPU time (how every child is measured)
    #[command(hide = true)]
    Measure {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// The ideal client: the load generator's request and SQLite alone's writes for every due
    /// session of a ledger (on the runtime `once` has)
    #[command(hide = true)]
    Ideal {
        #[arg(long)]
        url: String,
        #[arg(long)]
        ledger: PathBuf,
        #[arg(long)]
        concurrency: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("payrecon-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.role {
        None if cli.soak => {
            let (payrecon, _) = executables()?;
            let opts = soak::SoakOptions {
                sessions: cli.soak_sessions,
                engine: cli.soak_engine,
                seed: cli.soak_seed,
                keep: cli.soak_keep,
            };
            let ok = runtime(None)?.block_on(soak::run(&opts, &payrecon))?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        None => {
            let opts = bench::BenchOptions {
                sessions: cli.sessions,
                large: cli.large,
                due: cli.due,
                memory: cli.memory,
                concurrency: cli.concurrency,
                rounds: cli.rounds,
                pg_sessions: cli.pg_sessions,
                output: cli.output,
                truth_only: cli.truth_only,
                flood_only: cli.flood_only,
                moflay_only: cli.moflay_only,
                throughput_only: cli.throughput_only,
                console_only: cli.console_only,
                pace_only: cli.pace_only,
                console_sessions: cli.console_sessions,
                moflay: moflay::MoflayOptions {
                    compress: cli.moflay_compress,
                    arrivals: std::time::Duration::from_secs_f64(cli.moflay_minutes * 60.0),
                    ..moflay::MoflayOptions::default()
                },
                truth: truth::TruthOptions {
                    compress: cli.compress,
                    arrivals: std::time::Duration::from_secs_f64(cli.truth_minutes * 60.0),
                    ..truth::TruthOptions::default()
                },
            };
            print!("{}", runtime(None)?.block_on(bench::run(&opts))?);
        }
        Some(Role::Load {
            url,
            requests,
            prefix,
            concurrency,
        }) => {
            let rate =
                runtime(None)?.block_on(bench::load(&url, requests, &prefix, concurrency))?;
            println!("per_second={rate}");
        }
        Some(Role::Measure { command }) => {
            let code = bench::measure(&command)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Some(Role::Ideal {
            url,
            ledger,
            concurrency,
        }) => {
            // The runtime `once` has (one worker per core but one, the command on a task), so
            // that the two differ only in what runs on it.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let rate = runtime(Some(cores.saturating_sub(1).max(1)))?.block_on(async move {
                tokio::spawn(async move { bench::ideal(&url, &ledger, concurrency).await }).await?
            })?;
            println!("per_second={rate}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The `payrecon` binary beside this one (the same target directory and profile), and this
/// program. Under `cargo run` it is built first, so the figures are never a stale binary's.
fn executables() -> anyhow::Result<(PathBuf, PathBuf)> {
    let me = std::env::current_exe().context("finding this executable")?;
    let payrecon = me.with_file_name("payrecon");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = std::process::Command::new(cargo);
        // With this package selected too, cargo unifies the dependencies' features as it did
        // for this program, so the library just built is reused, not compiled a second time.
        build.args([
            "build",
            "--quiet",
            "-p",
            "payrecon",
            "-p",
            "payrecon-bench",
            "--bin",
            "payrecon",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().context("building payrecon")?;
        if !status.success() {
            bail!("building payrecon failed ({status})");
        }
    }
    if !payrecon.exists() {
        bail!(
            "no payrecon binary at {}: build it with `cargo build --release`",
            payrecon.display()
        );
    }
    Ok((payrecon, me))
}
