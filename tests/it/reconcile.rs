//! The pass against the simulator over loopback HTTP, on real ledger files.

use std::time::Duration;

use crate::support::{DirectSql, Engine, Env, col, count, due_now, one};
use payrecon::ledger::{Ledger, NewSession};

fn status(l: &Ledger, id: &str) -> String {
    col(l, id, "status")
}

async fn every_outcome_is_reached_over_http(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let cases = [
        ("s_complete", "complete", "COMPLETED"),
        ("s_complete2", "complete-2", "COMPLETED"),
        ("s_fail", "fail", "FAILED"),
        ("s_cancel", "cancel", "CANCELLED"),
        ("s_expire", "expire", "EXPIRED"),
        ("s_notfound", "notfound", "EXPIRED"),
        ("s_amount", "amount", "REVIEW"),
        ("s_reference", "reference", "REVIEW"),
        ("s_unknown", "unknown", "PENDING"),
        ("s_unpaid", "unpaid", "PENDING"),
    ];
    for (id, b, _) in cases {
        env.session(&l, id, b);
    }
    env.settle(&l, 2, Duration::from_secs(10)).await;
    for (id, b, want) in cases {
        assert_eq!(status(&l, id), want, "{id} ({b})");
    }
    assert!(col(&l, "s_complete", "transaction_id").starts_with("TXN"));
    assert_eq!(col(&l, "s_complete", "payment_method"), "mpesa");
    assert_eq!(
        col(&l, "s_complete", "provider_completed_at"),
        "2025-12-04T14:05:00.000Z"
    );
    assert_eq!(col(&l, "s_complete2", "checks"), "3");
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 's_notfound'"
        ),
        "not found at provider"
    );
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 's_expire'"
        ),
        "expired at provider"
    );
    let reason = one(
        &l,
        "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 's_amount'",
    );
    assert_eq!(
        reason,
        "amount differs: ledger 100.00, provider 1.00 (underpaid by 99.00)"
    );
    // Unknown statuses stay PENDING with the raw value kept, never guessed.
    assert_eq!(col(&l, "s_unknown", "provider_status"), "ON_HOLD");
    assert!(
        col(&l, "s_unknown", "last_error").contains("unrecognised provider status \"ON_HOLD\"")
    );
    assert!(col(&l, "s_unpaid", "last_error").contains("transactionStatus"));
    // One transition and one event per resolved session, and none for the pending ones.
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 8);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 8);
    let payload = one(
        &l,
        "SELECT payload FROM events WHERE type = 'session.completed' LIMIT 1",
    );
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["data"]["provider"], "mopay");
    assert_eq!(v["data"]["amount"], "100.00");
}

async fn transient_failures_are_retried_within_one_check(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let cases = [
        ("t_5xx", "5xx-2.complete", 3),
        ("t_html", "html-2.complete", 3),
        ("t_truncated", "truncated-1.complete", 2),
        ("t_oversized", "oversized-1.complete", 2),
        ("t_false", "falsesuccess-3.complete", 4),
        ("t_429", "429-1.complete", 2),
    ];
    for (id, b, _) in cases {
        env.session(&l, id, b);
    }
    let report = env.pass(&l, "one").await;
    assert_eq!(report.resolved(), cases.len() as u64, "{report:?}");
    for (id, b, calls) in cases {
        assert_eq!(status(&l, id), "COMPLETED", "{id} ({b})");
        assert_eq!(
            col(&l, id, "checks"),
            "1",
            "{id}: one check, retried inside"
        );
        assert_eq!(env.sim.polls(id), calls, "{id}: provider calls");
    }
}

async fn persistent_failures_leave_the_session_pending_with_last_error(engine: Engine) {
    let env = Env::start_on(engine).await;
    env.set("retries", "1");
    let l = env.ledger();
    env.session(&l, "p_5xx", "5xx-50.complete");
    let report = env.pass(&l, "one").await;
    assert_eq!(report.still_pending, 1);
    assert_eq!(status(&l, "p_5xx"), "PENDING");
    assert_eq!(col(&l, "p_5xx", "last_error"), "HTTP 503");
    assert_eq!(col(&l, "p_5xx", "checks"), "1");
    assert_eq!(col(&l, "p_5xx", "answered_checks"), "0");
    assert_eq!(env.sim.polls("p_5xx"), 2);
    // Rescheduled into the future, not due again in this instant.
    assert_eq!(due_now(&l), 0);
}

async fn ids_reach_the_provider_as_one_encoded_segment(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let ids = [
        "a/b",
        "50%off",
        "what?",
        "hash#tag",
        "with space",
        "ünïcode",
        "..x",
        "a+b&c=d",
    ];
    for id in ids {
        env.session(&l, id, "complete");
    }
    env.settle(&l, 0, Duration::from_secs(5)).await;
    for id in ids {
        assert_eq!(env.sim.polls(id), 1, "{id:?} did not arrive intact");
        assert_eq!(
            one(
                &l,
                &format!(
                    "SELECT status FROM sessions WHERE session_id = '{}'",
                    id.replace('\'', "''")
                )
            ),
            "COMPLETED",
            "{id:?}"
        );
    }
}

async fn max_age_expires_only_after_an_answered_check(engine: Engine) {
    let env = Env::start_on(engine).await;
    env.set("max_age", "\"48h\"");
    env.set("retries", "0");
    let l = env.ledger();
    let old = payrecon::clock::parse("2020-01-01T00:00:00Z").unwrap();
    env.sim
        .insert("old", "100.00", "REF", "pending".parse().unwrap());
    l.enqueue(&NewSession {
        provider: "mopay".into(),
        session_id: "old".into(),
        created_at: Some(old),
        ..Default::default()
    })
    .unwrap();
    // The provider is unreachable: a backfilled old session is not closed unasked.
    let real = env.base_url.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    env.set("base_url", &format!("\"http://{closed}\""));
    env.pass(&l, "one").await;
    assert_eq!(status(&l, "old"), "PENDING");
    assert!(
        col(&l, "old", "last_error").starts_with("connection failed"),
        "{}",
        col(&l, "old", "last_error")
    );
    assert_eq!(col(&l, "old", "answered_checks"), "0");
    // Once the provider answers "still pending", it expires.
    env.set("base_url", &format!("\"{real}\""));
    l.execute_batch("UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z'")
        .unwrap();
    env.pass(&l, "one").await;
    assert_eq!(status(&l, "old"), "EXPIRED");
    assert!(
        one(&l, "SELECT reason FROM transitions").starts_with("no final status within max_age")
    );
}

async fn two_passes_racing_record_one_transition_per_session(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let n = 400;
    for i in 0..n {
        let b = match i % 4 {
            0 => "complete",
            1 => "complete-1",
            2 => "fail.slow-20",
            _ => "5xx-1.cancel",
        };
        env.session(&l, &format!("race{i}"), b);
    }
    // Two ledger handles: two connections, as two processes would have.
    let (a, b) = (env.ledger(), env.ledger());
    for _ in 0..30 {
        let (ra, rb) = tokio::join!(env.pass(&a, "owner-a"), env.pass(&b, "owner-b"));
        assert_eq!(ra.ledger_errors + rb.ledger_errors, 0);
        if count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'"),
        0
    );
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), n);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), n);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM (SELECT session FROM transitions GROUP BY session HAVING count(*) > 1) AS doubled"
        ),
        0
    );
    // Leases kept the two apart: no session was asked more often than its behaviour needs.
    for i in 0..n {
        let id = format!("race{i}");
        let want = if i % 4 == 1 || i % 4 == 3 { 2 } else { 1 };
        assert_eq!(env.sim.polls(&id), want, "{id} was checked by both passes");
    }
}

async fn transition_update_and_event_commit_together_or_not_at_all(engine: Engine) {
    let env = Env::start_on(engine).await;
    env.set("lease", "\"3s\"");
    env.set("timeout", "\"500ms\"");
    env.set("retries", "0");
    let l = env.ledger();
    env.session(&l, "atomic", "complete");
    // Make the event insert fail inside the recording transaction.
    l.execute_batch(match engine {
        Engine::Sqlite => "CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        Engine::Postgres | Engine::PgBouncer => "CREATE FUNCTION no_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$; \
                             CREATE TRIGGER no_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION no_events();",
    })
    .unwrap();
    let report = env.pass(&l, "one").await;
    assert_eq!(report.ledger_errors, 1);
    assert_eq!(status(&l, "atomic"), "PENDING");
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 0);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 0);
    assert_eq!(col(&l, "atomic", "resolved_at"), "NULL");
    // Once the lease runs out, the session is checked again and all three are written.
    l.execute_batch(match engine {
        Engine::Sqlite => "DROP TRIGGER no_events",
        Engine::Postgres | Engine::PgBouncer => "DROP TRIGGER no_events ON events",
    })
    .unwrap();
    let done = crate::support::wait_for(Duration::from_secs(10), || {
        crate::support::block(env.pass(&l, "two"));
        status(&l, "atomic") == "COMPLETED"
    })
    .await;
    assert!(done);
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 1);
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 1);
}

/// A session's `provider_ref` (the provider's second id): filled from the first answer that
/// carries it when the application wrote none, compared when it did — an answer naming another
/// payment goes to REVIEW, never to COMPLETED. Moflay's answer carries its `transactionId`
/// (the simulator's `trxn_<length of the id>`) beside the `pay_…` id asked about.
async fn the_providers_second_id_is_filled_or_held(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    env.with_all_providers(&[]);
    let l = env.ledger();
    // As an application writes them: no amount, reference or currency to compare.
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'pay_fill'); \
         INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_same', 'trxn_8'); \
         INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_other', 'trxn_elsewhere');",
    )
    .unwrap();
    env.settle(&l, 0, Duration::from_secs(10)).await;
    assert_eq!(status(&l, "pay_fill"), "COMPLETED");
    assert_eq!(col(&l, "pay_fill", "provider_ref"), "trxn_8");
    assert_eq!(status(&l, "pay_same"), "COMPLETED");
    assert!(
        one(
            &l,
            "SELECT e.payload FROM events e JOIN sessions s ON s.id = e.session WHERE s.session_id = 'pay_same'"
        )
        .contains(r#""compared":["provider_ref"]"#)
    );
    assert_eq!(status(&l, "pay_other"), "REVIEW");
    assert_eq!(col(&l, "pay_other", "provider_ref"), "trxn_elsewhere");
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'pay_other'"
        ),
        r#"provider_ref differs: ledger "trxn_elsewhere", provider "trxn_9""#
    );
}

crate::on_both_engines!(pgbouncer:
    the_providers_second_id_is_filled_or_held,
    every_outcome_is_reached_over_http,
    transient_failures_are_retried_within_one_check,
    persistent_failures_leave_the_session_pending_with_last_error,
    ids_reach_the_provider_as_one_encoded_segment,
    max_age_expires_only_after_an_answered_check,
    two_passes_racing_record_one_transition_per_session,
    transition_update_and_event_commit_together_or_not_at_all,
);
