//! The provider simulator: an HTTP server on loopback that speaks MoPay's create-session and
//! session-status endpoints as seed 000 documents them, where each session follows a
//! [`Behaviour`] chosen when it is created. Used by `payrecon simulate`, the demo and the tests.
//!
//! It is a server, not a provider adapter: the MoPay adapter talks to it over real HTTP exactly
//! as it talks to MoPay. State is in memory, sharded so that it is not a benchmark's bottleneck.

use std::collections::HashMap;
use std::fmt;
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

/// What a simulated session does when polled. Text form (see README "Simulator behaviours"):
/// `[FAULT-K.]FINAL[-N][.slow-MS][.after-MS]`, for example `complete-2`, `5xx-2.complete`,
/// `fail`, `pending`, `429-1.complete`, `complete.slow-300`, `complete.after-45000` (pending
/// until 45 s after the session was registered: a customer who acts then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// A fault answered for the first `k` polls.
    pub fault: Option<(Fault, u32)>,
    /// PENDING answers after the faults and before the final answer.
    pub pending_polls: u32,
    pub last: Final,
    /// Delay before every answer.
    pub slow_ms: u64,
    /// The answer stays pending until this long after the session was registered (the moment
    /// the customer acts); 0: no such moment.
    pub after_ms: u64,
}

/// A transient fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503.
    Status5xx,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimit,
    /// 200 with an HTML page.
    Html,
    /// 200 with JSON cut in half.
    Truncated,
    /// 200 with a 2 MiB body.
    Oversized,
    /// 200 with `{"success": false}`.
    FalseSuccess,
    /// HTTP 429 with `Retry-After: 120`.
    RateLimitLong,
    /// HTTP 429 with `Retry-After` as an HTTP date two seconds ahead.
    RateLimitDate,
    /// HTTP 404, then the rest of the behaviour (an answer resets the count).
    NotFound,
    /// Refused credentials: Moflay's 422 `invalid_access` (the key lacks a permission), a 403
    /// in every other provider's shape.
    NoPermission,
    /// HTTP 429 without `Retry-After`: Moflay's `X-RateLimit-Reset` epoch two seconds ahead
    /// (`Retry-After: 2` for the others, who document no such header).
    RateLimitReset,
}

/// The answer once faults and pending polls are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Complete,
    Fail,
    Cancel,
    Expire,
    /// Never resolves.
    Pending,
    /// 404 for every poll.
    NotFound,
    /// COMPLETED for another amount.
    AmountMismatch,
    /// COMPLETED for another reference.
    ReferenceMismatch,
    /// A status word outside the mapping table.
    Unknown,
    /// COMPLETED with `transactionStatus: failed`.
    Unpaid,
    /// EXPIRED once, COMPLETED on every later poll: a payment after expiry.
    LatePayment,
    /// Paid, for the ledger's amount in whole units (floored), or one unit less when it is
    /// whole already: an underpayment.
    Underpaid,
    /// Paid, in another currency (only providers that return a currency can tell).
    CurrencyMismatch,
}

const FAULTS: &[(&str, Fault)] = &[
    ("5xx", Fault::Status5xx),
    ("429", Fault::RateLimit),
    ("html", Fault::Html),
    ("truncated", Fault::Truncated),
    ("oversized", Fault::Oversized),
    ("falsesuccess", Fault::FalseSuccess),
    ("429long", Fault::RateLimitLong),
    ("429date", Fault::RateLimitDate),
    ("404", Fault::NotFound),
    ("422", Fault::NoPermission),
    ("429reset", Fault::RateLimitReset),
];

const FINALS: &[(&str, Final)] = &[
    ("complete", Final::Complete),
    ("fail", Final::Fail),
    ("cancel", Final::Cancel),
    ("expire", Final::Expire),
    ("pending", Final::Pending),
    ("notfound", Final::NotFound),
    ("amount", Final::AmountMismatch),
    ("reference", Final::ReferenceMismatch),
    ("unknown", Final::Unknown),
    ("unpaid", Final::Unpaid),
    ("latepay", Final::LatePayment),
    ("underpaid", Final::Underpaid),
    ("currency", Final::CurrencyMismatch),
];

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            fault: None,
            pending_polls: 0,
            last: Final::Complete,
            slow_ms: 0,
            after_ms: 0,
        }
    }
}

impl FromStr for Behaviour {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not a simulator behaviour (see README \"Simulator behaviours\")")
        };
        let mut b = Behaviour::default();
        let mut seen_final = false;
        for part in text.split('.') {
            let (word, n) = match part.rsplit_once('-') {
                Some((w, n)) if n.bytes().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    (w, Some(n.parse::<u64>().map_err(|_| bad())?))
                }
                _ => (part, None),
            };
            if word == "slow" {
                b.slow_ms = n.ok_or_else(bad)?;
            } else if word == "after" {
                b.after_ms = n.ok_or_else(bad)?;
            } else if let Some((_, f)) = FAULTS.iter().find(|(w, _)| *w == word) {
                b.fault = Some((*f, n.unwrap_or(1).min(1000) as u32));
            } else if let Some((_, f)) = FINALS.iter().find(|(w, _)| *w == word) {
                b.last = *f;
                b.pending_polls = n.unwrap_or(0).min(1000) as u32;
                seen_final = true;
            } else {
                return Err(bad());
            }
        }
        let _ = seen_final;
        Ok(b)
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((fault, k)) = self.fault {
            let w = FAULTS
                .iter()
                .find(|(_, x)| *x == fault)
                .map_or("?", |(w, _)| w);
            write!(f, "{w}-{k}.")?;
        }
        let w = FINALS
            .iter()
            .find(|(_, x)| *x == self.last)
            .map_or("?", |(w, _)| w);
        f.write_str(w)?;
        if self.pending_polls > 0 {
            write!(f, "-{}", self.pending_polls)?;
        }
        if self.slow_ms > 0 {
            write!(f, ".slow-{}", self.slow_ms)?;
        }
        if self.after_ms > 0 {
            write!(f, ".after-{}", self.after_ms)?;
        }
        Ok(())
    }
}

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
    by_kind: [AtomicU64; 5],
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
        };
        match kind {
            Kind::Mopay | Kind::Moflay => {
                h("authorization").strip_prefix("Bearer ") == Some(key.as_str())
            }
            Kind::Little => h("x-api-key") == key,
            Kind::Vesicash => !h("public-key").is_empty() && h("secret-key") == key,
            Kind::MopayNg => {
                !h("mpy-securekey").is_empty()
                    && mopay_ng_signal(key.as_bytes(), h("mpy-timestamp")) == h("mpy-reqsignal")
            }
        }
    }
}

/// Mopay Nigeria's `MPY-REQSIGNAL` as its documentation describes it: lowercase hex
/// HMAC-SHA512, keyed with the secret, over the compact JSON `{"timestamp":"<MPY-TIMESTAMP>"}`.
/// Written here from the documentation, not with the adapter's signer, so the simulator checks
/// the adapter against the provider's rule rather than against itself.
fn mopay_ng_signal(secret: &[u8], timestamp: &str) -> String {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret) else {
        return String::new();
    };
    // A JSON string: quotes, backslashes and control characters escaped.
    let mut quoted = String::with_capacity(timestamp.len() + 2);
    for c in timestamp.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    mac.update(format!("{{\"timestamp\":\"{quoted}\"}}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    Router::new()
        .route("/api/external/payment", post(create))
        .route(
            "/api/external/session/v1/{id}",
            get(|st: State<Arc<Sim>>, h: HeaderMap, Path(id): Path<String>| poll(st, h, Kind::Mopay, id, false)),
        )
        .route(
            "/api/payments-v2/{id}",
            get(|st: State<Arc<Sim>>, h: HeaderMap, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>| {
                let long = q.get("longPoll").is_some_and(|v| v == "true");
                poll(st, h, Kind::Little, id, long)
            }),
        )
        .route(
            "/v1/payments/{id}",
            get(|st: State<Arc<Sim>>, h: HeaderMap, Path(id): Path<String>| poll(st, h, Kind::Moflay, id, false)),
        )
        .route(
            "/v1/payment/{id}",
            get(|st: State<Arc<Sim>>, h: HeaderMap, Path(id): Path<String>| poll(st, h, Kind::Vesicash, id, false)),
        )
        .route(
            "/",
            get(|st: State<Arc<Sim>>, h: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                // Mopay Nigeria: `?req=payment_status&reference=ID` (the simulator's choice of
                // endpoint and parameter, since none is published).
                match (q.get("req").map(String::as_str), q.get("reference")) {
                    (Some(NG_STATUS_ENDPOINT), Some(id)) => poll(st, h, Kind::MopayNg, id.clone(), false).await,
                    _ => ng_envelope_error(StatusCode::NOT_FOUND, 404, "Unknown endpoint"),
                }
            }),
        )
        .route("/_sim/sessions", post(register))
        .with_state(sim)
}

/// Config tables for all five provider kinds, each pointing at a simulator on `base_url` and
/// naming the variables that hold its credentials (`key_env` for API keys and secret keys,
/// `public_env` for public keys). Used by the demo and the tests, and printed by `simulate`.
pub fn providers_toml(base_url: &str, key_env: &str, public_env: &str, rate_limit: &str) -> String {
    let map: Vec<String> = NG_STATUS_MAP
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\""))
        .collect();
    format!(
        r#"[providers.mopay]
kind = "mopay"
base_url = "{base_url}"
api_key_env = "{key_env}"
rate_limit = "{rate_limit}"

[providers.little]
kind = "little"
base_url = "{base_url}"
api_key_env = "{key_env}"
rate_limit = "{rate_limit}"

[providers.mopay_ng]
kind = "mopay_ng"
base_url = "{base_url}"
public_key_env = "{public_env}"
secret_key_env = "{key_env}"
rate_limit = "{rate_limit}"
status_endpoint = "{NG_STATUS_ENDPOINT}"
id_param = "reference"
status_pointer = "/DATA/status"
amount_pointer = "/DATA/amount"
reference_pointer = "/DATA/merchant_reference"
currency_pointer = "/DATA/currency"
status_map = {{ {} }}

[providers.moflay]
kind = "moflay"
base_url = "{base_url}"
api_key_env = "{key_env}"
rate_limit = "{rate_limit}"

[providers.vesicash]
kind = "vesicash"
base_url = "{base_url}"
public_key_env = "{public_env}"
secret_key_env = "{key_env}"
rate_limit = "{rate_limit}"
"#,
        map.join(", ")
    )
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

/// The provider shapes the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mopay,
    Little,
    MopayNg,
    Moflay,
    Vesicash,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Mopay,
        Kind::Little,
        Kind::MopayNg,
        Kind::Moflay,
        Kind::Vesicash,
    ];

    /// The provider kind's name in the config (and the table name `providers_toml` uses).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mopay => "mopay",
            Kind::Little => "little",
            Kind::MopayNg => "mopay_ng",
            Kind::Moflay => "moflay",
            Kind::Vesicash => "vesicash",
        }
    }
}

/// The `req=` name the simulator answers Mopay Nigeria status lookups on.
pub const NG_STATUS_ENDPOINT: &str = "payment_status";

/// The status words of the simulator's Mopay Nigeria, for a config's `status_map`.
pub const NG_STATUS_MAP: &[(&str, &str)] = &[
    ("SUCCESSFUL", "COMPLETED"),
    ("FAILED", "FAILED"),
    ("CANCELLED", "CANCELLED"),
    ("EXPIRED", "EXPIRED"),
    ("PENDING", "PENDING"),
    ("PROCESSING", "PENDING"),
];

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
        return match kind {
            Kind::Mopay => json_response(
                StatusCode::UNAUTHORIZED,
                json!({"success": false, "error": "Unauthorized"}),
            ),
            Kind::Moflay => moflay_error(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "Invalid or missing API key",
            ),
            Kind::MopayNg => {
                ng_envelope_error(StatusCode::UNAUTHORIZED, 401, "Invalid signature (E401)")
            }
            Kind::Little | Kind::Vesicash => json_response(
                StatusCode::UNAUTHORIZED,
                json!({"status": "error", "message": "Unauthorized"}),
            ),
        };
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

/// A session's state at one poll, before it is rendered in a provider's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimState {
    Created,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Expired,
    /// A word outside every table.
    Unknown,
    /// Paid-looking but not paid (MoPay: COMPLETED + transactionStatus failed; Moflay: `unknown`).
    Unpaid,
    AmountMismatch,
    ReferenceMismatch,
    Underpaid,
    CurrencyMismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Fault(Fault),
    NotFound,
    State(SimState),
}

fn outcome(s: &SimSession, poll: u32) -> Outcome {
    let b = &s.behaviour;
    let faults = b.fault.map_or(0, |(_, k)| k);
    if let Some((fault, _)) = b.fault.filter(|_| poll < faults) {
        return Outcome::Fault(fault);
    }
    let after = poll - faults;
    if b.last == Final::NotFound {
        return Outcome::NotFound;
    }
    let not_yet = b.after_ms > 0 && s.registered.elapsed() < Duration::from_millis(b.after_ms);
    if after < b.pending_polls || b.last == Final::Pending || not_yet {
        return Outcome::State(if after == 0 {
            SimState::Created
        } else {
            SimState::Processing
        });
    }
    Outcome::State(match b.last {
        Final::Complete => SimState::Completed,
        Final::Fail => SimState::Failed,
        Final::Cancel => SimState::Cancelled,
        Final::Expire => SimState::Expired,
        Final::AmountMismatch => SimState::AmountMismatch,
        Final::ReferenceMismatch => SimState::ReferenceMismatch,
        Final::Unknown => SimState::Unknown,
        Final::Unpaid => SimState::Unpaid,
        Final::LatePayment if after == b.pending_polls => SimState::Expired,
        Final::LatePayment => SimState::Completed,
        Final::Underpaid => SimState::Underpaid,
        Final::CurrencyMismatch => SimState::CurrencyMismatch,
        Final::Pending | Final::NotFound => SimState::Processing,
    })
}

/// A JSON number from decimal text, kept exactly (serde_json's `arbitrary_precision`).
fn number(text: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(|v| v.is_number())
        .unwrap_or(json!(0))
}

fn moflay_error(code: StatusCode, name: &str, message: &str) -> Response {
    json_response(
        code,
        json!({"error": {"status": code.as_u16(), "code": name, "message": message}}),
    )
}

fn ng_envelope_error(http: StatusCode, code: u16, details: &str) -> Response {
    json_response(
        http,
        json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "FAILED"},
               "ERRORS": {"CODE": code, "DETAILS": details}}),
    )
}

fn render(kind: Kind, id: &str, s: &SimSession, poll: u32, outcome: Outcome) -> Response {
    let state = match outcome {
        Outcome::Fault(f) => return render_fault(kind, f),
        Outcome::NotFound => {
            return match kind {
                Kind::Moflay => {
                    moflay_error(StatusCode::NOT_FOUND, "not_found", "Payment not found")
                }
                Kind::MopayNg => {
                    ng_envelope_error(StatusCode::NOT_FOUND, 404, "Transaction not found")
                }
                Kind::Mopay => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"success": false, "error": "Session not found"}),
                ),
                Kind::Little | Kind::Vesicash => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"status": "error", "message": "Not found"}),
                ),
            };
        }
        Outcome::State(st) => st,
    };
    let amount = match state {
        SimState::AmountMismatch => "1.00".to_string(),
        SimState::Underpaid => underpaid(&s.amount),
        _ => s.amount.clone(),
    };
    let currency = if state == SimState::CurrencyMismatch {
        if s.currency.eq_ignore_ascii_case("TZS") {
            "KES"
        } else {
            "TZS"
        }
        .to_string()
    } else {
        s.currency.clone()
    };
    let reference = if state == SimState::ReferenceMismatch {
        format!("{}X", s.reference)
    } else {
        s.reference.clone()
    };
    let paid = matches!(
        state,
        SimState::Completed
            | SimState::AmountMismatch
            | SimState::ReferenceMismatch
            | SimState::Underpaid
            | SimState::CurrencyMismatch
    );
    let txn = format!("TXN{}", id.len() * 7919 + poll as usize);
    match kind {
        Kind::Mopay => {
            let (status, tx_status) = match state {
                SimState::Created => ("CREATED", "pending"),
                SimState::Processing => ("PROCESSING", "pending"),
                SimState::Failed => ("FAILED", "failed"),
                SimState::Cancelled => ("CANCELLED", "cancelled"),
                SimState::Expired => ("EXPIRED", "expired"),
                SimState::Unknown => ("ON_HOLD", "pending"),
                SimState::Unpaid => ("COMPLETED", "failed"),
                _ => ("COMPLETED", "success"),
            };
            json_response(
                StatusCode::OK,
                json!({"success": true, "session": {
                    "id": format!("sim-{}", id.len()), "sessionId": id, "amount": amount, "reference": reference,
                    "transactionStatus": tx_status, "redirectUrl": "https://example.com/payment-complete",
                    "status": status, "selectedPaymentMethod": if paid { "mpesa" } else { "none" },
                    "transactionId": paid.then_some(&txn), "createdAt": "2025-12-04T14:00:00Z",
                    "completedAt": paid.then_some("2025-12-04T14:05:00Z"),
                }}),
            )
        }
        Kind::Little => {
            let status = match state {
                SimState::Created | SimState::Processing | SimState::Unpaid => "PENDING",
                SimState::Failed => "FAILED",
                SimState::Cancelled => "CANCELLED",
                SimState::Expired => "EXPIRED",
                SimState::Unknown => "ON_HOLD",
                _ => "COMPLETED",
            };
            // Seed 001's shape: the amount in major units as a JSON number, exactly the ledger's
            // (nothing is rounded); `key` is "" as in the seed's example, so the merchant
            // reference is absent; no currency in the status body.
            let intent = format!("intent-{}", id.len());
            json_response(
                StatusCode::OK,
                json!({"date": "2024-05-13T08:26:18.719Z", "data": {
                    "reference": intent, "status": status,
                    "payload": {"billingAddress": {"firstName": "", "lastName": "", "address1": "",
                        "locality": "", "administrativeArea": "", "postalCode": "", "country": "",
                        "email": "", "phoneNumber": ""}},
                    "amount": number(&amount), "payment": {"provider": "MPESA", "details": null},
                    "key": "", "attempts": [{"reference": intent, "provider": "MPESA", "status": status}],
                }}),
            )
        }
        Kind::Moflay => {
            let status = match state {
                SimState::Created => "initiating",
                SimState::Processing => "pending",
                SimState::Failed => "failed",
                SimState::Cancelled => "canceled",
                SimState::Expired => "expired",
                SimState::Unknown => "on_hold",
                SimState::Unpaid => "unknown",
                _ => "completed",
            };
            // Smallest currency unit: "amount: 1000 means KES 10.00" (docs.moflay.com). The
            // simulator's own digits, not the adapter's.
            let digits = iso_minor_digits(&s.currency);
            let minor = amount
                .parse::<rust_decimal::Decimal>()
                .map(|a| {
                    (a * rust_decimal::Decimal::from(10u64.pow(digits)))
                        .trunc()
                        .to_string()
                })
                .unwrap_or_else(|_| "0".into());
            json_response(
                StatusCode::OK,
                // The get-payment example's fields (docs.moflay.com/api-reference/payments/get-payment).
                json!({"id": id, "transactionId": format!("trxn_{}", id.len()),
                       "customerId": "cus_GqfKXLmg61LURZhB", "merchantRequestId": "29115-34620561-1",
                       "checkoutRequestId": "ws_CO_191220241030123456789", "status": status,
                       "statusDetail": "The service request is processed successfully.",
                       "failureReason": (status == "unknown").then_some("Missing or non-final Daraja signal"),
                       "amount": number(&minor), "currency": currency, "description": "Premium plan",
                       "accountReference": reference, "receiptNumber": paid.then_some(&txn),
                       "environment": "sandbox", "createdAt": "2024-12-19T10:25:00.000Z",
                       "updatedAt": "2024-12-19T10:32:00.000Z", "processedAt": "2024-12-19T10:32:00.000Z",
                       "completedAt": paid.then_some("2024-12-19T10:32:00.000Z"),
                       "failedAt": (status == "failed").then_some("2024-12-19T10:32:00.000Z"),
                       "unknownAt": (status == "unknown").then_some("2024-12-19T10:40:00.000Z")}),
            )
        }
        Kind::Vesicash => {
            let status = match state {
                SimState::Created | SimState::Processing | SimState::Unpaid => "pending",
                SimState::Failed => "failed",
                SimState::Cancelled => "cancelled",
                SimState::Expired => "expired",
                SimState::Unknown => "on_hold",
                _ => "success",
            };
            json_response(
                StatusCode::OK,
                // The get-payment-details example's shape
                // (docs.vesicash.com/api-documentation/payment/get-payment-details): `id` and
                // `reference` are "" there, and the amount a number in major units [assumed].
                json!({"status": "success", "code": 200, "message": "success", "data": {
                    "id": "", "amount": number(&amount), "type": "payment", "method": "mobilemoney",
                    "status": status, "currency": currency, "reference": "", "business_id": "",
                    "created_at": "2024-11-06T10:14:31.888324Z", "environment": "test",
                    "redirect_url": "http://www.google.com", "email": "customer@example.com",
                    "customer_first_name": "", "customer_last_name": "", "phone_number": "",
                }}),
            )
        }
        Kind::MopayNg => {
            let status = match state {
                SimState::Created => "PENDING",
                SimState::Processing | SimState::Unpaid => "PROCESSING",
                SimState::Failed => "FAILED",
                SimState::Cancelled => "CANCELLED",
                SimState::Expired => "EXPIRED",
                SimState::Unknown => "ON_HOLD",
                _ => "SUCCESSFUL",
            };
            json_response(
                StatusCode::OK,
                json!({"REQUEST": {"VERSION": "1.0", "ACTION": NG_STATUS_ENDPOINT, "STATUS": "OK"}, "DATA": {
                    "reference": id, "status": status, "amount": amount, "currency": currency,
                    "merchant_reference": reference, "transaction_id": paid.then_some(&txn),
                }}),
            )
        }
    }
}

/// The ledger's amount as an underpaying provider reports it: floored to whole units, or one
/// unit less when it is whole already.
fn underpaid(amount: &str) -> String {
    match amount.parse::<rust_decimal::Decimal>() {
        Ok(a) if a.fract().is_zero() => (a - rust_decimal::Decimal::ONE)
            .max(rust_decimal::Decimal::ZERO)
            .to_string(),
        Ok(a) => a.floor().to_string(),
        Err(_) => "0".into(),
    }
}

/// ISO 4217 minor-unit digits of the currencies the simulator is used with, written here
/// independently of the adapters' table.
fn iso_minor_digits(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "UGX" | "RWF" | "JPY" => 0,
        "KWD" | "BHD" => 3,
        _ => 2,
    }
}

fn render_fault(kind: Kind, fault: Fault) -> Response {
    let rate_limited = |retry_after: String| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            "Too Many Requests",
        )
            .into_response()
    };
    match fault {
        Fault::Status5xx => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "Service Unavailable"}),
        ),
        Fault::RateLimit => rate_limited("1".into()),
        Fault::RateLimitLong => rate_limited("120".into()),
        Fault::RateLimitDate => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(2);
            rate_limited(at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        }
        Fault::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::Truncated => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":true,"session":{"sessionId":"#,
        )
            .into_response(),
        Fault::Oversized => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            OVERSIZED.as_str(),
        )
            .into_response(),
        Fault::FalseSuccess => match kind {
            Kind::MopayNg => ng_envelope_error(StatusCode::OK, 503, "Temporarily unavailable"),
            _ => json_response(
                StatusCode::OK,
                json!({"success": false, "error": "Temporary error"}),
            ),
        },
        Fault::NoPermission => match kind {
            // docs.moflay.com/api-reference/authentication, "Insufficient permissions".
            Kind::Moflay => moflay_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_access",
                "The API key does not have the necessary permissions to access this resource.",
            ),
            Kind::MopayNg => ng_envelope_error(StatusCode::FORBIDDEN, 403, "Forbidden"),
            _ => json_response(
                StatusCode::FORBIDDEN,
                json!({"success": false, "error": "Forbidden"}),
            ),
        },
        Fault::RateLimitReset => match kind {
            Kind::Moflay => {
                let reset = chrono::Utc::now().timestamp() + 2;
                let mut r = moflay_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    "You have exceeded your request limit. Please try again later.",
                );
                let h = r.headers_mut();
                h.insert("x-ratelimit-limit", header::HeaderValue::from_static("100"));
                h.insert(
                    "x-ratelimit-remaining",
                    header::HeaderValue::from_static("0"),
                );
                if let Ok(v) = header::HeaderValue::from_str(&reset.to_string()) {
                    h.insert("x-ratelimit-reset", v);
                }
                r
            }
            _ => rate_limited("2".into()),
        },
        Fault::NotFound => match kind {
            Kind::Moflay => moflay_error(StatusCode::NOT_FOUND, "not_found", "Payment not found"),
            Kind::MopayNg => ng_envelope_error(StatusCode::NOT_FOUND, 404, "Transaction not found"),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "Session not found"}),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
