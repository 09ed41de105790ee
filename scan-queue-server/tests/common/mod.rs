//! A real server on a loopback port, and a small ThreadFix client for the tests.

#![allow(dead_code)]

use reqwest::multipart::{Form, Part};
use scan_queue::KeySource;
use scan_queue_server::{ApiKey, Clock, Server, ServerConfig};
use serde_json::Value;
use std::path::PathBuf;

/// The API key of every test server.
pub const API_KEY: &str = "test-api-key-0123456789";
/// The seed's times: createTime, startTime, endTime and the scan config's uploadedDate.
pub const SEED_CREATE_MS: u64 = 1_475_094_356_000;
pub const SEED_START_MS: u64 = 1_475_094_996_000;
pub const SEED_END_MS: u64 = 1_475_098_826_957;
pub const SEED_UPLOADED_MS: u64 = 1_475_094_354_000;

pub struct TestServer {
    pub server: Server,
    pub clock: Clock,
    /// `http://127.0.0.1:{port}`.
    pub origin: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server with default settings on a manual clock at the seed's start.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose config `tweak` adjusts, on a manual clock.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_on(Clock::manual(SEED_UPLOADED_MS), tweak).await
    }

    /// A server whose config `tweak` adjusts, on `clock`.
    pub async fn start_on(clock: Clock, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir.path());
        tweak(&mut config);
        let server =
            Server::with_parts(config, KeySource::from_seed([7; 32]), clock.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn({
            let server = server.clone();
            async move {
                server
                    .serve(listener, async {
                        let _ = rx.await;
                    })
                    .await
            }
        });
        TestServer {
            server,
            clock,
            origin,
            http: reqwest::Client::new(),
            dir,
            shutdown: Some(tx),
            serving: Some(serving),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap().unwrap();
        }
    }

    /// The seed's base URL: `/threadfix/rest/latest/tasks/{op}`.
    pub fn url(&self, op: &str) -> String {
        format!("{}/threadfix/rest/latest/tasks/{op}", self.origin)
    }

    pub fn results(&self) -> Vec<PathBuf> {
        list(&self.dir.path().join("results"))
    }

    pub fn incoming(&self) -> Vec<PathBuf> {
        list(&self.dir.path().join("incoming"))
    }

    /// POST url-encoded, authenticated by header.
    pub async fn form(&self, op: &str, params: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .post(self.url(op))
            .header("Accept", "application/json")
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .form(params)
            .send()
            .await
            .unwrap();
        json(response).await
    }

    /// POST multipart, authenticated by header.
    pub async fn multipart(&self, op: &str, form: Form) -> Value {
        let response = self
            .http
            .post(self.url(op))
            .header("Accept", "application/json")
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        json(response).await
    }

    /// GET, authenticated by header.
    pub async fn get(&self, op: &str) -> Value {
        let response = self
            .http
            .get(self.url(op))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap();
        json(response).await
    }

    pub async fn queue_scan(&self, scanner: &str) -> u64 {
        let r = self
            .form(
                "queueScan",
                &[
                    ("applicationId", "1"),
                    ("scannerType", scanner),
                    ("targetURL", "http://targeturl/app"),
                ],
            )
            .await;
        assert_eq!(r["success"], true, "{r}");
        r["object"]["id"].as_u64().unwrap()
    }

    /// `/metrics`, read with the API key.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.origin))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn agent_key(&self) -> String {
        let r = self.get("requestScanAgentKey").await;
        assert_eq!(r["success"], true, "{r}");
        r["object"].as_str().unwrap().to_owned()
    }

    /// Requests a task; `Some((id, task key))` or `None` when ThreadFix says "No task found.".
    pub async fn request_task(&self, agent_key: &str, scanners: &str) -> Option<(u64, String)> {
        let r = self
            .form(
                "requestTask",
                &[
                    ("scanners", scanners),
                    ("scanAgentSecureKey", agent_key),
                    ("agentConfig", "scanagent.properties"),
                ],
            )
            .await;
        if r["success"] == false {
            assert_eq!(r["message"], "No task found.", "{r}");
            return None;
        }
        let o = &r["object"];
        Some((
            o["taskId"].as_u64().unwrap(),
            o["secureTaskKey"].as_str().unwrap().to_owned(),
        ))
    }

    /// completeTask with a small file, as the seed's curl call.
    pub async fn complete(&self, id: u64, agent_key: &str, task_key: &str) -> Value {
        self.multipart(
            "completeTask",
            complete_form(id, agent_key, task_key, b"<xml/>"),
        )
        .await
    }

    pub async fn fail(&self, id: u64, message: &str, agent_key: &str, task_key: &str) -> Value {
        let id = id.to_string();
        self.form(
            "failTask",
            &[
                ("scanQueueTaskId", &id),
                ("message", message),
                ("scanAgentSecureKey", agent_key),
                ("secureTaskKey", task_key),
            ],
        )
        .await
    }

    pub async fn update(&self, id: u64, message: &str, agent_key: &str, task_key: &str) -> Value {
        let id = id.to_string();
        self.form(
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", &id),
                ("message", message),
                ("scanAgentSecureKey", agent_key),
                ("secureTaskKey", task_key),
            ],
        )
        .await
    }
}

/// The seed's completeTask form, fields in the seed's order.
pub fn complete_form(id: u64, agent_key: &str, task_key: &str, file: &[u8]) -> Form {
    Form::new()
        .text("scanQueueTaskId", id.to_string())
        .text("scanAgentSecureKey", agent_key.to_owned())
        .text("secureTaskKey", task_key.to_owned())
        .part(
            "file",
            Part::bytes(file.to_vec()).file_name("scanResults.xml"),
        )
}

/// The body as JSON, after checking it is one (never an HTML page).
pub async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "HTTP {status}: {text}"
    );
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["responseCode"], -1, "{value}");
    if value["success"] == false {
        assert_eq!(value["object"], Value::Null, "{value}");
    }
    value
}

/// Asserts a failure envelope with exactly this message.
#[track_caller]
pub fn assert_failure(value: &Value, message: &str) {
    assert_eq!(value["success"], false, "{value}");
    assert_eq!(value["message"], message, "{value}");
}

fn list(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The sample output of `seeds/complete-task-api.txt`, verbatim.
pub const SEED_COMPLETE_OUTPUT: &str = r#"{
    "message": "",
    "success": true,
    "responseCode": -1,
    "object": {
        "id": 1,
        "active": true,
        "scanStatuses": [
            {
                "id": 1,
                "active": true,
                "message": "Scan queued at: 28-09-16:15:25:893 -0500"
            },
            {
                "id": 2,
                "active": true,
                "message": "Assigning task to an agent with agentConfig:\nC:\\ThreadFix\\scanagent\\scanagent.properties"
            },
            {
                "id": 4,
                "active": true,
                "message": "This task is still in progress"
            },
            {
                "id": 5,
                "active": true,
                "message": "This task is still in progress"
            },
            {
                "id": 6,
                "active": true,
                "message": "Scan completed successfully at: 28-09-16:16:40:957 -0500"
            }
        ],
        "scanner": "Burp Suite Pro",
        "version": null,
        "createTime": 1475094356000,
        "startTime": 1475094996000,
        "endTime": 1475098826957,
        "timeoutTime": 1475137556000,
        "status": 3,
        "scanAgentInfo": null,
        "secureKey": "KVS1TiifaYeILnchqbdmU24JEyljgNy0NTOgvSLzS3Y",
        "scanAgentInstanceSecureKey": "yMFCvtcmBtAARYS5QX8x54zvMruNLIvNMzqMI44K4JG8",
        "scanConfig": {
            "id": 1,
            "active": true,
            "name": "burp",
            "type": "scanagtcfg",
            "contentType": "application/octet-stream",
            "uploadedDate": 1475094354000
        },
        "targetUrl": "http://targeturl/app",
        "taskStatus": "STATUS_COMPLETE_SUCCESSFUL",
        "scannerShortName": "burp",
        "statusString": "COMPLETE_SUCCESSFUL"
    }
}"#;

/// The sample output of `seeds/fail-task-api.txt`, verbatim.
pub const SEED_FAIL_OUTPUT: &str = r#"{
"message": "",
"success": true,
"responseCode": -1,
"object": "ScanAgent reported that the scan task: 3 had failed client-side for the following reason: Just because"
}"#;

/// The seed's agentConfig (a Windows path, backslashes and all).
pub const SEED_AGENT_CONFIG: &str = r"C:\ThreadFix\scanagent\scanagent.properties";

/// The names of the fields at one indentation depth of pretty-printed JSON (4 spaces per
/// level, as the seed), in order: the field order of one object.
pub fn field_order(pretty: &str, depth: usize) -> Vec<String> {
    let indent = " ".repeat(4 * depth);
    pretty
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&indent)?;
            let rest = rest.strip_prefix('"')?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect()
}

/// Replaces ThreadFix's status-message times (`dd-MM-yy:HH:mm:SS Z`) with `<time>`.
pub fn without_times(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(": ") {
        out.push_str(&rest[..i + 2]);
        rest = &rest[i + 2..];
        let b = rest.as_bytes();
        let looks_like_time = b.len() >= 21
            && b[2] == b'-'
            && b[5] == b'-'
            && b[8] == b':'
            && b[11] == b':'
            && b[14] == b':';
        if looks_like_time && let Some(space) = rest.find(' ') {
            let zone_end = (space + 6).min(rest.len());
            out.push_str("<time>");
            rest = &rest[zone_end..];
        }
    }
    out.push_str(rest);
    out
}

/// Compares a task object with the seed's, field by field. The only differences allowed are
/// the ones SPEC §5/§6 states: status-message times are in UTC (`+0000`, and the minute
/// and millisecond fields of our own clock), and status ids have no gaps (ThreadFix's sample
/// skips 3, a status it deleted). `keys` are the two keys the seed's fields should hold.
pub fn assert_matches_seed(ours_pretty: &str, keys: (&str, &str)) {
    let seed: Value = serde_json::from_str(SEED_COMPLETE_OUTPUT).unwrap();
    let ours: Value = serde_json::from_str(ours_pretty).unwrap();
    // Same fields, same order, at every level the sample shows.
    assert_eq!(
        field_order(ours_pretty, 1),
        field_order(SEED_COMPLETE_OUTPUT, 1)
    );
    assert_eq!(
        field_order(ours_pretty, 2),
        field_order(SEED_COMPLETE_OUTPUT, 2)
    );
    assert_eq!(
        field_order(ours_pretty, 3),
        field_order(SEED_COMPLETE_OUTPUT, 3)
    );
    assert_eq!(
        field_order(ours_pretty, 4),
        field_order(SEED_COMPLETE_OUTPUT, 4)
    );
    for field in ["message", "success", "responseCode"] {
        assert_eq!(ours[field], seed[field], "envelope field {field}");
    }
    let (o, s) = (&ours["object"], &seed["object"]);
    for (field, value) in s.as_object().unwrap() {
        match field.as_str() {
            "scanStatuses" => {}
            "secureKey" => assert_eq!(o[field], keys.0),
            "scanAgentInstanceSecureKey" => assert_eq!(o[field], keys.1),
            _ => assert_eq!(&o[field], value, "field {field}"),
        }
    }
    let (ours_s, seed_s) = (
        o["scanStatuses"].as_array().unwrap(),
        s["scanStatuses"].as_array().unwrap(),
    );
    assert_eq!(ours_s.len(), seed_s.len());
    for (i, (a, b)) in ours_s.iter().zip(seed_s).enumerate() {
        assert_eq!(a["id"], i as u64 + 1);
        assert_eq!(a["active"], b["active"]);
        let (am, bm) = (
            a["message"].as_str().unwrap(),
            b["message"].as_str().unwrap(),
        );
        assert_eq!(without_times(am), without_times(bm), "status {i}");
        if am.contains("at: ") {
            assert!(am.ends_with(" +0000"), "{am}");
        }
    }
}

/// Pretty-printed with 4-space indentation, as the seed's sample.
pub fn pretty4<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).unwrap();
    String::from_utf8(out).unwrap()
}

/// Re-indents JSON text with 4 spaces per level, keeping its field order (serde_json's
/// `Value` would sort the fields): each field and item on its own line.
pub fn reindent(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(4 * depth));
    };
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The body as text (after the same checks as [`json`]).
pub async fn text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["responseCode"], -1, "{value}");
    text
}
