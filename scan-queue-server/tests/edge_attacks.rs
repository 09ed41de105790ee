//! The server on a hostile network, against the real binary over loopback: slow headers,
//! idle and stalled sockets, more connections than allowed, a burst of connections, uploads
//! with bogus keys, guessed API keys, logins by others, a weak key at start, and HTTPS.
//! Every test bounds its connections and its time, and stops by itself.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API_KEY: &str = "edge-test-api-key-Vb7Nm2Qw9Ex4Rt6Yz";
const ZAP: &str = "OWASP Zed Attack Proxy";

/// The server binary on a free loopback port.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    data: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_scan-queue-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--api-key",
                API_KEY,
                "--fsync",
                "never",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the server binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let authority = url.split("//").nth(1).unwrap().split('/').next().unwrap();
        let data = dir.path().join("data");
        Server {
            child,
            addr: authority.parse().unwrap(),
            dir,
            data,
        }
    }

    /// What the server logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap()
    }

    fn api(&self, op: &str) -> String {
        format!("http://{}/threadfix/rest/latest/tasks/{op}", self.addr)
    }

    fn page(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory, in KiB (`VmRSS` of `/proc/PID/status`).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn data(&self, sub: &str) -> PathBuf {
        self.data.join(sub)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A client whose connections come from `source` (another loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .local_address(source.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `request` with the API key, its envelope.
async fn envelope(request: reqwest::RequestBuilder) -> serde_json::Value {
    let request = request.header("Authorization", format!("APIKEY {API_KEY}"));
    request.send().await.unwrap().json().await.unwrap()
}

async fn call(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> serde_json::Value {
    envelope(http.post(url).form(form)).await
}

/// A `completeTask` call with `form` (multipart), its envelope.
async fn complete(
    http: &reqwest::Client,
    s: &Server,
    form: reqwest::multipart::Form,
) -> serde_json::Value {
    envelope(http.post(s.api("completeTask")).multipart(form)).await
}

/// How long until the server closes `stream` (reading and discarding what it sends), and
/// what it sent.
async fn until_closed(mut stream: TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[tokio::test]
async fn slow_headers_idle_sockets_and_stalled_bodies_are_closed_in_time() {
    let s = Server::start(&["--header-timeout-secs", "2", "--body-timeout-secs", "2"]);
    let limit = Duration::from_secs(8);
    // Slowloris: a header line every 500 ms, never the blank line.
    let slowloris = {
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        tokio::spawn(async move {
            stream
                .write_all(b"POST /rest/tasks/scanners HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let started = Instant::now();
            for i in 0..40 {
                if stream
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("the slow header was never cut");
        })
    };
    // An idle socket, and one that sends a full head and then stalls in its body.
    let idle = TcpStream::connect(s.addr).await.unwrap();
    let mut stalled = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /rest/tasks/queueScan HTTP/1.1\r\nHost: x\r\nAuthorization: APIKEY {API_KEY}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n\
         applicationId=1&"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let idle = tokio::spawn(until_closed(idle, limit));
    let stalled = tokio::spawn(until_closed(stalled, limit));
    // Meanwhile other clients are served.
    let http = client();
    for _ in 0..5 {
        let r = call(&http, &s.api("scanners"), &[]).await;
        assert_eq!(r["success"], true, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (idle_after, _) = idle.await.unwrap();
    let (stalled_after, answer) = stalled.await.unwrap();
    let slow_after = slowloris.await.unwrap();
    eprintln!(
        "closed after (configured 2 s): idle {idle_after:?}, stalled body {stalled_after:?}, slow header {slow_after:?}"
    );
    for (what, after) in [
        ("idle", idle_after),
        ("stalled body", stalled_after),
        ("slow header", slow_after),
    ] {
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
            "{what} closed after {after:?}, configured 2 s"
        );
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"success\":false"), "{answer}");
    // The queue did not change: the stalled call never ran.
    let r = call(&http, &s.api("queueScan"), &[("applicationId", "1")]).await;
    assert!(
        r["message"].as_str().unwrap().contains("scannerType"),
        "{r}"
    );
}

#[tokio::test]
async fn connections_past_max_connections_get_a_503_envelope() {
    let s = Server::start(&["--max-connections", "8", "--header-timeout-secs", "30"]);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    extra
        .write_all(b"GET /rest/tasks/scanners HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = until_closed(extra, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(envelope["success"], false);
    assert!(
        envelope["message"]
            .as_str()
            .unwrap()
            .contains("--max-connections")
    );
    // One leaves: a new client is served again.
    drop(held.pop());
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = http
            .post(s.api("scanners"))
            .header("Authorization", format!("APIKEY {API_KEY}"))
            .send()
            .await;
        if let Ok(r) = sent
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never served after a slot freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http
        .get(s.page("/metrics"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("scan_queue_refused_total{reason=\"connections\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_burst_of_10_000_connections_gives_its_memory_back() {
    let s = Server::start(&["--header-timeout-secs", "5"]);
    let http = client();
    // Warm up: the runtime's threads and buffers exist before the first reading.
    for _ in 0..20 {
        call(&http, &s.api("scanners"), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.rss_kib();
    let request = format!(
        "POST /rest/tasks/scanners HTTP/1.1\r\nHost: x\r\nAuthorization: APIKEY {API_KEY}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let mut peak = before;
    for _wave in 0..20 {
        let mut open = Vec::with_capacity(500);
        for _ in 0..500 {
            open.push(TcpStream::connect(s.addr).await.unwrap());
        }
        let mut served = Vec::with_capacity(500);
        for mut stream in open {
            let request = request.clone();
            served.push(tokio::spawn(async move {
                let _ = stream.write_all(request.as_bytes()).await;
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
            }));
        }
        for task in served {
            task.await.unwrap();
        }
        peak = peak.max(s.rss_kib());
    }
    // Freed pages go back to the system within the allocator's decay time (jemalloc's
    // background thread, 10 s): 21.6 MB -> 25.8 MB resident 7 s after, here.
    let closed = Instant::now();
    let mut after = s.rss_kib();
    while after * 2 > before * 3 && closed.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = s.rss_kib();
    }
    eprintln!(
        "resident memory: {before} KiB before, {peak} KiB at most, {after} KiB {:?} after",
        closed.elapsed()
    );
    assert!(
        after * 2 <= before * 3,
        "resident memory {before} KiB -> {after} KiB 20 s after 10 000 connections"
    );
    let r = call(&http, &s.api("scanners"), &[]).await;
    assert_eq!(r["success"], true);
}

/// Files under `dir` (recursively), counted.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[tokio::test]
async fn uploads_with_bogus_keys_never_reach_the_disk() {
    let s = Server::start(&[]);
    let http = client();
    let r = call(
        &http,
        &s.api("queueScan"),
        &[("applicationId", "1"), ("scannerType", ZAP)],
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    let agent = call(&http, &s.api("requestScanAgentKey"), &[]).await["object"]
        .as_str()
        .unwrap()
        .to_owned();
    let assignment = call(
        &http,
        &s.api("requestTask"),
        &[
            ("scanners", ZAP),
            ("scanAgentSecureKey", &agent),
            ("agentConfig", "x"),
        ],
    )
    .await;
    let task_key = assignment["object"]["secureTaskKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let task_id = assignment["object"]["taskId"].to_string();
    // Watch the data dir's upload areas for the whole time.
    let watch = {
        let (incoming, results) = (s.data("incoming"), s.data("results"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut most = 0;
                let mut polls = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    most = most.max(files_under(&incoming) + files_under(&results));
                    polls += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                (most, polls)
            })
        };
        (stop, seen)
    };
    // Ten parallel 20 MiB uploads: bogus agent key, right agent key with a bogus task key,
    // and the file before the keys.
    let big = vec![b'<'; 20 * 1024 * 1024];
    let mut uploads = Vec::new();
    for i in 0..10 {
        let (agent_key, key) = match i % 3 {
            0 => ("bogus-agent-key".to_owned(), task_key.clone()),
            1 => (agent.clone(), "bogus-task-key".to_owned()),
            _ => (agent.clone(), task_key.clone()),
        };
        let file = reqwest::multipart::Part::bytes(big.clone()).file_name("r.xml");
        let form = if i % 3 == 2 {
            reqwest::multipart::Form::new()
                .part("file", file)
                .text("scanQueueTaskId", task_id.clone())
                .text("scanAgentSecureKey", agent_key)
                .text("secureTaskKey", key)
        } else {
            reqwest::multipart::Form::new()
                .text("scanQueueTaskId", task_id.clone())
                .text("scanAgentSecureKey", agent_key)
                .text("secureTaskKey", key)
                .part("file", file)
        };
        let http = http.clone();
        let url = s.api("completeTask");
        uploads.push(tokio::spawn(async move {
            let sent = http
                .post(url)
                .header("Authorization", format!("APIKEY {API_KEY}"))
                .multipart(form)
                .send()
                .await;
            // A refusal may arrive before the body is sent, and the connection is closed
            // after it: some clients then see the answer, others only the closed connection.
            match sent {
                Ok(r) => Some(r.json::<serde_json::Value>().await.unwrap()),
                Err(_) => None,
            }
        }));
    }
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await.unwrap());
    }
    watch.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, polls) = watch.1.join().unwrap();
    eprintln!(
        "10 refused 20 MiB uploads: at most {most} files in incoming/ and results/ over {polls} polls"
    );
    assert!(polls > 10, "the watcher ran ({polls} polls)");
    assert_eq!(most, 0, "a refused upload reached the disk");
    for answer in answers.iter().flatten() {
        assert_eq!(answer["success"], false, "{answer}");
    }
    // The answers, one at a time with a small file so that every client sees them.
    let small = |first_file: bool, agent_key: &str, key: &str| {
        let file = reqwest::multipart::Part::bytes(vec![b'<'; 200 * 1024]).file_name("r.xml");
        let fields = reqwest::multipart::Form::new();
        let form = if first_file {
            fields.part("file", file)
        } else {
            fields
        };
        let form = form
            .text("scanQueueTaskId", task_id.clone())
            .text("scanAgentSecureKey", agent_key.to_owned())
            .text("secureTaskKey", key.to_owned());
        if first_file {
            form
        } else {
            form.part(
                "file",
                reqwest::multipart::Part::bytes(vec![b'<'; 200 * 1024]),
            )
        }
    };
    for (form, expected) in [
        (
            small(false, "bogus", &task_key),
            "secure key was not recognized",
        ),
        (small(false, &agent, "bogus"), "secure task key"),
        (small(true, &agent, &task_key), "before the file"),
    ] {
        let r = complete(&http, &s, form).await;
        assert_eq!(r["success"], false);
        let message = r["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&expected.to_lowercase()),
            "{message}"
        );
    }
    assert_eq!(
        files_under(&s.data("incoming")) + files_under(&s.data("results")),
        0
    );
}

#[tokio::test]
async fn guessed_keys_and_logins_get_429_while_others_log_in() {
    let s = Server::start(&[
        "--auth-failures-burst",
        "10",
        "--auth-failure-period-secs",
        "60",
    ]);
    let attacker = client_from("127.0.0.1");
    let mut throttled = 0;
    let mut retry_after = None;
    for i in 0..100 {
        let r = attacker
            .post(s.page("/tasks/login"))
            .header("Origin", format!("http://{}", s.addr))
            .form(&[("api_key", format!("guess-{i}"))])
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            401 => assert!(i < 10, "guess {i} not throttled"),
            429 => {
                throttled += 1;
                retry_after = r.headers().get("retry-after").cloned();
            }
            other => panic!("guess {i}: {other}"),
        }
    }
    assert_eq!(throttled, 90);
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // The API key itself is not looked at while throttled: the right key from the same
    // address waits too; API calls from it as well.
    let r = attacker
        .post(s.api("scanners"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let envelope: serde_json::Value = r.json().await.unwrap();
    assert_eq!(envelope["success"], false);
    // Another address logs in with the right key.
    let operator = client_from("127.0.0.2");
    let r = operator
        .post(s.page("/tasks/login"))
        .header("Origin", format!("http://{}", s.addr))
        .form(&[("api_key", API_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the operator logs in");
    let r = operator
        .get(s.page("/metrics"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    let metrics = r.text().await.unwrap();
    assert!(
        metrics.contains("scan_queue_refused_total{reason=\"throttled\"} 91"),
        "{metrics}"
    );
    // Each failure is logged with the client's address, never with what it presented.
    let log = s.log();
    assert!(
        log.contains("wrong API key") && log.contains("client=127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("client throttled"), "{log}");
    assert!(!log.contains("guess-") && !log.contains(API_KEY), "{log}");
}

#[tokio::test]
async fn an_operators_session_survives_1000_logins_by_others() {
    let s = Server::start(&[]);
    let origin = format!("http://{}", s.addr);
    let login = |http: reqwest::Client| {
        let (url, origin) = (s.page("/tasks/login"), origin.clone());
        async move {
            let r = http
                .post(url)
                .header("Origin", origin)
                .form(&[("api_key", API_KEY)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
            let cookie = r.headers()["set-cookie"].to_str().unwrap();
            cookie.split(';').next().unwrap().to_owned()
        }
    };
    let operator = client_from("127.0.0.1");
    let mine = login(operator.clone()).await;
    let others = client_from("127.0.0.3");
    for _ in 0..1000 {
        login(others.clone()).await;
    }
    let r = operator
        .get(s.page("/tasks"))
        .header("Cookie", &mine)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the operator is still logged in");
}

#[test]
fn a_weak_api_key_is_refused_at_start() {
    for weak in ["q7", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let out = Command::new(env!("CARGO_BIN_EXE_scan-queue-server"))
            .args(["--listen", "127.0.0.1:0", "--in-memory", "--api-key", weak])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("too easy to guess") && err.contains("openssl rand"),
            "{err}"
        );
        assert!(!err.contains(weak), "the key is never shown: {err}");
    }
}

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let s = Server::start(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", s.addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/threadfix/rest/latest/tasks/requestScanAgentKey",
        s.addr.port()
    );
    let r = envelope(https.post(&url)).await;
    assert_eq!(r["success"], true, "{r}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = client().post(s.api("scanners")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// An agent that took `n` ZAP tasks: its key, and each task's id and key.
async fn agent_with_tasks(
    s: &Server,
    http: &reqwest::Client,
    n: usize,
) -> (String, Vec<(String, String)>) {
    let agent = call(http, &s.api("requestScanAgentKey"), &[]).await["object"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let r = call(
            http,
            &s.api("queueScan"),
            &[("applicationId", "1"), ("scannerType", ZAP)],
        )
        .await;
        assert_eq!(r["success"], true, "{r}");
        let a = call(
            http,
            &s.api("requestTask"),
            &[
                ("scanners", ZAP),
                ("scanAgentSecureKey", &agent),
                ("agentConfig", "x"),
            ],
        )
        .await;
        tasks.push((
            a["object"]["taskId"].to_string(),
            a["object"]["secureTaskKey"].as_str().unwrap().to_owned(),
        ));
    }
    (agent, tasks)
}

#[tokio::test]
async fn uploads_past_max_uploads_get_503_and_a_trickle_is_cut() {
    let s = Server::start(&[
        "--max-uploads",
        "1",
        "--body-timeout-secs",
        "1",
        "--min-upload-rate",
        "100000",
    ]);
    let http = client();
    let (agent, tasks) = agent_with_tasks(&s, &http, 2).await;
    // The first upload: its keys, then a file that trickles in at 500 B every 200 ms.
    let boundary = "edgeboundary";
    let mut head = String::new();
    for (name, value) in [
        ("scanQueueTaskId", tasks[0].0.as_str()),
        ("scanAgentSecureKey", agent.as_str()),
        ("secureTaskKey", tasks[0].1.as_str()),
    ] {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.xml\"\r\n\r\n<r>"
    ));
    let mut trickle = TcpStream::connect(s.addr).await.unwrap();
    trickle
        .write_all(
            format!(
                "POST /rest/tasks/completeTask HTTP/1.1\r\nHost: x\r\nAuthorization: APIKEY {API_KEY}\r\n\
                 Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10000000\r\n\r\n{head}"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let trickling = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle.write_all(&[b' '; 500]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Stop writing once the server answered.
            let mut probe = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), trickle.peek(&mut probe)).await
                && n > 0
            {
                break;
            }
        }
        until_closed(trickle, Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The second, while the first holds the only place.
    let form = reqwest::multipart::Form::new()
        .text("scanQueueTaskId", tasks[1].0.clone())
        .text("scanAgentSecureKey", agent.clone())
        .text("secureTaskKey", tasks[1].1.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"<r/>".to_vec()).file_name("r.xml"),
        );
    let r = http
        .post(s.api("completeTask"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let envelope: serde_json::Value = r.json().await.unwrap();
    assert!(
        envelope["message"]
            .as_str()
            .unwrap()
            .contains("--max-uploads"),
        "{envelope}"
    );
    // The trickle is cut once it has gone on for the body timeout below the minimum rate.
    let (_, answer) = trickling.await.unwrap();
    let cut_after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Upload too slow"), "{answer}");
    assert!(
        cut_after < Duration::from_secs(5),
        "cut after {cut_after:?}"
    );
    // Its place is free again, and the staged bytes are gone.
    let form = reqwest::multipart::Form::new()
        .text("scanQueueTaskId", tasks[1].0.clone())
        .text("scanAgentSecureKey", agent.clone())
        .text("secureTaskKey", tasks[1].1.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"<r/>".to_vec()).file_name("r.xml"),
        );
    let r = complete(&http, &s, form).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(files_under(&s.data("incoming")), 0);
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_throttled_apart() {
    let s = Server::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--auth-failures-burst",
        "2",
        "--auth-failure-period-secs",
        "60",
    ]);
    let send = |from: &'static str, forwarded: &'static str, key: &'static str| {
        let url = s.api("scanners");
        async move {
            client_from(from)
                .post(url)
                .header("Authorization", format!("APIKEY {key}"))
                .header("X-Forwarded-For", forwarded)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Through the proxy: one client guesses until throttled, another is served.
    for _ in 0..2 {
        assert_eq!(send("127.0.0.1", "192.0.2.1", "wrong").await, 200);
    }
    assert_eq!(send("127.0.0.1", "192.0.2.1", "wrong").await, 429);
    assert_eq!(send("127.0.0.1", "192.0.2.1", API_KEY).await, 429);
    assert_eq!(send("127.0.0.1", "192.0.2.2", API_KEY).await, 200);
    // Not a trusted proxy: its X-Forwarded-For is ignored, it is throttled as itself.
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(send("127.0.0.2", forwarded, "wrong").await, 200);
    }
    assert_eq!(send("127.0.0.2", "198.51.100.3", "wrong").await, 429);
}
