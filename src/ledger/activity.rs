//! What happened lately, for the console's overview: the transitions of the last day (time to
//! truth, resolutions per hour) and the status calls of the last hour per provider (budget
//! use). Neither table has an index on time — one would cost every transition and every check
//! — but both tables' ids grow with time, so the first row of a window is found by a binary
//! search on the id (a few dozen point reads) and only the window's rows are read.

use super::db::{AnyText, DbError, Mode, Tx, vals};
use super::*;
use crate::clock::{self, Timestamp};

/// One transition of the window, with its session's provider and creation time.
#[derive(Debug, Clone)]
pub struct Moved {
    pub provider: String,
    pub to: Status,
    pub source: Source,
    pub at: Timestamp,
    pub created_at: Timestamp,
    /// The last moment before the answer that the session was known PENDING, when a scheduled
    /// check found it (see `Record::Transition`); `None` when unknown or exact.
    pub pending_since: Option<Timestamp>,
}

/// The overview's recent activity.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Transitions since the window's start, oldest first.
    pub transitions: Vec<Moved>,
    /// `(provider, status calls)` in the last hour, from the history of checks (every process
    /// on the ledger; a list page is not a check and is not counted).
    pub calls_last_hour: Vec<(String, i64)>,
}

/// The tables [`first_id_since`] searches (their SQL is fixed text, never built from input).
#[derive(Clone, Copy)]
enum Timed {
    Transitions,
    Checks,
}

impl Timed {
    fn bounds(self) -> &'static str {
        match self {
            Timed::Transitions => "SELECT min(id), max(id) FROM transitions",
            Timed::Checks => "SELECT min(id), max(id) FROM checks",
        }
    }
    fn at_or_after(self) -> &'static str {
        match self {
            Timed::Transitions => {
                "SELECT id, at FROM transitions WHERE id >= ?1 ORDER BY id LIMIT 1"
            }
            Timed::Checks => "SELECT id, at FROM checks WHERE id >= ?1 ORDER BY id LIMIT 1",
        }
    }
}

/// The smallest id of `table` whose row was written at or after `since` (ids grow with time;
/// rows of several processes a few milliseconds apart may interleave, which the callers'
/// own `at >= since` absorbs). `None` when no row is that new.
fn first_id_since(tx: &mut Tx<'_>, table: Timed, since: &str) -> Result<Option<i64>, DbError> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        tx.query_one(table.bounds(), &[], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
        return Ok(None);
    };
    // Invariant: every row below `lo` is older than `since`; the row at or after `hi` is not
    // (or, after the loop, there is none).
    let newest: (i64, String) = tx.query_one(table.at_or_after(), vals![hi], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    if newest.1.as_str() < since {
        return Ok(None);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (id, at): (i64, String) = tx.query_one(table.at_or_after(), vals![mid], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        if at.as_str() < since {
            lo = id + 1;
        } else {
            hi = mid;
        }
    }
    Ok(Some(lo))
}

/// The transitions since `since` (at most the newest `most`), oldest first, with their
/// sessions' provider and creation time.
fn moved_since(tx: &mut Tx<'_>, since: &str, most: u32) -> Result<Vec<Moved>, DbError> {
    let Some(first) = first_id_since(tx, Timed::Transitions, since)? else {
        return Ok(Vec::new());
    };
    let rows = tx.query(
        "SELECT s.provider, t.to_status, t.source, t.at, s.created_at, t.pending_since \
         FROM transitions t JOIN sessions s ON s.id = t.session \
         WHERE t.id >= ?1 AND t.at >= ?2 ORDER BY t.id DESC LIMIT ?3",
        vals![first, since, most],
        |r| {
            let text = |i: usize| r.get::<String>(i);
            let pending = r.get::<AnyText>(5)?.0;
            Ok((text(0)?, text(1)?, text(2)?, text(3)?, text(4)?, pending))
        },
    )?;
    Ok(rows
        .into_iter()
        .rev()
        .filter_map(|(provider, to, source, at, created, pending)| {
            // A row payrecon cannot read is the queues' business, not a chart's.
            Some(Moved {
                provider,
                to: to.parse().ok()?,
                source: source.parse().ok()?,
                at: clock::parse(&at)?,
                created_at: clock::parse(&created)?,
                // Unreadable: as if unknown (the answer's own time is used).
                pending_since: pending.as_deref().and_then(clock::parse),
            })
        })
        .collect())
}

/// A session still waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub provider: String,
    pub created_at: Timestamp,
    /// When it was last known PENDING: its last check, or its creation if never checked.
    pub pending_at: Timestamp,
}

impl Ledger {
    /// Transitions since `since` and each provider's status calls in the hour before `now`.
    pub fn activity(&self, since: Timestamp, now: Timestamp) -> Result<Activity, Error> {
        let since_s = clock::format(since);
        let hour_s = clock::format(clock::sub(now, std::time::Duration::from_secs(3600)));
        self.tx(Mode::Read, "reading recent activity", |tx| {
            let mut activity = Activity {
                transitions: moved_since(tx, &since_s, u32::MAX)?,
                ..Activity::default()
            };
            if let Some(first) = first_id_since(tx, Timed::Checks, &hour_s)? {
                activity.calls_last_hour = tx.query(
                    "SELECT s.provider, count(*) FROM checks c JOIN sessions s ON s.id = c.session \
                     WHERE c.id >= ?1 AND c.at >= ?2 AND c.via = 'call' \
                     GROUP BY s.provider ORDER BY s.provider",
                    vals![first, hour_s.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
            }
            Ok(activity)
        })
    }

    /// What answer times are learned from (`reconcile::timing`), read in one transaction so that
    /// no session is both answered and waiting: the newest `most` transitions since `since`,
    /// oldest first, and the newest `most` PENDING sessions (by the partial index
    /// `sessions_pending_by_id`) with when each was last known PENDING, those created before
    /// `since` left out — a session pending for an hour says an answer can take that long, or
    /// never come.
    pub fn answers_and_waiting(
        &self,
        since: Timestamp,
        most: u32,
    ) -> Result<(Vec<Moved>, Vec<Waiting>), Error> {
        let since = clock::format(since);
        self.tx(
            Mode::Read,
            "reading recent answers and waiting sessions",
            |tx| {
                let moved = moved_since(tx, &since, most)?;
                let rows = tx.query(
                    "SELECT provider, created_at, last_checked_at FROM sessions \
                     WHERE status = 'PENDING' ORDER BY id DESC LIMIT ?1",
                    vals![most],
                    // A row payrecon cannot read is the queues' business: left out here.
                    |r| {
                        let text = |i: usize| r.get::<AnyText>(i).map(|t| t.0);
                        Ok((text(0)?, text(1)?, text(2)?))
                    },
                )?;
                let waiting = rows
                    .into_iter()
                    .filter_map(|(p, created, checked)| Some((p?, created?, checked)))
                    .filter(|(_, created, _)| created.as_str() >= since.as_str())
                    .filter_map(|(provider, created, checked)| {
                        let created_at = clock::parse(&created)?;
                        // Known PENDING at its last check; a check time before its creation
                        // or unreadable counts as none.
                        let pending_at = checked
                            .as_deref()
                            .and_then(clock::parse)
                            .map_or(created_at, |c| c.max(created_at));
                        Some(Waiting {
                            provider,
                            created_at,
                            pending_at,
                        })
                    })
                    .collect();
                Ok((moved, waiting))
            },
        )
    }
}
