//! The bounded history of what payrecon asked and sent: one row per check of a session
//! (`checks`) and one per delivery attempt of an event (`delivery_attempts`), kept for
//! `[ledger] history` and pruned after (the console's stories read them). Whitelisted facts
//! only — the time, the outcome, the HTTP status, the provider's status word, our own error
//! text, how long it took — never a body.

use serde::Serialize;

use super::db::{DbError, Mode, Tx, vals};
use super::*;
use crate::clock::{self, Timestamp};

/// The longest provider status word kept in a check row (a provider's word, clipped).
const MAX_WORD: usize = 64;
/// The longest error text kept (our own words, clipped).
const MAX_ERROR: usize = 200;
/// Rows one prune statement removes at most: a prune never holds the write lock long.
pub const PRUNE_BATCH: u32 = 5_000;

/// How a check learned what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A status call to the provider.
    Call,
    /// A signed callback the provider sent.
    Callback,
    /// A page of the provider's list of payments.
    List,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Call => "call",
            Via::Callback => "callback",
            Via::List => "list",
        }
    }
}

/// One check of a session, to be written with its outcome by [`Ledger::record`].
#[derive(Debug, Clone)]
pub struct CheckNote {
    /// The session's row.
    pub session: i64,
    /// When the check began.
    pub at: Timestamp,
    pub via: Via,
    /// Who asked: a pass (`poll`), `backfill`, `api`, `manual`.
    pub source: Source,
    /// What came of it, as the `payrecon_checks_total` metric labels it (`paid`, `pending`,
    /// `not_found`, `error`, …).
    pub outcome: &'static str,
    /// The last call's HTTP status, when a response came.
    pub http_status: Option<u16>,
    /// The provider's status word, as it said it (clipped).
    pub provider_status: Option<String>,
    /// Our own words for a failure (never a body).
    pub error: Option<String>,
    /// How long the check took, retries included (`None` for a callback).
    pub took_ms: Option<u64>,
}

/// One delivery attempt of an event, written by [`Ledger::record_deliveries`].
#[derive(Debug, Clone)]
pub struct AttemptNote {
    /// The event's `seq`.
    pub event: i64,
    pub at: Timestamp,
    /// `delivered`, `retried` or `dead`.
    pub outcome: &'static str,
    pub error: Option<String>,
    pub took_ms: u64,
}

/// A check as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub at: String,
    pub via: String,
    pub source: String,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub provider_status: Option<String>,
    pub error: Option<String>,
    pub took_ms: Option<i64>,
}

/// A delivery attempt as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    /// The event's id.
    pub event_id: String,
    pub at: String,
    pub outcome: String,
    pub error: Option<String>,
    pub took_ms: Option<i64>,
}

fn error_of(n: &CheckNote) -> Option<&str> {
    n.error.as_deref().map(|e| clip(e, MAX_ERROR))
}

fn clip(s: &str, most: usize) -> &str {
    match s.char_indices().nth(most) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

const PG_INSERT_CHECKS: &str = "INSERT INTO checks (session, at, via, source, outcome, \
     http_status, provider_status, error, took_ms) \
     SELECT v.session, v.at, v.via, v.source, v.outcome, v.http::integer, v.word, v.error, \
     v.took::bigint \
     FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], \
     ?7::text[], ?8::text[], ?9::text[]) AS v(session, at, via, source, outcome, http, word, error, took)";

const LITE_INSERT_CHECK: &str = "INSERT INTO checks (session, at, via, source, outcome, \
     http_status, provider_status, error, took_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Writes `notes` inside `tx`: one statement on PostgreSQL, one prepared insert per check on
/// SQLite.
pub(super) fn checks_in(tx: &mut Tx<'_>, notes: &[CheckNote]) -> Result<(), DbError> {
    if notes.is_empty() {
        return Ok(());
    }
    let word = |n: &'_ CheckNote| -> Option<String> {
        n.provider_status
            .as_deref()
            .map(|w| clip(w, MAX_WORD).to_string())
    };
    if !tx.is_pg() {
        for n in notes {
            tx.exec(
                LITE_INSERT_CHECK,
                vals![
                    n.session,
                    &clock::format(n.at),
                    n.via.as_str(),
                    n.source.as_str(),
                    n.outcome,
                    n.http_status.map(i64::from),
                    n.provider_status.as_deref().map(|w| clip(w, MAX_WORD)),
                    error_of(n),
                    n.took_ms.map(|t| t as i64)
                ],
            )?;
        }
        return Ok(());
    }
    // PostgreSQL: one statement for the batch, every column an array.
    let texts: Vec<[Option<String>; 4]> = notes
        .iter()
        .map(|n| {
            [
                Some(clock::format(n.at)),
                n.http_status.map(|h| h.to_string()),
                n.took_ms.map(|t| t.to_string()),
                word(n),
            ]
        })
        .collect();
    let sessions: Vec<i64> = notes.iter().map(|n| n.session).collect();
    let col = |i: usize| -> Vec<Option<&str>> { texts.iter().map(|t| t[i].as_deref()).collect() };
    let (at, http, took, words) = (col(0), col(1), col(2), col(3));
    let via: Vec<Option<&str>> = notes.iter().map(|n| Some(n.via.as_str())).collect();
    let source: Vec<Option<&str>> = notes.iter().map(|n| Some(n.source.as_str())).collect();
    let outcome: Vec<Option<&str>> = notes.iter().map(|n| Some(n.outcome)).collect();
    let errors: Vec<Option<&str>> = notes.iter().map(error_of).collect();
    tx.exec(
        PG_INSERT_CHECKS,
        vals![
            &sessions[..],
            &at[..],
            &via[..],
            &source[..],
            &outcome[..],
            &http[..],
            &words[..],
            &errors[..],
            &took[..]
        ],
    )?;
    Ok(())
}

/// Writes delivery attempts inside `tx`.
pub(super) fn attempts_in(tx: &mut Tx<'_>, notes: &[AttemptNote]) -> Result<(), DbError> {
    for n in notes {
        tx.exec(
            "INSERT INTO delivery_attempts (event, at, outcome, error, took_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            vals![
                n.event,
                &clock::format(n.at),
                n.outcome,
                n.error.as_deref().map(|e| clip(e, MAX_ERROR)),
                n.took_ms as i64
            ],
        )?;
    }
    Ok(())
}

impl Ledger {
    /// A session's checks, oldest first (at most `limit`, the newest of them).
    pub fn checks(&self, session: i64, limit: u32) -> Result<Vec<CheckRow>, Error> {
        self.tx(Mode::Read, "reading a session's checks", |tx| {
            let mut rows = tx.query(
                "SELECT at, via, source, outcome, http_status, provider_status, error, took_ms \
                 FROM checks WHERE session = ?1 ORDER BY id DESC LIMIT ?2",
                vals![session, limit],
                |r| {
                    Ok(CheckRow {
                        at: r.get(0)?,
                        via: r.get(1)?,
                        source: r.get(2)?,
                        outcome: r.get(3)?,
                        http_status: r.get(4)?,
                        provider_status: r.get(5)?,
                        error: r.get(6)?,
                        took_ms: r.get(7)?,
                    })
                },
            )?;
            rows.reverse();
            Ok(rows)
        })
    }

    /// The delivery attempts of a session's events, oldest first.
    pub fn delivery_attempts(&self, session: i64) -> Result<Vec<AttemptRow>, Error> {
        self.tx(Mode::Read, "reading a session's delivery attempts", |tx| {
            tx.query(
                "SELECT e.id, a.at, a.outcome, a.error, a.took_ms FROM delivery_attempts a \
                 JOIN events e ON e.seq = a.event WHERE e.session = ?1 ORDER BY a.id",
                vals![session],
                |r| {
                    Ok(AttemptRow {
                        event_id: r.get(0)?,
                        at: r.get(1)?,
                        outcome: r.get(2)?,
                        error: r.get(3)?,
                        took_ms: r.get(4)?,
                    })
                },
            )
        })
    }

    /// Removes history rows written before `before`, oldest first, a bounded batch per
    /// transaction; returns how many went. Rows are written in time order (ids grow with the
    /// clock), so each statement looks at the oldest [`PRUNE_BATCH`] rows only and the walk
    /// stops at the first batch that was not all old: bounded work however long the history.
    pub fn prune_history(&self, before: Timestamp) -> Result<u64, Error> {
        let before = clock::format(before);
        let mut removed = 0;
        for (what, sql) in [
            (
                "pruning the history of checks",
                "DELETE FROM checks WHERE id IN \
                 (SELECT id FROM checks ORDER BY id LIMIT ?2) AND at < ?1",
            ),
            (
                "pruning the history of deliveries",
                "DELETE FROM delivery_attempts WHERE id IN \
                 (SELECT id FROM delivery_attempts ORDER BY id LIMIT ?2) AND at < ?1",
            ),
        ] {
            loop {
                let n = self.tx(Mode::Write, what, |tx| {
                    tx.exec(sql, vals![before.as_str(), PRUNE_BATCH])
                })?;
                removed += n;
                if n < u64::from(PRUNE_BATCH) {
                    break;
                }
            }
        }
        Ok(removed)
    }
}
