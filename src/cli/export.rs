//! `export`: rows for accounting.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::clock;
use crate::config::UsageError;
use crate::daemon;

use super::*;

/// `payrecon export`.
#[allow(clippy::too_many_arguments)] // one parameter per flag of the command
pub(super) fn export(
    cli: &Cli,
    format: &crate::export::Format,
    since: &Option<String>,
    until: &Option<String>,
    status: &[String],
    provider: &Option<String>,
    output: &Option<PathBuf>,
    skip_unreadable: &bool,
) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let time = |flag: &str, t: &Option<String>| -> Result<_, UsageError> {
        t.as_deref()
            .map(|t| {
                clock::parse(t).ok_or_else(|| {
                    UsageError::new(format!(
                        "--{flag}: {t:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let filter = crate::ledger::ExportFilter {
        since: time("since", since)?,
        until: time("until", until)?,
        statuses: status
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| UsageError::new(format!("--status: {e}")))
            })
            .collect::<Result<_, _>>()?,
        provider: provider.clone(),
        skip_unreadable: *skip_unreadable,
    };
    let ledger = daemon::open_ledger(&cfg)?;
    let started = std::time::Instant::now();
    let n = match output {
        Some(path) => crate::export::write_file(&ledger, &filter, *format, path)?,
        None => match crate::export::write(&ledger, &filter, *format, std::io::stdout().lock()) {
            Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
            other => other?,
        },
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {n} sessions in {secs:.2}s ({:.0} rows/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}
