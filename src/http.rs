//! HTTP helpers shared by the two modules that make outbound calls (`provider` and `outbox`):
//! one client recipe, transport-error text without URLs, the capped body read, `Retry-After`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// A client with rustls, a per-request timeout, no redirects (a redirect is an answer we did
/// not ask for), and kept-alive connections.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .user_agent(concat!("payrecon/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Timeout,
    /// The cause chain, without the URL.
    Failed(String),
}

/// Classifies a reqwest error; the message leaves the URL out and keeps the cause chain.
pub fn transport(e: reqwest::Error) -> Transport {
    if e.is_timeout() {
        return Transport::Timeout;
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    if msg.contains("timed out") {
        return Transport::Timeout;
    }
    Transport::Failed(msg)
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// Longer than the cap.
    TooLarge,
    Transport(Transport),
}

/// Reads a body chunk by chunk and stops at `max` bytes: an oversized answer is never buffered
/// whole.
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body =
        Vec::with_capacity(response.content_length().unwrap_or(1024).min(max as u64) as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(transport(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as seconds or an HTTP date, capped at a day.
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    const DAY: Duration = Duration::from_secs(86_400);
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(DAY));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(DAY),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .to_utc();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 25 Nov 2026 10:00:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 25 Nov 2026 09:00:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
