//! Machinery for payrecon's tests and its benchmark (`payrecon-bench`), kept out of the
//! product:
//! - [`pg`]: a throwaway PostgreSQL server;
//! - [`pgbouncer`]: a throwaway PgBouncer in transaction pooling mode in front of it;
//! - [`proxy`]: a TCP fault proxy (latency, resets, stalls, trickles, refusals) for any link;
//! - [`sql`]: SQL on a ledger's database over a connection of its own;
//! - [`BEHAVIOURS`]: simulator behaviours with the states they must end in;
//! - [`Arrivals`]: when requests reached a server (the simulator), to measure a rate limit
//!   from the provider's side.

pub mod pg;
pub mod pgbouncer;
pub mod proxy;
pub mod sql;

use std::sync::{Arc, Mutex};

/// A mix of the simulator's behaviours and the state each must end in, for the crash test and
/// the soak: written from docs/simulator.md (the table of FINAL and FAULT answers) and the state
/// machine, not computed by payrecon. `notfound` ends EXPIRED after `not_found_after` 404s; the
/// wrong amount, the underpayment and the wrong reference end in REVIEW, never COMPLETED.
pub const BEHAVIOURS: &[(&str, &str)] = &[
    ("complete", "COMPLETED"),
    ("complete", "COMPLETED"),
    ("complete-2", "COMPLETED"),
    ("5xx-1.complete", "COMPLETED"),
    ("html-1.complete", "COMPLETED"),
    ("truncated-1.complete", "COMPLETED"),
    ("complete.slow-50", "COMPLETED"),
    ("fail", "FAILED"),
    ("fail-1", "FAILED"),
    ("cancel", "CANCELLED"),
    ("expire", "EXPIRED"),
    ("notfound", "EXPIRED"),
    ("amount", "REVIEW"),
    ("underpaid", "REVIEW"),
    ("reference", "REVIEW"),
];
use std::time::{Duration, Instant};

/// The arrival times of the GET requests (the providers' status endpoints) a router served
/// once wrapped with [`Arrivals::layer`], kept only after [`Arrivals::start`].
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Option<Vec<Instant>>>>);

impl Arrivals {
    /// Starts keeping arrival times (anew).
    pub fn start(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// `router` with every GET's arrival noted.
    pub fn layer(&self, router: axum::Router) -> axum::Router {
        let me = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                if request.method() == axum::http::Method::GET
                    && let Some(times) = me.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
                {
                    times.push(Instant::now());
                }
                next.run(request)
            },
        ))
    }

    /// Serves `router` on `listener`, every GET's arrival noted, until `shutdown`.
    pub fn serve(
        &self,
        listener: tokio::net::TcpListener,
        router: axum::Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let app = self.layer(router);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        })
    }

    /// The most requests that arrived within any `window` (sliding) since [`Arrivals::start`].
    pub fn max_in_window(&self, window: Duration) -> usize {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(t) => Self::max_in(&t.iter().map(|t| t.elapsed()).collect::<Vec<_>>(), window),
            None => 0,
        }
    }

    /// The arrivals at or after `since`, as offsets from it.
    pub fn times_since(&self, since: Instant) -> Vec<Duration> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(t) => t
                .iter()
                .filter(|t| **t >= since)
                .map(|t| t.duration_since(since))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The most of `times` (in any order) within any `window` (sliding).
    pub fn max_in(times: &[Duration], window: Duration) -> usize {
        let mut times = times.to_vec();
        times.sort();
        let (mut best, mut start) = (0, 0);
        for end in 0..times.len() {
            while times[end].abs_diff(times[start]) >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}
