//! `run` and `once`: opens the ledger and the providers, runs passes (on the schedule, or one),
//! and stops cleanly on SIGTERM or SIGINT: no new claims, in-flight checks abandoned with their
//! leases released, exit within a few seconds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admin::Health;
use crate::config::Config;
use crate::ledger::{Ledger, Source};
use crate::outbox::Outbox;
use crate::provider;
use crate::reconcile::{self, PassOptions, PassReport};
use crate::schedule;

/// How long a stopping daemon waits for its pass to record and release before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A lease owner id unique to this process.
pub fn owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token: String = (0..6).map(|_| fastrand::alphanumeric()).collect();
    format!("{}:{}:{token}", host.trim(), std::process::id())
}

/// Opens the ledger named by the config, with its location in any error.
pub fn open_ledger(cfg: &Config) -> anyhow::Result<Ledger> {
    Ok(Ledger::connect(&cfg.ledger)?)
}

/// `run`'s ledger. A database that cannot be reached yet — refusing connections, starting up,
/// shutting down, out of connection slots — is waited for (a warning per attempt, 0.5 s
/// doubling to 10 s apart), so a daemon started during a database restart or failover comes up
/// when the database does instead of exiting into a restart loop. Any other failure
/// (authentication, TLS, a schema too new) ends the daemon at once. `Err(stop)`: a signal
/// came first.
async fn reach_ledger(cfg: &Config, stop: &Stopping) -> anyhow::Result<Result<Ledger, Stop>> {
    let mut wait = Duration::from_millis(500);
    loop {
        match Ledger::connect(&cfg.ledger) {
            Ok(l) => return Ok(Ok(l)),
            Err(e) if e.unreachable() => {
                tracing::warn!(error = %e, retry_in = ?wait, "ledger unreachable; waiting for it");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    why = stop.wait() => return Ok(Err(why)),
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, SIGINT or SIGQUIT: stop for good.
    Terminate,
    /// SIGHUP: stop cleanly and be started again (exit [`RESTART_EXIT`]; the unit restarts on
    /// it), so a changed config is read from scratch.
    Restart,
}

/// The exit status of a daemon stopped by SIGHUP: the unit's `RestartForceExitStatus=` and
/// `SuccessExitStatus=` name it, so systemd starts it again and does not count a failure.
pub const RESTART_EXIT: u8 = 3;

/// Resolves when the process gets SIGTERM, SIGINT, SIGQUIT (stop) or SIGHUP (stop to be
/// restarted). SIGUSR1 and SIGUSR2 are logged and ignored, so no common signal ends the
/// process without releasing its leases.
pub async fn stop_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut quit), Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::quit()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return Stop::Terminate;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Stop::Terminate,
                _ = term.recv() => return Stop::Terminate,
                _ = quit.recv() => return Stop::Terminate,
                _ = hup.recv() => return Stop::Restart,
                _ = usr1.recv() => tracing::info!("SIGUSR1 ignored: payrecon has no use for it"),
                _ = usr2.recv() => tracing::info!("SIGUSR2 ignored: payrecon has no use for it"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Terminate
    }
}

/// The signal that stops the daemon, listened for from its first moment (a signal between
/// two waits is never missed).
#[derive(Clone)]
struct Stopping(tokio::sync::watch::Receiver<Option<Stop>>);

impl Stopping {
    fn listen() -> Stopping {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let why = stop_signal().await;
            let _ = tx.send(Some(why));
        });
        Stopping(rx)
    }

    /// Resolves once a stopping signal has come (at once if it already has).
    async fn wait(&self) -> Stop {
        let mut rx = self.0.clone();
        let why = rx.wait_for(Option::is_some).await.map(|why| *why);
        match why {
            Ok(why) => why.unwrap_or(Stop::Terminate),
            // The listener is gone: never a stop from it.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Resolves when the process gets a signal that stops it (see [`stop_signal`]).
pub async fn shutdown_signal() {
    stop_signal().await;
}

/// A task that cancels `token` when a stopping signal comes (abort it when the work is done),
/// so the work gives back what it claimed.
fn cancel_on_signal(token: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let token = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received; releasing claimed sessions");
        token.cancel();
    })
}

/// What `once` did.
pub struct OnceReport {
    pub pass: PassReport,
    /// A signal ended the pass early, leaving this many sessions unchecked (for `--all`, every
    /// PENDING session the backfill did not reach; else those claimed and released).
    pub interrupted: Option<u64>,
    /// `(delivered, retried, dead)` when a webhook is configured.
    pub deliveries: Option<(u64, u64, u64)>,
}

/// The outbox for this config, on a ledger connection of its own (from `open`), if a webhook
/// is configured.
fn outbox(cfg: &Config, owner: &str, ledger: Option<Ledger>) -> anyhow::Result<Option<Outbox>> {
    let Some(w) = &cfg.webhook else {
        return Ok(None);
    };
    let ledger = match ledger {
        Some(l) => l,
        None => open_ledger(cfg)?,
    };
    Ok(Some(
        Outbox::new(ledger, w.clone(), owner.to_string())
            .context("building the webhook client")?
            .keep_history(cfg.history.is_some()),
    ))
}

/// One pass over the sessions due now (or every PENDING one with `all`), then delivery of the
/// events due; ended early by a signal.
pub async fn once(cfg: &Config, all: bool) -> anyhow::Result<OnceReport> {
    let ledger = open_ledger(cfg)?;
    let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease)
        .context("building the HTTP client")?;
    reconcile::share_budgets(&providers, &ledger);
    let token = CancellationToken::new();
    let watcher = cancel_on_signal(&token);
    let owner = owner_id();
    // A backfill can be long: a progress bar on a terminal (none in logs or pipes).
    let pending_at_start = if all { ledger.count_pending()? } else { 0 };
    let progress = if all {
        Some(crate::progress::bar(
            Some(pending_at_start),
            "backfill {bar:40} {pos}/{len} sessions {per_sec} eta {eta}",
        ))
    } else {
        None
    };
    let opts = PassOptions {
        owner: owner.clone(),
        all,
        source: if all { Source::Backfill } else { Source::Poll },
        wake_outbox: None,
        progress: progress.clone(),
        drain: true,
        caller: provider::budget::Caller::Regular,
    };
    let pass = reconcile::run_pass(&ledger, &providers, cfg, &opts, &token).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let deliveries = match outbox(cfg, &owner, None)? {
        None => None,
        Some(outbox) => {
            outbox.deliver_due(&token).await?;
            Some(outbox.counters.snapshot())
        }
    };
    prune_history(&ledger, cfg).await;
    watcher.abort();
    let interrupted = token
        .is_cancelled()
        .then(|| pending_at_start.saturating_sub(pass.claimed) + pass.released);
    Ok(OnceReport {
        pass,
        interrupted,
        deliveries,
    })
}

/// `verify`: checks one session with its provider now (source `api`) and returns it as
/// recorded, or why it could not be checked. A signal gives the session back (released).
pub async fn verify(
    cfg: &Config,
    ledger: &Ledger,
    provider: &str,
    session_id: &str,
) -> anyhow::Result<reconcile::Verified> {
    let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease)
        .context("building the HTTP client")?;
    reconcile::share_budgets(&providers, ledger);
    let opts = PassOptions {
        owner: owner_id(),
        all: false,
        source: Source::Api,
        wake_outbox: None,
        progress: None,
        drain: true,
        caller: provider::budget::Caller::Regular,
    };
    let token = CancellationToken::new();
    let watcher = cancel_on_signal(&token);
    let verified =
        reconcile::verify(ledger, &providers, cfg, &opts, provider, session_id, &token).await;
    watcher.abort();
    Ok(verified?)
}

/// The daemon: a pass at every tick of `[schedule] cron` and, beside it, the outbox, until a
/// signal stops it (see [`stop_signal`]); what stopped it.
pub async fn run(cfg: &Config) -> anyhow::Result<Stop> {
    let stopping = Stopping::listen();
    let ledger = match reach_ledger(cfg, &stopping).await? {
        Ok(l) => l,
        Err(why) => return Ok(why),
    };
    // The other handles, each on connections of its own, are waited for the same way.
    let mut handles = match more_handles(cfg, &stopping).await? {
        Ok(h) => h,
        Err(why) => return Ok(why),
    };
    let mut handle = move || {
        handles
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no ledger handle left"))
    };
    let providers = provider::build(&cfg.providers, &cfg.http, cfg.schedule.lease)
        .context("building the HTTP client")?;
    reconcile::share_budgets(&providers, &ledger);
    let token = CancellationToken::new();
    let owner = owner_id();
    let wake = Arc::new(Notify::new());
    let health = Health::new(
        crate::admin::cron_interval(&cfg.schedule.cron),
        cfg.schedule.ageing,
    );
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let outbox_ledger = match cfg.webhook {
        Some(_) => Some(handle()?),
        None => None,
    };
    let outbox_task = outbox(cfg, &owner, outbox_ledger)?.map(|outbox| {
        let (wake, token) = (wake.clone(), token.clone());
        let span = tracing::info_span!("outbox");
        tokio::spawn(async move { outbox.run(wake, token).await }.instrument(span))
    });
    let wake_outbox = outbox_task.as_ref().map(|_| wake.clone());
    let opts = PassOptions {
        owner: owner.clone(),
        all: false,
        source: Source::Poll,
        wake_outbox: wake_outbox.clone(),
        progress: None,
        drain: false,
        caller: provider::budget::Caller::Regular,
    };
    // The admin endpoint and the API, each on its own ledger connection.
    let mut servers = listeners(cfg, handle, &health, &providers, &opts, &token).await?;
    tracing::info!(
        ledger = %cfg.ledger,
        cron = %cfg.schedule.cron_expr,
        providers = cfg.providers.len(),
        webhook = cfg.webhook.is_some(),
        admin = ?cfg.admin_listen,
        api = ?cfg.api.as_ref().map(|a| a.listen),
        owner = %opts.owner,
        "payrecon running"
    );
    // systemd: ready once the ledger is open and the listeners are bound. Outside systemd
    // (no NOTIFY_SOCKET) these are no-ops.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog(ledger.clone(), token.clone());
    servers.push(clock_watch(ledger.clone(), token.clone()));
    servers.push(history_pruner(ledger.clone(), cfg.clone(), token.clone()));
    let due = || async {
        let next = ledger.call(|l| l.next_due()).await;
        next.ok().flatten()
    };
    let pass = || scheduled_pass(&ledger, &providers, cfg, &opts, &token, &health);
    let work = schedule::run(&cfg.schedule.cron, cfg.schedule.poll, &token, pass, due);
    let (stop, schedule) = until_stopped(work, &stopping, &token).await?;
    token.cancel();
    stop_tasks(outbox_task.into_iter().chain(servers).chain(watchdog)).await?;
    // A schedule that ran out of ticks is a failure, so `Restart=on-failure` restarts it.
    schedule?;
    tracing::info!("payrecon stopped");
    Ok(stop)
}

/// Runs the schedule's work until it ends or a signal stops it; on a signal, cancels it and
/// waits at most [`SHUTDOWN_GRACE`] for the pass to finish. What stopped it, and how the work
/// ended.
async fn until_stopped<R>(
    work: impl std::future::Future<Output = R>,
    stopping: &Stopping,
    token: &CancellationToken,
) -> anyhow::Result<(Stop, R)> {
    let mut work = std::pin::pin!(work);
    let why = tokio::select! {
        r = &mut work => return Ok((Stop::Terminate, r)),
        why = stopping.wait() => why,
    };
    match why {
        Stop::Terminate => tracing::info!("signal received; stopping"),
        Stop::Restart => tracing::info!(
            exit = RESTART_EXIT,
            "SIGHUP: stopping cleanly to be started again with the config as it is now \
             (the unit restarts on this exit status)"
        ),
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    token.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await {
        Ok(r) => Ok((why, r)),
        Err(_) => anyhow::bail!(
            "the pass did not stop within {}s; its leases will expire",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
}

/// A ledger handle each for the outbox, the admin endpoint and the API, as configured, each
/// waited for as [`reach_ledger`] waits; `Err(stop)`: a signal came first.
async fn more_handles(
    cfg: &Config,
    stopping: &Stopping,
) -> anyhow::Result<Result<Vec<Ledger>, Stop>> {
    let wanted = usize::from(cfg.webhook.is_some())
        + usize::from(cfg.admin_listen.is_some())
        + usize::from(cfg.api.is_some())
        + usize::from(cfg.console.is_some());
    let mut handles = Vec::new();
    for _ in 0..wanted {
        match reach_ledger(cfg, stopping).await? {
            Ok(l) => handles.push(l),
            Err(why) => return Ok(Err(why)),
        }
    }
    Ok(Ok(handles))
}

/// One pass of the daemon's schedule, logged and noted for `/healthz`; whether it claimed any
/// session (the schedule then starts the next at once).
async fn scheduled_pass(
    ledger: &Ledger,
    providers: &provider::Providers,
    cfg: &Config,
    opts: &PassOptions,
    token: &CancellationToken,
    health: &Health,
) -> bool {
    match reconcile::run_pass(ledger, providers, cfg, opts, token).await {
        Ok(r) => {
            health.pass_done(r.elapsed);
            if r.claimed > 0 {
                tracing::info!(
                    claimed = r.claimed,
                    resolved = r.resolved(),
                    "{}",
                    r.summary()
                );
            } else {
                tracing::debug!("pass found nothing due");
            }
            for p in &r.refused {
                tracing::error!(provider = %p, "credentials refused during the pass");
            }
            r.claimed > 0
        }
        Err(e) => {
            tracing::error!(error = %e, "pass failed; sessions will be retried when their leases end");
            health.pass_failed(&e.to_string());
            false
        }
    }
}

/// The admin endpoint and the API (with its hint workers), as configured, each on a ledger
/// handle of its own from `handle`; their tasks.
async fn listeners(
    cfg: &Config,
    mut handle: impl FnMut() -> anyhow::Result<Ledger>,
    health: &Arc<Health>,
    providers: &provider::Providers,
    opts: &PassOptions,
    token: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut servers = Vec::new();
    if let Some(addr) = cfg.admin_listen {
        let listener = bind("admin.listen", addr).await?;
        let app = crate::admin::router(
            crate::admin::StatsCache::new(handle()?),
            health.clone(),
            crate::metrics::install(),
            cfg.admin_token.clone(),
            cfg.providers.iter().map(|p| p.name.clone()).collect(),
        );
        servers.push(crate::listen::serve(listener, app, token, "admin"));
    }
    if let Some(api) = &cfg.api {
        let listener = bind("api.listen", api.listen).await?;
        let api_opts = PassOptions {
            source: Source::Api,
            ..opts.clone()
        };
        let (app, workers) = crate::api::router(
            handle()?,
            providers.clone(),
            cfg.clone(),
            api_opts,
            token.clone(),
        );
        servers.push(crate::listen::serve(listener, app, token, "api"));
        servers.extend(workers);
    }
    if let Some(console) = &cfg.console {
        let listener = bind("console.listen", console.listen).await?;
        let checker = crate::console::Checker {
            providers: providers.clone(),
            opts: PassOptions {
                source: Source::Api,
                ..opts.clone()
            },
            shutdown: token.clone(),
            health: health.clone(),
        };
        let app = crate::console::router(handle()?, cfg.clone(), console.clone(), checker);
        servers.push(crate::listen::serve(listener, app, token, "console"));
    }
    Ok(servers)
}

/// Waits for each task to end, at most [`SHUTDOWN_GRACE`] each.
async fn stop_tasks(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    for task in tasks {
        if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
            anyhow::bail!(
                "a task did not stop within {}s; its leases will expire",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
    Ok(())
}

/// Binds a listener, naming the config key when it cannot.
async fn bind(key: &str, addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// How often `run` compares its clock with the ledger's.
const CLOCK_WATCH_EVERY: Duration = Duration::from_secs(600);

/// Compares this process's clock with the ledger's at start and every [`CLOCK_WATCH_EVERY`],
/// and says so in the log when they disagree (`/healthz` says it too): every process on a
/// ledger shares call slots and leases by their clocks.
fn clock_watch(ledger: Ledger, token: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(theirs) = ledger.call(|l| l.ledger_clock()).await
                && let Some(skew) =
                    crate::admin::clock_skew(theirs, ledger.is_pg(), crate::clock::now())
            {
                tracing::warn!("{skew}");
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(CLOCK_WATCH_EVERY) => {}
            }
        }
    })
}

/// How often `run` removes history older than `[ledger] history`.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Removes checks and delivery attempts older than `[ledger] history` (all of them when it
/// is off), a bounded batch per transaction; a failure is logged and tried again next time.
async fn prune_history(ledger: &Ledger, cfg: &Config) {
    let keep = cfg.history.unwrap_or(Duration::ZERO);
    let before = crate::clock::sub(crate::clock::now(), keep);
    match ledger.call(move |l| l.prune_history(before)).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(rows = n, "pruned the history of checks and deliveries"),
        Err(e) => tracing::warn!(error = %e, "could not prune the history; trying again later"),
    }
}

/// `run`'s pruning of the history, at start and every [`PRUNE_EVERY`].
fn history_pruner(
    ledger: Ledger,
    cfg: Config,
    token: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            prune_history(&ledger, &cfg).await;
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(PRUNE_EVERY) => {}
            }
        }
    })
}

/// systemd's watchdog: while `WatchdogSec=` is set, ping at half the period, but only while
/// the ledger answers, so a wedged ledger gets the service restarted.
fn watchdog(ledger: Ledger, token: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return None;
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        loop {
            if ledger.call(|l| l.ping()).await.is_ok() {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("ledger unreachable: watchdog not fed");
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }))
}
