//! What one configured provider is built from: the config reads a provider table into a
//! [`ProviderConfig`] (and `[http]` into [`HttpConfig`]); this module never reads the config.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::Kind;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub timeout: Duration,
    pub retries: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_body: usize,
}

impl HttpConfig {
    /// The longest one check can take: every attempt timing out, plus the retry delays at their
    /// jittered worst (backon's jitter adds up to 100% of a delay).
    pub fn worst_check_time(&self) -> Duration {
        let mut total = self.timeout * (self.retries + 1);
        let mut delay = self.retry_initial;
        for _ in 0..self.retries {
            total += delay.min(self.retry_max) * 2;
            delay = delay.saturating_mul(2);
        }
        total
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The table name under `[providers]`, which is the ledger's `provider` column.
    pub name: String,
    pub kind: Kind,
    pub base_url: reqwest::Url,
    pub api_key_env: Option<String>,
    pub api_key: Option<Secret>,
    pub public_key_env: Option<String>,
    pub public_key: Option<Secret>,
    pub secret_key_env: Option<String>,
    pub secret_key: Option<Secret>,
    pub webhook_secret_env: Option<String>,
    /// The secret the provider signs its callbacks with (`webhook_secret_env`): when set, a
    /// callback whose signature does not verify is refused.
    pub webhook_secret: Option<Secret>,
    /// The provider's public key its callbacks are signed with (RSA, DER), when the table sets
    /// `webhook_public_key`: then a callback whose signature does not verify is refused.
    pub webhook_public_key: Option<Vec<u8>>,
    /// Each window is `(count, per)`; all must be honoured together.
    pub rate_limits: Vec<(NonZeroU32, Duration)>,
    /// Little: hold status calls open until the status changes.
    pub long_poll: bool,
    /// The timeout of this provider's status calls (`long_poll_timeout` when long polling,
    /// else `http.timeout`).
    pub timeout: Duration,
    /// Mopay Nigeria's configured status lookup.
    pub mopay_ng: MopayNgConfig,
    /// How sweeps of its list take a tied payment (`Off` for a kind without a list).
    pub list: super::ListUse,
    /// How far back a sweep reads the list at most: older open sessions are checked one by one.
    pub list_window: Duration,
    /// How long a listed paid payment no session holds waits before its lookup and report.
    pub unmatched_after: Duration,
}

impl ProviderConfig {
    /// What is missing from this table for the provider to ever reach a final state (a
    /// warning: `check-config` exits 2 on any). Only a Mopay Nigeria table can be incomplete.
    pub fn problems(&self) -> Vec<String> {
        if self.kind != Kind::MopayNg {
            return Vec::new();
        }
        let ng = &self.mopay_ng;
        let mut problems = Vec::new();
        if ng.status_endpoint.is_none() {
            problems.push(
            "status_endpoint is not set: Mopay Nigeria publishes no payment-status endpoint, so none is assumed; \
             set the `req=` name your account gives you (until then no call is made and sessions stay PENDING)"
                .to_string(),
        );
        }
        if ng.status_pointer.is_none() {
            problems.push("status_pointer is not set (the JSON pointer of the status word, e.g. \"/DATA/status\"): every answer stays PENDING".into());
        }
        if ng.status_map.is_empty() {
            problems.push(
            "status_map is empty: no status table is published and none is shipped, so every answer stays PENDING; \
             map your account's status words to COMPLETED, FAILED, CANCELLED, EXPIRED or PENDING"
                .into(),
        );
        } else if !ng.status_map.values().any(|v| *v == super::Mapped::Paid) {
            problems.push("status_map maps no word to COMPLETED: no payment can complete".into());
        }
        problems
    }
}

/// Mopay Nigeria publishes no status endpoint: these come from the config `[assumed]`.
#[derive(Debug, Clone, Default)]
pub struct MopayNgConfig {
    /// The `req=` value of the status lookup.
    pub status_endpoint: Option<String>,
    /// The query parameter that carries the session id (default `reference`).
    pub id_param: String,
    pub status_pointer: Option<String>,
    pub amount_pointer: Option<String>,
    pub reference_pointer: Option<String>,
    pub currency_pointer: Option<String>,
    /// Provider status word → ours (`PENDING`, `COMPLETED`, `FAILED`, `CANCELLED`, `EXPIRED`).
    pub status_map: BTreeMap<String, super::Mapped>,
}
