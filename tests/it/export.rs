//! Export, stats totals and manual resolution, through the real binary.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::support::{DirectSql, Engine, Env, count, one, output, text};

/// A ledger with known contents, written as an application would (plain SQL).
fn known_ledger(env: &Env) {
    // The application's own connection: plain SQL, the same on both engines.
    env.ledger().execute_batch(
        r#"
INSERT INTO sessions (provider, session_id, reference, amount, currency, status, created_at, checks,
                      transaction_id, payment_method, provider_completed_at, resolved_at) VALUES
 ('mopay', 'MOP_1_A', 'A', '100.00', 'LSL', 'PENDING', '2026-11-01T10:00:00.000Z', 2, 'TXN1', 'mpesa', '2026-11-01T10:05:00.000Z', '2026-11-01T10:06:00.000Z'),
 ('mopay', 'MOP_2_B', 'B,"quoted"', '0.10', 'LSL', 'PENDING', '2026-11-02T10:00:00.000Z', 1, 'TXN2', 'ecocash', NULL, '2026-11-02T11:00:00.000Z'),
 ('mopay', 'MOP_3_C', 'C', '0.20', 'ZAR', 'PENDING', '2026-11-03T10:00:00.000Z', 1, 'TXN3', 'card', NULL, '2026-11-03T11:00:00.000Z'),
 ('mopay', 'MOP_4_D', 'D', '55.55', 'LSL', 'PENDING', '2026-11-04T10:00:00.000Z', 3, NULL, 'card', NULL, '2026-11-04T11:00:00.000Z'),
 ('mopay', 'MOP_5_E', NULL, NULL, NULL, 'PENDING', '2026-11-05T10:00:00.000Z', 0, NULL, NULL, NULL, NULL),
 ('mopay', 'MOP_6_F', 'F', '0.70', 'LSL', 'PENDING', '2026-11-06T10:00:00.000Z', 4, 'TXN6', 'mpesa', NULL, '2026-11-06T11:00:00.000Z');
-- What payrecon would have recorded: a new session starts PENDING (the schema says so).
UPDATE sessions SET status = 'COMPLETED' WHERE session_id IN ('MOP_1_A', 'MOP_2_B', 'MOP_3_C', 'MOP_6_F');
UPDATE sessions SET status = 'FAILED' WHERE session_id = 'MOP_4_D';
"#,
    )
    .unwrap();
}

const EXPECTED_CSV: &str = "\
provider,session_id,reference,amount,currency,status,transaction_id,payment_method,provider_completed_at,resolved_at,checks
mopay,MOP_1_A,A,100.00,LSL,COMPLETED,TXN1,mpesa,2026-11-01T10:05:00.000Z,2026-11-01T10:06:00.000Z,2
mopay,MOP_2_B,\"B,\"\"quoted\"\"\",0.10,LSL,COMPLETED,TXN2,ecocash,,2026-11-02T11:00:00.000Z,1
mopay,MOP_3_C,C,0.20,ZAR,COMPLETED,TXN3,card,,2026-11-03T11:00:00.000Z,1
mopay,MOP_4_D,D,55.55,LSL,FAILED,,card,,2026-11-04T11:00:00.000Z,3
mopay,MOP_5_E,,,,PENDING,,,,,0
mopay,MOP_6_F,F,0.70,LSL,COMPLETED,TXN6,mpesa,,2026-11-06T11:00:00.000Z,4
";

async fn csv_and_jsonl_exports_match_byte_for_byte(engine: Engine) {
    let env = Env::start_on(engine).await;
    known_ledger(&env);
    let file = env.dir.path().join("out.csv");
    let mut c = env.cmd();
    c.args(["export", "--format", "csv", "--output"]).arg(&file);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), EXPECTED_CSV);
    // Written through a temporary file that was renamed: nothing else is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".payrecon-export")
        })
        .collect();
    assert!(leftovers.is_empty());

    let mut c = env.cmd();
    c.args([
        "export",
        "--format",
        "jsonl",
        "--status",
        "completed",
        "--since",
        "2026-11-02T00:00:00Z",
        "--until",
        "2026-11-06T00:00:00Z",
    ]);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        out,
        "{\"provider\":\"mopay\",\"session_id\":\"MOP_2_B\",\"reference\":\"B,\\\"quoted\\\"\",\"amount\":\"0.10\",\"currency\":\"LSL\",\"status\":\"COMPLETED\",\"transaction_id\":\"TXN2\",\"payment_method\":\"ecocash\",\"provider_completed_at\":null,\"resolved_at\":\"2026-11-02T11:00:00.000Z\",\"checks\":1}\n\
         {\"provider\":\"mopay\",\"session_id\":\"MOP_3_C\",\"reference\":\"C\",\"amount\":\"0.20\",\"currency\":\"ZAR\",\"status\":\"COMPLETED\",\"transaction_id\":\"TXN3\",\"payment_method\":\"card\",\"provider_completed_at\":null,\"resolved_at\":\"2026-11-03T11:00:00.000Z\",\"checks\":1}\n"
    );
    assert!(err.contains("exported 2 sessions"), "{err}");

    // Repeated statuses crowd none out: seven flags naming all six give every row.
    let mut c = env.cmd();
    c.args(["export", "--format", "csv"]);
    for st in [
        "pending",
        "pending",
        "failed",
        "cancelled",
        "expired",
        "review",
        "completed",
    ] {
        c.args(["--status", st]);
    }
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(out, EXPECTED_CSV);

    for (args, named) in [
        (vec!["--format", "xml"], "xml"),
        (vec!["--format", "csv", "--since", "last week"], "--since"),
        (vec!["--format", "csv", "--status", "paid"], "--status"),
    ] {
        let mut c = env.cmd();
        c.arg("export").args(&args);
        let o = output(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o).1.contains(named), "{args:?}: {}", text(&o).1);
    }
}

async fn completed_totals_in_stats_and_export_agree(engine: Engine) {
    let env = Env::start_on(engine).await;
    known_ledger(&env);
    let mut c = env.cmd();
    c.args(["export", "--format", "csv", "--status", "COMPLETED"]);
    let (csv_text, _) = text(&output(c).await);
    let mut from_export: std::collections::BTreeMap<String, (u64, Decimal)> = Default::default();
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    for row in r.records() {
        let row = row.unwrap();
        let e = from_export.entry(row[4].to_string()).or_default();
        e.0 += 1;
        e.1 += Decimal::from_str(&row[3]).unwrap();
    }
    assert_eq!(
        from_export["LSL"],
        (3, Decimal::from_str("100.80").unwrap())
    );
    let mut c = env.cmd();
    c.arg("stats");
    let (stats, _) = text(&output(c).await);
    for (currency, (n, sum)) in &from_export {
        let line = stats
            .lines()
            .find(|l| l.split_whitespace().next() == Some(currency.as_str()))
            .unwrap_or_else(|| panic!("no {currency} line in {stats}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], n.to_string(), "{line}");
        assert_eq!(Decimal::from_str(cols[2]).unwrap(), *sum, "{line}");
    }
}

async fn resolve_moves_pending_or_review_once_and_nothing_else(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.session(&l, "rev1", "amount");
    env.session(&l, "pend1", "pending");
    env.pass(&l, "p").await;
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'rev1'"),
        "REVIEW"
    );
    // The daemon leaves REVIEW alone.
    l.execute_batch("UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z'")
        .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.polls("rev1"), 1);

    let resolve = |id: &str, to: &str| {
        let mut c = env.cmd();
        c.args([
            "resolve",
            id,
            "--to",
            to,
            "--reason",
            "checked with the customer's bank",
        ]);
        output(c)
    };
    let o = resolve("rev1", "COMPLETED").await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("REVIEW -> COMPLETED"));
    let o = resolve("pend1", "expired").await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // A final state does not move again, and REVIEW/PENDING are not targets.
    let o = resolve("rev1", "FAILED").await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("final"), "{}", text(&o).1);
    let o = resolve("pend1", "REVIEW").await;
    assert_eq!(o.status.code(), Some(2));
    let mut c = env.cmd();
    c.args(["resolve", "pend1", "--to", "FAILED", "--reason", " "]);
    assert_eq!(output(c).await.status.code(), Some(2));

    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM transitions WHERE source = 'manual'"
        ),
        2
    );
    assert_eq!(
        one(
            &l,
            "SELECT from_status || '>' || to_status || ' ' || reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'rev1' AND source = 'manual'"
        ),
        "REVIEW>COMPLETED checked with the customer's bank"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 3);
    let payload = one(
        &l,
        "SELECT payload FROM events WHERE type = 'session.expired'",
    );
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["data"]["from"], "PENDING");
    assert_eq!(v["data"]["reason"], "checked with the customer's bank");
    // Without --by, the decision names the Unix user who ran the command.
    let me = unix_user();
    assert_eq!(v["data"]["actor"], me.as_str());
    assert_eq!(
        one(
            &l,
            "SELECT actor FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'pend1'"
        ),
        me
    );
}

/// The Unix user running the tests, by uid in /etc/passwd (written here, not payrecon's).
fn unix_user() -> String {
    let uid = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(uid.stdout).unwrap().trim().to_string()
}

/// Every person's decision names them — the transition, the event's `actor`, an entry in the
/// audit log (`payrecon audit`) — and the audit log is append-only, for applications and for
/// hand edits alike: an UPDATE, a DELETE (and on PostgreSQL a TRUNCATE) are refused by name.
async fn decisions_name_their_maker_in_an_append_only_audit_log(engine: Engine) {
    let env = Env::start_on(engine).await;
    let l = env.ledger();
    env.session(&l, "aud1", "amount");
    env.pass(&l, "p").await;
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        output(c)
    };
    let o = run(&[
        "resolve", "aud1", "--to", "FAILED", "--reason", "refunded", "--by", "alice",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("by alice"));
    let bad = run(&[
        "resolve", "aud1", "--to", "FAILED", "--reason", "x", "--by", " ",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2), "an empty name is refused");
    let payload = one(
        &l,
        "SELECT payload FROM events WHERE type = 'session.failed'",
    );
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["data"]["actor"], "alice");
    assert_eq!(
        one(
            &l,
            "SELECT actor || ' ' || action || ' ' || target || ' ' || detail FROM audit_log"
        ),
        "alice resolve mopay/aud1 REVIEW -> FAILED: refunded"
    );
    // The daemon's own transitions name nobody.
    env.session(&l, "aud2", "complete");
    env.pass(&l, "p").await;
    assert_eq!(
        count(&l, "SELECT count(*) FROM transitions WHERE actor IS NULL"),
        2
    );
    let (listed, _) = text(&run(&["audit"]).await);
    assert!(
        listed.contains("alice") && listed.contains("mopay/aud1"),
        "{listed}"
    );
    let (shown, _) = text(&run(&["show", "aud1"]).await);
    assert!(
        shown.contains("REVIEW -> FAILED  source=manual by=alice  refunded"),
        "{shown}"
    );
    for sql in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ] {
        let e = l.execute_batch(sql).expect_err(sql);
        assert!(e.contains("audit_log_is_append_only"), "{sql}: {e}");
    }
    if engine.is_pg() {
        let e = l.execute_batch("TRUNCATE audit_log").expect_err("truncate");
        assert!(e.contains("audit_log_is_append_only"), "{e}");
    }
    assert_eq!(
        count(&l, "SELECT count(*) FROM audit_log WHERE actor = 'alice'"),
        1
    );
}

crate::on_both_engines!(
    decisions_name_their_maker_in_an_append_only_audit_log,
    csv_and_jsonl_exports_match_byte_for_byte,
    completed_totals_in_stats_and_export_agree,
    resolve_moves_pending_or_review_once_and_nothing_else,
);

/// A cell a spreadsheet would run as a formula is neutralised in CSV (a `'` before it); JSON
/// lines keep the text as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_never_run_as_formulas() {
    let env = Env::start().await;
    env.ledger()
        .execute_batch(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency, status, \
             transaction_id, payment_method, resolved_at) VALUES \
             ('mopay', '-2+3', '=HYPERLINK(\"http://x\")', '1.00', 'LSL', 'PENDING', '+41', \
              '@SUM(A1)', '2026-11-01T10:06:00.000Z'); \
             UPDATE sessions SET status = 'COMPLETED'",
        )
        .unwrap();
    let run = |format: &str| {
        let mut c = env.cmd();
        c.args(["export", "--format", format]);
        output(c)
    };
    let (csv, _) = text(&run("csv").await);
    let row = csv.lines().nth(1).unwrap();
    assert_eq!(
        row,
        "mopay,'-2+3,\"'=HYPERLINK(\"\"http://x\"\")\",1.00,LSL,COMPLETED,'+41,'@SUM(A1),,2026-11-01T10:06:00.000Z,0"
    );
    let (jsonl, _) = text(&run("jsonl").await);
    let v: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(v["reference"], "=HYPERLINK(\"http://x\")");
    assert_eq!(v["session_id"], "-2+3");
}
