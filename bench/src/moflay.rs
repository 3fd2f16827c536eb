//! Row 10, Moflay at its production limits (100 requests a minute, 200 an hour): how soon the
//! ledger knows, at 100, 1,000 and 2,000 new sessions an hour written with `provider_ref` (and
//! 100 without), by per-session polling alone, with list sweeps, and with sweeps plus signed
//! callbacks for half the sessions; and how soon payments the ledger never heard of (5% of
//! them, planted) are reported.
//!
//! Every case runs at once, side by side, each with a simulator of its own and a `payrecon
//! run` daemon on a ledger of its own. Time is compressed as in row 8: every delay, schedule,
//! window and span is divided by `compress` and the limits multiplied; lags are reported in
//! real seconds (measured × `compress`), except a callback's, which is not compressed (actual
//! seconds from the POST to the committed transition). The simulator does not refuse beyond
//! the limits: it counts, and the row reports the most requests in any minute and any hour
//! (compressed) against 100 and 200.
//!
//! A customer enters the M-Pesa PIN 30–90 s after the session is written [3rd-party: M-Pesa
//! Express completes 30–90 s after the prompt]; a tenth never do, and their payment fails
//! after 60–120 s (the STK prompt times out).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::truth::{provider, schedule_line, squeeze};

/// The scenario, in real time (divided by `compress` when run).
#[derive(Debug, Clone)]
pub struct MoflayOptions {
    pub compress: f64,
    /// How long sessions keep arriving.
    pub arrivals: Duration,
    /// The share of sessions whose customer never acts.
    pub never: f64,
    /// The share of payments the ledger never hears of.
    pub unmatched: f64,
}

impl Default for MoflayOptions {
    fn default() -> Self {
        Self {
            compress: 30.0,
            arrivals: Duration::from_secs(30 * 60),
            never: 0.1,
            unmatched: 0.05,
        }
    }
}

/// One case: an arrival rate, whether the ledger holds the `trxn_…` id, and how payrecon asks.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    per_hour: u32,
    provider_ref: bool,
    lists: bool,
    callbacks: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "100/h polling alone",
        per_hour: 100,
        provider_ref: true,
        lists: false,
        callbacks: false,
    },
    Case {
        name: "100/h lists",
        per_hour: 100,
        provider_ref: true,
        lists: true,
        callbacks: false,
    },
    Case {
        name: "100/h lists + callbacks",
        per_hour: 100,
        provider_ref: true,
        lists: true,
        callbacks: true,
    },
    Case {
        name: "100/h lists, no provider_ref",
        per_hour: 100,
        provider_ref: false,
        lists: true,
        callbacks: false,
    },
    Case {
        name: "1000/h polling alone",
        per_hour: 1000,
        provider_ref: true,
        lists: false,
        callbacks: false,
    },
    Case {
        name: "1000/h lists",
        per_hour: 1000,
        provider_ref: true,
        lists: true,
        callbacks: false,
    },
    Case {
        name: "1000/h lists + callbacks",
        per_hour: 1000,
        provider_ref: true,
        lists: true,
        callbacks: true,
    },
    Case {
        name: "2000/h polling alone",
        per_hour: 2000,
        provider_ref: true,
        lists: false,
        callbacks: false,
    },
    Case {
        name: "2000/h lists",
        per_hour: 2000,
        provider_ref: true,
        lists: true,
        callbacks: false,
    },
    Case {
        name: "2000/h lists + callbacks",
        per_hour: 2000,
        provider_ref: true,
        lists: true,
        callbacks: true,
    },
];

/// The Standard Webhooks secret the simulated Moflay signs its callbacks with.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One planned payment, in compressed time from the run's start.
#[derive(Clone, Copy)]
struct Planned {
    at: Duration,
    /// When its answer changes after it arrives, and whether it is paid then.
    change: Duration,
    paid: bool,
    /// The ledger never hears of it.
    unmatched: bool,
}

fn plan(o: &MoflayOptions, per_hour: u32, seed: u64) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = (o.arrivals.as_secs_f64() / 3600.0 * f64::from(per_hour)).round() as u64;
    let gap = 3600.0 / f64::from(per_hour) / o.compress;
    (0..n)
        .map(|i| {
            let paid = rng.f64() >= o.never;
            let (lo, hi) = if paid { (30.0, 90.0) } else { (60.0, 120.0) };
            Planned {
                at: Duration::from_secs_f64(i as f64 * gap),
                change: Duration::from_secs_f64((lo + rng.f64() * (hi - lo)) / o.compress),
                paid,
                unmatched: rng.f64() < o.unmatched,
            }
        })
        .collect()
}

fn config(
    dir: &Path,
    slug: &str,
    case: &Case,
    o: &MoflayOptions,
    url: &str,
    api: u16,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let c = o.compress;
    let ledger = dir.join(format!("moflay_{slug}.db"));
    let path = dir.join(format!("moflay_{slug}.toml"));
    let schedule = schedule_line(payrecon::provider::moflay::SPEC.default_schedule, c)?;
    let text = format!(
        r#"[ledger]
path = {ledger:?}
[schedule]
cron = "* * * * * *"
poll = "1s"
young = {young:?}
ageing = {ageing:?}
[http]
timeout = "5s"
retries = 2
[api]
listen = "127.0.0.1:{api}"
token_env = "BENCH_API_TOKEN"
[providers.moflay]
kind = "moflay"
base_url = "{url}"
api_key_env = "BENCH_MOFLAY_KEY"
rate_limit = ["{per_min}/min", "{per_hour}/h"]
{schedule}
list = "{list}"
list_window = {window:?}
unmatched_after = {after:?}
{callbacks}
"#,
        young = squeeze(Duration::from_secs(600), c),
        ageing = squeeze(Duration::from_secs(600), c),
        per_min = (100.0 * c).round() as u64,
        per_hour = (200.0 * c).round() as u64,
        list = if case.lists { "decide" } else { "off" },
        window = squeeze(Duration::from_secs(15 * 60), c),
        after = squeeze(Duration::from_secs(5 * 60), c),
        callbacks = if case.callbacks {
            "webhook_secret_env = \"BENCH_MOFLAY_WHSEC\""
        } else {
            ""
        },
    );
    std::fs::write(&path, text)?;
    drop(payrecon::ledger::Ledger::open(&ledger)?);
    Ok((path, ledger))
}

/// What one case measured.
struct Measured {
    case: Case,
    sessions: usize,
    /// Lags in real seconds, sorted; sessions still PENDING at the end excluded.
    lags: Vec<f64>,
    unresolved: usize,
    calls: u64,
    resolved: u64,
    most_minute: usize,
    most_hour: usize,
    planted: usize,
    /// Change to report, real seconds, sorted; those never reported excluded.
    unmatched_lags: Vec<f64>,
    /// Callback sent to committed transition, actual seconds, sorted.
    callback_lags: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The payment object Moflay's `payment.completed` webhook carries (the get-payment shape).
fn callback_body(pay: &str, trxn: &str, reference: &str) -> String {
    json!({"type": "payment.completed", "data": {
        "id": pay, "transactionId": trxn, "status": "completed", "amount": 10000,
        "currency": "KES", "accountReference": reference, "receiptNumber": format!("R{trxn}"),
        "completedAt": payrecon::clock::format(payrecon::clock::now())}})
    .to_string()
}

#[allow(clippy::too_many_lines)]
async fn run_one(
    payrecon: PathBuf,
    dir: PathBuf,
    case: Case,
    o: MoflayOptions,
    seed: u64,
    stop: CancellationToken,
) -> anyhow::Result<Measured> {
    let planned = plan(&o, case.per_hour, seed);
    let p = provider(usize::MAX, &stop).await?;
    let api = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let slug: String = case
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let (cfg, ledger) = config(&dir, &slug, &case, &o, &p.url, api)?;
    let _daemon = {
        let mut c = std::process::Command::new(&payrecon);
        c.arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("BENCH_MOFLAY_KEY", "mof_live_bench")
            .env("BENCH_MOFLAY_WHSEC", WHSEC)
            .env("BENCH_API_TOKEN", "bench-api-token")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        crate::truth::Daemon(c.spawn()?)
    };
    let conn = Arc::new(Mutex::new(rusqlite::Connection::open(&ledger)?));
    conn.lock()
        .unwrap_or_else(|e| e.into_inner())
        .busy_timeout(Duration::from_secs(10))?;
    let started = Instant::now();
    let key = payrecon::config::SigningKey::from_whsec(WHSEC)
        .ok_or_else(|| anyhow::anyhow!("the bench's whsec secret"))?;
    let client = payrecon::http::client(Duration::from_secs(10))?;
    // change moment (epoch ms) per session id (paid or failed), and per planted payment.
    let mut changes: HashMap<String, i64> = HashMap::new();
    let mut planted: HashMap<String, i64> = HashMap::new();
    let callbacks: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, plan) in planned.iter().enumerate() {
        tokio::time::sleep_until((started + plan.at).into()).await;
        let (pay, trxn, reference) = (
            format!("pay_{slug}_{i}"),
            format!("trxn_{slug}_{i}"),
            format!("R{i}"),
        );
        let behaviour = format!(
            "{}.after-{}",
            if plan.paid { "complete" } else { "fail" },
            plan.change.as_millis().max(1)
        );
        p.sim.insert_listed(
            payrecon::provider::Kind::Moflay,
            &pay,
            &trxn,
            "100.00",
            &reference,
            "KES",
            behaviour.parse().map_err(anyhow::Error::msg)?,
        );
        let change = now_ms() + plan.change.as_millis() as i64;
        if plan.unmatched {
            if plan.paid {
                planted.insert(trxn.clone(), change);
            }
            continue;
        }
        let row = (
            pay.clone(),
            case.provider_ref.then(|| trxn.clone()),
            reference.clone(),
        );
        let c = conn.clone();
        tokio::task::spawn_blocking(move || {
            c.lock().unwrap_or_else(|e| e.into_inner()).execute(
                "INSERT INTO sessions (provider, session_id, provider_ref, reference, amount, currency) \
                 VALUES ('moflay', ?1, ?2, ?3, '100.00', 'KES')",
                rusqlite::params![row.0, row.1, row.2],
            )
        })
        .await??;
        changes.insert(pay.clone(), change);
        if case.callbacks && plan.paid && i % 2 == 0 {
            let (client, callbacks, key, d) =
                (client.clone(), callbacks.clone(), key.clone(), plan.change);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let body = callback_body(&pay, &trxn, &reference);
                let id = format!("msg_{trxn}");
                let ts = chrono::Utc::now().timestamp();
                let sig = payrecon::outbox::sign::signature(&[key], &id, ts, body.as_bytes());
                let sent = now_ms();
                let ok = client
                    .post(format!("http://127.0.0.1:{api}/v1/callbacks/moflay"))
                    .header("content-type", "application/json")
                    .header("svix-id", &id)
                    .header("svix-timestamp", ts.to_string())
                    .header("svix-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    callbacks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(pay, sent);
                }
            }));
        }
    }
    // Drain: until every session is resolved and every planted payment reported, or 15
    // (compressed) minutes after the last arrival.
    let expected = changes.len() as i64;
    let expected_unmatched = planted.len() as i64;
    let until = Instant::now() + Duration::from_secs(15 * 60).div_f64(o.compress);
    loop {
        let c = conn.clone();
        let (resolved, reported): (i64, i64) = tokio::task::spawn_blocking(move || {
            c.lock().unwrap_or_else(|e| e.into_inner()).query_row(
                "SELECT (SELECT count(*) FROM transitions), \
                        (SELECT count(*) FROM unmatched_payments WHERE reported_at IS NOT NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await??;
        let lists_done = !case.lists || reported >= expected_unmatched;
        if (resolved >= expected && lists_done) || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    // (session or payment id, time) pairs: transitions, and unmatched payments reported.
    type Times = Vec<(String, String)>;
    let (rows, reports): (Times, Times) = {
        let c = conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = c.prepare(
            "SELECT s.session_id, t.at FROM transitions t JOIN sessions s ON s.id = t.session",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = c.prepare(
            "SELECT payment_id, reported_at FROM unmatched_payments WHERE reported_at IS NOT NULL",
        )?;
        let reports = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        (rows, reports)
    };
    let callbacks = callbacks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let at_ms = |t: &str| payrecon::clock::parse(t).map(|t| t.timestamp_millis());
    let mut lags = Vec::new();
    let mut callback_lags = Vec::new();
    for (id, at) in &rows {
        let Some(at) = at_ms(at) else { continue };
        if let Some(change) = changes.get(id) {
            lags.push((at - change).max(0) as f64 / 1000.0 * o.compress);
        }
        if let Some(sent) = callbacks.get(id) {
            callback_lags.push((at - sent).max(0) as f64 / 1000.0);
        }
    }
    let mut unmatched_lags: Vec<f64> = reports
        .iter()
        .filter_map(|(id, at)| Some((planted.get(id)?, at_ms(at)?)))
        .map(|(change, at)| (at - change).max(0) as f64 / 1000.0 * o.compress)
        .collect();
    lags.sort_by(f64::total_cmp);
    callback_lags.sort_by(f64::total_cmp);
    unmatched_lags.sort_by(f64::total_cmp);
    let times = p.arrivals_since(started);
    Ok(Measured {
        case,
        sessions: changes.len(),
        unresolved: changes.len().saturating_sub(lags.len()),
        resolved: lags.len() as u64,
        lags,
        calls: times.len() as u64,
        most_minute: payrecon_testkit::Arrivals::max_in(
            &times,
            Duration::from_secs(60).div_f64(o.compress),
        ),
        most_hour: payrecon_testkit::Arrivals::max_in(
            &times,
            Duration::from_secs(3600).div_f64(o.compress),
        ),
        planted: planted.len(),
        unmatched_lags,
        callback_lags,
    })
}

/// Row 10 and its table.
pub async fn row(
    payrecon: &Path,
    dir: &Path,
    o: &MoflayOptions,
) -> anyhow::Result<(serde_json::Value, String, bool)> {
    let stop = CancellationToken::new();
    let done = futures_util::future::join_all(CASES.iter().enumerate().map(|(i, case)| {
        run_one(
            payrecon.to_path_buf(),
            dir.to_path_buf(),
            *case,
            o.clone(),
            28 + i as u64 % 4,
            stop.clone(),
        )
    }))
    .await;
    stop.cancel();
    let runs: Vec<Measured> = done.into_iter().collect::<anyhow::Result<_>>()?;

    use std::fmt::Write as _;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n10 Moflay at 100/min and 200/h: {:.0} real minutes of arrivals; PIN after 30–90 s, {:.0}% never (failed after 60–120 s); {:.0}% of payments never written (unmatched); time compressed {}×",
        o.arrivals.as_secs_f64() / 60.0,
        o.never * 100.0,
        o.unmatched * 100.0,
        o.compress
    );
    let _ = writeln!(
        table,
        "  {:<30} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10} {:>9} {:>9} {:>18}",
        "case",
        "sessions",
        "p50 s",
        "p95 s",
        "p99 s",
        "unresolved",
        "calls/res",
        "most/min",
        "most/h",
        "unmatched found"
    );
    for r in &runs {
        let found = if r.case.lists {
            format!(
                "{}/{} ≤ {:.0} s",
                r.unmatched_lags.len(),
                r.planted,
                r.unmatched_lags.last().copied().unwrap_or(0.0)
            )
        } else {
            "-".into()
        };
        let _ = writeln!(
            table,
            "  {:<30} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>11} {:>10.2} {:>9} {:>9} {:>18}",
            r.case.name,
            r.sessions,
            percentile(&r.lags, 50.0),
            percentile(&r.lags, 95.0),
            percentile(&r.lags, 99.0),
            r.unresolved,
            r.calls as f64 / r.resolved.max(1) as f64,
            r.most_minute,
            r.most_hour,
            found
        );
    }
    let callback_lags: Vec<f64> = {
        let mut all: Vec<f64> = runs.iter().flat_map(|r| r.callback_lags.clone()).collect();
        all.sort_by(f64::total_cmp);
        all
    };
    let _ = writeln!(
        table,
        "  signed callback to committed transition ({} callbacks, actual seconds): p50 {:.3} p95 {:.3} p99 {:.3}",
        callback_lags.len(),
        percentile(&callback_lags, 50.0),
        percentile(&callback_lags, 95.0),
        percentile(&callback_lags, 99.0)
    );
    let by = |name: &str| runs.iter().find(|r| r.case.name == name);
    let within_limits = runs
        .iter()
        .all(|r| r.most_minute <= 100 && r.most_hour <= 200);
    let p95 = |name: &str| by(name).map_or(f64::NAN, |r| percentile(&r.lags, 95.0));
    let all_found = runs
        .iter()
        .filter(|r| r.case.lists && r.case.provider_ref)
        .all(|r| {
            r.unmatched_lags.len() == r.planted && r.unmatched_lags.iter().all(|l| *l <= 600.0)
        });
    let callback_p99 = percentile(&callback_lags, 99.0);
    let met = within_limits
        && p95("1000/h lists") < 180.0
        && by("1000/h lists").is_some_and(|r| r.unresolved == 0)
        && p95("2000/h lists") < 300.0
        && by("2000/h lists").is_some_and(|r| r.unresolved == 0)
        && all_found
        && callback_p99 < 1.0;
    let json = json!({
        "options": {"compress": o.compress, "arrival_seconds": o.arrivals.as_secs_f64(),
                    "never": o.never, "unmatched": o.unmatched},
        "cases": runs.iter().map(|r| json!({
            "name": r.case.name, "per_hour": r.case.per_hour, "provider_ref": r.case.provider_ref,
            "lists": r.case.lists, "callbacks": r.case.callbacks, "sessions": r.sessions,
            "unresolved": r.unresolved, "p50": percentile(&r.lags, 50.0),
            "p95": percentile(&r.lags, 95.0), "p99": percentile(&r.lags, 99.0),
            "calls": r.calls, "calls_per_resolved": r.calls as f64 / r.resolved.max(1) as f64,
            "most_in_a_minute": r.most_minute, "most_in_an_hour": r.most_hour,
            "planted_unmatched": r.planted, "unmatched_found": r.unmatched_lags.len(),
            "unmatched_slowest": r.unmatched_lags.last(),
        })).collect::<Vec<_>>(),
        "callback_seconds": {"callbacks": callback_lags.len(), "p50": percentile(&callback_lags, 50.0),
            "p95": percentile(&callback_lags, 95.0), "p99": callback_p99},
        "within_limits": within_limits,
    });
    Ok((json, table, met))
}
