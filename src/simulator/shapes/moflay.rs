//! Moflay as seed 003 and docs.moflay.com show it.

use super::*;

pub(crate) struct Moflay;

impl Moflay {
    fn error(code: StatusCode, name: &str, message: &str) -> Response {
        json_response(
            code,
            json!({"error": {"status": code.as_u16(), "code": name, "message": message}}),
        )
    }
}

impl Shape for Moflay {
    fn path(&self) -> &'static str {
        "/v1/payments/{id}"
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        h("authorization").strip_prefix("Bearer ") == Some(key)
    }

    fn unauthorised(&self) -> Response {
        Self::error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Invalid or missing API key",
        )
    }

    fn not_found(&self) -> Response {
        Self::error(StatusCode::NOT_FOUND, "not_found", "Payment not found")
    }

    fn no_permission(&self) -> Response {
        // docs.moflay.com/api-reference/authentication, "Insufficient permissions".
        Self::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_access",
            "The API key does not have the necessary permissions to access this resource.",
        )
    }

    fn rate_limit_reset(&self) -> Option<Response> {
        let reset = chrono::Utc::now().timestamp() + 2;
        let mut r = Self::error(
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
        Some(r)
    }

    fn body(&self, v: &View) -> Response {
        let status = match v.state {
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
        let digits = iso_minor_digits(&v.ledger_currency);
        let minor = v
            .amount
            .parse::<rust_decimal::Decimal>()
            .map(|a| {
                (a * rust_decimal::Decimal::from(10u64.pow(digits)))
                    .trunc()
                    .to_string()
            })
            .unwrap_or_else(|_| "0".into());
        let paid = v.paid;
        json_response(
            StatusCode::OK,
            // The get-payment example's fields (docs.moflay.com/api-reference/payments/get-payment).
            json!({"id": v.id, "transactionId": format!("trxn_{}", v.id.len()),
                   "customerId": "cus_GqfKXLmg61LURZhB", "merchantRequestId": "29115-34620561-1",
                   "checkoutRequestId": "ws_CO_191220241030123456789", "status": status,
                   "statusDetail": "The service request is processed successfully.",
                   "failureReason": (status == "unknown").then_some("Missing or non-final Daraja signal"),
                   "amount": number(&minor), "currency": v.currency, "description": "Premium plan",
                   "accountReference": v.reference, "receiptNumber": paid.then_some(&v.txn),
                   "environment": "sandbox", "createdAt": "2024-12-19T10:25:00.000Z",
                   "updatedAt": "2024-12-19T10:32:00.000Z", "processedAt": "2024-12-19T10:32:00.000Z",
                   "completedAt": paid.then_some("2024-12-19T10:32:00.000Z"),
                   "failedAt": (status == "failed").then_some("2024-12-19T10:32:00.000Z"),
                   "unknownAt": (status == "unknown").then_some("2024-12-19T10:40:00.000Z")}),
        )
    }

    fn table(&self) -> &'static str {
        "api_key_env = \"{key_env}\""
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "KES",
            id: Some(|n| format!("pay_{n:06}")),
            // Moflay's `unknown` ("manual review"), its 422 invalid_access, its
            // X-RateLimit-Reset, and a currency it reports.
            extra: &[
                ("unpaid", Status::Review, 1),
                ("currency", Status::Review, 1),
                ("422-1.complete", Status::Completed, 1),
                ("429reset-1.complete", Status::Completed, 1),
            ],
        }
    }
}
