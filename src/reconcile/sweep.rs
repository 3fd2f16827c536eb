//! Sweeps: reading a provider's list of payments, newest first, back over the open sessions it
//! can name, within the same call budget as the per-session checks ([`SweepPolicy`]).
//!
//! A listed payment is tied to a session only by an id the ledger holds (`session_id` or
//! `provider_ref`), never by amount, phone or time. A tied payment is an answer: `decide`d as a
//! status answer is (`list = "decide"`), or its session made due for a status call to confirm
//! (`list = "confirm"`). A listed paid payment no session holds is sighted; after
//! `unmatched_after` it is looked up once by its own id (which gives its other id), then matched
//! to the session that holds either id, or reported as an unmatched payment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{PassOptions, lock};
use crate::clock::{self, Timestamp};
use crate::config::Config;
use crate::ledger::{self, Ledger, Record, Settled, Sighting, Tied, Via};
use crate::provider::{self, Answer, ListUse, Mapped, Provider};

/// How sweeps and per-session checks share one provider's call budget (docs/operations.md
/// "One budget, two ways to ask", beside [`ledger::DueOrder`], which orders the per-session
/// checks):
///
/// 1. A sweep goes first when it is due: its pages take their slots from the budget like any
///    call, so together nothing exceeds the `rate_limit`.
/// 2. Its cadence follows the open set: the next sweep is due after the pages this one read,
///    at the budget's pace, divided by [`SweepPolicy::SHARE`] (so at least the rest is left for
///    per-session checks), never sooner than a 90th of `list_window` (10 s at the default 15
///    minutes); with no open session, every 7.5th of it (2 minutes), for payments the ledger
///    never heard of. (Every span of a sweep is a part of `list_window`, so a benchmark that
///    compresses time compresses them with it.)
/// 3. A session within a sweep's reach (its `session_id` or `provider_ref` has the form of the
///    list's ids, created within `list_window`) is not checked on its own while sweeps read their
///    pages, when the last full sweep either began after the session was written or answered
///    for it: its check is put off to after the next sweep, uncharged. Every other session — out
///    of reach, older than the window, one a full sweep since its INSERT did not list, or any
///    session while sweeps stop short — is checked one status call at a time, in
///    [`ledger::DueOrder`].
pub struct SweepPolicy;

impl SweepPolicy {
    /// The part of the budget's pace sweeps plan to use at most.
    pub const SHARE: f64 = 0.8;
    /// The shortest time between two sweeps, as a part of `list_window`.
    pub const FASTEST: f64 = 1.0 / 90.0;
    /// The time between sweeps while no session of the provider is open, as a part of
    /// `list_window`.
    pub const IDLE: f64 = 1.0 / 7.5;
    /// The most pages one sweep reads: at 100 a page, 2,000 payments.
    pub const MAX_PAGES: u32 = 20;
    /// How much earlier than the open sessions (and the last sweep) a sweep reads, as a part of
    /// `list_window`: the provider's clock and ours may differ, and a payment may be listed a
    /// little after it was created.
    pub const SKEW: f64 = 1.0 / 7.5;
    /// Unmatched payments looked up per sweep at most (each is one status call).
    pub const LOOKUPS: u32 = 4;
    /// How long a claimed sweep is held before another process may take it over (one that
    /// stopped mid-sweep).
    pub const HOLD: Duration = Duration::from_secs(300);
    /// The longest time between two sweeps. A `sweep_due_at` further ahead than this (and
    /// [`SweepPolicy::HOLD`]) was not written by a sweep — a hand edit, a clock that ran
    /// ahead — and is neither waited for nor trusted to put checks off.
    pub const LONGEST: Duration = Duration::from_secs(600);

    /// When the sweep after one that read `pages` pages is due, `open` sessions being open, at
    /// a budget that spaces calls `interval` apart (`None`: no budget), for a `window`.
    pub fn next_after(
        pages: u32,
        open: i64,
        interval: Option<Duration>,
        window: Duration,
    ) -> Duration {
        let paced = interval
            .map(|i| i.mul_f64(f64::from(pages.max(1)) / Self::SHARE))
            .unwrap_or_default();
        let next = paced.max(window.mul_f64(Self::FASTEST));
        let next = if open == 0 {
            next.max(window.mul_f64(Self::IDLE))
        } else {
            next
        };
        next.min(Self::LONGEST)
    }

    /// The latest a sweep can be due now, by [`SweepPolicy::LONGEST`] and
    /// [`SweepPolicy::HOLD`].
    pub fn latest_due(now: Timestamp) -> Timestamp {
        clock::add(now, Self::LONGEST.max(Self::HOLD) + Duration::from_secs(60))
    }

    /// Until when a claimed session's own check is put off, if a sweep will answer for it
    /// (rule 3): after the next sweep, when the last read its pages and the session is within
    /// reach.
    pub fn put_off(p: &Provider, s: &ledger::Session, now: Timestamp) -> Option<PutOff> {
        let reach = p.list.as_ref()?;
        if !reach.reaches(&s.session_id, s.provider_ref.as_deref())
            || s.created_at < clock::sub(now, reach.window)
        {
            return None;
        }
        let mut view = lock(&p.sweeps);
        let swept_at = view.swept_at.filter(|_| view.error.is_none())?;
        let answered_by_it = s.listed_at.is_some_and(|t| t >= swept_at);
        if s.created_at < swept_at && !answered_by_it {
            return None;
        }
        let next = view.next_due.filter(|t| *t <= Self::latest_due(now))?;
        // A session waiting on a sweep that an idle provider put minutes away brings it
        // forward to the pace of a sweep with something open.
        let interval = budget_interval(p);
        let soon = clock::add(now, Self::next_after(1, 1, interval, reach.window));
        let sooner = (next > soon).then(|| {
            view.next_due = Some(soon);
            soon
        });
        Some(PutOff {
            until: clock::add(next.min(soon).max(now), Duration::from_secs(5)),
            sooner,
        })
    }
}

/// The spacing of `p`'s call budget (`None`: `rate_limit = "off"`).
fn budget_interval(p: &Provider) -> Option<Duration> {
    p.budget
        .as_ref()
        .map(|b| Duration::from_micros(b.interval_us.max(0) as u64))
}

/// A claimed session's own check put off because a sweep answers for it ([`SweepPolicy::put_off`]).
#[derive(Debug, Clone, Copy)]
pub struct PutOff {
    /// When it is due again: after the next sweep.
    pub until: Timestamp,
    /// The next sweep brought forward to this time (to be written to the ledger, for every
    /// process), when it was further away.
    pub sooner: Option<Timestamp>,
}

/// What one sweep did, for the log and the pass's report.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    pub pages: u32,
    /// What the listed answers it recorded did, as a pass counts its own.
    pub recorded: super::PassReport,
    pub listed: u64,
    /// Tied payments decided as answers, or made due to be confirmed.
    pub tied: u64,
    /// Listed payments in a paid state no session holds, sighted.
    pub sighted: u64,
    pub reported: u64,
    pub matched: u64,
    /// Why it stopped short.
    pub error: Option<String>,
}

/// Sweeps `p`'s list when it is due and this process claims it; `None` when it is not due, or
/// another process sweeps. Returns the events written.
pub async fn sweep(
    ledger: &Ledger,
    p: &Provider,
    cfg: &Config,
    opts: &PassOptions,
    shutdown: &CancellationToken,
) -> Result<Option<SweepReport>, ledger::Error> {
    let Some(reach) = p.list else {
        return Ok(None);
    };
    let started = clock::now();
    let name = p.name.clone();
    let claimed = {
        let name = name.clone();
        let hold = clock::add(started, SweepPolicy::HOLD);
        let latest = SweepPolicy::latest_due(started);
        ledger
            .call(move |l| l.claim_sweep(&name, started, hold, latest))
            .await?
    };
    let Some(swept_at) = claimed else {
        return Ok(None);
    };
    let (open, oldest) = {
        let name = name.clone();
        ledger.call(move |l| l.open_of(&name)).await?
    };
    // Back to the oldest open session or the last full sweep, whichever is older, within the
    // window.
    let floor = clock::sub(started, reach.window);
    let back_to = oldest.unwrap_or(started).min(swept_at.unwrap_or(floor));
    let horizon = clock::sub(back_to, reach.window.mul_f64(SweepPolicy::SKEW)).max(floor);

    let mut report = SweepReport::default();
    let mut cursor: Option<String> = None;
    loop {
        if shutdown.is_cancelled() {
            report.error = Some("stopped by a signal".into());
            break;
        }
        if report.pages >= SweepPolicy::MAX_PAGES {
            report.error = Some(format!(
                "read {} pages, the most one sweep reads, before reaching {}; older payments in \
                 the window were not read (sessions beyond are checked one by one)",
                report.pages,
                clock::format(horizon)
            ));
            break;
        }
        let limit = p.list_limit.load(Ordering::Relaxed);
        let ask = provider::ListAsk {
            cursor: cursor.as_deref(),
            limit,
            since: horizon,
        };
        let page = match p.list_page(ask).await {
            Ok(page) => page,
            Err(provider::Error::Status(400 | 422)) if limit > reach.page_limits.1 => {
                // The provider's pages disagree on the most a page may hold: ask for less.
                tracing::warn!(provider = %name, limit, smaller = reach.page_limits.1,
                    "the provider refused a list page of this size; asking for smaller pages from now on");
                p.list_limit.store(reach.page_limits.1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                report.error = Some(format!("reading the list: {e}"));
                break;
            }
        };
        report.pages += 1;
        report.listed += page.items.len() as u64;
        // A list filtered by time holds nothing older; one newest first ends where it passes the
        // horizon.
        let reached_horizon = !reach.filters_by_time
            && page
                .items
                .iter()
                .filter_map(|i| i.created_at)
                .any(|t| t < horizon);
        let last = page.items.is_empty() || page.next_cursor.is_none() || reached_horizon;
        if let Err(e) = take_page(ledger, p, cfg, opts, page.items, &mut report).await {
            report.error = Some(format!("recording what the list says: {e}"));
            break;
        }
        if last {
            break;
        }
        cursor = page.next_cursor;
    }

    // Payments no session holds: a failure here is logged; the sweep itself still ends, so
    // the next one comes on time.
    // Matched first: a sighted payment a session now holds needs no lookup.
    let unmatched = async {
        let matched = ledger.call(|l| l.match_unmatched(clock::now())).await?;
        report.matched += matched.len() as u64;
        super::announce(cfg, opts, &matched);
        settle_sighted(ledger, p, cfg, opts, reach.unmatched_after, &mut report).await
    };
    match unmatched.await {
        Ok(()) => {}
        Err(e) => {
            tracing::error!(provider = %p.name, error = %e, "could not settle payments no session holds; trying again at the next sweep");
        }
    }

    let interval = budget_interval(p);
    let now = clock::now();
    let mut next = clock::add(
        now,
        SweepPolicy::next_after(report.pages, open, interval, reach.window),
    );
    // A payment sighted and waiting out `unmatched_after` is settled by the first sweep after
    // it, not by one an idle cadence puts minutes later.
    let name_ = name.clone();
    if let Ok(Some(first_seen)) = ledger.call(move |l| l.oldest_unsettled(&name_)).await {
        let settle = clock::add(first_seen, reach.unmatched_after);
        let fastest = clock::add(now, SweepPolicy::next_after(1, 1, interval, reach.window));
        next = next.min(settle.max(fastest));
    }
    {
        let mut view = lock(&p.sweeps);
        view.next_due = Some(next);
        view.error = report.error.clone();
        if report.error.is_none() {
            view.swept_at = Some(started);
        }
    }
    let error = report.error.clone();
    ledger
        .call(move |l| l.finish_sweep(&name, started, next, error.as_deref()))
        .await?;
    match &report.error {
        Some(e) => {
            tracing::warn!(provider = %p.name, pages = report.pages, "sweep stopped short: {e}")
        }
        None => tracing::debug!(provider = %p.name, pages = report.pages, listed = report.listed,
            tied = report.tied, sighted = report.sighted, "swept the list"),
    }
    crate::metrics::sweep(&p.name, report.pages, report.error.is_none());
    Ok(Some(report))
}

/// Ties one page's payments to sessions and takes what each says: an answer for its PENDING
/// session, a sighting when it is paid and no session holds it.
async fn take_page(
    ledger: &Ledger,
    p: &Provider,
    cfg: &Config,
    opts: &PassOptions,
    items: Vec<provider::Listed>,
    report: &mut SweepReport,
) -> Result<(), ledger::Error> {
    let Some(reach) = p.list else {
        return Ok(());
    };
    // The list answers for a session unless it only makes it due for a status call to confirm.
    let ids: Vec<(String, bool)> = items
        .iter()
        .map(|i| {
            let confirm = reach.using == ListUse::Confirm && i.facts.mapped != Mapped::Pending;
            (i.id.clone(), !confirm)
        })
        .collect();
    let (name, owner, lease) = (p.name.clone(), opts.owner.clone(), cfg.schedule.lease);
    let tied = ledger
        .call(move |l| {
            let now = clock::now();
            let ids: Vec<(&str, bool)> = ids.iter().map(|(id, a)| (id.as_str(), *a)).collect();
            l.tie_listed(&name, &ids, &owner, now, clock::add(now, lease))
        })
        .await?;
    let now = clock::now();
    let mut records = Vec::new();
    let mut checks = Vec::new();
    let mut sightings = Vec::new();
    for (item, tied) in items.into_iter().zip(tied) {
        match tied {
            Tied::Claimed(s) => {
                report.tied += 1;
                let answer = Ok(Answer::Found(item.facts));
                checks.push(super::check_note(&s, now, Via::List, opts.source, &answer));
                records.push(answer_of(&s, answer, reach.using, cfg, opts, now));
            }
            Tied::Several(rowids) => {
                tracing::error!(provider = %p.name, payment_id = %provider::clip(&item.id), rowids = ?rowids,
                    "a listed payment is held by more than one session (or by a row payrecon cannot read): applied to none; they are checked one by one");
            }
            Tied::Held => {}
            Tied::Nobody if item.facts.mapped == Mapped::Paid => {
                report.sighted += 1;
                let f = item.facts;
                sightings.push(Sighting {
                    payment_id: item.id,
                    amount: f.amount,
                    currency: f.currency,
                    provider_status: f.raw_status,
                    receipt: f.transaction_id,
                    provider_created_at: item.created_at,
                });
            }
            Tied::Nobody => {}
        }
    }
    if !records.is_empty() {
        report.recorded.count(&records);
        super::record(ledger, cfg, opts, records, checks).await?;
    }
    if !sightings.is_empty() {
        let name = p.name.clone();
        ledger
            .call(move |l| l.sight_unmatched(&name, &sightings, clock::now()))
            .await?;
    }
    Ok(())
}

/// What a listed payment tied to its PENDING session `s` becomes: decided as a status answer
/// is (`decide`; a pending one is an answered check, rescheduled by the session's schedule and
/// then put off to the next sweep by rule 3), or, with `confirm`, a final one makes the session
/// due now for a status call to confirm.
fn answer_of(
    s: &ledger::Session,
    answer: Result<Answer, provider::Error>,
    using: ListUse,
    cfg: &Config,
    opts: &PassOptions,
    now: Timestamp,
) -> Record {
    let pending = matches!(&answer, Ok(Answer::Found(f)) if f.mapped == Mapped::Pending);
    match using {
        ListUse::Confirm if !pending => Record::Reschedule {
            rowid: s.rowid,
            next_check_at: now,
            last_error: None,
            answered: false,
            not_found: None,
            charged: false,
            facts: None,
        },
        _ => super::decide(
            s,
            &answer,
            now,
            cfg.backoff_for(&s.provider),
            opts.source,
            fastrand::f64(),
        ),
    }
}

/// Sighted payments past `unmatched_after`: matched to the session holding either id, or
/// reported. Each is first looked up once by its own id (its other id comes back, and the
/// answer is the holder's status answer) — but only while the ledger might hold it under that
/// other id, that is while some PENDING session of the provider is out of the list's reach; at
/// most [`SweepPolicy::LOOKUPS`] such calls a sweep. Without that, each is settled at once, no
/// call made.
async fn settle_sighted(
    ledger: &Ledger,
    p: &Provider,
    cfg: &Config,
    opts: &PassOptions,
    after: Duration,
    report: &mut SweepReport,
) -> Result<(), ledger::Error> {
    let Some(reach) = p.list else {
        return Ok(());
    };
    let name = p.name.clone();
    let lookups = ledger
        .call(move |l| l.pending_out_of_reach(&name, reach.id_prefix))
        .await?;
    let most = if lookups { SweepPolicy::LOOKUPS } else { 100 };
    let name = p.name.clone();
    let due = ledger
        .call(move |l| l.unmatched_due(&name, clock::sub(clock::now(), after), most))
        .await?;
    for u in due {
        let u_payment_id = u.payment_id.clone();
        let looked_up = match lookups {
            false => Ok(Answer::NotFound),
            true => p.check(&u.payment_id, false, opts.caller).await.result,
        };
        let (other, facts) = match looked_up {
            Ok(Answer::Found(f)) => (f.provider_ref.clone(), Some(f)),
            Ok(Answer::NotFound) => (None, None),
            Err(e) => {
                tracing::warn!(provider = %p.name, payment_id = %provider::clip(&u.payment_id), error = %e,
                    "could not look up a payment no session holds; trying again at the next sweep");
                continue;
            }
        };
        let settled = ledger
            .call(move |l| l.settle_unmatched(u.id, other.as_deref(), clock::now()))
            .await?;
        match settled {
            Settled::Reported(w) => {
                report.reported += 1;
                crate::metrics::unmatched_reported(&p.name);
                super::announce(cfg, opts, std::slice::from_ref(&*w));
            }
            Settled::Matched { session_id } => {
                report.matched += 1;
                // The lookup was a status answer about the session that holds it; of the
                // payment's two ids, its `provider_ref` is the one that is not its session id.
                if let Some(mut f) = facts {
                    let (name, id) = (p.name.clone(), session_id.clone());
                    if let Some(s) = ledger.call(move |l| l.get(&name, &id)).await?
                        && s.status == ledger::Status::Pending
                    {
                        f.provider_ref = [Some(u_payment_id.clone()), f.provider_ref.take()]
                            .into_iter()
                            .flatten()
                            .find(|id| *id != s.session_id);
                        super::take_answer(ledger, cfg, opts, &s, Answer::Found(f)).await?;
                    }
                }
            }
            Settled::Gone => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cadence, by hand: pages at the budget's pace over 0.8, bounded by the window's
    /// parts and the longest gap.
    #[test]
    fn sweeps_follow_the_pages_they_read_at_the_budgets_pace() {
        let w = Duration::from_secs(15 * 60);
        let s = Duration::from_secs;
        // 200/h: a call every 18 s; one page: 18 / 0.8 = 22.5 s.
        assert_eq!(
            SweepPolicy::next_after(1, 5, Some(s(18)), w),
            Duration::from_millis(22_500)
        );
        assert_eq!(SweepPolicy::next_after(4, 5, Some(s(18)), w), s(90));
        // Nothing open: every 2 minutes at least.
        assert_eq!(SweepPolicy::next_after(1, 0, Some(s(18)), w), s(120));
        // No budget, or a generous one: no sooner than 10 s.
        assert_eq!(SweepPolicy::next_after(1, 5, None, w), s(10));
        assert_eq!(
            SweepPolicy::next_after(1, 5, Some(Duration::from_millis(10)), w),
            s(10)
        );
        // Never later than 10 minutes.
        assert_eq!(SweepPolicy::next_after(20, 5, Some(s(36)), w), s(600));
    }
}
