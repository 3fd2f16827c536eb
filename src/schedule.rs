//! The schedule: a croner expression driven by a small tokio loop, and between its ticks the
//! sessions' own due times. Passes never overlap: the loop awaits each pass before it looks
//! for the next one, so ticks that fall during a long pass are skipped (counted in the log).
//! With `poll`, the loop also looks up the earliest due time (at least every `poll`) and starts
//! a pass when it arrives, and starts the next pass at once after one that claimed sessions
//! while more are due. Shutdown is only observed between passes and while sleeping; a running
//! pass watches the same token itself.

use std::future::Future;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// The schedule stopped because the cron expression has no next tick: `run` must not go on
/// looking healthy while it reconciles nothing.
#[derive(Debug, thiserror::Error)]
#[error("schedule.cron has no next tick ({0}); nothing would ever be reconciled")]
pub struct NoNextTick(String);

/// Runs `pass` at every tick of `cron` and, with `poll`, whenever `due` (the earliest due
/// time) has arrived, until `shutdown` is cancelled; an error when the expression runs out of
/// ticks. `pass` says whether it claimed anything.
pub async fn run<F, Fut, D, DFut>(
    cron: &croner::Cron,
    poll: Option<std::time::Duration>,
    shutdown: &CancellationToken,
    mut pass: F,
    mut due: D,
) -> Result<(), NoNextTick>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
    D: FnMut() -> DFut,
    DFut: Future<Output = Option<DateTime<Utc>>>,
{
    let mut claimed = false;
    loop {
        let now = Utc::now();
        let tick = match cron.find_next_occurrence(&now, false) {
            Ok(t) => t,
            Err(e) => return Err(NoNextTick(e.to_string())),
        };
        let mut at = tick;
        if let Some(poll) = poll {
            let soon = now + chrono::Duration::from_std(poll).unwrap_or_default();
            at = match due().await {
                // More is due after a pass that claimed: the next pass at once.
                Some(d) if d <= now && claimed => now,
                Some(d) if d > now => at.min(d).min(soon),
                // Nothing due, or due but not claimable (leased, out of budget): look again soon.
                _ => at.min(soon),
            };
        }
        let wait = (at - now).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        if poll.is_some() && Utc::now() < tick && due().await.is_none_or(|d| d > Utc::now()) {
            claimed = false;
            continue;
        }
        let started = Utc::now();
        claimed = pass().await;
        let skipped = cron
            .iter_after(started)
            .take_while(|t| *t <= Utc::now())
            .take(10_000)
            .count();
        if skipped > 0 {
            crate::metrics::skipped(skipped);
            if poll.is_none() {
                tracing::info!(skipped, "ticks fell during the pass and were skipped");
            }
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn passes_never_overlap_and_stop_on_shutdown() {
        let cron: croner::Cron = "* * * * * *".parse().unwrap();
        let token = CancellationToken::new();
        let running = AtomicU32::new(0);
        let runs = AtomicU32::new(0);
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            t2.cancel();
        });
        let pass = || async {
            assert_eq!(
                running.fetch_add(1, Ordering::SeqCst),
                0,
                "two passes at once"
            );
            // Longer than one tick: the next tick must be skipped, not run concurrently.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            runs.fetch_add(1, Ordering::SeqCst);
            true
        };
        run(&cron, None, &token, pass, || async { None })
            .await
            .unwrap();
        let n = runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&n), "{n} passes");
    }
}
