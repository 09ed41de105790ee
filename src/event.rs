//! Events: the facts of every successful mutation, for journals and exact replay.

use crate::ids::{AgentId, ApplicationId, ScanConfigId, TaskId};
use crate::key::{AgentKey, TaskKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One successful mutation, with everything it generated (ids, keys, deadlines), so that
/// [`Queue::apply`](crate::Queue::apply) rebuilds the same state without a random source or a
/// clock.
///
/// Events contain keys: persist them as you would the keys themselves. `Debug` redacts them.
/// Their strings are shared with the task that stores them (`Arc<str>`, serialized as plain
/// strings), so recording an event copies no text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A scan agent key was minted and its agent registered.
    AgentRegistered {
        /// The agent's public identity.
        agent: AgentId,
        /// The agent's key.
        key: AgentKey,
        /// When.
        at_ms: u64,
    },
    /// An agent was revoked: its key died and its active tasks went back to the queue.
    AgentRevoked {
        /// The agent.
        agent: AgentId,
        /// When.
        at_ms: u64,
    },
    /// A scan was queued.
    TaskQueued {
        /// The new task's id.
        task: TaskId,
        /// Its application.
        application: ApplicationId,
        /// Its scanner.
        scanner: Arc<str>,
        /// Its target URL.
        target_url: Option<Arc<str>>,
        /// Its scan configuration reference.
        scan_config: Option<ScanConfigId>,
        /// When (`createTime`).
        at_ms: u64,
        /// Its deadline (`timeoutTime`).
        timeout_ms: u64,
    },
    /// A queued task was assigned to an agent.
    TaskAssigned {
        /// The task.
        task: TaskId,
        /// The agent.
        agent: AgentId,
        /// The fresh task key.
        task_key: TaskKey,
        /// The agent's configuration text.
        agent_config: Arc<str>,
        /// When (`startTime`).
        at_ms: u64,
        /// When the lease runs out unless renewed.
        lease_until_ms: u64,
    },
    /// The holding agent sent a status update (and renewed its lease).
    StatusUpdated {
        /// The task.
        task: TaskId,
        /// The message, verbatim.
        message: Arc<str>,
        /// When.
        at_ms: u64,
        /// The renewed lease.
        lease_until_ms: u64,
    },
    /// The holding agent completed the task.
    TaskCompleted {
        /// The task.
        task: TaskId,
        /// When (`endTime`).
        at_ms: u64,
    },
    /// The holding agent failed the task.
    TaskFailed {
        /// The task.
        task: TaskId,
        /// The agent's reason.
        reason: Arc<str>,
        /// When (`endTime`).
        at_ms: u64,
    },
    /// An administrator cancelled the task.
    TaskCancelled {
        /// The task.
        task: TaskId,
        /// When.
        at_ms: u64,
    },
    /// An assignment's lease ran out.
    LeaseExpired {
        /// The task.
        task: TaskId,
        /// The instant the lease ran out.
        at_ms: u64,
        /// True: back to the queue; false: that was the last attempt, CompleteTimedOut.
        requeued: bool,
    },
    /// The task deadline passed: CompleteTimedOut.
    DeadlineReached {
        /// The task.
        task: TaskId,
        /// The deadline.
        at_ms: u64,
    },
}

/// An event's copy of a caller's string. An empty one shares a static allocation (a status
/// update or agent configuration may be empty).
pub(crate) fn shared(s: &str) -> Arc<str> {
    if s.is_empty() {
        Arc::default()
    } else {
        Arc::from(s)
    }
}

impl Event {
    /// When the event happened.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::AgentRegistered { at_ms, .. }
            | Event::AgentRevoked { at_ms, .. }
            | Event::TaskQueued { at_ms, .. }
            | Event::TaskAssigned { at_ms, .. }
            | Event::StatusUpdated { at_ms, .. }
            | Event::TaskCompleted { at_ms, .. }
            | Event::TaskFailed { at_ms, .. }
            | Event::TaskCancelled { at_ms, .. }
            | Event::LeaseExpired { at_ms, .. }
            | Event::DeadlineReached { at_ms, .. } => *at_ms,
        }
    }

    /// The task the event is about, if any.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            Event::AgentRegistered { .. } | Event::AgentRevoked { .. } => None,
            Event::TaskQueued { task, .. }
            | Event::TaskAssigned { task, .. }
            | Event::StatusUpdated { task, .. }
            | Event::TaskCompleted { task, .. }
            | Event::TaskFailed { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::LeaseExpired { task, .. }
            | Event::DeadlineReached { task, .. } => Some(*task),
        }
    }
}
