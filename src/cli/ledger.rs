//! `ledger copy` and `ledger backup`.

use std::process::ExitCode;

use crate::config::{self, UsageError};
use crate::daemon;

use super::*;

/// `payrecon ledger copy`.
pub(super) fn copy(cli: &Cli, to: &str, password_env: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let to = &config::pg_url(
        to,
        password_env,
        &config::process_env,
        ("--to", "--password-env"),
    )?;
    let ledger = daemon::open_ledger(&cfg)?;
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(None, "copy {bar:40} {pos}/{len} rows {per_sec} eta {eta}");
    let copied = crate::ledger::copy::copy(&ledger, to, |p| match p {
        crate::ledger::copy::Progress::Total(n) => bar.set_length(n),
        crate::ledger::copy::Progress::Rows(n) => bar.inc(n),
    });
    bar.finish_and_clear();
    let copied = match copied {
        Ok(c) => c,
        Err(crate::ledger::copy::CopyError::Refused(why)) => {
            return Err(UsageError::new(why).into());
        }
        Err(e) => return Err(e.into()),
    };
    for (table, n) in &copied.rows {
        outln!("{table:<15} {n:>10} rows");
    }
    for ((status, currency), (n, sum)) in &copied.totals {
        let currency = crate::escape::shown(currency);
        outln!("{status:<10} {currency:<4} {n:>10} sessions {sum:>18}");
    }
    outln!(
        "copied and verified into {} in {:.1}s; point [ledger] url at it",
        crate::ledger::db::redact(to),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `payrecon ledger backup FILE`.
pub(super) fn backup(cli: &Cli, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let crate::ledger::Location::Path(path) = &cfg.ledger else {
        return Err(UsageError::new(
            "ledger backup copies a SQLite ledger; [ledger] names a PostgreSQL one: back it up \
             with PostgreSQL's own tools (docs/postgresql.md \"Backups\")",
        )
        .into());
    };
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(None, "backup {bar:40} {pos}/{len} pages eta {eta}");
    let backed =
        crate::ledger::backup::backup(path, file, crate::ledger::BUSY_TIMEOUT, |p| match p {
            crate::ledger::backup::Progress::Total(n) => bar.set_length(n),
            crate::ledger::backup::Progress::Copied(n) => bar.set_position(n),
        });
    bar.finish_and_clear();
    let backed = match backed {
        Ok(b) => b,
        Err(crate::ledger::backup::BackupError::Refused(why)) => {
            return Err(UsageError::new(why).into());
        }
        Err(e) => return Err(e.into()),
    };
    for (table, n) in &backed.rows {
        outln!("{table:<20} {n:>10} rows");
    }
    for ((status, currency), (n, sum)) in &backed.totals {
        let currency = crate::escape::shown(currency);
        outln!("{status:<10} {currency:<4} {n:>10} sessions {sum:>18}");
    }
    outln!(
        "backed up {} (schema {}) to {}: {} pages, {} bytes, integrity_check ok, rows and sums as in the ledger, in {:.1}s",
        path.display(),
        backed.schema,
        backed.file.display(),
        backed.pages,
        backed.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
