//! The log sink: one structured line per committed event. Delivery to a webhook is the
//! outbox's (`outbox`); the event JSON is the ledger's (`ledger::event`), written in the same
//! transaction as its transition.

use crate::ledger::Written;

/// Writes one structured log line for a committed event (the log sink), from the event's typed
/// facts (`Written::line`): the JSON is the webhook's, never read back here.
pub fn log(event: &Written) {
    if !tracing::enabled!(target: "payrecon::event", tracing::Level::INFO) {
        return;
    }
    let d = &event.line;
    let state = |s: Option<crate::ledger::Status>| s.map_or("", |s| s.as_str());
    tracing::info!(
        target: "payrecon::event",
        event_id = %event.id,
        event_type = %event.kind,
        provider = %d.provider,
        session_id = %d.session_id,
        reference = %d.reference.as_deref().unwrap_or(""),
        amount = %d.amount.map(|a| a.to_string()).unwrap_or_default(),
        from = %state(d.from),
        to = %state(d.to),
        status = %state(d.status),
        provider_says = %state(d.provider_says),
        reason = %d.reason.as_deref().unwrap_or(""),
        transaction_id = %d.transaction_id.as_deref().unwrap_or(""),
        checks = d.checks,
        "event"
    );
}
