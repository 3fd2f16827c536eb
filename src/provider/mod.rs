//! Providers: one [`Adapter`] per provider kind (its endpoint, auth, wire types and status
//! table), and [`Provider`], the plumbing every adapter shares — rate limits, timeouts, the
//! capped body read, and the retries within one check (docs/providers.md "Provider calls").
//!
//! This module never touches the ledger: it turns a session id into an [`Answer`] or an
//! [`Error`], and `reconcile` decides what that means for the session.
//! Adding a provider kind is its adapter file here (its `SPEC` and its parsing) and its line in
//! the `registry!` below (docs/development.md "Adding a provider kind").

pub mod budget;
pub mod kinds;
mod settings;

pub use kinds::{CallbackSignature, CallbackSpec, KindSpec, ListSpec, ListUse, SecretNeeds};
pub use settings::{HttpConfig, MopayNgConfig, ProviderConfig};

// The one list of provider kinds: `Variant => module::Adapter`.
kinds::registry! {
    Mopay => mopay::Mopay,
    Little => little::Little,
    MopayNg => mopay_ng::MopayNg,
    Moflay => moflay::Moflay,
    Vesicash => vesicash::Vesicash,
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use rust_decimal::Decimal;

use crate::http;
use crate::secret::Secret;

/// What a provider's status word means for us (docs/providers.md mapping tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    Pending,
    /// The provider says paid; `reconcile` still compares amount, reference and currency.
    Paid,
    Failed,
    Cancelled,
    Expired,
    /// Not in the adapter's table: never guessed, the session stays PENDING.
    Unrecognised,
    /// In the table, but not an answer payrecon can act on: a contradictory pair (MoPay
    /// `COMPLETED` with `transactionStatus` other than `success`) or the provider's own "cannot
    /// tell" (Moflay `unknown`). `ProviderFacts::warning` says which. Like
    /// [`Mapped::Unrecognised`] it keeps the session PENDING and never counts toward expiry by
    /// age; past `max_age` it sends the session to REVIEW.
    Unsure,
}

impl Mapped {
    /// A state word as a config's status table writes it (`COMPLETED`, `FAILED`, `CANCELLED`,
    /// `EXPIRED`, `PENDING`, any case): read once, when the config is.
    pub fn from_state_word(word: &str) -> Option<Mapped> {
        match word.to_ascii_uppercase().as_str() {
            "COMPLETED" => Some(Mapped::Paid),
            "FAILED" => Some(Mapped::Failed),
            "CANCELLED" => Some(Mapped::Cancelled),
            "EXPIRED" => Some(Mapped::Expired),
            "PENDING" => Some(Mapped::Pending),
            _ => None,
        }
    }
}

/// What a provider said about one session, parsed from whitelisted fields only.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderFacts {
    /// The provider's status word as sent (or the JSON text of a non-string value).
    pub raw_status: String,
    pub mapped: Mapped,
    /// Amount in major units, converted from the provider's unit by the adapter.
    pub amount: Option<Decimal>,
    pub reference: Option<String>,
    pub currency: Option<String>,
    pub transaction_id: Option<String>,
    /// The provider's other id for this payment, beside the one asked about (Moflay: the
    /// `trxn_…` transaction id when asked by the `pay_…` payment id, and the other way round).
    pub provider_ref: Option<String>,
    pub payment_method: Option<String>,
    pub completed_at: Option<String>,
    /// Why an answer that looks final is held back (for the log and `last_error`).
    pub warning: Option<String>,
    /// The provider sent an amount that could not be put in major units (e.g. an unknown
    /// currency's minor digits): it cannot be compared, so a paid answer goes to REVIEW.
    pub amount_problem: Option<String>,
}

impl ProviderFacts {
    /// Facts with only a status; adapters fill in the rest.
    pub fn new(raw_status: impl Into<String>, mapped: Mapped) -> Self {
        Self {
            raw_status: raw_status.into(),
            mapped,
            amount: None,
            reference: None,
            currency: None,
            transaction_id: None,
            provider_ref: None,
            payment_method: None,
            completed_at: None,
            warning: None,
            amount_problem: None,
        }
    }
}

/// The result of one check that reached the provider.
#[derive(Debug, Clone, PartialEq)]
// One per check and moved once: boxing the facts would cost an allocation per check for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Found(ProviderFacts),
    /// 404: the provider does not know this session.
    NotFound,
}

/// What [`Provider::check`] got, and the HTTP status of its last call (`None` when no call
/// got a response: a transport failure, no budget slot).
#[derive(Debug)]
pub struct Checked {
    pub result: Result<Answer, Error>,
    pub http_status: Option<u16>,
}

/// One page of a provider's list of payments (docs/providers.md "Lists").
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Listed>,
    /// The cursor of the next page, when the provider says there is one.
    pub next_cursor: Option<String>,
}

/// One listed payment: the id the list names it by, when the provider created it, and what the
/// list says of it, read as a status answer is.
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub created_at: Option<crate::clock::Timestamp>,
    pub facts: ProviderFacts,
}

/// What one page of a provider's list is asked for.
#[derive(Debug, Clone, Copy)]
pub struct ListAsk<'a> {
    /// Where the page starts: the provider's cursor, or the page number for a list paged by
    /// number (`None`: the first page).
    pub cursor: Option<&'a str>,
    /// The most items the page holds.
    pub limit: u32,
    /// Payments created before this are not needed (a list that filters by time is asked
    /// for no older ones).
    pub since: crate::clock::Timestamp,
}

/// What one call to a provider asks.
#[derive(Clone, Copy)]
enum Call<'a> {
    Status { session_id: &'a str, hold: bool },
    List(ListAsk<'a>),
}

/// What one call got: a 2xx body, or what a non-2xx answer means. One per call, moved once.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Body(Vec<u8>),
    Answer(Answer),
}

/// Why a check got no usable answer. Messages never carry secrets or raw bodies.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP {0}{hint}", hint = if (300..400).contains(.0) { " (a redirect, not followed: check base_url)" } else { "" })]
    Status(u16),
    #[error("HTTP 429 rate limited{}", retry_after.map(|d| format!(" (retry after {})", humantime::format_duration(d))).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error(
        "HTTP {0}: credentials refused (check the provider's key variable and the key's permissions)"
    )]
    Unauthorized(u16),
    /// Our client ended a Little long poll that was still held: no answer from the provider.
    #[error("long poll ended without an answer (long_poll_timeout)")]
    LongPollCut,
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("answer larger than http.max_body ({0} bytes)")]
    TooLarge(usize),
    #[error("provider reported an error ({0})")]
    Rejected(String),
    #[error("not called: {0}")]
    NotConfigured(String),
    /// A 404 that is not believed (see [`NotFoundWatch`]): it does not count toward
    /// `not_found_after`. `flagged` once the provider answers "not found" to every session.
    #[error("{why}")]
    NotFoundDoubted { why: String, flagged: bool },
    /// The shared call budget could not be read: no call was made.
    #[error("not called: the call budget in the ledger is unavailable ({0})")]
    Budget(String),
    /// No slot of the call budget was free in time: no call was made. Our own wait, never
    /// the provider's 429.
    #[error("not called: the next call slot of the rate_limit is {} away", humantime::format_duration(*.0))]
    NoSlot(Duration),
}

impl Error {
    /// Whether another attempt within the same check may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect(_)
            | Error::Timeout
            | Error::Malformed(_)
            | Error::TooLarge(_)
            | Error::Rejected(_)
            | Error::RateLimited { .. } => true,
            Error::Status(code) => *code >= 500 || *code == 408,
            Error::Unauthorized(_)
            | Error::NotConfigured(_)
            | Error::LongPollCut
            | Error::NotFoundDoubted { .. }
            | Error::Budget(_)
            | Error::NoSlot(_) => false,
        }
    }

    /// Whether the call ended without any body from the provider (our timeout, a long poll we
    /// cut, a connection that failed): not an answer, so the session is not charged a check.
    pub fn is_bodiless(&self) -> bool {
        matches!(
            self,
            Error::Timeout | Error::LongPollCut | Error::Connect(_)
        )
    }

    /// Whether the session should not be charged a check for this failure: the provider was
    /// unavailable to everyone (rate limit, refused credentials), not unsure about this session.
    pub fn is_providerwide(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Unauthorized(_)
                | Error::NotConfigured(_)
                | Error::Budget(_)
                | Error::NoSlot(_)
        )
    }
}

/// One provider kind's wire knowledge. Implementations are pure apart from building requests.
pub trait Adapter: Send + Sync {
    /// The status request for one session id (the id goes in as one percent-encoded segment).
    fn status_request(&self, client: &reqwest::Client, session_id: &str)
    -> reqwest::RequestBuilder;
    /// The status request without a long poll, for an adapter that [`Adapter::long_polls`]: a
    /// plain call the provider answers at once.
    fn plain_status_request(
        &self,
        client: &reqwest::Client,
        session_id: &str,
    ) -> reqwest::RequestBuilder {
        self.status_request(client, session_id)
    }
    /// Interprets a 2xx body of the status endpoint for `session_id`.
    fn parse(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error>;
    /// Interprets the provider's payment object a verified callback carries (where its kind's
    /// `answer_pointer` says), for `session_id`; most kinds' callbacks carry their status
    /// answer's shape.
    fn parse_callback(&self, session_id: &str, body: &[u8]) -> Result<ProviderFacts, Error> {
        self.parse(session_id, body)
    }
    /// Interprets a 2xx body that may also say "not found" (an envelope with an error code);
    /// most providers only have [`Adapter::parse`].
    fn parse_answer(&self, session_id: &str, body: &[u8]) -> Result<Answer, Error> {
        self.parse(session_id, body).map(Answer::Found)
    }
    /// Why this provider cannot be asked at all with its configuration (no call is made).
    fn not_ready(&self) -> Option<String> {
        None
    }
    /// Interprets a non-2xx answer from the provider's error envelope; `None` leaves it to the
    /// shared rules (404 not found, 401/403 refused, 429 paused, 5xx transient).
    fn classify_error(&self, _status: StatusCode, _body: &[u8]) -> Option<Result<Answer, Error>> {
        None
    }
    /// Whether a status call is a long poll, whose client-side timeout ends it with
    /// [`Error::LongPollCut`] at once (no retry) rather than as a timeout.
    fn long_polls(&self) -> bool {
        false
    }
    /// The endpoint this adapter calls, without credentials or query (see [`Provider::endpoint`]).
    fn endpoint(&self) -> String;
    /// The request for one page of the provider's list of payments.
    fn list_request(
        &self,
        _client: &reqwest::Client,
        _ask: ListAsk<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        None
    }
    /// Interprets a 2xx body of the list endpoint, the page `ask` asked for.
    fn parse_list(&self, _body: &[u8], _ask: ListAsk<'_>) -> Result<ListPage, Error> {
        Err(Error::NotConfigured("this kind documents no list".into()))
    }
    /// How long a 429 without `Retry-After` asks us to wait, read from the provider's own
    /// headers (Moflay's `X-RateLimit-Reset` epoch); `None` leaves [`DEFAULT_429_PAUSE`].
    fn rate_limit_reset(
        &self,
        _headers: &reqwest::header::HeaderMap,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Duration> {
        None
    }
}

/// Builds the adapter for a configured provider.
pub fn adapter_for(cfg: &ProviderConfig) -> Box<dyn Adapter> {
    cfg.kind.adapter(cfg)
}

/// Distinct sessions answered "not found" before the provider is flagged as misdirected (a
/// wrong `base_url` or path) rather than taken to hold a book of unknown payments `[assumed]`.
pub const MISDIRECTED_AFTER: usize = 3;

/// Whether a provider's 404s can be believed (docs/providers.md, "A wrong base URL never closes
/// a book"). The rules `[assumed]`:
///
/// 1. A provider is *confirmed* once it answers some session normally in this process, or when
///    the ledger says it last answered normally through this same base URL and no process has
///    flagged it since. Until then its 404s are doubted: not counted toward `not_found_after`,
///    not charged; at [`MISDIRECTED_AFTER`] distinct sessions it is flagged.
/// 2. A confirmed provider's 404s count, except that [`MISDIRECTED_AFTER`] distinct sessions it
///    had answered normally before (it knew them) answering 404 with no normal answer in
///    between flags it: a provider forgetting the sessions it knew is broken or misdirected.
/// 3. A flagged provider's 404s are doubted until it answers a session normally again.
///
/// So a provider that knows most sessions still expires the few it never knew, however few
/// sessions are left, and a wrong base URL never closes one.
#[derive(Debug, Default)]
pub struct NotFoundWatch {
    confirmed: bool,
    flagged: bool,
    /// Distinct sessions with a 404 since the last normal answer: while unconfirmed, all of
    /// them; while confirmed, those the provider had answered normally before.
    since_answer: std::collections::HashSet<String>,
}

/// What [`NotFoundWatch::not_found`] says of one 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFoundVerdict {
    /// Believed: counts toward `not_found_after`.
    Counted,
    /// Not believed; `flagged` once the provider is flagged misdirected, `newly_flagged` for
    /// the 404 that flagged it.
    Doubted { flagged: bool, newly_flagged: bool },
}

impl NotFoundWatch {
    /// A normal answer about some session: 404s are believed again. Returns whether the
    /// provider was flagged until now.
    pub fn answered(&mut self) -> bool {
        self.confirmed = true;
        self.since_answer.clear();
        std::mem::take(&mut self.flagged)
    }

    /// At a pass's start: the ledger says the provider last answered normally through this
    /// base URL and nobody flagged it since.
    pub fn seed_confirmed(&mut self) {
        if !self.flagged {
            self.confirmed = true;
        }
    }

    /// A 404 for `session_id`; `known` when the provider had answered it normally before.
    pub fn not_found(&mut self, session_id: &str, known: bool) -> NotFoundVerdict {
        if (!self.confirmed || known) && !self.since_answer.contains(session_id) {
            self.since_answer.insert(session_id.to_string());
        }
        let newly_flagged = !self.flagged && self.since_answer.len() >= MISDIRECTED_AFTER;
        if newly_flagged {
            self.flagged = true;
            self.confirmed = false;
        }
        if self.confirmed {
            NotFoundVerdict::Counted
        } else {
            NotFoundVerdict::Doubted {
                flagged: self.flagged,
                newly_flagged,
            }
        }
    }

    pub fn flagged(&self) -> bool {
        self.flagged
    }
}

/// A configured provider: its adapter plus the shared HTTP plumbing.
pub struct Provider {
    pub name: String,
    adapter: Box<dyn Adapter>,
    client: reqwest::Client,
    http: HttpConfig,
    /// `[http] timeout`, for plain calls of a provider that long-polls (`http.timeout` is then
    /// its `long_poll_timeout`).
    plain_timeout: Duration,
    /// Its credential's call budget (`None` with `rate_limit = "off"`).
    pub budget: Option<budget::Budget>,
    /// How long a check waits for its slot in the budget before it ends uncharged.
    patience: Duration,
    /// Set by a 429: no call to this provider before this instant, from any check.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Whether its 404s are believed; lives as long as the provider (across passes).
    pub not_found_watch: std::sync::Mutex<NotFoundWatch>,
    /// How sweeps read its list of payments; `None` without one, or with `list = "off"`.
    pub list: Option<ListReach>,
    /// What is known of the sweeps of its list, by this process or read from the ledger.
    pub sweeps: std::sync::Mutex<SweepView>,
    /// The items a list page asks for now (the smaller of [`ListSpec::page_limits`] once the
    /// provider refused the larger).
    pub list_limit: std::sync::atomic::AtomicU32,
    /// What the reconciler learned of its answer times, and when (`reconcile::timing` keeps
    /// its own type here: `provider` never imports the reconciler).
    pub learned:
        std::sync::Mutex<Option<(std::time::Instant, Arc<dyn std::any::Any + Send + Sync>)>>,
    /// When its call budget last bound a claim: due sessions filled every slot it had.
    pub bound_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How one provider's list is swept (its kind's [`ListSpec`] and its table's settings).
#[derive(Debug, Clone, Copy)]
pub struct ListReach {
    pub using: ListUse,
    pub id_prefix: &'static str,
    pub page_limits: (u32, u32),
    pub filters_by_time: bool,
    pub window: Duration,
    pub unmatched_after: Duration,
}

impl ListReach {
    /// Whether a list can name this session: its `session_id` or `provider_ref` has the form
    /// of the list's ids.
    pub fn reaches(&self, session_id: &str, provider_ref: Option<&str>) -> bool {
        session_id.starts_with(self.id_prefix)
            || provider_ref.is_some_and(|r| r.starts_with(self.id_prefix))
    }
}

/// What is known of a provider's sweeps: when the next is due and whether the last read its
/// pages (`error` says why not).
#[derive(Debug, Clone, Default)]
pub struct SweepView {
    pub next_due: Option<crate::clock::Timestamp>,
    pub swept_at: Option<crate::clock::Timestamp>,
    pub error: Option<String>,
}

/// How much of a non-2xx answer is read for the adapter's error envelope.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How long a hint's check waits for its slot in the call budget at most.
pub const HINT_PATIENCE: Duration = Duration::from_secs(2);

/// How long a 429 without a usable `Retry-After` pauses the provider `[assumed]`.
pub const DEFAULT_429_PAUSE: Duration = Duration::from_secs(5);

/// All configured providers by name.
pub type Providers = HashMap<String, Arc<Provider>>;

/// Builds every configured provider, sharing one HTTP client (one connection pool); `lease` is
/// how long a claimed session stays leased (a check never holds a budget slot beyond half).
pub fn build(
    providers: &[ProviderConfig],
    http: &HttpConfig,
    lease: Duration,
) -> Result<Providers, reqwest::Error> {
    let longest = providers
        .iter()
        .map(|p| p.timeout)
        .max()
        .unwrap_or(http.timeout);
    let client = crate::http::client(longest.max(http.timeout))?;
    Ok(providers
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                Arc::new(Provider::new(p, client.clone(), http.clone(), lease / 2)),
            )
        })
        .collect())
}

/// `GET {base_url}/{path…}/{session_id}` asking for JSON, with each configured secret as a
/// header `(name, prefix, secret)`: the status call of most providers.
pub fn json_get(
    client: &reqwest::Client,
    url: reqwest::Url,
    secrets: &[(&str, &str, Option<&Secret>)],
) -> reqwest::RequestBuilder {
    let mut req = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    for (name, prefix, secret) in secrets {
        if let Some(secret) = secret {
            req = req.header(*name, secret_header(prefix, secret));
        }
    }
    req
}

/// A header value for a secret, marked sensitive so no HTTP layer prints it.
pub fn secret_header(prefix: &str, secret: &Secret) -> HeaderValue {
    match HeaderValue::from_str(&format!("{prefix}{}", secret.expose())) {
        Ok(mut v) => {
            v.set_sensitive(true);
            v
        }
        // A key with characters a header cannot carry is sent as nothing; the provider's 401
        // then names the problem without the key appearing anywhere.
        Err(_) => HeaderValue::from_static(""),
    }
}

impl Provider {
    /// `patience`: how long a check waits for its slot in the call budget (half the lease:
    /// the session is leased while it waits).
    pub fn new(
        cfg: &ProviderConfig,
        client: reqwest::Client,
        http: HttpConfig,
        patience: Duration,
    ) -> Self {
        let adapter = adapter_for(cfg);
        let secrets = [&cfg.api_key, &cfg.public_key, &cfg.secret_key]
            .map(|s| s.as_ref().map(Secret::expose));
        let credential = budget::fingerprint(cfg.kind.name(), &secrets, &adapter.endpoint());
        Self {
            name: cfg.name.clone(),
            adapter,
            client,
            plain_timeout: http.timeout,
            http: HttpConfig {
                timeout: cfg.timeout,
                ..http
            },
            budget: budget::Budget::new(credential, &cfg.rate_limits),
            patience,
            paused_until: std::sync::Mutex::new(None),
            not_found_watch: std::sync::Mutex::new(NotFoundWatch::default()),
            list: cfg
                .kind
                .spec()
                .list
                .as_ref()
                .filter(|_| cfg.list != ListUse::Off)
                .map(|l| ListReach {
                    using: cfg.list,
                    id_prefix: l.id_prefix,
                    page_limits: l.page_limits,
                    filters_by_time: l.filters_by_time,
                    window: cfg.list_window,
                    unmatched_after: cfg.unmatched_after,
                }),
            sweeps: std::sync::Mutex::new(SweepView::default()),
            list_limit: std::sync::atomic::AtomicU32::new(
                cfg.kind.spec().list.as_ref().map_or(0, |l| l.page_limits.0),
            ),
            learned: std::sync::Mutex::new(None),
            bound_at: std::sync::Mutex::new(None),
        }
    }

    /// The base URL as the ledger remembers which endpoint answered: scheme, host, port and
    /// path, never credentials or a query.
    pub fn endpoint(&self) -> String {
        self.adapter.endpoint()
    }

    /// Pauses every call to this provider for `d` (a longer pause already set wins).
    pub fn pause_for(&self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        // Only an Instant lives behind this lock; a poisoned one still holds a usable value.
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// How long the provider is still paused, if it is.
    pub fn paused_remaining(&self) -> Option<Duration> {
        let p = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        p.map(|until| until.saturating_duration_since(tokio::time::Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Asks the provider about one session, retrying transient failures within the check with
    /// exponential backoff and jitter. A 429 pauses the whole provider for its `Retry-After`:
    /// checks wait out a pause that fits in `http.retry_max`, and end at once (with
    /// [`Error::RateLimited`], so the session is rescheduled uncharged) when it is longer.
    ///
    /// `hold` lets a provider that long-polls hold the call; without it the call is a plain one
    /// the provider answers at once (used once `max_age` has passed: only an answer closes a
    /// session then, and a held call we cut is none).
    pub fn check<'a>(
        &'a self,
        session_id: &'a str,
        hold: bool,
        caller: budget::Caller,
    ) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            let seen = AtomicU16::new(0);
            let result = self.status(session_id, hold, caller, &seen).await;
            let http_status = Some(seen.load(Ordering::Relaxed)).filter(|s| *s != 0);
            Checked {
                result,
                http_status,
            }
        })
    }

    /// [`Provider::check`]'s calls, the last one's HTTP status left in `seen`.
    async fn status(
        &self,
        session_id: &str,
        hold: bool,
        caller: budget::Caller,
        seen: &AtomicU16,
    ) -> Result<Answer, Error> {
        self.retrying(session_id, move || async move {
            let body = self
                .exchange(Call::Status { session_id, hold }, caller, seen)
                .await?;
            match body {
                Reply::Answer(answer) => Ok(answer),
                // A 2xx can still carry a provider's error (Mopay Nigeria's envelope, with a 429 code).
                Reply::Body(body) => {
                    self.note_rate_limit(self.adapter.parse_answer(session_id, &body), None)
                        .await
                }
            }
        })
        .await
    }

    /// Reads one page of the provider's list of payments, as `ask` says: with the same budget
    /// slot, pause, timeout, body cap and retries as a status call. A 404 is no answer here
    /// (the list always exists).
    pub fn list_page<'a>(&'a self, ask: ListAsk<'a>) -> BoxFuture<'a, Result<ListPage, Error>> {
        Box::pin(self.retrying("(list)", move || async move {
            match self
                .exchange(Call::List(ask), budget::Caller::Regular, &AtomicU16::new(0))
                .await?
            {
                Reply::Answer(_) => Err(Error::Status(404)),
                Reply::Body(body) => {
                    self.note_rate_limit(self.adapter.parse_list(&body, ask), None)
                        .await
                }
            }
        }))
    }

    /// Runs `attempt` with exponential backoff and jitter while it fails transiently; a 429's
    /// pause is waited out by the next attempt when it fits in `http.retry_max`.
    async fn retrying<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.http.retry_initial)
            .with_max_delay(self.http.retry_max)
            .with_factor(2.0)
            .with_max_times(self.http.retries as usize)
            .with_jitter();
        let retry_max = self.http.retry_max;
        attempt
            .retry(policy)
            .when(Error::is_retryable)
            .adjust(move |e, dur| match (e, dur) {
                (_, None) => None,
                (Error::RateLimited { retry_after: Some(ra) }, Some(_)) if *ra > retry_max => None,
                // The next attempt itself waits out the provider's pause.
                (Error::RateLimited { .. }, Some(_)) => Some(Duration::ZERO),
                (_, d) => d,
            })
            .notify(|e, dur| {
                tracing::debug!(provider = %self.name, session_id = what, error = %e, retry_in = ?dur, "retrying call")
            })
            .await
    }

    /// One call: waits out a pause and for a budget slot, sends, and gives back a 2xx body, or
    /// what the provider's error envelope (or the shared rules) make of any other answer.
    async fn exchange(
        &self,
        call: Call<'_>,
        caller: budget::Caller,
        seen: &AtomicU16,
    ) -> Result<Reply, Error> {
        // Only this call's own response counts (a retry after a 503 that then times out has none).
        seen.store(0, Ordering::Relaxed);
        if let Some(why) = self.adapter.not_ready() {
            return Err(Error::NotConfigured(why));
        }
        if let Some(rest) = self.paused_remaining() {
            if rest > self.http.retry_max {
                return Err(Error::RateLimited {
                    retry_after: Some(rest),
                });
            }
            crate::metrics::rate_limit_wait(&self.name);
            tokio::time::sleep(rest).await;
        }
        if let Some(budget) = &self.budget {
            // A hint waits a round at most: it holds its session's lease while it waits.
            let patience = match caller {
                budget::Caller::Regular => self.patience,
                budget::Caller::Hint => self.patience.min(HINT_PATIENCE),
            };
            match budget.slot(patience, caller).await {
                Ok(false) => {}
                Ok(true) => crate::metrics::rate_limit_wait(&self.name),
                // Not reached in time: the session is given back uncharged, due as before.
                Err(budget::NoSlot::TooFar(wait)) => return Err(Error::NoSlot(wait)),
                Err(budget::NoSlot::Book(e)) => return Err(Error::Budget(e)),
            }
        }
        let (request, held) = match call {
            Call::Status { session_id, hold } => {
                // Each provider's own timeout: `long_poll_timeout` for Little's long polls.
                let held = hold && self.adapter.long_polls();
                let request = if held || !self.adapter.long_polls() {
                    self.adapter
                        .status_request(&self.client, session_id)
                        .timeout(self.http.timeout)
                } else {
                    self.adapter
                        .plain_status_request(&self.client, session_id)
                        .timeout(self.plain_timeout)
                };
                (request, held)
            }
            Call::List(ask) => match self.adapter.list_request(&self.client, ask) {
                Some(r) => (r.timeout(self.plain_timeout), false),
                None => return Err(Error::NotConfigured("this kind documents no list".into())),
            },
        };
        let response = match request.send().await {
            Ok(r) => r,
            // A held long poll that ends on our side carries no answer: the provider said nothing
            // (docs/providers.md: a call that ends without a body is a failed call, never an answer).
            Err(e) if held && e.is_timeout() => {
                return Err(Error::LongPollCut);
            }
            Err(e) => return Err(Error::from(http::transport(e))),
        };
        let status = response.status();
        seen.store(status.as_u16(), Ordering::Relaxed);
        if !status.is_success() {
            // Error envelopes are small; read a bounded amount for the adapter's classification.
            let now = chrono::Utc::now();
            let retry_after = http::retry_after(response.headers(), now)
                .or_else(|| self.adapter.rate_limit_reset(response.headers(), now));
            let body = http::read_capped(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let answer = self
                .adapter
                .classify_error(status, &body)
                .unwrap_or_else(|| Self::generic(status));
            return self
                .note_rate_limit(answer, retry_after)
                .await
                .map(Reply::Answer);
        }
        let max = self.http.max_body;
        let body = http::read_capped(response, max)
            .await
            .map_err(|e| Error::from_body(e, max))?;
        Ok(Reply::Body(body))
    }

    /// The shared rules for a non-2xx answer.
    fn generic(status: StatusCode) -> Result<Answer, Error> {
        match status {
            StatusCode::NOT_FOUND => Ok(Answer::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(Error::Unauthorized(status.as_u16()))
            }
            StatusCode::TOO_MANY_REQUESTS => Err(Error::RateLimited { retry_after: None }),
            s => Err(Error::Status(s.as_u16())),
        }
    }

    /// A rate-limit answer pauses the whole provider for its `Retry-After` (the header's, else
    /// the adapter's, else [`DEFAULT_429_PAUSE`]): in this process, and in the shared call
    /// budget for every process on the ledger.
    async fn note_rate_limit<T>(
        &self,
        answer: Result<T, Error>,
        header: Option<Duration>,
    ) -> Result<T, Error> {
        match answer {
            Err(Error::RateLimited { retry_after }) => {
                let pause = header.or(retry_after).unwrap_or(DEFAULT_429_PAUSE);
                tracing::warn!(provider = %self.name, pause = %humantime::format_duration(pause), "rate limited: pausing calls to this provider");
                self.pause_for(pause);
                if let Some(budget) = &self.budget {
                    let until = budget::now_us().saturating_add(pause.as_micros() as i64);
                    if let Err(e) = budget.hold(until).await {
                        tracing::warn!(provider = %self.name, error = %e, "could not share the pause through the ledger");
                    }
                }
                Err(Error::RateLimited {
                    retry_after: Some(pause),
                })
            }
            other => other,
        }
    }
}

impl From<http::Transport> for Error {
    fn from(t: http::Transport) -> Self {
        match t {
            http::Transport::Timeout => Error::Timeout,
            http::Transport::Failed(m) => Error::Connect(m),
        }
    }
}

impl Error {
    fn from_body(e: http::BodyError, max: usize) -> Self {
        match e {
            http::BodyError::TooLarge => Error::TooLarge(max),
            http::BodyError::Transport(t) => t.into(),
        }
    }
}

/// A status endpoint up to the session id: `base` (without query or fragment) and the kind's
/// path `segments`, joined once when the adapter is built, so a call appends only the id.
pub struct StatusUrl(reqwest::Url);

/// `url` without userinfo, query or fragment: what names an endpoint in the ledger and logs.
pub fn endpoint_of(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl StatusUrl {
    /// The endpoint up to the session id, for [`Adapter::endpoint`].
    pub fn endpoint(&self) -> String {
        endpoint_of(&self.0)
    }

    pub fn new(base: &reqwest::Url, segments: &[&str]) -> Self {
        let mut url = base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Self(url)
    }

    /// The endpoint with `session_id` appended as one percent-encoded path segment.
    pub fn with(&self, session_id: &str) -> reqwest::Url {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(session_id);
        }
        url
    }
}

/// The decimal digits of a currency's minor unit (ISO 4217), for providers that send minor
/// units. `None` for a currency not listed: its amount cannot be converted, so it is not trusted.
pub fn minor_digits(currency: &str) -> Option<u32> {
    match currency.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => Some(0),
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => Some(3),
        "AED" | "AUD" | "BWP" | "CAD" | "CDF" | "CHF" | "CNY" | "EGP" | "ETB" | "EUR" | "GBP"
        | "GHS" | "INR" | "KES" | "LSL" | "MAD" | "MUR" | "MWK" | "MZN" | "NAD" | "NGN" | "SLE"
        | "SOS" | "SSP" | "SZL" | "TZS" | "USD" | "ZAR" | "ZMW" | "ZWG" => Some(2),
        _ => None,
    }
}

/// Parses a 2xx answer's JSON body. A body that is UTF-8 throughout (as JSON must be) is parsed
/// as text, which spares serde_json checking every string again; any other body is parsed as
/// bytes, where serde_json checks only the strings it keeps, so a stray Latin-1 byte in a field
/// nobody reads does not make the answer unreadable.
pub fn json_body<'de, T: serde::Deserialize<'de>>(body: &'de [u8]) -> Result<T, Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
    .map_err(|e| json_error(&e))
}

/// A JSON parse failure as a transient error that says what kind of failure, never the body.
pub fn json_error(e: &serde_json::Error) -> Error {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected field type",
        serde_json::error::Category::Eof => "truncated",
    };
    Error::Malformed(format!("not the documented JSON ({kind})"))
}

/// A JSON amount — a string like `"100.00"` or a number like `100.5` — as a decimal, read from
/// its text and never through a float (serde_json keeps a number's text with
/// `arbitrary_precision`). `null` or absent is `None`.
pub fn json_decimal(v: Option<&serde_json::Value>, field: &str) -> Result<Option<Decimal>, Error> {
    let text = match v {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err(Error::Malformed(format!("{field} is not a decimal"))),
    };
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map(Some)
        .map_err(|_| Error::Malformed(format!("{field} {:?} is not a decimal", clip(&text))))
}

/// A JSON value's text for a status word: the string itself, or the JSON of anything else.
pub fn json_word(v: Option<&serde_json::Value>) -> (String, Option<&str>) {
    match v {
        Some(serde_json::Value::String(s)) => (s.clone(), Some(s.as_str())),
        Some(other) => (other.to_string(), None),
        None => ("null".to_string(), None),
    }
}

/// A short, printable rendering of an unexpected value for a log line or `last_error`.
pub fn clip(text: &str) -> String {
    // The usual case, a short printable ASCII word (it runs for every fact of every answer).
    if text.len() <= 64 && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_owned();
    }
    let clean: String = text
        .chars()
        .filter(|c| !crate::escape::unsafe_char(*c))
        .take(64)
        .collect();
    if text.chars().count() > 64 {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_printable_text_and_cleans_the_rest() {
        let long = "a".repeat(65);
        let cases = [
            ("COMPLETED", "COMPLETED".to_string()),
            ("", String::new()),
            (&long[..64], "a".repeat(64)),
            (long.as_str(), format!("{}…", "a".repeat(64))),
            ("pa\nid\u{7f}\u{85}", "paid".to_string()),
            ("line\u{2028}sep\u{2029}", "linesep".to_string()),
            ("Maseru ✓", "Maseru ✓".to_string()),
        ];
        for (text, want) in cases {
            assert_eq!(clip(text), want, "{text:?}");
        }
    }

    #[test]
    fn ids_become_one_encoded_segment() {
        let base = reqwest::Url::parse("http://127.0.0.1:1/prefix/").unwrap();
        let u = StatusUrl::new(&base, &["api", "v1"]).with("a/b %?#c");
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/prefix/api/v1/a%2Fb%20%25%3F%23c"
        );
        let h = reqwest::Url::parse("http://h?q=1#f").unwrap();
        assert_eq!(
            StatusUrl::new(&h, &["x"]).with("..a").as_str(),
            "http://h/x/..a"
        );
        // No segments of its own: the id follows the base path.
        assert_eq!(StatusUrl::new(&h, &[]).with("s").as_str(), "http://h/s");
        let p = reqwest::Url::parse("http://h/p").unwrap();
        assert_eq!(StatusUrl::new(&p, &[]).with("s").as_str(), "http://h/p/s");
    }

    #[test]
    fn json_amounts_never_go_through_a_float() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"a": 0.1, "b": "100.00", "c": 1e2, "d": 12345678901234567.89}"#,
        )
        .unwrap();
        assert_eq!(
            json_decimal(v.get("a"), "a").unwrap().unwrap().to_string(),
            "0.1"
        );
        assert_eq!(
            json_decimal(v.get("b"), "b").unwrap().unwrap().to_string(),
            "100.00"
        );
        assert_eq!(
            json_decimal(v.get("c"), "c").unwrap().unwrap(),
            Decimal::from(100)
        );
        assert_eq!(
            json_decimal(v.get("d"), "d").unwrap().unwrap().to_string(),
            "12345678901234567.89"
        );
        assert_eq!(json_decimal(v.get("z"), "z").unwrap(), None);
        assert!(json_decimal(Some(&serde_json::json!(true)), "t").is_err());
    }

    #[test]
    fn a_provider_that_knows_no_session_is_not_believed() {
        use NotFoundVerdict::*;
        let d = |flagged, newly_flagged| Doubted {
            flagged,
            newly_flagged,
        };
        let mut w = NotFoundWatch::default();
        // Nothing normal since start: no 404 is believed; the third distinct one flags.
        assert_eq!(w.not_found("a", false), d(false, false));
        assert_eq!(w.not_found("a", false), d(false, false));
        assert_eq!(w.not_found("b", true), d(false, false));
        assert_eq!(w.not_found("c", false), d(true, true));
        assert_eq!(w.not_found("d", false), d(true, false));
        assert!(w.flagged());
        // A normal answer: believed, however many sessions it never knew answer 404 …
        assert!(w.answered());
        for id in ["a", "b", "c", "d", "e"] {
            assert_eq!(w.not_found(id, false), Counted);
        }
        // … until three it knew do, with no normal answer in between.
        assert_eq!(w.not_found("k1", true), Counted);
        assert_eq!(w.not_found("k1", true), Counted);
        assert_eq!(w.not_found("k2", true), Counted);
        assert_eq!(w.not_found("k3", true), d(true, true));
        assert_eq!(w.not_found("e", false), d(true, false));
        assert!(w.answered());
        assert!(!w.answered());
        // Seeded from the ledger: believed at once; a flag in this process wins.
        let mut w = NotFoundWatch::default();
        w.seed_confirmed();
        assert_eq!(w.not_found("a", false), Counted);
        let mut w = NotFoundWatch::default();
        for id in ["a", "b", "c"] {
            w.not_found(id, false);
        }
        w.seed_confirmed();
        assert_eq!(w.not_found("z", false), d(true, false));
    }

    #[test]
    fn classification() {
        assert!(Error::Status(503).is_retryable());
        assert!(!Error::Status(400).is_retryable());
        assert!(!Error::Unauthorized(401).is_retryable());
        assert!(Error::Unauthorized(403).is_providerwide());
        assert!(!Error::Timeout.is_providerwide());
    }
}
