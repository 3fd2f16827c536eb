//! The doors opened with callbacks, hints, the shared budget and the listeners, tried as an
//! attacker and a careless operator would, over loopback against the real binary
//! (docs/security.md names each test). Each fails on the code before its bound.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::ops::{daemon, daemon_with, healthz, listeners, signing_env};
use crate::support::sql::DirectSql;
use crate::support::{Env, Guard, count, one, output, signal_and_wait, text, wait_for};

/// A series' value in a `/metrics` answer (`name{labels}` as written there).
async fn metric(client: &reqwest::Client, admin: &str, series: &str) -> Option<f64> {
    let body = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A provider's callback route answers alike for a known PENDING, a final and an unknown
/// session (no session data, no existence oracle), and its errors — too large, wrong method,
/// a path that is not UTF-8 — are the API's JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_reveals_nothing_and_errs_in_json() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, true);
    let mut env = env;
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    env.session(&l, "k_pending", "pending");
    env.session(&l, "k_final", "complete");
    l.execute_batch("UPDATE sessions SET status = 'COMPLETED' WHERE session_id = 'k_final'")
        .unwrap();
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for id in ["k_pending", "k_final", "k_nobody"] {
        let r = client
            .post(format!("{api}/v1/callbacks/mopay?session_id={id}"))
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    for a in &answers {
        assert_eq!(a, &(202, r#"{"accepted":true}"#.to_string()), "{answers:?}");
    }
    let json = |r: reqwest::Response| async move {
        let code = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
        (code, kind, body)
    };
    let big = vec![b'x'; 100 * 1024];
    for (r, want) in [
        (
            client
                .post(format!("{api}/v1/callbacks/mopay"))
                .body(big)
                .send()
                .await
                .unwrap(),
            413,
        ),
        (
            client
                .get(format!("{api}/v1/callbacks/mopay"))
                .send()
                .await
                .unwrap(),
            405,
        ),
        (
            client
                .post(format!("{api}/v1/callbacks/%FF%FE"))
                .body("{}")
                .send()
                .await
                .unwrap(),
            400,
        ),
    ] {
        let (code, kind, body) = json(r).await;
        assert_eq!(code, want, "{body}");
        assert_eq!(kind.as_deref(), Some("application/json"), "{want}: {body}");
        assert!(body["error"].is_string(), "{want}: {body}");
    }
}

/// 1,500 callbacks for known PENDING sessions (more than a provider's hint queue holds) while
/// 20 young sessions are due: the pass checks the young ones while hints take at most their
/// share of the budget, an API `verify` during the flood is a real check, the process does
/// not grow a thread per callback, excess hints are dropped and counted, and SIGTERM during
/// the backlog exits 0 holding no lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_callbacks_starves_neither_the_pass_nor_verify() {
    let env = Env::start().await;
    env.set("rate_limit", "\"20/s\"");
    let (admin, api) = listeners(&env, false);
    let l = env.ledger();
    const FLOOD: usize = 1500;
    for i in 0..FLOOD {
        env.sim
            .insert(&format!("f{i}"), "100.00", "R", "pending".parse().unwrap());
    }
    // Known PENDING sessions, not due for a day: only hints would check them.
    let mut sql = String::from("BEGIN;");
    for i in 0..FLOOD {
        sql.push_str(&format!(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency, next_check_at) \
             VALUES ('mopay', 'f{i}', 'R', '100.00', 'LSL', '2099-01-01T00:00:00.000Z');"
        ));
    }
    sql.push_str("COMMIT;");
    l.execute_batch(&sql).unwrap();
    let mut d = daemon(&env, &[&admin, &api]).await;
    for i in 0..20 {
        env.session(&l, &format!("young{i}"), "complete");
    }
    // The flood arrives while the pass works on the young sessions (whatever the machine's
    // load, the pass has started before the count below begins).
    assert!(
        wait_for(Duration::from_secs(30), || {
            count(
                &l,
                "SELECT count(*) FROM sessions WHERE session_id LIKE 'young%' \
                 AND (lease_owner IS NOT NULL OR status <> 'PENDING')",
            ) > 0
        })
        .await,
        "the pass took up the young sessions"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let flood = {
        let (client, api) = (client.clone(), api.clone());
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            futures_util::stream::iter(0..FLOOD)
                .map(|i| {
                    let (client, api) = (client.clone(), api.clone());
                    async move {
                        client
                            .post(format!("{api}/v1/callbacks/mopay?session_id=f{i}"))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
        })
    };
    // verify during the flood: a check with the provider, not a stale PENDING.
    let r = client
        .post(format!("{api}/v1/sessions/mopay/young0/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    let young_done = || {
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE session_id LIKE 'young%' AND status = 'COMPLETED'",
        ) == 20
    };
    assert!(
        wait_for(Duration::from_secs(60), young_done).await,
        "the young sessions were checked"
    );
    let hinted = count(
        &l,
        "SELECT coalesce(sum(checks), 0) FROM sessions WHERE session_id LIKE 'f%'",
    );
    eprintln!("hinted checks before the young: {hinted}");
    // At 20/s, 20 young checks take about a second of the budget; hints get one slot in four
    // while they wait (and all of it before the pass starts). Unbounded, every callback's
    // check took its slot first: about 1,500 before the young.
    assert!(
        hinted < 100,
        "{hinted} hinted checks before the 20 young sessions"
    );
    let codes = flood.await.unwrap();
    assert!(codes.iter().all(|c| matches!(c, Ok(202))), "{codes:?}");
    let dropped = metric(&client, &admin, "payrecon_hints_total{outcome=\"dropped\"}")
        .await
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "a full hint queue drops and counts");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.0.id())).unwrap();
    let threads: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(threads < 64, "{threads} threads after the flood");
    // The backlog is still being worked: SIGTERM gives back every lease and exits 0.
    let exit = signal_and_wait(&mut d, "TERM", Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL"
        ),
        0,
        "no lease held after a stop"
    );
}

/// A `call_budget` row pushed years ahead (a hand edit, a `rate_limit` typo since fixed, a
/// clock that ran ahead) is clamped: sessions are checked, none records a 429 no provider
/// sent, none is rescheduled past its own schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_row_far_ahead_is_clamped_not_a_stall() {
    let env = Env::start().await;
    env.set("rate_limit", "\"20/s\"");
    let (admin, api) = listeners(&env, false);
    let l = env.ledger();
    env.session(&l, "b0", "complete");
    let _d = daemon(&env, &[&admin, &api]).await;
    assert!(
        wait_for(Duration::from_secs(30), || {
            one(&l, "SELECT status FROM sessions WHERE session_id = 'b0'") == "COMPLETED"
        })
        .await
    );
    assert_eq!(count(&l, "SELECT count(*) FROM call_budget"), 1);
    // Ten years ahead.
    let far = (chrono::Utc::now().timestamp_micros()) + 10 * 365 * 86_400 * 1_000_000;
    l.execute_batch(&format!("UPDATE call_budget SET next_at = {far}"))
        .unwrap();
    for i in 1..=5 {
        env.session(&l, &format!("b{i}"), "complete");
    }
    assert!(
        wait_for(Duration::from_secs(30), || {
            count(
                &l,
                "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'",
            ) == 6
        })
        .await,
        "sessions checked despite the row: {:?}",
        l.query_strings("SELECT session_id, status, next_check_at, last_error FROM sessions")
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE last_error LIKE '%429%'"
        ),
        0
    );
    let next: i64 = one(&l, "SELECT next_at FROM call_budget").parse().unwrap();
    assert!(
        next < chrono::Utc::now().timestamp_micros() + 3_600_000_000,
        "the row was set back"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        metric(&client, &admin, "payrecon_call_budget_clamped_total").await,
        Some(1.0)
    );
}

/// Idle and half-open connections cannot take the listeners or hold up a stop: beyond the
/// cap a connection is closed at once and counted while `/healthz` (its own listener) still
/// answers; a request head that never ends is cut after the header timeout; SIGTERM with all
/// of them open exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_bound_what_clients_hold_open() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, false);
    let mut d = daemon(&env, &[&admin, &api]).await;
    let api_port: u16 = api.rsplit(':').next().unwrap().parse().unwrap();
    // A request head that never ends.
    let mut half = TcpStream::connect(("127.0.0.1", api_port)).unwrap();
    half.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // More idle connections than the listener holds.
    let idle: Vec<TcpStream> = (0..payrecon::listen::MOST_CONNECTIONS + 100)
        .map(|_| TcpStream::connect(("127.0.0.1", api_port)).unwrap())
        .collect();
    let client = reqwest::Client::new();
    let mut refused = None;
    wait_for(Duration::from_secs(20), || {
        refused = crate::support::block(metric(
            &client,
            &admin,
            "payrecon_http_connections_refused_total{listener=\"api\"}",
        ));
        refused.is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    assert_eq!(healthz(&client, &admin).await.0, 200);
    // The half-open head is cut by the server: the read ends (EOF or reset), it does not hang.
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 256];
    let ended = tokio::task::spawn_blocking(move || {
        let r = half.read(&mut buf);
        !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
    })
    .await
    .unwrap();
    assert!(ended, "a request head that never ends is cut");
    // New half-open ones, then stop with everything still open.
    let mut again = TcpStream::connect(("127.0.0.1", api_port)).unwrap();
    again.write_all(b"POST /v1/sessions HTTP/1.1\r\n").unwrap();
    let exit = signal_and_wait(&mut d, "TERM", Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "a stop never waits on clients");
    drop(idle);
}

/// `/healthz` and `/metrics` share one recent stats reading: 200 of them at once read the
/// ledger's stats a few times, not 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_share_one_stats_reading() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let all: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let url = format!("{admin}/{}", if i % 2 == 0 { "healthz" } else { "metrics" });
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for t in all {
        assert!(t.await.unwrap().unwrap().is_success());
    }
    let reads = metric(&client, &admin, "payrecon_stats_reads_total")
        .await
        .unwrap_or(0.0);
    assert!((1.0..=5.0).contains(&reads), "{reads} stats readings");
}

/// SIGHUP (logrotate's habit, `systemctl reload`) stops `run` cleanly with exit status 3,
/// which the unit restarts on, holding no lease; SIGUSR1 is logged and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_cleanly_to_be_restarted() {
    let env = Env::start().await;
    let (admin, api) = listeners(&env, false);
    let log = env.dir.path().join("run.log");
    let mut d = daemon_with(
        &env,
        &[&admin, &api],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    )
    .await;
    let l = env.ledger();
    env.session(&l, "s1", "pending");
    let pid = d.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap();
    let client = reqwest::Client::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("SIGUSR1 ignored")
        })
        .await
    );
    assert_eq!(healthz(&client, &admin).await.0, 200, "still running");
    let exit = signal_and_wait(&mut d, "HUP", Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(payrecon::daemon::RESTART_EXIT as i32));
    assert!(std::fs::read_to_string(&log).unwrap().contains("SIGHUP"));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL"
        ),
        0
    );
}

/// A reader that closed stdout (`| head`) ends any command quietly with status 0 — a write
/// command's committed write is not reported as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_commands_quietly() {
    let env = Env::start().await;
    let l = env.ledger();
    env.session(&l, "p1", "pending");
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = env.cmd();
        c.args(args).stdout(Stdio::from(writer));
        c
    };
    for args in [
        &["list"][..],
        &["stats"],
        &["show", "p1"],
        &["check-config"],
        &["events", "list"],
        &[
            "add",
            "--provider",
            "mopay",
            "--session-id",
            "p2",
            "--amount",
            "1.00",
        ],
        &[
            "resolve",
            "p1",
            "--to",
            "FAILED",
            "--reason",
            "closed pipe test",
        ],
    ] {
        let o = output(run(args)).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'p1'"),
        "FAILED"
    );
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE session_id = 'p2'"),
        1
    );
}

/// A password in a PostgreSQL URL's query is refused (pointing at `password_env`) and never
/// printed; a key given twice is refused rather than read as the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_password_or_twice_given_key_is_refused() {
    let env = Env::start().await;
    for (url, want) in [
        (
            "postgres://u@127.0.0.1:1/db?password=hunter2",
            "password_env",
        ),
        (
            "postgres://u@127.0.0.1:1/db?sslmode=verify-full&sslmode=disable",
            "given twice",
        ),
    ] {
        let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
        let start = text_cfg.find("[ledger]").unwrap();
        let end = text_cfg.find("[schedule]").unwrap();
        let cfg = format!(
            "{}[ledger]\nurl = \"{url}\"\n{}",
            &text_cfg[..start],
            &text_cfg[end..]
        );
        let path = env.dir.path().join("pw.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut c = crate::support::bin();
        c.arg("--config").arg(&path).arg("check-config");
        let o = output(c).await;
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}{err}");
        assert!(err.contains(want), "{err}");
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{out}{err}"
        );
    }
}

/// `payrecon_sessions` reads 0 for a group that empties (the shipped REVIEW alert clears).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_gauges_read_zero_when_a_group_empties() {
    let env = Env::start().await;
    let (admin, api) = listeners(&env, false);
    let l = env.ledger();
    env.session(&l, "r1", "amount");
    let _d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let review = "payrecon_sessions{provider=\"mopay\",status=\"REVIEW\"}";
    let failed = "payrecon_sessions{provider=\"mopay\",status=\"FAILED\"}";
    let mut seen = None;
    wait_for(Duration::from_secs(30), || {
        seen = crate::support::block(metric(&client, &admin, review));
        seen == Some(1.0)
    })
    .await;
    assert_eq!(seen, Some(1.0));
    assert_eq!(
        metric(&client, &admin, failed).await,
        Some(0.0),
        "every configured provider × status has a series"
    );
    let mut c = env.cmd();
    c.args(["resolve", "r1", "--to", "FAILED", "--reason", "refunded"]);
    assert!(output(c).await.status.success());
    wait_for(Duration::from_secs(30), || {
        seen = crate::support::block(metric(&client, &admin, review));
        seen == Some(0.0)
    })
    .await;
    assert_eq!(seen, Some(0.0), "the emptied group reads 0");
}

/// Refused callbacks are counted and logged at a bounded rate: 300 with a bad signature
/// write a line or two, not 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callbacks_are_logged_at_a_bounded_rate() {
    let env = crate::ops::signing_vesicash_env().await;
    let (admin, api) = listeners(&env, false);
    let log = env.dir.path().join("run.log");
    let _d = daemon_with(
        &env,
        &[&admin, &api],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let r = client
            .post(format!("{api}/v1/callbacks/vesicash"))
            .header("mor-signature", "00".repeat(32))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let refused = metric(
        &client,
        &admin,
        "payrecon_callbacks_refused_total{reason=\"signature\"}",
    )
    .await;
    assert_eq!(refused, Some(300.0));
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("callbacks refused"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 300 refusals"
    );
}

/// `verify` never answers a PENDING it did not check as if it had: a session another check
/// holds is waited for, then answered 503 by the API and exit status 75 by the command, each
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_never_passes_off_a_stale_pending() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, false);
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    env.session(&l, "held", "complete");
    // Another process holds it for an hour (a crashed daemon's lease).
    let later = payrecon::clock::format(payrecon::clock::add(
        payrecon::clock::now(),
        Duration::from_secs(3600),
    ));
    l.execute_batch(&format!(
        "UPDATE sessions SET lease_owner = 'elsewhere', lease_until = '{later}', \
         next_check_at = '{later}' WHERE session_id = 'held'"
    ))
    .unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{api}/v1/sessions/mopay/held/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("not checked"),
        "{body}"
    );
    let mut c = env.cmd();
    c.args(["verify", "held"]);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(75), "{out}{err}");
    assert!(err.contains("not checked"), "{err}");
    assert!(out.contains("PENDING"), "{out}");
}

/// `/healthz` is not `ok` while passes keep failing (a ledger that refuses writes), while due
/// work waits unclaimed past its bound, or while the ledger's clock is ahead of ours — and it
/// names the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_failing_passes_unclaimed_work_and_clock_skew() {
    let env = Env::start().await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let (admin, api) = listeners(&env, false);
    let l = env.ledger();
    env.session(&l, "late", "pending");
    // Due two hours ago, and no pass will come (no tick, no poll); a transition recorded an
    // hour in this host's future (another process's clock).
    let ago =
        payrecon::clock::format(payrecon::clock::now() - chrono::Duration::try_hours(2).unwrap());
    let ahead =
        payrecon::clock::format(payrecon::clock::now() + chrono::Duration::try_hours(1).unwrap());
    env.session(&l, "done", "complete");
    l.execute_batch(&format!(
        "UPDATE sessions SET next_check_at = '{ago}' WHERE session_id = 'late';
         UPDATE sessions SET status = 'COMPLETED', resolved_at = '{ahead}' WHERE session_id = 'done';
         INSERT INTO transitions (session, from_status, to_status, at, source)
           SELECT id, 'PENDING', 'COMPLETED', '{ahead}', 'manual' FROM sessions WHERE session_id = 'done';"
    ))
    .unwrap();
    let d = daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let (code, body) = healthz(&client, &admin).await;
    assert_eq!(code, 503, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("waited unclaimed"), "{problems}");
    assert!(problems.contains("future"), "{problems}");
    drop(d);

    // Every pass fails: a ledger that refuses every write to sessions (a full disk looks alike).
    env.set("cron", "\"* * * * * *\"");
    l.execute_batch(
        "DELETE FROM transitions; UPDATE sessions SET next_check_at = NULL WHERE 0;
         CREATE TRIGGER refuse BEFORE UPDATE ON sessions BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let _d = daemon(&env, &[&admin, &api]).await;
    let mut last = (0, serde_json::Value::Null);
    wait_for(Duration::from_secs(30), || {
        last = crate::support::block(healthz(&client, &admin));
        last.1["problems"].to_string().contains("passes failed")
    })
    .await;
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1["problems"].to_string().contains("disk is full"),
        "{}",
        last.1
    );
}

/// Ctrl-C on `payrecon verify` while its call is in flight gives the session back (no lease
/// left) and says it was not checked (exit 75), so a retried `verify` checks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_verify_gives_the_session_back() {
    let env = Env::start().await;
    let l = env.ledger();
    env.session(&l, "slow", "complete.slow-1500");
    let mut c = env.cmd();
    c.args(["verify", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guard(c.spawn().unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || {
            one(
                &l,
                "SELECT lease_owner IS NOT NULL FROM sessions WHERE session_id = 'slow'",
            ) == "1"
        })
        .await,
        "verify claimed the session"
    );
    let exit = signal_and_wait(&mut child, "INT", Duration::from_secs(30)).await;
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(exit.code(), Some(75), "{err}");
    assert!(err.contains("not checked"), "{err}");
    assert_eq!(
        one(
            &l,
            "SELECT coalesce(lease_owner, 'none') || '|' || status FROM sessions WHERE session_id = 'slow'"
        ),
        "none|PENDING"
    );
    // Asked again, it is checked.
    let mut c = env.cmd();
    c.args(["verify", "slow"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'slow'"),
        "COMPLETED"
    );
}

/// The Standard Webhooks signature of `id.timestamp.body` under the base64 key, computed by
/// `openssl` (not by payrecon): `v1,<base64>`.
fn openssl_standard_webhooks(key_b64: &str, id: &str, ts: &str, body: &str) -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mac = crate::support::openssl(
        &[
            "dgst".to_string(),
            "-sha256".into(),
            "-binary".into(),
            "-mac".into(),
            "HMAC".into(),
            "-macopt".into(),
            format!("hexkey:{hex}"),
        ],
        format!("{id}.{ts}.{body}").as_bytes(),
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// Moflay signs its callbacks in the Standard Webhooks scheme. With `webhook_secret_env` set, a
/// callback is taken only with all three `svix-` headers, a timestamp within five minutes and a
/// signature that verifies (401 otherwise, nothing checked), and each message id once: a
/// captured callback sent again, or its id reused with another body, does nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moflay_callback_needs_a_fresh_signature_and_counts_once() {
    const KEY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut env = signing_env("moflay", "PAYRECON_TEST_MOFLAY_WH", &format!("whsec_{KEY}")).await;
    let (admin, api) = listeners(&env, true);
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let mut c = env.cmd();
    c.arg("check-config");
    let (out, err) = text(&output(c).await);
    assert!(
        out.contains("webhook secret from $PAYRECON_TEST_MOFLAY_WH (set)"),
        "check-config says callbacks are verified: {out}{err}"
    );
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'pay_sw1'); \
         INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'pay_sw2');",
    )
    .unwrap();
    let client = reqwest::Client::new();
    let post = |body: &'static str, headers: Vec<(&'static str, String)>| {
        let mut r = client
            .post(format!("{api}/v1/callbacks/moflay"))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let signed = |id: &str, ts: i64, body: &str, key: &str| {
        let ts = ts.to_string();
        vec![
            ("svix-id", id.to_string()),
            (
                "svix-signature",
                openssl_standard_webhooks(key, id, &ts, body),
            ),
            ("svix-timestamp", ts),
        ]
    };
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"type":"payment.completed","data":{"id":"pay_sw1"}}"#;
    let other_key = "bm90IHRoZSBzZWNyZXQgYXQgYWxs";
    assert_eq!(post(body, vec![]).await, 401, "unsigned");
    assert_eq!(
        post(body, signed("msg_1", now, body, other_key)).await,
        401,
        "another key"
    );
    assert_eq!(
        post(body, signed("msg_1", now - 600, body, KEY)).await,
        401,
        "ten minutes old"
    );
    assert_eq!(
        post(body, signed("msg_1", now + 600, body, KEY)).await,
        401,
        "from the future"
    );
    let mut tampered = signed("msg_1", now, body, KEY);
    tampered[0].1 = "msg_2".into();
    assert_eq!(post(body, tampered).await, 401, "the id is signed too");
    assert_eq!(
        one(
            &l,
            "SELECT checks FROM sessions WHERE session_id = 'pay_sw1'"
        ),
        "0",
        "nothing refused was checked"
    );
    assert_eq!(post(body, signed("msg_1", now, body, KEY)).await, 202);
    assert!(
        wait_for(Duration::from_secs(15), || {
            one(
                &l,
                "SELECT status FROM sessions WHERE session_id = 'pay_sw1'",
            ) == "COMPLETED"
        })
        .await,
        "a verified callback has its session checked"
    );
    // A verified callback carrying Moflay's payment object is its word: decided with no status
    // call. Amounts in minor units as the get-payment answer's (10000 = KES 100.00).
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('moflay', 'pay_sw3', '100.00', 'KES'); \
         INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('moflay', 'pay_sw4', '100.00', 'KES'); \
         INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'pay_sw5');",
    )
    .unwrap();
    let calls = || {
        env.sim
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = calls();
    let paid = r#"{"type":"payment.completed","data":{"id":"pay_sw3","transactionId":"trxn_sw3","status":"completed","amount":10000,"currency":"KES"}}"#;
    assert_eq!(post(paid, signed("msg_3", now, paid, KEY)).await, 202);
    let under = r#"{"type":"payment.completed","data":{"id":"pay_sw4","status":"completed","amount":9999,"currency":"KES"}}"#;
    assert_eq!(post(under, signed("msg_4", now, under, KEY)).await, 202);
    let failed = r#"{"type":"payment.failed","data":{"id":"pay_sw5","status":"failed"}}"#;
    assert_eq!(post(failed, signed("msg_5", now, failed, KEY)).await, 202);
    let status = |id: &str| {
        one(
            &l,
            &format!("SELECT status FROM sessions WHERE session_id = '{id}'"),
        )
    };
    assert_eq!(
        status("pay_sw3"),
        "COMPLETED",
        "decided on the callback itself"
    );
    assert_eq!(
        one(
            &l,
            "SELECT provider_ref FROM sessions WHERE session_id = 'pay_sw3'"
        ),
        "trxn_sw3"
    );
    assert_eq!(
        status("pay_sw4"),
        "REVIEW",
        "an underpayment is never COMPLETED"
    );
    assert_eq!(status("pay_sw5"), "FAILED");
    assert_eq!(calls(), before, "no status call for a signed answer");
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'pay_sw4'"
        ),
        "amount differs: ledger 100.00, provider 99.99 (underpaid by 0.01)"
    );
    // The same message id again, even re-signed over another body: taken, nothing done.
    let body2 = r#"{"type":"payment.completed","data":{"id":"pay_sw2"}}"#;
    assert_eq!(post(body2, signed("msg_1", now, body2, KEY)).await, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        one(
            &l,
            "SELECT checks FROM sessions WHERE session_id = 'pay_sw2'"
        ),
        "0",
        "a message id counts once"
    );
}

/// An RSA-SHA256 signature by `openssl` with the private key in `key_pem`, base64: how Little
/// signs `timestamp + "." + JSON.stringify(payload)` [docs].
fn openssl_rsa_sha256(key_pem: &std::path::Path, message: &str) -> String {
    use base64::Engine as _;
    let key = key_pem.as_os_str();
    let sig = crate::support::openssl(
        &[
            std::ffi::OsStr::new("dgst"),
            "-sha256".as_ref(),
            "-sign".as_ref(),
            key,
        ],
        message.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(sig)
}

/// Little's callbacks with `webhook_public_key` set (a key pair made here with `openssl`, as
/// Little's published key has no private half we hold): the documented callback body, signed
/// over `timestamp.JSON`, is decided as a status answer with no status call; one signed over
/// its formatted bytes' `JSON.stringify` verifies too; unsigned, another key's, a stale one
/// and a replay are refused or counted once. Without the setting a Little callback is a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_little_callback_verifies_with_its_rsa_key() {
    let mut env = crate::ops::hints_only_env().await;
    let dir = env.dir.path().to_path_buf();
    let ours = dir.join("little.key");
    let theirs = dir.join("other.key");
    for k in [&ours, &theirs] {
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(k)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl genpkey");
    }
    let public = dir.join("little.pub");
    assert!(
        std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&ours)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success()
    );
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "kind = \"little\"\n",
        &format!(
            "kind = \"little\"\nwebhook_public_key = {:?}\n",
            public.display().to_string()
        ),
    );
    std::fs::write(&env.config_path, text).unwrap();
    let (admin, api) = listeners(&env, true);
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "api-token".into()));
    let _d = daemon(&env, &[&admin, &api]).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES \
           ('little', '1cbfffbc-b365-45f6-9e5d-13e445c125cd', '1.00', 'KES'), \
           ('little', 'lit_pretty', '1.00', 'KES'), \
           ('little', 'lit_under', '2.00', 'KES');",
    )
    .unwrap();
    let client = reqwest::Client::new();
    let post = |body: String, headers: Vec<(&'static str, String)>| {
        let mut r = client
            .post(format!("{api}/v1/callbacks/little"))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let now = chrono::Utc::now().timestamp();
    let signed = |key: &std::path::Path, ts: i64, json: &str| {
        vec![
            (
                "x-littlepay-signature",
                openssl_rsa_sha256(key, &format!("{ts}.{json}")),
            ),
            ("x-littlepay-timestamp", ts.to_string()),
        ]
    };
    // The documented example (pay.little.africa: payment-callback), as JSON.stringify writes it.
    let doc = r#"{"reference":"1cbfffbc-b365-45f6-9e5d-13e445c125cd","status":"COMPLETED","payload":{"billingAddress":{"firstName":"","lastName":"","address1":"","locality":"","administrativeArea":"","postalCode":"","country":"","email":"","phoneNumber":""}},"amount":1,"key":"","currency":"KES","provider":"MPESA","date":"2025-02-03T13:49:46.000Z"}"#;
    let calls = || {
        env.sim
            .status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = calls();
    assert_eq!(post(doc.into(), vec![]).await, 401, "unsigned");
    assert_eq!(
        post(doc.into(), signed(&theirs, now, doc)).await,
        401,
        "another key"
    );
    assert_eq!(
        post(doc.into(), signed(&ours, now - 600, doc)).await,
        401,
        "stale"
    );
    let mut tampered = signed(&ours, now, doc);
    tampered[1].1 = (now + 1).to_string();
    assert_eq!(
        post(doc.into(), tampered).await,
        401,
        "the timestamp is signed"
    );
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = '1cbfffbc-b365-45f6-9e5d-13e445c125cd'"
        ),
        "PENDING",
        "nothing refused was acted on"
    );
    let good = signed(&ours, now, doc);
    assert_eq!(post(doc.into(), good.clone()).await, 202);
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = '1cbfffbc-b365-45f6-9e5d-13e445c125cd'"
        ),
        "COMPLETED",
        "decided on the callback itself"
    );
    assert_eq!(
        post(doc.into(), good).await,
        202,
        "a replay is taken and does nothing"
    );
    // Sent formatted, signed over its JSON.stringify (no whitespace between tokens).
    let pretty = "{\n  \"reference\": \"lit_pretty\",\n  \"status\": \"COMPLETED\",\n  \"amount\": 1,\n  \"key\": \"\",\n  \"currency\": \"KES\",\n  \"provider\": \"MPESA\"\n}";
    let compact = r#"{"reference":"lit_pretty","status":"COMPLETED","amount":1,"key":"","currency":"KES","provider":"MPESA"}"#;
    assert_eq!(post(pretty.into(), signed(&ours, now, compact)).await, 202);
    let under = r#"{"reference":"lit_under","status":"COMPLETED","amount":1,"key":"","currency":"KES","provider":"MPESA"}"#;
    assert_eq!(post(under.into(), signed(&ours, now, under)).await, 202);
    let status = |id: &str| {
        one(
            &l,
            &format!("SELECT status FROM sessions WHERE session_id = '{id}'"),
        )
    };
    assert_eq!(status("lit_pretty"), "COMPLETED");
    assert_eq!(
        status("lit_under"),
        "REVIEW",
        "an underpayment is never COMPLETED"
    );
    assert_eq!(
        calls(),
        before,
        "no status call: the signed callbacks were the answers"
    );
    assert_eq!(
        one(&l, "SELECT group_concat(DISTINCT source) FROM transitions"),
        "api"
    );
}
