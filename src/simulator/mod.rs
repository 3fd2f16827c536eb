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
    /// The provider's second id (Moflay's `trxn_…`), for a session its list shows.
    transaction_id: Option<String>,
    created: chrono::DateTime<chrono::Utc>,
}

/// The payments a provider's list shows, in the order they were created: each `(transaction
/// id, session id)`, and where each transaction id stands.
#[derive(Default)]
struct ListedPayments {
    order: Vec<(String, String)>,
    at: HashMap<String, usize>,
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
    /// Sessions registered with a transaction id: the payments each kind's list shows.
    listed: Mutex<HashMap<Kind, ListedPayments>>,
    /// List pages answered, for tests and benchmarks.
    pub list_requests: AtomicU64,
    /// Where signed callbacks go, once set.
    callbacks: std::sync::OnceLock<CallbackTarget>,
}

/// Where the simulator sends providers' signed callbacks (`simulate --callbacks-to`): a
/// payrecon API, and the shared webhook secret Moflay's (`whsec_…`) and Vesicash's are signed
/// with. Little's are signed with the simulator's own RSA key ([`SIM_LITTLE_PUBLIC_KEY`]).
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    pub api: String,
    pub secret: String,
}

/// The public key the simulator signs Little's callbacks with, for `webhook_public_key`.
pub const SIM_LITTLE_PUBLIC_KEY: &str = shapes::SIM_LITTLE_PUBLIC_KEY;

impl Sim {
    pub fn new(api_key: Option<String>) -> Arc<Sim> {
        Arc::new(Sim {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            status_requests: AtomicU64::new(0),
            by_kind: Default::default(),
            api_key,
            listed: Mutex::new(HashMap::new()),
            list_requests: AtomicU64::new(0),
            callbacks: std::sync::OnceLock::new(),
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
        self.register_session(session_id, amount, reference, currency, behaviour, None);
    }

    /// Registers a payment `kind`'s list shows under `transaction_id` (Moflay's `trxn_…`;
    /// Vesicash's list names it by its session id), besides its session id: Moflay's status
    /// endpoint answers to either id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_listed(
        &self,
        kind: Kind,
        session_id: &str,
        transaction_id: &str,
        amount: &str,
        reference: &str,
        currency: &str,
        behaviour: Behaviour,
    ) {
        self.register_session(
            session_id,
            amount,
            reference,
            currency,
            behaviour,
            Some((kind, transaction_id.to_string())),
        );
    }

    fn register_session(
        &self,
        session_id: &str,
        amount: &str,
        reference: &str,
        currency: &str,
        behaviour: Behaviour,
        listed: Option<(Kind, String)>,
    ) {
        if let Some((kind, t)) = &listed {
            let mut all = self.listed.lock().unwrap_or_else(|p| p.into_inner());
            let l = all.entry(*kind).or_default();
            if !l.at.contains_key(t) {
                let at = l.order.len();
                l.order.push((t.clone(), session_id.to_string()));
                l.at.insert(t.clone(), at);
            }
        }
        self.shard(session_id).insert(
            session_id.to_string(),
            SimSession {
                amount: amount.into(),
                reference: reference.into(),
                currency: currency.into(),
                behaviour,
                polls: 0,
                registered: std::time::Instant::now(),
                transaction_id: listed.map(|(_, t)| t),
                created: chrono::Utc::now(),
            },
        );
    }

    /// From now on, sessions registered with a callback kind have it sent to `target` (set once).
    pub fn send_callbacks_to(&self, target: CallbackTarget) {
        let _ = self.callbacks.set(target);
    }

    /// Sends `kind`'s signed callback for `session_id` when its answer changes (its `.after-MS`
    /// moment, else at once), as the provider would: POST `{api}/v1/callbacks/{kind}`. Nothing
    /// without a target, or for a session still pending then.
    pub fn callback_when_it_changes(self: &Arc<Self>, kind: Kind, session_id: &str) {
        let Some(target) = self.callbacks.get().cloned() else {
            return;
        };
        let Some(after) = self
            .shard(session_id)
            .get(session_id)
            .map(|s| Duration::from_millis(s.behaviour.after_ms))
        else {
            return;
        };
        let (sim, id) = (self.clone(), session_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after + Duration::from_millis(20)).await;
            let Some(s) = sim.shard(&id).get(&id).cloned() else {
                return;
            };
            let Some((headers, body)) = shapes::callback_for(kind, &id, &s, &target.secret) else {
                return;
            };
            let Ok(client) = crate::http::client(Duration::from_secs(10)) else {
                return;
            };
            let mut request = client
                .post(format!(
                    "{}/v1/callbacks/{kind}",
                    target.api.trim_end_matches('/')
                ))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(r) => {
                    tracing::info!(kind = %kind, session_id = %id, status = r.status().as_u16(), "sent a signed callback")
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, session_id = %id, error = %e, "could not send a callback")
                }
            }
        });
    }

    /// A request for a page of `kind`'s list: counted, and its credentials checked (`Err`: the
    /// kind's refusal).
    fn list_request(
        &self,
        kind: Kind,
        headers: &HeaderMap,
    ) -> Result<&'static dyn Shape, Box<Response>> {
        self.list_requests.fetch_add(1, Ordering::Relaxed);
        self.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        let shape = shape(kind);
        if !self.authorised(kind, headers) {
            return Err(Box::new(shape.unauthorised()));
        }
        Ok(shape)
    }

    /// `kind`'s list items for these `(transaction id, session id)` pairs, as each payment
    /// stands now, those `keep` keeps.
    fn list_items(
        &self,
        kind: Kind,
        pairs: &[(String, String)],
        keep: impl Fn(&SimSession) -> bool,
    ) -> Vec<serde_json::Value> {
        pairs
            .iter()
            .filter_map(|(transaction_id, session_id)| {
                let s = self.shard(session_id).get(session_id).cloned()?;
                keep(&s).then_some(())?;
                shapes::list_item(kind, session_id, transaction_id, &s)
            })
            .collect()
    }

    /// The session a transaction id `kind`'s list shows belongs to.
    fn session_of_transaction(&self, kind: Kind, transaction_id: &str) -> Option<String> {
        let all = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let l = all.get(&kind)?;
        l.at.get(transaction_id).map(|&i| l.order[i].1.clone())
    }

    /// The payments `kind`'s list shows, oldest first: `(transaction id, session id)`.
    fn listed_by(&self, kind: Kind) -> Vec<(String, String)> {
        let all = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&kind).map(|l| l.order.clone()).unwrap_or_default()
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
        transaction_id: None,
        created: chrono::Utc::now(),
    }
}

/// The router: every provider's status endpoint in its own shape and auth, MoPay's create
/// endpoint, and `/_sim/sessions` to register sessions under any id.
pub fn router(sim: Arc<Sim>) -> Router {
    let mut router = Router::new()
        .route("/api/external/payment", post(create))
        .route("/_sim/sessions", post(register))
        .route("/v1/transactions", get(list_transactions))
        .route("/v1/payment/", get(list_payments));
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

/// The variable `simulate --callbacks-to` reads the webhook secret from, and the secret it
/// signs with when it is not set (the Standard Webhooks test vector's: not a secret).
pub const SIM_WEBHOOK_SECRET_ENV: &str = "PAYRECON_SIM_WEBHOOK_SECRET";
pub const SIM_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A whole config for trying payrecon against a simulator on `base_url`: a ledger file in the
/// working directory, a pass every five seconds, short backoff, all five providers. With
/// `little_key` (the file holding [`SIM_LITTLE_PUBLIC_KEY`]), the providers that sign their
/// callbacks check them: an `[api]` on 127.0.0.1:9188 for them to arrive at.
pub fn sample_config(base_url: &str, little_key: Option<&std::path::Path>) -> String {
    let mut providers = providers_toml(
        base_url,
        "PAYRECON_SIM_KEY",
        "PAYRECON_SIM_PUBLIC_KEY",
        "100/s",
    );
    let mut api = String::new();
    if let Some(pem) = little_key {
        for kind in ["moflay", "vesicash"] {
            providers = providers.replace(
                &format!("kind = \"{kind}\"\n"),
                &format!("kind = \"{kind}\"\nwebhook_secret_env = \"{SIM_WEBHOOK_SECRET_ENV}\"\n"),
            );
        }
        providers = providers.replace(
            "kind = \"little\"\n",
            &format!(
                "kind = \"little\"\nwebhook_public_key = {:?}\n",
                pem.display().to_string()
            ),
        );
        api = format!(
            "# Signed callbacks from the simulator arrive here; export {SIM_WEBHOOK_SECRET_ENV}\n\
             # (the simulator's: {SIM_WEBHOOK_SECRET} unless you set another).\n\
             [api]\nlisten = \"127.0.0.1:9188\"\n\n"
        );
    }
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

{api}{providers}"#
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
    /// The provider's second id: the payment then shows in a list under it (Moflay's, unless
    /// `listed_by` names another kind).
    transaction_id: Option<String>,
    listed_by: Option<String>,
    /// The kind whose signed callback is sent when the answer changes (`--callbacks-to`).
    callback: Option<String>,
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
    let listed_by = match req.listed_by.as_deref().map(str::parse::<Kind>) {
        None => Kind::Moflay,
        Some(Ok(k)) => k,
        Some(Err(e)) => return json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    let callback = match req.callback.as_deref().map(str::parse::<Kind>).transpose() {
        Ok(k) => k,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    sim.register_session(
        &req.session_id,
        req.amount.as_deref().unwrap_or("100.00"),
        req.reference.as_deref().unwrap_or("REF"),
        req.currency.as_deref().unwrap_or("LSL"),
        behaviour,
        req.transaction_id
            .filter(|t| !t.is_empty())
            .map(|t| (listed_by, t)),
    );
    if let Some(kind) = callback {
        sim.callback_when_it_changes(kind, &req.session_id);
    }
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
    // Moflay's status endpoint takes a payment's transaction id as well as its id [docs].
    let id = match kind {
        Kind::Moflay => sim.session_of_transaction(Kind::Moflay, &id).unwrap_or(id),
        _ => id,
    };
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

/// The most items a page of Moflay's list holds, and how many it gives when `limit` is not set
/// (docs.moflay.com/api-reference/transactions/list-transactions).
const LIST_MOST: usize = 100;
const LIST_DEFAULT: usize = 10;

/// `GET /v1/transactions?limit=&cursor=`: Moflay's list of payments, newest first, cursor
/// paginated. Each payment is shown as its next status answer would show it, without counting
/// a poll (so a behaviour that waits a number of polls never ends here; `.after-MS` does).
async fn list_transactions(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let moflay = match sim.list_request(Kind::Moflay, &headers) {
        Ok(shape) => shape,
        Err(refused) => return *refused,
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => LIST_DEFAULT,
        Some(Ok(n)) if (1..=LIST_MOST).contains(&n) => n,
        Some(_) => return moflay.invalid_request("limit must be an integer from 1 to 100"),
    };
    let order = sim.listed_by(Kind::Moflay);
    // Newest first: positions counted from the end; the cursor names the last one given.
    let start = match q.get("cursor") {
        None => order.len(),
        Some(c) => match shapes::cursor_position(c)
            .and_then(|t| order.iter().position(|(id, _)| *id == t))
        {
            Some(at) => at,
            None => return moflay.invalid_request("invalid cursor"),
        },
    };
    let page: Vec<(String, String)> = order[..start].iter().rev().take(limit).cloned().collect();
    let items = sim.list_items(Kind::Moflay, &page, |_| true);
    let more = page.len() == limit && start > limit;
    let cursor = page.last().map(|(t, _)| shapes::cursor_of(t));
    json_response(
        StatusCode::OK,
        json!({"data": items, "meta": {"cursor": cursor, "hasPreviousPage": q.contains_key("cursor"),
                                       "hasNextPage": more}}),
    )
}

/// `GET /v1/payment/?page=&limit=&from=`: Vesicash's payments for the business, paged by
/// number, `from` a Unix time in seconds. Oldest first (the order is not documented: a sweep
/// must not depend on it); a page shorter than `limit` is the last.
async fn list_payments(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let vesicash = match sim.list_request(Kind::Vesicash, &headers) {
        Ok(shape) => shape,
        Err(refused) => return *refused,
    };
    let number = |k: &str, default: i64| q.get(k).map_or(Ok(default), |v| v.parse::<i64>());
    let (Ok(page), Ok(limit), Ok(from)) =
        (number("page", 1), number("limit", 10), number("from", 0))
    else {
        return vesicash.invalid_request("page, limit and from are integers");
    };
    if page < 1 || !(1..=LIST_MOST as i64).contains(&limit) {
        return vesicash.invalid_request("page from 1, limit from 1 to 100");
    }
    let listed = sim.listed_by(Kind::Vesicash);
    let items = sim.list_items(Kind::Vesicash, &listed, |s| s.created.timestamp() >= from);
    let start = ((page - 1) * limit) as usize;
    let data: Vec<_> = items.into_iter().skip(start).take(limit as usize).collect();
    json_response(
        StatusCode::OK,
        json!({"status": "success", "code": 200, "message": "success", "data": data,
               "pagination": {"current_page": page, "page_count": data.len()}}),
    )
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
