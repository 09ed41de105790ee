//! A scan task, its status history and its current assignment.

use crate::ids::{AgentId, ApplicationId, ScanConfigId, TaskId};
use crate::key::TaskKey;
use crate::status::TaskStatus;
use crate::time::ThreadfixTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// One scan task.
///
/// Read it through the getters; it changes only through [`Queue`](crate::Queue) operations.
/// `Debug` omits the task key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub(crate) id: TaskId,
    pub(crate) application: ApplicationId,
    /// Interned: every open task of one scanner shares one allocation.
    pub(crate) scanner: Arc<str>,
    /// Where the queue's index keeps this scanner while the task is open (not state).
    #[serde(skip)]
    pub(crate) slot: crate::queue::Slot,
    pub(crate) target_url: Option<Arc<str>>,
    pub(crate) scan_config: Option<ScanConfigId>,
    pub(crate) status: TaskStatus,
    pub(crate) create_ms: u64,
    pub(crate) start_ms: Option<u64>,
    pub(crate) end_ms: Option<u64>,
    pub(crate) timeout_ms: u64,
    pub(crate) attempts: u32,
    /// The current assignment while active; kept after a terminal agent call so that the
    /// same call can be answered again (idempotent retries); cleared on requeue.
    pub(crate) assignment: Option<Box<Assignment>>,
    /// The agent whose lease ran out most recently, to tell it why its call is refused.
    /// Boxed: rarely set, and 8 bytes instead of 17 in every task (serde sees through `Box`).
    pub(crate) lease_lost_by: Option<Box<AgentId>>,
    /// Never empty once queued. Entry ids are per task, from 1, one more than the last
    /// entry's (gaps show dropped entries); the next id is not stored.
    pub(crate) history: Vec<StatusEntry>,
}

/// An agent's hold on a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub(crate) agent: AgentId,
    pub(crate) task_key: TaskKey,
    pub(crate) lease_until_ms: u64,
}

impl Assignment {
    /// The agent holding (or, for a finished task, that last held) the task.
    pub fn agent(&self) -> AgentId {
        self.agent
    }
    /// The task key of this assignment (secret).
    pub fn task_key(&self) -> &TaskKey {
        &self.task_key
    }
    /// When the lease runs out unless renewed by a status update.
    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }
}

/// One entry of a task's status history (ThreadFix `scanStatuses`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Per-task sequence number, from 1.
    pub id: u64,
    /// When it was recorded.
    pub at_ms: u64,
    /// What happened; `Display` gives ThreadFix's text.
    pub message: StatusMessage,
}

/// A status message, stored as facts and rendered on demand (so a queued task does not carry
/// a formatted string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StatusMessage {
    /// `Scan queued at: {time}`.
    Queued {
        /// Queue time.
        at_ms: u64,
    },
    /// `Assigning task to an agent with agentConfig:\n{agent_config}`.
    Assigned {
        /// The agent's configuration text.
        agent_config: Arc<str>,
    },
    /// A status update from the agent, verbatim.
    Update(Arc<str>),
    /// `Scan completed successfully at: {time}`.
    Completed {
        /// Completion time.
        at_ms: u64,
    },
    /// ThreadFix's failure text with the agent's reason.
    Failed {
        /// The task (its id is part of ThreadFix's text).
        task: TaskId,
        /// The agent's reason, verbatim.
        reason: Arc<str>,
    },
    /// The lease ran out and the task went back to the queue.
    LeaseExpiredRequeued {
        /// When the lease ran out.
        at_ms: u64,
        /// Attempts used so far.
        attempts: u32,
    },
    /// The lease of the last allowed attempt ran out.
    LeaseExpiredTimedOut {
        /// When the lease ran out.
        at_ms: u64,
        /// Attempts used.
        attempts: u32,
    },
    /// The task deadline passed.
    DeadlinePassed {
        /// The deadline.
        at_ms: u64,
    },
    /// An administrator cancelled the task.
    Deleted {
        /// When.
        at_ms: u64,
    },
    /// The holding agent was revoked and the task went back to the queue.
    AgentRevoked {
        /// When.
        at_ms: u64,
    },
}

impl fmt::Display for StatusMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMessage::Queued { at_ms } => {
                write!(f, "Scan queued at: {}", ThreadfixTime(*at_ms))
            }
            StatusMessage::Assigned { agent_config } => {
                write!(
                    f,
                    "Assigning task to an agent with agentConfig:\n{agent_config}"
                )
            }
            StatusMessage::Update(m) => f.write_str(m),
            StatusMessage::Completed { at_ms } => {
                write!(
                    f,
                    "Scan completed successfully at: {}",
                    ThreadfixTime(*at_ms)
                )
            }
            StatusMessage::Failed { task, reason } => write!(
                f,
                "ScanAgent reported that the scan task: {task} had failed client-side for the following reason: {reason}"
            ),
            StatusMessage::LeaseExpiredRequeued { at_ms, attempts } => write!(
                f,
                "Lease expired at: {} after attempt {attempts}; task returned to the queue",
                ThreadfixTime(*at_ms)
            ),
            StatusMessage::LeaseExpiredTimedOut { at_ms, attempts } => write!(
                f,
                "Lease expired at: {} after attempt {attempts}, the last allowed; task timed out",
                ThreadfixTime(*at_ms)
            ),
            StatusMessage::DeadlinePassed { at_ms } => {
                write!(
                    f,
                    "Task deadline passed at: {}; task timed out",
                    ThreadfixTime(*at_ms)
                )
            }
            StatusMessage::Deleted { at_ms } => {
                write!(f, "Task deleted at: {}", ThreadfixTime(*at_ms))
            }
            StatusMessage::AgentRevoked { at_ms } => write!(
                f,
                "Scan agent revoked at: {}; task returned to the queue",
                ThreadfixTime(*at_ms)
            ),
        }
    }
}

impl Task {
    /// The task id.
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// The application whose target is scanned.
    pub fn application(&self) -> ApplicationId {
        self.application
    }
    /// The scanner to run (as given when queued).
    pub fn scanner(&self) -> &str {
        &self.scanner
    }
    /// The URL to scan, if any.
    pub fn target_url(&self) -> Option<&str> {
        self.target_url.as_deref()
    }
    /// The scan configuration reference, if any.
    pub fn scan_config(&self) -> Option<ScanConfigId> {
        self.scan_config
    }
    /// Current status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }
    /// When it was queued (ThreadFix `createTime`).
    pub fn create_ms(&self) -> u64 {
        self.create_ms
    }
    /// When it was last assigned (ThreadFix `startTime`).
    pub fn start_ms(&self) -> Option<u64> {
        self.start_ms
    }
    /// When it finished (ThreadFix `endTime`).
    pub fn end_ms(&self) -> Option<u64> {
        self.end_ms
    }
    /// The task deadline (ThreadFix `timeoutTime`).
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
    /// How many times it has been assigned.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The current assignment (while Assigned/InProgress), or the one that finished it (after
    /// complete or fail; also kept after cancel or deadline of an active task).
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.as_deref()
    }
    /// The status history, oldest first (bounded by
    /// [`Config::max_status_history`](crate::Config::max_status_history)).
    pub fn history(&self) -> &[StatusEntry] {
        &self.history
    }
    /// The latest status message.
    pub fn last_message(&self) -> Option<&StatusMessage> {
        self.history.last().map(|e| &e.message)
    }
    /// ThreadFix's `active` flag: false only for deleted tasks.
    pub fn is_active_flag(&self) -> bool {
        self.status != TaskStatus::CompleteDeleted
    }
    /// The text ThreadFix returns from failTask, for a failed task.
    pub fn failure_message(&self) -> Option<String> {
        self.history.iter().rev().find_map(|e| match &e.message {
            m @ StatusMessage::Failed { .. } => Some(m.to_string()),
            _ => None,
        })
    }

    /// The next timer instant for an open task: the earlier of its lease and its deadline.
    pub(crate) fn timer_ms(&self) -> Option<u64> {
        if self.status.is_terminal() {
            return None;
        }
        Some(match &self.assignment {
            Some(a) if self.status.is_active() => a.lease_until_ms.min(self.timeout_ms),
            _ => self.timeout_ms,
        })
    }

    pub(crate) fn push_status(&mut self, at_ms: u64, message: StatusMessage, max: usize) {
        let id = self.history.last().map_or(1, |e| e.id.saturating_add(1));
        if self.history.len() >= max {
            let excess = self.history.len() + 1 - max;
            self.history.drain(..excess.min(self.history.len()));
        }
        if self.history.len() == self.history.capacity() {
            // A fresh allocation and a move instead of `realloc`, which costs ≈ 250 more
            // instructions here (glibc, callgrind; BENCHMARKS.md).
            let mut grown = Vec::with_capacity(self.history.capacity().max(2) * 2);
            grown.append(&mut self.history);
            self.history = grown;
        }
        self.history.push(StatusEntry { id, at_ms, message });
    }
}

#[cfg(test)]
mod tests {
    /// Every queued task pays for these bytes; see BENCHMARKS.md (memory per queued task).
    #[test]
    fn task_size() {
        assert!(std::mem::size_of::<super::Task>() <= 160);
    }
}
