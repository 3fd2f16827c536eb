//! `completions`, `man`, `demo` and `simulate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{self, LogFormat, UsageError};
use crate::daemon;
use crate::simulator::{self, Sim};

use super::*;

/// `payrecon completions`.
pub(super) fn completions(_cli: &Cli, shell: &clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(*shell, &mut cmd, "payrecon", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `payrecon man`.
pub(super) fn man(_cli: &Cli) -> anyhow::Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// `payrecon demo`.
pub(super) fn demo(cli: &Cli) -> anyhow::Result<ExitCode> {
    init_logging(log_format(cli, LogFormat::Text), "error");
    let out = runtime()?.block_on(crate::demo::run())?;
    out!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `payrecon simulate`.
pub(super) fn simulate(
    cli: &Cli,
    listen: &str,
    api_key_env: &Option<String>,
    write_config: &Option<PathBuf>,
    callbacks_to: &Option<String>,
) -> anyhow::Result<ExitCode> {
    init_logging(log_format(cli, LogFormat::Text), "info");
    let key = match api_key_env {
        None => None,
        Some(var) => Some(config::process_env(var).ok_or_else(|| {
            UsageError::new(format!(
                "--api-key-env: environment variable {var} is not set"
            ))
        })?),
    };
    let callbacks = match callbacks_to {
        None => None,
        Some(api) => {
            reqwest::Url::parse(api)
                .map_err(|e| UsageError::new(format!("--callbacks-to {api:?}: {e}")))?;
            let secret = config::process_env(simulator::SIM_WEBHOOK_SECRET_ENV)
                .unwrap_or_else(|| simulator::SIM_WEBHOOK_SECRET.to_string());
            if crate::config::SigningKey::from_whsec(&secret).is_none() {
                return Err(UsageError::new(format!(
                    "{}: a whsec_ secret (whsec_ and base64)",
                    simulator::SIM_WEBHOOK_SECRET_ENV
                ))
                .into());
            }
            Some(simulator::CallbackTarget {
                api: api.clone(),
                secret,
            })
        }
    };
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| UsageError::new(format!("--listen {listen}: cannot bind: {e}")))?;
        let addr = listener.local_addr()?;
        outln!("simulator listening on http://{addr}");
        outln!("  MoPay    create: POST /api/external/payment (description \"sim:BEHAVIOUR\")");
        outln!("  MoPay    status: GET  /api/external/session/v1/{{sessionId}}");
        outln!("  Little   status: GET  /api/payments-v2/{{key}}[?longPoll=true]");
        outln!("  Moflay   status: GET  /v1/payments/{{id}}");
        outln!("  Vesicash status: GET  /v1/payment/{{reference}}");
        outln!(
            "  Mopay NG status: GET  /?req={}&reference={{id}}",
            simulator::NG_STATUS_ENDPOINT
        );
        outln!("  Moflay   list:   GET  /v1/transactions?limit=&cursor=");
        outln!("  Vesicash list:   GET  /v1/payment/?page=&limit=&from=");
        if let Some(path) = write_config {
            let little_key = callbacks.as_ref().map(|_| path.with_extension("little.pem"));
            if let Some(pem) = &little_key {
                std::fs::write(pem, simulator::SIM_LITTLE_PUBLIC_KEY).map_err(|e| {
                    UsageError::new(format!("--write-config {}: {e}", pem.display()))
                })?;
            }
            let text = simulator::sample_config(&format!("http://{addr}"), little_key.as_deref());
            std::fs::write(path, text)
                .map_err(|e| UsageError::new(format!("--write-config {}: {e}", path.display())))?;
            outln!(
                "wrote {}: a config for all five providers against this simulator; \
                 export PAYRECON_SIM_KEY and PAYRECON_SIM_PUBLIC_KEY (any values) before using it",
                path.display()
            );
            if callbacks.is_some() {
                outln!(
                    "  and {} (this simulator signs with {} unless it is set), for the signed callbacks",
                    simulator::SIM_WEBHOOK_SECRET_ENV,
                    simulator::SIM_WEBHOOK_SECRET
                );
            }
        }
        let sim = Sim::new(key);
        if let Some(target) = callbacks {
            outln!(
                "  signed callbacks go to {}/v1/callbacks/KIND for sessions registered with \"callback\"",
                target.api.trim_end_matches('/')
            );
            sim.send_callbacks_to(target);
        }
        // One line per second with status requests in it: what a provider's rate limit sees.
        let counter = sim.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = 0;
            loop {
                every.tick().await;
                let now = counter
                    .status_requests
                    .load(std::sync::atomic::Ordering::Relaxed);
                if now > last {
                    tracing::info!(
                        requests = now - last,
                        total = now,
                        "status requests in the last second"
                    );
                }
                last = now;
            }
        });
        simulator::serve(listener, sim, daemon::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
