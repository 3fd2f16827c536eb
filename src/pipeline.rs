//! The loop a reconcile pass and the outbox share: claim items in batches (each batch one
//! transaction that leases them), work on them with at most `concurrency` in flight, and record
//! finished results in groups (each group one transaction). Claiming, working and recording
//! overlap — the three run side by side — so a slow item or a slow write delays only itself.
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
    // Working and recording run side by side: while a group is being written, the checks in
    // flight keep going (a lazily polled stream would stall behind the write).
    let (done_tx, mut done_rx) = mpsc::channel::<R>(RECORD_GROUP * 4);
    let worker =
        async move {
            let results = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|t| (t, rx))
            })
            .map(&work)
            .buffer_unordered(concurrency.max(1));
            let mut results = std::pin::pin!(results);
            while let Some(r) = results.next().await {
                // The receiver lives until this future ends; a send cannot fail before then.
                if done_tx.send(r).await.is_err() {
                    break;
                }
            }
        };
    let recorder = async {
        let mut group = Vec::with_capacity(RECORD_GROUP);
        while done_rx.recv_many(&mut group, RECORD_GROUP).await > 0 {
            record(std::mem::take(&mut group)).await;
        }
    };
    let (claimed, (), ()) = tokio::join!(claimer, worker, recorder);
    claimed
}
