//! Events: the JSON shape of DESIGN.md "Events" (pure), and the log sink that writes one
//! structured line per event. Delivery to a webhook is the outbox's (a later issue); the ledger
//! writes the event row in the same transaction as its transition.

use serde_json::{Value, json};

use crate::ledger::{Anomaly, Facts, Session, Status};

/// The event type of a provider answer that contradicts a final state.
pub const ANOMALY: &str = "session.anomaly";

/// A new event id: `evt_` and a ULID, so ids sort by creation time. Stable across redeliveries
/// because it is written once, with the event row.
pub fn new_id() -> String {
    format!("evt_{}", ulid::Ulid::new())
}

/// The inputs of one transition's event.
pub struct TransitionEvent<'a> {
    pub id: &'a str,
    pub created_at: &'a str,
    /// The session after the update (its `checks` already counted).
    pub session: &'a Session,
    pub from: Status,
    pub to: Status,
    pub reason: Option<&'a str>,
    pub facts: &'a Facts,
    pub compared: &'a [&'static str],
}

/// The event JSON for a transition.
pub fn transition_payload(e: &TransitionEvent<'_>) -> Value {
    let s = e.session;
    let mut data = json!({
        "provider": s.provider,
        "session_id": s.session_id,
        "reference": s.reference,
        "amount": s.amount,
        "currency": s.currency,
        "from": e.from.as_str(),
        "to": e.to.as_str(),
        "reason": e.reason,
        "provider_status": e.facts.provider_status,
        "transaction_id": e.facts.transaction_id,
        "payment_method": e.facts.payment_method,
        "provider_completed_at": e.facts.provider_completed_at,
        "checks": s.checks,
    });
    if !e.compared.is_empty() {
        data["compared"] = json!(e.compared);
    }
    json!({
        "id": e.id,
        "type": e.to.event_type(),
        "created_at": e.created_at,
        "data": data,
    })
}

/// The event JSON for an anomaly: the recorded state and what the provider now says, both.
pub fn anomaly_payload(id: &str, created_at: &str, s: &Session, a: &Anomaly) -> Value {
    json!({
        "id": id,
        "type": ANOMALY,
        "created_at": created_at,
        "data": {
            "provider": s.provider,
            "session_id": s.session_id,
            "reference": s.reference,
            "amount": s.amount,
            "currency": s.currency,
            "status": s.status,
            "provider_says": a.provider_says.as_str(),
            "reason": a.reason,
            "provider_status": a.facts.provider_status,
            "provider_amount": a.facts.amount,
            "provider_reference": a.facts.reference,
            "transaction_id": a.facts.transaction_id,
            "payment_method": a.facts.payment_method,
            "provider_completed_at": a.facts.provider_completed_at,
            "checks": s.checks,
        }
    })
}

/// Writes one structured log line for a committed event (the log sink of DESIGN.md).
pub fn log(payload: &Value) {
    let d = &payload["data"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    tracing::info!(
        target: "payrecon::event",
        event_id = %s(&payload["id"]),
        event_type = %s(&payload["type"]),
        provider = %s(&d["provider"]),
        session_id = %s(&d["session_id"]),
        reference = %s(&d["reference"]),
        amount = %s(&d["amount"]),
        from = %s(&d["from"]),
        to = %s(&d["to"]),
        status = %s(&d["status"]),
        provider_says = %s(&d["provider_says"]),
        reason = %s(&d["reason"]),
        transaction_id = %s(&d["transaction_id"]),
        checks = d["checks"].as_i64().unwrap_or(0),
        "event"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_contract_shape() {
        let session = Session {
            status: "COMPLETED".into(),
            checks: 3,
            answered_checks: 3,
            ..Session::sample("2026-11-24T10:00:00.000Z".into())
        };
        let facts = Facts {
            provider_status: Some("COMPLETED".into()),
            transaction_id: Some("TXN123".into()),
            payment_method: Some("mpesa".into()),
            provider_completed_at: Some("2025-12-04T14:05:00Z".into()),
            ..Facts::default()
        };
        let id = new_id();
        assert!(id.starts_with("evt_") && id.len() == 30);
        let v = transition_payload(&TransitionEvent {
            id: &id,
            created_at: "2026-11-24T10:05:03.000Z",
            session: &session,
            from: Status::Pending,
            to: Status::Completed,
            reason: None,
            facts: &facts,
            compared: &["amount", "reference"],
        });
        assert_eq!(v["type"], "session.completed");
        assert_eq!(v["data"]["amount"], "100.00");
        assert_eq!(v["data"]["session_id"], "MOP_1");
        assert_eq!(v["data"]["to"], "COMPLETED");
        assert_eq!(v["data"]["reason"], Value::Null);
        assert_eq!(v["data"]["checks"], 3);
        assert_eq!(v["data"]["compared"][1], "reference");
    }
}
