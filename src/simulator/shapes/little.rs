//! Little as seed 001 shows it.

use super::*;

pub(crate) struct Little;

impl Shape for Little {
    fn path(&self) -> &'static str {
        "/api/payments-v2/{id}"
    }

    fn long_poll(&self, query: &HashMap<String, String>) -> bool {
        query.get("longPoll").is_some_and(|v| v == "true")
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        h("x-api-key") == key
    }

    fn unauthorised(&self) -> Response {
        plain_error(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    fn not_found(&self) -> Response {
        plain_error(StatusCode::NOT_FOUND, "Not found")
    }

    fn body(&self, v: &View) -> Response {
        let status = match v.state {
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
        let intent = format!("intent-{}", v.id.len());
        json_response(
            StatusCode::OK,
            json!({"date": "2024-05-13T08:26:18.719Z", "data": {
                "reference": intent, "status": status,
                "payload": {"billingAddress": {"firstName": "", "lastName": "", "address1": "",
                    "locality": "", "administrativeArea": "", "postalCode": "", "country": "",
                    "email": "", "phoneNumber": ""}},
                "amount": number(&v.amount), "payment": {"provider": "MPESA", "details": null},
                "key": "", "attempts": [{"reference": intent, "provider": "MPESA", "status": status}],
            }}),
        )
    }

    fn table(&self) -> &'static str {
        "api_key_env = \"{key_env}\""
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "KES",
            id: Some(|n| format!("LP-{n:04}")),
            extra: &[],
        }
    }
}
