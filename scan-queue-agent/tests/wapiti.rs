//! A real scanner: Debian's `wapiti` run by the agent against a small web application served
//! on 127.0.0.1 by `fixtures/webapp.py`, its JSON report uploaded to the real server.
//!
//! Skipped when `wapiti` is not installed, unless `SCAN_QUEUE_REQUIRE_WAPITI=1` (as CI sets
//! it after installing the package), which makes a missing `wapiti` a failure.

mod common;

use common::*;
use scan_queue::TaskStatus;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

fn wapiti_installed() -> bool {
    std::process::Command::new("wapiti")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the fixture web application; the child (killed on drop) and its port.
async fn start_webapp() -> (tokio::process::Child, u16) {
    let mut child = tokio::process::Command::new("python3")
        .arg(fixture("webapp.py"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the web application did not start")
        .unwrap()
        .unwrap();
    let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wapiti_scans_a_local_web_application_and_its_json_report_is_stored() {
    if !wapiti_installed() {
        assert!(
            std::env::var("SCAN_QUEUE_REQUIRE_WAPITI").as_deref() != Ok("1"),
            "wapiti is not installed and SCAN_QUEUE_REQUIRE_WAPITI=1"
        );
        eprintln!("skipped: wapiti is not installed (apt-get install wapiti)");
        return;
    }
    let (mut webapp, port) = start_webapp().await;
    let target = format!("http://127.0.0.1:{port}/");

    let data = tempfile::tempdir().unwrap();
    // The strictest inspection: the upload must be a Wapiti report.
    let options = ServerOptions {
        scanners: vec!["Wapiti"],
        result_check: scan_queue_server::report::ResultCheck::Scanner,
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let id = s.queue_scan("Wapiti", &target).await;

    // Wapiti loads every module at start, and its technology-detection module downloads
    // its database unless the config directory has one: an empty one keeps it off the
    // network (that module is not run).
    let wapiti_config = tempfile::tempdir().unwrap();
    std::fs::write(wapiti_config.path().join("apps.json"), "{}").unwrap();
    let config_dir = wapiti_config.path().display().to_string();
    let files = AgentFiles::new(
        &s,
        &format!(
            r#"
poll_interval = "200ms"
heartbeat_interval = "5s"
status_interval = "200ms"
retry_max_delay = "500ms"
[scanners."Wapiti"]
command = {}
output_file = "wapiti-report.json"
time_limit = "150s"
# Python buffers a pipe's output: unbuffered, progress arrives as it happens.
env = {{ PYTHONUNBUFFERED = "1" }}
"#,
            toml_args(&[
                "wapiti",
                "-u",
                "{target_url}",
                "--scope",
                "folder",
                "-m",
                "xss,http_headers",
                "-d",
                "2",
                "--max-scan-time",
                "60",
                "--max-attack-time",
                "20",
                "-f",
                "json",
                "-o",
                "{output}",
                "--store-session",
                "{work_dir}/session",
                "--store-config",
                &config_dir,
                "--flush-session",
                "--no-bugreport",
                "-v",
                "1",
            ])
        ),
    );
    let started = Instant::now();
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    let took = started.elapsed();
    let history = s.history(id);
    assert_eq!(
        s.status(id),
        TaskStatus::CompleteSuccessful,
        "{history:#?}\n{}",
        agent.log_text()
    );
    // Wapiti's own output lines made it to the task's history, between the agent's first
    // message and the completion.
    let ours = [
        "Scan queued",
        "Assigning task",
        "Wapiti started by",
        "Wapiti still running",
        "Scan completed",
    ];
    let from_wapiti: Vec<&String> = history
        .iter()
        .filter(|m| !ours.iter().any(|p| m.starts_with(p)))
        .collect();
    assert!(!from_wapiti.is_empty(), "{history:#?}");

    let (stored, name) = s.result(id).await;
    assert_eq!(name, "wapiti-report.json");
    let report: Value = serde_json::from_slice(&stored).expect("the stored report is JSON");
    for key in ["vulnerabilities", "infos", "classifications", "anomalies"] {
        assert!(report.get(key).is_some(), "no {key} in the report");
    }
    assert_eq!(report["infos"]["target"], target.as_str());
    assert!(
        report["infos"]["version"]
            .as_str()
            .unwrap()
            .starts_with("Wapiti")
    );
    // Findings per category (the server has no findings summary yet; counted here).
    let counts: Vec<(String, usize)> = report["vulnerabilities"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().map_or(0, Vec::len)))
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!(
        "wapiti scanned {target} in {:.1} s (agent run, start to exit); {} of its output lines in the task's history; report {} bytes; findings: {counts:?}",
        took.as_secs_f64(),
        from_wapiti.len(),
        stored.len()
    );
    // The application's search page reflects its query unescaped: wapiti must find it.
    let xss = report["vulnerabilities"]["Cross Site Scripting"]
        .as_array()
        .unwrap();
    assert!(
        xss.iter()
            .any(|v| v["path"] == "/search" && v["parameter"] == "q"),
        "{xss:#?}"
    );
    // The server's record of it, from the application's results.
    let page: Value = s
        .http
        .get(format!(
            "{}/threadfix/rest/latest/applications/1/results",
            s.origin
        ))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = page["object"]["results"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{page}");
    assert_eq!(records[0]["taskId"], id);
    assert_eq!(records[0]["scanner"], "Wapiti");
    assert_eq!(records[0]["fileName"], "wapiti-report.json");
    assert_eq!(records[0]["size"], stored.len() as u64);
    // The server recognised the report and summarised its findings: the same counts as the
    // report's own entries by level (Wapiti 3.0.4 and later: 4 critical and 3 high count as
    // high, 2 medium, 1 low, anything else informational).
    assert_eq!(records[0]["report"], "wapiti-json", "{page}");
    let mut expected = [0u64; 4]; // high, medium, low, informational
    for entries in report["vulnerabilities"].as_object().unwrap().values() {
        for entry in entries.as_array().unwrap() {
            let level = match &entry["level"] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            let bucket = match level {
                Some(3 | 4) => 0,
                Some(2) => 1,
                Some(1) => 2,
                _ => 3,
            };
            expected[bucket] += 1;
        }
    }
    let findings = &records[0]["findings"];
    let counted = ["high", "medium", "low", "informational"].map(|k| findings[k].as_u64().unwrap());
    assert_eq!(counted, expected, "{page}");
    eprintln!("the server's findings summary of the report: {findings}");
    let log = agent.log_text();
    assert!(
        !log.contains("Downloading from the web"),
        "wapiti tried the network:\n{log}"
    );
    assert_no_secrets(&log, &[API_KEY, &files.agent_key(), &s.task_key(id)]);
    let _ = webapp.kill().await;
    s.stop().await;
}
