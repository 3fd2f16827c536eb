//! The provider simulator: an HTTP server on loopback that speaks MoPay's create-session and
//! session-status endpoints as seed 000 documents them, where each session follows a
//! [`Behaviour`] chosen when it is created. Used by `payrecon simulate`, the demo and the tests.
//!
//! It is a server, not a provider adapter: the MoPay adapter talks to it over real HTTP exactly
//! as it talks to MoPay. State is in memory, sharded so that it is not a benchmark's bottleneck.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

mod behaviour;
mod shapes;

pub use behaviour::{Behaviour, Fault, Final};
use shapes::*;
pub use shapes::{Demo, NG_STATUS_ENDPOINT, NG_STATUS_MAP, Shape, shape};

#[derive(Debug, Clone)]
struct SimSession {
    amount: String,
    reference: String,
    currency: String,
    behaviour: Behaviour,
    polls: u32,
    registered: std::time::Instant,
}

const SHARDS: usize = 64;

/// The simulator's state.
pub struct Sim {
    shards: Vec<Mutex<HashMap<String, SimSession>>>,
    hasher: RandomState,
    /// Status requests answered, for tests and benchmarks.
    pub status_requests: AtomicU64,
    /// Status requests per provider shape, in [`Kind::ALL`] order.
    by_kind: [AtomicU64; Kind::COUNT],
    /// When set, status and create calls need `Authorization: Bearer <key>`.
    api_key: Option<String>,
}

impl Sim {
    pub fn new(api_key: Option<String>) -> Arc<Sim> {
        Arc::new(Sim {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            status_requests: AtomicU64::new(0),
            by_kind: Default::default(),
            api_key,
        })
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, SimSession>> {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        // Only plain data lives behind the lock; a poisoned shard is still consistent.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session under any id (tests use ids with `/`, `%`, spaces…), in LSL.
    pub fn insert(&self, session_id: &str, amount: &str, reference: &str, behaviour: Behaviour) {
        self.insert_in(session_id, amount, reference, "LSL", behaviour);
    }

    /// Registers a session in a given currency.
    pub fn insert_in(
        &self,
        session_id: &str,
        amount: &str,
        reference: &str,
        currency: &str,
        behaviour: Behaviour,
    ) {
        self.shard(session_id).insert(
            session_id.to_string(),
            SimSession {
                amount: amount.into(),
                reference: reference.into(),
                currency: currency.into(),
                behaviour,
                polls: 0,
                registered: std::time::Instant::now(),
            },
        );
    }

    /// Status requests answered for one provider shape.
    pub fn requests_for(&self, kind: Kind) -> u64 {
        self.by_kind[kind as usize].load(Ordering::Relaxed)
    }

    /// How many times a session was polled.
    pub fn polls(&self, session_id: &str) -> u32 {
        self.shard(session_id)
            .get(session_id)
            .map_or(0, |s| s.polls)
    }

    /// Whether a request carries the credentials `kind` sends, when the simulator demands a key.
    fn authorised(&self, kind: Kind, headers: &HeaderMap) -> bool {
        let Some(key) = &self.api_key else {
            return true;
        };
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        shape(kind).authorised(key, &h)
    }
}

/// A session the simulator was not told about: its behaviour comes from a `sim-BEHAVIOUR`
/// part of the id (`MOP_sim-complete-2_ORDER1`), else it completes; its reference is the text
/// after the last `_`, and its amount is `100.00`.
fn implicit_session(id: &str) -> SimSession {
    let behaviour = id
        .split('_')
        .find_map(|part| part.strip_prefix("sim-"))
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    let reference = id.rsplit('_').next().unwrap_or(id).to_string();
    SimSession {
        amount: "100.00".into(),
        reference,
        currency: "LSL".into(),
        behaviour,
        polls: 0,
        registered: std::time::Instant::now(),
    }
}

/// The router: every provider's status endpoint in its own shape and auth, MoPay's create
/// endpoint, and `/_sim/sessions` to register sessions under any id.
pub fn router(sim: Arc<Sim>) -> Router {
    let mut router = Router::new()
        .route("/api/external/payment", post(create))
        .route("/_sim/sessions", post(register));
    for kind in Kind::ALL {
        let path = shape(kind).path();
        router = if path.contains("{id}") {
            router.route(
                path,
                get(
                    move |st: State<Arc<Sim>>,
                          h: HeaderMap,
                          Path(id): Path<String>,
                          Query(q): Query<HashMap<String, String>>| {
                        status(st, h, kind, Some(id), q)
                    },
                ),
            )
        } else {
            router.route(
                path,
                get(
                    move |st: State<Arc<Sim>>,
                          h: HeaderMap,
                          Query(q): Query<HashMap<String, String>>| {
                        status(st, h, kind, None, q)
                    },
                ),
            )
        };
    }
    router.with_state(sim)
}

/// A status request at `kind`'s route: the session it names, polled.
async fn status(
    st: State<Arc<Sim>>,
    h: HeaderMap,
    kind: Kind,
    path: Option<String>,
    query: HashMap<String, String>,
) -> Response {
    let shape = shape(kind);
    match shape.id(path, &query) {
        Ok(id) => poll(st, h, kind, id, shape.long_poll(&query)).await,
        Err(refused) => *refused,
    }
}

/// Config tables for every provider kind, each named after its kind and pointing at a
/// simulator on `base_url`, naming the variables that hold its credentials (`key_env` for API
/// keys and secret keys, `public_env` for public keys). Used by the demo and the tests, and
/// printed by `simulate`.
pub fn providers_toml(base_url: &str, key_env: &str, public_env: &str, rate_limit: &str) -> String {
    let map: Vec<String> = NG_STATUS_MAP
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\""))
        .collect();
    let status_map = format!("{{ {} }}", map.join(", "));
    Kind::ALL
        .iter()
        .map(|kind| {
            let settings = shape(*kind)
                .table()
                .replace("{key_env}", key_env)
                .replace("{public_env}", public_env)
                .replace("{status_map}", &status_map);
            format!(
                "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\n{settings}\nrate_limit = \"{rate_limit}\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A whole config for trying payrecon against a simulator on `base_url`: a ledger file in the
/// working directory, a pass every five seconds, short backoff, all five providers.
pub fn sample_config(base_url: &str) -> String {
    format!(
        r#"# Written by `payrecon simulate --write-config`: every provider against the simulator.
# The credentials come from PAYRECON_SIM_KEY and PAYRECON_SIM_PUBLIC_KEY (any values unless the
# simulator was started with --api-key-env).
[ledger]
path = "payrecon-sim.db"

[schedule]
cron = "*/5 * * * * *"

[backoff]
initial = "2s"
max = "30s"
max_age = "10m"

{}"#,
        providers_toml(
            base_url,
            "PAYRECON_SIM_KEY",
            "PAYRECON_SIM_PUBLIC_KEY",
            "100/s"
        )
    )
}

/// The provider shapes the simulator speaks: one per kind this build supports.
pub use crate::provider::Kind;

/// Serves on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Sim>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    amount: Option<String>,
    reference: Option<String>,
    description: Option<String>,
    #[allow(dead_code)]
    redirect_url: Option<String>,
}

/// `POST /api/external/payment` [seed 000]. A `sim:BEHAVIOUR` word in `description` picks the
/// behaviour.
async fn create(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !sim.authorised(Kind::Mopay, &headers) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"success": false, "error": "Unauthorized"}),
        );
    }
    let Ok(req) = serde_json::from_slice::<CreateRequest>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Invalid JSON"}),
        );
    };
    let (Some(amount), Some(reference)) = (req.amount, req.reference) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "amount and reference are required"}),
        );
    };
    // "Must contain only alphanumeric characters" [seed 000].
    if reference.is_empty() || !reference.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "reference must contain only alphanumeric characters"}),
        );
    }
    if crate::ledger::validate_amount(&amount).is_err() {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "invalid amount"}),
        );
    }
    let behaviour = match req
        .description
        .as_deref()
        .and_then(|d| d.split_whitespace().find_map(|w| w.strip_prefix("sim:")))
        .map(Behaviour::from_str)
    {
        None => Behaviour::default(),
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": e}),
            );
        }
    };
    let token: String = (0..6).map(|_| fastrand::alphanumeric()).collect();
    let session_id = format!("MOP_{token}_{reference}");
    sim.insert(&session_id, &amount, &reference, behaviour);
    json_response(
        StatusCode::OK,
        json!({
            "success": true,
            "sessionId": session_id,
            "paymentUrl": format!("https://mopay.co.ls/pay/{session_id}"),
            "reference": reference,
            "amount": amount,
        }),
    )
}

#[derive(Deserialize)]
struct RegisterRequest {
    session_id: String,
    amount: Option<String>,
    reference: Option<String>,
    currency: Option<String>,
    behaviour: Option<String>,
}

/// `POST /_sim/sessions`: the simulator's own endpoint to register a session under any id.
async fn register(
    State(sim): State<Arc<Sim>>,
    axum::Json(req): axum::Json<RegisterRequest>,
) -> Response {
    let behaviour = match req
        .behaviour
        .as_deref()
        .map(Behaviour::from_str)
        .transpose()
    {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => return json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    sim.insert_in(
        &req.session_id,
        req.amount.as_deref().unwrap_or("100.00"),
        req.reference.as_deref().unwrap_or("REF"),
        req.currency.as_deref().unwrap_or("LSL"),
        behaviour,
    );
    json_response(StatusCode::CREATED, json!({"session_id": req.session_id}))
}

static OVERSIZED: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"{{"success":true,"padding":"{}","session":{{"status":"PENDING"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    )
});

/// How long a long poll is held at most before answering "still pending".
const LONG_POLL_HOLD: Duration = Duration::from_secs(2);

/// A poll of one session at one provider's status endpoint.
async fn poll(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    kind: Kind,
    id: String,
    long: bool,
) -> Response {
    sim.status_requests.fetch_add(1, Ordering::Relaxed);
    sim.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
    if !sim.authorised(kind, &headers) {
        return shape(kind).unauthorised();
    }
    let started = tokio::time::Instant::now();
    loop {
        // Count the poll and take what is needed under the shard lock; answer outside it.
        let (s, n) = {
            let mut shard = sim.shard(&id);
            let s = shard
                .entry(id.clone())
                .or_insert_with(|| implicit_session(&id));
            let n = s.polls;
            s.polls += 1;
            (s.clone(), n)
        };
        if s.behaviour.slow_ms > 0 {
            tokio::time::sleep(Duration::from_millis(s.behaviour.slow_ms)).await;
        }
        let outcome = outcome(&s, n);
        // A long poll holds a pending answer until the state changes (or the hold ends): each
        // tick inside the hold is one more poll of the session's behaviour.
        if long
            && matches!(
                outcome,
                Outcome::State(SimState::Created | SimState::Processing)
            )
            && started.elapsed() < LONG_POLL_HOLD
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        return render(kind, &id, &s, n, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulator's own reading of Mopay Nigeria's signal rule gives the value computed
    /// outside this code (Python's hmac module) for the documented string
    /// `{"timestamp":"1700000000"}`.
    #[test]
    fn the_simulators_signal_follows_the_documented_rule() {
        assert_eq!(
            mopay_ng_signal(b"test_secret_key", "1700000000"),
            "86d69130a09aeeb83e914c12aff51cf699aad1fb9df2b12588c4b7194366fe815677c2939000c4aeced4309702b4fb3016424339700fada3cda47453f6471552"
        );
    }

    #[test]
    fn behaviours_parse_and_print() {
        for text in [
            "complete",
            "complete-2",
            "5xx-2.complete",
            "429-1.fail-1",
            "pending.slow-300",
            "notfound",
            "oversized-1.complete",
        ] {
            let b: Behaviour = text.parse().unwrap();
            assert_eq!(b.to_string(), text);
        }
        assert!("bogus".parse::<Behaviour>().is_err());
        assert!("slow".parse::<Behaviour>().is_err());
        assert_eq!(
            implicit_session("MOP_sim-fail_ORDER1").behaviour.last,
            Final::Fail
        );
        assert_eq!(
            implicit_session("MOP_abc123_ORDER12345").reference,
            "ORDER12345"
        );
    }
}
