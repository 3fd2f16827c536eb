//! What must hold between the two ledger engines: the same tables from their migrations, an
//! application's plain INSERT on PostgreSQL, and `ledger copy` from SQLite into PostgreSQL.

use std::time::Duration;

use payrecon::ledger::{Facts, Ledger, Location, NewSession, Record, Source, Status};

use crate::support::{DirectSql, Engine, Env, count, one, output, text};

/// `table.column type not-null` for every column, and the named indexes, normalised across
/// engines (INTEGER/BIGINT → int, TEXT → text; primary keys are not null on both).
pub(crate) fn shape(l: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "sessions",
        "transitions",
        "events",
        "provider_state",
        "call_budget",
    ] {
        let rows = if l.is_pg() {
            l.query_strings(&format!(
                "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns \
                 WHERE table_name = '{table}' ORDER BY ordinal_position"
            ))
        } else {
            l.query_strings(&format!(
                "SELECT name, type, \"notnull\" OR pk > 0 FROM pragma_table_info('{table}') ORDER BY cid"
            ))
        }
        .unwrap();
        for r in rows {
            let f: Vec<&str> = r.split('|').collect();
            let ty = match f[1].to_ascii_lowercase().as_str() {
                "integer" | "bigint" => "int",
                "text" => "text",
                // SQLite's amount has no declared type (no affinity): its check demands text.
                "" if f[0] == "amount" => "text",
                other => panic!("{table}.{}: unexpected type {other}", f[0]),
            };
            let not_null = matches!(f[2], "1" | "t" | "true");
            out.push(format!("{table}.{} {ty} {not_null}", f[0]));
        }
    }
    let indexes = if l.is_pg() {
        l.query_strings(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' \
             AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key' ORDER BY 1",
        )
    } else {
        l.query_strings(
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY 1",
        )
    }
    .unwrap();
    out.extend(indexes.into_iter().map(|i| format!("index {i}")));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_migrate_to_the_same_tables() {
    let lite = Env::start_on(Engine::Sqlite).await;
    let pg = Env::start_on(Engine::Postgres).await;
    let (a, b) = (shape(&lite.ledger()), shape(&pg.ledger()));
    assert!(a.len() > 40, "{a:?}");
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_postgres_ledger_is_refused_untouched() {
    let env = Env::start_on(Engine::Postgres).await;
    let l = env.ledger();
    l.execute_batch("UPDATE payrecon_schema SET version = 99")
        .unwrap();
    let e = Ledger::connect(&env.location).err().unwrap().to_string();
    assert!(e.contains("newer"), "{e}");
    assert_eq!(one(&l, "SELECT version FROM payrecon_schema"), "99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_insert_on_postgres_is_due_and_reconciled() {
    let env = Env::start_on(Engine::Postgres).await;
    let l = env.ledger();
    env.sim
        .insert("MOP_pg_1", "100.00", "ORDER1", "complete".parse().unwrap());
    env.sim
        .insert("MOP_pg_2", "7.50", "ORDER2", "complete".parse().unwrap());
    // As an application would: the amount as a numeric literal, and as decimal text.
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
         VALUES ('mopay', 'MOP_pg_1', 'ORDER1', 100.00, 'LSL'); \
         INSERT INTO sessions (provider, session_id, reference, amount, currency) \
         VALUES ('mopay', 'MOP_pg_2', 'ORDER2', '7.50', 'LSL');",
    )
    .unwrap();
    assert_eq!(
        one(
            &l,
            "SELECT amount FROM sessions WHERE session_id = 'MOP_pg_1'"
        ),
        "100.00"
    );
    // A float's text is refused by the decimal check only when it is not decimal text.
    let e = l
        .execute_batch(
            "INSERT INTO sessions (provider, session_id, amount) VALUES ('mopay', 'bad', '1e3')",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("amount_is_decimal_text"), "{e}");
    let report = env.pass(&l, "pg").await;
    assert_eq!(report.claimed, 2, "{report:?}");
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = 'MOP_pg_1'"
        ),
        "COMPLETED"
    );
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = 'MOP_pg_2'"
        ),
        "COMPLETED"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_copy_moves_everything_verified_and_refuses_a_full_target() {
    let env = Env::start_on(Engine::Sqlite).await;
    let l = env.ledger();
    let ids: Vec<String> = (0..300).map(|i| format!("cp{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let b = ["complete", "fail", "amount", "complete-9"][i % 4];
        env.session(&l, id, b);
    }
    env.pass(&l, "before-copy").await;
    // A value COPY's text format must escape.
    l.execute_batch("UPDATE sessions SET last_error = 'tab\there\nnewline \\ backslash' WHERE session_id = 'cp001'")
        .unwrap();
    let before = shape_of_rows(&l);
    let target = crate::support::pg::new_database();

    let copy = |env: &Env| {
        let mut c = env.cmd();
        // The password from a variable (the test server trusts loopback, so any will do).
        c.args([
            "ledger",
            "copy",
            "--to",
            &target,
            "--password-env",
            "PR_TEST_PG_PASSWORD",
        ])
        .env("PR_TEST_PG_PASSWORD", "not-on-the-command-line");
        c
    };
    let o = output(copy(&env)).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("sessions") && out.contains("300 rows"),
        "{out}"
    );
    let pg = Ledger::connect(&Location::Url(target.clone())).unwrap();
    assert_eq!(shape_of_rows(&pg), before);
    assert_eq!(
        one(
            &pg,
            "SELECT last_error FROM sessions WHERE session_id = 'cp001'"
        ),
        "tab\there\nnewline \\ backslash"
    );

    // Copying again into the now full target is refused, exit 2, nothing added.
    let o = output(copy(&env)).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(count(&pg, "SELECT count(*) FROM sessions"), 300);

    // The copied ledger carries on: new rows get fresh ids, pending ones get reconciled.
    let mut env2 = env;
    env2.location = Location::Url(target);
    std::fs::write(
        &env2.config_path,
        crate::support::config_text(&env2.location, &env2.base_url),
    )
    .unwrap();
    env2.session(&pg, "after-copy", "complete");
    let settled = crate::support::wait_for(Duration::from_secs(20), || {
        crate::support::block(env2.pass(&pg, "after"));
        count(
            &pg,
            "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
        ) == 0
    })
    .await;
    assert!(settled);
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT session) FROM transitions"),
        301
    );
}

/// Every row of the three tables, as text, for comparing two ledgers.
fn shape_of_rows(l: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT id, provider, session_id, reference, amount, currency, status, created_at, \
         next_check_at, checks, answered_checks, not_found_count, last_checked_at, last_error, \
         provider_status, transaction_id, payment_method, provider_completed_at, resolved_at, \
         late_check_at FROM sessions ORDER BY id",
        "SELECT id, session, from_status, to_status, at, source, reason, provider_amount FROM transitions ORDER BY id",
        "SELECT seq, id, type, session, payload, attempts, next_attempt_at FROM events ORDER BY seq",
    ] {
        out.extend(l.query_strings(sql).unwrap());
    }
    out
}

/// A group of transitions where one session was already recorded otherwise: the others move,
/// that one gets no second transition but an anomaly event — on both engines (PostgreSQL
/// records transitions set-based, SQLite one by one). Each event reports the row as recorded
/// (g1's the counted check, g2's its reference in the ledger, not a copy the caller held).
async fn a_group_with_a_lost_compare_and_set(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    for id in ["g1", "g2", "g3"] {
        l.enqueue(&NewSession {
            provider: "mopay".into(),
            session_id: id.into(),
            ..Default::default()
        })
        .unwrap();
    }
    let claimed = |id: &str| {
        let mut s = l.get("mopay", id).unwrap().unwrap();
        if id == "g2" {
            s.reference = Some("STALE".into());
        }
        s
    };
    let moved = |id: &str, to: Status| Record::Transition {
        rowid: claimed(id).rowid,
        from: Status::Pending,
        to,
        source: Source::Poll,
        reason: None,
        facts: Facts {
            transaction_id: Some(format!("TXN-{id}")),
            ..Facts::default()
        },
        charged: true,
        compared: vec![],
        late_check_at: None,
        actor: None,
        pending_since: None,
    };
    let now = payrecon::clock::now();
    l.record(
        "a",
        now,
        &[moved("g3", Status::Failed)],
        &[],
        payrecon::reconcile::contradiction,
    )
    .unwrap();
    let written = l
        .record(
            "b",
            now,
            &[
                moved("g1", Status::Completed),
                moved("g2", Status::Completed),
                moved("g3", Status::Completed),
            ],
            &[],
            payrecon::reconcile::contradiction,
        )
        .unwrap();
    let kinds: Vec<&str> = written.iter().map(|w| w.kind).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "session.completed").count(),
        2
    );
    assert!(kinds.contains(&"session.anomaly"), "{kinds:?}");
    let mut looked_at = 0;
    for w in &written {
        let p: serde_json::Value = serde_json::from_str(&w.payload).unwrap();
        match p["data"]["session_id"].as_str() {
            Some("g1") => assert_eq!(p["data"]["checks"], 1, "{p}"),
            Some("g2") => assert_eq!(p["data"]["reference"], serde_json::Value::Null, "{p}"),
            _ => continue,
        }
        looked_at += 1;
    }
    assert_eq!(looked_at, 2, "the events of g1 and g2");
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'g3'"),
        "FAILED"
    );
    assert_eq!(
        one(
            &l,
            "SELECT transaction_id FROM sessions WHERE session_id = 'g1'"
        ),
        "TXN-g1"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 3);
    assert_eq!(
        count(&l, "SELECT count(DISTINCT session) FROM transitions"),
        3
    );
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 4);
}

/// The schema refuses, by named rules, what payrecon could not use — on both engines — and a
/// migration never fails on rows that got in before (they stay, for payrecon to set aside).
/// A payment is found by either of the provider's ids: its session id first, else its
/// `provider_ref` — on both engines.
async fn a_session_is_named_by_either_id(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_1', 'trxn_1'); \
         INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'trxn_2', 'pay_x'); \
         INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_2', 'trxn_2');",
    )
    .unwrap();
    let named = |id: &str| l.named("moflay", id).unwrap().map(|s| s.session_id);
    assert_eq!(named("pay_1").as_deref(), Some("pay_1"));
    assert_eq!(named("trxn_1").as_deref(), Some("pay_1"));
    assert_eq!(
        named("trxn_2").as_deref(),
        Some("trxn_2"),
        "the session id first"
    );
    assert_eq!(named("trxn_9"), None);
    assert_eq!(
        l.named("mopay", "trxn_1").unwrap().map(|s| s.session_id),
        None
    );
}

async fn the_ledger_refuses_what_payrecon_cannot_use(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let pg = engine.is_pg();
    let insert = |l: &Ledger, cols: &str, values: &str| {
        l.execute_batch(&format!(
            "INSERT INTO sessions (provider, session_id{cols}) VALUES ('mopay'{values})"
        ))
    };
    let (nl, esc, nel) = if pg {
        ("chr(10)", "chr(27)", "chr(133)")
    } else {
        ("char(10)", "char(27)", "char(133)")
    };
    let mut cases = vec![
        (
            ", reference".to_string(),
            format!(", 'r1', 'a' || {nl} || 'b'"),
            "reference_is_plain_text",
        ),
        (
            ", reference".into(),
            ", 'r2', ' padded'".into(),
            "reference_is_plain_text",
        ),
        (
            ", reference".into(),
            format!(", 'r3', 'x' || {esc}"),
            "reference_is_plain_text",
        ),
        (
            ", reference".into(),
            format!(", 'r4', '{}'", "x".repeat(257)),
            "reference_is_plain_text",
        ),
        (
            ", provider_ref".into(),
            format!(", 'p1', 'trxn_' || {nl}"),
            "provider_ref_is_plain_text",
        ),
        (
            ", provider_ref".into(),
            ", 'p2', 'trxn_1 '".into(),
            "provider_ref_is_plain_text",
        ),
        (
            ", provider_ref".into(),
            format!(", 'p3', '{}'", "x".repeat(257)),
            "provider_ref_is_plain_text",
        ),
        (
            ", currency".into(),
            ", 'c1', 'L1'".into(),
            "currency_is_a_code",
        ),
        (
            ", currency".into(),
            ", 'c2', 'TOOLONGCODE'".into(),
            "currency_is_a_code",
        ),
        (
            "".into(),
            format!(", 'n' || {nel}"),
            if pg {
                "session_id_is_plain"
            } else {
                "session_id_is_valid"
            },
        ),
        (
            "".into(),
            ", ' s1'".into(),
            if pg {
                "session_id_is_plain"
            } else {
                "session_id_is_valid"
            },
        ),
        (
            ", amount".into(),
            ", 'a1', '1e3'".into(),
            "amount_is_decimal_text",
        ),
        (
            ", created_at".into(),
            ", 'd1', 'yesterday'".into(),
            "times_are_ledger_times",
        ),
        (
            ", created_at".into(),
            ", 'd2', '2026-11-25T10:05:03Z'".into(),
            "times_are_ledger_times",
        ),
        (
            ", next_check_at".into(),
            ", 'd3', 'never'".into(),
            "times_are_ledger_times",
        ),
        (
            ", status".into(),
            ", 'st1', 'COMPLETED'".into(),
            "new_session_is_pending",
        ),
    ];
    if !pg {
        // SQLite's own storage classes: refused however affinity would convert them.
        cases.extend([
            (
                ", amount".to_string(),
                ", 'a2', 100.5".to_string(),
                "amount_is_decimal_text",
            ),
            (
                ", amount".into(),
                ", 'a3', 0.1 + 0.2".into(),
                "amount_is_decimal_text",
            ),
            (
                ", amount".into(),
                ", 'a4', 100".into(),
                "amount_is_decimal_text",
            ),
            (
                "".into(),
                ", X'4142'".into(),
                "session_values_have_their_types",
            ),
            (
                ", checks".into(),
                ", 't1', 'many'".into(),
                "session_values_have_their_types",
            ),
            (
                ", reference".into(),
                ", 't2', X'41'".into(),
                "session_values_have_their_types",
            ),
        ]);
    }
    for (cols, values, rule) in &cases {
        let e = insert(&l, cols, values).expect_err(values).to_string();
        assert!(e.contains(rule), "{values}: {e}");
    }
    insert(
        &l,
        ", reference, amount, currency",
        ", 'ok', 'ORDER1', '100.00', 'LSL'",
    )
    .unwrap();
    assert_eq!(count(&l, "SELECT count(*) FROM sessions"), 1);
    // An application's UPDATE is held to the same rule.
    let e = l
        .execute_batch("UPDATE sessions SET provider_ref = ' trxn_2' WHERE session_id = 'ok'")
        .expect_err("a padded provider_ref")
        .to_string();
    assert!(e.contains("provider_ref_is_plain_text"), "{e}");
    l.execute_batch("UPDATE sessions SET provider_ref = 'trxn_2' WHERE session_id = 'ok'")
        .unwrap();
    if !pg {
        // A row from before the rules, then the migration run again: it goes through.
        l.execute_batch(
            "DROP TRIGGER sessions_rules_insert; \
             INSERT INTO sessions (provider, session_id, reference) VALUES ('mopay', X'4142', 'a' || char(10)); \
             PRAGMA user_version = 4;",
        )
        .unwrap();
        l.execute_batch(UNDO_9_ON_SQLITE).unwrap();
        drop(l);
        let l = env.ledger();
        assert_eq!(count(&l, "SELECT count(*) FROM sessions"), 2);
        let e = insert(&l, ", reference", ", 'r9', 'a' || char(10)")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reference_is_plain_text"),
            "the rules are back: {e}"
        );
    }
}

/// Rows that got in around the rules (before the migration that brought them) are set aside,
/// never fatal, and never forgotten, on both engines: every claim writes the row it takes, and a
/// rule that re-checked the whole row (PostgreSQL's CHECK constraints did) failed every pass on
/// one bad time; a next_check_at that is not a time was never due.
/// What migrations 9 to 12 add, taken away on SQLite so that they run again (SQLite cannot add
/// a column twice; PostgreSQL's migrations run again as they are).
const UNDO_9_ON_SQLITE: &str = "DROP TABLE checks; DROP TABLE delivery_attempts; \
     ALTER TABLE transitions DROP COLUMN pending_since; \
     DROP TABLE audit_log; \
     DROP INDEX sessions_by_reference; DROP INDEX sessions_by_transaction_id; \
     ALTER TABLE transitions DROP COLUMN actor; \
     DROP TABLE unmatched_payments; \
     ALTER TABLE sessions DROP COLUMN listed_at; \
     ALTER TABLE provider_state DROP COLUMN sweep_due_at; \
     ALTER TABLE provider_state DROP COLUMN swept_at; \
     ALTER TABLE provider_state DROP COLUMN sweep_started_at; \
     ALTER TABLE provider_state DROP COLUMN sweep_error;";

async fn a_row_from_before_the_rules_is_set_aside_not_fatal(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    for i in 0..5 {
        env.session(&l, &format!("good{i}"), "complete");
    }
    // The rows as they were left before the rules (version 5, without what 8 adds, then ran
    // the migrations after it again).
    let (off, on) = if engine.is_pg() {
        (
            "ALTER TABLE sessions DISABLE TRIGGER sessions_rules".to_string(),
            "ALTER TABLE sessions ENABLE TRIGGER sessions_rules; \
             ALTER TABLE sessions DROP COLUMN provider_ref; UPDATE payrecon_schema SET version = 5"
                .to_string(),
        )
    } else {
        (
            "DROP TRIGGER sessions_rules_insert".to_string(),
            format!(
                "DROP TRIGGER sessions_provider_ref_insert; DROP TRIGGER sessions_provider_ref_update; \
             DROP INDEX sessions_by_provider_ref; ALTER TABLE sessions DROP COLUMN provider_ref; \
             PRAGMA user_version = 5; {UNDO_9_ON_SQLITE}"
            ),
        )
    };
    l.execute_batch(&format!(
        "{off}; \
         INSERT INTO sessions (provider, session_id, created_at) VALUES ('mopay', 'old_time', 'yesterday'); \
         INSERT INTO sessions (provider, session_id, reference) VALUES ('mopay', 'old_ref', ' padded'); \
         INSERT INTO sessions (provider, session_id, next_check_at) VALUES ('mopay', 'old_never_due', 'soon'); \
         {on};"
    ))
    .unwrap();
    drop(l);
    let l = env.ledger();
    let report = env.pass(&l, "p").await;
    assert_eq!(
        report.resolved(),
        7,
        "the good ones, old_ref and old_never_due: {report:?}"
    );
    assert_eq!(report.unreadable, 1, "the bad time: {report:?}");
    assert_eq!(
        one(
            &l,
            "SELECT last_error FROM sessions WHERE session_id = 'old_time'"
        ),
        "unreadable row: created_at \"yesterday\" is not a time"
    );
    // A padded reference is readable: it is checked and compared like any other.
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE session_id = 'old_ref' AND checks = 1"
        ),
        1
    );
}

/// When more is due than can be checked, claims follow the documented order (hand-written
/// from docs/operations.md): sessions overdue by more than ten minutes first, then sessions in
/// their first ten minutes, then the rest, each most overdue first; one provider's claim takes
/// only its sessions, and the claim of the providers not configured takes none of theirs.
async fn due_sessions_are_claimed_aged_then_young_then_the_rest(engine: Engine) {
    use payrecon::clock;
    use payrecon::ledger::{ClaimMode, Due};
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    let now = clock::now();
    let ago = |secs: u64| clock::format(clock::sub(now, Duration::from_secs(secs)));
    // (provider, id, created, due)
    let rows = [
        ("mopay", "old_recent", ago(7200), ago(60)),
        ("mopay", "young_later", ago(120), ago(10)),
        ("mopay", "aged", ago(10_800), ago(1200)),
        ("mopay", "young", ago(60), ago(30)),
        (
            "mopay",
            "not_due",
            ago(60),
            clock::format(clock::add(now, Duration::from_secs(60))),
        ),
        ("little", "elsewhere", ago(60), ago(300)),
    ];
    for (provider, id, created, due) in &rows {
        l.execute_batch(&format!(
            "INSERT INTO sessions (provider, session_id, created_at, next_check_at) \
             VALUES ('{provider}', '{id}', '{created}', '{due}')"
        ))
        .unwrap();
    }
    let claim_one = |due: Due| {
        let c = l
            .claim(
                "t",
                clock::now(),
                clock::add(clock::now(), Duration::from_secs(60)),
                1,
                ClaimMode::Due(due),
            )
            .unwrap();
        c.sessions.first().map(|s| s.session_id.clone())
    };
    let mopay = || Due {
        provider: Some("mopay".into()),
        ..Due::by(
            clock::now(),
            Duration::from_secs(600),
            Duration::from_secs(600),
        )
    };
    let order: Vec<_> = (0..5).map(|_| claim_one(mopay())).collect();
    assert_eq!(
        order,
        [
            Some("aged".to_string()),
            Some("young".to_string()),
            Some("young_later".to_string()),
            Some("old_recent".to_string()),
            None
        ]
    );
    let others = Due {
        except: vec!["little".into()],
        ..Due::by(
            clock::now(),
            Duration::from_secs(600),
            Duration::from_secs(600),
        )
    };
    assert_eq!(claim_one(others), None);
    assert_eq!(
        claim_one(Due::by(
            clock::now(),
            Duration::from_secs(600),
            Duration::from_secs(600)
        )),
        Some("elsewhere".to_string())
    );
}

crate::on_both_engines!(
    a_session_is_named_by_either_id,
    due_sessions_are_claimed_aged_then_young_then_the_rest,
    a_group_with_a_lost_compare_and_set,
    the_ledger_refuses_what_payrecon_cannot_use,
    a_row_from_before_the_rules_is_set_aside_not_fatal
);

/// `run` started while its PostgreSQL cannot be reached (a fault proxy with its port closed, as
/// during a restart or failover) waits for it, then works; a database that refuses (one that
/// does not exist) ends it at once with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_waits_for_a_database_it_cannot_reach_yet_and_exits_on_a_refusal() {
    use payrecon_testkit::proxy::{FaultProxy, Faults};
    use std::process::Stdio;

    let env = Env::start_on(Engine::Postgres).await;
    let l = env.ledger();
    env.session(&l, "waits1", "complete");
    let Location::Url(url) = env.location.clone() else {
        unreachable!()
    };
    let (target, db) = crate::support::pg::address_and_name(&url);
    let proxy = FaultProxy::start(target).unwrap();
    proxy.set(Faults {
        down: true,
        ..Faults::default()
    });
    env.set(
        "url",
        &format!("\"postgres://postgres@{}/{db}\"", proxy.addr()),
    );
    let log = env.dir.path().join("run.log");
    let mut c = env.cmd();
    c.arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut daemon = crate::support::Guard(c.spawn().unwrap());
    let waited = crate::support::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("ledger unreachable; waiting for it")
            .count()
            >= 2
    })
    .await;
    assert!(waited, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(daemon.0.try_wait().unwrap().is_none(), "run exited");
    assert_eq!(one(&l, "SELECT status FROM sessions"), "PENDING");

    proxy.clear();
    let done = crate::support::wait_for(Duration::from_secs(30), || {
        one(&l, "SELECT status FROM sessions") == "COMPLETED"
    })
    .await;
    assert!(done, "{}", std::fs::read_to_string(&log).unwrap());
    drop(daemon);

    env.set(
        "url",
        &format!("\"postgres://postgres@{target}/no_such_db\""),
    );
    let mut c = env.cmd();
    c.arg("run");
    let out = output(c).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"no_such_db\" does not exist"), "{err}");
}
