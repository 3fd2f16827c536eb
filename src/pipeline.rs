//! The loop a reconcile pass and the outbox share: claim items in batches (each batch one
//! transaction that leases them), work on them with at most `concurrency` in flight, and record
//! finished results in groups (each group one transaction). Claiming, working and recording
//! overlap, so a slow item delays only itself.
//!
//! Shutdown is the callers': `claim` is not called again once `shutdown` is cancelled, and
//! `work` is expected to notice the token itself and hand its item back unworked.

use std::future::Future;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Finished results are recorded in groups of at most this many.
const RECORD_GROUP: usize = 256;

/// Runs until `claim` returns an empty batch (or an error, or shutdown), then drains what was
/// claimed. Returns the claim error, if any, after every claimed item was worked and recorded.
pub async fn run<T, R, E, CF, WF, RF>(
    batch: usize,
    concurrency: usize,
    shutdown: &CancellationToken,
    mut claim: impl FnMut() -> CF,
    work: impl Fn(T) -> WF,
    mut record: impl FnMut(Vec<R>) -> RF,
) -> Result<(), E>
where
    CF: Future<Output = Result<Vec<T>, E>>,
    WF: Future<Output = R>,
    RF: Future<Output = ()>,
{
    let (tx, rx) = mpsc::channel::<T>(batch.max(1));
    let claimer = async move {
        while !shutdown.is_cancelled() {
            let items = claim().await?;
            if items.is_empty() {
                break;
            }
            for item in items {
                // The receiver lives until this future ends; a send cannot fail before then.
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    };
    let recorder =
        async {
            let results = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|t| (t, rx))
            })
            .map(&work)
            .buffer_unordered(concurrency.max(1))
            .ready_chunks(RECORD_GROUP);
            let mut results = std::pin::pin!(results);
            while let Some(group) = results.next().await {
                record(group).await;
            }
        };
    let (claimed, ()) = tokio::join!(claimer, recorder);
    claimed
}
