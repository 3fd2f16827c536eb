//! payrecon reconciles hosted-checkout and mobile-money payment sessions whose outcome is
//! unknown: it polls each provider's status endpoint, records each terminal transition once, and
//! emits one event per transition.
//!
//! Layout (ARCHITECTURE.md has the map and the invariants):
//! - [`cli`]: the command line; the only module that prints to stdout and picks exit codes.
//! - [`config`]: the TOML config, validated; the only module that reads the environment.
//! - [`daemon`]: `run` and `once`: signals, the schedule, the pass.
//! - [`schedule`]: cron ticks, passes never overlapping.
//! - [`reconcile`]: one pass — claim, check, decide, record.
//! - [`provider`]: the provider trait, shared HTTP plumbing, one adapter file per provider.
//! - [`http`]: the HTTP client recipe and helpers both outbound callers share.
//! - [`outbox`]: signed webhook delivery of events, at least once.
//! - [`pipeline`]: claim → work → record, the loop a pass and the outbox share.
//! - [`export`]: CSV/JSONL export.
//! - [`progress`]: the progress bar of long commands.
//! - [`metrics`]: every metric name in one place.
//! - [`admin`]: `/healthz` and `/metrics`.
//! - [`api`]: the HTTP API for applications.
//! - [`ledger`]: SQLite or PostgreSQL: sessions, transitions, events; all of the product's SQL.
//! - [`events`]: the event JSON and the log sink.
//! - [`simulator`]: a MoPay simulator over HTTP for the demo and the tests.
//! - [`demo`]: the embedded demo.
//! - [`import`]: CSV import.
//! - [`clock`]: timestamps as the ledger stores them.
//! - [`escape`]: untrusted text made safe to print.
//! - [`kinds`]: what the config knows of each provider kind, as data.
//! - [`secret`]: secrets that never print.

pub mod admin;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod escape;
pub mod events;
pub mod export;
pub mod hints;
pub mod http;
pub mod import;
pub mod ledger;
pub mod listen;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod progress;
pub mod provider;
pub mod reconcile;
pub mod schedule;
pub mod secret;
pub mod simulator;
