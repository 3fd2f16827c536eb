//! MoPay Lesotho as seed 000 shows it.

use super::*;

pub(crate) struct Mopay;

impl Shape for Mopay {
    fn path(&self) -> &'static str {
        "/api/external/session/v1/{id}"
    }

    fn authorised(&self, key: &str, h: &dyn Fn(&str) -> String) -> bool {
        h("authorization").strip_prefix("Bearer ") == Some(key)
    }

    fn unauthorised(&self) -> Response {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"success": false, "error": "Unauthorized"}),
        )
    }

    fn not_found(&self) -> Response {
        json_response(
            StatusCode::NOT_FOUND,
            json!({"success": false, "error": "Session not found"}),
        )
    }

    fn body(&self, v: &View) -> Response {
        let (status, tx_status) = match v.state {
            SimState::Created => ("CREATED", "pending"),
            SimState::Processing => ("PROCESSING", "pending"),
            SimState::Failed => ("FAILED", "failed"),
            SimState::Cancelled => ("CANCELLED", "cancelled"),
            SimState::Expired => ("EXPIRED", "expired"),
            SimState::Unknown => ("ON_HOLD", "pending"),
            SimState::Unpaid => ("COMPLETED", "failed"),
            _ => ("COMPLETED", "success"),
        };
        let paid = v.paid;
        json_response(
            StatusCode::OK,
            json!({"success": true, "session": {
                "id": format!("sim-{}", v.id.len()), "sessionId": v.id, "amount": v.amount,
                "reference": v.reference, "transactionStatus": tx_status,
                "redirectUrl": "https://example.com/payment-complete", "status": status,
                "selectedPaymentMethod": if paid { "mpesa" } else { "none" },
                "transactionId": paid.then_some(&v.txn), "createdAt": "2025-12-04T14:00:00Z",
                "completedAt": paid.then_some("2025-12-04T14:05:00Z"),
            }}),
        )
    }

    fn table(&self) -> &'static str {
        "api_key_env = \"{key_env}\""
    }

    fn demo(&self) -> Demo {
        Demo {
            currency: "LSL",
            // Created through its create endpoint, which names the session.
            id: None,
            extra: &[],
        }
    }
}
