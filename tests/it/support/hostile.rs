//! A hostile HTTP server on 127.0.0.1:0 written on raw TCP, so it can misbehave in ways a
//! well-behaved framework will not: reset connections, hang, stop mid-header, or stream an
//! endless body. It counts connections and the bytes it managed to write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Accept, then close at once without a byte.
    Reset,
    /// Accept, read the request, never answer.
    Hang,
    /// Answer half a status line and headers, then close.
    HalfHeaders,
    /// 200 with a chunked body that never ends (until the client hangs up).
    Endless,
    /// A redirect to elsewhere.
    Redirect,
}

pub struct Hostile {
    pub url: String,
    pub connections: Arc<AtomicU64>,
    pub bytes_written: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hostile {
    pub async fn start(mode: Mode) -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicU64::new(0));
        let bytes_written = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (c, b, s) = (connections.clone(), bytes_written.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = tokio::select! {
                    () = s.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (b, s) = (b.clone(), s.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if !matches!(mode, Mode::Reset) {
                        let _ = sock.read(&mut buf).await;
                    }
                    match mode {
                        Mode::Reset => {
                            let _ = sock.set_zero_linger();
                        }
                        Mode::Hang => {
                            s.cancelled().await;
                        }
                        Mode::HalfHeaders => {
                            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await;
                        }
                        Mode::Redirect => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                        Mode::Endless => {
                            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                            if sock.write_all(head).await.is_err() {
                                return;
                            }
                            let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, " ".repeat(16 * 1024));
                            loop {
                                if s.is_cancelled()
                                    || sock.write_all(chunk.as_bytes()).await.is_err()
                                {
                                    return;
                                }
                                b.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        Hostile {
            url,
            connections,
            bytes_written,
            stop,
        }
    }
}
