//! Row 12, when to ask: the Little kind's fixed default schedule beside `schedule = "learned"`
//! (reconcile::timing), side by side at one budget — each with a simulator of its own that
//! enforces the limit and a `payrecon run` daemon on a ledger of its own, fed the same sessions
//! at the same moments (row 8's machinery) — on three scenarios:
//!
//! * **row 8's**: 1.5 sessions a second for 10 minutes, 20% never act, the rest after 10–120 s
//!   (uniform);
//! * **budget-bound**: 30 minutes of arrivals in bursts above the budget (4 a second for 30 s
//!   every 150 s, 0.3 a second between), customers acting after a lognormal delay (median
//!   90 s, σ 1.0: one in twenty after 7.8 minutes), 15% never acting;
//! * **shift**: the budget-bound arrivals for 80 minutes, the median delay 45 s for customers
//!   arriving in the first half and 4× that (3 minutes) in the second, with
//!   `learn_half_life = "5m"`: how long until the learned schedule's p95 is back within 10% of
//!   where it settles (40 minutes after the shift, so that the slow customers' backlog has
//!   settled too).
//!
//! Calls on sessions that never act are the simulator's own count of status requests for them.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::truth::{
    Bursts, Delay, Measured, Scenario, TruthOptions, percentile, plan, schedule_line, side_by_side,
};

/// The kind whose default schedule both runs start from.
const DEFAULT: &[&str] = payrecon::provider::little::SPEC.default_schedule;

fn fixed(c: f64) -> anyhow::Result<Scenario> {
    Ok(Scenario {
        name: "fixed default",
        backoff: String::new(),
        schedule: schedule_line(DEFAULT, c)?,
        first: None,
        hints: false,
        schedule_extra: String::new(),
    })
}

/// `schedule = "learned"` with `learn_share`: the same delays as the floor, prior and
/// ceiling; the first check when plausible.
fn learned(c: f64, name: &'static str, share: f64) -> anyhow::Result<Scenario> {
    Ok(Scenario {
        name,
        backoff: schedule_line(DEFAULT, c)?,
        schedule: "schedule = \"learned\"".into(),
        first: None,
        hints: false,
        schedule_extra: format!("learn_share = {share}"),
    })
}

fn budget_bound(compress: f64) -> TruthOptions {
    TruthOptions {
        compress,
        arrivals: Duration::from_secs(30 * 60),
        per_second: 0.3,
        never: 0.15,
        delay: Delay::LogNormal {
            median: Duration::from_secs(90),
            sigma: 1.0,
        },
        bursts: Some(Bursts {
            on: Duration::from_secs(30),
            on_per_second: 4.0,
            period: Duration::from_secs(150),
        }),
        ..TruthOptions::default()
    }
}

fn shifted(compress: f64) -> TruthOptions {
    TruthOptions {
        arrivals: Duration::from_secs(80 * 60),
        delay: Delay::LogNormal {
            median: Duration::from_secs(45),
            sigma: 1.0,
        },
        shift: Some(4.0),
        learn_half_life: Duration::from_secs(5 * 60),
        ..budget_bound(compress)
    }
}

/// The fixed default and the learned schedule (`learn_share` 0.1, the default, and 0.15) side
/// by side on `o`, their ledgers in `dir`'s folder `label`.
async fn pair(
    payrecon: &Path,
    dir: &Path,
    label: &str,
    o: &TruthOptions,
) -> anyhow::Result<Vec<Measured>> {
    let dir = dir.join(label);
    std::fs::create_dir_all(&dir)?;
    let stop = CancellationToken::new();
    let planned = Arc::new(plan(o));
    let arms = vec![
        fixed(o.compress)?,
        learned(o.compress, "learned 0.1", 0.1)?,
        learned(o.compress, "learned 0.15", 0.15)?,
    ];
    let runs = side_by_side(payrecon, &dir, arms, o, &planned, &stop).await;
    stop.cancel();
    runs
}

fn p95(m: &Measured) -> f64 {
    percentile(&m.lags, 95.0)
}

/// The budget-bound scenario's first minutes are the learned schedule's learning: no customer
/// slower than the ledger's oldest session has been seen, and it asks as the fixed schedule
/// does there. Its goal is read on the sessions created after them (the whole run is shown).
const LEARNING: f64 = 600.0;

/// The p95 lag of the sessions created after [`LEARNING`].
fn p95_learned(m: &Measured) -> f64 {
    let mut lags: Vec<f64> = m
        .lag_created
        .iter()
        .filter(|(created, _)| *created >= LEARNING)
        .map(|(_, lag)| *lag)
        .collect();
    lags.sort_by(f64::total_cmp);
    percentile(&lags, 95.0)
}

/// The p95 lag of the sessions whose customer acted in each window of `width` real seconds,
/// one starting every `step`: `(start, p95)`, windows with fewer than 20 answers left out.
fn windows(m: &Measured, width: f64, step: f64, end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut from = 0.0;
    while from + width <= end + 1e-9 {
        let mut lags: Vec<f64> = m
            .lag_at
            .iter()
            .filter(|(at, _)| (from..from + width).contains(at))
            .map(|(_, lag)| *lag)
            .collect();
        lags.sort_by(f64::total_cmp);
        if lags.len() >= 20 {
            out.push((from, percentile(&lags, 95.0)));
        }
        from += step;
    }
    out
}

/// The windows of the shift's p95 series: 8 minutes wide (about 400 answers each at the
/// budget-bound arrivals, so a p95 rests on some 20 of them), one every 4 minutes.
const WIDTH: f64 = 480.0;
const STEP: f64 = 240.0;

/// After the shift at `shift_at`: the settled p95 (of the last third of the run's changes) and
/// how long after the shift until every window's p95 is within 10% of it.
fn recovery(m: &Measured, shift_at: f64, end: f64) -> (f64, Option<f64>) {
    let settle_from = shift_at + (end - shift_at) * 2.0 / 3.0;
    let mut late: Vec<f64> = m
        .lag_at
        .iter()
        .filter(|(at, _)| *at >= settle_from && *at < end)
        .map(|(_, l)| *l)
        .collect();
    late.sort_by(f64::total_cmp);
    let settled = percentile(&late, 95.0);
    let after: Vec<(f64, f64)> = windows(m, WIDTH, STEP, end)
        .into_iter()
        .filter(|(from, _)| *from >= shift_at)
        .collect();
    let back = (0..after.len())
        .find(|&i| after[i..].iter().all(|(_, p)| *p <= settled * 1.1))
        .map(|i| after[i].0 - shift_at);
    (settled, back)
}

fn line(table: &mut String, scenario: &str, m: &Measured) {
    let used = m.budget_used().map_or("no wait".to_string(), |u| {
        format!("{:.0}% of {} s", u * 100.0, m.busy_windows)
    });
    let _ = writeln!(
        table,
        "  {:<14} {:<14} {:>7.1} {:>7.1} {:>9.1} {:>7.1} {:>6} {:>9.2} {:>12} {:>10} {:>7} {:>16}",
        scenario,
        m.name,
        percentile(&m.lags, 50.0),
        p95(m),
        p95_learned(m),
        percentile(&m.lags, 99.0),
        m.unresolved,
        m.calls as f64 / m.sessions as f64,
        format!(
            "{} ({:.1})",
            m.never_calls,
            m.never_calls as f64 / m.never_sessions.max(1) as f64
        ),
        m.never_busy_calls,
        m.refused,
        used
    );
}

fn as_json(m: &Measured) -> serde_json::Value {
    json!({
        "name": m.name, "sessions": m.sessions, "acting": m.acting, "unresolved": m.unresolved,
        "p50": percentile(&m.lags, 50.0), "p95": p95(m), "p95_after_10_min": p95_learned(m),
        "p99": percentile(&m.lags, 99.0),
        "calls": m.calls, "calls_per_session": m.calls as f64 / m.sessions as f64,
        "never_calls": m.never_calls, "never_sessions": m.never_sessions,
        "never_busy_calls": m.never_busy_calls, "429s": m.refused,
        "budget_used": m.budget_used(), "max_in_any_second": m.most,
    })
}

/// Row 12 and its table.
pub async fn row(
    payrecon: &Path,
    dir: &Path,
    compress: f64,
) -> anyhow::Result<(serde_json::Value, String, bool)> {
    let row8 = TruthOptions {
        compress,
        ..TruthOptions::default()
    };
    let bound = budget_bound(compress);
    let shift = shifted(compress);
    // For study: `PACE_STUDY=row8|bound|shift` runs that scenario alone and prints its lines.
    if let Ok(one) = std::env::var("PACE_STUDY") {
        let o = match one.as_str() {
            "row8" => &row8,
            "bound" => &bound,
            _ => &shift,
        };
        let runs = pair(payrecon, dir, &one, o).await?;
        let mut table = String::new();
        for m in &runs {
            line(&mut table, &one, m);
        }
        return Ok((json!({}), table, false));
    }
    eprintln!("  12a row 8's scenario");
    let a = pair(payrecon, dir, "row8", &row8).await?;
    for m in &a {
        eprintln!(
            "    {} p95 {:.1}, never calls {}",
            m.name,
            p95(m),
            m.never_calls
        );
    }
    eprintln!("  12b budget-bound");
    let b = pair(payrecon, dir, "bound", &bound).await?;
    for m in &b {
        eprintln!(
            "    {} p95 {:.1}, never calls {}",
            m.name,
            p95(m),
            m.never_calls
        );
    }
    eprintln!("  12c a shift halfway");
    let c = pair(payrecon, dir, "shift", &shift).await?;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n12 when to ask: the little kind's fixed default beside schedule = \"learned\", limit {}/s, time compressed {}×",
        row8.limit, compress
    );
    let _ = writeln!(
        table,
        "  {:<14} {:<14} {:>7} {:>7} {:>9} {:>7} {:>6} {:>9} {:>12} {:>10} {:>7} {:>16}",
        "scenario",
        "schedule",
        "p50 s",
        "p95 s",
        "p95 >10m",
        "p99 s",
        "unres",
        "calls/ses",
        "never (each)",
        "never busy",
        "429s",
        "budget used"
    );
    for (name, runs) in [("row 8's", &a), ("budget-bound", &b), ("shift", &c)] {
        for m in runs.iter() {
            line(&mut table, name, m);
        }
    }
    let end = shift.arrivals.as_secs_f64();
    let shift_at = end / 2.0;
    let _ = writeln!(
        table,
        "  shift at {:.0} min (median 45 s → 3 min), learn_half_life 5 min; p95 of the customers acting in 8-minute windows, one every 4 minutes:",
        shift_at / 60.0
    );
    let mut recovered = Vec::new();
    for m in &c {
        let (settled, back) = recovery(m, shift_at, end);
        let series: Vec<String> = windows(m, WIDTH, STEP, end)
            .iter()
            .map(|(from, p)| format!("{:.0}m {:.0}", from / 60.0, p))
            .collect();
        let _ = writeln!(
            table,
            "    {:<14} {} | settled p95 {:.0} s, within 10% of it {} after the shift",
            m.name,
            series.join(" · "),
            settled,
            back.map_or("never".into(), |s| format!("{:.0} min", s / 60.0))
        );
        recovered.push(
            json!({"name": m.name, "settled_p95": settled, "back_within_10pct_seconds": back}),
        );
    }
    // The goals are read for the default share (0.1); 0.15 is shown beside it. Calls on
    // sessions that never act are read where they cost an answer: in the seconds the budget
    // was busy (docs/benchmark.md row 12, "Which calls count"); the total is shown too.
    let ratio = |runs: &[Measured], f: fn(&Measured) -> f64| f(&runs[1]) / f(&runs[0]);
    let never = |m: &Measured| m.never_calls as f64;
    let never_busy = |m: &Measured| m.never_busy_calls as f64;
    let p95_bound = ratio(&b, p95_learned);
    let p95_bound_all = ratio(&b, p95);
    let never_bound = ratio(&b, never);
    let never_busy_bound = ratio(&b, never_busy);
    let p95_row8 = ratio(&a, p95);
    let _ = writeln!(
        table,
        "  goals: budget-bound p95 learned/fixed of the sessions created after the first 10 minutes {p95_bound:.2} (≤ 0.50; the whole run {p95_bound_all:.2}), calls on never-acting while the budget was busy {never_busy_bound:.2} (≤ 0.50; all of them {never_bound:.2}); row 8's p95 {p95_row8:.2} (≤ 1.05: no worse, within noise)"
    );
    let no_429 = [&a, &b, &c]
        .iter()
        .all(|r| r.iter().all(|m| m.refused == 0));
    let met = p95_bound <= 0.5 && never_busy_bound <= 0.5 && p95_row8 <= 1.05 && no_429;
    let json = json!({
        "compress": compress,
        "row8": a.iter().map(as_json).collect::<Vec<_>>(),
        "budget_bound": b.iter().map(as_json).collect::<Vec<_>>(),
        "shift": c.iter().map(as_json).collect::<Vec<_>>(),
        "shift_recovery": recovered,
        "ratios": {"budget_bound_p95_after_10_min": p95_bound, "budget_bound_p95": p95_bound_all, "budget_bound_never_calls": never_bound, "budget_bound_never_busy_calls": never_busy_bound, "row8_p95": p95_row8},
    });
    Ok((json, table, met))
}
