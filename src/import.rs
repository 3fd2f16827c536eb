//! `import FILE.csv`: bulk enqueue, all or nothing. The header names the columns
//! (`provider,session_id,reference,amount,currency,created_at`; only the first two required, in
//! any order). Every row is validated as `add` validates; any bad row rolls the whole import
//! back, and the error names its line and field. Rows already in the ledger are left as they
//! are, so a re-import is idempotent. Rows stream from the file into one transaction.

use std::path::Path;

use crate::config::{Config, UsageError};
use crate::ledger::{FieldError, ImportOutcome, Ledger, NewSession, SessionInput};

const COLUMNS: &[&str] = NewSession::FIELDS;

/// How many bad rows are reported before the rest are only counted.
const MAX_REPORTED: usize = 20;

/// Imports `file` into `ledger`. A bad file or bad rows give a [`UsageError`] naming them.
pub fn run(cfg: &Config, ledger: &Ledger, file: &Path) -> anyhow::Result<ImportOutcome> {
    let name = file.display().to_string();
    let f = std::fs::File::open(file)
        .map_err(|e| UsageError::new(format!("cannot read {name}: {e}")))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Headers are trimmed; fields are not: a session id with a space is refused, as `add` and
    // the API refuse it, never silently trimmed into another id.
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_reader(std::io::BufReader::new(f));
    let headers = reader
        .headers()
        .map_err(|e| UsageError::new(format!("{name}: line 1: cannot read the header: {e}")))?
        .clone();
    let mut index = vec![None; COLUMNS.len()];
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim_start_matches('\u{feff}');
        let Some(col) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h)) else {
            return Err(UsageError::new(format!(
                "{name}: line 1: unknown column {h:?} (columns: {})",
                COLUMNS.join(",")
            ))
            .into());
        };
        if index[col].replace(i).is_some() {
            return Err(
                UsageError::new(format!("{name}: line 1: column {h:?} appears twice")).into(),
            );
        }
    }
    for required in [0, 1] {
        if index[required].is_none() {
            return Err(UsageError::new(format!(
                "{name}: line 1: the header has no {:?} column (header: provider,session_id,reference,amount,currency,created_at)",
                COLUMNS[required]
            ))
            .into());
        }
    }
    let bar = crate::progress::bar(
        Some(size),
        "importing {bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}",
    );
    let mut record = csv::StringRecord::new();
    let rows = std::iter::from_fn(|| {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                bar.set_position(reader.position().byte());
                Some((line, row(cfg, &record, &index).map_err(|e| e.to_string())))
            }
            Err(e) => Some((line, Err(e.to_string()))),
        }
    });
    let out = ledger.import(rows, MAX_REPORTED)?;
    bar.finish_and_clear();
    if out.failed_rows > 0 {
        let more = out.failed_rows.saturating_sub(out.errors.len() as u64);
        let mut msg = format!(
            "{name}: nothing imported; {} bad row(s): {}",
            out.failed_rows,
            out.errors.join("; ")
        );
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        return Err(UsageError::new(msg).into());
    }
    Ok(out)
}

fn row(
    cfg: &Config,
    r: &csv::StringRecord,
    index: &[Option<usize>],
) -> Result<NewSession, FieldError> {
    let get = |name: &str| {
        let col = COLUMNS.iter().position(|c| *c == name)?;
        index[col].and_then(|i| r.get(i))
    };
    NewSession::from_input(&SessionInput::by_name(get), |p| cfg.provider(p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(ledger: &Path) -> Config {
        let text = format!(
            "[ledger]\npath = {ledger:?}\n[providers.mopay]\nkind = \"mopay\"\nbase_url = \"http://127.0.0.1:9\"\n"
        );
        Config::parse(&text, &|_| None).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Arbitrary bytes, or CSV-shaped noise under a valid header: never a panic, and a
        /// failed import leaves the ledger empty.
        #[test]
        fn arbitrary_files_never_panic_and_fail_whole(
            raw in prop::collection::vec(any::<u8>(), 0..400),
            rows in prop::collection::vec(("(mopay|paypal|)", "\\PC{0,12}", "[0-9.,a-z-]{0,8}", "\\PC{0,26}"), 0..12),
            header in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(&dir.path().join("l.db"));
            let ledger = Ledger::connect(&cfg.ledger).unwrap();
            let file = dir.path().join("in.csv");
            let mut bytes = Vec::new();
            if header {
                bytes.extend_from_slice(b"provider,session_id,amount,created_at\n");
                for (p, id, amount, created) in &rows {
                    let mut w = csv::Writer::from_writer(Vec::new());
                    w.write_record([p, id, amount, created]).unwrap();
                    bytes.extend(w.into_inner().unwrap());
                }
            } else {
                bytes = raw;
            }
            std::fs::write(&file, &bytes).unwrap();
            let result = run(&cfg, &ledger, &file);
            let n = ledger.query_strings("SELECT count(*) FROM sessions").unwrap()[0].clone();
            match result {
                Ok(out) => prop_assert_eq!(n, out.added.to_string()),
                Err(e) => {
                    prop_assert_eq!(n, "0");
                    prop_assert!(e.chain().any(|c| c.is::<UsageError>()), "{e:#}");
                }
            }
        }
    }
}
