//! The HTTP listeners (`[admin] listen`, `[api] listen`) with bounds an attacker cannot lift:
//! a request's head must arrive within [`HEADER_TIMEOUT`] (and an idle keep-alive connection
//! is closed after as long), a body within [`BODY_TIMEOUT`] (the handlers that read one), at
//! most [`MOST_CONNECTIONS`] connections per listener (one more is closed at once and counted,
//! so a flood of idle connections cannot take the process's file descriptors), and on
//! shutdown every connection gets [`DRAIN`] to finish its request before it is dropped — a
//! stop never waits on what a client holds open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a request's head may take to arrive, and an idle connection may stay open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request's body may take to arrive (read by the handlers that take one).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections one listener holds at once.
pub const MOST_CONNECTIONS: usize = 512;

/// The largest request head (request line and headers).
const MOST_HEADER_BYTES: usize = 16 * 1024;

/// How long connections get to finish on shutdown before they are dropped.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `token` is cancelled; the task ends at most [`DRAIN`]
/// (and a moment) later, whatever clients hold open.
pub fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    token: &CancellationToken,
    name: &'static str,
) -> tokio::task::JoinHandle<()> {
    let stop = token.clone();
    tokio::spawn(
        async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(MOST_CONNECTIONS));
            let mut connections = tokio::task::JoinSet::new();
            let refused = AtomicU64::new(0);
            let mut said: Option<Instant> = None;
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => break,
                    a = listener.accept() => a,
                    // Reap finished connections as they end.
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, mostly: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    crate::metrics::connection_refused(name);
                    let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(
                            refused = n,
                            most = MOST_CONNECTIONS,
                            "connections beyond the listener's most were closed at once"
                        );
                        said = Some(Instant::now());
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // The peer's address, for a handler that trusts a proxy's header only from
                // the proxy (the console's `trusted_proxies`).
                let service = TowerToHyperService::new(
                    app.clone()
                        .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
                );
                let stop = stop.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_header_size(MOST_HEADER_BYTES)
                        .keep_alive(true);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = stop.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(DRAIN, conn).await;
                        }
                    }
                });
            }
            drop(listener);
            // Every connection has DRAIN to finish; what is left then is dropped.
            let _ = tokio::time::timeout(DRAIN + Duration::from_millis(200), async {
                while connections.join_next().await.is_some() {}
            })
            .await;
            connections.abort_all();
        }
        .instrument(tracing::info_span!("server", name)),
    )
}

/// A request body read whole, at most `max` bytes and within [`BODY_TIMEOUT`].
pub async fn body(body: axum::body::Body, max: usize) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Slow),
    }
}

/// Why a body was not read.
pub enum BodyError {
    /// Larger than allowed (or the connection failed while it was read).
    TooLarge,
    /// Not all there within [`BODY_TIMEOUT`].
    Slow,
}
