//! A webhook receiver on 127.0.0.1:0 that records every request and answers what the test
//! tells it to, plus a signature check written from the Standard Webhooks recipe, independent
//! of payrecon's signer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// 429 with `Retry-After: N`.
    RetryAfter(u64),
    /// Hold the request for a minute without answering.
    Hang,
    /// Wait, then answer 204.
    Slow(u64),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

type Plan = Arc<dyn Fn(&str, usize) -> Answer + Send + Sync>;

struct State {
    plan: Plan,
    requests: Vec<Request>,
}

/// The receiver; stops on drop.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    /// Starts a receiver whose answer to the `n`th request (1-based) for an event id is
    /// `plan(id, n)`.
    pub async fn start(plan: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let state = Arc::new(Mutex::new(State {
            plan: Arc::new(plan),
            requests: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
        });
        Receiver { url, state, stop }
    }

    /// Starts a receiver that answers the first request for each event id with `first` and every
    /// later one with 204.
    pub async fn first_then_ok(first: Answer) -> Receiver {
        Receiver::start(move |_, n| if n == 1 { first } else { Answer::Status(204) }).await
    }

    /// Changes the answers from now on.
    pub fn set_plan(&self, plan: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) {
        self.state.lock().unwrap().plan = Arc::new(plan);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self, id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.id == id)
            .count()
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let req = Request {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        content_type: h("content-type"),
        body: body.to_vec(),
    };
    let answer = {
        let mut st = state.lock().unwrap();
        st.requests.push(req.clone());
        let n = st.requests.iter().filter(|r| r.id == req.id).count();
        (st.plan)(&req.id, n)
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// Whether `signature` (space-separated `v1,…` entries) holds a valid signature of this
/// request under `whsec`, computed here from the published recipe.
pub fn verifies(whsec: &str, r: &Request) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut signed = format!("{}.{}.", r.id, r.timestamp).into_bytes();
    signed.extend_from_slice(&r.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.signature.split(' ').any(|s| s == expected)
}
