//! Provider state shared by every process on the ledger: refused credentials, pauses after a
//! 429, the last normal answer and misdirection, and each credential's call budget.

use super::db::{Mode, vals};
use super::*;
use crate::clock::{self, Timestamp};

impl Ledger {
    /// What is known about each provider that has been called.
    pub fn provider_states(&self) -> Result<Vec<ProviderState>, Error> {
        self.tx(Mode::Read, "reading provider state", |tx| {
            tx.query(
                "SELECT provider, auth_refused_at, auth_error, paused_until, last_answer_at, \
                 misdirected_at, misdirected_error, answered_endpoint, sweep_due_at, swept_at, \
                 sweep_error FROM provider_state ORDER BY provider",
                &[],
                |r| {
                    Ok(ProviderState {
                        provider: r.get(0)?,
                        auth_refused_at: super::rows::opt_time("auth_refused_at", r.get(1)?)?,
                        auth_error: r.get(2)?,
                        paused_until: super::rows::opt_time("paused_until", r.get(3)?)?,
                        last_answer_at: super::rows::opt_time("last_answer_at", r.get(4)?)?,
                        misdirected_at: super::rows::opt_time("misdirected_at", r.get(5)?)?,
                        misdirected_error: r.get(6)?,
                        answered_endpoint: r.get(7)?,
                        sweep_due_at: super::rows::opt_time("sweep_due_at", r.get(8)?)?,
                        swept_at: super::rows::opt_time("swept_at", r.get(9)?)?,
                        sweep_error: r.get(10)?,
                    })
                },
            )
        })
    }

    /// Records what a pass learned about a provider (see [`ProviderNote`]).
    pub fn note_provider(
        &self,
        provider: &str,
        now: Timestamp,
        note: &ProviderNote,
    ) -> Result<(), Error> {
        let paused = note.paused_until.map(clock::format);
        self.tx(Mode::Write, "recording provider state", |tx| {
            tx.exec(
                "INSERT INTO provider_state (provider, auth_refused_at, auth_error, paused_until, \
                         last_answer_at, misdirected_at, misdirected_error, answered_endpoint) \
                 VALUES (?1, CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?2 END, ?3, ?4, \
                         CASE WHEN ?6 = 1 THEN ?2 END, \
                         CASE WHEN CAST(?7 AS TEXT) IS NOT NULL THEN ?2 END, ?7, \
                         CASE WHEN ?6 = 1 THEN ?8 END) \
                 ON CONFLICT (provider) DO UPDATE SET \
                   auth_refused_at = CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?2 WHEN ?5 = 1 THEN NULL \
                                     ELSE provider_state.auth_refused_at END, \
                   auth_error = CASE WHEN CAST(?3 AS TEXT) IS NOT NULL THEN ?3 WHEN ?5 = 1 THEN NULL \
                                ELSE provider_state.auth_error END, \
                   paused_until = CASE WHEN CAST(?4 AS TEXT) IS NULL THEN provider_state.paused_until \
                                  WHEN coalesce(provider_state.paused_until, '') > ?4 THEN provider_state.paused_until \
                                  ELSE ?4 END, \
                   last_answer_at = CASE WHEN ?6 = 1 THEN ?2 ELSE provider_state.last_answer_at END, \
                   misdirected_at = CASE WHEN CAST(?7 AS TEXT) IS NOT NULL \
                                         THEN coalesce(provider_state.misdirected_at, ?2) \
                                    WHEN ?6 = 1 THEN NULL ELSE provider_state.misdirected_at END, \
                   misdirected_error = CASE WHEN CAST(?7 AS TEXT) IS NOT NULL THEN ?7 \
                                       WHEN ?6 = 1 THEN NULL ELSE provider_state.misdirected_error END, \
                   answered_endpoint = CASE WHEN ?6 = 1 THEN ?8 ELSE provider_state.answered_endpoint END",
                vals![
                    provider,
                    &clock::format(now),
                    note.refused.as_deref(),
                    paused.as_deref(),
                    i64::from(note.reached || note.answered),
                    i64::from(note.answered),
                    note.misdirected.as_deref(),
                    note.endpoint.as_str()
                ],
            )?;
            Ok(())
        })
    }

    /// Takes `n` consecutive call slots `interval_us` apart on `credential`'s budget, none
    /// before `now_us` (microseconds since the Unix epoch), and returns the first slot's time
    /// and whether the book was further ahead than `ceiling_us` and set back to now first. One
    /// write transaction, so processes taking slots at once get slots that never overlap.
    pub fn take_call_slots(
        &self,
        credential: &str,
        n: u32,
        interval_us: i64,
        now_us: i64,
        ceiling_us: i64,
    ) -> Result<(i64, bool), Error> {
        let span = i64::from(n).saturating_mul(interval_us);
        self.tx(Mode::Write, "taking call slots", |tx| {
            // A book further ahead than the budget can need is set back to now first.
            let clamped = tx.exec(
                "UPDATE call_budget SET next_at = CAST(?2 AS BIGINT) \
                 WHERE credential = ?1 AND next_at > CAST(?3 AS BIGINT)",
                vals![credential, now_us, ceiling_us],
            )? > 0;
            let next: i64 = tx.query_one(
                "INSERT INTO call_budget (credential, next_at) VALUES (?1, CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT)) \
                 ON CONFLICT (credential) DO UPDATE SET next_at = \
                   CASE WHEN call_budget.next_at > CAST(?2 AS BIGINT) THEN call_budget.next_at \
                        ELSE CAST(?2 AS BIGINT) END + CAST(?3 AS BIGINT) \
                 RETURNING next_at",
                vals![credential, now_us, span],
                |r| r.get(0),
            )?;
            Ok((next - span, clamped))
        })
    }

    /// No call on `credential`'s budget starts before `until_us` (a 429's pause, for every
    /// process on the ledger).
    pub fn hold_call_slots(&self, credential: &str, until_us: i64) -> Result<(), Error> {
        self.tx(Mode::Write, "pausing calls", |tx| {
            tx.exec(
                "INSERT INTO call_budget (credential, next_at) VALUES (?1, CAST(?2 AS BIGINT)) \
                 ON CONFLICT (credential) DO UPDATE SET next_at = \
                   CASE WHEN call_budget.next_at > CAST(?2 AS BIGINT) THEN call_budget.next_at \
                        ELSE CAST(?2 AS BIGINT) END",
                vals![credential, until_us],
            )?;
            Ok(())
        })
    }

    /// Claims the next sweep of `provider`'s list when it is due (`sweep_due_at` passed, never
    /// set, or later than `latest` — no sweep is ever due that far ahead, so such a row was
    /// written by hand or by a clock that ran ahead, and is not obeyed): due again at
    /// `hold_until` in case this process stops mid-sweep. Returns `Some(swept_at)` — how far
    /// the list was known before — to the one process that claimed it, `None` to every other.
    pub fn claim_sweep(
        &self,
        provider: &str,
        now: Timestamp,
        hold_until: Timestamp,
        latest: Timestamp,
    ) -> Result<Option<Option<Timestamp>>, Error> {
        let (now, hold, latest) = (
            clock::format(now),
            clock::format(hold_until),
            clock::format(latest),
        );
        self.tx(Mode::Write, "claiming a sweep", |tx| {
            let claimed = tx.query_opt(
                "INSERT INTO provider_state (provider, sweep_due_at, sweep_started_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (provider) DO UPDATE SET sweep_due_at = ?2, sweep_started_at = ?3 \
                 WHERE provider_state.sweep_due_at IS NULL OR provider_state.sweep_due_at <= ?3 \
                    OR provider_state.sweep_due_at > ?4 \
                 RETURNING swept_at",
                vals![provider, &hold, &now, &latest],
                |r| super::rows::opt_time("swept_at", r.get(0)?),
            )?;
            Ok(claimed)
        })
    }

    /// Ends a sweep that began at `started`: next due at `next_due`; `error` says why it stopped
    /// short (the list is then known only as far as before), `None` that it read its pages.
    pub fn finish_sweep(
        &self,
        provider: &str,
        started: Timestamp,
        next_due: Timestamp,
        error: Option<&str>,
    ) -> Result<(), Error> {
        self.tx(Mode::Write, "ending a sweep", |tx| {
            tx.exec(
                "UPDATE provider_state SET sweep_due_at = ?1, sweep_error = CAST(?2 AS TEXT), \
                 swept_at = CASE WHEN CAST(?2 AS TEXT) IS NULL THEN ?3 ELSE swept_at END \
                 WHERE provider = ?4",
                vals![
                    &clock::format(next_due),
                    error,
                    &clock::format(started),
                    provider
                ],
            )?;
            Ok(())
        })
    }

    /// The next sweep of `provider` is due by `at` at the latest (a later due time moves up;
    /// a sweep under way keeps its claim only while its hold is sooner).
    pub fn bring_sweep_forward(&self, provider: &str, at: Timestamp) -> Result<(), Error> {
        self.tx(Mode::Write, "bringing a sweep forward", |tx| {
            tx.exec(
                "UPDATE provider_state SET sweep_due_at = ?1 \
                 WHERE provider = ?2 AND sweep_due_at > ?1",
                vals![&clock::format(at), provider],
            )?;
            Ok(())
        })
    }
}
