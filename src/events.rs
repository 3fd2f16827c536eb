//! The log sink: one structured line per committed event. Delivery to a webhook is the
//! outbox's (`outbox`); the event JSON is the ledger's (`ledger::event`), written in the same
//! transaction as its transition.

use serde_json::Value;

use crate::ledger::Written;

/// Writes one structured log line for a committed event (the log sink). The
/// payload is read back only when the line is written.
pub fn log(event: &Written) {
    if !tracing::enabled!(target: "payrecon::event", tracing::Level::INFO) {
        return;
    }
    let payload: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
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
