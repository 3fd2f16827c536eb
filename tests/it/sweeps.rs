//! Sweeps of a provider's list of payments (Moflay's `GET /v1/transactions`): listed payments
//! tied to sessions only by an id the ledger holds and decided as answers, sessions a sweep
//! answers for not asked about one by one, payments no session holds reported and matched, and
//! the bounds on a hostile list. Against the simulator, the documented page served verbatim,
//! and hostile servers, over loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use serde_json::json;

use crate::support::canned::Canned;
use crate::support::{DirectSql, Engine, Env, count, one, output, text};
use payrecon::ledger::Ledger;
use payrecon::provider::Kind;

fn status(l: &Ledger, id: &str) -> String {
    one(
        l,
        &format!("SELECT status FROM sessions WHERE session_id = '{id}'"),
    )
}

/// The simulator's five providers, `rate_limit = "off"`, with these lines added to Moflay's
/// table.
fn with_moflay(env: &mut Env, moflay_lines: &str) {
    env.with_all_providers(&[("moflay", moflay_lines)]);
}

/// A payment Moflay lists (`trxn_…`) with its `pay_…` id, registered at the simulator.
fn listed(env: &Env, pay: &str, trxn: &str, amount: &str, behaviour: &str) {
    env.sim.insert_listed(
        Kind::Moflay,
        pay,
        trxn,
        amount,
        "ORD",
        "KES",
        behaviour.parse().unwrap(),
    );
}

/// The real binary with this env's config and `args`.
fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = env.cmd();
    c.args(args);
    c
}

/// The next sweep is due now (sweeps between passes are otherwise seconds to minutes apart).
fn sweep_due_now(l: &Ledger) {
    l.execute_batch("UPDATE provider_state SET sweep_due_at = NULL")
        .unwrap();
}

async fn listed_payments_are_answers_tied_only_by_an_id_the_ledger_holds(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    with_moflay(&mut env, "");
    let l = env.ledger();
    listed(&env, "pay_a", "trxn_a", "100.00", "complete");
    listed(&env, "pay_b", "trxn_b", "100.00", "fail");
    listed(&env, "pay_c", "trxn_c", "100.00", "complete.after-600000");
    listed(&env, "trxn_d", "trxn_d", "100.00", "complete");
    listed(&env, "pay_f", "trxn_f", "100.00", "amount");
    // Listed too, but the ledger holds only its `pay_…` id: the list cannot name it.
    listed(&env, "pay_e", "trxn_e", "100.00", "complete");
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref, amount, currency, reference) VALUES \
           ('moflay', 'pay_a', 'trxn_a', '100.00', 'KES', 'ORD'), \
           ('moflay', 'pay_b', 'trxn_b', '100.00', 'KES', 'ORD'), \
           ('moflay', 'pay_c', 'trxn_c', '100.00', 'KES', 'ORD'), \
           ('moflay', 'pay_f', 'trxn_f', '100.00', 'KES', 'ORD'), \
           ('moflay', 'pay_e', NULL, '100.00', 'KES', 'ORD'); \
         INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('moflay', 'trxn_d', '100.00', 'KES');",
    )
    .unwrap();
    let report = env.pass(&l, "p").await;
    assert!(report.list_pages >= 1, "{report:?}");
    assert_eq!(status(&l, "pay_a"), "COMPLETED");
    assert_eq!(status(&l, "pay_b"), "FAILED");
    assert_eq!(status(&l, "pay_c"), "PENDING");
    assert_eq!(status(&l, "trxn_d"), "COMPLETED");
    assert_eq!(status(&l, "pay_f"), "REVIEW", "the list's amount is 1.00");
    assert_eq!(status(&l, "pay_e"), "COMPLETED", "checked on its own");
    // Decided from the list: no status call for them; the list carries no accountReference,
    // so the event says amount and currency were compared, not the reference.
    for id in ["pay_a", "pay_b", "pay_c", "trxn_d", "pay_f"] {
        assert_eq!(env.sim.polls(id), 0, "{id} was asked about on its own");
    }
    assert_eq!(env.sim.polls("pay_e"), 1);
    let compared = one(
        &l,
        "SELECT e.payload FROM events e JOIN sessions s ON s.id = e.session WHERE s.session_id = 'pay_a'",
    );
    assert!(
        compared.contains(r#""compared":["amount","currency"]"#),
        "{compared}"
    );
    assert_eq!(
        one(
            &l,
            "SELECT reason FROM transitions t JOIN sessions s ON s.id = t.session WHERE s.session_id = 'pay_f'"
        ),
        "amount differs: ledger 100.00, provider 1.00 (underpaid by 99.00)"
    );
    // pay_c is still pending at the provider: an answered check, and not asked about on its
    // own while sweeps answer for it — even once it is due.
    assert_eq!(
        one(
            &l,
            "SELECT answered_checks FROM sessions WHERE session_id = 'pay_c'"
        ),
        "1"
    );
    l.execute_batch(
        "UPDATE sessions SET next_check_at = '2000-01-01T00:00:00.000Z' WHERE session_id = 'pay_c'",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.polls("pay_c"), 0, "put off to the next sweep");
    assert!(
        one(
            &l,
            "SELECT next_check_at FROM sessions WHERE session_id = 'pay_c'"
        )
        .as_str()
            > "2001",
        "due again after the next sweep"
    );
    // The paid trxn_e no session holds by that id was sighted, then matched once pay_e's own
    // answer filled its provider_ref: never reported.
    sweep_due_now(&l);
    env.pass(&l, "p").await;
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE type LIKE 'payment.%'"
        ),
        0
    );
}

async fn a_payment_no_session_holds_is_reported_matched_or_dismissed(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    with_moflay(&mut env, "unmatched_after = \"1s\"");
    let l = env.ledger();
    // Paid at the provider; the application crashed before its INSERT.
    listed(&env, "pay_lost", "trxn_lost", "250.00", "complete");
    listed(&env, "pay_gone", "trxn_gone", "75.50", "complete");
    // Not paid: never reported.
    listed(
        &env,
        "pay_wait",
        "trxn_wait",
        "10.00",
        "complete.after-600000",
    );
    // A PENDING session the list cannot name (a `pay_…` id, no provider_ref, no answer yet):
    // the ledger might hold a listed payment under its other id, so each is looked up once.
    env.sim.insert(
        "pay_someone",
        "5.00",
        "ORD",
        "5xx-50.pending".parse().unwrap(),
    );
    l.execute_batch("INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'pay_someone')")
        .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM unmatched_payments WHERE reported_at IS NULL"
        ),
        2,
        "sighted, within the grace window"
    );
    assert_eq!(count(&l, "SELECT count(*) FROM events"), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sweep_due_now(&l);
    let report = env.pass(&l, "p").await;
    assert_eq!(report.unmatched, 2, "{report:?}");
    // One lookup each, by the listed id: it gave the other id.
    assert_eq!(
        one(
            &l,
            "SELECT other_id FROM unmatched_payments WHERE payment_id = 'trxn_lost'"
        ),
        "pay_lost"
    );
    let event = one(
        &l,
        "SELECT e.payload FROM events e JOIN unmatched_payments u ON u.id = e.payment \
         WHERE u.payment_id = 'trxn_lost' AND e.type = 'payment.unmatched'",
    );
    let v: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(v["data"]["amount"], "250.00");
    assert_eq!(v["data"]["currency"], "KES");
    assert_eq!(v["data"]["provider_status"], "completed");
    assert_eq!(v["data"]["other_id"], "pay_lost");
    // The command line lists them; stats says so.
    let (out, _) = text(&output(cmd(&env, &["unmatched"])).await);
    assert!(
        out.contains("trxn_lost") && out.contains("250.00 KES") && out.contains("OPEN"),
        "{out}"
    );
    let (stats, _) = text(&output(cmd(&env, &["stats"])).await);
    assert!(stats.contains("UNMATCHED PAYMENTS: 2"), "{stats}");
    // The application writes its session late, by the `pay_…` id only: matched, with an event.
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES ('moflay', 'pay_lost', '250.00', 'KES')",
    )
    .unwrap();
    sweep_due_now(&l);
    env.pass(&l, "p").await;
    let matched = one(
        &l,
        "SELECT e.payload FROM events e WHERE e.type = 'payment.matched'",
    );
    assert!(matched.contains(r#""session_id":"pay_lost""#), "{matched}");
    // A person dismisses the other, with their name and reason; twice is refused.
    let id = one(
        &l,
        "SELECT id FROM unmatched_payments WHERE payment_id = 'trxn_gone'",
    );
    let o = output(cmd(
        &env,
        &[
            "unmatched",
            "dismiss",
            &id,
            "--by",
            "alice",
            "--reason",
            "refunded by hand",
        ],
    ))
    .await;
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        one(
            &l,
            "SELECT dismissed_by || ' / ' || dismiss_reason FROM unmatched_payments WHERE payment_id = 'trxn_gone'"
        ),
        "alice / refunded by hand"
    );
    let again = output(cmd(
        &env,
        &[
            "unmatched",
            "dismiss",
            &id,
            "--by",
            "bob",
            "--reason",
            "again",
        ],
    ))
    .await;
    assert_eq!(again.status.code(), Some(2), "{:?}", text(&again));
    assert!(text(&again).1.contains("already dismissed"));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM unmatched_payments WHERE reported_at IS NOT NULL \
             AND matched_at IS NULL AND dismissed_at IS NULL"
        ),
        0
    );
    // Never a session transition, and the unpaid one was never recorded.
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM unmatched_payments WHERE payment_id = 'trxn_wait'"
        ),
        0
    );
}

/// When every PENDING session of the provider is within the list's reach, the ledger cannot
/// hold a listed payment under its other id: it is reported without a lookup.
async fn a_ledger_all_in_reach_reports_without_a_lookup(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    with_moflay(&mut env, "unmatched_after = \"1s\"");
    let l = env.ledger();
    listed(&env, "pay_solo", "trxn_solo", "40.00", "complete");
    listed(
        &env,
        "pay_mine",
        "trxn_mine",
        "40.00",
        "complete.after-600000",
    );
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_mine', 'trxn_mine')",
    )
    .unwrap();
    env.pass(&l, "p").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sweep_due_now(&l);
    let report = env.pass(&l, "p").await;
    assert_eq!(report.unmatched, 1, "{report:?}");
    assert_eq!(env.sim.polls("pay_solo"), 0, "no lookup");
    assert_eq!(
        one(
            &l,
            "SELECT coalesce(other_id, '-') FROM unmatched_payments WHERE payment_id = 'trxn_solo'"
        ),
        "-"
    );
}

/// A person matches an unmatched payment to the session it paid for, by the command line: the
/// payment's id becomes the session's `provider_ref` and the session is due now, with
/// `payment.matched` and an audit entry; a session that is absent, of another provider or
/// already holding another payment is refused, and a settled payment cannot be matched again.
async fn a_person_matches_an_unmatched_payment_by_hand(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    with_moflay(&mut env, "");
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, amount, currency, next_check_at) \
           VALUES ('moflay', 'pay_order5', '42.00', 'KES', '2999-01-01T00:00:00.000Z'); \
         INSERT INTO sessions (provider, session_id, provider_ref) \
           VALUES ('moflay', 'pay_taken', 'trxn_other'); \
         INSERT INTO unmatched_payments (provider, payment_id, amount, currency, provider_status, \
           first_seen_at, last_seen_at, reported_at) VALUES ('moflay', 'trxn_found3', '42.00', 'KES', \
           'completed', '2026-12-01T10:00:00.000Z', '2026-12-01T10:05:00.000Z', '2026-12-01T10:05:00.000Z')",
    )
    .unwrap();
    let id = one(&l, "SELECT id FROM unmatched_payments");
    let by_hand = |session: &str| {
        cmd(
            &env,
            &[
                "unmatched",
                "match",
                &id,
                "--session",
                session,
                "--by",
                "alice",
                "--reason",
                "order 5, paid by M-Pesa",
            ],
        )
    };
    for (session, refusal) in [
        ("pay_nobody", "no moflay session"),
        ("pay_taken", "holds another payment (trxn_other)"),
    ] {
        let o = output(by_hand(session)).await;
        assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
        assert!(text(&o).1.contains(refusal), "{:?}", text(&o));
    }
    let o = output(by_hand("pay_order5")).await;
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE session_id = 'pay_order5' \
             AND provider_ref = 'trxn_found3' AND next_check_at < '2999'"
        ),
        1
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE type = 'payment.matched'"
        ),
        1
    );
    assert_eq!(
        one(
            &l,
            "SELECT actor || ': ' || detail FROM audit_log WHERE action = 'match'"
        ),
        "alice: to pay_order5: order 5, paid by M-Pesa"
    );
    let again = output(by_hand("pay_order5")).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).1.contains("already matched"),
        "{:?}",
        text(&again)
    );
}

crate::on_both_engines!(
    vesicash_lists_are_read_page_by_page,
    a_ledger_all_in_reach_reports_without_a_lookup,
    listed_payments_are_answers_tied_only_by_an_id_the_ledger_holds,
    a_payment_no_session_holds_is_reported_matched_or_dismissed,
    a_person_matches_an_unmatched_payment_by_hand,
);

/// The list page of docs.moflay.com served verbatim (one completed payment of 1000 minor units
/// of KES, a next page): a session holding its `trxn_…` id completes from it, compared on amount
/// and currency, with its receipt; the sweep stops at the page whose payments are older than
/// the open sessions, though the page says there is a next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_list_page_is_read_as_moflay_publishes_it() {
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lists/moflay/docs-list-transactions.json"),
    )
    .unwrap();
    let server = Canned::start(200, vec![], body).await;
    let mut env = Env::start().await;
    let table = format!(
        "[providers.moflay]\nkind = \"moflay\"\nbase_url = \"{}\"\napi_key_env = \"K\"\nrate_limit = \"off\"\n",
        server.url
    );
    std::fs::write(
        &env.config_path,
        crate::support::config_with(&env.location, &table),
    )
    .unwrap();
    env.vars.push(("K".into(), "mof_live_k".into()));
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref, amount, currency, reference) \
         VALUES ('moflay', 'pay_docs', 'trxn_ABC123DEF456GHI', '10.00', 'KES', 'Order12345')",
    )
    .unwrap();
    let report = env.pass(&l, "p").await;
    assert_eq!(report.list_pages, 1, "{report:?}");
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        1,
        "one list call, no status call"
    );
    assert_eq!(status(&l, "pay_docs"), "COMPLETED");
    assert_eq!(
        one(
            &l,
            "SELECT transaction_id FROM sessions WHERE session_id = 'pay_docs'"
        ),
        "QMF7MBB5ED"
    );
    let payload = one(&l, "SELECT payload FROM events");
    assert!(
        payload.contains(r#""compared":["amount","currency"]"#),
        "{payload}"
    );
}

/// What a hostile list server does.
#[derive(Clone, Copy)]
enum ListServer {
    /// A new page of 100 fresh payments, always with a next page.
    Endless,
    /// 400 `validation_error` for `limit` above 10 (the other documented reading), else a page.
    TenAtMost,
    /// One payment named by the ids of two sessions at once.
    Twice,
}

async fn list_server(mode: ListServer) -> (String, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let handler = move |Query(q): Query<std::collections::HashMap<String, String>>| {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::Relaxed);
            let now = payrecon::clock::format(payrecon::clock::now());
            let item = |id: String| {
                json!({"id": id, "status": "completed", "amount": 10000, "currency": "KES",
                       "createdAt": now, "paidAt": now})
            };
            let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
            let (code, body) = match mode {
                ListServer::Endless => (
                    200,
                    json!({"data": (0..limit).map(|i| item(format!("trxn_p{n}_{i}"))).collect::<Vec<_>>(),
                           "meta": {"cursor": format!("c{n}"), "hasNextPage": true}}),
                ),
                ListServer::TenAtMost if limit > 10 => (
                    400,
                    json!({"error": {"status": 400, "code": "validation_error", "message": "limit must be at most 10"}}),
                ),
                ListServer::TenAtMost => (
                    200,
                    json!({"data": [item("trxn_ten".into())], "meta": {"hasNextPage": false}}),
                ),
                ListServer::Twice => (
                    200,
                    json!({"data": [item("trxn_twice".into())], "meta": {"hasNextPage": false}}),
                ),
            };
            (
                axum::http::StatusCode::from_u16(code).unwrap(),
                [("content-type", "application/json")],
                body.to_string(),
            )
        }
    };
    let app = axum::Router::new().route("/v1/transactions", get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn env_on(url: &str) -> Env {
    let mut env = Env::start().await;
    let table = format!(
        "[providers.moflay]\nkind = \"moflay\"\nbase_url = \"{url}\"\napi_key_env = \"K\"\nrate_limit = \"off\"\n"
    );
    std::fs::write(
        &env.config_path,
        crate::support::config_with(&env.location, &table),
    )
    .unwrap();
    env.vars.push(("K".into(), "mof_live_k".into()));
    env
}

/// A list that never ends is read 20 pages at most per sweep; the sweep says it stopped short,
/// and while it does, sessions in reach are checked one by one again (not put off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_list_is_read_a_bounded_number_of_pages() {
    let (url, calls) = list_server(ListServer::Endless).await;
    let env = env_on(&url).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_x', 'trxn_x')",
    )
    .unwrap();
    let report = env.pass(&l, "p").await;
    assert_eq!(report.list_pages, 20, "{report:?}");
    assert_eq!(calls.load(Ordering::Relaxed), 20);
    assert!(
        one(
            &l,
            "SELECT sweep_error FROM provider_state WHERE provider = 'moflay'"
        )
        .contains("the most one sweep reads")
    );
    // 2,000 paid payments no session holds: sighted, bounded by what was read.
    assert_eq!(count(&l, "SELECT count(*) FROM unmatched_payments"), 2000);
    // pay_x was asked about on its own (the server has no status route: a 404 without
    // Moflay's envelope, a failed call), not put off to a sweep that stops short.
    assert_eq!(
        one(&l, "SELECT checks FROM sessions WHERE session_id = 'pay_x'"),
        "1"
    );
}

/// Moflay's pages disagree on the most a page may hold (100 or 10): a provider that refuses 100
/// is asked for 10 from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_page_size_is_asked_again_smaller() {
    let (url, calls) = list_server(ListServer::TenAtMost).await;
    let env = env_on(&url).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref, amount, currency) \
         VALUES ('moflay', 'pay_ten', 'trxn_ten', '100.00', 'KES')",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(calls.load(Ordering::Relaxed), 2, "100 refused, then 10");
    assert_eq!(status(&l, "pay_ten"), "COMPLETED");
}

/// One listed payment that two sessions hold (one by its id, one by its provider_ref): the
/// answer is applied to neither; both are given back with the reason, to be checked one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_two_sessions_hold_is_applied_to_neither() {
    let (url, _) = list_server(ListServer::Twice).await;
    let env = env_on(&url).await;
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id) VALUES ('moflay', 'trxn_twice'); \
         INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_twice', 'trxn_twice');",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'PENDING'"),
        2
    );
    assert_eq!(count(&l, "SELECT count(*) FROM transitions"), 0);
    assert_eq!(count(&l, "SELECT count(*) FROM unmatched_payments"), 0);
}

/// A `provider_state` row that says the next sweep is due in 9999 (a hand edit, a clock that
/// ran ahead) neither stops sweeps nor puts sessions off until then: the sweep runs, and the
/// session completes from the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_due_in_the_far_future_is_not_obeyed() {
    let mut env = Env::start().await;
    with_moflay(&mut env, "");
    let l = env.ledger();
    listed(&env, "pay_far", "trxn_far", "100.00", "complete");
    l.execute_batch(
        "INSERT INTO provider_state (provider, sweep_due_at, swept_at) \
           VALUES ('moflay', '9999-12-31T00:00:00.000Z', '2000-01-01T00:00:00.000Z'); \
         INSERT INTO sessions (provider, session_id, provider_ref, amount, currency) \
           VALUES ('moflay', 'pay_far', 'trxn_far', '100.00', 'KES');",
    )
    .unwrap();
    let report = env.pass(&l, "p").await;
    assert!(report.list_pages >= 1, "{report:?}");
    assert_eq!(status(&l, "pay_far"), "COMPLETED");
    assert!(
        one(
            &l,
            "SELECT sweep_due_at FROM provider_state WHERE provider = 'moflay'"
        )
        .as_str()
            < "9999",
        "a sweep's own due time replaced it"
    );
}

/// `GET /v1/unmatched` lists open unmatched payments behind the API's token, newest first;
/// `?all=true` shows the settled ones too; a bad query is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_unmatched_payments_behind_its_token() {
    let mut env = Env::start().await;
    with_moflay(&mut env, "");
    env.set("cron", "\"0 0 0 1 1 *\""); // no scheduled pass
    env.vars
        .push(("PAYRECON_TEST_API_TOKEN".into(), "tok_unmatched".into()));
    let (admin, api) = crate::ops::listeners(&env, true);
    let l = env.ledger();
    l.execute_batch(
        "INSERT INTO unmatched_payments (provider, payment_id, other_id, amount, currency, provider_status, \
           first_seen_at, last_seen_at, reported_at) VALUES \
           ('moflay', 'trxn_open', 'pay_open', '12.50', 'KES', 'completed', \
            '2026-12-01T10:00:00.000Z', '2026-12-01T10:05:00.000Z', '2026-12-01T10:05:00.000Z'), \
           ('moflay', 'trxn_young', NULL, '1.00', 'KES', 'completed', \
            '2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00.000Z', NULL);",
    )
    .unwrap();
    let _d = crate::ops::daemon(&env, &[&admin, &api]).await;
    let client = reqwest::Client::new();
    let get = |q: &str, token: Option<&str>| {
        let mut r = client.get(format!("{api}/v1/unmatched{q}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("", None).await.unwrap().status(), 401);
    let open: serde_json::Value = serde_json::from_str(
        &get("", Some("tok_unmatched"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["payment_id"], "trxn_open");
    assert_eq!(open[0]["other_id"], "pay_open");
    assert_eq!(open[0]["amount"], "12.50");
    let all: serde_json::Value = serde_json::from_str(
        &get("?all=true", Some("tok_unmatched"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    for bad in ["?limit=0", "?limit=1001", "?all=maybe"] {
        let r = get(bad, Some("tok_unmatched")).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// Vesicash's list ("get payments for business"), paged by number and asked `from` a time, in
/// an order it does not state (the simulator gives oldest first): listed payments tied by the
/// `reference` init returned are answers; a paid one no session holds is reported with no
/// lookup (the list names payments by the one id the ledger holds).
async fn vesicash_lists_are_read_page_by_page(engine: Engine) {
    let mut env = Env::start_on(engine).await;
    env.with_all_providers(&[("vesicash", "unmatched_after = \"1s\"")]);
    let l = env.ledger();
    // 150 payments: two pages of 100.
    let mut rows = Vec::new();
    for i in 0..150 {
        let (id, b) = (
            format!("PY_{i:03}"),
            if i % 3 == 0 { "fail" } else { "complete" },
        );
        env.sim.insert_listed(
            Kind::Vesicash,
            &id,
            &id,
            "25.00",
            "R",
            "ZMW",
            b.parse().unwrap(),
        );
        rows.push(format!("('vesicash', '{id}', '25.00', 'ZMW')"));
    }
    env.sim.insert_listed(
        Kind::Vesicash,
        "PY_lost",
        "PY_lost",
        "9.00",
        "R",
        "ZMW",
        "complete".parse().unwrap(),
    );
    l.execute_batch(&format!(
        "INSERT INTO sessions (provider, session_id, amount, currency) VALUES {};",
        rows.join(", ")
    ))
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(
        env.sim.requests_for(Kind::Vesicash),
        2,
        "two pages (100 and 51), no status call"
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'"
        ),
        100
    );
    assert_eq!(
        count(&l, "SELECT count(*) FROM sessions WHERE status = 'FAILED'"),
        50
    );
    assert_eq!(
        env.sim.polls("PY_001") + env.sim.polls("PY_000"),
        0,
        "answered by the list, no status call"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sweep_due_now(&l);
    let report = env.pass(&l, "p").await;
    assert_eq!(report.unmatched, 1, "{report:?}");
    assert_eq!(env.sim.polls("PY_lost"), 0, "no lookup");
    assert_eq!(
        one(
            &l,
            "SELECT amount || ' ' || currency FROM unmatched_payments WHERE payment_id = 'PY_lost'"
        ),
        "9.00 ZMW"
    );
}

/// A provider with nothing open sweeps every two minutes; a session that arrives then is not
/// left waiting for that: its own check is put off to a sweep brought forward to the pace of
/// one with something open (10 s with no budget), shared through the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_arriving_at_an_idle_provider_brings_the_sweep_forward() {
    let mut env = Env::start().await;
    with_moflay(&mut env, "");
    let l = env.ledger();
    env.pass(&l, "p").await;
    let idle = one(
        &l,
        "SELECT sweep_due_at FROM provider_state WHERE provider = 'moflay'",
    );
    let now = payrecon::clock::now();
    let in_secs = |t: &str| (payrecon::clock::parse(t).unwrap() - now).num_seconds();
    assert!(in_secs(&idle) >= 100, "idle: two minutes away ({idle})");
    listed(
        &env,
        "pay_new",
        "trxn_new",
        "100.00",
        "complete.after-600000",
    );
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('moflay', 'pay_new', 'trxn_new')",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(env.sim.polls("pay_new"), 0, "put off to the sweep");
    let sooner = one(
        &l,
        "SELECT sweep_due_at FROM provider_state WHERE provider = 'moflay'",
    );
    assert!(in_secs(&sooner) <= 11, "brought forward to 10 s ({sooner})");
    let due = one(
        &l,
        "SELECT next_check_at FROM sessions WHERE session_id = 'pay_new'",
    );
    assert!(in_secs(&due) <= 16, "due again after that sweep ({due})");
}

/// A sighted payment is settled by the first sweep after its `unmatched_after`, not by one an
/// idle provider's two-minute cadence puts later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighted_payment_brings_the_next_sweep_to_its_grace() {
    let mut env = Env::start().await;
    with_moflay(&mut env, "unmatched_after = \"20s\"");
    let l = env.ledger();
    listed(&env, "pay_seen", "trxn_seen", "12.00", "complete");
    env.pass(&l, "p").await;
    assert_eq!(count(&l, "SELECT count(*) FROM unmatched_payments"), 1);
    let due = one(
        &l,
        "SELECT sweep_due_at FROM provider_state WHERE provider = 'moflay'",
    );
    let secs = (payrecon::clock::parse(&due).unwrap() - payrecon::clock::now()).num_seconds();
    assert!(
        (10..=21).contains(&secs),
        "the next sweep in {secs} s ({due})"
    );
}

/// With `list = "confirm"`, a listed final payment is not decided from the list: it makes its
/// session due now, and the status call that follows decides it with everything the status
/// answer carries (the reference compared too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirming_sweep_has_a_status_call_decide() {
    let mut env = Env::start().await;
    with_moflay(&mut env, "list = \"confirm\"");
    let l = env.ledger();
    listed(&env, "pay_conf", "trxn_conf", "100.00", "complete");
    l.execute_batch(
        "INSERT INTO sessions (provider, session_id, provider_ref, amount, currency, reference) \
         VALUES ('moflay', 'pay_conf', 'trxn_conf', '100.00', 'KES', 'ORD')",
    )
    .unwrap();
    env.pass(&l, "p").await;
    assert_eq!(
        status(&l, "pay_conf"),
        "PENDING",
        "not decided from the list"
    );
    assert_eq!(env.sim.polls("pay_conf"), 0);
    // Due now: the next pass (a daemon's follows at once) confirms it.
    env.pass(&l, "p").await;
    assert_eq!(status(&l, "pay_conf"), "COMPLETED");
    assert_eq!(env.sim.polls("pay_conf"), 1, "confirmed by one status call");
    let payload = one(&l, "SELECT payload FROM events");
    assert!(
        payload.contains(r#""compared":["amount","reference","currency","provider_ref"]"#),
        "{payload}"
    );
}
