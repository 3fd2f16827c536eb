//! A TCP fault proxy on loopback, for links the kernel here cannot disturb (no `netem`): it
//! forwards bytes between a client and one upstream address, and disturbs them as its
//! [`Faults`] say — switchable at any moment, read afresh for every chunk forwarded, so
//! long-lived connections (a PostgreSQL pool, HTTP keep-alive) feel a change at once.
//!
//! - **latency** and **jitter**: each chunk, in either direction, waits `latency` plus up to
//!   `jitter` more (uniform) before it is forwarded; order is kept.
//! - **reset**: a chunk from upstream is cut part-way — the first half forwarded, then both
//!   sockets closed with `SO_LINGER` 0, so each end sees a reset in the middle of a response.
//! - **stall**: a chunk from upstream waits the stall's length first (a server gone quiet).
//! - **trickle**: chunks from upstream go out a few bytes at a time.
//! - **refuse**: new connections are reset as soon as they are accepted; **down**: the port is
//!   closed, so connecting is refused (`ECONNREFUSED`), until it is opened again.
//!
//! It runs on a thread of its own (its own runtime), so it serves sync code, tests and
//! benchmarks alike, and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

/// What the proxy does to the bytes it forwards; the default forwards them untouched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added to every chunk, in both directions.
    pub latency: Duration,
    /// Up to this much more, uniformly at random, per chunk.
    pub jitter: Duration,
    /// The chance (0–1) that a chunk from upstream is cut part-way by a reset.
    pub reset: f64,
    /// The chance (0–1) that a chunk from upstream waits `stall_for` first.
    pub stall: f64,
    pub stall_for: Duration,
    /// `Some((bytes, every))`: chunks from upstream go out `bytes` at a time, `every` apart.
    pub trickle: Option<(usize, Duration)>,
    /// The chance (0–1) that a new connection is reset as soon as it is accepted.
    pub refuse: f64,
    /// The listening port is closed: connecting is refused.
    pub down: bool,
}

/// What the proxy has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub connections: u64,
    pub refused: u64,
    pub resets: u64,
    pub stalls: u64,
    pub trickled: u64,
    pub delayed: u64,
    /// Times the port was closed (`down`).
    pub downs: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    trickled: AtomicU64,
    delayed: AtomicU64,
    downs: AtomicU64,
}

struct Shared {
    faults: Mutex<Faults>,
    changed: Notify,
    counts: Counters,
    stopping: AtomicBool,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running proxy; dropping it stops it and cuts its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 (a free port) to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy, String> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// A proxy on `listen` (port 0: a free one) to `upstream`.
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<FaultProxy, String> {
        let std_listener =
            std::net::TcpListener::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| format!("the proxy's address: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            changed: Notify::new(),
            counts: Counters::default(),
            stopping: AtomicBool::new(false),
        });
        let me = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(_) => return,
                };
                rt.block_on(serve(std_listener, addr, upstream, me));
            })
            .map_err(|e| format!("starting the proxy thread: {e}"))?;
        Ok(FaultProxy {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches to `faults`, from the next chunk on.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        self.shared.changed.notify_waiters();
    }

    /// Forwards untouched again.
    pub fn clear(&self) {
        self.set(Faults::default());
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    pub fn counts(&self) -> Counts {
        let c = &self.shared.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            connections: get(&c.connections),
            refused: get(&c.refused),
            resets: get(&c.resets),
            stalls: get(&c.stalls),
            trickled: get(&c.trickled),
            delayed: get(&c.delayed),
            downs: get(&c.downs),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts until stopped; closes and reopens the port as `down` says.
async fn serve(
    first: std::net::TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut listener = TcpListener::from_std(first).ok();
    loop {
        // Returning drops the runtime, and with it every connection's task.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let changed = shared.changed.notified();
        let down = shared.faults().down;
        match (&listener, down) {
            (Some(_), true) => {
                listener = None;
                shared.counts.downs.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            (None, false) => {
                listener = reopen(addr);
                if listener.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            _ => {}
        }
        let Some(l) = &listener else {
            // Down: wait for a change.
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
            continue;
        };
        tokio::select! {
            _ = changed => {}
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                shared.counts.connections.fetch_add(1, Ordering::Relaxed);
                if fastrand::f64() < shared.faults().refuse {
                    shared.counts.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                tokio::spawn(connection(client, upstream, shared.clone()));
            }
        }
    }
}

fn reopen(addr: SocketAddr) -> Option<TcpListener> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    socket.listen(1024).ok()
}

/// Why a pump stopped early.
enum Cut {
    Reset,
    Io,
}

/// One client connection: forwards both ways until both ends close, or a reset cuts it.
async fn connection(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // The upstream refused: so does the proxy (a reset, as near as a proxy can).
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        tokio::try_join!(
            pump(&mut cr, &mut sw, false, &shared),
            pump(&mut sr, &mut cw, true, &shared),
        )
    };
    if let Err(Cut::Reset) = outcome {
        shared.counts.resets.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Forwards one direction; `down` is upstream to client, where responses are disturbed.
async fn pump(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    down: bool,
    shared: &Shared,
) -> Result<(), Cut> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.map_err(|_| Cut::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let f = shared.faults();
        let delay = f.latency + f.jitter.mul_f64(fastrand::f64());
        if !delay.is_zero() {
            shared.counts.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
        let chunk = &buf[..n];
        if down && fastrand::f64() < f.reset {
            let _ = to.write_all(&chunk[..n / 2]).await;
            let _ = to.flush().await;
            return Err(Cut::Reset);
        }
        if down && fastrand::f64() < f.stall {
            shared.counts.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(f.stall_for).await;
        }
        match f.trickle {
            Some((bytes, every)) if down => {
                shared.counts.trickled.fetch_add(1, Ordering::Relaxed);
                for piece in chunk.chunks(bytes.max(1)) {
                    to.write_all(piece).await.map_err(|_| Cut::Io)?;
                    to.flush().await.map_err(|_| Cut::Io)?;
                    tokio::time::sleep(every).await;
                }
            }
            _ => to.write_all(chunk).await.map_err(|_| Cut::Io)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// An upstream that answers each connection's request with `reply` (then closes).
    fn upstream(reply: &'static [u8]) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    let _ = s.read(&mut b);
                    let _ = s.write_all(reply);
                });
            }
        });
        addr
    }

    fn ask(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"ping")?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    }

    const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"status\":\"PAID\"}\r\n";

    #[test]
    fn each_fault_does_what_it_says_and_clears() {
        let p = FaultProxy::start(upstream(REPLY)).unwrap();
        assert_eq!(ask(p.addr()).unwrap(), REPLY, "untouched by default");

        p.set(Faults {
            latency: Duration::from_millis(150),
            ..Faults::default()
        });
        let t = Instant::now();
        assert_eq!(ask(p.addr()).unwrap(), REPLY);
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "both directions wait"
        );

        p.set(Faults {
            reset: 1.0,
            ..Faults::default()
        });
        match ask(p.addr()) {
            Ok(got) => assert!(got.len() < REPLY.len(), "cut part-way: {got:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        assert!(p.counts().resets >= 1);

        p.set(Faults {
            trickle: Some((4, Duration::from_millis(20))),
            ..Faults::default()
        });
        let t = Instant::now();
        assert_eq!(ask(p.addr()).unwrap(), REPLY);
        assert!(t.elapsed() >= Duration::from_millis(20 * (REPLY.len() as u64 / 4 - 1)));

        p.set(Faults {
            stall: 1.0,
            stall_for: Duration::from_millis(400),
            ..Faults::default()
        });
        let t = Instant::now();
        assert_eq!(ask(p.addr()).unwrap(), REPLY);
        assert!(t.elapsed() >= Duration::from_millis(400));

        p.set(Faults {
            refuse: 1.0,
            ..Faults::default()
        });
        assert!(ask(p.addr()).map(|b| b.is_empty()).unwrap_or(true));
        assert!(p.counts().refused >= 1);

        p.set(Faults {
            down: true,
            ..Faults::default()
        });
        let refused = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            matches!(std::net::TcpStream::connect(p.addr()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        });
        assert!(refused, "a closed port refuses");
        p.clear();
        let back = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            ask(p.addr()).is_ok_and(|b| b == REPLY)
        });
        assert!(back, "open again");
        let c = p.counts();
        assert_eq!((c.downs, c.stalls >= 1, c.trickled >= 1), (1, true, true));
    }
}
