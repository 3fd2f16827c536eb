//! The webhook outbox against a real receiver on loopback.

use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::receiver::{Answer, Receiver, verifies};
use crate::support::{
    Engine, Env, Guard, SECRET_A, SECRET_B, block, count, one, output, text, wait_for,
};
use payrecon::ledger::Ledger;

/// Runs passes and delivery sweeps until `cond` holds or 15 seconds pass.
async fn drive(
    env: &Env,
    l: &Ledger,
    outbox: &payrecon::outbox::Outbox,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < end {
        env.pass(l, "driver").await;
        outbox.deliver_due(&CancellationToken::new()).await.unwrap();
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    false
}

async fn retried_until_2xx_with_one_id_and_signatures_that_verify(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let rx = Receiver::start(|_, n| {
        if n <= 2 {
            Answer::Status(503)
        } else {
            Answer::Status(204)
        }
    })
    .await;
    env.webhook(&rx.url, r#"["50ms", "50ms", "50ms"]"#, "2s");
    let l = env.ledger();
    env.session(&l, "wh1", "complete");
    let outbox = env.outbox("o1");
    assert!(
        drive(&env, &l, &outbox, || count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL"
        ) == 1)
        .await
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    let id = one(&l, "SELECT id FROM events");
    let payload = one(&l, "SELECT payload FROM events");
    for r in &reqs {
        assert_eq!(r.id, id, "the id is stable across redeliveries");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, payload.as_bytes());
        assert!(
            verifies(SECRET_A, r) && verifies(SECRET_B, r),
            "both rotation secrets sign: {}",
            r.signature
        );
        assert_eq!(r.signature.split(' ').count(), 2);
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    }
    assert_eq!(one(&l, "SELECT attempts FROM events"), "3");
    assert_eq!(one(&l, "SELECT last_error FROM events"), "NULL");
    assert_eq!(outbox.counters.snapshot(), (1, 2, 0));
}

async fn dead_after_the_schedule_then_replay_delivers_it(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let rx = Receiver::start(|_, _| Answer::Status(500)).await;
    env.webhook(&rx.url, r#"["30ms", "30ms"]"#, "2s");
    let l = env.ledger();
    env.session(&l, "dead1", "fail");
    let outbox = env.outbox("o1");
    assert!(
        drive(&env, &l, &outbox, || count(
            &l,
            "SELECT count(*) FROM events WHERE dead_at IS NOT NULL"
        ) == 1)
        .await
    );
    let id = one(&l, "SELECT id FROM events");
    assert_eq!(rx.count(&id), 3, "one attempt plus one per schedule entry");
    assert_eq!(one(&l, "SELECT last_error FROM events"), "HTTP 500");
    // Kept, listed, and not sent again on its own.
    outbox.deliver_due(&CancellationToken::new()).await.unwrap();
    assert_eq!(rx.count(&id), 3);
    let mut c = env.cmd();
    c.args(["events", "list", "--dead"]);
    let (out, _) = text(&output(c).await);
    assert!(
        out.contains(&id) && out.contains("HTTP 500") && out.contains("dead"),
        "{out}"
    );

    // The receiver recovers; replay puts it back in line and `once` delivers it.
    rx.set_plan(|_, _| Answer::Status(200));
    let mut c = env.cmd();
    c.args(["events", "replay", "--dead"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("1 event(s) back in line"));
    let mut c = env.cmd();
    c.arg("once");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains("events: 1 delivered, 0 to retry later, 0 dead"),
        "{out}"
    );
    assert_eq!(rx.count(&id), 4);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL AND dead_at IS NULL"
        ),
        1
    );
    let mut c = env.cmd();
    c.args(["events", "replay", "--id", "evt_nope"]);
    assert_eq!(output(c).await.status.code(), Some(2));
}

async fn gone_is_dead_at_once_and_429_waits_its_retry_after(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let rx = Receiver::start(|_, _| Answer::Status(410)).await;
    env.webhook(&rx.url, r#"["10ms", "10ms", "10ms"]"#, "2s");
    let l = env.ledger();
    env.session(&l, "gone", "complete");
    let outbox = env.outbox("o1");
    env.pass(&l, "p").await;
    outbox.deliver_due(&CancellationToken::new()).await.unwrap();
    assert_eq!(
        one(
            &l,
            "SELECT attempts || ' ' || last_error FROM events WHERE dead_at IS NOT NULL"
        ),
        "1 HTTP 410"
    );

    rx.set_plan(|_, _| Answer::RetryAfter(30));
    env.session(&l, "limited", "complete");
    env.pass(&l, "p").await;
    outbox.deliver_due(&CancellationToken::new()).await.unwrap();
    let next = one(
        &l,
        "SELECT next_attempt_at FROM events WHERE dead_at IS NULL",
    );
    let wait = payrecon::clock::parse(&next).unwrap() - chrono::Utc::now();
    assert!(
        wait.num_seconds() >= 25,
        "retried after {wait:?}, not after Retry-After: 30"
    );
    assert_eq!(
        one(&l, "SELECT last_error FROM events WHERE dead_at IS NULL"),
        "HTTP 429"
    );
}

async fn two_outboxes_never_send_one_event_at_the_same_time(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let rx = Receiver::start(|_, _| Answer::Slow(20)).await;
    env.webhook(&rx.url, r#"["1s"]"#, "5s");
    let l = env.ledger();
    for i in 0..400 {
        env.session(&l, &format!("two{i}"), "complete");
    }
    env.settle(&l, 0, Duration::from_secs(10)).await;
    let (a, b) = (env.outbox("a"), env.outbox("b"));
    let t = CancellationToken::new();
    let (ra, rb) = tokio::join!(a.deliver_due(&t), b.deliver_due(&t));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL"
        ),
        400
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 400, "an event was sent by both");
    let (da, _, _) = a.counters.snapshot();
    let (db, _, _) = b.counters.snapshot();
    assert!(da > 0 && db > 0, "both outboxes took part: {da} and {db}");
}

async fn a_crash_between_send_and_mark_resends_the_same_id(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    // The first attempt is held open: the daemon has sent it but not seen an answer.
    let rx = Receiver::first_then_ok(Answer::Hang).await;
    env.webhook(&rx.url, r#"["100ms"]"#, "3s");
    let l = env.ledger();
    env.session(&l, "crash1", "complete");
    let run = |env: &Env| {
        let mut c = env.cmd();
        c.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let mut first = run(&env);
    assert!(
        wait_for(Duration::from_secs(10), || rx.requests().len() == 1).await,
        "the event was never sent"
    );
    // SIGKILL: no chance to mark anything.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL"
        ),
        0
    );
    let _second = run(&env);
    let delivered = wait_for(Duration::from_secs(20), || {
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL",
        ) == 1
    })
    .await;
    assert!(delivered, "the event was not delivered after the restart");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].id, reqs[1].id);
    assert_eq!(reqs[0].body, reqs[1].body);
}

async fn run_delivers_an_event_committed_by_another_process_promptly(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let rx = Receiver::start(|_, _| Answer::Status(204)).await;
    env.webhook(&rx.url, r#"["1s"]"#, "2s");
    // No pass will run while the test lasts: the event comes from `resolve`.
    env.set("cron", "\"0 0 0 1 1 *\"");
    let l = env.ledger();
    env.session(&l, "manual1", "pending");
    let mut c = env.cmd();
    c.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
    let _daemon = Guard(c.spawn().unwrap());
    let mut c = env.cmd();
    c.args([
        "resolve",
        "manual1",
        "--to",
        "cancelled",
        "--reason",
        "customer called to cancel",
    ]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(wait_for(Duration::from_secs(5), || rx.requests().len() == 1).await);
    let body: serde_json::Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    assert_eq!(body["type"], "session.cancelled");
    assert_eq!(body["data"]["reason"], "customer called to cancel");
}

crate::on_both_engines!(pgbouncer:
    retried_until_2xx_with_one_id_and_signatures_that_verify,
    dead_after_the_schedule_then_replay_delivers_it,
    gone_is_dead_at_once_and_429_waits_its_retry_after,
    two_outboxes_never_send_one_event_at_the_same_time,
    a_crash_between_send_and_mark_resends_the_same_id,
    run_delivers_an_event_committed_by_another_process_promptly,
);

/// The receiver has the event but the database drops out as the delivery is recorded (every
/// connection to it reset for 0.8 s, through the fault proxy): the record is tried again when
/// the database is back, and the event is not sent a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_recorded_across_a_database_blip_is_not_sent_again() {
    use payrecon::ledger::Location;
    use payrecon_testkit::proxy::{FaultProxy, Faults};
    use std::sync::Arc;

    let mut env = Env::start_on(Engine::Postgres).await;
    let Location::Url(url) = env.location.clone() else {
        unreachable!()
    };
    let (target, db) = crate::support::pg::address_and_name(&url);
    let proxy = Arc::new(FaultProxy::start(target).unwrap());
    let p = proxy.clone();
    let rx = Receiver::start(move |_, _| {
        // The database drops out while the receiver answers.
        p.set(Faults {
            reset: 1.0,
            refuse: 1.0,
            ..Faults::default()
        });
        let p = p.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            p.clear();
        });
        Answer::Status(204)
    })
    .await;
    env.webhook(&rx.url, r#"["100ms", "100ms"]"#, "2s");
    let l = env.ledger();
    env.session(&l, "blip1", "complete");
    env.pass(&l, "p").await;
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 1);
    let through = Ledger::connect(&Location::Url(format!(
        "postgres://postgres@{}/{db}",
        proxy.addr()
    )))
    .unwrap();
    let cfg = env.config();
    let outbox =
        payrecon::outbox::Outbox::new(through, cfg.webhook.unwrap(), "blip".into()).unwrap();
    // A sweep may end early on a claim during the blip, as `run`'s would ("retrying").
    let delivered = wait_for(Duration::from_secs(10), || {
        let _ = block(outbox.deliver_due(&CancellationToken::new()));
        count(
            &l,
            "SELECT count(*) FROM events WHERE delivered_at IS NOT NULL",
        ) == 1
    })
    .await;
    assert!(
        proxy.counts().resets + proxy.counts().refused > 0,
        "the blip happened"
    );
    assert!(delivered, "recorded once the database was back");
    assert_eq!(rx.requests().len(), 1, "sent once");
}
