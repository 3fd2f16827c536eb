//! Moflay as seed 003 and docs.moflay.com show it.

use super::*;

pub(crate) struct Moflay;

impl Moflay {
    /// A payment as the get-payment example shows one
    /// (docs.moflay.com/api-reference/payments/get-payment).
    fn payment(v: &View) -> serde_json::Value {
        let status = Self::status_word(v);
        let minor = Self::minor(v);
        let paid = v.paid;
        let transaction_id = v
            .transaction_id
            .map_or_else(|| format!("trxn_{}", v.id.len()), String::from);
        json!({"id": v.id, "transactionId": transaction_id,
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
               "unknownAt": (status == "unknown").then_some("2024-12-19T10:40:00.000Z")})
    }

    fn status_word(v: &View) -> &'static str {
        match v.state {
            SimState::Created => "initiating",
            SimState::Processing => "pending",
            SimState::Failed => "failed",
            SimState::Cancelled => "canceled",
            SimState::Expired => "expired",
            SimState::Unknown => "on_hold",
            SimState::Unpaid => "unknown",
            _ => "completed",
        }
    }

    /// Smallest currency unit: "amount: 1000 means KES 10.00" (docs.moflay.com). The
    /// simulator's own digits, not the adapter's.
    fn minor(v: &View) -> String {
        let digits = iso_minor_digits(&v.ledger_currency);
        v.amount
            .parse::<rust_decimal::Decimal>()
            .map(|a| {
                (a * rust_decimal::Decimal::from(10u64.pow(digits)))
                    .trunc()
                    .to_string()
            })
            .unwrap_or_else(|_| "0".into())
    }

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
        json_response(StatusCode::OK, Self::payment(v))
    }

    /// `payment.completed`, `payment.failed` or `payment.canceled` with the payment object,
    /// signed in the Standard Webhooks scheme with Moflay's `svix-` headers
    /// (docs.moflay.com/webhooks) [docs; the event body is not shown: the payment object is
    /// assumed as its `data`]. No webhook for `unknown` [docs], nor while pending.
    fn callback(&self, v: &View, secret: &str) -> Option<(Vec<(&'static str, String)>, String)> {
        let kind = match Self::status_word(v) {
            "completed" => "payment.completed",
            "failed" => "payment.failed",
            "canceled" => "payment.canceled",
            _ => return None,
        };
        let body = json!({"type": kind, "data": Self::payment(v)}).to_string();
        let key = crate::config::SigningKey::from_whsec(secret)?;
        let id = crate::ledger::event::new_id().replacen("evt_", "msg_", 1);
        let ts = chrono::Utc::now().timestamp();
        let sig = crate::outbox::sign::signature(&[key], &id, ts, body.as_bytes());
        Some((
            vec![
                ("svix-id", id),
                ("svix-timestamp", ts.to_string()),
                ("svix-signature", sig),
            ],
            body,
        ))
    }

    /// A transaction as the list-transactions example shows one: `id` is the `trxn_…` id, and
    /// there is no `accountReference` and no payment id
    /// (docs.moflay.com/api-reference/transactions/list-transactions).
    fn list_item(&self, v: &View, created_at: &str) -> Option<serde_json::Value> {
        let status = Self::status_word(v);
        let minor = Self::minor(v);
        let paid = v.paid;
        Some(
            json!({"id": v.transaction_id?, "customerId": "cus_MNO345PQR678STU",
                    "object": "transaction", "environment": "development", "type": "payment",
                    "amount": number(&minor), "description": "Premium plan", "currency": v.currency,
                    "status": status, "phoneNumber": "254712345678",
                    "receiptNumber": paid.then_some(&v.txn), "fee": 0, "netAmount": number(&minor),
                    "failureReason": null, "metadata": {}, "source": "api",
                    "processedAt": created_at, "createdAt": created_at,
                    "paidAt": paid.then_some(created_at),
                    "failedAt": (status == "failed").then_some(created_at)}),
        )
    }

    fn invalid_request(&self, message: &str) -> Response {
        Self::error(StatusCode::BAD_REQUEST, "validation_error", message)
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
