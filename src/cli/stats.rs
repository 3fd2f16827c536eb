//! `stats`: the ledger at a glance, as tables.

use std::process::ExitCode;

use crate::clock;
use crate::daemon;
use crate::ledger::Status;

use super::*;

/// `payrecon stats`.
pub(super) fn stats(cli: &Cli) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    let st = ledger.stats(clock::now())?;
    out!("{:<12}", "provider");
    for s in Status::ALL {
        out!(" {:>10}", s.as_str());
    }
    outln!();
    let mut providers: Vec<&str> = st.sessions.iter().map(|(p, _, _)| p.as_str()).collect();
    providers.dedup();
    for p in providers {
        out!("{:<12}", crate::escape::shown(p));
        for s in Status::ALL {
            let n = st
                .sessions
                .iter()
                .find(|(pp, ss, _)| pp == p && ss == s.as_str())
                .map_or(0, |r| r.2);
            out!(" {n:>10}");
        }
        outln!();
    }
    outln!("\ncompleted    currency      count                 sum");
    for (currency, n, sum) in &st.completed {
        outln!(
            "             {:<8} {n:>10} {sum:>19}",
            crate::escape::shown_or_dash(Some(currency.as_str()).filter(|c| !c.is_empty()))
        );
    }
    learned(&cfg, &ledger)?;
    outln!("\ndue now: {}", st.due_now);
    outln!(
        "late checks waiting: {}; anomalies: {}",
        st.late_checks_waiting,
        st.anomalies
    );
    if st.unmatched_open > 0 {
        outln!(
            "UNMATCHED PAYMENTS: {} payments the provider lists as paid are held by no session \
             (`payrecon unmatched`)",
            st.unmatched_open
        );
    }
    if st.unreadable > 0 {
        outln!(
            "UNREADABLE ROWS: {} PENDING sessions rows payrecon cannot read are set aside \
             (`payrecon list` shows them; fix or delete them)",
            st.unreadable
        );
    }
    for p in &st.providers {
        if let (Some(at), Some(err)) = (p.auth_refused_at, &p.auth_error) {
            outln!(
                "provider {}: CREDENTIALS REFUSED at {}: {err}",
                p.provider,
                clock::format(at)
            );
        }
        if let (Some(at), Some(err)) = (p.misdirected_at, &p.misdirected_error) {
            outln!(
                "provider {}: NOT FOUND FOR EVERY SESSION since {}: {err}",
                p.provider,
                clock::format(at)
            );
        }
        if let Some(until) = p.paused_until.filter(|t| *t > clock::now()) {
            outln!(
                "provider {}: paused after HTTP 429 until {}",
                p.provider,
                clock::format(until)
            );
        }
    }
    outln!(
        "events: {} total, {} waiting, {} dead",
        st.events_total,
        st.events_waiting,
        st.events_dead
    );
    Ok(ExitCode::SUCCESS)
}

/// The answer times learned per provider from the ledger (`reconcile::timing`), and for each
/// provider with `schedule = "learned"` when its first check comes: `stats` and `check-config`.
pub(super) fn learned(
    cfg: &crate::config::Config,
    ledger: &crate::ledger::Ledger,
) -> anyhow::Result<()> {
    let learned = crate::reconcile::timing::learn_all(cfg, ledger, clock::now())?;
    if !learned.is_empty() {
        outln!(
            "\nanswers, learned  answers expired    p50      p90      p95      p99  never  (last {}, half-life {})",
            humantime::format_duration(crate::reconcile::timing::window(
                cfg.schedule.learn_half_life
            )),
            humantime::format_duration(cfg.schedule.learn_half_life)
        );
        for l in &learned {
            let q = l.quantiles.map(crate::reconcile::timing::shown);
            outln!(
                "{:<17} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6}{}",
                crate::escape::shown(&l.provider),
                l.answers,
                l.expired,
                q[0],
                q[1],
                q[2],
                q[3],
                l.never
                    .map_or("-".to_string(), |n| format!("{:.0}%", n * 100.0)),
                if l.mostly_prior() {
                    "  (mostly the schedule's guess)"
                } else {
                    ""
                }
            );
        }
        for l in &learned {
            let b = cfg.backoff_for(&l.provider);
            if b.pace == crate::config::Pace::Learned {
                let first = match b.first_check {
                    crate::config::FirstCheck::Plausible => l.plausible(),
                    crate::config::FirstCheck::After(d) => d,
                };
                outln!(
                    "{}: checks timed by these (schedule = \"learned\"); first check {} after a session is added",
                    crate::escape::shown(&l.provider),
                    crate::reconcile::timing::shown(first)
                );
            }
        }
    }
    Ok(())
}
