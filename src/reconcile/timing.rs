//! When answers come, learned per provider from the ledger's own recent transitions: the
//! distribution of time from a session's creation to the provider's answer that closed it or
//! sent it to REVIEW, and the share of sessions whose customer never acted (EXPIRED).
//!
//! This is issue 30's first part: learned and shown (`payrecon stats`, the console's overview).
//! No schedule uses it yet; every check is still timed by the provider's schedule.
//!
//! How, and why:
//! * **The window.** The newest [`MOST`] transitions of the last [`WINDOW`] (both engines, found
//!   by id as the overview's activity is). Decisions by people are not answers and are left out.
//! * **Following change.** Each answer weighs half as much every [`HALF_LIFE`] of its age, so a
//!   provider whose customers get slower shows it within hours, not after a week of old answers.
//! * **The prior.** Until there are answers, the provider's own schedule says where answers are
//!   expected: one pseudo-answer at each check time the schedule lists (its delays added up, the
//!   repeating last delay once), [`PRIOR_WEIGHT`] of them in all. Checks are dense where the
//!   schedule's author expected answers, so their times are a fair first guess; as answers come
//!   the prior weighs less and less (with 200 recent answers, a tenth).
//! * **An upper bound.** The time learned is when payrecon *saw* the answer, not when the
//!   customer acted: it includes the wait for the next check. It is the time to truth payrecon
//!   achieved, which is what a schedule must beat.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::config::BackoffConfig;
use crate::ledger::{Moved, Source, Status};

/// How far back answers are read.
pub const WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// The most transitions read (the newest of the window).
pub const MOST: u32 = 20_000;
/// An answer's weight halves every this much of its age.
pub const HALF_LIFE: Duration = Duration::from_secs(6 * 3600);
/// What the schedule's prior weighs in all, in answers.
pub const PRIOR_WEIGHT: f64 = 20.0;
/// The quantiles shown.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

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
    /// The weighted share of sessions whose customer never acted (expired), of all that
    /// ended; `None` before any did.
    pub never: Option<f64>,
}

impl Learned {
    /// Whether the prior still weighs more than the answers.
    pub fn mostly_prior(&self) -> bool {
        self.weight < PRIOR_WEIGHT
    }
}

/// The prior's answer times: the schedule's check times, the repeating last delay once, up to
/// `max_age` (for the exponential form: until its delay reaches `max`).
pub fn prior_times(b: &BackoffConfig) -> Vec<f64> {
    let mut times = Vec::new();
    let mut at = 0.0;
    let listed = if b.schedule.is_empty() {
        64
    } else {
        b.schedule.len()
    };
    for nth in 0..listed {
        let d = super::decide::base_delay(b, nth);
        at += d;
        if at > b.max_age.as_secs_f64() {
            break;
        }
        times.push(at);
        if b.schedule.is_empty() && d >= b.max.as_secs_f64() {
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

/// Learns `provider`'s answer times from `moved` (any providers', oldest first) at `now`, with
/// `prior` (from [`prior_times`]) as the prior.
pub fn learn(provider: &str, moved: &[Moved], prior: &[f64], now: Timestamp) -> Learned {
    let half_life = HALF_LIFE.as_secs_f64();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let (mut answers, mut expired) = (0u64, 0u64);
    let (mut acted_weight, mut expired_weight) = (0.0, 0.0);
    for m in moved.iter().filter(|m| m.provider == provider) {
        if m.source == Source::Manual {
            continue;
        }
        let age = (now - m.at).num_milliseconds().max(0) as f64 / 1000.0;
        let weight = 0.5f64.powf(age / half_life);
        if m.to == Status::Expired {
            expired += 1;
            expired_weight += weight;
            continue;
        }
        let took = (m.at - m.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        samples.push((took, weight));
        answers += 1;
        acted_weight += weight;
    }
    let each = PRIOR_WEIGHT / prior.len().max(1) as f64;
    samples.extend(prior.iter().map(|t| (*t, each)));
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantiles = QUANTILES.map(|q| Duration::from_secs_f64(quantile(&samples, q).max(0.0)));
    let ended = acted_weight + expired_weight;
    Learned {
        provider: provider.to_string(),
        answers,
        expired,
        weight: acted_weight,
        quantiles,
        never: (expired > 0).then(|| expired_weight / ended),
    }
}

/// Every configured provider's learned answer times, from the ledger's recent transitions.
pub fn learn_all(
    cfg: &crate::config::Config,
    ledger: &crate::ledger::Ledger,
    now: Timestamp,
) -> Result<Vec<Learned>, crate::ledger::Error> {
    let moved = ledger.answers(crate::clock::sub(now, WINDOW), MOST)?;
    Ok(cfg
        .providers
        .iter()
        .map(|p| learn(&p.name, &moved, &prior_times(cfg.backoff_for(&p.name)), now))
        .collect())
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

    fn moved(provider: &str, to: Status, source: Source, took: u64, ago: u64) -> Moved {
        let now = clock::now();
        let at = clock::sub(now, Duration::from_secs(ago));
        Moved {
            provider: provider.into(),
            to,
            source,
            at,
            created_at: clock::sub(at, Duration::from_secs(took)),
        }
    }

    #[test]
    fn with_no_answer_the_schedule_is_the_guess() {
        // Checks at 10 s, 30 s (10 + 20), 70 s (30 + 40): each a third of the prior.
        let got = learn("p", &[], &[10.0, 30.0, 70.0], clock::now());
        assert_eq!(got.answers, 0);
        assert!(got.mostly_prior());
        assert_eq!(got.quantiles[0], Duration::from_secs(30));
        assert_eq!(got.quantiles[1], Duration::from_secs(70));
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
        let got = learn("p", &all, &[1000.0], now);
        assert_eq!(got.answers, 80);
        assert!(!got.mostly_prior());
        // Of 100 in all: the median is among the 5 s ones (40 ≥ 50? no: 40 < 50, so 100 s).
        assert_eq!(got.quantiles[0], Duration::from_secs(100));
        // p90 and above: the prior's 1000 s (80 of 100 are answers).
        assert_eq!(got.quantiles[1], Duration::from_secs(1000));
    }

    #[test]
    fn an_answer_a_half_life_old_weighs_half_and_expiries_are_the_never_share() {
        let now = clock::now();
        let h = HALF_LIFE.as_secs();
        let all = [
            moved("p", Status::Completed, Source::Poll, 10, 0),
            moved("p", Status::Completed, Source::Poll, 10, h),
            moved("p", Status::Expired, Source::Poll, 3600, 0),
        ];
        let got = learn("p", &all, &[60.0], now);
        assert_eq!(got.answers, 2);
        assert_eq!(got.expired, 1);
        assert!((got.weight - 1.5).abs() < 1e-3, "{}", got.weight);
        // 1 expired of 2.5 ended.
        assert!((got.never.unwrap() - 0.4).abs() < 1e-3);
    }

    #[test]
    fn the_prior_is_the_schedule_s_check_times() {
        let b = BackoffConfig {
            schedule: ["10s", "20s", "40s"]
                .iter()
                .map(|d| humantime::parse_duration(d).unwrap())
                .collect(),
            initial: Duration::from_secs(30),
            multiplier: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.0,
            max_age: Duration::from_secs(60),
            not_found_after: 3,
            late_check: Duration::from_secs(86_400),
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

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(shown(Duration::from_secs(45)), "45 s");
        assert_eq!(shown(Duration::from_secs(270)), "4.5 min");
        assert_eq!(shown(Duration::from_secs(7560)), "2.1 h");
    }
}
