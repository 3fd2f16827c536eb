//! The ledger: sessions, transitions and the events outbox, in one SQLite file (WAL,
//! `busy_timeout`, the default) or in a PostgreSQL database (several daemons on one ledger).
//! All of the product's SQL lives in this module, in rooms by concern: `sessions` (enqueue,
//! import, claims), `record` (transitions, reschedules, anomalies), `outbox` (events),
//! `queries` (list, show, stats, export), `providers` (shared provider state), `rows` (reading a
//! row), `schema` (migrations), `copy` (`ledger copy`), on the database layer `db`; `model`
//! holds the row and domain types. Every operation is written once, against [`db::Tx`], and runs
//! on either engine; this file has the handle and no SQL.
//!
//! The ledger is synchronous; async callers go through [`Ledger::call`], which runs the work on
//! tokio's blocking pool. It knows nothing of HTTP, providers or tokio's runtime beyond that one
//! helper.
//!
//! Invariants: every write transaction starts `IMMEDIATE` on SQLite, so two processes on one file
//! queue on `busy_timeout` instead of failing on a lock upgrade; claims on PostgreSQL lock the
//! rows they take with `FOR UPDATE SKIP LOCKED`, so two daemons never claim one row at once.

mod activity;
pub mod backup;
pub mod copy;
pub mod db;
pub mod event;
mod history;
mod model;
mod outbox;
mod pg;
pub mod pgtls;
mod providers;
mod queries;
mod record;
mod rows;
pub mod schema;
mod sessions;
mod unmatched;

pub use activity::{Activity, Moved, Waiting};
pub use event::{ANOMALY, MATCHED, UNMATCHED, Written};
pub use history::{AttemptNote, AttemptRow, CheckNote, CheckRow, PRUNE_BATCH, Via};
pub use model::*;
pub use queries::ExportError;
pub use rows::UNREADABLE_MARK;
pub use sessions::{ClaimMode, Due, DueOrder, ImportOutcome};
pub use unmatched::{DismissError, Settled, UnmatchedFilter};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use db::{DbError, Engine, Mode, Tx};

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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

impl Error {
    /// The database could not be reached for now (see [`DbError::unreachable`]): worth
    /// waiting for, unlike a refusal.
    pub fn unreachable(&self) -> bool {
        matches!(self, Error::Db { cause, .. } if cause.unreachable())
    }
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
            Location::Path(path) => Engine::open_sqlite(path, BUSY_TIMEOUT),
            Location::Url(url) => Engine::open_pg(url, PG_CONNECTIONS),
        }
        .map_err(|e| match e {
            db::OpenError::Db(what, cause) => err(what)(cause),
            db::OpenError::Refused(message) => Error::Corrupt {
                ledger: name.clone(),
                message,
            },
        })?;
        let ledger = Ledger {
            inner: Arc::new(Inner {
                location: location.clone(),
                name,
                engine,
            }),
        };
        schema::migrate(&ledger.inner.engine, &ledger.inner.name)?;
        ledger
            .inner
            .engine
            .after_migrations()
            .map_err(ledger.err("setting pragmas"))?;
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

    /// Whether the database answers (systemd's watchdog is fed only while it does).
    pub fn ping(&self) -> Result<(), Error> {
        self.inner.engine.ping().map_err(self.err("answering"))
    }

    /// Runs read-only SQL for unit tests (`EXPLAIN QUERY PLAN`, counts), on a connection of
    /// the test's own.
    #[cfg(test)]
    pub(crate) fn query_strings(&self, sql: &str) -> Result<Vec<String>, String> {
        payrecon_testkit::sql::query_strings(self.test_db(), sql)
    }

    /// Runs SQL that changes the ledger, for unit tests, on a connection of the test's own.
    #[cfg(test)]
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), String> {
        payrecon_testkit::sql::execute_batch(self.test_db(), sql)
    }

    #[cfg(test)]
    fn test_db(&self) -> payrecon_testkit::sql::Db<'_> {
        match &self.inner.location {
            Location::Path(p) => payrecon_testkit::sql::Db::Sqlite(p),
            Location::Url(u) => payrecon_testkit::sql::Db::Postgres(u),
        }
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

/// Ledgers for the unit tests of every room.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn temp() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.db")).unwrap();
        (dir, l)
    }

    /// 2,000 sessions, one in ten PENDING, with statistics: enough rows, terminal and not due,
    /// that a scan would be the planner's other choice.
    pub(crate) fn seeded() -> (tempfile::TempDir, Ledger) {
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
}
