//! The bounded history of checks and delivery attempts (`[ledger] history`): each check's
//! whitelisted facts kept with its outcome, each delivery attempt kept, a provider's word
//! clipped, old rows pruned in bounded batches, nothing kept when it is off.

use crate::support::receiver::{Answer, Receiver};
use crate::support::{DirectSql, Engine, Env, count, one};
use payrecon::clock;
use payrecon::ledger::{CheckNote, PRUNE_BATCH, Source, Via};

/// A pass's checks and the outbox's attempts are in the history, as the providers' documents
/// say they answered: MoPay's paid session is `"status": "COMPLETED"` with HTTP 200 [docs].
async fn checks_and_deliveries_are_kept(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    let receiver = Receiver::start(|_, n| match n {
        1 => Answer::Status(503),
        _ => Answer::Status(204),
    })
    .await;
    env.webhook(&receiver.url, "[\"10ms\", \"10ms\"]", "2s");
    let l = env.ledger();
    env.session(&l, "h_paid", "complete");
    env.pass(&l, "p").await;
    // After an answer: a provider that only ever said 404 might be a misdirected base URL.
    env.session(&l, "h_gone", "notfound");
    env.pass(&l, "p").await;
    assert_eq!(
        l.query_strings(
            "SELECT c.via || ' ' || c.source || ' ' || c.outcome || ' ' || c.http_status || ' ' || c.provider_status \
             FROM checks c JOIN sessions s ON s.id = c.session WHERE s.session_id = 'h_paid'"
        )
        .unwrap(),
        ["call poll paid 200 COMPLETED"]
    );
    assert_eq!(
        count(&l, "SELECT count(*) FROM checks WHERE took_ms IS NULL"),
        0
    );
    // A 404 is an answer: its HTTP status is kept, and no status word (none was said).
    assert_eq!(
        one(
            &l,
            "SELECT c.outcome || ' ' || c.http_status || ' ' || coalesce(c.provider_status, '-') \
             FROM checks c JOIN sessions s ON s.id = c.session WHERE s.session_id = 'h_gone'"
        ),
        "not_found 404 -"
    );
    let outbox = env.outbox("o");
    let stop = tokio_util::sync::CancellationToken::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(&l, "SELECT count(*) FROM events WHERE delivered_at IS NULL") > 0 {
        assert!(std::time::Instant::now() < deadline, "delivered in time");
        outbox.deliver_due(&stop).await.unwrap();
    }
    let rowid: i64 = one(&l, "SELECT id FROM sessions WHERE session_id = 'h_paid'")
        .parse()
        .unwrap();
    let attempts = l.delivery_attempts(rowid).unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.error.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [("retried", Some("HTTP 503")), ("delivered", None)]
    );
}

/// What a provider says is clipped before it is kept, and history older than the window goes,
/// in batches that never hold the ledger long, however much there is.
async fn the_history_is_bounded(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.session(&l, "h_many", "complete");
    let rowid: i64 = one(&l, "SELECT id FROM sessions WHERE session_id = 'h_many'")
        .parse()
        .unwrap();
    let old = clock::sub(clock::now(), std::time::Duration::from_secs(30 * 86_400));
    let note = |at, word: &str| CheckNote {
        session: rowid,
        at,
        via: Via::Call,
        source: Source::Poll,
        outcome: "unrecognised",
        http_status: Some(200),
        provider_status: Some(word.into()),
        error: Some("e".repeat(10_000)),
        took_ms: Some(5),
    };
    let hostile = format!("<script>alert(1)</script>{}", "x".repeat(100_000));
    let many = PRUNE_BATCH as usize * 2 + 345;
    let old_notes: Vec<CheckNote> = (0..many).map(|_| note(old, "OLD")).collect();
    l.record(
        "t",
        clock::now(),
        &[],
        &old_notes,
        payrecon::reconcile::contradiction,
    )
    .unwrap();
    l.record(
        "t",
        clock::now(),
        &[],
        &[note(clock::now(), &hostile)],
        payrecon::reconcile::contradiction,
    )
    .unwrap();
    assert_eq!(
        one(
            &l,
            "SELECT length(provider_status) || ' ' || length(error) FROM checks WHERE provider_status <> 'OLD'"
        ),
        "64 200",
        "a provider's word is kept to 64 characters, our error to 200"
    );
    let removed = l
        .prune_history(clock::sub(
            clock::now(),
            std::time::Duration::from_secs(7 * 86_400),
        ))
        .unwrap();
    assert_eq!(removed, many as u64);
    assert_eq!(count(&l, "SELECT count(*) FROM checks"), 1);
}

/// `history = "off"`: a pass keeps no checks.
async fn no_history_when_off(engine: Engine) {
    let env = Env::start_on(engine).await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replacen("[ledger]\n", "[ledger]\nhistory = \"off\"\n", 1),
    )
    .unwrap();
    let l = env.ledger();
    env.session(&l, "h_off", "complete");
    env.pass(&l, "p").await;
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'h_off'"),
        "COMPLETED"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM checks"), 0);
}

/// The overview's recent activity reads the window's rows only: transitions of the last day
/// and status calls of the last hour, found by their ids (no index on time), on both engines.
async fn recent_activity_is_the_window(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let now = clock::now();
    let ago = |mins: u64| clock::format(clock::sub(now, std::time::Duration::from_secs(mins * 60)));
    let mut sql = String::new();
    // Five transitions two days ago, three three hours ago, one person's decision 30 min ago.
    for (i, mins, from, source) in [
        (0, 2880, "PENDING", "poll"),
        (1, 2880, "PENDING", "poll"),
        (2, 2880, "PENDING", "poll"),
        (3, 2880, "PENDING", "poll"),
        (4, 2880, "PENDING", "poll"),
        (5, 180, "PENDING", "poll"),
        (6, 180, "PENDING", "api"),
        (7, 180, "PENDING", "poll"),
        (7, 30, "REVIEW", "manual"),
    ] {
        if from == "PENDING" {
            env.session(&l, &format!("act{i}"), "complete");
        }
        sql.push_str(&format!(
            "INSERT INTO transitions (session, from_status, to_status, at, source) \
             SELECT id, '{from}', 'COMPLETED', '{}', '{source}' FROM sessions WHERE session_id = 'act{i}';",
            ago(mins)
        ));
    }
    // Checks: four two hours ago, two status calls and one list item ten minutes ago.
    for (mins, via) in [
        (120, "call"),
        (120, "call"),
        (120, "call"),
        (120, "call"),
        (10, "call"),
        (10, "call"),
        (10, "list"),
    ] {
        sql.push_str(&format!(
            "INSERT INTO checks (session, at, via, source, outcome) \
             SELECT id, '{}', '{via}', 'poll', 'pending' FROM sessions WHERE session_id = 'act0';",
            ago(mins)
        ));
    }
    l.execute_batch(&sql).unwrap();
    let a = l
        .activity(
            clock::sub(now, std::time::Duration::from_secs(24 * 3600)),
            now,
        )
        .unwrap();
    let sources: Vec<&str> = a.transitions.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(sources, ["poll", "api", "poll", "manual"]);
    assert_eq!(a.calls_last_hour, [("mopay".to_string(), 2)]);
    // Nothing that new: an empty window, not an error.
    let none = l
        .activity(clock::add(now, std::time::Duration::from_secs(60)), now)
        .unwrap();
    assert!(none.transitions.is_empty());
}

/// `payrecon stats` shows each provider's answer times learned from its recent transitions:
/// half of 100 answers after 30 s, half after 10 minutes, 25 sessions that expired after an
/// hour, each answered or expired just now; the test config's schedule (100 ms, ×1.5, to
/// 300 ms) puts the prior's 20 under a second (at 0.775 s the last). Each session weighs
/// 2^(-age/6 h) by its creation: 0.99904 (30 s), 0.98093 (10 min), 0.89090 (an hour). So of
/// 141.27: 20 answered by 0.775 s, 69.95 by 30 s, 119.00 by 600 s; 22.27 never (16%). The
/// times by which shares of the 119.00 that answer have (straight lines between those points):
/// half (59.50) 0.79 of the way from 0.775 s to 30 s, 24 s; 90% (107.10) 0.757 of the way from
/// 30 s to 600 s, 462 s (7.7 min); 95% (113.05) 531 s (8.8 min); 99% (117.81) 586 s (9.8 min).
async fn stats_show_the_learned_answer_times(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let rows: Vec<(u64, &str)> = (0..125)
        .map(|i| match i {
            0..50 => (30, "COMPLETED"),
            50..100 => (600, "FAILED"),
            _ => (3600, "EXPIRED"),
        })
        .collect();
    crate::support::closed_sessions(&l, "mopay", "lrn", &rows);
    let mut stats = env.cmd();
    stats.arg("stats");
    let (out, _) = crate::support::text(&crate::support::output(stats).await);
    let line = out
        .lines()
        .skip_while(|l| !l.starts_with("answers, learned"))
        .find(|l| l.starts_with("mopay"))
        .unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "mopay", "100", "25", "24", "s", "7.7", "min", "8.8", "min", "9.8", "min", "16%"
        ],
        "{out}"
    );
}

crate::on_both_engines!(
    checks_and_deliveries_are_kept,
    the_history_is_bounded,
    no_history_when_off,
    recent_activity_is_the_window,
    stats_show_the_learned_answer_times
);
