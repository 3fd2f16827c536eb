//! `run` and `once`: opens the ledger and the providers, runs passes (on the schedule, or one),
//! and stops cleanly on SIGTERM or SIGINT: no new claims, in-flight checks abandoned with their
//! leases released, exit within a few seconds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::ledger::{Ledger, Source};
use crate::outbox::Outbox;
use crate::provider;
use crate::reconcile::{self, PassOptions, PassReport};
use crate::schedule;

/// How long a stopping daemon waits for its pass to record and release before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A lease owner id unique to this process.
pub fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token: String = (0..6).map(|_| fastrand::alphanumeric()).collect();
    format!("{}:{}:{token}", host.trim(), std::process::id())
}

/// Opens the ledger named by the config, with the path in any error.
pub fn open_ledger(cfg: &Config) -> anyhow::Result<Ledger> {
    Ok(Ledger::open(&cfg.ledger_path)?)
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `once` did.
pub struct OnceReport {
    pub pass: PassReport,
    /// `(delivered, retried, dead)` when a webhook is configured.
    pub deliveries: Option<(u64, u64, u64)>,
}

/// The outbox for this config, on its own ledger connection, if a webhook is configured.
fn outbox(cfg: &Config, owner: &str) -> anyhow::Result<Option<Outbox>> {
    let Some(w) = &cfg.webhook else {
        return Ok(None);
    };
    let ledger = open_ledger(cfg)?;
    Ok(Some(
        Outbox::new(ledger, w.clone(), owner.to_string()).context("building the webhook client")?,
    ))
}

/// One pass over the sessions due now (or every PENDING one with `all`), then delivery of the
/// events due; ended early by a signal.
pub async fn once(cfg: &Config, all: bool) -> anyhow::Result<OnceReport> {
    let ledger = open_ledger(cfg)?;
    let providers = provider::build(cfg).context("building the HTTP client")?;
    let token = CancellationToken::new();
    let watcher = {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("signal received; releasing claimed sessions");
            token.cancel();
        })
    };
    let owner = owner_id();
    let opts = PassOptions {
        owner: owner.clone(),
        all,
        source: if all { Source::Backfill } else { Source::Poll },
        wake_outbox: None,
    };
    let pass = reconcile::run_pass(&ledger, &providers, cfg, &opts, &token).await?;
    let deliveries = match outbox(cfg, &owner)? {
        None => None,
        Some(outbox) => {
            outbox.deliver_due(&token).await?;
            Some(outbox.counters.snapshot())
        }
    };
    watcher.abort();
    Ok(OnceReport { pass, deliveries })
}

/// The daemon: a pass at every tick of `[schedule] cron` and, beside it, the outbox, until
/// SIGTERM or SIGINT.
pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let ledger = open_ledger(cfg)?;
    let providers = provider::build(cfg).context("building the HTTP client")?;
    let token = CancellationToken::new();
    let owner = owner_id();
    let wake = Arc::new(Notify::new());
    let outbox_task = outbox(cfg, &owner)?.map(|outbox| {
        let (wake, token) = (wake.clone(), token.clone());
        tokio::spawn(
            async move { outbox.run(wake, token).await }.instrument(tracing::info_span!("outbox")),
        )
    });
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let opts = PassOptions {
        owner,
        all: false,
        source: Source::Poll,
        wake_outbox: outbox_task.as_ref().map(|_| wake.clone()),
    };
    tracing::info!(
        ledger = %cfg.ledger_path.display(),
        cron = %cfg.schedule.cron_expr,
        providers = cfg.providers.len(),
        webhook = cfg.webhook.is_some(),
        owner = %opts.owner,
        "payrecon running"
    );
    let work = schedule::run(&cfg.schedule.cron, &token, || async {
        match reconcile::run_pass(&ledger, &providers, cfg, &opts, &token).await {
            Ok(r) if r.claimed > 0 => {
                tracing::info!(
                    claimed = r.claimed,
                    resolved = r.resolved(),
                    "{}",
                    r.summary()
                );
                for p in &r.refused {
                    tracing::error!(provider = %p, "credentials refused during the pass");
                }
            }
            Ok(_) => tracing::debug!("pass found nothing due"),
            Err(e) => {
                tracing::error!(error = %e, "pass failed; sessions will be retried when their leases end")
            }
        }
    });
    let mut work = std::pin::pin!(work);
    tokio::select! {
        () = &mut work => {}
        () = shutdown_signal() => {
            tracing::info!("signal received; stopping");
            token.cancel();
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await.is_err() {
                anyhow::bail!("the pass did not stop within {}s; its leases will expire", SHUTDOWN_GRACE.as_secs());
            }
        }
    }
    if let Some(task) = outbox_task {
        token.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
            anyhow::bail!(
                "event delivery did not stop within {}s; its leases will expire",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
    tracing::info!("payrecon stopped");
    Ok(())
}
