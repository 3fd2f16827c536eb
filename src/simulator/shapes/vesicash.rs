//! Vesicash as seed 004 and docs.vesicash.com show it.

use super::*;

pub(crate) struct Vesicash;

fn status_word(v: &View) -> &'static str {
    match v.state {
        SimState::Created | SimState::Processing | SimState::Unpaid => "pending",
        SimState::Failed => "failed",
        SimState::Cancelled => "cancelled",
        SimState::Expired => "expired",
        SimState::Unknown => "on_hold",
        _ => "success",
    }
}

impl Shape for Vesicash {
    fn path(&self) -> &'static str {
        "/v1/payment/{id}"
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        !h("public-key").is_empty() && h("secret-key") == key
    }

    fn unauthorised(&self) -> Response {
        plain_error(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    fn not_found(&self) -> Response {
        plain_error(StatusCode::NOT_FOUND, "Not found")
    }

    fn body(&self, v: &View) -> Response {
        let status = status_word(v);
        json_response(
            StatusCode::OK,
            // The get-payment-details example's shape
            // (docs.vesicash.com/api-documentation/payment/get-payment-details): `id` and
            // `reference` are "" there, and the amount a number in major units [assumed].
            json!({"status": "success", "code": 200, "message": "success", "data": {
                "id": "", "amount": number(&v.amount), "type": "payment", "method": "mobilemoney",
                "status": status, "currency": v.currency, "reference": "", "business_id": "",
                "created_at": "2024-11-06T10:14:31.888324Z", "environment": "test",
                "redirect_url": "http://www.google.com", "email": "customer@example.com",
                "customer_first_name": "", "customer_last_name": "", "phone_number": "",
            }}),
        )
    }

    /// A payment as "get payments for business" shows one
    /// (docs.vesicash.com/api-documentation/payment/get-payments-for-business): named by the
    /// `reference` init returned.
    fn list_item(&self, v: &View, created_at: &str) -> Option<serde_json::Value> {
        Some(
            json!({"id": format!("sim-{}", v.id.len()), "amount": number(&v.amount),
                    "environment": "test", "type": "payment", "method": "mobilemoney",
                    "status": status_word(v), "currency": v.currency, "reference": v.id,
                    "narration": "", "provider_transaction_id": "",
                    "customer_details": "00000000-0000-0000-0000-000000000000",
                    "business_id": "8f212284-3a4d-4c2d-ad27-d0e8703c89cf",
                    "created_at": created_at, "updated_at": created_at}),
        )
    }

    /// A payment event signed with `mor-signature`, the hex HMAC-SHA256 of the raw body keyed
    /// with the webhook secret [docs]; the event body is not published [not found]: the
    /// simulator's names the payment by `data.payment_reference`.
    fn callback(&self, v: &View, secret: &str) -> Option<(Vec<(&'static str, String)>, String)> {
        use hmac::{Hmac, Mac};
        let status = status_word(v);
        if status == "pending" {
            return None;
        }
        let body = json!({"event": format!("payment.{status}"), "data": {
            "payment_reference": v.id, "status": status, "amount": number(&v.amount),
            "currency": v.currency}})
        .to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(body.as_bytes());
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some((vec![("mor-signature", sig)], body))
    }

    fn table(&self) -> &'static str {
        "public_key_env = \"{public_env}\"\nsecret_key_env = \"{key_env}\""
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "GHS",
            id: Some(|n| format!("VS-{n:04}")),
            extra: &[("currency", Status::Review, 1)],
        }
    }
}
