//! A real scan-queue server on a loopback port, in this process, and the real agent binary
//! as a child process, for the end-to-end tests. Everything stops by itself: every wait
//! has a deadline and every child is killed when its handle is dropped.

#![allow(dead_code)]

use scan_queue::{KeySource, Task, TaskId, TaskStatus};
use scan_queue_server::report::ResultCheck;
use scan_queue_server::{
    ApiKey, Clock, Durability, Fsync, Scanner, Scanners, Server, ServerConfig,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The API key of every test server.
pub const API_KEY: &str = "agent-test-api-key-5f1c2a9e7b";
/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// What a test server is started with.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Scanner display names (short name: the name lower-cased without spaces).
    pub scanners: Vec<&'static str>,
    pub lease: Duration,
    pub max_attempts: u32,
    /// 0: any free port.
    pub port: u16,
    /// Seed of the key generator (a restarted server needs another one).
    pub seed: u8,
    /// Bytes in a status or failure message.
    pub max_message_len: usize,
    /// How the server inspects result files (the fake scanners' reports are raw bytes, so
    /// none by default).
    pub result_check: ResultCheck,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            scanners: vec!["Fake Scanner"],
            lease: Duration::from_secs(60),
            max_attempts: 3,
            port: 0,
            seed: 7,
            max_message_len: 4096,
            result_check: ResultCheck::None,
        }
    }
}

pub struct TestServer {
    pub server: Server,
    pub origin: String,
    pub port: u16,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A durable server (journal without fsync) on the system clock, its data in `data_dir`.
    pub async fn start(data_dir: &Path, options: &ServerOptions) -> TestServer {
        let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), data_dir);
        config.durability = Some(Durability {
            fsync: Fsync::Never,
            ..Durability::default()
        });
        config.queue.lease_ms = options.lease.as_millis() as u64;
        config.queue.max_attempts = options.max_attempts;
        config.queue.max_message_len = options.max_message_len;
        config.result_check = options.result_check;
        config.scanners = Scanners::new(
            options
                .scanners
                .iter()
                .map(|name| Scanner {
                    name: (*name).to_owned(),
                    short_name: name.to_lowercase().replace(' ', ""),
                })
                .collect(),
        )
        .unwrap();
        let server = Server::with_parts(
            config,
            KeySource::from_seed([options.seed; 32]),
            Clock::system(),
        )
        .unwrap();
        let listener = bind(options.port).await;
        let port = listener.local_addr().unwrap().port();
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
            origin: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            serving: Some(serving),
        }
    }

    /// Stops the server gracefully and waits until it has released its data directory.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, op: &str) -> String {
        format!("{}/threadfix/rest/latest/tasks/{op}", self.origin)
    }

    /// POST url-encoded with the API key; the envelope.
    pub async fn form(&self, op: &str, params: &[(&str, &str)]) -> Value {
        self.http
            .post(self.url(op))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .form(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Queues a scan of `target` for `scanner`; the task id.
    pub async fn queue_scan(&self, scanner: &str, target: &str) -> u64 {
        let r = self
            .form(
                "queueScan",
                &[
                    ("applicationId", "1"),
                    ("scannerType", scanner),
                    ("targetURL", target),
                ],
            )
            .await;
        assert_eq!(r["success"], true, "{r}");
        r["object"]["id"].as_u64().unwrap()
    }

    /// Stores a scan configuration document for application 1 and `scanner`.
    pub async fn set_task_config(&self, scanner: &str, doc: &[u8]) {
        let form = reqwest::multipart::Form::new()
            .text("appId", "1")
            .text("scannerType", scanner.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(doc.to_vec()).file_name("scan.conf"),
            );
        let r: Value = self
            .http
            .post(self.url("setTaskConfig"))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{r}");
    }

    /// Cancels a task as an administrator does, on the Scan Agent Tasks page: log in with the
    /// API key, read the page's CSRF token, post the cancel form.
    pub async fn cancel_on_the_page(&self, id: u64) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = client
            .post(format!("{}/tasks/login", self.origin))
            .form(&[("api_key", API_KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
        let set_cookie = login.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = client
            .get(format!("{}/tasks", self.origin))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let cancel = client
            .post(format!("{}/tasks/task/{id}/cancel", self.origin))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(cancel.status(), reqwest::StatusCode::SEE_OTHER);
    }

    /// A copy of the core's task (read under the queue's lock, released at once).
    pub fn task(&self, id: u64) -> Task {
        self.server.queue().task(TaskId(id)).unwrap().clone()
    }

    pub fn status(&self, id: u64) -> TaskStatus {
        self.task(id).status()
    }

    /// The task's status messages, ThreadFix's text.
    pub fn history(&self, id: u64) -> Vec<String> {
        self.task(id)
            .history()
            .iter()
            .map(|e| e.message.to_string())
            .collect()
    }

    /// Waits until the task's status satisfies `done` (panics after [`WAIT`]).
    pub async fn wait_for(&self, id: u64, what: &str, done: impl Fn(TaskStatus) -> bool) {
        let start = Instant::now();
        loop {
            let status = self.status(id);
            if done(status) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "task {id}: waited {WAIT:?} for {what}; status {status:?}, history {:#?}",
                self.history(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A task's result as the results API serves it (`GET …/tasks/{id}/result`): its bytes
    /// and the attachment's file name.
    pub async fn result(&self, id: u64) -> (Vec<u8>, String) {
        let response = self
            .http
            .get(self.url(&format!("{id}/result")))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "result of task {id}"
        );
        let disposition = response.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .to_owned();
        let name = disposition
            .split("filename=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        (response.bytes().await.unwrap().to_vec(), name)
    }

    /// Whether the results API has a result for the task.
    pub async fn has_result(&self, id: u64) -> bool {
        let response = self
            .http
            .get(self.url(&format!("{id}/result")))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await
            .unwrap();
        response.status() == reqwest::StatusCode::OK
    }

    /// The task key of the task's (last) assignment.
    pub fn task_key(&self, id: u64) -> String {
        self.task(id)
            .assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned()
    }
}

/// Binds 127.0.0.1:`port`, retrying a moment if the port is still held (a restart).
async fn bind(port: u16) -> tokio::net::TcpListener {
    let start = Instant::now();
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                eprintln!("bind 127.0.0.1:{port}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// A fixture script's path.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    toml_quote(s)
}

fn toml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn toml_args(args: &[&str]) -> String {
    let items: Vec<String> = args.iter().map(|a| toml_quote(a)).collect();
    format!("[{}]", items.join(", "))
}

/// One agent's files: its configuration, state file and log, in a private directory.
pub struct AgentFiles {
    pub dir: tempfile::TempDir,
}

impl AgentFiles {
    /// Writes `agent.toml`: the server, the API key from the environment variable
    /// `SCAN_QUEUE_TEST_API_KEY`, short intervals, then `rest` (more settings and the
    /// `[scanners."…"]` tables).
    pub fn new(server: &TestServer, rest: &str) -> AgentFiles {
        AgentFiles::with_url(&server.origin, rest)
    }

    /// [`AgentFiles::new`] for a server at `url` (e.g. a TLS front).
    pub fn with_url(url: &str, rest: &str) -> AgentFiles {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let text = format!(
            "server_url = {}\napi_key_env = \"SCAN_QUEUE_TEST_API_KEY\"\nstate_file = {}\nwork_dir = {}\nname = \"test-agent\"\n{rest}\n",
            toml_quote(url),
            toml_quote(&dir.path().join("state/agent.toml").display().to_string()),
            toml_quote(&work.display().to_string()),
        );
        std::fs::write(dir.path().join("agent.toml"), text).unwrap();
        AgentFiles { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/agent.toml")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The scan agent key the agent stored.
    pub fn agent_key(&self) -> String {
        let text = std::fs::read_to_string(self.state_file()).unwrap();
        let state: toml::Value = toml::from_str(&text).unwrap();
        state["scan_agent_key"].as_str().unwrap().to_owned()
    }

    /// Starts the agent binary (`extra` arguments after `--config`), its stderr and stdout
    /// to `log-{n}.txt`, logging at debug level.
    pub fn spawn(&self, extra: &[&str]) -> Agent {
        self.spawn_full(extra, &[], false)
    }

    /// [`AgentFiles::spawn`] with more environment variables.
    pub fn spawn_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        self.spawn_full(extra, env, false)
    }

    /// [`AgentFiles::spawn`] under umask 000 (through `sh -c 'umask 000; exec …'`).
    pub fn spawn_with_umask_000(&self, extra: &[&str]) -> Agent {
        self.spawn_full(extra, &[], true)
    }

    fn spawn_full(&self, extra: &[&str], env: &[(&str, &str)], umask_000: bool) -> Agent {
        let n = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("log-")
            })
            .count();
        let log = self.dir.path().join(format!("log-{n}.txt"));
        let file = std::fs::File::create(&log).unwrap();
        let binary = env!("CARGO_BIN_EXE_scan-queue-agent");
        let mut command = if umask_000 {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(binary);
            c
        } else {
            tokio::process::Command::new(binary)
        };
        command
            .arg("--config")
            .arg(self.config())
            .args(extra)
            .env("SCAN_QUEUE_TEST_API_KEY", API_KEY)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        Agent { child, log }
    }
}

/// A running agent process.
pub struct Agent {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Agent {
    /// Waits for the agent to exit by itself (panics after [`WAIT`]); its exit code.
    pub async fn wait(&mut self) -> i32 {
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap().code().unwrap_or(-1),
            Err(_) => panic!(
                "the agent did not exit within {WAIT:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    /// Sends a signal to the agent process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Asserts that `log` holds none of `secrets` (and is a real log: it has lines).
#[track_caller]
pub fn assert_no_secrets(log: &str, secrets: &[&str]) {
    assert!(log.lines().count() > 3, "log too short to judge:\n{log}");
    for secret in secrets {
        assert!(secret.len() >= 16, "not a key: {secret}");
        assert!(!log.contains(secret), "the log leaks a key:\n{log}");
    }
}

/// Whether a process is gone (or a zombie).
pub fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

/// Waits until the process is gone (at most 10 s); whether it is.
pub async fn wait_gone(pid: i32) -> bool {
    for _ in 0..200 {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A TLS front on 127.0.0.1 for `backend` (`host:port`), with the test certificate for
/// 127.0.0.1 (`fixtures/test-server.pem`, issued by `fixtures/test-ca.pem`): its
/// `https://` origin, the number of TLS connections it accepted, and the task serving it.
pub async fn tls_front(
    backend: String,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(fixture("test-server.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(fixture("test-server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            let count = std::sync::Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (origin, accepted, task)
}

/// A plain TCP front on 127.0.0.1 for `backend` that loses the answer to the first
/// `completeTask`: the request reaches the server whole, and when the server answers, the
/// connection is closed instead. Its `http://` origin, the number of answers it lost, and the
/// task serving it.
pub async fn lossy_front(
    backend: String,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let lost = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(true));
    let count = Arc::clone(&lost);
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(&backend).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let drop_answer = Arc::new(AtomicBool::new(false));
            let (armed, marked) = (Arc::clone(&armed), Arc::clone(&drop_answer));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    if chunk.windows(13).any(|w| w == b"/completeTask")
                        && armed.swap(false, Ordering::SeqCst)
                    {
                        marked.store(true, Ordering::SeqCst);
                    }
                    if server_write.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            });
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if drop_answer.load(Ordering::SeqCst) {
                        count.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    (origin, lost, task)
}
