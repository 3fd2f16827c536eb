//! The schedule: a croner expression driven by a small tokio loop. Passes never overlap: the
//! loop awaits each pass before it looks for the next tick, so ticks that fall during a long
//! pass are skipped (counted in the log), and the next pass starts at the first tick after the
//! running one ended. Shutdown is only observed between passes and while sleeping; a running
//! pass watches the same token itself.

use std::future::Future;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

/// The schedule stopped because the cron expression has no next tick: `run` must not go on
/// looking healthy while it reconciles nothing.
#[derive(Debug, thiserror::Error)]
#[error("schedule.cron has no next tick ({0}); nothing would ever be reconciled")]
pub struct NoNextTick(String);

/// Runs `pass` at every tick of `cron` until `shutdown` is cancelled; an error when the
/// expression runs out of ticks.
pub async fn run<F, Fut>(
    cron: &croner::Cron,
    shutdown: &CancellationToken,
    mut pass: F,
) -> Result<(), NoNextTick>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let now = Utc::now();
        let next = match cron.find_next_occurrence(&now, false) {
            Ok(t) => t,
            Err(e) => return Err(NoNextTick(e.to_string())),
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        let started = Utc::now();
        pass().await;
        let skipped = cron
            .iter_after(started)
            .take_while(|t| *t <= Utc::now())
            .take(10_000)
            .count();
        if skipped > 0 {
            crate::metrics::skipped(skipped);
            tracing::info!(skipped, "ticks fell during the pass and were skipped");
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
        run(&cron, &token, || async {
            assert_eq!(
                running.fetch_add(1, Ordering::SeqCst),
                0,
                "two passes at once"
            );
            // Longer than one tick: the next tick must be skipped, not run concurrently.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
        let n = runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&n), "{n} passes");
    }
}
