//! What operators read: `list`, `show`'s transitions and events, `stats`, and the streamed
//! `export`.

use super::db::{AnyText, DbError, Mode, Tx, vals};
use super::rows::*;
use super::*;
use crate::clock::{self, Timestamp};

/// Why an export row stopped the stream.
pub(super) enum ExportStep {
    Db(DbError),
    Write(std::io::Error),
    Unreadable(Unreadable),
}

impl From<DbError> for ExportStep {
    fn from(e: DbError) -> Self {
        ExportStep::Db(e)
    }
}

/// Sessions counted and summed per provider, status and currency, as decimals (SQLite's `sum()`
/// would go through floats).
pub(super) fn sum_by_status(tx: &mut Tx<'_>) -> Result<Vec<StatusSum>, DbError> {
    // One pass over every session, summed here as exact decimals (no ORDER BY: a sort of the
    // whole ledger cost more than the sums).
    let mut sums: std::collections::BTreeMap<
        (String, String, String),
        (u64, rust_decimal::Decimal),
    > = Default::default();
    tx.each(
        "SELECT provider, status, coalesce(currency, ''), amount FROM sessions WHERE amount IS NOT NULL",
        &[],
        |r| {
            let provider = r.get::<AnyText>(0)?.0.unwrap_or_default();
            let key = (provider.escape_debug().to_string(), r.get(1)?, r.get(2)?);
            let amount: Option<String> = r.get::<AnyText>(3)?.0;
            let amount: rust_decimal::Decimal =
                amount.and_then(|a| a.parse().ok()).unwrap_or_default();
            let e = sums.entry(key).or_default();
            e.0 += 1;
            e.1 += amount;
            Ok::<_, DbError>(())
        },
    )?;
    Ok(sums
        .into_iter()
        .map(|((provider, status, currency), (count, sum))| StatusSum {
            provider,
            status,
            currency,
            count,
            sum,
        })
        .collect())
}

/// The COMPLETED sums per currency, from [`sum_by_status`]'s per provider and status.
fn completed_by_currency(sums: &[StatusSum]) -> Vec<(String, u64, rust_decimal::Decimal)> {
    let mut by: std::collections::BTreeMap<&str, (u64, rust_decimal::Decimal)> = Default::default();
    for s in sums.iter().filter(|s| s.status == "COMPLETED") {
        let e = by.entry(&s.currency).or_default();
        e.0 += s.count;
        e.1 += s.sum;
    }
    by.into_iter()
        .map(|(c, (n, sum))| (c.to_string(), n, sum))
        .collect()
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

/// The ledger's idea of now: on SQLite, when the newest transition was recorded (by any
/// process); on PostgreSQL, the server's clock.
const LEDGER_CLOCK: [&str; 2] = [
    "SELECT (SELECT CAST(at AS TEXT) FROM transitions ORDER BY id DESC LIMIT 1)",
    "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
];

impl Ledger {
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

    /// Sessions `q` names: by their session id, their provider's second id (`provider_ref`),
    /// their reference or their provider's transaction id, at any provider — each indexed.
    pub fn search(&self, q: &str, limit: u32) -> Result<Vec<Session>, Error> {
        self.tx(Mode::Read, "searching sessions", |tx| {
            tx.query(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE id IN ( \
                       SELECT id FROM sessions WHERE session_id = ?1 \
                       UNION SELECT id FROM sessions WHERE provider_ref = ?1 AND provider_ref IS NOT NULL \
                       UNION SELECT id FROM sessions WHERE reference = ?1 AND reference IS NOT NULL \
                       UNION SELECT id FROM sessions WHERE transaction_id = ?1 AND transaction_id IS NOT NULL) \
                     ORDER BY id DESC LIMIT ?2"
                ),
                vals![q, limit],
                session_from_row,
            )
        })
    }

    /// Rows set aside because payrecon cannot read them, newest first.
    pub fn unreadable_rows(&self, limit: u32) -> Result<Vec<Unreadable>, Error> {
        self.tx(Mode::Read, "listing unreadable rows", |tx| {
            let rows = tx.query(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE status = 'PENDING' \
                     AND substr(CAST(last_error AS TEXT), 1, 16) = ?1 ORDER BY id DESC LIMIT ?2"
                ),
                vals![UNREADABLE_MARK, limit],
                read_session,
            )?;
            Ok(rows
                .into_iter()
                // A row fixed by hand since reads again, still marked: shown with its mark.
                .map(|r| match r {
                    Ok(s) => Unreadable {
                        rowid: s.rowid,
                        provider: s.provider,
                        error: s.last_error.unwrap_or_default(),
                    },
                    Err(u) => u,
                })
                .collect())
        })
    }

    /// Sessions in REVIEW as `f` filters and orders them (longest waiting first by default),
    /// `limit` after `offset`, each with the reason it went there and the amount the provider
    /// reported.
    pub fn review_queue(
        &self,
        f: &ReviewFilter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ReviewItem>, Error> {
        // Amounts as numbers for filtering and ordering only: PostgreSQL's numeric is exact;
        // SQLite has no decimal type, so its cast is a float (a display order, never money).
        let number = self.dialect(&["CAST(amount AS REAL)", "CAST(amount AS NUMERIC)"]);
        let order = if f.by_amount {
            format!("{number} DESC, id")
        } else {
            "resolved_at, id".to_string()
        };
        let sql = format!(
            concat!(
                "SELECT ",
                session_cols!(),
                ", (SELECT reason FROM transitions t WHERE t.session = sessions.id \
                    AND t.to_status = 'REVIEW' ORDER BY t.id DESC LIMIT 1), \
                   (SELECT provider_amount FROM transitions t WHERE t.session = sessions.id \
                    AND t.to_status = 'REVIEW' ORDER BY t.id DESC LIMIT 1) \
                 FROM sessions WHERE status = 'REVIEW' \
                 AND (CAST(?1 AS TEXT) IS NULL OR provider = ?1) \
                 AND (CAST(?4 AS TEXT) IS NULL OR {number} >= CAST(?4 AS {numeric})) \
                 AND (CAST(?5 AS TEXT) IS NULL OR resolved_at < ?5) \
                 ORDER BY {order} LIMIT ?2 OFFSET ?3"
            ),
            number = number,
            numeric = if self.is_pg() { "NUMERIC" } else { "REAL" },
            order = order,
        );
        let min = f.min_amount.map(|a| a.to_string());
        let before = f.before.map(clock::format);
        self.tx(Mode::Read, "reading the REVIEW queue", |tx| {
            tx.query(
                &sql,
                vals![
                    f.provider.as_deref(),
                    limit,
                    offset,
                    min.as_deref(),
                    before.as_deref()
                ],
                |r| {
                    Ok(ReviewItem {
                        session: session_from_row(r)?,
                        reason: r.get(24)?,
                        provider_amount: r.get(25)?,
                    })
                },
            )
        })
    }

    /// A session's transitions, oldest first.
    pub fn transitions(&self, rowid: i64) -> Result<Vec<TransitionRow>, Error> {
        self.tx(Mode::Read, "reading transitions", |tx| {
            tx.query(
                "SELECT from_status, to_status, at, source, reason, provider_status, transaction_id, \
                 provider_amount, actor FROM transitions WHERE session = ?1 ORDER BY id",
                vals![rowid],
                |r| {
                    // Typed as they leave the database: a row payrecon did not write names
                    // itself in the error.
                    let text = |i: usize| -> Result<String, DbError> { r.get(i) };
                    let at = text(2)?;
                    Ok(TransitionRow {
                        from: text(0)?.parse().map_err(DbError::Value)?,
                        to: text(1)?.parse().map_err(DbError::Value)?,
                        at: clock::parse(&at).ok_or_else(|| {
                            DbError::Value(format!("transition time {at:?} is not a time"))
                        })?,
                        source: text(3)?.parse().map_err(DbError::Value)?,
                        reason: r.get(4)?,
                        provider_status: r.get(5)?,
                        transaction_id: r.get(6)?,
                        provider_amount: r.get(7)?,
                        actor: r.get(8)?,
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
    /// The ledger's clock (see [`Stats::ledger_clock`]), read on its own: one row.
    pub fn ledger_clock(&self) -> Result<Option<Timestamp>, Error> {
        let sql = self.dialect(&LEDGER_CLOCK);
        self.tx(Mode::Read, "reading the ledger's clock", |tx| {
            tx.query_one(sql, &[], |r| r.get::<Option<String>>(0))
        })
        .map(|t| t.as_deref().and_then(clock::parse))
    }

    pub fn stats(&self, now: Timestamp) -> Result<Stats, Error> {
        let providers = self.provider_states()?;
        let clock_sql = self.dialect(&LEDGER_CLOCK);
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
            let oldest_due: Option<String> = tx.query_one(
                "SELECT min(next_check_at) FROM sessions WHERE status = 'PENDING'",
                &[],
                |r| r.get(0),
            )?;
            // The ledger's own idea of now: PostgreSQL's clock, or on SQLite the time the
            // newest transition was written (by whichever process).
            let ledger_clock: Option<String> = tx.query_one(
                clock_sql,
                &[],
                |r| r.get(0),
            )?;
            let (events_total, events_waiting, events_dead) = tx.query_one(
                "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL), \
                 count(*) FILTER (WHERE dead_at IS NOT NULL) FROM events",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let sums = sum_by_status(tx)?;
            let completed = completed_by_currency(&sums);
            let (late_checks_waiting, anomalies, unmatched_open) = tx.query_one(
                "SELECT (SELECT count(*) FROM sessions WHERE late_check_at IS NOT NULL AND status <> 'PENDING'), \
                        (SELECT count(*) FROM events WHERE type = 'session.anomaly'), \
                        (SELECT count(*) FROM unmatched_payments WHERE reported_at IS NOT NULL \
                         AND matched_at IS NULL AND dismissed_at IS NULL)",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(Stats {
                sessions,
                due_now,
                events_waiting,
                events_dead,
                events_total,
                completed,
                sums,
                providers,
                late_checks_waiting,
                anomalies,
                unreadable,
                unmatched_open,
                oldest_due: oldest_due.as_deref().and_then(clock::parse),
                ledger_clock: ledger_clock.as_deref().and_then(clock::parse),
            })
        })
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
}
