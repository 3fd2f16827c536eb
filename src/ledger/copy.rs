//! `payrecon ledger copy --to postgres://…`: a SQLite ledger into an empty PostgreSQL ledger.
//!
//! The source is held in one write transaction for the whole copy (nothing can change it
//! meanwhile; stop the daemons first); the target is written in one transaction with
//! PostgreSQL's `COPY`, its id sequences moved past the copied ids, and verified before it
//! commits: row counts per table, and per status and currency the sessions and the decimal sum of
//! their amounts. A target that already holds anything is refused untouched.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::db::{DbError, Mode, Row, Tx};
use super::{Error, Ledger, Location};

/// Per `(status, currency)`: sessions and the sum of their amounts.
pub type Totals = BTreeMap<(String, String), (u64, Decimal)>;

/// What was copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table, in copy order.
    pub rows: Vec<(&'static str, u64)>,
    pub totals: Totals,
}

/// The tables in copy order (parents first) with their columns, all of them.
const TABLES: &[(&str, &str, &str)] = &[
    ("sessions", super::rows::session_cols!(), "id"),
    (
        "transitions",
        "id, session, from_status, to_status, at, source, reason, provider_status, \
         transaction_id, payment_method, provider_amount, provider_reference, provider_currency, \
         provider_completed_at, actor, pending_since",
        "id",
    ),
    ("unmatched_payments", super::rows::unmatched_cols!(), "id"),
    (
        "events",
        "seq, id, type, session, payment, payload, created_at, attempts, next_attempt_at, \
         delivered_at, dead_at, last_error, lease_owner, lease_until",
        "seq",
    ),
    (
        "provider_state",
        "provider, auth_refused_at, auth_error, paused_until, last_answer_at, misdirected_at, \
         misdirected_error, answered_endpoint, sweep_due_at, swept_at, sweep_started_at, \
         sweep_error",
        "provider",
    ),
    ("call_budget", "credential, next_at", "credential"),
    ("audit_log", "id, at, actor, action, target, detail", "id"),
];

/// Rows sent to PostgreSQL per `COPY` chunk.
const CHUNK_BYTES: usize = 4 << 20;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Ledger(#[from] Error),
    /// The target is not empty, or the source is not SQLite: nothing was written.
    #[error("{0}")]
    Refused(String),
    /// The copy did not verify: nothing was committed.
    #[error("{0}")]
    Mismatch(String),
    #[error("copying: {0}")]
    Db(#[from] DbError),
}

/// Copies the SQLite ledger `from` into the empty PostgreSQL ledger at `to`; `progress` is told
/// the total rows once, then each row copied.
pub fn copy(
    from: &Ledger,
    to: &str,
    mut progress: impl FnMut(Progress),
) -> Result<Copied, CopyError> {
    if from.is_pg() {
        return Err(CopyError::Refused(
            "ledger copy reads a SQLite ledger; [ledger] names a PostgreSQL one".into(),
        ));
    }
    let target = Ledger::connect(&Location::Url(to.to_string()))?;
    let name = target.location().to_string();
    from.inner.engine.tx(Mode::Write, |src| {
        target.inner.engine.tx(Mode::Write, |dst| {
            let held: Vec<String> = TABLES
                .iter()
                .map(|(t, _, _)| Ok((t, count(dst, t)?)))
                .collect::<Result<Vec<_>, DbError>>()?
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| format!("{n} {t}"))
                .collect();
            if !held.is_empty() {
                return Err(CopyError::Refused(format!(
                    "{name} is not empty ({}); copy only into an empty ledger",
                    held.join(", ")
                )));
            }
            let mut total = 0;
            for (t, _, _) in TABLES {
                total += count(src, t)?;
            }
            progress(Progress::Total(total));
            let mut copied = Copied::default();
            // A copy brings sessions in every state, with their transitions: the rule that a
            // new session starts PENDING is for applications, off for this transaction only.
            dst.batch("ALTER TABLE sessions DISABLE TRIGGER new_session_is_pending")?;
            for (table, cols, key) in TABLES {
                let n = copy_table(src, dst, table, cols, key, &mut progress)?;
                copied.rows.push((table, n));
            }
            dst.batch("ALTER TABLE sessions ENABLE TRIGGER new_session_is_pending")?;
            for (table, key) in [("sessions", "id"), ("transitions", "id"), ("events", "seq"), ("unmatched_payments", "id"), ("audit_log", "id")] {
                dst.batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{key}'), \
                     (SELECT coalesce(max({key}), 0) + 1 FROM {table}), false)"
                ))?;
            }
            // Verified inside the target's transaction: a mismatch commits nothing.
            for (table, n) in &copied.rows {
                let there = count(dst, table)?;
                if there != *n {
                    return Err(CopyError::Mismatch(format!(
                        "verification failed: {n} {table} read, {there} in {name}; nothing was committed"
                    )));
                }
            }
            copied.totals = totals(src)?;
            let theirs = totals(dst)?;
            if theirs != copied.totals {
                return Err(CopyError::Mismatch(format!(
                    "verification failed: the amounts per status and currency differ in {name}; nothing was committed"
                )));
            }
            Ok(copied)
        })
    })
}

/// Progress of a copy.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Total(u64),
    Rows(u64),
}

fn count(tx: &mut Tx<'_>, table: &str) -> Result<u64, DbError> {
    tx.query_one(&format!("SELECT count(*) FROM {table}"), &[], |r| r.get(0))
}

/// Sessions and the decimal sum of their amounts per `(status, currency)`.
fn totals(tx: &mut Tx<'_>) -> Result<Totals, DbError> {
    let mut out = Totals::new();
    tx.each(
        "SELECT status, coalesce(currency, ''), amount FROM sessions",
        &[],
        |r| {
            let key = (r.get(0)?, r.get(1)?);
            let amount: Option<String> = r.get(2)?;
            let amount = match amount {
                Some(a) => a
                    .parse::<Decimal>()
                    .map_err(|_| DbError::Value(format!("amount {a:?} is not a decimal")))?,
                None => Decimal::ZERO,
            };
            let e = out.entry(key).or_default();
            e.0 += 1;
            e.1 += amount;
            Ok::<_, DbError>(())
        },
    )?;
    Ok(out)
}

/// Streams one table from SQLite into PostgreSQL's `COPY … FROM STDIN` (text format).
fn copy_table(
    src: &mut Tx<'_>,
    dst: &mut Tx<'_>,
    table: &str,
    cols: &str,
    key: &str,
    progress: &mut impl FnMut(Progress),
) -> Result<u64, DbError> {
    let width = cols.split(',').count();
    let copy_sql = format!("COPY {table} ({cols}) FROM STDIN");
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut n = 0u64;
    let mut since = 0u64;
    src.each(
        &format!("SELECT {cols} FROM {table} ORDER BY {key}"),
        &[],
        |r: &Row<'_>| {
            for i in 0..width {
                if i > 0 {
                    buf.push(b'\t');
                }
                match r.get::<super::db::AnyText>(i)?.0 {
                    None => buf.extend_from_slice(b"\\N"),
                    Some(v) => escape_into(&mut buf, &v),
                }
            }
            buf.push(b'\n');
            n += 1;
            since += 1;
            if buf.len() >= CHUNK_BYTES {
                dst.pg_copy_in(&copy_sql, &buf)?;
                buf.clear();
                progress(Progress::Rows(since));
                since = 0;
            }
            Ok::<_, DbError>(())
        },
    )?;
    if !buf.is_empty() {
        dst.pg_copy_in(&copy_sql, &buf)?;
    }
    progress(Progress::Rows(since));
    Ok(n)
}

/// A value in `COPY`'s text format: backslash, tab, newline and carriage return escaped.
fn escape_into(buf: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_escapes_what_would_split_a_row() {
        let mut buf = Vec::new();
        super::escape_into(&mut buf, "a\tb\nc\\d\re");
        assert_eq!(buf, b"a\\tb\\nc\\\\d\\re");
    }
}
