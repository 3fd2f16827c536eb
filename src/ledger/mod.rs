//! The ledger: sessions, transitions and the events outbox in one SQLite file (WAL,
//! `busy_timeout`, versioned migrations). All SQL of the program lives in this module.
//!
//! The ledger is synchronous rusqlite behind a `Mutex<Connection>`; async callers go through
//! [`Ledger::call`], which runs the work on tokio's blocking pool. It knows nothing of HTTP,
//! providers or tokio's runtime beyond that one helper.
//!
//! Invariant: every write transaction starts `IMMEDIATE`, so two processes on one file queue on
//! `busy_timeout` instead of failing on a lock upgrade.

mod model;
pub mod schema;

pub use model::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::clock::{self, Timestamp};
use crate::events::{self, Written};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A ledger failure. The path or the operation is named so the message stands alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ledger {path}: {what}: {source}")]
    Sqlite {
        path: String,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "ledger {path}: schema version {found} is newer than this build's {supported}; upgrade payrecon (the file was not changed)"
    )]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("ledger {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("ledger task failed: {0}")]
    Join(String),
}

/// Which sessions a pass claims.
#[derive(Debug, Clone, Copy)]
pub enum ClaimMode {
    /// Sessions whose `next_check_at` is at or before this time (the pass's start).
    DueBy(Timestamp),
    /// Every PENDING session with an id above this one, ignoring the schedule (`once --all`).
    AllAfter(i64),
    /// EXPIRED sessions whose late check is due by this time.
    LateBy(Timestamp),
}

/// A handle to one ledger file; clones share one connection.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// The columns `session_from_row` reads, as a literal so that hot-path SQL can be built at
/// compile time with `concat!` instead of a `format!` per statement.
macro_rules! session_cols {
    () => {
        "id, provider, session_id, reference, amount, currency, status, created_at, \
         next_check_at, checks, answered_checks, not_found_count, last_checked_at, last_error, \
         lease_owner, lease_until, provider_status, transaction_id, payment_method, \
         provider_completed_at, resolved_at, late_check_at"
    };
}

const SESSION_COLS: &str = session_cols!();

/// The transition's compare-and-set (hot path: one per resolved session).
const TRANSITION_CAS: &str = "UPDATE sessions SET status = ?1, resolved_at = ?2, checks = checks + ?3, \
     answered_checks = answered_checks + ?3, \
     last_checked_at = CASE WHEN ?3 = 1 THEN ?2 ELSE last_checked_at END, \
     provider_status = coalesce(?4, provider_status), \
     transaction_id = coalesce(?5, transaction_id), \
     payment_method = coalesce(?6, payment_method), \
     provider_completed_at = coalesce(?7, provider_completed_at), \
     last_error = NULL, lease_owner = NULL, lease_until = NULL, late_check_at = ?10 \
     WHERE id = ?8 AND status = ?9";

const SESSION_BY_ROWID: &str = concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?1");

const LATE_CHECK_DONE: &str = concat!(
    "UPDATE sessions SET late_check_at = ?1, last_error = coalesce(?2, last_error), \
     lease_owner = NULL, lease_until = NULL \
     WHERE id = ?3 AND lease_owner = ?4 AND status = 'EXPIRED' RETURNING ",
    session_cols!()
);

const EVENT_COLS: &str = "e.id, e.type, e.created_at, e.payload, e.attempts, e.next_attempt_at, \
     e.delivered_at, e.dead_at, e.last_error";

/// Reads [`EVENT_COLS`] starting at column `at`.
fn event_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Event> {
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

/// The due query: sessions due by `?3`, at most `?4`. Served by the partial index
/// `sessions_due` (a test asserts the plan), so its cost grows with the sessions due.
macro_rules! due_select {
    () => {
        "SELECT id FROM sessions WHERE status = 'PENDING' AND next_check_at <= ?3 \
         ORDER BY next_check_at LIMIT ?4"
    };
}

const CLAIM_DUE: &str = concat!(
    "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 WHERE id IN (",
    due_select!(),
    ") RETURNING ",
    session_cols!()
);

const CLAIM_LATE: &str = concat!(
    "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, late_check_at = ?2 \
     WHERE id IN (SELECT id FROM sessions WHERE late_check_at IS NOT NULL AND late_check_at <= ?3 \
                  AND status = 'EXPIRED' ORDER BY late_check_at LIMIT ?4) \
     RETURNING ",
    session_cols!()
);

const CLAIM_ALL: &str = concat!(
    "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 \
     WHERE id IN (SELECT id FROM sessions NOT INDEXED WHERE status = 'PENDING' AND id > ?3 \
                  AND (lease_until IS NULL OR lease_until <= ?5) ORDER BY id LIMIT ?4) \
     RETURNING ",
    session_cols!()
);

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        rowid: r.get(0)?,
        provider: r.get(1)?,
        session_id: r.get(2)?,
        reference: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        status: r.get(6)?,
        created_at: r.get(7)?,
        next_check_at: r.get(8)?,
        checks: r.get(9)?,
        answered_checks: r.get(10)?,
        not_found_count: r.get(11)?,
        last_checked_at: r.get(12)?,
        last_error: r.get(13)?,
        lease_owner: r.get(14)?,
        lease_until: r.get(15)?,
        provider_status: r.get(16)?,
        transaction_id: r.get(17)?,
        payment_method: r.get(18)?,
        provider_completed_at: r.get(19)?,
        resolved_at: r.get(20)?,
        late_check_at: r.get(21)?,
    })
}

impl Ledger {
    /// Opens (creating if needed) and migrates the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, Error> {
        let p = path.display().to_string();
        let err = |what| {
            let p = p.clone();
            move |source| Error::Sqlite {
                path: p,
                what,
                source,
            }
        };
        let mut conn = Connection::open(path).map_err(err("opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("setting busy_timeout"))?;
        // journal_mode answers with a row; WAL lets readers run beside the one writer.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err("enabling WAL (is this a SQLite file?)"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt {
                path: p,
                message: format!("cannot enable WAL, journal mode is {mode}"),
            });
        }
        // FULL: a committed transition survives power loss, not only a process crash.
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(err("setting pragmas"))?;
        // Migrations rebuild tables, which SQLite documents doing with foreign keys off (they
        // are checked before each migration commits); on for everything after.
        migrate(&mut conn, &p)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(err("setting pragmas"))?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on tokio's blocking pool, so async code never blocks on SQLite.
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Ledger) -> Result<T, Error> + Send + 'static,
    {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| Error::Join(e.to_string()))?
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned mutex means a panic while holding the connection; SQLite itself rolled back
        // any open transaction, so the connection is still usable.
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.inner.path.display().to_string(),
            what,
            source,
        }
    }

    /// Adds one session, due at once; an existing `(provider, session_id)` is left untouched.
    pub fn enqueue(&self, s: &NewSession) -> Result<Enqueued, Error> {
        let conn = self.conn();
        let n = insert_session(&conn, s).map_err(self.err("adding a session"))?;
        Ok(if n == 1 {
            Enqueued::Added
        } else {
            Enqueued::AlreadyPresent
        })
    }

    /// Adds many sessions all-or-nothing: rows are validated by the caller, which passes
    /// `Err(message)` for a bad row; any error rolls the whole import back. Returns
    /// `(added, already_present, errors)`; `errors` holds at most `max_errors` messages.
    pub fn import<I>(&self, rows: I, max_errors: usize) -> Result<ImportOutcome, Error>
    where
        I: IntoIterator<Item = Result<NewSession, String>>,
    {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("starting an import"))?;
        let mut out = ImportOutcome::default();
        {
            let mut stmt = tx
                .prepare_cached(INSERT_SESSION)
                .map_err(self.err("preparing the import"))?;
            for row in rows {
                match row {
                    Ok(s) if out.errors.is_empty() => {
                        let n =
                            insert_with(&mut stmt, &s).map_err(self.err("importing a session"))?;
                        if n == 1 {
                            out.added += 1;
                        } else {
                            out.already_present += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        out.failed_rows += 1;
                        if out.errors.len() < max_errors {
                            out.errors.push(e);
                        }
                    }
                }
            }
        }
        if out.failed_rows == 0 {
            tx.commit().map_err(self.err("committing the import"))?;
        } else {
            out.added = 0;
            out.already_present = 0;
            // Dropping the transaction rolls it back.
        }
        Ok(out)
    }

    /// Claims up to `limit` sessions for `owner` until `lease_until`, in one transaction.
    pub fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        mode: ClaimMode,
    ) -> Result<Vec<Session>, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("starting a claim"))?;
        let until = clock::format(lease_until);
        let sessions = {
            let (sql, cursor): (&str, String) = match mode {
                ClaimMode::DueBy(t) => (CLAIM_DUE, clock::format(t)),
                ClaimMode::LateBy(t) => (CLAIM_LATE, clock::format(t)),
                ClaimMode::AllAfter(id) => (CLAIM_ALL, id.to_string()),
            };
            let mut stmt = tx
                .prepare_cached(sql)
                .map_err(self.err("preparing a claim"))?;
            let rows = match mode {
                ClaimMode::DueBy(_) | ClaimMode::LateBy(_) => {
                    stmt.query_map(params![owner, until, cursor, limit], session_from_row)
                }
                ClaimMode::AllAfter(id) => stmt.query_map(
                    params![owner, until, id, limit, clock::format(now)],
                    session_from_row,
                ),
            }
            .map_err(self.err("claiming sessions"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(self.err("reading claimed sessions"))?
        };
        tx.commit().map_err(self.err("committing a claim"))?;
        Ok(sessions)
    }

    /// Writes a batch of outcomes in one transaction. Each transition is a compare-and-set on
    /// its `from` status that writes the session update, the transition row and the event row
    /// together; a lost race writes nothing for that session. Reschedules and releases apply only
    /// while `owner` still holds the lease. Returns the events written.
    pub fn record(
        &self,
        owner: &str,
        now: Timestamp,
        records: &[Record],
    ) -> Result<Vec<Written>, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("starting to record outcomes"))?;
        let now_s = clock::format(now);
        let mut written = Vec::new();
        for rec in records {
            match rec {
                Record::Transition {
                    rowid,
                    from,
                    to,
                    source,
                    reason,
                    facts,
                    charged,
                    compared,
                    late_check_at,
                } => {
                    let c = i64::from(*charged);
                    // A plain UPDATE and a read by rowid: `RETURNING` would open a temporary
                    // table per statement, the largest single cost of recording (profiled).
                    let won = tx
                        .prepare_cached(TRANSITION_CAS)
                        .map_err(self.err("preparing a transition"))?
                        .execute(params![
                            to.as_str(),
                            now_s,
                            c,
                            facts.provider_status,
                            facts.transaction_id,
                            facts.payment_method,
                            facts.provider_completed_at,
                            rowid,
                            from.as_str(),
                            late_check_at.map(clock::format)
                        ])
                        .map_err(self.err("recording a transition"))?
                        == 1;
                    let current = tx
                        .prepare_cached(SESSION_BY_ROWID)
                        .map_err(self.err("preparing a lookup"))?
                        .query_row([rowid], session_from_row)
                        .optional()
                        .map_err(self.err("reading a session"))?;
                    let (true, Some(session)) = (won, &current) else {
                        // Someone recorded this session first. If the provider now says something
                        // else than what was recorded, that contradiction is an anomaly.
                        match current {
                            Some(cur)
                                if *source != Source::Manual
                                    && cur.status != to.as_str()
                                    && cur.status != Status::Pending.as_str() =>
                            {
                                let anomaly = Anomaly {
                                    provider_says: *to,
                                    reason: format!(
                                        "the provider's answer means {to} but the session was already recorded {}",
                                        cur.status
                                    ),
                                    facts: facts.clone(),
                                };
                                written.push(
                                    write_anomaly(&tx, &cur, &anomaly, &now_s)
                                        .map_err(self.err("writing an anomaly"))?,
                                );
                            }
                            _ => tracing::debug!(
                                rowid,
                                "transition lost the compare-and-set; already recorded"
                            ),
                        }
                        continue;
                    };
                    tx.prepare_cached(
                        "INSERT INTO transitions (session, from_status, to_status, at, source, reason, \
                         provider_status, transaction_id, payment_method, provider_amount, \
                         provider_reference, provider_currency, provider_completed_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(self.err("preparing a transition row"))?
                    .execute(params![
                        rowid,
                        from.as_str(),
                        to.as_str(),
                        now_s,
                        source.as_str(),
                        reason,
                        facts.provider_status,
                        facts.transaction_id,
                        facts.payment_method,
                        facts.amount,
                        facts.reference,
                        facts.currency,
                        facts.provider_completed_at
                    ])
                    .map_err(self.err("writing a transition row"))?;
                    let id = events::new_id();
                    let payload = events::transition_payload(&events::TransitionEvent {
                        id: &id,
                        created_at: &now_s,
                        session,
                        from: *from,
                        to: *to,
                        reason: reason.as_deref(),
                        facts,
                        compared,
                    });
                    insert_event(&tx, &id, to.event_type(), *rowid, &payload, &now_s)
                        .map_err(self.err("writing an event"))?;
                    written.push(Written {
                        id,
                        kind: to.event_type(),
                        payload,
                    });
                }
                Record::Reschedule {
                    rowid,
                    next_check_at,
                    last_error,
                    answered,
                    not_found,
                    charged,
                    facts,
                } => {
                    let f = facts.clone().unwrap_or_default();
                    tx.prepare_cached(
                        "UPDATE sessions SET next_check_at = ?1, last_error = ?2, checks = checks + ?3, \
                         answered_checks = answered_checks + ?4, \
                         last_checked_at = CASE WHEN ?3 = 1 THEN ?5 ELSE last_checked_at END, \
                         not_found_count = CASE ?6 WHEN 1 THEN not_found_count + 1 WHEN 0 THEN 0 \
                                           ELSE not_found_count END, \
                         provider_status = coalesce(?7, provider_status), \
                         transaction_id = coalesce(?8, transaction_id), \
                         payment_method = coalesce(?9, payment_method), \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?10 AND status = 'PENDING' AND lease_owner = ?11",
                    )
                    .map_err(self.err("preparing a reschedule"))?
                    .execute(params![
                        clock::format(*next_check_at),
                        last_error,
                        i64::from(*charged),
                        i64::from(*answered),
                        now_s,
                        not_found.map(i64::from),
                        f.provider_status,
                        f.transaction_id,
                        f.payment_method,
                        rowid,
                        owner
                    ])
                    .map_err(self.err("rescheduling a session"))?;
                }
                Record::Release { rowid, last_error } => {
                    // Due again at once: a PENDING session's check, or an EXPIRED one's late check.
                    tx.prepare_cached(
                        "UPDATE sessions SET \
                         next_check_at = CASE WHEN status = 'PENDING' THEN ?1 ELSE next_check_at END, \
                         late_check_at = CASE WHEN status = 'EXPIRED' AND late_check_at IS NOT NULL THEN ?1 \
                                         ELSE late_check_at END, \
                         lease_owner = NULL, lease_until = NULL, \
                         last_error = CASE WHEN status = 'PENDING' THEN coalesce(?2, last_error) ELSE last_error END \
                         WHERE id = ?3 AND lease_owner = ?4",
                    )
                    .map_err(self.err("preparing a release"))?
                    .execute(params![now_s, last_error, rowid, owner])
                    .map_err(self.err("releasing a session"))?;
                }
                Record::LateCheck {
                    rowid,
                    next,
                    last_error,
                    anomaly,
                } => {
                    let updated = tx
                        .prepare_cached(LATE_CHECK_DONE)
                        .map_err(self.err("preparing a late check"))?
                        .query_row(
                            params![next.map(clock::format), last_error, rowid, owner],
                            session_from_row,
                        )
                        .optional()
                        .map_err(self.err("recording a late check"))?;
                    if let (Some(session), Some(anomaly)) = (updated, anomaly) {
                        written.push(
                            write_anomaly(&tx, &session, anomaly, &now_s)
                                .map_err(self.err("writing an anomaly"))?,
                        );
                    }
                }
            }
        }
        tx.commit().map_err(self.err("committing outcomes"))?;
        Ok(written)
    }

    /// Sessions matching a filter, newest first.
    pub fn list(&self, f: &ListFilter) -> Result<Vec<Session>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR status = ?1) \
                 AND (?2 IS NULL OR provider = ?2) ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(self.err("preparing a listing"))?;
        let rows = stmt
            .query_map(
                params![f.status.map(|s| s.as_str()), f.provider, f.limit],
                session_from_row,
            )
            .map_err(self.err("listing sessions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("listing sessions"))
    }

    /// Leases one PENDING session for an immediate check (`verify`), unless another process
    /// holds it. `None` when it is not PENDING, leased, or absent.
    pub fn claim_one(
        &self,
        provider: &str,
        session_id: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<Session>, Error> {
        let conn = self.conn();
        conn.prepare_cached(&format!(
            "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 \
             WHERE provider = ?3 AND session_id = ?4 AND status = 'PENDING' \
             AND (lease_until IS NULL OR lease_until <= ?5) RETURNING {SESSION_COLS}"
        ))
        .map_err(self.err("preparing a claim"))?
        .query_row(
            params![
                owner,
                clock::format(lease_until),
                provider,
                session_id,
                clock::format(now)
            ],
            session_from_row,
        )
        .optional()
        .map_err(self.err("claiming a session"))
    }

    /// How many sessions are PENDING (for a backfill's progress bar).
    pub fn count_pending(&self) -> Result<u64, Error> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err("counting pending sessions"))
    }

    /// One session by provider and id.
    pub fn get(&self, provider: &str, session_id: &str) -> Result<Option<Session>, Error> {
        let conn = self.conn();
        conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE provider = ?1 AND session_id = ?2"
        ))
        .map_err(self.err("preparing a lookup"))?
        .query_row(params![provider, session_id], session_from_row)
        .optional()
        .map_err(self.err("reading a session"))
    }

    /// Every session with this id (one per provider that has it).
    pub fn find(&self, session_id: &str) -> Result<Vec<Session>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?1 ORDER BY provider"
            ))
            .map_err(self.err("preparing a lookup"))?;
        let rows = stmt
            .query_map([session_id], session_from_row)
            .map_err(self.err("finding a session"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("finding a session"))
    }

    /// A session's transitions, oldest first.
    pub fn transitions(&self, rowid: i64) -> Result<Vec<TransitionRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT from_status, to_status, at, source, reason, provider_status, transaction_id \
                 FROM transitions WHERE session = ?1 ORDER BY id",
            )
            .map_err(self.err("preparing transitions"))?;
        let rows = stmt
            .query_map([rowid], |r| {
                Ok(TransitionRow {
                    from: r.get(0)?,
                    to: r.get(1)?,
                    at: r.get(2)?,
                    source: r.get(3)?,
                    reason: r.get(4)?,
                    provider_status: r.get(5)?,
                    transaction_id: r.get(6)?,
                })
            })
            .map_err(self.err("reading transitions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading transitions"))
    }

    /// A session's events, oldest first.
    pub fn session_events(&self, rowid: i64) -> Result<Vec<Event>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events e WHERE session = ?1 ORDER BY seq"
            ))
            .map_err(self.err("preparing events"))?;
        let rows = stmt
            .query_map([rowid], |r| event_from_row(r, 0))
            .map_err(self.err("reading events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading events"))
    }

    /// Counts by provider × status, sessions due now, and the outbox's state.
    pub fn stats(&self, now: Timestamp) -> Result<Stats, Error> {
        let providers = self.provider_states()?;
        let conn = self.conn();
        let e = self.err("reading stats");
        let mut stmt = conn
            .prepare_cached("SELECT provider, status, count(*) FROM sessions GROUP BY provider, status ORDER BY 1, 2")
            .map_err(&e)?;
        let sessions = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&e)?;
        let due_now = conn
            .query_row(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING' AND next_check_at <= ?1",
                [clock::format(now)],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let (events_total, events_waiting, events_dead) = conn
            .query_row(
                "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL), \
                 count(*) FILTER (WHERE dead_at IS NOT NULL) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        // Summed in Rust as decimals: SQLite's sum() would go through floats.
        let mut completed: Vec<(String, u64, rust_decimal::Decimal)> = Vec::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT coalesce(currency, ''), amount FROM sessions WHERE status = 'COMPLETED' ORDER BY 1",
            )
            .map_err(&e)?;
        let mut rows = stmt.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let currency: String = r.get(0).map_err(&e)?;
            let amount: Option<String> = r.get(1).map_err(&e)?;
            let amount = amount.and_then(|a| a.parse().ok()).unwrap_or_default();
            match completed.last_mut() {
                Some((c, n, sum)) if *c == currency => {
                    *n += 1;
                    *sum += amount;
                }
                _ => completed.push((currency, 1, amount)),
            }
        }
        drop(rows);
        let (late_checks_waiting, anomalies) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM sessions WHERE late_check_at IS NOT NULL AND status = 'EXPIRED'), \
                        (SELECT count(*) FROM events WHERE type = 'session.anomaly')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&e)?;
        Ok(Stats {
            sessions,
            due_now,
            events_waiting,
            events_dead,
            events_total,
            completed,
            providers,
            late_checks_waiting,
            anomalies,
        })
    }

    /// What is known about each provider that has been called.
    pub fn provider_states(&self) -> Result<Vec<ProviderState>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT provider, auth_refused_at, auth_error, paused_until, last_answer_at \
                 FROM provider_state ORDER BY provider",
            )
            .map_err(self.err("preparing provider state"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ProviderState {
                    provider: r.get(0)?,
                    auth_refused_at: r.get(1)?,
                    auth_error: r.get(2)?,
                    paused_until: r.get(3)?,
                    last_answer_at: r.get(4)?,
                })
            })
            .map_err(self.err("reading provider state"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading provider state"))
    }

    /// Records what a pass learned about a provider: refused credentials (`Some(error)`), a
    /// pause after a 429, and whether it answered at all (which clears a refusal).
    pub fn note_provider(
        &self,
        provider: &str,
        now: Timestamp,
        refused: Option<&str>,
        paused_until: Option<Timestamp>,
        answered: bool,
    ) -> Result<(), Error> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO provider_state (provider, auth_refused_at, auth_error, paused_until, last_answer_at) \
             VALUES (?1, CASE WHEN ?3 IS NOT NULL THEN ?2 END, ?3, ?4, CASE WHEN ?5 = 1 THEN ?2 END) \
             ON CONFLICT (provider) DO UPDATE SET \
               auth_refused_at = CASE WHEN ?3 IS NOT NULL THEN ?2 WHEN ?5 = 1 THEN NULL ELSE auth_refused_at END, \
               auth_error = CASE WHEN ?3 IS NOT NULL THEN ?3 WHEN ?5 = 1 THEN NULL ELSE auth_error END, \
               paused_until = CASE WHEN ?4 IS NOT NULL THEN max(coalesce(paused_until, ''), ?4) ELSE paused_until END, \
               last_answer_at = CASE WHEN ?5 = 1 THEN ?2 ELSE last_answer_at END",
        )
        .map_err(self.err("preparing provider state"))?
        .execute(params![provider, clock::format(now), refused, paused_until.map(clock::format), i64::from(answered)])
        .map_err(self.err("recording provider state"))?;
        Ok(())
    }

    /// Claims up to `limit` events due for delivery, leased to `owner` until `lease_until`.
    pub fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("starting an event claim"))?;
        let events = {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE events SET lease_owner = ?1, lease_until = ?2, next_attempt_at = ?2 \
                     WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL AND dead_at IS NULL \
                                   AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4) \
                     RETURNING seq, id, payload, attempts",
                )
                .map_err(self.err("preparing an event claim"))?;
            let rows = stmt
                .query_map(
                    params![owner, clock::format(lease_until), clock::format(now), limit],
                    |r| {
                        Ok(OutboxEvent {
                            seq: r.get(0)?,
                            id: r.get(1)?,
                            payload: r.get(2)?,
                            attempts: r.get(3)?,
                        })
                    },
                )
                .map_err(self.err("claiming events"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(self.err("reading claimed events"))?
        };
        tx.commit().map_err(self.err("committing an event claim"))?;
        let mut events = events;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// Writes delivery results in one transaction. `Delivered` is written whoever holds the
    /// lease (the receiver has the event); the others only while `owner` still holds it.
    pub fn record_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        results: &[Delivery],
    ) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("starting to record deliveries"))?;
        let now_s = clock::format(now);
        for d in results {
            let (sql, p): (&str, Vec<Box<dyn rusqlite::ToSql>>) = match d {
                Delivery::Delivered { seq } => (
                    "UPDATE events SET delivered_at = ?1, attempts = attempts + 1, last_error = NULL, \
                     lease_owner = NULL, lease_until = NULL WHERE seq = ?2 AND delivered_at IS NULL",
                    vec![Box::new(now_s.clone()), Box::new(*seq)],
                ),
                Delivery::Retry {
                    seq,
                    next_attempt_at,
                    error,
                } => (
                    "UPDATE events SET next_attempt_at = ?1, attempts = attempts + 1, last_error = ?2, \
                     lease_owner = NULL, lease_until = NULL \
                     WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                    vec![
                        Box::new(clock::format(*next_attempt_at)),
                        Box::new(error.clone()),
                        Box::new(*seq),
                        Box::new(owner.to_string()),
                    ],
                ),
                Delivery::Dead { seq, error } => (
                    "UPDATE events SET dead_at = ?1, attempts = attempts + 1, last_error = ?2, \
                     lease_owner = NULL, lease_until = NULL \
                     WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                    vec![
                        Box::new(now_s.clone()),
                        Box::new(error.clone()),
                        Box::new(*seq),
                        Box::new(owner.to_string()),
                    ],
                ),
                Delivery::Release { seq } => (
                    "UPDATE events SET next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
                     WHERE seq = ?2 AND lease_owner = ?3 AND delivered_at IS NULL",
                    vec![
                        Box::new(now_s.clone()),
                        Box::new(*seq),
                        Box::new(owner.to_string()),
                    ],
                ),
            };
            tx.prepare_cached(sql)
                .map_err(self.err("preparing a delivery result"))?
                .execute(rusqlite::params_from_iter(p.iter()))
                .map_err(self.err("recording a delivery"))?;
        }
        tx.commit().map_err(self.err("committing deliveries"))?;
        Ok(())
    }

    /// Events, newest first; `Dead` shows only dead ones.
    pub fn list_events(
        &self,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<(String, Event)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.session_id, e.id, e.type, e.created_at, e.payload, e.attempts, e.next_attempt_at, \
                 e.delivered_at, e.dead_at, e.last_error FROM events e JOIN sessions s ON s.id = e.session \
                 WHERE (?1 = 0 OR e.dead_at IS NOT NULL) ORDER BY e.seq DESC LIMIT ?2",
            )
            .map_err(self.err("preparing an event listing"))?;
        let rows = stmt
            .query_map(
                params![i64::from(filter == EventFilter::Dead), limit],
                |r| {
                    Ok((
                        r.get(0)?,
                        Event {
                            id: r.get(1)?,
                            kind: r.get(2)?,
                            created_at: r.get(3)?,
                            payload: r.get(4)?,
                            attempts: r.get(5)?,
                            next_attempt_at: r.get(6)?,
                            delivered_at: r.get(7)?,
                            dead_at: r.get(8)?,
                            last_error: r.get(9)?,
                        },
                    ))
                },
            )
            .map_err(self.err("listing events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("listing events"))
    }

    /// Puts events back in line with a fresh schedule: one by id (dead, delivered or waiting),
    /// or every dead one. Returns how many.
    pub fn replay(&self, id: Option<&str>, now: Timestamp) -> Result<usize, Error> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE events SET dead_at = NULL, delivered_at = NULL, attempts = 0, last_error = NULL, \
             next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
             WHERE (?2 IS NULL AND dead_at IS NOT NULL) OR id = ?2",
        )
        .map_err(self.err("preparing a replay"))?
        .execute(params![clock::format(now), id])
        .map_err(self.err("replaying events"))
    }

    /// Streams sessions for `export` in a stable order (by ledger id), calling `row` for each.
    pub fn export(
        &self,
        f: &ExportFilter,
        mut row: impl FnMut(&Session) -> Result<(), std::io::Error>,
    ) -> Result<u64, ExportError> {
        let conn = self.conn();
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let status_json = serde_json::to_string(&statuses).unwrap_or_else(|_| "[]".into());
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions \
                 WHERE (?1 IS NULL OR resolved_at >= ?1) AND (?2 IS NULL OR resolved_at < ?2) \
                 AND (?3 = '[]' OR status IN (SELECT value FROM json_each(?3))) \
                 AND (?4 IS NULL OR provider = ?4) ORDER BY id"
            ))
            .map_err(self.err("preparing the export"))?;
        let mut rows = stmt
            .query(params![
                f.since.map(clock::format),
                f.until.map(clock::format),
                status_json,
                f.provider
            ])
            .map_err(self.err("exporting"))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.err("exporting"))? {
            let s = session_from_row(r).map_err(self.err("exporting"))?;
            row(&s).map_err(ExportError::Write)?;
            n += 1;
        }
        Ok(n)
    }

    /// Runs read-only SQL for tests and diagnostics (`EXPLAIN QUERY PLAN`, counts).
    #[doc(hidden)]
    pub fn query_strings(&self, sql: &str) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(self.err("preparing a query"))?;
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut parts = Vec::with_capacity(n);
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    parts.push(match v {
                        rusqlite::types::Value::Null => "NULL".to_string(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Real(f) => f.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        rusqlite::types::Value::Blob(_) => "<blob>".to_string(),
                    });
                }
                Ok(parts.join("|"))
            })
            .map_err(self.err("running a query"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("running a query"))
    }

    /// Runs SQL that changes the ledger, for tests that inject faults (triggers) and for
    /// applications' direct inserts in examples.
    #[doc(hidden)]
    pub fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        self.conn()
            .execute_batch(sql)
            .map_err(self.err("running SQL"))
    }
}

/// An export failed reading the ledger or writing the output.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Ledger(#[from] Error),
    #[error("writing the export: {0}")]
    Write(#[source] std::io::Error),
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    pub added: u64,
    pub already_present: u64,
    pub failed_rows: u64,
    pub errors: Vec<String>,
}

const INSERT_SESSION: &str = "INSERT INTO sessions (provider, session_id, reference, amount, currency, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, coalesce(?6, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) \
     ON CONFLICT (provider, session_id) DO NOTHING";

fn insert_with(
    stmt: &mut rusqlite::CachedStatement<'_>,
    s: &NewSession,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        s.provider,
        s.session_id,
        s.reference,
        s.amount,
        s.currency,
        s.created_at.map(clock::format)
    ])
}

fn insert_session(conn: &Connection, s: &NewSession) -> rusqlite::Result<usize> {
    insert_with(&mut conn.prepare_cached(INSERT_SESSION)?, s)
}

fn insert_event(
    tx: &Connection,
    id: &str,
    kind: &str,
    rowid: i64,
    payload: &str,
    now: &str,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO events (id, type, session, payload, created_at, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![id, kind, rowid, payload, now])
}

/// Writes a `session.anomaly` event (no state change) and returns its payload.
fn write_anomaly(
    tx: &Connection,
    session: &Session,
    anomaly: &Anomaly,
    now: &str,
) -> rusqlite::Result<Written> {
    let id = events::new_id();
    let payload = events::anomaly_payload(&id, now, session, anomaly);
    tracing::warn!(provider = %session.provider, session_id = %session.session_id, recorded = %session.status,
        provider_says = %anomaly.provider_says, "anomaly: {}", anomaly.reason);
    insert_event(tx, &id, events::ANOMALY, session.rowid, &payload, now)?;
    Ok(Written {
        id,
        kind: events::ANOMALY,
        payload,
    })
}

fn migrate(conn: &mut Connection, path: &str) -> Result<(), Error> {
    let err = |what| {
        move |source| Error::Sqlite {
            path: path.to_string(),
            what,
            source,
        }
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("reading the schema version"))?;
    if version > schema::VERSION {
        return Err(Error::TooNew {
            path: path.to_string(),
            found: version,
            supported: schema::VERSION,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("starting a migration"))?;
        tx.execute_batch(sql).map_err(err("migrating the schema"))?;
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(err("checking foreign keys after a migration"))?;
        if let Some(table) = dangling {
            return Err(Error::Corrupt {
                path: path.to_string(),
                message: format!(
                    "a row of {table} refers to a session that does not exist; the migration was not applied"
                ),
            });
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err("recording the schema version"))?;
        tx.commit().map_err(err("committing a migration"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.db")).unwrap();
        (dir, l)
    }

    #[test]
    fn the_due_query_uses_the_partial_index() {
        let (_d, l) = temp();
        // Enough rows, terminal and not due, that a scan would be the planner's other choice.
        l.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO sessions (provider, session_id, status) \
             SELECT 'm', 's' || i, CASE WHEN i % 10 = 0 THEN 'PENDING' ELSE 'COMPLETED' END FROM n; \
             ANALYZE;",
        )
        .unwrap();
        let plan = plan_of(
            &l,
            due_select!(),
            params![0, 0, clock::format(clock::now()), 500],
        );
        assert!(plan.contains("INDEX sessions_due"), "plan was: {plan}");
        assert!(!plan.contains("SCAN sessions"), "plan was: {plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "the index must also give the order: {plan}"
        );
    }

    fn plan_of(l: &Ledger, sql: &str, params: impl rusqlite::Params) -> String {
        let conn = l.conn();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        plan.join("\n")
    }

    #[test]
    fn once_all_walks_the_rowid_in_order() {
        let (_d, l) = temp();
        l.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO sessions (provider, session_id, status) \
             SELECT 'm', 's' || i, CASE WHEN i % 10 = 0 THEN 'PENDING' ELSE 'COMPLETED' END FROM n; \
             ANALYZE;",
        )
        .unwrap();
        let now = clock::format(clock::now());
        let plan = plan_of(&l, CLAIM_ALL, params!["o", now, 0, 500, now]);
        assert!(
            plan.contains("INTEGER PRIMARY KEY (rowid>?)"),
            "plan was: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "plan was: {plan}");
    }

    #[test]
    fn a_plain_insert_is_due_at_once() {
        let (_d, l) = temp();
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             VALUES ('mopay', 'MOP_abc123_ORDER12345', 'ORDER12345', '100.00', 'LSL')",
        )
        .unwrap();
        let now = clock::now();
        let got = l
            .claim(
                "me",
                now,
                clock::add(now, Duration::from_secs(60)),
                10,
                ClaimMode::DueBy(now),
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, "PENDING");
        assert_eq!(got[0].amount.as_deref(), Some("100.00"));
        // Claimed: not due again until the lease ends.
        let again = l
            .claim(
                "other",
                now,
                clock::add(now, Duration::from_secs(60)),
                10,
                ClaimMode::DueBy(now),
            )
            .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn constraints_refuse_bad_direct_inserts_by_name() {
        let (_d, l) = temp();
        let bad = [
            (
                "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'x', '-1')",
                "amount_is_decimal_text",
            ),
            (
                "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'x', 'ten')",
                "amount_is_decimal_text",
            ),
            (
                "INSERT INTO sessions (provider, session_id) VALUES ('m', 'a' || char(10) || 'b')",
                "session_id_is_valid",
            ),
            (
                "INSERT INTO sessions (provider, session_id) VALUES ('m', '')",
                "session_id_is_valid",
            ),
            (
                "INSERT INTO sessions (provider, session_id, status) VALUES ('m', 'y', 'PAID')",
                "status_is_known",
            ),
        ];
        for (sql, name) in bad {
            let e = l.execute_batch(sql).unwrap_err().to_string();
            assert!(e.contains(name), "{sql}: {e}");
        }
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id, amount) VALUES ('m', 'a/b %?#', '0.5')",
        )
        .unwrap();
    }

    /// A ledger at schema version `v`, made by applying the first `v` migrations by hand.
    fn ledger_at_version(path: &Path, v: usize) -> Connection {
        let c = Connection::open(path).unwrap();
        for sql in &schema::MIGRATIONS[..v] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", v as i64).unwrap();
        c
    }

    fn schema_of(c: &Connection) -> Vec<String> {
        let mut stmt = c
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn version_1_upgrades_keeping_its_rows_to_the_fresh_schema() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        let c = ledger_at_version(&old, 1);
        c.execute_batch(
            "INSERT INTO sessions (provider, session_id, amount) VALUES ('mopay', 'kept', '5.00')",
        )
        .unwrap();
        drop(c);
        let l = Ledger::open(&old).unwrap();
        assert_eq!(l.find("kept").unwrap()[0].amount.as_deref(), Some("5.00"));
        drop(l);
        let fresh = dir.path().join("fresh.db");
        drop(Ledger::open(&fresh).unwrap());
        let (a, b) = (
            Connection::open(&old).unwrap(),
            Connection::open(&fresh).unwrap(),
        );
        assert_eq!(schema_of(&a), schema_of(&b));
        let v: i64 = a
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::VERSION);
    }

    #[test]
    fn a_failed_upgrade_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let c = ledger_at_version(&path, 1);
        // Something in the way of migration 2.
        c.execute_batch("CREATE TABLE provider_state (x INTEGER)")
            .unwrap();
        let before = schema_of(&c);
        drop(c);
        let e = Ledger::open(&path).err().unwrap().to_string();
        assert!(e.contains("migrating"), "{e}");
        let c = Connection::open(&path).unwrap();
        assert_eq!(schema_of(&c), before, "half a migration was left behind");
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }

    #[test]
    fn a_newer_ledger_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        drop(Ledger::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Ledger::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer"), "{e}");
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }

    #[test]
    fn reopening_is_idempotent_and_import_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let l = Ledger::open(&path).unwrap();
        let s = |id: &str| NewSession {
            provider: "m".into(),
            session_id: id.into(),
            ..Default::default()
        };
        let out = l
            .import(vec![Ok(s("a")), Err("line 3: bad".into()), Ok(s("b"))], 10)
            .unwrap();
        assert_eq!(out.errors, vec!["line 3: bad".to_string()]);
        assert!(l.find("a").unwrap().is_empty());
        let out = l.import(vec![Ok(s("a")), Ok(s("b"))], 10).unwrap();
        assert_eq!((out.added, out.already_present), (2, 0));
        drop(l);
        let l = Ledger::open(&path).unwrap();
        let out = l.import(vec![Ok(s("a")), Ok(s("c"))], 10).unwrap();
        assert_eq!((out.added, out.already_present), (1, 1));
    }
}
