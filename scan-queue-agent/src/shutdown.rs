//! Stopping: the first SIGTERM (or SIGINT) stops polling and lets running scans go on for
//! the grace period; then, or at a second signal, scans are killed and their tasks failed.

use std::time::Duration;
use tokio::sync::watch;

/// Where the agent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Polling for tasks and running them.
    Running,
    /// No new tasks; running scans may finish.
    Draining,
    /// Running scans are killed and their tasks failed.
    Stopping,
}

/// Listens for SIGTERM and SIGINT and moves the phase forward: the first signal to
/// [`Phase::Draining`] and, after `grace` or at the next signal, to [`Phase::Stopping`].
pub fn on_signals(grace: Duration) -> std::io::Result<watch::Receiver<Phase>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(Phase::Running);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            grace_s = grace.as_secs_f64(),
            "stopping: no new tasks; running scans may finish within the grace period"
        );
        tx.send_replace(Phase::Draining);
        tokio::select! {
            () = tokio::time::sleep(grace) => {
                tracing::warn!("grace period over: killing the running scans");
            }
            _ = term.recv() => tracing::warn!("second signal: killing the running scans"),
            _ = int.recv() => tracing::warn!("second signal: killing the running scans"),
        }
        tx.send_replace(Phase::Stopping);
        // Keep the sender (and the handlers) alive until the process ends.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}
