//! Sessions in: enqueue and import (one rule per field, conflicts refused), and claims — the
//! leases a pass takes on due, late and backfill sessions (and on a single one for `verify`).

use std::fmt::Write as _;

use super::db::{AnyText, DbError, Mode, Tx, Val, vals};
use super::rows::*;
use super::*;
use crate::clock::{self, Timestamp};

/// Which sessions a pass claims.
#[derive(Debug, Clone)]
pub enum ClaimMode {
    /// Sessions due by a time, in [`DueOrder`].
    Due(Due),
    /// Every PENDING session with an id above this one, ignoring the schedule (`once --all`).
    AllAfter(i64),
    /// EXPIRED sessions whose late check is due by this time.
    LateBy(Timestamp),
}

/// Which due sessions a claim takes.
#[derive(Debug, Clone)]
pub struct Due {
    /// Due at or before this time (the pass's start).
    pub by: Timestamp,
    /// Only this provider's sessions (`None`: every provider's).
    pub provider: Option<String>,
    /// None of these providers' sessions.
    pub except: Vec<String>,
    /// [`DueOrder`]'s two spans (`[schedule] young` and `ageing`).
    pub young: std::time::Duration,
    pub ageing: std::time::Duration,
}

impl Due {
    /// Every provider's sessions due by `by`, in [`DueOrder`] with the spans `[schedule] young`
    /// and `ageing` give.
    pub fn by(by: Timestamp, young: std::time::Duration, ageing: std::time::Duration) -> Self {
        Self {
            by,
            provider: None,
            except: Vec::new(),
            young,
            ageing,
        }
    }
}

/// The order in which due sessions are claimed when more is due than can be checked: the one
/// place this policy lives (docs/operations.md "When more is due than the budget allows").
///
/// 1. Sessions overdue by more than `[schedule] ageing`, most overdue first: no session waits
///    more than that behind newer ones.
/// 2. Sessions created less than `[schedule] young` ago, most overdue first: the customer is
///    acting now, and their answer is the one most likely to have changed.
/// 3. The rest, most overdue first.
///
/// For a provider whose checks are timed by learned answer times every session younger than
/// its `max_age` counts as young ([`DueOrder::young`]): most overdue first after the aged.
///
/// Sessions not claimed keep their due time and are not charged.
pub struct DueOrder;

impl DueOrder {
    /// The span within which a provider's sessions count as young: `[schedule] young`, or for
    /// a provider with learned check times (`learned`) its whole `max_age`. The learned times
    /// already put a young session's checks where its answer is likely; claiming the young
    /// first as well kept slow customers' sessions waiting up to `ageing` past their time
    /// (docs/benchmark.md row 12). (Not "none young": that tier would then scan every due row
    /// to find none.)
    pub fn young(
        young: std::time::Duration,
        learned: bool,
        max_age: std::time::Duration,
    ) -> std::time::Duration {
        if learned { max_age.max(young) } else { young }
    }
}

/// One tier of [`DueOrder`]: `($tier, $cond)` over PENDING sessions due by `?3`, of provider
/// `?5` (or all), none of the providers in `$except`, most overdue first, at most `?4`. Each
/// tier is a range of the partial index `sessions_due` (a test asserts the plan), so a claim's
/// cost grows with the sessions due, never with the ledger. `?6`: created after this is young;
/// `?7`: due before this has aged. `$lock` is PostgreSQL's row lock.
macro_rules! due_tier {
    ($tier:literal, $cond:literal, $except:literal, $lock:literal) => {
        concat!(
            "SELECT ",
            $tier,
            " AS tier, id AS due_id, next_check_at AS due_at FROM sessions \
             WHERE status = 'PENDING' AND next_check_at <= ?3 AND ",
            $cond,
            " AND (CAST(?5 AS TEXT) IS NULL OR provider = ?5) AND provider NOT IN ",
            $except,
            " ORDER BY next_check_at LIMIT ?4",
            $lock
        )
    };
}

/// EXPIRED sessions, and REVIEW sessions closed on an answer payrecon could not act on, whose
/// late check is due by `?3` (only those two ever carry a `late_check_at`).
macro_rules! late_rows {
    () => {
        "FROM sessions WHERE late_check_at IS NOT NULL AND late_check_at <= ?3 \
         AND (status = 'EXPIRED' OR status = 'REVIEW') ORDER BY late_check_at LIMIT ?4"
    };
}

/// `once --all`: PENDING sessions after rowid `?3` whose lease (if any) ran out by `?5`, in
/// rowid order — one scan per pass however many batches it takes (SQLite is told not to pick
/// the due index and sort).
macro_rules! all_rows {
    ($from:literal) => {
        concat!(
            $from,
            " WHERE status = 'PENDING' AND id > ?3 \
             AND (lease_until IS NULL OR lease_until <= ?5) ORDER BY id LIMIT ?4"
        )
    };
}

/// One kind of claim in both engines' words. Parameters: `?1` owner, `?2` lease end, then the
/// rows' own (see the `*_rows!` tails).
pub(super) struct Claim {
    /// PostgreSQL: one `UPDATE … RETURNING` that locks the rows it takes and skips rows another
    /// transaction is taking, so concurrent claims never return one row twice.
    pg: &'static str,
    /// SQLite: the rows as they are — the queries one after another while the batch (`?4`) has
    /// room (one query, or [`DueOrder`]'s tiers) …
    selects: &'static [&'static str],
    /// … then one UPDATE leasing exactly those, by id (`?3`, a JSON array). SQLite runs
    /// `UPDATE … RETURNING` by first collecting every row in a temporary table, which cost more
    /// than reading the rows and updating them; nothing can come between the two statements
    /// inside the write transaction.
    lease: &'static str,
    /// What the lease moves: the late check's time instead of the next check's.
    late: bool,
}

/// SQLite: one tier of the due rows in [`DueOrder`], at most `?4`: the tiers run one after
/// another while the batch has room ([`claim_rows`]), so a tier that would scan the due index
/// for rows of another tier (every due session young, none old) never runs while an earlier one
/// fills the batch — one UNION of the three made each claim scan every due row, and draining a
/// backlog cost its square.
macro_rules! lite_tier {
    ($cond:literal) => {
        concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE status = 'PENDING' AND ",
            $cond,
            " AND (CAST(?5 AS TEXT) IS NULL OR provider = ?5) AND provider NOT IN \
             (SELECT value FROM json_each(?8)) ORDER BY next_check_at LIMIT ?4"
        )
    };
}

/// SQLite: [`DueOrder`]'s tiers, in order.
const LITE_DUE_TIERS: &[&str] = &[
    // One upper bound, the earlier of the two: given `next_check_at <= ?3 AND next_check_at <=
    // ?7`, SQLite bounds the range by one of them and filters by the other, and with `?3` it
    // walked every due row to find the aged ones — 1.3 ms per claim at 20,000 due, none aged
    // (docs/benchmark.md "Where the time goes").
    lite_tier!("next_check_at <= min(?3, ?7)"),
    lite_tier!("next_check_at <= ?3 AND next_check_at > ?7 AND created_at > ?6"),
    lite_tier!("next_check_at <= ?3 AND next_check_at > ?7 AND created_at <= ?6"),
];

/// PostgreSQL: the due rows in [`DueOrder`], each tier locking the rows it reads and skipping
/// rows another transaction is taking.
macro_rules! pg_due {
    () => {
        concat!(
            "WITH t0 AS (", due_tier!("0", "next_check_at <= ?7", "(SELECT json_array_elements_text(CAST(CAST(?8 AS TEXT) AS json)))", " FOR UPDATE SKIP LOCKED"),
            "), t1 AS (", due_tier!("1", "next_check_at > ?7 AND created_at > ?6", "(SELECT json_array_elements_text(CAST(CAST(?8 AS TEXT) AS json)))", " FOR UPDATE SKIP LOCKED"),
            "), t2 AS (", due_tier!("2", "next_check_at > ?7 AND created_at <= ?6", "(SELECT json_array_elements_text(CAST(CAST(?8 AS TEXT) AS json)))", " FOR UPDATE SKIP LOCKED"),
            "), t AS (SELECT * FROM (SELECT * FROM t0 UNION ALL SELECT * FROM t1 UNION ALL SELECT * FROM t2) AS tiers \
             ORDER BY tier, due_at LIMIT ?4) \
             UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 \
             FROM t WHERE id = t.due_id RETURNING ",
            session_cols!()
        )
    };
}

macro_rules! pg_claim {
    ($set:literal, $rows:expr) => {
        concat!(
            "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, ",
            $set,
            " WHERE id IN (SELECT id ",
            $rows,
            " FOR UPDATE SKIP LOCKED) RETURNING ",
            session_cols!()
        )
    };
}

macro_rules! lite_lease {
    ($set:literal) => {
        concat!(
            "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, ",
            $set,
            " WHERE id IN (SELECT value FROM json_each(?3))"
        )
    };
}

pub(super) const CLAIM_DUE: Claim = Claim {
    pg: pg_due!(),
    selects: LITE_DUE_TIERS,
    lease: lite_lease!("next_check_at = ?2"),
    late: false,
};

pub(super) const CLAIM_LATE: Claim = Claim {
    pg: pg_claim!("late_check_at = ?2", late_rows!()),
    selects: &[concat!("SELECT ", session_cols!(), " ", late_rows!())],
    lease: lite_lease!("late_check_at = ?2"),
    late: true,
};

pub(super) const CLAIM_ALL: Claim = Claim {
    pg: pg_claim!("next_check_at = ?2", all_rows!("FROM sessions")),
    selects: &[concat!(
        "SELECT ",
        session_cols!(),
        " ",
        all_rows!("FROM sessions NOT INDEXED")
    )],
    lease: lite_lease!("next_check_at = ?2"),
    late: false,
};

/// Takes the rows of `claim` for `owner` until `until`; `params` as [`Claim`] says. Returns
/// them as leased. A row that cannot be read as a session is leased too (so it is not taken
/// again before the lease ends) and set aside: marked in `last_error` and returned as
/// [`Unreadable`], for the caller to name.
pub(super) fn claim_rows(
    tx: &mut Tx<'_>,
    claim: &Claim,
    params: &[Val<'_>],
    owner: &str,
    until: Timestamp,
) -> Result<Claimed, DbError> {
    let mut claimed = if tx.is_pg() {
        split(tx.query(claim.pg, params, read_session)?)
    } else {
        // `?4` is the batch: each query gets what the earlier ones left.
        let limit = match params.get(3) {
            Some(Val::Int(n)) => *n,
            _ => 0,
        };
        let mut p = params.to_vec();
        let mut rows = Vec::new();
        for sql in claim.selects {
            let left = limit - rows.len() as i64;
            if left <= 0 {
                break;
            }
            p[3] = Val::Int(left);
            rows.extend(tx.query(sql, &p, read_session)?);
        }
        let claimed = split(rows);
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let mut ids = String::with_capacity((claimed.sessions.len() + 1) * 8 + 2);
        let all = claimed.sessions.iter().map(|s| s.rowid);
        for id in all.chain(claimed.unreadable.iter().map(|u| u.rowid)) {
            ids.push(if ids.is_empty() { '[' } else { ',' });
            let _ = write!(ids, "{id}"); // Writing to a String cannot fail.
        }
        ids.push(']');
        let leased = tx.exec(
            claim.lease,
            vals![owner, &clock::format(until), ids.as_str()],
        )?;
        let read = claimed.sessions.len() + claimed.unreadable.len();
        if leased != read as u64 {
            // Cannot happen inside the write transaction; if it did, nothing is kept.
            return Err(DbError::Value(format!(
                "leased {leased} of the {read} sessions read"
            )));
        }
        claimed
    };
    for u in &claimed.unreadable {
        let mark = format!("{UNREADABLE_MARK}{}", u.error);
        tx.exec(
            "UPDATE sessions SET last_error = ?1 WHERE id = ?2",
            vals![mark.as_str(), u.rowid],
        )?;
    }
    // As stored: to the millisecond.
    let until = chrono::SubsecRound::trunc_subsecs(until, 3);
    let rows = &mut claimed.sessions;
    for s in rows.iter_mut() {
        s.lease_owner = Some(owner.to_string());
        s.lease_until = Some(until);
        if claim.late {
            s.late_check_at = Some(until);
        } else {
            s.next_check_at = until;
        }
    }
    Ok(claimed)
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    pub added: u64,
    pub already_present: u64,
    pub failed_rows: u64,
    pub errors: Vec<String>,
}

/// What inserting one session did.
pub(super) enum Inserted {
    Added,
    /// Already there with the same fields.
    Same,
    /// Already there with another value in one field.
    Differs(Conflict),
}

pub(super) fn insert_session(tx: &mut Tx<'_>, s: &NewSession) -> Result<Inserted, DbError> {
    let created = clock::format(s.created_at.unwrap_or_else(clock::now));
    let amount = s.amount.map(|a| a.to_string());
    let n = tx.exec(
        "INSERT INTO sessions (provider, session_id, reference, amount, currency, created_at, \
         provider_ref) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (provider, session_id) DO NOTHING",
        vals![
            &s.provider,
            &s.session_id,
            s.reference.as_deref(),
            amount.as_deref(),
            s.currency.as_deref(),
            &created,
            s.provider_ref.as_deref()
        ],
    )?;
    if n == 1 {
        return Ok(Inserted::Added);
    }
    // Already there: the same session again is harmless, another amount is not.
    let existing = tx.query_opt(
        "SELECT reference, amount, currency, provider_ref FROM sessions \
         WHERE provider = ?1 AND session_id = ?2",
        vals![&s.provider, &s.session_id],
        |r| {
            Ok((
                r.get::<AnyText>(0)?.0,
                r.get::<AnyText>(1)?.0,
                r.get::<AnyText>(2)?.0,
                r.get::<AnyText>(3)?.0,
            ))
        },
    )?;
    Ok(match existing.and_then(|e| s.conflict_with(e)) {
        Some(c) => Inserted::Differs(c),
        None => Inserted::Same,
    })
}

impl Ledger {
    /// Adds one session, due at once; an existing `(provider, session_id)` is left untouched.
    pub fn enqueue(&self, s: &NewSession) -> Result<Enqueued, Error> {
        match self.tx(Mode::Write, "adding a session", |tx| insert_session(tx, s))? {
            Inserted::Added => Ok(Enqueued::Added),
            Inserted::Same => Ok(Enqueued::AlreadyPresent),
            Inserted::Differs(c) => Err(Error::Conflict(Box::new(c))),
        }
    }

    /// Adds many sessions all-or-nothing: rows come with their line and are validated by the
    /// caller, which passes `Err(message)` for a bad row; a bad row, or one already in the
    /// ledger (or earlier in the rows) with another reference, amount or currency, rolls the
    /// whole import back. `errors` holds at most `max_errors` messages, each with its line.
    pub fn import<I>(&self, rows: I, max_errors: usize) -> Result<ImportOutcome, Error>
    where
        I: IntoIterator<Item = (u64, Result<NewSession, String>)>,
    {
        self.tx(Mode::Write, "importing sessions", |tx| {
            let mut out = ImportOutcome::default();
            for (line, row) in rows {
                let problem = match row {
                    Ok(s) if out.errors.is_empty() => match insert_session(tx, &s)? {
                        Inserted::Added => {
                            out.added += 1;
                            continue;
                        }
                        Inserted::Same => {
                            out.already_present += 1;
                            continue;
                        }
                        Inserted::Differs(c) => c.to_string(),
                    },
                    Ok(_) => continue,
                    Err(e) => e,
                };
                out.failed_rows += 1;
                if out.errors.len() < max_errors {
                    out.errors.push(format!("line {line}: {problem}"));
                }
            }
            if out.failed_rows > 0 {
                out.added = 0;
                out.already_present = 0;
                tx.roll_back();
            }
            Ok(out)
        })
    }

    /// Claims up to `limit` sessions for `owner` until `lease_until`, in one transaction.
    pub fn claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        mode: ClaimMode,
    ) -> Result<Claimed, Error> {
        let until = clock::format(lease_until);
        let now_s = clock::format(now);
        self.tx(Mode::Lease, "claiming sessions", |tx| match mode {
            ClaimMode::Due(due) => {
                let except = serde_json::to_string(&due.except).unwrap_or_else(|_| "[]".into());
                claim_rows(
                    tx,
                    &CLAIM_DUE,
                    vals![
                        owner,
                        &until,
                        &clock::format(due.by),
                        limit,
                        due.provider.as_deref(),
                        &clock::format(clock::sub(now, due.young)),
                        &clock::format(clock::sub(now, due.ageing)),
                        except.as_str()
                    ],
                    owner,
                    lease_until,
                )
            }
            ClaimMode::LateBy(t) => claim_rows(
                tx,
                &CLAIM_LATE,
                vals![owner, &until, &clock::format(t), limit],
                owner,
                lease_until,
            ),
            ClaimMode::AllAfter(id) => claim_rows(
                tx,
                &CLAIM_ALL,
                vals![owner, &until, id, limit, &now_s],
                owner,
                lease_until,
            ),
        })
    }

    /// Leases one PENDING session for an immediate check (`verify`), unless another process
    /// holds it. `None` when it is not PENDING, leased, or absent.
    pub fn claim_one(
        &self,
        provider: &str,
        session_id: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<Session>, Error> {
        self.tx(Mode::Lease, "claiming a session", |tx| {
            tx.query_opt(
                concat!(
                    "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2 \
                     WHERE provider = ?3 AND session_id = ?4 AND status = 'PENDING' \
                     AND (lease_until IS NULL OR lease_until <= ?5) RETURNING ",
                    session_cols!()
                ),
                vals![
                    owner,
                    &clock::format(lease_until),
                    provider,
                    session_id,
                    &clock::format(now)
                ],
                session_from_row,
            )
        })
    }

    /// What the ledger holds for each id a provider's list names, in `ids`' order: the PENDING
    /// session that holds it (by `session_id`, else `provider_ref`), leased to `owner` until
    /// `lease_until`, when no other check holds it — its `listed_at` set to now when the id's
    /// flag says the list answers for it, cleared otherwise; or that some session holds it
    /// (final, leased elsewhere, unreadable, or two sessions at once); or that none does. One
    /// write transaction.
    pub fn tie_listed(
        &self,
        provider: &str,
        ids: &[(&str, bool)],
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<Tied>, Error> {
        let (now, lease) = (clock::format(now), clock::format(lease_until));
        self.tx(Mode::Lease, "tying listed payments to sessions", |tx| {
            let mut tied = Vec::with_capacity(ids.len());
            for (id, answers) in ids {
                let claimed = tx.query(
                    concat!(
                        "UPDATE sessions SET lease_owner = ?1, lease_until = ?2, next_check_at = ?2, \
                         listed_at = CASE WHEN ?6 = 1 THEN ?5 END \
                         WHERE id IN (SELECT id FROM sessions WHERE provider = ?3 AND session_id = ?4 \
                                      UNION ALL \
                                      SELECT id FROM sessions WHERE provider = ?3 AND provider_ref = ?4) \
                         AND status = 'PENDING' AND (lease_until IS NULL OR lease_until <= ?5) \
                         RETURNING ",
                        session_cols!()
                    ),
                    vals![owner, &lease, provider, *id, &now, i64::from(*answers)],
                    super::rows::read_session,
                )?;
                let rowids: Vec<i64> = claimed
                    .iter()
                    .map(|s| s.as_ref().map_or_else(|u| u.rowid, |s| s.rowid))
                    .collect();
                let mut claimed = claimed.into_iter();
                tied.push(match (claimed.next(), claimed.next()) {
                    (Some(Ok(s)), None) => Tied::Claimed(Box::new(s)),
                    (Some(_), _) => {
                        // Two sessions named by one payment, or one payrecon cannot read: given
                        // back at once, due now, not answered for by the list.
                        for rowid in &rowids {
                            tx.exec(
                                "UPDATE sessions SET lease_owner = NULL, lease_until = NULL, \
                                 next_check_at = ?1, listed_at = NULL, last_error = ?2 \
                                 WHERE id = ?3 AND lease_owner = ?4",
                                vals![
                                    &now,
                                    "the provider's list names this payment for more than one session",
                                    *rowid,
                                    owner
                                ],
                            )?;
                        }
                        Tied::Several(rowids)
                    }
                    (None, _) => {
                        let held: Option<i64> = tx.query_opt(
                            "SELECT id FROM sessions WHERE provider = ?1 AND session_id = ?2 \
                             UNION ALL SELECT id FROM sessions WHERE provider = ?1 AND provider_ref = ?2",
                            vals![provider, *id],
                            |r| r.get(0),
                        )?;
                        if held.is_some() { Tied::Held } else { Tied::Nobody }
                    }
                });
            }
            Ok(tied)
        })
    }

    /// How many sessions of `provider` are PENDING, and when the oldest of them was created.
    pub fn open_of(&self, provider: &str) -> Result<(i64, Option<Timestamp>), Error> {
        self.tx(Mode::Read, "counting open sessions", |tx| {
            tx.query_one(
                "SELECT count(*), min(created_at) FROM sessions \
                 WHERE provider = ?1 AND status = 'PENDING'",
                vals![provider],
                |r| Ok((r.get(0)?, super::rows::opt_time("created_at", r.get(1)?)?)),
            )
        })
    }

    /// When the earliest PENDING session is due (its lease's end while it is leased), if any
    /// is: one step down the due index.
    pub fn next_due(&self) -> Result<Option<Timestamp>, Error> {
        self.tx(Mode::Read, "finding the next due session", |tx| {
            tx.query_one(
                "SELECT min(next_check_at) FROM sessions WHERE status = 'PENDING'",
                &[],
                |r| super::rows::opt_time("next_check_at", r.get(0)?),
            )
        })
    }

    /// How many sessions are PENDING (for a backfill's progress bar).
    pub fn count_pending(&self) -> Result<u64, Error> {
        self.tx(Mode::Read, "counting pending sessions", |tx| {
            tx.query_one(
                "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// One session by provider and id.
    pub fn get(&self, provider: &str, session_id: &str) -> Result<Option<Session>, Error> {
        self.tx(Mode::Read, "reading a session", |tx| {
            tx.query_opt(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE provider = ?1 AND session_id = ?2"
                ),
                vals![provider, session_id],
                session_from_row,
            )
        })
    }

    /// Every session with this id (one per provider that has it).
    /// The session of `provider` that `id` names, as its session id or else as its
    /// `provider_ref` (the provider's second id: a callback or a list may name a payment by
    /// either).
    pub fn named(&self, provider: &str, id: &str) -> Result<Option<Session>, Error> {
        self.tx(Mode::Read, "reading a session", |tx| {
            tx.query_opt(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM (SELECT 0 AS by_ref, * FROM sessions WHERE provider = ?1 AND session_id = ?2 \
                     UNION ALL SELECT 1, * FROM sessions WHERE provider = ?1 AND provider_ref = ?2) \
                     AS named ORDER BY by_ref LIMIT 1"
                ),
                vals![provider, id],
                session_from_row,
            )
        })
    }

    pub fn find(&self, session_id: &str) -> Result<Vec<Session>, Error> {
        self.tx(Mode::Read, "finding a session", |tx| {
            tx.query(
                concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions WHERE session_id = ?1 ORDER BY provider"
                ),
                vals![session_id],
                session_from_row,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    /// `[schedule] young` and `ageing` as the tests take them.
    const TEN_MINUTES: std::time::Duration = std::time::Duration::from_secs(600);
    use crate::ledger::testing::*;

    /// A lease's commit does not wait for the disk; every other write's does, also right after
    /// a lease on the same connection.
    #[test]
    fn only_leases_commit_without_waiting_for_the_disk() {
        let (_d, l) = temp();
        let sync = |mode| {
            l.inner
                .engine
                .tx(mode, |tx| {
                    tx.query_one("PRAGMA synchronous", vals![], |r| r.get::<i64>(0))
                })
                .unwrap()
        };
        assert_eq!(sync(Mode::Lease), 1, "NORMAL");
        assert_eq!(sync(Mode::Write), 2, "FULL");
        assert_eq!(sync(Mode::Lease), 1, "NORMAL");
        l.claim(
            "me",
            clock::now(),
            clock::now(),
            10,
            ClaimMode::Due(Due::by(clock::now(), TEN_MINUTES, TEN_MINUTES)),
        )
        .unwrap();
        assert_eq!(sync(Mode::Write), 2, "FULL after a claim");
    }

    /// With every due session young and none aged, the aged tier looks at no row: its range
    /// ends at the earlier of the pass's start and the ageing line (it walked every due row when
    /// bounded by the pass's start and filtered by the other).
    #[test]
    fn the_aged_tier_reads_nothing_when_nothing_has_aged() {
        let (_d, l) = temp();
        l.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO sessions (provider, session_id) SELECT 'm', 'young' || i FROM n;",
        )
        .unwrap();
        let now = clock::now();
        let by = clock::format(clock::add(now, Duration::from_secs(1)));
        let aged = clock::format(clock::sub(now, Duration::from_secs(600)));
        let steps = l.lite(|conn| {
            let mut stmt = conn.prepare(CLAIM_DUE.selects[0]).unwrap();
            let params = rusqlite::params![0, 0, by, 500, "m", aged, aged, "[]"];
            let rows = stmt
                .query_map(params, |r| r.get::<_, i64>(0))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
            stmt.get_status(rusqlite::StatementStatus::VmStep)
        });
        assert!(
            steps < 100,
            "the aged tier ran {steps} VM steps over 2,000 young rows"
        );
    }

    #[test]
    fn each_due_tier_is_a_range_of_the_partial_index() {
        let (_d, l) = seeded();
        let now = clock::format(clock::now());
        assert_eq!(CLAIM_DUE.selects.len(), 3);
        for tier in CLAIM_DUE.selects {
            let plan = plan_of(
                &l,
                tier,
                params![0, 0, now, 500, None::<String>, now, now, "[]"],
            );
            // A range of the due index, in its order: nothing sorted, no table scan.
            assert!(plan.contains("INDEX sessions_due"), "plan was: {plan}");
            assert!(!plan.contains("SCAN sessions"), "plan was: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "plan was: {plan}");
        }
    }

    fn plan_of(l: &Ledger, sql: &str, params: impl rusqlite::Params) -> String {
        l.lite(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            plan.join("\n")
        })
    }

    #[test]
    fn once_all_walks_the_rowid_in_order() {
        let (_d, l) = seeded();
        let now = clock::format(clock::now());
        let plan = plan_of(&l, CLAIM_ALL.selects[0], params!["o", now, 0, 500, now]);
        assert!(
            plan.contains("INTEGER PRIMARY KEY (rowid>?)"),
            "plan was: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "plan was: {plan}");
    }

    /// Each kind of claim leases exactly the rows it returns, and returns them as they now are
    /// in the ledger (leased, their check moved to the lease's end).
    #[test]
    fn a_claim_returns_the_rows_it_leased_as_they_now_are() {
        let (_d, l) = temp();
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id) \
             VALUES ('m', 'p1'), ('m', 'p2'), ('m', 'p3'), ('m', 'p4'); \
             INSERT INTO sessions (provider, session_id) VALUES ('m', 'e1'); \
             UPDATE sessions SET status = 'EXPIRED', late_check_at = '2000-01-01T00:00:00.000Z' \
             WHERE session_id = 'e1'; \
             INSERT INTO sessions (provider, session_id, next_check_at) \
             VALUES ('m', 'later', '2999-01-01T00:00:00.000Z');",
        )
        .unwrap();
        let now = clock::now();
        let until = clock::add(now, Duration::from_secs(60));
        let claim = |limit, mode| {
            let got = l.claim("me", now, until, limit, mode).unwrap().sessions;
            for s in &got {
                let stored = l.get("m", &s.session_id).unwrap().unwrap();
                assert_eq!(format!("{s:?}"), format!("{stored:?}"));
                assert_eq!(s.lease_owner.as_deref(), Some("me"));
                assert_eq!(s.lease_until.map(clock::format), Some(clock::format(until)));
            }
            got.into_iter().map(|s| s.session_id).collect::<Vec<_>>()
        };
        assert_eq!(
            claim(3, ClaimMode::Due(Due::by(now, TEN_MINUTES, TEN_MINUTES))),
            ["p1", "p2", "p3"]
        );
        assert_eq!(claim(10, ClaimMode::LateBy(now)), ["e1"]);
        // Every PENDING session not leased: p1–p3 are.
        assert_eq!(claim(10, ClaimMode::AllAfter(0)), ["p4", "later"]);
        assert_eq!(claim(10, ClaimMode::AllAfter(0)), Vec::<String>::new());
        assert_eq!(
            claim(10, ClaimMode::Due(Due::by(now, TEN_MINUTES, TEN_MINUTES))),
            Vec::<String>::new()
        );
        assert_eq!(claim(10, ClaimMode::LateBy(now)), Vec::<String>::new());
    }

    #[test]
    fn leasing_the_rows_read_looks_each_up_by_rowid() {
        let (_d, l) = seeded();
        for lease in [CLAIM_DUE.lease, CLAIM_LATE.lease] {
            let plan = plan_of(&l, lease, params!["o", "2030", "[1,2,3]"]);
            assert!(
                plan.contains("INTEGER PRIMARY KEY (rowid=?)"),
                "plan was: {plan}"
            );
            assert!(!plan.contains("SCAN sessions"), "plan was: {plan}");
        }
    }

    #[test]
    fn a_plain_insert_is_due_at_once() {
        let (_d, l) = temp();
        l.execute_batch(
            "INSERT INTO sessions (provider, session_id, reference, amount, currency) \
             VALUES ('mopay', 'MOP_abc123_ORDER12345', 'ORDER12345', '100.00', 'LSL')",
        )
        .unwrap();
        let now = clock::now();
        let got = l
            .claim(
                "me",
                now,
                clock::add(now, Duration::from_secs(60)),
                10,
                ClaimMode::Due(Due::by(now, TEN_MINUTES, TEN_MINUTES)),
            )
            .unwrap()
            .sessions;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, Status::Pending);
        assert_eq!(
            got[0].amount.map(|a| a.to_string()).as_deref(),
            Some("100.00")
        );
        // Claimed: not due again until the lease ends.
        let again = l
            .claim(
                "other",
                now,
                clock::add(now, Duration::from_secs(60)),
                10,
                ClaimMode::Due(Due::by(now, TEN_MINUTES, TEN_MINUTES)),
            )
            .unwrap()
            .sessions;
        assert!(again.is_empty());
    }

    #[test]
    fn reopening_is_idempotent_and_import_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let l = Ledger::open(&path).unwrap();
        let s = |id: &str| NewSession {
            provider: "m".into(),
            session_id: id.into(),
            ..Default::default()
        };
        let lines = |rows: Vec<Result<NewSession, String>>| (2..).zip(rows).collect::<Vec<_>>();
        let out = l
            .import(lines(vec![Ok(s("a")), Err("bad".into()), Ok(s("b"))]), 10)
            .unwrap();
        assert_eq!(out.errors, vec!["line 3: bad".to_string()]);
        assert!(l.find("a").unwrap().is_empty());
        let out = l.import(lines(vec![Ok(s("a")), Ok(s("b"))]), 10).unwrap();
        assert_eq!((out.added, out.already_present), (2, 0));
        drop(l);
        let l = Ledger::open(&path).unwrap();
        let out = l.import(lines(vec![Ok(s("a")), Ok(s("c"))]), 10).unwrap();
        assert_eq!((out.added, out.already_present), (1, 1));
        // The same id with another amount — in the ledger, or twice in one file — is refused,
        // naming the line and both values; nothing is imported.
        let priced = |id: &str, amount: &str| NewSession {
            amount: Some(amount.parse().unwrap()),
            ..s(id)
        };
        let out = l
            .import(lines(vec![Ok(s("d")), Ok(priced("a", "5.00"))]), 10)
            .unwrap();
        assert_eq!(out.added, 0);
        assert!(
            out.errors[0].starts_with("line 3: amount:"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0].contains("nothing, not \"5.00\""),
            "{:?}",
            out.errors
        );
        let out = l
            .import(
                lines(vec![
                    Ok(priced("e", "1.00")),
                    Ok(priced("e", "1.0")),
                    Ok(priced("e", "2.00")),
                ]),
                10,
            )
            .unwrap();
        assert_eq!(out.errors.len(), 1, "1.0 is 1.00: {:?}", out.errors);
        assert!(
            out.errors[0].contains("line 4: amount")
                && out.errors[0].contains("\"1.00\", not \"2.00\""),
            "{:?}",
            out.errors
        );
        assert!(l.find("e").unwrap().is_empty());
    }
}
