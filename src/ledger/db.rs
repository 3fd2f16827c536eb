//! The two SQL engines under the ledger: SQLite (one file, the default) and PostgreSQL (several
//! daemons on one database). The ledger's operations are written once, against [`Tx`]; this
//! module hides what differs — connections, placeholders (`?1` is written, PostgreSQL gets `$1`),
//! parameter and column types, statement caches — and nothing else. Statements that must differ
//! (row locks in claims) are chosen by the ledger with [`Engine::is_pg`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::types::Type;
use rusqlite::TransactionBehavior;

pub use super::pg::{PgConn, PgPool, pg_config, pg_sql, redact, with_password};
use super::pg::{Shape, pg_param};

/// A parameter: the ledger binds integers, text and NULL — and, on PostgreSQL only, arrays of
/// them for set-based statements (`unnest`).
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Ints(&'a [i64]),
    Texts(&'a [Option<&'a str>]),
}

impl<'a> From<&'a [i64]> for Val<'a> {
    fn from(v: &'a [i64]) -> Self {
        Val::Ints(v)
    }
}
impl<'a> From<&'a [Option<&'a str>]> for Val<'a> {
    fn from(v: &'a [Option<&'a str>]) -> Self {
        Val::Texts(v)
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v)
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(v: &'a String) -> Self {
        Val::Text(v)
    }
}
impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val<'_> {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// `vals![a, b, …]`: a parameter list.
macro_rules! vals {
    ($($e:expr),* $(,)?) => { &[$($crate::ledger::db::Val::from($e)),*] };
}
pub(crate) use vals;

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Val::Ints(_) | Val::Texts(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "arrays are PostgreSQL's".into(),
                ));
            }
        })
    }
}

/// A failure of either engine, or a value of the wrong type.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Not a `#[source]`: its message already carries the cause, which a chain would repeat.
    #[error("{}", pg_message(.0))]
    Pg(postgres::Error),
    #[error("{0}")]
    Value(String),
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Pg(e)
    }
}

/// PostgreSQL's own message (with its detail) rather than the client's generic "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        // The client nests its cause and prints it at each level: show the kind once and the
        // root cause ("error connecting to server: Connection refused").
        None => {
            let mut root: &dyn std::error::Error = e;
            while let Some(next) = root.source() {
                root = next;
            }
            let text = e.to_string();
            let kind = text.split(": ").next().unwrap_or(&text);
            let cause = root.to_string();
            if cause.is_empty() || kind.contains(&cause) || cause.starts_with(kind) {
                cause.max(kind.to_string())
            } else {
                format!("{kind}: {cause}")
            }
        }
    }
}

impl DbError {
    /// PostgreSQL could not be reached for now: the connection failed on the network (refused,
    /// reset, timed out), or the server said it is starting, shutting down or out of
    /// connection slots. Not: authentication, a refused TLS certificate, a missing database.
    pub fn unreachable(&self) -> bool {
        let DbError::Pg(e) = self else {
            return false;
        };
        if let Some(db) = e.as_db_error() {
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
            return matches!(db.code().code(), "57P01" | "57P02" | "57P03" | "53300");
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if c.is::<std::io::Error>() {
                return true;
            }
            cause = c.source();
        }
        e.is_closed()
    }

    /// A unique or check constraint refused the row (both engines), with its name if known.
    pub fn constraint(&self) -> Option<String> {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, msg))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Some(msg.clone().unwrap_or_default())
            }
            DbError::Pg(e) => e.as_db_error().and_then(|d| {
                d.code()
                    .code()
                    .starts_with("23")
                    .then(|| d.constraint().unwrap_or(d.message()).to_string())
            }),
            _ => None,
        }
    }
}

/// A column value the ledger reads: integers and text, either possibly NULL.
pub trait FromDb: Sized {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError>;
}

fn pg_int(r: &postgres::Row, i: usize) -> Result<Option<i64>, DbError> {
    let ty = r.columns().get(i).map(|c| c.type_().clone());
    Ok(match ty {
        Some(Type::INT4) => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
        Some(Type::INT2) => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
        Some(Type::TEXT) | Some(Type::VARCHAR) => match r.try_get::<_, Option<String>>(i)? {
            Some(t) => Some(
                t.parse()
                    .map_err(|_| DbError::Value(format!("column {i}: {t:?} is not an integer")))?,
            ),
            None => None,
        },
        _ => r.try_get::<_, Option<i64>>(i)?,
    })
}

impl FromDb for Option<i64> {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        pg_int(r, i)
    }
}
impl FromDb for i64 {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        pg_int(r, i)?.ok_or_else(|| DbError::Value(format!("column {i} is NULL")))
    }
}
impl FromDb for u64 {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        let v = i64::pg(r, i)?;
        u64::try_from(v).map_err(|_| DbError::Value(format!("column {i}: {v} is negative")))
    }
}
impl FromDb for Option<String> {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        Ok(r.try_get(i)?)
    }
}
impl FromDb for String {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        Ok(r.try_get(i)?)
    }
}

/// Any column rendered as text (integers in decimal), for copying rows between engines.
pub struct AnyText(pub Option<String>);

impl FromDb for AnyText {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        use rusqlite::types::ValueRef;
        Ok(AnyText(match r.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v.to_string()),
            ValueRef::Real(v) => Some(v.to_string()),
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        }))
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self, DbError> {
        Ok(AnyText(r.try_get(i)?))
    }
}

/// One result row of either engine.
pub enum Row<'r> {
    Lite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    pub fn get<T: FromDb>(&self, i: usize) -> Result<T, DbError> {
        match self {
            Row::Lite(r) => Ok(T::lite(r, i)?),
            Row::Pg(r) => T::pg(r, i),
        }
    }
}

/// Where the ledger lives.
pub enum Engine {
    Lite(Mutex<rusqlite::Connection>),
    Pg(Box<PgPool>),
}

/// A write transaction takes SQLite's write lock at once (`IMMEDIATE`), so two processes on one
/// file queue on `busy_timeout` instead of failing on a lock upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Read,
    /// Its commit waits until the disk has it (SQLite `synchronous = FULL`, PostgreSQL's
    /// default `synchronous_commit`).
    Write,
    /// A write that only takes leases: its commit does not wait for the disk (SQLite
    /// `synchronous = NORMAL`, PostgreSQL `synchronous_commit = off` for the transaction). A
    /// power failure can forget it — the sessions or events are simply due again — but never a
    /// later `Write`: both engines' logs are sequential, and a `Write`'s sync covers what came
    /// before it. A process crash forgets nothing.
    Lease,
}

/// The SQLite connection. A poisoned mutex means a panic while holding it; SQLite rolled back
/// any open transaction, so the connection is still usable.
pub fn lite_lock(m: &Mutex<rusqlite::Connection>) -> MutexGuard<'_, rusqlite::Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a ledger could not be opened.
pub enum OpenError {
    /// A database error during `what`.
    Db(&'static str, DbError),
    /// Not usable as a ledger (not SQLite in WAL mode, a bad URL).
    Refused(String),
}

/// Whether payrecon's own SQLite connections skip the rules' triggers (`sessions_rules_*`).
/// The rules are for the other writers of `sessions` — applications' INSERTs and UPDATEs, whose
/// connections still get every one. payrecon's own writes are typed values (a `Status`, a
/// `Timestamp` formatted by `clock::format`, a `Decimal`, a validated `NewSession`), and SQLite
/// runs a `BEFORE UPDATE` trigger's program for every claim and every record: it was 12% of the
/// instructions of `once` (docs/benchmark.md "Where the time goes"). Release builds skip them;
/// debug builds — the test suite — keep them, so every write payrecon makes in a test is held to
/// the rules (`rules.rs`, `reconcile.rs`, `engines.rs` and the rest run with them). PostgreSQL
/// keeps them always: its trigger function checks only what an update changes.
const OWN_WRITES_SKIP_RULES: bool = !cfg!(debug_assertions);

impl Engine {
    /// Opens the SQLite file at `path`: WAL, `busy_timeout`, durable commits.
    pub fn open_sqlite(path: &std::path::Path, busy: Duration) -> Result<Engine, OpenError> {
        let lite = |what| move |e: rusqlite::Error| OpenError::Db(what, DbError::from(e));
        let conn = rusqlite::Connection::open(path).map_err(lite("opening"))?;
        conn.busy_timeout(busy)
            .map_err(lite("setting busy_timeout"))?;
        // journal_mode answers with a row; WAL lets readers run beside the one writer. Changing
        // it can answer "locked" without waiting on busy_timeout while another process creates
        // or migrates a new file: tried again until that timeout has passed.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < busy =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.map_err(lite("enabling WAL (is this a SQLite file?)"))?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Refused(format!(
                "cannot enable WAL, journal mode is {mode}"
            )));
        }
        // FULL: a committed transition survives power loss, not only a process crash.
        // temp_store MEMORY: a claim's `RETURNING` rows (and sorts) stay in memory instead
        // of a temporary file created and unlinked in /var/tmp per claim.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;")
            .map_err(lite("setting pragmas"))?;
        if OWN_WRITES_SKIP_RULES {
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
                false,
            )
            .map_err(lite("setting the rules aside for payrecon's own writes"))?;
        }
        Ok(Engine::Lite(Mutex::new(conn)))
    }

    /// Connects to the PostgreSQL database at `url`, with up to `connections` connections.
    pub fn open_pg(url: &str, connections: usize) -> Result<Engine, OpenError> {
        let config = pg_config(url).map_err(OpenError::Refused)?;
        let engine = Engine::Pg(Box::new(PgPool::new(config, connections)));
        engine.ping().map_err(|e| OpenError::Db("connecting", e))?;
        Ok(engine)
    }

    /// Whether the database answers.
    pub fn ping(&self) -> Result<(), DbError> {
        self.batch("SELECT 1")
    }

    /// What holds once the schema is migrated: SQLite's foreign keys on. (Migrations rebuild
    /// tables, which SQLite documents doing with foreign keys off; they are checked before each
    /// migration commits.)
    pub fn after_migrations(&self) -> Result<(), DbError> {
        match self {
            Engine::Lite(_) => self.batch("PRAGMA foreign_keys = ON;"),
            Engine::Pg(_) => Ok(()),
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Engine::Pg(_))
    }

    /// Runs `f` in one transaction, committed when `f` returns `Ok` (unless it called
    /// [`Tx::roll_back`]) and rolled back otherwise.
    pub fn tx<T, E: From<DbError>>(
        &self,
        mode: Mode,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Engine::Lite(m) => {
                let conn = lite_lock(m);
                // Set for every write, so a failed reset can never leave a `Write` undurable.
                let sync = match mode {
                    Mode::Read => None,
                    Mode::Write => Some("PRAGMA synchronous = FULL;"),
                    Mode::Lease => Some("PRAGMA synchronous = NORMAL;"),
                };
                if let Some(sql) = sync {
                    conn.execute_batch(sql).map_err(DbError::from)?;
                }
                let behavior = match mode {
                    Mode::Read => TransactionBehavior::Deferred,
                    Mode::Write | Mode::Lease => TransactionBehavior::Immediate,
                };
                let conn: &rusqlite::Connection = &conn;
                let mut tx = Tx {
                    inner: Inner::Lite(
                        Held {
                            conn,
                            stmts: Vec::new(),
                        },
                        // What `transaction_with_behavior` does, on a shared borrow that the
                        // held statements can share; the lock guard keeps it the only one.
                        rusqlite::Transaction::new_unchecked(conn, behavior)
                            .map_err(DbError::from)?,
                    ),
                    roll_back: false,
                };
                let out = f(&mut tx)?;
                tx.finish().map_err(E::from)?;
                Ok(out)
            }
            Engine::Pg(pool) => pool.with(|conn| {
                let PgConn { client, shapes } = conn;
                let mut pg_tx = client.transaction().map_err(DbError::from)?;
                if mode == Mode::Lease {
                    pg_tx
                        .batch_execute("SET LOCAL synchronous_commit = off")
                        .map_err(DbError::from)?;
                }
                let mut tx = Tx {
                    inner: Inner::Pg(pg_tx, shapes),
                    roll_back: false,
                };
                let out = f(&mut tx)?;
                tx.finish().map_err(E::from)?;
                Ok(out)
            }),
        }
    }

    /// Runs SQL text (several statements) outside any transaction of ours.
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Engine::Lite(m) => Ok(lite_lock(m).execute_batch(sql)?),
            Engine::Pg(pool) => pool.with(|conn| Ok(conn.client.batch_execute(sql)?)),
        }
    }
}

/// Runs blocking PostgreSQL work (the client drives its own small runtime) from any thread: on
/// a worker of a multi-threaded tokio runtime it first leaves the runtime (`block_in_place`);
/// on tokio's blocking pool — where [`Ledger::call`](super::Ledger::call) runs the ledger — and
/// outside tokio it just runs.
pub(super) fn outside_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// At most this many statements stay prepared in one SQLite transaction (see [`Held`]).
const HELD_STATEMENTS: usize = 16;

/// The statements an SQLite transaction ran with [`Tx::exec`], kept prepared until it ends: a
/// group of transitions runs the same three statements hundreds of times, and each trip through
/// rusqlite's statement cache hashes the SQL text twice. Looked up by address, which a
/// `&'static str` keeps for good; dropped (back into rusqlite's cache) before the transaction
/// commits or rolls back.
struct Held<'c> {
    conn: &'c rusqlite::Connection,
    stmts: Vec<(&'static str, rusqlite::CachedStatement<'c>)>,
}

impl Held<'_> {
    fn exec(&mut self, sql: &'static str, p: &[Val<'_>]) -> Result<u64, DbError> {
        let params = rusqlite::params_from_iter(p.iter());
        let i = match self.stmts.iter().position(|(s, _)| std::ptr::eq(*s, sql)) {
            Some(i) => i,
            None if self.stmts.len() < HELD_STATEMENTS => {
                self.stmts.push((sql, self.conn.prepare_cached(sql)?));
                self.stmts.len() - 1
            }
            None => return Ok(self.conn.prepare_cached(sql)?.execute(params)? as u64),
        };
        Ok(self.stmts[i].1.execute(params)? as u64)
    }
}

enum Inner<'c> {
    /// The held statements first: fields drop in order, so they are gone before a transaction
    /// dropped unfinished rolls back.
    Lite(Held<'c>, rusqlite::Transaction<'c>),
    Pg(postgres::Transaction<'c>, &'c mut HashMap<String, Shape>),
}

/// One open transaction of either engine.
pub struct Tx<'c> {
    inner: Inner<'c>,
    roll_back: bool,
}

impl Tx<'_> {
    pub fn is_pg(&self) -> bool {
        matches!(self.inner, Inner::Pg(..))
    }

    /// Ends the transaction without writing anything when the closure returns.
    pub fn roll_back(&mut self) {
        self.roll_back = true;
    }

    fn finish(self) -> Result<(), DbError> {
        match (self.inner, self.roll_back) {
            (Inner::Lite(held, tx), false) => {
                drop(held);
                tx.commit()?
            }
            (Inner::Lite(held, tx), true) => {
                drop(held);
                tx.rollback()?
            }
            (Inner::Pg(tx, _), false) => tx.commit()?,
            (Inner::Pg(tx, _), true) => tx.rollback()?,
        }
        Ok(())
    }

    /// Runs `sql` as the unnamed statement with `p` bound to the types PostgreSQL inferred
    /// (learned on first use, see [`Shape`]); its rows come as they arrive.
    fn pg_run<'t>(
        tx: &'t mut postgres::Transaction<'_>,
        shapes: &mut HashMap<String, Shape>,
        sql: &str,
        p: &[Val<'_>],
    ) -> Result<postgres::RowIter<'t>, DbError> {
        if !shapes.contains_key(sql) {
            let text = pg_sql(sql);
            // Prepared and, when dropped here, closed inside this transaction: on the same
            // server connection, through any pooler.
            let types = tx.prepare(&text)?.params().to_vec();
            shapes.insert(sql.to_string(), Shape { sql: text, types });
        }
        let shape = &shapes[sql];
        if shape.types.len() != p.len() {
            return Err(DbError::Value(format!(
                "statement takes {} parameters, {} given",
                shape.types.len(),
                p.len()
            )));
        }
        let bound = p
            .iter()
            .zip(&shape.types)
            .map(|(v, ty)| Ok((pg_param(v, ty)?, ty.clone())))
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok(tx.query_typed_raw(&shape.sql, bound)?)
    }

    /// Runs one statement (SQLite keeps it prepared until the transaction ends); returns the
    /// rows it changed.
    pub fn exec(&mut self, sql: &'static str, p: &[Val<'_>]) -> Result<u64, DbError> {
        match &mut self.inner {
            Inner::Lite(held, _) => held.exec(sql, p),
            Inner::Pg(tx, shapes) => {
                use postgres::fallible_iterator::FallibleIterator;
                let mut rows = Self::pg_run(tx, shapes, sql, p)?;
                while rows.next()?.is_some() {}
                Ok(rows.rows_affected().unwrap_or(0))
            }
        }
    }

    /// Runs a query, calling `f` for each row as it arrives (the rows are not collected).
    pub fn each<E: From<DbError>>(
        &mut self,
        sql: &str,
        p: &[Val<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &mut self.inner {
            Inner::Lite(_, tx) => {
                let mut stmt = tx.prepare_cached(sql).map_err(DbError::from)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(p.iter()))
                    .map_err(DbError::from)?;
                while let Some(r) = rows.next().map_err(DbError::from)? {
                    f(&Row::Lite(r))?;
                }
                Ok(())
            }
            Inner::Pg(tx, shapes) => {
                use postgres::fallible_iterator::FallibleIterator;
                let mut rows = Self::pg_run(tx, shapes, sql, p)?;
                while let Some(r) = rows.next().map_err(DbError::from)? {
                    f(&Row::Pg(&r))?;
                }
                Ok(())
            }
        }
    }

    /// Runs a query and maps every row.
    pub fn query<T>(
        &mut self,
        sql: &str,
        p: &[Val<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let mut out = Vec::new();
        self.each(sql, p, |r| {
            out.push(f(r)?);
            Ok::<_, DbError>(())
        })?;
        Ok(out)
    }

    /// Runs a query expected to give at most one row.
    pub fn query_opt<T>(
        &mut self,
        sql: &str,
        p: &[Val<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        Ok(self.query(sql, p, f)?.into_iter().next())
    }

    /// Runs a query giving exactly one row.
    pub fn query_one<T>(
        &mut self,
        sql: &str,
        p: &[Val<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, p, f)?
            .ok_or_else(|| DbError::Value("the query gave no row".into()))
    }

    /// Runs SQL text (several statements, no parameters) inside this transaction.
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match &mut self.inner {
            Inner::Lite(_, tx) => tx.execute_batch(sql)?,
            Inner::Pg(tx, _) => tx.batch_execute(sql)?,
        }
        Ok(())
    }

    /// PostgreSQL's `COPY … FROM STDIN` in text format, for `ledger copy`.
    pub fn pg_copy_in(&mut self, sql: &str, data: &[u8]) -> Result<u64, DbError> {
        use std::io::Write;
        match &mut self.inner {
            Inner::Lite(..) => Err(DbError::Value("COPY is PostgreSQL's".into())),
            Inner::Pg(tx, _) => {
                let mut w = tx.copy_in(sql)?;
                w.write_all(data)
                    .map_err(|e| DbError::Value(format!("copying: {e}")))?;
                Ok(w.finish()?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT ?1, '?2', ?10 FROM t WHERE a = '?' AND b = ?2"),
            "SELECT $1, '?2', $10 FROM t WHERE a = '?' AND b = $2"
        );
    }

    /// Statements held across a transaction: one reused many times, more distinct ones than
    /// are held, a rollback, and an error part-way, after which the connection is still usable.
    #[test]
    fn held_statements_end_with_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::Lite(Mutex::new(
            rusqlite::Connection::open(dir.path().join("t.db")).unwrap(),
        ));
        engine.batch("CREATE TABLE t (k INTEGER, v TEXT)").unwrap();
        const INSERT: &str = "INSERT INTO t (k, v) VALUES (?1, ?2)";
        // Distinct statement texts (leaked: `exec` holds only `'static` text).
        let distinct: Vec<&'static str> = (0..HELD_STATEMENTS + 4)
            .map(|i| &*format!("INSERT INTO t (k, v) VALUES (?1, 'd{i}')").leak())
            .collect();
        let count = |engine: &Engine| {
            engine
                .tx(Mode::Read, |tx| {
                    tx.query_one("SELECT count(*) FROM t", &[], |r| r.get::<i64>(0))
                })
                .unwrap()
        };
        engine
            .tx(Mode::Write, |tx| {
                for k in 0..100 {
                    assert_eq!(tx.exec(INSERT, &[Val::Int(k), Val::Text("x")])?, 1);
                }
                for (k, sql) in distinct.iter().enumerate() {
                    assert_eq!(tx.exec(sql, &[Val::Int(k as i64)])?, 1);
                }
                Ok::<_, DbError>(())
            })
            .unwrap();
        assert_eq!(count(&engine), 100 + distinct.len() as i64);

        engine
            .tx(Mode::Write, |tx| {
                tx.exec(INSERT, &[Val::Int(-1), Val::Text("gone")])?;
                tx.roll_back();
                Ok::<_, DbError>(())
            })
            .unwrap();
        let failed = engine.tx(Mode::Write, |tx| {
            tx.exec(INSERT, &[Val::Int(-2), Val::Text("gone")])?;
            tx.exec(INSERT, &[Val::Int(-3)])
        });
        assert!(
            failed.is_err(),
            "a statement given too few parameters fails"
        );
        assert_eq!(
            count(&engine),
            100 + distinct.len() as i64,
            "nothing of either kept"
        );

        engine
            .tx(Mode::Write, |tx| {
                tx.exec(INSERT, &[Val::Int(7), Val::Text("y")])
            })
            .unwrap();
        assert_eq!(count(&engine), 101 + distinct.len() as i64);
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("mysql://h/db?sslmode=require&password=hunter2"),
            "mysql://h/db?sslmode=require&password=***"
        );
        let r = redact("postgres://payrecon:s3cret@db.internal:5432/payrecon");
        assert!(!r.contains("s3cret"), "{r}");
        assert!(r.contains("db.internal"), "{r}");
    }
}
