//! `payrecon demo`: the embedded default. Starts the simulator on an ephemeral loopback port,
//! opens a temporary ledger, creates sessions through the simulator's create endpoint covering
//! every behaviour, reconciles them to the end with short backoff, and prints a summary.
//! No config file, no network beyond loopback, no secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::{Ledger, ListFilter, NewSession, Source, Status};
use crate::outbox::Outbox;
use crate::provider;
use crate::reconcile::{self, PassOptions};
use crate::simulator::{self, Sim};

/// `(behaviour, expected final state, how many)`; PENDING means it must still be pending.
pub const SCENARIOS: &[(&str, Status, u32)] = &[
    ("complete", Status::Completed, 6),
    ("complete-1", Status::Completed, 3),
    ("complete-3", Status::Completed, 2),
    ("fail", Status::Failed, 2),
    ("fail-2", Status::Failed, 1),
    ("cancel", Status::Cancelled, 2),
    ("expire", Status::Expired, 2),
    ("pending", Status::Expired, 2),
    ("notfound", Status::Expired, 2),
    ("5xx-2.complete", Status::Completed, 2),
    ("429-1.complete", Status::Completed, 1),
    ("html-1.complete", Status::Completed, 1),
    ("truncated-1.complete", Status::Completed, 1),
    ("oversized-1.complete", Status::Completed, 1),
    ("falsesuccess-2.complete", Status::Completed, 1),
    ("complete.slow-400", Status::Completed, 2),
    ("amount", Status::Review, 2),
    ("reference", Status::Review, 1),
    ("unpaid", Status::Expired, 1),
    ("unknown", Status::Pending, 1),
];

/// The environment variable name the demo's config points `secret_env` at (never read from the
/// real environment: the demo supplies a fresh random secret).
const DEMO_SECRET_ENV: &str = "PAYRECON_DEMO_WEBHOOK_SECRET";

/// The demo's config: short backoff and max_age so that everything settles in seconds, and a
/// webhook to the demo's own receiver with a short retry schedule.
pub fn config(
    base_url: &str,
    receiver_url: &str,
    secret: &str,
    ledger: &std::path::Path,
) -> Config {
    let text = format!(
        r#"
[ledger]
path = {ledger:?}
[schedule]
batch_size = 100
concurrency = 16
lease = "30s"
[backoff]
initial = "200ms"
multiplier = 1.5
max = "1s"
jitter = 0.2
max_age = "6s"
not_found_after = 3
[http]
timeout = "2s"
retries = 3
retry_initial = "50ms"
retry_max = "1500ms"
max_body = "64KiB"
[providers.mopay]
kind = "mopay"
base_url = "{base_url}"
rate_limit = "200/s"
[events.webhook]
url = "{receiver_url}"
secret_env = "{DEMO_SECRET_ENV}"
timeout = "2s"
schedule = ["200ms", "400ms", "800ms"]
"#
    );
    let env = |var: &str| (var == DEMO_SECRET_ENV).then(|| secret.to_string());
    // Invariant: this text is fixed apart from loopback URLs, a temp path and a whsec_ secret
    // made by `new_secret`, and the `demo_config_is_valid` test parses it.
    Config::parse(&text, &env).expect("the demo config is valid")
}

/// A random `whsec_` secret.
fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..24).map(|_| fastrand::u8(..)).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What the demo's webhook receiver saw.
#[derive(Default)]
struct Received {
    /// Attempts per event id.
    attempts: BTreeMap<String, u32>,
    bad_signatures: u32,
}

/// A webhook receiver on loopback that checks each signature and answers 503 to the first
/// attempt of every fourth event, so the demo shows retries.
async fn receiver(
    key: crate::config::SigningKey,
    stop: CancellationToken,
) -> anyhow::Result<(String, Arc<Mutex<Received>>)> {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Arc<Mutex<Received>> = Arc::default();
    let state = (key, seen.clone());
    let app = axum::Router::new()
        .route(
            "/hooks",
            axum::routing::post(
                |axum::extract::State((key, seen)): axum::extract::State<(
                    crate::config::SigningKey,
                    Arc<Mutex<Received>>,
                )>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let (id, ts) = (
                        h("webhook-id"),
                        h("webhook-timestamp").parse::<i64>().unwrap_or(0),
                    );
                    let want =
                        crate::outbox::sign::signature(std::slice::from_ref(&key), &id, ts, &body);
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    if h("webhook-signature") != want {
                        seen.bad_signatures += 1;
                        return StatusCode::UNAUTHORIZED;
                    }
                    let n = seen.attempts.len();
                    let attempts = seen.attempts.entry(id).or_insert(0);
                    *attempts += 1;
                    if *attempts == 1 && n % 4 == 3 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo receiver")?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok((url, seen))
}

/// Runs the demo and returns the summary text, or an error if any session ended in a state
/// other than its behaviour's.
pub async fn run() -> anyhow::Result<String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(None);
    let stop = CancellationToken::new();
    let server = tokio::spawn(simulator::serve(
        listener,
        sim.clone(),
        stop.clone().cancelled_owned(),
    ));
    let base_url = format!("http://{addr}");
    let secret = new_secret();
    let key = crate::config::SigningKey::from_whsec(&secret).context("the demo secret")?;
    let (receiver_url, received) = receiver(key, stop.clone()).await?;
    let cfg = config(
        &base_url,
        &receiver_url,
        &secret,
        &dir.path().join("ledger.db"),
    );
    let ledger = Ledger::open(&cfg.ledger_path)?;

    // Create the sessions at the simulator, as a merchant's app would, and enqueue them.
    let client = reqwest::Client::new();
    let mut expected = BTreeMap::new();
    let mut n = 0;
    for (behaviour, want, count) in SCENARIOS {
        for _ in 0..*count {
            n += 1;
            let reference = format!("ORDER{n:04}");
            let amount = format!("{}.{:02}", 50 + n * 7, n % 100);
            let resp: serde_json::Value = client
                .post(format!("{base_url}/api/external/payment"))
                .bearer_auth("demo-key")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(
                    serde_json::json!({
                        "amount": amount,
                        "reference": reference,
                        "redirectUrl": "https://shop.example/payment-complete",
                        "description": format!("Order {n} sim:{behaviour}"),
                        "customerEmail": "customer@example.com",
                        "customerName": "Demo Customer",
                    })
                    .to_string(),
                )
                .send()
                .await
                .context("creating a session at the simulator")?
                .bytes()
                .await
                .context("reading the simulator's create answer")
                .and_then(|b| {
                    serde_json::from_slice(&b).context("the simulator's create answer is not JSON")
                })?;
            let session_id = resp["sessionId"]
                .as_str()
                .context("the simulator returned no sessionId")?
                .to_string();
            ledger.enqueue(&NewSession {
                provider: "mopay".into(),
                session_id: session_id.clone(),
                reference: Some(reference),
                amount: Some(amount),
                currency: Some("LSL".into()),
                created_at: None,
            })?;
            expected.insert(session_id, (*behaviour, *want));
        }
    }

    // Reconcile until every session is where its behaviour leads, or a deadline passes.
    let providers = provider::build(&cfg)?;
    let owner = crate::daemon::owner_id();
    let opts = PassOptions {
        owner: owner.clone(),
        all: false,
        source: Source::Poll,
        wake_outbox: None,
    };
    let webhook = cfg
        .webhook
        .clone()
        .context("the demo config has a webhook")?;
    let outbox = Outbox::new(Ledger::open(&cfg.ledger_path)?, webhook, owner)?;
    let token = CancellationToken::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut passes = 0;
    let sessions = loop {
        reconcile::run_pass(&ledger, &providers, &cfg, &opts, &token).await?;
        outbox.deliver_due(&token).await?;
        passes += 1;
        let all = ledger.list(&ListFilter {
            limit: 10_000,
            ..Default::default()
        })?;
        let settled = all.iter().all(|s| {
            expected
                .get(&s.session_id)
                .is_some_and(|(_, want)| want.as_str() == s.status)
        }) && ledger.stats(crate::clock::now())?.events_waiting == 0;
        if settled || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    let _ = server.await;

    // The summary.
    let mut out = String::new();
    let mut by_state: BTreeMap<String, (u32, i64)> = BTreeMap::new();
    let mut wrong = 0;
    let _ = writeln!(
        out,
        "payrecon demo: {} MoPay sessions on the simulator at {base_url}\n",
        sessions.len()
    );
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<10} {:>6}  reason / last error",
        "behaviour", "expected", "got", "checks"
    );
    let mut rows: Vec<_> = sessions.iter().collect();
    rows.sort_by_key(|s| s.rowid);
    for s in rows {
        let (behaviour, want) = expected
            .get(&s.session_id)
            .copied()
            .unwrap_or(("?", Status::Pending));
        let ok = want.as_str() == s.status;
        wrong += u32::from(!ok);
        let e = by_state.entry(s.status.clone()).or_default();
        e.0 += 1;
        e.1 += s.checks;
        let note = if s.status == "PENDING" {
            s.last_error.clone().unwrap_or_default()
        } else {
            ledger
                .transitions(s.rowid)?
                .last()
                .and_then(|t| t.reason.clone())
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:<10} {:>6}  {}{}",
            behaviour,
            want.as_str(),
            s.status,
            s.checks,
            note,
            if ok { "" } else { "   <-- unexpected" }
        );
    }
    let stats = ledger.stats(crate::clock::now())?;
    let _ = writeln!(out, "\n{:<10} {:>8} {:>8}", "state", "sessions", "checks");
    for (state, (count, checks)) in &by_state {
        let _ = writeln!(out, "{state:<10} {count:>8} {checks:>8}");
    }
    let total_checks: i64 = by_state.values().map(|v| v.1).sum();
    let _ = writeln!(
        out,
        "\n{} passes, {} checks, {} provider calls (retries included), {} events written, {:.1}s elapsed",
        passes,
        total_checks,
        sim.status_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        stats.events_total,
        started.elapsed().as_secs_f64()
    );
    let (delivered, retried, dead) = outbox.counters.snapshot();
    let received = received.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(
        out,
        "webhook: {delivered} events delivered to {receiver_url} ({retried} attempts retried after a 503, {dead} dead); \
         the receiver saw {} distinct ids in {} requests, {} bad signatures",
        received.attempts.len(),
        received.attempts.values().sum::<u32>(),
        received.bad_signatures
    );
    if delivered != stats.events_total as u64 || received.bad_signatures > 0 {
        wrong += 1;
    }
    if wrong > 0 {
        anyhow::bail!("{out}\n{wrong} session(s) did not reach their expected state");
    }
    let _ = writeln!(
        out,
        "every session reached the state its behaviour leads to"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_config_is_valid() {
        let cfg = super::config(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/h",
            &super::new_secret(),
            std::path::Path::new("/tmp/x.db"),
        );
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.webhook.unwrap().secrets.len(), 1);
    }
}
