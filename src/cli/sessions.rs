//! Sessions in and out: `add`, `import`, `list`, `show`, `resolve`, and how a session is printed.

use std::process::ExitCode;

use crate::clock;
use crate::config::UsageError;
use crate::daemon;
use crate::ledger::{Enqueued, ListFilter, NewSession, Session, Status};

use super::*;

/// `payrecon add`.
pub(super) fn add(cli: &Cli, input: &crate::ledger::SessionInput<'_>) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let (provider, session_id) = (
        input.provider.unwrap_or_default(),
        input.session_id.unwrap_or_default(),
    );
    let flag = |e: &crate::ledger::FieldError| {
        UsageError::new(format!("--{}: {}", e.field.replace('_', "-"), e.message))
    };
    let s = NewSession::from_input(input, |p| cfg.provider(p).is_some()).map_err(|e| {
        if e.field == "provider" {
            let known: Vec<_> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
            UsageError::new(format!(
                "--provider: {} (configured: {})",
                e.message,
                known.join(", ")
            ))
        } else {
            flag(&e)
        }
    })?;
    let ledger = daemon::open_ledger(&cfg)?;
    let shown = (
        crate::escape::shown(provider),
        crate::escape::shown(session_id),
    );
    match ledger.enqueue(&s) {
        Ok(Enqueued::Added) => outln!("added {} {}, due now", shown.0, shown.1),
        Ok(Enqueued::AlreadyPresent) => {
            outln!("already present: {} {} (left unchanged)", shown.0, shown.1)
        }
        Err(crate::ledger::Error::Conflict(c)) => {
            // The flag is named from the field itself, never by editing the message (which
            // quotes the provider and the session id).
            let flag = c.field.replace('_', "-");
            return Err(UsageError::new(format!("--{flag}: {}", c.describe())).into());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `payrecon import`.
pub(super) fn import(cli: &Cli, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    let started = std::time::Instant::now();
    let out = crate::import::run(&cfg, &ledger, file)?;
    let secs = started.elapsed().as_secs_f64();
    let rows = out.added + out.already_present;
    outln!(
        "imported {}: {} added, {} already present, {} rows in {:.2}s ({:.0} rows/s)",
        file.display(),
        out.added,
        out.already_present,
        rows,
        secs,
        rows as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `payrecon list`.
pub(super) fn list(
    cli: &Cli,
    status: &Option<String>,
    provider: &Option<String>,
    limit: &u32,
) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let status = status
        .as_deref()
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| UsageError::new(format!("--status: {e}")))
        })
        .transpose()?;
    let ledger = daemon::open_ledger(&cfg)?;
    let rows = ledger.list(&ListFilter {
        status,
        provider: provider.clone(),
        limit: *limit,
    })?;
    outln!(
        "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  last error",
        "provider",
        "session_id",
        "status",
        "amount",
        "checks",
        "next check / resolved"
    );
    use crate::escape::{shown, shown_or_dash};
    for row in rows {
        let s = match row {
            Ok(s) => s,
            Err(u) => {
                outln!(
                    "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  {}",
                    u.provider,
                    format!("(row {})", u.rowid),
                    "UNREADABLE",
                    "-",
                    "-",
                    "-",
                    shown(&u.error)
                );
                continue;
            }
        };
        outln!(
            "{:<10} {:<32} {:<10} {:>12} {:>6}  {:<24}  {}",
            shown(&s.provider),
            shown(&s.session_id),
            s.status,
            shown_or_dash(s.amount.map(|a| a.to_string()).as_deref()),
            s.checks,
            if s.status == Status::Pending {
                clock::format(s.next_check_at)
            } else {
                clock::format_opt(s.resolved_at).unwrap_or_else(|| "-".into())
            },
            shown(s.last_error.as_deref().unwrap_or(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `payrecon show`.
pub(super) fn show(
    cli: &Cli,
    session_id: &str,
    provider: &Option<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    let s = &one_session(&ledger, session_id, provider.as_deref())?;
    out!("{}", show_session(s));
    outln!("\ntransitions:");
    for t in ledger.transitions(s.rowid)? {
        let by = t
            .actor
            .as_deref()
            .map(|a| format!(" by={}", crate::escape::shown(a)))
            .unwrap_or_default();
        outln!(
            "  {}  {} -> {}  source={}{by}  {}",
            clock::format(t.at),
            t.from,
            t.to,
            t.source,
            crate::escape::shown(t.reason.as_deref().unwrap_or(""))
        );
    }
    outln!("\nevents:");
    for e in ledger.session_events(s.rowid)? {
        outln!(
            "  {}  {}  {}  attempts={}  {}",
            e.created_at,
            e.id,
            e.kind,
            e.attempts,
            e.state()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `payrecon resolve`.
pub(super) fn resolve(
    cli: &Cli,
    session_id: &str,
    to: &str,
    reason: &str,
    by: &str,
    provider: &Option<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let to: Status = to
        .parse()
        .map_err(|e| UsageError::new(format!("--to: {e}")))?;
    let ledger = daemon::open_ledger(&cfg)?;
    let s = one_session(&ledger, session_id, provider.as_deref())?;
    let from = s.status;
    let record = crate::reconcile::manual(&s, to, reason, by, clock::now(), cfg.backoff.late_check)
        .map_err(|e| match e.field() {
            Some(field) => UsageError::new(format!("--{field}: {e}")),
            None => UsageError::new(e.to_string()),
        })?;
    let audit = crate::ledger::Audit {
        actor: by.trim(),
        action: "resolve",
        target: Some(format!("{}/{}", s.provider, s.session_id)),
        detail: Some(format!("{from} -> {to}: {}", reason.trim())),
    };
    let written = ledger.record_decision(
        clock::now(),
        &[record],
        crate::reconcile::contradiction,
        &audit,
    )?;
    let Some(event) = written.first() else {
        anyhow::bail!(
            "session {session_id:?} changed while resolving it; look at it again with `payrecon show`"
        );
    };
    if cfg.events_log {
        crate::events::log(event);
    }
    outln!(
        "{} {}: {from} -> {to} by {} (event {})",
        s.provider,
        crate::escape::shown(&s.session_id),
        crate::escape::shown(by.trim()),
        event.id
    );
    Ok(ExitCode::SUCCESS)
}

/// The one session with this id (narrowed by provider when given), or a usage error.
pub(super) fn one_session(
    ledger: &crate::ledger::Ledger,
    session_id: &str,
    provider: Option<&str>,
) -> anyhow::Result<Session> {
    let mut found = ledger.find(session_id)?;
    if let Some(p) = provider {
        found.retain(|s| s.provider == p);
    }
    match found.len() {
        0 => Err(UsageError::new(format!("no session {session_id:?} in the ledger")).into()),
        1 => Ok(found.remove(0)),
        _ => Err(UsageError::new(format!(
            "session id {session_id:?} exists for several providers ({}); pass --provider",
            found
                .iter()
                .map(|s| s.provider.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

pub(super) fn show_session(s: &Session) -> String {
    let created_at = clock::format(s.created_at);
    let amount = s.amount.map(|a| a.to_string());
    let next_check_at = (s.status == Status::Pending).then(|| clock::format(s.next_check_at));
    let [last_checked_at, lease_until, resolved_at, late_check_at] = [
        s.last_checked_at,
        s.lease_until,
        s.resolved_at,
        s.late_check_at,
    ]
    .map(clock::format_opt);
    let fields: [(&str, Option<&str>); 19] = [
        ("provider", Some(&s.provider)),
        ("session_id", Some(&s.session_id)),
        ("status", Some(s.status.as_str())),
        ("reference", s.reference.as_deref()),
        ("provider_ref", s.provider_ref.as_deref()),
        ("amount", amount.as_deref()),
        ("currency", s.currency.as_deref()),
        ("created_at", Some(&created_at)),
        ("next_check_at", next_check_at.as_deref()),
        ("last_checked_at", last_checked_at.as_deref()),
        ("last_error", s.last_error.as_deref()),
        ("lease_owner", s.lease_owner.as_deref()),
        ("lease_until", lease_until.as_deref()),
        ("provider_status", s.provider_status.as_deref()),
        ("transaction_id", s.transaction_id.as_deref()),
        ("payment_method", s.payment_method.as_deref()),
        ("provider_completed_at", s.provider_completed_at.as_deref()),
        ("resolved_at", resolved_at.as_deref()),
        ("late_check_at", late_check_at.as_deref()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k:<22} {}\n", crate::escape::shown_or_dash(v)));
    }
    out.push_str(&format!(
        "{:<22} {} ({} answered)\n",
        "checks", s.checks, s.answered_checks
    ));
    out.push_str(&format!(
        "{:<22} {}\n",
        "not_found_count", s.not_found_count
    ));
    out
}
