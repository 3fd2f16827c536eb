//! `payrecon ledger backup FILE`: a consistent copy of a SQLite ledger while daemons write it,
//! with SQLite's online backup API, checked before it is given its name.
//!
//! * **Consistent.** The copy is read inside one read transaction on the ledger: in WAL mode
//!   that is a snapshot of one moment, which writers do not disturb and which does not block
//!   them (they append to the WAL; only a checkpoint cannot pass the snapshot until it ends).
//!   The pages are copied a slice at a time, so a progress bar moves and the ledger's own lock is
//!   never held.
//! * **Untouched source.** The ledger is opened as it is: not created, not migrated (a backup
//!   before an upgrade is the one that matters), never written.
//! * **Checked.** The copy is written to a hidden file beside `FILE`, closed (its WAL folded in:
//!   one self-contained file), opened again and checked: `PRAGMA integrity_check`, and the rows
//!   of every table and the sessions per status and currency with the sum of their amounts, the
//!   same as the snapshot's. Only then is it renamed to `FILE`, which is never overwritten; a
//!   failed or interrupted backup leaves no `FILE`.
//! * **Private.** The copy is mode 0600, as the ledger's state directory is.
//!
//! `payrecon ledger restore FILE` is [`restore`]: the backup written back into the ledger's own
//! file with the same API, after the ledger as it was is itself backed up beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::copy::Totals;

/// Pages copied per step of the backup.
const PAGES_PER_STEP: i32 = 1024;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backed {
    pub file: PathBuf,
    /// The ledger's schema version (`PRAGMA user_version`).
    pub schema: i64,
    pub pages: u64,
    pub bytes: u64,
    pub held: Held,
}

/// What a ledger file holds, as a backup and a restore compare it: the rows of every table (by
/// table name), and per status and currency the sessions and the sum of their amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub rows: Vec<(String, u64)>,
    pub totals: Totals,
}

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Nothing was written: the ledger or the target is not usable.
    #[error("{0}")]
    Refused(String),
    /// The copy did not check; it was removed.
    #[error("{0}")]
    Mismatch(String),
    #[error("{what}: {cause}")]
    Sqlite {
        what: String,
        cause: rusqlite::Error,
    },
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
}

fn lite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let what = what.into();
    move |cause| BackupError::Sqlite { what, cause }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |cause| BackupError::Io { what, cause }
}

/// Progress of a backup: the pages in all, then the pages copied so far.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Total(u64),
    Copied(u64),
}

/// Copies the SQLite ledger at `ledger` to `to`, checked; `busy` is how long a step waits for a
/// writer's lock.
pub fn backup(
    ledger: &Path,
    to: &Path,
    busy: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<Backed, BackupError> {
    if !ledger.is_file() {
        return Err(BackupError::Refused(format!(
            "{}: no ledger there (a backup never creates one)",
            ledger.display()
        )));
    }
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; a backup never overwrites a file (name a new one)",
            to.display()
        )));
    }
    let name = ledger.display().to_string();
    let src = open_existing(ledger).map_err(lite(format!("opening {name}")))?;
    src.busy_timeout(busy)
        .map_err(lite("setting busy_timeout"))?;
    let mode: String = src
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(lite(format!("reading {name} (is it a SQLite file?)")))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BackupError::Refused(format!(
            "{name}: journal mode {mode}, not a payrecon ledger (payrecon's are WAL)"
        )));
    }
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = tempfile::Builder::new()
        .prefix(".payrecon-backup-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(io(format!("creating a file in {}", dir.display())))?;
    // The snapshot: one read transaction from here to the last page.
    src.execute_batch("BEGIN")
        .map_err(lite("beginning the snapshot"))?;
    let schema: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(lite("reading the schema version"))?;
    let held = held(&src).map_err(lite(format!("counting and summing the rows of {name}")))?;
    let pages = {
        let mut dst = Connection::open(partial.path()).map_err(lite("opening the copy"))?;
        let pages = copy_pages(&src, &mut dst, &mut progress)
            .map_err(lite("copying the ledger's pages"))?;
        // Closing the copy's last connection folds its WAL into the file.
        dst.close().map_err(|(_, e)| lite("closing the copy")(e))?;
        pages
    };
    src.execute_batch("COMMIT")
        .map_err(lite("ending the snapshot"))?;
    drop(src);
    check(partial.path(), &held)?;
    let bytes = std::fs::metadata(partial.path())
        .map_err(io("reading the copy's size"))?
        .len();
    partial
        .as_file()
        .sync_all()
        .map_err(io("syncing the copy"))?;
    partial
        .persist_noclobber(to)
        .map_err(|e| io(format!("naming the copy {}", to.display()))(e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Backed {
        file: to.to_path_buf(),
        schema,
        pages,
        bytes,
        held,
    })
}

/// Copies every page of `src` into `dst` with SQLite's online backup API, a slice at a time;
/// returns the pages copied.
fn copy_pages(
    src: &Connection,
    dst: &mut Connection,
    progress: &mut impl FnMut(Progress),
) -> rusqlite::Result<u64> {
    let b = rusqlite::backup::Backup::new(src, dst)?;
    let mut told = false;
    loop {
        match b.step(PAGES_PER_STEP)? {
            rusqlite::backup::StepResult::Done => break,
            rusqlite::backup::StepResult::More => {}
            // Another connection holds a lock the step needs: wait a moment, as busy_timeout
            // would.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
        let p = b.progress();
        if !told {
            progress(Progress::Total(p.pagecount.max(0) as u64));
            told = true;
        }
        progress(Progress::Copied((p.pagecount - p.remaining).max(0) as u64));
    }
    let pages = b.progress().pagecount.max(0) as u64;
    progress(Progress::Copied(pages));
    Ok(pages)
}

/// The copy at `path` is sound and holds what the snapshot held.
fn check(path: &Path, snapshot: &Held) -> Result<(), BackupError> {
    // Read-write (never written): a WAL file opened read-only needs its -shm beside it.
    let c = open_existing(path).map_err(lite("opening the copy to check it"))?;
    let found = integrity(&c).map_err(lite("checking the copy"))?;
    if found != ["ok"] {
        return Err(BackupError::Mismatch(format!(
            "the copy failed integrity_check ({}); it was removed",
            found.join("; ")
        )));
    }
    let theirs = held(&c).map_err(lite("counting and summing the copy's rows"))?;
    if theirs.rows != snapshot.rows {
        return Err(BackupError::Mismatch(format!(
            "the copy's rows differ from the ledger's ({:?} against {:?}); it was removed",
            theirs.rows, snapshot.rows
        )));
    }
    if theirs.totals != snapshot.totals {
        return Err(BackupError::Mismatch(
            "the copy's sessions per status and currency differ from the ledger's; it was removed"
                .into(),
        ));
    }
    c.close().map_err(|(_, e)| lite("closing the copy")(e))
}

/// An existing SQLite file, read-write, never created.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// `PRAGMA integrity_check`'s lines (`["ok"]` for a sound file).
fn integrity(c: &Connection) -> rusqlite::Result<Vec<String>> {
    c.prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// What the file behind `c` holds.
fn held(c: &Connection) -> rusqlite::Result<Held> {
    Ok(Held {
        rows: counts(c)?,
        totals: totals(c)?,
    })
}

/// The rows of every table, by name.
fn counts(c: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = c.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))?;
            Ok((t, n.max(0) as u64))
        })
        .collect()
}

/// Sessions and the decimal sum of their amounts per `(status, currency)`; an amount that is
/// not a decimal (a row payrecon sets aside) counts as its session and adds nothing.
fn totals(c: &Connection) -> rusqlite::Result<Totals> {
    let mut out = Totals::new();
    let mut stmt = c.prepare(
        "SELECT CAST(status AS TEXT), coalesce(CAST(currency AS TEXT), ''), CAST(amount AS TEXT) FROM sessions",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let key = (
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get::<_, String>(1)?,
        );
        let amount = r
            .get::<_, Option<String>>(2)?
            .and_then(|a| a.parse::<rust_decimal::Decimal>().ok())
            .unwrap_or_default();
        let e = out.entry(key).or_default();
        e.0 += 1;
        e.1 += amount;
    }
    Ok(out)
}

/// Where a restore kept the ledger it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// There was none.
    Nothing,
    /// A checked backup of it.
    Checked(PathBuf),
    /// It did not check (the reason): its files, moved aside as they were.
    AsFound(PathBuf, String),
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's schema version (the next command that opens the ledger migrates it).
    pub schema: i64,
    /// Where the ledger as it was before the restore was kept.
    pub kept: Kept,
    pub held: Held,
}

/// Writes the backup `from` into the ledger at `ledger` with SQLite's backup API, through the
/// ledger's own WAL (so no `-wal` file left beside it can be applied to the wrong database),
/// keeping the file's owner and mode. Refused, with nothing changed, when the backup does not
/// check or is newer than this build, or while a daemon holds a lease on the ledger. The ledger
/// as it was is first backed up beside it (`keep`).
pub fn restore(
    from: &Path,
    ledger: &Path,
    busy: Duration,
    keep: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<Restored, BackupError> {
    if !from.is_file() {
        return Err(BackupError::Refused(format!(
            "{}: no backup there",
            from.display()
        )));
    }
    let src = open_existing(from).map_err(lite(format!("opening {}", from.display())))?;
    let found = integrity(&src).map_err(lite(format!(
        "checking {} (is it a SQLite file?)",
        from.display()
    )))?;
    if found != ["ok"] {
        return Err(BackupError::Refused(format!(
            "{} failed integrity_check ({}); nothing was restored",
            from.display(),
            found.join("; ")
        )));
    }
    let schema: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(lite("reading the backup's schema version"))?;
    if schema > super::schema::VERSION {
        return Err(BackupError::Refused(format!(
            "{}: schema version {schema} is newer than this build's {}; restore it with the release that wrote it (nothing was restored)",
            from.display(),
            super::schema::VERSION
        )));
    }
    if schema == 0 {
        return Err(BackupError::Refused(format!(
            "{}: not a payrecon ledger (schema version 0); nothing was restored",
            from.display()
        )));
    }
    let held = held(&src).map_err(lite("counting and summing the backup's rows"))?;
    let kept = if ledger.is_file() {
        let name = ledger.display().to_string();
        // A ledger that cannot be read (the reason to restore, often) has no leases to count:
        // it is moved aside below as found.
        let leased: i64 = open_existing(ledger)
            .and_then(|c| {
            c.busy_timeout(busy)?;
            let now = crate::clock::format(crate::clock::now());
            c.query_row(
                "SELECT (SELECT count(*) FROM sessions WHERE lease_owner IS NOT NULL AND lease_until > ?1) \
                 + (SELECT count(*) FROM events WHERE lease_owner IS NOT NULL AND lease_until > ?1)",
                [&now],
                |r| r.get(0),
            )
        })
        .unwrap_or(0);
        if leased > 0 {
            return Err(BackupError::Refused(format!(
                "{name}: a daemon holds {leased} leases on it now; stop every daemon on this ledger first (nothing was restored)"
            )));
        }
        match backup(ledger, keep, busy, |_| {}) {
            Ok(_) => Kept::Checked(keep.to_path_buf()),
            // It does not check: its files are moved aside as they are (the ledger, its -wal
            // and -shm, renamed together), and the backup goes into a new file.
            Err(e) => {
                for suffix in ["", "-wal", "-shm"] {
                    let (mut from, mut to) =
                        (ledger.as_os_str().to_owned(), keep.as_os_str().to_owned());
                    from.push(suffix);
                    to.push(suffix);
                    if Path::new(&from).exists() {
                        std::fs::rename(&from, &to)
                            .map_err(io(format!("moving {} aside", Path::new(&from).display())))?;
                    }
                }
                Kept::AsFound(keep.to_path_buf(), e.to_string())
            }
        }
    } else {
        Kept::Nothing
    };
    let mut dst =
        Connection::open(ledger).map_err(lite(format!("opening {}", ledger.display())))?;
    dst.busy_timeout(busy)
        .map_err(lite("setting busy_timeout"))?;
    copy_pages(&src, &mut dst, &mut progress).map_err(lite("restoring the backup's pages"))?;
    // The restored ledger holds what the backup held.
    if self::held(&dst).map_err(lite("counting and summing the restored rows"))? != held {
        return Err(BackupError::Mismatch(format!(
            "the restored ledger differs from {}; the ledger as it was is kept: {kept:?}",
            from.display(),
        )));
    }
    dst.close()
        .map_err(|(_, e)| lite("closing the ledger")(e))?;
    Ok(Restored { schema, kept, held })
}
