//! The provider conformance corpus (`tests/fixtures/providers/`): every answer there, served
//! byte for byte over loopback HTTP with its case's status and headers, goes through the
//! provider's adapter (`Provider::check`) and `reconcile::decide`, and must give the outcome
//! `cases.toml` states — written by hand from the providers' documents, never computed here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use payrecon::config::Config;
use payrecon::ledger::{Record, Session, Source};
use payrecon::provider::{self, Answer};
use payrecon::{clock, reconcile};
use serde::Deserialize;

use crate::support::canned::Canned;
use crate::support::{config_with, ledger_toml};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    ledger: BTreeMap<String, LedgerRow>,
    case: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerRow {
    session_id: String,
    amount: Option<String>,
    reference: Option<String>,
    currency: Option<String>,
    /// The provider's second id, when the ledger holds one.
    provider_ref: Option<String>,
    /// The provider table's settings beside `kind`, `base_url` and `rate_limit`.
    settings: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    kind: String,
    file: String,
    #[serde(default = "ok")]
    http: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    outcome: String,
    old: Option<String>,
    reason: Option<String>,
    old_reason: Option<String>,
    compared: Option<Vec<String>>,
    pause: Option<String>,
    secret: Option<String>,
    session_id: Option<String>,
    amount: Option<String>,
    provider_ref: Option<String>,
}

fn ok() -> u16 {
    200
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers")
}

/// A kind's table, pointed at `url`, with the settings `cases.toml` gives it.
fn provider_table(kind: &str, row: &LedgerRow, url: &str) -> String {
    format!(
        "[providers.{kind}]\nkind = \"{kind}\"\nbase_url = \"{url}\"\nrate_limit = \"off\"\n{}\n",
        row.settings
    )
}

/// What a record says, in the corpus's words (README.md beside cases.toml).
fn outcome(result: &Result<Answer, provider::Error>, rec: &Record) -> String {
    match rec {
        Record::Transition { to, .. } => to.as_str().to_string(),
        Record::Reschedule {
            answered: true,
            not_found: Some(true),
            ..
        } => "PENDING not-found".into(),
        Record::Reschedule { answered: true, .. } => "PENDING answer".into(),
        Record::Reschedule {
            not_found: Some(false),
            ..
        } => "PENDING cannot-act".into(),
        Record::Reschedule { charged: false, .. }
            if matches!(result, Err(provider::Error::RateLimited { .. })) =>
        {
            "PENDING rate-limited".into()
        }
        Record::Reschedule { charged: false, .. } => "PENDING no-answer".into(),
        Record::Reschedule { charged: true, .. } => "PENDING failed-call".into(),
        Record::Release { .. } => "RELEASED refused".into(),
        Record::LateCheck { .. } => "LATE CHECK".into(),
    }
}

fn session(row: &LedgerRow, case: &Case, kind: &str, age: Duration) -> Session {
    let created = clock::now() - chrono::Duration::from_std(age).unwrap();
    let id = case.session_id.as_ref().unwrap_or(&row.session_id);
    Session {
        reference: row.reference.clone(),
        amount: case
            .amount
            .clone()
            .or_else(|| row.amount.clone())
            .map(|a| a.parse().unwrap()),
        currency: row.currency.clone(),
        provider_ref: case
            .provider_ref
            .clone()
            .or_else(|| row.provider_ref.clone()),
        ..Session::pending(kind, id, created)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_answer_gives_its_hand_written_outcome() {
    let text = std::fs::read_to_string(corpus_dir().join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = payrecon::ledger::Location::Path(dir.path().join("unused.db"));
    let vars = |name: &str| match name {
        "CONF_KEY" => Some("sk_conformance_0123456789".to_string()),
        "CONF_PUB" => Some("pk_conformance".to_string()),
        _ => None,
    };
    // Every file in the corpus is used by some case.
    for kind in corpus.ledger.keys() {
        for f in std::fs::read_dir(corpus_dir().join(kind)).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            assert!(
                corpus
                    .case
                    .iter()
                    .any(|c| &c.kind == kind && c.file == name),
                "{kind}/{name} has no case in cases.toml"
            );
        }
    }
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for case in &corpus.case {
        let row = &corpus.ledger[&case.kind];
        let body = std::fs::read(corpus_dir().join(&case.kind).join(&case.file))
            .unwrap_or_else(|e| panic!("{}/{}: {e}", case.kind, case.file));
        let now = chrono::Utc::now().timestamp();
        let headers = case
            .headers
            .iter()
            .map(|(k, v)| {
                let v = match v.strip_prefix("{now+").and_then(|r| r.strip_suffix('}')) {
                    Some(n) => (now + n.parse::<i64>().unwrap()).to_string(),
                    None => v.clone(),
                };
                (k.clone(), v)
            })
            .collect();
        let server = Canned::start(case.http, headers, body).await;
        let cfg_text = config_with(&ledger, &provider_table(&case.kind, row, &server.url))
            .replace("retries = 3", "retries = 0");
        assert!(ledger_toml(&ledger).starts_with("path"));
        let cfg = Config::parse(&cfg_text, &vars).unwrap();
        for (age, want, want_reason) in [
            (Duration::from_secs(60), Some(&case.outcome), &case.reason),
            (cfg.backoff.max_age * 2, case.old.as_ref(), &case.old_reason),
        ] {
            let Some(want) = want else { continue };
            // A fresh provider for every check: a 429's pause must not carry over.
            let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease).unwrap();
            let p = &providers[&case.kind];
            let s = session(row, case, &case.kind, age);
            let result = p
                .check(
                    &s.session_id,
                    true,
                    payrecon::provider::budget::Caller::Regular,
                )
                .await
                .result;
            let rec = reconcile::decide(&s, &result, clock::now(), &cfg.backoff, Source::Poll, 0.5);
            let got = outcome(&result, &rec);
            let label = format!(
                "{}/{}{}{}",
                case.kind,
                case.file,
                if case.http == 200 {
                    String::new()
                } else {
                    format!(" (HTTP {})", case.http)
                },
                if age > cfg.backoff.max_age {
                    " [past max_age]"
                } else {
                    ""
                }
            );
            let mut problems = Vec::new();
            if &got != want {
                problems.push(format!("outcome {got}, expected {want}"));
            }
            let (reason, compared, last_error) = match &rec {
                Record::Transition {
                    reason, compared, ..
                } => (reason.clone(), Some(compared.clone()), None),
                Record::Reschedule { last_error, .. } | Record::Release { last_error, .. } => {
                    (None, None, last_error.clone())
                }
                Record::LateCheck { .. } => (None, None, None),
            };
            let said = reason.clone().or(last_error.clone()).unwrap_or_default();
            if let Some(part) = want_reason
                && !said.contains(part.as_str())
            {
                problems.push(format!("reason {said:?} lacks {part:?}"));
            }
            if said.chars().any(char::is_control) {
                problems.push(format!("control character in {said:?}"));
            }
            if let (Some(want), Some(got)) = (&case.compared, &compared)
                && age <= cfg.backoff.max_age
                && want != got
            {
                problems.push(format!("compared {got:?}, expected {want:?}"));
            }
            if let Some(pause) = &case.pause {
                let want = humantime::parse_duration(pause).unwrap();
                match &result {
                    Err(provider::Error::RateLimited {
                        retry_after: Some(d),
                    }) if d.abs_diff(want) <= Duration::from_secs(2) => {}
                    other => problems.push(format!("pause: {other:?}, expected {pause}")),
                }
            }
            if let Some(secret) = &case.secret
                && format!("{rec:?}{result:?}").contains(secret.as_str())
            {
                problems.push("an echoed secret was kept".into());
            }
            table.push(format!("{label:<72} {want:<20} {got}"));
            if !problems.is_empty() {
                wrong.push(format!("{label}: {}", problems.join("; ")));
            }
        }
    }
    println!(
        "{:<72} {:<20} got\n{}",
        "file",
        "expected",
        table.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "{} of {} checks differ:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
    assert!(
        table.len() >= 150,
        "the corpus shrank: {} checks",
        table.len()
    );
}
