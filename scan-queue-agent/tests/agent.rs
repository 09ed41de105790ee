//! End to end: the real server on 127.0.0.1 (in this process), the real agent binary as a
//! child process, fake scanners from `tests/fixtures/`.

mod common;

use common::*;
use nix::sys::signal::Signal;
use scan_queue::TaskStatus;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Short intervals for tests (the lease is set per test on the server).
const FAST: &str = r#"
poll_interval = "100ms"
heartbeat_interval = "500ms"
status_interval = "200ms"
retry_max_delay = "300ms"
request_timeout = "5s"
kill_grace = "300ms"
"#;

fn scanner(name: &str, args: &[&str], more: &str) -> String {
    format!(
        "[scanners.{}]\ncommand = {}\n{more}\n",
        toml_str(name),
        toml_args(args)
    )
}

/// A scanner `name` running `slow.sh`, which writes its process id to `pidfile` and runs
/// until killed.
fn slow_scanner(name: &str, pidfile: &std::path::Path) -> String {
    let pidfile = pidfile.display().to_string();
    scanner(name, &[&fixture("slow.sh"), "{output}", &pidfile], "")
}

fn is_active(s: TaskStatus) -> bool {
    s == TaskStatus::InProgress
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_completes_with_its_progress_and_its_report_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/app").await;
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("report-copy");
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[
                    &fixture("progress.sh"),
                    "{output}",
                    &copy.display().to_string(),
                    "{target_url}"
                ],
                "output_file = \"fake-report.bin\"",
            )
        ),
    );
    // Under umask 000 the state file must still be private.
    let mut agent = files.spawn_with_umask_000(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());

    assert_eq!(
        s.status(id),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(id)
    );
    let history = s.history(id);
    let progress: Vec<&String> = history
        .iter()
        .filter(|m| m.starts_with("Spider "))
        .collect();
    assert_eq!(
        progress,
        ["Spider 10% done", "Spider 40% done", "Spider 70% done"],
        "{history:#?}"
    );
    assert!(
        history
            .iter()
            .any(|m| m == "Fake Scanner started by scan agent test-agent"),
        "{history:#?}"
    );
    // The stored result is what the scanner wrote, byte for byte, under its file name.
    let written = std::fs::read(&copy).unwrap();
    let (stored, name) = s.result(id).await;
    assert_eq!(stored, written);
    assert_eq!(name, "fake-report.bin");
    let report = String::from_utf8_lossy(&written);
    assert!(
        report.starts_with("fake report for http://127.0.0.1:9/app\n"),
        "{report}"
    );
    // The scanner's environment is cleared: no API key, not even the variable's name.
    assert!(report.contains("PATH="), "{report}");
    assert!(
        !report.contains(API_KEY) && !report.contains("SCAN_QUEUE_TEST_API_KEY"),
        "{report}"
    );
    // The state file is 0600; the task's directory is gone.
    let mode = std::fs::metadata(files.state_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_dir(files.work_dir()).unwrap().count(), 0);

    // A second run reuses the stored key: still one registered agent. No task: exits 0.
    let mut again = files.spawn(&["--once"]);
    assert_eq!(again.wait().await, 0, "{}", again.log_text());
    assert_eq!(s.server.queue().agents().count(), 1);
    assert!(again.log_text().contains("using the stored scan agent key"));

    // No key in any log line, at debug level.
    let log = agent.log_text();
    assert!(log.contains("task completed"), "{log}");
    let (agent_key, task_key) = (files.agent_key(), s.task_key(id));
    for log in [log, again.log_text()] {
        assert_no_secrets(&log, &[API_KEY, &agent_key, &task_key]);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scanner_fails_the_task_with_its_exit_status_and_stderr_tail() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner("Fake Scanner", &[&fixture("fail.sh")], "")
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(s.status(id), TaskStatus::CompleteFailed);
    let message = s.task(id).failure_message().unwrap();
    assert!(message.contains("ended with exit status 3"), "{message}");
    // The last 15 lines of stderr, not the earlier ones.
    assert!(
        message.contains("error detail 6\n") && message.ends_with("error detail 20"),
        "{message}"
    );
    assert!(!message.contains("error detail 5\n"), "{message}");
    assert!(!s.has_result(id).await);
    assert_no_secrets(
        &agent.log_text(),
        &[API_KEY, &files.agent_key(), &s.task_key(id)],
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_scanner_is_killed_with_its_process_group_at_its_time_limit() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let pids = tempfile::tempdir().unwrap();
    let pidfile = pids.path().join("pids");
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("hang.sh"), &pidfile.display().to_string()],
                "time_limit = \"1s\"",
            )
        ),
    );
    let started = Instant::now();
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.status(id), TaskStatus::CompleteFailed);
    let message = s.task(id).failure_message().unwrap();
    assert!(
        message.contains("ran past its time limit of 1s and was killed"),
        "{message}"
    );
    // Both the scanner and the helper it started (both ignoring SIGTERM) are gone.
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(wait_gone(pid).await, "process {pid} survived");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_scanner_keeps_its_lease_by_heartbeats() {
    let data = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        lease: Duration::from_secs(2),
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    // Silent for 5 s, two and a half leases.
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "5"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    let task = s.task(id);
    assert_eq!(
        task.status(),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(id)
    );
    assert_eq!(
        task.attempts(),
        1,
        "the task was taken back: {:#?}",
        s.history(id)
    );
    let history = s.history(id);
    assert!(
        !history.iter().any(|m| m.starts_with("Lease expired")),
        "{history:#?}"
    );
    let heartbeats = history
        .iter()
        .filter(|m| m.contains("still running"))
        .count();
    assert!(heartbeats >= 4, "{history:#?}");
    assert_eq!(s.result(id).await.0, b"report after a silence of 5 s\n");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_scanner_is_rate_limited() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner("Fake Scanner", &[&fixture("chatty.sh"), "{output}"], "")
        ),
    );
    let started = Instant::now();
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    let ran = started.elapsed();
    assert_eq!(s.status(id), TaskStatus::CompleteSuccessful);
    let history = s.history(id);
    let lines: Vec<&String> = history.iter().filter(|m| m.starts_with("line ")).collect();
    // 3 000 lines, at most one update per 200 ms status interval while the agent ran: a
    // handful reach the server, each the latest line then, the last one printed among them.
    let most = (ran.as_millis() / 200) as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= most,
        "{} in {ran:?}: {history:#?}",
        lines.len()
    );
    assert!(lines.len() < 50, "{history:#?}");
    assert!(lines.iter().any(|m| *m == "line 3000"), "{history:#?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_configuration_reaches_the_scanner_as_a_private_file() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let doc = b"spider.maxDepth=3\n\x00\xffbinary too\n";
    s.set_task_config("Fake Scanner", doc).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("config.sh"), "{config_file}", "{output}"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(
        s.status(id),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(id)
    );
    assert_eq!(s.result(id).await.0, doc);
    assert!(
        s.history(id).iter().any(|m| m == "config mode 600"),
        "{:#?}",
        s.history(id)
    );
    // Deleted after the task, with its directory.
    assert_eq!(std::fs::read_dir(files.work_dir()).unwrap().count(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_s_task_goes_to_another_agent_after_the_lease() {
    let data = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        lease: Duration::from_secs(2),
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let pids = tempfile::tempdir().unwrap();
    let pidfile = pids.path().join("pid");
    let first = AgentFiles::new(
        &s,
        &format!("{FAST}\n{}", slow_scanner("Fake Scanner", &pidfile)),
    );
    let mut a = first.spawn(&[]);
    s.wait_for(id, "the first agent's scan", is_active).await;
    a.signal(Signal::SIGKILL);
    a.wait().await;
    let killed_at = Instant::now();
    // The orphaned scanner is this test's to end (its own process group).
    let orphan: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let second = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "0.2"],
                ""
            )
        ),
    );
    let mut b = second.spawn(&[]);
    s.wait_for(id, "the second agent's completion", |st| {
        st == TaskStatus::CompleteSuccessful
    })
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1000),
        "taken back before the lease ran out"
    );
    let task = s.task(id);
    assert_eq!(task.attempts(), 2);
    let history = s.history(id);
    assert!(
        history
            .iter()
            .any(|m| m.starts_with("Lease expired") && m.ends_with("returned to the queue")),
        "{history:#?}"
    );
    assert_eq!(
        history
            .iter()
            .filter(|m| m.starts_with("Assigning task"))
            .count(),
        2
    );
    assert_ne!(first.agent_key(), second.agent_key());
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait().await, 0, "{}", b.log_text());
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(orphan), Signal::SIGKILL);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_on_the_server_stops_its_scanner() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let pids = tempfile::tempdir().unwrap();
    let pidfile = pids.path().join("pid");
    let files = AgentFiles::new(
        &s,
        &format!("{FAST}\n{}", slow_scanner("Fake Scanner", &pidfile)),
    );
    let mut agent = files.spawn(&[]);
    s.wait_for(id, "the scan", is_active).await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    s.cancel_on_the_page(id).await;
    assert_eq!(s.status(id), TaskStatus::CompleteDeleted);
    // The next heartbeat is refused: the agent kills the scanner and sends nothing more.
    assert!(
        wait_gone(pid).await,
        "the scanner of a cancelled task survived"
    );
    let history_len = s.history(id).len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.history(id).len(), history_len);
    assert_eq!(s.status(id), TaskStatus::CompleteDeleted);
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    let log = agent.log_text();
    assert!(log.contains("the task is no longer this agent's"), "{log}");
    assert!(log.contains("COMPLETE_DELETED"), "{log}");
    assert_no_secrets(&log, &[API_KEY, &files.agent_key(), &s.task_key(id)]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_still_gets_the_completion() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let port = s.port;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/app").await;
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("copy");
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[
                    &fixture("progress.sh"),
                    "{output}",
                    &copy.display().to_string(),
                    "{target_url}"
                ],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    s.wait_for(id, "the scan", is_active).await;
    s.stop().await;
    // Down until the scan has finished, and a second more: its status updates and its
    // completion meet a closed port.
    let down = Instant::now();
    while !copy.exists() {
        assert!(down.elapsed() < WAIT, "the scan did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s = TestServer::start(
        data.path(),
        &ServerOptions {
            port,
            seed: 8,
            ..ServerOptions::default()
        },
    )
    .await;
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(
        s.status(id),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(id)
    );
    assert_eq!(s.task(id).attempts(), 1);
    assert_eq!(s.result(id).await.0, std::fs::read(&copy).unwrap());
    let log = agent.log_text();
    assert!(log.contains("completeTask: will retry"), "{log}");
    assert_no_secrets(&log, &[API_KEY, &files.agent_key(), &s.task_key(id)]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_scans_finish_within_the_grace_period_and_fails_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        scanners: vec!["Quick", "Slow"],
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let quick = s.queue_scan("Quick", "http://127.0.0.1:9/").await;
    let slow = s.queue_scan("Slow", "http://127.0.0.1:9/").await;
    let pids = tempfile::tempdir().unwrap();
    let pidfile = pids.path().join("pid");
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\nconcurrency = 2\nshutdown_grace = \"2s\"\n{}{}",
            scanner("Quick", &[&fixture("silent.sh"), "{output}", "1"], ""),
            slow_scanner("Slow", &pidfile),
        ),
    );
    let mut agent = files.spawn(&[]);
    s.wait_for(quick, "the quick scan", is_active).await;
    s.wait_for(slow, "the slow scan", is_active).await;
    let third = s.queue_scan("Quick", "http://127.0.0.1:9/").await;
    let signalled = Instant::now();
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert!(signalled.elapsed() < Duration::from_secs(20));
    assert_eq!(
        s.status(quick),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(quick)
    );
    assert_eq!(s.status(slow), TaskStatus::CompleteFailed);
    let message = s.task(slow).failure_message().unwrap();
    assert!(
        message.contains("scan agent was stopped (SIGTERM)") && message.contains("2s grace period"),
        "{message}"
    );
    // No new task after the signal.
    assert_eq!(s.status(third), TaskStatus::Queued);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(pid).await, "the slow scanner survived");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_smaller_message_bound_still_gets_progress_and_the_failure() {
    let data = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        max_message_len: 300,
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    // A shell the user wrote: a 500-byte line (refused), a short one, then a failure whose
    // reason (the stderr tail) is longer than the server takes.
    let script = "printf 'x%.0s' $(seq 500); echo; sleep 0.5; echo short line; sleep 0.6; \
                  for i in $(seq 20); do echo error detail $i >&2; done; exit 3";
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner("Fake Scanner", &["sh", "-c", script], "")
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    let history = s.history(id);
    assert!(history.iter().any(|m| m == "short line"), "{history:#?}");
    assert!(
        !history.iter().any(|m| m.starts_with("xxx")),
        "{history:#?}"
    );
    assert_eq!(s.status(id), TaskStatus::CompleteFailed, "{history:#?}");
    let message = s.task(id).failure_message().unwrap();
    assert!(
        message.contains("\"sh\" ended with exit status 3"),
        "{message}"
    );
    assert!(
        agent
            .log_text()
            .contains("refused one status update; going on")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_is_trusted_through_the_ca_file() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let (https, accepted, front) = tls_front(format!("127.0.0.1:{}", s.port)).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let files = AgentFiles::with_url(
        &https,
        &format!(
            "{FAST}\nca_file = {}\n{}",
            toml_str(&fixture("test-ca.pem")),
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "0.1"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(
        s.status(id),
        TaskStatus::CompleteSuccessful,
        "{:#?}",
        s.history(id)
    );
    assert_eq!(s.result(id).await.0, b"report after a silence of 0.1 s\n");
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(!agent.log_text().contains("plain HTTP"));
    front.abort();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_answer_is_lost_is_retried_and_counted_once() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let (origin, lost, front) = lossy_front(format!("127.0.0.1:{}", s.port)).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    let files = AgentFiles::with_url(
        &origin,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "0.1"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    // The first completeTask reached the server, its answer did not reach the agent.
    assert_eq!(lost.load(std::sync::atomic::Ordering::SeqCst), 1);
    let log = agent.log_text();
    assert!(log.contains("completeTask: will retry"), "{log}");
    assert!(log.contains("task completed"), "{log}");
    // The repeat was answered as the first: one completion, one result.
    assert_eq!(s.status(id), TaskStatus::CompleteSuccessful);
    let history = s.history(id);
    let completions = history
        .iter()
        .filter(|m| m.starts_with("Scan completed"))
        .count();
    assert_eq!(completions, 1, "{history:#?}");
    let page: serde_json::Value = s
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
    assert_eq!(
        page["object"]["results"].as_array().unwrap().len(),
        1,
        "{page}"
    );
    assert_eq!(s.result(id).await.0, b"report after a silence of 0.1 s\n");
    front.abort();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_the_target_its_command_needs_fails_with_that_reason() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let r = s
        .form(
            "queueScan",
            &[("applicationId", "1"), ("scannerType", "Fake Scanner")],
        )
        .await;
    let id = r["object"]["id"].as_u64().unwrap();
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "{target_url}"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(s.status(id), TaskStatus::CompleteFailed);
    let message = s.task(id).failure_message().unwrap();
    assert!(message.contains("the task has no target URL"), "{message}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_server_refuses_ends_the_task_with_the_servers_reason() {
    let data = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        result_check: scan_queue_server::report::ResultCheck::Wellformed,
        ..ServerOptions::default()
    };
    let s = TestServer::start(data.path(), &options).await;
    let id = s.queue_scan("Fake Scanner", "http://127.0.0.1:9/").await;
    // A plain-text "report": neither XML nor JSON.
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner(
                "Fake Scanner",
                &[&fixture("silent.sh"), "{output}", "0.1"],
                ""
            )
        ),
    );
    let mut agent = files.spawn(&["--once"]);
    assert_eq!(agent.wait().await, 0, "{}", agent.log_text());
    assert_eq!(
        s.status(id),
        TaskStatus::CompleteFailed,
        "{:#?}",
        s.history(id)
    );
    let log = agent.log_text();
    assert!(log.contains("the server refused the report"), "{log}");
    // Refused once, not retried: the task was decided.
    assert!(!log.contains("completeTask: will retry"), "{log}");
    assert!(!s.has_result(id).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_stops_the_agent_without_showing_either_key() {
    let data = tempfile::tempdir().unwrap();
    let s = TestServer::start(data.path(), &ServerOptions::default()).await;
    let files = AgentFiles::new(
        &s,
        &format!(
            "{FAST}\n{}",
            scanner("Fake Scanner", &[&fixture("fail.sh")], "")
        ),
    );
    let wrong = "wrong-api-key-0000000000000";
    let mut agent = files.spawn_env(&["--once"], &[("SCAN_QUEUE_TEST_API_KEY", wrong)]);
    assert_eq!(agent.wait().await, 1);
    let log = agent.log_text();
    assert!(log.contains("the server refused the API key"), "{log}");
    assert_no_secrets(&log, &[API_KEY, wrong]);
    assert!(!files.state_file().exists());
    s.stop().await;
}

#[test]
fn the_example_configurations_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let env = |name: &str| (name == "SCAN_QUEUE_API_KEY").then(|| "example-key".to_owned());
            let config = scan_queue_agent::Config::parse(&text, env)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                config
                    .scanners
                    .values()
                    .all(|s| s.uses(scan_queue_agent::Placeholder::TargetUrl))
            );
            checked.push(config.scanner_list());
        }
    }
    checked.sort();
    assert_eq!(checked, ["Nuclei", "OWASP Zed Attack Proxy", "Wapiti"]);
}
