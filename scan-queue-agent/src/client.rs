//! The Tasks API, client side (SPEC §7): one method per endpoint the agent calls, ThreadFix's
//! envelope decoded, and retries with back-off for calls that did not reach the server.
//!
//! Keys travel only in request bodies and the `Authorization` header (marked sensitive),
//! never in a URL, so no transport error can carry one.

use crate::config::Config;
use crate::secret::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// A task's id on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// ThreadFix's "No task found." (`requestTask` with nothing to do).
pub const NO_TASK_FOUND: &str = "No task found.";
/// ThreadFix's answer to a wrong API key.
pub const AUTH_FAILED: &str = "Authentication failed, check your API Key.";
/// The server's answer to a scan agent key it does not know (or revoked).
pub const AGENT_KEY_NOT_RECOGNIZED: &str = "Scan agent secure key was not recognized.";

/// The largest answer read, in bytes (a task with a full status history is far smaller).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of a server message kept in an error.
const MAX_MESSAGE_IN_ERROR: usize = 512;

/// Why a call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The call may not have reached the server (connection, timeout, 5xx, 429): retry.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server answered `success: false` with this message: retrying changes nothing.
    #[error("server refused: {0}")]
    Refused(String),
    /// The answer was not a ThreadFix envelope.
    #[error("unexpected answer: {0}")]
    Malformed(String),
    /// A local file could not be read (the report).
    #[error("{0}")]
    Local(String),
}

impl CallError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Unreachable(_))
    }
}

/// ThreadFix's envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    message: String,
    success: bool,
    object: Option<T>,
}

/// A task handed to this agent by `requestTask`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Assignment {
    /// The task.
    pub task_id: TaskId,
    /// The scanner to run (the server's display name).
    pub task_type: String,
    /// Target and scan configuration.
    #[serde(default)]
    pub task_config: TaskConfig,
    /// The key of this assignment, for every later call about the task.
    pub secure_task_key: Secret,
}

/// What to scan and how (`taskConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskConfig {
    /// The target URL, if the task has one.
    pub target_url: Option<String>,
    /// Documents attached to the task.
    #[serde(default)]
    pub data_blobs: Option<DataBlobs>,
}

/// `dataBlobs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DataBlobs {
    /// The scan configuration document (`setTaskConfig`), base64.
    pub config_file: Option<String>,
}

/// A client of one server's Tasks API.
pub struct Client {
    http: reqwest::Client,
    /// The base, ending in `/tasks`.
    base: String,
    /// `APIKEY {key}`, marked sensitive.
    authorization: reqwest::header::HeaderValue,
    request_timeout: Duration,
    upload_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the configured server (HTTPS through rustls, with the system's roots
    /// and the configured CA file). Redirects are not followed: the API key goes nowhere else.
    pub fn new(config: &Config) -> Result<Client, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scan-queue-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("ca_file: cannot read {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", ca.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("APIKEY {}", config.api_key.expose()))
                .map_err(|_| "the API key cannot be sent in an HTTP header".to_owned())?;
        authorization.set_sensitive(true);
        Ok(Client {
            http,
            base: config.server_url.clone(),
            authorization,
            request_timeout: config.request_timeout,
            upload_timeout: config.upload_timeout,
        })
    }

    fn url(&self, op: &str) -> String {
        format!("{}/{op}", self.base)
    }

    /// Sends a request and decodes the envelope's object (`T`).
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(chain(&e)))?;
        let status = response.status();
        let body = read_bounded(response).await?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CallError::Unreachable(format!(
                "HTTP {status}: {}",
                shorten(&String::from_utf8_lossy(&body))
            )));
        }
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            CallError::Malformed(format!(
                "HTTP {status}, not a ThreadFix answer ({e}): {}",
                shorten(&String::from_utf8_lossy(&body))
            ))
        })?;
        match (envelope.success, envelope.object) {
            (true, Some(object)) => Ok(object),
            (true, None) => Err(CallError::Malformed("success without an object".into())),
            (false, _) => Err(CallError::Refused(shorten(&envelope.message))),
        }
    }

    /// `requestScanAgentKey`: a new scan agent key.
    pub async fn request_scan_agent_key(&self) -> Result<Secret, CallError> {
        self.call::<Secret>(
            self.http.get(self.url("requestScanAgentKey")),
            self.request_timeout,
        )
        .await
    }

    /// `scanners`: the scanner names the server knows.
    pub async fn scanners(&self) -> Result<Vec<String>, CallError> {
        self.call(self.http.get(self.url("scanners")), self.request_timeout)
            .await
    }

    /// `requestTask`: the oldest task for one of `scanners` (comma-separated), or `None`.
    pub async fn request_task(
        &self,
        agent_key: &Secret,
        scanners: &str,
        agent_config: &str,
    ) -> Result<Option<Assignment>, CallError> {
        let form = [
            ("scanners", scanners),
            ("scanAgentSecureKey", agent_key.expose()),
            ("agentConfig", agent_config),
        ];
        match self
            .call::<Assignment>(
                self.http.post(self.url("requestTask")).form(&form),
                self.request_timeout,
            )
            .await
        {
            Ok(assignment) => Ok(Some(assignment)),
            Err(CallError::Refused(message)) if message == NO_TASK_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `taskStatusUpdate`: a progress message, which also renews the lease (a heartbeat).
    pub async fn status_update(
        &self,
        task: TaskId,
        message: &str,
        agent_key: &Secret,
        task_key: &Secret,
    ) -> Result<(), CallError> {
        self.task_message("taskStatusUpdate", task, message, agent_key, task_key)
            .await
    }

    /// `failTask` with a reason.
    pub async fn fail_task(
        &self,
        task: TaskId,
        message: &str,
        agent_key: &Secret,
        task_key: &Secret,
    ) -> Result<(), CallError> {
        self.task_message("failTask", task, message, agent_key, task_key)
            .await
    }

    /// An agent call on a task with a message (`taskStatusUpdate`, `failTask`).
    async fn task_message(
        &self,
        op: &str,
        task: TaskId,
        message: &str,
        agent_key: &Secret,
        task_key: &Secret,
    ) -> Result<(), CallError> {
        let id = task.0.to_string();
        let form = [
            ("scanQueueTaskId", id.as_str()),
            ("message", message),
            ("scanAgentSecureKey", agent_key.expose()),
            ("secureTaskKey", task_key.expose()),
        ];
        self.call::<serde::de::IgnoredAny>(
            self.http.post(self.url(op)).form(&form),
            self.request_timeout,
        )
        .await
        .map(drop)
    }

    /// `completeTask` with the report at `path`, uploaded as `file_name`. The id and keys
    /// go first, then the file part, streamed from disk.
    pub async fn complete_task(
        &self,
        task: TaskId,
        agent_key: &Secret,
        task_key: &Secret,
        path: &Path,
        file_name: &str,
    ) -> Result<(), CallError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            CallError::Local(format!("cannot open the report {}: {e}", path.display()))
        })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| {
                CallError::Local(format!("cannot read the report {}: {e}", path.display()))
            })?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(file_name.to_owned())
            .mime_str("application/octet-stream")
            .map_err(|e| CallError::Local(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("scanQueueTaskId", task.0.to_string())
            .text("scanAgentSecureKey", agent_key.expose().to_owned())
            .text("secureTaskKey", task_key.expose().to_owned())
            .part("file", part);
        self.call::<serde::de::IgnoredAny>(
            self.http.post(self.url("completeTask")).multipart(form),
            self.upload_timeout,
        )
        .await
        .map(drop)
    }
}

/// The body, at most [`MAX_ANSWER_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallError::Unreachable(chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(CallError::Malformed(format!(
                "answer larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    shorten(&text)
}

/// At most [`MAX_MESSAGE_IN_ERROR`] bytes, cut at a character boundary.
fn shorten(text: &str) -> String {
    crate::text::truncate(text, MAX_MESSAGE_IN_ERROR).into_owned()
}

/// Exponential back-off with jitter: 250 ms, doubling, up to a maximum.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// The first delay.
    pub const INITIAL: Duration = Duration::from_millis(250);

    /// A back-off whose delays never exceed `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: Backoff::INITIAL.min(max),
            max,
        }
    }

    /// The next delay (between 75% and 100% of the nominal one), doubling the nominal one.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let quarter = nominal / 4;
        let jitter = quarter.mul_f64(f64::from(nanos % 1000) / 1000.0);
        nominal - jitter
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = Backoff::INITIAL.min(self.max);
    }
}

/// Calls `call` until it succeeds, fails in a way retrying cannot mend, or `until` would
/// pass before the next try. Each retry is logged with `what` (never a key).
pub async fn retry<T, F, Fut>(
    what: &str,
    until: Instant,
    max_delay: Duration,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::new(max_delay);
    loop {
        match call().await {
            Err(e) if e.is_retryable() => {
                let delay = backoff.next_delay();
                if Instant::now() + delay > until {
                    return Err(e);
                }
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what}: will retry");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let nominal = [250, 500, 1000, 2000, 2000, 2000, 2000, 2000];
        for (d, n) in delays.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(*d <= n && *d >= n * 3 / 4, "{d:?} vs {n:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Backoff::INITIAL);
        let mut tiny = Backoff::new(Duration::from_millis(10));
        assert!(tiny.next_delay() <= Duration::from_millis(10));
    }

    fn config_with_ca(ca: Option<&Path>) -> Config {
        let mut text = String::from(
            "server_url = \"https://queue.example\"\napi_key = \"k-0123456789\"\nstate_file = \"s\"\n",
        );
        if let Some(ca) = ca {
            text.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
        text.push_str("[scanners.\"X\"]\ncommand = [\"x\"]\n");
        Config::parse(&text, |_| None).unwrap()
    }

    #[test]
    fn a_ca_file_is_loaded_and_a_bad_one_refused() {
        // A self-signed test CA (certificate only; its key was thrown away).
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-ca.pem");
        let client = Client::new(&config_with_ca(Some(&ca))).unwrap();
        assert_eq!(
            client.url("requestTask"),
            "https://queue.example/threadfix/rest/latest/tasks/requestTask"
        );
        assert!(!format!("{client:?}").contains("k-0123456789"));
        assert!(Client::new(&config_with_ca(None)).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Client::new(&config_with_ca(Some(&empty))).unwrap_err();
        assert!(e.contains("no certificate") || e.contains("ca_file"), "{e}");
        let missing = dir.path().join("missing.pem");
        assert!(
            Client::new(&config_with_ca(Some(&missing)))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn assignment_decodes_threadfix_json_and_hides_the_key() {
        let json = r#"{"taskId": 1, "taskType": "OWASP Zed Attack Proxy",
            "taskConfig": {"targetUrl": "http://targeturl/app", "targetUrlString": "http://targeturl/app",
                           "dataBlobs": {"configFile": "emFwLmNvbmY="}, "configParams": {}},
            "secureTaskKey": "pm9CJtnxahpe3J85QiqaWUuWe2F441UbMORlYyGy3JfQ",
            "secureScanAgentInstanceKey": "joPseAnOYbIUHyf8SjA0KsVCTK1krwyj9GuULQnF1QRA"}"#;
        let a: Assignment = serde_json::from_str(json).unwrap();
        assert_eq!(a.task_id, TaskId(1));
        assert_eq!(
            a.task_config.target_url.as_deref(),
            Some("http://targeturl/app")
        );
        assert_eq!(
            a.task_config
                .data_blobs
                .as_ref()
                .unwrap()
                .config_file
                .as_deref(),
            Some("emFwLmNvbmY=")
        );
        let debug = format!("{a:?}");
        assert!(!debug.contains("pm9CJ"), "{debug}");
        let bare: Assignment =
            serde_json::from_str(r#"{"taskId": 2, "taskType": "x", "taskConfig": {"targetUrl": null, "dataBlobs": {}}, "secureTaskKey": "k"}"#)
                .unwrap();
        assert!(bare.task_config.target_url.is_none());
    }
}
