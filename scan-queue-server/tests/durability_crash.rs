//! Crash test with the real binary: a mixed load from several agents over HTTP, SIGKILL in
//! the middle, a restart on the same data directory, and a check that every acknowledged
//! transition is there exactly once and that agents go on with the keys they hold. Repeated at
//! several kill points. The server runs under `umask 000`: every file it makes must still be
//! private. Also: a result file a crash left without its record.

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const API_KEY: &str = "crash-test-api-key-7Hq2Zx9LmP4vKw8R";
const ZAP: &str = "OWASP Zed Attack Proxy";
const AGENTS: usize = 4;

/// A running server process and its base URL.
struct Process {
    child: Child,
    api: String,
}

impl Process {
    fn start(data_dir: &Path) -> Process {
        Process::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, extra: &[&str]) -> Process {
        // The most permissive umask, so that only the server's own modes can keep files private.
        let mut child = Command::new("sh")
            .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_scan-queue-server"))
            .args(["--listen", "127.0.0.1:0", "--api-key", API_KEY])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--fsync", "always", "--snapshot-every", "40"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        Process {
            child,
            api: url.trim_end_matches('/').to_owned(),
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small ThreadFix client; `Err` when no answer came (the server died mid-call).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    api: String,
}

impl Client {
    fn new(api: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            api: api.to_owned(),
        }
    }

    async fn call(&self, op: &str, params: &[(&str, &str)]) -> Result<Value, reqwest::Error> {
        self.http
            .post(format!("{}/{op}", self.api))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .form(params)
            .send()
            .await?
            .json()
            .await
    }

    async fn complete(
        &self,
        id: u64,
        agent: &str,
        task_key: &str,
    ) -> Result<Value, reqwest::Error> {
        let form = Form::new()
            .text("scanQueueTaskId", id.to_string())
            .text("scanAgentSecureKey", agent.to_owned())
            .text("secureTaskKey", task_key.to_owned())
            .part(
                "file",
                Part::bytes(b"<OWASPZAPReport/>".to_vec()).file_name("r.xml"),
            );
        self.http
            .post(format!("{}/completeTask", self.api))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .multipart(form)
            .send()
            .await?
            .json()
            .await
    }
}

/// Whether task `id` is to be failed (else completed): fixed, so a retry after the restart
/// repeats the call that may have been applied.
fn fails(id: u64) -> bool {
    id.is_multiple_of(3)
}

fn fail_message(agent: usize, id: u64) -> String {
    format!("agent {agent} gives up on task {id}")
}

/// What the client saw acknowledged about one task.
#[derive(Debug, Default)]
struct Acked {
    holder: Option<(usize, String)>,
    updates: Vec<String>,
    finished: bool,
}

#[derive(Debug, Default)]
struct Model {
    tasks: BTreeMap<u64, Acked>,
    /// Agents whose call in flight at the kill was a requestTask (it may have assigned a task
    /// whose key nobody got).
    requesting_at_kill: usize,
}

/// One agent's loop: queue a scan, take the oldest task, two updates, then complete or fail.
async fn agent_loop(
    client: Client,
    index: usize,
    key: String,
    model: Arc<Mutex<Model>>,
    acks: Arc<AtomicUsize>,
) {
    let app = (index + 1).to_string();
    let mut requesting = false;
    let result: Result<(), reqwest::Error> = async {
        loop {
            let r = client
                .call(
                    "queueScan",
                    &[("applicationId", &app), ("scannerType", "zap")],
                )
                .await?;
            assert_eq!(r["success"], true, "{r}");
            let id = r["object"]["id"].as_u64().unwrap();
            model.lock().unwrap().tasks.entry(id).or_default();
            acks.fetch_add(1, Ordering::SeqCst);

            requesting = true;
            let r = client
                .call(
                    "requestTask",
                    &[
                        ("scanners", ZAP),
                        ("scanAgentSecureKey", &key),
                        ("agentConfig", "x"),
                    ],
                )
                .await?;
            requesting = false;
            if r["success"] == false {
                assert_eq!(r["message"], "No task found.", "{r}");
                continue;
            }
            let id = r["object"]["taskId"].as_u64().unwrap();
            let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
            {
                let mut m = model.lock().unwrap();
                let t = m.tasks.entry(id).or_default();
                assert!(t.holder.is_none(), "task {id} given twice");
                t.holder = Some((index, task_key.clone()));
            }
            acks.fetch_add(1, Ordering::SeqCst);

            let ids = id.to_string();
            for u in 0..2 {
                let message = format!("agent {index} task {id} update {u}");
                let r = client
                    .call(
                        "taskStatusUpdate",
                        &[
                            ("scanQueueTaskId", &ids),
                            ("message", &message),
                            ("scanAgentSecureKey", &key),
                            ("secureTaskKey", &task_key),
                        ],
                    )
                    .await?;
                assert_eq!(r["success"], true, "{r}");
                model
                    .lock()
                    .unwrap()
                    .tasks
                    .entry(id)
                    .or_default()
                    .updates
                    .push(message);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            let r = if fails(id) {
                let message = fail_message(index, id);
                client
                    .call(
                        "failTask",
                        &[
                            ("scanQueueTaskId", &ids),
                            ("message", &message),
                            ("scanAgentSecureKey", &key),
                            ("secureTaskKey", &task_key),
                        ],
                    )
                    .await?
            } else {
                client.complete(id, &key, &task_key).await?
            };
            assert_eq!(r["success"], true, "{r}");
            model.lock().unwrap().tasks.entry(id).or_default().finished = true;
            acks.fetch_add(1, Ordering::SeqCst);
        }
    }
    .await;
    assert!(result.is_err());
    if requesting {
        model.lock().unwrap().requesting_at_kill += 1;
    }
}

/// One round: load, SIGKILL after `kill_after` acknowledged transitions, restart, check.
async fn round(kill_after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = Client::new(&server.api);
    let mut keys = Vec::new();
    for _ in 0..AGENTS {
        let r = client.call("requestScanAgentKey", &[]).await.unwrap();
        keys.push(r["object"].as_str().unwrap().to_owned());
    }
    let model = Arc::new(Mutex::new(Model::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    let agents: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            tokio::spawn(agent_loop(
                client.clone(),
                i,
                key.clone(),
                Arc::clone(&model),
                Arc::clone(&acks),
            ))
        })
        .collect();
    let started = Instant::now();
    while acks.load(Ordering::SeqCst) < kill_after {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no progress: is the server up?"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    for agent in agents {
        agent.await.unwrap();
    }
    let model = std::mem::take(&mut *model.lock().unwrap());
    assert!(model.tasks.len() >= 2, "too little load before the kill");

    // Restart on the same data directory.
    let server = Process::start(dir.path());
    let client = Client::new(&server.api);
    let mut unheld = BTreeSet::new();
    for (id, task) in &model.tasks {
        let Some((agent, task_key)) = &task.holder else {
            unheld.insert(*id);
            continue;
        };
        let key = &keys[*agent];
        let ids = id.to_string();
        // Continue (or repeat) the task's last call with the keys the agent holds: a
        // finished task answers the retry as before, a held one accepts it now.
        if fails(*id) {
            let message = fail_message(*agent, *id);
            let r = client
                .call(
                    "failTask",
                    &[
                        ("scanQueueTaskId", &ids),
                        ("message", &message),
                        ("scanAgentSecureKey", key),
                        ("secureTaskKey", task_key),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(r["success"], true, "task {id} after restart: {r}");
        } else {
            // Not `taskStatusUpdate` first: the completion in flight at the kill may have
            // been applied, and then only its retry is accepted.
            let r = client.complete(*id, key, task_key).await.unwrap();
            assert_eq!(r["success"], true, "task {id} after restart: {r}");
            let history: Vec<&str> = r["object"]["scanStatuses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["message"].as_str().unwrap())
                .collect();
            let assigned = history
                .iter()
                .filter(|m| m.starts_with("Assigning task"))
                .count();
            assert_eq!(assigned, 1, "task {id}: {history:?}");
            for (i, m) in history.iter().enumerate() {
                assert!(
                    !history[..i].contains(m),
                    "task {id}: {m:?} twice: {history:?}"
                );
            }
            for update in &task.updates {
                assert!(
                    history.contains(&update.as_str()),
                    "task {id} lost {update:?}: {history:?}"
                );
            }
        }
    }
    // Each completed task has exactly one result file, and there is no other.
    let results = files(&dir.path().join("results"));
    let completed: Vec<u64> = model
        .tasks
        .iter()
        .filter(|(id, t)| t.holder.is_some() && !fails(**id))
        .map(|(id, _)| *id)
        .collect();
    for id in &completed {
        let prefix = format!("task-{id}-");
        let n = results.iter().filter(|n| n.starts_with(&prefix)).count();
        assert_eq!(n, 1, "task {id}: {n} result files in {results:?}");
    }
    assert_eq!(results.len(), completed.len(), "{results:?}");
    // …and it downloads, byte for byte.
    for id in &completed {
        let r = client
            .http
            .get(format!("{}/{id}/result", client.api))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "task {id}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"<OWASPZAPReport/>");
    }
    assert_private(dir.path());
    // Every agent key still works.
    for key in &keys {
        let r = client
            .call(
                "requestTask",
                &[("scanners", "burp"), ("scanAgentSecureKey", key)],
            )
            .await
            .unwrap();
        assert_eq!(r["message"], "No task found.", "{r}");
    }
    // The acknowledged queued tasks come out oldest first, none of them twice.
    let fresh = client.call("requestScanAgentKey", &[]).await.unwrap();
    let fresh = fresh["object"].as_str().unwrap().to_owned();
    let mut drained = Vec::new();
    loop {
        let r = client
            .call(
                "requestTask",
                &[("scanners", "zap"), ("scanAgentSecureKey", &fresh)],
            )
            .await
            .unwrap();
        if r["success"] == false {
            break;
        }
        drained.push(r["object"]["taskId"].as_u64().unwrap());
    }
    assert!(drained.windows(2).all(|w| w[0] < w[1]), "{drained:?}");
    for id in &drained {
        let held = model.tasks.get(id).is_some_and(|t| t.holder.is_some());
        assert!(!held, "task {id} was held and was given again");
    }
    let missing = unheld.iter().filter(|id| !drained.contains(id)).count();
    assert!(
        missing <= model.requesting_at_kill,
        "{missing} acknowledged queued tasks missing ({} requestTask calls in flight at the kill)",
        model.requesting_at_kill
    );
    eprintln!(
        "kill after {kill_after} acks: {} tasks acknowledged, {} held, {} drained after the restart, {missing} missing, {} requestTask in flight",
        model.tasks.len(),
        model.tasks.len() - unheld.len(),
        drained.len(),
        model.requesting_at_kill
    );
    // Task ids go on without reuse.
    let r = client
        .call(
            "queueScan",
            &[("applicationId", "9"), ("scannerType", "burp")],
        )
        .await
        .unwrap();
    let next = r["object"]["id"].as_u64().unwrap();
    let max = model.tasks.keys().max().copied().unwrap_or(0);
    assert!(next > max, "id {next} reused (acknowledged up to {max})");
    server.kill();
}

/// The names of the files in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file under `root` is `0600` and every directory `0700`.
fn assert_private(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_owned()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", entry.path().display());
                stack.push(entry.path());
            } else {
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} entries under {}", root.display());
}

/// A crash between keeping a result file and journaling the completion leaves a file that no
/// record refers to (here made as the crash would). The restart removes it, the task is
/// still the agent's, and its retried completion leaves exactly one file: its own.
#[tokio::test]
async fn a_result_file_left_by_a_crash_is_removed_and_the_retry_keeps_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = Client::new(&server.api);
    let r = client
        .call(
            "queueScan",
            &[("applicationId", "1"), ("scannerType", "zap")],
        )
        .await
        .unwrap();
    assert_eq!(r["object"]["id"], 1, "{r}");
    let agent = client.call("requestScanAgentKey", &[]).await.unwrap();
    let agent = agent["object"].as_str().unwrap().to_owned();
    let r = client
        .call(
            "requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", &agent)],
        )
        .await
        .unwrap();
    let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    server.kill();
    let orphan = dir.path().join("results/task-1-1700000000000x0-r.xml");
    std::fs::write(&orphan, b"<partial").unwrap();

    let server = Process::start(dir.path());
    assert!(!orphan.exists(), "the orphan is still there");
    let client = Client::new(&server.api);
    let r = client.complete(1, &agent, &task_key).await.unwrap();
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    // A retry of the same completion (its answer was lost, say) is answered the same way and
    // leaves no second file.
    let r = client.complete(1, &agent, &task_key).await.unwrap();
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    let results = files(&dir.path().join("results"));
    assert_eq!(results.len(), 1, "{results:?}");
    let kept = std::fs::read(dir.path().join("results").join(&results[0])).unwrap();
    assert_eq!(kept, b"<OWASPZAPReport/>");
    server.kill();

    // And it is the task's record across a restart.
    let server = Process::start(dir.path());
    assert_eq!(files(&dir.path().join("results")), results);
    assert_private(dir.path());
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transitions_survive_sigkill_at_several_points() {
    for kill_after in [9, 40, 101, 230] {
        round(kill_after).await;
    }
}

/// Webhook deliveries are in the durable outbox: a SIGKILL while the receiver is down loses
/// none; after the restart, with the receiver up, every terminal transition arrives (at least
/// once), signed.
#[tokio::test]
async fn webhook_deliveries_survive_sigkill() {
    use hmac::{Hmac, Mac};
    const SECRET: &str = "crash-webhook-secret-0123";
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = format!("http://127.0.0.1:{port}/hook");
    let flags = [
        "--webhook",
        hook.as_str(),
        "--webhook-secret",
        SECRET,
        "--webhook-retry-ms",
        "50",
        "--webhook-max-attempts",
        "100",
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start_with(dir.path(), &flags);
    let client = Client::new(&server.api);
    let agent = client.call("requestScanAgentKey", &[]).await.unwrap();
    let agent = agent["object"].as_str().unwrap().to_owned();
    let mut expected = BTreeSet::new();
    for id in 1..=6u64 {
        client
            .call(
                "queueScan",
                &[("applicationId", "1"), ("scannerType", "zap")],
            )
            .await
            .unwrap();
        let r = client
            .call(
                "requestTask",
                &[("scanners", "zap"), ("scanAgentSecureKey", &agent)],
            )
            .await
            .unwrap();
        let key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
        if fails(id) {
            let ids = id.to_string();
            let r = client
                .call(
                    "failTask",
                    &[
                        ("scanQueueTaskId", &ids),
                        ("message", "gave up"),
                        ("scanAgentSecureKey", &agent),
                        ("secureTaskKey", &key),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(r["success"], true, "{r}");
            expected.insert((id, "task.failed".to_owned()));
        } else {
            let r = client.complete(id, &agent, &key).await.unwrap();
            assert_eq!(r["success"], true, "{r}");
            expected.insert((id, "task.completed".to_owned()));
        }
    }
    server.kill();

    let got: Arc<Mutex<BTreeSet<(u64, String)>>> = Arc::default();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = Arc::clone(&got);
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = Arc::clone(&got);
                async move {
                    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                    mac.update(&body);
                    let expected = format!(
                        "sha256={}",
                        mac.finalize()
                            .into_bytes()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    );
                    assert_eq!(headers["x-scanqueue-signature-256"], expected.as_str());
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    let event = body["event"].as_str().unwrap().to_owned();
                    got.lock()
                        .unwrap()
                        .insert((body["task"]["id"].as_u64().unwrap(), event));
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let server = Process::start_with(dir.path(), &flags);
    let started = Instant::now();
    while *got.lock().unwrap() != expected {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "got {:?}, expected {expected:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
}
