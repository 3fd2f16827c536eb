//! `ledger copy`, `ledger backup` and `ledger restore`.

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
    print_totals(&copied.totals);
    outln!(
        "copied and verified into {} in {:.1}s; point [ledger] url at it",
        crate::ledger::db::redact(to),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The SQLite ledger's path, or a usage error naming PostgreSQL's own tools.
fn sqlite_path<'c>(
    cfg: &'c crate::config::Config,
    what: &str,
) -> anyhow::Result<&'c std::path::Path> {
    match &cfg.ledger {
        crate::ledger::Location::Path(path) => Ok(path),
        crate::ledger::Location::Url(_) => Err(UsageError::new(format!(
            "ledger {what} is for a SQLite ledger; [ledger] names a PostgreSQL one: use \
             PostgreSQL's own tools (docs/postgresql.md \"Backups\")"
        ))
        .into()),
    }
}

/// A backup's or a restore's error: a refusal is a usage error (exit 2).
fn refused(e: crate::ledger::backup::BackupError) -> anyhow::Error {
    match e {
        crate::ledger::backup::BackupError::Refused(why) => UsageError::new(why).into(),
        e => e.into(),
    }
}

/// What a backup or a restore holds: rows per table, then sessions per status and currency.
fn print_held(held: &crate::ledger::backup::Held) {
    for (table, n) in &held.rows {
        outln!("{table:<20} {n:>10} rows");
    }
    print_totals(&held.totals);
}

/// Per status and currency, the sessions and the sum of their amounts (what `ledger copy`,
/// `backup` and `restore` verify).
fn print_totals(totals: &crate::ledger::copy::Totals) {
    for ((status, currency), (n, sum)) in totals {
        let currency = crate::escape::shown(currency);
        outln!("{status:<10} {currency:<4} {n:>10} sessions {sum:>18}");
    }
}

fn page_bar(what: &str) -> indicatif::ProgressBar {
    crate::progress::bar(
        None,
        &format!("{what} {{bar:40}} {{pos}}/{{len}} pages eta {{eta}}"),
    )
}

fn on_bar(bar: &indicatif::ProgressBar) -> impl FnMut(crate::ledger::backup::Progress) + '_ {
    move |p| match p {
        crate::ledger::backup::Progress::Total(n) => bar.set_length(n),
        crate::ledger::backup::Progress::Copied(n) => bar.set_position(n),
    }
}

/// `payrecon ledger backup FILE`.
pub(super) fn backup(cli: &Cli, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let path = sqlite_path(&cfg, "backup")?;
    let started = std::time::Instant::now();
    let bar = page_bar("backup");
    let backed =
        crate::ledger::backup::backup(path, file, crate::ledger::BUSY_TIMEOUT, on_bar(&bar));
    bar.finish_and_clear();
    let backed = backed.map_err(refused)?;
    print_held(&backed.held);
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

/// `payrecon ledger restore FILE`.
pub(super) fn restore(cli: &Cli, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let path = sqlite_path(&cfg, "restore")?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut keep = path.as_os_str().to_owned();
    keep.push(format!(".before-restore-{stamp}"));
    let bar = page_bar("restore");
    let restored = crate::ledger::backup::restore(
        file,
        path,
        crate::ledger::BUSY_TIMEOUT,
        std::path::Path::new(&keep),
        on_bar(&bar),
    );
    bar.finish_and_clear();
    let restored = restored.map_err(refused)?;
    print_held(&restored.held);
    match &restored.kept {
        crate::ledger::backup::Kept::Nothing => {}
        crate::ledger::backup::Kept::Checked(kept) => {
            outln!("the ledger as it was is kept in {}", kept.display());
        }
        crate::ledger::backup::Kept::AsFound(kept, why) => {
            outln!(
                "the ledger as it was did not check ({why}); its files were moved aside as found: {}",
                kept.display()
            );
        }
    }
    outln!(
        "restored {} (schema {}) into {}: integrity_check ok, rows and sums as in the backup; start the daemons (events the backup held undelivered are sent again)",
        file.display(),
        restored.schema,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
