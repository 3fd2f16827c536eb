//! `events list` and `events replay`.

use std::process::ExitCode;

use crate::clock;
use crate::config::UsageError;
use crate::daemon;

use super::*;

/// `payrecon events`.
pub(super) fn events(cli: &Cli, command: &EventsCommand) -> anyhow::Result<ExitCode> {
    let cfg = load(cli)?;
    let ledger = daemon::open_ledger(&cfg)?;
    match command {
        EventsCommand::List { dead, limit } => {
            let filter = if *dead {
                crate::ledger::EventFilter::Dead
            } else {
                crate::ledger::EventFilter::All
            };
            outln!(
                "{:<30} {:<18} {:<32} {:<9} {:>8}  last error",
                "id",
                "type",
                "session_id",
                "state",
                "attempts"
            );
            for (session_id, e) in ledger.list_events(filter, *limit)? {
                outln!(
                    "{:<30} {:<18} {:<32} {:<9} {:>8}  {}",
                    e.id,
                    e.kind,
                    crate::escape::shown(&session_id),
                    e.state(),
                    e.attempts,
                    crate::escape::shown(e.last_error.as_deref().unwrap_or(""))
                );
            }
        }
        EventsCommand::Replay { id, dead } => {
            let n = ledger.replay(if *dead { None } else { id.as_deref() }, clock::now())?;
            if n == 0 && id.is_some() && !dead {
                return Err(UsageError::new(format!(
                    "no event {:?} in the ledger",
                    id.as_deref().unwrap_or("")
                ))
                .into());
            }
            outln!("{n} event(s) back in line; `payrecon run` or `payrecon once` delivers them");
        }
    }
    Ok(ExitCode::SUCCESS)
}
