//! A server on 127.0.0.1:0 that answers every request with one canned response — a status,
//! headers and a body read from a file — byte for byte: a stand-in for a provider's documented
//! answer, written by nobody's HTTP framework.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub struct Canned {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Canned {
    pub async fn start(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Canned {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut response = head.into_bytes();
        response.extend_from_slice(&body);
        let response = Arc::new(response);
        let requests = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (r, s) = (requests.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = tokio::select! {
                    () = s.cancelled() => return,
                    a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
                };
                let (r, response) = (r.clone(), response.clone());
                tokio::spawn(async move {
                    // Requests are GETs without a body: one read up to the blank line is enough.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Canned {
            url,
            requests,
            stop,
        }
    }
}
