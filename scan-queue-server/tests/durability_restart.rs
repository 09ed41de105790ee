//! What survives a restart (tasks, order, ids, agents, keys, leases, scan configs), and what
//! recovery does with journal files the test damages: a torn tail is dropped, corruption in
//! the middle stops the start with an error naming the file and the offset.

use base64::Engine;
use reqwest::multipart::{Form, Part};
use scan_queue::KeySource;
use scan_queue_server::{ApiKey, Clock, Durability, Fsync, Server, ServerConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const API_KEY: &str = "restart-test-api-key-3Jd8Nq5TyB1cXe6";
const T0: u64 = 1_700_000_000_000;

/// A library server on a loopback port, on `dir`, with a manual clock at `now_ms`.
struct Running {
    server: Server,
    api: String,
    http: reqwest::Client,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn config(dir: &Path, fsync: Fsync) -> ServerConfig {
    let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir);
    config.durability = Some(Durability {
        fsync,
        ..Durability::default()
    });
    config
}

async fn start(dir: &Path, fsync: Fsync, now_ms: u64, seed: u8) -> Running {
    let server = Server::with_parts(
        config(dir, fsync),
        KeySource::from_seed([seed; 32]),
        Clock::manual(now_ms),
    )
    .expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!(
        "http://{}/threadfix/rest/latest/tasks",
        listener.local_addr().unwrap()
    );
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
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
    Running {
        server,
        api,
        http: reqwest::Client::new(),
        shutdown,
        serving,
    }
}

impl Running {
    /// Stops gracefully and releases the data directory.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.serving.await.unwrap().unwrap();
        drop(self.server);
    }

    async fn call(&self, op: &str, params: &[(&str, &str)]) -> Value {
        self.http
            .post(format!("{}/{op}", self.api))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .form(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn multipart(&self, op: &str, form: Form) -> Value {
        self.http
            .post(format!("{}/{op}", self.api))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn queue(&self) -> u64 {
        let r = self
            .call(
                "queueScan",
                &[("applicationId", "1"), ("scannerType", "zap")],
            )
            .await;
        assert_eq!(r["success"], true, "{r}");
        r["object"]["id"].as_u64().unwrap()
    }

    async fn set_config(&self, bytes: &[u8]) -> Value {
        let form = Form::new()
            .text("appId", "1")
            .text("scannerType", "zap")
            .part("file", Part::bytes(bytes.to_vec()).file_name("zap.cfg"));
        self.multipart("setTaskConfig", form).await
    }

    async fn agent(&self) -> String {
        let r = self.call("requestScanAgentKey", &[]).await;
        r["object"].as_str().unwrap().to_owned()
    }

    async fn take(&self, agent: &str) -> Value {
        self.call(
            "requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", agent)],
        )
        .await
    }

    async fn update(&self, id: u64, agent: &str, task_key: &str) -> Value {
        let id = id.to_string();
        self.call(
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", &id),
                ("message", "still scanning"),
                ("scanAgentSecureKey", agent),
                ("secureTaskKey", task_key),
            ],
        )
        .await
    }
}

fn task_key(assignment: &Value) -> String {
    assert_eq!(assignment["success"], true, "{assignment}");
    assignment["object"]["secureTaskKey"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("segment-"))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn tasks_agents_keys_leases_and_configs_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Fsync::Always, T0, 1).await;
    let config = Form::new()
        .text("appId", "1")
        .text("scannerType", "zap")
        .part(
            "file",
            Part::bytes(b"zap.config=1".to_vec()).file_name("zap.cfg"),
        );
    let r = s.multipart("setTaskConfig", config).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(
        [s.queue().await, s.queue().await, s.queue().await],
        [1, 2, 3]
    );
    let (a1, a2) = (s.agent().await, s.agent().await);
    let k1 = task_key(&s.take(&a1).await);
    assert_eq!(s.update(1, &a1, &k1).await["success"], true);
    let k2 = task_key(&s.take(&a2).await);
    s.stop().await;

    // Restart: a different key seed (keys minted before come back from the journal).
    let s = start(dir.path(), Fsync::Always, T0 + 1_000, 2).await;
    assert_eq!(s.update(1, &a1, &k1).await["success"], true);
    let form = Form::new()
        .text("scanQueueTaskId", "2")
        .text("scanAgentSecureKey", a2.clone())
        .text("secureTaskKey", k2.clone())
        .part("file", Part::bytes(b"<r/>".to_vec()).file_name("r.xml"));
    let r = s.multipart("completeTask", form).await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    let a3 = s.agent().await;
    assert_ne!(a3, a1);
    let third = s.take(&a3).await;
    assert_eq!(third["object"]["taskId"], 3, "{third}");
    let blob = third["object"]["taskConfig"]["dataBlobs"]["configFile"]
        .as_str()
        .unwrap_or_default();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap();
    assert_eq!(blob, b"zap.config=1", "the scan config survives");
    assert_eq!(s.queue().await, 4, "ids go on");
    s.stop().await;

    // Down for longer than the lease: the leases that ran out expire at the first `now`.
    let lease_ms = scan_queue::Config::default().lease_ms;
    let s = start(dir.path(), Fsync::Always, T0 + 2_000 + lease_ms, 3).await;
    let r = s.update(1, &a1, &k1).await;
    assert_eq!(r["success"], false, "{r}");
    let again = s.take(&a1).await;
    assert_eq!(again["object"]["taskId"], 1, "back in the queue, first");
    assert_ne!(task_key(&again), k1, "a fresh task key");
    s.stop().await;
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "older segments compacted away"
    );
}

#[tokio::test]
async fn a_torn_tail_is_dropped_with_the_unacknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Fsync::Never, T0, 1).await;
    let agent = s.agent().await;
    for id in 1..=3 {
        assert_eq!(s.queue().await, id);
    }
    s.stop().await;
    // A crash in the middle of writing the last record (task 3 queued).
    let segment = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    let s = start(dir.path(), Fsync::Never, T0, 2).await;
    assert_eq!(
        s.queue().await,
        3,
        "task 3 was torn off, its id is given again"
    );
    assert_eq!(
        task_key(&s.take(&agent).await).len(),
        44,
        "the agent goes on"
    );
    s.stop().await;

    // A zero-filled tail (the file grew but the data never landed) is torn too.
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&segment, bytes).unwrap();
    let s = start(dir.path(), Fsync::Never, T0, 3).await;
    assert_eq!(s.queue().await, 4);
    s.stop().await;
}

#[tokio::test]
async fn corruption_in_the_middle_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Fsync::Never, T0, 1).await;
    for id in 1..=3 {
        assert_eq!(s.queue().await, id);
    }
    s.stop().await;
    // Flip one byte inside the first record's payload: records follow it.
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let before = bytes.clone();
    bytes[8 + 16 + 5] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let error = Server::with_parts(
        config(dir.path(), Fsync::Never),
        KeySource::from_seed([2; 32]),
        Clock::manual(T0),
    )
    .expect_err("a corrupt journal must not start");
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(message.contains("byte offset 8"), "{message}");
    assert!(message.contains("checksum mismatch"), "{message}");

    // The binary says so and exits non-zero; nothing is changed on disk.
    let out = Command::new(env!("CARGO_BIN_EXE_scan-queue-server"))
        .args(["--listen", "127.0.0.1:0", "--api-key", API_KEY])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&segment.display().to_string()) && stderr.contains("byte offset 8"),
        "{stderr}"
    );
    let mut now = std::fs::read(&segment).unwrap();
    now[8 + 16 + 5] ^= 0x20;
    assert_eq!(now, before, "the damaged file is left as it was");
}

#[tokio::test]
async fn one_server_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Fsync::Never, T0, 1).await;
    let error = Server::with_parts(
        config(dir.path(), Fsync::Never),
        KeySource::from_seed([2; 32]),
        Clock::manual(T0),
    )
    .expect_err("the directory is in use");
    assert!(error.to_string().contains("in use"), "{error}");
    s.stop().await;
}

#[tokio::test]
async fn batch_policy_and_runtime_snapshots_compact_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), Fsync::Batch);
    config.durability = Some(Durability {
        fsync: Fsync::Batch,
        snapshot_every_events: 5,
        ..Durability::default()
    });
    let server = Server::with_parts(config, KeySource::from_seed([1; 32]), Clock::manual(T0))
        .expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!(
        "http://{}/threadfix/rest/latest/tasks",
        listener.local_addr().unwrap()
    );
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
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
    let s = Running {
        server,
        api,
        http: reqwest::Client::new(),
        shutdown,
        serving,
    };
    let agent = s.agent().await;
    for id in 1..=23 {
        assert_eq!(s.queue().await, id);
    }
    let key = task_key(&s.take(&agent).await);
    // Snapshots were taken while serving; each one removed the segments before it.
    let snapshots = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .count();
    assert!(snapshots <= 2, "{snapshots} snapshots kept");
    assert!(segments(dir.path()).len() <= 2);
    s.stop().await;

    let s = start(dir.path(), Fsync::Batch, T0, 2).await;
    assert_eq!(s.update(1, &agent, &key).await["success"], true);
    assert_eq!(s.queue().await, 24);
    s.stop().await;
}

fn config_file(answer: &Value) -> Vec<u8> {
    let blob = answer["object"]["taskConfig"]["dataBlobs"]["configFile"]
        .as_str()
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap()
}

/// A replaced scan config that a task refers to is in the journal with the current one, and
/// both come back after a restart (and after a snapshot).
#[tokio::test]
async fn a_replaced_config_and_its_task_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), Fsync::Always, T0, 1).await;
    assert_eq!(s.set_config(b"first").await["object"]["id"], 1);
    let r = s
        .call(
            "queueScan",
            &[
                ("applicationId", "1"),
                ("scannerType", "zap"),
                ("scanConfigId", "1"),
            ],
        )
        .await;
    assert_eq!(r["object"]["scanConfig"]["id"], 1, "{r}");
    assert_eq!(s.set_config(b"second").await["object"]["id"], 2);
    assert_eq!(s.queue().await, 2);
    s.stop().await;

    for seed in [2, 3] {
        // The second start replays the records; the third starts from the snapshot the
        // second took.
        let s = start(dir.path(), Fsync::Always, T0 + 1_000, seed).await;
        let r = s
            .call(
                "queueScan",
                &[
                    ("applicationId", "1"),
                    ("scannerType", "zap"),
                    ("scanConfigId", "1"),
                ],
            )
            .await;
        assert_eq!(r["success"], true, "config 1 is still there: {r}");
        s.stop().await;
    }
    let s = start(dir.path(), Fsync::Always, T0 + 2_000, 4).await;
    let agent = s.agent().await;
    assert_eq!(config_file(&s.take(&agent).await), b"first");
    assert_eq!(config_file(&s.take(&agent).await), b"second");
    s.stop().await;
}

/// An earlier version kept scan configs as files under `configs/`: they are imported at
/// start, with their ids, and the directory goes.
#[tokio::test]
async fn scan_configs_of_an_earlier_version_are_imported() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let header = r#"{"application":1,"scanner":"OWASP Zed Attack Proxy","object":{"id":4,"active":true,"name":"zap","type":"scanagtcfg","contentType":"text/plain","uploadedDate":1700000000000}}"#;
    std::fs::write(
        configs.join("config-00000000000000000004.cfg"),
        format!("{header}\nzap.legacy=1"),
    )
    .unwrap();
    let s = start(dir.path(), Fsync::Always, T0, 1).await;
    assert!(!configs.exists(), "configs/ was not removed");
    let r = s
        .call(
            "queueScan",
            &[
                ("applicationId", "1"),
                ("scannerType", "zap"),
                ("scanConfigId", "4"),
            ],
        )
        .await;
    assert_eq!(
        r["object"]["scanConfig"]["contentType"], "text/plain",
        "{r}"
    );
    assert_eq!(s.set_config(b"next").await["object"]["id"], 5, "ids go on");
    s.stop().await;
    let s = start(dir.path(), Fsync::Always, T0 + 1, 2).await;
    let agent = s.agent().await;
    assert_eq!(config_file(&s.take(&agent).await), b"zap.legacy=1");
    s.stop().await;
}
