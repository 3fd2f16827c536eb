//! When answers come, learned per provider from the ledger's own recent transitions, and when
//! to ask a provider whose `schedule = "learned"`: the one place that policy lives, beside
//! [`crate::ledger::DueOrder`] (which orders what is due when the budget cannot serve it all).
//! docs/operations.md "Learned check times" says the same for operators.
//!
//! **What is learned.** The chance that a session's customer has acted by each age: a weighted
//! Kaplan–Meier estimate over the provider's sessions — answered (closed, or sent to REVIEW) at
//! their age, or still without an answer at their age: expired, or PENDING. Counting the
//! waiting sessions shows the share that never answers from the start (an estimate from
//! answers and expiries alone believes, until sessions reach `max_age`, that every session
//! answers, and asks the ones that never will again and again: docs/benchmark.md row 12).
//! * **The window.** The newest [`MOST`] transitions and [`MOST`] waiting sessions of the last
//!   [`WINDOW_HALF_LIVES`] half-lives (a week at the default `[schedule] learn_half_life` of
//!   6 h), found by id as the overview's activity is, on both engines. Decisions by people are not answers and are left
//!   out.
//! * **Following change.** Each session weighs half as much every `learn_half_life` since it
//!   was created, answered or still waiting — so a cohort counts as one whatever became of each
//!   (weighing the waiting fully and answers by their age let the waiting swamp the answers
//!   after customers got slower, and the schedule stopped asking: row 12) — and a provider whose
//!   customers get slower shows it within hours, not after a week of old answers.
//! * **The prior.** Until there are answers, the provider's own schedule says where answers are
//!   expected: one pseudo-answer at each check time the schedule lists (its delays added up, the
//!   repeating last delay once), [`PRIOR_WEIGHT`] of them in all. Checks are dense where the
//!   schedule's author expected answers, so their times are a fair first guess; as answers come
//!   the prior weighs less and less (with 200 recent answers, a tenth). Once a session has
//!   closed it speaks only up to the oldest session seen: past it, its pseudo-answers would be
//!   the only ones left and claim that every session answers by the schedule's last check.
//! * **When the customer acted.** A scheduled check only tells that the customer acted since
//!   the check before: its answer counts midway between them (`Moved::pending_since`, kept on
//!   the transition), and a session still PENDING counts as unanswered by its last check, not
//!   by now. An answer a signal brought (`verify`, a hint, a callback) counts at its own time.
//!   Counting answers when a check saw them made the schedule chase its own checks: every answer
//!   between checks at 240 s and 340 s was seen at 340 s, the estimate said none comes between,
//!   and the next sessions were asked at 240 s and 340 s again (docs/benchmark.md row 12).
//!
//! **When to ask** ([`next_gap`]). After a check that left a session PENDING, the next
//! one is when the chance that its answer has come since — given that it had not come by now —
//! reaches [`SHARE`] (one in ten): dense where the provider's answers come, sparse where they
//! rarely do, and sparser still as a session ages past the answers, where the sessions still
//! waiting are mostly ones whose customer never acts (web-crawl scheduling's rule: look in
//! proportion to the chance of change since the last look). Bounds, from the provider's fixed
//! schedule read by age ([`fixed_next`]: its next check time after the session's age):
//! * never sooner than the shortest delay of the provider's fixed schedule (the floor);
//! * while the provider's budget is not binding, never later than the fixed schedule's
//!   next check: with calls to spare, schedules never get sparser than the kind's default;
//! * while it binds, never later than the fixed schedule's longest delay;
//! * past every answer learned, the fixed schedule's own next check, also while it binds: a
//!   customer slower than any seen so far is found as the fixed schedule would find them;
//! * never past the moment the session reaches `max_age`, as with fixed schedules.
//!
//! The first check of a session added without any signal (`first_check = "plausible"`, the
//! default with `"learned"`) waits until [`SHARE`] of the answers have come
//! ([`Learned::plausible`]): nothing can have happened before a customer acts.

use std::time::Duration;

use super::lock;
use crate::clock::Timestamp;
use crate::config::BackoffConfig;
use crate::ledger::{Moved, Source, Status, Waiting};

/// How far back answers are read, in half-lives.
pub const WINDOW_HALF_LIVES: u32 = 28;
/// The most transitions read (the newest of the window).
pub const MOST: u32 = 20_000;
/// What the schedule's prior weighs in all, in answers.
pub const PRIOR_WEIGHT: f64 = 20.0;
/// The quantiles shown.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];
/// The chance of an answer by which a first check is plausible, and the default of
/// `[schedule] learn_share` (the chance of an answer since the last check at which the next
/// check is due).
pub const SHARE: f64 = 0.1;
/// How long a budget counts as binding after a claim it limited was full.
pub const BINDING_FOR: Duration = Duration::from_secs(10);
/// Points on the learned curve (its quantiles, evenly spaced).
const KNOTS: usize = 200;

/// How far back answers are read with this half-life.
pub fn window(half_life: Duration) -> Duration {
    half_life * WINDOW_HALF_LIVES
}

/// One provider's learned answer times.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub provider: String,
    /// Answers in the window (unweighted).
    pub answers: u64,
    /// Sessions that expired in the window (unweighted).
    pub expired: u64,
    /// The answers' weight after decay (the prior's is [`PRIOR_WEIGHT`]).
    pub weight: f64,
    /// Time to an answer at each of [`QUANTILES`].
    pub quantiles: [Duration; 4],
    /// The estimated share of sessions that never answer (the Kaplan–Meier estimate's floor);
    /// `None` while no session has waited past the last answer.
    pub never: Option<f64>,
    /// The chance that a session's answer has come by an age: `(age in seconds, chance)`,
    /// rising, from `(0, 0)` to the share that ever answers.
    curve: Vec<(f64, f64)>,
    /// The latest a first check waits (seconds): the fixed schedule's median check time.
    first_cap: f64,
}

impl Learned {
    /// Whether the prior still weighs more than the answers.
    pub fn mostly_prior(&self) -> bool {
        self.weight < PRIOR_WEIGHT
    }

    /// The chance that the answer has come by `age` seconds.
    fn by(&self, age: f64) -> f64 {
        let c = &self.curve;
        let i = c.partition_point(|k| k.0 < age);
        match (i.checked_sub(1).map(|j| c[j]), c.get(i)) {
            (Some((a0, g0)), Some(&(a1, g1))) if a1 > a0 => g0 + (g1 - g0) * (age - a0) / (a1 - a0),
            (_, Some(&(_, g))) => g,
            (Some((_, g)), None) => g,
            (None, None) => 0.0,
        }
    }

    /// The first age (seconds) by which the chance reaches `chance`; `None` if it never does.
    fn age_at(&self, chance: f64) -> Option<f64> {
        let c = &self.curve;
        let i = c.partition_point(|k| k.1 < chance);
        let &(a1, g1) = c.get(i)?;
        Some(match i.checked_sub(1).map(|j| c[j]) {
            Some((a0, g0)) if g1 > g0 => a0 + (a1 - a0) * (chance - g0) / (g1 - g0),
            _ => a1,
        })
    }

    /// When a session added without any signal is first worth asking about: the age by which
    /// [`SHARE`] of all sessions have their answer, at most the fixed schedule's median check
    /// time (answer times written by hand cannot put a first check off further).
    pub fn plausible(&self) -> Duration {
        let at = self.age_at(SHARE).unwrap_or(0.0).clamp(0.0, self.first_cap);
        Duration::from_secs_f64(at)
    }

    /// The wait after a check at `age` (seconds since creation) that left the session
    /// PENDING, before the chance of an answer since reaches `share`; `None` when it never
    /// does (past every answer the provider gives). Unbounded: [`next_gap`] bounds it.
    fn learned_gap(&self, age: f64, share: f64) -> Option<f64> {
        let now = self.by(age);
        if 1.0 - now < 1e-9 {
            return None;
        }
        let target = now + share * (1.0 - now);
        self.age_at(target).map(|at| (at - age).max(0.0))
    }
}

/// Whether a provider's call budget binds: in the last [`BINDING_FOR`], its due sessions
/// filled every slot a claim had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Spare,
    Binding,
}

/// The wait after a check at `age` that left a session PENDING, for a provider with
/// `schedule = "learned"`: the learned gap for `share` (`[schedule] learn_share`) within the
/// module's bounds, which are the fixed schedule's by age ([`fixed_next`]).
pub fn next_gap(
    learned: &Learned,
    b: &BackoffConfig,
    share: f64,
    age: Duration,
    budget: Budget,
) -> Duration {
    let floor = floor(b);
    let fixed = fixed_next(b, age);
    let ceiling = match budget {
        Budget::Spare => fixed,
        Budget::Binding => fixed.max(longest(b)),
    };
    let gap = match learned.learned_gap(age.as_secs_f64(), share) {
        Some(learned) => Duration::from_secs_f64(learned).max(floor).min(ceiling),
        // Past every answer learned: the fixed schedule's own next check, also while the
        // budget binds — a customer slower than any seen so far is found as the fixed
        // schedule would find them, not a longest delay later (docs/benchmark.md row 12).
        None => fixed,
    };
    // Never past max_age: an answer then closes the session on time.
    match b.max_age.checked_sub(age) {
        Some(left) if !left.is_zero() => gap.min(left),
        _ => gap,
    }
}

/// The wait from `age` to the fixed schedule's next check time after it — its delays added up
/// from creation, the last repeating — at least its shortest delay. By age, not by the number
/// of checks made: a learned schedule asks at other times, and its tenth check may come at any
/// age (by count, a session asked often while young got the fixed schedule's 15-minute delay
/// at five minutes old: docs/benchmark.md row 12).
pub fn fixed_next(b: &BackoffConfig, age: Duration) -> Duration {
    let age = age.as_secs_f64();
    // The listed delays, or the exponential form until it reaches its cap.
    let steps = b.schedule.len().max(64);
    let mut at = 0.0;
    for (_, t) in check_times(b).take(steps) {
        if t > age {
            return Duration::from_secs_f64(t - age).max(floor(b));
        }
        at = t;
    }
    // Past them, the last delay repeating (by arithmetic: a short last delay and a long
    // `max_age` would be many steps on every reschedule).
    let last = super::decide::base_delay(b, steps);
    if last <= 0.0 {
        return floor(b);
    }
    let next = at + ((age - at) / last).floor().max(0.0) * last + last;
    Duration::from_secs_f64(next - age).max(floor(b))
}

/// The shortest delay of the fixed schedule (the exponential form's first).
pub fn floor(b: &BackoffConfig) -> Duration {
    b.schedule.iter().min().copied().unwrap_or(b.initial)
}

/// The longest delay of the fixed schedule (the exponential form's cap).
pub fn longest(b: &BackoffConfig) -> Duration {
    b.schedule.iter().max().copied().unwrap_or(b.max)
}

/// The fixed schedule's check times from a session's creation, each with the delay before it:
/// the listed delays added up, the last repeating, or the exponential form's growing to its cap
/// and then repeating. Endless: the prior and [`fixed_next`] take what each needs, so both read
/// the same check times.
fn check_times(b: &BackoffConfig) -> impl Iterator<Item = (f64, f64)> + '_ {
    (0..).scan(0.0, move |at, nth| {
        let delay = super::decide::base_delay(b, nth);
        *at += delay;
        Some((delay, *at))
    })
}

/// The prior's answer times: the schedule's check times, the repeating last delay once, up to
/// `max_age` (for the exponential form: until its delay reaches `max`).
pub fn prior_times(b: &BackoffConfig) -> Vec<f64> {
    let mut times = Vec::new();
    let listed = if b.schedule.is_empty() {
        64
    } else {
        b.schedule.len()
    };
    for (delay, at) in check_times(b).take(listed) {
        if at > b.max_age.as_secs_f64() {
            break;
        }
        times.push(at);
        if b.schedule.is_empty() && delay >= b.max.as_secs_f64() {
            break;
        }
    }
    if times.is_empty() {
        times.push(b.max_age.as_secs_f64());
    }
    times
}

/// The weighted `q`-quantile of `samples` (`(value, weight)`, sorted by value).
fn quantile(samples: &[(f64, f64)], q: f64) -> f64 {
    let total: f64 = samples.iter().map(|s| s.1).sum();
    let mut seen = 0.0;
    for (v, w) in samples {
        seen += w;
        if seen >= q * total {
            return *v;
        }
    }
    samples.last().map_or(0.0, |s| s.0)
}

/// One observation of a session: at `age` seconds it was answered (`answered`), or it was
/// still waiting (PENDING now, or EXPIRED then) — weighing `weight`.
#[derive(Debug, Clone, Copy)]
struct Seen {
    age: f64,
    weight: f64,
    answered: bool,
}

/// The chance of an answer by each age, from observations some of which are still waiting:
/// the (weighted) Kaplan–Meier estimate. A session still PENDING at an hour says an answer
/// can take an hour or never come, without saying which; counting only the answers would
/// believe every session answers soon, and ask the ones that never will again and again.
fn answered_by(mut seen: Vec<Seen>) -> Vec<(f64, f64)> {
    // At one age, answers before the waiting (the usual tie rule).
    seen.sort_by(|a, b| a.age.total_cmp(&b.age).then(b.answered.cmp(&a.answered)));
    let mut at_risk: f64 = seen.iter().map(|s| s.weight).sum();
    let mut survive = 1.0;
    let mut curve: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < seen.len() {
        let age = seen[i].age;
        let (mut answered, mut left) = (0.0, 0.0);
        while i < seen.len() && seen[i].age == age {
            if seen[i].answered {
                answered += seen[i].weight;
            }
            left += seen[i].weight;
            i += 1;
        }
        if answered > 0.0 && at_risk > 0.0 {
            survive *= (1.0 - answered / at_risk).max(0.0);
            let point = (age, 1.0 - survive);
            match curve.last_mut() {
                Some(last) if last.0 >= age => *last = point,
                _ => curve.push(point),
            }
        }
        at_risk -= left;
    }
    thin(curve)
}

/// At most about [`KNOTS`] points of a rising curve: one each time it has risen by a
/// [`KNOTS`]th of its height, and its last.
fn thin(curve: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let top = curve.last().map_or(0.0, |p| p.1);
    if curve.len() <= KNOTS || top <= 0.0 {
        return curve;
    }
    let step = top / KNOTS as f64;
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(KNOTS + 2);
    for (n, p) in curve.iter().enumerate() {
        let keep = match out.last() {
            None => true,
            Some(last) => p.1 - last.1 >= step || n + 1 == curve.len(),
        };
        if keep {
            out.push(*p);
        }
    }
    out
}

/// Learns `provider`'s answer times at `now` from `moved` (any providers' transitions, oldest
/// first), with `prior`
/// (from [`prior_times`]) as the prior and answers halving in weight every `half_life`.
pub fn learn(
    provider: &str,
    moved: &[Moved],
    waiting: &[Waiting],
    prior: &[f64],
    half_life: Duration,
    now: Timestamp,
) -> Learned {
    let half_life = half_life.as_secs_f64().max(1e-3);
    let secs = |d: chrono::TimeDelta| d.num_milliseconds().max(0) as f64 / 1000.0;
    // Every session weighs by when it was created, answered or still waiting: a cohort of
    // sessions counts as one, whatever became of each.
    let weight_of = |created: Timestamp| 0.5f64.powf(secs(now - created) / half_life);
    let mut seen: Vec<Seen> = Vec::new();
    let mut answer_times: Vec<(f64, f64)> = Vec::new();
    let (mut answers, mut expired) = (0u64, 0u64);
    let mut acted_weight = 0.0;
    for m in moved.iter().filter(|m| m.provider == provider) {
        if m.source == Source::Manual {
            continue;
        }
        let weight = weight_of(m.created_at);
        let seen_at = secs(m.at - m.created_at);
        let answered = m.to != Status::Expired;
        // The customer acted between the last check that found the session PENDING and the
        // one that found the answer: midway is the estimate (an answer seen by a signal, or
        // with no such time, is taken at its own time).
        let age = match m.pending_since {
            Some(p) if answered => {
                let before = secs(p - m.created_at).min(seen_at);
                (before + seen_at) / 2.0
            }
            _ => seen_at,
        };
        seen.push(Seen {
            age,
            weight,
            answered,
        });
        if answered {
            answer_times.push((age, weight));
            answers += 1;
            acted_weight += weight;
        } else {
            expired += 1;
        }
    }
    // A session still waiting is known to have had no answer by its last check (or its
    // creation): later, it may have, unseen.
    let still = waiting.iter().filter(|w| w.provider == provider);
    seen.extend(still.map(|w| Seen {
        age: secs(w.pending_at - w.created_at).min(secs(now - w.created_at)),
        weight: weight_of(w.created_at),
        answered: false,
    }));
    let each = PRIOR_WEIGHT / prior.len().max(1) as f64;
    let mut guessed: Vec<(f64, f64)> = prior.iter().map(|t| (*t, each)).collect();
    guessed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first_cap = quantile(&guessed, 0.5);
    // The guess speaks only where sessions were seen: past the oldest, its answers would be
    // the only ones left and claim that every session answers by the schedule's last check.
    // Past the answers the fixed schedule times the checks ([`next_gap`]). With no session
    // closed yet (only young ones waiting), nothing contradicts it: it stays whole.
    let closed = answers + expired > 0;
    if let Some(oldest) = seen.iter().map(|s| s.age).max_by(f64::total_cmp)
        && closed
    {
        guessed.retain(|(age, _)| *age <= oldest);
    }
    seen.extend(guessed.iter().map(|(age, weight)| Seen {
        age: *age,
        weight: *weight,
        answered: true,
    }));
    // A share that never answers shows only once sessions have waited past every answer.
    let last_answer = seen
        .iter()
        .filter(|s| s.answered)
        .map(|s| s.age)
        .fold(0.0, f64::max);
    let waited = seen.iter().any(|s| !s.answered && s.age > last_answer);
    let curve = answered_by(seen);
    let learned = Learned {
        provider: provider.to_string(),
        answers,
        expired,
        weight: acted_weight,
        quantiles: [Duration::ZERO; 4],
        never: None,
        curve,
        first_cap,
    };
    // Shown: the times by which each share of the sessions that do answer have answered.
    let top = learned.curve.last().map_or(0.0, |p| p.1);
    let quantiles =
        QUANTILES.map(|q| Duration::from_secs_f64(learned.age_at(q * top).unwrap_or(0.0)));
    Learned {
        quantiles,
        // Sessions only seen younger than the answers say nothing yet of a share that never
        // answers.
        never: (waited && top < 1.0 - 1e-9).then_some(1.0 - top),
        ..learned
    }
}

/// Every configured provider's learned answer times, from the ledger's recent transitions.
pub fn learn_all(
    cfg: &crate::config::Config,
    ledger: &crate::ledger::Ledger,
    now: Timestamp,
) -> Result<Vec<Learned>, crate::ledger::Error> {
    let (moved, waiting) = ledger.answers_and_waiting(read_since(cfg, now), MOST)?;
    Ok(cfg
        .providers
        .iter()
        .map(|p| learn_for(cfg, &p.name, &moved, &waiting, now))
        .collect())
}

/// Where the answers learned from begin: [`WINDOW_HALF_LIVES`] half-lives before `now`.
fn read_since(cfg: &crate::config::Config, now: Timestamp) -> Timestamp {
    crate::clock::sub(now, window(cfg.schedule.learn_half_life))
}

/// `provider`'s answer times from `moved`, with its own schedule as the prior and the
/// configured half-life.
fn learn_for(
    cfg: &crate::config::Config,
    provider: &str,
    moved: &[Moved],
    waiting: &[Waiting],
    now: Timestamp,
) -> Learned {
    let prior = prior_times(cfg.backoff_for(provider));
    learn(
        provider,
        moved,
        waiting,
        &prior,
        cfg.schedule.learn_half_life,
        now,
    )
}

/// How often a daemon learns again: a 360th of the half-life, between 1 s and a minute.
fn refresh_every(half_life: Duration) -> Duration {
    (half_life / 360).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Learns again the answer times of each provider with `schedule = "learned"` whose are older
/// than [`refresh_every`] (one read of the ledger for all). A failed read is logged and the
/// last learned times kept; a provider with none yet is timed by its fixed schedule.
pub async fn refresh(
    ledger: &crate::ledger::Ledger,
    providers: &crate::provider::Providers,
    cfg: &crate::config::Config,
) {
    let half_life = cfg.schedule.learn_half_life;
    let stale: Vec<&std::sync::Arc<crate::provider::Provider>> = cfg
        .providers
        .iter()
        .filter(|p| cfg.backoff_for(&p.name).pace == crate::config::Pace::Learned)
        .filter_map(|p| providers.get(&p.name))
        .filter(|p| {
            lock(&p.learned)
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= refresh_every(half_life))
        })
        .collect();
    if stale.is_empty() {
        return;
    }
    let now = crate::clock::now();
    let since = read_since(cfg, now);
    let read = ledger
        .call(move |l| l.answers_and_waiting(since, MOST))
        .await;
    let (moved, waiting) = match read {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the answers to learn check times from; the last learned are kept");
            return;
        }
    };
    for p in stale {
        let learned: std::sync::Arc<dyn std::any::Any + Send + Sync> =
            std::sync::Arc::new(learn_for(cfg, &p.name, &moved, &waiting, now));
        *lock(&p.learned) = Some((std::time::Instant::now(), learned));
    }
}

fn learned_of(p: &crate::provider::Provider) -> Option<std::sync::Arc<Learned>> {
    let any = lock(&p.learned).as_ref().map(|(_, l)| l.clone())?;
    any.downcast::<Learned>().ok()
}

/// When a never-checked session `s` is first worth a call, if that is after `now`:
/// `first_check` after its creation (`"plausible"`: [`Learned::plausible`], or at once while
/// nothing is learned yet).
pub fn first_check_at(
    p: &crate::provider::Provider,
    b: &BackoffConfig,
    s: &crate::ledger::Session,
    now: Timestamp,
) -> Option<Timestamp> {
    if s.checks > 0 {
        return None;
    }
    let wait = match b.first_check {
        crate::config::FirstCheck::After(d) => d,
        crate::config::FirstCheck::Plausible => learned_of(p)?.plausible(),
    };
    let at = crate::clock::add(s.created_at, wait);
    (at > now).then_some(at)
}

/// `decide`'s record with the next check learned, for a provider with `schedule = "learned"`
/// ([`next_gap`]): only a check that reached the provider or failed as a check (charged) and
/// left the session PENDING is retimed; every other record is as `decide` made it.
pub fn retime(
    mut record: crate::ledger::Record,
    p: &crate::provider::Provider,
    b: &BackoffConfig,
    share: f64,
    s: &crate::ledger::Session,
    now: Timestamp,
) -> crate::ledger::Record {
    if b.pace != crate::config::Pace::Learned {
        return record;
    }
    let Some(learned) = learned_of(p) else {
        return record;
    };
    if let crate::ledger::Record::Reschedule {
        next_check_at,
        charged: true,
        ..
    } = &mut record
    {
        let age = (now - s.created_at).to_std().unwrap_or_default();
        let bound = *lock(&p.bound_at);
        let budget = if bound.is_some_and(|at| at.elapsed() < BINDING_FOR) {
            Budget::Binding
        } else {
            Budget::Spare
        };
        let gap = next_gap(&learned, b, share, age, budget);
        *next_check_at = crate::clock::add(now, gap);
    }
    record
}

/// A duration as a person reads it in a table: `45 s`, `4.5 min`, `2.1 h`.
pub fn shown(d: Duration) -> String {
    let s = d.as_secs_f64();
    match s {
        s if s < 90.0 => format!("{s:.0} s"),
        s if s < 5400.0 => format!("{:.1} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::config::{FirstCheck, Pace};

    const HALF: Duration = Duration::from_secs(6 * 3600);

    /// A session created `ago` seconds before now that moved `took` seconds after.
    fn moved(provider: &str, to: Status, source: Source, took: u64, ago: u64) -> Moved {
        let created_at = clock::sub(clock::now(), Duration::from_secs(ago));
        Moved {
            provider: provider.into(),
            to,
            source,
            at: clock::add(created_at, Duration::from_secs(took)),
            created_at,
            pending_since: None,
        }
    }

    /// A session of `provider` created `ago` seconds before `now`, still PENDING when checked
    /// just now.
    fn waiting(provider: &str, now: Timestamp, ago: u64) -> Waiting {
        Waiting {
            provider: provider.into(),
            created_at: clock::sub(now, Duration::from_secs(ago)),
            pending_at: now,
        }
    }

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    fn backoff(schedule: &[u64], max_age: u64) -> BackoffConfig {
        BackoffConfig {
            schedule: secs(schedule),
            initial: Duration::from_secs(30),
            multiplier: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.0,
            max_age: Duration::from_secs(max_age),
            not_found_after: 3,
            late_check: Duration::from_secs(86_400),
            pace: Pace::Learned,
            first_check: FirstCheck::Plausible,
        }
    }

    #[test]
    fn with_no_answer_the_schedule_is_the_guess() {
        // Checks at 10 s, 30 s (10 + 20), 70 s (30 + 40): each a third of the prior, the
        // chance rising in straight lines between them.
        let got = learn("p", &[], &[], &[10.0, 30.0, 70.0], HALF, clock::now());
        assert_eq!(got.answers, 0);
        assert!(got.mostly_prior());
        // Half between a third (10 s) and two thirds (30 s); nine tenths 0.7 of the way from
        // 30 s to 70 s.
        assert_eq!(got.quantiles[0], Duration::from_secs(20));
        assert_eq!(got.quantiles[1], Duration::from_secs(58));
        assert_eq!(got.never, None);
    }

    #[test]
    fn fresh_answers_outweigh_the_prior_and_people_and_other_providers_are_left_out() {
        let now = clock::now();
        // 80 answers just now: 40 after 5 s, 40 after 100 s; the prior (20) at 1000 s.
        let mut all: Vec<Moved> = (0..40)
            .flat_map(|_| {
                [
                    moved("p", Status::Completed, Source::Poll, 5, 0),
                    moved("p", Status::Failed, Source::Api, 100, 0),
                ]
            })
            .collect();
        all.push(moved("p", Status::Completed, Source::Manual, 9_999, 0));
        all.push(moved("q", Status::Completed, Source::Poll, 9_999, 0));
        // One session waiting for 2,000 s: the prior speaks up to there.
        let waiting = [waiting("p", now, 2000)];
        let got = learn("p", &all, &waiting, &[1000.0], HALF, now);
        assert_eq!(got.answers, 80);
        assert!(!got.mostly_prior());
        // Of 101 in all: 40 by 5 s, 80 by 100 s, 100 by 1000 s (the prior), one still
        // waiting. Of those that answer, the median is a quarter of the way from 5 s to 100 s;
        // nine tenths half way from 100 s to 1000 s.
        assert_eq!(got.quantiles[0], Duration::from_secs_f64(28.75));
        assert_eq!(got.quantiles[1], Duration::from_secs(550));
    }

    #[test]
    fn a_session_created_a_half_life_ago_weighs_half_and_expired_sessions_are_counted() {
        let now = clock::now();
        let h = HALF.as_secs();
        let all = [
            moved("p", Status::Completed, Source::Poll, 10, 0),
            moved("p", Status::Completed, Source::Poll, 10, h),
            moved("p", Status::Expired, Source::Poll, 3600, 0),
        ];
        let got = learn("p", &all, &[], &[60.0], HALF, now);
        assert_eq!(got.answers, 2);
        assert_eq!(got.expired, 1);
        assert!((got.weight - 1.5).abs() < 1e-3, "{}", got.weight);
        // At 10 s 1.5 of 22.5 answer; at 60 s the prior's 20 of the 21 left; the expired one
        // never: 14/15 × 1/21 never answer.
        let never = 14.0 / 15.0 / 21.0;
        assert!((got.never.unwrap() - never).abs() < 1e-6, "{:?}", got.never);
    }

    #[test]
    fn sessions_still_waiting_count_and_the_prior_speaks_only_where_sessions_were_seen() {
        let now = clock::now();
        // 100 answers after 10 s, and 100 sessions PENDING for an hour now, each weighing
        // w = 2^(-1/6) (created a sixth of a half-life ago). The prior is 10 at 10 s and 10 at
        // two hours, past every session seen, so left out: of 110 + 100w, 100w never
        // answered by an hour. Another provider's waiting session is not counted.
        let answered: Vec<Moved> = (0..100)
            .map(|_| moved("p", Status::Completed, Source::Poll, 10, 0))
            .collect();
        let waiting: Vec<Waiting> = (0..100)
            .map(|_| waiting("p", now, 3600))
            .chain([waiting("q", now, 9)])
            .collect();
        let got = learn("p", &answered, &waiting, &[10.0, 7200.0], HALF, now);
        let w = 2f64.powf(-1.0 / 6.0);
        let never = 100.0 * w / (110.0 + 100.0 * w);
        assert!((got.never.unwrap() - never).abs() < 1e-6, "{:?}", got.never);
        // Past every answer (at a minute) the fixed schedule's own next check by age — it
        // checks at 5 s and 3,605 s — even while the budget binds.
        let b = backoff(&[5, 3600], 86_400);
        let gap = |budget| next_gap(&got, &b, SHARE, Duration::from_secs(60), budget);
        assert_eq!(gap(Budget::Binding), Duration::from_secs(3545));
        assert_eq!(gap(Budget::Spare), Duration::from_secs(3545));
        // Counted only by their answers, every session would be thought to answer.
        let blind = learn("p", &answered, &[], &[10.0], HALF, now);
        assert_eq!(blind.never, None);
    }

    #[test]
    fn young_waiting_sessions_alone_leave_the_guess_whole_and_claim_no_never() {
        // 100 sessions added a second ago, none closed: nothing contradicts the schedule's
        // guess (its times are all past the oldest session seen), and a second's wait says
        // nothing of a share that never answers.
        let now = clock::now();
        let waiting: Vec<Waiting> = (0..100).map(|_| waiting("p", now, 1)).collect();
        let prior = [10.0, 30.0, 70.0];
        let got = learn("p", &[], &waiting, &prior, HALF, now);
        assert_eq!(got.never, None);
        let guess = learn("p", &[], &[], &prior, HALF, now);
        assert_eq!(got.quantiles, guess.quantiles);
        assert_eq!(got.plausible(), guess.plausible());
    }

    #[test]
    fn an_answer_a_check_found_counts_midway_from_the_check_before_and_waiting_ones_at_their_last_check()
     {
        let now = clock::now();
        // 100 answers found by a check 100 s after creation, the check before at 20 s: the
        // customer acted between, 60 s is the estimate. 100 more found by a check on a signal
        // (no earlier time: the answer is as old as the signal) at 30 s. Hostile times — a
        // check before creation, one after the answer — are held to the session's life.
        let mut all: Vec<Moved> = (0..100)
            .map(|_| {
                let mut m = moved("p", Status::Completed, Source::Poll, 100, 0);
                m.pending_since = Some(clock::add(m.created_at, Duration::from_secs(20)));
                m
            })
            .collect();
        all.extend((0..100).map(|_| moved("p", Status::Completed, Source::Api, 30, 0)));
        let mut early = moved("p", Status::Completed, Source::Poll, 40, 0);
        early.pending_since = Some(clock::sub(early.created_at, Duration::from_secs(3600)));
        let mut late = moved("p", Status::Completed, Source::Poll, 40, 0);
        late.pending_since = Some(clock::add(late.created_at, Duration::from_secs(3600)));
        all.extend([early, late]);
        // Created an hour ago, last found PENDING at 10 minutes: by 10 minutes is all it says.
        let mut w = waiting("p", now, 3600);
        w.pending_at = clock::add(w.created_at, Duration::from_secs(600));
        let got = learn("p", &all, &[w], &[5.0], HALF, now);
        // With the prior's 20 at 5 s, of W = 222 + w (the waiting one weighs w = 2^(-1/6),
        // created a sixth of a half-life ago): 20 by 5 s, one at 20 s (the early one, midway
        // from 0 s), 100 at 30 s, one at 40 s (the late one, at its answer), 100 at 60 s; the
        // waiting one never by 600 s. Of the 222 that answer, the median (111) lies nine
        // tenths of the way from 20 s (21) to 30 s (121): 29 s; nine tenths (199.8) 0.778 of
        // the way from 40 s (122) to 60 s (222): 55.56 s.
        let secs = |d: Duration| d.as_secs_f64();
        assert!((secs(got.quantiles[0]) - 29.0).abs() < 0.01, "{got:?}");
        assert!((secs(got.quantiles[1]) - 55.56).abs() < 0.01, "{got:?}");
        let w = 2f64.powf(-1.0 / 6.0);
        let never = w / (222.0 + w);
        assert!((got.never.unwrap() - never).abs() < 1e-6, "{:?}", got.never);
        // Taken when a check saw them, the 100 would be at 100 s, and nine tenths (199.8 of
        // 222) 0.778 of the way from 40 s (122) to 100 s (222): 86.68 s.
        let seen: Vec<Moved> = all
            .iter()
            .cloned()
            .map(|m| Moved {
                pending_since: None,
                ..m
            })
            .collect();
        let blind = learn("p", &seen, &[], &[5.0], HALF, now);
        assert!((secs(blind.quantiles[1]) - 86.68).abs() < 0.01, "{blind:?}");
    }

    #[test]
    fn the_prior_is_the_schedule_s_check_times() {
        let b = BackoffConfig {
            pace: Pace::Fixed,
            ..backoff(&[10, 20, 40], 60)
        };
        // 10, 30; 70 is past max_age.
        assert_eq!(prior_times(&b), [10.0, 30.0]);
        let exp = BackoffConfig {
            schedule: Vec::new(),
            max_age: Duration::from_secs(86_400),
            max: Duration::from_secs(120),
            ..b
        };
        // 30, 90 (+60), 210 (+120 = max): then the delay stays at max.
        assert_eq!(prior_times(&exp), [30.0, 90.0, 210.0]);
    }

    /// 1,000 answers spread evenly over 100–200 s and no prior to speak of: the chance of an
    /// answer by an age is a straight line from 100 s to 200 s, scaled by who ever answers.
    fn even(never: u64) -> Learned {
        let now = clock::now();
        let mut all: Vec<Moved> = (0..1000)
            .map(|i| moved("p", Status::Completed, Source::Poll, 100 + i / 10, 0))
            .collect();
        all.extend((0..never).map(|_| moved("p", Status::Expired, Source::Poll, 9_000, 0)));
        // The prior's 20 at 150 s changes no quantile of a line through 150 s by much.
        learn("p", &all, &[], &[150.0], HALF, now)
    }

    #[test]
    fn the_first_check_waits_until_one_answer_in_ten_has_come() {
        // A tenth of 1,000 answers have come by 110 s.
        let p = even(0).plausible().as_secs_f64();
        assert!((p - 110.0).abs() <= 1.5, "{p}");
        // With a fifth never answering, a tenth of all by 112.5 s (0.1 / 0.8 of the line).
        let p = even(250).plausible().as_secs_f64();
        assert!((p - 112.5).abs() <= 1.5, "{p}");
    }

    #[test]
    fn checks_are_dense_where_answers_come_and_bounded_by_the_fixed_schedule() {
        let l = even(0);
        let b = backoff(&[5, 60, 600], 86_400);
        // The fixed schedule checks at 5 s, 65 s, 665 s, then every 600 s.
        let gap = |age: u64, budget| {
            next_gap(&l, &b, SHARE, Duration::from_secs(age), budget).as_secs_f64()
        };
        // At 100 s none has come: a tenth of the line is 10 s away.
        assert!((gap(100, Budget::Binding) - 10.0).abs() <= 1.5);
        // At 150 s half have come: a tenth of the other half is 5 s away.
        assert!((gap(150, Budget::Binding) - 5.0).abs() <= 1.5);
        // Never sooner than the shortest fixed delay.
        let b_floor = backoff(&[8, 60, 600], 86_400);
        let g = next_gap(
            &l,
            &b_floor,
            SHARE,
            Duration::from_secs(150),
            Budget::Binding,
        );
        assert_eq!(g, Duration::from_secs(8));
        // At 20 s nothing comes before 100 s (90 s away): the budget spare, never later than
        // the fixed schedule's next check (at 65 s, 45 s away); binding, the learned 90 s.
        assert_eq!(gap(20, Budget::Spare), 45.0);
        assert!((gap(20, Budget::Binding) - 90.0).abs() <= 1.5);
        // Past every answer: the fixed schedule's next (at 665 s), also while it binds.
        assert_eq!(gap(300, Budget::Spare), 365.0);
        assert_eq!(gap(300, Budget::Binding), 365.0);
        // Past its listed delays, the last repeating: 665 + 2 × 600 = 1,865 s.
        assert_eq!(gap(1500, Budget::Binding), 365.0);
        // Never past max_age.
        let short = backoff(&[5, 60, 600], 330);
        let g = next_gap(&l, &short, SHARE, Duration::from_secs(300), Budget::Binding);
        assert_eq!(g, Duration::from_secs(30));
    }

    #[test]
    fn sessions_that_outlive_the_answers_are_asked_less_as_they_age() {
        // A long tail: answer i after 10 × 1.01^i s (ever thinner), and a fifth never answer.
        let now = clock::now();
        let mut all: Vec<Moved> = (0..500)
            .map(|i| {
                let took = (10.0 * 1.01f64.powi(i)) as u64;
                moved("p", Status::Completed, Source::Poll, took, 0)
            })
            .collect();
        all.extend((0..125).map(|_| moved("p", Status::Expired, Source::Poll, 9_000, 0)));
        let l = learn("p", &all, &[], &[100.0], HALF, now);
        let b = backoff(&[1, 60, 3600], 86_400);
        let at = |age: u64| {
            next_gap(&l, &b, SHARE, Duration::from_secs(age), Budget::Binding).as_secs_f64()
        };
        // The wait grows as the answers left thin out.
        let waits = [at(20), at(100), at(500), at(1000)];
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "{waits:?}");
        // Past every answer (1,440 s): the fixed schedule's next check, at 3,661 s.
        assert_eq!(at(2000), 1661.0);
    }

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(shown(Duration::from_secs(45)), "45 s");
        assert_eq!(shown(Duration::from_secs(270)), "4.5 min");
        assert_eq!(shown(Duration::from_secs(7560)), "2.1 h");
    }
}
