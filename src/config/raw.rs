//! The config as written in the file: every key, its type and its default, parsed loosely
//! (serde, `deny_unknown_fields`) before [`super::Config::from_raw`] validates it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::UsageError;

/// What the config declares of one key, in one place: its name, its type (the field's), its
/// default as the file would write it, the bound its value is held to, and what it means. The
/// sections below declare theirs with [`section!`]; the validators read each bound from here,
/// and tests hold config/payrecon.toml to these names and defaults.
#[derive(Debug)]
pub struct Key {
    /// `section.key`, as errors name it.
    pub path: &'static str,
    /// The default, as written in the file (`None`: unset).
    pub default: &'static str,
    pub bound: Bound,
    pub doc: &'static str,
}

/// What [`section!`]'s `key` gives for a name no section declares: its bound holds nothing.
const UNDECLARED: Key = Key {
    path: "(undeclared key)",
    default: "",
    bound: Bound::Text,
    doc: "",
};

impl Key {
    /// A whole number within the declared bound.
    pub fn count(&self, value: i64) -> Result<u32, UsageError> {
        match self.bound {
            Bound::Count(lo, hi) if (lo..=hi).contains(&value) => Ok(value as u32),
            Bound::Count(lo, hi) => Err(UsageError::new(format!(
                "{}: must be {lo} to {hi}, got {value}",
                self.path
            ))),
            _ => Err(self.not_a("whole number")),
        }
    }

    /// A number within the declared bound.
    pub fn number(&self, value: f64) -> Result<f64, UsageError> {
        match self.bound {
            Bound::Range(lo, hi) if (lo..=hi).contains(&value) => Ok(value),
            Bound::Range(lo, hi) => Err(UsageError::new(format!(
                "{}: must be {lo} to {hi}, got {value}",
                self.path
            ))),
            _ => Err(self.not_a("number")),
        }
    }

    /// A duration within the declared bound.
    pub fn duration(&self, text: &str) -> Result<std::time::Duration, UsageError> {
        match self.bound {
            Bound::Duration(max) => super::duration_within(self.path, text, max),
            _ => Err(self.not_a("duration")),
        }
    }

    /// A key asked for as what it is not declared as: a bug, said as an error rather than a
    /// panic (`every_declared_default_is_valid` holds every declared key to its bound).
    fn not_a(&self, what: &str) -> UsageError {
        UsageError::new(format!("{}: not declared as a {what}", self.path))
    }
}

/// The bound a key's value is held to.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Text checked by the section's own validator (a path, a URL, a cron expression, a name).
    Text,
    /// A whole number from `lo` to `hi`.
    Count(i64, i64),
    /// A number from `lo` to `hi`.
    Range(f64, f64),
    /// A positive duration no longer than this.
    Duration(std::time::Duration),
    /// A size such as `"1MiB"`.
    Size,
    /// `true` or `false`.
    Flag,
}

/// Declares one config section: its struct (serde, `deny_unknown_fields`, every default), its
/// `Default`, and its [`Key`]s — each key written once, as
/// `/// doc` `name: Type = default, bound;`.
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        $name:ident $table:literal {
            $( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr, $bound:expr; )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: Into::into($default), )* }
            }
        }

        impl $name {
            /// Every key of this section, in the order the file shows them.
            pub const KEYS: &'static [Key] = &[
                $( Key {
                    path: concat!($table, ".", stringify!($field)),
                    default: stringify!($default),
                    bound: $bound,
                    doc: concat!($($doc),+),
                }, )*
            ];

            /// The declared key `name` of this section. Every name the validators ask for is
            /// declared: `config::tests::every_declared_default_is_valid` reads each one.
            pub fn key(name: &str) -> &'static Key {
                debug_assert!(
                    Self::KEYS.iter().any(|k| k.path.split_once('.').is_some_and(|(_, n)| n == name)),
                    "{} declares no key {name:?}",
                    $table
                );
                Self::KEYS
                    .iter()
                    .find(|k| k.path.split_once('.').is_some_and(|(_, n)| n == name))
                    .unwrap_or(&UNDECLARED)
            }
        }
    };
}

/// One week: the longest lease, young and ageing.
const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

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
    pub console: RawConsole,
    /// `[operators.NAME]`: the people who use the console.
    pub operators: BTreeMap<String, RawOperator>,
    pub log: RawLog,
}

/// `[operators.NAME]`: one person of the console, their role and where their token is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    /// `"viewer"` (reads) or `"resolver"` (also decides).
    pub role: String,
    /// The variable holding their login token.
    pub token_env: String,
    /// The user a trusted proxy's header names them by (their name when unset).
    pub proxy_user: Option<String>,
}

section! {
    /// `[ledger]`: where the ledger is.
    RawLedger "ledger" {
        /// A SQLite file; `/var/lib/payrecon/ledger.db` when neither this nor `url` is set.
        path: Option<PathBuf> = None, Bound::Text;
        /// A PostgreSQL database, `postgres://…`.
        url: Option<String> = None, Bound::Text;
        /// The environment variable holding the PostgreSQL password (kept out of the file).
        password_env: Option<String> = None, Bound::Text;
        /// How long each check and delivery attempt is kept for the console's stories
        /// (`"off"`: none kept).
        history: String = "7d", Bound::Duration(super::LONGEST);
    }
}

section! {
    /// `[schedule]`: when passes run and what each takes.
    RawSchedule "schedule" {
        /// When a pass starts: 5 fields, or 6 with seconds.
        cron: String = "*/30 * * * * *", Bound::Text;
        /// Sessions claimed per transaction.
        batch_size: i64 = 500, Bound::Count(1, 100_000);
        /// Provider calls in flight, across all providers.
        concurrency: i64 = 16, Bound::Count(1, 10_000);
        /// A claimed session is someone else's to retry after this.
        lease: String = "2m", Bound::Duration(WEEK);
        /// How often `run` looks up the earliest due session between cron ticks (`"off"`: never).
        poll: String = "1s", Bound::Duration(std::time::Duration::from_secs(3600));
        /// Sessions created less than this ago go second when more is due than a budget allows.
        young: String = "10m", Bound::Duration(WEEK);
        /// Sessions overdue by more than this go first.
        ageing: String = "10m", Bound::Duration(WEEK);
        /// Learned answer times forget: a session weighs half as much this much after its
        /// creation.
        learn_half_life: String = "6h", Bound::Duration(WEEK);
        /// With `schedule = "learned"`: the chance of an answer since the last check at which
        /// the next check is due (larger asks less often).
        learn_share: f64 = 0.1, Bound::Range(0.01, 0.5);
    }
}

section! {
    /// `[backoff]`: the delays between checks, and when a session closes by age.
    RawBackoff "backoff" {
        /// The exponential form's first delay (30s when unset); setting it, `multiplier`, `max`
        /// or `schedule` turns off the kinds' default schedules.
        initial: Option<String> = None, Bound::Duration(super::LONGEST);
        /// The exponential form's factor (2.0 when unset).
        multiplier: Option<f64> = None, Bound::Range(1.0, 100.0);
        /// The exponential form's longest delay (1h when unset).
        max: Option<String> = None, Bound::Duration(super::LONGEST);
        /// Spreads every delay by ±jitter.
        jitter: f64 = 0.2, Bound::Range(0.0, 1.0);
        /// After this, the provider's next answer closes the session.
        max_age: String = "48h", Bound::Duration(super::LONGEST);
        /// Consecutive believed 404s that expire a session.
        not_found_after: i64 = 3, Bound::Count(1, 1_000);
        /// A closed session is asked once more this long after it closed.
        late_check: String = "7d", Bound::Duration(super::LONGEST);
        /// Explicit delays between checks instead of the exponential form (1 to 100, each up
        /// to a day).
        schedule: Option<Vec<String>> = None, Bound::Duration(std::time::Duration::from_secs(86_400));
    }
}

section! {
    /// `[http]`: every provider call's timeout, retries and body cap.
    RawHttp "http" {
        /// One attempt's timeout.
        timeout: String = "10s", Bound::Duration(super::SHORT);
        /// Retries within one check.
        retries: i64 = 3, Bound::Count(0, 20);
        /// The first retry's delay.
        retry_initial: String = "500ms", Bound::Duration(super::SHORT);
        /// The longest retry delay.
        retry_max: String = "10s", Bound::Duration(super::SHORT);
        /// The largest answer body read.
        max_body: String = "1MiB", Bound::Size;
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
    /// little: "published" (the key in Little's docs) or a PEM file with its public key.
    pub webhook_public_key: Option<String>,
    pub rate_limit: Option<RateLimitSpec>,
    /// This provider's delays between checks, instead of `[backoff]`'s, or `"learned"`.
    pub schedule: Option<RawPace>,
    /// When a session added without any signal is first checked: `"plausible"` or a delay.
    pub first_check: Option<String>,
    // kinds with a list of payments (moflay)
    pub list: Option<String>,
    pub list_window: Option<String>,
    pub unmatched_after: Option<String>,
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

/// A provider's `schedule`: a list of delays, or a word (`"learned"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPace {
    Delays(Vec<String>),
    Word(String),
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
        note(self.webhook_public_key.is_some(), "webhook_public_key");
        note(self.list.is_some(), "list");
        note(self.list_window.is_some(), "list_window");
        note(self.unmatched_after.is_some(), "unmatched_after");
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

section! {
    /// `[events]`: where events go.
    RawEvents "events" {
        /// One log line per event.
        log: bool = true, Bound::Flag;
        /// `[events.webhook]`, a table of its own (its keys are [`RawWebhook`]'s).
        webhook: Option<RawWebhook> = None, Bound::Text;
    }
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

section! {
    /// `[admin]`: `/healthz` and `/metrics`.
    RawAdmin "admin" {
        /// `host:port`, or absent/"off".
        listen: Option<String> = None, Bound::Text;
        /// The variable holding the bearer token `/healthz` and `/metrics` then demand;
        /// required beyond loopback.
        token_env: Option<String> = None, Bound::Text;
    }
}

section! {
    /// `[api]`: the HTTP API.
    RawApi "api" {
        /// `host:port`, or absent/"off".
        listen: Option<String> = None, Bound::Text;
        /// The variable holding the bearer token every API request carries; required beyond
        /// loopback.
        token_env: Option<String> = None, Bound::Text;
    }
}

section! {
    /// `[console]`: the web console for the people who decide.
    RawConsole "console" {
        /// `host:port`, or absent/"off".
        listen: Option<String> = None, Bound::Text;
        /// Mark the session cookie `Secure` (behind a reverse proxy that terminates TLS);
        /// required beyond loopback.
        secure_cookies: bool = false, Bound::Flag;
        /// How long a login lasts.
        session_ttl: String = "8h", Bound::Duration(WEEK);
        /// Addresses (comma-separated IPs) of an authenticating proxy whose `operator_header`
        /// names the operator; from any other address the header is ignored.
        trusted_proxies: Option<String> = None, Bound::Text;
        /// The header the trusted proxy names the operator in.
        operator_header: String = "X-Forwarded-User", Bound::Text;
        /// A REVIEW session of at least this amount is marked severe (decimal text).
        severe_amount: String = "1000.00", Bound::Text;
        /// A REVIEW session waiting longer than this is marked severe.
        severe_after: String = "24h", Bound::Duration(WEEK);
    }
}

section! {
    /// `[log]`.
    RawLog "log" {
        /// `"text"` or `"json"`.
        format: String = "text", Bound::Text;
    }
}
