//! The pass: claim due sessions with a lease ([`Claimer`]), check them with the provider with at
//! most `concurrency` calls in flight, [`decide`] what each answer means, and record the
//! outcomes ([`record`], the one path a pass and [`verify`] share).
//!
//! `decide` (in `decide.rs`) is pure: a ledger row and a provider answer in, a [`Record`] out.
//! It is the only place that maps provider answers onto ledger states.

mod decide;
mod sweep;
pub mod timing;
mod verify;

pub use decide::{Refused, contradiction, decide, decide_late, manual};
pub use sweep::{PutOff, SweepPolicy, SweepReport};
pub use verify::{VERIFY_WAIT, Verified, take_answer, verify};

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Timestamp};
use crate::config::Config;
use crate::events;
use crate::ledger::{
    self, CheckNote, ClaimMode, Ledger, Record, Session, Source, Status, Via, Written,
};
use crate::pipeline;
use crate::provider::{self, Answer, MISDIRECTED_AFTER, Mapped, Providers};

/// The ledger as the providers' shared call book: every process on the ledger takes its call
/// slots from the same `call_budget` rows (docs/operations.md "One budget per credential").
struct LedgerBook(Ledger);

impl provider::budget::CallBook for LedgerBook {
    fn take(
        &self,
        credential: &str,
        n: u32,
        interval_us: i64,
        now_us: i64,
        ceiling_us: i64,
    ) -> futures_util::future::BoxFuture<'_, Result<(i64, bool), String>> {
        let credential = credential.to_string();
        Box::pin(async move {
            self.0
                .call(move |l| l.take_call_slots(&credential, n, interval_us, now_us, ceiling_us))
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn hold(
        &self,
        credential: &str,
        until_us: i64,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        let credential = credential.to_string();
        Box::pin(async move {
            self.0
                .call(move |l| l.hold_call_slots(&credential, until_us))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Makes every provider take its call slots from `ledger`, shared with every other process on
/// it: N daemons, `verify` and the API together stay within each credential's `rate_limit`.
pub fn share_budgets(providers: &Providers, ledger: &Ledger) {
    let book: Arc<dyn provider::budget::CallBook> = Arc::new(LedgerBook(ledger.clone()));
    for p in providers.values() {
        if let Some(b) = &p.budget {
            b.attach(book.clone());
        }
    }
}

/// What one pass does.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// This process's lease owner id.
    pub owner: String,
    /// `--all`: every PENDING session, ignoring its schedule.
    pub all: bool,
    /// Recorded on transitions: `poll` for scheduled passes, `backfill` for `--all`.
    pub source: Source,
    /// Woken after a commit that wrote events, so the outbox sends them at once.
    pub wake_outbox: Option<Arc<Notify>>,
    /// Advanced by each recorded outcome (`once --all` on a terminal).
    pub progress: Option<indicatif::ProgressBar>,
    /// Claim round after round until nothing due at the pass's start is left (`once`); else
    /// one round per provider, each at most what its call budget serves in [`ROUND`] (the
    /// daemon starts its next pass at once while anything is due, so each pass claims in
    /// [`ledger::DueOrder`] as things stand then).
    pub drain: bool,
    /// Whose checks these are, for the call budget: hints yield to regular checks.
    pub caller: provider::budget::Caller,
}

/// What one round of a daemon's pass claims of a provider: the calls its budget allows in
/// this long.
pub const ROUND: Duration = Duration::from_millis(500);

/// What a pass did, for the summary line and the demo.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub claimed: u64,
    /// Checks that reached the provider or failed transiently (charged checks).
    pub checked: u64,
    pub transitions: BTreeMap<Status, u64>,
    pub still_pending: u64,
    pub released: u64,
    /// Providers whose credentials were refused during the pass.
    pub refused: Vec<String>,
    /// Providers flagged at the pass's end for answering "not found" to every session.
    pub misdirected: Vec<String>,
    /// Late checks of EXPIRED sessions made.
    pub late_checks: u64,
    /// `session.anomaly` events written.
    pub anomalies: u64,
    /// Rows set aside because payrecon cannot read them.
    pub unreadable: u64,
    /// Pages of providers' lists read by sweeps.
    pub list_pages: u64,
    /// Sessions answered for by those pages (counted in `transitions` and `still_pending` too).
    pub from_lists: u64,
    /// Payments no session holds, reported.
    pub unmatched: u64,
    pub ledger_errors: u64,
    pub elapsed: Duration,
}

impl PassReport {
    fn count(&mut self, records: &[Record]) {
        for rec in records {
            match rec {
                Record::Transition { to, charged, .. } => {
                    *self.transitions.entry(*to).or_default() += 1;
                    self.checked += u64::from(*charged);
                }
                Record::Reschedule { charged, .. } => {
                    self.still_pending += 1;
                    self.checked += u64::from(*charged);
                }
                Record::Release { .. } => self.released += 1,
                Record::LateCheck { .. } => self.late_checks += 1,
            }
        }
    }

    pub fn resolved(&self) -> u64 {
        self.transitions.values().sum()
    }

    /// One line: what was checked and what it became.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mut parts: Vec<String> = self
            .transitions
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str().to_lowercase()))
            .collect();
        parts.push(format!("{} still pending", self.still_pending));
        if self.released > 0 {
            parts.push(format!("{} released unchecked", self.released));
        }
        if self.unreadable > 0 {
            parts.push(format!("{} unreadable rows set aside", self.unreadable));
        }
        if self.list_pages > 0 {
            parts.push(format!(
                "{} list pages read, answering for {} sessions",
                self.list_pages, self.from_lists
            ));
        }
        if self.unmatched > 0 {
            parts.push(format!(
                "{} payments no session holds reported",
                self.unmatched
            ));
        }
        if self.late_checks > 0 {
            parts.push(format!(
                "{} late checks ({} anomalies)",
                self.late_checks, self.anomalies
            ));
        }
        format!(
            "checked {} sessions in {:.2}s ({:.0}/s): {}",
            self.claimed,
            secs,
            if secs > 0.0 {
                self.claimed as f64 / secs
            } else {
                0.0
            },
            parts.join(", ")
        )
    }
}

/// What a pass learns about providers as a whole, reported to the ledger at its end.
#[derive(Default)]
struct ProviderNotes {
    /// Providers that refused the credentials, with the error.
    refused: BTreeMap<String, String>,
    /// Providers that answered at least once (a 404 included).
    reached: HashSet<String>,
    /// Providers that answered some session normally.
    answered: HashSet<String>,
}

/// Runs one pass to completion: claims batch after batch of sessions due at the pass's start
/// (so sessions rescheduled during the pass wait for the next one), then the late checks of
/// EXPIRED sessions that are due, until none are left or `shutdown` is cancelled. On shutdown,
/// claimed sessions not yet checked are released.
pub async fn run_pass(
    ledger: &Ledger,
    providers: &Providers,
    cfg: &Config,
    opts: &PassOptions,
    shutdown: &CancellationToken,
) -> Result<PassReport, ledger::Error> {
    let started = Instant::now();
    let pass_start = clock::now();
    seed_providers(ledger, providers, pass_start).await?;
    timing::refresh(ledger, providers, cfg).await;
    let report = Mutex::new(PassReport::default());
    if !opts.all {
        sweep_lists(ledger, providers, cfg, opts, shutdown, &report).await;
    }
    let notes = Mutex::new(ProviderNotes::default());
    let claimer = Claimer::new(ledger, providers, cfg, opts, pass_start);
    let claim = || claimer.next(&report, &notes);
    let work = |s: Session| async {
        // A session added without any signal is first asked about when an answer is
        // plausible (timing, `first_check`).
        if !opts.all
            && s.status == Status::Pending
            && let Some(at) = providers.get(&s.provider).and_then(|p| {
                timing::first_check_at(p, cfg.backoff_for(&s.provider), &s, clock::now())
            })
        {
            let wait = Record::Reschedule {
                rowid: s.rowid,
                next_check_at: at,
                last_error: None,
                answered: false,
                not_found: None,
                charged: false,
                facts: None,
            };
            return (wait, None);
        }
        // A session a sweep answers for is not asked about on its own (SweepPolicy, rule 3).
        if !opts.all
            && s.status == Status::Pending
            && let Some(off) = providers
                .get(&s.provider)
                .and_then(|p| SweepPolicy::put_off(p, &s, clock::now()))
        {
            if let Some(at) = off.sooner {
                let name = s.provider.clone();
                if let Err(e) = ledger.call(move |l| l.bring_sweep_forward(&name, at)).await {
                    tracing::warn!(provider = %s.provider, error = %e, "could not bring the next sweep forward");
                }
            }
            let put_off = Record::Reschedule {
                rowid: s.rowid,
                next_check_at: off.until,
                last_error: None,
                answered: false,
                not_found: None,
                charged: false,
                facts: None,
            };
            return (put_off, None);
        }
        check_one(s, providers, cfg, opts, shutdown, &notes).await
    };
    let record = |done: Vec<(Record, Option<CheckNote>)>| async {
        let (records, checks): (Vec<Record>, Vec<Option<CheckNote>>) = done.into_iter().unzip();
        let checks: Vec<CheckNote> = checks.into_iter().flatten().collect();
        report_mut(&report).count(&records);
        if let Some(bar) = &opts.progress {
            bar.inc(records.len() as u64);
        }
        let n = records.len() as u64;
        match record(ledger, cfg, opts, records, checks).await {
            Ok(written) => {
                report_mut(&report).anomalies += written
                    .iter()
                    .filter(|e| e.kind == crate::ledger::ANOMALY)
                    .count() as u64;
            }
            Err(e) => {
                // The leases run out and the sessions are checked again: nothing is lost.
                tracing::error!(error = %e, sessions = n, "could not record outcomes; they will be checked again");
                report_mut(&report).ledger_errors += n;
            }
        }
    };
    let claimed = pipeline::run(
        cfg.schedule.batch_size as usize,
        cfg.schedule.concurrency,
        shutdown,
        claim,
        work,
        record,
    )
    .await;
    let notes = notes.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut r = report_mut(&report).clone();
    r.refused = notes.refused.keys().cloned().collect();
    r.elapsed = started.elapsed();
    crate::metrics::pass(r.elapsed);
    note_providers(ledger, providers, &notes, &mut r).await?;
    claimed.map(|()| r)
}

/// Sweeps the list of each provider that has one, when its sweep is due and this process
/// claims it (SweepPolicy): before the per-session checks, in the same budget. A sweep that
/// fails is logged and the pass goes on; its sessions are checked one by one meanwhile.
async fn sweep_lists(
    ledger: &Ledger,
    providers: &Providers,
    cfg: &Config,
    opts: &PassOptions,
    shutdown: &CancellationToken,
    report: &Mutex<PassReport>,
) {
    for pc in &cfg.providers {
        let Some(p) = providers.get(&pc.name).filter(|p| p.list.is_some()) else {
            continue;
        };
        match sweep::sweep(ledger, p, cfg, opts, shutdown).await {
            Ok(Some(r)) => {
                let mut rep = report_mut(report);
                rep.list_pages += u64::from(r.pages);
                rep.unmatched += r.reported;
                for (status, n) in &r.recorded.transitions {
                    *rep.transitions.entry(*status).or_default() += n;
                }
                rep.still_pending += r.recorded.still_pending;
                rep.released += r.recorded.released;
                rep.from_lists += r.recorded.resolved() + r.recorded.still_pending;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(provider = %pc.name, error = %e, "could not sweep the provider's list; its sessions are checked one by one meanwhile");
            }
        }
    }
}

/// What every process on the ledger learned of each provider before this pass: a pause a 429
/// set still holds; whether a provider's 404s are believed starts from what all have seen.
async fn seed_providers(
    ledger: &Ledger,
    providers: &Providers,
    pass_start: Timestamp,
) -> Result<(), ledger::Error> {
    for state in ledger.call(|l| l.provider_states()).await? {
        let Some(p) = providers.get(&state.provider) else {
            continue;
        };
        if let Some(until) = state.paused_until
            && let Ok(rest) = (until - pass_start).to_std()
        {
            p.pause_for(rest);
        }
        *lock(&p.sweeps) = provider::SweepView {
            next_due: state.sweep_due_at,
            swept_at: state.swept_at,
            error: state.sweep_error.clone(),
        };
        if state.misdirected_at.is_none()
            && state.last_answer_at.is_some()
            && state.answered_endpoint.as_deref() == Some(p.endpoint().as_str())
        {
            lock(&p.not_found_watch).seed_confirmed();
        }
    }
    Ok(())
}

/// What the pass learned about each provider, for `stats`, `/healthz` and other processes;
/// the providers found misdirected are named in the report.
async fn note_providers(
    ledger: &Ledger,
    providers: &Providers,
    notes: &ProviderNotes,
    r: &mut PassReport,
) -> Result<(), ledger::Error> {
    for (name, p) in providers {
        let flagged = lock(&p.not_found_watch).flagged();
        if flagged {
            r.misdirected.push(name.clone());
        }
        let note = ledger::ProviderNote {
            refused: notes.refused.get(name).cloned(),
            paused_until: p.paused_remaining().map(|d| clock::add(clock::now(), d)),
            reached: notes.reached.contains(name),
            answered: notes.answered.contains(name) && !flagged,
            misdirected: flagged.then(|| misdirected_message(name)),
            endpoint: p.endpoint(),
        };
        if note.refused.is_some()
            || note.paused_until.is_some()
            || note.reached
            || note.misdirected.is_some()
        {
            let name = name.clone();
            ledger
                .call(move |l| l.note_provider(&name, clock::now(), &note))
                .await?;
        }
    }
    Ok(())
}

/// Records outcomes in one transaction, with their checks in the history when
/// `[ledger] history` keeps one, logs the events it wrote and wakes the outbox for them: the
/// one path a pass, a sweep, [`verify`] and a callback share.
async fn record(
    ledger: &Ledger,
    cfg: &Config,
    opts: &PassOptions,
    records: Vec<Record>,
    mut checks: Vec<CheckNote>,
) -> Result<Vec<Written>, ledger::Error> {
    if cfg.history.is_none() {
        checks.clear();
    }
    let owner = opts.owner.clone();
    let written = ledger
        .call(move |l| l.record(&owner, clock::now(), &records, &checks, contradiction))
        .await?;
    announce(cfg, opts, &written);
    Ok(written)
}

/// Logs events the ledger committed and wakes the outbox for them.
fn announce(cfg: &Config, opts: &PassOptions, written: &[Written]) {
    if cfg.events_log {
        written.iter().for_each(events::log);
    }
    if let Some(wake) = &opts.wake_outbox
        && !written.is_empty()
    {
        wake.notify_one();
    }
}

/// What a pass claims next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The due sessions of the `i`-th configured provider: at most what its budget serves in a
    /// [`ROUND`], in [`ledger::DueOrder`]. Skipped while its next slot is further than a round
    /// away (its sessions keep their due time) or its credentials were refused in this pass.
    Provider(usize),
    /// The due sessions of providers not configured here: claimed so they are named (and looked
    /// at again much later), not left silently. Once it claims nothing it is not taken again in
    /// the pass: finding none means scanning every due session, and doing that once per cycle
    /// made draining a backlog cost its square.
    Unconfigured,
    /// The end of a cycle over the providers: another cycle when `drain` and the last one
    /// claimed something, else the late checks.
    CycleEnd,
    /// The late checks due (EXPIRED sessions, and REVIEW ones closed on an answer payrecon
    /// could not act on), batch after batch until none is left.
    Late,
    /// `--all`: every PENDING session after this ledger id, batch after batch.
    AllAfter(i64),
}

/// Where a pass stands in its claims.
struct ClaimState {
    turn: Turn,
    /// Whether the cycle under way claimed anything (an unreadable row included).
    claimed_in_cycle: bool,
    /// Whether the `Unconfigured` turn found nothing due in this pass.
    unconfigured_done: bool,
}

/// A pass's claims, one batch per call of [`Claimer::next`]: provider by provider in turns,
/// then the late checks (see [`Turn`]); an empty batch ends the pass.
struct Claimer<'a> {
    ledger: &'a Ledger,
    providers: &'a Providers,
    cfg: &'a Config,
    opts: &'a PassOptions,
    pass_start: Timestamp,
    names: Vec<String>,
    state: Mutex<ClaimState>,
}

impl<'a> Claimer<'a> {
    fn new(
        ledger: &'a Ledger,
        providers: &'a Providers,
        cfg: &'a Config,
        opts: &'a PassOptions,
        pass_start: Timestamp,
    ) -> Self {
        let names: Vec<String> = cfg.providers.iter().map(|p| p.name.clone()).collect();
        let turn = if opts.all {
            Turn::AllAfter(0)
        } else if names.is_empty() {
            Turn::Unconfigured
        } else {
            Turn::Provider(0)
        };
        Self {
            ledger,
            providers,
            cfg,
            opts,
            pass_start,
            names,
            state: Mutex::new(ClaimState {
                turn,
                claimed_in_cycle: false,
                unconfigured_done: false,
            }),
        }
    }

    /// The turn after `turn` in a cycle over the providers.
    fn after(&self, st: &ClaimState, turn: Turn) -> Turn {
        match turn {
            Turn::Provider(i) if i + 1 < self.names.len() => Turn::Provider(i + 1),
            Turn::Provider(_) if st.unconfigured_done => Turn::CycleEnd,
            Turn::Provider(_) => Turn::Unconfigured,
            Turn::Unconfigured => Turn::CycleEnd,
            other => other,
        }
    }

    /// What this turn claims (`None`: nothing this turn), and the turn after it.
    fn plan(&self, st: &mut ClaimState, notes: &Mutex<ProviderNotes>) -> Option<(ClaimMode, u32)> {
        let batch = self.cfg.schedule.batch_size;
        let turn = st.turn;
        st.turn = self.after(st, turn);
        let schedule = &self.cfg.schedule;
        let due = || ledger::Due::by(self.pass_start, schedule.young, schedule.ageing);
        match turn {
            Turn::Late => Some((ClaimMode::LateBy(self.pass_start), batch)),
            Turn::AllAfter(after) => Some((ClaimMode::AllAfter(after), batch)),
            Turn::CycleEnd => {
                st.turn = if self.opts.drain && std::mem::take(&mut st.claimed_in_cycle) {
                    match self.names.first() {
                        Some(_) => Turn::Provider(0),
                        None if st.unconfigured_done => Turn::Late,
                        None => Turn::Unconfigured,
                    }
                } else {
                    Turn::Late
                };
                None
            }
            Turn::Unconfigured => Some((
                ClaimMode::Due(ledger::Due {
                    except: self.names.clone(),
                    ..due()
                }),
                batch,
            )),
            Turn::Provider(i) => {
                let name = &self.names[i];
                let mut batch = batch;
                if let Some(budget) = self.providers.get(name).and_then(|p| p.budget.as_ref()) {
                    if budget.held_slot_in().is_some_and(|w| w > ROUND) {
                        return None;
                    }
                    batch = batch.min(budget.calls_in(ROUND));
                }
                if lock(notes).refused.contains_key(name) {
                    return None;
                }
                let b = self.cfg.backoff_for(name);
                let learned = b.pace == crate::config::Pace::Learned;
                let young = ledger::DueOrder::young(schedule.young, learned, b.max_age);
                Some((
                    ClaimMode::Due(ledger::Due {
                        provider: Some(name.clone()),
                        young,
                        ..due()
                    }),
                    batch,
                ))
            }
        }
    }

    /// The next batch of claimed sessions; empty when the pass has nothing left to claim.
    async fn next(
        &self,
        report: &Mutex<PassReport>,
        notes: &Mutex<ProviderNotes>,
    ) -> Result<Vec<Session>, ledger::Error> {
        loop {
            let (turn, planned) = {
                let mut st = lock(&self.state);
                let turn = st.turn;
                (turn, self.plan(&mut st, notes))
            };
            let Some((mode, batch)) = planned else {
                continue;
            };
            let (owner, lease) = (self.opts.owner.clone(), self.cfg.schedule.lease);
            let claimed = self
                .ledger
                .call(move |l| {
                    let now = clock::now();
                    l.claim(&owner, now, clock::add(now, lease), batch, mode)
                })
                .await?;
            // A row payrecon cannot read is named and set aside; the pass goes on.
            for u in &claimed.unreadable {
                tracing::error!(provider = %u.provider, rowid = u.rowid, error = %u.error,
                    "a sessions row payrecon cannot read was set aside; fix or delete it");
                crate::metrics::unreadable_row();
            }
            report_mut(report).unreadable += claimed.unreadable.len() as u64;
            if let Turn::Provider(i) = turn
                && let Some(p) = self.providers.get(&self.names[i])
            {
                // The budget binds when it, not the batch size, limited the claim and the due
                // sessions filled it (timing: schedules may then grow sparser than the fixed).
                let limited = batch < self.cfg.schedule.batch_size;
                let full = claimed.sessions.len() + claimed.unreadable.len() >= batch as usize;
                if limited && full {
                    *lock(&p.bound_at) = Some(Instant::now());
                }
            }
            let in_cycle = matches!(turn, Turn::Provider(_) | Turn::Unconfigured);
            {
                let mut st = lock(&self.state);
                if let (Turn::AllAfter(after), Some(last)) = (st.turn, claimed.last_rowid()) {
                    st.turn = Turn::AllAfter(after.max(last));
                }
                let nothing = claimed.is_empty();
                if in_cycle && !nothing {
                    st.claimed_in_cycle = true;
                }
                if turn == Turn::Unconfigured && nothing {
                    st.unconfigured_done = true;
                }
            }
            // Only unreadable rows: claim again. Nothing in a provider's turn: the next turn.
            if claimed.sessions.is_empty() && (in_cycle || !claimed.unreadable.is_empty()) {
                continue;
            }
            report_mut(report).claimed += claimed.sessions.len() as u64;
            return Ok(claimed.sessions);
        }
    }
}

fn report_mut(r: &Mutex<PassReport>) -> std::sync::MutexGuard<'_, PassReport> {
    lock(r)
}

/// Locks state that stays usable if a holder panicked (counters, sets, flags).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error of a provider flagged for answering "not found" to every session lately.
fn misdirected_message(provider: &str) -> String {
    format!(
        "provider {provider:?} answered \"not found\" for {MISDIRECTED_AFTER} different sessions and no session \
         normally in between: check providers.{provider}.base_url; its 404s do not count toward \
         not_found_after until it answers a session normally"
    )
}

/// Whether a 404 is believed ([`provider::NotFoundWatch`]); a doubted one becomes
/// [`provider::Error::NotFoundDoubted`], and the 404 that flags the provider logs one error.
/// (Whether the provider is flagged at the pass's end is read from the watch itself.)
fn judge_not_found(
    result: Result<Answer, provider::Error>,
    provider: &provider::Provider,
    s: &Session,
) -> Result<Answer, provider::Error> {
    let name = &provider.name;
    match &result {
        Ok(Answer::Found(_)) => {
            if lock(&provider.not_found_watch).answered() {
                tracing::info!(provider = %name, "provider answers sessions normally again; its 404s count again");
            }
            result
        }
        Ok(Answer::NotFound) => {
            // A session the provider once answered with a status is one it knew.
            let known = s.provider_status.is_some();
            let verdict = lock(&provider.not_found_watch).not_found(&s.session_id, known);
            match verdict {
                provider::NotFoundVerdict::Counted => result,
                provider::NotFoundVerdict::Doubted {
                    flagged,
                    newly_flagged,
                } => {
                    let msg = misdirected_message(name);
                    if newly_flagged {
                        tracing::error!(provider = %name, endpoint = %provider.endpoint(), "{msg}");
                    }
                    let why = if flagged {
                        msg
                    } else {
                        format!(
                            "HTTP 404 not counted yet: provider {name:?} has answered no session \
                             normally since payrecon started, and a wrong providers.{name}.base_url \
                             looks like this"
                        )
                    };
                    Err(provider::Error::NotFoundDoubted { why, flagged })
                }
            }
        }
        Err(_) => result,
    }
}

/// Checks one claimed session (or late check) and decides its outcome.
async fn check_one(
    s: Session,
    providers: &Providers,
    cfg: &Config,
    opts: &PassOptions,
    shutdown: &CancellationToken,
    notes: &Mutex<ProviderNotes>,
) -> (Record, Option<CheckNote>) {
    // Only late claims hand out sessions that left PENDING (EXPIRED, or REVIEW on an answer
    // payrecon could not act on).
    let late = s.status != Status::Pending;
    let Some(provider) = providers.get(&s.provider) else {
        // Not configured here: look again much later rather than every pass.
        let msg = format!("provider {:?} is not configured in [providers]", s.provider);
        tracing::warn!(provider = %s.provider, session_id = %s.session_id, "{msg}");
        let next = clock::add(clock::now(), cfg.backoff.max);
        if late {
            let again = Record::LateCheck {
                rowid: s.rowid,
                next: Some(next),
                last_error: None,
                anomaly: None,
            };
            return (again, None);
        }
        let again = Record::Reschedule {
            rowid: s.rowid,
            next_check_at: next,
            last_error: Some(msg),
            answered: false,
            not_found: None,
            charged: false,
            facts: None,
        };
        return (again, None);
    };
    let refused = || {
        notes
            .lock()
            .map(|n| n.refused.contains_key(&s.provider))
            .unwrap_or(false)
    };
    let release = || {
        let r = Record::Release {
            rowid: s.rowid,
            last_error: None,
        };
        (r, None)
    };
    if refused() || shutdown.is_cancelled() {
        return release();
    }
    // Past max_age only an answer closes a session, and a held long poll we cut is none: ask
    // plainly then (and in late checks).
    let hold = !late && clock::add(s.created_at, cfg.backoff.max_age) > clock::now();
    let (at, began) = (clock::now(), Instant::now());
    let checked = tokio::select! {
        biased;
        () = shutdown.cancelled() => return release(),
        r = provider.check(&s.session_id, hold, opts.caller) => r,
    };
    let took = began.elapsed();
    let result = checked.result;
    crate::metrics::check(&s.provider, outcome_label(&result), took);
    notes_of(&result, &s, notes);
    let result = judge_not_found(result, provider, &s);
    let note = CheckNote {
        http_status: checked.http_status,
        took_ms: Some(took.as_millis() as u64),
        ..check_note(&s, at, Via::Call, opts.source, &result)
    };
    if late {
        return (
            decide_late(&s, &result, clock::now(), &cfg.backoff),
            Some(note),
        );
    }
    let (now, backoff) = (clock::now(), cfg.backoff_for(&s.provider));
    let record = decide(&s, &result, now, backoff, opts.source, fastrand::f64());
    (
        timing::retime(record, provider, backoff, cfg.schedule.learn_share, &s, now),
        Some(note),
    )
}

/// A check's line in the history: what came of it, the provider's word, our words for a
/// failure. The caller adds the HTTP status and the time a call took.
fn check_note(
    s: &Session,
    at: Timestamp,
    via: Via,
    source: Source,
    result: &Result<Answer, provider::Error>,
) -> CheckNote {
    let (provider_status, error) = match result {
        Ok(Answer::Found(f)) => (Some(f.raw_status.clone()), None),
        Ok(Answer::NotFound) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    CheckNote {
        session: s.rowid,
        at,
        via,
        source,
        outcome: outcome_label(result),
        http_status: None,
        provider_status,
        error,
        took_ms: None,
    }
}

/// What one check's result tells of its provider as a whole (credentials refused, reached,
/// answered normally) for the pass's notes, and the log lines an answer payrecon cannot act on
/// deserves.
fn notes_of(result: &Result<Answer, provider::Error>, s: &Session, notes: &Mutex<ProviderNotes>) {
    match result {
        Err(e @ provider::Error::Unauthorized(_)) => {
            let first = notes
                .lock()
                .map(|mut n| {
                    n.refused
                        .insert(s.provider.clone(), e.to_string())
                        .is_none()
                })
                .unwrap_or(false);
            if first {
                tracing::error!(provider = %s.provider, error = %e, "credentials refused; no more calls to this provider in this pass");
            }
        }
        Ok(answer) => {
            let mut n = lock(notes);
            if !n.reached.contains(&s.provider) {
                n.reached.insert(s.provider.clone());
            }
            if matches!(answer, Answer::Found(_)) && !n.answered.contains(&s.provider) {
                n.answered.insert(s.provider.clone());
            }
            drop(n);
            if let Answer::Found(f) = answer {
                if f.mapped == Mapped::Unrecognised {
                    tracing::warn!(provider = %s.provider, session_id = %s.session_id, raw_status = %provider::clip(&f.raw_status),
                        "unrecognised provider status: an answer payrecon cannot act on");
                } else if let Some(w) = &f.warning {
                    tracing::warn!(provider = %s.provider, session_id = %s.session_id, "{w}: not acted on");
                }
            }
        }
        Err(_) => {}
    }
}

/// The `outcome` label of a check, for metrics.
fn outcome_label(result: &Result<Answer, provider::Error>) -> &'static str {
    match result {
        Ok(Answer::Found(f)) => match f.mapped {
            Mapped::Paid => "paid",
            Mapped::Pending => "pending",
            Mapped::Failed => "failed",
            Mapped::Cancelled => "cancelled",
            Mapped::Expired => "expired",
            Mapped::Unrecognised => "unrecognised",
            Mapped::Unsure => "unsure",
        },
        Ok(Answer::NotFound) => "not_found",
        Err(provider::Error::RateLimited { .. }) => "rate_limited",
        Err(provider::Error::Unauthorized(_)) => "refused",
        Err(provider::Error::NotConfigured(_)) => "not_configured",
        Err(provider::Error::NoSlot(_)) => "no_slot",
        Err(_) => "error",
    }
}
