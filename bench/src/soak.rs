//! The soak: payrecon's promise — no lost or doubled transition or event — at scale, under
//! network faults, crashes and a database restart. Bounded (a few minutes on 2 cores), outside
//! `cargo test`:
//!
//!   cargo run --release -p payrecon-bench -- --soak [--soak-sessions 20000] [--soak-engine both]
//!
//! For each engine: the simulator, a webhook receiver that fails a third of first deliveries, and
//! (PostgreSQL) a throwaway server, each behind a fault proxy ([`payrecon_testkit::proxy`])
//! whose faults are switched on and off throughout; sessions of the simulator's behaviours
//! arrive in waves, written straight into the ledger as an application writes them; real
//! `payrecon run` daemons (4 on PostgreSQL, 2 on SQLite) are SIGKILLed at random and restarted,
//! and PostgreSQL is restarted once. Then the faults stop, the ledger settles, and every
//! session's final state, its one transition, every event's delivery and the leases are checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use payrecon::ledger::Location;
use payrecon::simulator::{self, Sim};
use payrecon_testkit::BEHAVIOURS as MIX;
use payrecon_testkit::proxy::{Counts, FaultProxy, Faults};
use tokio_util::sync::CancellationToken;

use crate::bench::db;

/// Which ledger engine a soak runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoakEngine {
    Postgres,
    Sqlite,
    Both,
}

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub sessions: usize,
    pub engine: SoakEngine,
    pub seed: u64,
    /// Keep the daemons' logs (and the SQLite ledger) also when the soak passes.
    pub keep: bool,
}

const WAVES: usize = 10;
const KILLS: usize = 10;
const LEASE: Duration = Duration::from_secs(8);
/// The longest the ledger may take to settle once the faults stop.
const SETTLE: Duration = Duration::from_secs(300);

pub async fn run(o: &SoakOptions, payrecon: &Path) -> anyhow::Result<bool> {
    fastrand::seed(o.seed);
    let engines: &[(SoakEngine, usize)] = match o.engine {
        SoakEngine::Postgres => &[(SoakEngine::Postgres, 4)],
        SoakEngine::Sqlite => &[(SoakEngine::Sqlite, 2)],
        SoakEngine::Both => &[(SoakEngine::Postgres, 4), (SoakEngine::Sqlite, 2)],
    };
    let mut ok = true;
    for &(engine, daemons) in engines {
        let report = soak_one(o, engine, daemons, payrecon).await?;
        println!("{}", report.text);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        ok &= report.failures.is_empty();
    }
    Ok(ok)
}

struct Report {
    text: String,
    failures: Vec<String>,
}

/// The receiver: records every delivery by `webhook-id`; a third of events (by id) get 503 on
/// their first delivery.
#[derive(Default)]
struct Received {
    by_id: HashMap<String, Vec<u16>>,
}

fn fails_first(id: &str) -> bool {
    // FNV-1a over the id: a fixed third, whatever the order of arrival.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    h % 3 == 0
}

async fn receiver(stop: &CancellationToken) -> anyhow::Result<(SocketAddr, Arc<Mutex<Received>>)> {
    let state = Arc::new(Mutex::new(Received::default()));
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, _body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
                    let answers = g.by_id.entry(id.clone()).or_default();
                    let code = if answers.is_empty() && fails_first(&id) {
                        503
                    } else {
                        204
                    };
                    answers.push(code);
                    axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok((addr, state))
}

/// A daemon, killed when dropped (also when the soak fails).
struct Daemon {
    child: std::process::Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon(payrecon: &Path, config: &Path, log: &Path) -> anyhow::Result<Daemon> {
    let child = Command::new(payrecon)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env(
            "SOAK_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?,
        ))
        .spawn()
        .with_context(|| format!("starting {}", payrecon.display()))?;
    Ok(Daemon { child })
}

fn config_text(ledger: &Location, provider: SocketAddr, hook: SocketAddr) -> String {
    let ledger = match ledger {
        Location::Path(p) => format!("path = {p:?}"),
        Location::Url(u) => format!("url = {u:?}"),
    };
    format!(
        r#"[ledger]
{ledger}
[schedule]
cron = "* * * * * *"
poll = "200ms"
batch_size = 200
concurrency = 32
lease = "{lease}s"
[backoff]
initial = "200ms"
multiplier = 1.5
max = "1s"
jitter = 0.1
max_age = "1h"
not_found_after = 3
late_check = "7d"
[http]
timeout = "2s"
retries = 2
retry_initial = "50ms"
retry_max = "500ms"
[providers.mopay]
kind = "mopay"
base_url = "http://{provider}"
rate_limit = "off"
[events.webhook]
url = "http://{hook}/hook"
secret_env = "SOAK_WEBHOOK_SECRET"
timeout = "2s"
schedule = ["200ms", "500ms", "1s", "2s", "2s", "2s", "2s", "2s", "2s", "2s", "2s", "2s"]
"#,
        lease = LEASE.as_secs(),
    )
}

/// Faults for a link, at random: often none, else one or two kinds at a time.
fn random_faults(database: bool) -> Faults {
    let mut f = Faults::default();
    match fastrand::u8(0..8) {
        0 | 1 => {}
        2 => {
            f.latency = Duration::from_millis(fastrand::u64(5..40));
            f.jitter = Duration::from_millis(fastrand::u64(0..40));
        }
        3 => f.reset = if database { 0.01 } else { 0.05 },
        4 => {
            f.stall = if database { 0.005 } else { 0.03 };
            f.stall_for = Duration::from_millis(fastrand::u64(500..3000));
        }
        5 => f.trickle = Some((fastrand::usize(16..128), Duration::from_millis(2))),
        6 => f.refuse = 0.3,
        _ => {
            f.latency = Duration::from_millis(20);
            f.jitter = Duration::from_millis(30);
            f.reset = 0.02;
        }
    }
    f
}

struct Link {
    name: &'static str,
    proxy: FaultProxy,
    database: bool,
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        connections: a.connections + b.connections,
        refused: a.refused + b.refused,
        resets: a.resets + b.resets,
        stalls: a.stalls + b.stalls,
        trickled: a.trickled + b.trickled,
        delayed: a.delayed + b.delayed,
        downs: a.downs + b.downs,
    }
}

async fn sql(location: &Location, text: String) -> anyhow::Result<()> {
    let location = location.clone();
    tokio::task::spawn_blocking(move || {
        payrecon_testkit::sql::execute_batch(db(&location), &text).map_err(anyhow::Error::msg)
    })
    .await?
}

async fn rows(location: &Location, text: &str) -> anyhow::Result<Vec<String>> {
    let (location, text) = (location.clone(), text.to_string());
    tokio::task::spawn_blocking(move || {
        payrecon_testkit::sql::query_strings(db(&location), &text).map_err(anyhow::Error::msg)
    })
    .await?
}

async fn count(location: &Location, text: &str) -> anyhow::Result<i64> {
    let r = rows(location, text).await?;
    r.first()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{text}: {r:?}"))
}

async fn soak_one(
    o: &SoakOptions,
    engine: SoakEngine,
    daemons: usize,
    payrecon: &Path,
) -> anyhow::Result<Report> {
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let dir = tempfile::Builder::new()
        .prefix("payrecon-soak-")
        .tempdir()?;
    let name = if engine == SoakEngine::Postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    eprintln!(
        "soak on {name}: {} sessions, {daemons} daemons, logs in {}",
        o.sessions,
        dir.path().display()
    );

    // The provider and the receiver, each behind a proxy.
    let sim = Sim::new(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    {
        let (app, stop) = (simulator::router(sim.clone()), stop.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    let (rx_addr, received) = receiver(&stop).await?;
    let mut links = vec![
        Link {
            name: "provider",
            proxy: FaultProxy::start(sim_addr).map_err(anyhow::Error::msg)?,
            database: false,
        },
        Link {
            name: "webhook",
            proxy: FaultProxy::start(rx_addr).map_err(anyhow::Error::msg)?,
            database: false,
        },
    ];

    // The ledger: the daemons reach PostgreSQL through a proxy; the application (this
    // program) writes and reads directly.
    let pg = match engine {
        SoakEngine::Postgres => Some(Arc::new(
            tokio::task::spawn_blocking(|| payrecon_testkit::pg::start(false))
                .await?
                .map_err(anyhow::Error::msg)?,
        )),
        _ => None,
    };
    let (direct, daemons_location) = match &pg {
        Some(pg) => {
            let db = {
                let pg = pg.clone();
                tokio::task::spawn_blocking(move || pg.new_database_name())
                    .await?
                    .map_err(anyhow::Error::msg)?
            };
            let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port())))
                .map_err(anyhow::Error::msg)?;
            let through = format!("postgres://postgres@{}/{db}", proxy.addr());
            links.push(Link {
                name: "postgres",
                proxy,
                database: true,
            });
            (
                Location::Url(format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port())),
                Location::Url(through),
            )
        }
        None => {
            let p = dir.path().join("ledger.db");
            (Location::Path(p.clone()), Location::Path(p))
        }
    };
    {
        let l = direct.clone();
        tokio::task::spawn_blocking(move || payrecon::ledger::Ledger::connect(&l).map(drop))
            .await??;
    }
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        config_text(
            &daemons_location,
            links[0].proxy.addr(),
            links[1].proxy.addr(),
        ),
    )?;

    // The sessions: registered at the simulator, written into the ledger in waves.
    let mut expected = BTreeMap::new();
    let mut waves: Vec<Vec<String>> = vec![Vec::new(); WAVES];
    for i in 0..o.sessions {
        let (behaviour, want) = MIX[i % MIX.len()];
        let id = format!("MOP_soak{i:06}_R{i}");
        sim.insert(
            &id,
            "100.00",
            &format!("R{i}"),
            behaviour.parse().map_err(anyhow::Error::msg)?,
        );
        expected.insert(id.clone(), want);
        waves[i % WAVES].push(id);
    }

    let started = Instant::now();
    let log = |n: usize| dir.path().join(format!("daemon{n}.log"));
    let mut running: Vec<Daemon> = Vec::new();
    for n in 0..daemons {
        running.push(daemon(payrecon, &config, &log(n))?);
    }
    let mut spawned = daemons;

    // The chaos: waves of sessions every 2 s; faults switched every 1–3 s on a random link;
    // a SIGKILL every 2–5 s, the victim restarted at once; PostgreSQL restarted once.
    let mut next_wave = 0;
    let mut wave_at = Instant::now();
    let mut switch_at = Instant::now();
    let mut kill_at = Instant::now() + Duration::from_millis(fastrand::u64(2000..5000));
    let (mut kills, mut switches, mut pg_restarted) = (0, 0, false);
    let restart_after = KILLS / 2;
    let mut pg_restart: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    while next_wave < WAVES || kills < KILLS || !pg_restarted && pg.is_some() {
        let now = Instant::now();
        if next_wave < WAVES && now >= wave_at {
            let ids = &waves[next_wave];
            let values: Vec<String> = ids
                .iter()
                .map(|id| {
                    let r = id.rsplit('_').next().unwrap_or("");
                    format!("('mopay', '{id}', '{r}', '100.00', 'LSL')")
                })
                .collect();
            let insert = format!(
                "INSERT INTO sessions (provider, session_id, reference, amount, currency) VALUES {};",
                values.join(", ")
            );
            // The application retries while its database is restarting.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match sql(&direct, insert.clone()).await {
                    Ok(()) => break,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("  wave {next_wave}: {e:#}; again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e.context(format!("inserting wave {next_wave}"))),
                }
            }
            next_wave += 1;
            wave_at = now + Duration::from_secs(2);
        }
        if now >= switch_at {
            let link = &links[fastrand::usize(..links.len())];
            let mut f = random_faults(link.database);
            // A link is closed for a moment now and then.
            if fastrand::u8(0..10) == 0 {
                f = Faults {
                    down: true,
                    ..Faults::default()
                };
            }
            link.proxy.set(f);
            switches += 1;
            switch_at = now + Duration::from_millis(fastrand::u64(1000..3000));
        }
        if kills < KILLS && now >= kill_at {
            let victim = fastrand::usize(..running.len());
            let _ = running[victim].child.kill();
            let _ = running[victim].child.wait();
            running[victim] = daemon(payrecon, &config, &log(spawned))?;
            spawned += 1;
            kills += 1;
            kill_at = now + Duration::from_millis(fastrand::u64(2000..5000));
            if kills == restart_after
                && let Some(pg) = &pg
            {
                let pg = pg.clone();
                eprintln!("  restarting PostgreSQL");
                pg_restart = Some(tokio::task::spawn_blocking(move || {
                    pg.restart(Duration::from_secs(1))
                }));
            }
        }
        // A daemon that stops by itself ends the soak: the reason is in its log.
        for (n, d) in running.iter_mut().enumerate() {
            if let Some(status) = d.child.try_wait()? {
                let logs: String = (0..spawned)
                    .filter_map(|i| std::fs::read_to_string(log(i)).ok())
                    .collect::<Vec<_>>()
                    .join("");
                let tail: Vec<&str> = logs.lines().rev().take(5).collect();
                bail!(
                    "daemon {n} exited by itself ({status}); last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        if let Some(h) = &pg_restart
            && h.is_finished()
        {
            if let Some(h) = pg_restart.take() {
                h.await?.map_err(anyhow::Error::msg)?;
            }
            pg_restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chaos = started.elapsed();
    for l in &links {
        l.proxy.clear();
    }
    eprintln!(
        "  chaos over after {:.1}s ({kills} kills, {switches} fault switches); settling",
        chaos.as_secs_f64()
    );

    // Settle: every session final, every event delivered.
    let settle_deadline = Instant::now() + SETTLE;
    let settled = loop {
        let pending = count(
            &direct,
            "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
        )
        .await?;
        let undelivered = count(
            &direct,
            "SELECT count(*) FROM events WHERE delivered_at IS NULL",
        )
        .await?;
        if pending == 0 && undelivered == 0 {
            break true;
        }
        if Instant::now() > settle_deadline {
            eprintln!("  not settled: {pending} pending, {undelivered} undelivered");
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settle_time = started.elapsed();

    // SIGTERM: each daemon stops cleanly.
    let mut failures = Vec::new();
    for d in &mut running {
        let pid = d.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }
    let term_deadline = Instant::now() + Duration::from_secs(15);
    for d in &mut running {
        loop {
            match d.child.try_wait()? {
                Some(status) => {
                    if status.code() != Some(0) {
                        failures.push(format!("a daemon exited with {status} after SIGTERM"));
                    }
                    break;
                }
                None if Instant::now() > term_deadline => {
                    failures.push("a daemon did not exit within 15 s of SIGTERM".into());
                    break;
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let ended = chrono::Utc::now();
    if !settled {
        failures.push(format!(
            "the ledger did not settle within {}s of the faults ending",
            SETTLE.as_secs()
        ));
    }

    // Every session in the state its behaviour leads to.
    let mut wrong = Vec::new();
    let mut seen = 0usize;
    for row in rows(&direct, "SELECT session_id, status FROM sessions").await? {
        let (id, status) = row.split_once('|').unwrap_or((&row, ""));
        seen += 1;
        match expected.get(id) {
            Some(want) if *want == status => {}
            Some(want) => wrong.push(format!("{id}: {status}, not {want}")),
            None => wrong.push(format!("{id}: not a session of the soak")),
        }
    }
    if seen != o.sessions {
        failures.push(format!("{seen} sessions in the ledger, not {}", o.sessions));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "{} sessions in the wrong state, e.g. {}",
            wrong.len(),
            wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    // Exactly one transition and one event per session.
    let n = o.sessions as i64;
    for (what, sql_text) in [
        ("transitions", "SELECT count(*) FROM transitions"),
        (
            "sessions with a transition",
            "SELECT count(DISTINCT session) FROM transitions",
        ),
        ("events", "SELECT count(*) FROM events"),
        (
            "delivered events",
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL AND dead_at IS NULL",
        ),
    ] {
        let got = count(&direct, sql_text).await?;
        if got != n {
            failures.push(format!("{got} {what}, not {n}"));
        }
    }
    // Every event reached the receiver, and nothing else did.
    let ledger_ids: HashSet<String> = rows(&direct, "SELECT id FROM events")
        .await?
        .into_iter()
        .collect();
    let (received_ids, requests, duplicates, retried) = {
        let g = received.lock().unwrap_or_else(|p| p.into_inner());
        let ids: HashSet<String> = g.by_id.keys().cloned().collect();
        let requests: usize = g.by_id.values().map(Vec::len).sum();
        // Accepted more than once: a delivery whose answer was lost on the way back.
        let duplicates = g
            .by_id
            .values()
            .filter(|a| a.iter().filter(|c| **c == 204).count() > 1)
            .count();
        let retried = g.by_id.values().filter(|a| a.len() > 1).count();
        (ids, requests, duplicates, retried)
    };
    let missing = ledger_ids.difference(&received_ids).count();
    let strangers = received_ids.difference(&ledger_ids).count();
    if missing > 0 || strangers > 0 {
        failures.push(format!(
            "{missing} events never reached the receiver; {strangers} it got are not in the ledger"
        ));
    }
    let failed_first = ledger_ids.iter().filter(|id| fails_first(id)).count();
    // No lease outlives its length: at the end, none runs past the end plus one lease.
    let bound = payrecon::clock::format(
        ended + chrono::Duration::from_std(LEASE)? + chrono::Duration::seconds(1),
    );
    for table in ["sessions", "events"] {
        let held = count(
            &direct,
            &format!("SELECT count(*) FROM {table} WHERE lease_until IS NOT NULL AND lease_until > '{bound}'"),
        )
        .await?;
        if held > 0 {
            failures.push(format!("{held} {table} leased past the end plus one lease"));
        }
    }

    // Per session: from its row's creation to its transition, and to its event's delivery.
    let mut to_state = Vec::new();
    let mut to_delivery = Vec::new();
    for row in rows(
        &direct,
        "SELECT s.created_at, s.resolved_at, e.delivered_at FROM sessions s \
         JOIN events e ON e.session = s.id",
    )
    .await?
    {
        let t: Vec<_> = row.split('|').map(payrecon::clock::parse).collect();
        if let [Some(created), Some(resolved), Some(delivered)] = t[..] {
            to_state.push((resolved - created).as_seconds_f64());
            to_delivery.push((delivered - created).as_seconds_f64());
        }
    }
    to_state.sort_by(f64::total_cmp);
    to_delivery.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize]
        }
    };
    let calls = sim
        .status_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut faults = String::new();
    let mut total = Counts::default();
    for l in &links {
        let c = l.proxy.counts();
        total = add(total, c);
        faults.push_str(&format!(
            "\n    {:<9} {:>6} connections, {:>5} refused, {:>4} closed ports, {:>5} resets, {:>4} stalls, {:>6} trickled, {:>7} delayed chunks",
            l.name, c.connections, c.refused, c.downs, c.resets, c.stalls, c.trickled, c.delayed
        ));
    }
    let mut text = format!(
        "soak on {name} ({daemons} daemons): {}\n  sessions {}; provider calls per session {:.2}; settled {:.1}s after the first wave ({:.1}s of faults)\n  per session, row to transition: p50 {:.2}s, p99 {:.2}s, max {:.2}s; row to delivered event: p50 {:.2}s, p99 {:.2}s, max {:.2}s\n  SIGKILLs {kills} (daemons started {spawned}); PostgreSQL restarts {}; fault switches {switches}\n  faults injected: {} resets, {} stalls, {} trickled, {} refused, {} closed ports, {} delayed chunks{faults}\n  webhook: {} events, {requests} requests, {retried} retried ({failed_first} failed first by design), {duplicates} delivered twice",
        if failures.is_empty() { "PASS" } else { "FAIL" },
        o.sessions,
        calls as f64 / o.sessions as f64,
        settle_time.as_secs_f64(),
        chaos.as_secs_f64(),
        pct(&to_state, 0.5),
        pct(&to_state, 0.99),
        pct(&to_state, 1.0),
        pct(&to_delivery, 0.5),
        pct(&to_delivery, 0.99),
        pct(&to_delivery, 1.0),
        u32::from(pg_restarted),
        total.resets,
        total.stalls,
        total.trickled,
        total.refused,
        total.downs,
        total.delayed,
        ledger_ids.len(),
    );
    for f in &failures {
        text.push_str(&format!("\n  FAILED: {f}"));
    }
    if !failures.is_empty() || o.keep {
        // Keep the logs for whoever looks.
        let kept = dir.keep();
        text.push_str(&format!("\n  daemon logs kept in {}", kept.display()));
    }
    stop.cancel();
    Ok(Report { text, failures })
}
