//! `payrecon demo`: the embedded default. Starts the simulator on an ephemeral loopback port
//! (speaking all five providers' status endpoints, demanding credentials), opens a temporary
//! ledger, creates MoPay sessions through the simulator's create endpoint covering every
//! behaviour plus sessions at the other four providers, reconciles them to the end with short
//! backoff while a webhook receiver checks every delivery, and prints a summary per provider.
//! No config file, no network beyond loopback, no secrets of the user's.

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
use crate::simulator::{self, Kind, Sim};

/// MoPay, the primary provider: every behaviour. `(behaviour, expected final state, how many)`;
/// PENDING means it must still be pending at the end.
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
    ("underpaid", Status::Review, 1),
    ("reference", Status::Review, 1),
    // COMPLETED with transactionStatus failed, and a word outside the table: answers payrecon
    // cannot act on, so REVIEW once max_age has passed — never EXPIRED, never a guess.
    ("unpaid", Status::Review, 1),
    ("unknown", Status::Review, 1),
];

/// The other four providers: behaviours whose outcome every provider's table agrees on.
pub const OTHER_SCENARIOS: &[(&str, Status, u32)] = &[
    ("complete", Status::Completed, 2),
    ("complete-3", Status::Completed, 1),
    ("fail", Status::Failed, 1),
    ("notfound", Status::Expired, 1),
    ("5xx-1.complete", Status::Completed, 1),
    ("429-1.complete", Status::Completed, 1),
    ("amount", Status::Review, 1),
    ("underpaid", Status::Review, 1),
    ("pending", Status::Expired, 1),
];

/// The environment variable names the demo's config points at (never read from the real
/// environment: the demo supplies fresh random values).
const DEMO_SECRET_ENV: &str = "PAYRECON_DEMO_WEBHOOK_SECRET";
const DEMO_KEY_ENV: &str = "PAYRECON_DEMO_PROVIDER_KEY";
const DEMO_PUBLIC_ENV: &str = "PAYRECON_DEMO_PUBLIC_KEY";

/// The demo's config: short backoff and max_age so that everything settles in seconds, all five
/// providers on the simulator (Little long-polling), and a webhook to the demo's own receiver.
pub fn config(
    base_url: &str,
    receiver_url: &str,
    secret: &str,
    key: &str,
    ledger: &std::path::Path,
) -> Config {
    let providers = simulator::providers_toml(base_url, DEMO_KEY_ENV, DEMO_PUBLIC_ENV, "200/s")
        .replacen(
            "kind = \"little\"",
            "kind = \"little\"\nlong_poll = true\nlong_poll_timeout = \"3s\"",
            1,
        );
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
# Long enough that a session needing several pending answers resolves first on a busy machine.
max_age = "10s"
not_found_after = 3
[http]
timeout = "2s"
retries = 3
retry_initial = "50ms"
retry_max = "1500ms"
max_body = "64KiB"
[events.webhook]
url = "{receiver_url}"
secret_env = "{DEMO_SECRET_ENV}"
timeout = "5s"
# Generous: on a busy machine a slow answer must not kill an event the demo expects delivered.
schedule = ["200ms", "400ms", "800ms", "1s", "2s", "4s"]
{providers}"#
    );
    let env = |var: &str| match var {
        DEMO_SECRET_ENV => Some(secret.to_string()),
        DEMO_KEY_ENV => Some(key.to_string()),
        DEMO_PUBLIC_ENV => Some("pk_demo_public".to_string()),
        _ => None,
    };
    // Invariant: this text is fixed apart from loopback URLs, a temp path and random secrets
    // of a fixed shape, and the `demo_config_is_valid` test parses it.
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

/// Whether a `webhook-signature` header holds a `v1` signature of `id.timestamp.body` under
/// `key`, written from the Standard Webhooks specification (HMAC-SHA256, base64, entries
/// separated by spaces) rather than with payrecon's own signer, so the demo checks payrecon
/// against the specification and not against itself.
fn standard_webhooks_verifies(
    key: &[u8],
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

/// A webhook receiver on loopback that checks each signature and answers 503 to the first
/// attempt of every fourth event, so the demo shows retries.
async fn receiver(
    key: Vec<u8>,
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
                    Vec<u8>,
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
                    let verified = standard_webhooks_verifies(
                        &key,
                        &id,
                        &ts.to_string(),
                        &body,
                        &h("webhook-signature"),
                    );
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    if !verified {
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

/// Creates one MoPay session at the simulator as a merchant's app would; returns its id.
async fn create_mopay(
    client: &reqwest::Client,
    base_url: &str,
    key: &str,
    n: usize,
    reference: &str,
    amount: &str,
    behaviour: &str,
) -> anyhow::Result<String> {
    let resp: serde_json::Value = client
        .post(format!("{base_url}/api/external/payment"))
        .bearer_auth(key)
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
    Ok(resp["sessionId"]
        .as_str()
        .context("the simulator returned no sessionId")?
        .to_string())
}

/// Runs the demo and returns the summary text, or an error (with the summary) if any session
/// ended in a state other than its behaviour's or any event was not delivered.
pub async fn run() -> anyhow::Result<String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let stop = CancellationToken::new();
    let (sim, key, base_url, server) = start_simulator(&stop).await?;
    let secret = new_secret();
    // The receiver reads the key as the Standard Webhooks specification says, not as payrecon
    // does: base64 after `whsec_`.
    use base64::Engine as _;
    let webhook_key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .context("the demo secret")?;
    let (receiver_url, received) = receiver(webhook_key, stop.clone()).await?;
    let cfg = config(
        &base_url,
        &receiver_url,
        &secret,
        &key,
        &dir.path().join("ledger.db"),
    );
    let ledger = Ledger::connect(&cfg.ledger)?;

    let expected = create_sessions(&ledger, &sim, &base_url, &key).await?;

    let webhook = cfg
        .webhook
        .clone()
        .context("the demo config has a webhook")?;
    let outbox = Outbox::new(
        Ledger::connect(&cfg.ledger)?,
        webhook,
        crate::daemon::owner_id(),
    )?;
    let (sessions, passes) = settle(&ledger, &cfg, &outbox, &expected).await?;
    stop.cancel();
    let _ = server.await;

    // The summary: MoPay session by session, then every provider in one table.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "payrecon demo: {} sessions at {} providers, simulated at {base_url}\n",
        sessions.len(),
        Kind::COUNT
    );
    let mut wrong = tables(&mut out, &ledger, &sessions, &expected, &sim)?;
    let stats = ledger.stats(crate::clock::now())?;
    let (delivered, retried, dead) = outbox.counters.snapshot();
    let received = received.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(
        out,
        "\nwebhook: {delivered} events delivered to {receiver_url} ({retried} attempts retried after a 503, {dead} dead); \
         the receiver saw {} distinct ids in {} requests, {} bad signatures",
        received.attempts.len(),
        received.attempts.values().sum::<u32>(),
        received.bad_signatures
    );
    let _ = writeln!(
        out,
        "{passes} passes, {} provider calls (retries and held long polls included), {} events written, {:.1}s elapsed",
        sim.status_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        stats.events_total,
        started.elapsed().as_secs_f64()
    );
    if delivered != stats.events_total as u64 || received.bad_signatures > 0 {
        wrong += 1;
    }
    if wrong > 0 {
        anyhow::bail!("{out}\n{wrong} session(s) or deliveries did not reach their expected state");
    }
    let _ = writeln!(
        out,
        "every session reached the state its behaviour leads to, and every event was delivered"
    );
    Ok(out)
}

/// A simulator on a loopback port of its own, demanding a fresh key, until `stop`: the
/// simulator, its key, its URL and its task.
async fn start_simulator(
    stop: &CancellationToken,
) -> anyhow::Result<(
    Arc<Sim>,
    String,
    String,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let addr = listener.local_addr()?;
    let key: String = format!(
        "sk_demo_{}",
        (0..16)
            .map(|_| fastrand::alphanumeric())
            .collect::<String>()
    );
    let sim = Sim::new(Some(key.clone()));
    let server = tokio::spawn(simulator::serve(
        listener,
        sim.clone(),
        stop.clone().cancelled_owned(),
    ));
    Ok((sim, key, format!("http://{addr}"), server))
}

/// Sessions with every behaviour at every provider: MoPay's through its create endpoint, the
/// others registered at the simulator. What each should reach, by session id.
async fn create_sessions(
    ledger: &Ledger,
    sim: &Sim,
    base_url: &str,
    key: &str,
) -> anyhow::Result<BTreeMap<String, (&'static str, Status)>> {
    let client = reqwest::Client::new();
    let mut expected: BTreeMap<String, (&'static str, Status)> = BTreeMap::new();
    let mut n = 0;
    for kind in Kind::ALL {
        let demo = simulator::shape(kind).demo();
        let scenarios: Vec<_> = if demo.id.is_none() {
            SCENARIOS.to_vec()
        } else {
            [OTHER_SCENARIOS, demo.extra].concat()
        };
        for (behaviour, want, count) in &scenarios {
            for _ in 0..*count {
                n += 1;
                let reference = format!("ORDER{n:04}");
                let amount = format!("{}.{:02}", 50 + n * 7, (n * 37) % 100);
                let session_id = match demo.id {
                    None => {
                        create_mopay(&client, base_url, key, n, &reference, &amount, behaviour)
                            .await?
                    }
                    Some(name) => {
                        let id = name(n);
                        sim.insert_in(
                            &id,
                            &amount,
                            &reference,
                            demo.currency,
                            behaviour.parse().map_err(anyhow::Error::msg)?,
                        );
                        id
                    }
                };
                ledger.enqueue(&NewSession {
                    provider: kind.name().into(),
                    session_id: session_id.clone(),
                    reference: Some(reference),
                    amount: Some(amount.parse()?),
                    currency: Some(demo.currency.into()),
                    created_at: None,
                    provider_ref: None,
                })?;
                expected.insert(session_id, (*behaviour, *want));
            }
        }
    }
    Ok(expected)
}

/// Passes and deliveries until every session is where its behaviour leads and every event is
/// delivered, or 45 s pass: the sessions as they end, and how many passes it took.
async fn settle(
    ledger: &Ledger,
    cfg: &Config,
    outbox: &Outbox,
    expected: &BTreeMap<String, (&'static str, Status)>,
) -> anyhow::Result<(Vec<crate::ledger::Session>, u32)> {
    let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease)?;
    reconcile::share_budgets(&providers, ledger);
    let opts = PassOptions {
        owner: crate::daemon::owner_id(),
        all: false,
        source: Source::Poll,
        wake_outbox: None,
        progress: None,
        drain: true,
        caller: crate::provider::budget::Caller::Regular,
    };
    let token = CancellationToken::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut passes = 0;
    let sessions = loop {
        reconcile::run_pass(ledger, &providers, cfg, &opts, &token).await?;
        outbox.deliver_due(&token).await?;
        passes += 1;
        // The demo's own ledger holds only rows it wrote: none is unreadable.
        let all: Vec<_> = ledger
            .list(&ListFilter {
                limit: 10_000,
                ..Default::default()
            })?
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let settled = all.iter().all(|s| {
            expected
                .get(&s.session_id)
                .is_some_and(|(_, want)| *want == s.status)
        }) && ledger.stats(crate::clock::now())?.events_waiting == 0;
        if settled || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok((sessions, passes))
}

/// The summary's tables: MoPay session by session (and any session elsewhere that ended where
/// its behaviour does not lead), then every provider. How many sessions ended wrong.
fn tables(
    out: &mut String,
    ledger: &Ledger,
    sessions: &[crate::ledger::Session],
    expected: &BTreeMap<String, (&'static str, Status)>,
    sim: &Sim,
) -> anyhow::Result<u32> {
    let _ = writeln!(out, "MoPay, every behaviour:");
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<10} {:>6}  reason / last error",
        "behaviour", "expected", "got", "checks"
    );
    let mut wrong = 0;
    let mut rows: Vec<_> = sessions.iter().collect();
    rows.sort_by_key(|s| s.rowid);
    let mut per_provider: BTreeMap<&str, (BTreeMap<Status, u32>, i64, u32)> = BTreeMap::new();
    for s in &rows {
        let (behaviour, want) = expected
            .get(&s.session_id)
            .copied()
            .unwrap_or(("?", Status::Pending));
        let ok = want == s.status;
        wrong += u32::from(!ok);
        let kind = Kind::ALL
            .iter()
            .map(|k| k.name())
            .find(|k| *k == s.provider)
            .unwrap_or("?");
        let e = per_provider.entry(kind).or_default();
        *e.0.entry(s.status).or_default() += 1;
        e.1 += s.checks;
        e.2 += 1;
        if s.provider == "mopay" || !ok {
            let note = if s.status == Status::Pending {
                s.last_error.clone().unwrap_or_default()
            } else {
                ledger
                    .transitions(s.rowid)?
                    .last()
                    .and_then(|t| t.reason.clone())
                    .unwrap_or_default()
            };
            let label = if s.provider == "mopay" {
                behaviour.to_string()
            } else {
                format!("{}:{behaviour}", s.provider)
            };
            let _ = writeln!(
                out,
                "{:<24} {:<10} {:<10} {:>6}  {}{}",
                label,
                want.as_str(),
                s.status,
                s.checks,
                note,
                if ok { "" } else { "   <-- unexpected" }
            );
        }
    }
    provider_table(out, per_provider, sim);
    Ok(wrong)
}

/// The demo's table of every provider: sessions by state, checks, calls, and calls per
/// resolved session.
fn provider_table(
    out: &mut String,
    mut per_provider: BTreeMap<&str, (BTreeMap<Status, u32>, i64, u32)>,
    sim: &Sim,
) {
    let _ = writeln!(out, "\nEvery provider:");
    let _ = write!(out, "{:<10} {:>8}", "provider", "sessions");
    for st in Status::ALL {
        let _ = write!(out, " {:>9}", st.as_str());
    }
    let _ = writeln!(
        out,
        " {:>7} {:>6} {:>13}",
        "checks", "calls", "calls/resolved"
    );
    for kind in Kind::ALL {
        let (states, checks, count) = per_provider.remove(kind.name()).unwrap_or_default();
        let _ = write!(out, "{:<10} {count:>8}", kind.name());
        for st in Status::ALL {
            let _ = write!(out, " {:>9}", states.get(&st).copied().unwrap_or(0));
        }
        let resolved = count - states.get(&Status::Pending).copied().unwrap_or(0);
        let calls = sim.requests_for(kind);
        let _ = writeln!(
            out,
            " {checks:>7} {calls:>6} {:>13.2}",
            calls as f64 / f64::from(resolved.max(1))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::standard_webhooks_verifies;

    /// The demo receiver's own verifier accepts the published Standard Webhooks test vector
    /// (among other entries of the header) and refuses it altered.
    #[test]
    fn the_receiver_verifies_the_published_vector() {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(standard_webhooks_verifies(&key, id, ts, body, sig));
        assert!(standard_webhooks_verifies(
            &key,
            id,
            ts,
            body,
            &format!("v1,bm9wZQ== {sig}")
        ));
        assert!(!standard_webhooks_verifies(
            &key,
            id,
            "1614265331",
            body,
            sig
        ));
        assert!(!standard_webhooks_verifies(
            &key,
            id,
            ts,
            br#"{"test": 1}"#,
            sig
        ));
    }

    #[test]
    fn demo_config_is_valid() {
        let cfg = super::config(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/h",
            &super::new_secret(),
            "sk_demo_x",
            std::path::Path::new("/tmp/x.db"),
        );
        assert_eq!(cfg.providers.len(), crate::provider::Kind::COUNT);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert!(cfg.require_secrets().is_ok());
        assert_eq!(cfg.webhook.unwrap().secrets.len(), 1);
    }
}
