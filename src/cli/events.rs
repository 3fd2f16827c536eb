//! `events list` and `events replay`; `unmatched` and `unmatched dismiss`.

use std::process::ExitCode;

use crate::clock;
use crate::config::UsageError;
use crate::daemon;

use super::*;

/// `payrecon events`.
pub(super) fn events(cli: &Cli, command: &EventsCommand) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    match command {
        EventsCommand::List { dead, limit } => {
            let filter = if *dead {
                crate::ledger::EventFilter::Dead
            } else {
                crate::ledger::EventFilter::All
            };
            outln!(
                "{:<30} {:<18} {:<32} {:<9} {:>8}  last error",
                "id",
                "type",
                "session_id",
                "state",
                "attempts"
            );
            for (session_id, e) in ledger.list_events(filter, *limit)? {
                outln!(
                    "{:<30} {:<18} {:<32} {:<9} {:>8}  {}",
                    e.id,
                    e.kind,
                    crate::escape::shown(&session_id),
                    e.state(),
                    e.attempts,
                    crate::escape::shown(e.last_error.as_deref().unwrap_or(""))
                );
            }
        }
        EventsCommand::Replay { id, dead, by } => {
            let by = actor(by);
            let by = plain_name("--by", &by)?;
            let n = ledger.replay(if *dead { None } else { id.as_deref() }, by, clock::now())?;
            if n == 0 && id.is_some() && !dead {
                return Err(UsageError::new(format!(
                    "no event {:?} in the ledger",
                    id.as_deref().unwrap_or("")
                ))
                .into());
            }
            outln!("{n} event(s) back in line; `payrecon run` or `payrecon once` delivers them");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `payrecon unmatched`: the payments a provider lists as paid that no session holds, and a
/// person's dismissal of one.
pub(super) fn unmatched(
    cli: &Cli,
    command: Option<&UnmatchedCommand>,
    all: bool,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    if let Some(UnmatchedCommand::Dismiss { id, by, reason }) = command {
        let by = actor(by);
        let (by, reason) = (plain_name("--by", &by)?, plain_name("--reason", reason)?);
        let u = match ledger.dismiss_unmatched(*id, by, reason, clock::now()) {
            Ok(u) => u,
            Err(crate::ledger::DismissError::Ledger(e)) => return Err(e.into()),
            Err(e) => return Err(UsageError::new(e.to_string()).into()),
        };
        outln!(
            "dismissed unmatched payment {} ({} {} at {}) by {}: {}",
            u.id,
            crate::escape::shown(&u.payment_id),
            crate::escape::shown(&amount_of(&u)),
            crate::escape::shown(&u.provider),
            crate::escape::shown(by),
            crate::escape::shown(reason)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(UnmatchedCommand::Match {
        id,
        session,
        by,
        reason,
    }) = command
    {
        let by = actor(by);
        let (by, reason) = (plain_name("--by", &by)?, plain_name("--reason", reason)?);
        let (u, _) = match ledger.match_unmatched_by_hand(*id, session, by, reason, clock::now()) {
            Ok(done) => done,
            Err(crate::ledger::DismissError::Ledger(e)) => return Err(e.into()),
            Err(e) => return Err(UsageError::new(e.to_string()).into()),
        };
        outln!(
            "matched unmatched payment {} ({} {} at {}) to session {} by {}: {}",
            u.id,
            crate::escape::shown(&u.payment_id),
            crate::escape::shown(&amount_of(&u)),
            crate::escape::shown(&u.provider),
            crate::escape::shown(session),
            crate::escape::shown(by),
            crate::escape::shown(reason)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let filter = if all {
        crate::ledger::UnmatchedFilter::All
    } else {
        crate::ledger::UnmatchedFilter::Open
    };
    outln!(
        "{:>6} {:<10} {:<24} {:<24} {:>16} {:<10} {:<14} {:<24} state",
        "id",
        "provider",
        "payment_id",
        "other_id",
        "amount",
        "status",
        "receipt",
        "first seen"
    );
    for u in ledger.unmatched(filter, limit)? {
        let state = match (&u.matched_session, &u.dismissed_by, &u.reported_at) {
            (Some(s), _, _) => format!("matched to session {}", crate::escape::shown(s)),
            (_, Some(by), _) => format!(
                "dismissed by {} at {}: {}",
                crate::escape::shown(by),
                u.dismissed_at.as_deref().unwrap_or(""),
                crate::escape::shown(u.dismiss_reason.as_deref().unwrap_or(""))
            ),
            (_, _, Some(at)) => format!("OPEN since {at}"),
            (_, _, None) => "within its grace window".to_string(),
        };
        outln!(
            "{:>6} {:<10} {:<24} {:<24} {:>16} {:<10} {:<14} {:<24} {state}",
            u.id,
            crate::escape::shown(&u.provider),
            crate::escape::shown(&u.payment_id),
            crate::escape::shown_or_dash(u.other_id.as_deref()),
            crate::escape::shown(&amount_of(&u)),
            crate::escape::shown(&u.provider_status),
            crate::escape::shown_or_dash(u.receipt.as_deref()),
            u.first_seen_at,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `12.50 KES`, or what of it the provider gave.
fn amount_of(u: &crate::ledger::Unmatched) -> String {
    match (&u.amount, &u.currency) {
        (Some(a), Some(c)) => format!("{a} {c}"),
        (Some(a), None) => a.clone(),
        (None, _) => "-".into(),
    }
}

/// `value` trimmed, when it is 1 to 256 characters of plain text (a name, a reason).
fn plain_name<'a>(flag: &str, value: &'a str) -> anyhow::Result<&'a str> {
    let value = value.trim();
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(UsageError::new(format!("{flag}: 1 to 256 characters of plain text")).into());
    }
    Ok(value)
}

/// `payrecon audit`: the audit log, newest first.
pub(super) fn audit(cli: &Cli, limit: u32) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    outln!(
        "{:<24} {:<16} {:<10} {:<40} detail",
        "at",
        "actor",
        "action",
        "target"
    );
    for a in ledger.audit_log(limit)? {
        outln!(
            "{:<24} {:<16} {:<10} {:<40} {}",
            a.at,
            crate::escape::shown(&a.actor),
            crate::escape::shown(&a.action),
            crate::escape::shown_or_dash(a.target.as_deref()),
            crate::escape::shown(a.detail.as_deref().unwrap_or(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}
