//! Row and domain types the ledger reads and writes. No SQL here, and nothing about providers.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::clock::Timestamp;

/// A session's state (README "The state machine").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Completed,
    Failed,
    Cancelled,
    Expired,
    Review,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Expired,
        Status::Review,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::Expired => "EXPIRED",
            Status::Review => "REVIEW",
        }
    }

    /// The event type a transition into this state emits.
    pub fn event_type(self) -> &'static str {
        match self {
            Status::Pending => "session.pending",
            Status::Completed => "session.completed",
            Status::Failed => "session.failed",
            Status::Cancelled => "session.cancelled",
            Status::Expired => "session.expired",
            Status::Review => "session.review",
        }
    }
}

impl fmt::Display for Status {
    /// The word, padded as a format asks (`{:<10}` lines up `list`'s column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a status (PENDING, COMPLETED, FAILED, CANCELLED, EXPIRED, REVIEW)"
                )
            })
    }
}

/// Who caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Poll,
    Backfill,
    Manual,
    Api,
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Source::Poll, Source::Backfill, Source::Manual, Source::Api]
            .into_iter()
            .find(|src| src.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a source (poll, backfill, manual, api)"))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Poll => "poll",
            Source::Backfill => "backfill",
            Source::Manual => "manual",
            Source::Api => "api",
        }
    }
}

/// A session as the ledger holds it, typed when the row is read: times are [`Timestamp`]s,
/// the amount an exact decimal in major units (a row whose value is neither is set aside as
/// [`Unreadable`]). The API shows its own view of it (`api::SessionView`).
#[derive(Debug, Clone)]
pub struct Session {
    pub rowid: i64,
    pub provider: String,
    pub session_id: String,
    pub reference: Option<String>,
    /// Exact, in major units, with the scale it was written with (`100.00` stays `100.00`).
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub status: Status,
    /// Parsed when the row is read: a row whose `created_at` is not a time is set aside.
    pub created_at: Timestamp,
    pub next_check_at: Timestamp,
    pub checks: i64,
    pub answered_checks: i64,
    pub not_found_count: i64,
    pub last_checked_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Host and process id of the daemon holding the lease: never shown to API clients.
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub provider_status: Option<String>,
    pub transaction_id: Option<String>,
    pub payment_method: Option<String>,
    /// The provider's completion time, as it reported it (its text, not ours).
    pub provider_completed_at: Option<String>,
    pub resolved_at: Option<Timestamp>,
    /// When an EXPIRED session is asked once more (a late payment shows up as an anomaly).
    pub late_check_at: Option<Timestamp>,
    /// The provider's second id for this payment (Moflay's `trxn_…` beside the `pay_…` session
    /// id), written by the application or filled from the first answer that carries it.
    pub provider_ref: Option<String>,
    /// When a sweep of the provider's list last found this session PENDING and answered for it
    /// (`reconcile::SweepPolicy`, rule 3).
    pub listed_at: Option<Timestamp>,
}

impl Session {
    /// A PENDING session as it would be enqueued, never checked, not yet in a ledger (rowid 0):
    /// for callers that decide about a session they hold (tests, the conformance corpus).
    pub fn pending(provider: &str, session_id: &str, created_at: Timestamp) -> Session {
        Session {
            rowid: 0,
            provider: provider.into(),
            session_id: session_id.into(),
            reference: None,
            amount: None,
            currency: None,
            status: Status::Pending,
            next_check_at: created_at,
            created_at,
            checks: 0,
            answered_checks: 0,
            not_found_count: 0,
            last_checked_at: None,
            last_error: None,
            lease_owner: None,
            lease_until: None,
            provider_status: None,
            transaction_id: None,
            payment_method: None,
            provider_completed_at: None,
            resolved_at: None,
            late_check_at: None,
            provider_ref: None,
            listed_at: None,
        }
    }

    /// A PENDING MoPay session for unit tests: 100.00 LSL, reference ORDER1, created `created_at`.
    #[cfg(test)]
    pub fn sample(created_at: Timestamp) -> Session {
        Session {
            rowid: 7,
            reference: Some("ORDER1".into()),
            amount: Some(Decimal::new(10000, 2)),
            currency: Some("LSL".into()),
            ..Session::pending("mopay", "MOP_1", created_at)
        }
    }
}

/// A row of `sessions` payrecon cannot read as a session — a value of the wrong type, a session
/// id it would refuse at enqueue, a `created_at` that is not a time — set aside, never fatal:
/// every other session goes on being reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub rowid: i64,
    /// The row's provider as text (escaped), or `?` when even that is unreadable.
    pub provider: String,
    pub error: String,
}

/// What a claim took: the sessions to check, and the rows it set aside.
#[derive(Debug, Default)]
pub struct Claimed {
    pub sessions: Vec<Session>,
    pub unreadable: Vec<Unreadable>,
}

impl Claimed {
    /// The highest row id taken, readable or not (where `once --all` goes on from).
    pub fn last_rowid(&self) -> Option<i64> {
        let a = self.sessions.iter().map(|s| s.rowid);
        a.chain(self.unreadable.iter().map(|u| u.rowid)).max()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.unreadable.is_empty()
    }
}

impl Session {
    /// Why payrecon cannot work with this row as read, if it cannot: values an application
    /// wrote around `add`'s rules (or before the schema refused them).
    pub fn unusable(&self) -> Option<String> {
        validate_session_id(&self.session_id).err()
    }
}

/// A session to enqueue, validated by [`NewSession::validate`].
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub provider: String,
    pub session_id: String,
    pub reference: Option<String>,
    /// Written as its text, with the scale it was given (`100.00`).
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub created_at: Option<Timestamp>,
    /// The provider's second id, when the application knows it (`provider_ref`).
    pub provider_ref: Option<String>,
}

/// The longest session id accepted, in bytes (docs/providers.md "Provider calls").
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// Checks a session id: 1 to 256 bytes, no control characters. Returns why not.
pub fn validate_session_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("session_id is empty".into());
    }
    if id.len() > MAX_SESSION_ID_BYTES {
        return Err(format!(
            "session_id is {} bytes long, over the limit of {MAX_SESSION_ID_BYTES}",
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!(
            "session_id {id:?} cannot be sent as a URL path segment"
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("session_id contains the control character {:?}", c));
    }
    Ok(())
}

/// Checks an amount: non-negative decimal text in major units, such as `100.00`.
pub fn validate_amount(text: &str) -> Result<Decimal, String> {
    let ok_shape = !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.as_bytes()[0].is_ascii_digit()
        && !text.ends_with('.');
    let parsed = ok_shape.then(|| Decimal::from_str(text).ok()).flatten();
    parsed.ok_or_else(|| {
        format!("amount {text:?} is not a non-negative decimal in major units such as \"100.00\"")
    })
}

/// The longest reference accepted, in bytes.
pub const MAX_REFERENCE_BYTES: usize = 256;

/// Why a field an application gave was refused; `field` is the CSV column, the JSON key and
/// (with `-` for `_`) the `add` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A session's fields as an application wrote them — a CSV row, a JSON body, `add`'s flags —
/// before [`NewSession::from_input`] checks them, the same way for all three.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionInput<'a> {
    pub provider: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub amount: Option<&'a str>,
    pub currency: Option<&'a str>,
    pub created_at: Option<&'a str>,
    pub provider_ref: Option<&'a str>,
}

impl<'a> SessionInput<'a> {
    /// The fields as `get` finds them by their names ([`NewSession::FIELDS`]): how the API's
    /// body and the import's columns are read, never by position.
    pub fn by_name(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        SessionInput {
            provider: get("provider"),
            session_id: get("session_id"),
            reference: get("reference"),
            amount: get("amount"),
            currency: get("currency"),
            created_at: get("created_at"),
            provider_ref: get("provider_ref"),
        }
    }
}

/// A text field's own rules: no surrounding whitespace (never trimmed: a trimmed id would be
/// another session), no control character, at most `max` bytes.
fn plain_text(field: &'static str, v: &str, max: usize) -> Result<(), FieldError> {
    let err = |message: String| Err(FieldError { field, message });
    if v.len() > max {
        return err(format!("{} bytes long, over the limit of {max}", v.len()));
    }
    if v.trim() != v {
        return err(format!(
            "{:?} has leading or trailing whitespace",
            v.escape_debug().to_string()
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return err(format!("contains the control character {c:?}"));
    }
    Ok(())
}

impl NewSession {
    /// The fields an application gives, in the order of the import CSV header and the API body.
    pub const FIELDS: &'static [&'static str] = &[
        "provider",
        "session_id",
        "reference",
        "amount",
        "currency",
        "created_at",
        "provider_ref",
    ];

    /// Checks an application's fields — one rule per field for `add`, `import` and the API,
    /// the same rules the ledger's constraints hold: `provider` must be configured
    /// (`configured`); an empty optional field is absent; nothing is trimmed.
    pub fn from_input(
        i: &SessionInput<'_>,
        configured: impl Fn(&str) -> bool,
    ) -> Result<NewSession, FieldError> {
        let present = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        let fail = |field, message: String| FieldError { field, message };
        let provider = present(i.provider).ok_or_else(|| fail("provider", "is required".into()))?;
        if !configured(&provider) {
            return Err(fail(
                "provider",
                format!(
                    "{:?} is not configured in [providers]",
                    provider.escape_debug().to_string()
                ),
            ));
        }
        let created_at = match present(i.created_at) {
            None => None,
            Some(t) => Some(crate::clock::parse(&t).ok_or_else(|| {
                fail(
                    "created_at",
                    format!(
                        "{:?} is not an RFC 3339 time such as 2026-11-24T10:00:00Z",
                        t.escape_debug().to_string()
                    ),
                )
            })?),
        };
        let amount = present(i.amount)
            .map(|a| {
                validate_amount(&a)
                    .map_err(|e| fail("amount", e.trim_start_matches("amount ").to_string()))
            })
            .transpose()?;
        let s = NewSession {
            provider,
            session_id: i.session_id.unwrap_or_default().to_string(),
            reference: present(i.reference),
            amount,
            currency: present(i.currency),
            created_at,
            provider_ref: present(i.provider_ref),
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks every field the way the ledger's constraints will.
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field, message: String| FieldError { field, message };
        if self.provider.is_empty() {
            return Err(fail("provider", "is empty".into()));
        }
        validate_session_id(&self.session_id).map_err(|e| {
            fail(
                "session_id",
                e.trim_start_matches("session_id ").to_string(),
            )
        })?;
        plain_text("session_id", &self.session_id, MAX_SESSION_ID_BYTES)?;
        if let Some(r) = &self.reference {
            plain_text("reference", r, MAX_REFERENCE_BYTES)?;
        }
        if let Some(r) = &self.provider_ref {
            plain_text("provider_ref", r, MAX_REFERENCE_BYTES)?;
        }
        if let Some(a) = self.amount
            && (a.is_sign_negative() || a.to_string().len() > 40)
        {
            return Err(fail(
                "amount",
                format!("{a} is not a non-negative decimal of at most 40 characters"),
            ));
        }
        if let Some(c) = &self.currency
            && (c.is_empty() || c.len() > 8 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(fail(
                "currency",
                format!(
                    "{:?} is not a currency code such as \"LSL\"",
                    c.escape_debug().to_string()
                ),
            ));
        }
        Ok(())
    }
}

/// An enqueue of a session already in the ledger with another value in one field: the ledger
/// keeps what it has, and says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub provider: String,
    pub session_id: String,
    pub field: &'static str,
    pub ledger: Option<String>,
    pub given: Option<String>,
}

impl Conflict {
    /// What conflicts, without naming the field first (each caller names it its own way: the
    /// API's `field`, the command line's flag).
    pub fn describe(&self) -> String {
        let show = |v: &Option<String>| {
            v.as_deref().map_or("nothing".to_string(), |v| {
                format!("{:?}", v.escape_debug().to_string())
            })
        };
        format!(
            "session {} {} is already in the ledger with {} {}, not {}; nothing was changed",
            self.provider.escape_debug(),
            self.session_id.escape_debug(),
            self.field,
            show(&self.ledger),
            show(&self.given)
        )
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.describe())
    }
}

impl NewSession {
    /// The first field in which `existing` (reference, amount, currency as stored) differs
    /// from this session; amounts compare as decimals (`100.0` is `100.00`).
    pub fn conflict_with(
        &self,
        (reference, amount, currency, provider_ref): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ),
    ) -> Option<Conflict> {
        let given_amount = self.amount.map(|a| a.to_string());
        let same_amount = match (&amount, self.amount) {
            (Some(a), Some(b)) => Decimal::from_str(a).is_ok_and(|x| x == b),
            (a, b) => a.is_none() && b.is_none(),
        };
        let same_currency = match (&currency, &self.currency) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        let (field, ledger, given) = if reference != self.reference {
            ("reference", reference, &self.reference)
        } else if !same_amount {
            ("amount", amount, &given_amount)
        } else if !same_currency {
            ("currency", currency, &self.currency)
        } else if self.provider_ref.is_some() && provider_ref != self.provider_ref {
            // Only one given is compared: payrecon fills it from answers, and the same row
            // enqueued again without it is the same session.
            ("provider_ref", provider_ref, &self.provider_ref)
        } else {
            return None;
        };
        Some(Conflict {
            provider: self.provider.clone(),
            session_id: self.session_id.clone(),
            field,
            ledger,
            given: given.clone(),
        })
    }
}

/// What a provider said, as the ledger keeps it: whitelisted, parsed facts, never the raw body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub provider_status: Option<String>,
    /// The provider's second id for the payment, filled into the session's `provider_ref` when
    /// it has none.
    pub provider_ref: Option<String>,
    pub transaction_id: Option<String>,
    pub payment_method: Option<String>,
    pub provider_completed_at: Option<String>,
    pub amount: Option<String>,
    pub reference: Option<String>,
    pub currency: Option<String>,
}

/// The outcome of checking one claimed session, to be written by [`crate::ledger::Ledger::record`].
#[derive(Debug, Clone)]
pub enum Record {
    /// A compare-and-set from `from` to `to`, with its transition row and event.
    Transition {
        rowid: i64,
        from: Status,
        to: Status,
        source: Source,
        reason: Option<String>,
        facts: Facts,
        /// Whether this check counts in `checks`.
        charged: bool,
        /// Which ledger fields were compared with the provider's (for the event).
        compared: Vec<&'static str>,
        /// For EXPIRED: when to ask the provider once more.
        late_check_at: Option<Timestamp>,
        /// The person who decided it (a manual decision); `None` for payrecon's own.
        actor: Option<String>,
        /// When a scheduled check found the answer: the last moment before it the session was
        /// known PENDING (its previous check, or its creation). The customer acted in between;
        /// learned check times read it (`reconcile::timing`). `None` when a signal
        /// brought the check (the answer is about as old as the signal) or a person decided.
        pending_since: Option<Timestamp>,
    },
    /// The late check of an EXPIRED session: no state change, perhaps an anomaly.
    LateCheck {
        rowid: i64,
        /// `None` once the provider answered; else when to try again.
        next: Option<Timestamp>,
        last_error: Option<String>,
        anomaly: Option<Anomaly>,
    },
    /// Still pending: check again at `next_check_at`.
    Reschedule {
        rowid: i64,
        next_check_at: Timestamp,
        last_error: Option<String>,
        /// Whether the provider answered (as opposed to a transport failure).
        answered: bool,
        /// `Some(true)` for a 404, `Some(false)` for any other answer (resets the count).
        not_found: Option<bool>,
        charged: bool,
        facts: Option<Facts>,
    },
    /// Give the session back unchecked (shutdown, refused credentials): due again at once.
    Release {
        rowid: i64,
        last_error: Option<String>,
    },
}

impl Record {
    pub fn rowid(&self) -> i64 {
        match self {
            Record::Transition { rowid, .. }
            | Record::Reschedule { rowid, .. }
            | Record::Release { rowid, .. }
            | Record::LateCheck { rowid, .. } => *rowid,
        }
    }
}

/// A provider answer that contradicts a session's final state: recorded as a
/// `session.anomaly` event, never as a state change.
#[derive(Debug, Clone)]
pub struct Anomaly {
    /// What the provider's answer would have meant, in our states.
    pub provider_says: Status,
    pub reason: String,
    pub facts: Facts,
}

/// Whether a transition that lost its compare-and-set — the session was already recorded as
/// `recorded` shows — is an anomaly to report. The rule is the domain's
/// (`reconcile::contradiction`); the ledger applies it inside the recording transaction.
pub type Judge =
    fn(recorded: &Session, source: Source, to: Status, facts: &Facts) -> Option<Anomaly>;

/// An event row as written to the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub dead_at: Option<String>,
    pub last_error: Option<String>,
}

/// An event claimed for delivery.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub seq: i64,
    pub id: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The result of one delivery attempt, to be written by
/// [`crate::ledger::Ledger::record_deliveries`].
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A 2xx: never sent again (unless replayed).
    Delivered { seq: i64 },
    /// Try again at `next_attempt_at`.
    Retry {
        seq: i64,
        next_attempt_at: Timestamp,
        error: String,
    },
    /// Out of attempts, or 410 Gone: kept for `events replay`.
    Dead { seq: i64, error: String },
    /// Not attempted (shutdown): due again at once, attempt not counted.
    Release { seq: i64 },
}

/// Which events `events list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Dead,
    /// `session.anomaly` events only.
    Anomalies,
}

/// Filter for `export`.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// `resolved_at >= since`.
    pub since: Option<Timestamp>,
    /// `resolved_at < until`.
    pub until: Option<Timestamp>,
    pub statuses: Vec<Status>,
    pub provider: Option<String>,
    /// Leave out rows payrecon cannot read (each is logged) instead of refusing the export.
    pub skip_unreadable: bool,
}

impl Event {
    /// `delivered`, `dead` or `waiting`.
    pub fn state(&self) -> &'static str {
        if self.delivered_at.is_some() {
            "delivered"
        } else if self.dead_at.is_some() {
            "dead"
        } else {
            "waiting"
        }
    }
}

/// A transition row.
#[derive(Debug, Clone)]
pub struct TransitionRow {
    pub from: Status,
    pub to: Status,
    pub at: Timestamp,
    pub source: Source,
    pub reason: Option<String>,
    pub provider_status: Option<String>,
    pub transaction_id: Option<String>,
    /// The amount the provider reported with it (decimal text, major units), when it did.
    pub provider_amount: Option<String>,
    /// Who made it, for a person's decision.
    pub actor: Option<String>,
}

/// Which sessions of the REVIEW queue, in which order (the console's filters).
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub provider: Option<String>,
    /// Only sessions of at least this amount (ordered and compared as numbers for display: on
    /// SQLite through a floating-point cast, never used for money).
    pub min_amount: Option<rust_decimal::Decimal>,
    /// Only sessions in REVIEW since before this time.
    pub before: Option<Timestamp>,
    /// Largest amount first, instead of longest waiting.
    pub by_amount: bool,
}

/// A session in REVIEW, with why it is there and since when (the console's queue).
#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub session: Session,
    pub reason: Option<String>,
    pub provider_amount: Option<String>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Added,
    AlreadyPresent,
}

/// What the daemon last learned about a provider as a whole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderState {
    pub provider: String,
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub auth_refused_at: Option<Timestamp>,
    pub auth_error: Option<String>,
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub paused_until: Option<Timestamp>,
    /// The last normal answer about a session (a 404 is not one).
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub last_answer_at: Option<Timestamp>,
    /// Set while the provider answers "not found" to every session (a wrong `base_url`).
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub misdirected_at: Option<Timestamp>,
    pub misdirected_error: Option<String>,
    /// The endpoint (base URL without credentials) of the last normal answer.
    pub answered_endpoint: Option<String>,
    /// When the provider's list is next swept (by whichever process claims it first).
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub sweep_due_at: Option<Timestamp>,
    /// When the last sweep that read its pages to the end began: the list is known up to then.
    #[serde(serialize_with = "crate::clock::serialize_opt")]
    pub swept_at: Option<Timestamp>,
    /// Why the last sweep stopped short, while it did.
    pub sweep_error: Option<String>,
}

/// What one pass learned about a provider as a whole, for [`crate::ledger::Ledger::note_provider`].
#[derive(Debug, Clone, Default)]
pub struct ProviderNote {
    /// The credentials were refused, with the error.
    pub refused: Option<String>,
    /// A 429 paused calls until then.
    pub paused_until: Option<Timestamp>,
    /// It answered at all (a 404 included): the credentials work, a refusal is cleared.
    pub reached: bool,
    /// It answered some session normally: sets `last_answer_at`, clears `misdirected`.
    pub answered: bool,
    /// It is flagged as answering "not found" to every session, with the error.
    pub misdirected: Option<String>,
    /// The endpoint it is called at (recorded with a normal answer).
    pub endpoint: String,
}

/// Counts for `stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// `(provider, status, count)`.
    pub sessions: Vec<(String, String, i64)>,
    pub due_now: i64,
    pub events_waiting: i64,
    pub events_dead: i64,
    pub events_total: i64,
    /// `(currency, count, sum)` of COMPLETED sessions, summed as decimals.
    pub completed: Vec<(String, u64, Decimal)>,
    /// Every session with an amount, counted and summed as decimals per provider, status and
    /// currency, in that order.
    pub sums: Vec<StatusSum>,
    pub providers: Vec<ProviderState>,
    /// EXPIRED sessions still waiting for their late check.
    pub late_checks_waiting: i64,
    pub anomalies: i64,
    /// PENDING rows set aside because payrecon cannot read them.
    pub unreadable: i64,
    /// Reported payments no session holds, neither matched nor dismissed.
    pub unmatched_open: i64,
    /// The earliest due time of a PENDING session (a lease's end while it is leased).
    pub oldest_due: Option<crate::clock::Timestamp>,
    /// The ledger's clock: PostgreSQL's `now()`, or on SQLite when the newest transition was
    /// recorded (by any process); `None` on an empty SQLite ledger.
    pub ledger_clock: Option<crate::clock::Timestamp>,
}

/// The sessions of one provider, status and currency: how many, and their amounts' sum.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSum {
    pub provider: String,
    pub status: String,
    pub currency: String,
    pub count: u64,
    pub sum: Decimal,
}

/// Filter for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub provider: Option<String>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_pads_as_a_format_asks() {
        assert_eq!(format!("[{:<10}]", Status::Failed), "[FAILED    ]");
        assert_eq!(format!("[{:>9}]", Status::Review), "[   REVIEW]");
        assert_eq!(Status::Completed.to_string(), "COMPLETED");
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(validate_session_id("MOP_abc123_ORDER12345").is_ok());
        assert!(validate_session_id("a/b %?#c d").is_ok());
        assert!(validate_session_id("").is_err());
        assert!(validate_session_id("..").is_err());
        assert!(
            validate_session_id("bad\nid")
                .unwrap_err()
                .contains("control")
        );
        assert!(
            validate_session_id(&"x".repeat(257))
                .unwrap_err()
                .contains("257")
        );
        assert!(validate_session_id(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn amounts_are_decimal_text() {
        assert_eq!(validate_amount("100.00").unwrap().to_string(), "100.00");
        for bad in ["", "-1", "1e3", "1.2.3", ".5", "5.", "abc", "1,00", " 1"] {
            assert!(validate_amount(bad).is_err(), "{bad:?}");
        }
    }
}

/// A payment a provider's list shows that no session holds (docs/operations.md "Unmatched
/// payments"): seen, then reported after the grace window, then matched or dismissed.
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    pub id: i64,
    pub provider: String,
    /// The id the provider's list names it by.
    pub payment_id: String,
    /// Its other id, when one status lookup gave it.
    pub other_id: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub provider_status: String,
    pub receipt: Option<String>,
    pub provider_created_at: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    /// When `payment.unmatched` was written; `None` while it is within the grace window.
    pub reported_at: Option<String>,
    /// The session that holds it now (its `session_id`), once matched.
    pub matched_session: Option<String>,
    pub matched_at: Option<String>,
    pub dismissed_at: Option<String>,
    pub dismissed_by: Option<String>,
    pub dismiss_reason: Option<String>,
}

impl Unmatched {
    /// Reported, and neither matched nor dismissed: what a person must look at.
    pub fn is_open(&self) -> bool {
        self.reported_at.is_some() && self.matched_at.is_none() && self.dismissed_at.is_none()
    }
}

/// A listed payment in a paid state that no session holds, as one sweep saw it.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub payment_id: String,
    pub amount: Option<rust_decimal::Decimal>,
    pub currency: Option<String>,
    pub provider_status: String,
    pub receipt: Option<String>,
    pub provider_created_at: Option<Timestamp>,
}

/// What the ledger holds for one id a provider's list names ([`crate::ledger::Ledger::tie_listed`]).
#[derive(Debug)]
pub enum Tied {
    /// The one PENDING session that holds it, leased for this sweep.
    Claimed(Box<Session>),
    /// A session holds it, but it is not this sweep's to decide: final, or leased by another
    /// check.
    Held,
    /// More than one session holds it, or the one that does cannot be read (their rowids): no
    /// answer is applied to any of them; they are given back, due now, with the reason.
    Several(Vec<i64>),
    /// No session holds it.
    Nobody,
}

/// One entry of the append-only audit log: a person's action (or a login), by whom, on what.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// `resolve`, `dismiss`, `replay`, …
    pub action: String,
    /// What it acted on (`mopay/MOP_1`, `unmatched 4`, an event id).
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// An action to write to the audit log with the change it records, in the same transaction.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub actor: &'a str,
    pub action: &'static str,
    pub target: Option<String>,
    pub detail: Option<String>,
}
