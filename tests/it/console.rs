//! The console over HTTP, as a browser would use it (a real browser suite is issue 29's next
//! part): named operators log in with their token, a viewer reads, a resolver decides through
//! a confirmation, every form carries the CSRF token, every page escapes what applications
//! wrote and forbids script, and a logout ends the login.

use crate::ops::{daemon, free_port};
use crate::support::{DirectSql, Env, count, one};
use payrecon::ledger::NewSession;

pub(crate) const ALICE: &str = "alice-token-0123456789";
pub(crate) const VICTOR: &str = "victor-token-0123456789";

/// Writes a session as an application would, registered at the simulator with `behaviour`.
pub(crate) fn enqueue(env: &Env, id: &str, amount: &str, reference: &str, behaviour: &str) {
    env.sim
        .insert(id, amount, reference, behaviour.parse().unwrap());
    env.ledger()
        .enqueue(&NewSession {
            provider: "mopay".into(),
            session_id: id.into(),
            reference: Some(reference.into()),
            amount: Some(amount.parse().unwrap()),
            currency: Some("LSL".into()),
            created_at: None,
            provider_ref: None,
        })
        .unwrap();
}

/// A daemon with the console on, two operators (alice resolves, victor views), no passes.
pub(crate) async fn console_env() -> (Env, String) {
    console_env_on(crate::support::Engine::Sqlite).await
}

/// [`console_env`] with the ledger on `engine`.
async fn console_env_on(engine: crate::support::Engine) -> (Env, String) {
    let mut env = Env::start_on(engine).await;
    env.set("cron", "\"0 0 0 1 1 *\"");
    env.set("poll", "\"off\"");
    let port = free_port();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let at = text.find("[providers.").unwrap();
    let extra = format!(
        "[console]\nlisten = \"127.0.0.1:{port}\"\n\
         [operators.alice]\nrole = \"resolver\"\ntoken_env = \"PAYRECON_TEST_ALICE\"\n\
         [operators.victor]\nrole = \"viewer\"\ntoken_env = \"PAYRECON_TEST_VICTOR\"\n"
    );
    std::fs::write(
        &env.config_path,
        format!("{}{extra}{}", &text[..at], &text[at..]),
    )
    .unwrap();
    env.vars.push(("PAYRECON_TEST_ALICE".into(), ALICE.into()));
    env.vars
        .push(("PAYRECON_TEST_VICTOR".into(), VICTOR.into()));
    (env, format!("http://127.0.0.1:{port}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in; the session cookie (`name=value`) and the Set-Cookie line.
async fn log_in(console: &str, name: &str, token: &str) -> (u16, Option<(String, String)>) {
    let r = client()
        .post(format!("{console}/login"))
        .form(&[("name", name), ("token", token)])
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .map(|line| (line.split(';').next().unwrap().to_string(), line));
    (code, cookie)
}

async fn get(
    console: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = client().get(format!("{console}{path}"));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    let (code, headers) = (r.status().as_u16(), r.headers().clone());
    (code, headers, r.text().await.unwrap())
}

async fn post(console: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = client()
        .post(format!("{console}{path}"))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_decides_through_a_confirmation_and_a_viewer_cannot() {
    let (env, console) = console_env().await;
    let l = env.ledger();
    // An underpaid session whose reference an application wrote with markup in it.
    enqueue(
        &env,
        "rev_x",
        "100.00",
        "<script>alert(1)</script>",
        "amount",
    );
    env.pass(&l, "p").await;
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'rev_x'"),
        "REVIEW"
    );
    let _d = daemon(&env, &[&console]).await;

    // Not logged in: to the login page; every answer forbids script and framing.
    let (code, headers, _) = get(&console, "/review", None).await;
    assert_eq!(code, 303);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(
        csp.contains("script-src 'self'"),
        "htmx, our own file only: {csp}"
    );
    // htmx refreshing in place after the login ended is sent to the login page as a whole.
    let r = client()
        .get(format!("{console}/"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["hx-redirect"], "/login");
    let (code, headers, js) = get(&console, "/static/htmx-2.0.11.min.js", None).await;
    assert_eq!(code, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        js.contains("htmx"),
        "the embedded htmx, served without a login"
    );

    // A wrong token is refused, and said in the audit log.
    let (code, cookie) = log_in(&console, "alice", "not-the-token-at-all").await;
    assert_eq!((code, cookie.is_none()), (401, true));
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM audit_log WHERE action = 'login refused' AND actor = 'alice'"
        ),
        1
    );

    // A viewer reads the queue (the reference escaped), and cannot decide.
    let (code, victor) = log_in(&console, "victor", VICTOR).await;
    assert_eq!(code, 303);
    let (victor, _) = victor.unwrap();
    let (code, _, page) = get(&console, "/review", Some(&victor)).await;
    assert_eq!(code, 200);
    assert!(page.contains("rev_x") && page.contains("1.00"), "{page}");
    let (_, _, story) = get(&console, "/sessions/mopay/rev_x", Some(&victor)).await;
    assert!(
        story.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{story}"
    );
    assert!(
        !story.contains("<script>"),
        "no markup an application wrote runs"
    );
    assert!(
        !story.contains("Review the decision"),
        "a viewer is not offered the form"
    );
    let victor_csrf = csrf_of(&story);
    let (code, _) = post(
        &console,
        "/sessions/mopay/rev_x/resolve",
        &victor,
        &[
            ("csrf", &victor_csrf),
            ("to", "COMPLETED"),
            ("reason", "x"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(code, 403, "a viewer cannot resolve");

    // A resolver: the cookie is HttpOnly and SameSite=Strict.
    let (code, alice) = log_in(&console, "alice", ALICE).await;
    assert_eq!(code, 303);
    let (alice, line) = alice.unwrap();
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    let (_, _, story) = get(&console, "/sessions/mopay/rev_x", Some(&alice)).await;
    assert!(story.contains("Review the decision"));
    let csrf = csrf_of(&story);
    // Without its CSRF token (a forged cross-site form), or with another login's: refused.
    for token in ["", victor_csrf.as_str()] {
        let (code, _) = post(
            &console,
            "/sessions/mopay/rev_x/resolve",
            &alice,
            &[
                ("csrf", token),
                ("to", "COMPLETED"),
                ("reason", "x"),
                ("confirm", "yes"),
            ],
        )
        .await;
        assert_eq!(code, 403, "csrf {token:?}");
    }
    // First the confirmation: the ledger's and the provider's amounts side by side.
    let (code, confirm) = post(
        &console,
        "/sessions/mopay/rev_x/resolve",
        &alice,
        &[
            ("csrf", &csrf),
            ("to", "COMPLETED"),
            ("reason", "paid the rest in cash, receipt 77"),
        ],
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        confirm.contains("100.00")
            && confirm.contains("1.00")
            && confirm.contains("Confirm: COMPLETED"),
        "{confirm}"
    );
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'rev_x'"),
        "REVIEW",
        "not yet"
    );
    let (code, _) = post(
        &console,
        "/sessions/mopay/rev_x/resolve",
        &alice,
        &[
            ("csrf", &csrf),
            ("to", "COMPLETED"),
            ("reason", "paid the rest in cash, receipt 77"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'rev_x'"),
        "COMPLETED"
    );
    assert_eq!(
        one(
            &l,
            "SELECT actor || ': ' || reason FROM transitions WHERE source = 'manual'"
        ),
        "alice: paid the rest in cash, receipt 77"
    );
    let (_, _, queue) = get(&console, "/review", Some(&alice)).await;
    assert!(!queue.contains("rev_x"), "it left the queue");
    let (_, _, audit) = get(&console, "/audit", Some(&alice)).await;
    assert!(
        audit.contains("resolve") && audit.contains("mopay/rev_x"),
        "{audit}"
    );

    // Logout ends the login: the old cookie leads to the login page.
    let (code, _) = post(&console, "/logout", &alice, &[("csrf", &csrf)]).await;
    assert_eq!(code, 303);
    let (code, _, _) = get(&console, "/", Some(&alice)).await;
    assert_eq!(code, 303);
    assert!(
        count(
            &l,
            "SELECT count(*) FROM audit_log WHERE action IN ('login', 'logout')"
        ) >= 3
    );
}

/// Failed logins are throttled: after five in a minute, every login waits (the right token
/// too), so a token cannot be guessed at the speed of the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled() {
    let (env, console) = console_env().await;
    let _d = daemon(&env, &[&console]).await;
    for _ in 0..5 {
        assert_eq!(log_in(&console, "alice", "wrong-wrong-wrong").await.0, 401);
    }
    assert_eq!(log_in(&console, "alice", ALICE).await.0, 429);
}

/// The other queues: anomalies, unmatched payments (a resolver dismisses one with a reason),
/// dead events (a resolver replays one), unreadable rows, and search by either id; each
/// decision named in the audit log, a viewer offered no form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_is_worked_and_named() {
    let (env, console) = console_env().await;
    let l = env.ledger();
    DirectSql::execute_batch(
        &l,
        "INSERT INTO sessions (provider, session_id, provider_ref) VALUES ('mopay', 's_any', 'second_77'); \
         INSERT INTO events (id, type, session, payload, created_at, next_attempt_at, dead_at, attempts, last_error) \
           SELECT 'evt_dead1', 'session.completed', id, '{\"data\":{\"provider\":\"mopay\"}}', \
                  '2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00.000Z', '2026-12-01T11:00:00.000Z', 8, 'HTTP 500 from the receiver' \
           FROM sessions WHERE session_id = 's_any'; \
         INSERT INTO events (id, type, session, payload, created_at, next_attempt_at, delivered_at) \
           SELECT 'evt_anom1', 'session.anomaly', id, \
                  '{\"data\":{\"provider\":\"mopay\",\"status\":\"EXPIRED\",\"provider_says\":\"COMPLETED\",\"reason\":\"late payment\"}}', \
                  '2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00.000Z', '2026-12-01T10:00:01.000Z' \
           FROM sessions WHERE session_id = 's_any'; \
         INSERT INTO unmatched_payments (provider, payment_id, amount, currency, provider_status, \
           first_seen_at, last_seen_at, reported_at) VALUES ('moflay', 'trxn_lost9', '42.00', 'KES', \
           'completed', '2026-12-01T10:00:00.000Z', '2026-12-01T10:05:00.000Z', '2026-12-01T10:05:00.000Z'); \
         INSERT INTO sessions (provider, session_id, last_error) VALUES ('mopay', 's_bad', 'unreadable row: amount 1e400');",
    )
    .unwrap();
    let _d = daemon(&env, &[&console]).await;
    let (_, victor) = log_in(&console, "victor", VICTOR).await;
    let (victor, _) = victor.unwrap();
    let (_, alice) = log_in(&console, "alice", ALICE).await;
    let (alice, _) = alice.unwrap();

    // The overview names what /healthz names, in its words (from one reading of the ledger,
    // at most 30 s old: written before the first look here).
    DirectSql::execute_batch(
        &l,
        "INSERT INTO provider_state (provider, auth_refused_at, auth_error) \
         VALUES ('mopay', '2026-12-01T10:00:00.000Z', 'HTTP 401')",
    )
    .unwrap();
    let (_, _, page) = get(&console, "/", Some(&victor)).await;
    assert!(
        page.contains("provider mopay refused the credentials"),
        "{page}"
    );
    assert!(
        page.contains("1 sessions rows payrecon cannot read are set aside"),
        "{page}"
    );
    let (_, _, page) = get(&console, "/anomalies", Some(&victor)).await;
    assert!(
        page.contains("s_any") && page.contains("late payment"),
        "{page}"
    );
    let (_, _, page) = get(&console, "/unreadable", Some(&victor)).await;
    assert!(page.contains("1e400"), "{page}");
    let (_, _, page) = get(&console, "/search?q=second_77", Some(&victor)).await;
    assert!(
        page.contains("/sessions/mopay/s_any"),
        "found by its second id: {page}"
    );
    let (_, _, page) = get(&console, "/unmatched", Some(&victor)).await;
    assert!(
        page.contains("trxn_lost9") && !page.contains("Dismiss"),
        "{page}"
    );
    let (_, _, page) = get(&console, "/events/dead", Some(&victor)).await;
    assert!(
        page.contains("evt_dead1") && !page.contains(">Replay<"),
        "{page}"
    );

    // Every queue filters by provider, age and amount, and marks what is severe (here: dead
    // since 2026-12-01, past `severe_after`'s 24 h).
    for (path, shown) in [
        ("/unmatched?provider=moflay", true),
        ("/unmatched?provider=mopay", false),
        ("/unmatched?min_amount=42", true),
        ("/unmatched?min_amount=42.01", false),
        ("/events/dead?older_than=1d", true),
        ("/events/dead?provider=moflay", false),
        ("/anomalies?provider=mopay&older_than=2d", true),
        ("/anomalies?min_amount=1", false),
        ("/unreadable?provider=mopay", true),
        ("/unreadable?provider=little", false),
    ] {
        let (code, _, page) = get(&console, path, Some(&victor)).await;
        assert_eq!(code, 200, "{path}");
        let listed = [
            "trxn_lost9",
            "evt_dead1",
            "late payment",
            "unreadable row: amount 1e400",
        ]
        .iter()
        .any(|what| page.contains(what));
        assert_eq!(listed, shown, "{path}: {page}");
    }
    let (_, _, page) = get(&console, "/events/dead", Some(&victor)).await;
    assert!(
        page.contains("<strong class=\"severity\">severe</strong>"),
        "{page}"
    );
    let (code, _, _) = get(&console, "/anomalies?older_than=soon", Some(&victor)).await;
    assert_eq!(code, 400);

    let (_, _, page) = get(&console, "/unmatched", Some(&alice)).await;
    let csrf = csrf_of(&page);
    let id = one(&l, "SELECT id FROM unmatched_payments");
    let (code, _) = post(
        &console,
        &format!("/unmatched/{id}/dismiss"),
        &alice,
        &[("csrf", &csrf), ("reason", "a test payment")],
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(
        one(
            &l,
            "SELECT dismissed_by || ': ' || dismiss_reason FROM unmatched_payments"
        ),
        "alice: a test payment"
    );
    let (code, _) = post(
        &console,
        "/events/evt_dead1/replay",
        &alice,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE id = 'evt_dead1' AND dead_at IS NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM audit_log WHERE actor = 'alice' AND action IN ('dismiss', 'replay')"
        ),
        2
    );

    // A payment the application wrote under its own id only: a resolver matches it to its
    // session. The id becomes the session's provider_ref, the session is due now (the
    // provider's answer decides it), `payment.matched` is written, and her name is on it.
    DirectSql::execute_batch(
        &l,
        "INSERT INTO sessions (provider, session_id, amount, currency, next_check_at) \
           VALUES ('moflay', 'pay_order5', '42.00', 'KES', '2999-01-01T00:00:00.000Z'); \
         INSERT INTO unmatched_payments (provider, payment_id, amount, currency, provider_status, \
           first_seen_at, last_seen_at, reported_at) VALUES ('moflay', 'trxn_found3', '42.00', 'KES', \
           'completed', '2026-12-01T10:00:00.000Z', '2026-12-01T10:05:00.000Z', '2026-12-01T10:05:00.000Z')",
    )
    .unwrap();
    let id = one(
        &l,
        "SELECT id FROM unmatched_payments WHERE payment_id = 'trxn_found3'",
    );
    let path = format!("/unmatched/{id}/match");
    for (session, why) in [
        ("pay_nobody", "no such session"),
        ("s_any", "a mopay session"),
    ] {
        let (code, page) = post(
            &console,
            &path,
            &alice,
            &[("csrf", &csrf), ("session_id", session), ("reason", why)],
        )
        .await;
        assert_eq!(code, 409, "{why}: {page}");
    }
    let (code, _) = post(
        &console,
        &path,
        &alice,
        &[
            ("csrf", &csrf),
            ("session_id", "pay_order5"),
            ("reason", "order 5 paid by M-Pesa"),
        ],
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(
        one(
            &l,
            "SELECT provider_ref || ' ' || status || ' ' || (next_check_at < '2999') FROM sessions WHERE session_id = 'pay_order5'"
        ),
        "trxn_found3 PENDING 1"
    );
    assert_eq!(
        count(
            &l,
            "SELECT count(*) FROM events WHERE type = 'payment.matched'"
        ),
        1
    );
    assert_eq!(
        one(&l, "SELECT detail FROM audit_log WHERE action = 'match'"),
        "to pay_order5: order 5 paid by M-Pesa"
    );
}

/// The queue filters and orders (amount at least, waiting longer than, largest first), marks
/// severe sessions by the configured thresholds, and a resolver asks the provider now.
async fn the_queue_filters_and_a_resolver_asks_the_provider_now(engine: crate::support::Engine) {
    let (env, console) = console_env_on(engine).await;
    let l = env.ledger();
    for (id, amount) in [("small", "5.00"), ("big", "5000.00"), ("mid", "300.00")] {
        enqueue(&env, id, amount, "R", "amount");
    }
    env.pass(&l, "p").await;
    // One has waited since January; one went to REVIEW last (a time to come: the order does
    // not hang on which the pass recorded first).
    DirectSql::execute_batch(
        &l,
        "UPDATE sessions SET resolved_at = '2026-01-01T00:00:00.000Z' WHERE session_id = 'small'; \
         UPDATE sessions SET resolved_at = '2999-01-01T00:00:00.000Z' WHERE session_id = 'mid'",
    )
    .unwrap();
    env.sim
        .insert("pend_v", "100.00", "R", "complete".parse().unwrap());
    DirectSql::execute_batch(
        &l,
        "INSERT INTO sessions (provider, session_id, next_check_at) VALUES ('mopay', 'pend_v', '2999-01-01T00:00:00.000Z')",
    )
    .unwrap();
    let _d = daemon(&env, &[&console]).await;
    let (_, alice) = log_in(&console, "alice", ALICE).await;
    let (alice, _) = alice.unwrap();
    let order = |page: &str| -> Vec<&'static str> {
        let mut at: Vec<(usize, &'static str)> = ["small", "big", "mid"]
            .into_iter()
            .filter_map(|id| page.find(&format!(">{id}</a>")).map(|i| (i, id)))
            .collect();
        at.sort();
        at.into_iter().map(|(_, id)| id).collect()
    };
    let (_, _, page) = get(&console, "/review", Some(&alice)).await;
    assert_eq!(
        order(&page),
        ["small", "big", "mid"],
        "longest waiting first"
    );
    assert_eq!(
        page.matches("class=\"severe\"").count(),
        2,
        "5000.00, and two days waiting"
    );
    let (_, _, page) = get(&console, "/review?sort=amount", Some(&alice)).await;
    assert_eq!(order(&page), ["big", "mid", "small"]);
    let (_, _, page) = get(&console, "/review?min_amount=300&sort=amount", Some(&alice)).await;
    assert_eq!(order(&page), ["big", "mid"]);
    let (_, _, page) = get(&console, "/review?older_than=1d", Some(&alice)).await;
    assert_eq!(order(&page), ["small"]);
    let (code, _, _) = get(&console, "/review?min_amount=lots", Some(&alice)).await;
    assert_eq!(code, 400);

    let (_, _, story) = get(&console, "/sessions/mopay/pend_v", Some(&alice)).await;
    let csrf = csrf_of(&story);
    let (code, _) = post(
        &console,
        "/sessions/mopay/pend_v/verify",
        &alice,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(
        one(
            &l,
            "SELECT status FROM sessions WHERE session_id = 'pend_v'"
        ),
        "COMPLETED"
    );
    assert_eq!(
        one(&l, "SELECT detail FROM audit_log WHERE action = 'verify'"),
        "answered: COMPLETED"
    );
    // The story tells the check: asked through the API, MoPay's word for a paid session
    // (`"status": "COMPLETED"`, HTTP 200 [docs]); a provider's word is text, never markup.
    DirectSql::execute_batch(
        &l,
        "INSERT INTO checks (session, at, via, source, outcome, provider_status) \
         SELECT id, '2999-01-01T00:00:00.000Z', 'callback', 'api', 'unrecognised', '<script>alert(1)</script>' \
         FROM sessions WHERE session_id = 'pend_v'",
    )
    .unwrap();
    let (_, _, story) = get(&console, "/sessions/mopay/pend_v", Some(&alice)).await;
    assert!(
        story.contains(
            "checked</span> (call, api): <strong>paid</strong>, HTTP 200, provider said <code>COMPLETED</code>"
        ),
        "{story}"
    );
    assert!(story.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!story.contains("<script>alert"));

    // The overview: three answers to REVIEW and one COMPLETED in the last hour, all of them
    // status calls (three by the pass, one asked now); one resolution (REVIEW is none).
    let (_, _, page) = get(&console, "/", Some(&alice)).await;
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 2, "{page}");
    // Sums per currency beside each provider and status: 5.00 + 5000.00 + 300.00 in REVIEW.
    assert!(
        page.contains("<td>mopay</td><td>REVIEW</td><td class=\"num\">3</td><td class=\"num\">5305.00 LSL</td>"),
        "{page}"
    );
    assert!(
        page.contains(
            "<tr><td>mopay</td><td>off</td><td class=\"num\">4</td><td>no limit</td></tr>"
        ),
        "{page}"
    );
    assert!(page.contains("<title>1 by payrecon</title>"), "{page}");
    assert!(!page.contains(" by people</title></rect>"), "{page}");
}

crate::on_both_engines!(the_queue_filters_and_a_resolver_asks_the_provider_now);

/// An authenticating proxy (oauth2-proxy) names the operator in `X-Forwarded-User`: believed
/// from the configured proxy's address only. From anywhere else the header is ignored (the
/// login page); a name that is no operator is refused; a request the proxy forwards still
/// needs its form's CSRF token, and what it does is in the operator's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_trusted_proxy_names_the_operator() {
    let (env, console) = console_env().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replacen(
            "[console]\n",
            "[console]\ntrusted_proxies = \"127.0.0.2\"\n",
            1,
        )
        .replacen(
            "[operators.alice]\n",
            "[operators.alice]\nproxy_user = \"alice@example.com\"\n",
            1,
        ),
    )
    .unwrap();
    enqueue(&env, "prx_1", "10.00", "R", "complete");
    let _d = daemon(&env, &[&console]).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (proxy, elsewhere) = (from([127, 0, 0, 2]), from([127, 0, 0, 1]));
    let as_user = |c: &reqwest::Client, path: &str, user: &str| {
        c.get(format!("{console}{path}"))
            .header("X-Forwarded-User", user)
    };
    // Not from the proxy: the header is nobody's word.
    let r = as_user(&elsewhere, "/", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login");
    // From the proxy: alice, by the user the proxy knows her as; her name, not the proxy's.
    let r = as_user(&proxy, "/sessions/mopay/prx_1", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("alice (resolver)"), "{page}");
    // Her name alone is not how the proxy knows her; a stranger is refused.
    for stranger in ["alice", "mallory@example.com"] {
        let r = as_user(&proxy, "/", stranger).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{stranger}");
    }
    // A forged cross-site form through the proxy carries her header but not her token.
    let post = |form: Vec<(&'static str, String)>| {
        proxy
            .post(format!("{console}/sessions/mopay/prx_1/verify"))
            .header("X-Forwarded-User", "alice@example.com")
            .form(&form)
            .send()
    };
    let r = post(vec![]).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = post(vec![("csrf", csrf_of(&page))]).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let l = env.ledger();
    assert_eq!(
        one(&l, "SELECT status FROM sessions WHERE session_id = 'prx_1'"),
        "COMPLETED"
    );
    assert_eq!(
        l.query_strings(
            "SELECT actor || ' ' || action || ' ' || coalesce(detail, '') FROM audit_log ORDER BY id"
        )
        .unwrap(),
        [
            "alice login resolver (named by the proxy)",
            "alice login refused named by the proxy",
            "mallory@example.com login refused named by the proxy",
            "alice verify answered: COMPLETED",
        ]
    );
}
