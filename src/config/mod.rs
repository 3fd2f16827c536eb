//! Configuration: the TOML file config/payrecon.toml documents, parsed loosely into [`RawConfig`] and validated
//! into [`Config`]. This is the only module that reads environment variables (for secrets).
//!
//! Every key has a default except provider URLs and secrets. Errors name the key and the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ledger::Location;

/// A configuration or usage problem: the CLI exits 2 for these.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

pub use crate::provider::{HttpConfig, MopayNgConfig, ProviderConfig};
pub use crate::secret::{Secret, SigningKey};

mod raw;
mod values;

pub use raw::*;
use values::*;
pub use values::{duration, duration_within, rate_limit};

// ---------------------------------------------------------------------------------------------
// Validated.

/// The validated configuration that the rest of the program takes.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SQLite file or PostgreSQL database of `[ledger]`.
    pub ledger: Location,
    /// `[ledger] history`: how long checks and delivery attempts are kept for the console's
    /// stories (`None`: not kept).
    pub history: Option<Duration>,
    pub schedule: ScheduleConfig,
    pub backoff: BackoffConfig,
    /// `[backoff]` with a provider's own `schedule` in place of its own, per provider whose
    /// table sets one or whose kind's default applies (resolved once here, not per check).
    provider_backoff: BTreeMap<String, BackoffConfig>,
    pub http: HttpConfig,
    pub providers: Vec<ProviderConfig>,
    pub events_log: bool,
    /// The outbound webhook, when `[events.webhook]` is configured.
    pub webhook: Option<WebhookConfig>,
    /// `[admin] listen`: `/healthz` and `/metrics`, when set.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// `[admin] token_env`'s token, which both then demand.
    pub admin_token: Option<Secret>,
    /// `[api]`: the HTTP API for applications, when `listen` is set.
    pub api: Option<ApiConfig>,
    /// `[console]`: the web console, when `listen` is set.
    pub console: Option<ConsoleConfig>,
    /// Settings that leave a provider unable to reach a final state (e.g. Mopay Nigeria without
    /// a status table): `check-config` fails on them, `run` warns.
    pub warnings: Vec<String>,
    /// Secrets the config names but the environment does not hold (or holds malformed).
    /// Commands that call providers or sign webhooks refuse to start while any are listed;
    /// commands that only read the ledger do not need them.
    pub secret_problems: Vec<String>,
    pub log_format: LogFormat,
}

/// `[api]`, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub token_env: Option<String>,
    /// Every request must carry `Authorization: Bearer <token>` when set; required beyond
    /// loopback.
    pub token: Option<Secret>,
}

/// `[console]` and its `[operators.NAME]`, validated.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: std::net::SocketAddr,
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    /// A REVIEW session of at least this amount, or waiting longer than `severe_after`, is
    /// marked severe in the queue.
    pub severe_amount: rust_decimal::Decimal,
    pub severe_after: Duration,
    pub operators: Vec<Operator>,
    /// Proxies whose `operator_header` names the operator (none: logins by token only).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The header a trusted proxy names the operator in (lower case).
    pub operator_header: String,
}

/// One person of the console.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub token_env: String,
    /// Their login token (`None`: the variable is not set; they cannot log in).
    pub token: Option<Secret>,
    /// The user a trusted proxy names them by (their name when unset).
    pub proxy_user: Option<String>,
}

/// What an operator may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Also verifies, resolves, replays and dismisses.
    Resolver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Resolver => "resolver",
        }
    }
}

/// `[console]`: off without `listen`; with it, at least one operator, each with a role and a
/// token variable; beyond loopback only with `secure_cookies` (TLS terminated by a proxy).
fn console(
    raw: &RawConfig,
    env: EnvLookup<'_>,
    secret_problems: &mut Vec<String>,
) -> Result<Option<ConsoleConfig>, UsageError> {
    let Some(addr) = listen("console.listen", raw.console.listen.as_deref())? else {
        if let Some(name) = raw.operators.keys().next() {
            return Err(UsageError::new(format!(
                "operators.{name}: operators need [console] listen"
            )));
        }
        return Ok(None);
    };
    if !addr.ip().is_loopback() && !raw.console.secure_cookies {
        return Err(UsageError::new(format!(
            "console.secure_cookies: required when console.listen ({addr}) is beyond loopback: \
             serve the console through a reverse proxy that terminates TLS (docs/console.md)"
        )));
    }
    if raw.operators.is_empty() {
        return Err(UsageError::new(
            "operators: [console] listen is set but no [operators.NAME] table names who may log in",
        ));
    }
    let mut operators = Vec::new();
    for (name, o) in &raw.operators {
        let key = |k: &str| format!("operators.{name}.{k}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(UsageError::new(format!(
                "operators.{name}: a name is 1 to 64 letters, digits, '.', '_' or '-'"
            )));
        }
        let role = match o.role.as_str() {
            "viewer" => Role::Viewer,
            "resolver" => Role::Resolver,
            other => {
                return Err(UsageError::new(format!(
                    "{}: {other:?} is not \"viewer\" or \"resolver\"",
                    key("role")
                )));
            }
        };
        let token = match env(&o.token_env).filter(|v| v.trim().len() >= 16) {
            Some(v) => Some(Secret::new(v.trim().to_string())),
            None => {
                secret_problems.push(format!(
                    "{}: environment variable {} is not set (or shorter than 16 characters)",
                    key("token_env"),
                    o.token_env
                ));
                None
            }
        };
        if let Some(u) = &o.proxy_user
            && (u.is_empty() || u.len() > 256 || !u.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(UsageError::new(format!(
                "{}: 1 to 256 visible ASCII characters, as the proxy sends them",
                key("proxy_user")
            )));
        }
        operators.push(Operator {
            name: name.clone(),
            role,
            token_env: o.token_env.clone(),
            token,
            proxy_user: o.proxy_user.clone(),
        });
    }
    let trusted_proxies = raw
        .console
        .trusted_proxies
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<std::net::IpAddr>().map_err(|_| {
                UsageError::new(format!(
                    "console.trusted_proxies: {a:?} is not an IP address (the proxy's, as this \
                     daemon sees it connect)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let operator_header = raw.console.operator_header.trim().to_ascii_lowercase();
    if axum::http::HeaderName::from_bytes(operator_header.as_bytes()).is_err() {
        return Err(UsageError::new(format!(
            "console.operator_header: {:?} is not a header name",
            raw.console.operator_header
        )));
    }
    Ok(Some(ConsoleConfig {
        listen: addr,
        secure_cookies: raw.console.secure_cookies,
        session_ttl: RawConsole::key("session_ttl").duration(&raw.console.session_ttl)?,
        severe_amount: crate::ledger::validate_amount(&raw.console.severe_amount)
            .ok()
            .and_then(|_| raw.console.severe_amount.parse().ok())
            .ok_or_else(|| {
                UsageError::new(format!(
                    "console.severe_amount: {:?} is not decimal text such as \"1000.00\"",
                    raw.console.severe_amount
                ))
            })?,
        severe_after: RawConsole::key("severe_after").duration(&raw.console.severe_after)?,
        operators,
        trusted_proxies,
        operator_header,
    }))
}

/// Parses `host:port` (or `off`) for a listen key.
fn listen(key: &str, value: Option<&str>) -> Result<Option<std::net::SocketAddr>, UsageError> {
    match value.map(str::trim) {
        None | Some("off") | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            UsageError::new(format!(
                "{key}: {v:?} is not an address like \"127.0.0.1:9187\" (or \"off\")"
            ))
        }),
    }
}

/// `[events.webhook]`, validated.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    /// The variable the secrets came from, for messages.
    pub secret_env: String,
    /// One or more signing keys (rotation: each signs every message).
    pub secrets: Vec<SigningKey>,
    pub timeout: Duration,
    /// Delays before the 2nd, 3rd, … attempt; after the last, the event is dead.
    pub schedule: Vec<Duration>,
    pub concurrency: usize,
}

impl WebhookConfig {
    /// How long a claimed event is this process's: one attempt is bounded by the timeout.
    pub fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(2)
    }
}

#[derive(Clone)]
pub struct ScheduleConfig {
    /// The cron expression as written, for messages.
    pub cron_expr: String,
    pub cron: croner::Cron,
    pub batch_size: u32,
    pub concurrency: usize,
    pub lease: Duration,
    /// How often `run` looks, between cron ticks, for a session whose check is due (`None`:
    /// `poll = "off"`, cron ticks only).
    pub poll: Option<Duration>,
    /// When more is due than the budget allows: sessions younger than this go first (for a
    /// provider with learned check times, every session younger than its `max_age`), and no
    /// session overdue by more than `ageing` waits behind them (ledger::DueOrder).
    pub young: Duration,
    pub ageing: Duration,
    /// How fast learned answer times forget: a session weighs half as much this much after its
    /// creation (`reconcile::timing`).
    pub learn_half_life: Duration,
    /// With `schedule = "learned"`, the chance of an answer since the last check at which the
    /// next check is due (`reconcile::timing`).
    pub learn_share: f64,
}

impl fmt::Debug for ScheduleConfig {
    // The parsed cron is printed as its expression; croner's own Debug is pages of bitfields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleConfig")
            .field("cron", &self.cron_expr)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("poll", &self.poll)
            .field("young", &self.young)
            .field("ageing", &self.ageing)
            .field("learn_half_life", &self.learn_half_life)
            .field("learn_share", &self.learn_share)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct BackoffConfig {
    /// Explicit delays between checks: the first after the session's first check, and so on,
    /// the last repeating until `max_age`. Empty: the exponential form below.
    pub schedule: Vec<Duration>,
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    pub jitter: f64,
    pub max_age: Duration,
    pub not_found_after: u32,
    pub late_check: Duration,
    /// Whether the delays above are the checks' times (`Fixed`), or the floor, the prior and
    /// the ceiling of times learned from the provider's own answers (`schedule = "learned"`,
    /// `reconcile::timing`).
    pub pace: Pace,
    /// When a session added without any signal is first checked.
    pub first_check: FirstCheck,
}

/// How a provider's checks are timed (`schedule` in its table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// The schedule's delays, or the exponential form's.
    #[default]
    Fixed,
    /// Learned from the provider's own answers (`reconcile::timing`).
    Learned,
}

/// When a session's first check is due (`first_check` in its provider's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstCheck {
    /// This long after it was created (zero: when it is added).
    After(Duration),
    /// When an answer is plausible: the learned time by which one answer in ten has come
    /// (`reconcile::timing::Learned::plausible`).
    Plausible,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where to read the config from: `--config`, then `$PAYRECON_CONFIG`, then the system path.
pub fn default_path() -> PathBuf {
    std::env::var_os("PAYRECON_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/payrecon/payrecon.toml"))
}

/// How secrets are looked up; the real program reads the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A PostgreSQL ledger's URL, checked, with the password from the environment variable
/// `password_env` (if given) set in it. Errors start with the names the user wrote: `keys` are
/// the URL's and the variable name's (`ledger.url` and `ledger.password_env`, or the flags).
pub fn pg_url(
    url: &str,
    password_env: Option<&str>,
    env: EnvLookup<'_>,
    (url_key, env_key): (&str, &str),
) -> Result<String, UsageError> {
    let bad_url = |e| UsageError::new(format!("{url_key}: {e}"));
    crate::ledger::db::pg_config(url).map_err(bad_url)?;
    let Some(var) = password_env else {
        return Ok(url.to_string());
    };
    let password = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
        UsageError::new(format!(
            "{env_key}: the environment variable {var} is not set"
        ))
    })?;
    crate::ledger::db::with_password(url, &password).map_err(bad_url)
}

impl Config {
    /// Reads, parses and validates the file; every error names the file and the key.
    pub fn load(path: &Path) -> Result<Config, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read config file {}: {e} (pass --config FILE or set PAYRECON_CONFIG)",
                path.display()
            ))
        })?;
        Self::parse(&text, &process_env)
            .map_err(|e| UsageError::new(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and validates config text; secrets are looked up through `env`.
    pub fn parse(text: &str, env: EnvLookup<'_>) -> Result<Config, UsageError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines with a caret; keep it to one sentence that
            // names the line and, where the line holds one, the key.
            let msg = e.message().trim().to_string();
            let at = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
            UsageError::new(format!("{at}{msg}"))
        })?;
        Self::from_raw(raw, env)
    }

    /// Validates a parsed config.
    pub fn from_raw(raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, UsageError> {
        let ledger = ledger_location(&raw.ledger, env)?;
        let history = match raw.ledger.history.as_str() {
            "off" => None,
            text => Some(RawLedger::key("history").duration(text)?).filter(|d| !d.is_zero()),
        };
        let s = &raw.schedule;
        let schedule = schedule_config(s)?;
        let b = &raw.backoff;
        // Each kind's default schedule applies unless [backoff] chooses a form itself.
        let kind_schedules = b.schedule.is_none()
            && b.initial.is_none()
            && b.multiplier.is_none()
            && b.max.is_none();
        let backoff = backoff_config(b)?;
        let http = http_config(&raw.http)?;
        let worst = http.worst_check_time();
        if schedule.lease <= worst {
            return Err(UsageError::new(format!(
                "schedule.lease: {} is shorter than the longest check ({} = http.timeout × (retries + 1) plus retry delays); raise the lease or lower http.timeout/retries",
                s.lease,
                humantime::format_duration(worst)
            )));
        }
        let mut secret_problems = Vec::new();
        let mut providers = Vec::new();
        let mut provider_backoff = BTreeMap::new();
        for (name, p) in &raw.providers {
            let (p, own) = provider(
                name,
                p,
                http.timeout,
                &backoff,
                kind_schedules,
                env,
                &mut secret_problems,
            )?;
            if let Some(own) = own {
                provider_backoff.insert(p.name.clone(), own);
            }
            providers.push(p);
        }
        let Listeners {
            admin_listen,
            admin_token,
            api,
        } = listeners(&raw, env, &mut secret_problems)?;
        let console = console(&raw, env, &mut secret_problems)?;
        let warnings = providers
            .iter()
            .flat_map(|p| {
                p.problems()
                    .into_iter()
                    .map(|w| format!("providers.{}: {w}", p.name))
            })
            .collect();
        lease_outlasts_long_polls(&schedule, &s.lease, &http, &providers)?;
        let webhook = raw
            .events
            .webhook
            .as_ref()
            .map(|w| webhook(w, env, &mut secret_problems))
            .transpose()?;
        let log_format = log_format(&raw.log.format)?;
        Ok(Config {
            ledger,
            history,
            schedule,
            backoff,
            provider_backoff,
            http,
            providers,
            events_log: raw.events.log,
            webhook,
            admin_listen,
            admin_token,
            api,
            console,
            warnings,
            secret_problems,
            log_format,
        })
    }

    /// Fails, naming every missing or malformed secret, unless all are present.
    pub fn require_secrets(&self) -> Result<(), UsageError> {
        if self.secret_problems.is_empty() {
            Ok(())
        } else {
            Err(UsageError::new(self.secret_problems.join("; ")))
        }
    }

    /// The named provider's config.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The provider's own schedule, when its table sets one or its kind's default applies.
    pub fn own_schedule(&self, provider: &str) -> Option<&[Duration]> {
        self.provider_backoff
            .get(provider)
            .map(|b| b.schedule.as_slice())
            .filter(|s| !s.is_empty())
    }

    /// The backoff a session of `provider` is checked by: `[backoff]`, with the provider's own
    /// `schedule` in place of `[backoff] schedule` when its table sets one.
    pub fn backoff_for(&self, provider: &str) -> &BackoffConfig {
        self.provider_backoff.get(provider).unwrap_or(&self.backoff)
    }
}

/// The lease must outlast each provider's longest check too (long polls are long).
fn lease_outlasts_long_polls(
    schedule: &ScheduleConfig,
    lease_text: &str,
    http: &HttpConfig,
    providers: &[ProviderConfig],
) -> Result<(), UsageError> {
    for p in providers {
        let worst = HttpConfig {
            timeout: p.timeout,
            ..http.clone()
        }
        .worst_check_time();
        if schedule.lease <= worst {
            return Err(UsageError::new(format!(
                "schedule.lease: {lease_text} is shorter than the longest check of provider {} ({}); raise the lease",
                p.name,
                humantime::format_duration(worst)
            )));
        }
    }
    Ok(())
}

/// `[log] format`.
fn log_format(text: &str) -> Result<LogFormat, UsageError> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(UsageError::new(format!(
            "log.format: must be \"text\" or \"json\", got {other:?}"
        ))),
    }
}

/// `[ledger]`: a SQLite file or a PostgreSQL URL (with its password from `password_env`).
fn ledger_location(l: &RawLedger, env: EnvLookup<'_>) -> Result<Location, UsageError> {
    if l.password_env.is_some() && l.url.is_none() {
        return Err(UsageError::new(
            "ledger.password_env: only a PostgreSQL ledger (ledger.url) takes a password",
        ));
    }
    Ok(match (l.path.clone(), l.url.clone()) {
        (Some(_), Some(_)) => {
            return Err(UsageError::new(
                "ledger: set path (SQLite) or url (PostgreSQL), not both",
            ));
        }
        (None, Some(url)) => Location::Url(pg_url(
            &url,
            l.password_env.as_deref(),
            env,
            ("ledger.url", "ledger.password_env"),
        )?),
        (Some(path), None) if path.as_os_str().is_empty() => {
            return Err(UsageError::new(
                "ledger.path: is empty; name the SQLite file, such as \"/var/lib/payrecon/ledger.db\"",
            ));
        }
        (path, None) => {
            Location::Path(path.unwrap_or_else(|| PathBuf::from("/var/lib/payrecon/ledger.db")))
        }
    })
}

/// `[schedule]`: the cron (which must fire), batch, concurrency, lease, poll and `DueOrder`'s
/// spans.
fn schedule_config(s: &RawSchedule) -> Result<ScheduleConfig, UsageError> {
    let cron: croner::Cron = s.cron.parse().map_err(|e| {
        UsageError::new(format!(
            "schedule.cron: {:?} is not a cron expression: {e}",
            s.cron
        ))
    })?;
    // A schedule that never fires would leave `run` with nothing to do.
    if cron
        .find_next_occurrence(&chrono::Utc::now(), false)
        .is_err()
    {
        return Err(UsageError::new(format!(
            "schedule.cron: {:?} never fires (no future time matches it)",
            s.cron
        )));
    }
    Ok(ScheduleConfig {
        cron_expr: s.cron.clone(),
        cron,
        batch_size: RawSchedule::key("batch_size").count(s.batch_size)?,
        concurrency: RawSchedule::key("concurrency").count(s.concurrency)? as usize,
        lease: RawSchedule::key("lease").duration(&s.lease)?,
        poll: match s.poll.as_str() {
            "off" => None,
            text => Some(RawSchedule::key("poll").duration(text)?),
        },
        young: RawSchedule::key("young").duration(&s.young)?,
        ageing: RawSchedule::key("ageing").duration(&s.ageing)?,
        learn_half_life: RawSchedule::key("learn_half_life").duration(&s.learn_half_life)?,
        learn_share: RawSchedule::key("learn_share").number(s.learn_share)?,
    })
}

/// `[backoff]`: the delays between checks (a schedule, or the exponential form), `max_age`,
/// `not_found_after` and the late check.
fn backoff_config(b: &RawBackoff) -> Result<BackoffConfig, UsageError> {
    let (initial, max) = (
        b.initial.as_deref().unwrap_or("30s"),
        b.max.as_deref().unwrap_or("1h"),
    );
    let key = RawBackoff::key;
    let backoff = BackoffConfig {
        schedule: delays("backoff.schedule", b.schedule.as_deref())?,
        initial: key("initial").duration(initial)?,
        multiplier: key("multiplier").number(b.multiplier.unwrap_or(2.0))?,
        max: key("max").duration(max)?,
        jitter: key("jitter").number(b.jitter)?,
        max_age: key("max_age").duration(&b.max_age)?,
        not_found_after: key("not_found_after").count(b.not_found_after)?,
        late_check: key("late_check").duration(&b.late_check)?,
        pace: Pace::Fixed,
        first_check: FirstCheck::After(Duration::ZERO),
    };
    if backoff.max < backoff.initial {
        return Err(UsageError::new(format!(
            "backoff.max: {max} is shorter than backoff.initial {initial}"
        )));
    }
    Ok(backoff)
}

/// `[http]`: the timeout, retries and body cap every provider call shares.
fn http_config(h: &RawHttp) -> Result<HttpConfig, UsageError> {
    Ok(HttpConfig {
        timeout: RawHttp::key("timeout").duration(&h.timeout)?,
        retries: RawHttp::key("retries").count(h.retries)?,
        retry_initial: RawHttp::key("retry_initial").duration(&h.retry_initial)?,
        retry_max: RawHttp::key("retry_max").duration(&h.retry_max)?,
        max_body: byte_size("http.max_body", &h.max_body)?,
    })
}

/// `[admin]` and `[api]`: each listener's address, and its bearer token — required beyond
/// loopback, its variable noted in `secret_problems` when it is not set.
fn listeners(
    raw: &RawConfig,
    env: EnvLookup<'_>,
    secret_problems: &mut Vec<String>,
) -> Result<Listeners, UsageError> {
    // A listener's bearer token: required beyond loopback; its variable must be set.
    let mut token_for = |table: &str,
                         addr: std::net::SocketAddr,
                         var: &Option<String>,
                         why: &str|
     -> Result<Option<Secret>, UsageError> {
        if !addr.ip().is_loopback() && var.is_none() {
            return Err(UsageError::new(format!(
                "{table}.token_env: required when {table}.listen ({addr}) is beyond loopback: {why}"
            )));
        }
        Ok(match var {
            None => None,
            Some(var) => match env(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(Secret::new(v.trim().to_string())),
                None => {
                    secret_problems.push(format!(
                        "{table}.token_env: environment variable {var} is not set"
                    ));
                    None
                }
            },
        })
    };
    let admin_listen = listen("admin.listen", raw.admin.listen.as_deref())?;
    let admin_token = match admin_listen {
        None => None,
        Some(addr) => token_for(
            "admin",
            addr,
            &raw.admin.token_env,
            "/healthz and /metrics tell anyone how the books stand",
        )?,
    };
    let api = match listen("api.listen", raw.api.listen.as_deref())? {
        None => None,
        Some(addr) => {
            let token = token_for(
                "api",
                addr,
                &raw.api.token_env,
                "the API can enqueue and verify payments",
            )?;
            Some(ApiConfig {
                listen: addr,
                token_env: raw.api.token_env.clone(),
                token,
            })
        }
    };
    Ok(Listeners {
        admin_listen,
        admin_token,
        api,
    })
}

/// The listeners a config asks for (see [`listeners`]).
struct Listeners {
    admin_listen: Option<std::net::SocketAddr>,
    admin_token: Option<Secret>,
    api: Option<ApiConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A value for any key: durations of every size (and nonsense), numbers of every
        /// size and sign, rates, crons, empty text.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => prop::sample::select(vec![
                    "\"500000000000y\"", "\"0s\"", "\"1ns\"", "\"1s\"", "\"59m\"", "\"2h\"",
                    "\"3650d\"", "\"3651d\"", "\"18446744073709551615s\"", "\"\"", "\"off\"",
                    "\"1000001/s\"", "\"4294967295/s\"", "\"5/10s\"", "\"1/1ns\"", "[]",
                    "[\"off\", \"10/s\"]", "0", "-1", "1", "9223372036854775807", "1e308",
                    "-1e308", "nan", "inf", "\"0 0 30 2 *\"", "\"* * * * * *\"", "true",
                ])
                .prop_map(String::from),
                1 => any::<i64>().prop_map(|n| n.to_string()),
                1 => any::<f64>()
                    .prop_filter("TOML floats", |f| f.is_finite())
                    .prop_map(|f| format!("{f:?}")),
                1 => "[0-9]{1,20}[a-z]{0,3}".prop_map(|d| format!("{d:?}")),
            ]
        }

        const KEYS: &[(&str, &str)] = &[
            ("schedule", "cron"),
            ("schedule", "batch_size"),
            ("schedule", "concurrency"),
            ("schedule", "lease"),
            ("schedule", "poll"),
            ("schedule", "young"),
            ("schedule", "ageing"),
            ("schedule", "learn_half_life"),
            ("schedule", "learn_share"),
            ("backoff", "initial"),
            ("backoff", "multiplier"),
            ("backoff", "max"),
            ("backoff", "jitter"),
            ("backoff", "max_age"),
            ("backoff", "not_found_after"),
            ("backoff", "late_check"),
            ("http", "timeout"),
            ("http", "retries"),
            ("http", "retry_initial"),
            ("http", "retry_max"),
            ("http", "max_body"),
            ("providers.m", "rate_limit"),
            ("providers.m", "long_poll_timeout"),
            ("events.webhook", "timeout"),
            ("events.webhook", "concurrency"),
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]
            /// No value of any key makes validation panic, and what it accepts can be used:
            /// every duration can be added to now, the worst check computed.
            #[test]
            fn no_value_crashes_the_config(
                // One to three keys changed, the rest default, so validation gets as far as
                // every key.
                changed in prop::collection::vec((0..KEYS.len(), value()), 1..=3),
            ) {
                let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                tables.entry("providers.m").or_default().push("kind = \"little\"".into());
                tables.entry("events.webhook").or_default().push("url = \"http://127.0.0.1:1/h\"".into());
                tables.entry("events.webhook").or_default().push("secret_env = \"W\"".into());
                let mut seen = std::collections::BTreeSet::new();
                for (i, v) in &changed {
                    let (table, key) = KEYS[*i];
                    if seen.insert(*i) {
                        tables.entry(table).or_default().push(format!("{key} = {v}"));
                    }
                }
                let text: String = tables
                    .iter()
                    .map(|(t, lines)| format!("[{t}]\n{}\n", lines.join("\n")))
                    .collect();
                if let Ok(cfg) = Config::parse(&text, &|_: &str| None) {
                    let now = crate::clock::now();
                    let _ = cfg.http.worst_check_time();
                    for d in [cfg.backoff.initial, cfg.backoff.max, cfg.backoff.max_age,
                              cfg.backoff.late_check, cfg.schedule.lease, cfg.schedule.young,
                              cfg.schedule.ageing, cfg.schedule.poll.unwrap_or_default()] {
                        let _ = crate::clock::add(now, d * 2);
                    }
                }
            }
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_postgres_password_comes_from_the_environment_and_is_never_shown() {
        let text = "[ledger]\nurl = \"postgres://payrecon@db.internal/pr\"\npassword_env = \"PRDB\"\n\
                    [providers.m]\nkind = \"mopay\"\nbase_url = \"http://127.0.0.1:9\"\n";
        let env = |v: &str| (v == "PRDB").then(|| "s3cr3t/:@".to_string());
        let cfg = Config::parse(text, &env).unwrap();
        let Location::Url(url) = &cfg.ledger else {
            panic!("not a URL ledger")
        };
        let (parsed, _) = crate::ledger::db::pg_config(url).unwrap();
        assert_eq!(parsed.get_password(), Some(&b"s3cr3t/:@"[..]));
        assert!(!cfg.ledger.to_string().contains("s3cr3t"), "{}", cfg.ledger);
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let e = Config::parse(text, &no_env).unwrap_err().to_string();
        assert!(e.contains("PRDB is not set"), "{e}");
        let both = "[ledger]\npath = \"/tmp/x.db\"\nurl = \"postgres://h/d\"\n";
        let e = Config::parse(both, &no_env).unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../config/payrecon.toml");
        let env = |v: &str| (v == "MOPAY_API_KEY").then(|| "k".to_string());
        let cfg = Config::parse(text, &env).expect("config/payrecon.toml must be valid");
        assert_eq!(cfg.schedule.batch_size, 500);
        assert_eq!(cfg.providers[0].name, "mopay");
        // The example chooses no backoff form: the kind's default schedule applies.
        assert_eq!(cfg.backoff_for("mopay").schedule.len(), 10);
    }

    /// The keys a section of the config declares, as serde names them when refusing an unknown
    /// one (the declarations themselves, not a list kept beside them).
    fn declared_keys(section: &str, needed: &str) -> std::collections::BTreeSet<String> {
        let text = format!("[{section}]\n{needed}__probe__ = 1\n");
        let err = toml::from_str::<RawConfig>(&text).unwrap_err().to_string();
        let expected = err
            .split("expected one of ")
            .nth(1)
            .or_else(|| err.split("expected ").nth(1))
            .unwrap_or_else(|| panic!("{section}: {err}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    /// Every key each section declares is shown in config/payrecon.toml (set, or commented out
    /// as `# key = …`), and the example shows no key the config does not take.
    #[test]
    fn the_example_shows_every_key_and_no_other() {
        use std::collections::{BTreeMap, BTreeSet};
        let text = include_str!("../../config/payrecon.toml");
        let mut shown: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim_start_matches('#').trim();
            if line.starts_with("# #") {
                continue;
            }
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                // Every provider table is one section: `providers.*`.
                section = match name.split_once('.') {
                    Some(("providers", _)) => "providers.*".to_string(),
                    Some(("operators", _)) => "operators.*".to_string(),
                    _ => name.to_string(),
                };
                continue;
            }
            if let Some((key, _)) = l.split_once(" = ").or_else(|| l.split_once('='))
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                shown
                    .entry(section.clone())
                    .or_default()
                    .insert(key.trim().to_string());
            }
        }
        let sections = [
            ("ledger", "ledger", ""),
            ("schedule", "schedule", ""),
            ("backoff", "backoff", ""),
            ("http", "http", ""),
            ("providers.*", "providers.p", "kind = \"mopay\"\n"),
            ("events", "events", ""),
            (
                "events.webhook",
                "events.webhook",
                "url = \"u\"\nsecret_env = \"s\"\n",
            ),
            ("admin", "admin", ""),
            ("api", "api", ""),
            ("console", "console", ""),
            (
                "operators.*",
                "operators.o",
                "role = \"viewer\"\ntoken_env = \"T\"\n",
            ),
            ("log", "log", ""),
        ];
        for (name, table, needed) in sections {
            let mut declared = declared_keys(table, needed);
            if name == "events" {
                declared.remove("webhook"); // a table of its own, below
            }
            let example = shown.remove(name).unwrap_or_default();
            assert_eq!(
                example, declared,
                "[{name}]: the example shows {example:?}, the config declares {declared:?}"
            );
        }
        assert!(
            shown.is_empty(),
            "sections the config does not take: {shown:?}"
        );
    }

    /// Every key the sections declare, with its declared default, bound and doc.
    fn declared() -> Vec<&'static Key> {
        [
            RawLedger::KEYS,
            RawSchedule::KEYS,
            RawBackoff::KEYS,
            RawHttp::KEYS,
            RawEvents::KEYS,
            RawAdmin::KEYS,
            RawApi::KEYS,
            RawConsole::KEYS,
            RawLog::KEYS,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// A Moflay table's `webhook_secret_env` must hold a Standard Webhooks secret
    /// (`whsec_<base64>`): another value is a secret problem that names the variable, never its
    /// value; Mopay takes no webhook secret at all.
    #[test]
    fn a_moflay_webhook_secret_is_a_whsec_key() {
        let text =
            "[providers.m]\nkind = \"moflay\"\napi_key_env = \"K\"\nwebhook_secret_env = \"WH\"\n";
        let with = |wh: &'static str| {
            move |name: &str| match name {
                "K" => Some("mof_live_x".to_string()),
                "WH" => Some(wh.to_string()),
                _ => None,
            }
        };
        let cfg = Config::parse(text, &with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        assert!(cfg.require_secrets().is_ok());
        let cfg = Config::parse(text, &with("plain-secret-123")).unwrap();
        let e = cfg.require_secrets().unwrap_err().to_string();
        assert!(
            e.contains("providers.m.webhook_secret_env") && e.contains("whsec_"),
            "{e}"
        );
        assert!(!e.contains("plain-secret-123"), "{e}");
        let mopay = "[providers.p]\nkind = \"mopay\"\nwebhook_secret_env = \"WH\"\n";
        assert!(Config::parse(mopay, &with("x")).is_err());
    }

    /// Each declared default passes its own declared bound, and each key has a doc.
    #[test]
    fn every_declared_default_is_valid() {
        for k in declared() {
            assert!(!k.doc.trim().is_empty(), "{} has no doc", k.path);
            if k.default == "None" {
                continue;
            }
            let text = k.default.trim_matches('"');
            let ok = match k.bound {
                Bound::Count(..) => k.count(text.parse().unwrap()).map(|_| ()),
                Bound::Range(..) => k.number(text.parse().unwrap()).map(|_| ()),
                Bound::Duration(_) => k.duration(text).map(|_| ()),
                Bound::Size => byte_size(k.path, text).map(|_| ()),
                Bound::Text | Bound::Flag => Ok(()),
            };
            assert!(
                ok.is_ok(),
                "{}: default {} fails its bound: {ok:?}",
                k.path,
                k.default
            );
        }
        // A bound is held: one past it is refused, naming the key.
        let e = RawSchedule::key("batch_size").count(100_001).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schedule.batch_size: must be 1 to 100000, got 100001"
        );
    }

    /// config/payrecon.toml shows each declared key that has a default with exactly that
    /// default (the file is the reference users read; the declaration is what runs).
    #[test]
    fn the_example_shows_each_declared_default() {
        let text = include_str!("../../config/payrecon.toml");
        let mut section = String::new();
        let mut shown = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|r| r.split(']').next()) {
                section = name.to_string();
            } else if let Some((key, value)) = line.split_once(" = ")
                && !line.starts_with('#')
            {
                let value = value.split(" #").next().unwrap_or(value).trim();
                shown.insert(format!("{section}.{key}"), value.to_string());
            }
        }
        for k in declared() {
            if k.default == "None" {
                continue;
            }
            assert_eq!(
                shown.get(k.path).map(String::as_str),
                Some(k.default),
                "{}: the example and the declaration disagree",
                k.path
            );
        }
    }

    /// The commented provider tables of the shipped example, uncommented, are valid too.
    #[test]
    fn the_example_provider_tables_parse() {
        let text = include_str!("../../config/payrecon.toml");
        // Uncomment the key lines of the commented `[providers.*]` tables only.
        let mut inside = false;
        let mut lines = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# [") {
                inside = rest.starts_with("providers.");
            } else if !l.starts_with('#') {
                inside = false;
            }
            match l.strip_prefix("# ") {
                Some(rest) if inside && !rest.starts_with('#') => lines.push(rest),
                _ => lines.push(l),
            }
        }
        let uncommented = lines.join("\n");
        let env = |_: &str| Some("k".to_string());
        let cfg = Config::parse(&uncommented, &env).expect("uncommented example");
        let kinds: Vec<&str> = cfg.providers.iter().map(|p| p.kind.name()).collect();
        for k in ["mopay", "little", "mopay_ng", "moflay", "vesicash"] {
            assert!(
                kinds.contains(&k),
                "{k} missing from the example: {kinds:?}"
            );
        }
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let cfg = Config::parse("", &no_env).unwrap();
        assert_eq!(cfg.schedule.concurrency, 16);
        assert_eq!(cfg.backoff.not_found_after, 3);
        assert_eq!(cfg.http.max_body, 1024 * 1024);
        assert_eq!(cfg.http.worst_check_time(), Duration::from_secs(47));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[schedule]\nbatch_size = 0", "schedule.batch_size"),
            ("[schedule]\ncron = \"every now and then\"", "schedule.cron"),
            ("[backoff]\ninitial = \"soon\"", "backoff.initial"),
            ("[schedule]\nlease = \"5s\"", "schedule.lease"),
            ("[providers.x]\nkind = \"paypal\"", "providers.x.kind"),
            (
                "[providers.m]\nkind = \"mopay\"\nrate_limit = \"fast\"",
                "providers.m.rate_limit",
            ),
            ("[http]\nmax_body = \"lots\"", "http.max_body"),
            ("[schedule]\nbogus = 1", "bogus"),
            (
                "[backoff]\nschedule = []",
                "backoff.schedule: give 1 to 100 delays",
            ),
            (
                "[backoff]\nschedule = [\"10s\", \"0s\"]",
                "backoff.schedule[1]",
            ),
            ("[backoff]\nschedule = [\"2d\"]", "backoff.schedule[0]"),
            (
                "[providers.m]\nkind = \"mopay\"\nschedule = [\"soon\"]",
                "providers.m.schedule[0]",
            ),
            (
                "[schedule]\nbatch_size = \"x\"",
                "line 2: schedule.batch_size: invalid type",
            ),
        ];
        for (text, key) in cases {
            let err = Config::parse(text, &no_env).expect_err(text).0;
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    /// A provider's own `schedule` replaces `[backoff] schedule` for its sessions only.
    /// `schedule = "learned"` keeps the kind's default delays as the floor, prior and ceiling
    /// of learned ones, and waits for a plausible answer before the first check.
    #[test]
    fn a_learned_schedule_keeps_the_kind_s_delays_as_its_bounds() {
        let text = "[providers.m]\nkind = \"mopay\"\nschedule = \"learned\"\n\
                    [providers.n]\nkind = \"mopay\"\nfirst_check = \"15s\"\n\
                    [providers.o]\nkind = \"mopay\"\nschedule = \"learned\"\nfirst_check = \"0s\"\n";
        let cfg = Config::parse(text, &no_env).unwrap();
        let m = cfg.backoff_for("m");
        assert_eq!(m.pace, Pace::Learned);
        assert_eq!(m.first_check, FirstCheck::Plausible);
        assert_eq!(m.schedule.len(), 10, "MoPay's default schedule");
        let n = cfg.backoff_for("n");
        assert_eq!(n.pace, Pace::Fixed);
        assert_eq!(n.first_check, FirstCheck::After(Duration::from_secs(15)));
        assert_eq!(
            cfg.backoff_for("o").first_check,
            FirstCheck::After(Duration::ZERO)
        );
        let err = Config::parse(
            "[providers.m]\nkind = \"mopay\"\nschedule = \"clever\"\n",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("providers.m.schedule") && err.contains("\"learned\""),
            "{err}"
        );
        let err = Config::parse(
            "[providers.m]\nkind = \"mopay\"\nfirst_check = \"soon\"\n",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers.m.first_check"), "{err}");
    }

    #[test]
    fn a_provider_schedule_overrides_the_default() {
        let text = "[backoff]\nschedule = [\"1m\", \"5m\"]\n\
                    [providers.m]\nkind = \"mopay\"\nschedule = [\"10s\", \"20s\", \"1m\"]\n\
                    [providers.n]\nkind = \"mopay\"\n";
        let cfg = Config::parse(text, &no_env).unwrap();
        let secs = |b: &BackoffConfig| b.schedule.iter().map(Duration::as_secs).collect::<Vec<_>>();
        assert_eq!(secs(cfg.backoff_for("m")), [10, 20, 60]);
        assert_eq!(secs(cfg.backoff_for("n")), [60, 300]);
        assert_eq!(
            secs(&Config::parse("", &no_env).unwrap().backoff),
            [0u64; 0]
        );
    }

    /// Without a form chosen in `[backoff]`, each kind follows its default schedule (the
    /// figures of docs/providers.md, written by hand); setting the exponential form, or a
    /// global schedule, turns the kinds' defaults off.
    #[test]
    fn each_kind_has_its_default_schedule_unless_backoff_chooses() {
        let tables = "[providers.m]\nkind = \"mopay\"\n\
                      [providers.f]\nkind = \"moflay\"\napi_key_env = \"K\"\n";
        let secs = |b: &BackoffConfig| b.schedule.iter().map(Duration::as_secs).collect::<Vec<_>>();
        let cfg = Config::parse(tables, &no_env).unwrap();
        assert_eq!(
            secs(cfg.backoff_for("m")),
            [10, 20, 30, 45, 60, 90, 120, 300, 900, 3600]
        );
        assert_eq!(
            secs(cfg.backoff_for("f")),
            [20, 20, 20, 30, 60, 300, 1800, 7200]
        );
        for chosen in [
            "initial = \"1s\"",
            "multiplier = 3.0",
            "max = \"10m\"",
            "schedule = [\"1m\"]",
        ] {
            let cfg = Config::parse(&format!("[backoff]\n{chosen}\n{tables}"), &no_env).unwrap();
            let want: &[u64] = if chosen.starts_with("schedule") {
                &[60]
            } else {
                &[]
            };
            assert_eq!(secs(cfg.backoff_for("f")), want, "{chosen}");
        }
    }

    /// Values that used to crash or idle the daemon, or leak a credential into the journal:
    /// each is a configuration error naming its key (and never repeating a secret).
    #[test]
    fn config_can_neither_crash_nor_idle_the_daemon() {
        let m = "[providers.m]\nkind = \"mopay\"\n";
        let cases = [
            (
                "[http]\ntimeout = \"500000000000y\"".to_string(),
                "http.timeout",
                "longest",
            ),
            (
                "[http]\nretry_max = \"2h\"".into(),
                "http.retry_max",
                "longest",
            ),
            (
                "[backoff]\nmax = \"20000d\"".into(),
                "backoff.max",
                "longest",
            ),
            (
                "[backoff]\nmax_age = \"500000000000y\"".into(),
                "backoff.max_age",
                "longest",
            ),
            (
                "[schedule]\nlease = \"30d\"".into(),
                "schedule.lease",
                "longest",
            ),
            (
                "[schedule]\ncron = \"0 0 30 2 *\"".into(),
                "schedule.cron",
                "never fires",
            ),
            ("[ledger]\npath = \"\"".into(), "ledger.path", "empty"),
            (
                format!("{m}rate_limit = []"),
                "providers.m.rate_limit",
                "empty",
            ),
            (
                format!("{m}rate_limit = [\"off\", \"10/s\"]"),
                "providers.m.rate_limit",
                "off",
            ),
            (
                format!("{m}rate_limit = \"2000000/s\""),
                "providers.m.rate_limit",
                "limiter",
            ),
            (
                format!("{m}rate_limit = \"5/1ns\""),
                "providers.m.rate_limit",
                "rate limit",
            ),
            (
                format!("{m}base_url = \"https://user:hunter2@pay.mopay.co.ls\""),
                "providers.m.base_url",
                "api_key_env",
            ),
            (
                format!("{m}base_url = \"https://pay.mopay.co.ls/?token=hunter2\""),
                "providers.m.base_url",
                "\"token\"",
            ),
            (
                "[events.webhook]\nurl = \"https://h/x?api_key=hunter2\"\nsecret_env = \"W\""
                    .into(),
                "events.webhook.url",
                "credential",
            ),
            (
                "[admin]\nlisten = \"0.0.0.0:9187\"".into(),
                "admin.token_env",
                "loopback",
            ),
        ];
        for (text, key, why) in cases {
            let err = Config::parse(&text, &no_env).expect_err(&text).0;
            assert!(
                err.contains(key) && err.contains(why),
                "{text:?} gave {err:?}"
            );
            assert!(!err.contains("hunter2"), "the secret was repeated: {err}");
        }
        // An ordinary query and a token for a non-loopback admin are fine.
        Config::parse(&format!("{m}base_url = \"https://h/p?env=live\""), &no_env).unwrap();
        let cfg = Config::parse(
            "[admin]\nlisten = \"0.0.0.0:9187\"\ntoken_env = \"T\"",
            &|_: &str| Some("tok".into()),
        )
        .unwrap();
        assert_eq!(cfg.admin_token.unwrap().expose(), "tok");
    }

    #[test]
    fn rate_limits_parse_lists() {
        let cfg = Config::parse(
            "[providers.m]\nkind = \"mopay\"\nrate_limit = [\"100/min\", \"200/h\"]",
            &no_env,
        )
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.rate_limits.len(), 2);
        assert_eq!(p.rate_limits[1].1, Duration::from_secs(3600));
        assert_eq!(
            rate_limit("k", "5/10s").unwrap(),
            (
                std::num::NonZeroU32::new(5).unwrap(),
                Duration::from_secs(10)
            )
        );
        assert!(rate_limit("k", "5/0s").is_err());
        assert!(rate_limit("k", "5/2d").is_err());
    }

    /// Moflay's documented limits: production 100/min and 200/h, sandbox (`mof_test_` keys)
    /// 20/min with a burst of 5 per 10 s (docs.moflay.com/api-reference/rate-limit).
    #[test]
    fn moflay_defaults_follow_the_key_environment() {
        let limits = |key: &str| {
            let key = key.to_string();
            let cfg = Config::parse(
                "[providers.m]\nkind = \"moflay\"\napi_key_env = \"MK\"",
                &move |_: &str| Some(key.clone()),
            )
            .unwrap();
            cfg.providers[0]
                .rate_limits
                .iter()
                .map(|(n, per)| (n.get(), per.as_secs()))
                .collect::<Vec<_>>()
        };
        assert_eq!(limits("mof_live_abc"), [(100, 60), (200, 3600)]);
        assert_eq!(limits("mof_test_abc"), [(20, 60), (5, 10)]);
    }

    #[test]
    fn webhook_secrets_rotate_and_are_checked() {
        let text = "[events.webhook]\nurl = \"http://127.0.0.1:1/h\"\nsecret_env = \"WH\"";
        let two =
            |_: &str| Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25k".to_string());
        let cfg = Config::parse(text, &two).unwrap();
        let w = cfg.webhook.unwrap();
        assert_eq!(w.secrets.len(), 2);
        assert_eq!(w.schedule.len(), 7);
        let bad =
            |_: &str| Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_!!notbase64".to_string());
        let e = Config::parse(text, &bad)
            .unwrap()
            .require_secrets()
            .unwrap_err()
            .0;
        assert!(
            e.contains("secret number 2 in WH") && !e.contains("notbase64"),
            "{e}"
        );
        // Missing secrets do not stop commands that only read the ledger; they stop the others.
        let cfg = Config::parse(text, &no_env).unwrap();
        assert!(
            cfg.require_secrets()
                .unwrap_err()
                .0
                .contains("WH is not set")
        );
        let cfg = Config::parse(
            "[providers.m]\nkind = \"mopay\"\napi_key_env = \"NOPE\"",
            &no_env,
        )
        .unwrap();
        let e = cfg.require_secrets().unwrap_err().0;
        assert!(
            e.contains("providers.m.api_key_env: environment variable NOPE is not set"),
            "{e}"
        );
    }

    #[test]
    fn the_api_beyond_loopback_needs_a_token() {
        let e = Config::parse("[api]\nlisten = \"0.0.0.0:9188\"", &no_env)
            .unwrap_err()
            .0;
        assert!(e.contains("api.token_env: required"), "{e}");
        let cfg = Config::parse("[api]\nlisten = \"127.0.0.1:9188\"", &no_env).unwrap();
        assert!(cfg.api.unwrap().token.is_none());
        let cfg = Config::parse("[admin]\nlisten = \"off\"", &no_env).unwrap();
        assert!(cfg.admin_listen.is_none());
        assert!(
            Config::parse("[admin]\nlisten = \"nine\"", &no_env)
                .unwrap_err()
                .0
                .contains("admin.listen")
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let env = |_: &str| Some("sk_live_very_secret".to_string());
        let cfg =
            Config::parse("[providers.m]\nkind = \"mopay\"\napi_key_env = \"K\"", &env).unwrap();
        assert!(!format!("{cfg:?}").contains("very_secret"));
    }
}
