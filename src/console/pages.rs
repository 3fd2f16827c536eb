//! The console's pages (maud: every value rendered is escaped). No script, no inline style:
//! each page works as plain HTML forms and links.

use maud::{DOCTYPE, Markup, html};

use crate::clock::{self, Timestamp};
use crate::config::Role;
use crate::ledger::{
    AttemptRow, AuditEntry, CheckRow, Event, ReviewItem, Session, Stats, Status, TransitionRow,
    Unmatched, Unreadable,
};

/// What every page's header needs: who is logged in, and the CSRF token of their forms.
pub struct Nav<'a> {
    pub operator: &'a str,
    pub role: Role,
    pub csrf: &'a str,
}

/// A value as one percent-encoded URL path segment (every byte but RFC 3986's unreserved ones).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn session_url(provider: &str, session_id: &str) -> String {
    format!(
        "/sessions/{}/{}",
        path_segment(provider),
        path_segment(session_id)
    )
}

/// htmx (from the npm registry's `htmx.org` 2.0.11, Zero-Clause BSD; `vendor/`), embedded in
/// the binary and served from `/static/`. Pages use it only to refresh or filter in place;
/// every page and action works without it.
pub const HTMX: &[u8] = include_bytes!("vendor/htmx-2.0.11.min.js");
pub const HTMX_PATH: &str = "/static/htmx-2.0.11.min.js";
/// `HTMX`'s Subresource Integrity hash (a unit test holds it to the file).
pub const HTMX_INTEGRITY: &str =
    "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg";
/// htmx's settings for this console: no inline styles (the CSP refuses them), no `eval`, no
/// script from swapped content, requests to this origin only.
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true,"historyCacheSize":0}"#;

fn layout(title: &str, nav: Option<&Nav<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · payrecon" }
                link rel="stylesheet" href="/static/console.css";
                script src=(HTMX_PATH) integrity=(HTMX_INTEGRITY) defer {}
            }
            body {
                header {
                    strong { "payrecon" }
                    @if let Some(nav) = nav {
                        nav {
                            a href="/" { "Overview" }
                            a href="/review" { "REVIEW" }
                            a href="/anomalies" { "Anomalies" }
                            a href="/unmatched" { "Unmatched" }
                            a href="/events/dead" { "Dead events" }
                            a href="/unreadable" { "Unreadable" }
                            a href="/audit" { "Audit log" }
                            form.search method="get" action="/search" {
                                input name="q" placeholder="id, reference, transaction" aria-label="Search";
                            }
                        }
                        form.logout method="post" action="/logout" {
                            span { (nav.operator) " (" (nav.role.as_str()) ")" }
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn message(code: axum::http::StatusCode, message: &str) -> Markup {
    layout(
        code.canonical_reason().unwrap_or("Error"),
        None,
        html! { p { (message) } p { a href="/" { "Back to the console" } } },
    )
}

pub fn login(problem: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(p) = problem { p.problem { (p) } }
            form method="post" action="/login" {
                label { "Name" input name="name" autocomplete="username" required; }
                label { "Token" input name="token" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// One provider's use of its call budget.
pub struct BudgetUse {
    pub provider: String,
    /// Its `rate_limit`, as configured (empty: none).
    pub limit: String,
    /// Status calls in the last hour, by every process on the ledger.
    pub calls: i64,
    /// What the limit allows in an hour.
    pub per_hour: Option<u64>,
}

/// The overview's recent activity: budget use and the two charts' figures.
pub struct Recent<'a> {
    pub budgets: Vec<BudgetUse>,
    pub truth: Vec<(String, [Option<f64>; super::charts::HOURS])>,
    pub resolutions: [(u32, u32); super::charts::HOURS],
    /// How old the reading is.
    pub age: std::time::Duration,
    /// Each provider's learned answer times.
    pub learned: &'a [crate::reconcile::timing::Learned],
    /// `[schedule] learn_half_life`.
    pub half_life: std::time::Duration,
    /// The providers whose checks are timed by them (`schedule = "learned"`).
    pub paced: Vec<&'a str>,
}

pub fn overview(nav: &Nav<'_>, st: &Stats, problems: &[String], recent: &Recent<'_>) -> Markup {
    let count = |status: &str| -> i64 {
        st.sessions
            .iter()
            .filter(|(_, s, _)| s == status)
            .map(|(_, _, n)| n)
            .sum()
    };
    layout(
        "Overview",
        Some(nav),
        html! {
            // With htmx: the overview reads itself again every 30 s, in place.
            div #live hx-get="/" hx-trigger="every 30s" hx-select="#live" hx-target="this" hx-swap="outerHTML" {
            p.hint { "Read from the ledger " (recent.age.as_secs()) " s ago; read again at most every 30 s." }
            @if problems.is_empty() {
                p.ok { "Healthy: nothing /healthz would name." }
            } @else {
                ul.problems { @for p in problems { li.problem { (p) } } }
            }
            section.cards {
                a.card href="/review" { strong { (count("REVIEW")) } " sessions wait in REVIEW" }
                a.card href="/unmatched" { strong { (st.unmatched_open) } " unmatched payments open" }
                a.card href="/events/dead" { strong { (st.events_dead) } " dead events" }
                a.card href="/unreadable" { strong { (st.unreadable) } " unreadable rows" }
                a.card href="/anomalies" { strong { (st.anomalies) } " anomalies" }
            }
            h2 { "Sessions by provider and status" }
            table {
                thead { tr { th { "provider" } th { "status" } th.num { "sessions" } th.num { "amounts, per currency" } } }
                tbody {
                    @for (provider, status, n) in &st.sessions {
                        tr {
                            td { (provider) } td { (status) } td.num { (n) }
                            td.num {
                                @for (i, sum) in st.sums.iter().filter(|r| &r.provider == provider && &r.status == status).enumerate() {
                                    @if i > 0 { br; }
                                    (sum.sum) " " (sum.currency)
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Completed, by currency" }
            table {
                thead { tr { th { "currency" } th.num { "sessions" } th.num { "sum" } } }
                tbody {
                    @for (currency, n, sum) in &st.completed {
                        tr { td { (currency) } td.num { (n) } td.num { (sum) } }
                    }
                }
            }
            @for p in &st.providers {
                @if let Some(e) = &p.sweep_error { p.problem { (p.provider) ": the last sweep stopped short: " (e) } }
            }
            h2 { "Call budgets, last hour" }
            table {
                thead { tr { th { "provider" } th { "rate_limit" } th.num { "status calls" } th { "of an hour's allowance" } } }
                tbody {
                    @for b in &recent.budgets {
                        tr {
                            td { (b.provider) }
                            td { @if b.limit.is_empty() { "off" } @else { (b.limit) } }
                            td.num { (b.calls) }
                            td {
                                @if let Some(most) = b.per_hour {
                                    meter min="0" max=(most) high=(most * 9 / 10) value=(b.calls) {}
                                    " " (b.calls * 100 / most.max(1) as i64) "% of " (most)
                                } @else { "no limit" }
                            }
                        }
                    }
                }
            }
            p.hint { "Status calls of every process on this ledger, from the history of checks; list pages are not counted." }
            h2 { "Time to truth, last day" }
            p.hint { "Median time from a session's creation to the answer that closed it or sent it to REVIEW, per hour in which it came (people's decisions left out)." }
            @if recent.truth.is_empty() {
                p { "No answers in the last day." }
            } @else {
                (super::charts::truth_chart(&recent.truth))
            }
            h2 { "Resolutions per hour, last day" }
            (super::charts::resolutions_chart(&recent.resolutions))
            h2 { "When answers come, learned" }
            p.hint {
                "Time from a session's creation to its customer acting: midway between the check that found the answer (closing it or sending it to REVIEW) and the check before, or when a hint or callback brought it; sessions that expired or still wait count as no answer by their last check. Each session weighs half as much every "
                (humantime::format_duration(recent.half_life)) " since its creation; until there are enough, the provider's schedule is the guess. p50–p99: by when that share of the sessions that answer have. Never: the estimated share that never answers. Checks: timed by these (schedule = \"learned\") or by the schedule."
            }
            table {
                thead { tr { th { "provider" } th.num { "answers" } th.num { "p50" } th.num { "p90" } th.num { "p95" } th.num { "p99" } th.num { "never" } th { "checks" } th {} } }
                tbody {
                    @for l in recent.learned {
                        tr {
                            td { (l.provider) } td.num { (l.answers) }
                            @for q in l.quantiles { td.num { (crate::reconcile::timing::shown(q)) } }
                            td.num { (l.never.map_or("—".to_string(), |n| format!("{:.0}%", n * 100.0))) }
                            td { @if recent.paced.contains(&l.provider.as_str()) { "learned" } @else { "schedule" } }
                            td { @if l.mostly_prior() { "mostly the schedule's guess" } }
                        }
                    }
                }
            }
            }
        },
    )
}

/// How long ago, in words a person reads at a glance.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// The REVIEW queue's filters as the person wrote them.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// The queue's page.
    pub path: &'static str,
    pub provider: Option<String>,
    pub min_amount: Option<String>,
    pub older_than: Option<String>,
    pub by_amount: bool,
}

impl QueueFilter {
    /// This filter's query, at `page`, sorted `by_amount` or not.
    fn link(&self, page: u32, by_amount: bool) -> String {
        let pairs = [
            ("provider", self.provider.clone()),
            ("min_amount", self.min_amount.clone()),
            ("older_than", self.older_than.clone()),
            ("sort", by_amount.then(|| "amount".to_string())),
            ("page", (page > 0).then(|| page.to_string())),
        ];
        let query: Vec<String> = pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", path_segment(&v))))
            .collect();
        format!("{}?{}", self.path, query.join("&"))
    }

    fn narrowed(&self) -> bool {
        self.provider.is_some() || self.min_amount.is_some() || self.older_than.is_some()
    }
}

/// A row of a queue with whether it is severe and how long it has waited.
pub struct Queued<T> {
    pub row: T,
    pub severe: bool,
    pub waiting: Option<String>,
}

/// One page of a queue other than REVIEW, worked (filtered, ordered, paged).
pub struct Worked<'a, T> {
    pub rows: &'a [Queued<T>],
    pub filter: &'a QueueFilter,
    pub page: u32,
    /// Whether a next page follows.
    pub more: bool,
}

/// A queue's filter form. With htmx, the filtered queue replaces this one in place and the
/// address follows; without, it is a plain GET.
fn filter_form(f: &QueueFilter, waiting: &str) -> Markup {
    html! {
        form.filter method="get" action=(f.path) hx-get=(f.path) hx-select="main" hx-target="main" hx-swap="outerHTML" hx-push-url="true" {
            label { "Provider" input name="provider" value=(f.provider.as_deref().unwrap_or("")); }
            label { "Amount at least" input name="min_amount" inputmode="decimal" value=(f.min_amount.as_deref().unwrap_or("")); }
            label { (waiting) " longer than" input name="older_than" placeholder="2h" value=(f.older_than.as_deref().unwrap_or("")); }
            label { "Order"
                select name="sort" {
                    option value="age" selected[!f.by_amount] { "longest waiting" }
                    option value="amount" selected[f.by_amount] { "largest amount" }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

fn pager(f: &QueueFilter, page: u32, more: bool) -> Markup {
    html! {
        nav.pages {
            @if page > 0 { a href=(f.link(page - 1, f.by_amount)) { "← previous" } }
            @if more { a href=(f.link(page + 1, f.by_amount)) { "next →" } }
        }
    }
}

/// The severity cell of a queue's row.
fn severity(severe: bool) -> Markup {
    html! { td { @if severe { strong.severity { "severe" } } } }
}

pub fn review(
    nav: &Nav<'_>,
    items: &[ReviewItem],
    f: &QueueFilter,
    (page, page_size): (u32, u32),
    (severe_amount, severe_after): (rust_decimal::Decimal, std::time::Duration),
    now: Timestamp,
) -> Markup {
    let severe = |s: &Session| {
        s.amount.is_some_and(|a| a >= severe_amount)
            || s.resolved_at
                .is_some_and(|t| (now - t).to_std().is_ok_and(|w| w > severe_after))
    };
    layout(
        "REVIEW",
        Some(nav),
        html! {
            p { "Paid-but-different sessions and answers payrecon cannot act on: a person decides. "
                "Severe: " (severe_amount) " or more, or waiting over " (humantime::format_duration(severe_after)) "." }
            (filter_form(f, "Waiting"))
            @if items.is_empty() {
                p { "Nothing waits in REVIEW" @if f.narrowed() { " that matches" } "." }
            } @else {
                table {
                    thead { tr {
                        th {} th { "session" } th { "provider" }
                        th.num { a href=(f.link(0, true)) { "ledger amount" } }
                        th.num { "provider amount" } th { "why" }
                        th { a href=(f.link(0, false)) { "waiting" } }
                    } }
                    tbody {
                        @for i in items {
                            @let s = &i.session;
                            tr class=[severe(s).then_some("severe")] {
                                td { @if severe(s) { strong.severity { "severe" } } }
                                td { a href=(session_url(&s.provider, &s.session_id)) { (s.session_id) } }
                                td { (s.provider) }
                                td.num { (s.amount.map(|a| a.to_string()).unwrap_or_default()) " " (s.currency.as_deref().unwrap_or("")) }
                                td.num { (i.provider_amount.as_deref().unwrap_or("—")) }
                                td { (i.reason.as_deref().unwrap_or("")) }
                                td { (s.resolved_at.map(|t| age(t, now)).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            (pager(f, page, items.len() as u32 == page_size))
        },
    )
}

pub fn audit(nav: &Nav<'_>, entries: &[AuditEntry]) -> Markup {
    layout(
        "Audit log",
        Some(nav),
        html! {
            p { "Every person's decision and login, newest first. Append-only: the ledger refuses to change or remove an entry." }
            table {
                thead { tr { th { "at" } th { "who" } th { "action" } th { "on" } th { "detail" } } }
                tbody {
                    @for a in entries {
                        tr {
                            td { (a.at) } td { (a.actor) } td { (a.action) }
                            td { (a.target.as_deref().unwrap_or("")) } td { (a.detail.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}

fn facts(s: &Session) -> Markup {
    html! {
        dl.facts {
            dt { "provider" } dd { (s.provider) }
            dt { "session id" } dd { (s.session_id) }
            dt { "status" } dd { span class=(format!("status {}", s.status.as_str().to_lowercase())) { (s.status) } }
            dt { "reference" } dd { (s.reference.as_deref().unwrap_or("—")) }
            dt { "amount" } dd { (s.amount.map(|a| a.to_string()).unwrap_or_else(|| "—".into())) " " (s.currency.as_deref().unwrap_or("")) }
            dt { "provider's second id" } dd { (s.provider_ref.as_deref().unwrap_or("—")) }
            dt { "created" } dd { (clock::format(s.created_at)) }
            dt { "checks" } dd { (s.checks) " (" (s.answered_checks) " answered)" }
            dt { "provider status" } dd { (s.provider_status.as_deref().unwrap_or("—")) }
            dt { "transaction id" } dd { (s.transaction_id.as_deref().unwrap_or("—")) }
            dt { "last error" } dd { (s.last_error.as_deref().unwrap_or("—")) }
        }
    }
}

/// What a session's story is told from.
pub struct Story {
    pub transitions: Vec<TransitionRow>,
    pub events: Vec<Event>,
    /// Its checks still in the history (`[ledger] history`).
    pub checks: Vec<CheckRow>,
    /// Its events' delivery attempts still in the history.
    pub attempts: Vec<AttemptRow>,
}

/// A session's story, in the order it happened: its creation, each check, each transition,
/// each event and each of its delivery attempts.
fn story_lines(s: &Session, story: &Story) -> Vec<(String, Markup)> {
    let Story {
        transitions,
        events,
        checks,
        attempts,
    } = story;
    let mut lines = vec![(
        clock::format(s.created_at),
        html! { time { (clock::format(s.created_at)) } " written to the ledger" },
    )];
    for c in checks {
        lines.push((
            c.at.clone(),
            html! {
                time { (c.at) } " "
                span.check { "checked" } " (" (c.via) ", " (c.source) "): " strong { (c.outcome) }
                @if let Some(h) = c.http_status { ", HTTP " (h) }
                @if let Some(p) = &c.provider_status { ", provider said " code { (p) } }
                @if let Some(t) = c.took_ms { ", " (t) " ms" }
                @if let Some(e) = &c.error { " — " (e) }
            },
        ));
    }
    for a in attempts {
        lines.push((
            a.at.clone(),
            html! {
                time { (a.at) } " delivery of " (a.event_id) ": " strong { (a.outcome) }
                @if let Some(t) = a.took_ms { ", " (t) " ms" }
                @if let Some(e) = &a.error { " — " (e) }
            },
        ));
    }
    for t in transitions {
        let at = clock::format(t.at);
        lines.push((
            at.clone(),
            html! {
                time { (at) } " "
                (t.from) " → " strong { (t.to) } " (" (t.source.as_str())
                @if let Some(a) = &t.actor { ", by " strong { (a) } }
                ")"
                @if let Some(r) = &t.reason { ": " (r) }
                @if let Some(p) = &t.provider_status { " — provider said " code { (p) } }
                @if let Some(a) = &t.provider_amount { ", amount " (a) }
            },
        ));
    }
    for e in events {
        lines.push((
            e.created_at.clone(),
            html! {
                time { (e.created_at) } " event " code { (e.kind) } " " (e.id) ": " (e.state())
                " after " (e.attempts) " attempt(s)"
                @if let Some(err) = &e.last_error { " — " (err) }
            },
        ));
    }
    // Ledger times sort as text; a transition and its event share a time and keep this order.
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines
}

pub fn story(nav: &Nav<'_>, s: &Session, story: &Story) -> Markup {
    let open = matches!(s.status, Status::Pending | Status::Review);
    layout(
        &format!("Session {}", s.session_id),
        Some(nav),
        html! {
            (facts(s))
            h2 { "Its story" }
            ol.story {
                @for (_, line) in story_lines(s, story) {
                    li { (line) }
                }
            }
            @if open && nav.role == Role::Resolver {
                form.verify method="post" action=(format!("{}/verify", session_url(&s.provider, &s.session_id))) {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    button type="submit" { "Ask the provider now" }
                }
                h2 { "Decide" }
                form.decide method="post" action=(format!("{}/resolve", session_url(&s.provider, &s.session_id))) {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    label { "To"
                        select name="to" {
                            option value="COMPLETED" { "COMPLETED" }
                            option value="FAILED" { "FAILED" }
                            option value="CANCELLED" { "CANCELLED" }
                            option value="EXPIRED" { "EXPIRED" }
                        }
                    }
                    label { "Why (recorded with your name)" textarea name="reason" required {} }
                    button type="submit" { "Review the decision" }
                }
            }
        },
    )
}

pub fn confirm(
    nav: &Nav<'_>,
    s: &Session,
    transitions: &[TransitionRow],
    to: Status,
    reason: &str,
) -> Markup {
    let provider_amount = transitions
        .iter()
        .rev()
        .find_map(|t| t.provider_amount.as_deref());
    layout(
        "Confirm the decision",
        Some(nav),
        html! {
            p { "You are about to move " strong { (s.session_id) } " from " (s.status) " to " strong { (to) } ", as " strong { (nav.operator) } "." }
            table.side {
                thead { tr { th {} th.num { "ledger" } th.num { "provider" } } }
                tbody {
                    tr { th { "amount" } td.num { (s.amount.map(|a| a.to_string()).unwrap_or_else(|| "—".into())) } td.num { (provider_amount.unwrap_or("—")) } }
                    tr { th { "currency" } td.num { (s.currency.as_deref().unwrap_or("—")) } td.num { "" } }
                    tr { th { "reference" } td.num { (s.reference.as_deref().unwrap_or("—")) } td.num { "" } }
                }
            }
            p { "Why: " (reason) }
            form method="post" action=(format!("{}/resolve", session_url(&s.provider, &s.session_id))) {
                input type="hidden" name="csrf" value=(nav.csrf);
                input type="hidden" name="to" value=(to.as_str());
                input type="hidden" name="reason" value=(reason);
                input type="hidden" name="confirm" value="yes";
                button type="submit" { "Confirm: " (to) }
                " "
                a href=(session_url(&s.provider, &s.session_id)) { "Cancel" }
            }
        },
    )
}

/// The id an event is about, linked to the session's story when it is a session's.
fn event_subject(e: &Event, id: &str) -> Markup {
    let provider = serde_json::from_str::<serde_json::Value>(&e.payload)
        .ok()
        .and_then(|v| v["data"]["provider"].as_str().map(String::from));
    html! {
        @match provider.filter(|_| e.kind.starts_with("session.")) {
            Some(p) => a href=(session_url(&p, id)) { (id) },
            None => (id),
        }
    }
}

pub fn anomalies(nav: &Nav<'_>, w: &Worked<'_, (String, Event)>) -> Markup {
    layout(
        "Anomalies",
        Some(nav),
        html! {
            p { "A provider's later answer contradicts a session already closed (a payment after EXPIRED, say). No state changed: a person looks." }
            (filter_form(w.filter, "Seen"))
            @if w.rows.is_empty() { p { "No anomaly" @if w.filter.narrowed() { " that matches" } "." } } @else {
                table {
                    thead { tr { th {} th { "at" } th { "session" } th { "what the provider now says" } th { "for" } } }
                    tbody {
                        @for q in w.rows {
                            @let (id, e) = &q.row;
                            @let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
                            tr class=[q.severe.then_some("severe")] {
                                (severity(q.severe))
                                td { (e.created_at) }
                                td { (event_subject(e, id)) }
                                td { (v["data"]["status"].as_str().unwrap_or("")) " → " (v["data"]["provider_says"].as_str().unwrap_or("")) ": " (v["data"]["reason"].as_str().unwrap_or("")) }
                                td { (q.waiting.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            (pager(w.filter, w.page, w.more))
        },
    )
}

pub fn unmatched(nav: &Nav<'_>, w: &Worked<'_, Unmatched>) -> Markup {
    layout(
        "Unmatched payments",
        Some(nav),
        html! {
            p { "Payments a provider lists as paid that no session holds. Create the order or refund the customer, then dismiss with why; or match it to the session it paid for (the provider's answer then decides that session). One a session comes to hold is matched by itself." }
            (filter_form(w.filter, "Open"))
            @if w.rows.is_empty() { p { "None" @if w.filter.narrowed() { " that matches" } "." } } @else {
                table {
                    thead { tr { th {} th { "provider" } th { "payment" } th { "other id" } th.num { "amount" } th { "receipt" } th { "state" } th { "for" } th {} } }
                    tbody {
                        @for q in w.rows {
                            @let u = &q.row;
                            tr class=[(q.severe && u.is_open()).then_some("severe")] {
                                (severity(q.severe && u.is_open()))
                                td { (u.provider) } td { (u.payment_id) } td { (u.other_id.as_deref().unwrap_or("—")) }
                                td.num { (u.amount.as_deref().unwrap_or("—")) " " (u.currency.as_deref().unwrap_or("")) }
                                td { (u.receipt.as_deref().unwrap_or("—")) }
                                td {
                                    @if let Some(s) = &u.matched_session { "matched to " (s) }
                                    @else if let Some(by) = &u.dismissed_by { "dismissed by " (by) ": " (u.dismiss_reason.as_deref().unwrap_or("")) }
                                    @else if u.reported_at.is_some() { strong { "open" } " since " (u.reported_at.as_deref().unwrap_or("")) }
                                    @else { "within its grace window" }
                                }
                                td { @if u.is_open() { (q.waiting.as_deref().unwrap_or("")) } }
                                td {
                                    @if u.is_open() && nav.role == Role::Resolver {
                                        form method="post" action=(format!("/unmatched/{}/dismiss", u.id)) {
                                            input type="hidden" name="csrf" value=(nav.csrf);
                                            input name="reason" placeholder="why" required;
                                            button type="submit" { "Dismiss" }
                                        }
                                        form method="post" action=(format!("/unmatched/{}/match", u.id)) {
                                            input type="hidden" name="csrf" value=(nav.csrf);
                                            input name="session_id" placeholder="its session id" required;
                                            input name="reason" placeholder="why" required;
                                            button type="submit" { "Match" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (pager(w.filter, w.page, w.more))
        },
    )
}

pub fn dead_events(nav: &Nav<'_>, w: &Worked<'_, (String, Event)>) -> Markup {
    layout(
        "Dead events",
        Some(nav),
        html! {
            p { "Events the webhook receiver never took after every attempt. Fix the receiver, then put them back in line." }
            (filter_form(w.filter, "Dead"))
            @if w.rows.is_empty() { p { "No dead event" @if w.filter.narrowed() { " that matches" } "." } } @else {
                table {
                    thead { tr { th {} th { "event" } th { "type" } th { "about" } th.num { "attempts" } th { "last error" } th { "dead for" } th {} } }
                    tbody {
                        @for q in w.rows {
                            @let (id, e) = &q.row;
                            tr class=[q.severe.then_some("severe")] {
                                (severity(q.severe))
                                td { (e.id) } td { (e.kind) } td { (event_subject(e, id)) }
                                td.num { (e.attempts) } td { (e.last_error.as_deref().unwrap_or("")) }
                                td { (q.waiting.as_deref().unwrap_or("")) }
                                td {
                                    @if nav.role == Role::Resolver {
                                        form method="post" action=(format!("/events/{}/replay", path_segment(&e.id))) {
                                            input type="hidden" name="csrf" value=(nav.csrf);
                                            button type="submit" { "Replay" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (pager(w.filter, w.page, w.more))
        },
    )
}

pub fn unreadable(nav: &Nav<'_>, w: &Worked<'_, Unreadable>) -> Markup {
    layout(
        "Unreadable rows",
        Some(nav),
        html! {
            p { "Rows of sessions payrecon cannot read (a value of the wrong type, a time or amount it cannot read). They are set aside, never checked: fix or delete them with SQL." }
            (filter_form(w.filter, "Set aside"))
            @if w.rows.is_empty() { p { "None" @if w.filter.narrowed() { " that matches" } "." } } @else {
                table {
                    thead { tr { th.num { "row id" } th { "provider" } th { "why" } } }
                    tbody {
                        @for q in w.rows {
                            @let u = &q.row;
                            tr { td.num { (u.rowid) } td { (u.provider) } td { (u.error) } }
                        }
                    }
                }
            }
            (pager(w.filter, w.page, w.more))
        },
    )
}

pub fn search(nav: &Nav<'_>, q: &str, found: &[Session]) -> Markup {
    layout(
        "Search",
        Some(nav),
        html! {
            form.filter method="get" action="/search" {
                label { "Session id, the provider's second id, a reference or a transaction id" input name="q" value=(q); }
                button type="submit" { "Search" }
            }
            @if !q.is_empty() {
                @if found.is_empty() { p { "No session is named " code { (q) } " by any of these." } } @else {
                    table {
                        thead { tr { th { "session" } th { "provider" } th { "status" } th.num { "amount" } } }
                        tbody {
                            @for s in found {
                                tr {
                                    td { a href=(session_url(&s.provider, &s.session_id)) { (s.session_id) } }
                                    td { (s.provider) } td { (s.status) }
                                    td.num { (s.amount.map(|a| a.to_string()).unwrap_or_default()) " " (s.currency.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_htmx_is_the_one_its_integrity_hash_names() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha384::digest(super::HTMX);
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert_eq!(super::HTMX_INTEGRITY, format!("sha384-{b64}"));
    }
}
