//! The API's own types (a session and its status as the API shows them, the request and
//! error bodies) and its OpenAPI document.

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::*;
use crate::config::Config;
use crate::ledger::{MAX_REFERENCE_BYTES, MAX_SESSION_ID_BYTES, Session};

/// A session as the API shows it: the ledger's row without what is internal (its row id, the
/// lease's owner). Times are RFC 3339 text in UTC, amounts decimal text in major units. Its own
/// type, so a column the ledger adds is not API until it is added here.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub(super) struct SessionView {
    provider: String,
    session_id: String,
    reference: Option<String>,
    /// Decimal text in major units, as enqueued.
    amount: Option<String>,
    currency: Option<String>,
    status: StatusView,
    created_at: String,
    next_check_at: String,
    checks: i64,
    answered_checks: i64,
    not_found_count: i64,
    last_checked_at: Option<String>,
    last_error: Option<String>,
    lease_until: Option<String>,
    provider_status: Option<String>,
    transaction_id: Option<String>,
    payment_method: Option<String>,
    provider_completed_at: Option<String>,
    resolved_at: Option<String>,
    /// When an EXPIRED session is asked once more (a late payment shows up as an anomaly).
    late_check_at: Option<String>,
    /// The provider's second id for the payment (Moflay: the `trxn_…` transaction id), as
    /// written or as the first answer that carried it gave it.
    provider_ref: Option<String>,
}

/// A payment a provider lists as paid that no session holds (docs/operations.md "Unmatched
/// payments"). Times are RFC 3339 text in UTC; amounts decimal text in major units.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = UnmatchedPayment)]
pub(super) struct UnmatchedView {
    id: i64,
    provider: String,
    /// The id the provider's list names it by (Moflay: `trxn_…`).
    payment_id: String,
    /// Its other id, from one status lookup (Moflay: `pay_…`).
    other_id: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    provider_status: String,
    receipt: Option<String>,
    provider_created_at: Option<String>,
    first_seen_at: String,
    last_seen_at: String,
    /// When `payment.unmatched` was written; absent while within `unmatched_after`.
    reported_at: Option<String>,
    /// The session that holds it now, once matched.
    matched_session_id: Option<String>,
    matched_at: Option<String>,
    dismissed_at: Option<String>,
    dismissed_by: Option<String>,
    dismiss_reason: Option<String>,
}

impl From<crate::ledger::Unmatched> for UnmatchedView {
    fn from(u: crate::ledger::Unmatched) -> Self {
        Self {
            id: u.id,
            provider: u.provider,
            payment_id: u.payment_id,
            other_id: u.other_id,
            amount: u.amount,
            currency: u.currency,
            provider_status: u.provider_status,
            receipt: u.receipt,
            provider_created_at: u.provider_created_at,
            first_seen_at: u.first_seen_at,
            last_seen_at: u.last_seen_at,
            reported_at: u.reported_at,
            matched_session_id: u.matched_session,
            matched_at: u.matched_at,
            dismissed_at: u.dismissed_at,
            dismissed_by: u.dismissed_by,
            dismiss_reason: u.dismiss_reason,
        }
    }
}

/// A session's state (README "The state machine").
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Status)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum StatusView {
    Pending,
    Completed,
    Failed,
    Cancelled,
    Expired,
    Review,
}

impl From<crate::ledger::Status> for StatusView {
    fn from(s: crate::ledger::Status) -> Self {
        use crate::ledger::Status as S;
        match s {
            S::Pending => StatusView::Pending,
            S::Completed => StatusView::Completed,
            S::Failed => StatusView::Failed,
            S::Cancelled => StatusView::Cancelled,
            S::Expired => StatusView::Expired,
            S::Review => StatusView::Review,
        }
    }
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        SessionView {
            provider: s.provider.clone(),
            session_id: s.session_id.clone(),
            reference: s.reference.clone(),
            amount: s.amount.map(|a| a.to_string()),
            currency: s.currency.clone(),
            status: s.status.into(),
            created_at: crate::clock::format(s.created_at),
            next_check_at: crate::clock::format(s.next_check_at),
            checks: s.checks,
            answered_checks: s.answered_checks,
            not_found_count: s.not_found_count,
            last_checked_at: crate::clock::format_opt(s.last_checked_at),
            last_error: s.last_error.clone(),
            lease_until: crate::clock::format_opt(s.lease_until),
            provider_status: s.provider_status.clone(),
            transaction_id: s.transaction_id.clone(),
            payment_method: s.payment_method.clone(),
            provider_completed_at: s.provider_completed_at.clone(),
            resolved_at: crate::clock::format_opt(s.resolved_at),
            late_check_at: crate::clock::format_opt(s.late_check_at),
            provider_ref: s.provider_ref.clone(),
        }
    }
}

/// The body of every 4xx/5xx answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used: ApiError writes the body
pub(super) struct ErrorBody {
    /// What was wrong, in words.
    error: String,
    /// The request field at fault, when one is.
    field: Option<String>,
}

/// The body of `POST /v1/sessions`: a session whose outcome payrecon should find out. Every
/// value is a JSON string (an amount that went through a JSON number may have been a float);
/// an empty string is an absent field.
// openapi_document adds each field's rules.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"provider": "mopay", "session_id": "MOP_abc123_ORDER12345",
    "reference": "ORDER12345", "amount": "100.00", "currency": "LSL"}))]
#[allow(dead_code)] // only its schema is used: new_session reads the body
pub(super) struct SessionRequest {
    /// A provider table of the daemon's config.
    provider: String,
    /// The provider's id for the session: 1 to 256 bytes, no control characters, no leading
    /// or trailing whitespace.
    session_id: String,
    /// The merchant's own reference, compared with the provider's: at most 256 bytes, no
    /// control characters, no leading or trailing whitespace.
    reference: Option<String>,
    /// The expected amount in major units, such as "100.00"; compared exactly.
    amount: Option<String>,
    /// The currency code, such as "LSL".
    currency: Option<String>,
    /// When the session was created at the provider (RFC 3339); now when absent.
    created_at: Option<String>,
    /// The provider's second id for the payment, when known (Moflay: the `trxn_…` transaction
    /// id beside the `pay_…` session id): an answer naming another is never acted on. At most
    /// 256 bytes, no control characters, no leading or trailing whitespace.
    provider_ref: Option<String>,
}

/// The path of one session.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its parameters are used: session_path reads the path
pub(super) struct SessionKey {
    /// The session's provider table
    provider: String,
    /// The provider's id for the session
    session_id: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payrecon",
        description = "Enqueue a payment session, read it, and verify it with its provider now."
    ),
    paths(
        create,
        read,
        verify,
        hint,
        unmatched,
        super::callbacks::callback,
        openapi
    ),
    components(schemas(SessionView, StatusView, SessionRequest, ErrorBody, UnmatchedView))
)]
struct ApiDoc;

/// The API's OpenAPI document for this daemon, as JSON: what utoipa derives from the handlers
/// and types, with the session request's fields held to the rules `NewSession::from_input`
/// applies (an empty string is an absent field, as in a CSV cell), `provider` one of the
/// configured providers, and the bearer scheme required when a token is configured.
pub fn openapi_document(cfg: &Config) -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    // No control character, no leading or trailing whitespace (Rust's `trim`, spelled out:
    // a regex `\s` differs between engines). The limits are in bytes; a schema counts
    // characters, so a long non-ASCII value may still be refused with a 422.
    const EDGE: &str =
        r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    const INNER: &str = r"[^\u0000-\u001f\u007f-\u009f]";
    let plain = format!("{EDGE}({INNER}*{EDGE})?");
    let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    let rules = [
        ("provider", json!({"enum": providers})),
        (
            "session_id",
            json!({"minLength": 1, "maxLength": MAX_SESSION_ID_BYTES,
                   "pattern": format!("^{plain}$"), "not": {"enum": [".", ".."]}}),
        ),
        (
            "reference",
            json!({"maxLength": MAX_REFERENCE_BYTES, "pattern": format!("^({plain})?$")}),
        ),
        (
            "provider_ref",
            json!({"maxLength": MAX_REFERENCE_BYTES, "pattern": format!("^({plain})?$")}),
        ),
        (
            "amount",
            json!({"maxLength": 40, "pattern": r"^([0-9]+(\.[0-9]+)?)?$"}),
        ),
        ("currency", json!({"pattern": "^[A-Za-z]{0,8}$"})),
        (
            "created_at",
            json!({"type": null, "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "maxLength": 0},
                {"type": "null"}
            ]}),
        ),
    ];
    let request = &mut doc["components"]["schemas"]["SessionRequest"];
    request["additionalProperties"] = json!(false);
    if let Some(first) = providers.first() {
        request["example"]["provider"] = json!(first);
    }
    for (field, rule) in rules {
        if let (Some(schema), Value::Object(rule)) =
            (request["properties"][field].as_object_mut(), rule)
        {
            for (k, v) in rule {
                match v {
                    Value::Null => schema.remove(&k),
                    v => schema.insert(k, v),
                };
            }
        }
    }
    // A callback naming its session in the query needs no body: the body is optional.
    if let Some(body) =
        doc["paths"]["/v1/callbacks/{provider}"]["post"]["requestBody"].as_object_mut()
    {
        body.insert("required".into(), json!(false));
    }
    if cfg.api.as_ref().is_some_and(|a| a.token.is_some()) {
        doc["components"]["securitySchemes"] =
            json!({"bearer": {"type": "http", "scheme": "bearer"}});
        doc["security"] = json!([{"bearer": []}]);
    }
    doc
}
