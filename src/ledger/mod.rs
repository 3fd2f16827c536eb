//! The ledger: sessions, transitions and the events outbox, in one SQLite file (WAL,
//! `busy_timeout`, the default) or in a PostgreSQL database (several daemons on one ledger).
//! All SQL of the program lives in this module; every operation is written once, against
//! [`db::Tx`], and runs on either engine.
//!
//! The ledger is synchronous; async callers go through [`Ledger::call`], which runs the work on
//! tokio's blocking pool. It knows nothing of HTTP, providers or tokio's runtime beyond that one
//! helper.
//!
//! Invariants: every write transaction starts `IMMEDIATE` on SQLite, so two processes on one file
//! queue on `busy_timeout` instead of failing on a lock upgrade; claims on PostgreSQL lock the
//! rows they take with `FOR UPDATE SKIP LOCKED`, so two daemons never claim one row at once.

pub mod copy;
pub mod db;
mod model;
pub mod schema;

pub use model::*;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db::{AnyText, DbError, Engine, Mode, Row, Tx, Val, vals};

use crate::clock::{self, Timestamp};
use crate::events::{self, Written};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL connections one process opens at most (claims, records and the outbox overlap).
const PG_CONNECTIONS: usize = 4;

/// A ledger failure. The ledger (file or redacted URL) and the operation are named so the
/// message stands alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause is in the message, not a `#[source]`: `{:#}` would print it twice.
    #[error("ledger {ledger}: {what}: {cause}")]
    Db {
        ledger: String,
        what: &'static str,
        cause: DbError,
    },
    #[error(
        "ledger {ledger}: schema version {found} is newer than this build's {supported}; upgrade payrecon (the ledger was not changed)"
    )]
    TooNew {
        ledger: String,
        found: i64,
        supported: i64,
    },
    #[error("ledger {ledger}: {message}")]
    Corrupt { ledger: String, message: String },
    #[error("ledger task failed: {0}")]
    Join(String),
    /// An enqueue of a session already there with another reference, amount or currency.
    #[error("{0}")]
    Conflict(Box<Conflict>),
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

/// Where a ledger lives. Shown (Display and Debug) without a URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Path(PathBuf),
    /// A PostgreSQL database (`postgres://…`).
    Url(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Location::Url(u) => f.debug_tuple("Url").field(&db::redact(u)).finish(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(&db::redact(u)),
        }
    }
}

/// A handle to one ledger; clones share its connections.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    /// `location` as shown in messages (a URL without its password).
    name: String,
    engine: Engine,
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
use session_cols;

/// The transition's compare-and-set (hot path: one per resolved session).
macro_rules! transition_cas {
    () => {
        "UPDATE sessions SET status = ?1, resolved_at = ?2, checks = checks + ?3, \
         answered_checks = answered_checks + ?3, \
         last_checked_at = CASE WHEN ?3 = 1 THEN ?2 ELSE last_checked_at END, \
         provider_status = coalesce(?4, provider_status), \
         transaction_id = coalesce(?5, transaction_id), \
         payment_method = coalesce(?6, payment_method), \
         provider_completed_at = coalesce(?7, provider_completed_at), \
         last_error = NULL, lease_owner = NULL, lease_until = NULL, late_check_at = ?10 \
         WHERE id = ?8 AND status = ?9"
    };
}

/// SQLite: a plain UPDATE, the row read back by rowid after (`RETURNING` opens a temporary
/// table per statement there, the largest single cost of recording when profiled).
/// PostgreSQL: one round trip with `RETURNING`.
const TRANSITION_CAS: [&str; 2] = [
    transition_cas!(),
    concat!(transition_cas!(), " RETURNING ", session_cols!()),
];

/// SQLite, when the caller has the session as claimed: the same compare-and-set, also on what
/// the event reports, so the event can be built from the claimed copy (no read-back). A row
/// that changed meanwhile fails it and takes [`TRANSITION_CAS`].
const TRANSITION_CAS_SEEN: &str = concat!(
    transition_cas!(),
    " AND checks = ?11 AND reference IS ?12 AND amount IS ?13 AND currency IS ?14 \
     AND provider = ?15 AND session_id = ?16"
);

/// A transition row's text fields after its session, in `insert_transition!`'s order (the
/// one-by-one and the set-based record share it).
fn transition_fields<'a>(
    from: Status,
    to: Status,
    source: Source,
    reason: Option<&'a str>,
    facts: &'a Facts,
) -> [Option<&'a str>; 11] {
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
    ]
}

/// A transition's event (`from` → `to`): a new id and its JSON, for the session whose `checks`
/// are now `checks`.
fn transition_event(
    now_s: &str,
    session: &Session,
    checks: i64,
    (from, to): (Status, Status),
    reason: Option<&str>,
    facts: &Facts,
    compared: &[&'static str],
) -> Written {
    let id = events::new_id();
    let payload = events::transition_payload(&events::TransitionEvent {
        id: &id,
        created_at: now_s,
        session,
        checks,
        from,
        to,
        reason,
        facts,
        compared,
    });
    Written {
        id,
        kind: to.event_type(),
        payload,
    }
}

macro_rules! insert_transition {
    () => {
        "INSERT INTO transitions (session, from_status, to_status, source, reason, \
         provider_status, transaction_id, payment_method, provider_amount, \
         provider_reference, provider_currency, provider_completed_at, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    };
}

const INSERT_TRANSITION: &str = insert_transition!();

/// PostgreSQL writes the transition row and its event in one statement (one round trip).
const INSERT_TRANSITION_AND_EVENT: &str = concat!(
    "WITH t AS (",
    insert_transition!(),
    ") INSERT INTO events (id, type, session, payload, created_at, next_attempt_at) \
     VALUES (?14, ?15, ?1, ?16, ?13, ?13)"
);

const SESSION_BY_ROWID: &str = concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?1");

const LATE_CHECK_DONE: &str = concat!(
    "UPDATE sessions SET late_check_at = ?1, last_error = coalesce(?2, last_error), \
     lease_owner = NULL, lease_until = NULL \
     WHERE id = ?3 AND lease_owner = ?4 AND (status = 'EXPIRED' OR status = 'REVIEW') RETURNING ",
    session_cols!()
);

macro_rules! event_cols {
    () => {
        "e.id, e.type, e.created_at, e.payload, e.attempts, e.next_attempt_at, \
         e.delivered_at, e.dead_at, e.last_error"
    };
}

/// Reads [`event_cols`] starting at column `at`.
fn event_from_row(r: &Row<'_>, at: usize) -> Result<Event, DbError> {
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

/// The rows a claim takes, as `FROM … LIMIT ?4` tails. Due: PENDING sessions due by `?3`,
/// served by the partial index `sessions_due` (a test asserts the plan), so its cost grows with
/// the sessions due.
macro_rules! due_rows {
    () => {
        "FROM sessions WHERE status = 'PENDING' AND next_check_at <= ?3 \
         ORDER BY next_check_at LIMIT ?4"
    };
}

/// EXPIRED sessions, and REVIEW sessions closed on an answer payrecon could not act on, whose
/// late check is due by `?3` (only those two ever carry a `late_check_at`).
macro_rules! late_rows {
    () => {
        "FROM sessions WHERE late_check_at IS NOT NULL AND late_check_at <= ?3 \
         AND (status = 'EXPIRED' OR status = 'REVIEW') ORDER BY late_check_at LIMIT ?4"
    };
}

/// `once --all`: PENDING sessions after rowid `?3` whose lease (if any) ran out by `?5`, in
/// rowid order — one scan per pass however many batches it takes (SQLite is told not to pick
/// the due index and sort).
macro_rules! all_rows {
    ($from:literal) => {
        concat!(
            $from,
            " WHERE status = 'PENDING' AND id > ?3 \
             AND (lease_until IS NULL OR lease_until <= ?5) ORDER BY id LIMIT ?4"
        )
    };
}

/// One kind of claim in both engines' words. Parameters: `?1` owner, `?2` lease end, then the
/// rows' own (see the `*_rows!` tails).
struct Claim {
    /// PostgreSQL: one `UPDATE … RETURNING` that locks the rows it takes and skips rows another
    /// transaction is taking, so concurrent claims never return one row twice.
    pg: &'static str,
    /// SQLite: the rows as they are …
    select: &'static str,
    /// … then one UPDATE leasing exactly those, by id (`?3`, a JSON array). SQLite runs
    /// `UPDATE … RETURNING` by first collecting every row in a temporary table, which cost more
    /// than reading the rows and updating them; nothing can come between the two statements
    /// inside the write transaction.
    lease: &'static str,
    /// What the lease moves: the late check's time instead of the next check's.
    late: bool,
}

macro_rules! pg_claim {
    ($set:literal, $rows:expr) => {
        concat!(
            "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, ",
            $set,
            " WHERE id IN (SELECT id ",
            $rows,
            " FOR UPDATE SKIP LOCKED) RETURNING ",
            session_cols!()
        )
    };
}

macro_rules! lite_lease {
    ($set:literal) => {
        concat!(
            "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, ",
            $set,
            " WHERE id IN (SELECT value FROM json_each(?3))"
        )
    };
}

const CLAIM_DUE: Claim = Claim {
    pg: pg_claim!("next_check_at = ?2", due_rows!()),
    select: concat!("SELECT ", session_cols!(), " ", due_rows!()),
    lease: lite_lease!("next_check_at = ?2"),
    late: false,
};

const CLAIM_LATE: Claim = Claim {
    pg: pg_claim!("late_check_at = ?2", late_rows!()),
    select: concat!("SELECT ", session_cols!(), " ", late_rows!()),
    lease: lite_lease!("late_check_at = ?2"),
    late: true,
};

const CLAIM_ALL: Claim = Claim {
    pg: pg_claim!("next_check_at = ?2", all_rows!("FROM sessions")),
    select: concat!(
        "SELECT ",
        session_cols!(),
        " ",
        all_rows!("FROM sessions NOT INDEXED")
    ),
    lease: lite_lease!("next_check_at = ?2"),
    late: false,
};

/// Takes the rows of `claim` for `owner` until `until`; `params` as [`Claim`] says. Returns
/// them as leased. A row that cannot be read as a session is leased too (so it is not taken
/// again before the lease ends) and set aside: marked in `last_error` and returned as
/// [`Unreadable`], for the caller to name.
fn claim_rows(
    tx: &mut Tx<'_>,
    claim: &Claim,
    params: &[Val<'_>],
    owner: &str,
    until: &str,
) -> Result<Claimed, DbError> {
    let mut claimed = if tx.is_pg() {
        split(tx.query(claim.pg, params, read_session)?)
    } else {
        let claimed = split(tx.query(claim.select, params, read_session)?);
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let mut ids = String::with_capacity((claimed.sessions.len() + 1) * 8 + 2);
        let all = claimed.sessions.iter().map(|s| s.rowid);
        for id in all.chain(claimed.unreadable.iter().map(|u| u.rowid)) {
            ids.push(if ids.is_empty() { '[' } else { ',' });
            let _ = write!(ids, "{id}"); // Writing to a String cannot fail.
        }
        ids.push(']');
        let leased = tx.exec(claim.lease, vals![owner, until, ids.as_str()])?;
        let read = claimed.sessions.len() + claimed.unreadable.len();
        if leased != read as u64 {
            // Cannot happen inside the write transaction; if it did, nothing is kept.
            return Err(DbError::Value(format!(
                "leased {leased} of the {read} sessions read"
            )));
        }
        claimed
    };
    for u in &claimed.unreadable {
        let mark = format!("{UNREADABLE_MARK}{}", u.error);
        tx.exec(
            "UPDATE sessions SET last_error = ?1 WHERE id = ?2",
            vals![mark.as_str(), u.rowid],
        )?;
    }
    let rows = &mut claimed.sessions;
    for s in rows.iter_mut() {
        s.lease_owner = Some(owner.to_string());
        s.lease_until = Some(until.to_string());
        if claim.late {
            s.late_check_at = Some(until.to_string());
        } else {
            s.next_check_at = until.to_string();
        }
    }
    Ok(claimed)
}

const CLAIM_EVENTS: [&str; 2] = [
    "UPDATE events SET lease_owner = ?1, lease_until = ?2, next_attempt_at = ?2 \
     WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL AND dead_at IS NULL \
                   AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4) \
     RETURNING seq, id, payload, attempts",
    "UPDATE events SET lease_owner = ?1, lease_until = ?2, next_attempt_at = ?2 \
     WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL AND dead_at IS NULL \
                   AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4 \
                   FOR UPDATE SKIP LOCKED) \
     RETURNING seq, id, payload, attempts",
];

/// The marker `last_error` carries while a row is set aside (`stats` counts it).
pub const UNREADABLE_MARK: &str = "unreadable row: ";

/// A row as a session, or as [`Unreadable`] when a column has the wrong type or a value payrecon
/// would refuse. Only a row without a readable id is an error.
fn read_session(r: &Row<'_>) -> Result<Result<Session, Unreadable>, DbError> {
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
fn split(rows: Vec<Result<Session, Unreadable>>) -> Claimed {
    let mut c = Claimed::default();
    for r in rows {
        match r {
            Ok(s) => c.sessions.push(s),
            Err(u) => c.unreadable.push(u),
        }
    }
    c
}

fn session_from_row(r: &Row<'_>) -> Result<Session, DbError> {
    Ok(Session {
        rowid: r.get(0)?,
        provider: r.get(1)?,
        session_id: r.get(2)?,
        reference: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        status: {
            let text: String = r.get(6)?;
            text.parse().map_err(DbError::Value)?
        },
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
    /// Opens (creating if needed) and migrates the SQLite ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, Error> {
        Ledger::connect(&Location::Path(path.to_path_buf()))
    }

    /// Opens (creating the tables if needed) and migrates the ledger at `location`.
    pub fn connect(location: &Location) -> Result<Ledger, Error> {
        let name = location.to_string();
        let err = |what| {
            let ledger = name.clone();
            move |e: DbError| Error::Db {
                ledger,
                what,
                cause: e,
            }
        };
        let engine = match location {
            Location::Path(path) => {
                let lite = |e: rusqlite::Error| DbError::from(e);
                let conn = rusqlite::Connection::open(path)
                    .map_err(lite)
                    .map_err(err("opening"))?;
                conn.busy_timeout(BUSY_TIMEOUT)
                    .map_err(lite)
                    .map_err(err("setting busy_timeout"))?;
                // journal_mode answers with a row; WAL lets readers run beside the one writer.
                let mode: String = conn
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    .map_err(lite)
                    .map_err(err("enabling WAL (is this a SQLite file?)"))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(Error::Corrupt {
                        ledger: name,
                        message: format!("cannot enable WAL, journal mode is {mode}"),
                    });
                }
                // FULL: a committed transition survives power loss, not only a process crash.
                // temp_store MEMORY: a claim's `RETURNING` rows (and sorts) stay in memory instead
                // of a temporary file created and unlinked in /var/tmp per claim.
                conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;")
                    .map_err(lite)
                    .map_err(err("setting pragmas"))?;
                Engine::Lite(Mutex::new(conn))
            }
            Location::Url(url) => {
                let config = db::pg_config(url).map_err(|message| Error::Corrupt {
                    ledger: name.clone(),
                    message,
                })?;
                let engine = Engine::Pg(Box::new(db::PgPool::new(config, PG_CONNECTIONS)));
                engine.batch("SELECT 1").map_err(err("connecting"))?;
                engine
            }
        };
        let ledger = Ledger {
            inner: Arc::new(Inner {
                location: location.clone(),
                name,
                engine,
            }),
        };
        schema::migrate(&ledger.inner.engine, &ledger.inner.name)?;
        if let Engine::Lite(_) = &ledger.inner.engine {
            // Migrations rebuild tables, which SQLite documents doing with foreign keys off
            // (they are checked before each migration commits); on for everything after.
            ledger
                .inner
                .engine
                .batch("PRAGMA foreign_keys = ON;")
                .map_err(ledger.err("setting pragmas"))?;
        }
        Ok(ledger)
    }

    /// Where this ledger lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// Whether this ledger is on PostgreSQL.
    pub fn is_pg(&self) -> bool {
        self.inner.engine.is_pg()
    }

    /// Runs `f` on tokio's blocking pool, so async code never blocks on the database.
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

    fn err(&self, what: &'static str) -> impl Fn(DbError) -> Error + '_ {
        move |cause| Error::Db {
            ledger: self.inner.name.clone(),
            what,
            cause,
        }
    }

    /// Runs `f` in one transaction; `what` names the operation in an error.
    fn tx<T>(
        &self,
        mode: Mode,
        what: &'static str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, DbError>,
    ) -> Result<T, Error> {
        self.inner.engine.tx(mode, f).map_err(self.err(what))
    }

    /// Picks the statement for this ledger's engine from a `[SQLite, PostgreSQL]` pair.
    fn dialect<'s>(&self, pair: &[&'s str; 2]) -> &'s str {
        pair[usize::from(self.is_pg())]
    }

    /// Adds one session, due at once; an existing `(provider, session_id)` is left untouched.
    pub fn enqueue(&self, s: &NewSession) -> Result<Enqueued, Error> {
        match self.tx(Mode::Write, "adding a session", |tx| insert_session(tx, s))? {
            Inserted::Added => Ok(Enqueued::Added),
            Inserted::Same => Ok(Enqueued::AlreadyPresent),
            Inserted::Differs(c) => Err(Error::Conflict(Box::new(c))),
        }
    }

    /// Adds many sessions all-or-nothing: rows come with their line and are validated by the
    /// caller, which passes `Err(message)` for a bad row; a bad row, or one already in the
    /// ledger (or earlier in the rows) with another reference, amount or currency, rolls the
    /// whole import back. `errors` holds at most `max_errors` messages, each with its line.
    pub fn import<I>(&self, rows: I, max_errors: usize) -> Result<ImportOutcome, Error>
    where
        I: IntoIterator<Item = (u64, Result<NewSession, String>)>,
    {
        self.tx(Mode::Write, "importing sessions", |tx| {
            let mut out = ImportOutcome::default();
            for (line, row) in rows {
                let problem = match row {
                    Ok(s) if out.errors.is_empty() => match insert_session(tx, &s)? {
                        Inserted::Added => {
                            out.added += 1;
                            continue;
                        }
                        Inserted::Same => {
                            out.already_present += 1;
                            continue;
                        }
                        Inserted::Differs(c) => c.to_string(),
                    },
                    Ok(_) => continue,
                    Err(e) => e,
                };
                out.failed_rows += 1;
                if out.errors.len() < max_errors {
                    out.errors.push(format!("line {line}: {problem}"));
                }
            }
            if out.failed_rows > 0 {
                out.added = 0;
                out.already_present = 0;
                tx.roll_back();
            }
            Ok(out)
        })
    }

    /// Claims up to `limit` sessions for `owner` until `lease_until`, in one transaction.
    pub fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        mode: ClaimMode,
    ) -> Result<Claimed, Error> {
        let until = clock::format(lease_until);
        let now_s = clock::format(now);
        self.tx(Mode::Lease, "claiming sessions", |tx| match mode {
            ClaimMode::DueBy(t) => claim_rows(
                tx,
                &CLAIM_DUE,
                vals![owner, &until, &clock::format(t), limit],
                owner,
                &until,
            ),
            ClaimMode::LateBy(t) => claim_rows(
                tx,
                &CLAIM_LATE,
                vals![owner, &until, &clock::format(t), limit],
                owner,
                &until,
            ),
            ClaimMode::AllAfter(id) => claim_rows(
                tx,
                &CLAIM_ALL,
                vals![owner, &until, id, limit, &now_s],
                owner,
                &until,
            ),
        })
    }

    /// Records a group of outcomes in one transaction. Transitions are compare-and-set on the
    /// status, each written with its transition row and event; reschedules and releases apply
    /// while `owner` still holds the lease. Returns the events written.
    pub fn record(
        &self,
        owner: &str,
        now: Timestamp,
        records: &[Record],
    ) -> Result<Vec<Written>, Error> {
        let now_s = clock::format(now);
        self.tx(Mode::Write, "recording outcomes", |tx| {
            let mut written = Vec::new();
            // PostgreSQL pays per statement (a round trip, and its CHECK and index predicates
            // prepared per execution): a group's transitions go in three set-based statements.
            let pg_transitions = tx.is_pg()
                && records
                    .iter()
                    .filter(|r| matches!(r, Record::Transition { .. }))
                    .count()
                    > 1;
            if pg_transitions {
                record_transitions_pg(tx, &now_s, records, &mut written)?;
            }
            for rec in records {
                if pg_transitions && matches!(rec, Record::Transition { .. }) {
                    continue;
                }
                record_one(tx, owner, &now_s, rec, &mut written)?;
            }
            Ok(written)
        })
    }

    /// Sessions matching a filter, newest first; a row payrecon cannot read is listed as
    /// [`Unreadable`], not fatal.
    pub fn list(&self, f: &ListFilter) -> Result<Vec<Result<Session, Unreadable>>, Error> {
        self.tx(Mode::Read, "listing sessions", |tx| {
            tx.query(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) \
                     AND (CAST(?2 AS TEXT) IS NULL OR provider = ?2) ORDER BY id DESC LIMIT ?3"
                ),
                vals![f.status.map(|s| s.as_str()), f.provider.as_deref(), f.limit],
                read_session,
            )
        })
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
        self.tx(Mode::Lease, "claiming a session", |tx| {
            tx.query_opt(
                concat!(
                    "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 \
                     WHERE provider = ?3 AND session_id = ?4 AND status = 'PENDING' \
                     AND (lease_until IS NULL OR lease_until <= ?5) RETURNING ",
                    session_cols!()
                ),
                vals![
                    owner,
                    &clock::format(lease_until),
                    provider,
                    session_id,
                    &clock::format(now)
                ],
                session_from_row,
            )
        })
    }

    /// How many sessions are PENDING (for a backfill's progress bar).
    pub fn count_pending(&self) -> Result<u64, Error> {
        self.tx(Mode::Read, "counting pending sessions", |tx| {
            tx.query_one(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// One session by provider and id.
    pub fn get(&self, provider: &str, session_id: &str) -> Result<Option<Session>, Error> {
        self.tx(Mode::Read, "reading a session", |tx| {
            tx.query_opt(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE provider = ?1 AND session_id = ?2"
                ),
                vals![provider, session_id],
                session_from_row,
            )
        })
    }

    /// Every session with this id (one per provider that has it).
    pub fn find(&self, session_id: &str) -> Result<Vec<Session>, Error> {
        self.tx(Mode::Read, "finding a session", |tx| {
            tx.query(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE session_id = ?1 ORDER BY provider"
                ),
                vals![session_id],
                session_from_row,
            )
        })
    }

    /// A session's transitions, oldest first.
    pub fn transitions(&self, rowid: i64) -> Result<Vec<TransitionRow>, Error> {
        self.tx(Mode::Read, "reading transitions", |tx| {
            tx.query(
                "SELECT from_status, to_status, at, source, reason, provider_status, transaction_id \
                 FROM transitions WHERE session = ?1 ORDER BY id",
                vals![rowid],
                |r| {
                    Ok(TransitionRow {
                        from: r.get(0)?,
                        to: r.get(1)?,
                        at: r.get(2)?,
                        source: r.get(3)?,
                        reason: r.get(4)?,
                        provider_status: r.get(5)?,
                        transaction_id: r.get(6)?,
                    })
                },
            )
        })
    }

    /// A session's events, oldest first.
    pub fn session_events(&self, rowid: i64) -> Result<Vec<Event>, Error> {
        self.tx(Mode::Read, "reading events", |tx| {
            tx.query(
                concat!(
                    "SELECT ",
                    event_cols!(),
                    " FROM events e WHERE session = ?1 ORDER BY seq"
                ),
                vals![rowid],
                |r| event_from_row(r, 0),
            )
        })
    }

    /// Counts by provider × status, sessions due now, and the outbox's state.
    pub fn stats(&self, now: Timestamp) -> Result<Stats, Error> {
        let providers = self.provider_states()?;
        self.tx(Mode::Read, "reading stats", |tx| {
            let sessions = tx.query(
                "SELECT provider, status, count(*) FROM sessions GROUP BY provider, status ORDER BY 1, 2",
                &[],
                // A provider an application wrote as a BLOB is shown, escaped, not fatal.
                |r| {
                    let provider = r.get::<AnyText>(0)?.0.unwrap_or_default();
                    Ok((provider.escape_debug().to_string(), r.get(1)?, r.get(2)?))
                },
            )?;
            let unreadable = tx.query_one(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING' \
                 AND substr(CAST(last_error AS TEXT), 1, 16) = ?1",
                vals![UNREADABLE_MARK],
                |r| r.get(0),
            )?;
            let due_now = tx.query_one(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING' AND next_check_at <= ?1",
                vals![&clock::format(now)],
                |r| r.get(0),
            )?;
            let (events_total, events_waiting, events_dead) = tx.query_one(
                "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL), \
                 count(*) FILTER (WHERE dead_at IS NOT NULL) FROM events",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let completed = sum_completed(tx)?;
            let (late_checks_waiting, anomalies) = tx.query_one(
                "SELECT (SELECT count(*) FROM sessions WHERE late_check_at IS NOT NULL AND status <> 'PENDING'), \
                        (SELECT count(*) FROM events WHERE type = 'session.anomaly')",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
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
                unreadable,
            })
        })
    }

    /// What is known about each provider that has been called.
    pub fn provider_states(&self) -> Result<Vec<ProviderState>, Error> {
        self.tx(Mode::Read, "reading provider state", |tx| {
            tx.query(
                "SELECT provider, auth_refused_at, auth_error, paused_until, last_answer_at, \
                 misdirected_at, misdirected_error, answered_endpoint FROM provider_state \
                 ORDER BY provider",
                &[],
                |r| {
                    Ok(ProviderState {
                        provider: r.get(0)?,
                        auth_refused_at: r.get(1)?,
                        auth_error: r.get(2)?,
                        paused_until: r.get(3)?,
                        last_answer_at: r.get(4)?,
                        misdirected_at: r.get(5)?,
                        misdirected_error: r.get(6)?,
                        answered_endpoint: r.get(7)?,
                    })
                },
            )
        })
    }

    /// Records what a pass learned about a provider (see [`ProviderNote`]).
    pub fn note_provider(
        &self,
        provider: &str,
        now: Timestamp,
        note: &ProviderNote,
    ) -> Result<(), Error> {
        let paused = note.paused_until.map(clock::format);
        self.tx(Mode::Write, "recording provider state", |tx| {
            tx.exec(
                "INSERT INTO provider_state (provider, auth_refused_at, auth_error, paused_until, \
                         last_answer_at, misdirected_at, misdirected_error, answered_endpoint) \
                 VALUES (?1, CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?2 END, ?3, ?4, \
                         CASE WHEN ?6 = 1 THEN ?2 END, \
                         CASE WHEN CAST(?7 AS TEXT) IS NOT NULL THEN ?2 END, ?7, \
                         CASE WHEN ?6 = 1 THEN ?8 END) \
                 ON CONFLICT (provider) DO UPDATE SET \
                   auth_refused_at = CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?2 WHEN ?5 = 1 THEN NULL \
                                     ELSE provider_state.auth_refused_at END, \
                   auth_error = CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?3 WHEN ?5 = 1 THEN NULL \
                                ELSE provider_state.auth_error END, \
                   paused_until = CASE WHEN CAST(?4 AS TEXT) IS NULL THEN provider_state.paused_until \
                                  WHEN coalesce(provider_state.paused_until, '') > ?4 THEN provider_state.paused_until \
                                  ELSE ?4 END, \
                   last_answer_at = CASE WHEN ?6 = 1 THEN ?2 ELSE provider_state.last_answer_at END, \
                   misdirected_at = CASE WHEN CAST(?7 AS TEXT) IS NOT NULL \
                                         THEN coalesce(provider_state.misdirected_at, ?2) \
                                    WHEN ?6 = 1 THEN NULL ELSE provider_state.misdirected_at END, \
                   misdirected_error = CASE WHEN CAST(?7 AS TEXT) IS NOT NULL THEN ?7 \
                                       WHEN ?6 = 1 THEN NULL ELSE provider_state.misdirected_error END, \
                   answered_endpoint = CASE WHEN ?6 = 1 THEN ?8 ELSE provider_state.answered_endpoint END",
                vals![
                    provider,
                    &clock::format(now),
                    note.refused.as_deref(),
                    paused.as_deref(),
                    i64::from(note.reached || note.answered),
                    i64::from(note.answered),
                    note.misdirected.as_deref(),
                    note.endpoint.as_str()
                ],
            )?;
            Ok(())
        })
    }

    /// Claims up to `limit` events due for delivery, leased to `owner` until `lease_until`.
    pub fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, Error> {
        let mut events = self.tx(Mode::Lease, "claiming events", |tx| {
            tx.query(
                self.dialect(&CLAIM_EVENTS),
                vals![
                    owner,
                    &clock::format(lease_until),
                    &clock::format(now),
                    limit
                ],
                |r| {
                    Ok(OutboxEvent {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        payload: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )
        })?;
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
        let now_s = clock::format(now);
        self.tx(Mode::Write, "recording deliveries", |tx| {
            for d in results {
                match d {
                    Delivery::Delivered { seq } => tx.exec(
                        "UPDATE events SET delivered_at = ?1, attempts = attempts + 1, last_error = NULL, \
                         lease_owner = NULL, lease_until = NULL WHERE seq = ?2 AND delivered_at IS NULL",
                        vals![&now_s, *seq],
                    )?,
                    Delivery::Retry {
                        seq,
                        next_attempt_at,
                        error,
                    } => tx.exec(
                        "UPDATE events SET next_attempt_at = ?1, attempts = attempts + 1, last_error = ?2, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                        vals![&clock::format(*next_attempt_at), error, *seq, owner],
                    )?,
                    Delivery::Dead { seq, error } => tx.exec(
                        "UPDATE events SET dead_at = ?1, attempts = attempts + 1, last_error = ?2, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                        vals![&now_s, error, *seq, owner],
                    )?,
                    Delivery::Release { seq } => tx.exec(
                        "UPDATE events SET next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?2 AND lease_owner = ?3 AND delivered_at IS NULL",
                        vals![&now_s, *seq, owner],
                    )?,
                };
            }
            Ok(())
        })
    }

    /// Events, newest first; `Dead` shows only dead ones.
    pub fn list_events(
        &self,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<(String, Event)>, Error> {
        self.tx(Mode::Read, "listing events", |tx| {
            tx.query(
                concat!(
                    "SELECT s.session_id, ",
                    event_cols!(),
                    " FROM events e JOIN sessions s ON s.id = e.session \
                     WHERE (?1 = 0 OR e.dead_at IS NOT NULL) ORDER BY e.seq DESC LIMIT ?2"
                ),
                vals![i64::from(filter == EventFilter::Dead), limit],
                |r| Ok((r.get(0)?, event_from_row(r, 1)?)),
            )
        })
    }

    /// Puts events back in line with a fresh schedule: one by id (dead, delivered or waiting),
    /// or every dead one. Returns how many.
    pub fn replay(&self, id: Option<&str>, now: Timestamp) -> Result<usize, Error> {
        let n = self.tx(Mode::Write, "replaying events", |tx| {
            tx.exec(
                "UPDATE events SET dead_at = NULL, delivered_at = NULL, attempts = 0, last_error = NULL, \
                 next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
                 WHERE (CAST(?2 AS TEXT) IS NULL AND dead_at IS NOT NULL) OR id = ?2",
                vals![&clock::format(now), id],
            )
        })?;
        Ok(n as usize)
    }

    /// Streams sessions for `export` in a stable order (by ledger id), calling `row` for each.
    pub fn export(
        &self,
        f: &ExportFilter,
        mut row: impl FnMut(&Session) -> Result<(), std::io::Error>,
    ) -> Result<u64, ExportError> {
        // Up to six statuses, as parameters (NULL for the unused ones): the same SQL for both
        // engines. There are six statuses; repeats are dropped first so none is crowded out.
        let mut distinct: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut statuses = [None; 6];
        for (slot, s) in statuses.iter_mut().zip(distinct) {
            *slot = Some(s);
        }
        let (since, until) = (f.since.map(clock::format), f.until.map(clock::format));
        let mut n = 0;
        let result = self.inner.engine.tx(Mode::Read, |tx| {
            tx.each(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions \
                     WHERE (CAST(?1 AS TEXT) IS NULL OR resolved_at >= ?1) \
                     AND (CAST(?2 AS TEXT) IS NULL OR resolved_at < ?2) \
                     AND (?3 = 0 OR status IN (?4, ?5, ?6, ?7, ?8, ?9)) \
                     AND (CAST(?10 AS TEXT) IS NULL OR provider = ?10) ORDER BY id"
                ),
                vals![
                    since.as_deref(),
                    until.as_deref(),
                    i64::from(!f.statuses.is_empty()),
                    statuses[0],
                    statuses[1],
                    statuses[2],
                    statuses[3],
                    statuses[4],
                    statuses[5],
                    f.provider.as_deref()
                ],
                |r| {
                    let s = match read_session(r)? {
                        Ok(s) => s,
                        Err(u) if f.skip_unreadable => {
                            tracing::warn!(provider = %u.provider, rowid = u.rowid, error = %u.error,
                                "left an unreadable sessions row out of the export");
                            return Ok(());
                        }
                        Err(u) => return Err(ExportStep::Unreadable(u)),
                    };
                    row(&s).map_err(ExportStep::Write)?;
                    n += 1;
                    Ok(())
                },
            )
        });
        match result {
            Ok(()) => Ok(n),
            Err(ExportStep::Db(e)) => Err(ExportError::Ledger(self.err("exporting")(e))),
            Err(ExportStep::Write(w)) => Err(ExportError::Write(w)),
            Err(ExportStep::Unreadable(u)) => Err(ExportError::Unreadable(u)),
        }
    }

    /// Whether the database answers (systemd's watchdog is fed only while it does).
    pub fn ping(&self) -> Result<(), Error> {
        self.inner
            .engine
            .query_strings("SELECT 1")
            .map(drop)
            .map_err(self.err("answering"))
    }

    /// Runs read-only SQL for unit tests (`EXPLAIN QUERY PLAN`, counts).
    #[cfg(test)]
    pub(crate) fn query_strings(&self, sql: &str) -> Result<Vec<String>, Error> {
        self.inner
            .engine
            .query_strings(sql)
            .map_err(self.err("running a query"))
    }

    /// Runs SQL that changes the ledger, for unit tests.
    #[cfg(test)]
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        self.inner
            .engine
            .batch(sql)
            .map_err(self.err("running SQL"))
    }

    /// The SQLite connection, for tests of SQLite's own plans.
    #[cfg(test)]
    fn lite<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        match &self.inner.engine {
            Engine::Lite(m) => f(&m.lock().unwrap()),
            Engine::Pg(_) => panic!("not a SQLite ledger"),
        }
    }
}

/// Why an export row stopped the stream.
enum ExportStep {
    Db(DbError),
    Write(std::io::Error),
    Unreadable(Unreadable),
}

impl From<DbError> for ExportStep {
    fn from(e: DbError) -> Self {
        ExportStep::Db(e)
    }
}

/// COMPLETED sessions counted and summed per currency, as decimals (SQLite's `sum()` would go
/// through floats).
fn sum_completed(tx: &mut Tx<'_>) -> Result<Vec<(String, u64, rust_decimal::Decimal)>, DbError> {
    let mut completed: Vec<(String, u64, rust_decimal::Decimal)> = Vec::new();
    tx.each(
        "SELECT coalesce(currency, ''), amount FROM sessions WHERE status = 'COMPLETED' ORDER BY 1",
        &[],
        |r| {
            let currency: String = r.get(0)?;
            let amount: Option<String> = r.get(1)?;
            let amount = amount.and_then(|a| a.parse().ok()).unwrap_or_default();
            match completed.last_mut() {
                Some((c, n, sum)) if *c == currency => {
                    *n += 1;
                    *sum += amount;
                }
                _ => completed.push((currency, 1, amount)),
            }
            Ok::<_, DbError>(())
        },
    )?;
    Ok(completed)
}

/// The set-based compare-and-set of a group's transitions on PostgreSQL: one UPDATE … FROM
/// unnest(…) RETURNING the sessions that moved, then their transition rows and events in one
/// INSERT each. A session that lost the compare-and-set takes the one-by-one path (its anomaly).
const PG_TRANSITIONS_CAS: &str = "UPDATE sessions s SET status = v.to_status, resolved_at = ?1, \
     checks = s.checks + v.charged, answered_checks = s.answered_checks + v.charged, \
     last_checked_at = CASE WHEN v.charged = 1 THEN ?1 ELSE s.last_checked_at END, \
     provider_status = coalesce(v.provider_status, s.provider_status), \
     transaction_id = coalesce(v.transaction_id, s.transaction_id), \
     payment_method = coalesce(v.payment_method, s.payment_method), \
     provider_completed_at = coalesce(v.provider_completed_at, s.provider_completed_at), \
     last_error = NULL, lease_owner = NULL, lease_until = NULL, late_check_at = v.late_check_at \
     FROM unnest(?2::bigint[], ?3::text[], ?4::text[], ?5::bigint[], ?6::text[], ?7::text[], \
                 ?8::text[], ?9::text[], ?10::text[]) \
          AS v(id, from_status, to_status, charged, provider_status, transaction_id, \
               payment_method, provider_completed_at, late_check_at) \
     WHERE s.id = v.id AND s.status = v.from_status \
     RETURNING s.id, s.provider, s.session_id, s.reference, s.amount, s.currency, s.status, \
     s.created_at, s.next_check_at, s.checks, s.answered_checks, s.not_found_count, \
     s.last_checked_at, s.last_error, s.lease_owner, s.lease_until, s.provider_status, \
     s.transaction_id, s.payment_method, s.provider_completed_at, s.resolved_at, s.late_check_at";

const PG_INSERT_TRANSITIONS: &str = "INSERT INTO transitions (session, from_status, to_status, at, \
     source, reason, provider_status, transaction_id, payment_method, provider_amount, \
     provider_reference, provider_currency, provider_completed_at) \
     SELECT v.session, v.from_status, v.to_status, ?1, v.source, v.reason, v.provider_status, \
            v.transaction_id, v.payment_method, v.provider_amount, v.provider_reference, \
            v.provider_currency, v.provider_completed_at \
     FROM unnest(?2::bigint[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], ?7::text[], \
                 ?8::text[], ?9::text[], ?10::text[], ?11::text[], ?12::text[], ?13::text[]) \
          AS v(session, from_status, to_status, source, reason, provider_status, transaction_id, \
               payment_method, provider_amount, provider_reference, provider_currency, \
               provider_completed_at)";

const PG_INSERT_EVENTS: &str = "INSERT INTO events (id, type, session, payload, created_at, \
     next_attempt_at) \
     SELECT v.id, v.type, v.session, v.payload, ?1, ?1 \
     FROM unnest(?2::text[], ?3::text[], ?4::bigint[], ?5::text[]) AS v(id, type, session, payload)";

fn record_transitions_pg(
    tx: &mut Tx<'_>,
    now_s: &str,
    records: &[Record],
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    let transitions: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r, Record::Transition { .. }))
        .collect();
    let lates: Vec<Option<String>> = transitions
        .iter()
        .map(|r| match r {
            Record::Transition { late_check_at, .. } => late_check_at.map(clock::format),
            _ => None,
        })
        .collect();
    let mut ids = Vec::new();
    let mut charged = Vec::new();
    let mut cols: [Vec<Option<&str>>; 7] = Default::default();
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
    }
    let moved: HashMap<i64, Session> = tx
        .query(
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
                &cols[6][..]
            ],
            session_from_row,
        )?
        .into_iter()
        .map(|s| (s.rowid, s))
        .collect();
    let mut t_sessions = Vec::new();
    let mut t_cols: [Vec<Option<&str>>; 11] = Default::default();
    let mut events: Vec<(i64, Written)> = Vec::new();
    for r in &transitions {
        let Record::Transition {
            rowid,
            from,
            to,
            source,
            reason,
            facts,
            compared,
            ..
        } = r
        else {
            continue;
        };
        let Some(session) = moved.get(rowid) else {
            // Lost the compare-and-set: the one-by-one path finds out what was recorded.
            record_one(tx, "", now_s, r, written)?;
            continue;
        };
        t_sessions.push(*rowid);
        let fields = transition_fields(*from, *to, *source, reason.as_deref(), facts);
        for (col, v) in t_cols.iter_mut().zip(fields) {
            col.push(v);
        }
        let event = transition_event(
            now_s,
            session,
            session.checks,
            (*from, *to),
            reason.as_deref(),
            facts,
            compared,
        );
        events.push((*rowid, event));
    }
    if t_sessions.is_empty() {
        return Ok(());
    }
    tx.exec(
        PG_INSERT_TRANSITIONS,
        vals![
            now_s,
            &t_sessions[..],
            &t_cols[0][..],
            &t_cols[1][..],
            &t_cols[2][..],
            &t_cols[3][..],
            &t_cols[4][..],
            &t_cols[5][..],
            &t_cols[6][..],
            &t_cols[7][..],
            &t_cols[8][..],
            &t_cols[9][..],
            &t_cols[10][..]
        ],
    )?;
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

/// A transition that lost its compare-and-set: someone recorded this session first. If the
/// provider now says something else than what was recorded, that contradiction is an anomaly.
fn lost_cas(
    tx: &mut Tx<'_>,
    rowid: i64,
    source: Source,
    to: Status,
    facts: &Facts,
    now_s: &str,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
    match tx.query_opt(SESSION_BY_ROWID, vals![rowid], session_from_row)? {
        Some(cur)
            if source != Source::Manual && cur.status != to && cur.status != Status::Pending =>
        {
            let anomaly = Anomaly {
                provider_says: to,
                reason: format!(
                    "the provider's answer means {to} but the session was already recorded {}",
                    cur.status
                ),
                facts: facts.clone(),
            };
            written.push(write_anomaly(tx, &cur, &anomaly, now_s)?);
        }
        _ => tracing::debug!(
            rowid,
            "transition lost the compare-and-set; already recorded"
        ),
    }
    Ok(())
}

/// One outcome of [`Ledger::record`].
fn record_one(
    tx: &mut Tx<'_>,
    owner: &str,
    now_s: &str,
    rec: &Record,
    written: &mut Vec<Written>,
) -> Result<(), DbError> {
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
            seen,
        } => {
            let late = late_check_at.map(clock::format);
            let charged = i64::from(*charged);
            let cas: &[Val<'_>] = vals![
                to.as_str(),
                now_s,
                charged,
                facts.provider_status.as_deref(),
                facts.transaction_id.as_deref(),
                facts.payment_method.as_deref(),
                facts.provider_completed_at.as_deref(),
                *rowid,
                from.as_str(),
                late.as_deref()
            ];
            let seen_matches = match seen.as_deref() {
                Some(s) if !tx.is_pg() => {
                    let mut args = Vec::with_capacity(cas.len() + 6);
                    args.extend_from_slice(cas);
                    args.extend([
                        Val::Int(s.checks),
                        Val::from(s.reference.as_deref()),
                        Val::from(s.amount.as_deref()),
                        Val::from(s.currency.as_deref()),
                        Val::Text(&s.provider),
                        Val::Text(&s.session_id),
                    ]);
                    tx.exec(TRANSITION_CAS_SEEN, &args)? == 1
                }
                _ => false,
            };
            let read_back;
            let (session, checks) = if let (true, Some(s)) = (seen_matches, seen.as_deref()) {
                (s, s.checks + charged)
            } else {
                read_back = if tx.is_pg() {
                    tx.query_opt(TRANSITION_CAS[1], cas, session_from_row)?
                } else if tx.exec(TRANSITION_CAS[0], cas)? == 1 {
                    tx.query_opt(SESSION_BY_ROWID, vals![*rowid], session_from_row)?
                } else {
                    None
                };
                match &read_back {
                    Some(s) => (s, s.checks),
                    None => return lost_cas(tx, *rowid, *source, *to, facts, now_s, written),
                }
            };
            let event = transition_event(
                now_s,
                session,
                checks,
                (*from, *to),
                reason.as_deref(),
                facts,
                compared,
            );
            let mut row = Vec::with_capacity(16);
            row.push(Val::Int(*rowid));
            row.extend(
                transition_fields(*from, *to, *source, reason.as_deref(), facts).map(Val::from),
            );
            row.push(Val::Text(now_s));
            if tx.is_pg() {
                row.extend([
                    Val::Text(&event.id),
                    Val::Text(event.kind),
                    Val::Text(&event.payload),
                ]);
                tx.exec(INSERT_TRANSITION_AND_EVENT, &row)?;
            } else {
                tx.exec(INSERT_TRANSITION, &row)?;
                insert_event(tx, &event.id, event.kind, *rowid, &event.payload, now_s)?;
            }
            written.push(event);
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
            tx.exec(
                "UPDATE sessions SET next_check_at = ?1, last_error = ?2, checks = checks + ?3, \
                 answered_checks = answered_checks + ?4, \
                 last_checked_at = CASE WHEN ?3 = 1 THEN ?5 ELSE last_checked_at END, \
                 not_found_count = CASE CAST(?6 AS BIGINT) WHEN 1 THEN not_found_count + 1 \
                                   WHEN 0 THEN 0 ELSE not_found_count END, \
                 provider_status = coalesce(?7, provider_status), \
                 transaction_id = coalesce(?8, transaction_id), \
                 payment_method = coalesce(?9, payment_method), \
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
                    owner
                ],
            )?;
        }
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
        }
    }
    Ok(())
}

/// An export failed reading the ledger or writing the output.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Ledger(#[from] Error),
    #[error("writing the export: {0}")]
    Write(#[source] std::io::Error),
    #[error(
        "sessions row {} (provider {}) cannot be read ({}): nothing was exported; fix or delete \
         the row, or pass --skip-unreadable to export without it",
        .0.rowid, .0.provider, crate::escape::shown(&.0.error)
    )]
    Unreadable(Unreadable),
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    pub added: u64,
    pub already_present: u64,
    pub failed_rows: u64,
    pub errors: Vec<String>,
}

/// What inserting one session did.
enum Inserted {
    Added,
    /// Already there with the same fields.
    Same,
    /// Already there with another value in one field.
    Differs(Conflict),
}

fn insert_session(tx: &mut Tx<'_>, s: &NewSession) -> Result<Inserted, DbError> {
    let created = clock::format(s.created_at.unwrap_or_else(clock::now));
    let n = tx.exec(
        "INSERT INTO sessions (provider, session_id, reference, amount, currency, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (provider, session_id) DO NOTHING",
        vals![
            &s.provider,
            &s.session_id,
            s.reference.as_deref(),
            s.amount.as_deref(),
            s.currency.as_deref(),
            &created
        ],
    )?;
    if n == 1 {
        return Ok(Inserted::Added);
    }
    // Already there: the same session again is harmless, another amount is not.
    let existing = tx.query_opt(
        "SELECT reference, amount, currency FROM sessions WHERE provider = ?1 AND session_id = ?2",
        vals![&s.provider, &s.session_id],
        |r| {
            Ok((
                r.get::<AnyText>(0)?.0,
                r.get::<AnyText>(1)?.0,
                r.get::<AnyText>(2)?.0,
            ))
        },
    )?;
    Ok(match existing.and_then(|e| s.conflict_with(e)) {
        Some(c) => Inserted::Differs(c),
        None => Inserted::Same,
    })
}

fn insert_event(
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
fn write_anomaly(
    tx: &mut Tx<'_>,
    session: &Session,
    anomaly: &Anomaly,
    now: &str,
) -> Result<Written, DbError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, params};

    fn temp() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.db")).unwrap();
        (dir, l)
    }

    /// 2,000 sessions, one in ten PENDING, with statistics: enough rows, terminal and not due,
    /// that a scan would be the planner's other choice.
    fn seeded() -> (tempfile::TempDir, Ledger) {
        let (d, l) = temp();
        l.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO sessions (provider, session_id) SELECT 'm', 's' || i FROM n; \
             UPDATE sessions SET status = 'COMPLETED' WHERE id % 10 <> 0; \
             ANALYZE;",
        )
        .unwrap();
        (d, l)
    }

    /// A lease's commit does not wait for the disk; every other write's does, also right after
    /// a lease on the same connection.
    #[test]
    fn only_leases_commit_without_waiting_for_the_disk() {
        let (_d, l) = temp();
        let sync = |mode| {
            l.inner
                .engine
                .tx(mode, |tx| {
                    tx.query_one("PRAGMA synchronous", vals![], |r| r.get::<i64>(0))
                })
                .unwrap()
        };
        assert_eq!(sync(Mode::Lease), 1, "NORMAL");
        assert_eq!(sync(Mode::Write), 2, "FULL");
        assert_eq!(sync(Mode::Lease), 1, "NORMAL");
        l.claim(
            "me",
            clock::now(),
            clock::now(),
            10,
            ClaimMode::DueBy(clock::now()),
        )
        .unwrap();
        assert_eq!(sync(Mode::Write), 2, "FULL after a claim");
    }

    #[test]
    fn the_due_query_uses_the_partial_index() {
        let (_d, l) = seeded();
        let plan = plan_of(
            &l,
            CLAIM_DUE.select,
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
        l.lite(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            plan.join("\n")
        })
    }

    #[test]
    fn once_all_walks_the_rowid_in_order() {
        let (_d, l) = seeded();
        let now = clock::format(clock::now());
        let plan = plan_of(&l, CLAIM_ALL.select, params!["o", now, 0, 500, now]);
        assert!(
            plan.contains("INTEGER PRIMARY KEY (rowid>?)"),
            "plan was: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "plan was: {plan}");
    }

    /// Each kind of claim leases exactly the rows it returns, and returns them as they now are
    /// in the ledger (leased, their check moved to the lease's end).
    #[test]
    fn a_claim_returns_the_rows_it_leased_as_they_now_are() {
        let (_d, l) = temp();
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id) \
             VALUES ('m', 'p1'), ('m', 'p2'), ('m', 'p3'), ('m', 'p4'); \
             INSERT INTO sessions (provider, session_id) VALUES ('m', 'e1'); \
             UPDATE sessions SET status = 'EXPIRED', late_check_at = '2000-01-01T00:00:00.000Z' \
             WHERE session_id = 'e1'; \
             INSERT INTO sessions (provider, session_id, next_check_at) \
             VALUES ('m', 'later', '2999-01-01T00:00:00.000Z');",
        )
        .unwrap();
        let now = clock::now();
        let until = clock::add(now, Duration::from_secs(60));
        let claim = |limit, mode| {
            let got = l.claim("me", now, until, limit, mode).unwrap().sessions;
            for s in &got {
                let stored = l.get("m", &s.session_id).unwrap().unwrap();
                assert_eq!(
                    serde_json::to_value(s).unwrap(),
                    serde_json::to_value(&stored).unwrap()
                );
                assert_eq!(s.lease_owner.as_deref(), Some("me"));
                assert_eq!(s.lease_until, Some(clock::format(until)));
            }
            got.into_iter().map(|s| s.session_id).collect::<Vec<_>>()
        };
        assert_eq!(claim(3, ClaimMode::DueBy(now)), ["p1", "p2", "p3"]);
        assert_eq!(claim(10, ClaimMode::LateBy(now)), ["e1"]);
        // Every PENDING session not leased: p1–p3 are.
        assert_eq!(claim(10, ClaimMode::AllAfter(0)), ["p4", "later"]);
        assert_eq!(claim(10, ClaimMode::AllAfter(0)), Vec::<String>::new());
        assert_eq!(claim(10, ClaimMode::DueBy(now)), Vec::<String>::new());
        assert_eq!(claim(10, ClaimMode::LateBy(now)), Vec::<String>::new());
    }

    #[test]
    fn leasing_the_rows_read_looks_each_up_by_rowid() {
        let (_d, l) = seeded();
        for lease in [CLAIM_DUE.lease, CLAIM_LATE.lease] {
            let plan = plan_of(&l, lease, params!["o", "2030", "[1,2,3]"]);
            assert!(
                plan.contains("INTEGER PRIMARY KEY (rowid=?)"),
                "plan was: {plan}"
            );
            assert!(!plan.contains("SCAN sessions"), "plan was: {plan}");
        }
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
            .unwrap()
            .sessions;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, Status::Pending);
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
            .unwrap()
            .sessions;
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
                "INSERT INTO sessions (provider, session_id, status) VALUES ('m', 'y', 'COMPLETED')",
                "new_session_is_pending",
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
        let e = l
            .execute_batch("UPDATE sessions SET status = 'PAID'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("status_is_known"), "{e}");
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
        let lines = |rows: Vec<Result<NewSession, String>>| (2..).zip(rows).collect::<Vec<_>>();
        let out = l
            .import(lines(vec![Ok(s("a")), Err("bad".into()), Ok(s("b"))]), 10)
            .unwrap();
        assert_eq!(out.errors, vec!["line 3: bad".to_string()]);
        assert!(l.find("a").unwrap().is_empty());
        let out = l.import(lines(vec![Ok(s("a")), Ok(s("b"))]), 10).unwrap();
        assert_eq!((out.added, out.already_present), (2, 0));
        drop(l);
        let l = Ledger::open(&path).unwrap();
        let out = l.import(lines(vec![Ok(s("a")), Ok(s("c"))]), 10).unwrap();
        assert_eq!((out.added, out.already_present), (1, 1));
        // The same id with another amount — in the ledger, or twice in one file — is refused,
        // naming the line and both values; nothing is imported.
        let priced = |id: &str, amount: &str| NewSession {
            amount: Some(amount.into()),
            ..s(id)
        };
        let out = l
            .import(lines(vec![Ok(s("d")), Ok(priced("a", "5.00"))]), 10)
            .unwrap();
        assert_eq!(out.added, 0);
        assert!(
            out.errors[0].starts_with("line 3: amount:"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0].contains("nothing, not \"5.00\""),
            "{:?}",
            out.errors
        );
        let out = l
            .import(
                lines(vec![
                    Ok(priced("e", "1.00")),
                    Ok(priced("e", "1.0")),
                    Ok(priced("e", "2.00")),
                ]),
                10,
            )
            .unwrap();
        assert_eq!(out.errors.len(), 1, "1.0 is 1.00: {:?}", out.errors);
        assert!(
            out.errors[0].contains("line 4: amount")
                && out.errors[0].contains("\"1.00\", not \"2.00\""),
            "{:?}",
            out.errors
        );
        assert!(l.find("e").unwrap().is_empty());
    }
}
