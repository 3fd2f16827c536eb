//! The config as written in the file: every key, its type and its default, parsed loosely
//! (serde, `deny_unknown_fields`) before [`super::Config::from_raw`] validates it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub ledger: RawLedger,
    pub schedule: RawSchedule,
    pub backoff: RawBackoff,
    pub http: RawHttp,
    pub providers: BTreeMap<String, RawProvider>,
    pub events: RawEvents,
    pub admin: RawAdmin,
    pub api: RawApi,
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLedger {
    /// A SQLite file; `/var/lib/payrecon/ledger.db` when neither this nor `url` is set.
    pub path: Option<PathBuf>,
    /// A PostgreSQL database, `postgres://…`.
    pub url: Option<String>,
    /// The environment variable holding the PostgreSQL password (kept out of the file).
    pub password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub cron: String,
    pub batch_size: i64,
    pub concurrency: i64,
    pub lease: String,
    pub poll: String,
    pub young: String,
    pub ageing: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            cron: "*/30 * * * * *".into(),
            batch_size: 500,
            concurrency: 16,
            lease: "2m".into(),
            poll: "1s".into(),
            young: "10m".into(),
            ageing: "10m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackoff {
    /// The exponential form's settings; setting any of them (or `schedule`) turns off the
    /// kinds' default schedules.
    pub initial: Option<String>,
    pub multiplier: Option<f64>,
    pub max: Option<String>,
    pub jitter: f64,
    pub max_age: String,
    pub not_found_after: i64,
    pub late_check: String,
    /// Explicit delays between checks instead of the exponential form.
    pub schedule: Option<Vec<String>>,
}

impl Default for RawBackoff {
    fn default() -> Self {
        Self {
            initial: None,
            multiplier: None,
            max: None,
            jitter: 0.2,
            max_age: "48h".into(),
            not_found_after: 3,
            late_check: "7d".into(),
            schedule: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub timeout: String,
    pub retries: i64,
    pub retry_initial: String,
    pub retry_max: String,
    pub max_body: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            timeout: "10s".into(),
            retries: 3,
            retry_initial: "500ms".into(),
            retry_max: "10s".into(),
            max_body: "1MiB".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub public_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    /// vesicash: the variable holding the webhook secret its callbacks are signed with.
    pub webhook_secret_env: Option<String>,
    pub rate_limit: Option<RateLimitSpec>,
    /// This provider's delays between checks, instead of `[backoff]`'s.
    pub schedule: Option<Vec<String>>,
    // little
    pub long_poll: Option<bool>,
    pub long_poll_timeout: Option<String>,
    // mopay_ng
    pub status_endpoint: Option<String>,
    pub id_param: Option<String>,
    pub status_pointer: Option<String>,
    pub amount_pointer: Option<String>,
    pub reference_pointer: Option<String>,
    pub currency_pointer: Option<String>,
    pub status_map: Option<BTreeMap<String, String>>,
}

impl RawProvider {
    /// The kind-specific keys this table sets, for "only for kind …" errors.
    pub(super) fn extra_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |set: bool, k: &'static str| {
            if set {
                keys.push(k);
            }
        };
        note(self.api_key_env.is_some(), "api_key_env");
        note(self.public_key_env.is_some(), "public_key_env");
        note(self.secret_key_env.is_some(), "secret_key_env");
        note(self.webhook_secret_env.is_some(), "webhook_secret_env");
        note(self.long_poll.is_some(), "long_poll");
        note(self.long_poll_timeout.is_some(), "long_poll_timeout");
        note(self.status_endpoint.is_some(), "status_endpoint");
        note(self.id_param.is_some(), "id_param");
        note(self.status_pointer.is_some(), "status_pointer");
        note(self.amount_pointer.is_some(), "amount_pointer");
        note(self.reference_pointer.is_some(), "reference_pointer");
        note(self.currency_pointer.is_some(), "currency_pointer");
        note(self.status_map.is_some(), "status_map");
        keys
    }
}

/// `"10/s"` or a list of such windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateLimitSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub log: bool,
    pub webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    pub secret_env: String,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: String,
    #[serde(default = "default_webhook_schedule")]
    pub schedule: Vec<String>,
    #[serde(default = "default_webhook_concurrency")]
    pub concurrency: i64,
}

pub(super) fn default_webhook_timeout() -> String {
    "10s".into()
}

pub(super) fn default_webhook_schedule() -> Vec<String> {
    ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
        .map(String::from)
        .to_vec()
}

pub(super) fn default_webhook_concurrency() -> i64 {
    8
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            log: true,
            webhook: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// `host:port`, or absent/"off".
    pub listen: Option<String>,
    /// The variable holding the bearer token `/healthz` and `/metrics` then demand; required
    /// beyond loopback.
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    pub listen: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}
