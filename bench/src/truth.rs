//! Row 8, time to truth: how soon after the customer acts the ledger knows, at one provider
//! budget, for payrecon's default schedule beside today's exponential form and the fixed
//! schedules people use instead (Hyperswitch: 60 s, then every 5 min; Kill Bill: 15 s, 1 m,
//! 3 m, 1 h). Every schedule runs at once, side by side, each with a simulator of its own that
//! enforces the same limit (answering 429 beyond it, counted) and a `payrecon run` daemon on a
//! ledger of its own, fed the same sessions at the same moments.
//!
//! Each session's answer changes at a moment of its own: the customer acts after a delay
//! drawn uniformly from `act_min..act_max`, and a share never act (`pending` for ever). Time is
//! compressed by `compress`: every delay, schedule and span is divided by it and the limit
//! multiplied, so ten real minutes take one; lags are reported in real seconds (measured ×
//! `compress`). What the daemon cannot compress — the time of a call, of a pass, of a commit —
//! is inflated by the same factor, so the figures are if anything pessimistic.
//!
//! Beside them: payrecon's default schedule with a hint sent at the moment of change for half
//! the sessions (the lag from hint to committed transition, in actual seconds: a hint is not
//! compressed), and 1, 2 and 4 daemons on one ledger with far more due than the budget
//! allows (the most requests the simulator saw in any second).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use payrecon::simulator::{self, Sim};

/// The scenario, in real time (divided by `compress` when run).
#[derive(Debug, Clone)]
pub struct TruthOptions {
    pub compress: f64,
    /// How long sessions keep arriving.
    pub arrivals: Duration,
    /// Sessions arriving per real second.
    pub per_second: f64,
    /// The provider's limit per real second.
    pub limit: u32,
    /// The share of sessions whose customer never acts.
    pub never: f64,
    pub act_min: Duration,
    pub act_max: Duration,
    /// How long customers take to act (`Uniform`: between `act_min` and `act_max`).
    pub delay: Delay,
    /// Arrivals in bursts instead of at a steady `per_second` (which then applies between
    /// bursts).
    pub bursts: Option<Bursts>,
    /// Customers who arrive in the second half take this many times as long to act.
    pub shift: Option<f64>,
    /// `[schedule] learn_half_life`, in real time.
    pub learn_half_life: Duration,
}

/// How long customers take to act.
#[derive(Debug, Clone, Copy)]
pub enum Delay {
    /// Uniform between `act_min` and `act_max`.
    Uniform,
    /// Lognormal: half act within `median`; `sigma` is the spread of its logarithm (1.0: one
    /// in twenty takes more than 5.2 × the median); none takes more than 30 minutes.
    LogNormal { median: Duration, sigma: f64 },
}

/// Arrivals in bursts: `on_per_second` for `on` at the start of every `period`.
#[derive(Debug, Clone, Copy)]
pub struct Bursts {
    pub on: Duration,
    pub on_per_second: f64,
    pub period: Duration,
}

impl Default for TruthOptions {
    fn default() -> Self {
        Self {
            compress: 10.0,
            arrivals: Duration::from_secs(600),
            per_second: 1.5,
            limit: 10,
            never: 0.2,
            act_min: Duration::from_secs(10),
            act_max: Duration::from_secs(120),
            delay: Delay::Uniform,
            bursts: None,
            shift: None,
            learn_half_life: Duration::from_secs(6 * 3600),
        }
    }
}

/// One schedule under test.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    /// `[backoff]` lines.
    pub(crate) backoff: String,
    /// The provider table's `schedule = …` line, if any.
    pub(crate) schedule: String,
    /// When the first check is due after creation (`None`: at once, as payrecon does).
    pub(crate) first: Option<Duration>,
    /// Hints sent at the moment of change for every other acting session.
    pub(crate) hints: bool,
    /// `[schedule]` lines of its own.
    pub(crate) schedule_extra: String,
}

/// One planned session: when it arrives and when its customer acts, from the run's start, in
/// compressed time.
#[derive(Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) at: Duration,
    pub(crate) acts: Option<Duration>,
}

/// The simulator's own enforcement of the limit: a sliding one-second log of the status
/// requests it answered; a request beyond the limit gets 429 with `Retry-After: 1`.
#[derive(Clone)]
struct Limiter {
    limit: usize,
    log: Arc<Mutex<VecDeque<Instant>>>,
    refused: Arc<AtomicU64>,
    /// Every request let through: when, and its path (which names the session).
    admitted: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Limiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            log: Arc::default(),
            refused: Arc::default(),
            admitted: Arc::default(),
        }
    }

    fn layer(&self, router: axum::Router) -> axum::Router {
        let me = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let me = me.clone();
                async move {
                    if request.method() == axum::http::Method::GET {
                        let now = Instant::now();
                        let over = {
                            let mut log = me.log.lock().unwrap_or_else(|p| p.into_inner());
                            while log
                                .front()
                                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
                            {
                                log.pop_front();
                            }
                            let over = log.len() >= me.limit;
                            if !over {
                                log.push_back(now);
                                me.admitted
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((now, request.uri().path().to_string()));
                            }
                            over
                        };
                        if over {
                            me.refused.fetch_add(1, Ordering::Relaxed);
                            return axum::response::IntoResponse::into_response((
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                [("retry-after", "1")],
                                "{\"status\":\"error\",\"message\":\"rate limited\"}",
                            ));
                        }
                    }
                    next.run(request).await
                }
            },
        ))
    }
}

/// A simulator on loopback with the limit enforced and every arrival noted.
pub(crate) struct Provider {
    pub(crate) url: String,
    pub(crate) sim: Arc<Sim>,
    arrivals: payrecon_testkit::Arrivals,
    limiter: Limiter,
}

pub(crate) async fn provider(limit: usize, stop: &CancellationToken) -> anyhow::Result<Provider> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let sim = Sim::new(None);
    let arrivals = payrecon_testkit::Arrivals::default();
    let limiter = Limiter::new(limit);
    arrivals.start();
    arrivals.serve(
        listener,
        limiter.layer(simulator::router(sim.clone())),
        stop.clone().cancelled_owned(),
    );
    Ok(Provider {
        url,
        sim,
        arrivals,
        limiter,
    })
}

impl Provider {
    /// When each request arrived, after `since`.
    pub(crate) fn arrivals_since(&self, since: Instant) -> Vec<Duration> {
        self.arrivals.times_since(since)
    }

    /// Requests the simulator answered 429 (beyond the limit).
    pub(crate) fn refused(&self) -> u64 {
        self.limiter.refused.load(Ordering::Relaxed)
    }
}

/// A child process killed when dropped, also when the benchmark fails.
pub(crate) struct Daemon(pub(crate) std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn daemon(payrecon: &Path, config: &Path) -> anyhow::Result<Daemon> {
    let child = Command::new(payrecon)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("BENCH_LITTLE_KEY", "bench-key")
        .env("BENCH_API_TOKEN", "bench-api-token")
        .env(
            "RUST_LOG",
            if std::env::var_os("TRUTH_DEBUG").is_some() {
                "payrecon::provider=trace,error"
            } else {
                "error"
            },
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("TRUTH_DEBUG") {
            Some(_) => Stdio::from(std::fs::File::create(
                std::path::Path::new("/tmp")
                    .join(config.file_name().unwrap_or_default())
                    .with_extension("log"),
            )?),
            None => Stdio::null(),
        })
        .spawn()
        .with_context(|| format!("starting {}", payrecon.display()))?;
    Ok(Daemon(child))
}

/// `d` divided by the compression, as milliseconds text for the config.
pub(crate) fn squeeze(d: Duration, compress: f64) -> String {
    format!(
        "{}ms",
        ((d.as_secs_f64() * 1000.0 / compress).round() as u64).max(1)
    )
}

pub(crate) fn schedule_line(delays: &[&str], compress: f64) -> anyhow::Result<String> {
    let list: Vec<String> = delays
        .iter()
        .map(|d| {
            Ok(format!(
                "{:?}",
                squeeze(humantime::parse_duration(d)?, compress)
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(format!("schedule = [{}]", list.join(", ")))
}

fn scenarios(o: &TruthOptions) -> anyhow::Result<Vec<Scenario>> {
    let c = o.compress;
    let ours = schedule_line(payrecon::provider::little::SPEC.default_schedule, c)?;
    let fixed = "jitter = 0.0".to_string();
    Ok(vec![
        Scenario {
            name: "payrecon default",
            backoff: String::new(),
            schedule: ours.clone(),
            first: None,
            hints: false,
            schedule_extra: String::new(),
        },
        Scenario {
            name: "exponential 30s x2 to 1h",
            backoff: format!(
                "initial = {:?}\nmultiplier = 2.0\nmax = {:?}",
                squeeze(Duration::from_secs(30), c),
                squeeze(Duration::from_secs(3600), c)
            ),
            schedule: String::new(),
            first: None,
            hints: false,
            schedule_extra: String::new(),
        },
        Scenario {
            name: "Hyperswitch 60s, every 5m",
            backoff: fixed.clone(),
            schedule: schedule_line(&["5m"], c)?,
            first: Some(Duration::from_secs(60)),
            hints: false,
            schedule_extra: String::new(),
        },
        Scenario {
            name: "Kill Bill 15s, 1m, 3m, 1h",
            backoff: fixed,
            schedule: schedule_line(&["1m", "3m", "1h"], c)?,
            first: Some(Duration::from_secs(15)),
            hints: false,
            schedule_extra: String::new(),
        },
        Scenario {
            name: "payrecon default + hints",
            backoff: String::new(),
            schedule: ours,
            first: None,
            hints: true,
            schedule_extra: String::new(),
        },
    ])
}

/// The sessions of a run: arrivals at a steady rate (or in bursts), acting after a uniform
/// (or lognormal) delay, a share never acting (a fixed seed, so every schedule gets the same
/// ones).
pub(crate) fn plan(o: &TruthOptions) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(19);
    let (lo, hi) = (o.act_min.as_secs_f64(), o.act_max.as_secs_f64());
    let end = o.arrivals.as_secs_f64();
    let mut out = Vec::new();
    let mut t = 0.0;
    while t < end {
        let rate = match o.bursts {
            Some(b) if t % b.period.as_secs_f64() < b.on.as_secs_f64() => b.on_per_second,
            _ => o.per_second,
        };
        let acts = rng.f64() >= o.never;
        let mut delay = match o.delay {
            Delay::Uniform => lo + rng.f64() * (hi - lo),
            Delay::LogNormal { median, sigma } => {
                // Box–Muller: a standard normal from two uniforms.
                let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                // Truncated at 30 minutes, which bounds the run's drain.
                (median.as_secs_f64() * (sigma * z).exp()).min(1800.0)
            }
        };
        if let Some(factor) = o.shift.filter(|_| t >= end / 2.0) {
            delay *= factor;
        }
        out.push(Planned {
            at: Duration::from_secs_f64(t / o.compress),
            acts: acts.then(|| Duration::from_secs_f64(delay.max(0.5) / o.compress)),
        });
        t += 1.0 / rate;
    }
    out
}

fn config(
    dir: &Path,
    name: &str,
    s: &Scenario,
    o: &TruthOptions,
    url: &str,
    api: Option<u16>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ledger = dir.join(format!("{name}.db"));
    let path = dir.join(format!("{name}.toml"));
    let c = o.compress;
    let api = api.map_or(String::new(), |port| {
        format!("[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"BENCH_API_TOKEN\"\n")
    });
    let text = format!(
        r#"[ledger]
path = {ledger:?}
[schedule]
cron = "* * * * * *"
poll = "1s"
young = {young:?}
ageing = {ageing:?}
learn_half_life = {half_life:?}
{schedule_extra}
[backoff]
{backoff}
[http]
timeout = "5s"
retries = 2
{api}
[providers.little]
kind = "little"
base_url = "{url}"
api_key_env = "BENCH_LITTLE_KEY"
rate_limit = "{limit}/s"
{schedule}
"#,
        young = squeeze(Duration::from_secs(600), c),
        ageing = squeeze(Duration::from_secs(600), c),
        half_life = squeeze(o.learn_half_life, c),
        schedule_extra = s.schedule_extra,
        backoff = s.backoff,
        limit = (f64::from(o.limit) * c).round() as u64,
        schedule = s.schedule,
    );
    std::fs::write(&path, text)?;
    drop(payrecon::ledger::Ledger::open(&ledger)?);
    Ok((path, ledger))
}

fn connection(ledger: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(ledger)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// SQLite work of the benchmark's own, off the async workers: a statement waiting for the
/// daemon's write lock must not stall the simulators these workers serve (it did: their
/// arrivals bunched, and the simulators counted bursts payrecon never sent).
async fn on_db<T: Send + 'static>(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let conn = conn.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&c)
    })
    .await??)
}

fn epoch_ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

fn now_ms() -> i64 {
    epoch_ms(chrono::Utc::now())
}

/// What one schedule's run measured.
pub(crate) struct Measured {
    pub(crate) name: &'static str,
    pub(crate) sessions: usize,
    pub(crate) acting: usize,
    /// Lags in real seconds (× compress), sorted; unresolved acting sessions excluded.
    pub(crate) lags: Vec<f64>,
    /// Each resolved acting session's moment of change (real seconds from the start) and lag.
    pub(crate) lag_at: Vec<(f64, f64)>,
    /// `(created, lag)` in real seconds from the start, per acting session resolved.
    pub(crate) lag_created: Vec<(f64, f64)>,
    pub(crate) unresolved: usize,
    pub(crate) calls: u64,
    /// Calls on the sessions whose customer never acts, and those sessions.
    pub(crate) never_calls: u64,
    pub(crate) never_sessions: usize,
    /// Of those calls, the ones made in the seconds when work was waiting (`busy_windows`):
    /// each one a call taken from a session that could have answered.
    pub(crate) never_busy_calls: u64,
    pub(crate) refused: u64,
    /// The most requests the simulator saw in any second (sliding).
    pub(crate) most: usize,
    /// Calls in one-second windows while work was waiting, and those windows.
    pub(crate) busy_calls: u64,
    pub(crate) busy_windows: u64,
    pub(crate) limit_per_window: u64,
    /// Hint to committed transition, actual seconds, sorted.
    pub(crate) hint_lags: Vec<f64>,
}

impl Measured {
    /// Calls in the seconds when work was waiting, over the limit in those seconds.
    pub(crate) fn budget_used(&self) -> Option<f64> {
        (self.busy_windows > 0)
            .then(|| self.busy_calls as f64 / (self.busy_windows * self.limit_per_window) as f64)
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_lines)]
pub(crate) async fn run_one(
    payrecon: PathBuf,
    dir: PathBuf,
    s: Scenario,
    o: TruthOptions,
    planned: Arc<Vec<Planned>>,
    stop: CancellationToken,
) -> anyhow::Result<Measured> {
    let limit = (f64::from(o.limit) * o.compress).round() as usize;
    let p = provider(limit, &stop).await?;
    let api_port = if s.hints {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        Some(l.local_addr()?.port())
    } else {
        None
    };
    let slug: String = s
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let (cfg, ledger) = config(&dir, &slug, &s, &o, &p.url, api_port)?;
    let _daemon = daemon(&payrecon, &cfg)?;
    let conn = Arc::new(Mutex::new(connection(&ledger)?));
    let started = Instant::now();
    let start_ms = now_ms();
    // change moment and creation (epoch ms) per session id, for those that act.
    let changes: Arc<Mutex<HashMap<String, (i64, i64)>>> = Arc::default();
    let hints: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let client = payrecon::http::client(Duration::from_secs(10))?;
    // The sampler: is work waiting (due, or leased and not yet checked)?
    let samples: Arc<Mutex<Vec<(i64, bool)>>> = Arc::default();
    let sampling = CancellationToken::new();
    let sampler = {
        let (conn, samples, sampling) = (conn.clone(), samples.clone(), sampling.clone());
        tokio::spawn(async move {
            while !sampling.is_cancelled() {
                let now = payrecon::clock::format(payrecon::clock::now());
                let waiting: i64 = on_db(&conn, move |c| {
                    c.query_row(
                        "SELECT count(*) FROM sessions WHERE status = 'PENDING' \
                         AND (next_check_at <= ?1 OR lease_until > ?1)",
                        [&now],
                        |r| r.get(0),
                    )
                })
                .await
                .unwrap_or(0);
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((now_ms(), waiting > 0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut hint_tasks = Vec::new();
    for (i, plan) in planned.iter().enumerate() {
        tokio::time::sleep_until((started + plan.at).into()).await;
        let id = format!("LIT_{i}_R{i}");
        let behaviour = match plan.acts {
            Some(d) => format!("complete.after-{}", d.as_millis().max(1)),
            None => "pending".into(),
        };
        p.sim.insert(
            &id,
            "100.00",
            &format!("R{i}"),
            behaviour.parse().map_err(anyhow::Error::msg)?,
        );
        let created = payrecon::clock::now();
        let due = payrecon::clock::add(
            created,
            s.first.map_or(Duration::ZERO, |f| f.div_f64(o.compress)),
        );
        let row = (
            id.clone(),
            format!("R{i}"),
            payrecon::clock::format(created),
            payrecon::clock::format(due),
        );
        on_db(&conn, move |c| {
            c.execute(
                "INSERT INTO sessions (provider, session_id, reference, amount, currency, created_at, next_check_at) \
                 VALUES ('little', ?1, ?2, '100.00', 'KES', ?3, ?4)",
                rusqlite::params![row.0, row.1, row.2, row.3],
            )
        })
        .await?;
        if let Some(d) = plan.acts {
            let change = epoch_ms(created) + d.as_millis() as i64;
            changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), (change, epoch_ms(created)));
            if let (Some(port), true) = (api_port, i % 2 == 0) {
                let (client, hints, id) = (client.clone(), hints.clone(), id.clone());
                hint_tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let sent = now_ms();
                    let ok = client
                        .post(format!(
                            "http://127.0.0.1:{port}/v1/sessions/little/{id}/hint"
                        ))
                        .bearer_auth("bench-api-token")
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        hints
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, sent);
                    }
                }));
            }
        }
    }
    // Drain: until every acting session is resolved, or the slowest schedule's reach past the
    // slowest customer.
    let acting = changes.lock().unwrap_or_else(|p| p.into_inner()).len() as i64;
    let slowest = planned
        .iter()
        .filter_map(|p| p.acts)
        .max()
        .unwrap_or_default();
    let drain_until = Instant::now() + slowest + Duration::from_secs(900).div_f64(o.compress);
    loop {
        let resolved: i64 = on_db(&conn, |c| {
            c.query_row("SELECT count(*) FROM transitions", [], |r| r.get(0))
        })
        .await?;
        if resolved >= acting || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sampling.cancel();
    let _ = sampler.await;
    for t in hint_tasks {
        let _ = t.await;
    }
    let end_ms = now_ms();
    let rows: Vec<(String, String)> = {
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = c.prepare(
            "SELECT s.session_id, t.at FROM transitions t JOIN sessions s ON s.id = t.session",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let changes = changes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let hints = hints.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lags = Vec::new();
    let mut lag_at = Vec::new();
    let mut lag_created = Vec::new();
    let mut hint_lags = Vec::new();
    for (id, at) in &rows {
        let Some(at) = payrecon::clock::parse(at).map(epoch_ms) else {
            continue;
        };
        if let Some(&(change, created)) = changes.get(id) {
            let lag = (at - change).max(0) as f64 / 1000.0 * o.compress;
            let since_start = |ms: i64| (ms - start_ms) as f64 / 1000.0 * o.compress;
            lags.push(lag);
            lag_at.push((since_start(change), lag));
            lag_created.push((since_start(created), lag));
        }
        if let Some(sent) = hints.get(id) {
            hint_lags.push((at - sent).max(0) as f64 / 1000.0);
        }
    }
    lags.sort_by(f64::total_cmp);
    hint_lags.sort_by(f64::total_cmp);
    // Budget use: the one-second windows (from the start) in which every sample saw work
    // waiting, and the calls that arrived in them.
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut windows: HashMap<i64, bool> = HashMap::new();
    for (t, waiting) in samples {
        let w = (t - start_ms) / 1000;
        let e = windows.entry(w).or_insert(true);
        *e &= waiting;
    }
    let last_window = (end_ms - start_ms) / 1000;
    let arrivals = p.arrivals.times_since(started);
    // Seconds before the daemon's first call (it is starting) do not count.
    let first_window = arrivals
        .iter()
        .min()
        .map_or(i64::MAX, |t| t.as_secs() as i64 + 1);
    let busy: Vec<i64> = windows
        .into_iter()
        .filter(|(w, all)| *all && *w >= first_window && *w < last_window)
        .map(|(w, _)| w)
        .collect();
    let mut per_window: HashMap<i64, u64> = HashMap::new();
    for t in &arrivals {
        let ms = start_ms + t.as_millis() as i64;
        *per_window.entry((ms - start_ms) / 1000).or_default() += 1;
    }
    let busy_calls = busy
        .iter()
        .map(|w| per_window.get(w).copied().unwrap_or(0))
        .sum();
    let never_ids: Vec<String> = planned
        .iter()
        .enumerate()
        .filter(|(_, p)| p.acts.is_none())
        .map(|(i, _)| format!("LIT_{i}_R{i}"))
        .collect();
    if let Some(dir) = std::env::var_os("TRUTH_TRACE") {
        trace(Path::new(&dir), &slug, &o, &planned, started, &p.limiter)?;
    }
    let never_busy_calls = {
        let never: HashSet<&str> = never_ids.iter().map(String::as_str).collect();
        let busy: HashSet<i64> = busy.iter().copied().collect();
        let admitted = p.limiter.admitted.lock().unwrap_or_else(|p| p.into_inner());
        admitted
            .iter()
            .filter(|(at, _)| *at >= started)
            .filter(|(at, _)| busy.contains(&((*at - started).as_millis() as i64 / 1000)))
            .filter(|(_, path)| path.split('/').any(|seg| never.contains(seg)))
            .count() as u64
    };
    Ok(Measured {
        name: s.name,
        sessions: planned.len(),
        acting: acting as usize,
        unresolved: (acting as usize).saturating_sub(lags.len()),
        lags,
        lag_at,
        lag_created,
        never_calls: never_ids.iter().map(|id| u64::from(p.sim.polls(id))).sum(),
        never_sessions: never_ids.len(),
        never_busy_calls,
        calls: arrivals.len() as u64,
        most: {
            if std::env::var_os("TRUTH_DEBUG").is_some() {
                let mut t = arrivals.clone();
                t.sort();
                let mut start = 0;
                let mut best = (0, 0);
                for end in 0..t.len() {
                    while t[end] - t[start] >= Duration::from_secs(1) {
                        start += 1;
                    }
                    if end - start + 1 > best.1 - best.0 {
                        best = (start, end + 1);
                    }
                }
                let gaps: Vec<u128> = t[best.0..best.1]
                    .windows(2)
                    .map(|w| (w[1] - w[0]).as_micros() / 100)
                    .collect();
                eprintln!(
                    "{}: densest {} at {:?}: gaps(0.1ms) {:?}",
                    s.name,
                    best.1 - best.0,
                    t[best.0],
                    gaps
                );
            }
            payrecon_testkit::Arrivals::max_in(&arrivals, Duration::from_secs(1))
        },
        refused: p.limiter.refused.load(Ordering::Relaxed),
        busy_calls,
        busy_windows: busy.len() as u64,
        limit_per_window: limit as u64,
        hint_lags,
    })
}

/// With `TRUTH_TRACE=dir`, for study: `dir/{slug}.csv` with a line per session
/// (`session,id,created s,acts s or empty`) and per request let through (`call,id,at s`), in
/// scenario seconds from the start.
fn trace(
    dir: &Path,
    slug: &str,
    o: &TruthOptions,
    planned: &[Planned],
    started: Instant,
    limiter: &Limiter,
) -> anyhow::Result<()> {
    let mut out = String::new();
    for (i, plan) in planned.iter().enumerate() {
        let acts = plan.acts.map_or(String::new(), |d| {
            format!("{:.3}", (plan.at + d).as_secs_f64() * o.compress)
        });
        let _ = writeln!(
            out,
            "session,LIT_{i}_R{i},{:.3},{acts}",
            plan.at.as_secs_f64() * o.compress
        );
    }
    let admitted = limiter.admitted.lock().unwrap_or_else(|p| p.into_inner());
    for (at, path) in admitted.iter().filter(|(at, _)| *at >= started) {
        let id = path
            .rsplit('/')
            .find(|seg| seg.starts_with("LIT_"))
            .unwrap_or("");
        let _ = writeln!(
            out,
            "call,{id},{:.3}",
            (*at - started).as_secs_f64() * o.compress
        );
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{slug}.csv")), out)?;
    Ok(())
}

/// `scenarios` run at once, each fed `planned`, in the order given.
pub(crate) async fn side_by_side(
    payrecon: &Path,
    dir: &Path,
    scenarios: Vec<Scenario>,
    o: &TruthOptions,
    planned: &Arc<Vec<Planned>>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Measured>> {
    let done = futures_util::future::join_all(scenarios.into_iter().map(|s| {
        run_one(
            payrecon.to_path_buf(),
            dir.to_path_buf(),
            s,
            o.clone(),
            planned.clone(),
            stop.clone(),
        )
    }))
    .await;
    done.into_iter().collect()
}

/// What a run with far more due than the budget allows measured.
struct Saturated {
    most: usize,
    calls: u64,
    refused: u64,
    /// Calls over the limit in nine steady seconds.
    used: f64,
}

/// The most requests the simulator saw in any second with `daemons` daemons on one SQLite
/// ledger of `sessions` sessions that stay PENDING and are due again 50 ms after each check,
/// for `seconds`; and the 429s it answered.
async fn daemons_on_one_ledger(
    payrecon: &Path,
    dir: &Path,
    daemons: usize,
    limit: usize,
    stop: &CancellationToken,
) -> anyhow::Result<Saturated> {
    let p = provider(limit, stop).await?;
    let s = Scenario {
        name: "many",
        backoff: "jitter = 0.0".into(),
        schedule: "schedule = [\"50ms\"]".into(),
        first: None,
        hints: false,
        schedule_extra: String::new(),
    };
    let o = TruthOptions {
        compress: 1.0,
        limit: limit as u32,
        ..TruthOptions::default()
    };
    let (cfg, ledger) = config(dir, &format!("daemons{daemons}"), &s, &o, &p.url, None)?;
    {
        let conn = connection(&ledger)?;
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             SELECT 'little', 'LIT_m' || i || '_sim-pending_R' || i, 'R' || i, '100.00', 'KES' FROM n;",
        )?;
    }
    let started = Instant::now();
    let running: Vec<Daemon> = (0..daemons)
        .map(|_| daemon(payrecon, &cfg))
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    drop(running);
    let times = p.arrivals.times_since(started);
    // Work waits throughout; the budget used from the first call's second on, for 9 s.
    let first = times.iter().min().map_or(0, Duration::as_secs) + 1;
    let steady = times
        .iter()
        .filter(|t| (first..first + 9).contains(&t.as_secs()))
        .count();
    Ok(Saturated {
        most: payrecon_testkit::Arrivals::max_in(&times, Duration::from_secs(1)),
        calls: times.len() as u64,
        refused: p.limiter.refused.load(Ordering::Relaxed),
        used: steady as f64 / (9 * limit) as f64,
    })
}

/// Row 8 and its table.
pub async fn row(
    payrecon: &Path,
    dir: &Path,
    o: &TruthOptions,
) -> anyhow::Result<(serde_json::Value, String, bool)> {
    let stop = CancellationToken::new();
    let planned = Arc::new(plan(o));
    // The four schedules side by side, then the hinted run on its own (two daemons spending
    // the whole budget at once on two cores would measure the machine, not payrecon).
    let (side, hinted): (Vec<Scenario>, Vec<Scenario>) =
        scenarios(o)?.into_iter().partition(|s| !s.hints);
    let mut runs: Vec<Measured> = Vec::new();
    for group in [side, hinted] {
        runs.extend(side_by_side(payrecon, dir, group, o, &planned, &stop).await?);
    }
    let limit = (f64::from(o.limit) * o.compress).round() as usize;
    let mut many = Vec::new();
    for daemons in [1, 2, 4] {
        many.push((
            daemons,
            daemons_on_one_ledger(payrecon, dir, daemons, limit, &stop).await?,
        ));
    }
    stop.cancel();

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n8 time to truth: {} sessions over {:.0} real minutes ({:.1}/s), {:.0}% never act, the rest after {}–{} s; limit {}/s; time compressed {}×",
        runs[0].sessions,
        o.arrivals.as_secs_f64() / 60.0,
        o.per_second,
        o.never * 100.0,
        o.act_min.as_secs(),
        o.act_max.as_secs(),
        o.limit,
        o.compress
    );
    let _ = writeln!(
        table,
        "  {:<28} {:>8} {:>8} {:>8} {:>11} {:>10} {:>6} {:>9} {:>16}",
        "schedule",
        "p50 s",
        "p95 s",
        "p99 s",
        "unresolved",
        "calls/ses",
        "429s",
        "most/s",
        "budget used*"
    );
    for r in &runs {
        let use_ = if r.busy_windows == 0 {
            "no wait".to_string()
        } else {
            format!(
                "{:.0}% of {} s",
                100.0 * r.busy_calls as f64 / (r.busy_windows * r.limit_per_window) as f64,
                r.busy_windows
            )
        };
        let _ = writeln!(
            table,
            "  {:<28} {:>8.1} {:>8.1} {:>8.1} {:>11} {:>10.2} {:>6} {:>9} {:>16}",
            r.name,
            percentile(&r.lags, 50.0),
            percentile(&r.lags, 95.0),
            percentile(&r.lags, 99.0),
            r.unresolved,
            r.calls as f64 / r.sessions as f64,
            r.refused,
            r.most,
            use_
        );
    }
    let hinted = runs.iter().find(|r| !r.hint_lags.is_empty());
    if let Some(h) = hinted {
        let _ = writeln!(
            table,
            "  hint to committed transition ({} hints, actual seconds): p50 {:.3} p95 {:.3} p99 {:.3}",
            h.hint_lags.len(),
            percentile(&h.hint_lags, 50.0),
            percentile(&h.hint_lags, 95.0),
            percentile(&h.hint_lags, 99.0)
        );
    }
    let _ = writeln!(
        table,
        "  daemons on one ledger, most requests in any second (limit {limit}): {}",
        many.iter()
            .map(|(d, s)| format!(
                "{d}: {} ({} calls, {} 429s, {:.0}% of the budget)",
                s.most,
                s.calls,
                s.refused,
                s.used * 100.0
            ))
            .collect::<Vec<_>>()
            .join(" · ")
    );
    let _ = writeln!(
        table,
        "  * calls in the seconds when work was waiting, over the limit in those seconds (the guard caps it at 95% on a per-second limit)"
    );

    let ours = &runs[0];
    let anchors_best = runs[2..4]
        .iter()
        .map(|r| percentile(&r.lags, 95.0))
        .fold(f64::INFINITY, f64::min);
    let p95 = percentile(&ours.lags, 95.0);
    let used = if ours.busy_windows == 0 {
        None
    } else {
        Some(ours.busy_calls as f64 / (ours.busy_windows * ours.limit_per_window) as f64)
    };
    let hint_p99 = hinted.map(|h| percentile(&h.hint_lags, 99.0));
    let no_429 = runs.iter().all(|r| r.refused == 0) && many.iter().all(|(_, s)| s.refused == 0);
    let within = many.iter().all(|(_, s)| s.most <= limit);
    let saturated_use = many.iter().all(|(_, s)| s.used >= 0.9);
    let met = p95 <= anchors_best / 3.0
        && no_429
        && used.is_none_or(|u| u >= 0.9)
        && hint_p99.is_some_and(|h| h < 5.0)
        && within
        && saturated_use
        && ours.unresolved == 0;
    let json = json!({
        "options": {"compress": o.compress, "arrival_seconds": o.arrivals.as_secs_f64(), "per_second": o.per_second,
                    "limit_per_second": o.limit, "never": o.never, "act_min": o.act_min.as_secs_f64(), "act_max": o.act_max.as_secs_f64()},
        "schedules": runs.iter().map(|r| json!({
            "name": r.name, "sessions": r.sessions, "acting": r.acting, "unresolved": r.unresolved,
            "p50": percentile(&r.lags, 50.0), "p95": percentile(&r.lags, 95.0), "p99": percentile(&r.lags, 99.0),
            "calls": r.calls, "calls_per_session": r.calls as f64 / r.sessions as f64, "429s": r.refused, "max_in_any_second": r.most,
            "busy_windows": r.busy_windows, "busy_calls": r.busy_calls, "limit_per_window": r.limit_per_window,
        })).collect::<Vec<_>>(),
        "hint_seconds": hinted.map(|h| json!({"hints": h.hint_lags.len(), "p50": percentile(&h.hint_lags, 50.0),
            "p95": percentile(&h.hint_lags, 95.0), "p99": percentile(&h.hint_lags, 99.0)})),
        "daemons": many.iter().map(|(d, s)| json!({"daemons": d, "max_in_any_second": s.most, "calls": s.calls, "429s": s.refused, "budget_used": s.used})).collect::<Vec<_>>(),
        "p95_goal": anchors_best / 3.0,
    });
    Ok((json, table, met))
}
