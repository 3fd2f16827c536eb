//! Reading rows: the session and event columns every room selects, and how a row becomes a
//! [`Session`] — or, when payrecon cannot read it, an [`Unreadable`] to set aside.

use super::db::{AnyText, DbError, Row};
use super::*;
use crate::clock;

/// The columns `session_from_row` reads, as a literal so that hot-path SQL can be built at
/// compile time with `concat!` instead of a `format!` per statement.
macro_rules! session_cols {
    () => {
        "id, provider, session_id, reference, amount, currency, status, created_at, \
         next_check_at, checks, answered_checks, not_found_count, last_checked_at, last_error, \
         lease_owner, lease_until, provider_status, transaction_id, payment_method, \
         provider_completed_at, resolved_at, late_check_at, provider_ref, listed_at"
    };
}
pub(super) use session_cols;

pub(super) const SESSION_BY_ROWID: &str =
    concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?1");

macro_rules! event_cols {
    () => {
        "e.id, e.type, e.created_at, e.payload, e.attempts, e.next_attempt_at, \
         e.delivered_at, e.dead_at, e.last_error"
    };
}
pub(super) use event_cols;

/// Reads [`event_cols`] starting at column `at`.
pub(super) fn event_from_row(r: &Row<'_>, at: usize) -> Result<Event, DbError> {
    Ok(Event {
        id: r.get(at)?,
        kind: r.get(at + 1)?,
        created_at: r.get(at + 2)?,
        payload: r.get(at + 3)?,
        attempts: r.get(at + 4)?,
        next_attempt_at: r.get(at + 5)?,
        delivered_at: r.get(at + 6)?,
        dead_at: r.get(at + 7)?,
        last_error: r.get(at + 8)?,
    })
}

/// The marker `last_error` carries while a row is set aside (`stats` counts it).
pub const UNREADABLE_MARK: &str = "unreadable row: ";

/// A row as a session, or as [`Unreadable`] when a column has the wrong type or a value payrecon
/// would refuse. Only a row without a readable id is an error.
pub(super) fn read_session(r: &Row<'_>) -> Result<Result<Session, Unreadable>, DbError> {
    let unreadable = |error: String| -> Result<Unreadable, DbError> {
        let provider = r
            .get::<AnyText>(1)
            .ok()
            .and_then(|t| t.0)
            .map_or_else(|| "?".to_string(), |p| p.escape_debug().to_string());
        Ok(Unreadable {
            rowid: r.get(0)?,
            provider,
            error,
        })
    };
    match session_from_row(r) {
        Ok(s) => match s.unusable() {
            None => Ok(Ok(s)),
            Some(why) => Ok(Err(unreadable(why)?)),
        },
        Err(e) => Ok(Err(unreadable(e.to_string())?)),
    }
}

/// Splits read rows into sessions and rows set aside.
pub(super) fn split(rows: Vec<Result<Session, Unreadable>>) -> Claimed {
    let mut c = Claimed::default();
    for r in rows {
        match r {
            Ok(s) => c.sessions.push(s),
            Err(u) => c.unreadable.push(u),
        }
    }
    c
}

pub(super) fn session_from_row(r: &Row<'_>) -> Result<Session, DbError> {
    Ok(Session {
        rowid: r.get(0)?,
        provider: r.get(1)?,
        session_id: r.get(2)?,
        reference: r.get(3)?,
        amount: amount(r.get(4)?)?,
        currency: r.get(5)?,
        status: {
            let text: String = r.get(6)?;
            text.parse().map_err(DbError::Value)?
        },
        created_at: time("created_at", r.get(7)?)?,
        next_check_at: time("next_check_at", r.get(8)?)?,
        checks: r.get(9)?,
        answered_checks: r.get(10)?,
        not_found_count: r.get(11)?,
        last_checked_at: opt_time("last_checked_at", r.get(12)?)?,
        last_error: r.get(13)?,
        lease_owner: r.get(14)?,
        lease_until: opt_time("lease_until", r.get(15)?)?,
        provider_status: r.get(16)?,
        transaction_id: r.get(17)?,
        payment_method: r.get(18)?,
        provider_completed_at: r.get(19)?,
        resolved_at: opt_time("resolved_at", r.get(20)?)?,
        late_check_at: opt_time("late_check_at", r.get(21)?)?,
        provider_ref: r.get(22)?,
        listed_at: opt_time("listed_at", r.get(23)?)?,
    })
}

/// A time column's text as a time, or why the row cannot be read.
fn time(column: &str, text: String) -> Result<clock::Timestamp, DbError> {
    clock::parse(&text).ok_or_else(|| {
        DbError::Value(format!(
            "{column} {:?} is not a time",
            text.escape_debug().to_string()
        ))
    })
}

/// A time column that may be NULL.
pub(super) fn opt_time(
    column: &str,
    text: Option<String>,
) -> Result<Option<clock::Timestamp>, DbError> {
    text.map(|t| time(column, t)).transpose()
}

/// The amount column's decimal text as an exact decimal, or why the row cannot be read (the
/// schema allows 40 digits; a decimal holds 28).
pub(super) fn amount(text: Option<String>) -> Result<Option<rust_decimal::Decimal>, DbError> {
    text.map(|t| {
        t.parse().map_err(|_| {
            DbError::Value(format!(
                "amount {:?} is not a decimal payrecon can hold",
                t.escape_debug().to_string()
            ))
        })
    })
    .transpose()
}

/// The columns of `unmatched_payments`, in [`Unmatched`]'s order.
macro_rules! unmatched_cols {
    () => {
        "id, provider, payment_id, other_id, amount, currency, provider_status, receipt, \
         provider_created_at, first_seen_at, last_seen_at, reported_at, matched_session, \
         matched_at, dismissed_at, dismissed_by, dismiss_reason"
    };
}
pub(super) use unmatched_cols;
