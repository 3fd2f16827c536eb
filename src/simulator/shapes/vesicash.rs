//! Vesicash as seed 004 and docs.vesicash.com show it.

use super::*;

pub(crate) struct Vesicash;

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
        let status = match v.state {
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
                "id": "", "amount": number(&v.amount), "type": "payment", "method": "mobilemoney",
                "status": status, "currency": v.currency, "reference": "", "business_id": "",
                "created_at": "2024-11-06T10:14:31.888324Z", "environment": "test",
                "redirect_url": "http://www.google.com", "email": "customer@example.com",
                "customer_first_name": "", "customer_last_name": "", "phone_number": "",
            }}),
        )
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
