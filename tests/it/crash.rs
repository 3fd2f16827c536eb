//! Crash safety: several `payrecon run` daemons on one ledger — two on SQLite, three on
//! PostgreSQL — killed with SIGKILL at random moments and restarted, against the simulator and a
//! receiver that fails first answers. Nothing may be lost or doubled.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{DirectSql, Engine, Env, Guard, count, settled, sigterm_and_wait};

/// Behaviours and the state each must end in (written by hand from the simulator's documents).
use payrecon_testkit::BEHAVIOURS as MIX;

const SESSIONS: usize = 2400;
const KILLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_sqlite_and_sigkill_lose_and_double_nothing() {
    daemons_and_sigkill(Engine::Sqlite, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_postgres_and_sigkill_lose_and_double_nothing() {
    daemons_and_sigkill(Engine::Postgres, 3).await;
}

async fn daemons_and_sigkill(engine: Engine, daemons: usize) {
    let started = Instant::now();
    let mut env = Env::start_on(engine).await;
    // Every event's first delivery fails; the retry succeeds.
    let rx = Receiver::first_then_ok(Answer::Status(503)).await;
    env.webhook(
        &rx.url,
        r#"["100ms", "200ms", "400ms", "800ms", "1s"]"#,
        "1s",
    );
    for (k, v) in [
        ("lease", "\"4s\""),
        ("timeout", "\"1s\""),
        ("retries", "2"),
        ("retry_initial", "\"20ms\""),
        ("retry_max", "\"200ms\""),
        ("concurrency", "16"),
    ] {
        env.set(k, v);
    }
    let l = env.ledger();
    let mut expected = BTreeMap::new();
    for i in 0..SESSIONS {
        let (behaviour, want) = MIX[i % MIX.len()];
        let id = format!("crash{i:05}");
        env.session(&l, &id, behaviour);
        expected.insert(id, want);
    }
    let spawn = |env: &Env| {
        let mut c = env.cmd();
        c.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let mut running: Vec<Guard> = (0..daemons).map(|_| spawn(&env)).collect();
    for _ in 0..KILLS {
        let wait = Duration::from_millis(fastrand::u64(300..1500));
        tokio::time::sleep(wait).await;
        let victim = &mut running[fastrand::usize(..daemons)];
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        *victim = spawn(&env);
    }
    let settled = settled(&l, Duration::from_secs(90)).await;
    let settle_time = started.elapsed();
    // SIGTERM stops each daemon with exit 0.
    for d in running {
        sigterm_and_wait(d).await;
    }
    assert!(
        settled,
        "the ledger did not settle: {} pending",
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'")
    );

    for row in l
        .query_strings("SELECT session_id, status FROM sessions")
        .unwrap()
    {
        let (id, status) = row.split_once('|').unwrap();
        assert_eq!(status, expected[id], "{id}");
    }
    assert_eq!(
        count(&l, "SELECT count(*) FROM transitions"),
        SESSIONS as i64
    );
    assert_eq!(
        count(&l, "SELECT count(DISTINCT session) FROM transitions"),
        SESSIONS as i64
    );
    assert_eq!(count(&l, "SELECT count(*) FROM events"), SESSIONS as i64);
    let ledger_ids: HashSet<String> = l
        .query_strings("SELECT id FROM events")
        .unwrap()
        .into_iter()
        .collect();
    let received: HashSet<String> = rx
        .requests()
        .into_iter()
        .filter(|r| r.id.starts_with("evt_"))
        .map(|r| r.id)
        .collect();
    assert_eq!(
        received, ledger_ids,
        "an event is missing at the receiver, or one it got is not in the ledger"
    );
    let calls = env
        .sim
        .status_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "crash test ({engine:?}, {daemons} daemons): {SESSIONS} sessions, {KILLS} SIGKILLs, settled in {:.1}s, {:.2} provider calls per session, {} webhook requests for {} events",
        settle_time.as_secs_f64(),
        calls as f64 / SESSIONS as f64,
        rx.requests().len(),
        ledger_ids.len()
    );
}
