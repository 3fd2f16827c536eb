//! The console on `[console] listen`: server-rendered pages for the people who decide (the
//! REVIEW queue, a session's story, resolutions with their names, the audit log), every one
//! working without JavaScript (docs/console.md).
//!
//! Who can reach it and what bounds them is docs/security.md "Listeners": named operators with
//! a token each, a role (`viewer` reads, `resolver` decides); a login gives an HttpOnly,
//! SameSite=Strict session cookie (Secure where configured) that expires; every form that
//! changes something carries the session's CSRF token; failed logins are throttled; every page
//! has a strict Content-Security-Policy (no script at all, no inline style, no framing) and
//! escapes what applications and providers wrote (maud escapes every value it renders).

// A handler's refusal is the page it answers with, built once per request: boxing it would
// cost an allocation for nothing.
#![allow(clippy::result_large_err)]

mod charts;
mod pages;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::clock;
use crate::config::{Config, ConsoleConfig, Role};
use crate::ledger::{Audit, Ledger, Status};

/// The session cookie's name.
const COOKIE: &str = "payrecon_console";

/// The largest form body the console reads.
const MAX_FORM: usize = 8 * 1024;

/// Failed logins allowed in [`FAILURE_WINDOW`] before every login waits out the window.
const MOST_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Rows a queue page shows.
const PAGE: u32 = 50;

/// The console's state: the ledger, the config, and the logged-in sessions of this process.
pub struct Console {
    ledger: Ledger,
    /// The providers and the pass options `verify` checks a session with (source `api`).
    providers: crate::provider::Providers,
    opts: crate::reconcile::PassOptions,
    shutdown: tokio_util::sync::CancellationToken,
    health: Arc<crate::admin::Health>,
    /// The overview's last reading of the ledger (see [`READING_FRESH`]).
    reading: Mutex<Option<Arc<OverviewReading>>>,
    /// Held while a reading is taken: one at a time, however many people look.
    reading_taken: tokio::sync::Mutex<()>,
    cfg: Config,
    console: ConsoleConfig,
    logins: Mutex<HashMap<String, Login>>,
    /// The login of each operator a trusted proxy named (operator → login id).
    proxied: Mutex<HashMap<String, String>>,
    failures: Mutex<VecDeque<Instant>>,
    random: ring::rand::SystemRandom,
}

/// One operator's login.
#[derive(Debug, Clone)]
struct Login {
    operator: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

/// What the console checks a session with, when a resolver asks: the daemon's providers (and
/// their shared budgets), its pass options, its shutdown.
pub struct Checker {
    pub providers: crate::provider::Providers,
    pub opts: crate::reconcile::PassOptions,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The daemon's health, whose problems the overview names as `/healthz` does.
    pub health: Arc<crate::admin::Health>,
}

/// The console's router.
pub fn router(ledger: Ledger, cfg: Config, console: ConsoleConfig, checker: Checker) -> Router {
    let state = Arc::new(Console {
        reading: Mutex::default(),
        reading_taken: tokio::sync::Mutex::default(),
        ledger,
        providers: checker.providers,
        opts: checker.opts,
        shutdown: checker.shutdown,
        health: checker.health,
        cfg,
        console,
        logins: Mutex::default(),
        proxied: Mutex::default(),
        failures: Mutex::default(),
        random: ring::rand::SystemRandom::new(),
    });
    let proxy = axum::middleware::from_fn_with_state(state.clone(), proxy_login);
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/review", get(review))
        .route("/anomalies", get(anomalies))
        .route("/unmatched", get(unmatched))
        .route("/unmatched/{id}/dismiss", post(dismiss))
        .route("/unmatched/{id}/match", post(match_by_hand))
        .route("/events/dead", get(dead_events))
        .route("/events/{id}/replay", post(replay))
        .route("/unreadable", get(unreadable))
        .route("/search", get(search))
        .route("/audit", get(audit))
        .route("/sessions/{provider}/{session_id}", get(story))
        .route("/sessions/{provider}/{session_id}/resolve", post(resolve))
        .route("/sessions/{provider}/{session_id}/verify", post(verify))
        .route("/static/console.css", get(css))
        .route(pages::HTMX_PATH, get(htmx))
        .fallback(|| async { page_error(StatusCode::NOT_FOUND, "No such page.") })
        .with_state(state)
        .layer(proxy)
        .layer(axum::middleware::map_response(security_headers))
}

/// A request from a trusted proxy (`[console] trusted_proxies`) whose `operator_header` names
/// an operator is theirs: it goes on as that operator's login (one per operator, made on their
/// first request, so that their forms' CSRF token holds from one request to the next). The
/// header from any other address is removed unread; a proxy naming no operator is refused.
async fn proxy_login(
    State(st): State<Arc<Console>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let name = axum::http::HeaderName::from_bytes(st.console.operator_header.as_bytes()).ok();
    let Some(name) = name else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| st.console.trusted_proxies.contains(&ip));
    if !trusted {
        req.headers_mut().remove(&name);
        return next.run(req).await;
    }
    let Some(user) = req.headers().get(&name).map(|v| v.to_str().unwrap_or("")) else {
        // The proxy sent no user: the console's own login applies.
        return next.run(req).await;
    };
    let user = user.trim().to_string();
    let operator = st
        .console
        .operators
        .iter()
        .find(|o| !user.is_empty() && o.proxy_user.as_deref().unwrap_or(&o.name) == user);
    let Some(operator) = operator.cloned() else {
        let shown: String = user.chars().take(64).collect();
        tracing::warn!(user = %crate::escape::shown(&shown), "the trusted proxy named no operator of the console");
        st.audit(
            &shown,
            "login refused",
            None,
            Some("named by the proxy".into()),
        )
        .await;
        return page_error(
            StatusCode::FORBIDDEN,
            "The proxy named a user who is no operator of this console.",
        );
    };
    let id = match st.proxied_login(&operator) {
        Some((id, new)) => {
            if new {
                st.audit(
                    &operator.name,
                    "login",
                    None,
                    Some(format!("{} (named by the proxy)", operator.role.as_str())),
                )
                .await;
            }
            id
        }
        None => {
            return page_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "No randomness for a session.",
            );
        }
    };
    // The operator the proxy names is the one this request acts as, whatever cookie it has.
    let h = req.headers_mut();
    h.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={id}")) {
        h.insert(header::COOKIE, v);
    }
    next.run(req).await
}

/// Every answer: no script but this console's own file (htmx), no inline script or style, no
/// framing, nothing cached, no referrer.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// htmx, embedded (`pages::HTMX`); pages name it with its integrity hash.
async fn htmx() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::HTMX,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

fn html(code: StatusCode, markup: maud::Markup) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn page_error(code: StatusCode, message: &str) -> Response {
    html(code, pages::message(code, message))
}

/// 32 random bytes as hex: a session id or a CSRF token.
fn random_token(random: &ring::rand::SystemRandom) -> Option<String> {
    let bytes: [u8; 32] = ring::rand::generate(random).ok()?.expose();
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    use sha2::Digest as _;
    let (x, y) = (
        sha2::Sha256::digest(a.as_bytes()),
        sha2::Sha256::digest(b.as_bytes()),
    );
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

impl Console {
    /// The login of an operator a trusted proxy named: theirs while it lasts, else a new one
    /// (`true`). `None` without randomness.
    fn proxied_login(&self, operator: &crate::config::Operator) -> Option<(String, bool)> {
        let mut proxied = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
        let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        logins.retain(|_, l| l.expires > Instant::now());
        if let Some(id) = proxied.get(&operator.name)
            && logins.contains_key(id)
        {
            return Some((id.clone(), false));
        }
        let (id, csrf) = (random_token(&self.random)?, random_token(&self.random)?);
        logins.insert(
            id.clone(),
            Login {
                operator: operator.name.clone(),
                role: operator.role,
                csrf,
                expires: Instant::now() + self.console.session_ttl,
            },
        );
        proxied.insert(operator.name.clone(), id.clone());
        Some((id, true))
    }

    /// The login a request's cookie names, while it has not expired.
    fn login_of(&self, headers: &HeaderMap) -> Option<(String, Login)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(String::from)
            })?;
        let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        logins.retain(|_, l| l.expires > Instant::now());
        logins.get(&id).cloned().map(|l| (id, l))
    }

    /// The logged-in operator, or the answer for a request without one (to the login page).
    fn require(&self, headers: &HeaderMap) -> Result<(String, Login), Response> {
        self.login_of(headers).ok_or_else(|| {
            // htmx refreshing a page in place is sent to the login page as a whole, rather than
            // swapping a login form into the page.
            if headers.contains_key("hx-request") {
                return (StatusCode::OK, [("hx-redirect", "/login")]).into_response();
            }
            Redirect::to("/login").into_response()
        })
    }

    /// A state-changing request's login: logged in, and the form's CSRF token that login's.
    fn require_post(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(String, Login), Response> {
        let Some((id, login)) = self.login_of(headers) else {
            return Err(page_error(
                StatusCode::UNAUTHORIZED,
                "Log in first: this session has ended.",
            ));
        };
        if !csrf.is_some_and(|c| same(c, &login.csrf)) {
            return Err(page_error(
                StatusCode::FORBIDDEN,
                "This form did not come from this console (its CSRF token does not match): nothing was done.",
            ));
        }
        Ok((id, login))
    }

    /// A resolver's state-changing request: logged in, the CSRF token theirs, the role theirs.
    fn require_resolver(&self, headers: &HeaderMap, csrf: Option<&str>) -> Result<Login, Response> {
        let (_, login) = self.require_post(headers, csrf)?;
        if login.role != Role::Resolver {
            return Err(page_error(
                StatusCode::FORBIDDEN,
                "A viewer reads; only a resolver decides. Nothing was done.",
            ));
        }
        Ok(login)
    }

    async fn audit(
        &self,
        actor: &str,
        action: &'static str,
        target: Option<String>,
        detail: Option<String>,
    ) {
        let actor = actor.to_string();
        let written = self
            .ledger
            .call(move |l| {
                let entry = Audit {
                    actor: &actor,
                    action,
                    target,
                    detail,
                };
                l.append_audit(clock::now(), &entry)
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
    }
}

/// A form body, read within the listener's bounds.
async fn form<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = crate::listen::body(body, MAX_FORM).await.map_err(|_| {
        page_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form was too large or too slow.",
        )
    })?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| page_error(StatusCode::BAD_REQUEST, "The form could not be read."))
}

/// A form that changes something: it carries the login's CSRF token.
trait Guarded: serde::de::DeserializeOwned {
    fn csrf(&self) -> Option<&str>;
}

macro_rules! guarded {
    ($($form:ident),*) => {
        $(impl Guarded for $form {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        })*
    };
}
guarded!(CsrfForm, SettleForm, ResolveForm);

/// A resolver's form: read, its CSRF token the login's, the login a resolver's.
async fn resolver_form<F: Guarded>(
    st: &Console,
    headers: &HeaderMap,
    body: Body,
) -> Result<(F, Login), Response> {
    let f: F = form(body).await?;
    let login = st.require_resolver(headers, f.csrf())?;
    Ok((f, login))
}

async fn login_form(State(st): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if st.login_of(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    token: String,
}

async fn login(State(st): State<Arc<Console>>, body: Body) -> Response {
    let f: LoginForm = match form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    {
        let mut failures = st.failures.lock().unwrap_or_else(|p| p.into_inner());
        while failures
            .front()
            .is_some_and(|t| t.elapsed() >= FAILURE_WINDOW)
        {
            failures.pop_front();
        }
        if failures.len() >= MOST_FAILURES {
            return html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login(Some(
                    "Too many failed logins: wait a minute, then try again.",
                )),
            );
        }
    }
    let claimed: String = f.name.trim().chars().take(64).collect();
    let operator = st.console.operators.iter().find(|o| {
        o.name == claimed
            && o.token
                .as_ref()
                .is_some_and(|t| same(t.expose(), f.token.trim()))
    });
    let Some(operator) = operator else {
        st.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(Instant::now());
        tracing::warn!(name = %crate::escape::shown(&claimed), "a console login was refused");
        st.audit(&claimed, "login refused", None, None).await;
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That name and token do not match an operator.")),
        );
    };
    let (Some(id), Some(csrf)) = (random_token(&st.random), random_token(&st.random)) else {
        return page_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness for a session.",
        );
    };
    st.logins.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id.clone(),
        Login {
            operator: operator.name.clone(),
            role: operator.role,
            csrf,
            expires: Instant::now() + st.console.session_ttl,
        },
    );
    st.audit(
        &operator.name,
        "login",
        None,
        Some(operator.role.as_str().into()),
    )
    .await;
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        st.console.session_ttl.as_secs(),
        if st.console.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(State(st): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    let f: CsrfForm = match form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (id, login) = match st.require_post(&headers, f.csrf.as_deref()) {
        Ok(l) => l,
        Err(r) => return r,
    };
    st.logins
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    st.audit(&login.operator, "logout", None, None).await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("payrecon_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn overview(State(st): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (_, login) = match st.require(&headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let age = |r: &OverviewReading| r.at.elapsed();
    let reading = match st.last_reading() {
        Some(r) if age(&r) < READING_FRESH => r,
        Some(r) if age(&r) < READING_STALE => {
            // Shown as it is (with its age), and read again behind it for the next look.
            let again = st.clone();
            tokio::spawn(async move {
                if let Err(e) = again.read_overview().await {
                    tracing::warn!(error = %e, "the console could not read the overview");
                }
            });
            r
        }
        _ => match st.read_overview().await {
            Ok(r) => r,
            Err(e) => return ledger_error(&e),
        },
    };
    let now = clock::now();
    let OverviewReading {
        stats,
        activity,
        learned,
        ..
    } = &*reading;
    let problems = crate::admin::problems(&st.health, stats, st.ledger.is_pg(), now);
    let recent = pages::Recent {
        budgets: budget_use(&st.cfg, activity),
        truth: charts::truth_by_hour(activity, now),
        resolutions: charts::resolutions_by_hour(activity, now),
        age: age(&reading),
        learned,
        half_life: st.cfg.schedule.learn_half_life,
        paced: st
            .cfg
            .providers
            .iter()
            .filter(|p| st.cfg.backoff_for(&p.name).pace == crate::config::Pace::Learned)
            .map(|p| p.name.as_str())
            .collect(),
    };
    html(
        StatusCode::OK,
        pages::overview(&login.nav(), stats, &problems, &recent),
    )
}

/// What the overview shows: the ledger's stats and its recent activity, read together.
struct OverviewReading {
    at: Instant,
    stats: crate::ledger::Stats,
    activity: crate::ledger::Activity,
    learned: Vec<crate::reconcile::timing::Learned>,
}

/// A reading younger than this is shown as it is. On a large ledger a reading scans every
/// session (a second at a million, docs/benchmark.md row 11): one per 30 s however many look,
/// and nobody waits for it but the first look after a quiet spell.
const READING_FRESH: Duration = Duration::from_secs(30);
/// A reading older than this is not shown: the look waits for a new one.
const READING_STALE: Duration = Duration::from_secs(300);

impl Console {
    fn last_reading(&self) -> Option<Arc<OverviewReading>> {
        self.reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes a new reading, unless another look just did (one at a time).
    async fn read_overview(&self) -> Result<Arc<OverviewReading>, crate::ledger::Error> {
        let _one = self.reading_taken.lock().await;
        if let Some(r) = self.last_reading()
            && r.at.elapsed() < READING_FRESH
        {
            return Ok(r);
        }
        let cfg = self.cfg.clone();
        let (stats, activity, learned) = self
            .ledger
            .call(move |l| {
                let now = clock::now();
                let day = Duration::from_secs(charts::HOURS as u64 * 3600);
                Ok::<_, crate::ledger::Error>((
                    l.stats(now)?,
                    l.activity(clock::sub(now, day), now)?,
                    crate::reconcile::timing::learn_all(&cfg, l, now)?,
                ))
            })
            .await?;
        let r = Arc::new(OverviewReading {
            at: Instant::now(),
            stats,
            activity,
            learned,
        });
        *self.reading.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        Ok(r)
    }
}

/// Each configured provider's status calls in the last hour against what its `rate_limit`
/// allows in an hour (`None`: no limit).
fn budget_use(cfg: &Config, a: &crate::ledger::Activity) -> Vec<pages::BudgetUse> {
    cfg.providers
        .iter()
        .map(|p| {
            let per_hour = p
                .rate_limits
                .iter()
                .map(|(n, per)| u64::from(n.get()) * 3600 / per.as_secs().max(1))
                .min();
            let calls = a
                .calls_last_hour
                .iter()
                .find(|(name, _)| *name == p.name)
                .map_or(0, |(_, n)| *n);
            pages::BudgetUse {
                provider: p.name.clone(),
                limit: p
                    .rate_limits
                    .iter()
                    .map(|(n, per)| format!("{n}/{}", humantime::format_duration(*per)))
                    .collect::<Vec<_>>()
                    .join(", "),
                calls,
                per_hour,
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct QueueQuery {
    provider: Option<String>,
    /// Decimal text: only sessions of at least this amount.
    min_amount: Option<String>,
    /// A duration (`2h`, `3d`): only sessions waiting longer.
    older_than: Option<String>,
    /// `amount`: largest first; else longest waiting first.
    sort: Option<String>,
    page: Option<u32>,
}

async fn review(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, login) = match st.require(&headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (shown, parsed) = match parse_queue(q, "/review") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Parsed {
        min_amount,
        before,
        page,
        ..
    } = parsed;
    let filter = crate::ledger::ReviewFilter {
        provider: shown.provider.clone(),
        min_amount,
        before,
        by_amount: shown.by_amount,
    };
    let ledger = st.ledger.clone();
    match ledger
        .call(move |l| l.review_queue(&filter, PAGE, page * PAGE))
        .await
    {
        Ok(items) => html(
            StatusCode::OK,
            pages::review(
                &login.nav(),
                &items,
                &shown,
                (page, PAGE),
                (st.console.severe_amount, st.console.severe_after),
                clock::now(),
            ),
        ),
        Err(e) => ledger_error(&e),
    }
}

/// A queue's filter as read from the query: what the form shows, and what it means.
struct Parsed {
    provider: Option<String>,
    min_amount: Option<rust_decimal::Decimal>,
    /// Only what has waited since before this.
    before: Option<clock::Timestamp>,
    by_amount: bool,
    page: u32,
}

/// Reads a queue page's filter (`provider`, `min_amount`, `older_than`, `sort`, `page`); a
/// value that cannot be read is a 400 naming it.
fn parse_queue(
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
    path: &'static str,
) -> Result<(pages::QueueFilter, Parsed), Response> {
    let Ok(Query(q)) = q else {
        return Err(page_error(
            StatusCode::BAD_REQUEST,
            "The filter could not be read.",
        ));
    };
    let nonempty = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let shown = pages::QueueFilter {
        path,
        provider: nonempty(q.provider),
        min_amount: nonempty(q.min_amount),
        older_than: nonempty(q.older_than),
        by_amount: q.sort.as_deref() == Some("amount"),
    };
    let min_amount = match &shown.min_amount {
        None => None,
        Some(a) => Some(a.parse::<rust_decimal::Decimal>().map_err(|_| {
            page_error(
                StatusCode::BAD_REQUEST,
                "The amount is not a decimal number.",
            )
        })?),
    };
    let before = match &shown.older_than {
        None => None,
        Some(t) => Some(clock::sub(
            clock::now(),
            humantime::parse_duration(t).map_err(|_| {
                page_error(
                    StatusCode::BAD_REQUEST,
                    "The age is not a duration such as 2h or 3d.",
                )
            })?,
        )),
    };
    let parsed = Parsed {
        provider: shown.provider.clone(),
        min_amount,
        before,
        by_amount: shown.by_amount,
        page: q.page.unwrap_or(0).min(100_000),
    };
    Ok((shown, parsed))
}

/// The most rows of a queue other than REVIEW that its page filters and orders: the newest
/// this many (those queues are short when payrecon is healthy; REVIEW is filtered in SQL).
const QUEUE_WINDOW: u32 = 5_000;

/// What a queue filters and orders one of its rows by.
struct QueueKey {
    provider: String,
    /// Since when it has waited (`None`: not known).
    since: Option<clock::Timestamp>,
    amount: Option<rust_decimal::Decimal>,
}

/// One page of `rows` under filter `f` — the provider's, amount at least, waiting since before
/// — longest waiting first or largest amount first, each with whether it is severe and how
/// long it has waited; and whether a next page follows.
fn work_queue<T>(
    rows: Vec<T>,
    key: impl Fn(&T) -> QueueKey,
    f: &Parsed,
    (severe_amount, severe_after): (rust_decimal::Decimal, Duration),
) -> (Vec<pages::Queued<T>>, bool) {
    let now = clock::now();
    let mut kept: Vec<(T, Option<clock::Timestamp>, Option<rust_decimal::Decimal>)> = rows
        .into_iter()
        .filter_map(|r| {
            let k = key(&r);
            let keep = f.provider.as_deref().is_none_or(|p| p == k.provider)
                && f.min_amount
                    .is_none_or(|m| k.amount.is_some_and(|a| a >= m))
                && f.before.is_none_or(|b| k.since.is_some_and(|s| s <= b));
            let (since, amount) = (k.since, k.amount);
            keep.then_some((r, since, amount))
        })
        .collect();
    if f.by_amount {
        kept.sort_by_key(|k| std::cmp::Reverse(k.2));
    } else {
        // Oldest first; what has no known time last.
        kept.sort_by_key(|(_, since, _)| (since.is_none(), *since));
    }
    let skip = (f.page * PAGE) as usize;
    let more = kept.len() > skip + PAGE as usize;
    let page = kept
        .into_iter()
        .skip(skip)
        .take(PAGE as usize)
        .map(|(row, since, amount)| pages::Queued {
            severe: amount.is_some_and(|a| a >= severe_amount)
                || since.is_some_and(|t| (now - t).to_std().is_ok_and(|w| w > severe_after)),
            waiting: since.map(|t| pages::age(t, now)),
            row,
        })
        .collect();
    (page, more)
}

/// A queue page other than REVIEW: its newest [`QUEUE_WINDOW`] rows read, then filtered,
/// ordered and paged by [`work_queue`].
async fn queue_page<T: Send + 'static>(
    st: &Console,
    headers: &HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
    path: &'static str,
    read: impl FnOnce(&Ledger) -> Result<Vec<T>, crate::ledger::Error> + Send + 'static,
    key: impl Fn(&T) -> QueueKey,
    render: impl FnOnce(&pages::Nav<'_>, &pages::Worked<'_, T>) -> maud::Markup,
) -> Response {
    let (_, login) = match st.require(headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (shown, parsed) = match parse_queue(q, path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rows = match st.ledger.call(read).await {
        Ok(rows) => rows,
        Err(e) => return ledger_error(&e),
    };
    let (rows, more) = work_queue(
        rows,
        key,
        &parsed,
        (st.console.severe_amount, st.console.severe_after),
    );
    let worked = pages::Worked {
        rows: &rows,
        filter: &shown,
        page: parsed.page,
        more,
    };
    html(StatusCode::OK, render(&login.nav(), &worked))
}

/// An event's place in a queue: its payload's provider and amount, and `since`.
fn event_key(e: &crate::ledger::Event, since: Option<&str>) -> QueueKey {
    let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
    QueueKey {
        provider: v["data"]["provider"].as_str().unwrap_or("").to_string(),
        since: since.and_then(clock::parse),
        amount: v["data"]["amount"].as_str().and_then(|a| a.parse().ok()),
    }
}

/// A page that only reads: logged in, what `read` reads from the ledger, rendered.
async fn read_page<T: Send + 'static>(
    st: &Console,
    headers: &HeaderMap,
    read: impl FnOnce(&Ledger) -> Result<T, crate::ledger::Error> + Send + 'static,
    render: impl FnOnce(&pages::Nav<'_>, &T) -> maud::Markup,
) -> Response {
    let (_, login) = match st.require(headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match st.ledger.call(read).await {
        Ok(found) => html(StatusCode::OK, render(&login.nav(), &found)),
        Err(e) => ledger_error(&e),
    }
}

async fn anomalies(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    queue_page(
        &st,
        &headers,
        q,
        "/anomalies",
        |l| l.list_events(crate::ledger::EventFilter::Anomalies, QUEUE_WINDOW),
        |(_, e)| event_key(e, Some(&e.created_at)),
        pages::anomalies,
    )
    .await
}

async fn unmatched(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    queue_page(
        &st,
        &headers,
        q,
        "/unmatched",
        |l| l.unmatched(crate::ledger::UnmatchedFilter::All, QUEUE_WINDOW),
        |u| QueueKey {
            provider: u.provider.clone(),
            since: clock::parse(u.reported_at.as_deref().unwrap_or(&u.first_seen_at)),
            amount: u.amount.as_deref().and_then(|a| a.parse().ok()),
        },
        pages::unmatched,
    )
    .await
}

#[derive(Deserialize)]
struct SettleForm {
    csrf: Option<String>,
    reason: Option<String>,
    /// Matching: the session the payment paid for.
    session_id: Option<String>,
}

/// A resolver closes an open unmatched payment with a reason (named in the audit log).
async fn dismiss(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    settle_by_hand(&st, &headers, id, body, false).await
}

/// A resolver ties an unmatched payment to the session it paid for (the ledger's rules, as
/// `payrecon unmatched match`; named in the audit log).
async fn match_by_hand(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    settle_by_hand(&st, &headers, id, body, true).await
}

/// A person's dismissal or match of an unmatched payment: a resolver's, with a reason (and the
/// session, to match), each 1 to 256 characters of plain text.
async fn settle_by_hand(
    st: &Console,
    headers: &HeaderMap,
    id: i64,
    body: Body,
    matching: bool,
) -> Response {
    let (f, login) = match resolver_form::<SettleForm>(st, headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let plain = |t: Option<String>| {
        let t = t.unwrap_or_default().trim().to_string();
        (!t.is_empty() && t.len() <= 256 && !t.chars().any(char::is_control)).then_some(t)
    };
    let (Some(reason), session_id) = (plain(f.reason), plain(f.session_id)) else {
        return page_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Say why: 1 to 256 characters of plain text.",
        );
    };
    let session_id = match (matching, session_id) {
        (false, _) => None,
        (true, Some(s)) => Some(s),
        (true, None) => {
            return page_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Name the session: 1 to 256 characters of plain text.",
            );
        }
    };
    let operator = login.operator.clone();
    // The ledger's own refusal travels inside the call's result.
    let settled = st
        .ledger
        .clone()
        .call(move |l| {
            let now = clock::now();
            Ok(match &session_id {
                Some(s) => l
                    .match_unmatched_by_hand(id, s, &operator, &reason, now)
                    .map(|(_, written)| written),
                None => l
                    .dismiss_unmatched(id, &operator, &reason, now)
                    .map(|_| None),
            })
        })
        .await;
    match settled {
        Ok(Ok(written)) => {
            if let Some(w) = written {
                if st.cfg.events_log {
                    crate::events::log(&w);
                }
                if let Some(wake) = &st.opts.wake_outbox {
                    wake.notify_one();
                }
            }
            Redirect::to("/unmatched").into_response()
        }
        Ok(Err(crate::ledger::DismissError::Ledger(e))) | Err(e) => ledger_error(&e),
        Ok(Err(e)) => page_error(StatusCode::CONFLICT, &e.to_string()),
    }
}

async fn dead_events(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    queue_page(
        &st,
        &headers,
        q,
        "/events/dead",
        |l| l.list_events(crate::ledger::EventFilter::Dead, QUEUE_WINDOW),
        |(_, e)| event_key(e, e.dead_at.as_deref()),
        pages::dead_events,
    )
    .await
}

/// A resolver puts a dead event back in line (named in the audit log).
async fn replay(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (_, login) = match resolver_form::<CsrfForm>(&st, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ledger = st.ledger.clone();
    let operator = login.operator.clone();
    match ledger
        .call(move |l| l.replay(Some(&id), &operator, clock::now()))
        .await
    {
        Ok(0) => page_error(StatusCode::NOT_FOUND, "No such event."),
        Ok(_) => Redirect::to("/events/dead").into_response(),
        Err(e) => ledger_error(&e),
    }
}

async fn unreadable(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // An unreadable row's time and amount are what could not be read: by provider only.
    queue_page(
        &st,
        &headers,
        q,
        "/unreadable",
        |l| l.unreadable_rows(QUEUE_WINDOW),
        |u| QueueKey {
            provider: u.provider.clone(),
            since: None,
            amount: None,
        },
        pages::unreadable,
    )
    .await
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

/// Sessions by their session id, the provider's second id, their reference or the provider's
/// transaction id.
async fn search(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, login) = match st.require(&headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let q = q
        .ok()
        .and_then(|Query(q)| q.q)
        .map(|q| q.trim().chars().take(256).collect::<String>())
        .filter(|q| !q.is_empty());
    let Some(q) = q else {
        return html(StatusCode::OK, pages::search(&login.nav(), "", &[]));
    };
    let (ledger, id) = (st.ledger.clone(), q.clone());
    match ledger.call(move |l| l.search(&id, 50)).await {
        Ok(found) => html(StatusCode::OK, pages::search(&login.nav(), &q, &found)),
        Err(e) => ledger_error(&e),
    }
}

async fn audit(State(st): State<Arc<Console>>, headers: HeaderMap) -> Response {
    read_page(
        &st,
        &headers,
        |l| l.audit_log(200),
        |nav, entries| pages::audit(nav, entries),
    )
    .await
}

/// The most checks a story shows (the newest; a session is checked a few dozen times at most
/// by the default schedules).
const STORY_CHECKS: u32 = 500;

async fn story(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path((provider, session_id)): Path<(String, String)>,
) -> Response {
    let (_, login) = match st.require(&headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let ledger = st.ledger.clone();
    let found = ledger
        .call(move |l| {
            let Some(s) = l.get(&provider, &session_id)? else {
                return Ok(None);
            };
            let story = pages::Story {
                transitions: l.transitions(s.rowid)?,
                events: l.session_events(s.rowid)?,
                checks: l.checks(s.rowid, STORY_CHECKS)?,
                attempts: l.delivery_attempts(s.rowid)?,
            };
            Ok::<_, crate::ledger::Error>(Some((s, story)))
        })
        .await;
    match found {
        Ok(Some((s, story))) => html(StatusCode::OK, pages::story(&login.nav(), &s, &story)),
        Ok(None) => page_error(StatusCode::NOT_FOUND, "No such session."),
        Err(e) => ledger_error(&e),
    }
}

/// A resolver asks the provider about a session now, through the budget, as the API's verify
/// does (source `api`); the story then shows what it answered.
async fn verify(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path((provider, session_id)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (_, login) = match resolver_form::<CsrfForm>(&st, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let verified = crate::reconcile::verify(
        &st.ledger,
        &st.providers,
        &st.cfg,
        &st.opts,
        &provider,
        &session_id,
        &st.shutdown,
    )
    .await;
    let detail = match &verified {
        Ok(v) => match (&v.session, &v.unchecked) {
            (None, _) => return page_error(StatusCode::NOT_FOUND, "No such session."),
            (Some(s), None) => format!("answered: {}", s.status),
            (Some(_), Some(why)) => format!("not checked: {why}"),
        },
        Err(e) => return ledger_error(e),
    };
    st.audit(
        &login.operator,
        "verify",
        Some(format!("{provider}/{session_id}")),
        Some(detail),
    )
    .await;
    let to = format!(
        "/sessions/{}/{}",
        pages::path_segment(&provider),
        pages::path_segment(&session_id)
    );
    Redirect::to(&to).into_response()
}

#[derive(Deserialize)]
struct ResolveForm {
    csrf: Option<String>,
    to: String,
    reason: String,
    confirm: Option<String>,
}

/// A resolver's decision: first a confirmation showing the ledger's and the provider's amounts
/// side by side, then — confirmed — the transition, named, with its audit entry.
async fn resolve(
    State(st): State<Arc<Console>>,
    headers: HeaderMap,
    Path((provider, session_id)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (f, login) = match resolver_form::<ResolveForm>(&st, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ledger = st.ledger.clone();
    let (p, id) = (provider.clone(), session_id.clone());
    let found = ledger
        .call(move |l| {
            let Some(s) = l.get(&p, &id)? else {
                return Ok(None);
            };
            let transitions = l.transitions(s.rowid)?;
            Ok::<_, crate::ledger::Error>(Some((s, transitions)))
        })
        .await;
    let (s, transitions) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return page_error(StatusCode::NOT_FOUND, "No such session."),
        Err(e) => return ledger_error(&e),
    };
    let to: Result<Status, _> = f.to.parse();
    let record = to.map_err(|e| e.to_string()).and_then(|to| {
        crate::reconcile::manual(
            &s,
            to,
            &f.reason,
            &login.operator,
            clock::now(),
            st.cfg.backoff.late_check,
        )
        .map(|r| (to, r))
        .map_err(|e| e.to_string())
    });
    let (to, record) = match record {
        Ok(r) => r,
        Err(why) => return page_error(StatusCode::UNPROCESSABLE_ENTITY, &why),
    };
    if f.confirm.as_deref() != Some("yes") {
        return html(
            StatusCode::OK,
            pages::confirm(&login.nav(), &s, &transitions, to, f.reason.trim()),
        );
    }
    let audit_target = format!("{}/{}", s.provider, s.session_id);
    let detail = format!("{} -> {to}: {}", s.status, f.reason.trim());
    let operator = login.operator.clone();
    let written = ledger
        .call(move |l| {
            let audit = Audit {
                actor: &operator,
                action: "resolve",
                target: Some(audit_target),
                detail: Some(detail),
            };
            l.record_decision(
                clock::now(),
                &[record],
                crate::reconcile::contradiction,
                &audit,
            )
        })
        .await;
    match written {
        Ok(w) if !w.is_empty() => {
            if st.cfg.events_log {
                w.iter().for_each(crate::events::log);
            }
            let to = format!(
                "/sessions/{}/{}",
                pages::path_segment(&provider),
                pages::path_segment(&session_id)
            );
            Redirect::to(&to).into_response()
        }
        Ok(_) => page_error(
            StatusCode::CONFLICT,
            "The session changed while you decided (another check closed it): look at it again.",
        ),
        Err(e) => ledger_error(&e),
    }
}

fn ledger_error(e: &crate::ledger::Error) -> Response {
    tracing::error!(error = %e, "the console could not read or write the ledger");
    page_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The ledger could not be read or written; the log says why.",
    )
}

impl Login {
    /// What every page's header needs of the login.
    fn nav(&self) -> pages::Nav<'_> {
        pages::Nav {
            operator: &self.operator,
            role: self.role,
            csrf: &self.csrf,
        }
    }
}
