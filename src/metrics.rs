//! Every metric name and its registration in one place. Metrics are recorded through the
//! `metrics` facade and rendered in the Prometheus text format by the admin endpoint.
//!
//! Counters and histograms count what this process did; the `payrecon_sessions` and
//! `payrecon_events_*` gauges are read from the ledger at scrape time, so they are right across
//! every process sharing it.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Key, Label, Metadata};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::ledger::Stats;

/// Sessions by `provider` × `status` (gauge, from the ledger).
pub const SESSIONS: &str = "payrecon_sessions";
/// Provider checks by `provider` × `outcome` (counter).
pub const CHECKS: &str = "payrecon_checks_total";
/// Duration of one check, retries included, by `provider` (histogram).
pub const CHECK_SECONDS: &str = "payrecon_check_duration_seconds";
/// Duration of one pass (histogram).
pub const PASS_SECONDS: &str = "payrecon_pass_duration_seconds";
/// Unix time of the last finished pass (gauge).
pub const PASS_LAST: &str = "payrecon_pass_last_timestamp_seconds";
/// Cron ticks skipped because a pass was still running (counter).
pub const SKIPPED: &str = "payrecon_reconcile_skipped_total";
/// Times a check waited for a provider's rate limit or 429 pause, by `provider` (counter).
pub const RATE_LIMIT_WAITS: &str = "payrecon_rate_limit_waits_total";
/// Hints (API hints and provider callbacks) by `outcome`: queued, coalesced, dropped (counter).
pub const HINTS: &str = "payrecon_hints_total";
/// Hinted checks by `result`: answered (the provider said something), unchecked (counter).
pub const HINT_CHECKS: &str = "payrecon_hint_checks_total";
/// Provider callbacks refused or naming nothing readable, by `reason`: signature, replay,
/// too_large, slow, not_json (counter).
pub const CALLBACKS_REFUSED: &str = "payrecon_callbacks_refused_total";
/// Times the ledger's call budget was further ahead than a rate_limit can need and was set
/// back to now (counter).
pub const BUDGET_CLAMPED: &str = "payrecon_call_budget_clamped_total";
/// Ledger stats readings made for `/healthz` and `/metrics` (one serves every request within
/// two seconds) (counter).
pub const STATS_READS: &str = "payrecon_stats_reads_total";
/// Connections a listener closed at once because it already held its most, by `listener`
/// (counter).
pub const CONNECTIONS_REFUSED: &str = "payrecon_http_connections_refused_total";
/// Webhook deliveries by `result`: delivered, retried, dead (counter).
pub const DELIVERIES: &str = "payrecon_webhook_deliveries_total";
/// Duration of one webhook attempt (histogram).
pub const WEBHOOK_SECONDS: &str = "payrecon_webhook_duration_seconds";
/// Events waiting for delivery, and dead (gauges, from the ledger).
pub const EVENTS_WAITING: &str = "payrecon_events_waiting";
pub const EVENTS_DEAD: &str = "payrecon_events_dead";

/// Rows of `sessions` set aside because payrecon cannot read them (counter), and those still
/// set aside (gauge, from the ledger).
pub const UNREADABLE_SET_ASIDE: &str = "payrecon_unreadable_rows_set_aside_total";
pub const UNREADABLE: &str = "payrecon_sessions_unreadable";

/// Pages of providers' lists read by sweeps, by `provider` (counter); sweeps by `provider` ×
/// `result`: read (to the end), short (stopped short) (counter).
pub const LIST_PAGES: &str = "payrecon_list_pages_total";
pub const SWEEPS: &str = "payrecon_sweeps_total";
/// Payments a provider lists as paid that no session holds, reported (counter, by `provider`),
/// and those still open — neither matched nor dismissed (gauge, from the ledger).
pub const UNMATCHED_REPORTED: &str = "payrecon_unmatched_payments_reported_total";
pub const UNMATCHED: &str = "payrecon_unmatched_payments";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process; later calls return the same handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// The keys of one provider's checks with one outcome: [`CHECKS`], [`CHECK_SECONDS`].
type CheckKeys = (Key, Key);

/// Every provider × outcome's keys, made on its first check and kept for the process (a few
/// providers times a few outcomes): a check then records without building its labels again
/// (two allocations each) or hashing them.
static CHECK_KEYS: Mutex<Vec<(String, &'static str, &'static CheckKeys)>> = Mutex::new(Vec::new());

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// One finished check.
pub fn check(provider: &str, outcome: &'static str, took: Duration) {
    let (count, seconds) = check_keys(provider, outcome);
    metrics::with_recorder(|r| {
        r.register_counter(count, &METADATA).increment(1);
        r.register_histogram(seconds, &METADATA)
            .record(took.as_secs_f64());
    });
}

fn check_keys(provider: &str, outcome: &'static str) -> &'static CheckKeys {
    // Only whole entries are ever pushed; a poisoned lock still holds usable keys.
    let mut all = CHECK_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, keys)) = all.iter().find(|(p, o, _)| p == provider && *o == outcome) {
        return keys;
    }
    let keys: &'static CheckKeys = Box::leak(Box::new((
        Key::from_parts(
            CHECKS,
            vec![
                Label::new("provider", provider.to_string()),
                Label::new("outcome", outcome),
            ],
        ),
        Key::from_parts(
            CHECK_SECONDS,
            vec![Label::new("provider", provider.to_string())],
        ),
    )));
    all.push((provider.to_string(), outcome, keys));
    keys
}

/// One finished pass.
pub fn pass(took: Duration) {
    metrics::histogram!(PASS_SECONDS).record(took.as_secs_f64());
    metrics::gauge!(PASS_LAST).set(chrono::Utc::now().timestamp() as f64);
}

/// Ticks skipped while a pass ran.
pub fn skipped(n: usize) {
    metrics::counter!(SKIPPED).increment(n as u64);
}

/// A claimed row that could not be read, set aside.
pub fn unreadable_row() {
    metrics::counter!(UNREADABLE_SET_ASIDE).increment(1);
}

/// One hint and what became of it.
pub fn hint(outcome: &'static str) {
    metrics::counter!(HINTS, "outcome" => outcome).increment(1);
}

/// One hinted check: whether the provider answered.
pub fn hint_checked(answered: bool) {
    let result = if answered { "answered" } else { "unchecked" };
    metrics::counter!(HINT_CHECKS, "result" => result).increment(1);
}

/// One provider callback refused.
pub fn callback_refused(reason: &'static str) {
    metrics::counter!(CALLBACKS_REFUSED, "reason" => reason).increment(1);
}

/// One sweep of a provider's list: the pages it read and whether it read them to the end.
pub fn sweep(provider: &str, pages: u32, read: bool) {
    metrics::counter!(LIST_PAGES, "provider" => provider.to_string()).increment(u64::from(pages));
    let result = if read { "read" } else { "short" };
    metrics::counter!(SWEEPS, "provider" => provider.to_string(), "result" => result).increment(1);
}

/// A payment no session holds, reported.
pub fn unmatched_reported(provider: &str) {
    metrics::counter!(UNMATCHED_REPORTED, "provider" => provider.to_string()).increment(1);
}

/// The call budget set back to now.
pub fn budget_clamped() {
    metrics::counter!(BUDGET_CLAMPED).increment(1);
}

/// One stats reading from the ledger.
pub fn stats_read() {
    metrics::counter!(STATS_READS).increment(1);
}

/// A connection closed at once: the listener held its most.
pub fn connection_refused(listener: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(1);
}

/// A check that had to wait for its provider's limit.
pub fn rate_limit_wait(provider: &str) {
    metrics::counter!(RATE_LIMIT_WAITS, "provider" => provider.to_string()).increment(1);
}

/// One webhook attempt and its result.
pub fn delivery(result: &'static str, took: Duration) {
    metrics::counter!(DELIVERIES, "result" => result).increment(1);
    metrics::histogram!(WEBHOOK_SECONDS).record(took.as_secs_f64());
}

/// Every `provider` × `status` series of [`SESSIONS`] set so far: one that empties reads 0.
static SESSION_SERIES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Sets the ledger-wide gauges from a `stats` reading, just before a scrape. Every configured
/// provider × every status has a series, 0 when the group is empty, and so does every group
/// seen before that has emptied since: an alert on a group clears when it empties.
pub fn ledger_gauges(stats: &Stats, providers: &[String]) {
    let mut series = SESSION_SERIES.lock().unwrap_or_else(|p| p.into_inner());
    for p in providers {
        for status in crate::ledger::Status::ALL {
            let key = (p.clone(), status.as_str().to_string());
            if !series.contains(&key) {
                series.push(key);
            }
        }
    }
    for (provider, status, _) in &stats.sessions {
        let key = (provider.clone(), status.clone());
        if !series.contains(&key) {
            series.push(key);
        }
    }
    for (provider, status) in series.iter() {
        let n = stats
            .sessions
            .iter()
            .find(|(p, s, _)| p == provider && s == status)
            .map_or(0, |(_, _, n)| *n);
        metrics::gauge!(SESSIONS, "provider" => provider.clone(), "status" => status.clone())
            .set(n as f64);
    }
    metrics::gauge!(EVENTS_WAITING).set(stats.events_waiting as f64);
    metrics::gauge!(EVENTS_DEAD).set(stats.events_dead as f64);
    metrics::gauge!(UNREADABLE).set(stats.unreadable as f64);
    metrics::gauge!(UNMATCHED).set(stats.unmatched_open as f64);
}

#[cfg(test)]
mod tests {
    /// The shipped dashboard and alert rules name only metrics this module registers.
    #[test]
    fn dashboard_and_alerts_use_real_metric_names() {
        let names = [
            super::SESSIONS,
            super::CHECKS,
            super::CHECK_SECONDS,
            super::PASS_SECONDS,
            super::PASS_LAST,
            super::SKIPPED,
            super::RATE_LIMIT_WAITS,
            super::DELIVERIES,
            super::WEBHOOK_SECONDS,
            super::EVENTS_WAITING,
            super::EVENTS_DEAD,
            super::UNMATCHED,
            super::SWEEPS,
        ];
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../config/grafana-dashboard.json"))
                .expect("dashboard JSON");
        let mut exprs: Vec<String> = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["expr"].as_str().unwrap().to_string())
            })
            .collect();
        exprs.extend(
            include_str!("../config/alerts.yml")
                .lines()
                .filter_map(|l| l.trim().strip_prefix("expr: ").map(String::from)),
        );
        assert!(exprs.len() > 10);
        for expr in exprs {
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(base) = word.strip_prefix("payrecon_") {
                    let base = format!("payrecon_{base}");
                    let base = ["_bucket", "_count", "_sum"].iter().fold(base, |b, s| {
                        b.strip_suffix(s).map(String::from).unwrap_or(b)
                    });
                    assert!(
                        names.contains(&base.as_str()),
                        "{base} in {expr:?} is not a payrecon metric"
                    );
                }
            }
        }
    }
}
