//! What an answer means: [`decide`] (a PENDING session's check), [`decide_late`] (the late check
//! of a closed one), [`contradiction`] (a transition that lost its compare-and-set) and [`manual`]
//! (a person's decision). All pure: a ledger row and a provider answer in, a [`Record`] out. The
//! only place that maps provider answers onto ledger states.

use std::time::Duration;

use crate::clock::{self, Timestamp};
use crate::config::BackoffConfig;
use crate::ledger::{self, Facts, Record, Session, Source, Status};
use crate::provider::{self, Answer, Mapped, ProviderFacts};

/// What a check heard from the provider about a session that stays PENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// No answer: a failed call, a 404 that is not believed.
    Nothing,
    /// "Not found", believed: it counts toward `not_found_after`.
    NotFound,
    /// A pending answer: a normal answer, which resets the not-found count.
    Pending,
    /// An answer payrecon cannot act on (unrecognised, unsure): resets the not-found count, but
    /// is not a normal answer.
    CannotAct,
}

impl Heard {
    /// Whether the provider answered normally (the ledger's `answered_checks`).
    fn answered(self) -> bool {
        matches!(self, Heard::NotFound | Heard::Pending)
    }

    /// `Some(true)` for a believed 404, `Some(false)` for any other answer, `None` for none.
    fn not_found(self) -> Option<bool> {
        match self {
            Heard::Nothing => None,
            Heard::NotFound => Some(true),
            Heard::Pending | Heard::CannotAct => Some(false),
        }
    }
}

/// A session that stays PENDING after a check: what was heard, the error to show, whether the
/// check counts (`checks`), and the provider's facts to keep.
struct Still {
    heard: Heard,
    last_error: Option<String>,
    charged: bool,
    facts: Option<Facts>,
}

/// Decides what the late check of an EXPIRED session (or of one sent to REVIEW on an answer
/// payrecon could not act on) found. Pure. A provider that now says paid, failed or cancelled
/// contradicts the recorded state: one anomaly, no state change. Anything else ends the late
/// check quietly. Failures to get an answer retry at `backoff.max`, until twice `late_check`
/// has passed since the session was closed.
pub fn decide_late(
    s: &Session,
    result: &Result<Answer, provider::Error>,
    now: Timestamp,
    backoff: &BackoffConfig,
) -> Record {
    let late = |next: Option<Timestamp>, last_error: Option<String>, anomaly| Record::LateCheck {
        rowid: s.rowid,
        next,
        last_error,
        anomaly,
    };
    match result {
        // Our own wait for the budget is no answer and no failure: due again as before.
        Err(provider::Error::NoSlot(_)) => Record::Release {
            rowid: s.rowid,
            last_error: None,
        },
        Err(e) => {
            let expired_at = s.resolved_at.unwrap_or(now);
            let give_up = clock::add(expired_at, backoff.late_check * 2);
            let next = match e {
                provider::Error::RateLimited {
                    retry_after: Some(ra),
                } => clock::add(now, *ra),
                _ => clock::add(now, backoff.max),
            };
            if next > give_up {
                tracing::warn!(provider = %s.provider, session_id = %s.session_id, error = %e, "late check got no answer; giving up");
                return late(None, Some(format!("late check: {e}")), None);
            }
            late(Some(next), None, None)
        }
        Ok(Answer::NotFound) => late(None, None, None),
        Ok(Answer::Found(f)) => late(None, None, late_anomaly(s, f)),
    }
}

/// What a late answer contradicts: paid, failed or cancelled after the session closed.
fn late_anomaly(s: &Session, f: &ProviderFacts) -> Option<ledger::Anomaly> {
    let after = if s.status == Status::Review {
        "went to REVIEW"
    } else {
        "expired"
    };
    let (provider_says, reason) = match f.mapped {
        Mapped::Paid => {
            let (_, mismatches) = compare(s, f);
            let reason = format!("late payment: the provider says paid after the session {after}");
            if mismatches.is_empty() {
                (Status::Completed, reason)
            } else {
                (
                    Status::Review,
                    format!("{reason} ({})", mismatches.join("; ")),
                )
            }
        }
        Mapped::Failed => (
            Status::Failed,
            format!("the provider says failed after the session {after}"),
        ),
        Mapped::Cancelled => (
            Status::Cancelled,
            format!("the provider says cancelled after the session {after}"),
        ),
        Mapped::Pending | Mapped::Expired | Mapped::Unrecognised | Mapped::Unsure => return None,
    };
    Some(ledger::Anomaly {
        provider_says,
        reason,
        facts: ledger_facts(f),
    })
}

/// Decides what a provider's answer means for a PENDING session. Pure: `jitter_sample` is a
/// uniform number in `[0, 1)` that spreads re-checks.
///
/// Only an answer closes a session by age: once `max_age` has passed, a pending answer (or a
/// 404) makes it EXPIRED, and an answer payrecon cannot act on (`Unrecognised`, `Unsure`) makes it
/// REVIEW. A failed call — no body, a 5xx, a malformed body — never closes a session; a call
/// that ended without any body is not charged as a check either.
pub fn decide(
    s: &Session,
    result: &Result<Answer, provider::Error>,
    now: Timestamp,
    backoff: &BackoffConfig,
    source: Source,
    jitter_sample: f64,
) -> Record {
    let d = Decider {
        s,
        now,
        backoff,
        source,
        jitter_sample,
    };
    match result {
        Err(e) => d.failed_call(e),
        Ok(Answer::NotFound) => d.not_found(),
        Ok(Answer::Found(f)) => d.found(f),
    }
}

/// One decision's inputs, and the records it can make of them.
struct Decider<'a> {
    s: &'a Session,
    now: Timestamp,
    backoff: &'a BackoffConfig,
    source: Source,
    jitter_sample: f64,
}

impl Decider<'_> {
    /// The session leaves PENDING for `to` (charged as a check).
    fn transition(
        &self,
        to: Status,
        reason: Option<String>,
        facts: Facts,
        compared: Vec<&'static str>,
    ) -> Record {
        Record::Transition {
            rowid: self.s.rowid,
            from: Status::Pending,
            to,
            source: self.source,
            reason,
            facts,
            charged: true,
            compared,
            actor: None,
            late_check_at: (to == Status::Expired)
                .then(|| clock::add(self.now, self.backoff.late_check)),
            // A check on a signal (`verify`, a hint, a callback) asks when the customer has just
            // acted: its answer's time is the moment. A scheduled one only bounds it.
            pending_since: (self.source != Source::Api)
                .then(|| self.s.last_checked_at.unwrap_or(self.s.created_at)),
        }
    }

    /// It stays PENDING, due again by the schedule.
    fn reschedule(&self, still: Still) -> Record {
        let s = self.s;
        Record::Reschedule {
            rowid: s.rowid,
            next_check_at: next_check_at(
                s,
                s.checks + 1,
                self.now,
                self.backoff,
                self.jitter_sample,
            ),
            answered: still.heard.answered(),
            not_found: still.heard.not_found(),
            last_error: still.last_error,
            charged: still.charged,
            facts: still.facts,
        }
    }

    /// It stays PENDING, uncharged, due again at `at`.
    fn uncharged_until(&self, at: Timestamp, error: &provider::Error) -> Record {
        Record::Reschedule {
            rowid: self.s.rowid,
            next_check_at: at,
            last_error: Some(error.to_string()),
            answered: false,
            not_found: None,
            charged: false,
            facts: None,
        }
    }

    fn too_old(&self) -> bool {
        clock::add(self.s.created_at, self.backoff.max_age) <= self.now
    }

    fn max_age(&self) -> humantime::FormattedDuration {
        humantime::format_duration(self.backoff.max_age)
    }

    fn expire_by_age(&self, facts: Facts) -> Record {
        let reason = format!("no final status within max_age ({})", self.max_age());
        self.transition(Status::Expired, Some(reason), facts, vec![])
    }

    /// No answer about the session: it never closes by this.
    fn failed_call(&self, e: &provider::Error) -> Record {
        let (s, now, backoff) = (self.s, self.now, self.backoff);
        match e {
            provider::Error::RateLimited { retry_after } => {
                self.uncharged_until(clock::add(now, retry_after.unwrap_or(backoff.initial)), e)
            }
            // Our own wait for the budget: given back due as before, its last error kept.
            provider::Error::NoSlot(_) => Record::Release {
                rowid: s.rowid,
                last_error: None,
            },
            provider::Error::Unauthorized(_) | provider::Error::Budget(_) => Record::Release {
                rowid: s.rowid,
                last_error: Some(e.to_string()),
            },
            // No call was made (an incomplete provider table): look again much later, uncharged.
            provider::Error::NotConfigured(_) => {
                self.uncharged_until(clock::add(now, backoff.max), e)
            }
            // A 404 that is not believed: not counted toward `not_found_after`, not charged.
            // From a provider that answers "not found" to every session (a wrong base_url looks
            // like this), asked again only at `backoff.max`, so a misdirected provider costs
            // little.
            provider::Error::NotFoundDoubted { flagged: true, .. } => {
                self.uncharged_until(clock::add(now, backoff.max), e)
            }
            // No answer: never closes the session; a call that ended without a body from the
            // provider (or a doubted 404) is not charged as a check.
            e => self.reschedule(Still {
                heard: Heard::Nothing,
                last_error: Some(e.to_string()),
                charged: !e.is_bodiless() && !matches!(e, provider::Error::NotFoundDoubted { .. }),
                facts: None,
            }),
        }
    }

    /// A believed 404: counted toward `not_found_after`.
    fn not_found(&self) -> Record {
        let count = self.s.not_found_count + 1;
        let after = self.backoff.not_found_after;
        if count >= i64::from(after) {
            let reason = Some("not found at provider".into());
            self.transition(Status::Expired, reason, Facts::default(), vec![])
        } else if self.too_old() {
            self.expire_by_age(Facts::default())
        } else {
            self.reschedule(Still {
                heard: Heard::NotFound,
                last_error: Some(format!(
                    "HTTP 404: not found at provider ({count} of {after})"
                )),
                charged: true,
                facts: None,
            })
        }
    }

    /// The provider's word about the session.
    fn found(&self, f: &ProviderFacts) -> Record {
        let facts = ledger_facts(f);
        if let Some(why) = other_payment(self.s, f) {
            // An answer naming another payment than the one the ledger holds is never acted on:
            // a final one goes to a person at once, a pending one waits as one payrecon cannot
            // act on.
            return match f.mapped {
                Mapped::Paid | Mapped::Failed | Mapped::Cancelled | Mapped::Expired => {
                    self.transition(Status::Review, Some(why), facts, vec!["provider_ref"])
                }
                _ => {
                    let mut unsure = f.clone();
                    unsure.mapped = Mapped::Unsure;
                    unsure.warning = Some(why);
                    self.cannot_act(&unsure, facts)
                }
            };
        }
        match f.mapped {
            Mapped::Paid => {
                let (compared, mismatches) = compare(self.s, f);
                if mismatches.is_empty() {
                    self.transition(Status::Completed, None, facts, compared)
                } else {
                    let reason = Some(mismatches.join("; "));
                    self.transition(Status::Review, reason, facts, compared)
                }
            }
            Mapped::Failed => self.transition(Status::Failed, None, facts, vec![]),
            Mapped::Cancelled => self.transition(Status::Cancelled, None, facts, vec![]),
            Mapped::Expired => {
                let reason = Some("expired at provider".into());
                self.transition(Status::Expired, reason, facts, vec![])
            }
            Mapped::Pending if self.too_old() => self.expire_by_age(facts),
            Mapped::Pending => self.reschedule(Still {
                heard: Heard::Pending,
                last_error: f.warning.clone(),
                charged: true,
                facts: Some(facts),
            }),
            // Never guessed, never counted toward expiry; past max_age a person decides, and
            // the late check asks once more.
            Mapped::Unrecognised | Mapped::Unsure => self.cannot_act(f, facts),
        }
    }

    /// An answer payrecon cannot act on: still PENDING until max_age, then REVIEW with a late
    /// check.
    fn cannot_act(&self, f: &ProviderFacts, facts: Facts) -> Record {
        let word = cannot_act(f);
        if !self.too_old() {
            return self.reschedule(Still {
                heard: Heard::CannotAct,
                last_error: Some(word),
                charged: true,
                facts: Some(facts),
            });
        }
        let reason = format!(
            "max_age ({}) passed and the provider's last answer is one payrecon cannot act on: {word}",
            self.max_age()
        );
        let mut rec = self.transition(Status::Review, Some(reason), facts, vec![]);
        if let Record::Transition { late_check_at, .. } = &mut rec {
            *late_check_at = Some(clock::add(self.now, self.backoff.late_check));
        }
        rec
    }
}

/// What an answer payrecon cannot act on said, for `last_error` and the REVIEW reason: the
/// provider's word clipped and escaped, and why it is held back.
fn cannot_act(f: &ProviderFacts) -> String {
    let word = format!("{:?}", provider::clip(&f.raw_status));
    match (&f.warning, f.mapped) {
        // The warning is the adapter's own sentence, with any provider text in it clipped.
        (Some(w), _) => format!("provider status {word} ({w})"),
        (None, Mapped::Unrecognised) => format!("unrecognised provider status {word}"),
        (None, _) => format!("provider status {word}"),
    }
}

/// The delay before the check after the `nth` (from 0), in seconds, before jitter: the
/// schedule's (its last delay repeating), or the exponential form's, capped at `backoff.max`.
pub(crate) fn base_delay(b: &BackoffConfig, nth: usize) -> f64 {
    match b.schedule.get(nth).or(b.schedule.last()) {
        Some(delay) => delay.as_secs_f64(),
        None => {
            let exp = b.multiplier.powi(nth.min(64) as i32);
            (b.initial.as_secs_f64() * exp).min(b.max.as_secs_f64())
        }
    }
}

/// The next check after the `checks_after`-th: the schedule's delay for it (its last delay
/// repeating), or else exponential backoff capped at `backoff.max`; with jitter, and never past
/// the moment the session reaches `max_age` (so an answer then closes it on time).
fn next_check_at(
    s: &Session,
    checks_after: i64,
    now: Timestamp,
    b: &BackoffConfig,
    jitter_sample: f64,
) -> Timestamp {
    let base = base_delay(b, usize::try_from(checks_after - 1).unwrap_or(0));
    let jittered = base * (1.0 + b.jitter * (2.0 * jitter_sample - 1.0));
    let next = clock::add(now, Duration::from_secs_f64(jittered.max(0.001)));
    let deadline = clock::add(s.created_at, b.max_age);
    if deadline > now && deadline < next {
        deadline
    } else {
        next
    }
}

/// Why an answer is about another payment than the session's: its second id differs from the
/// `provider_ref` the ledger holds.
fn other_payment(s: &Session, f: &ProviderFacts) -> Option<String> {
    match (&s.provider_ref, &f.provider_ref) {
        (Some(ours), Some(theirs)) if ours != theirs => Some(format!(
            "provider_ref differs: ledger {ours:?}, provider {:?}",
            provider::clip(theirs)
        )),
        _ => None,
    }
}

/// Compares the provider's amount, reference and currency with the ledger's. A field missing on
/// either side is not compared. Returns the fields compared and one message per mismatch.
fn compare(s: &Session, f: &ProviderFacts) -> (Vec<&'static str>, Vec<String>) {
    let mut compared = Vec::new();
    let mut mismatches = Vec::new();
    if let (Some(ours), Some(problem)) = (&s.amount, &f.amount_problem) {
        // The provider sent an amount we cannot put in major units: it is not trusted.
        compared.push("amount");
        mismatches.push(format!(
            "amount cannot be compared: ledger {ours}, provider {problem}"
        ));
    }
    if let (Some(ours), Some(theirs)) = (&s.amount, &f.amount) {
        compared.push("amount");
        // Compared exactly, as decimals: 100.49 against 100 is an underpayment, 100.0 is 100.00.
        if ours != theirs {
            mismatches.push(format!(
                "amount differs: ledger {ours}, provider {theirs} ({} by {})",
                if theirs < ours {
                    "underpaid"
                } else {
                    "overpaid"
                },
                (*theirs - *ours).abs()
            ));
        }
    }
    if let (Some(ours), Some(theirs)) = (&s.reference, &f.reference) {
        compared.push("reference");
        if ours != theirs {
            mismatches.push(format!(
                "reference differs: ledger {ours:?}, provider {:?}",
                provider::clip(theirs)
            ));
        }
    }
    if let (Some(ours), Some(theirs)) = (&s.currency, &f.currency) {
        compared.push("currency");
        if !ours.eq_ignore_ascii_case(theirs) {
            mismatches.push(format!(
                "currency differs: ledger {ours}, provider {}",
                provider::clip(theirs)
            ));
        }
    }
    if s.provider_ref.is_some() && f.provider_ref.is_some() {
        compared.push("provider_ref");
        mismatches.extend(other_payment(s, f));
    }
    (compared, mismatches)
}

fn ledger_facts(f: &ProviderFacts) -> Facts {
    Facts {
        provider_status: Some(provider::clip(&f.raw_status)),
        provider_ref: f.provider_ref.as_deref().map(provider::clip),
        transaction_id: f.transaction_id.as_deref().map(provider::clip),
        payment_method: f.payment_method.as_deref().map(provider::clip),
        // Stored as UTC RFC 3339 like every ledger time, when the provider's text is a time.
        provider_completed_at: f
            .completed_at
            .as_deref()
            .map(|t| clock::parse(t).map_or_else(|| provider::clip(t), clock::format)),
        amount: f.amount.map(|a| a.to_string()),
        reference: f.reference.as_deref().map(provider::clip),
        currency: f.currency.as_deref().map(provider::clip),
    }
}

/// Whether an answer that found its session already recorded otherwise is an anomaly (the
/// [`crate::ledger::Judge`] the ledger applies when a transition loses its compare-and-set):
/// yes when the provider now says another final state than the one recorded — a late payment
/// after EXPIRED, a failure after COMPLETED — unless a person decided (`resolve` overrides
/// nobody's record, and is not contradicted by one).
pub fn contradiction(
    recorded: &Session,
    source: Source,
    to: Status,
    facts: &Facts,
) -> Option<crate::ledger::Anomaly> {
    (source != Source::Manual && recorded.status != to && recorded.status != Status::Pending).then(
        || crate::ledger::Anomaly {
            provider_says: to,
            reason: format!(
                "the provider's answer means {to} but the session was already recorded {}",
                recorded.status
            ),
            facts: facts.clone(),
        },
    )
}

/// Why a person's decision cannot be recorded ([`manual`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be COMPLETED, FAILED, CANCELLED or EXPIRED")]
    NotAFinalState,
    #[error("say why, for the audit trail")]
    NoReason,
    #[error("say who decides: 1 to 256 characters of plain text")]
    NoActor,
    #[error(
        "session {:?} is {status}, which is final; only PENDING or REVIEW sessions can be resolved",
        crate::escape::shown(session_id)
    )]
    AlreadyFinal { session_id: String, status: Status },
}

impl Refused {
    /// The part of the decision at fault: `to` or `reason` (each caller names it its own way:
    /// a flag, a form field), or none.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Refused::NotAFinalState => Some("to"),
            Refused::NoReason => Some("reason"),
            Refused::NoActor => Some("by"),
            Refused::AlreadyFinal { .. } => None,
        }
    }
}

/// A person's decision on a session (`payrecon resolve`, the console): the transition to
/// record, or why it cannot be. Only a PENDING or REVIEW session is resolved, only to a final
/// state the daemon could reach (COMPLETED, FAILED, CANCELLED, EXPIRED), only with a reason for
/// the audit trail and the name of who decides (`actor`: 1–256 characters of plain text); a
/// person's EXPIRED is asked once more `late_check` later, as the daemon's is.
pub fn manual(
    s: &Session,
    to: Status,
    reason: &str,
    actor: &str,
    now: Timestamp,
    late_check: Duration,
) -> Result<Record, Refused> {
    if matches!(to, Status::Pending | Status::Review) {
        return Err(Refused::NotAFinalState);
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused::NoReason);
    }
    let actor = actor.trim();
    if actor.is_empty() || actor.len() > 256 || actor.chars().any(char::is_control) {
        return Err(Refused::NoActor);
    }
    if !matches!(s.status, Status::Pending | Status::Review) {
        return Err(Refused::AlreadyFinal {
            session_id: s.session_id.clone(),
            status: s.status,
        });
    }
    Ok(Record::Transition {
        rowid: s.rowid,
        from: s.status,
        to,
        source: Source::Manual,
        reason: Some(reason.to_string()),
        facts: Default::default(),
        charged: false,
        compared: vec![],
        late_check_at: (to == Status::Expired).then(|| clock::add(now, late_check)),
        actor: Some(actor.to_string()),
        pending_since: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Error as PErr;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn backoff() -> BackoffConfig {
        BackoffConfig {
            schedule: Vec::new(),
            initial: Duration::from_secs(30),
            multiplier: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
            max_age: Duration::from_secs(48 * 3600),
            not_found_after: 3,
            late_check: Duration::from_secs(7 * 86400),
            pace: crate::config::Pace::Fixed,
            first_check: crate::config::FirstCheck::After(Duration::ZERO),
        }
    }

    fn session(created_ago: Duration) -> Session {
        let created = clock::now() - chrono::Duration::from_std(created_ago).unwrap();
        Session::sample(created)
    }

    fn paid(amount: &str, reference: &str, currency: Option<&str>) -> Result<Answer, PErr> {
        let mut f = ProviderFacts::new("COMPLETED", Mapped::Paid);
        f.amount = Some(Decimal::from_str(amount).unwrap());
        f.reference = Some(reference.into());
        f.currency = currency.map(String::from);
        Ok(Answer::Found(f))
    }

    fn found(mapped: Mapped) -> Result<Answer, PErr> {
        Ok(Answer::Found(ProviderFacts::new("X", mapped)))
    }

    /// The table-driven check: a ledger row and a provider answer give a state (or PENDING).
    fn check(s: &Session, answer: Result<Answer, PErr>) -> (Status, Option<String>) {
        match decide(s, &answer, clock::now(), &backoff(), Source::Poll, 0.5) {
            Record::Transition { to, reason, .. } => (to, reason),
            Record::Reschedule { last_error, .. } | Record::Release { last_error, .. } => {
                (Status::Pending, last_error)
            }
            other @ Record::LateCheck { .. } => panic!("a PENDING session got {other:?}"),
        }
    }

    /// What the late check of an EXPIRED session records: the anomaly's `provider_says`, if any.
    fn late(answer: Result<Answer, PErr>) -> (Option<Status>, bool) {
        let mut s = session(Duration::from_secs(8 * 86400));
        s.status = Status::Expired;
        s.resolved_at = Some(clock::now() - chrono::Duration::days(7));
        match decide_late(&s, &answer, clock::now(), &backoff()) {
            Record::LateCheck { next, anomaly, .. } => {
                (anomaly.map(|a| a.provider_says), next.is_some())
            }
            other => panic!("a late check gave {other:?}"),
        }
    }

    #[test]
    fn late_checks_flag_contradictions_and_change_nothing() {
        assert_eq!(
            late(paid("100.00", "ORDER1", None)),
            (Some(Status::Completed), false)
        );
        assert_eq!(
            late(paid("1.00", "ORDER1", None)),
            (Some(Status::Review), false)
        );
        assert_eq!(late(found(Mapped::Failed)), (Some(Status::Failed), false));
        assert_eq!(
            late(found(Mapped::Cancelled)),
            (Some(Status::Cancelled), false)
        );
        for quiet in [
            found(Mapped::Pending),
            found(Mapped::Expired),
            found(Mapped::Unrecognised),
            Ok(Answer::NotFound),
        ] {
            assert_eq!(late(quiet), (None, false));
        }
        // No answer: asked again later, until twice late_check has passed since the expiry.
        assert_eq!(late(Err(PErr::Status(503))), (None, true));
        let mut s = session(Duration::from_secs(30 * 86400));
        s.status = Status::Expired;
        s.resolved_at = Some(clock::now() - chrono::Duration::days(14));
        assert!(matches!(
            decide_late(&s, &Err(PErr::Timeout), clock::now(), &backoff()),
            Record::LateCheck {
                next: None,
                last_error: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn expiry_schedules_the_late_check() {
        let s = session(Duration::from_secs(60));
        let now = clock::now();
        match decide(
            &s,
            &found(Mapped::Expired),
            now,
            &backoff(),
            Source::Poll,
            0.5,
        ) {
            Record::Transition { late_check_at, .. } => {
                assert_eq!(
                    late_check_at,
                    Some(clock::add(now, Duration::from_secs(7 * 86400)))
                )
            }
            other => panic!("{other:?}"),
        }
        match decide(
            &s,
            &found(Mapped::Failed),
            now,
            &backoff(),
            Source::Poll,
            0.5,
        ) {
            Record::Transition { late_check_at, .. } => assert_eq!(late_check_at, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_map_to_states() {
        let s = session(Duration::from_secs(60));
        assert_eq!(
            check(&s, paid("100.0", "ORDER1", Some("lsl"))).0,
            Status::Completed
        );
        assert_eq!(check(&s, found(Mapped::Failed)).0, Status::Failed);
        assert_eq!(check(&s, found(Mapped::Cancelled)).0, Status::Cancelled);
        assert_eq!(
            check(&s, found(Mapped::Expired)),
            (Status::Expired, Some("expired at provider".into()))
        );
        assert_eq!(check(&s, found(Mapped::Pending)).0, Status::Pending);
        let (st, err) = check(&s, found(Mapped::Unrecognised));
        assert_eq!(st, Status::Pending);
        assert!(err.unwrap().contains("unrecognised"));
    }

    #[test]
    fn paid_but_different_goes_to_review_naming_the_field() {
        let s = session(Duration::from_secs(60));
        let (st, reason) = check(&s, paid("90.00", "ORDER1", None));
        assert_eq!(st, Status::Review);
        assert!(
            reason
                .unwrap()
                .contains("amount differs: ledger 100.00, provider 90.00")
        );
        let (st, reason) = check(&s, paid("100.00", "ORDER2", None));
        assert_eq!(st, Status::Review);
        assert!(reason.unwrap().contains("reference"));
        let (st, reason) = check(&s, paid("100.00", "ORDER1", Some("ZAR")));
        assert_eq!(st, Status::Review);
        assert!(
            reason
                .unwrap()
                .contains("currency differs: ledger LSL, provider ZAR")
        );
        // Fields the ledger does not hold are not compared.
        let mut bare = session(Duration::from_secs(60));
        bare.amount = None;
        bare.reference = None;
        bare.currency = Some("zar".into());
        match decide(
            &bare,
            &paid("5", "X", Some("ZAR")),
            clock::now(),
            &backoff(),
            Source::Poll,
            0.5,
        ) {
            Record::Transition { to, compared, .. } => {
                assert_eq!(to, Status::Completed);
                assert_eq!(compared, vec!["currency"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn amounts_are_compared_exactly_and_untrusted_ones_go_to_review() {
        let mut s = session(Duration::from_secs(60));
        s.reference = None;
        for (ledger, theirs, want) in [
            ("100.49", "100", Some("underpaid by 0.49")),
            ("100", "100.49", Some("overpaid by 0.49")),
            ("99.50", "100", Some("overpaid by 0.50")),
            ("100.00", "100", None),
            ("100", "100.000", None),
            ("0.30", "0.3", None),
        ] {
            s.amount = Some(Decimal::from_str(ledger).unwrap());
            let mut f = ProviderFacts::new("COMPLETED", Mapped::Paid);
            f.amount = Some(Decimal::from_str(theirs).unwrap());
            let (st, reason) = check(&s, Ok(Answer::Found(f)));
            match want {
                None => assert_eq!(st, Status::Completed, "{ledger} vs {theirs}"),
                Some(w) => {
                    assert_eq!(st, Status::Review, "{ledger} vs {theirs}");
                    let reason = reason.unwrap();
                    assert!(reason.contains(w), "{reason}");
                    assert!(
                        reason.contains(&format!("ledger {ledger}, provider {theirs}")),
                        "{reason}"
                    );
                }
            }
        }
        let mut f = ProviderFacts::new("completed", Mapped::Paid);
        f.amount_problem = Some("amount 5 in minor units of XYZ, whose digits are unknown".into());
        let (st, reason) = check(&s, Ok(Answer::Found(f)));
        assert_eq!(st, Status::Review);
        assert!(reason.unwrap().contains("cannot be compared"));
    }

    #[test]
    fn max_age_closes_only_on_an_answer() {
        let old = session(Duration::from_secs(72 * 3600));
        let mut answered = old.clone();
        answered.answered_checks = 4;
        // No answer never closes a session, answered before or not.
        for s in [&old, &answered] {
            for e in [
                PErr::Status(503),
                PErr::Timeout,
                PErr::LongPollCut,
                PErr::Malformed("x".into()),
            ] {
                assert_eq!(check(s, Err(e)).0, Status::Pending);
            }
        }
        // An answer that it is still pending closes it.
        assert_eq!(check(&old, found(Mapped::Pending)).0, Status::Expired);
        // A young session stays.
        assert_eq!(
            check(&session(Duration::from_secs(60)), found(Mapped::Pending)).0,
            Status::Pending
        );
    }

    #[test]
    fn an_answer_we_cannot_act_on_goes_to_review_after_max_age() {
        let young = session(Duration::from_secs(60));
        let old = session(Duration::from_secs(72 * 3600));
        let mut contradictory = ProviderFacts::new("COMPLETED", Mapped::Unsure);
        contradictory.warning = Some("status COMPLETED but transactionStatus is \"failed\"".into());
        let forged = ProviderFacts::new("PAID\n2026-12-01 INFO forged line", Mapped::Unrecognised);
        for f in [contradictory, forged] {
            let answer = Ok(Answer::Found(f));
            match decide(&young, &answer, clock::now(), &backoff(), Source::Poll, 0.5) {
                Record::Reschedule {
                    answered,
                    charged,
                    last_error,
                    ..
                } => {
                    assert!(!answered, "it never counts toward expiry");
                    assert!(charged);
                    assert!(!last_error.unwrap().contains('\n'));
                }
                other => panic!("{other:?}"),
            }
            let now = clock::now();
            match decide(&old, &answer, now, &backoff(), Source::Poll, 0.5) {
                Record::Transition {
                    to,
                    reason,
                    late_check_at,
                    ..
                } => {
                    assert_eq!(to, Status::Review);
                    let reason = reason.unwrap();
                    assert!(reason.contains("cannot act on"), "{reason}");
                    assert!(!reason.contains('\n'), "escaped: {reason}");
                    assert!(
                        reason.contains("\"COMPLETED\"") || reason.contains("\"PAID2026"),
                        "{reason}"
                    );
                    assert_eq!(
                        late_check_at,
                        Some(clock::add(now, Duration::from_secs(7 * 86400)))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_call_without_a_body_is_not_charged() {
        let s = session(Duration::from_secs(60));
        for (e, charged) in [
            (PErr::Timeout, false),
            (PErr::LongPollCut, false),
            (PErr::Connect("refused".into()), false),
            (
                PErr::NotFoundDoubted {
                    why: "x".into(),
                    flagged: true,
                },
                false,
            ),
            (PErr::Status(502), true),
            (PErr::Malformed("x".into()), true),
        ] {
            match decide(
                &s,
                &Err(e.clone()),
                clock::now(),
                &backoff(),
                Source::Poll,
                0.5,
            ) {
                Record::Reschedule {
                    charged: c,
                    answered,
                    not_found,
                    ..
                } => {
                    assert_eq!(c, charged, "{e}");
                    assert!(!answered);
                    assert_eq!(not_found, None, "{e} leaves the 404 count alone");
                }
                other => panic!("{e}: {other:?}"),
            }
        }
        // A misdirected provider's sessions are asked again only at backoff.max.
        let now = clock::now();
        let doubted = |flagged| PErr::NotFoundDoubted {
            why: "x".into(),
            flagged,
        };
        for (flagged, wait) in [(true, 3600), (false, 30)] {
            match decide(
                &s,
                &Err(doubted(flagged)),
                now,
                &backoff(),
                Source::Poll,
                0.5,
            ) {
                Record::Reschedule { next_check_at, .. } => {
                    assert_eq!(next_check_at, clock::add(now, Duration::from_secs(wait)))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn not_found_counts_to_expiry() {
        let mut s = session(Duration::from_secs(60));
        assert_eq!(check(&s, Ok(Answer::NotFound)).0, Status::Pending);
        s.not_found_count = 2;
        assert_eq!(
            check(&s, Ok(Answer::NotFound)),
            (Status::Expired, Some("not found at provider".into()))
        );
    }

    #[test]
    fn providerwide_failures_are_not_charged() {
        let s = session(Duration::from_secs(60));
        let now = clock::now();
        match decide(
            &s,
            &Err(PErr::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            }),
            now,
            &backoff(),
            Source::Poll,
            0.5,
        ) {
            Record::Reschedule {
                charged,
                next_check_at,
                ..
            } => {
                assert!(!charged);
                assert_eq!(next_check_at, clock::add(now, Duration::from_secs(9)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(
                &s,
                &Err(PErr::Unauthorized(401)),
                now,
                &backoff(),
                Source::Poll,
                0.5
            ),
            Record::Release { .. }
        ));
    }

    #[test]
    fn a_transition_keeps_when_a_scheduled_check_last_saw_the_session_pending() {
        let mut s = session(Duration::from_secs(60));
        let now = clock::now();
        let since = |s: &Session, source| match decide(
            s,
            &found(Mapped::Failed),
            now,
            &backoff(),
            source,
            0.5,
        ) {
            Record::Transition { pending_since, .. } => pending_since,
            other => panic!("{other:?}"),
        };
        // Never checked: since its creation.
        assert_eq!(since(&s, Source::Poll), Some(s.created_at));
        let checked = clock::sub(now, Duration::from_secs(10));
        s.last_checked_at = Some(checked);
        assert_eq!(since(&s, Source::Poll), Some(checked));
        assert_eq!(since(&s, Source::Backfill), Some(checked));
        // A check on a signal: the answer is as old as the signal.
        assert_eq!(since(&s, Source::Api), None);
    }

    /// The delay, in ms, before the next check after a "still pending" answer at `now`.
    fn delay_ms(s: &Session, b: &BackoffConfig, now: Timestamp, jitter: f64) -> i64 {
        match decide(s, &found(Mapped::Pending), now, b, Source::Poll, jitter) {
            Record::Reschedule { next_check_at, .. } => (next_check_at - now).num_milliseconds(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_jitters_and_caps() {
        let mut s = session(Duration::from_secs(60));
        let now = clock::now();
        let b = backoff();
        let at = |s: &Session, j: f64| delay_ms(s, &b, now, j);
        assert_eq!(at(&s, 0.5), 30_000);
        assert_eq!(at(&s, 0.0), 24_000);
        s.checks = 3;
        assert_eq!(at(&s, 0.5), 240_000);
        s.checks = 30;
        assert_eq!(at(&s, 0.5), 3_600_000);
        // Never past the max_age deadline once answered.
        let mut near = session(Duration::from_secs(48 * 3600 - 100));
        near.checks = 30;
        near.answered_checks = 1;
        let ms = at(&near, 0.5);
        assert!((99_000..=100_000).contains(&ms), "{ms}");
    }

    /// An explicit schedule: the n-th check is followed by the n-th delay, the last one
    /// repeating; jitter as for the exponential form; never past the max_age deadline.
    #[test]
    fn a_schedule_gives_each_check_its_delay() {
        let now = clock::now();
        let b = BackoffConfig {
            schedule: ["10s", "20s", "45s", "2m"]
                .iter()
                .map(|d| humantime::parse_duration(d).unwrap())
                .collect(),
            ..backoff()
        };
        let at = |s: &Session, j: f64| delay_ms(s, &b, now, j);
        let mut s = session(Duration::from_secs(5));
        // checks is the count before this one: the first check is followed by 10 s.
        for (checks, want) in [
            (0, 10_000),
            (1, 20_000),
            (2, 45_000),
            (3, 120_000),
            (9, 120_000),
        ] {
            s.checks = checks;
            assert_eq!(at(&s, 0.5), want, "after check {}", checks + 1);
        }
        s.checks = 0;
        assert_eq!(at(&s, 1.0), 12_000, "jitter 0.2 at its top");
        let mut near = session(Duration::from_secs(48 * 3600 - 7));
        near.checks = 3;
        near.answered_checks = 1;
        let ms = at(&near, 0.5);
        assert!((6_000..=7_000).contains(&ms), "{ms}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn mapped() -> impl Strategy<Value = Mapped> {
            prop::sample::select(vec![
                Mapped::Pending,
                Mapped::Paid,
                Mapped::Failed,
                Mapped::Cancelled,
                Mapped::Expired,
                Mapped::Unrecognised,
                Mapped::Unsure,
            ])
        }

        proptest! {
            /// Only a provider's own word reaches a final state; COMPLETED needs every compared
            /// field to match; a young session is never expired by age.
            #[test]
            fn decisions_follow_the_provider_and_the_ledger(
                m in mapped(),
                cents in 0u32..100_000,
                ledger_cents in 0u32..100_000,
                same_ref in any::<bool>(),
                jitter in 0.0f64..1.0,
            ) {
                let mut s = session(Duration::from_secs(60));
                s.amount = Some(Decimal::new(i64::from(ledger_cents), 2));
                let mut f = ProviderFacts::new("X", m);
                f.amount = Some(Decimal::new(i64::from(cents), 2));
                f.reference = Some(if same_ref { "ORDER1".into() } else { "ORDER2".into() });
                let rec = decide(&s, &Ok(Answer::Found(f)), clock::now(), &backoff(), Source::Poll, jitter);
                let to = match rec {
                    Record::Transition { to, .. } => Some(to),
                    _ => None,
                };
                let matches = cents == ledger_cents && same_ref;
                let want = match m {
                    Mapped::Paid if matches => Some(Status::Completed),
                    Mapped::Paid => Some(Status::Review),
                    Mapped::Failed => Some(Status::Failed),
                    Mapped::Cancelled => Some(Status::Cancelled),
                    Mapped::Expired => Some(Status::Expired),
                    Mapped::Pending | Mapped::Unrecognised | Mapped::Unsure => None,
                };
                prop_assert_eq!(to, want);
            }
        }
    }
}
