//! Test harness: a simulator on 127.0.0.1:0, a ledger in a temp dir, a config pointing at both,
//! and helpers to run passes or the real binary.

#![allow(dead_code)]

pub mod canned;
pub mod hostile;
pub mod pg;
pub mod sql;

pub use sql::DirectSql;
pub mod receiver;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use payrecon::config::Config;
use payrecon::ledger::{Ledger, Location, NewSession, Source};
use payrecon::provider;
use payrecon::reconcile::{self, PassOptions, PassReport};
use payrecon::simulator::{self, Sim};
use tokio_util::sync::CancellationToken;

/// Which engine a test's ledger is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    /// PostgreSQL through a PgBouncer in transaction pooling mode.
    PgBouncer,
}

impl Engine {
    /// Whether the ledger is PostgreSQL's (directly or through PgBouncer).
    pub fn is_pg(self) -> bool {
        self != Engine::Sqlite
    }
}

/// Runs each named `async fn name(engine: Engine)` once per ledger engine, as the tests
/// `per_engine::name::sqlite` and `per_engine::name::postgres`: one source, two backends.
/// Written `on_both_engines!(pgbouncer: a, b)`, each also runs as `…::pgbouncer`, on
/// PostgreSQL through a PgBouncer in transaction pooling mode.
#[macro_export]
macro_rules! on_both_engines {
    (pgbouncer: $($name:ident),* $(,)?) => {
        $crate::on_both_engines!($($name),*);
        mod through_pgbouncer {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Engine::PgBouncer).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod per_engine {
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite() {
                        super::super::$name($crate::support::Engine::Sqlite).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres() {
                        super::super::$name($crate::support::Engine::Postgres).await
                    }
                }
            )*
        }
    };
}

/// A simulator, a ledger (a file, or a fresh PostgreSQL database) and a config, all torn down
/// on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: Arc<Sim>,
    /// When the simulator's status requests arrived, once started.
    pub arrivals: payrecon_testkit::Arrivals,
    pub base_url: String,
    /// The SQLite file (unused on PostgreSQL).
    pub ledger_path: PathBuf,
    pub engine: Engine,
    /// Where the ledger is.
    pub location: Location,
    pub config_path: PathBuf,
    /// Environment variables the config refers to (secrets), given to in-process config loads
    /// and to child processes alike.
    pub vars: Vec<(String, String)>,
    stop: CancellationToken,
}

/// The key the all-provider simulator demands (API key, or secret key of a pair).
pub const SIM_KEY: &str = "sk_sim_0123456789abcdef";

/// The five provider kinds, by their table names in the all-provider config.
pub const KINDS: &[&str] = &["mopay", "little", "mopay_ng", "moflay", "vesicash"];

/// Two webhook secrets, for rotation: both sign every message.
pub const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_B: &str = "whsec_bmV4dC1zZWNyZXQtZm9yLXJvdGF0aW9u";

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `[ledger]` key for a location.
pub fn ledger_toml(location: &Location) -> String {
    match location {
        Location::Path(p) => format!("path = {p:?}"),
        Location::Url(u) => format!("url = {u:?}"),
    }
}

/// The config text tests use: fast backoff, short timeouts. `extra` is appended to `[backoff]`
/// overrides by replacing keys textually where a test needs it.
pub fn config_text(ledger: &Location, base_url: &str) -> String {
    config_with(
        ledger,
        &format!(
            "[providers.mopay]\nkind = \"mopay\"\nbase_url = \"{base_url}\"\nrate_limit = \"off\"\n"
        ),
    )
}

/// The test config with these provider tables.
pub fn config_with(ledger: &Location, providers: &str) -> String {
    let ledger = ledger_toml(ledger);
    format!(
        r#"[ledger]
{ledger}
[schedule]
cron = "* * * * * *"
batch_size = 50
concurrency = 8
lease = "20s"
poll = "1s"
[backoff]
initial = "100ms"
multiplier = 1.5
max = "300ms"
jitter = 0.1
max_age = "1h"
not_found_after = 3
late_check = "7d"
[http]
timeout = "2s"
retries = 3
retry_initial = "20ms"
retry_max = "1500ms"
max_body = "64KiB"
{providers}"#
    )
}

impl Env {
    /// Starts a simulator on an ephemeral loopback port. Call from inside a tokio runtime.
    pub async fn start() -> Env {
        Self::start_with_key(None).await
    }

    /// As [`Env::start`], with the ledger on `engine`.
    pub async fn start_on(engine: Engine) -> Env {
        Self::start_full(None, engine).await
    }

    /// A simulator demanding credentials and a config with all five provider kinds on it.
    pub async fn start_all_providers() -> Env {
        let mut env = Self::start_with_key(Some(SIM_KEY)).await;
        let providers = payrecon::simulator::providers_toml(
            &env.base_url,
            "PAYRECON_SIM_KEY",
            "PAYRECON_SIM_PUB",
            "off",
        );
        std::fs::write(&env.config_path, config_with(&env.location, &providers)).unwrap();
        env.vars.push(("PAYRECON_SIM_KEY".into(), SIM_KEY.into()));
        env.vars
            .push(("PAYRECON_SIM_PUB".into(), "pk_sim_public".into()));
        env
    }

    /// Points the config at every provider kind of the simulator, `rate_limit = "off"`, with
    /// `(kind, lines)` added to that kind's table.
    pub fn with_all_providers(&mut self, extra: &[(&str, &str)]) {
        let mut providers =
            payrecon::simulator::providers_toml(&self.base_url, "SIM_KEY", "SIM_PUB", "off");
        for (kind, lines) in extra {
            providers = providers.replace(
                &format!("kind = \"{kind}\"\n"),
                &format!("kind = \"{kind}\"\n{lines}\n"),
            );
        }
        std::fs::write(&self.config_path, config_with(&self.location, &providers)).unwrap();
        self.vars.push(("SIM_KEY".into(), "k".into()));
        self.vars.push(("SIM_PUB".into(), "p".into()));
    }

    /// Enqueues a session for `provider` whose behaviour the simulator knows (100.00 LSL,
    /// reference REF plus the id's length).
    pub fn session_at(&self, ledger: &Ledger, provider: &str, id: &str, behaviour: &str) {
        let reference = format!("REF{}", id.len());
        self.sim
            .insert(id, "100.00", &reference, behaviour.parse().unwrap());
        ledger
            .enqueue(&NewSession {
                provider: provider.into(),
                session_id: id.into(),
                reference: Some(reference),
                amount: Some("100.00".parse().unwrap()),
                currency: Some("LSL".into()),
                created_at: None,
                provider_ref: None,
            })
            .unwrap();
    }

    /// As [`Env::start`], with a simulator that demands `Authorization: Bearer <key>`.
    pub async fn start_with_key(key: Option<&str>) -> Env {
        Self::start_full(key, Engine::Sqlite).await
    }

    async fn start_full(key: Option<&str>, engine: Engine) -> Env {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = Sim::new(key.map(String::from));
        let stop = CancellationToken::new();
        let arrivals = payrecon_testkit::Arrivals::default();
        arrivals.serve(
            listener,
            simulator::router(sim.clone()),
            stop.clone().cancelled_owned(),
        );
        let dir = tempfile::tempdir().unwrap();
        let ledger_path = dir.path().join("ledger.db");
        let location = match engine {
            Engine::Sqlite => Location::Path(ledger_path.clone()),
            Engine::Postgres => Location::Url(pg::new_database()),
            Engine::PgBouncer => Location::Url(pg::new_database_through_pgbouncer()),
        };
        let config_path = dir.path().join("payrecon.toml");
        let base_url = format!("http://{addr}");
        std::fs::write(&config_path, config_text(&location, &base_url)).unwrap();
        Env {
            dir,
            sim,
            arrivals,
            base_url,
            ledger_path,
            engine,
            location,
            config_path,
            vars: Vec::new(),
            stop,
        }
    }

    pub fn config(&self) -> Config {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let env = |name: &str| {
            self.vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Config::parse(&text, &env).unwrap()
    }

    /// Adds `[events.webhook]` pointing at `url`, signed with both test secrets.
    pub fn webhook(&mut self, url: &str, schedule: &str, timeout: &str) {
        let mut text = std::fs::read_to_string(&self.config_path).unwrap();
        text.push_str(&format!(
            "[events.webhook]\nurl = \"{url}\"\nsecret_env = \"PAYRECON_TEST_WEBHOOK_SECRET\"\ntimeout = \"{timeout}\"\nschedule = {schedule}\n"
        ));
        std::fs::write(&self.config_path, text).unwrap();
        self.vars.push((
            "PAYRECON_TEST_WEBHOOK_SECRET".into(),
            format!("{SECRET_A} {SECRET_B}"),
        ));
    }

    /// The outbox this env's config describes, on its own ledger connection.
    pub fn outbox(&self, owner: &str) -> payrecon::outbox::Outbox {
        let cfg = self.config();
        payrecon::outbox::Outbox::new(self.ledger(), cfg.webhook.unwrap(), owner.into())
            .unwrap()
            .keep_history(cfg.history.is_some())
    }

    /// Rewrites one `key = value` line of the config file.
    pub fn set(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let mut found = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(found, "no key {key} in the test config");
        std::fs::write(&self.config_path, out.join("\n") + "\n").unwrap();
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::connect(&self.location).unwrap()
    }

    /// Registers a session at the simulator and enqueues it for MoPay.
    pub fn session(&self, ledger: &Ledger, id: &str, behaviour: &str) {
        self.session_at(ledger, "mopay", id, behaviour);
    }

    /// One pass with this env's config.
    pub async fn pass(&self, ledger: &Ledger, owner: &str) -> PassReport {
        let cfg = self.config();
        let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease).unwrap();
        reconcile::share_budgets(&providers, ledger);
        let opts = PassOptions {
            owner: owner.into(),
            all: false,
            source: Source::Poll,
            wake_outbox: None,
            progress: None,
            drain: true,
            caller: payrecon::provider::budget::Caller::Regular,
        };
        reconcile::run_pass(ledger, &providers, &cfg, &opts, &CancellationToken::new())
            .await
            .unwrap()
    }

    /// Runs passes until at most `pending` sessions are PENDING or the deadline passes.
    pub async fn settle(&self, ledger: &Ledger, pending: i64, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            self.pass(ledger, "settler").await;
            if count(
                ledger,
                "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
            ) <= pending
                || Instant::now() > end
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The real binary with this env's config.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_payrecon"));
        c.arg("--config")
            .arg(&self.config_path)
            .env_remove("RUST_LOG");
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// Kills the child process when the test ends, also when it fails.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`"TERM"`, `"HUP"`, …) to the daemon and waits up to `within` for it to exit;
/// its exit status.
pub async fn signal_and_wait(
    d: &mut Guard,
    signal: &str,
    within: Duration,
) -> std::process::ExitStatus {
    let pid = d.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut status = None;
    wait_for(within, || {
        status = d.0.try_wait().unwrap();
        status.is_some()
    })
    .await;
    status.unwrap_or_else(|| panic!("no exit within {within:?} after SIG{signal}"))
}

/// Stops a daemon with SIGTERM and asserts it exits 0 within 10 s.
pub async fn sigterm_and_wait(mut d: Guard) {
    let status = signal_and_wait(&mut d, "TERM", Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

/// Waits until no session is PENDING and every event is delivered; whether that came first.
pub async fn settled(ledger: &Ledger, deadline: Duration) -> bool {
    wait_for(deadline, || {
        count(
            ledger,
            "SELECT count(*) FROM sessions WHERE status = 'PENDING'",
        ) == 0
            && count(
                ledger,
                "SELECT count(*) FROM events WHERE delivered_at IS NULL",
            ) == 0
    })
    .await
}

/// A single integer from SQL.
/// Writes, as an application with SQL would, one closed session of `provider` per `(took, to)`:
/// created `took` seconds ago and moved to `to` by a poll just now (ids `{prefix}0`, `{prefix}1`,
/// …): answer times for `reconcile::timing` to learn from.
pub fn closed_sessions(ledger: &Ledger, provider: &str, prefix: &str, rows: &[(u64, &str)]) {
    let now = payrecon::clock::now();
    let ago =
        |secs: u64| payrecon::clock::format(payrecon::clock::sub(now, Duration::from_secs(secs)));
    let mut sql = String::new();
    for (i, (took, to)) in rows.iter().enumerate() {
        sql.push_str(&format!(
            "INSERT INTO sessions (provider, session_id, created_at) VALUES ('{provider}', '{prefix}{i}', '{}'); \
             INSERT INTO transitions (session, from_status, to_status, at, source) \
             SELECT id, 'PENDING', '{to}', '{now}', 'poll' FROM sessions WHERE session_id = '{prefix}{i}'; \
             UPDATE sessions SET status = '{to}', resolved_at = '{now}' WHERE session_id = '{prefix}{i}';",
            ago(*took),
            now = ago(0)
        ));
    }
    ledger.execute_batch(&sql).unwrap();
}

pub fn count(ledger: &Ledger, sql: &str) -> i64 {
    ledger.query_strings(sql).unwrap()[0].parse().unwrap()
}

/// Sessions (any status) whose next check is due by now.
pub fn due_now(ledger: &Ledger) -> i64 {
    count(
        ledger,
        &format!(
            "SELECT count(*) FROM sessions WHERE next_check_at <= '{}'",
            payrecon::clock::format(payrecon::clock::now())
        ),
    )
}

/// One column of the session whose id is `id` (as text; empty when NULL or absent).
pub fn col(ledger: &Ledger, id: &str, column: &str) -> String {
    one(
        ledger,
        &format!("SELECT {column} FROM sessions WHERE session_id = '{id}'"),
    )
}

/// One column of one row from SQL.
pub fn one(ledger: &Ledger, sql: &str) -> String {
    ledger
        .query_strings(sql)
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The real binary without a config.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_payrecon"));
    c.env_remove("RUST_LOG").env_remove("PAYRECON_CONFIG");
    c
}

/// Runs a command off the async runtime (the simulator keeps serving meanwhile).
pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub async fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Runs a future to its end from synchronous code inside a multi-threaded test runtime.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Runs `openssl` with `args`, `input` on its stdin, and returns its stdout: how the tests sign
/// what a provider would, with nobody's code but OpenSSL's.
pub fn openssl<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {:?}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>()
    );
    out.stdout
}
