//! The daemon's commands: `run`, `once`, `verify`, `check-config`.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{self, Config, UsageError};
use crate::daemon;

use super::sessions::{one_session, show_session};
use super::*;

/// `payrecon verify`.
pub(super) fn verify(
    cli: &Cli,
    session_id: &str,
    provider: &Option<String>,
) -> anyhow::Result<ExitCode> {
    let cfg = load_with_secrets(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    let s = one_session(&ledger, session_id, provider.as_deref())?;
    let verified =
        runtime()?.block_on(daemon::verify(&cfg, &ledger, &s.provider, &s.session_id))?;
    let s = verified
        .session
        .context("the session disappeared while it was verified")?;
    out!("{}", show_session(&s));
    if let Some(why) = verified.unchecked {
        // The session above is as it stood: never passed off as a fresh answer.
        eprintln!(
            "payrecon: not checked: {}; the session is shown as it stood — try again",
            crate::escape::shown(&why)
        );
        return Ok(ExitCode::from(NOT_CHECKED_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify`'s exit status when it could not get an answer from the provider now (EX_TEMPFAIL).
pub const NOT_CHECKED_EXIT: u8 = 75;

/// `payrecon check-config`.
pub(super) fn check_config(cli: &Cli) -> anyhow::Result<ExitCode> {
    let cfg = load_with_secrets(cli)?;
    out!("{}", describe(&cfg));
    let mut problems = cfg.warnings.clone();
    let ledger = ledger_problem(&cfg.ledger);
    // What the ledger has taught, when it exists and opens (nothing is created here).
    let exists = match &cfg.ledger {
        crate::ledger::Location::Path(p) => p.exists(),
        crate::ledger::Location::Url(_) => true,
    };
    if ledger.is_none()
        && exists
        && let Ok(l) = crate::ledger::Ledger::connect(&cfg.ledger)
    {
        super::stats::learned(&cfg, &l)?;
        outln!();
    }
    problems.extend(ledger);
    if !problems.is_empty() {
        let path = cli.config.clone().unwrap_or_else(config::default_path);
        return Err(UsageError::new(format!("{}: {}", path.display(), problems.join("; "))).into());
    }
    outln!("config OK");
    Ok(ExitCode::SUCCESS)
}

/// `payrecon run`.
pub(super) fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let cfg = load_with_secrets(cli)?;
    match run_reconciling(async move { daemon::run(&cfg).await })? {
        daemon::Stop::Terminate => Ok(ExitCode::SUCCESS),
        daemon::Stop::Restart => Ok(ExitCode::from(daemon::RESTART_EXIT)),
    }
}

/// `payrecon once`.
pub(super) fn once(cli: &Cli, all: &bool) -> anyhow::Result<ExitCode> {
    let cfg = load_with_secrets(cli)?;
    let all = *all;
    let once = run_reconciling(async move { daemon::once(&cfg, all).await })?;
    let report = once.pass;
    outln!("{}", report.summary());
    if let Some((delivered, retried, dead)) = once.deliveries {
        outln!("events: {delivered} delivered, {retried} to retry later, {dead} dead");
    }
    if let Some(left) = once.interrupted {
        anyhow::bail!("interrupted: {left} sessions were left unchecked; run it again to go on");
    }
    if !report.refused.is_empty() {
        anyhow::bail!(
            "credentials refused by {}; their sessions were not checked",
            report.refused.join(", ")
        );
    }
    if !report.misdirected.is_empty() {
        anyhow::bail!(
            "{} answered \"not found\" for every session; their 404s were not counted: check base_url",
            report.misdirected.join(", ")
        );
    }
    if report.ledger_errors > 0 {
        anyhow::bail!(
            "{} outcomes could not be recorded; they will be checked again",
            report.ledger_errors
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the ledger cannot be used. A database must connect (and is migrated, as the daemon
/// would). A file is checked without creating anything: an existing file must open as a ledger;
/// otherwise its directory must exist and take a new file.
pub(super) fn ledger_problem(location: &crate::ledger::Location) -> Option<String> {
    let path = match location {
        crate::ledger::Location::Url(_) => {
            return crate::ledger::Ledger::connect(location)
                .err()
                .map(|e| format!("ledger.url: {e}"));
        }
        crate::ledger::Location::Path(path) => path,
    };
    if path.exists() {
        return crate::ledger::Ledger::open(path)
            .err()
            .map(|e| format!("ledger.path: {e}"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Some(format!(
            "ledger.path: the directory {} does not exist",
            dir.display()
        ));
    }
    tempfile::tempfile_in(dir).err().map(|e| {
        format!(
            "ledger.path: cannot create files in {} ({e})",
            dir.display()
        )
    })
}

/// The effective config for `check-config`, secrets shown only as set or not.
pub(super) fn describe(cfg: &Config) -> String {
    let mut out = String::new();
    describe_ledger(cfg, &mut out);
    describe_timing(cfg, &mut out);
    if cfg.providers.is_empty() {
        out.push_str("providers            none configured: add a [providers.NAME] table\n");
    }
    for p in &cfg.providers {
        out.push_str(&describe_provider(p, cfg.own_schedule(&p.name)));
        out.push_str(&describe_pace(&p.name, cfg.backoff_for(&p.name)));
    }
    describe_listeners(cfg, &mut out);
    out
}

/// `check-config`'s ledger lines.
fn describe_ledger(cfg: &Config, out: &mut String) {
    out.push_str(&match &cfg.ledger {
        crate::ledger::Location::Path(p) => format!("ledger.path          {}\n", p.display()),
        crate::ledger::Location::Url(u) => {
            let tls = match crate::ledger::pgtls::split_url(u) {
                Ok((_, t)) => t.to_string(),
                Err(e) => e,
            };
            format!(
                "ledger.url           {}\nledger tls           {tls}\n",
                cfg.ledger
            )
        }
    });
}

/// `check-config`'s schedule, backoff and HTTP lines.
fn describe_timing(cfg: &Config, out: &mut String) {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    out.push_str(&format!(
        "schedule             cron {:?}, batch_size {}, concurrency {}, lease {}, poll {}, young {}, ageing {}\n",
        cfg.schedule.cron_expr,
        cfg.schedule.batch_size,
        cfg.schedule.concurrency,
        d(cfg.schedule.lease),
        cfg.schedule.poll.map_or("off".to_string(), d),
        d(cfg.schedule.young),
        d(cfg.schedule.ageing)
    ));
    out.push_str(&format!(
        "backoff              initial {}, ×{}, max {}, jitter {}, max_age {}, not_found_after {}, late_check {}\n",
        d(cfg.backoff.initial),
        cfg.backoff.multiplier,
        d(cfg.backoff.max),
        cfg.backoff.jitter,
        d(cfg.backoff.max_age),
        cfg.backoff.not_found_after,
        d(cfg.backoff.late_check)
    ));
    let list = |s: &[std::time::Duration]| s.iter().map(|x| d(*x)).collect::<Vec<_>>().join(", ");
    if !cfg.backoff.schedule.is_empty() {
        out.push_str(&format!(
            "backoff.schedule     {} (the last repeating; in place of initial/×/max)\n",
            list(&cfg.backoff.schedule)
        ));
    }
    out.push_str(&format!(
        "http                 timeout {}, retries {}, retry {}..{}, max_body {} bytes; longest check {}\n",
        d(cfg.http.timeout),
        cfg.http.retries,
        d(cfg.http.retry_initial),
        d(cfg.http.retry_max),
        cfg.http.max_body,
        d(cfg.http.worst_check_time())
    ));
}

/// `check-config`'s listener, webhook and log lines.
fn describe_listeners(cfg: &Config, out: &mut String) {
    out.push_str(&format!(
        "admin.listen         {}\n",
        cfg.admin_listen
            .map_or("off".to_string(), |a| a.to_string())
    ));
    out.push_str(&format!(
        "api.listen           {}\n",
        cfg.api.as_ref().map_or("off".to_string(), |a| format!(
            "{}{}",
            a.listen,
            a.token_env
                .as_deref()
                .map_or(String::new(), |v| format!(", token from ${v}"))
        ))
    ));
    out.push_str(&format!(
        "console.listen       {}\n",
        cfg.console.as_ref().map_or("off".to_string(), |c| {
            let who: Vec<String> = c
                .operators
                .iter()
                .map(|o| {
                    format!(
                        "{} ({}, token from ${}{})",
                        o.name,
                        o.role.as_str(),
                        o.token_env,
                        if o.token.is_some() { "" } else { ", NOT SET" }
                    )
                })
                .collect();
            format!(
                "{}{}, operators: {}",
                c.listen,
                if c.secure_cookies {
                    ", Secure cookies"
                } else {
                    ""
                },
                who.join(", ")
            )
        })
    ));
    if let Some(w) = &cfg.webhook {
        out.push_str(&format!(
            "events.webhook       {} ({} secret(s) from ${}, {} attempts)\n",
            w.url,
            w.secrets.len(),
            w.secret_env,
            w.schedule.len() + 1
        ));
    }
    out.push_str(&format!("log.format           {:?}\n", cfg.log_format));
}

/// How a provider's checks are timed, when not simply by its schedule: learned, or a first
/// check that waits.
fn describe_pace(name: &str, b: &crate::config::BackoffConfig) -> String {
    use crate::config::{FirstCheck, Pace};
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let first = match b.first_check {
        FirstCheck::Plausible => "when an answer is plausible (one in ten has come)".to_string(),
        FirstCheck::After(w) if w.is_zero() => "when added".to_string(),
        FirstCheck::After(w) => format!("{} after it is added", d(w)),
    };
    match (b.pace, b.first_check) {
        (Pace::Learned, _) => format!(
            "providers.{name:<10} checks learned from its answers, within its schedule (never sooner than {}; with calls to spare never later than it); first check {first}\n",
            d(crate::reconcile::timing::floor(b))
        ),
        (Pace::Fixed, FirstCheck::After(w)) if w.is_zero() => String::new(),
        (Pace::Fixed, _) => format!("providers.{name:<10} first check {first}\n"),
    }
}

/// One provider's lines of `check-config`: its kind, endpoint, where its keys come from (set or
/// not, never the keys), its limits and timeout, and its own schedule if it has one.
fn describe_provider(
    p: &crate::config::ProviderConfig,
    own_schedule: Option<&[std::time::Duration]>,
) -> String {
    let mut out = String::new();
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let list = |s: &[std::time::Duration]| s.iter().map(|x| d(*x)).collect::<Vec<_>>().join(", ");
    let shown = |what: &str, var: &Option<String>, value: bool| match (var, value) {
        (Some(var), true) => Some(format!("{what} from ${var} (set)")),
        (Some(var), false) => Some(format!("{what} from ${var} (NOT SET)")),
        (None, _) => None,
    };
    let keys: Vec<String> = [
        shown("key", &p.api_key_env, p.api_key.is_some()),
        shown("public key", &p.public_key_env, p.public_key.is_some()),
        shown("secret key", &p.secret_key_env, p.secret_key.is_some()),
        shown(
            "webhook secret",
            &p.webhook_secret_env,
            p.webhook_secret.is_some(),
        ),
        p.webhook_public_key
            .as_ref()
            .map(|_| "callbacks verified with its public key".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let key = if keys.is_empty() {
        "no key".to_string()
    } else {
        keys.join(", ")
    };
    let limits: Vec<String> = p
        .rate_limits
        .iter()
        .map(|(n, per)| format!("{n}/{}", d(*per)))
        .collect();
    out.push_str(&format!(
        "providers.{:<10} kind {}, {}, {key}, rate limit {}, timeout {}{}\n",
        p.name,
        p.kind,
        p.base_url,
        if limits.is_empty() {
            "off".to_string()
        } else {
            limits.join(" and ")
        },
        d(p.timeout),
        if p.long_poll { " (long poll)" } else { "" }
    ));
    if let Some(schedule) = own_schedule {
        out.push_str(&format!(
            "providers.{:<10} schedule {}\n",
            p.name,
            list(schedule)
        ));
    }
    out
}
