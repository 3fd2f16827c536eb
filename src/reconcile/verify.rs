//! `verify`: one session checked with its provider now, for a return-URL handler, the command
//! line and each hint; never a stale PENDING passed off as checked.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{PassOptions, ProviderNotes, check_one};
use crate::clock;
use crate::config::Config;
use crate::ledger::{self, Ledger, Record, Session, Status, Via};
use crate::provider::Providers;

/// What [`verify`] found: the session as recorded afterwards (`None` if absent), and why it
/// was not checked, when it is PENDING and no provider answer about it came in during the call.
#[derive(Debug)]
pub struct Verified {
    pub session: Option<Session>,
    /// `Some(why)`: the PENDING session is as it stood, not a fresh answer (its lease held
    /// elsewhere past [`VERIFY_WAIT`], no call slot in time, the provider failed, a signal).
    pub unchecked: Option<String>,
}

/// How long [`verify`] waits for another check of the same session (a pass's, a hint's,
/// another process's) to finish before it answers that it could not check.
pub const VERIFY_WAIT: Duration = Duration::from_secs(5);

/// Checks one session with its provider now and records any transition with `opts.source`
/// (`api` for the HTTP API and `verify`): what a return-URL handler should call instead of
/// trusting the redirect. A final session is returned as it stands. A session another check
/// holds is waited for (at most [`VERIFY_WAIT`]): its outcome, once recorded, is as fresh as
/// our own; if it stays PENDING, this call claims and checks it itself. A PENDING session that
/// got no answer from the provider is returned with [`Verified::unchecked`] saying why, never
/// as if it had been checked. On `shutdown` the claimed session is given back (released).
pub async fn verify(
    ledger: &Ledger,
    providers: &Providers,
    cfg: &Config,
    opts: &PassOptions,
    provider: &str,
    session_id: &str,
    shutdown: &CancellationToken,
) -> Result<Verified, ledger::Error> {
    let get = || {
        let (p, id) = (provider.to_string(), session_id.to_string());
        ledger.call(move |l| l.get(&p, &id))
    };
    let deadline = Instant::now() + VERIFY_WAIT;
    loop {
        if let Some(s) = claim_now(ledger, cfg, opts, provider, session_id).await? {
            let notes = Mutex::new(ProviderNotes::default());
            let (record, note) = check_one(s, providers, cfg, opts, shutdown, &notes).await;
            let unchecked = unchecked(&record, shutdown);
            super::record(ledger, cfg, opts, vec![record], note.into_iter().collect()).await?;
            let session = get().await?;
            let unchecked = unchecked.filter(|_| session.as_ref().is_some_and(pending));
            return Ok(Verified { session, unchecked });
        }
        let session = get().await?;
        if !session.as_ref().is_some_and(pending) {
            // Absent, or final: as it stands is the truth.
            return Ok(Verified {
                session,
                unchecked: None,
            });
        }
        // Leased by another check: wait for it, then check ourselves if it is still PENDING.
        if Instant::now() >= deadline || shutdown.is_cancelled() {
            let why = if !shutdown.is_cancelled() {
                format!(
                    "another check of this session (a pass, a hint or another process) still \
                     held it after {}s",
                    VERIFY_WAIT.as_secs()
                )
            } else {
                "stopped by a signal".into()
            };
            return Ok(Verified {
                session,
                unchecked: Some(why),
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Takes a provider's answer that came to us — a signed callback's body, as the provider's own
/// word — for `s` as a status call's would be taken: the session leased, `decide`d with
/// `opts.source`, recorded by the one record path. `false` when another check holds the session
/// (or it is no longer PENDING): then nothing is written, and the caller hints instead.
pub async fn take_answer(
    ledger: &Ledger,
    cfg: &Config,
    opts: &PassOptions,
    s: &Session,
    answer: crate::provider::Answer,
) -> Result<bool, ledger::Error> {
    let Some(s) = claim_now(ledger, cfg, opts, &s.provider, &s.session_id).await? else {
        return Ok(false);
    };
    let now = clock::now();
    let answer = Ok(answer);
    let note = super::check_note(&s, now, Via::Callback, opts.source, &answer);
    let record = super::decide::decide(
        &s,
        &answer,
        now,
        cfg.backoff_for(&s.provider),
        opts.source,
        fastrand::f64(),
    );
    super::record(ledger, cfg, opts, vec![record], vec![note]).await?;
    Ok(true)
}

/// Leases one PENDING session for a lease's length from now, unless another check holds it
/// (`None` then, or when it is absent or final): what `verify` and `take_answer` both begin by.
async fn claim_now(
    ledger: &Ledger,
    cfg: &Config,
    opts: &PassOptions,
    provider: &str,
    session_id: &str,
) -> Result<Option<Session>, ledger::Error> {
    let (p, id, owner, lease) = (
        provider.to_string(),
        session_id.to_string(),
        opts.owner.clone(),
        cfg.schedule.lease,
    );
    ledger
        .call(move |l| {
            let now = clock::now();
            l.claim_one(&p, &id, &owner, now, clock::add(now, lease))
        })
        .await
}

/// Why a check's outcome is no provider answer (`None`: the provider answered).
fn unchecked(record: &Record, shutdown: &CancellationToken) -> Option<String> {
    match record {
        Record::Transition { .. }
        | Record::Reschedule {
            not_found: Some(_), ..
        }
        | Record::LateCheck { .. } => None,
        Record::Reschedule { last_error, .. } => Some(
            last_error
                .clone()
                .unwrap_or_else(|| "the provider gave no answer".into()),
        ),
        Record::Release { .. } if shutdown.is_cancelled() => {
            Some("stopped by a signal before the provider answered".into())
        }
        Record::Release { last_error, .. } => Some(last_error.clone().unwrap_or_else(|| {
            "no call slot of the provider's rate_limit was free in time".into()
        })),
    }
}

fn pending(s: &Session) -> bool {
    s.status == Status::Pending
}
