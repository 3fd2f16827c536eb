//! `export`: one row per session for accounting, as RFC 4180 CSV or JSON lines, streamed from
//! the ledger in a stable order (ledger id) so memory stays flat however many rows there are.
//! With `--output`, rows go to a temporary file beside the target that is renamed into place
//! at the end, so a reader never sees half a file.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::ledger::{ExportFilter, Ledger, Session};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// One exported row: the columns accounting reads, amounts as the ledger's decimal text.
#[derive(Debug, Serialize)]
struct Row<'a> {
    provider: Cow<'a, str>,
    session_id: Cow<'a, str>,
    reference: Option<Cow<'a, str>>,
    amount: Option<rust_decimal::Decimal>,
    currency: Option<Cow<'a, str>>,
    status: &'a str,
    transaction_id: Option<Cow<'a, str>>,
    payment_method: Option<Cow<'a, str>>,
    provider_completed_at: Option<&'a str>,
    resolved_at: Option<String>,
    checks: i64,
}

/// A text cell a spreadsheet would run as a formula — one starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return — with a `'` put before it (OWASP's advice for CSV injection). Only
/// the CSV export does this, and only to text written by applications and providers; amounts,
/// statuses, times and counts are payrecon's own and never start so.
fn no_formula(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

impl<'a> Row<'a> {
    /// The row; `csv` neutralises cells a spreadsheet would run as formulas.
    fn new(s: &'a Session, csv: bool) -> Self {
        let cell = |t: &'a str| if csv { no_formula(t) } else { Cow::Borrowed(t) };
        Row {
            provider: cell(&s.provider),
            session_id: cell(&s.session_id),
            reference: s.reference.as_deref().map(cell),
            amount: s.amount,
            currency: s.currency.as_deref().map(cell),
            status: s.status.as_str(),
            transaction_id: s.transaction_id.as_deref().map(cell),
            payment_method: s.payment_method.as_deref().map(cell),
            provider_completed_at: s.provider_completed_at.as_deref(),
            resolved_at: crate::clock::format_opt(s.resolved_at),
            checks: s.checks,
        }
    }
}

/// Writes the export to `out`; returns the number of rows.
pub fn write(
    ledger: &Ledger,
    filter: &ExportFilter,
    format: Format,
    out: impl Write,
) -> anyhow::Result<u64> {
    let bar = crate::progress::bar(None, "exporting {pos} rows {per_sec}");
    let n = match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let n = ledger.export(filter, |s| {
                bar.inc(1);
                w.serialize(Row::new(s, true))
                    .map_err(std::io::Error::other)
            })?;
            // A ledger with no matching rows still gets its header.
            if n == 0 {
                w.write_record([
                    "provider",
                    "session_id",
                    "reference",
                    "amount",
                    "currency",
                    "status",
                    "transaction_id",
                    "payment_method",
                    "provider_completed_at",
                    "resolved_at",
                    "checks",
                ])?;
            }
            w.flush()?;
            n
        }
        Format::Jsonl => {
            let mut w = std::io::BufWriter::new(out);
            let n = ledger.export(filter, |s| {
                bar.inc(1);
                serde_json::to_writer(&mut w, &Row::new(s, false))
                    .map_err(std::io::Error::other)?;
                w.write_all(b"\n")
            })?;
            w.flush()?;
            n
        }
    };
    bar.finish_and_clear();
    Ok(n)
}

/// Writes the export to `path` atomically: a temporary file in the same directory, renamed.
pub fn write_file(
    ledger: &Ledger,
    filter: &ExportFilter,
    format: Format,
    path: &Path,
) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".payrecon-export-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let n = write(
        ledger,
        filter,
        format,
        std::io::BufWriter::new(tmp.as_file_mut()),
    )?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the export into {}", path.display()))?;
    Ok(n)
}
