//! The binary itself: `--help` documents every flag, a generated API key is printed once,
//! logs carry transitions with agent ids but never a key, and SIGTERM stops it gracefully.

mod common;

use common::{complete_form, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_scan-queue-server");

#[test]
fn help_describes_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen <ADDR>",
        "[default: 127.0.0.1:8080]",
        "--api-key <KEY>",
        "SCAN_QUEUE_API_KEY",
        "--data-dir <DIR>",
        "[default: ./scan-queue-data]",
        "--lease-secs <SECS>",
        "--task-deadline-secs <SECS>",
        "--max-attempts <N>",
        "--max-upload-bytes <BYTES>",
        "--max-config-bytes <BYTES>",
        "--max-agents <N>",
        "--max-open-tasks <N>",
        "--scanner <NAME=SHORT>",
        "--keep-results-days <DAYS>",
        "--keep-results-per-app <N>",
        "--webhook <URL>",
        "--result-check <CHECK>",
        "--webhook-secret <SECRET>",
        "--agent-expiry-days <DAYS>",
        "--log-format <FORMAT>",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let bad = Command::new(BIN)
        .args(["--lease-secs", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn a_postgres_ca_file_that_is_no_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    for file in [ca.clone(), dir.path().join("missing.pem")] {
        let out = Command::new(BIN)
            .args([
                "--postgres",
                "postgresql://u:secret@127.0.0.1:1/db?sslmode=require",
            ])
            .arg("--postgres-ca")
            .arg(&file)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("--postgres-ca {}", file.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
    }
}

/// A supervisor may signal as soon as it has read the first line: the handlers are in place
/// by then, so the stop is graceful (before, 57 of 60 such stops died of the signal).
#[test]
fn sigterm_right_after_the_first_line_stops_gracefully() {
    for _ in 0..20 {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--in-memory"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("scan-queue-server listening on"),
            "{first}"
        );
        sigterm(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

struct Running {
    child: Child,
    origin: String,
    stdout: Vec<String>,
}

/// Starts the binary on a free loopback port and reads what it prints on start.
fn start(args: &[&str], env_key: Option<&str>, dir: &std::path::Path) -> Running {
    let mut command = Command::new(BIN);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("SCAN_QUEUE_API_KEY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = env_key {
        command.env("SCAN_QUEUE_API_KEY", key);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let origin = first
        .trim()
        .strip_prefix("scan-queue-server listening on ")
        .and_then(|url| url.strip_suffix("/threadfix/rest/latest/tasks/"))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let mut lines = vec![first.trim().to_owned()];
    // The page's address, the data directory, and a generated key.
    for _ in 0..if env_key.is_none() { 3 } else { 2 } {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line.trim().to_owned());
    }
    assert_eq!(lines[1], format!("Scan Agent Tasks page: {origin}/tasks"));
    Running {
        child,
        origin,
        stdout: lines,
    }
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &std::process::Child) {
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.unwrap().success());
}

/// SIGTERM, then the exit status and everything logged.
fn terminate(mut running: Running) -> (std::process::ExitStatus, String) {
    sigterm(&running.child);
    let status = running.child.wait().unwrap();
    let mut stderr = String::new();
    running
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[tokio::test]
async fn generated_key_lifecycle_logs_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&[], None, dir.path());
    let api_key = running.stdout[3].rsplit(": ").next().unwrap().to_owned();
    assert!(
        running.stdout[3].starts_with("generated API key"),
        "{:?}",
        running.stdout
    );
    assert_eq!(api_key.len(), 44);
    let base = format!("{}/threadfix/rest/latest/tasks", running.origin);
    let http = reqwest::Client::new();
    let auth = format!("APIKEY {api_key}");
    let post = |op: &str, params: Vec<(&str, String)>| {
        http.post(format!("{base}/{op}"))
            .header("Authorization", &auth)
            .form(&params)
            .send()
    };

    let r = json(
        post(
            "queueScan",
            vec![
                ("applicationId", "1".into()),
                ("scannerType", "burp".into()),
            ],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    let r = json(
        http.get(format!("{base}/requestScanAgentKey"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let agent = r["object"].as_str().unwrap().to_owned();
    let r = json(
        post(
            "requestTask",
            vec![
                ("scanners", "burp".into()),
                ("scanAgentSecureKey", agent.clone()),
            ],
        )
        .await
        .unwrap(),
    )
    .await;
    let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    let r = json(
        post(
            "taskStatusUpdate",
            vec![
                ("scanQueueTaskId", "1".into()),
                ("message", "working".into()),
                ("scanAgentSecureKey", agent.clone()),
                ("secureTaskKey", task_key.clone()),
            ],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    // Refused calls with keys in the query string (which must not reach the log either).
    let r = json(http.post(format!("{base}/failTask?scanQueueTaskId=1&message=x&scanAgentSecureKey={agent}&secureTaskKey={agent}"))
        .header("Authorization", &auth).send().await.unwrap()).await;
    assert_eq!(r["success"], false);
    let r = json(
        http.post(format!("{base}/failTask?apiKey={agent}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["success"], false);
    let r = json(
        http.post(format!("{base}/completeTask"))
            .header("Authorization", &auth)
            .multipart(complete_form(1, &agent, &task_key, b"<xml/>"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");

    let (status, log) = terminate(running);
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(
        log.contains("SIGTERM: shutting down") && log.contains("stopped"),
        "{log}"
    );
    for line in [
        "task queued",
        "scan agent registered",
        "task assigned",
        "task completed",
        "refused",
    ] {
        assert!(log.contains(line), "log lacks {line}:\n{log}");
    }
    // Heartbeats and empty polls are at DEBUG.
    assert!(!log.contains("task status update"), "{log}");
    assert!(!log.contains("no task found"), "{log}");
    // The agent's public id, the scanner and the application are logged with transitions.
    let assigned = log.lines().find(|l| l.contains("task assigned")).unwrap();
    for field in ["agent=", "scanner=\"Burp Suite Pro\"", "application=1"] {
        assert!(assigned.contains(field), "{field} in {assigned}");
    }
    for secret in [&api_key, &agent, &task_key] {
        assert!(!log.contains(secret.as_str()), "a key was logged:\n{log}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn api_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &["--scanner", "Nessus Pro=nessus"],
        Some("env-key-1-Wq8Rt3Yu6Io9Pa2Sd5Fg7Hj"),
        dir.path(),
    );
    assert_eq!(
        running.stdout[2],
        format!("data directory: {}", dir.path().display())
    );
    let r = json(
        reqwest::Client::new()
            .get(format!("{}/rest/tasks/scanners", running.origin))
            .header("Authorization", "APIKEY env-key-1-Wq8Rt3Yu6Io9Pa2Sd5Fg7Hj")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["object"], serde_json::json!(["Nessus Pro"]));
    let (status, log) = terminate(running);
    assert!(status.success());
    assert!(!log.contains("env-key-1-Wq8Rt3Yu6Io9Pa2Sd5Fg7Hj"));
}

/// Starts the binary in `cwd` with `args`, reads its banner (4 lines: a key is generated).
fn spawn_in(cwd: &std::path::Path, args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .current_dir(cwd)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("SCAN_QUEUE_API_KEY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let lines = (0..4)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().to_owned()
        })
        .collect();
    (child, lines)
}

/// `--data-dir` relative to where the server starts is printed absolute; `--in-memory` writes
/// nothing under the working directory, even for an upload; `--log-format json` logs one JSON
/// object per line with the task's scanner and application; `/` leads to the page.
#[tokio::test]
async fn data_dir_in_memory_json_logs_and_the_root() {
    let cwd = tempfile::tempdir().unwrap();
    let (child, banner) = spawn_in(cwd.path(), &["--data-dir", "data"]);
    let running = Running {
        child,
        origin: String::new(),
        stdout: banner.clone(),
    };
    let (status, _) = terminate(running);
    assert!(status.success());
    let absolute = cwd.path().join("data");
    assert_eq!(banner[2], format!("data directory: {}", absolute.display()));
    assert!(absolute.join("journal").is_dir());

    let cwd = tempfile::tempdir().unwrap();
    let (child, banner) = spawn_in(cwd.path(), &["--in-memory", "--log-format", "json"]);
    assert!(banner[2].starts_with("data: in memory only"), "{banner:?}");
    let origin = banner[1]
        .strip_prefix("Scan Agent Tasks page: ")
        .and_then(|u| u.strip_suffix("/tasks"))
        .unwrap()
        .to_owned();
    let api_key = banner[3].rsplit(": ").next().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = http.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(root.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(root.headers()["location"], "/tasks");
    let base = format!("{origin}/rest/tasks");
    let auth = format!("APIKEY {api_key}");
    let call = |op: &str, params: Vec<(&str, String)>| {
        http.post(format!("{base}/{op}"))
            .header("Authorization", &auth)
            .form(&params)
            .send()
    };
    let queued = json(
        call(
            "queueScan",
            vec![("applicationId", "4".into()), ("scannerType", "zap".into())],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(queued["success"], true);
    let agent = json(call("requestScanAgentKey", vec![]).await.unwrap()).await["object"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = json(
        call(
            "requestTask",
            vec![
                ("scanners", "zap".into()),
                ("scanAgentSecureKey", agent.clone()),
            ],
        )
        .await
        .unwrap(),
    )
    .await;
    let task_key = task["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    let done = json(
        http.post(format!("{base}/completeTask"))
            .header("Authorization", &auth)
            .multipart(complete_form(1, &agent, &task_key, b"<xml/>"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        done["object"]["statusString"], "COMPLETE_SUCCESSFUL",
        "{done}"
    );
    let running = Running {
        child,
        origin,
        stdout: banner,
    };
    let (status, log) = terminate(running);
    assert!(status.success());
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "--in-memory wrote under the working directory"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let assigned = lines
        .iter()
        .find(|l| l["fields"]["message"] == "task assigned")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(assigned["level"], "INFO");
    assert_eq!(assigned["fields"]["scanner"], "OWASP Zed Attack Proxy");
    assert_eq!(assigned["fields"]["application"], 4);
    for secret in [&api_key, &agent, &task_key] {
        assert!(!log.contains(secret.as_str()), "a key was logged");
    }
}
