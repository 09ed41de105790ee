//! Errors. Every failed call leaves the queue as it was (after time advanced to `now`).
//! No error carries a secret.

use crate::ids::{AgentId, TaskId};
use crate::status::TaskStatus;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No task with this id (never queued, or finished and evicted).
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// No agent with this id is registered.
    #[error("unknown scan agent {0}")]
    UnknownAgent(AgentId),
    /// The scan agent key is not one this queue minted, or it was revoked.
    #[error("invalid scan agent key")]
    InvalidAgentKey,
    /// The agent key is valid but belongs to another agent than the one holding the task.
    #[error("task {task} is held by another scan agent")]
    NotTaskHolder {
        /// The task.
        task: TaskId,
    },
    /// The task key is missing, wrong, or from an earlier assignment.
    #[error("task key not recognized for task {task}")]
    InvalidTaskKey {
        /// The task.
        task: TaskId,
    },
    /// The calling agent's lease on the task ran out; the task was taken back.
    #[error("the lease of task {task} expired; the task was taken back")]
    LeaseExpired {
        /// The task.
        task: TaskId,
    },
    /// The task's status does not allow this call.
    #[error("task {task} is {status}")]
    WrongState {
        /// The task.
        task: TaskId,
        /// Its current status.
        status: TaskStatus,
    },
    /// A configured bound would be exceeded.
    #[error("{bound} bound of {limit} reached")]
    BoundExceeded {
        /// Which bound.
        bound: Bound,
        /// The configured limit.
        limit: usize,
    },
    /// An input is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which input.
        field: Field,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A snapshot or event is inconsistent with the queue or with itself.
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

impl Error {
    /// Whether this error is a failed key check (counted in
    /// [`Stats::rejected_key_checks`](crate::Stats::rejected_key_checks)).
    pub fn is_key_rejection(&self) -> bool {
        matches!(
            self,
            Error::InvalidAgentKey
                | Error::NotTaskHolder { .. }
                | Error::InvalidTaskKey { .. }
                | Error::LeaseExpired { .. }
        )
    }
}

/// The configured bounds, named in [`Error::BoundExceeded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Bound {
    /// [`Config::max_open_tasks`](crate::Config::max_open_tasks).
    OpenTasks,
    /// [`Config::max_finished_tasks`](crate::Config::max_finished_tasks).
    FinishedTasks,
    /// [`Config::max_agents`](crate::Config::max_agents).
    Agents,
    /// [`Config::max_scanners`](crate::Config::max_scanners).
    Scanners,
    /// [`Config::max_scanners_per_request`](crate::Config::max_scanners_per_request).
    ScannersPerRequest,
    /// [`Config::max_scanner_len`](crate::Config::max_scanner_len).
    ScannerLen,
    /// [`Config::max_url_len`](crate::Config::max_url_len).
    UrlLen,
    /// [`Config::max_message_len`](crate::Config::max_message_len).
    MessageLen,
    /// [`Config::max_agent_config_len`](crate::Config::max_agent_config_len).
    AgentConfigLen,
    /// [`Config::max_status_history`](crate::Config::max_status_history).
    StatusHistory,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bound::OpenTasks => "open tasks",
            Bound::FinishedTasks => "finished tasks",
            Bound::Agents => "scan agents",
            Bound::Scanners => "distinct scanners",
            Bound::ScannersPerRequest => "scanners per request",
            Bound::ScannerLen => "scanner name length",
            Bound::UrlLen => "target URL length",
            Bound::MessageLen => "message length",
            Bound::AgentConfigLen => "agent config length",
            Bound::StatusHistory => "status history",
        })
    }
}

/// The inputs named in [`Error::InvalidInput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The application id of a new scan.
    ApplicationId,
    /// A scanner name.
    Scanner,
    /// The list of scanners an agent supports.
    Scanners,
    /// A target URL.
    TargetUrl,
    /// A status or failure message.
    Message,
    /// An agent's configuration text.
    AgentConfig,
    /// A configuration duration: the lease.
    ConfigLease,
    /// A configuration duration: the task deadline.
    ConfigDeadline,
    /// A configuration value: maximum attempts.
    ConfigMaxAttempts,
    /// A configuration bound.
    ConfigBound(Bound),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::ApplicationId => f.write_str("application id"),
            Field::Scanner => f.write_str("scanner"),
            Field::Scanners => f.write_str("scanner list"),
            Field::TargetUrl => f.write_str("target URL"),
            Field::Message => f.write_str("message"),
            Field::AgentConfig => f.write_str("agent config"),
            Field::ConfigLease => f.write_str("config lease_ms"),
            Field::ConfigDeadline => f.write_str("config task_deadline_ms"),
            Field::ConfigMaxAttempts => f.write_str("config max_attempts"),
            Field::ConfigBound(b) => write!(f, "config bound for {b}"),
        }
    }
}
