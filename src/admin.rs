//! The admin endpoint on `[admin] listen`: `GET /healthz` and `GET /metrics`. Read-only.
//!
//! `/healthz` answers 200 when the ledger is reachable, no provider has refused its credentials,
//! and a pass finished recently enough for the schedule; 503 otherwise, with the reasons.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::clock::{self, Timestamp};
use crate::ledger::{Ledger, ProviderState, Stats};

/// What the daemon reports about itself for `/healthz`.
pub struct Health {
    started: Instant,
    /// The schedule's interval: a pass older than three of these (plus a minute) is stale.
    interval: Duration,
    /// Due work left unclaimed longer than this is a problem (see [`Health::unclaimed_after`]).
    unclaimed_after: Duration,
    last_pass: Mutex<Option<(Timestamp, Duration)>>,
    /// Passes failed in a row, and the last one's error.
    failing: Mutex<(u32, String)>,
}

/// Passes failed in a row before `/healthz` says so.
pub const FAILED_PASSES: u32 = 3;

/// How far the ledger's clock may be from this process's before `/healthz` and the log say so.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(5);

/// How long a stats reading serves `/healthz` and `/metrics` before it is read again.
pub const STATS_FRESH: Duration = Duration::from_secs(2);

impl Health {
    /// `ageing`: `[schedule] ageing`; a due session left unclaimed longer than twice that (at
    /// least a minute) means the daemon is not keeping up, or not claiming at all.
    pub fn new(interval: Duration, ageing: Duration) -> Arc<Health> {
        Arc::new(Health {
            started: Instant::now(),
            interval,
            unclaimed_after: (ageing * 2).max(Duration::from_secs(60)),
            last_pass: Mutex::new(None),
            failing: Mutex::new((0, String::new())),
        })
    }

    /// Records a finished pass.
    pub fn pass_done(&self, took: Duration) {
        *self.last_pass.lock().unwrap_or_else(|p| p.into_inner()) = Some((clock::now(), took));
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = (0, String::new());
    }

    /// Records a pass that failed (the ledger refused a write, a full disk, …).
    pub fn pass_failed(&self, error: &str) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        *f = (f.0.saturating_add(1), error.to_string());
    }

    fn stale_after(&self) -> Duration {
        self.interval * 3 + Duration::from_secs(60)
    }
}

/// A `stats` reading, or why the ledger gave none.
pub type Reading = Arc<Result<Stats, String>>;

/// One recent `stats` reading shared by `/healthz` and `/metrics`: read at most once per
/// [`STATS_FRESH`], by one request while the others wait for it.
pub struct StatsCache {
    ledger: Ledger,
    last: tokio::sync::Mutex<Option<(Instant, Reading)>>,
}

impl StatsCache {
    pub fn new(ledger: Ledger) -> Arc<StatsCache> {
        Arc::new(StatsCache {
            ledger,
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// A reading at most [`STATS_FRESH`] old.
    pub async fn read(&self) -> Reading {
        let mut last = self.last.lock().await;
        if let Some((at, stats)) = &*last
            && at.elapsed() < STATS_FRESH
        {
            return stats.clone();
        }
        crate::metrics::stats_read();
        let stats = Arc::new(
            self.ledger
                .call(|l| l.stats(clock::now()))
                .await
                .map_err(|e| e.to_string()),
        );
        *last = Some((Instant::now(), stats.clone()));
        stats
    }
}

/// The interval between two ticks of a cron expression (for staleness).
pub fn cron_interval(cron: &croner::Cron) -> Duration {
    let now = chrono::Utc::now();
    let a = cron.find_next_occurrence(&now, false).ok();
    let b = a.and_then(|a| cron.find_next_occurrence(&a, false).ok());
    match (a, b) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
        _ => Duration::from_secs(3600),
    }
}

#[derive(Clone)]
struct AdminState {
    stats: Arc<StatsCache>,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    /// The configured providers: each has a `payrecon_sessions` series per status.
    providers: Arc<Vec<String>>,
}

/// The admin router; with `token`, every request must carry `Authorization: Bearer <token>`.
pub fn router(
    stats: Arc<StatsCache>,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    token: Option<crate::config::Secret>,
    providers: Vec<String>,
) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState {
            stats,
            health,
            metrics,
            providers: Arc::new(providers),
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    match token.as_ref() {
                        Some(t) if !crate::api::bearer_matches(request.headers(), t) => (
                            StatusCode::UNAUTHORIZED,
                            [(header::CONTENT_TYPE, "application/json")],
                            json!({"error": "missing or wrong bearer token"}).to_string(),
                        )
                            .into_response(),
                        _ => next.run(request).await,
                    }
                }
            },
        ))
}

async fn healthz(State(st): State<AdminState>) -> Response {
    let stats = st.stats.read().await;
    let now = clock::now();
    let last = *st
        .health
        .last_pass
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let age = last.map(|(at, _)| (now - at).to_std().unwrap_or_default());
    let mut problems = st.health.problems(age);
    let mut body = match &*stats {
        Ok(s) => ledger_report(s, st.stats.ledger.is_pg(), &st.health, now, &mut problems),
        Err(e) => {
            // Logged in full; the answer says only that the ledger is unreachable.
            tracing::error!(error = %crate::escape::shown(e), "healthz: ledger unreachable");
            problems.push("the ledger is unreachable".into());
            json!({"ledger": {"ok": false}})
        }
    };
    if stats.is_ok() {
        body["last_pass"] = json!(last.map(|(at, took)| json!({
            "at": clock::format(at),
            "age_seconds": age.map(|a| a.as_secs()),
            "took_seconds": took.as_secs_f64(),
        })));
    }
    body["status"] = json!(if problems.is_empty() { "ok" } else { "failing" });
    body["problems"] = json!(problems);
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every problem `/healthz` names now — the daemon's own and what `stats` shows — in the same
/// words, for the console's overview.
pub fn problems(health: &Health, stats: &Stats, is_pg: bool, now: Timestamp) -> Vec<String> {
    let last = *health.last_pass.lock().unwrap_or_else(|p| p.into_inner());
    let age = last.map(|(at, _)| (now - at).to_std().unwrap_or_default());
    let mut problems = health.problems(age);
    ledger_report(stats, is_pg, health, now, &mut problems);
    problems
}

impl Health {
    /// The daemon's own problems: passes failing in a row, or none finished for too long
    /// (`age`: since the last one finished).
    fn problems(&self, age: Option<Duration>) -> Vec<String> {
        let mut problems = Vec::new();
        let (failed, last_error) = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if failed >= FAILED_PASSES {
            problems.push(format!(
                "the last {failed} passes failed: {}",
                crate::escape::shown(&last_error)
            ));
        }
        let stale = self.stale_after();
        match age {
            Some(a) if a > stale => {
                problems.push(format!("the last pass finished {}s ago", a.as_secs()))
            }
            None if self.started.elapsed() > stale => {
                problems.push("no pass has finished yet".into())
            }
            _ => {}
        }
        problems
    }
}

/// What the ledger's stats say for `/healthz` (`is_pg`: its clock is PostgreSQL's own): the body's ledger part, and a line in
/// `problems` for each problem — due work unclaimed too long, a clock off, providers refusing
/// the credentials or answering "not found" to everything, rows set aside.
fn ledger_report(
    s: &Stats,
    is_pg: bool,
    health: &Health,
    now: Timestamp,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    if let Some(due) = s.oldest_due
        && let Ok(late) = (now - due).to_std()
        && late > health.unclaimed_after
    {
        problems.push(format!(
            "due work has waited unclaimed for {} (more than {}): the daemon is not \
             keeping up or not claiming (see the log, `payrecon stats` and rate_limit)",
            humantime::format_duration(Duration::from_secs(late.as_secs())),
            humantime::format_duration(health.unclaimed_after)
        ));
    }
    if let Some(skew) = clock_skew(s.ledger_clock, is_pg, now) {
        problems.push(skew);
    }
    // Each provider-wide problem: the providers it holds for (since when, and why), and one
    // line each in `problems`.
    let mut flagged = |since: fn(&ProviderState) -> (&Option<Timestamp>, &Option<String>),
                       problem: fn(&str) -> String| {
        s.providers
            .iter()
            .filter(|p| since(p).0.is_some())
            .map(|p| {
                problems.push(problem(&p.provider));
                let (at, error) = since(p);
                json!({"provider": p.provider, "since": clock::format_opt(*at), "error": error})
            })
            .collect::<Vec<_>>()
    };
    let refused = flagged(
        |p| (&p.auth_refused_at, &p.auth_error),
        |name| format!("provider {name} refused the credentials"),
    );
    let misdirected = flagged(
        |p| (&p.misdirected_at, &p.misdirected_error),
        |name| {
            format!(
                "provider {name} answers \"not found\" for every session: check providers.{name}.base_url"
            )
        },
    );
    if s.unreadable > 0 {
        problems.push(format!(
            "{} sessions rows payrecon cannot read are set aside",
            s.unreadable
        ));
    }
    json!({
        "ledger": {"ok": true},
        "unreadable_rows": s.unreadable,
        "refused_credentials": refused,
        "misdirected": misdirected,
        "events": {"waiting": s.events_waiting, "dead": s.events_dead},
    })
}

async fn metrics_text(State(st): State<AdminState>) -> Response {
    let Some(handle) = st.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response();
    };
    match &*st.stats.read().await {
        Ok(stats) => crate::metrics::ledger_gauges(stats, &st.providers),
        Err(e) => {
            tracing::error!(error = %crate::escape::shown(e), "metrics: ledger unreachable; ledger gauges are stale")
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// What `/healthz` says when the ledger's clock and this process's disagree by more than
/// [`CLOCK_TOLERANCE`]: PostgreSQL's `now()` either way; on SQLite, only a transition
/// recorded in this process's future (another process's clock is ahead of ours, or ours
/// behind).
pub fn clock_skew(theirs: Option<Timestamp>, is_server: bool, now: Timestamp) -> Option<String> {
    let theirs = theirs?;
    let ahead = theirs - now;
    let tolerance = chrono::Duration::from_std(CLOCK_TOLERANCE).unwrap_or_default();
    let by = |d: chrono::Duration| {
        humantime::format_duration(Duration::from_secs(d.num_seconds().unsigned_abs()))
    };
    if ahead > tolerance {
        Some(if is_server {
            format!(
                "the database's clock is {} ahead of this host's: keep both in NTP sync",
                by(ahead)
            )
        } else {
            format!(
                "a transition was recorded {} in this host's future: another process's clock \
                 is ahead of this one's (keep every host on the ledger in NTP sync)",
                by(ahead)
            )
        })
    } else if is_server && -ahead > tolerance {
        Some(format!(
            "the database's clock is {} behind this host's: keep both in NTP sync",
            by(ahead)
        ))
    } else {
        None
    }
}
