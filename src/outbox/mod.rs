//! The outbox: delivers event rows to the configured webhook, at least once. Events are claimed
//! with a lease (two daemons never send one event at the same time), POSTed with the Standard
//! Webhooks headers, and marked delivered only after a 2xx — so a crash at any instant means at
//! worst a second delivery with the same `webhook-id`. Failures are retried on
//! `[events.webhook] schedule` (a 429's `Retry-After` is honoured), then the event is dead and
//! kept for `events replay`; 410 Gone kills it at once.
//!
//! Delivery runs beside reconciliation, on its own ledger connection: a slow or dead receiver
//! holds up nothing but its own events.

pub mod sign;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::WebhookConfig;
use crate::http;
use crate::ledger::{self, AttemptNote, Delivery, Ledger, OutboxEvent};
use crate::pipeline;

/// How often the outbox looks for due events when nothing wakes it (events committed by another
/// process, retries coming due).
const POLL: Duration = Duration::from_millis(500);

/// Events claimed per transaction.
const BATCH: u32 = 100;

/// Recording deliveries the ledger could not be reached for is tried again after 0.2, 0.4,
/// 0.8 and 1.6 s (3 s in all) before the events are left to be sent again.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(200);
const RECORD_RETRY_LAST: Duration = Duration::from_millis(1600);

/// A receiver's answer body is read (and thrown away) up to this size, so the connection can be
/// reused; a longer one is dropped.
const MAX_RESPONSE: usize = 64 * 1024;

/// Delivery counters, for summaries (and metrics later).
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    /// Attempts that failed and were scheduled again.
    pub retried: AtomicU64,
    pub dead: AtomicU64,
}

impl Counters {
    /// `(delivered, retried, dead)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.dead.load(Ordering::Relaxed),
        )
    }
}

/// The webhook sender.
pub struct Outbox {
    ledger: Ledger,
    client: reqwest::Client,
    cfg: WebhookConfig,
    owner: String,
    /// Whether attempts go to the history of deliveries (`[ledger] history`).
    history: bool,
    pub counters: Arc<Counters>,
}

/// Why one attempt failed.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
    gone: bool,
}

impl Outbox {
    /// An outbox on its own handle to the ledger.
    pub fn new(
        ledger: Ledger,
        cfg: WebhookConfig,
        owner: String,
    ) -> Result<Outbox, reqwest::Error> {
        let client = http::client(cfg.timeout)?;
        Ok(Outbox {
            ledger,
            client,
            cfg,
            owner,
            history: true,
            counters: Arc::default(),
        })
    }

    /// Whether delivery attempts are kept in the history (`[ledger] history`; on by default).
    pub fn keep_history(mut self, keep: bool) -> Outbox {
        self.history = keep;
        self
    }

    /// Delivers every event due now, then returns. On shutdown, claimed events not yet sent
    /// are released.
    pub async fn deliver_due(&self, shutdown: &CancellationToken) -> Result<(), ledger::Error> {
        let claim = || async {
            let (owner, lease) = (self.owner.clone(), self.cfg.lease());
            self.ledger
                .call(move |l| {
                    let now = clock::now();
                    l.claim_events(&owner, now, clock::add(now, lease), BATCH)
                })
                .await
        };
        let work = |e: OutboxEvent| async move {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => (Delivery::Release { seq: e.seq }, None),
                d = self.deliver(&e) => d,
            }
        };
        let record = |done: Vec<(Delivery, Option<AttemptNote>)>| async move {
            let (results, attempts): (Vec<Delivery>, Vec<Option<AttemptNote>>) =
                done.into_iter().unzip();
            let attempts: Vec<AttemptNote> = match self.history {
                true => attempts.into_iter().flatten().collect(),
                false => Vec::new(),
            };
            for d in &results {
                let c = match d {
                    Delivery::Delivered { .. } => &self.counters.delivered,
                    Delivery::Retry { .. } => &self.counters.retried,
                    Delivery::Dead { .. } => &self.counters.dead,
                    Delivery::Release { .. } => continue,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            // The receivers have these: a database out of reach for a moment (a reset, a
            // restart) is worth a few short waits before they are sent again. Every statement
            // of the record is guarded (`delivered_at IS NULL`, the lease's owner), so one
            // that committed unseen is not applied twice.
            let mut wait = RECORD_RETRY_FIRST;
            loop {
                let (owner, results) = (self.owner.clone(), results.clone());
                let attempts = attempts.clone();
                let e = match self
                    .ledger
                    .call(move |l| l.record_deliveries(&owner, clock::now(), &results, &attempts))
                    .await
                {
                    Ok(()) => break,
                    Err(e) => e,
                };
                if e.unreachable() && wait <= RECORD_RETRY_LAST && !shutdown.is_cancelled() {
                    tracing::warn!(error = %e, retry_in = ?wait, "could not record deliveries; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => {}
                    }
                    wait *= 2;
                    continue;
                }
                // Unmarked events fall due again when their leases end: sent twice, never lost.
                tracing::error!(error = %e, "could not record deliveries; those events will be sent again");
                break;
            }
        };
        pipeline::run(
            BATCH as usize,
            self.cfg.concurrency,
            shutdown,
            claim,
            work,
            record,
        )
        .await
    }

    /// The delivery loop of `run`: a sweep whenever `wake` fires or every [`POLL`], until
    /// shutdown.
    pub async fn run(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.deliver_due(&shutdown).await {
                tracing::error!(error = %e, "event delivery sweep failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One attempt at one event, turned into what to record and its line in the history of
    /// deliveries (none for an attempt not made).
    async fn deliver(&self, e: &OutboxEvent) -> (Delivery, Option<AttemptNote>) {
        let (at, began) = (clock::now(), std::time::Instant::now());
        let d = self.deliver_inner(e).await;
        let (result, error) = match &d {
            Delivery::Delivered { .. } => ("delivered", None),
            Delivery::Retry { error, .. } => ("retried", Some(error.clone())),
            Delivery::Dead { error, .. } => ("dead", Some(error.clone())),
            Delivery::Release { .. } => return (d, None),
        };
        let took = began.elapsed();
        crate::metrics::delivery(result, took);
        let note = AttemptNote {
            event: e.seq,
            at,
            outcome: result,
            error,
            took_ms: took.as_millis() as u64,
        };
        (d, Some(note))
    }

    async fn deliver_inner(&self, e: &OutboxEvent) -> Delivery {
        let failure = match self.attempt(e).await {
            Ok(()) => {
                tracing::debug!(event_id = %e.id, "event delivered");
                return Delivery::Delivered { seq: e.seq };
            }
            Err(f) => f,
        };
        let done = e.attempts as usize + 1;
        if failure.gone {
            tracing::warn!(event_id = %e.id, "receiver answered 410 Gone; event is dead");
            return Delivery::Dead {
                seq: e.seq,
                error: failure.message,
            };
        }
        match self.cfg.schedule.get(done - 1) {
            None => {
                tracing::warn!(event_id = %e.id, attempts = done, error = %failure.message, "event is dead after its last attempt; `payrecon events replay` resends it");
                Delivery::Dead {
                    seq: e.seq,
                    error: failure.message,
                }
            }
            Some(delay) => {
                let wait = failure.retry_after.map_or(*delay, |ra| ra.max(*delay));
                tracing::info!(event_id = %e.id, attempts = done, error = %failure.message, retry_in = %humantime::format_duration(wait), "event delivery failed; will retry");
                Delivery::Retry {
                    seq: e.seq,
                    next_attempt_at: clock::add(clock::now(), wait),
                    error: failure.message,
                }
            }
        }
    }

    async fn attempt(&self, e: &OutboxEvent) -> Result<(), Failure> {
        let fail = |message: String| Failure {
            message,
            retry_after: None,
            gone: false,
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign::signature(&self.cfg.secrets, &e.id, timestamp, e.payload.as_bytes());
        let id = HeaderValue::from_str(&e.id)
            .map_err(|_| fail("event id is not a header value".into()))?;
        let signature = HeaderValue::from_str(&signature)
            .map_err(|_| fail("signature is not a header value".into()))?;
        let response = self
            .client
            .post(self.cfg.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(e.payload.clone())
            .send()
            .await
            .map_err(|err| {
                fail(match http::transport(err) {
                    http::Transport::Timeout => "timed out".to_string(),
                    http::Transport::Failed(m) => format!("connection failed: {m}"),
                })
            })?;
        let status = response.status();
        let retry_after = http::retry_after(response.headers(), chrono::Utc::now());
        // Drain a little of the answer so the connection can be reused; its content is ignored.
        let _ = http::read_capped(response, MAX_RESPONSE).await;
        if status.is_success() {
            return Ok(());
        }
        Err(Failure {
            message: format!("HTTP {}", status.as_u16()),
            retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(retry_after)
                .flatten(),
            gone: status == StatusCode::GONE,
        })
    }
}
