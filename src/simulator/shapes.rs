//! A session's state at one poll, and how each provider kind shows it: the documents' bodies
//! with the session's values, and each kind's error envelopes for the faults.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::*;

/// A session's state at one poll, before it is rendered in a provider's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SimState {
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

pub(super) fn moflay_error(code: StatusCode, name: &str, message: &str) -> Response {
    json_response(
        code,
        json!({"error": {"status": code.as_u16(), "code": name, "message": message}}),
    )
}

pub(super) fn ng_envelope_error(http: StatusCode, code: u16, details: &str) -> Response {
    json_response(
        http,
        json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "FAILED"},
               "ERRORS": {"CODE": code, "DETAILS": details}}),
    )
}

pub(super) fn render(
    kind: Kind,
    id: &str,
    s: &SimSession,
    poll: u32,
    outcome: Outcome,
) -> Response {
    let state = match outcome {
        Outcome::Fault(f) => return render_fault(kind, f),
        Outcome::NotFound => {
            return match kind {
                Kind::Moflay => {
                    moflay_error(StatusCode::NOT_FOUND, "not_found", "Payment not found")
                }
                Kind::MopayNg => {
                    ng_envelope_error(StatusCode::NOT_FOUND, 404, "Transaction not found")
                }
                Kind::Mopay => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"success": false, "error": "Session not found"}),
                ),
                Kind::Little | Kind::Vesicash => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"status": "error", "message": "Not found"}),
                ),
            };
        }
        Outcome::State(st) => st,
    };
    let amount = match state {
        SimState::AmountMismatch => "1.00".to_string(),
        SimState::Underpaid => underpaid(&s.amount),
        _ => s.amount.clone(),
    };
    let currency = if state == SimState::CurrencyMismatch {
        if s.currency.eq_ignore_ascii_case("TZS") {
            "KES"
        } else {
            "TZS"
        }
        .to_string()
    } else {
        s.currency.clone()
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
    let txn = format!("TXN{}", id.len() * 7919 + poll as usize);
    match kind {
        Kind::Mopay => {
            let (status, tx_status) = match state {
                SimState::Created => ("CREATED", "pending"),
                SimState::Processing => ("PROCESSING", "pending"),
                SimState::Failed => ("FAILED", "failed"),
                SimState::Cancelled => ("CANCELLED", "cancelled"),
                SimState::Expired => ("EXPIRED", "expired"),
                SimState::Unknown => ("ON_HOLD", "pending"),
                SimState::Unpaid => ("COMPLETED", "failed"),
                _ => ("COMPLETED", "success"),
            };
            json_response(
                StatusCode::OK,
                json!({"success": true, "session": {
                    "id": format!("sim-{}", id.len()), "sessionId": id, "amount": amount, "reference": reference,
                    "transactionStatus": tx_status, "redirectUrl": "https://example.com/payment-complete",
                    "status": status, "selectedPaymentMethod": if paid { "mpesa" } else { "none" },
                    "transactionId": paid.then_some(&txn), "createdAt": "2025-12-04T14:00:00Z",
                    "completedAt": paid.then_some("2025-12-04T14:05:00Z"),
                }}),
            )
        }
        Kind::Little => {
            let status = match state {
                SimState::Created | SimState::Processing | SimState::Unpaid => "PENDING",
                SimState::Failed => "FAILED",
                SimState::Cancelled => "CANCELLED",
                SimState::Expired => "EXPIRED",
                SimState::Unknown => "ON_HOLD",
                _ => "COMPLETED",
            };
            // Seed 001's shape: the amount in major units as a JSON number, exactly the ledger's
            // (nothing is rounded); `key` is "" as in the seed's example, so the merchant
            // reference is absent; no currency in the status body.
            let intent = format!("intent-{}", id.len());
            json_response(
                StatusCode::OK,
                json!({"date": "2024-05-13T08:26:18.719Z", "data": {
                    "reference": intent, "status": status,
                    "payload": {"billingAddress": {"firstName": "", "lastName": "", "address1": "",
                        "locality": "", "administrativeArea": "", "postalCode": "", "country": "",
                        "email": "", "phoneNumber": ""}},
                    "amount": number(&amount), "payment": {"provider": "MPESA", "details": null},
                    "key": "", "attempts": [{"reference": intent, "provider": "MPESA", "status": status}],
                }}),
            )
        }
        Kind::Moflay => {
            let status = match state {
                SimState::Created => "initiating",
                SimState::Processing => "pending",
                SimState::Failed => "failed",
                SimState::Cancelled => "canceled",
                SimState::Expired => "expired",
                SimState::Unknown => "on_hold",
                SimState::Unpaid => "unknown",
                _ => "completed",
            };
            // Smallest currency unit: "amount: 1000 means KES 10.00" (docs.moflay.com). The
            // simulator's own digits, not the adapter's.
            let digits = iso_minor_digits(&s.currency);
            let minor = amount
                .parse::<rust_decimal::Decimal>()
                .map(|a| {
                    (a * rust_decimal::Decimal::from(10u64.pow(digits)))
                        .trunc()
                        .to_string()
                })
                .unwrap_or_else(|_| "0".into());
            json_response(
                StatusCode::OK,
                // The get-payment example's fields (docs.moflay.com/api-reference/payments/get-payment).
                json!({"id": id, "transactionId": format!("trxn_{}", id.len()),
                       "customerId": "cus_GqfKXLmg61LURZhB", "merchantRequestId": "29115-34620561-1",
                       "checkoutRequestId": "ws_CO_191220241030123456789", "status": status,
                       "statusDetail": "The service request is processed successfully.",
                       "failureReason": (status == "unknown").then_some("Missing or non-final Daraja signal"),
                       "amount": number(&minor), "currency": currency, "description": "Premium plan",
                       "accountReference": reference, "receiptNumber": paid.then_some(&txn),
                       "environment": "sandbox", "createdAt": "2024-12-19T10:25:00.000Z",
                       "updatedAt": "2024-12-19T10:32:00.000Z", "processedAt": "2024-12-19T10:32:00.000Z",
                       "completedAt": paid.then_some("2024-12-19T10:32:00.000Z"),
                       "failedAt": (status == "failed").then_some("2024-12-19T10:32:00.000Z"),
                       "unknownAt": (status == "unknown").then_some("2024-12-19T10:40:00.000Z")}),
            )
        }
        Kind::Vesicash => {
            let status = match state {
                SimState::Created | SimState::Processing | SimState::Unpaid => "pending",
                SimState::Failed => "failed",
                SimState::Cancelled => "cancelled",
                SimState::Expired => "expired",
                SimState::Unknown => "on_hold",
                _ => "success",
            };
            json_response(
                StatusCode::OK,
                // The get-payment-details example's shape
                // (docs.vesicash.com/api-documentation/payment/get-payment-details): `id` and
                // `reference` are "" there, and the amount a number in major units [assumed].
                json!({"status": "success", "code": 200, "message": "success", "data": {
                    "id": "", "amount": number(&amount), "type": "payment", "method": "mobilemoney",
                    "status": status, "currency": currency, "reference": "", "business_id": "",
                    "created_at": "2024-11-06T10:14:31.888324Z", "environment": "test",
                    "redirect_url": "http://www.google.com", "email": "customer@example.com",
                    "customer_first_name": "", "customer_last_name": "", "phone_number": "",
                }}),
            )
        }
        Kind::MopayNg => {
            let status = match state {
                SimState::Created => "PENDING",
                SimState::Processing | SimState::Unpaid => "PROCESSING",
                SimState::Failed => "FAILED",
                SimState::Cancelled => "CANCELLED",
                SimState::Expired => "EXPIRED",
                SimState::Unknown => "ON_HOLD",
                _ => "SUCCESSFUL",
            };
            json_response(
                StatusCode::OK,
                json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "OK"}, "DATA": {
                    "reference": id, "status": status, "amount": amount, "currency": currency,
                    "merchant_reference": reference, "transaction_id": paid.then_some(&txn),
                }}),
            )
        }
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

pub(super) fn render_fault(kind: Kind, fault: Fault) -> Response {
    let rate_limited = |retry_after: String| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            "Too Many Requests",
        )
            .into_response()
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
        Fault::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::Truncated => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":true,"session":{"sessionId":"#,
        )
            .into_response(),
        Fault::Oversized => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            OVERSIZED.as_str(),
        )
            .into_response(),
        Fault::FalseSuccess => match kind {
            Kind::MopayNg => ng_envelope_error(StatusCode::OK, 503, "Temporarily unavailable"),
            _ => json_response(
                StatusCode::OK,
                json!({"success": false, "error": "Temporary error"}),
            ),
        },
        Fault::NoPermission => match kind {
            // docs.moflay.com/api-reference/authentication, "Insufficient permissions".
            Kind::Moflay => moflay_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_access",
                "The API key does not have the necessary permissions to access this resource.",
            ),
            Kind::MopayNg => ng_envelope_error(StatusCode::FORBIDDEN, 403, "Forbidden"),
            _ => json_response(
                StatusCode::FORBIDDEN,
                json!({"success": false, "error": "Forbidden"}),
            ),
        },
        Fault::RateLimitReset => match kind {
            Kind::Moflay => {
                let reset = chrono::Utc::now().timestamp() + 2;
                let mut r = moflay_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    "You have exceeded your request limit. Please try again later.",
                );
                let h = r.headers_mut();
                h.insert("x-ratelimit-limit", header::HeaderValue::from_static("100"));
                h.insert(
                    "x-ratelimit-remaining",
                    header::HeaderValue::from_static("0"),
                );
                if let Ok(v) = header::HeaderValue::from_str(&reset.to_string()) {
                    h.insert("x-ratelimit-reset", v);
                }
                r
            }
            _ => rate_limited("2".into()),
        },
        Fault::NotFound => match kind {
            Kind::Moflay => moflay_error(StatusCode::NOT_FOUND, "not_found", "Payment not found"),
            Kind::MopayNg => ng_envelope_error(StatusCode::NOT_FOUND, 404, "Transaction not found"),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "Session not found"}),
            ),
        },
    }
}
