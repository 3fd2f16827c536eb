//! Where the time goes. Runs the real `payrecon` binary as child processes (and this program's
//! own `load` and `ideal` roles) against the simulator on loopback, on ledgers it builds in a
//! temporary directory, and prints a table (also written as JSON):
//!
//! 1. throughput of `once` with the rate limit off, beside the simulator's own ceiling measured
//!    by a plain load generator in its own process at the same concurrency (before and after
//!    `once`, the higher; in rounds, the median shown); 1b: the CPU time per session of each
//!    side of both runs (the client's, the simulator's), and the ratio that CPU cost allows;
//!    1c: the CPU time SQLite by itself spends on `once`'s writes (set-based SQL, no code per
//!    row), and what a 0.7 ratio leaves per session for everything else `once` adds to the
//!    generator's work;
//! 2. a pass over the same due sessions in a small and in a large ledger (in rounds, the
//!    median shown);
//! 3. peak resident memory of `once` and of `export` (two sizes, to show it is flat);
//! 4. webhook deliveries per second to a loopback receiver answering 204;
//! 5. provider calls per resolved session for a mix needing 0–5 pending answers;
//! 6. the most requests the simulator saw in any one second with `rate_limit = "50/s"`;
//! 7. sessions resolved per second by 1, 2 and 4 `once` daemons side by side on one PostgreSQL
//!    ledger (a throwaway server it starts, as the tests do), beside the SQLite figure of 1.
//!
//! Timing goals live here, never in a timed test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use payrecon::ledger::{Ledger, Location};
use payrecon::simulator::{self, Sim};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Sessions for the throughput run.
    pub sessions: u64,
    /// Rows of the large ledger.
    pub large: u64,
    /// Due sessions in the small and the large ledger.
    pub due: u64,
    /// Sessions for the memory runs (also run at a tenth of it).
    pub memory: u64,
    /// Provider calls in flight.
    pub concurrency: usize,
    /// Rounds of the throughput run and of the scale run (the median is reported).
    pub rounds: u32,
    /// Sessions for each PostgreSQL run; 0 skips them.
    pub pg_sessions: u64,
    /// Where the JSON goes.
    pub output: PathBuf,
    /// Only row 8.
    pub truth_only: bool,
    /// Only row 9.
    pub flood_only: bool,
    pub moflay_only: bool,
    pub throughput_only: bool,
    /// Only row 11.
    pub console_only: bool,
    /// Only row 12.
    pub pace_only: bool,
    pub console_sessions: u64,
    pub moflay: crate::moflay::MoflayOptions,
    pub truth: crate::truth::TruthOptions,
}

/// One row of the table.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) goal: String,
    pub(crate) met: Option<bool>,
    pub(crate) json: serde_json::Value,
}

/// The plain load generator: `n` status requests for fresh ids (`prefix`) at the simulator's
/// MoPay endpoint, `concurrency` in flight, no ledger work. Answers per second.
pub async fn load(url: &str, n: u64, prefix: &str, concurrency: usize) -> anyhow::Result<f64> {
    let client = payrecon::http::client(Duration::from_secs(10))?;
    let started = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = &client;
            async move {
                let url = format!("{url}{MOPAY_STATUS}MOP_{prefix}_{i}_R{i}");
                status_request(client, &url).await
            }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| futures_util::future::ready(*ok))
        .count()
        .await;
    Ok(ok as f64 / started.elapsed().as_secs_f64())
}

/// The simulator's MoPay status path, before the session id.
const MOPAY_STATUS: &str = "/api/external/session/v1/";

/// The load generator's request (also row 1d's): a GET asking for JSON, its body read whole and
/// not parsed. Whether an answer came.
async fn status_request(client: &reqwest::Client, url: &str) -> bool {
    match client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
    {
        Ok(r) => r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// Runs every benchmark and returns the table.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<String> {
    let (payrecon, me) = crate::executables()?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let sim_url = format!("http://{}", listener.local_addr()?);
    let sim = Sim::new(None);
    let arrivals = payrecon_testkit::Arrivals::default();
    let stop = CancellationToken::new();
    arrivals.serve(
        listener,
        simulator::router(sim.clone()),
        stop.clone().cancelled_owned(),
    );
    let b = Bench {
        payrecon,
        me,
        dir: dir.path().to_path_buf(),
        sim_url,
        sim,
        arrivals,
        concurrency: opts.concurrency,
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut truth_table = String::new();
    if opts.moflay_only {
        eprintln!(
            "10/10 Moflay at its production limits (about {:.0} s)",
            (opts.moflay.arrivals + Duration::from_secs(900)).as_secs_f64() / opts.moflay.compress
        );
        rows.push(b.moflay(&opts.moflay, &mut truth_table).await?);
        return b.finish(opts, &rows, &truth_table, started);
    }
    if opts.console_only {
        eprintln!("11/11 console pages at {} sessions", opts.console_sessions);
        rows.push(
            crate::console::row(&b.payrecon, &b.dir, opts.console_sessions, &mut truth_table)
                .await?,
        );
        return b.finish(opts, &rows, &truth_table, started);
    }
    if opts.pace_only {
        eprintln!("12/12 when to ask: fixed and learned schedules (about 25 minutes)");
        rows.push(b.pace(opts.truth.compress, &mut truth_table).await?);
        return b.finish(opts, &rows, &truth_table, started);
    }
    if opts.flood_only {
        eprintln!("9/9 a flood of callbacks");
        rows.push(b.flood(&mut truth_table).await?);
        return b.finish(opts, &rows, &truth_table, started);
    }
    if opts.truth_only {
        eprintln!(
            "8/8 time to truth (about {:.0} s)",
            opts.truth.arrivals.as_secs_f64() / opts.truth.compress + 130.0
        );
        rows.push(b.truth(&opts.truth, &mut truth_table).await?);
        return b.finish(opts, &rows, &truth_table, started);
    }

    eprintln!(
        "1/7 throughput: {} rounds of: the load generator, once over {} sessions, SQLite alone doing once's writes, the ideal client, the load generator again",
        opts.rounds, opts.sessions
    );
    rows.extend(b.throughput(opts.sessions, opts.rounds).await?);
    if opts.throughput_only {
        return b.finish(opts, &rows, &truth_table, started);
    }
    eprintln!(
        "2/7 cost of a pass: {} due in {} rows and in {} rows",
        opts.due, opts.due, opts.large
    );
    rows.push(b.scale(opts.due, opts.large, opts.rounds).await?);
    eprintln!(
        "3/7 memory: once and export at {} and {} sessions",
        opts.memory / 10,
        opts.memory
    );
    rows.extend(b.memory(opts.memory).await?);
    eprintln!("4/7 webhook delivery");
    rows.push(b.webhook(20_000).await?);
    eprintln!("5/7 calls per resolution");
    rows.push(b.calls_per_resolution(600).await?);
    eprintln!("6/7 rate limit 50/s");
    rows.push(b.rate_limit().await?);
    let sqlite_rate = rows[0].json["once_per_second"].as_f64().unwrap_or(0.0);
    if opts.pg_sessions > 0 {
        eprintln!(
            "7/7 PostgreSQL: {} sessions by 1, 2 and 4 daemons",
            opts.pg_sessions
        );
        rows.push(b.postgres(opts.pg_sessions, sqlite_rate).await?);
    }
    eprintln!("8/8 time to truth");
    rows.push(b.truth(&opts.truth, &mut truth_table).await?);
    eprintln!("9/11 a flood of callbacks");
    rows.push(b.flood(&mut truth_table).await?);
    eprintln!("10/11 Moflay at its production limits");
    rows.push(b.moflay(&opts.moflay, &mut truth_table).await?);
    eprintln!("11/11 console pages at {} sessions", opts.console_sessions);
    rows.push(
        crate::console::row(&b.payrecon, &b.dir, opts.console_sessions, &mut truth_table).await?,
    );
    eprintln!("12/12 when to ask: fixed and learned schedules (about 25 minutes)");
    rows.push(b.pace(opts.truth.compress, &mut truth_table).await?);
    stop.cancel();
    b.finish(opts, &rows, &truth_table, started)
}

impl Bench {
    /// Row 9 (its lines go to `table`).
    async fn flood(&self, table: &mut String) -> anyhow::Result<Row> {
        let (json, text, met) = crate::flood::row(&self.payrecon, &self.dir).await?;
        table.push_str(&text);
        Ok(Row {
            name: "9 callback flood: young p95 ×, verify p99",
            value: format!(
                "{:.2}× baseline, {:.3} s",
                json["first_check_p95_ratio"].as_f64().unwrap_or(f64::NAN),
                json["flood"]["verify_p99"].as_f64().unwrap_or(f64::NAN)
            ),
            goal: "≤ 1.5×, < 2 s".into(),
            met: Some(met),
            json,
        })
    }

    /// Row 10 (its own table goes to `table`).
    async fn moflay(
        &self,
        o: &crate::moflay::MoflayOptions,
        table: &mut String,
    ) -> anyhow::Result<Row> {
        let (json, text, met) = crate::moflay::row(&self.payrecon, &self.dir, o).await?;
        table.push_str(&text);
        let case = |name: &str| {
            json["cases"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == name))
                .and_then(|c| c["p95"].as_f64())
                .unwrap_or(f64::NAN)
        };
        Ok(Row {
            name: "10 Moflay 200/h: p95 by lists at 1000/h, 2000/h; callback p99",
            value: format!(
                "{:.0} s, {:.0} s; {:.3} s",
                case("1000/h lists"),
                case("2000/h lists"),
                json["callback_seconds"]["p99"].as_f64().unwrap_or(f64::NAN)
            ),
            goal: "< 180 s, < 300 s; < 1 s; no limit exceeded; unmatched in 10 min".into(),
            met: Some(met),
            json,
        })
    }

    /// Row 12 (its own table goes to `table`).
    async fn pace(&self, compress: f64, table: &mut String) -> anyhow::Result<Row> {
        let (json, text, met) = crate::pace::row(&self.payrecon, &self.dir, compress).await?;
        table.push_str(&text);
        let r = |k: &str| json["ratios"][k].as_f64().unwrap_or(f64::NAN);
        Ok(Row {
            name: "12 when to ask: learned/fixed p95 after the first 10 minutes and never-acting calls while the budget was busy (budget-bound); p95 (row 8's)",
            value: format!(
                "{:.2}, {:.2}; {:.2}",
                r("budget_bound_p95_after_10_min"),
                r("budget_bound_never_busy_calls"),
                r("row8_p95")
            ),
            goal: "≤ 0.50, ≤ 0.50; ≤ 1.05".into(),
            met: Some(met),
            json,
        })
    }

    /// Row 8 (its own table goes to `table`).
    async fn truth(
        &self,
        o: &crate::truth::TruthOptions,
        table: &mut String,
    ) -> anyhow::Result<Row> {
        let (json, text, met) = crate::truth::row(&self.payrecon, &self.dir, o).await?;
        table.push_str(&text);
        let ours = &json["schedules"][0];
        Ok(Row {
            name: "8 time to truth: p95 lag, default schedule",
            value: format!(
                "{:.1} s (goal from anchors {:.1} s)",
                ours["p95"].as_f64().unwrap_or(f64::NAN),
                json["p95_goal"].as_f64().unwrap_or(f64::NAN)
            ),
            goal: "all of row 8 below".into(),
            met: Some(met),
            json,
        })
    }

    /// The table and the JSON file.
    fn finish(
        &self,
        opts: &BenchOptions,
        rows: &[Row],
        truth_table: &str,
        started: Instant,
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<44} {:>44}  {:<22} met",
            "benchmark", "figure", "goal"
        );
        for r in rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            let _ = writeln!(out, "{:<44} {:>44}  {:<22} {met}", r.name, r.value, r.goal);
        }
        out.push_str(truth_table);
        let _ = writeln!(
            out,
            "\ntotal {:.0}s on {} cores",
            started.elapsed().as_secs_f64(),
            cores()
        );
        let report = json!({
            "cores": cores(),
            "elapsed_seconds": started.elapsed().as_secs_f64(),
            "options": {"sessions": opts.sessions, "large": opts.large, "due": opts.due, "memory": opts.memory, "concurrency": opts.concurrency, "rounds": opts.rounds},
            "results": rows.iter().map(|r| json!({"name": r.name, "value": r.value, "goal": r.goal, "met": r.met, "data": r.json})).collect::<Vec<_>>(),
        });
        std::fs::write(&opts.output, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", opts.output.display()))?;
        let _ = writeln!(out, "written to {}", opts.output.display());
        Ok(out)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

struct Bench {
    /// The product binary.
    payrecon: PathBuf,
    /// This program, for its `load` and `ideal` roles.
    me: PathBuf,
    dir: PathBuf,
    sim_url: String,
    sim: Arc<Sim>,
    arrivals: payrecon_testkit::Arrivals,
    concurrency: usize,
}

/// What a child `payrecon` run reported.
struct ChildRun {
    elapsed: Duration,
    peak_rss_kib: u64,
    /// CPU time (user + system, every thread) the child spent.
    cpu_seconds: f64,
    /// CPU time this process spent meanwhile: the simulator's (the rest of it waits).
    sim_cpu_seconds: f64,
    stdout: String,
}

/// One throughput round's two runs, as each one's rate and CPU cost per session.
#[derive(Clone, Copy)]
struct Round {
    rate: f64,
    cpu_us: f64,
    sim_cpu_us: f64,
}

impl Round {
    fn of(run: &ChildRun, n: u64) -> Round {
        let n = n.max(1) as f64;
        Round {
            rate: n / run.elapsed.as_secs_f64(),
            cpu_us: run.cpu_seconds * 1e6 / n,
            sim_cpu_us: run.sim_cpu_seconds * 1e6 / n,
        }
    }
}

impl Bench {
    /// A config for the SQLite ledger at `ledger`, MoPay on the simulator.
    fn config(
        &self,
        name: &str,
        ledger: &Path,
        extra_provider: &str,
        extra: &str,
    ) -> anyhow::Result<PathBuf> {
        self.config_at(name, &format!("path = {ledger:?}"), extra_provider, extra)
    }

    /// A config whose `[ledger]` is `ledger` (`path = …` or `url = …`).
    fn config_at(
        &self,
        name: &str,
        ledger: &str,
        extra_provider: &str,
        extra: &str,
    ) -> anyhow::Result<PathBuf> {
        let text = format!(
            r#"[ledger]
{ledger}
[schedule]
batch_size = 500
concurrency = {concurrency}
lease = "10m"
[backoff]
initial = "10ms"
multiplier = 1.0
max = "10ms"
jitter = 0.0
[http]
timeout = "10s"
retries = 2
{extra}
[providers.mopay]
kind = "mopay"
base_url = "{url}"
{extra_provider}
"#,
            concurrency = self.concurrency,
            url = self.sim_url
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Runs `payrecon --config CONFIG ARGS…` to the end, measuring time and peak memory.
    async fn child(
        &self,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ChildRun> {
        let mut c = Command::new(&self.payrecon);
        c.arg("--config").arg(config).args(args);
        c.envs(env.iter().copied()).env("RUST_LOG", "error");
        run_child(c, &format!("payrecon {args:?}")).await
    }

    /// A ledger with `due` PENDING sessions due now (ids unknown to the simulator, so they
    /// complete on the first call) and `other` rows that are final or not due.
    fn ledger(&self, name: &str, due: u64, other: u64, prefix: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{name}.db"));
        let l = Location::Path(path.clone());
        sql(
            &l,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {due}) \
             INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             SELECT 'mopay', 'MOP_{prefix}' || i || '_R' || i, 'R' || i, '100.00', 'LSL' FROM n;"
            ),
        )?;
        if other > 0 {
            // The final rows are written as a finished ledger holds them, not enqueued: the
            // rule that a new session starts PENDING (for applications) is dropped from this
            // throwaway ledger, which `once` never inserts into.
            sql(
                &l,
                &format!(
                    "DROP TRIGGER sessions_rules_insert; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {other}) \
                 INSERT INTO sessions (provider, session_id, reference, amount, currency, status, next_check_at, resolved_at) \
                 SELECT 'mopay', 'OLD_{prefix}' || i, 'R' || i, '100.00', 'LSL', \
                        CASE WHEN i % 2 = 0 THEN 'COMPLETED' ELSE 'PENDING' END, \
                        '2999-01-01T00:00:00.000Z', CASE WHEN i % 2 = 0 THEN '2026-01-01T00:00:00.000Z' END FROM n; \
                 ANALYZE;"
                ),
            )?;
        }
        Ok(path)
    }

    /// `rounds` times: the ceiling, `once` over `n` fresh sessions, the ceiling again. Each
    /// round's ratio takes the higher of its two ceilings (on a shared machine one measurement
    /// can come out low, and a low ceiling would flatter the ratio); the row shows the round
    /// with the median ratio, the JSON every round.
    async fn throughput(&self, n: u64, rounds: u32) -> anyhow::Result<[Row; 4]> {
        let mut all = Vec::new();
        for round in 1..=rounds.max(1) {
            let ledger = self.ledger(&format!("throughput{round}"), n, 0, &format!("t{round}_"))?;
            let copy = |name: &str| -> anyhow::Result<PathBuf> {
                let path = self.dir.join(format!("{name}{round}.db"));
                std::fs::copy(&ledger, &path).context("copying the ledger")?;
                Ok(path)
            };
            let (floor_ledger, ideal_ledger) = (copy("floor")?, copy("ideal")?);
            let cfg = self.config("throughput", &ledger, "rate_limit = \"off\"", "")?;
            let before = self.ceiling(n, &format!("g{round}a")).await?;
            let run = self.child(&cfg, &["once"], &[]).await?;
            let once = Round::of(&run, n);
            let path = floor_ledger.clone();
            let floor = tokio::task::spawn_blocking(move || sqlite_floor(&path, n)).await??;
            let ideal = self.ideal(&ideal_ledger, n).await?;
            let after = self.ceiling(n, &format!("g{round}b")).await?;
            for path in [&ledger, &floor_ledger, &ideal_ledger] {
                for suffix in ["", "-wal", "-shm"] {
                    let mut f = path.clone().into_os_string();
                    f.push(suffix);
                    let _ = std::fs::remove_file(f);
                }
            }
            let ceiling = if before.rate >= after.rate {
                before
            } else {
                after
            };
            // What the CPU cost allows if both runs kept every core busy: the simulator's answers
            // and the client's work share the cores, so the rates are inversely as the sums.
            let cpu_bound = (ceiling.cpu_us + ceiling.sim_cpu_us) / (once.cpu_us + once.sim_cpu_us);
            // What 0.7 leaves for everything `once` does beyond the generator's work and
            // SQLite's own cost of its writes (parsing, deciding, the event JSON, mapping rows),
            // with the simulator answering `once` as cheaply as it answers the generator:
            // (g + s) / (g + floor + rest + s) = 0.7.
            let rest_at_goal = (ceiling.cpu_us + ceiling.sim_cpu_us) * (1.0 / 0.7 - 1.0) - floor;
            all.push(json!({
                "once_per_second": once.rate, "ceiling_per_second": ceiling.rate,
                "ceiling_before_once": before.rate, "ceiling_after_once": after.rate,
                "ratio": once.rate / ceiling.rate, "once_seconds": n as f64 / once.rate,
                "once_cpu_us_per_session": once.cpu_us,
                "simulator_cpu_us_per_answer_to_once": once.sim_cpu_us,
                "generator_cpu_us_per_request": ceiling.cpu_us,
                "simulator_cpu_us_per_answer_to_generator": ceiling.sim_cpu_us,
                "cpu_bound_ratio": cpu_bound, "once_peak_rss_kib": run.peak_rss_kib,
                "sqlite_alone_cpu_us_per_session": floor,
                "cpu_us_per_session_left_at_0_7": rest_at_goal,
                "ideal_per_second": ideal.rate, "ideal_ratio": ideal.rate / ceiling.rate,
                "ideal_cpu_us_per_session": ideal.cpu_us,
                "simulator_cpu_us_per_answer_to_ideal": ideal.sim_cpu_us,
                "once_of_ideal": once.rate / ideal.rate,
            }));
        }
        let (median, spread) = median_round(&all);
        let median = median.clone();
        let f = |key: &str| median[key].as_f64().unwrap_or(0.0);
        let (once_rate, ceiling, ratio) =
            (f("once_per_second"), f("ceiling_per_second"), f("ratio"));
        Ok([
            Row {
                name: "1 throughput: once / simulator ceiling",
                value: format!("{once_rate:.0}/s / {ceiling:.0}/s = {ratio:.2}{spread}"),
                goal: ">= 0.70".into(),
                met: Some(ratio >= 0.7),
                json: json!({"sessions": n, "once_per_second": once_rate, "ceiling_per_second": ceiling,
                             "ratio": ratio, "rounds": all}),
            },
            Row {
                name: "1b CPU µs: (generator + sim) / (once + sim)",
                value: format!(
                    "({:.0} + {:.0}) / ({:.0} + {:.0}) = {:.2}",
                    f("generator_cpu_us_per_request"),
                    f("simulator_cpu_us_per_answer_to_generator"),
                    f("once_cpu_us_per_session"),
                    f("simulator_cpu_us_per_answer_to_once"),
                    f("cpu_bound_ratio")
                ),
                goal: "-".into(),
                met: None,
                json: json!({"median_round": median}),
            },
            Row {
                name: "1c SQLite alone doing once's writes",
                value: format!(
                    "{:.0} µs/session; {:.0} µs left for all else at 0.7",
                    f("sqlite_alone_cpu_us_per_session"),
                    f("cpu_us_per_session_left_at_0_7")
                ),
                goal: "-".into(),
                met: None,
                json: json!({"median_round": median}),
            },
            Row {
                name: "1d ideal client / ceiling; once / ideal",
                value: format!(
                    "{:.0}/s = {:.2}; {:.2} (CPU µs {:.0} + {:.0})",
                    f("ideal_per_second"),
                    f("ideal_ratio"),
                    f("once_of_ideal"),
                    f("ideal_cpu_us_per_session"),
                    f("simulator_cpu_us_per_answer_to_ideal")
                ),
                goal: "-".into(),
                met: None,
                json: json!({"median_round": median}),
            },
        ])
    }

    /// The simulator's own ceiling, by the load generator in a process of its own (as `once`
    /// runs): its rate (answers per second, as it timed them) and CPU cost per request.
    async fn ceiling(&self, n: u64, prefix: &str) -> anyhow::Result<Round> {
        let n_s = n.to_string();
        self.rate_child(&["load", "--prefix", prefix, "--requests", &n_s], n)
            .await
    }

    /// Row 1d: the ideal client over the `n` due sessions of the ledger at `path`, in a process
    /// of its own with `once`'s runtime: its rate and CPU cost per session.
    async fn ideal(&self, path: &Path, n: u64) -> anyhow::Result<Round> {
        let path = path.display().to_string();
        self.rate_child(&["ideal", "--ledger", &path], n).await
    }

    /// Runs `payrecon-bench ARGS… --url SIMULATOR --concurrency C`, which prints
    /// `per_second=R`, for `n` requests: R and the CPU cost per request of it and of the
    /// simulator.
    async fn rate_child(&self, args: &[&str], n: u64) -> anyhow::Result<Round> {
        let mut c = Command::new(&self.me);
        c.args(args).args(["--url", &self.sim_url]);
        c.arg("--concurrency").arg(self.concurrency.to_string());
        let what = format!("payrecon-bench {}", args[0]);
        let run = run_child(c, &what).await?;
        let out = run.stdout.trim();
        let rate = out
            .strip_prefix("per_second=")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{what} printed {out:?}"))?;
        Ok(Round {
            rate,
            ..Round::of(&run, n)
        })
    }

    /// `once` by 1, 2 and 4 daemons at once on one PostgreSQL ledger of `n` due sessions each
    /// time (a fresh database per run).
    async fn postgres(&self, n: u64, sqlite_rate: f64) -> anyhow::Result<Row> {
        let pg = match tokio::task::spawn_blocking(|| payrecon_testkit::pg::start(true)).await? {
            Ok(pg) => pg,
            Err(e) => {
                return Ok(Row {
                    name: "7 PostgreSQL: once by 1 / 2 / 4 daemons",
                    value: "skipped".into(),
                    goal: "-".into(),
                    met: None,
                    json: json!({"skipped": e}),
                });
            }
        };
        let mut rates = Vec::new();
        for daemons in [1usize, 2, 4] {
            let url = pg.new_database().map_err(anyhow::Error::msg)?;
            let location = Location::Url(url.clone());
            let seed = format!(
                "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
                 SELECT 'mopay', 'MOP_pg{daemons}_' || i || '_R' || i, 'R' || i, '100.00', 'LSL' \
                 FROM generate_series(1, {n}) AS i; ANALYZE;"
            );
            tokio::task::spawn_blocking(move || {
                sql(&location, &seed)?;
                anyhow::Ok(())
            })
            .await??;
            let cfg = self.config_at(
                &format!("pg{daemons}"),
                &format!("url = {url:?}"),
                "rate_limit = \"off\"",
                "",
            )?;
            let started = Instant::now();
            let runs = futures_util::future::join_all(
                (0..daemons).map(|_| self.child(&cfg, &["once"], &[])),
            )
            .await;
            let elapsed = started.elapsed();
            for r in runs {
                r?;
            }
            rates.push((daemons, n as f64 / elapsed.as_secs_f64(), elapsed));
        }
        Ok(Row {
            name: "7 PostgreSQL: once by 1 / 2 / 4 daemons",
            value: format!(
                "{} (SQLite {sqlite_rate:.0}/s)",
                rates
                    .iter()
                    .map(|(_, r, _)| format!("{r:.0}/s"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            goal: "-".into(),
            met: None,
            json: json!({"sessions": n, "sqlite_per_second": sqlite_rate,
                         "runs": rates.iter().map(|(d, r, e)| json!({"daemons": d, "per_second": r, "seconds": e.as_secs_f64()})).collect::<Vec<_>>()}),
        })
    }

    /// The same pass over `due` sessions in a small and in a large ledger, in rounds (the due
    /// sessions put back to PENDING between them), each round's ratio of the two; the median
    /// round is reported.
    async fn scale(&self, due: u64, large: u64, rounds: u32) -> anyhow::Result<Row> {
        let small = self.ledger("small", due, 0, "s")?;
        let big_started = Instant::now();
        let big = self.ledger("large", due, large.saturating_sub(due), "b")?;
        let build = big_started.elapsed();
        let small_cfg = self.config("small", &small, "rate_limit = \"off\"", "")?;
        let big_cfg = self.config("large", &big, "rate_limit = \"off\"", "")?;
        let mut all = Vec::new();
        for round in 0..rounds.max(1) {
            if round > 0 {
                again_due(&small, due)?;
                again_due(&big, due)?;
            }
            let a = self.child(&small_cfg, &["once"], &[]).await?;
            let b = self.child(&big_cfg, &["once"], &[]).await?;
            let (a, b) = (a.elapsed.as_secs_f64(), b.elapsed.as_secs_f64());
            all.push(json!({"small_seconds": a, "large_seconds": b, "ratio": b / a}));
        }
        let (median, spread) = median_round(&all);
        let ratio = median["ratio"].as_f64().unwrap_or(0.0);
        Ok(Row {
            name: "2 pass over due sessions: large / small",
            value: format!(
                "{:.2}s / {:.2}s = {ratio:.2}{spread}",
                median["large_seconds"].as_f64().unwrap_or(0.0),
                median["small_seconds"].as_f64().unwrap_or(0.0),
            ),
            goal: "<= 1.20".into(),
            met: Some(ratio <= 1.2),
            json: json!({"due": due, "large_rows": large, "ratio": ratio,
                         "large_build_seconds": build.as_secs_f64(), "rounds": all}),
        })
    }

    async fn memory(&self, n: u64) -> anyhow::Result<Vec<Row>> {
        let mut once = Vec::new();
        let mut export = Vec::new();
        for size in [n / 10, n] {
            let ledger = self.ledger(&format!("mem{size}"), size, 0, &format!("m{size}_"))?;
            let cfg = self.config(&format!("mem{size}"), &ledger, "rate_limit = \"off\"", "")?;
            let r = self.child(&cfg, &["once"], &[]).await?;
            once.push((size, r.peak_rss_kib, r.elapsed));
            let out = self.dir.join(format!("export{size}.csv"));
            let out_s = out.display().to_string();
            let r = self
                .child(
                    &cfg,
                    &["export", "--format", "csv", "--output", &out_s],
                    &[],
                )
                .await?;
            export.push((size, r.peak_rss_kib, r.elapsed));
        }
        let row = |name: &'static str, runs: &[(u64, u64, Duration)]| {
            let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
            Row {
                name,
                value: runs.iter().map(|(n, kib, _)| format!("{n}: {:.1} MiB", *kib as f64 / 1024.0)).collect::<Vec<_>>().join(", "),
                goal: "< 64 MiB, flat in N".into(),
                met: Some(peak < 64 * 1024),
                json: json!(runs.iter().map(|(n, kib, t)| json!({"sessions": n, "peak_rss_kib": kib, "seconds": t.as_secs_f64()})).collect::<Vec<_>>()),
            }
        };
        Ok(vec![
            row("3a peak memory of once", &once),
            row("3b peak memory of export", &export),
        ])
    }

    async fn webhook(&self, events: u64) -> anyhow::Result<Row> {
        // A receiver that answers 204 to everything.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let received = Arc::new(AtomicU64::new(0));
        let r2 = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let r = r2.clone();
                async move {
                    r.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s2.cancelled_owned())
                .await
        });
        // Events waiting in the ledger: resolve sessions first without a webhook.
        let ledger = self.ledger("webhook", events, 0, "w")?;
        let plain = self.config("webhook-plain", &ledger, "rate_limit = \"off\"", "")?;
        self.child(&plain, &["once"], &[]).await?;
        let hooked = self.config(
            "webhook",
            &ledger,
            "rate_limit = \"off\"",
            &format!("[events.webhook]\nurl = \"{url}\"\nsecret_env = \"BENCH_SECRET\"\nconcurrency = {}\n", self.concurrency),
        )?;
        let run = self
            .child(
                &hooked,
                &["once"],
                &[("BENCH_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
            )
            .await?;
        stop.cancel();
        let got = received.load(Ordering::Relaxed);
        let rate = got as f64 / run.elapsed.as_secs_f64();
        Ok(Row {
            name: "4 webhook deliveries per second",
            value: format!("{rate:.0}/s ({got} events)"),
            goal: "-".into(),
            met: None,
            json: json!({"events": events, "received": got, "seconds": run.elapsed.as_secs_f64(), "per_second": rate,
                         "summary": run.stdout.trim()}),
        })
    }

    async fn calls_per_resolution(&self, n: u64) -> anyhow::Result<Row> {
        let path = self.dir.join("calls.db");
        let l = Location::Path(path.clone());
        // complete-K needs K pending answers then the final one: K + 1 calls at the least.
        sql(
            &l,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n} - 1) \
             INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             SELECT 'mopay', 'MOP_sim-complete-' || (i % 6) || '_C' || i, 'C' || i, '100.00', 'LSL' FROM n;"
            ),
        )?;
        let minimum: u64 = (0..n).map(|i| i % 6 + 1).sum();
        let cfg = self.config("calls", &path, "rate_limit = \"off\"", "")?;
        let before = self.sim.status_requests.load(Ordering::Relaxed);
        for _ in 0..50 {
            self.child(&cfg, &["once"], &[]).await?;
            let pending = count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'")?;
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let calls = self.sim.status_requests.load(Ordering::Relaxed) - before;
        let ratio = calls as f64 / minimum as f64;
        Ok(Row {
            name: "5 provider calls per resolution / minimum",
            value: format!("{calls} / {minimum} = {ratio:.2}"),
            goal: "<= 1.30".into(),
            met: Some(ratio <= 1.3),
            json: json!({"sessions": n, "calls": calls, "minimum": minimum, "ratio": ratio}),
        })
    }

    async fn rate_limit(&self) -> anyhow::Result<Row> {
        let ledger = self.ledger("rate", 300, 0, "rl")?;
        let cfg = self.config("rate", &ledger, "rate_limit = \"50/s\"", "")?;
        self.arrivals.start();
        self.child(&cfg, &["once"], &[]).await?;
        let most = self.arrivals.max_in_window(Duration::from_secs(1));
        Ok(Row {
            name: "6 most requests in any one second at 50/s",
            value: most.to_string(),
            goal: "<= 50".into(),
            met: Some(most <= 50),
            json: json!({"rate_limit": "50/s", "sessions": 300, "max_in_any_second": most}),
        })
    }
}

/// The round with the median `ratio` (of at least one), and the spread of all rounds as text
/// (` (rounds 0.45–0.50)`; empty for one round).
fn median_round(all: &[serde_json::Value]) -> (&serde_json::Value, String) {
    let ratio_of = |r: &serde_json::Value| r["ratio"].as_f64().unwrap_or(0.0);
    let mut by_ratio: Vec<&serde_json::Value> = all.iter().collect();
    by_ratio.sort_by(|a, b| ratio_of(a).total_cmp(&ratio_of(b)));
    let spread = match (by_ratio.first(), by_ratio.last()) {
        (Some(low), Some(high)) if by_ratio.len() > 1 => {
            format!(" (rounds {:.2}–{:.2})", ratio_of(low), ratio_of(high))
        }
        _ => String::new(),
    };
    (by_ratio[by_ratio.len() / 2], spread)
}

/// Row 1c's and 1d's SQL: `once`'s writes in the cheapest form SQLite has for them —
/// set-based statements, no code per row. A claim of 500 reads every column of the due rows,
/// then leases them by id (`?2`, a JSON array) …
const FLOOR_CLAIM: &str = "SELECT * FROM sessions WHERE status = 'PENDING' AND next_check_at <= ?1 \
                           ORDER BY next_check_at LIMIT 500";
const FLOOR_LEASE: &str = "UPDATE sessions SET lease_owner = 'floor', lease_until = ?1, \
                           next_check_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))";
/// … and a group's outcomes are the compare-and-set, the transition rows and the event rows
/// (whose payload SQLite builds), in one durable transaction.
const FLOOR_RECORD: [&str; 3] = [
    "UPDATE sessions SET status = 'COMPLETED', resolved_at = ?1, \
     checks = checks + 1, answered_checks = answered_checks + 1, last_checked_at = ?1, \
     provider_status = 'COMPLETED', transaction_id = 'TXN' || id, payment_method = 'mpesa', \
     provider_completed_at = '2025-12-04T14:05:00.000Z', last_error = NULL, \
     lease_owner = NULL, lease_until = NULL, late_check_at = NULL \
     WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'PENDING'",
    "INSERT INTO transitions (session, from_status, to_status, source, \
     reason, provider_status, transaction_id, payment_method, provider_amount, \
     provider_reference, provider_currency, provider_completed_at, at) \
     SELECT id, 'PENDING', 'COMPLETED', 'poll', NULL, 'COMPLETED', transaction_id, \
     payment_method, amount, reference, NULL, provider_completed_at, ?1 \
     FROM sessions WHERE id IN (SELECT value FROM json_each(?2))",
    "INSERT INTO events (id, type, session, payload, created_at, next_attempt_at) \
     SELECT 'evt_' || printf('%026d', id), 'session.completed', id, json_object( \
       'id', 'evt_' || printf('%026d', id), 'type', 'session.completed', 'created_at', ?1, \
       'data', json_object('provider', provider, 'session_id', session_id, \
         'reference', reference, 'amount', amount, 'currency', currency, \
         'from', 'PENDING', 'to', 'COMPLETED', 'reason', NULL, \
         'provider_status', provider_status, 'transaction_id', transaction_id, \
         'payment_method', payment_method, 'provider_completed_at', provider_completed_at, \
         'checks', checks, 'compared', json_array('amount', 'reference'))), ?1, ?1 \
     FROM sessions WHERE id IN (SELECT value FROM json_each(?2))",
];

/// A connection for rows 1c and 1d, set up as the ledger's own (WAL, foreign keys on).
fn floor_connection(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

/// One claim by [`FLOOR_CLAIM`] and [`FLOOR_LEASE`] until `until`, committed without waiting
/// for the disk as `once`'s are: the rows' ids and session ids.
fn floor_claim(
    conn: &rusqlite::Connection,
    now: &str,
    until: &str,
) -> anyhow::Result<Vec<(i64, String)>> {
    conn.execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE;")?;
    let mut claimed = Vec::with_capacity(500);
    {
        let mut claim = conn.prepare_cached(FLOOR_CLAIM)?;
        let columns = claim.column_count();
        let mut rows = claim.query([now])?;
        while let Some(row) = rows.next()? {
            // Every column read once, as `once` maps them; the session id (column 2) is kept.
            let mut session_id = String::new();
            for i in 1..columns {
                if let rusqlite::types::Value::Text(text) = row.get(i)?
                    && i == 2
                {
                    session_id = text;
                }
            }
            claimed.push((row.get::<_, i64>(0)?, session_id));
        }
    }
    if !claimed.is_empty() {
        let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
        conn.prepare_cached(FLOOR_LEASE)?
            .execute(rusqlite::params![until, serde_json::to_string(&ids)?])?;
    }
    conn.execute_batch("COMMIT; PRAGMA synchronous = FULL;")?;
    Ok(claimed)
}

/// One group's outcomes by [`FLOOR_RECORD`], in one durable transaction.
fn floor_record(conn: &rusqlite::Connection, now: &str, ids: &[i64]) -> anyhow::Result<()> {
    let list = serde_json::to_string(ids)?;
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    for sql in FLOOR_RECORD {
        conn.prepare_cached(sql)?
            .execute(rusqlite::params![now, list])?;
    }
    conn.execute_batch("COMMIT;")?;
    Ok(())
}

/// The time rows 1c and 1d write as now, and a lease's end ten minutes on.
fn floor_times() -> (String, String) {
    let now = payrecon::clock::now();
    (
        payrecon::clock::format(now),
        payrecon::clock::format(payrecon::clock::add(now, Duration::from_secs(600))),
    )
}

/// Row 1c: SQLite by itself doing what `once` writes for the `n` due sessions of the ledger at
/// `path` — claims of 500, then groups of 256, no HTTP. Returns this process's CPU time per
/// session meanwhile (the simulator it also hosts is idle then).
fn sqlite_floor(path: &Path, n: u64) -> anyhow::Result<f64> {
    let conn = floor_connection(path)?;
    let started = cpu_seconds().unwrap_or(0.0);
    let (now, until) = floor_times();
    loop {
        let ids: Vec<i64> = floor_claim(&conn, &now, &until)?
            .into_iter()
            .map(|c| c.0)
            .collect();
        if ids.is_empty() {
            break;
        }
        for group in ids.chunks(256) {
            floor_record(&conn, &now, group)?;
        }
    }
    let written: u64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    if written != n {
        bail!("SQLite alone wrote {written} events for {n} sessions");
    }
    drop(conn);
    Ok((cpu_seconds().unwrap_or(0.0) - started) * 1e6 / n.max(1) as f64)
}

/// Row 1d's client: `once` without any code of payrecon's per session. For every due session
/// of the ledger at `path` it makes the load generator's request (the body read, not parsed)
/// and writes SQLite alone's rows (row 1c's statements), claims, requests and group writes
/// running side by side in the pipeline `once` uses. No implementation of `once` that makes
/// the same writes can do more on the same machine. Sessions resolved per second.
pub async fn ideal(url: &str, path: &Path, concurrency: usize) -> anyhow::Result<f64> {
    let conn = Arc::new(std::sync::Mutex::new(floor_connection(path)?));
    let client = payrecon::http::client(Duration::from_secs(10))?;
    let (now, until) = floor_times();
    let (unanswered, unrecorded) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut resolved = 0u64;
    let started = Instant::now();
    payrecon::pipeline::run(
        500,
        concurrency,
        &CancellationToken::new(),
        || {
            let (now, until) = (now.clone(), until.clone());
            on_connection(&conn, move |c| floor_claim(c, &now, &until))
        },
        |(id, session_id): (i64, String)| {
            let client = &client;
            async move {
                let url = format!("{url}{MOPAY_STATUS}{session_id}");
                status_request(client, &url).await.then_some(id)
            }
        },
        |answered: Vec<Option<i64>>| {
            let ids: Vec<i64> = answered.iter().flatten().copied().collect();
            unanswered.fetch_add((answered.len() - ids.len()) as u64, Ordering::Relaxed);
            resolved += ids.len() as u64;
            let n = ids.len() as u64;
            let now = now.clone();
            let write = on_connection(&conn, move |c| floor_record(c, &now, &ids));
            let unrecorded = &unrecorded;
            async move {
                if write.await.is_err() {
                    unrecorded.fetch_add(n, Ordering::Relaxed);
                }
            }
        },
    )
    .await?;
    let elapsed = started.elapsed();
    let (unanswered, unrecorded) = (unanswered.into_inner(), unrecorded.into_inner());
    if unanswered + unrecorded > 0 {
        bail!(
            "the ideal client got no answer for {unanswered} sessions and could not record {unrecorded}"
        );
    }
    Ok(resolved as f64 / elapsed.as_secs_f64())
}

/// Runs `f` on the connection, on tokio's blocking pool.
async fn on_connection<T: Send + 'static>(
    conn: &Arc<std::sync::Mutex<rusqlite::Connection>>,
    f: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(|p| p.into_inner()))).await?
}

/// Puts the `due` sessions a pass resolved (the ledger's first rows) back to PENDING and due
/// now, and removes their transitions and events, for another round of the same pass.
fn again_due(ledger: &Path, due: u64) -> anyhow::Result<()> {
    sql(
        &Location::Path(ledger.to_path_buf()),
        &format!(
            "BEGIN; DELETE FROM events; DELETE FROM transitions; \
         UPDATE sessions SET status = 'PENDING', next_check_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
           checks = 0, answered_checks = 0, last_checked_at = NULL, last_error = NULL, \
           lease_owner = NULL, lease_until = NULL, provider_status = NULL, transaction_id = NULL, \
           payment_method = NULL, provider_completed_at = NULL, resolved_at = NULL, \
           late_check_at = NULL \
         WHERE id <= {due}; COMMIT;"
        ),
    )?;
    Ok(())
}

/// What the `measure` role prints last on stderr: the measured child's account.
const MEASURED: &str = "payrecon-bench measured:";

/// Runs a prepared child to the end through this program's `measure` role, measuring its time
/// and, from the kernel's account of it when it is reaped, its peak memory and CPU time; and this
/// process's CPU meanwhile. (Reaped straight from here, the child's peak memory would count this
/// process's, which it shared until its `exec`.)
async fn run_child(c: Command, what: &str) -> anyhow::Result<ChildRun> {
    let mut w = Command::new(std::env::current_exe().context("finding this executable")?);
    w.arg("measure")
        .arg("--")
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (started, sim_before) = (Instant::now(), cpu_seconds().unwrap_or(0.0));
    let o = tokio::task::spawn_blocking(move || w.output()).await??;
    let (elapsed, sim_after) = (started.elapsed(), cpu_seconds().unwrap_or(0.0));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        bail!("{what} failed ({}): {stderr}", o.status);
    }
    let account = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MEASURED))
        .with_context(|| format!("{what}: no account of the child: {stderr}"))?;
    let field = |key: &str| {
        account
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(ChildRun {
        elapsed,
        peak_rss_kib: field("maxrss_kib=") as u64,
        cpu_seconds: field("cpu_seconds="),
        sim_cpu_seconds: sim_after - sim_before,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    })
}

/// The `measure` role: runs `command` with this process's stdin, stdout and stderr, reaps it,
/// prints its peak memory and CPU time to stderr, and returns its exit status. This process is
/// small when it starts the child, so the child's peak is its own.
pub fn measure(command: &[std::ffi::OsString]) -> anyhow::Result<i32> {
    let (program, args) = command.split_first().context("measure: no command")?;
    let child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    let (status, usage) = reap(child.id())?;
    eprintln!(
        "{MEASURED} maxrss_kib={} cpu_seconds={:.3} exit={status}",
        usage.ru_maxrss,
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    );
    Ok(status)
}

/// Waits for the child `pid` and returns its exit status (0 on success; 128 + the signal when
/// a signal ended it) and its resource usage.
fn reap(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct, which wait4 fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; both pointers are to live locals.
        let got = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if got == pid as libc::pid_t {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(anyhow::Error::new(e).context("waiting for a child"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage))
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// This process's CPU time so far, user and system, every thread (`/proc/self/stat`, in the
/// kernel's fixed 1/100 s ticks): the simulator's, which runs in this process.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces) in parentheses; utime and
    // stime are the 14th and 15th of the whole line.
    let mut after = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let (utime, stime): (u64, u64) = (after.next()?.parse().ok()?, after.next()?.parse().ok()?);
    Some((utime + stime) as f64 / 100.0)
}

/// Runs SQL on the ledger at `location` (created and migrated by payrecon first) over a
/// connection of the benchmark's own, as an application writing its rows would.
pub(crate) fn sql(location: &Location, text: &str) -> anyhow::Result<()> {
    drop(Ledger::connect(location)?);
    payrecon_testkit::sql::execute_batch(db(location), text).map_err(anyhow::Error::msg)
}

/// The one integer a query on the ledger at `location` answers.
fn count(location: &Location, text: &str) -> anyhow::Result<i64> {
    let rows =
        payrecon_testkit::sql::query_strings(db(location), text).map_err(anyhow::Error::msg)?;
    rows.first()
        .and_then(|r| r.parse().ok())
        .with_context(|| format!("{text} answered {rows:?}"))
}

/// The testkit's name for a ledger's database.
pub(crate) fn db(location: &Location) -> payrecon_testkit::sql::Db<'_> {
    match location {
        Location::Path(p) => payrecon_testkit::sql::Db::Sqlite(p),
        Location::Url(u) => payrecon_testkit::sql::Db::Postgres(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger of 1,200 sessions due now and one due in 2999.
    fn due_ledger(dir: &Path) -> PathBuf {
        let path = dir.join("floor.db");
        sql(
            &Location::Path(path.clone()),
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) \
                 INSERT INTO sessions (provider, session_id, reference, amount, currency) \
                 SELECT 'mopay', 'MOP_' || i, 'R' || i, '100.00', 'LSL' FROM n; \
                 INSERT INTO sessions (provider, session_id, next_check_at) \
                 VALUES ('mopay', 'LATER', '2999-01-01T00:00:00.000Z');",
        )
        .unwrap();
        path
    }

    /// Sessions COMPLETED, still leased, transitions to COMPLETED, events, and events whose
    /// payload is JSON naming their session.
    fn outcome_counts(path: &Path) -> [i64; 5] {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT (SELECT count(*) FROM sessions WHERE status = 'COMPLETED'), \
                        (SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL), \
                        (SELECT count(*) FROM transitions WHERE to_status = 'COMPLETED'), \
                        (SELECT count(*) FROM events), \
                        (SELECT count(*) FROM events e JOIN sessions s ON s.id = e.session \
                          WHERE json_extract(e.payload, '$.data.session_id') = s.session_id)",
                [],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]),
            )
            .unwrap()
    }

    /// Row 1c does all of `once`'s writes: every due session ends COMPLETED, unleased, with one
    /// transition and one event whose payload is JSON naming it.
    #[test]
    fn sqlite_alone_writes_what_once_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = due_ledger(dir.path());
        let cpu = sqlite_floor(&path, 1200).unwrap();
        assert!(cpu >= 0.0, "{cpu}");
        assert_eq!(outcome_counts(&path), [1200, 0, 1200, 1200, 1200]);
    }

    /// Row 1d's client asks the simulator once for every due session and writes what row 1c
    /// writes; the session not due is neither asked about nor touched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ideal_client_asks_once_and_writes_what_once_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = due_ledger(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sim = Sim::new(None);
        let stop = CancellationToken::new();
        let server = tokio::spawn(simulator::serve(
            listener,
            sim.clone(),
            stop.clone().cancelled_owned(),
        ));
        let rate = ideal(&url, &path, 16).await;
        stop.cancel();
        let _ = server.await;
        assert!(rate.unwrap() > 0.0);
        assert_eq!(sim.status_requests.load(Ordering::Relaxed), 1200);
        assert_eq!(outcome_counts(&path), [1200, 0, 1200, 1200, 1200]);
    }
}
