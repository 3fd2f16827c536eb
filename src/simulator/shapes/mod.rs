//! A session's state at one poll, and how each provider kind shows it: one file per kind
//! (its status path, credentials, bodies and error envelopes, its provider table and demo
//! values), reached by [`shape`], the simulator's one match over the kinds.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use std::collections::HashMap;

use super::*;
use crate::ledger::Status;

mod little;
mod moflay;
mod mopay;
mod mopay_ng;
mod vesicash;

pub use little::SIM_PUBLIC_KEY as SIM_LITTLE_PUBLIC_KEY;
#[cfg(test)]
pub(super) use mopay_ng::mopay_ng_signal;
pub use mopay_ng::{NG_STATUS_ENDPOINT, NG_STATUS_MAP};

/// The simulator's shape of a provider kind.
pub fn shape(kind: Kind) -> &'static dyn Shape {
    match kind {
        Kind::Mopay => &mopay::Mopay,
        Kind::Little => &little::Little,
        Kind::MopayNg => &mopay_ng::MopayNg,
        Kind::Moflay => &moflay::Moflay,
        Kind::Vesicash => &vesicash::Vesicash,
    }
}

/// What the demo does with a kind: the currency its sessions are in, how it names them, and
/// the behaviours only this kind can tell apart (with the state each must end in).
pub struct Demo {
    pub currency: &'static str,
    /// How the demo names its `n`th session. `None`: the demo's primary provider (MoPay), whose
    /// sessions are created through its create endpoint, which names them, and which runs
    /// every scenario of the demo.
    pub id: Option<fn(usize) -> String>,
    pub extra: &'static [(&'static str, Status, u32)],
}

/// A session as one poll shows it, before a kind's shape renders it.
pub struct View<'a> {
    pub id: &'a str,
    pub state: SimState,
    pub amount: String,
    /// The currency as reported (another one for `currency` mismatches).
    pub currency: String,
    /// The currency the session was registered in.
    pub ledger_currency: String,
    pub reference: String,
    pub paid: bool,
    pub txn: String,
    /// The provider's second id, when the payment was registered with one.
    pub transaction_id: Option<&'a str>,
}

/// Everything the simulator knows of one provider kind.
pub trait Shape: Sync {
    /// The status route (axum syntax; `{id}` is the session id).
    fn path(&self) -> &'static str;
    /// The session id a status request names.
    fn id(
        &self,
        path: Option<String>,
        _query: &HashMap<String, String>,
    ) -> Result<String, Box<Response>> {
        Ok(path.unwrap_or_default())
    }
    /// Whether the request asks to be held until the state changes.
    fn long_poll(&self, _query: &HashMap<String, String>) -> bool {
        false
    }
    /// Whether the request carries this kind's credentials for `key` (`h` reads a header).
    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool;
    fn unauthorised(&self) -> Response;
    fn not_found(&self) -> Response;
    /// A 2xx answer that is an error.
    fn false_success(&self) -> Response {
        json_response(
            StatusCode::OK,
            json!({"success": false, "error": "Temporary error"}),
        )
    }
    fn no_permission(&self) -> Response {
        json_response(
            StatusCode::FORBIDDEN,
            json!({"success": false, "error": "Forbidden"}),
        )
    }
    /// A 429 with the kind's own reset headers, where it documents them.
    fn rate_limit_reset(&self) -> Option<Response> {
        None
    }
    /// The status body for the session as `v` shows it.
    fn body(&self, v: &View) -> Response;
    /// One payment as the kind's list of payments shows it (kinds with a list).
    fn list_item(&self, _v: &View, _created_at: &str) -> Option<serde_json::Value> {
        None
    }
    /// The signed callback this kind sends when a payment reaches `v`'s state: its headers
    /// and body, in the provider's documented scheme (`secret`: the shared webhook secret of
    /// kinds that sign with one). `None`: the kind documents none, or this state sends none.
    fn callback(&self, _v: &View, _secret: &str) -> Option<(Vec<(&'static str, String)>, String)> {
        None
    }
    /// A 400 for a request the kind's validation refuses.
    fn invalid_request(&self, message: &str) -> Response {
        plain_error(StatusCode::BAD_REQUEST, message)
    }
    /// The settings of a config table for this kind (beside `kind`, `base_url` and
    /// `rate_limit`), with `{key_env}`, `{public_env}` and `{status_map}` to fill in.
    fn table(&self) -> &'static str;
    fn demo(&self) -> Demo;
}

/// `{"status": "error", "message": …}`, the error body of Little and Vesicash.
pub(super) fn plain_error(code: StatusCode, message: &str) -> Response {
    json_response(code, json!({"status": "error", "message": message}))
}

/// A session's state at one poll, before it is rendered in a provider's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimState {
    Created,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Expired,
    /// A word outside every table.
    Unknown,
    /// Paid-looking but not paid (MoPay: COMPLETED + transactionStatus failed; Moflay: `unknown`).
    Unpaid,
    AmountMismatch,
    ReferenceMismatch,
    Underpaid,
    CurrencyMismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Fault(Fault),
    NotFound,
    State(SimState),
}

pub(super) fn outcome(s: &SimSession, poll: u32) -> Outcome {
    let b = &s.behaviour;
    let faults = b.fault.map_or(0, |(_, k)| k);
    if let Some((fault, _)) = b.fault.filter(|_| poll < faults) {
        return Outcome::Fault(fault);
    }
    let after = poll - faults;
    if b.last == Final::NotFound {
        return Outcome::NotFound;
    }
    let not_yet = b.after_ms > 0 && s.registered.elapsed() < Duration::from_millis(b.after_ms);
    if after < b.pending_polls || b.last == Final::Pending || not_yet {
        return Outcome::State(if after == 0 {
            SimState::Created
        } else {
            SimState::Processing
        });
    }
    Outcome::State(match b.last {
        Final::Complete => SimState::Completed,
        Final::Fail => SimState::Failed,
        Final::Cancel => SimState::Cancelled,
        Final::Expire => SimState::Expired,
        Final::AmountMismatch => SimState::AmountMismatch,
        Final::ReferenceMismatch => SimState::ReferenceMismatch,
        Final::Unknown => SimState::Unknown,
        Final::Unpaid => SimState::Unpaid,
        Final::LatePayment if after == b.pending_polls => SimState::Expired,
        Final::LatePayment => SimState::Completed,
        Final::Underpaid => SimState::Underpaid,
        Final::CurrencyMismatch => SimState::CurrencyMismatch,
        Final::Pending | Final::NotFound => SimState::Processing,
    })
}

/// A JSON number from decimal text, kept exactly (serde_json's `arbitrary_precision`).
pub(super) fn number(text: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(|v| v.is_number())
        .unwrap_or(json!(0))
}

pub(super) fn render(
    kind: Kind,
    id: &str,
    s: &SimSession,
    poll: u32,
    outcome: Outcome,
) -> Response {
    let shape = shape(kind);
    let state = match outcome {
        Outcome::Fault(f) => return render_fault(shape, f),
        Outcome::NotFound => return shape.not_found(),
        Outcome::State(st) => st,
    };
    shape.body(&view(id, s, poll, state))
}

/// One listed payment as its next status answer would show it (no poll counted): faults show
/// as not yet paid; a payment the provider would not find is not listed.
pub(super) fn list_item(
    kind: Kind,
    id: &str,
    transaction_id: &str,
    s: &SimSession,
) -> Option<serde_json::Value> {
    let state = match outcome(s, s.polls) {
        Outcome::NotFound => return None,
        Outcome::Fault(_) => SimState::Processing,
        Outcome::State(st) => st,
    };
    let v = View {
        transaction_id: Some(transaction_id),
        ..view(id, s, s.polls, state)
    };
    let created = s.created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    shape(kind).list_item(&v, &created)
}

/// The signed callback `kind` sends for session `id` as it stands now (no poll counted):
/// headers and body, or `None` while it is pending, faulty, or the kind sends none.
pub(super) fn callback_for(
    kind: Kind,
    id: &str,
    s: &SimSession,
    secret: &str,
) -> Option<(Vec<(&'static str, String)>, String)> {
    let Outcome::State(state) = outcome(s, s.polls) else {
        return None;
    };
    shape(kind).callback(&view(id, s, s.polls, state), secret)
}

/// A list cursor: base64 of `{"id": …}`, as the documented example's
/// (`eyJpZCI6IjEyMyJ9` is `{"id":"123"}`).
pub(super) fn cursor_of(transaction_id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(json!({"id": transaction_id}).to_string())
}

/// The transaction id a cursor names.
pub(super) fn cursor_position(cursor: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("id")?.as_str().map(String::from)
}

/// A session at one poll in `state`, before a kind renders it.
fn view<'a>(id: &'a str, s: &'a SimSession, poll: u32, state: SimState) -> View<'a> {
    let amount = match state {
        SimState::AmountMismatch => "1.00".to_string(),
        SimState::Underpaid => underpaid(&s.amount),
        _ => s.amount.clone(),
    };
    let currency = match state {
        SimState::CurrencyMismatch if s.currency.eq_ignore_ascii_case("TZS") => "KES".into(),
        SimState::CurrencyMismatch => "TZS".into(),
        _ => s.currency.clone(),
    };
    let reference = if state == SimState::ReferenceMismatch {
        format!("{}X", s.reference)
    } else {
        s.reference.clone()
    };
    let paid = matches!(
        state,
        SimState::Completed
            | SimState::AmountMismatch
            | SimState::ReferenceMismatch
            | SimState::Underpaid
            | SimState::CurrencyMismatch
    );
    View {
        id,
        state,
        amount,
        currency,
        ledger_currency: s.currency.clone(),
        reference,
        paid,
        txn: format!("TXN{}", id.len() * 7919 + poll as usize),
        transaction_id: s.transaction_id.as_deref(),
    }
}

/// The ledger's amount as an underpaying provider reports it: floored to whole units, or one
/// unit less when it is whole already.
pub(super) fn underpaid(amount: &str) -> String {
    match amount.parse::<rust_decimal::Decimal>() {
        Ok(a) if a.fract().is_zero() => (a - rust_decimal::Decimal::ONE)
            .max(rust_decimal::Decimal::ZERO)
            .to_string(),
        Ok(a) => a.floor().to_string(),
        Err(_) => "0".into(),
    }
}

/// ISO 4217 minor-unit digits of the currencies the simulator is used with, written here
/// independently of the adapters' table.
pub(super) fn iso_minor_digits(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "UGX" | "RWF" | "JPY" => 0,
        "KWD" | "BHD" => 3,
        _ => 2,
    }
}

pub(super) fn render_fault(shape: &dyn Shape, fault: Fault) -> Response {
    let rate_limited = |retry_after: String| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            "Too Many Requests",
        )
            .into_response()
    };
    let raw = |content_type: &'static str, body: &'static str| {
        (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    match fault {
        Fault::Status5xx => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "Service Unavailable"}),
        ),
        Fault::RateLimit => rate_limited("1".into()),
        Fault::RateLimitLong => rate_limited("120".into()),
        Fault::RateLimitDate => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            rate_limited(at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        }
        Fault::Html => raw(
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
        Fault::Truncated => raw(
            "application/json",
            r#"{"success":true,"session":{"sessionId":"#,
        ),
        Fault::Oversized => raw("application/json", OVERSIZED.as_str()),
        Fault::FalseSuccess => shape.false_success(),
        Fault::NoPermission => shape.no_permission(),
        Fault::RateLimitReset => shape
            .rate_limit_reset()
            .unwrap_or_else(|| rate_limited("2".into())),
        Fault::NotFound => shape.not_found(),
    }
}
