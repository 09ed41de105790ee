//! Task status and its ThreadFix wire codes (SPEC §2).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a task is in its lifecycle.
///
/// ```
/// use scan_queue::TaskStatus;
/// assert_eq!(TaskStatus::InProgress.threadfix_code(), 2); // ThreadFix has no in-progress code
/// assert_eq!(TaskStatus::CompleteFailed.status_string(), "COMPLETE_FAILED");
/// assert!(TaskStatus::CompleteTimedOut.is_terminal());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TaskStatus {
    /// Waiting for an agent.
    Queued,
    /// Taken by an agent, no status update yet.
    Assigned,
    /// Taken by an agent that has sent at least one status update.
    InProgress,
    /// Completed by its agent (terminal).
    CompleteSuccessful,
    /// Cancelled by an administrator (terminal).
    CompleteDeleted,
    /// Lease ran out on the last attempt, or the task deadline passed (terminal).
    CompleteTimedOut,
    /// Its agent reported failure (terminal).
    CompleteFailed,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Queued,
        TaskStatus::Assigned,
        TaskStatus::InProgress,
        TaskStatus::CompleteSuccessful,
        TaskStatus::CompleteDeleted,
        TaskStatus::CompleteTimedOut,
        TaskStatus::CompleteFailed,
    ];

    /// A dense index (0..7), the position in [`TaskStatus::ALL`].
    pub const fn index(self) -> usize {
        match self {
            TaskStatus::Queued => 0,
            TaskStatus::Assigned => 1,
            TaskStatus::InProgress => 2,
            TaskStatus::CompleteSuccessful => 3,
            TaskStatus::CompleteDeleted => 4,
            TaskStatus::CompleteTimedOut => 5,
            TaskStatus::CompleteFailed => 6,
        }
    }

    /// Whether the status is final: no transition leaves it.
    pub const fn is_terminal(self) -> bool {
        !matches!(
            self,
            TaskStatus::Queued | TaskStatus::Assigned | TaskStatus::InProgress
        )
    }

    /// Whether an agent holds the task (Assigned or InProgress).
    pub const fn is_active(self) -> bool {
        matches!(self, TaskStatus::Assigned | TaskStatus::InProgress)
    }

    /// ThreadFix's numeric code (`status` on the wire). InProgress reports as 2 (Assigned).
    pub const fn threadfix_code(self) -> u8 {
        match self {
            TaskStatus::Queued => 1,
            TaskStatus::Assigned | TaskStatus::InProgress => 2,
            TaskStatus::CompleteSuccessful => 3,
            TaskStatus::CompleteDeleted => 4,
            TaskStatus::CompleteTimedOut => 5,
            TaskStatus::CompleteFailed => 6,
        }
    }

    /// ThreadFix's `taskStatus` string, e.g. `STATUS_COMPLETE_SUCCESSFUL`.
    pub const fn task_status(self) -> &'static str {
        match self {
            TaskStatus::Queued => "STATUS_QUEUED",
            TaskStatus::Assigned | TaskStatus::InProgress => "STATUS_ASSIGNED",
            TaskStatus::CompleteSuccessful => "STATUS_COMPLETE_SUCCESSFUL",
            TaskStatus::CompleteDeleted => "STATUS_COMPLETE_DELETED",
            TaskStatus::CompleteTimedOut => "STATUS_COMPLETE_TIMEDOUT",
            TaskStatus::CompleteFailed => "STATUS_COMPLETE_FAILED",
        }
    }

    /// ThreadFix's `statusString`, e.g. `COMPLETE_SUCCESSFUL`.
    pub const fn status_string(self) -> &'static str {
        match self {
            TaskStatus::Queued => "QUEUED",
            TaskStatus::Assigned | TaskStatus::InProgress => "ASSIGNED",
            TaskStatus::CompleteSuccessful => "COMPLETE_SUCCESSFUL",
            TaskStatus::CompleteDeleted => "COMPLETE_DELETED",
            TaskStatus::CompleteTimedOut => "COMPLETE_TIMEDOUT",
            TaskStatus::CompleteFailed => "COMPLETE_FAILED",
        }
    }

    /// Our own name, distinguishing InProgress (e.g. `IN_PROGRESS`), for logs and admin views.
    pub const fn name(self) -> &'static str {
        match self {
            TaskStatus::Queued => "QUEUED",
            TaskStatus::Assigned => "ASSIGNED",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::CompleteSuccessful => "COMPLETE_SUCCESSFUL",
            TaskStatus::CompleteDeleted => "COMPLETE_DELETED",
            TaskStatus::CompleteTimedOut => "COMPLETE_TIMEDOUT",
            TaskStatus::CompleteFailed => "COMPLETE_FAILED",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
