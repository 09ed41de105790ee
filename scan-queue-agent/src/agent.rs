//! The agent's loop: register once (or reuse the stored key), ask for tasks every poll
//! interval while a slot is free, run each task on its own, stop as [`Phase`] says.

use crate::client::{AGENT_KEY_NOT_RECOGNIZED, AUTH_FAILED, Backoff, CallError, Client, retry};
use crate::config::Config;
use crate::shutdown::Phase;
use crate::task::{self, Context, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long `--once` keeps trying to reach the server for a task.
const ONCE_RETRY_FOR: Duration = Duration::from_secs(60);

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Tasks completed (report accepted).
    pub completed: u64,
    /// Tasks reported as failed.
    pub failed: u64,
    /// Tasks given up (lost, refused) or whose report could not be delivered.
    pub lost: u64,
}

/// Why the agent stopped on its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Runs the agent until `phase` leaves [`Phase::Running`] (or, with `once`, after at most
/// one task), then waits for the running tasks.
pub async fn run(
    config: Config,
    once: bool,
    mut phase: watch::Receiver<Phase>,
) -> Result<Summary, Fatal> {
    let client = Client::new(&config).map_err(Fatal)?;
    if plain_http_off_this_host(&config.server_url) {
        tracing::warn!(
            server = %config.server_url,
            "the API key and scan agent keys go to a remote server over plain HTTP; use https://"
        );
    }
    tracing::info!(server = %config.server_url, scanners = %config.scanner_list(), concurrency = config.concurrency, "scan agent starting");
    check_scanner_names(&client, &config).await?;
    let Some(agent_key) = agent_key(&client, &config, once, &mut phase).await? else {
        return Ok(Summary::default());
    };
    let scanners = config.scanner_list();
    let agent_config = format!(
        "scan-queue-agent {}\nname={}\nos={}\narch={}\nscanners={scanners}\nconcurrency={}",
        env!("CARGO_PKG_VERSION"),
        config.name,
        std::env::consts::OS,
        std::env::consts::ARCH,
        config.concurrency
    );
    let poll_interval = config.poll_interval;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let ctx = Arc::new(Context {
        client,
        agent_key,
        phase: phase.clone(),
        config,
    });
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut summary = Summary::default();
    let mut backoff = Backoff::new(ctx.config.retry_max_delay.max(poll_interval));
    let once_until = Instant::now() + ONCE_RETRY_FOR;
    let mut fatal = None;
    loop {
        while let Some(done) = running.try_join_next() {
            count(&mut summary, done);
        }
        if *phase.borrow() != Phase::Running {
            break;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = phase.changed() => continue,
        };
        let asked = ctx
            .client
            .request_task(&ctx.agent_key, &scanners, &agent_config)
            .await;
        let wait = match asked {
            Ok(Some(assignment)) => {
                backoff.reset();
                let id = assignment.task_id;
                let span = tracing::info_span!("task", id = id.0, scanner = %assignment.task_type);
                let target_url = assignment.task_config.target_url.as_deref().unwrap_or("");
                tracing::info!(parent: &span, target_url, "task assigned");
                let ctx = Arc::clone(&ctx);
                running.spawn(tracing::Instrument::instrument(
                    async move {
                        let outcome = task::run(ctx, assignment).await;
                        drop(permit);
                        outcome
                    },
                    span,
                ));
                if once {
                    break;
                }
                continue;
            }
            Ok(None) => {
                backoff.reset();
                if once {
                    tracing::info!("no task to run");
                    break;
                }
                poll_interval
            }
            Err(CallError::Refused(m)) if m == AUTH_FAILED => {
                fatal = Some(Fatal("the server refused the API key".into()));
                break;
            }
            Err(CallError::Refused(m)) if m == AGENT_KEY_NOT_RECOGNIZED => {
                fatal = Some(Fatal(format!(
                    "the server does not recognize this agent's scan agent key (revoked, or the server lost its state); delete {} to register as a new agent",
                    ctx.config.state_file.display()
                )));
                break;
            }
            Err(e) => {
                let delay = backoff
                    .next_delay()
                    .max(poll_interval.min(Duration::from_secs(1)));
                if once && Instant::now() + delay > once_until {
                    fatal = Some(Fatal(format!("requestTask: {e}")));
                    break;
                }
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "requestTask failed");
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = phase.changed() => {}
        }
    }
    if !running.is_empty() {
        tracing::info!(tasks = running.len(), "waiting for the running tasks");
    }
    while let Some(done) = running.join_next().await {
        count(&mut summary, done);
    }
    tracing::info!(
        completed = summary.completed,
        failed = summary.failed,
        lost = summary.lost,
        "scan agent stopped"
    );
    match fatal {
        Some(f) => Err(f),
        None => Ok(summary),
    }
}

/// Whether `url` is `http://` to a host other than this machine's loopback.
fn plain_http_off_this_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    !(host == "localhost" || host == "::1" || host.starts_with("127."))
}

fn count(summary: &mut Summary, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Completed) => summary.completed += 1,
        Ok(Outcome::Failed(_)) => summary.failed += 1,
        Ok(_) => summary.lost += 1,
        Err(e) => {
            tracing::error!(error = %e, "a task's runner panicked");
            summary.lost += 1;
        }
    }
}

/// Checks that every configured scanner name is one the server lists (its display names):
/// a task carries the display name, which is how the agent finds the command.
async fn check_scanner_names(client: &Client, config: &Config) -> Result<(), Fatal> {
    match client.scanners().await {
        Ok(known) => {
            let unknown: Vec<&str> = config
                .scanners
                .keys()
                .map(String::as_str)
                .filter(|name| !known.iter().any(|k| k == name))
                .collect();
            if unknown.is_empty() {
                Ok(())
            } else {
                Err(Fatal(format!(
                    "scanner names the server does not list: {}. Name each [scanners.\"…\"] table after one of the server's scanners: {}",
                    unknown.join(", "),
                    known.join(", ")
                )))
            }
        }
        Err(CallError::Refused(m)) if m == AUTH_FAILED => {
            Err(Fatal("the server refused the API key".into()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not check the scanner names against the server's list");
            Ok(())
        }
    }
}

/// The stored scan agent key, or a new one (stored before use). `None` if the agent was
/// told to stop while the server was unreachable. With `once`, an unreachable server is
/// given [`ONCE_RETRY_FOR`]; otherwise the agent waits for it as long as it runs.
async fn agent_key(
    client: &Client,
    config: &Config,
    once: bool,
    phase: &mut watch::Receiver<Phase>,
) -> Result<Option<crate::Secret>, Fatal> {
    if let Some(key) = crate::state::load(&config.state_file, &config.server_url).map_err(Fatal)? {
        tracing::info!(state_file = %config.state_file.display(), "using the stored scan agent key");
        return Ok(Some(key));
    }
    let until = Instant::now()
        + if once {
            ONCE_RETRY_FOR
        } else {
            Duration::from_secs(365 * 24 * 3600)
        };
    let key = tokio::select! {
        key = retry("requestScanAgentKey", until, config.retry_max_delay, || client.request_scan_agent_key()) => key,
        _ = phase.wait_for(|p| *p != Phase::Running) => return Ok(None),
    };
    let key = match key {
        Ok(key) => key,
        Err(CallError::Refused(m)) if m == AUTH_FAILED => {
            return Err(Fatal("the server refused the API key".into()));
        }
        Err(e) => return Err(Fatal(format!("requestScanAgentKey: {e}"))),
    };
    crate::state::save(&config.state_file, &config.server_url, &key).map_err(Fatal)?;
    tracing::info!(state_file = %config.state_file.display(), "registered; scan agent key stored");
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_flagged_only_off_loopback() {
        assert!(!plain_http_off_this_host(
            "http://127.0.0.1:8080/threadfix/rest/latest/tasks"
        ));
        assert!(!plain_http_off_this_host("http://localhost/x"));
        assert!(!plain_http_off_this_host("http://[::1]:8080/x"));
        assert!(!plain_http_off_this_host("https://queue.example/x"));
        assert!(plain_http_off_this_host("http://queue.example:8080/x"));
        assert!(plain_http_off_this_host("http://[2001:db8::1]/x"));
    }
}
