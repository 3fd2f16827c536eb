//! The HTTP API for applications on `[api] listen` (off by default): enqueue a session, read
//! one, and verify one with its provider now — what a return-URL handler should call instead of
//! trusting the redirect's query parameters. When a token is configured every request must
//! carry `Authorization: Bearer <token>`; config validation demands one beyond loopback.
//!
//! Bad input gets a 4xx with `{"error": …, "field": …}` and nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod callbacks;
mod schema;

use callbacks::{Seen, callback};
pub use schema::openapi_document;
use schema::{ErrorBody, SessionKey, SessionRequest, SessionView};

use crate::config::{Config, Secret};
use crate::hints::{Hints, Offer};
use crate::ledger::{Enqueued, Ledger, NewSession, Session, SessionInput};
use crate::provider::Providers;
use crate::reconcile::{self, PassOptions, Verified};
use tokio_util::sync::CancellationToken;

/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024;

struct ApiState {
    ledger: Ledger,
    providers: Providers,
    cfg: Config,
    opts: PassOptions,
    token: Option<Secret>,
    hints: Arc<Hints>,
    /// Stops `verify`s in flight (their sessions given back) with the daemon.
    shutdown: CancellationToken,
    /// Signed callbacks already taken: a replay counts once.
    seen: std::sync::Mutex<Seen>,
    /// Refused callbacks, logged at most once per [`REFUSALS_EVERY`] with a count.
    refusals: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

/// The API router, and the hint workers it feeds (they stop with `shutdown`).
pub fn router(
    ledger: Ledger,
    providers: Providers,
    cfg: Config,
    opts: PassOptions,
    shutdown: CancellationToken,
) -> (Router, Vec<tokio::task::JoinHandle<()>>) {
    let token = cfg.api.as_ref().and_then(|a| a.token.clone());
    let (hints, workers) = Hints::start(
        ledger.clone(),
        providers.clone(),
        cfg.clone(),
        opts.clone(),
        shutdown.clone(),
    );
    let state = Arc::new(ApiState {
        ledger,
        providers,
        cfg,
        opts,
        token,
        hints,
        shutdown,
        seen: Default::default(),
        refusals: Default::default(),
    });
    let router = Router::new()
        .route("/v1/sessions", post(create))
        .route("/v1/sessions/{provider}/{session_id}", get(read))
        .route("/v1/sessions/{provider}/{session_id}/verify", post(verify))
        .route("/v1/sessions/{provider}/{session_id}/hint", post(hint))
        .route("/v1/unmatched", get(unmatched))
        .route("/v1/openapi.json", get(openapi))
        // Whatever else is asked, the answer is the API's JSON error too.
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // Every route above, before anything else runs: the token, when one is configured.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        // Providers cannot send our token: their callbacks are only hints, signed where the
        // provider signs them.
        .route("/v1/callbacks/{provider}", post(callback))
        .with_state(state)
        // Whatever answered an error in another shape (a layer's 413, a rejection's text),
        // the client gets the API's JSON error.
        .layer(axum::middleware::map_response(json_errors));
    (router, workers)
}

/// Any 4xx/5xx answer that is not JSON becomes `{"error": …}` with the same status.
async fn json_errors(r: Response) -> Response {
    let code = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (code.is_client_error() || code.is_server_error()) && !is_json {
        let reason = code.canonical_reason().unwrap_or("error").to_lowercase();
        return error(code, &reason, None).into_response();
    }
    r
}

/// A 4xx/5xx answer: `{"error": …, "field": …}`.
struct ApiError {
    code: StatusCode,
    message: String,
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn error(code: StatusCode, message: &str, field: Option<&str>) -> ApiError {
    ApiError {
        code,
        message: message.to_string(),
        field: field.map(String::from),
    }
}

fn session_json(code: StatusCode, s: &Session) -> Response {
    let body = serde_json::to_string(&SessionView::from(s)).unwrap_or_else(|_| "{}".into());
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time (the API
/// and the admin endpoint share it).
pub fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let want = token.expose().as_bytes();
    given.len() == want.len()
        && given
            .bytes()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The bearer token, when one is configured.
fn authorized(st: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &st.token else {
        return Ok(());
    };
    if bearer_matches(headers, token) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
            None,
        ))
    }
}

async fn require_token(
    State(st): State<Arc<ApiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorized(&st, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The `POST /v1/sessions` body parser on its own, for the fuzz target: the session, or the
/// HTTP status and message the API would answer.
pub fn session_from_body(cfg: &Config, body: &[u8]) -> Result<NewSession, (u16, String)> {
    new_session(cfg, body).map_err(|e| (e.code.as_u16(), e.message))
}

/// A JSON object whose keys are all distinct.
struct UniqueObject(serde_json::Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "the key {:?} appears twice",
                            crate::escape::shown(&k)
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// Reads and checks a `POST /v1/sessions` body; the error names the field.
fn new_session(cfg: &Config, body: &[u8]) -> Result<NewSession, ApiError> {
    let bad =
        |msg: String, field: Option<&str>| error(StatusCode::UNPROCESSABLE_ENTITY, &msg, field);
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON ({e})"),
            None,
        )
    })?;
    let Value::Object(_) = v else {
        return Err(bad("the body must be a JSON object".into(), None));
    };
    // With a key twice, which value would count? serde_json keeps the last: refused instead.
    let UniqueObject(obj) = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not accepted ({e})"),
            None,
        )
    })?;
    const FIELDS: &[&str] = NewSession::FIELDS;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            format!("unknown field {k:?} (fields: {})", FIELDS.join(", ")),
            Some(k),
        ));
    }
    let text = |name: &'static str| -> Result<Option<String>, ApiError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // Amounts travel as decimal text: a JSON number has been through a float somewhere.
            Some(_) => Err(bad(format!("{name} must be a string"), Some(name))),
        }
    };
    let fields: BTreeMap<&str, String> = FIELDS
        .iter()
        .filter_map(|f| text(f).transpose().map(|v| v.map(|v| (*f, v))))
        .collect::<Result<_, _>>()?;
    let s = NewSession::from_input(
        &SessionInput::by_name(|name| fields.get(name).map(String::as_str)),
        |p| cfg.provider(p).is_some(),
    )
    .map_err(|e| bad(e.to_string(), Some(e.field)))?;
    Ok(s)
}

/// Enqueue a session
///
/// Adds a PENDING session to the ledger, to be checked on its provider's schedule. The same
/// session with the same fields again changes nothing (200).
#[utoipa::path(
    post,
    path = "/v1/sessions",
    request_body = SessionRequest,
    responses(
        (status = 201, description = "Enqueued", body = SessionView),
        (status = 200, description = "Already in the ledger with these fields", body = SessionView),
        (status = 400, description = "The body is not a JSON object with distinct keys", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "Already in the ledger with another value in `field`", body = ErrorBody),
        (status = 408, description = "The body did not arrive within 10 s", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody),
        (status = 422, description = "A field is refused; `field` names it", body = ErrorBody),
    )
)]
async fn create(State(st): State<Arc<ApiState>>, body: Body) -> Response {
    let body = match crate::listen::body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return body_refused(e, MAX_BODY).into_response(),
    };
    let s = match new_session(&st.cfg, &body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let (p, id) = (s.provider.clone(), s.session_id.clone());
    let result = st
        .ledger
        .call(move |l| {
            let e = l.enqueue(&s)?;
            Ok((e, l.get(&p, &id)?))
        })
        .await;
    match result {
        Ok((e, Some(session))) => session_json(
            if e == Enqueued::Added {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &session,
        ),
        // The same session with another amount, reference or currency: the ledger keeps its own.
        Err(crate::ledger::Error::Conflict(c)) => {
            error(StatusCode::CONFLICT, &c.to_string(), Some(c.field)).into_response()
        }
        Ok((_, None)) | Err(_) => internal(result.err()),
    }
}

/// A body that was too large or too slow, as the API's error.
fn body_refused(e: crate::listen::BodyError, max: usize) -> ApiError {
    match e {
        crate::listen::BodyError::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {max} bytes"),
            None,
        ),
        crate::listen::BodyError::Slow => error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the body did not arrive within {}s",
                crate::listen::BODY_TIMEOUT.as_secs()
            ),
            None,
        ),
    }
}

fn internal(e: Option<crate::ledger::Error>) -> Response {
    // Logged in full, answered opaque.
    tracing::error!(error = ?e, "api: internal error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (see the daemon's log)",
        None,
    )
    .into_response()
}

/// The `{provider}/{session_id}` of a path, or the API's JSON 400 (axum's own rejection, for a
/// segment that is not UTF-8, is plain text).
type SessionPath = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;

fn session_path(path: SessionPath) -> Result<(String, String), ApiError> {
    path.map(|Path(p)| p).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the path is not /v1/sessions/{{provider}}/{{session_id}} in UTF-8 ({e})"),
            None,
        )
    })
}

/// Read a session
///
/// The session as the ledger holds it now; nothing is asked of the provider.
#[utoipa::path(
    get,
    path = "/v1/sessions/{provider}/{session_id}",
    params(SessionKey),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "The path is not UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
async fn read(State(st): State<Arc<ApiState>>, path: SessionPath) -> Response {
    let (provider, session_id) = match session_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    found(st.ledger.call(move |l| l.get(&provider, &session_id)).await)
}

/// Which unmatched payments to list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
struct UnmatchedQuery {
    /// Matched and dismissed ones too, and those still within their grace window
    #[serde(default)]
    all: bool,
    /// The most to return (newest first), 1 to 1000; default 100
    limit: Option<u32>,
}

/// Payments the provider lists as paid that no session holds
///
/// Open ones by default: reported (`payment.unmatched`), neither matched to a session since
/// nor dismissed by a person. Newest first.
#[utoipa::path(
    get,
    path = "/v1/unmatched",
    params(UnmatchedQuery),
    responses(
        (status = 200, description = "Unmatched payments, newest first", body = [schema::UnmatchedView]),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
async fn unmatched(
    State(st): State<Arc<ApiState>>,
    q: Result<axum::extract::Query<UnmatchedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad query: all=true|false, limit=1..1000",
            None,
        )
        .into_response();
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "limit must be from 1 to 1000",
            Some("limit"),
        )
        .into_response();
    }
    let filter = if q.all {
        crate::ledger::UnmatchedFilter::All
    } else {
        crate::ledger::UnmatchedFilter::Open
    };
    match st.ledger.call(move |l| l.unmatched(filter, limit)).await {
        Ok(rows) => {
            let rows: Vec<schema::UnmatchedView> = rows.into_iter().map(Into::into).collect();
            axum::Json(rows).into_response()
        }
        Err(e) => internal(Some(e)),
    }
}

/// Verify a session with its provider now
///
/// What a return-URL handler should call instead of trusting the redirect: a PENDING session
/// is checked with its provider at once (within the provider's rate limit) and answered as the
/// ledger then holds it; a finished session is answered as it is. A PENDING session payrecon
/// could not get an answer about now (another check held it for 5 s, no call slot was free in
/// time, the provider failed) is a 503 saying why, never a stale 200.
#[utoipa::path(
    post,
    path = "/v1/sessions/{provider}/{session_id}/verify",
    params(SessionKey),
    responses(
        (status = 200, description = "The session after the check", body = SessionView),
        (status = 400, description = "The path is not UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "Not checked now (the error says why); the session is as it was; try again after Retry-After", body = ErrorBody),
    )
)]
async fn verify(State(st): State<Arc<ApiState>>, path: SessionPath) -> Response {
    let (provider, session_id) = match session_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let verified = reconcile::verify(
        &st.ledger,
        &st.providers,
        &st.cfg,
        &st.opts,
        &provider,
        &session_id,
        &st.shutdown,
    )
    .await;
    match verified {
        Ok(Verified {
            session: Some(_),
            unchecked: Some(why),
        }) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not checked: {why}"),
                None,
            )
            .into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
            r
        }
        Ok(v) => found(Ok(v.session)),
        Err(e) => found(Err(e)),
    }
}

/// Hint that a session may have changed
///
/// What a provider's callback or a return page should call: the session is queued for a check
/// with its provider, in the background and within the provider's rate limit, behind the
/// daemon's scheduled checks — the hint itself never sets a state. 202 when it was queued,
/// with the session as it is now; 200 when no check is needed (the session is not PENDING, or
/// is queued or was checked less than 10 s ago: hints close together count once); 503 when
/// the provider's hint queue is full (the session keeps its own schedule); 404 for a session
/// payrecon does not know, which costs no call.
#[utoipa::path(
    post,
    path = "/v1/sessions/{provider}/{session_id}/hint",
    params(SessionKey),
    responses(
        (status = 202, description = "Queued for a check", body = SessionView),
        (status = 200, description = "No check needed", body = SessionView),
        (status = 400, description = "The path is not UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "The session's provider is not configured here", body = ErrorBody),
        (status = 503, description = "The provider's hint queue is full", body = ErrorBody),
    )
)]
async fn hint(State(st): State<Arc<ApiState>>, path: SessionPath) -> Response {
    let (provider, session_id) = match session_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (p, id) = (provider.clone(), session_id.clone());
    match st.ledger.call(move |l| l.get(&p, &id)).await {
        Ok(Some(s)) if s.status != crate::ledger::Status::Pending => {
            session_json(StatusCode::OK, &s)
        }
        Ok(Some(s)) => match st.hints.offer(&s.provider, &s.session_id) {
            Offer::Queued => session_json(StatusCode::ACCEPTED, &s),
            Offer::Coalesced => session_json(StatusCode::OK, &s),
            Offer::Dropped => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the provider's hint queue is full; the session is checked on its own schedule",
                None,
            )
            .into_response(),
            Offer::Unconfigured => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the session's provider is not configured in this daemon",
                Some("provider"),
            )
            .into_response(),
        },
        other => found(other),
    }
}

/// A looked-up session as the answer: 200 with it, 404, or an opaque 500.
fn found(result: Result<Option<Session>, crate::ledger::Error>) -> Response {
    match result {
        Ok(Some(s)) => session_json(StatusCode::OK, &s),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such session", None).into_response(),
        Err(e) => internal(Some(e)),
    }
}

/// This document
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    responses(
        (status = 200, description = "The API's OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
async fn openapi(State(st): State<Arc<ApiState>>) -> Response {
    let body = openapi_document(&st.cfg).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn no_route() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (see /v1/openapi.json)",
        None,
    )
    .into_response()
}

async fn wrong_method() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method is not allowed here (see /v1/openapi.json)",
        None,
    )
    .into_response()
}
