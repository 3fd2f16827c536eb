//! The HTTP API for applications on `[api] listen` (off by default): enqueue a session, read
//! one, and verify one with its provider now — what a return-URL handler should call instead of
//! trusting the redirect's query parameters. When a token is configured every request must
//! carry `Authorization: Bearer <token>`; config validation demands one beyond loopback.
//!
//! Bad input gets a 4xx with `{"error": …, "field": …}` and nothing is written.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::config::{Config, Secret};
use crate::ledger::{Enqueued, Ledger, NewSession, Session, SessionInput};
use crate::provider::Providers;
use crate::reconcile::{self, PassOptions};

/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024;

struct ApiState {
    ledger: Ledger,
    providers: Providers,
    cfg: Config,
    opts: PassOptions,
    token: Option<Secret>,
}

/// The API router.
pub fn router(ledger: Ledger, providers: Providers, cfg: Config, opts: PassOptions) -> Router {
    let token = cfg.api.as_ref().and_then(|a| a.token.clone());
    let state = Arc::new(ApiState {
        ledger,
        providers,
        cfg,
        opts,
        token,
    });
    Router::new()
        .route("/v1/sessions", post(create))
        .route("/v1/sessions/{provider}/{session_id}", get(read))
        .route("/v1/sessions/{provider}/{session_id}/verify", post(verify))
        // Every route, before anything else runs: the token, when one is configured.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
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
    let body = serde_json::to_string(s).unwrap_or_else(|_| "{}".into());
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
    let fields: Vec<Option<String>> = FIELDS.iter().map(|f| text(f)).collect::<Result<_, _>>()?;
    let field = |i: usize| fields[i].as_deref();
    let s = NewSession::from_input(
        &SessionInput {
            provider: field(0),
            session_id: field(1),
            reference: field(2),
            amount: field(3),
            currency: field(4),
            created_at: field(5),
        },
        |p| cfg.provider(p).is_some(),
    )
    .map_err(|e| bad(e.to_string(), Some(e.field)))?;
    Ok(s)
}

async fn create(State(st): State<Arc<ApiState>>, body: Body) -> Response {
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {MAX_BODY} bytes"),
                None,
            )
            .into_response();
        }
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

async fn read(State(st): State<Arc<ApiState>>, path: SessionPath) -> Response {
    let (provider, session_id) = match session_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    found(st.ledger.call(move |l| l.get(&provider, &session_id)).await)
}

async fn verify(State(st): State<Arc<ApiState>>, path: SessionPath) -> Response {
    let (provider, session_id) = match session_path(path) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    found(
        reconcile::verify(
            &st.ledger,
            &st.providers,
            &st.cfg,
            &st.opts,
            &provider,
            &session_id,
        )
        .await,
    )
}

/// A looked-up session as the answer: 200 with it, 404, or an opaque 500.
fn found(result: Result<Option<Session>, crate::ledger::Error>) -> Response {
    match result {
        Ok(Some(s)) => session_json(StatusCode::OK, &s),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such session", None).into_response(),
        Err(e) => internal(Some(e)),
    }
}
