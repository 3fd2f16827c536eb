//! `POST /v1/callbacks/{provider}`: a provider's own notification, taken as a hint, answering
//! the same whatever it names (docs/security.md).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::provider::CallbackSignature;

use super::schema::ErrorBody;
use super::{ApiState, body_refused, error, internal};

/// Refused callbacks are logged at most this often, each line with how many since the last.
const REFUSALS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a signed callback's digest is remembered, so a replay counts once `[assumed]`:
/// Vesicash publishes neither an event id nor a timestamp in the signed string it documents
/// first, so the body itself is what was signed once.
const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The most signed callbacks remembered; beyond it the oldest are forgotten first.
const MOST_SEEN: usize = 100_000;

/// The digests of signed callbacks taken, oldest first.
#[derive(Default)]
pub(super) struct Seen {
    order: std::collections::VecDeque<([u8; 32], std::time::Instant)>,
    set: std::collections::HashSet<[u8; 32]>,
}

impl Seen {
    /// Whether `digest` is new (and notes it).
    fn first(&mut self, digest: [u8; 32]) -> bool {
        while let Some((d, at)) = self.order.front() {
            if at.elapsed() < SEEN_FOR && self.order.len() < MOST_SEEN {
                break;
            }
            self.set.remove(d);
            self.order.pop_front();
        }
        if !self.set.insert(digest) {
            return false;
        }
        self.order.push_back((digest, std::time::Instant::now()));
        true
    }
}

/// A callback URL's query: it may name the session itself.
#[derive(serde::Deserialize)]
pub(super) struct CallbackQuery {
    session_id: Option<String>,
}

/// The largest provider callback accepted.
const MAX_CALLBACK_BODY: usize = 64 * 1024;

/// How long either side of its signed timestamp a Standard Webhooks callback is taken: five
/// minutes, the specification's own tolerance.
const SIGNED_TOLERANCE_SECS: i64 = 300;

/// Whether a Standard Webhooks callback verifies: the three headers present (`svix-…`, as Moflay
/// sends them, or `webhook-…`), the timestamp within [`SIGNED_TOLERANCE_SECS`] of now, and a
/// `v1` signature of `id.timestamp.body` under the `whsec_…` secret. Why not, when not.
fn standard_webhooks<'a>(
    secret: &crate::config::Secret,
    h: &impl Fn(&[&str]) -> Option<&'a str>,
    id: &str,
    body: &[u8],
) -> Result<(), String> {
    let (Some(ts), Some(sigs)) = (
        h(&["svix-timestamp", "webhook-timestamp"]),
        h(&["svix-signature", "webhook-signature"]),
    ) else {
        return Err("svix-id, svix-timestamp and svix-signature are required".into());
    };
    if id.is_empty() {
        return Err("svix-id, svix-timestamp and svix-signature are required".into());
    }
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= SIGNED_TOLERANCE_SECS);
    if !fresh {
        return Err("svix-timestamp is not within five minutes of now".into());
    }
    let Some(key) = crate::secret::SigningKey::from_whsec(secret.expose()) else {
        return Err("the secret in webhook_secret_env is not whsec_ followed by base64".into());
    };
    if crate::secret::standard_webhooks_matches(&key, id, ts, body, sigs) {
        Ok(())
    } else {
        Err("svix-signature does not verify with the secret in webhook_secret_env".into())
    }
}

/// What a provider's callbacks are checked with: the shared secret in `webhook_secret_env`, or
/// the provider's public key (`webhook_public_key`).
#[derive(Clone, Copy)]
enum Key<'a> {
    Secret(&'a crate::config::Secret),
    Public(&'a [u8]),
}

/// How `pc`'s callbacks are checked, when its table configures it; `None`: hints only.
fn signing_of(pc: &crate::provider::ProviderConfig) -> Option<(Key<'_>, CallbackSignature)> {
    let scheme = pc.kind.spec().callback.signature?;
    match scheme {
        CallbackSignature::RsaSha256 { .. } => pc
            .webhook_public_key
            .as_deref()
            .map(|k| (Key::Public(k), scheme)),
        _ => pc.webhook_secret.as_ref().map(|s| (Key::Secret(s), scheme)),
    }
}

/// Whether a callback signed with RSA-SHA256 verifies under `key`: both headers present, the
/// timestamp within [`SIGNED_TOLERANCE_SECS`] of now [assumed: Little states no tolerance], and
/// the signature one of `timestamp + "." + JSON` — the JSON being the body as sent, or the same
/// without the whitespace between its tokens (the signer's `JSON.stringify` of the payload, when
/// it sent it formatted) [assumed: the docs sign the re-serialised payload, not the bytes].
fn rsa_sha256<'a>(
    key: &[u8],
    (signature, timestamp): (&str, &str),
    h: &impl Fn(&[&str]) -> Option<&'a str>,
    body: &[u8],
) -> Result<(), String> {
    let (Some(sig), Some(ts)) = (h(&[signature]), h(&[timestamp])) else {
        return Err(format!("{signature} and {timestamp} are required"));
    };
    let fresh = ts
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= SIGNED_TOLERANCE_SECS);
    if !fresh {
        return Err(format!("{timestamp} is not within five minutes of now"));
    }
    let compact = compact_json(body);
    let verifies = |json: &[u8]| {
        let message = [ts.trim().as_bytes(), b".", json].concat();
        crate::secret::rsa_sha256_matches(key, &message, sig)
    };
    if verifies(body) || (compact.as_slice() != body && verifies(&compact)) {
        Ok(())
    } else {
        Err(format!(
            "{signature} does not verify with the provider's public key (webhook_public_key)"
        ))
    }
}

/// `body` without the whitespace between JSON tokens (strings kept as they are): what
/// `JSON.stringify` writes of a payload sent formatted.
fn compact_json(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// The provider's answer a verified callback carries for `s`: its kind's payment object (at the
/// kind's `answer_pointer`) read by the kind's own adapter exactly as a status answer is — the
/// same whitelisted fields, the same check that it names this session. `None`: a hint only.
fn answer_in_body(
    pc: &crate::provider::ProviderConfig,
    s: &crate::ledger::Session,
    body: &[u8],
) -> Option<crate::provider::Answer> {
    let pointer = pc.kind.spec().callback.answer_pointer?;
    let v: Value = serde_json::from_slice(body).ok()?;
    let object = v.pointer(pointer)?;
    // A body that only names the session (no status of its own) is a hint, not an answer.
    object.get("status").and_then(Value::as_str)?;
    let object = serde_json::to_vec(object).ok()?;
    let facts = pc
        .kind
        .adapter(pc)
        .parse_callback(&s.session_id, &object)
        .ok()?;
    Some(crate::provider::Answer::Found(facts))
}

/// The one answer to every callback taken: it says nothing of the session.
fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"accepted":true}"#,
    )
        .into_response()
}

/// A provider's own callback (webhook), taken as a hint
///
/// Where a provider sends its payment notifications. Answered 202 `{"accepted": true}` alike
/// for a known, unknown or finished session and for any provider name — the answer tells
/// nothing about the ledger. A PENDING session it names is queued for a check with its
/// provider, exactly as a hint: checked within the budget, never set by the callback itself —
/// unless its signature verifies and it carries the provider's payment object (Moflay), which is
/// then decided as a status answer would be.
/// The session is named by `?session_id=` or found in the body where the provider's kind
/// keeps it (docs/api.md "Provider callbacks"); where the provider's table sets
/// `webhook_secret_env`, a callback whose signature does not verify is refused, the session is
/// taken only from the signed body (never the query), and a replayed body counts once. No
/// bearer token (providers cannot send one).
#[utoipa::path(
    post,
    path = "/v1/callbacks/{provider}",
    params(("provider" = String, Path, description = "The provider table the callback is for"),
           ("session_id" = Option<String>, Query, description = "The session, when the callback URL names it (ignored where the provider signs)")),
    request_body(content = Vec<u8>, description = "The provider's callback body as it sends it (JSON from every provider that documents one; read when no ?session_id= names the session, and always where the provider signs)", content_type = "application/octet-stream"),
    security(()),
    responses(
        (status = 202, description = "Taken (whatever it names)", content_type = "application/json"),
        (status = 400, description = "The path is not UTF-8, or the query cannot be read", body = ErrorBody),
        (status = 401, description = "The signature does not verify", body = ErrorBody),
        (status = 408, description = "The body did not arrive within 10 s", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
    )
)]
pub(super) async fn callback(
    State(st): State<Arc<ApiState>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<axum::extract::Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(provider)) = path else {
        return error(StatusCode::BAD_REQUEST, "the path is not UTF-8", None).into_response();
    };
    let body = match crate::listen::body(body, MAX_CALLBACK_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let reason = match e {
                crate::listen::BodyError::TooLarge => "too_large",
                crate::listen::BodyError::Slow => "slow",
            };
            st.refused(&provider, reason);
            return body_refused(e, MAX_CALLBACK_BODY).into_response();
        }
    };
    let pc = st.cfg.provider(&provider);
    let spec = pc.map(|pc| pc.kind.spec());
    let signing = pc.and_then(signing_of);
    if let Some((key, scheme)) = signing
        && let Some(refusal) = st.signed_refusal(&provider, key, scheme, &headers, &body)
    {
        return refusal;
    }
    let named = match query {
        // Where the provider signs, only what the signature covers names the session.
        Ok(q) if signing.is_none() => q.0.session_id.filter(|s| !s.is_empty()),
        Ok(_) => None,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, &format!("the query: {e}"), None)
                .into_response();
        }
    };
    let candidates = match named {
        Some(id) => vec![id],
        None => st.ids_in_body(&provider, spec, &body),
    };
    if pc.is_none() {
        return accepted();
    }
    let verified = signing.is_some();
    for id in candidates.into_iter().take(8) {
        let p = provider.clone();
        match st.ledger.call(move |l| l.named(&p, &id)).await {
            Ok(Some(s)) => {
                if s.status != crate::ledger::Status::Pending {
                    break;
                }
                // A verified callback carrying the provider's payment object is its word.
                if let Some(answer) = pc
                    .filter(|_| verified)
                    .and_then(|pc| answer_in_body(pc, &s, &body))
                {
                    match crate::reconcile::take_answer(&st.ledger, &st.cfg, &st.opts, &s, answer)
                        .await
                    {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => return internal(Some(e)),
                    }
                }
                st.hints.offer(&s.provider, &s.session_id);
                break;
            }
            Ok(None) => {}
            // Logged in full; the provider is told only that it may send again.
            Err(e) => return internal(Some(e)),
        }
    }
    accepted()
}

impl ApiState {
    /// A signed callback's refusal: a signature that does not verify (401), or a body already
    /// taken (answered as the first was, and nothing done again). `None`: go on.
    fn signed_refusal(
        &self,
        provider: &str,
        key: Key<'_>,
        scheme: CallbackSignature,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response> {
        let h = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        };
        // What is counted once: the signed body (Vesicash's carries no id), or the message id.
        let no_key = || Err("no key for this provider's signature scheme".to_string());
        let (verified, once): (Result<(), String>, Vec<u8>) = match (scheme, key) {
            (
                CallbackSignature::RsaSha256 {
                    signature,
                    timestamp,
                    ..
                },
                Key::Public(k),
            ) => (
                rsa_sha256(k, (signature, timestamp), &h, body),
                [
                    b"signature ".as_slice(),
                    h(&[signature]).unwrap_or_default().as_bytes(),
                ]
                .concat(),
            ),
            (CallbackSignature::RsaSha256 { .. }, Key::Secret(_)) | (_, Key::Public(_)) => {
                (no_key(), body.to_vec())
            }
            (CallbackSignature::HmacHex(header), Key::Secret(secret)) => {
                let ok = h(&[header])
                    .is_some_and(|sig| crate::secret::hmac_sha256_hex_matches(secret, body, sig));
                let why = format!("{header} does not verify with the secret in webhook_secret_env");
                (if ok { Ok(()) } else { Err(why) }, body.to_vec())
            }
            (CallbackSignature::StandardWebhooks, Key::Secret(secret)) => {
                let id = h(&["svix-id", "webhook-id"]).unwrap_or_default();
                let verified = standard_webhooks(secret, &h, id, body);
                (
                    verified,
                    [b"message id ".as_slice(), id.as_bytes()].concat(),
                )
            }
        };
        if let Err(why) = verified {
            self.refused(provider, "signature");
            return Some(error(StatusCode::UNAUTHORIZED, &why, None).into_response());
        }
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&once).into();
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first(digest);
        if first {
            return None;
        }
        crate::metrics::callback_refused("replay");
        Some(accepted())
    }

    /// The session ids a callback's body names where the provider's kind keeps them. A body
    /// that is not JSON names nothing: taken like any other (the answer tells nothing), counted
    /// and logged for the operator, whose provider may be sending to the wrong route.
    fn ids_in_body(
        &self,
        provider: &str,
        spec: Option<&'static crate::provider::KindSpec>,
        body: &[u8],
    ) -> Vec<String> {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            self.refused(provider, "not_json");
            return Vec::new();
        };
        spec.map(|spec| spec.callback.id_pointers)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| match v.pointer(p)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Counts a refused callback, and logs at most one line per [`REFUSALS_EVERY`] with how
    /// many were refused since the last.
    fn refused(&self, provider: &str, reason: &'static str) {
        crate::metrics::callback_refused(reason);
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.1 += 1;
        if r.0.is_none_or(|at| at.elapsed() >= REFUSALS_EVERY) {
            tracing::warn!(
                provider = %crate::escape::shown(provider),
                reason,
                refused = r.1,
                "provider callbacks refused (this one's reason; the count since the last such line)"
            );
            *r = (Some(std::time::Instant::now()), 0);
        }
    }
}
