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
use crate::ledger::{Ledger, ProviderState};

/// What the daemon reports about itself for `/healthz`.
pub struct Health {
    started: Instant,
    /// The schedule's interval: a pass older than three of these (plus a minute) is stale.
    interval: Duration,
    last_pass: Mutex<Option<(Timestamp, Duration)>>,
}

impl Health {
    pub fn new(interval: Duration) -> Arc<Health> {
        Arc::new(Health {
            started: Instant::now(),
            interval,
            last_pass: Mutex::new(None),
        })
    }

    /// Records a finished pass.
    pub fn pass_done(&self, took: Duration) {
        *self.last_pass.lock().unwrap_or_else(|p| p.into_inner()) = Some((clock::now(), took));
    }

    fn stale_after(&self) -> Duration {
        self.interval * 3 + Duration::from_secs(60)
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
    ledger: Ledger,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
}

/// The admin router; with `token`, every request must carry `Authorization: Bearer <token>`.
pub fn router(
    ledger: Ledger,
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    token: Option<crate::config::Secret>,
) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState {
            ledger,
            health,
            metrics,
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    match token.as_ref() {
                        Some(t) if !crate::api::bearer_matches(request.headers(), t) => (
                            StatusCode::UNAUTHORIZED,
                            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                            "missing or wrong bearer token\n",
                        )
                            .into_response(),
                        _ => next.run(request).await,
                    }
                }
            },
        ))
}

async fn healthz(State(st): State<AdminState>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let stats = st.ledger.call(|l| l.stats(clock::now())).await;
    let last = *st
        .health
        .last_pass
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let age = last.map(|(at, _)| (clock::now() - at).to_std().unwrap_or_default());
    let stale = st.health.stale_after();
    match age {
        Some(a) if a > stale => {
            problems.push(format!("the last pass finished {}s ago", a.as_secs()))
        }
        None if st.health.started.elapsed() > stale => {
            problems.push("no pass has finished yet".into())
        }
        _ => {}
    }
    let body = match &stats {
        Ok(s) => {
            // Each provider-wide problem: the providers it holds for (since when, and why), and
            // one line each in `problems`.
            let mut flagged = |since: fn(&ProviderState) -> (&Option<String>, &Option<String>),
                               problem: fn(&str) -> String| {
                s.providers
                    .iter()
                    .filter(|p| since(p).0.is_some())
                    .map(|p| {
                        problems.push(problem(&p.provider));
                        let (at, error) = since(p);
                        json!({"provider": p.provider, "since": at, "error": error})
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
                "last_pass": last.map(|(at, took)| json!({
                    "at": clock::format(at),
                    "age_seconds": age.map(|a| a.as_secs()),
                    "took_seconds": took.as_secs_f64(),
                })),
                "refused_credentials": refused,
                "misdirected": misdirected,
                "events": {"waiting": s.events_waiting, "dead": s.events_dead},
            })
        }
        Err(e) => {
            // Logged in full; the answer says only that the ledger is unreachable.
            tracing::error!(error = %e, "healthz: ledger unreachable");
            problems.push("the ledger is unreachable".into());
            json!({"ledger": {"ok": false}})
        }
    };
    let mut body = body;
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

async fn metrics_text(State(st): State<AdminState>) -> Response {
    let Some(handle) = st.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response();
    };
    match st.ledger.call(|l| l.stats(clock::now())).await {
        Ok(stats) => crate::metrics::ledger_gauges(&stats),
        Err(e) => {
            tracing::error!(error = %e, "metrics: ledger unreachable; ledger gauges are stale")
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
