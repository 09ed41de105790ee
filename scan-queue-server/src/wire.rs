//! ThreadFix's wire format (SPEC §6), as pure data: no I/O, no clock, no lock.
//!
//! Every answer is an [`Envelope`]; a task is a [`TaskObject`] (the `completeTask` sample of
//! `seeds/complete-task-api.txt`, field for field and in the same order); an assignment is
//! an [`AssignmentObject`] (`requestTask`); the failure messages ThreadFix used are constants
//! here, and [`error_message`] words every refusal of the core the same way on every endpoint.
//!
//! Nothing in this module ever puts a secret into a message: keys appear only in the
//! [`TaskObject`] / [`AssignmentObject`] fields that hand them to their owner.

use scan_queue::{Bound, Error, Field, Task, TaskStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ThreadFix's answer to a call with a bad or missing API key.
pub const AUTH_FAILED: &str = "Authentication failed, check your API Key.";
/// ThreadFix's answer to `requestTask` when no queued task matches the agent's scanners.
pub const NO_TASK_FOUND: &str = "No task found.";
/// ThreadFix's answer when the `secureTaskKey` parameter is missing.
pub const NO_SECURE_TASK_KEY: &str = "No secure task key found error.";
/// ThreadFix's answer when the `secureTaskKey` is not the task's current key.
pub const TASK_KEY_NOT_RECOGNIZED: &str = "Secure task key was not recognized.";
/// ThreadFix's prefix for a status update (or other agent call) that cannot be applied.
pub const UPDATE_FAILED: &str = "Failed to update the ScanQueueTask";
/// ThreadFix's success object for `taskStatusUpdate`.
pub const UPDATE_SUCCEEDED: &str = "Successfully updated ScanQueueTask";
/// Ours: the scan agent key is not one this server minted (or it was revoked).
pub const AGENT_KEY_NOT_RECOGNIZED: &str = "Scan agent secure key was not recognized.";
/// Ours: the server failed in a way the caller cannot fix (details are in the server log).
pub const INTERNAL_ERROR: &str = "Internal error; see the server log.";

/// A standby's refusal, naming the active server when it knows it.
pub fn standby(active: Option<&str>) -> String {
    match active {
        Some(url) => format!("This server is a standby; the active server is {url}"),
        None => "This server is a standby and no server is active yet; retry shortly.".into(),
    }
}
/// ThreadFix's `type` of a scan agent configuration document.
pub const SCAN_CONFIG_TYPE: &str = "scanagtcfg";
/// ThreadFix's `responseCode` in every envelope.
pub const RESPONSE_CODE: i32 = -1;

/// ThreadFix's response envelope: `{"message", "success", "responseCode", "object"}`.
///
/// ```
/// use scan_queue_server::wire::Envelope;
/// let ok = serde_json::to_string(&Envelope::success("done")).unwrap();
/// assert_eq!(ok, r#"{"message":"","success":true,"responseCode":-1,"object":"done"}"#);
/// let no = serde_json::to_string(&Envelope::<()>::failure("No task found.")).unwrap();
/// assert_eq!(no, r#"{"message":"No task found.","success":false,"responseCode":-1,"object":null}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Empty on success; why it failed otherwise.
    pub message: String,
    /// Whether the call succeeded.
    pub success: bool,
    /// Always -1, as ThreadFix.
    pub response_code: i32,
    /// The answer; null on failure.
    pub object: Option<T>,
}

impl<T> Envelope<T> {
    /// A successful answer.
    pub fn success(object: T) -> Envelope<T> {
        Envelope {
            message: String::new(),
            success: true,
            response_code: RESPONSE_CODE,
            object: Some(object),
        }
    }

    /// A failure with its message (`object: null`).
    pub fn failure(message: impl Into<String>) -> Envelope<T> {
        Envelope {
            message: message.into(),
            success: false,
            response_code: RESPONSE_CODE,
            object: None,
        }
    }
}

/// One entry of a task's `scanStatuses`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStatusObject {
    /// Per-task sequence number.
    pub id: u64,
    /// Always true (ThreadFix never deactivated a status entry).
    pub active: bool,
    /// The status text.
    pub message: String,
}

/// A scan agent configuration document (`scanConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanConfigObject {
    /// The document id (the `scanConfigId` of `queueScan`).
    pub id: u64,
    /// Always true.
    pub active: bool,
    /// The scanner's short name, e.g. `burp`.
    pub name: String,
    /// Always [`SCAN_CONFIG_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The uploaded file's content type (`application/octet-stream` if none was given).
    pub content_type: String,
    /// When it was uploaded, epoch milliseconds.
    pub uploaded_date: u64,
}

/// A task as ThreadFix returns it from `completeTask` and `queueScan`; field names and order as
/// in the seed's sample, times as epoch milliseconds or null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskObject {
    /// The task id.
    pub id: u64,
    /// False only for a deleted task.
    pub active: bool,
    /// The status history, oldest first.
    pub scan_statuses: Vec<ScanStatusObject>,
    /// The scanner's display name.
    pub scanner: String,
    /// Always null.
    pub version: Option<String>,
    /// When it was queued.
    pub create_time: u64,
    /// When it was (last) assigned.
    pub start_time: Option<u64>,
    /// When it finished.
    pub end_time: Option<u64>,
    /// Its deadline.
    pub timeout_time: u64,
    /// ThreadFix's numeric status (InProgress reports as 2).
    pub status: u8,
    /// Always null.
    pub scan_agent_info: Option<String>,
    /// The task key, only in the answer to the agent that presented it.
    pub secure_key: Option<String>,
    /// The agent key, only in the answer to the agent that presented it.
    pub scan_agent_instance_secure_key: Option<String>,
    /// The scan configuration document, if any.
    pub scan_config: Option<ScanConfigObject>,
    /// The URL to scan, if any.
    pub target_url: Option<String>,
    /// E.g. `STATUS_COMPLETE_SUCCESSFUL`.
    pub task_status: String,
    /// E.g. `burp`.
    pub scanner_short_name: Option<String>,
    /// E.g. `COMPLETE_SUCCESSFUL`.
    pub status_string: String,
}

/// What a [`TaskObject`] needs beyond the core's [`Task`]: facts the server keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskExtras<'a> {
    /// The scanner's short name.
    pub scanner_short_name: Option<&'a str>,
    /// The scan configuration document that applies to the task.
    pub scan_config: Option<&'a ScanConfigObject>,
    /// The keys to echo (`secureKey`, `scanAgentInstanceSecureKey`): only for the agent that
    /// just presented them.
    pub keys: Option<(&'a str, &'a str)>,
}

impl TaskObject {
    /// Renders a core task.
    pub fn new(task: &Task, extras: TaskExtras<'_>) -> TaskObject {
        let status = task.status();
        TaskObject {
            id: task.id().0,
            active: task.is_active_flag(),
            scan_statuses: task
                .history()
                .iter()
                .map(|entry| ScanStatusObject {
                    id: entry.id,
                    active: true,
                    message: entry.message.to_string(),
                })
                .collect(),
            scanner: task.scanner().to_owned(),
            version: None,
            create_time: task.create_ms(),
            start_time: task.start_ms(),
            end_time: task.end_ms(),
            timeout_time: task.timeout_ms(),
            status: status.threadfix_code(),
            scan_agent_info: None,
            secure_key: extras.keys.map(|(task_key, _)| task_key.to_owned()),
            scan_agent_instance_secure_key: extras.keys.map(|(_, agent_key)| agent_key.to_owned()),
            scan_config: extras.scan_config.cloned(),
            target_url: task.target_url().map(str::to_owned),
            task_status: status.task_status().to_owned(),
            scanner_short_name: extras.scanner_short_name.map(str::to_owned),
            status_string: status.status_string().to_owned(),
        }
    }
}

/// `taskConfig` of an assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskConfigObject {
    /// The URL to scan.
    pub target_url: Option<String>,
    /// The same, as ThreadFix sends it twice.
    pub target_url_string: Option<String>,
    /// `configFile`: the scan configuration document, base64; absent when there is none.
    pub data_blobs: BTreeMap<String, String>,
    /// Always empty.
    pub config_params: BTreeMap<String, String>,
}

/// The `requestTask` answer: the task an agent now holds, with its task key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentObject {
    /// The task id (`scanQueueTaskId` of later calls).
    pub task_id: u64,
    /// The scanner's display name.
    pub task_type: String,
    /// What to scan and how.
    pub task_config: TaskConfigObject,
    /// The task key for this assignment.
    pub secure_task_key: String,
    /// The agent key that took it.
    pub secure_scan_agent_instance_key: String,
}

impl AssignmentObject {
    /// Renders the assignment of `task` (which must be assigned) to the agent with
    /// `agent_key`, with the base64 scan configuration document if any. `None` if the task
    /// has no assignment.
    pub fn new(task: &Task, agent_key: &str, config_file_base64: Option<String>) -> Option<Self> {
        let assignment = task.assignment()?;
        let url = task.target_url().map(str::to_owned);
        Some(AssignmentObject {
            task_id: task.id().0,
            task_type: task.scanner().to_owned(),
            task_config: TaskConfigObject {
                target_url: url.clone(),
                target_url_string: url,
                data_blobs: config_file_base64
                    .map(|b| BTreeMap::from([("configFile".to_owned(), b)]))
                    .unwrap_or_default(),
                config_params: BTreeMap::new(),
            },
            secure_task_key: assignment.task_key().expose_secret().to_owned(),
            secure_scan_agent_instance_key: agent_key.to_owned(),
        })
    }
}

/// A task's result, as an application's results listing shows it (ours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultObject {
    /// The task it completed.
    pub task_id: u64,
    /// The task's application.
    pub application_id: u64,
    /// The task's scanner (display name).
    pub scanner: String,
    /// The name the agent uploaded it as, if any.
    pub file_name: Option<String>,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex (also the download's `ETag`).
    pub sha256: String,
    /// The content type the download is served with.
    pub content_type: String,
    /// When it was received, epoch milliseconds.
    pub received_time: u64,
    /// The scanner report it is, when recognised (e.g. `zap-xml`).
    pub report: Option<String>,
    /// Its findings per severity, for a report of a known kind.
    pub findings: Option<crate::report::Findings>,
    /// Where to download it (same authentication as every call).
    pub download_path: String,
}

/// A page of an application's results, newest task first (ours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsPage {
    /// The results on this page.
    pub results: Vec<ResultObject>,
    /// The next page's path, if there are more.
    pub next_path: Option<String>,
}

/// The ThreadFix `failTask` answer and status message for `task` failed with `reason`.
///
/// ```
/// assert_eq!(
///     scan_queue_server::wire::fail_message(3, "Just because"),
///     "ScanAgent reported that the scan task: 3 had failed client-side for the following reason: Just because"
/// );
/// ```
pub fn fail_message(task: u64, reason: &str) -> String {
    // The text is the core's (the status message it records); written once, there.
    scan_queue::StatusMessage::Failed {
        task: scan_queue::TaskId(task),
        reason: reason.into(),
    }
    .to_string()
}

/// `Missing required parameter: {name}.` (ours), except ThreadFix's own text for a missing
/// `secureTaskKey`.
pub fn missing_parameter(name: &str) -> String {
    if name == "secureTaskKey" {
        return NO_SECURE_TASK_KEY.to_owned();
    }
    format!("Missing required parameter: {name}.")
}

/// `Invalid {name}: '{value}' is not a positive integer.` (ours). The value is shortened to
/// 40 characters; only call this for non-secret parameters.
pub fn not_a_positive_integer(name: &str, value: &str) -> String {
    format!(
        "Invalid {name}: '{}' is not a positive integer.",
        shorten(value, 40)
    )
}

/// ThreadFix's text for an unknown scanner in `setTaskConfig` (and ours for `queueScan`).
pub fn bad_scanner(op_saves_config: bool, scanner: &str) -> String {
    let scanner = shorten(scanner, 128);
    if op_saves_config {
        format!("Bad scanner type of: {scanner} provided. Will not save scan config.")
    } else {
        format!("Bad scanner type of: {scanner} provided. Will not queue scan.")
    }
}

/// The message for a refusal of the core, the same on every endpoint. Never contains a secret
/// (the core's errors carry none).
///
/// ```
/// use scan_queue::{Error, TaskId, TaskStatus};
/// use scan_queue_server::wire::error_message;
/// assert_eq!(error_message(&Error::InvalidTaskKey { task: TaskId(3) }), "Secure task key was not recognized.");
/// assert_eq!(
///     error_message(&Error::WrongState { task: TaskId(3), status: TaskStatus::CompleteSuccessful }),
///     "Failed to update the ScanQueueTask: task 3 is COMPLETE_SUCCESSFUL and can no longer change."
/// );
/// ```
pub fn error_message(error: &Error) -> String {
    match error {
        Error::UnknownTask(id) => format!("No scan queue task with id {id}."),
        Error::InvalidAgentKey | Error::UnknownAgent(_) => AGENT_KEY_NOT_RECOGNIZED.to_owned(),
        Error::NotTaskHolder { task } => format!(
            "Task {task} is held by another scan agent: the scanAgentSecureKey must be the one used to assign the task from the queue."
        ),
        Error::InvalidTaskKey { .. } => TASK_KEY_NOT_RECOGNIZED.to_owned(),
        Error::LeaseExpired { task } => format!(
            "The lease of task {task} expired and the task was taken back; its secure task key is no longer valid."
        ),
        Error::WrongState { task, status } if *status == TaskStatus::Queued => {
            format!("{UPDATE_FAILED}: task {task} is QUEUED and not assigned to any scan agent.")
        }
        Error::WrongState { task, status } => format!(
            "{UPDATE_FAILED}: task {task} is {} and can no longer change.",
            status.status_string()
        ),
        Error::BoundExceeded { bound, limit } => {
            format!(
                "Limit reached for {bound}: at most {limit}{}.",
                bound_unit(*bound)
            )
        }
        Error::InvalidInput { field, reason } => {
            format!("Invalid {}: {reason}.", parameter_of(*field))
        }
        // Inconsistent (a bug, logged by the caller) and any later variant.
        _ => INTERNAL_ERROR.to_owned(),
    }
}

/// The message for a late call on a task whose lease ran out on its last attempt, so that it
/// timed out instead of going back to the queue (ours).
pub fn lease_expired_timed_out(task: scan_queue::TaskId) -> String {
    format!(
        "The lease of task {task} expired on its last attempt and the task timed out \
         (COMPLETE_TIMEDOUT); its secure task key is no longer valid."
    )
}

/// The unit after a bound's limit, for lengths.
fn bound_unit(bound: Bound) -> &'static str {
    match bound {
        Bound::ScannerLen | Bound::UrlLen | Bound::MessageLen | Bound::AgentConfigLen => " bytes",
        _ => "",
    }
}

/// The wire parameter that carries a core input.
fn parameter_of(field: Field) -> String {
    match field {
        Field::ApplicationId => "applicationId".to_owned(),
        Field::Scanner => "scannerType".to_owned(),
        Field::Scanners => "scanners".to_owned(),
        Field::TargetUrl => "targetURL".to_owned(),
        Field::Message => "message".to_owned(),
        Field::AgentConfig => "agentConfig".to_owned(),
        other => other.to_string(),
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::TaskId;

    #[test]
    fn messages_never_contain_the_parameters_they_should_not_echo() {
        assert_eq!(missing_parameter("secureTaskKey"), NO_SECURE_TASK_KEY);
        assert_eq!(
            missing_parameter("scanQueueTaskId"),
            "Missing required parameter: scanQueueTaskId."
        );
        let long = "9".repeat(100);
        let m = not_a_positive_integer("scanQueueTaskId", &long);
        assert!(m.len() < 100, "{m}");
        assert_eq!(
            bad_scanner(true, "Nessus"),
            "Bad scanner type of: Nessus provided. Will not save scan config."
        );
    }

    #[test]
    fn every_error_has_a_sentence() {
        let errors = [
            Error::UnknownTask(TaskId(9)),
            Error::InvalidAgentKey,
            Error::NotTaskHolder { task: TaskId(9) },
            Error::InvalidTaskKey { task: TaskId(9) },
            Error::LeaseExpired { task: TaskId(9) },
            Error::WrongState {
                task: TaskId(9),
                status: TaskStatus::Queued,
            },
            Error::BoundExceeded {
                bound: Bound::MessageLen,
                limit: 4096,
            },
            Error::InvalidInput {
                field: Field::TargetUrl,
                reason: "scheme must be http or https",
            },
            Error::Inconsistent("x".into()),
        ];
        for e in &errors {
            let m = error_message(e);
            assert!(m.ends_with('.'), "{m}");
        }
        assert_eq!(
            error_message(&errors[6]),
            "Limit reached for message length: at most 4096 bytes."
        );
        assert_eq!(
            error_message(&errors[7]),
            "Invalid targetURL: scheme must be http or https."
        );
    }
}
