//! Row 9, a flood of callbacks: 100 young sessions due at once at a provider limited to
//! 20 calls a second, first alone (the baseline), then while 2,000 provider callbacks for other
//! known PENDING sessions arrive as fast as 64 connections send them and 50 `verify` calls (what
//! a return-URL handler makes) are made one after another. Measured: the young sessions' first
//! check (creation to committed answer: each answers COMPLETED at its first check), `verify`'s
//! latency, the daemon's threads, and the calls the provider saw beyond its limit. Goals
//! (issue 26): first checks at most 1.5× the baseline, `verify` p99 under 2 s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const YOUNG: usize = 100;
const FLOOD: usize = 2_000;
const VERIFIES: usize = 50;
const LIMIT: usize = 20;

/// What one run measured.
struct Run {
    /// First-check delays of the young sessions, seconds, sorted.
    first: Vec<f64>,
    /// `verify` latencies, seconds, sorted.
    verify: Vec<f64>,
    threads: u32,
    refused_by_provider: u64,
    flood_seconds: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn threads(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn run_one(payrecon: &Path, dir: &Path, flood: bool) -> anyhow::Result<Run> {
    let stop = CancellationToken::new();
    let provider = crate::truth::provider(LIMIT, &stop).await?;
    let name = if flood { "flood" } else { "baseline" };
    let ledger = dir.join(format!("{name}.db"));
    let api_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[ledger]
path = {ledger:?}
[schedule]
cron = "* * * * * *"
poll = "1s"
[http]
timeout = "5s"
retries = 2
[api]
listen = "127.0.0.1:{api_port}"
token_env = "BENCH_API_TOKEN"
[providers.mopay]
kind = "mopay"
base_url = "{url}"
rate_limit = "{LIMIT}/s"
"#,
            url = provider.url
        ),
    )?;
    drop(payrecon::ledger::Ledger::open(&ledger)?);
    // The flood's sessions and the verified ones: known, PENDING, not due for a day (only a
    // callback or a verify checks them).
    let conn = Arc::new(std::sync::Mutex::new(rusqlite::Connection::open(&ledger)?));
    {
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        c.busy_timeout(Duration::from_secs(10))?;
        let tomorrow = payrecon::clock::format(payrecon::clock::add(
            payrecon::clock::now(),
            Duration::from_secs(86_400),
        ));
        c.execute_batch("BEGIN")?;
        for (prefix, n, behaviour) in [("f", FLOOD, "pending"), ("v", VERIFIES, "complete")] {
            for i in 0..n {
                let id = format!("{prefix}{i}");
                provider.sim.insert(
                    &id,
                    "100.00",
                    "R",
                    behaviour.parse().map_err(anyhow::Error::msg)?,
                );
                c.execute(
                    "INSERT INTO sessions (provider, session_id, reference, amount, currency, next_check_at) \
                     VALUES ('mopay', ?1, 'R', '100.00', 'LSL', ?2)",
                    rusqlite::params![id, tomorrow],
                )?;
            }
        }
        for i in 0..YOUNG {
            provider.sim.insert(
                &format!("y{i}"),
                "100.00",
                "R",
                "complete".parse().map_err(anyhow::Error::msg)?,
            );
        }
        c.execute_batch("COMMIT")?;
    }
    let daemon = crate::truth::daemon(payrecon, &config)?;
    let pid = daemon.0.id();
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let up = Instant::now();
    while client
        .get(format!("{api}/v1/openapi.json"))
        .bearer_auth("bench-api-token")
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(30),
            "the daemon did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The young sessions, as an application writes them: due at once.
    let c = conn.clone();
    tokio::task::spawn_blocking(move || -> rusqlite::Result<()> {
        let c = c.lock().unwrap_or_else(|p| p.into_inner());
        c.execute_batch("BEGIN")?;
        for i in 0..YOUNG {
            c.execute(
                "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
                 VALUES ('mopay', ?1, 'R', '100.00', 'LSL')",
                [format!("y{i}")],
            )?;
        }
        c.execute_batch("COMMIT")
    })
    .await??;
    let started = Instant::now();
    let flood_task = flood.then(|| {
        let (client, api) = (client.clone(), api.clone());
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            let n = futures_util::stream::iter(0..FLOOD)
                .map(|i| {
                    let (client, api) = (client.clone(), api.clone());
                    async move {
                        client
                            .post(format!("{api}/v1/callbacks/mopay?session_id=f{i}"))
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED)
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<bool>>()
                .await
                .iter()
                .filter(|ok| !**ok)
                .count();
            let not_accepted = n;
            (started.elapsed().as_secs_f64(), not_accepted)
        })
    });
    let mut verify = Vec::new();
    let mut most_threads = 0;
    for i in 0..VERIFIES {
        let t = Instant::now();
        let r = client
            .post(format!("{api}/v1/sessions/mopay/v{i}/verify"))
            .bearer_auth("bench-api-token")
            .send()
            .await
            .context("verify")?;
        anyhow::ensure!(r.status().is_success(), "verify answered {}", r.status());
        verify.push(t.elapsed().as_secs_f64());
        most_threads = most_threads.max(threads(pid));
    }
    let (flood_seconds, not_accepted) = match flood_task {
        Some(t) => t.await?,
        None => (0.0, 0),
    };
    anyhow::ensure!(
        not_accepted == 0,
        "{not_accepted} callbacks not answered 202"
    );
    // Every young session answered.
    let deadline = Instant::now() + Duration::from_secs(300);
    let first = loop {
        let c = conn.clone();
        let rows = tokio::task::spawn_blocking(move || -> rusqlite::Result<Vec<f64>> {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            let mut s = c.prepare(
                "SELECT (julianday(resolved_at) - julianday(created_at)) * 86400.0 FROM sessions \
                 WHERE session_id LIKE 'y%' AND status <> 'PENDING'",
            )?;
            s.query_map([], |r| r.get(0))?.collect()
        })
        .await??;
        most_threads = most_threads.max(threads(pid));
        if rows.len() == YOUNG {
            break rows;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {YOUNG} young sessions answered within 5 minutes",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(daemon);
    stop.cancel();
    let mut first = first;
    first.sort_by(f64::total_cmp);
    verify.sort_by(f64::total_cmp);
    Ok(Run {
        first,
        verify,
        threads: most_threads,
        refused_by_provider: provider.refused(),
        flood_seconds,
    })
}

/// Row 9: the figures, their text, and whether both goals were met.
pub async fn row(payrecon: &Path, dir: &Path) -> anyhow::Result<(serde_json::Value, String, bool)> {
    let base = run_one(payrecon, dir, false).await?;
    let flood = run_one(payrecon, dir, true).await?;
    let ratio = percentile(&flood.first, 95.0) / percentile(&base.first, 95.0);
    let verify_p99 = percentile(&flood.verify, 99.0);
    let met = ratio <= 1.5 && verify_p99 < 2.0;
    let figures = |r: &Run| {
        json!({
            "first_check_p50": percentile(&r.first, 50.0),
            "first_check_p95": percentile(&r.first, 95.0),
            "first_check_max": percentile(&r.first, 100.0),
            "verify_p50": percentile(&r.verify, 50.0),
            "verify_p99": percentile(&r.verify, 99.0),
            "threads": r.threads,
            "refused_by_provider": r.refused_by_provider,
            "flood_seconds": r.flood_seconds,
        })
    };
    let json = json!({
        "young": YOUNG, "callbacks": FLOOD, "verifies": VERIFIES, "limit_per_second": LIMIT,
        "baseline": figures(&base), "flood": figures(&flood),
        "first_check_p95_ratio": ratio,
    });
    let line = |name: &str, r: &Run| {
        format!(
            "  {name:<9} first check p50 {:.2} s p95 {:.2} s max {:.2} s; verify p50 {:.3} s p99 {:.3} s; {} threads; {} calls over the limit{}\n",
            percentile(&r.first, 50.0),
            percentile(&r.first, 95.0),
            percentile(&r.first, 100.0),
            percentile(&r.verify, 50.0),
            percentile(&r.verify, 99.0),
            r.threads,
            r.refused_by_provider,
            if r.flood_seconds > 0.0 {
                format!("; {FLOOD} callbacks sent in {:.1} s", r.flood_seconds)
            } else {
                String::new()
            }
        )
    };
    let text = format!(
        "\nrow 9, a flood of callbacks ({YOUNG} young sessions, {LIMIT}/s):\n{}{}",
        line("baseline", &base),
        line("flood", &flood)
    );
    Ok((json, text, met))
}
