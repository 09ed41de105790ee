//! Configuration: durations and every bound the queue enforces.

use crate::error::{Bound, Error, Field};
use serde::{Deserialize, Serialize};

/// Durations and bounds. Every collection and string the queue keeps has a bound here, and
/// exceeding it is a typed error ([`Error::BoundExceeded`] or [`Error::InvalidInput`]).
///
/// ```
/// use scan_queue::Config;
/// let config = Config { lease_ms: 10 * 60 * 1000, ..Config::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// How long an assignment lasts without a status update (a heartbeat) before the task is
    /// taken back. Default: 1 hour.
    pub lease_ms: u64,
    /// How long after queueing a task times out whatever its state (ThreadFix's
    /// `timeoutTime`). Default: 12 hours, as ThreadFix.
    pub task_deadline_ms: u64,
    /// Assignments a task may have; when the lease of the last one runs out the task is
    /// CompleteTimedOut instead of queued again. Default: 3.
    pub max_attempts: u32,
    /// Tasks not yet finished (queued, assigned or in progress). Default: 1 000 000.
    pub max_open_tasks: usize,
    /// Finished tasks kept for queries and idempotent retries; past this the oldest finished
    /// task is evicted. Default: 100 000.
    pub max_finished_tasks: usize,
    /// Registered (live) scan agents. Default: 10 000.
    pub max_agents: usize,
    /// Distinct scanner names among open tasks, at most 65 535 (each has a 16-bit slot).
    /// Default: 1 024.
    pub max_scanners: usize,
    /// Scanner names in one request for a task. Default: 64.
    pub max_scanners_per_request: usize,
    /// Bytes in a scanner name. Default: 128.
    pub max_scanner_len: usize,
    /// Bytes in a target URL. Default: 255, ThreadFix's column size.
    pub max_url_len: usize,
    /// Bytes in a status or failure message. Default: 4 096.
    pub max_message_len: usize,
    /// Bytes of agent configuration text in a request for a task. Default: 65 536.
    pub max_agent_config_len: usize,
    /// Status messages kept per task; past this the oldest is dropped (a heartbeat never fails
    /// because a scan ran long). Default: 100.
    pub max_status_history: usize,
    /// Whether successful mutations produce [`Event`](crate::Event)s for
    /// [`Queue::drain_events`](crate::Queue::drain_events). Default: true.
    pub record_events: bool,
}

/// The smallest usable `max_url_len`: room for a short absolute URL such as `http://host/`.
pub const MIN_URL_LEN: usize = 12;

impl Default for Config {
    fn default() -> Config {
        Config {
            lease_ms: 60 * 60 * 1000,
            task_deadline_ms: 12 * 60 * 60 * 1000,
            max_attempts: 3,
            max_open_tasks: 1_000_000,
            max_finished_tasks: 100_000,
            max_agents: 10_000,
            max_scanners: 1_024,
            max_scanners_per_request: 64,
            max_scanner_len: 128,
            max_url_len: 255,
            max_message_len: 4_096,
            max_agent_config_len: 65_536,
            max_status_history: 100,
            record_events: true,
        }
    }
}

impl Config {
    /// Checks that the configuration is usable: durations and attempts at least 1, bounds at
    /// least 1 (the status history at least 2, the URL length at least [`MIN_URL_LEN`]), and
    /// at most 65 535 scanners.
    pub fn validate(&self) -> Result<(), Error> {
        let checks: [(bool, Field); 12] = [
            (self.lease_ms >= 1, Field::ConfigLease),
            (self.task_deadline_ms >= 1, Field::ConfigDeadline),
            (self.max_attempts >= 1, Field::ConfigMaxAttempts),
            (
                self.max_open_tasks >= 1,
                Field::ConfigBound(Bound::OpenTasks),
            ),
            (
                self.max_finished_tasks >= 1,
                Field::ConfigBound(Bound::FinishedTasks),
            ),
            (self.max_agents >= 1, Field::ConfigBound(Bound::Agents)),
            (
                (1..=crate::queue::MAX_SCANNER_SLOTS).contains(&self.max_scanners),
                Field::ConfigBound(Bound::Scanners),
            ),
            (
                self.max_scanners_per_request >= 1,
                Field::ConfigBound(Bound::ScannersPerRequest),
            ),
            (
                self.max_scanner_len >= 1,
                Field::ConfigBound(Bound::ScannerLen),
            ),
            (
                self.max_url_len >= MIN_URL_LEN,
                Field::ConfigBound(Bound::UrlLen),
            ),
            (
                self.max_message_len >= 1,
                Field::ConfigBound(Bound::MessageLen),
            ),
            (
                self.max_status_history >= 2,
                Field::ConfigBound(Bound::StatusHistory),
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, field)) => Err(Error::InvalidInput {
                field: *field,
                reason: "out of range",
            }),
            None => Ok(()),
        }
    }
}
