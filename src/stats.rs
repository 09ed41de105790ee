//! Statistics: counts per status and lifetime counters.

use crate::status::TaskStatus;
use serde::{Deserialize, Serialize};

/// Lifetime counters. They are state (kept in snapshots, rebuilt by replay).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Scans queued (the highest task id given out).
    pub queued: u64,
    /// Assignments of a task to an agent.
    pub assignments: u64,
    /// Status updates accepted.
    pub status_updates: u64,
    /// Tasks completed successfully.
    pub completions: u64,
    /// Tasks failed by their agent.
    pub failures: u64,
    /// Tasks cancelled by an administrator.
    pub cancellations: u64,
    /// Leases that ran out.
    pub lease_expiries: u64,
    /// Tasks put back in the queue (lease expiry or agent revoked).
    pub requeues: u64,
    /// Tasks that timed out (last lease ran out, or deadline passed).
    pub timeouts: u64,
    /// Agents registered.
    pub agents_registered: u64,
    /// Agents revoked.
    pub agents_revoked: u64,
    /// Finished tasks evicted past `max_finished_tasks`.
    pub evicted: u64,
}

/// A point-in-time view of the queue, from [`Queue::stats`](crate::Queue::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Retained tasks per status, indexed by [`TaskStatus::index`].
    pub by_status: [usize; 7],
    /// Registered agents.
    pub agents: usize,
    /// Lifetime counters.
    pub counters: Counters,
    /// Calls refused by a key check (a metric, not state: not in snapshots).
    pub rejected_key_checks: u64,
}

impl Stats {
    /// Retained tasks with `status`.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.by_status.get(status.index()).copied().unwrap_or(0)
    }

    /// Queued, assigned and in-progress tasks.
    pub fn open_tasks(&self) -> usize {
        self.by_status.iter().take(3).sum()
    }
}
