//! The event JSON of docs/webhooks.md "The event" (pure): built inside the recording
//! transaction, stored with the event row, signed and delivered as it is.

use rust_decimal::Decimal;
use serde::Serialize;

use super::{Anomaly, Facts, Session, Status};

/// The event type of a provider answer that contradicts a final state.
pub const ANOMALY: &str = "session.anomaly";

/// A new event id: `evt_` and a ULID, so ids sort by creation time. Stable across redeliveries
/// because it is written once, with the event row.
pub fn new_id() -> String {
    let mut buf = [0; ulid::ULID_LEN];
    let mut id = String::with_capacity(4 + ulid::ULID_LEN);
    id.push_str("evt_");
    id.push_str(ulid::Ulid::new().array_to_str(&mut buf));
    id
}

/// An event as the ledger committed it: the payload is the exact text stored, signed and
/// delivered, and `line` the same facts typed, for the log sink (which never parses the JSON).
#[derive(Debug, Clone)]
pub struct Written {
    pub id: String,
    pub kind: &'static str,
    pub payload: String,
    pub line: EventLine,
}

/// What the log sink writes of an event, from the values the payload was built from.
#[derive(Debug, Clone, Default)]
pub struct EventLine {
    pub provider: String,
    pub session_id: String,
    pub reference: Option<String>,
    pub amount: Option<Decimal>,
    /// A transition's states.
    pub from: Option<Status>,
    pub to: Option<Status>,
    /// An anomaly's recorded state and what the provider now says.
    pub status: Option<Status>,
    pub provider_says: Option<Status>,
    pub reason: Option<String>,
    pub transaction_id: Option<String>,
    pub checks: i64,
}

/// The inputs of one transition's event.
pub struct TransitionEvent<'a> {
    pub id: &'a str,
    pub created_at: &'a str,
    /// The session: who it is, what it was for.
    pub session: Subject<'a>,
    /// Its `checks` after the update.
    pub checks: i64,
    pub from: Status,
    pub to: Status,
    pub reason: Option<&'a str>,
    /// The person who decided it, for a manual decision.
    pub actor: Option<&'a str>,
    pub facts: &'a Facts,
    pub compared: &'a [&'static str],
}

/// What a transition's event says of its session: who it is and what it was for — read back
/// after the compare-and-set, as the row now is.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub provider: &'a str,
    pub session_id: &'a str,
    pub reference: Option<&'a str>,
    pub amount: Option<Decimal>,
    pub currency: Option<&'a str>,
}

impl<'a> From<&'a Session> for Subject<'a> {
    fn from(s: &'a Session) -> Self {
        Subject {
            provider: &s.provider,
            session_id: &s.session_id,
            reference: s.reference.as_deref(),
            amount: s.amount,
            currency: s.currency.as_deref(),
        }
    }
}

/// The envelope of every event.
#[derive(Serialize)]
struct Envelope<'a, D> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: &'a str,
    data: D,
}

/// The `data` of a transition event. Written straight to text, borrowing from the session: this
/// runs once per transition while the ledger is locked.
#[derive(Serialize)]
struct TransitionData<'a> {
    provider: &'a str,
    session_id: &'a str,
    reference: Option<&'a str>,
    amount: Option<Decimal>,
    currency: Option<&'a str>,
    from: &'a str,
    to: &'a str,
    reason: Option<&'a str>,
    provider_status: Option<&'a str>,
    transaction_id: Option<&'a str>,
    payment_method: Option<&'a str>,
    provider_completed_at: Option<&'a str>,
    checks: i64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    compared: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
}

/// The event JSON text for a transition.
pub fn transition_payload(e: &TransitionEvent<'_>) -> String {
    let s = e.session;
    let f = e.facts;
    let envelope = Envelope {
        id: e.id,
        kind: e.to.event_type(),
        created_at: e.created_at,
        data: TransitionData {
            provider: s.provider,
            session_id: s.session_id,
            reference: s.reference,
            amount: s.amount,
            currency: s.currency,
            from: e.from.as_str(),
            to: e.to.as_str(),
            reason: e.reason,
            provider_status: f.provider_status.as_deref(),
            transaction_id: f.transaction_id.as_deref(),
            payment_method: f.payment_method.as_deref(),
            provider_completed_at: f.provider_completed_at.as_deref(),
            checks: e.checks,
            compared: e.compared,
            actor: e.actor,
        },
    };
    to_text(&envelope)
}

/// The `data` of an anomaly event: the recorded state and what the provider now says, both.
#[derive(Serialize)]
struct AnomalyData<'a> {
    provider: &'a str,
    session_id: &'a str,
    reference: Option<&'a str>,
    amount: Option<Decimal>,
    currency: Option<&'a str>,
    status: &'a str,
    provider_says: &'a str,
    reason: &'a str,
    provider_status: Option<&'a str>,
    provider_amount: Option<&'a str>,
    provider_reference: Option<&'a str>,
    transaction_id: Option<&'a str>,
    payment_method: Option<&'a str>,
    provider_completed_at: Option<&'a str>,
    checks: i64,
}

/// The event JSON for an anomaly, in the same envelope as a transition's.
pub fn anomaly_payload(id: &str, created_at: &str, s: &Session, a: &Anomaly) -> String {
    let f = &a.facts;
    to_text(&Envelope {
        id,
        kind: ANOMALY,
        created_at,
        data: AnomalyData {
            provider: &s.provider,
            session_id: &s.session_id,
            reference: s.reference.as_deref(),
            amount: s.amount,
            currency: s.currency.as_deref(),
            status: s.status.as_str(),
            provider_says: a.provider_says.as_str(),
            reason: &a.reason,
            provider_status: f.provider_status.as_deref(),
            provider_amount: f.amount.as_deref(),
            provider_reference: f.reference.as_deref(),
            transaction_id: f.transaction_id.as_deref(),
            payment_method: f.payment_method.as_deref(),
            provider_completed_at: f.provider_completed_at.as_deref(),
            checks: s.checks,
        },
    })
}

/// The event type of a listed payment no session holds, reported after its grace window.
pub const UNMATCHED: &str = "payment.unmatched";
/// The event type of a reported unmatched payment that a session now holds.
pub const MATCHED: &str = "payment.matched";

/// The `data` of a payment event: the payment as the provider's list showed it, and the
/// session that holds it once matched.
#[derive(Serialize)]
struct PaymentData<'a> {
    provider: &'a str,
    payment_id: &'a str,
    other_id: Option<&'a str>,
    amount: Option<&'a str>,
    currency: Option<&'a str>,
    provider_status: &'a str,
    receipt: Option<&'a str>,
    provider_created_at: Option<&'a str>,
    first_seen_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
}

/// The event JSON for a payment event (`payment.unmatched`, or `payment.matched` naming
/// `session_id`), in the same envelope as a transition's.
pub fn payment_payload(
    id: &str,
    kind: &str,
    created_at: &str,
    u: &super::Unmatched,
    session_id: Option<&str>,
) -> String {
    to_text(&Envelope {
        id,
        kind,
        created_at,
        data: PaymentData {
            provider: &u.provider,
            payment_id: &u.payment_id,
            other_id: u.other_id.as_deref(),
            amount: u.amount.as_deref(),
            currency: u.currency.as_deref(),
            provider_status: &u.provider_status,
            receipt: u.receipt.as_deref(),
            provider_created_at: u.provider_created_at.as_deref(),
            first_seen_at: &u.first_seen_at,
            session_id,
        },
    })
}

/// The log line of a payment event: the payment's id where a session's would be.
pub fn payment_line(u: &super::Unmatched, session_id: Option<&str>, reason: &str) -> EventLine {
    EventLine {
        provider: u.provider.clone(),
        session_id: session_id.unwrap_or(&u.payment_id).to_string(),
        amount: u.amount.as_deref().and_then(|a| a.parse().ok()),
        reason: Some(reason.to_string()),
        transaction_id: u.receipt.clone(),
        ..EventLine::default()
    }
}

/// An event's JSON text: one allocation that fits a typical event (about 450 bytes) instead of
/// growing from empty. Serialising borrowed strings and integers into memory cannot fail, and
/// gives UTF-8.
fn to_text<D: Serialize>(envelope: &Envelope<'_, D>) -> String {
    let mut out = Vec::with_capacity(640);
    match serde_json::to_writer(&mut out, envelope) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The log line of a transition's event.
pub fn transition_line(e: &TransitionEvent<'_>) -> EventLine {
    EventLine {
        provider: e.session.provider.to_string(),
        session_id: e.session.session_id.to_string(),
        reference: e.session.reference.map(String::from),
        amount: e.session.amount,
        from: Some(e.from),
        to: Some(e.to),
        reason: e.reason.map(String::from),
        transaction_id: e.facts.transaction_id.clone(),
        checks: e.checks,
        ..EventLine::default()
    }
}

/// The log line of an anomaly's event.
pub fn anomaly_line(s: &Session, a: &Anomaly) -> EventLine {
    EventLine {
        provider: s.provider.clone(),
        session_id: s.session_id.clone(),
        reference: s.reference.clone(),
        amount: s.amount,
        status: Some(s.status),
        provider_says: Some(a.provider_says),
        reason: Some(a.reason.clone()),
        transaction_id: a.facts.transaction_id.clone(),
        checks: s.checks,
        ..EventLine::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn an_event_id_is_evt_and_a_ulid() {
        let (a, b) = (new_id(), new_id());
        for id in [&a, &b] {
            let ulid = id.strip_prefix("evt_").unwrap();
            assert_eq!(
                ulid::Ulid::from_string(ulid).unwrap().to_string(),
                ulid,
                "{id}"
            );
        }
        assert_ne!(a, b);
    }

    #[test]
    fn payload_has_the_contract_shape() {
        let session = Session {
            status: Status::Completed,
            checks: 3,
            answered_checks: 3,
            ..Session::sample(crate::clock::parse("2026-11-24T10:00:00.000Z").unwrap())
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
        let text = transition_payload(&TransitionEvent {
            id: &id,
            created_at: "2026-11-24T10:05:03.000Z",
            session: (&session).into(),
            checks: 3,
            from: Status::Pending,
            to: Status::Completed,
            reason: None,
            actor: None,
            facts: &facts,
            compared: &["amount", "reference"],
        });
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "session.completed");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["data"]["from"], "PENDING");
        assert_eq!(v["data"]["transaction_id"], "TXN123");
        assert_eq!(v["data"]["currency"], "LSL");
        assert_eq!(v["data"]["amount"], "100.00");
        assert_eq!(v["data"]["session_id"], "MOP_1");
        assert_eq!(v["data"]["to"], "COMPLETED");
        assert_eq!(v["data"]["reason"], Value::Null);
        assert_eq!(v["data"]["checks"], 3);
        assert_eq!(v["data"]["compared"][1], "reference");
    }

    #[test]
    fn an_anomaly_has_the_envelope_of_a_transition_and_both_states() {
        let session = Session {
            status: Status::Expired,
            checks: 4,
            ..Session::sample(crate::clock::parse("2026-11-24T10:00:00.000Z").unwrap())
        };
        let anomaly = Anomaly {
            provider_says: Status::Completed,
            reason: "late payment".into(),
            facts: Facts {
                amount: Some("100.00".into()),
                transaction_id: Some("TXN9".into()),
                ..Facts::default()
            },
        };
        let text = anomaly_payload("evt_1", "2026-11-25T00:00:00.000Z", &session, &anomaly);
        assert!(
            text.starts_with(r#"{"id":"evt_1","type":"session.anomaly","created_at":"#),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"]["status"], "EXPIRED");
        assert_eq!(v["data"]["provider_says"], "COMPLETED");
        assert_eq!(v["data"]["provider_amount"], "100.00");
        assert_eq!(v["data"]["transaction_id"], "TXN9");
        assert_eq!(v["data"]["checks"], 4);
        let line = anomaly_line(&session, &anomaly);
        assert_eq!(
            (line.status, line.provider_says, line.from),
            (Some(Status::Expired), Some(Status::Completed), None)
        );
    }
}
