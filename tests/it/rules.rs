//! The provider-call rules of docs/providers.md, each against the simulator or a hostile server of our own
//! making that is not the simulator.

use std::time::Duration;

use crate::support::hostile::{Hostile, Mode};
use crate::support::receiver::{Answer, Receiver};
use crate::support::{DirectSql, Env, SECRET_A, SECRET_B, col, count, one, output, text, wait_for};
use payrecon::ledger::{Ledger, NewSession};

/// Enqueues a session for `provider` whose behaviour the simulator knows.
fn session_for(env: &Env, l: &Ledger, provider: &str, id: &str, behaviour: &str) {
    env.sim
        .insert(id, "100.00", "REF", behaviour.parse().unwrap());
    l.enqueue(&NewSession {
        provider: provider.into(),
        session_id: id.into(),
        reference: Some("REF".into()),
        amount: Some("100.00".parse().unwrap()),
        ..Default::default()
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_transport_failures_are_retried_then_left_pending() {
    // (mode, error, connections, checks charged): a call that ended without any body from the
    // provider is not an answer and is not charged.
    let cases = [
        (Mode::Reset, "connection failed", 3, "0"),
        (Mode::HalfHeaders, "connection failed", 3, "0"),
        (Mode::Hang, "timed out", 3, "0"),
        (Mode::Endless, "larger than http.max_body", 3, "1"),
        (Mode::Redirect, "HTTP 302 (a redirect, not followed", 1, "1"),
    ];
    for (mode, error, connections, checks) in cases {
        let hostile = Hostile::start(mode).await;
        let env = Env::start().await;
        env.set("base_url", &format!("\"{}\"", hostile.url));
        env.set("timeout", "\"500ms\"");
        env.set("retries", "2");
        env.set("retry_initial", "\"10ms\"");
        let l = env.ledger();
        env.session(&l, "h1", "complete");
        let report = env.pass(&l, "p").await;
        assert_eq!(report.still_pending, 1, "{mode:?}");
        assert_eq!(col(&l, "h1", "status"), "PENDING", "{mode:?}");
        assert_eq!(col(&l, "h1", "checks"), checks, "{mode:?}");
        let last_error = col(&l, "h1", "last_error");
        assert!(last_error.contains(error), "{mode:?}: {last_error}");
        let n = hostile
            .connections
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, connections, "{mode:?}: attempts");
        // The endless body was cut off near max_body (64 KiB), not read to the end.
        let written = hostile
            .bytes_written
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(written < 16 * 1024 * 1024, "{mode:?}: {written} bytes read");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_only_that_provider_and_charges_nothing() {
    let env = Env::start().await;
    env.set("concurrency", "1");
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let second = format!(
        "[providers.mopay2]\nkind = \"mopay\"\nbase_url = \"{}\"\nrate_limit = \"off\"\n",
        env.base_url
    );
    std::fs::write(&env.config_path, text_cfg + &second).unwrap();
    let l = env.ledger();
    session_for(&env, &l, "mopay", "pause1", "429long-1.complete");
    for i in 0..10 {
        session_for(&env, &l, "mopay", &format!("a{i}"), "complete");
        session_for(&env, &l, "mopay2", &format!("b{i}"), "complete");
    }
    l.execute_batch("UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE session_id = 'pause1'")
        .unwrap();
    let report = env.pass(&l, "p").await;
    assert_eq!(report.transitions.values().sum::<u64>(), 10, "{report:?}");
    for i in 0..10 {
        assert_eq!(
            col(&l, &format!("b{i}"), "status"),
            "COMPLETED",
            "the other provider kept going"
        );
        assert_eq!(col(&l, &format!("a{i}"), "status"), "PENDING");
        assert_eq!(
            env.sim.polls(&format!("a{i}")),
            0,
            "a{i} was called during the pause"
        );
        assert_eq!(col(&l, &format!("a{i}"), "checks"), "0", "not charged");
    }
    assert_eq!(env.sim.polls("pause1"), 1);
    assert_eq!(col(&l, "pause1", "checks"), "0");
    let next = payrecon::clock::parse(&col(&l, "pause1", "next_check_at")).unwrap();
    assert!(
        (next - chrono::Utc::now()).num_seconds() >= 100,
        "rescheduled to the end of Retry-After"
    );
    let mut c = env.cmd();
    c.arg("stats");
    let (out, _) = text(&output(c).await);
    assert!(
        out.contains("provider mopay: paused after HTTP 429 until"),
        "{out}"
    );
    // Another process on the same ledger honours the pause too.
    l.execute_batch(
        "UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE session_id = 'a0'",
    )
    .unwrap();
    env.pass(&l, "another").await;
    assert_eq!(env.sim.polls("a0"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_an_http_date_is_waited_out_within_the_check() {
    let env = Env::start().await;
    env.set("retry_max", "\"3s\"");
    env.set("lease", "\"30s\"");
    let l = env.ledger();
    env.session(&l, "dated", "429date-1.complete");
    let started = std::time::Instant::now();
    env.pass(&l, "p").await;
    assert_eq!(col(&l, "dated", "status"), "COMPLETED");
    assert_eq!(col(&l, "dated", "checks"), "1");
    assert_eq!(env.sim.polls("dated"), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the Retry-After date was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_counts_in_a_row_and_an_answer_resets_it() {
    let env = Env::start().await;
    let l = env.ledger();
    // The provider has answered a session normally, so its 404s are believed.
    env.session(&l, "known", "pending");
    env.pass(&l, "p").await;
    env.session(&l, "nf_reset", "404-2.complete-1");
    env.session(&l, "nf_gone", "404-3.complete");
    let mut counts = Vec::new();
    for _ in 0..4 {
        l.execute_batch("UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE status = 'PENDING'")
            .unwrap();
        env.pass(&l, "p").await;
        counts.push(col(&l, "nf_reset", "not_found_count"));
    }
    assert_eq!(counts, ["1", "2", "0", "0"]);
    assert_eq!(col(&l, "nf_reset", "status"), "COMPLETED");
    assert_eq!(col(&l, "nf_gone", "status"), "EXPIRED");
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'nf_gone'"
        ),
        "not found at provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_a_ceiling_at_the_provider() {
    let env = Env::start().await;
    env.set("rate_limit", "\"20/s\"");
    env.set("concurrency", "16");
    let l = env.ledger();
    for i in 0..70 {
        env.session(&l, &format!("rl{i}"), "complete");
    }
    env.arrivals.start();
    let report = env.pass(&l, "p").await;
    assert_eq!(report.resolved(), 70);
    let most = env.arrivals.max_in_window(Duration::from_secs(1));
    assert!(most <= 20, "{most} requests in one second");
    assert!(
        most >= 15,
        "the limiter held back far more than asked: {most}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_after_expiry_is_one_anomaly_and_no_state_change() {
    let env = Env::start().await;
    env.set("late_check", "\"1s\"");
    let l = env.ledger();
    env.session(&l, "late1", "latepay");
    env.session(&l, "late2", "expire");
    env.pass(&l, "p").await;
    assert_eq!(col(&l, "late1", "status"), "EXPIRED");
    assert_ne!(col(&l, "late1", "late_check_at"), "NULL");
    let found = wait_for(Duration::from_secs(10), || {
        crate::support::block(env.pass(&l, "p"));
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE late_check_at IS NOT NULL",
        ) == 0
    })
    .await;
    assert!(found, "the late checks never ran");
    for _ in 0..2 {
        env.pass(&l, "p").await;
    }
    assert_eq!(env.sim.polls("late1"), 2, "asked once more, and only once");
    assert_eq!(col(&l, "late1", "status"), "EXPIRED");
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 2);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE type = 'session.anomaly'"
        ),
        1
    );
    let v: serde_json::Value = serde_json::from_str(&one(
        &l,
        "SELECT payload FROM events WHERE type = 'session.anomaly'",
    ))
    .unwrap();
    assert_eq!(v["data"]["session_id"], "late1");
    assert_eq!(v["data"]["status"], "EXPIRED");
    assert_eq!(v["data"]["provider_says"], "COMPLETED");
    assert!(
        v["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("late payment")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_nowhere_even_at_trace_level() {
    const KEY: &str = "sk_live_9f8e7d6c5b4a39281706";
    let mut env = Env::start_with_key(Some(KEY)).await;
    let rx = Receiver::first_then_ok(Answer::Status(500)).await;
    env.webhook(&rx.url, r#"["10ms"]"#, "2s");
    let text_cfg = std::fs::read_to_string(&env.config_path).unwrap();
    let text_cfg = text_cfg.replace(
        "rate_limit = \"off\"\n",
        "rate_limit = \"off\"\napi_key_env = \"PAYRECON_TEST_KEY\"\n",
    );
    std::fs::write(&env.config_path, text_cfg).unwrap();
    let l = env.ledger();
    env.session(&l, "sec1", "5xx-1.complete");
    env.session(&l, "sec2", "amount");
    env.session(&l, "sec3", "unknown");
    let mut outputs = String::new();
    for key in ["sk_live_wrong_key_value_12345", KEY, KEY] {
        for args in [&["once"][..], &["check-config"][..], &["stats"][..]] {
            let mut c = env.cmd();
            c.args(args)
                .env("RUST_LOG", "trace")
                .env("PAYRECON_TEST_KEY", key);
            let (out, err) = text(&output(c).await);
            outputs.push_str(&out);
            outputs.push_str(&err);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        outputs.contains("TRACE"),
        "the daemon did not log at trace level"
    );
    assert!(
        outputs.contains("credentials refused"),
        "the wrong key was not refused"
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL"
        ),
        2
    );
    let mut haystack = outputs.into_bytes();
    for file in ["ledger.db", "ledger.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.dir.path().join(file)) {
            haystack.extend(bytes);
        }
    }
    for r in rx.requests() {
        haystack.extend(r.body);
    }
    let haystack = String::from_utf8_lossy(&haystack);
    for secret in [
        KEY,
        "sk_live_wrong_key_value_12345",
        SECRET_A,
        SECRET_B,
        &SECRET_A[6..],
        &SECRET_B[6..],
    ] {
        assert!(
            !haystack.contains(secret),
            "a secret leaked: {}…",
            &secret[..8]
        );
    }
}

/// A base URL that answers 404 to everything (here a plain server, as a wrong path would) never
/// closes a book: no 404 counts, nothing is charged, one error names base_url, `stats` and
/// `/healthz` show it. Pointed at the real provider afterwards, every session is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_url_never_closes_a_book() {
    use crate::support::canned::Canned;
    let wrong = Canned::start(404, vec![], b"<html>Not Found</html>".to_vec()).await;
    let env = Env::start().await;
    let l = env.ledger();
    for i in 0..5 {
        env.session(&l, &format!("wb{i}"), "complete");
    }
    env.set("base_url", &format!("\"{}\"", wrong.url));
    for _ in 0..4 {
        l.execute_batch("UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE status = 'PENDING'")
            .unwrap();
        env.pass(&l, "p").await;
    }
    assert!(wrong.requests.load(std::sync::atomic::Ordering::SeqCst) >= 20);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'PENDING' AND not_found_count = 0 AND checks = 0"
        ),
        5,
        "no 404 counted or charged"
    );
    assert!(col(&l, "wb0", "last_error").contains("base_url"));
    assert!(
        one(
            &l,
            "SELECT misdirected_error FROM provider_state WHERE provider = 'mopay'"
        )
        .contains("providers.mopay.base_url")
    );
    let (out, _) = text(
        &output({
            let mut c = env.cmd();
            c.arg("stats");
            c
        })
        .await,
    );
    assert!(out.contains("NOT FOUND FOR EVERY SESSION"), "{out}");
    // The right base URL: the sessions are found and the flag is cleared.
    env.set("base_url", &format!("\"{}\"", env.base_url));
    l.execute_batch(
        "UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE status = 'PENDING'",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'"
        ),
        5
    );
    assert_eq!(
        one(
            &l,
            "SELECT coalesce(misdirected_at, 'cleared') FROM provider_state WHERE provider = 'mopay'"
        ),
        "cleared"
    );
}

/// Rows an application wrote around `add`'s rules — a BLOB session id, text in `checks`, a
/// `created_at` that is not a time, U+0085 in a session id, an amount of 40 digits (the schema
/// allows it; an exact decimal holds 28) — are set aside, named and counted;
/// every other session is reconciled as usual, and `list` and `stats` still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_never_stops_reconciliation() {
    let env = Env::start().await;
    let l = env.ledger();
    for i in 0..20 {
        env.session(&l, &format!("good{i}"), "complete");
    }
    // Rows as they could get in before the schema refused them (the rules' triggers dropped).
    l.execute_batch(
        "DROP TRIGGER sessions_rules_insert;
         INSERT INTO sessions (provider, session_id) VALUES ('mopay', X'4D4F505F626C6F62');
         INSERT INTO sessions (provider, session_id, checks) VALUES ('mopay', 'bad_checks', 'many');
         INSERT INTO sessions (provider, session_id, created_at) VALUES ('mopay', 'bad_time', 'yesterday');
         INSERT INTO sessions (provider, session_id) VALUES ('mopay', 'nel' || char(133) || 'id');
         INSERT INTO sessions (provider, session_id) VALUES (X'6D6F706179', 'blob_provider');
         INSERT INTO sessions (provider, session_id, amount)
           VALUES ('mopay', 'huge_amount', '1234567890123456789012345678901234567890');",
    )
    .unwrap();
    let report = env.pass(&l, "p").await;
    assert_eq!(report.resolved(), 20, "{report:?}");
    assert_eq!(report.unreadable, 6, "{report:?}");
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE last_error LIKE 'unreadable row: %'"
        ),
        6
    );
    // Named once per pass: a second pass right after takes none of them again.
    let again = env.pass(&l, "p").await;
    assert_eq!(again.unreadable, 0);
    let (out, err) = text(
        &output({
            let mut c = env.cmd();
            c.arg("stats");
            c
        })
        .await,
    );
    assert!(out.contains("UNREADABLE ROWS: 6"), "{out}{err}");
    let o = output({
        let mut c = env.cmd();
        c.args(["list", "--limit", "100"]);
        c
    })
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("good3"), "{out}");
    assert!(out.contains("UNREADABLE"), "{out}");
    // An export that would silently leave a row out is refused, naming it …
    let file = env.dir.path().join("out.csv");
    let o = output({
        let mut c = env.cmd();
        c.args(["export", "--format", "csv", "--output"]).arg(&file);
        c
    })
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot be read") && err.contains("--skip-unreadable"),
        "{err}"
    );
    assert!(!file.exists(), "no partial file");
    // … unless told to leave such rows out.
    let o = output({
        let mut c = env.cmd();
        c.args(["export", "--format", "csv", "--skip-unreadable", "--output"])
            .arg(&file);
        c
    })
    .await;
    assert!(o.status.success(), "{}", text(&o).1);
    let csv = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        csv.lines().count(),
        21,
        "a header and the 20 good sessions:\n{csv}"
    );
}

/// Text from an application (here a reference written around `add`) reaches the log,
/// `show`, `list`, `events list` and error messages escaped: it cannot forge a log line or drive
/// a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_text_cannot_forge_a_log_line_or_drive_a_terminal() {
    let env = Env::start().await;
    let l = env.ledger();
    env.sim
        .insert("forge1", "100.00", "R", "reference".parse().unwrap());
    // A reference as it could get in before the schema refused it (the rule's trigger dropped).
    l.execute_batch(
        "DROP TRIGGER sessions_rules_insert; \
         INSERT INTO sessions (provider, session_id, reference, amount) VALUES \
         ('mopay', 'forge1', 'R' || char(10) || '2026-12-01T00:00:00Z  INFO forged line' || char(27) || '[31m', '100.00')",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        output(c)
    };
    let once = run(&["once"]).await;
    let (_, log) = text(&once);
    assert!(log.contains("forged line"), "the event was logged: {log}");
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-12-01T00:00:00Z  INFO forged")),
        "a forged line: {log}"
    );
    for args in [
        &["show", "forge1"][..],
        &["list"][..],
        &["events", "list"][..],
        &["stats"][..],
    ] {
        let o = run(args).await;
        assert!(o.status.success(), "{args:?}");
        assert!(
            !o.stdout.contains(&0x1b),
            "{args:?} printed an escape sequence"
        );
        let (out, _) = text(&o);
        assert!(
            !out.lines()
                .any(|line| line.starts_with("2026-12-01T00:00:00Z")),
            "{args:?}: {out}"
        );
    }
    // Errors quoting what they were given: one line, no escape sequence.
    for args in [
        &["show", "no\u{1b}[31m\n2026-12-01T00:00:00Z such"][..],
        &[
            "import",
            "/nonexistent/\u{1b}[31m\n2026-12-01T00:00:00Z.csv",
        ][..],
    ] {
        let o = run(args).await;
        assert!(!o.status.success(), "{args:?}");
        assert!(
            !o.stderr.contains(&0x1b),
            "{args:?} printed an escape sequence"
        );
        let (_, err) = text(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
