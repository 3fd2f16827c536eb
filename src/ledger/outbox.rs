//! The events outbox: claims of due events with a lease, delivery results, listing and replay.

use super::db::{Mode, vals};
use super::rows::*;
use super::*;
use crate::clock::{self, Timestamp};

pub(super) const CLAIM_EVENTS: [&str; 2] = [
    "UPDATE events SET lease_owner = ?1, lease_until = ?2, next_attempt_at = ?2 \
     WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL AND dead_at IS NULL \
                   AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4) \
     RETURNING seq, id, payload, attempts",
    "UPDATE events SET lease_owner = ?1, lease_until = ?2, next_attempt_at = ?2 \
     WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL AND dead_at IS NULL \
                   AND next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4 \
                   FOR UPDATE SKIP LOCKED) \
     RETURNING seq, id, payload, attempts",
];

impl Ledger {
    /// Claims up to `limit` events due for delivery, leased to `owner` until `lease_until`.
    pub fn claim_events(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, Error> {
        let mut events = self.tx(Mode::Lease, "claiming events", |tx| {
            tx.query(
                self.dialect(&CLAIM_EVENTS),
                vals![
                    owner,
                    &clock::format(lease_until),
                    &clock::format(now),
                    limit
                ],
                |r| {
                    Ok(OutboxEvent {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        payload: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )
        })?;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// Writes delivery results in one transaction, with `attempts` in the history of deliveries.
    /// `Delivered` is written whoever holds the lease (the receiver has the event); the others
    /// only while `owner` still holds it.
    pub fn record_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        results: &[Delivery],
        attempts: &[super::AttemptNote],
    ) -> Result<(), Error> {
        let now_s = clock::format(now);
        self.tx(Mode::Write, "recording deliveries", |tx| {
            super::history::attempts_in(tx, attempts)?;
            for d in results {
                match d {
                    Delivery::Delivered { seq } => tx.exec(
                        "UPDATE events SET delivered_at = ?1, attempts = attempts + 1, last_error = NULL, \
                         lease_owner = NULL, lease_until = NULL WHERE seq = ?2 AND delivered_at IS NULL",
                        vals![&now_s, *seq],
                    )?,
                    Delivery::Retry {
                        seq,
                        next_attempt_at,
                        error,
                    } => tx.exec(
                        "UPDATE events SET next_attempt_at = ?1, attempts = attempts + 1, last_error = ?2, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                        vals![&clock::format(*next_attempt_at), error, *seq, owner],
                    )?,
                    Delivery::Dead { seq, error } => tx.exec(
                        "UPDATE events SET dead_at = ?1, attempts = attempts + 1, last_error = ?2, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?3 AND lease_owner = ?4 AND delivered_at IS NULL",
                        vals![&now_s, error, *seq, owner],
                    )?,
                    Delivery::Release { seq } => tx.exec(
                        "UPDATE events SET next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE seq = ?2 AND lease_owner = ?3 AND delivered_at IS NULL",
                        vals![&now_s, *seq, owner],
                    )?,
                };
            }
            Ok(())
        })
    }

    /// Events with the id (session id, or payment id) of what they are about, newest first;
    /// `Dead` shows only dead ones, `Anomalies` only `session.anomaly` events.
    pub fn list_events(
        &self,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<(String, Event)>, Error> {
        self.tx(Mode::Read, "listing events", |tx| {
            tx.query(
                concat!(
                    "SELECT coalesce(s.session_id, u.payment_id), ",
                    event_cols!(),
                    " FROM events e LEFT JOIN sessions s ON s.id = e.session \
                     LEFT JOIN unmatched_payments u ON u.id = e.payment \
                     WHERE (?1 = 0 OR e.dead_at IS NOT NULL) \
                     AND (?3 = 0 OR e.type = 'session.anomaly') ORDER BY e.seq DESC LIMIT ?2"
                ),
                vals![
                    i64::from(filter == EventFilter::Dead),
                    limit,
                    i64::from(filter == EventFilter::Anomalies)
                ],
                |r| Ok((r.get(0)?, event_from_row(r, 1)?)),
            )
        })
    }

    /// Puts events back in line with a fresh schedule: one by id (dead, delivered or waiting),
    /// or every dead one. Returns how many.
    pub fn replay(&self, id: Option<&str>, actor: &str, now: Timestamp) -> Result<usize, Error> {
        let now_s = clock::format(now);
        let n = self.tx(Mode::Write, "replaying events", |tx| {
            let n = tx.exec(
                "UPDATE events SET dead_at = NULL, delivered_at = NULL, attempts = 0, last_error = NULL, \
                 next_attempt_at = ?1, lease_owner = NULL, lease_until = NULL \
                 WHERE (CAST(?2 AS TEXT) IS NULL AND dead_at IS NOT NULL) OR id = ?2",
                vals![&now_s, id],
            )?;
            if n > 0 {
                let audit = Audit {
                    actor,
                    action: "replay",
                    target: Some(id.map_or_else(|| "every dead event".to_string(), String::from)),
                    detail: Some(format!("{n} event(s) back in line")),
                };
                super::record::audit_in(tx, &now_s, &audit)?;
            }
            Ok(n)
        })?;
        Ok(n as usize)
    }

    /// Appends one entry to the audit log (a login, a logout: what changes nothing else).
    pub fn append_audit(&self, now: Timestamp, entry: &Audit<'_>) -> Result<(), Error> {
        let now_s = clock::format(now);
        self.tx(Mode::Write, "writing the audit log", |tx| {
            super::record::audit_in(tx, &now_s, entry)
        })
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, Error> {
        self.tx(Mode::Read, "reading the audit log", |tx| {
            tx.query(
                "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
                vals![limit],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        detail: r.get(5)?,
                    })
                },
            )
        })
    }
}
