//! `payrecon demo`: the embedded default. Starts the simulator on an ephemeral loopback port,
//! opens a temporary ledger, creates sessions through the simulator's create endpoint covering
//! every behaviour, reconciles them to the end with short backoff, and prints a summary.
//! No config file, no network beyond loopback, no secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::{Ledger, ListFilter, NewSession, Source, Status};
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

/// The demo's config: short backoff and max_age so that everything settles in seconds.
pub fn config(base_url: &str, ledger: &std::path::Path) -> Config {
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
"#
    );
    // Invariant: this text is fixed apart from a loopback URL and a temp path, and the
    // `demo_config_is_valid` test parses it.
    Config::parse(&text, &|_| None).expect("the demo config is valid")
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
    let cfg = config(&base_url, &dir.path().join("ledger.db"));
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
    let opts = PassOptions {
        owner: crate::daemon::owner_id(),
        all: false,
        source: Source::Poll,
    };
    let token = CancellationToken::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut passes = 0;
    let sessions = loop {
        reconcile::run_pass(&ledger, &providers, &cfg, &opts, &token).await?;
        passes += 1;
        let all = ledger.list(&ListFilter {
            limit: 10_000,
            ..Default::default()
        })?;
        let settled = all.iter().all(|s| {
            expected
                .get(&s.session_id)
                .is_some_and(|(_, want)| want.as_str() == s.status)
        });
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
        let cfg = super::config("http://127.0.0.1:9", std::path::Path::new("/tmp/x.db"));
        assert_eq!(cfg.providers.len(), 1);
    }
}
