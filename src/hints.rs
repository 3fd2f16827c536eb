//! Hints — the API's `POST …/hint` and providers' callbacks — as bounded work: one queue per
//! provider of at most [`QUEUE`] sessions, drained by [`WORKERS`] checks at a time per
//! provider, each waiting its turn in the provider's call budget behind regular checks
//! ([`crate::provider::budget::HINT_SHARE`]) and for its slot at most
//! [`crate::provider::HINT_PATIENCE`]. Nothing from outside spawns a task or holds a slot: a
//! hint for a session already queued, or checked within [`WINDOW`], is coalesced; one for a
//! full queue is dropped (`payrecon_hints_total{outcome}` counts each). A dropped hint loses
//! nothing: the session is still checked on its own schedule.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::Ledger;
use crate::provider::Providers;
use crate::reconcile::{self, PassOptions};

/// The most sessions waiting for a hinted check, per provider.
pub const QUEUE: usize = 1024;

/// Hinted checks in flight at once, per provider.
pub const WORKERS: usize = 2;

/// Hints for one session closer together than this count once `[assumed]`: a provider's
/// callbacks and a return page can arrive together, and one check answers them all.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The most sessions whose last hinted check is remembered, per provider.
const MOST_REMEMBERED: usize = 100_000;

/// What became of one hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for a check.
    Queued,
    /// Already queued, or checked within [`WINDOW`]: counted once.
    Coalesced,
    /// The provider's queue is full: dropped (the session keeps its own schedule).
    Dropped,
    /// The session's provider is not configured here: nothing can check it.
    Unconfigured,
}

impl Offer {
    fn label(self) -> &'static str {
        match self {
            Offer::Queued => "queued",
            Offer::Coalesced => "coalesced",
            Offer::Dropped => "dropped",
            Offer::Unconfigured => "unconfigured",
        }
    }
}

#[derive(Default)]
struct State {
    order: VecDeque<String>,
    queued: HashSet<String>,
    /// When each session's hinted check last started.
    started: HashMap<String, Instant>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    ready: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offer(&self, session_id: &str) -> Offer {
        let mut st = self.lock();
        let recent = st
            .started
            .get(session_id)
            .is_some_and(|at| at.elapsed() < WINDOW);
        if recent || st.queued.contains(session_id) {
            return Offer::Coalesced;
        }
        if st.order.len() >= QUEUE {
            return Offer::Dropped;
        }
        st.order.push_back(session_id.to_string());
        st.queued.insert(session_id.to_string());
        drop(st);
        self.ready.notify_one();
        Offer::Queued
    }

    /// The next queued session, noted as started.
    async fn next(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut st = self.lock();
                if let Some(id) = st.order.pop_front() {
                    st.queued.remove(&id);
                    if st.started.len() >= MOST_REMEMBERED {
                        st.started.retain(|_, at| at.elapsed() < WINDOW);
                        if st.started.len() >= MOST_REMEMBERED {
                            st.started.clear();
                        }
                    }
                    st.started.insert(id.clone(), Instant::now());
                    if !st.order.is_empty() {
                        self.ready.notify_one();
                    }
                    return id;
                }
            }
            notified.await;
        }
    }
}

/// What every hint worker of a listener checks with.
struct Checker {
    ledger: Ledger,
    providers: Providers,
    cfg: Config,
    opts: PassOptions,
}

/// The hint queues of one API listener, one per configured provider.
pub struct Hints {
    queues: HashMap<String, Arc<Queue>>,
}

impl Hints {
    /// Queues for every provider of `cfg`, and their workers, which stop with `shutdown`
    /// (a check in flight gives its session back).
    pub fn start(
        ledger: Ledger,
        providers: Providers,
        cfg: Config,
        opts: PassOptions,
        shutdown: CancellationToken,
    ) -> (Arc<Hints>, Vec<tokio::task::JoinHandle<()>>) {
        let opts = PassOptions {
            caller: crate::provider::budget::Caller::Hint,
            ..opts
        };
        let shared = Arc::new(Checker {
            ledger,
            providers,
            cfg,
            opts,
        });
        let mut queues = HashMap::new();
        let mut tasks = Vec::new();
        for p in &shared.cfg.providers {
            let queue = Arc::new(Queue::default());
            queues.insert(p.name.clone(), queue.clone());
            for _ in 0..WORKERS {
                let (queue, shared, shutdown, name) = (
                    queue.clone(),
                    shared.clone(),
                    shutdown.clone(),
                    p.name.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let Checker {
                        ledger,
                        providers,
                        cfg,
                        opts,
                    } = &*shared;
                    loop {
                        let id = tokio::select! {
                            () = shutdown.cancelled() => return,
                            id = queue.next() => id,
                        };
                        // Regular checks first: while they wait for slots, hints take one in
                        // HINT_SHARE.
                        if let Some(b) = providers.get(&name).and_then(|p| p.budget.as_ref()) {
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = b.hint_turn() => {}
                            }
                        }
                        match reconcile::verify(ledger, providers, cfg, opts, &name, &id, &shutdown)
                            .await
                        {
                            Ok(v) => crate::metrics::hint_checked(v.unchecked.is_none()),
                            Err(e) => {
                                tracing::warn!(provider = %name, error = %e, "the check a hint asked for failed")
                            }
                        }
                    }
                }));
            }
        }
        (Arc::new(Hints { queues }), tasks)
    }

    /// Offers a hint for a known PENDING session of `provider`.
    pub fn offer(&self, provider: &str, session_id: &str) -> Offer {
        let offer = match self.queues.get(provider) {
            Some(q) => q.offer(session_id),
            None => Offer::Unconfigured,
        };
        crate::metrics::hint(offer.label());
        offer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_is_bounded_and_coalesces() {
        let q = Queue::default();
        assert_eq!(q.offer("a"), Offer::Queued);
        assert_eq!(q.offer("a"), Offer::Coalesced);
        for i in 1..QUEUE {
            assert_eq!(q.offer(&format!("s{i}")), Offer::Queued);
        }
        assert_eq!(q.offer("one-too-many"), Offer::Dropped);
        assert_eq!(q.next().await, "a");
        // Started within the window: counted once even though it left the queue.
        assert_eq!(q.offer("a"), Offer::Coalesced);
        assert_eq!(q.offer("b"), Offer::Queued);
        assert_eq!(q.offer("c"), Offer::Dropped);
    }
}
