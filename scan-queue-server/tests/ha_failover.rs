//! High availability end to end: a real PostgreSQL (`pg/mod.rs`), two server binaries on it,
//! HAProxy with the shipped `deploy/haproxy.cfg` in front, agents working through HAProxy
//! while the active server is SIGKILLed (ten times), cut from the database
//! (`pg_terminate_backend`: split brain), and while PostgreSQL restarts. Afterwards a fresh
//! server reads the database: every acknowledged transition is there, no task was assigned
//! twice, ids are unique and rose for each client, every acknowledged result downloads.
//!
//! Skips when PostgreSQL or HAProxy is not installed, unless `SCAN_QUEUE_REQUIRE_POSTGRES` /
//! `SCAN_QUEUE_REQUIRE_HAPROXY` is set (CI sets both).

mod common;
mod pg;

use common::{API_KEY, TestServer};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use scan_queue::{TaskId, TaskStatus};
use scan_queue_server::{Clock, Postgres};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ZAP: &str = "OWASP Zed Attack Proxy";
/// The server binaries' API key (`--api-key` wants a strong one).
const NODE_KEY: &str = "ha-test-key-aB3dE5gH7jK9mN1pQ2rS4tU6vW8";
const CLIENTS: usize = 4;
/// How long a take-over may take before the test gives up (it is measured, not asserted).
const TAKEOVER_BOUND: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn haproxy_bin() -> Option<PathBuf> {
    [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// One server binary on the database.
struct Node {
    port: u16,
    url: String,
    log: PathBuf,
    /// The node's `TMPDIR` (upload staging), inside the test's directory: a killed node
    /// leaves its staging directory behind, and it goes with the test's.
    tmp: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Node {
    fn new(dir: &Path, name: &str) -> Node {
        let port = free_port();
        Node {
            port,
            url: format!("http://127.0.0.1:{port}"),
            log: dir.join(format!("{name}.log")),
            tmp: dir.join(format!("{name}-tmp")),
            child: Mutex::new(None),
        }
    }

    fn start(&self, database: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        std::fs::create_dir_all(&self.tmp).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scan-queue-server"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--advertise-url", &self.url])
            .args(["--api-key", NODE_KEY])
            // Snapshots every few records: servers restarted after a kill rebuild from them.
            .args(["--snapshot-every", "5"])
            .env("SCAN_QUEUE_POSTGRES", database)
            .env("TMPDIR", &self.tmp)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    async fn ready(&self, http: &reqwest::Client) -> Option<StatusCode> {
        http.get(format!("{}/ready", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .map(|r| r.status())
    }

    async fn wait_for(&self, http: &reqwest::Client, status: StatusCode) {
        let start = Instant::now();
        while self.ready(http).await != Some(status) {
            assert!(
                start.elapsed() < TAKEOVER_BOUND,
                "{} not {status} within {TAKEOVER_BOUND:?}; log:\n{}",
                self.url,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The database, two nodes (the first active) and HAProxy in front: its URL.
struct Cluster {
    pg: pg::Pg,
    nodes: [Node; 2],
    _haproxy: HaProxy,
    front: String,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(test: &str) -> Option<Cluster> {
        let Some(haproxy) = haproxy_bin() else {
            if std::env::var_os("SCAN_QUEUE_REQUIRE_HAPROXY").is_some() {
                panic!(
                    "{test}: HAProxy is required (SCAN_QUEUE_REQUIRE_HAPROXY) but not installed"
                );
            }
            eprintln!("SKIPPED {test}: no haproxy (apt-get install haproxy)");
            return None;
        };
        let pg = pg::Pg::start(test)?;
        let http = reqwest::Client::new();
        let nodes = [Node::new(pg.dir(), "a"), Node::new(pg.dir(), "b")];
        nodes[0].start(&pg.url());
        nodes[0].wait_for(&http, StatusCode::OK).await;
        nodes[1].start(&pg.url());
        nodes[1]
            .wait_for(&http, StatusCode::SERVICE_UNAVAILABLE)
            .await;
        let listen = format!("127.0.0.1:{}", free_port());
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haproxy.cfg");
        let child = Command::new(haproxy)
            .args(["-f", config, "-db"])
            .env("SCAN_QUEUE_LISTEN", &listen)
            .env("SCAN_QUEUE_A", format!("127.0.0.1:{}", nodes[0].port))
            .env("SCAN_QUEUE_B", format!("127.0.0.1:{}", nodes[1].port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let cluster = Cluster {
            pg,
            nodes,
            _haproxy: HaProxy(child),
            front: format!("http://{listen}"),
            http,
        };
        // Routed once HAProxy's first check of the active server passed.
        let start = Instant::now();
        while cluster
            .call(reqwest::Method::GET, "scanners", Body::None)
            .await
            .is_none()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "HAProxy routes nothing"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(cluster)
    }

    /// The index of the active node.
    async fn active(&self) -> usize {
        let start = Instant::now();
        loop {
            for (i, node) in self.nodes.iter().enumerate() {
                if node.ready(&self.http).await == Some(StatusCode::OK) {
                    return i;
                }
            }
            assert!(start.elapsed() < TAKEOVER_BOUND, "no active server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One call through HAProxy: the envelope when a server answered it (HTTP 200), `None`
    /// when it could not be answered (no server, a standby, a server stopping: retry).
    async fn call(&self, method: reqwest::Method, op: &str, body: Body) -> Option<Value> {
        let url = format!("{}/threadfix/rest/latest/tasks/{op}", self.front);
        let request = self
            .http
            .request(method, url)
            .header("Authorization", format!("APIKEY {NODE_KEY}"))
            .header("Accept", "application/json")
            .timeout(Duration::from_secs(10));
        let request = match body {
            Body::None => request,
            Body::Form(fields) => request.form(&fields),
            Body::Multipart(form) => request.multipart(form),
        };
        let response = request.send().await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        response.json().await.ok()
    }
}

enum Body {
    None,
    Form(Vec<(&'static str, String)>),
    Multipart(Form),
}

/// What the clients were told, succeeded.
#[derive(Default)]
struct Acked {
    /// Every acknowledged call: when it was sent and when answered (failover times).
    instants: Vec<(Instant, Instant)>,
    queued: Vec<u64>,
    /// task → the agent (client) it was assigned to.
    assigned: BTreeMap<u64, usize>,
    updated: HashSet<u64>,
    /// task → SHA-256 of the completed file.
    completed: BTreeMap<u64, [u8; 32]>,
    /// Agent keys a server just cut from the database handed out.
    direct_keys: Vec<String>,
}

/// Retries `call` until a server answers it; refusals other than "No task found." fail the test.
async fn until_answered(
    cluster: &Cluster,
    stop: &tokio::sync::watch::Receiver<bool>,
    what: impl Fn() -> (reqwest::Method, &'static str, Body),
) -> Option<(Value, Instant)> {
    loop {
        if *stop.borrow() {
            return None;
        }
        let (method, op, body) = what();
        let sent = Instant::now();
        if let Some(v) = cluster.call(method, op, body).await {
            return Some((v, sent));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(client: usize, n: u64) -> Vec<u8> {
    // ~300 KiB: long enough for kills to land mid-upload.
    let mut bytes = format!("<report client=\"{client}\" n=\"{n}\">").into_bytes();
    while bytes.len() < 300 * 1024 {
        bytes.extend_from_slice(format!("<f i=\"{}\"/>", bytes.len()).as_bytes());
    }
    bytes.extend_from_slice(b"</report>");
    bytes
}

/// One agent's loop: queue a scan, take a task, update it, complete it with a file; each
/// call retried until answered; what was acknowledged is recorded.
async fn agent(
    cluster: Arc<Cluster>,
    client: usize,
    acked: Arc<Mutex<Acked>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some((key, _)) = until_answered(&cluster, &stop, || {
        (reqwest::Method::GET, "requestScanAgentKey", Body::None)
    })
    .await
    else {
        return;
    };
    let key = key["object"].as_str().unwrap().to_owned();
    let mut last_queued = 0;
    let mut n = 0;
    let ack = |sent: Instant, f: &dyn Fn(&mut Acked)| {
        let mut a = acked.lock().unwrap();
        a.instants.push((sent, Instant::now()));
        f(&mut a);
    };
    loop {
        n += 1;
        let Some((r, sent)) = until_answered(&cluster, &stop, || {
            let fields = vec![
                ("applicationId", (client + 1).to_string()),
                ("scannerType", "zap".to_owned()),
            ];
            (reqwest::Method::POST, "queueScan", Body::Form(fields))
        })
        .await
        else {
            return;
        };
        assert_eq!(r["success"], true, "queueScan refused: {r}");
        let id = r["object"]["id"].as_u64().unwrap();
        assert!(
            id > last_queued,
            "ids go on rising: {id} after {last_queued}"
        );
        last_queued = id;
        ack(sent, &|a| a.queued.push(id));

        let Some((r, sent)) = until_answered(&cluster, &stop, || {
            let fields = vec![
                ("scanners", ZAP.to_owned()),
                ("scanAgentSecureKey", key.clone()),
                ("agentConfig", "x".to_owned()),
            ];
            (reqwest::Method::POST, "requestTask", Body::Form(fields))
        })
        .await
        else {
            return;
        };
        if r["success"] == false {
            assert_eq!(r["message"], "No task found.", "requestTask refused: {r}");
            continue;
        }
        let task = r["object"]["taskId"].as_u64().unwrap();
        let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
        ack(sent, &|a| {
            let before = a.assigned.insert(task, client);
            assert_eq!(
                before, None,
                "task {task} assigned twice (acknowledged both)"
            );
        });

        let Some((r, sent)) = until_answered(&cluster, &stop, || {
            let fields = vec![
                ("scanQueueTaskId", task.to_string()),
                ("message", format!("client {client} scanning")),
                ("scanAgentSecureKey", key.clone()),
                ("secureTaskKey", task_key.clone()),
            ];
            (
                reqwest::Method::POST,
                "taskStatusUpdate",
                Body::Form(fields),
            )
        })
        .await
        else {
            return;
        };
        assert_eq!(r["success"], true, "taskStatusUpdate refused: {r}");
        ack(sent, &|a| {
            a.updated.insert(task);
        });

        let file = report(client, n);
        let Some((r, sent)) = until_answered(&cluster, &stop, || {
            let form = Form::new()
                .text("scanQueueTaskId", task.to_string())
                .text("scanAgentSecureKey", key.clone())
                .text("secureTaskKey", task_key.clone())
                .part("file", Part::bytes(file.clone()).file_name("report.xml"));
            (reqwest::Method::POST, "completeTask", Body::Multipart(form))
        })
        .await
        else {
            return;
        };
        assert_eq!(
            r["object"]["statusString"], "COMPLETE_SUCCESSFUL",
            "completeTask refused: {r}"
        );
        let sha: [u8; 32] = Sha256::digest(&file).into();
        ack(sent, &|a| {
            a.completed.insert(task, sha);
        });
    }
}

/// Starts the agents; returns what stops them and their handles.
fn workload(
    cluster: &Arc<Cluster>,
    acked: &Arc<Mutex<Acked>>,
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handles = (0..CLIENTS)
        .map(|c| tokio::spawn(agent(Arc::clone(cluster), c, Arc::clone(acked), rx.clone())))
        .collect();
    (stop, handles)
}

/// Waits until a call sent after `since` is acknowledged; the wait.
async fn first_ack_after(acked: &Mutex<Acked>, since: Instant) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(at) = acked
            .lock()
            .unwrap()
            .instants
            .iter()
            .find(|(sent, _)| *sent > since)
        {
            return at.1 - since;
        }
        assert!(
            start.elapsed() < TAKEOVER_BOUND,
            "nothing acknowledged after a failure"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops the workload and the nodes, then checks the database with a fresh server.
async fn verify(
    cluster: Arc<Cluster>,
    acked: Arc<Mutex<Acked>>,
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
) {
    let _ = stop.send(true);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("an agent does not stop")
            .expect("an agent's assertion failed");
    }
    for node in &cluster.nodes {
        node.kill();
        // HA_DEBUG=DIR keeps the servers' logs there.
        if let Some(dir) = std::env::var_os("HA_DEBUG") {
            let _ = std::fs::copy(
                &node.log,
                Path::new(&dir).join(node.log.file_name().unwrap()),
            );
        }
    }
    let url = cluster.pg.url();
    let checker = TestServer::start_on(Clock::system(), |c| {
        c.postgres = Some(Postgres::new(&url, "http://checker.invalid").unwrap());
    })
    .await;
    let start = Instant::now();
    while checker
        .http
        .get(format!("{}/ready", checker.origin))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(
            start.elapsed() < TAKEOVER_BOUND,
            "the checker does not take over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut ids = HashSet::new();
    for id in &acked.queued {
        assert!(
            ids.insert(*id),
            "task id {id} acknowledged to two queueScans"
        );
        assert!(
            checker.server.queue().task(TaskId(*id)).is_some(),
            "queued task {id} lost"
        );
    }
    for task in acked.assigned.keys() {
        let status = checker
            .server
            .queue()
            .task(TaskId(*task))
            .map(|t| t.status());
        assert!(
            matches!(
                status,
                Some(
                    TaskStatus::Assigned | TaskStatus::InProgress | TaskStatus::CompleteSuccessful
                )
            ),
            "assigned task {task} is {status:?}"
        );
    }
    for task in &acked.updated {
        let status = checker
            .server
            .queue()
            .task(TaskId(*task))
            .map(|t| t.status());
        assert!(
            matches!(
                status,
                Some(TaskStatus::InProgress | TaskStatus::CompleteSuccessful)
            ),
            "updated task {task} is {status:?}"
        );
    }
    for (task, sha) in &acked.completed {
        let status = checker
            .server
            .queue()
            .task(TaskId(*task))
            .map(|t| t.status());
        assert_eq!(status, Some(TaskStatus::CompleteSuccessful), "task {task}");
        let r = checker
            .http
            .get(format!(
                "{}/rest/latest/tasks/{task}/result",
                checker.origin
            ))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "task {task}'s result");
        let bytes = r.bytes().await.unwrap();
        let got: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(&got, sha, "task {task}'s result file differs");
    }
    for key in &acked.direct_keys {
        // Some((..)) or None ("No task found."); an unknown key fails the call's assertion.
        let _ = checker.request_task(key, ZAP).await;
    }
    assert!(
        acked.completed.len() >= CLIENTS,
        "the workload did too little: {} completions",
        acked.completed.len()
    );
    eprintln!(
        "verified: {} queued, {} assigned, {} updated, {} completed (acknowledged); {} keys \
         from servers just cut off",
        acked.queued.len(),
        acked.assigned.len(),
        acked.updated.len(),
        acked.completed.len(),
        acked.direct_keys.len()
    );
    checker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_active_server_ten_times_loses_nothing_acknowledged() {
    let Some(cluster) = Cluster::start("sigkill_the_active_server_ten_times").await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let (stop, handles) = workload(&cluster, &acked);
    let mut failovers = Vec::new();
    for _ in 0..10 {
        // Let the agents get some work done (and uploads under way).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let active = cluster.active().await;
        let other = 1 - active;
        let killed_at = Instant::now();
        cluster.nodes[active].kill();
        failovers.push(first_ack_after(&acked, killed_at).await);
        cluster.nodes[other]
            .wait_for(&cluster.http, StatusCode::OK)
            .await;
        cluster.nodes[active].start(&cluster.pg.url());
        cluster.nodes[active]
            .wait_for(&cluster.http, StatusCode::SERVICE_UNAVAILABLE)
            .await;
    }
    failovers.sort();
    eprintln!(
        "failover (SIGKILL to the first acknowledged call through HAProxy): median {:?}, max {:?}, all {failovers:?}",
        failovers[failovers.len() / 2],
        failovers[failovers.len() - 1]
    );
    let snapshot: u64 = cluster
        .pg
        .psql("SELECT coalesce(max(seq), 0) FROM sq_snapshot")
        .parse()
        .unwrap();
    assert!(snapshot > 0, "no snapshot after ten fail-overs");
    verify(cluster, acked, stop, handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_and_a_postgres_restart_lose_nothing_acknowledged() {
    let Some(cluster) = Cluster::start("split_brain_and_a_postgres_restart").await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let (stop, handles) = workload(&cluster, &acked);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let active = cluster.active().await;
        let node = &cluster.nodes[active];
        // Cut the active server from the database while it keeps running.
        let cut_at = Instant::now();
        let terminated = cluster.pg.psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'scan-queue {}'",
            node.url
        ));
        assert_ne!(
            terminated, "0",
            "the active server's connections were found"
        );
        // A change asked of it directly: refused, or (had it won the election again, after
        // rebuilding) kept. Checked at the end: an acknowledged key must work.
        let r = cluster
            .http
            .get(format!(
                "{}/threadfix/rest/latest/tasks/requestScanAgentKey",
                node.url
            ))
            .header("Authorization", format!("APIKEY {NODE_KEY}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["success"], true, "{v}");
            let key = v["object"].as_str().unwrap().to_owned();
            acked.lock().unwrap().direct_keys.push(key);
        } else {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let took = first_ack_after(&acked, cut_at).await;
        eprintln!("split brain: service back after {took:?}");
    }
    // PostgreSQL restarts under load: calls fail clearly meanwhile, nothing is lost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| cluster.pg.ctl(&["restart"]));
    let took = first_ack_after(&acked, restarted_at).await;
    eprintln!("PostgreSQL restart: service back after {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    verify(cluster, acked, stop, handles).await;
}
