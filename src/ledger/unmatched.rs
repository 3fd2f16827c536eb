//! Payments a provider's list shows that no session holds (docs/operations.md "Unmatched
//! payments"): sighted by a sweep, looked up once by their own id after the grace window, then
//! reported (`payment.unmatched`) or matched; matched automatically when a session comes to hold
//! one (`payment.matched`), or dismissed by a person with a reason. Never a session transition.

use super::db::{DbError, Mode, Row, Tx, vals};
use super::event::{self, EventLine, MATCHED, UNMATCHED};
use super::*;
use crate::clock::{self, Timestamp};

/// Unmatched payments with the `session_id` of the session that holds each, if any, as
/// [`unmatched_from_row`] reads them; each query adds its `WHERE`.
macro_rules! select {
    () => {
        "SELECT u.id, u.provider, u.payment_id, u.other_id, u.amount, u.currency, \
         u.provider_status, u.receipt, u.provider_created_at, u.first_seen_at, u.last_seen_at, \
         u.reported_at, s.session_id, u.matched_at, u.dismissed_at, u.dismissed_by, \
         u.dismiss_reason \
         FROM unmatched_payments u LEFT JOIN sessions s ON s.id = u.matched_session "
    };
}

fn unmatched_from_row(r: &Row<'_>) -> Result<Unmatched, DbError> {
    Ok(Unmatched {
        id: r.get(0)?,
        provider: r.get(1)?,
        payment_id: r.get(2)?,
        other_id: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        provider_status: r.get(6)?,
        receipt: r.get(7)?,
        provider_created_at: r.get(8)?,
        first_seen_at: r.get(9)?,
        last_seen_at: r.get(10)?,
        reported_at: r.get(11)?,
        matched_session: r.get(12)?,
        matched_at: r.get(13)?,
        dismissed_at: r.get(14)?,
        dismissed_by: r.get(15)?,
        dismiss_reason: r.get(16)?,
    })
}

/// Which unmatched payments to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedFilter {
    /// Reported and neither matched nor dismissed: what needs a person.
    Open,
    /// Every row, the grace window's, matched and dismissed ones too.
    All,
}

/// What settling a sighted payment after its grace window did.
#[derive(Debug)]
pub enum Settled {
    /// A session holds it (by either id): matched, never reported.
    Matched { session_id: String },
    /// No session holds it: reported, with its event.
    Reported(Box<Written>),
    /// Already settled, matched or dismissed meanwhile (another process).
    Gone,
}

/// Why a dismissal was refused.
#[derive(Debug, thiserror::Error)]
pub enum DismissError {
    #[error("no unmatched payment with id {0}")]
    NotFound(i64),
    #[error("unmatched payment {0} is already {1}")]
    NotOpen(i64, &'static str),
    #[error(transparent)]
    Ledger(#[from] Error),
    /// A match a person asked for that the rules refuse (the session is absent, closed, or
    /// holds another payment).
    #[error("{0}")]
    Refused(String),
}

const HOLDER: &str = "SELECT id, session_id FROM sessions WHERE provider = ?1 AND session_id = ?2 \
     UNION ALL SELECT id, session_id FROM sessions WHERE provider = ?1 AND provider_ref = ?2";

/// The session that holds a payment by either of its ids, if one does.
fn holder(tx: &mut Tx<'_>, u: &Unmatched) -> Result<Option<(i64, String)>, DbError> {
    for id in std::iter::once(&u.payment_id).chain(u.other_id.as_ref()) {
        if let Some(found) = tx.query_opt(HOLDER, vals![&u.provider, id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn by_id(tx: &mut Tx<'_>, id: i64) -> Result<Option<Unmatched>, DbError> {
    tx.query_opt(
        concat!(select!(), "WHERE u.id = ?1"),
        vals![id],
        unmatched_from_row,
    )
}

/// Writes a payment event and returns it.
fn write_event(
    tx: &mut Tx<'_>,
    kind: &'static str,
    u: &Unmatched,
    session: Option<(i64, &str)>,
    now: &str,
    why: &str,
) -> Result<Written, DbError> {
    let id = event::new_id();
    let session_id = session.map(|(_, s)| s);
    let payload = event::payment_payload(&id, kind, now, u, session_id);
    tx.exec(
        "INSERT INTO events (id, type, session, payment, payload, created_at, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        vals![
            &id,
            kind,
            session.map(|(rowid, _)| rowid),
            u.id,
            &payload,
            now
        ],
    )?;
    let line: EventLine = event::payment_line(u, session_id, why);
    Ok(Written {
        id,
        kind,
        payload,
        line,
    })
}

/// Matches `u` to the session `(rowid, session_id)` and writes `payment.matched` if it had been
/// reported; `None` when another process settled it first.
fn match_one(
    tx: &mut Tx<'_>,
    u: &Unmatched,
    (rowid, session_id): (i64, String),
    now: &str,
) -> Result<Option<Written>, DbError> {
    let n = tx.exec(
        "UPDATE unmatched_payments SET matched_session = ?1, matched_at = ?2 \
         WHERE id = ?3 AND matched_at IS NULL AND dismissed_at IS NULL",
        vals![rowid, now, u.id],
    )?;
    if n == 0 || u.reported_at.is_none() {
        return Ok(None);
    }
    tracing::info!(provider = %u.provider, payment_id = %u.payment_id, session_id = %session_id,
        "an unmatched payment is now held by a session");
    let why = format!("session {session_id} now holds payment {}", u.payment_id);
    write_event(tx, MATCHED, u, Some((rowid, &session_id)), now, &why).map(Some)
}

impl Ledger {
    /// Records listed payments in a paid state that no session holds: new ones from now, known
    /// ones seen again (their status and last sighting). Matched and dismissed ones stay as
    /// they are.
    pub fn sight_unmatched(
        &self,
        provider: &str,
        sightings: &[Sighting],
        now: Timestamp,
    ) -> Result<(), Error> {
        if sightings.is_empty() {
            return Ok(());
        }
        let now = clock::format(now);
        self.tx(Mode::Write, "recording unmatched payments", |tx| {
            for s in sightings {
                let amount = s.amount.map(|a| a.to_string());
                let created = s.provider_created_at.map(clock::format);
                tx.exec(
                    "INSERT INTO unmatched_payments (provider, payment_id, amount, currency, \
                       provider_status, receipt, provider_created_at, first_seen_at, last_seen_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
                     ON CONFLICT (provider, payment_id) DO UPDATE SET last_seen_at = ?8, \
                       provider_status = ?5, receipt = coalesce(?6, unmatched_payments.receipt) \
                     WHERE unmatched_payments.matched_at IS NULL \
                       AND unmatched_payments.dismissed_at IS NULL",
                    vals![
                        provider,
                        &s.payment_id,
                        amount.as_deref(),
                        s.currency.as_deref(),
                        &s.provider_status,
                        s.receipt.as_deref(),
                        created.as_deref(),
                        &now
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Sighted payments of `provider` first seen by `seen_by` and not yet reported: due for
    /// their one lookup, oldest first, `limit` at most.
    pub fn unmatched_due(
        &self,
        provider: &str,
        seen_by: Timestamp,
        limit: u32,
    ) -> Result<Vec<Unmatched>, Error> {
        const DUE: &str = concat!(
            select!(),
            "WHERE u.provider = ?1 AND u.reported_at IS NULL \
             AND u.matched_at IS NULL AND u.dismissed_at IS NULL AND u.first_seen_at <= ?2 \
             ORDER BY u.first_seen_at LIMIT ?3"
        );
        self.tx(Mode::Read, "reading unmatched payments due", |tx| {
            tx.query(
                DUE,
                vals![provider, &clock::format(seen_by), limit],
                unmatched_from_row,
            )
        })
    }

    /// Whether some PENDING session of `provider` is named by neither form of the list's ids
    /// (`id_prefix`): its `session_id` is not one and it has no `provider_ref`. Only then might
    /// the ledger hold a listed payment under its other id, and a lookup is worth its call.
    pub fn pending_out_of_reach(&self, provider: &str, id_prefix: &str) -> Result<bool, Error> {
        self.tx(
            Mode::Read,
            "looking for sessions out of a list's reach",
            |tx| {
                let n: i64 = tx.query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM sessions WHERE status = 'PENDING' \
                 AND provider = ?1 AND provider_ref IS NULL \
                 AND substr(session_id, 1, length(?2)) <> ?2 LIMIT 1) AS out_of_reach",
                    vals![provider, id_prefix],
                    |r| r.get(0),
                )?;
                Ok(n > 0)
            },
        )
    }

    /// When the oldest sighted payment of `provider` not yet settled was first seen.
    pub fn oldest_unsettled(&self, provider: &str) -> Result<Option<Timestamp>, Error> {
        self.tx(Mode::Read, "reading unmatched payments", |tx| {
            tx.query_one(
                "SELECT min(first_seen_at) FROM unmatched_payments WHERE provider = ?1 \
                 AND reported_at IS NULL AND matched_at IS NULL AND dismissed_at IS NULL",
                vals![provider],
                |r| super::rows::opt_time("first_seen_at", r.get(0)?),
            )
        })
    }

    /// Settles a sighted payment after its grace window, with its other id when the lookup gave
    /// one: matched when a session holds either id, else reported with `payment.unmatched`.
    pub fn settle_unmatched(
        &self,
        id: i64,
        other_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Settled, Error> {
        let now = clock::format(now);
        self.tx(Mode::Write, "settling an unmatched payment", |tx| {
            tx.exec(
                "UPDATE unmatched_payments SET other_id = coalesce(other_id, CAST(?1 AS TEXT)) \
                 WHERE id = ?2",
                vals![other_id, id],
            )?;
            let Some(u) = by_id(tx, id)? else {
                return Ok(Settled::Gone);
            };
            if u.reported_at.is_some() || u.matched_at.is_some() || u.dismissed_at.is_some() {
                return Ok(Settled::Gone);
            }
            if let Some(held) = holder(tx, &u)? {
                let session_id = held.1.clone();
                match_one(tx, &u, held, &now)?;
                return Ok(Settled::Matched { session_id });
            }
            tx.exec(
                "UPDATE unmatched_payments SET reported_at = ?1 WHERE id = ?2 AND reported_at IS NULL",
                vals![&now, id],
            )?;
            let u = Unmatched {
                reported_at: Some(now.clone()),
                ..u
            };
            tracing::warn!(provider = %u.provider, payment_id = %u.payment_id,
                amount = %u.amount.as_deref().unwrap_or(""), currency = %u.currency.as_deref().unwrap_or(""),
                "a payment the provider lists is held by no session: payment.unmatched");
            let why = "the provider lists this payment as paid and no session holds it";
            let written = write_event(tx, UNMATCHED, &u, None, &now, why)?;
            Ok(Settled::Reported(Box::new(written)))
        })
    }

    /// Matches every unsettled payment a session now holds (by either id): reported ones with
    /// `payment.matched`. Returns the events written.
    pub fn match_unmatched(&self, now: Timestamp) -> Result<Vec<Written>, Error> {
        const OPEN: &str = concat!(
            select!(),
            "WHERE u.matched_at IS NULL AND u.dismissed_at IS NULL"
        );
        let now = clock::format(now);
        let open = self.tx(Mode::Read, "reading unmatched payments", |tx| {
            tx.query(OPEN, &[], unmatched_from_row)
        })?;
        if open.is_empty() {
            return Ok(Vec::new());
        }
        self.tx(Mode::Write, "matching unmatched payments", |tx| {
            let mut written = Vec::new();
            for u in &open {
                if let Some(held) = holder(tx, u)?
                    && let Some(w) = match_one(tx, u, held, &now)?
                {
                    written.push(w);
                }
            }
            Ok(written)
        })
    }

    /// Unmatched payments, newest first.
    pub fn unmatched(&self, filter: UnmatchedFilter, limit: u32) -> Result<Vec<Unmatched>, Error> {
        const LIST: &str = concat!(
            select!(),
            "WHERE ?1 = 1 OR (u.reported_at IS NOT NULL AND u.matched_at IS NULL \
                              AND u.dismissed_at IS NULL) \
             ORDER BY u.id DESC LIMIT ?2"
        );
        let all = i64::from(filter == UnmatchedFilter::All);
        self.tx(Mode::Read, "listing unmatched payments", |tx| {
            tx.query(LIST, vals![all, limit], unmatched_from_row)
        })
    }

    /// How many reported unmatched payments are open (for `stats`, `/healthz` and the metric).
    pub fn open_unmatched(&self) -> Result<i64, Error> {
        self.tx(Mode::Read, "counting unmatched payments", |tx| {
            tx.query_one(
                "SELECT count(*) FROM unmatched_payments WHERE reported_at IS NOT NULL \
                 AND matched_at IS NULL AND dismissed_at IS NULL",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// A person ties an open unmatched payment to the PENDING or REVIEW session of its
    /// provider it belongs to (an order the application wrote under another id): the payment's
    /// id becomes the session's `provider_ref` (the provider's second id, as if the application
    /// had written it), the payment is matched (`payment.matched` when it had been reported),
    /// a PENDING session is due at once, and the audit log names `by` and `reason`. What the
    /// payment means for the session is still the provider's word: its answer is decided as
    /// any other, and compared with the id. Refused for a session that holds another payment's
    /// id or is closed.
    pub fn match_unmatched_by_hand(
        &self,
        id: i64,
        session_id: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(Unmatched, Option<Written>), DismissError> {
        let now = clock::format(now);
        let done = self.tx(Mode::Write, "matching an unmatched payment by hand", |tx| {
            let Some(u) = by_id(tx, id)? else {
                return Ok(Err(DismissError::NotFound(id)));
            };
            if u.matched_at.is_some() {
                return Ok(Err(DismissError::NotOpen(id, "matched")));
            }
            if u.dismissed_at.is_some() {
                return Ok(Err(DismissError::NotOpen(id, "dismissed")));
            }
            let session: Option<(i64, String, Option<String>)> = tx.query_opt(
                "SELECT id, status, provider_ref FROM sessions WHERE provider = ?1 AND session_id = ?2",
                vals![&u.provider, session_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let Some((rowid, status, held)) = session else {
                return Ok(Err(DismissError::Refused(format!(
                    "no {} session {session_id:?} in the ledger",
                    u.provider
                ))));
            };
            if status != "PENDING" && status != "REVIEW" {
                return Ok(Err(DismissError::Refused(format!(
                    "session {session_id} is {status}: only a PENDING or REVIEW session takes a payment"
                ))));
            }
            let ids = std::iter::once(&u.payment_id).chain(u.other_id.as_ref());
            match held {
                Some(h) if !ids.clone().any(|i| *i == h) => {
                    return Ok(Err(DismissError::Refused(format!(
                        "session {session_id} holds another payment ({h})"
                    ))));
                }
                Some(_) => {}
                None => {
                    tx.exec(
                        "UPDATE sessions SET provider_ref = ?1, \
                         next_check_at = CASE WHEN status = 'PENDING' THEN ?2 ELSE next_check_at END \
                         WHERE id = ?3",
                        vals![&u.payment_id, &now, rowid],
                    )?;
                }
            }
            let written = match_one(tx, &u, (rowid, session_id.to_string()), &now)?;
            let audit = Audit {
                actor: by,
                action: "match",
                target: Some(format!("unmatched {} ({}/{})", u.id, u.provider, u.payment_id)),
                detail: Some(format!("to {session_id}: {reason}")),
            };
            super::record::audit_in(tx, &now, &audit)?;
            let u = by_id(tx, id)?.unwrap_or(u);
            Ok(Ok((u, written)))
        })?;
        if let Ok((u, _)) = &done {
            tracing::info!(provider = %u.provider, payment_id = %u.payment_id, session_id, by, reason,
                "an unmatched payment was matched by hand");
        }
        done
    }

    /// A person closes an open unmatched payment: `by` and `reason` are recorded with the time.
    pub fn dismiss_unmatched(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Unmatched, DismissError> {
        let now = clock::format(now);
        let outcome = self.tx(Mode::Write, "dismissing an unmatched payment", |tx| {
            let n = tx.exec(
                "UPDATE unmatched_payments SET dismissed_at = ?1, dismissed_by = ?2, \
                 dismiss_reason = ?3 WHERE id = ?4 AND matched_at IS NULL AND dismissed_at IS NULL",
                vals![&now, by, reason, id],
            )?;
            let u = by_id(tx, id)?;
            if let (1, Some(u)) = (n, &u) {
                let audit = Audit {
                    actor: by,
                    action: "dismiss",
                    target: Some(format!(
                        "unmatched {} ({}/{})",
                        u.id, u.provider, u.payment_id
                    )),
                    detail: Some(reason.to_string()),
                };
                super::record::audit_in(tx, &now, &audit)?;
            }
            Ok((n, u))
        })?;
        match outcome {
            (_, None) => Err(DismissError::NotFound(id)),
            (1, Some(u)) => {
                tracing::info!(provider = %u.provider, payment_id = %u.payment_id, by, reason,
                    "an unmatched payment was dismissed");
                Ok(u)
            }
            (_, Some(u)) if u.matched_at.is_some() => Err(DismissError::NotOpen(id, "matched")),
            (_, Some(_)) => Err(DismissError::NotOpen(id, "dismissed")),
        }
    }
}
