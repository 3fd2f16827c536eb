//! Recording outcomes: the compare-and-set that moves a session out of PENDING with its
//! transition row and its event in one transaction, reschedules, releases, late checks and
//! anomalies.

use std::collections::HashMap;

use super::db::{DbError, Mode, Tx, Val, vals};
use super::event::{self, Written};
use super::rows::*;
use super::*;
use crate::clock::{self, Timestamp};

/// The transition's compare-and-set (hot path: one per resolved session), with `$more` set.
macro_rules! transition_cas {
    ($more:literal) => {
        concat!(
            "UPDATE sessions SET status = ?1, resolved_at = ?2, checks = checks + ?3, \
             answered_checks = answered_checks + ?3, \
             last_checked_at = CASE WHEN ?3 = 1 THEN ?2 ELSE last_checked_at END, \
             provider_status = coalesce(?4, provider_status), \
             transaction_id = coalesce(?5, transaction_id), \
             payment_method = coalesce(?6, payment_method), \
             provider_completed_at = coalesce(?7, provider_completed_at), ",
            $more,
            "last_error = NULL, lease_owner = NULL, lease_until = NULL, late_check_at = ?10 \
             WHERE id = ?8 AND status = ?9"
        )
    };
}

/// SQLite: a plain UPDATE, the row read back by rowid after (`RETURNING` opens a temporary
/// table per statement there, the largest single cost of recording when profiled).
pub(super) const TRANSITION_CAS: &str = transition_cas!("");
/// The same, filling an empty `provider_ref` from the answer (`?11`). Only an answer that
/// brings one writes the column: setting it at all makes SQLite weigh its partial index.
pub(super) const TRANSITION_CAS_REF: &str =
    transition_cas!("provider_ref = coalesce(provider_ref, ?11), ");

/// A transition row's text fields after its session, in `insert_transition!`'s order (the
/// one-by-one and the set-based record share it).
pub(super) fn transition_fields<'a>(
    from: Status,
    to: Status,
    source: Source,
    reason: Option<&'a str>,
    facts: &'a Facts,
    actor: Option<&'a str>,
) -> [Option<&'a str>; 12] {
    [
        Some(from.as_str()),
        Some(to.as_str()),
        Some(source.as_str()),
        reason,
        facts.provider_status.as_deref(),
        facts.transaction_id.as_deref(),
        facts.payment_method.as_deref(),
        facts.amount.as_deref(),
        facts.reference.as_deref(),
        facts.currency.as_deref(),
        facts.provider_completed_at.as_deref(),
        actor,
    ]
}

/// What a transition's event needs of the row it moved, read back by rowid after the
/// compare-and-set (SQLite): the row as it now is, six columns rather than the whole session —
/// reading and typing all 22 was 8% of `once`'s instructions.
const SUBJECT_BY_ROWID: &str =
    "SELECT provider, session_id, reference, amount, currency, checks FROM sessions WHERE id = ?1";

struct SubjectRow {
    provider: String,
    session_id: String,
    reference: Option<String>,
    amount: Option<rust_decimal::Decimal>,
    currency: Option<String>,
    checks: i64,
}

impl SubjectRow {
    fn read(r: &super::db::Row<'_>) -> Result<SubjectRow, DbError> {
        Ok(SubjectRow {
            provider: r.get(0)?,
            session_id: r.get(1)?,
            reference: r.get(2)?,
            amount: super::rows::amount(r.get(3)?)?,
            currency: r.get(4)?,
            checks: r.get(5)?,
        })
    }

    fn subject(&self) -> event::Subject<'_> {
        event::Subject {
            provider: &self.provider,
            session_id: &self.session_id,
            reference: self.reference.as_deref(),
            amount: self.amount,
            currency: self.currency.as_deref(),
        }
    }
}

/// A transition's event (`from` → `to`): a new id and its JSON, for the session whose `checks`
/// are now `checks`.
pub(super) fn transition_event(
    now_s: &str,
    session: event::Subject<'_>,
    checks: i64,
    (from, to): (Status, Status),
    (reason, actor): (Option<&str>, Option<&str>),
    facts: &Facts,
    compared: &[&'static str],
) -> Written {
    let id = event::new_id();
    let e = event::TransitionEvent {
        id: &id,
        created_at: now_s,
        session,
        checks,
        from,
        to,
        reason,
        actor,
        facts,
        compared,
    };
    let payload = event::transition_payload(&e);
    let line = event::transition_line(&e);
    Written {
        id,
        kind: to.event_type(),
        payload,
        line,
    }
}

macro_rules! insert_transition {
    () => {
        "INSERT INTO transitions (session, from_status, to_status, source, reason, \
         provider_status, transaction_id, payment_method, provider_amount, \
         provider_reference, provider_currency, provider_completed_at, actor, at, pending_since) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    };
}

pub(super) const INSERT_TRANSITION: &str = insert_transition!();

pub(super) const LATE_CHECK_DONE: &str = concat!(
    "UPDATE sessions SET late_check_at = ?1, last_error = coalesce(?2, last_error), \
     lease_owner = NULL, lease_until = NULL \
     WHERE id = ?3 AND lease_owner = ?4 AND (status = 'EXPIRED' OR status = 'REVIEW') RETURNING ",
    session_cols!()
);

/// The set-based compare-and-set of a group's transitions on PostgreSQL: one UPDATE … FROM
/// unnest(…) RETURNING the sessions that moved, then their transition rows and events in one
/// INSERT each. A session that lost the compare-and-set takes the one-by-one path (its anomaly).
pub(super) const PG_TRANSITIONS_CAS: &str = "UPDATE sessions s SET status = v.to_status, resolved_at = ?1, \
     checks = s.checks + v.charged, answered_checks = s.answered_checks + v.charged, \
     last_checked_at = CASE WHEN v.charged = 1 THEN ?1 ELSE s.last_checked_at END, \
     provider_status = coalesce(v.provider_status, s.provider_status), \
     transaction_id = coalesce(v.transaction_id, s.transaction_id), \
     payment_method = coalesce(v.payment_method, s.payment_method), \
     provider_completed_at = coalesce(v.provider_completed_at, s.provider_completed_at), \
     provider_ref = coalesce(s.provider_ref, v.provider_ref), \
     last_error = NULL, lease_owner = NULL, lease_until = NULL, late_check_at = v.late_check_at \
     FROM unnest(?2::bigint[], ?3::text[], ?4::text[], ?5::bigint[], ?6::text[], ?7::text[], \
                 ?8::text[], ?9::text[], ?10::text[], ?11::text[]) \
          AS v(id, from_status, to_status, charged, provider_status, transaction_id, \
               payment_method, provider_completed_at, late_check_at, provider_ref) \
     WHERE s.id = v.id AND s.status = v.from_status \
     RETURNING s.id, s.provider, s.session_id, s.reference, s.amount, s.currency, s.status, \
     s.created_at, s.next_check_at, s.checks, s.answered_checks, s.not_found_count, \
     s.last_checked_at, s.last_error, s.lease_owner, s.lease_until, s.provider_status, \
     s.transaction_id, s.payment_method, s.provider_completed_at, s.resolved_at, s.late_check_at, \
     s.provider_ref, s.listed_at";

pub(super) const PG_INSERT_TRANSITIONS: &str = "INSERT INTO transitions (session, from_status, to_status, at, \
     source, reason, provider_status, transaction_id, payment_method, provider_amount, \
     provider_reference, provider_currency, provider_completed_at, actor, pending_since) \
     SELECT v.session, v.from_status, v.to_status, ?1, v.source, v.reason, v.provider_status, \
            v.transaction_id, v.payment_method, v.provider_amount, v.provider_reference, \
            v.provider_currency, v.provider_completed_at, v.actor, v.pending_since \
     FROM unnest(?2::bigint[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], ?7::text[], \
                 ?8::text[], ?9::text[], ?10::text[], ?11::text[], ?12::text[], ?13::text[], \
                 ?14::text[], ?15::text[]) \
          AS v(session, from_status, to_status, source, reason, provider_status, transaction_id, \
               payment_method, provider_amount, provider_reference, provider_currency, \
               provider_completed_at, actor, pending_since)";

pub(super) const PG_INSERT_EVENTS: &str = "INSERT INTO events (id, type, session, payload, created_at, \
     next_attempt_at) \
     SELECT v.id, v.type, v.session, v.payload, ?1, ?1 \
     FROM unnest(?2::text[], ?3::text[], ?4::bigint[], ?5::text[]) AS v(id, type, session, payload)";

pub(super) fn record_transitions_pg(
    tx: &mut Tx<'_>,
    now_s: &str,
    records: &[Record],
    judge: Judge,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    let transitions: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::Transition { .. }))
        .collect();
    let moved = compare_and_set_pg(tx, now_s, &transitions)?;
    let pending: Vec<Option<String>> = transitions
        .iter()
        .map(|r| match r {
            Record::Transition { pending_since, .. } => pending_since.map(clock::format),
            _ => None,
        })
        .collect();
    let mut t_pending: Vec<Option<&str>> = Vec::new();
    let mut t_sessions = Vec::new();
    let mut t_cols: [Vec<Option<&str>>; 12] = Default::default();
    let mut events: Vec<(i64, Written)> = Vec::new();
    for (r, pending) in transitions.iter().zip(&pending) {
        let Record::Transition {
            rowid,
            from,
            to,
            source,
            reason,
            facts,
            compared,
            actor,
            ..
        } = r
        else {
            continue;
        };
        let Some(session) = moved.get(rowid) else {
            // Lost the compare-and-set: someone recorded this session first.
            lost_cas(tx, *rowid, *source, *to, facts, now_s, judge, written)?;
            continue;
        };
        t_sessions.push(*rowid);
        t_pending.push(pending.as_deref());
        let fields = transition_fields(
            *from,
            *to,
            *source,
            reason.as_deref(),
            facts,
            actor.as_deref(),
        );
        for (col, v) in t_cols.iter_mut().zip(fields) {
            col.push(v);
        }
        let (checks, reason) = (session.checks, reason.as_deref());
        let event = transition_event(
            now_s,
            session.into(),
            checks,
            (*from, *to),
            (reason, actor.as_deref()),
            facts,
            compared,
        );
        events.push((*rowid, event));
    }
    if t_sessions.is_empty() {
        return Ok(());
    }
    let mut params: Vec<Val<'_>> = vec![Val::from(now_s), Val::from(&t_sessions[..])];
    params.extend(t_cols.iter().map(|c| Val::from(&c[..])));
    params.push(Val::from(&t_pending[..]));
    tx.exec(PG_INSERT_TRANSITIONS, &params)?;
    let e_ids: Vec<Option<&str>> = events.iter().map(|e| Some(e.1.id.as_str())).collect();
    let e_types: Vec<Option<&str>> = events.iter().map(|e| Some(e.1.kind)).collect();
    let e_sessions: Vec<i64> = events.iter().map(|e| e.0).collect();
    let e_payloads: Vec<Option<&str>> = events.iter().map(|e| Some(e.1.payload.as_str())).collect();
    tx.exec(
        PG_INSERT_EVENTS,
        vals![
            now_s,
            &e_ids[..],
            &e_types[..],
            &e_sessions[..],
            &e_payloads[..]
        ],
    )?;
    written.extend(events.into_iter().map(|(_, event)| event));
    Ok(())
}

/// The compare-and-set of every transition in one statement: the sessions that moved, as they
/// now are, by rowid.
fn compare_and_set_pg(
    tx: &mut Tx<'_>,
    now_s: &str,
    transitions: &[&Record],
) -> Result<HashMap<i64, Session>, DbError> {
    let lates: Vec<Option<String>> = transitions
        .iter()
        .map(|r| match r {
            Record::Transition { late_check_at, .. } => late_check_at.map(clock::format),
            _ => None,
        })
        .collect();
    let mut ids = Vec::new();
    let mut charged = Vec::new();
    let mut cols: [Vec<Option<&str>>; 8] = Default::default();
    for (r, late) in transitions.iter().zip(&lates) {
        let Record::Transition {
            rowid,
            from,
            to,
            facts,
            charged: c,
            ..
        } = r
        else {
            continue;
        };
        ids.push(*rowid);
        charged.push(i64::from(*c));
        cols[0].push(Some(from.as_str()));
        cols[1].push(Some(to.as_str()));
        cols[2].push(facts.provider_status.as_deref());
        cols[3].push(facts.transaction_id.as_deref());
        cols[4].push(facts.payment_method.as_deref());
        cols[5].push(facts.provider_completed_at.as_deref());
        cols[6].push(late.as_deref());
        cols[7].push(facts.provider_ref.as_deref());
    }
    let moved = tx.query(
        PG_TRANSITIONS_CAS,
        vals![
            now_s,
            &ids[..],
            &cols[0][..],
            &cols[1][..],
            &charged[..],
            &cols[2][..],
            &cols[3][..],
            &cols[4][..],
            &cols[5][..],
            &cols[6][..],
            &cols[7][..]
        ],
        session_from_row,
    )?;
    Ok(moved.into_iter().map(|s| (s.rowid, s)).collect())
}

/// A transition that lost its compare-and-set: someone recorded this session first. `judge`
/// says whether that is an anomaly to report.
#[allow(clippy::too_many_arguments)] // the transition's parts, the transaction and its output
pub(super) fn lost_cas(
    tx: &mut Tx<'_>,
    rowid: i64,
    source: Source,
    to: Status,
    facts: &Facts,
    now_s: &str,
    judge: Judge,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    let recorded = tx.query_opt(SESSION_BY_ROWID, vals![rowid], session_from_row)?;
    match recorded
        .as_ref()
        .and_then(|cur| Some((cur, judge(cur, source, to, facts)?)))
    {
        Some((cur, anomaly)) => written.push(write_anomaly(tx, cur, &anomaly, now_s)?),
        None => tracing::debug!(
            rowid,
            "transition lost the compare-and-set; already recorded"
        ),
    }
    Ok(())
}

/// One outcome of [`Ledger::record`]: any on SQLite; on PostgreSQL all but transitions, which
/// `record_transitions_pg` writes set-based.
pub(super) fn record_one(
    tx: &mut Tx<'_>,
    owner: &str,
    now_s: &str,
    rec: &Record,
    judge: Judge,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    match rec {
        Record::Transition { .. } => transition_one(tx, now_s, rec, judge, written),
        Record::Reschedule { .. } => reschedule_one(tx, owner, now_s, rec),
        Record::Release { rowid, last_error } => {
            // Due again at once: a PENDING session's check, or an EXPIRED one's late check.
            tx.exec(
                "UPDATE sessions SET \
                 next_check_at = CASE WHEN status = 'PENDING' THEN ?1 ELSE next_check_at END, \
                 late_check_at = CASE WHEN status <> 'PENDING' AND late_check_at IS NOT NULL THEN ?1 \
                                 ELSE late_check_at END, \
                 lease_owner = NULL, lease_until = NULL, \
                 last_error = CASE WHEN status = 'PENDING' THEN coalesce(?2, last_error) ELSE last_error END \
                 WHERE id = ?3 AND lease_owner = ?4",
                vals![now_s, last_error.as_deref(), *rowid, owner],
            )?;
            Ok(())
        }
        Record::LateCheck {
            rowid,
            next,
            last_error,
            anomaly,
        } => {
            let next = next.map(clock::format);
            let updated = tx.query_opt(
                LATE_CHECK_DONE,
                vals![next.as_deref(), last_error.as_deref(), *rowid, owner],
                session_from_row,
            )?;
            if let (Some(session), Some(anomaly)) = (updated, anomaly) {
                written.push(write_anomaly(tx, &session, anomaly, now_s)?);
            }
            Ok(())
        }
    }
}

/// A [`Record::Transition`] on SQLite: the compare-and-set, the row read back, the transition
/// row and the event. (Anything else is not written here.)
fn transition_one(
    tx: &mut Tx<'_>,
    now_s: &str,
    rec: &Record,
    judge: Judge,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    let Record::Transition {
        rowid,
        from,
        to,
        source,
        reason,
        facts,
        charged,
        compared,
        late_check_at,
        actor,
        pending_since,
    } = rec
    else {
        return Ok(());
    };
    let late = late_check_at.map(clock::format);
    let pending_since = pending_since.map(clock::format);
    let all: &[Val<'_>] = vals![
        to.as_str(),
        now_s,
        i64::from(*charged),
        facts.provider_status.as_deref(),
        facts.transaction_id.as_deref(),
        facts.payment_method.as_deref(),
        facts.provider_completed_at.as_deref(),
        *rowid,
        from.as_str(),
        late.as_deref(),
        facts.provider_ref.as_deref()
    ];
    // SQLite only: PostgreSQL records transitions in `record_transitions_pg`.
    let (sql, cas) = match facts.provider_ref {
        None => (TRANSITION_CAS, &all[..10]),
        Some(_) => (TRANSITION_CAS_REF, all),
    };
    let read_back = if tx.exec(sql, cas)? == 1 {
        tx.query_opt(SUBJECT_BY_ROWID, vals![*rowid], SubjectRow::read)?
    } else {
        None
    };
    let Some(moved) = &read_back else {
        return lost_cas(tx, *rowid, *source, *to, facts, now_s, judge, written);
    };
    let reason = reason.as_deref();
    let event = transition_event(
        now_s,
        moved.subject(),
        moved.checks,
        (*from, *to),
        (reason, actor.as_deref()),
        facts,
        compared,
    );
    let mut row = Vec::with_capacity(16);
    row.push(Val::Int(*rowid));
    row.extend(
        transition_fields(*from, *to, *source, reason, facts, actor.as_deref()).map(Val::from),
    );
    row.push(Val::Text(now_s));
    row.push(Val::from(pending_since.as_deref()));
    tx.exec(INSERT_TRANSITION, &row)?;
    insert_event(tx, &event.id, event.kind, *rowid, &event.payload, now_s)?;
    written.push(event);
    Ok(())
}

/// A [`Record::Reschedule`]: still PENDING, due again, the lease given back. (Anything else is
/// not written here.)
fn reschedule_one(tx: &mut Tx<'_>, owner: &str, now_s: &str, rec: &Record) -> Result<(), DbError> {
    let Record::Reschedule {
        rowid,
        next_check_at,
        last_error,
        answered,
        not_found,
        charged,
        facts,
    } = rec
    else {
        return Ok(());
    };
    let f = facts.clone().unwrap_or_default();
    tx.exec(
        "UPDATE sessions SET next_check_at = ?1, last_error = ?2, checks = checks + ?3, \
         answered_checks = answered_checks + ?4, \
         last_checked_at = CASE WHEN ?3 = 1 THEN ?5 ELSE last_checked_at END, \
         not_found_count = CASE CAST(?6 AS BIGINT) WHEN 1 THEN not_found_count + 1 \
                           WHEN 0 THEN 0 ELSE not_found_count END, \
         provider_status = coalesce(?7, provider_status), \
         transaction_id = coalesce(?8, transaction_id), \
         payment_method = coalesce(?9, payment_method), \
         provider_ref = coalesce(provider_ref, ?12), \
         lease_owner = NULL, lease_until = NULL \
         WHERE id = ?10 AND status = 'PENDING' AND lease_owner = ?11",
        vals![
            &clock::format(*next_check_at),
            last_error.as_deref(),
            i64::from(*charged),
            i64::from(*answered),
            now_s,
            not_found.map(i64::from),
            f.provider_status.as_deref(),
            f.transaction_id.as_deref(),
            f.payment_method.as_deref(),
            *rowid,
            owner,
            f.provider_ref.as_deref()
        ],
    )?;
    Ok(())
}

pub(super) fn insert_event(
    tx: &mut Tx<'_>,
    id: &str,
    kind: &str,
    rowid: i64,
    payload: &str,
    now: &str,
) -> Result<u64, DbError> {
    tx.exec(
        "INSERT INTO events (id, type, session, payload, created_at, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        vals![id, kind, rowid, payload, now],
    )
}

/// Writes a `session.anomaly` event (no state change) and returns it.
pub(super) fn write_anomaly(
    tx: &mut Tx<'_>,
    session: &Session,
    anomaly: &Anomaly,
    now: &str,
) -> Result<Written, DbError> {
    let id = event::new_id();
    let payload = event::anomaly_payload(&id, now, session, anomaly);
    tracing::warn!(provider = %session.provider, session_id = %session.session_id, recorded = %session.status,
        provider_says = %anomaly.provider_says, "anomaly: {}", anomaly.reason);
    insert_event(tx, &id, event::ANOMALY, session.rowid, &payload, now)?;
    Ok(Written {
        id,
        kind: event::ANOMALY,
        payload,
        line: event::anomaly_line(session, anomaly),
    })
}

impl Ledger {
    /// Records a group of outcomes in one transaction. Transitions are compare-and-set on the
    /// status, each written with its transition row and event; reschedules and releases apply
    /// while `owner` still holds the lease; a transition that loses its compare-and-set is an
    /// anomaly when `judge` says so; `checks` go to the history of checks in the same
    /// transaction. Returns the events written.
    pub fn record(
        &self,
        owner: &str,
        now: Timestamp,
        records: &[Record],
        checks: &[super::CheckNote],
        judge: Judge,
    ) -> Result<Vec<Written>, Error> {
        let now_s = clock::format(now);
        self.tx(Mode::Write, "recording outcomes", |tx| {
            let written = record_in(tx, owner, &now_s, records, judge)?;
            super::history::checks_in(tx, checks)?;
            Ok(written)
        })
    }

    /// [`Ledger::record`] of a person's decision, with its entry in the audit log in the same
    /// transaction — written only when the decision was (a session another check closed first
    /// records nothing, and no entry).
    pub fn record_decision(
        &self,
        now: Timestamp,
        records: &[Record],
        judge: Judge,
        audit: &Audit<'_>,
    ) -> Result<Vec<Written>, Error> {
        let now_s = clock::format(now);
        self.tx(Mode::Write, "recording a decision", |tx| {
            let written = record_in(tx, "manual", &now_s, records, judge)?;
            if !written.is_empty() {
                audit_in(tx, &now_s, audit)?;
            }
            Ok(written)
        })
    }
}

/// Records outcomes inside `tx` (see [`Ledger::record`]).
fn record_in(
    tx: &mut Tx<'_>,
    owner: &str,
    now_s: &str,
    records: &[Record],
    judge: Judge,
) -> Result<Vec<Written>, DbError> {
    let mut written = Vec::new();
    // PostgreSQL pays per statement (a round trip, and its CHECK and index predicates prepared
    // per execution): its transitions go in three set-based statements, however many there
    // are. SQLite records them one by one (`record_one`).
    let pg = tx.is_pg();
    if pg
        && records
            .iter()
            .any(|r| matches!(r, Record::Transition { .. }))
    {
        record_transitions_pg(tx, now_s, records, judge, &mut written)?;
    }
    for rec in records {
        if pg && matches!(rec, Record::Transition { .. }) {
            continue;
        }
        record_one(tx, owner, now_s, rec, judge, &mut written)?;
    }
    Ok(written)
}

/// Appends one entry to the audit log.
pub(super) fn audit_in(tx: &mut Tx<'_>, now_s: &str, a: &Audit<'_>) -> Result<(), DbError> {
    tx.exec(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        vals![
            now_s,
            a.actor,
            a.action,
            a.target.as_deref(),
            a.detail.as_deref()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The set-based compare-and-set returns the columns every other read of a session does,
    /// in the same order (a column added to one and not the other broke every PostgreSQL
    /// transition once).
    #[test]
    fn the_pg_compare_and_set_returns_the_session_columns() {
        let returning = super::PG_TRANSITIONS_CAS
            .split("RETURNING")
            .nth(1)
            .unwrap()
            .replace("s.", "");
        let words = |t: &str| {
            t.split(',')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(&returning),
            words(super::super::rows::session_cols!())
        );
    }
}
