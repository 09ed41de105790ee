//! The Scan Agent Tasks page in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, via fantoccini) against the real server on a loopback port.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`). Without them the test prints a SKIPPED line and passes, unless
//! `SCAN_QUEUE_REQUIRE_BROWSER=1` is set (CI sets it), in which case it fails.
//!
//! The browser only ever talks to 127.0.0.1. A screenshot of the page is saved as
//! `$CARGO_TARGET_TMPDIR/tasks-page.png` (and the failed task's page as `task-page.png`).

mod common;

use common::{API_KEY, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use scan_queue::{TaskId, TaskStatus};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The whole browser test's bound.
const TEST_BOUND: Duration = Duration::from_secs(60);
/// How long to wait for something to show on the page.
const WAIT: Duration = Duration::from_secs(10);

/// What an agent sends, hostile: it must show as text and never run.
const SCRIPT: &str = "<script>window.__xss=1;alert('xss')</script>";
const IMG: &str = "\"><img src=x onerror=\"window.__xss=2;alert(2)\">";

/// Whether the browser is installed; a missing one is a failure under
/// `SCAN_QUEUE_REQUIRE_BROWSER=1`.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        let required = std::env::var("SCAN_QUEUE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "SCAN_QUEUE_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: install chromium chromium-driver ({CHROMIUM} and {CHROMEDRIVER} are needed for the browser tests)"
        );
    }
    present
}

/// A chromedriver process this test started; killed (by its own handle) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(started.elapsed() < WAIT, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn start_browser(driver: &Driver, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        // Leave a dialog open, so that a script that managed to run would be seen.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("start a Chromium session")
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the text at `css` satisfies `ok`.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && ok(&t)
        {
            return t;
        }
        assert!(started.elapsed() < WAIT, "{css} never matched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(c: &Client, status: &str) -> u64 {
    text(c, &format!("[data-count=\"{status}\"]"))
        .await
        .parse()
        .unwrap()
}

async fn row_ids(c: &Client) -> Vec<u64> {
    let mut out = Vec::new();
    for row in c
        .find_all(Locator::Css("#tasks tr[data-task-id]"))
        .await
        .unwrap()
    {
        out.push(
            row.attr("data-task-id")
                .await
                .unwrap()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    out
}

/// No dialog is open and nothing injected exists or ran.
async fn assert_no_script_ran(c: &Client) {
    assert!(c.get_alert_text().await.is_err(), "a dialog opened");
    let probe = c
        .execute(
            "return [window.__xss === undefined, document.querySelectorAll('img').length, \
             document.scripts.length, document.scripts[0].src];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(probe[0], true, "an injected script ran");
    assert_eq!(probe[1], 0, "an injected element exists");
    assert_eq!(probe[2], 1, "only the page's own script");
    assert!(probe[3].as_str().unwrap().ends_with("/tasks/static/app.js"));
}

async fn queue(s: &TestServer, scanner: &str, url: &str) -> u64 {
    let r = s
        .form(
            "queueScan",
            &[
                ("applicationId", "7"),
                ("scannerType", scanner),
                ("targetURL", url),
            ],
        )
        .await;
    r["object"]["id"].as_u64().unwrap()
}

async fn take(s: &TestServer, agent: &str, scanners: &str, config: &str) -> (u64, String) {
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", scanners),
                ("scanAgentSecureKey", agent),
                ("agentConfig", config),
            ],
        )
        .await;
    let o = &r["object"];
    (
        o["taskId"].as_u64().unwrap(),
        o["secureTaskKey"].as_str().unwrap().to_owned(),
    )
}

const MINUTE_MS: u64 = 60_000;

/// The walk-through, as an operator would do it.
async fn walk_through(c: Client, s: TestServer, screenshot: PathBuf) {
    let origin = s.origin.clone();
    // An hour of history for the chart: scans queued, agents at work.
    for url in [
        "https://shop.example/",
        "https://blog.example/",
        "https://intranet.example/",
    ] {
        queue(&s, "zap", url).await;
    }
    let to_cancel = 3; // the last zap scan: still queued after the agent took 1 and 2
    s.clock.advance_ms(12 * MINUTE_MS);
    queue(&s, "burp", "https://shop.example/checkout").await;
    queue(&s, "burp", "https://api.example/v2").await;
    s.clock.advance_ms(9 * MINUTE_MS);
    let agent = s.agent_key().await;
    let (failed, key) = take(
        &s,
        &agent,
        "zap",
        &format!("scanagent.properties {SCRIPT}{IMG}"),
    )
    .await;
    s.update(failed, &format!("Spider 40% {IMG}"), &agent, &key)
        .await;
    let reason = format!("ZAP crashed: out of memory {SCRIPT}");
    s.fail(failed, &reason, &agent, &key).await;
    let (done, key) = take(&s, &agent, "zap", "scanagent.properties").await;
    s.complete(done, &agent, &key).await;
    s.clock.advance_ms(15 * MINUTE_MS);
    for url in [
        "https://crm.example/",
        "https://hr.example/",
        "https://wiki.example/",
    ] {
        queue(&s, "appscan", url).await;
    }
    let burp_agent = s.agent_key().await;
    let (held, _) = take(&s, &burp_agent, "burp", "burp-agent.properties").await;
    s.clock.advance_ms(8 * MINUTE_MS);
    let burp_uuid = {
        let q = s.server.queue();
        q.task(TaskId(held))
            .unwrap()
            .assignment()
            .unwrap()
            .agent()
            .to_string()
    };

    // Log in: the page sends a stranger to the login form.
    c.goto(&format!("{origin}/tasks")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/tasks/login")
    );
    c.find(Locator::Css("#api_key"))
        .await
        .unwrap()
        .send_keys(API_KEY)
        .await
        .unwrap();
    c.find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#list h2", |t| t == "Tasks").await;
    assert!(!c.current_url().await.unwrap().as_str().contains(API_KEY));
    // The session cookie is Secure, HttpOnly and SameSite=Strict, invisible to scripts.
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "scan_queue_session")
        .expect("session cookie");
    assert_eq!(session.secure(), Some(true));
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert_eq!(
        c.execute("return document.cookie", vec![]).await.unwrap(),
        ""
    );

    // Queued tasks appear: newest first; the counts update live, without a reload.
    assert_eq!(row_ids(&c).await, (1..=8).rev().collect::<Vec<_>>());
    let queued_before = count(&c, "QUEUED").await;
    let new = queue(&s, "webinspect", "https://new.example/").await;
    wait_text(&c, "[data-count=\"QUEUED\"]", |t| {
        t == (queued_before + 1).to_string()
    })
    .await;
    c.refresh().await.unwrap();
    wait_text(&c, "#list h2", |t| t == "Tasks").await;
    assert_eq!(row_ids(&c).await.first(), Some(&new));

    // Filter by status and scanner.
    c.find(Locator::Css("#filter select[name=status]"))
        .await
        .unwrap()
        .select_by_value("QUEUED")
        .await
        .unwrap();
    c.find(Locator::Css("#filter select[name=scanner]"))
        .await
        .unwrap()
        .select_by_value("Burp Suite Pro")
        .await
        .unwrap();
    c.find(Locator::Css("#filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#list h2", |t| t == "Tasks").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("status=QUEUED")
    );
    assert_eq!(row_ids(&c).await, [5]); // task 4 is held by the burp agent
    assert_eq!(text(&c, "#tasks td.scanner").await, "Burp Suite Pro");
    c.find(Locator::Css("#filter select[name=status]"))
        .await
        .unwrap()
        .select_by_value("COMPLETE_FAILED")
        .await
        .unwrap();
    c.find(Locator::Css("#filter select[name=scanner]"))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
    c.find(Locator::Css("#filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#list h2", |t| t == "Tasks").await;
    assert_eq!(row_ids(&c).await, [failed]);

    // Open the failed task: the agent's reason, as text; nothing it sent ran.
    c.find(Locator::Css(".task-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let history = wait_text(&c, "#messages", |t| t.contains("failed client-side")).await;
    assert!(history.contains(&format!(
        "ScanAgent reported that the scan task: {failed} had failed client-side for the following reason: {reason}"
    )), "{history}");
    assert!(history.contains(&format!("Spider 40% {IMG}")), "{history}");
    assert!(
        history.contains(&format!("agentConfig:\nscanagent.properties {SCRIPT}{IMG}")),
        "{history}"
    );
    assert_eq!(text(&c, "#task-status").await, "COMPLETE_FAILED");
    assert_no_script_ran(&c).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot.with_file_name("task-page.png"), png).unwrap();

    // The completed task's page shows its result; its download link serves the file to
    // the logged-in browser (fetched in the page, with the session's cookie).
    c.goto(&format!("{origin}/tasks/task/{done}"))
        .await
        .unwrap();
    assert_eq!(text(&c, "#result-name").await, "scanResults.xml");
    let link = c
        .find(fantoccini::Locator::Css("#download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link, format!("/tasks/task/{done}/result"));
    let downloaded = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(arguments[0]).then(r => r.text()).then(done, e => done('error: ' + e));",
            vec![serde_json::Value::String(link)],
        )
        .await
        .unwrap();
    assert_eq!(downloaded, "<xml/>");

    // Cancel a queued task from the page, after confirming.
    c.goto(&format!("{origin}/tasks/task/{to_cancel}"))
        .await
        .unwrap();
    let deleted_before = count_from_list(&c, &origin, "COMPLETE_DELETED").await;
    c.goto(&format!("{origin}/tasks/task/{to_cancel}"))
        .await
        .unwrap();
    c.find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#confirm h2", |t| {
        t == format!("Cancel task {to_cancel}?")
    })
    .await;
    c.find(Locator::Css("#confirm-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#flash", |t| {
        t == format!("Task {to_cancel} cancelled.")
    })
    .await;
    assert_eq!(text(&c, "#task-status").await, "COMPLETE_DELETED");
    assert_eq!(
        s.server.queue().task(TaskId(to_cancel)).unwrap().status(),
        TaskStatus::CompleteDeleted
    );
    assert_eq!(
        count_from_list(&c, &origin, "COMPLETE_DELETED").await,
        deleted_before + 1
    );

    // Revoke the burp agent from the page: its task goes back to the queue.
    let queued_before = count(&c, "QUEUED").await;
    let agents_before = count(&c, "AGENTS").await;
    c.find(Locator::Css(&format!(
        "tr[data-agent=\"{burp_uuid}\"] a.revoke"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_text(&c, "#confirm h2", |t| t.contains(&burp_uuid)).await;
    c.find(Locator::Css("#confirm-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#flash", |t| {
        t.contains("1 task(s) it held returned to the queue")
    })
    .await;
    assert_eq!(count(&c, "QUEUED").await, queued_before + 1);
    assert_eq!(count(&c, "AGENTS").await, agents_before - 1);
    assert!(
        c.find(Locator::Css(&format!("tr[data-agent=\"{burp_uuid}\"]")))
            .await
            .is_err()
    );
    assert_eq!(
        s.server.queue().task(TaskId(held)).unwrap().status(),
        TaskStatus::Queued
    );
    assert_no_script_ran(&c).await;

    // The page under /threadfix, for the screenshot, once the chart has data.
    c.goto(&format!("{origin}/threadfix/tasks")).await.unwrap();
    wait_text(&c, "#updated", |t| t == "(live)").await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(&screenshot, png).unwrap();
    println!("screenshot: {}", screenshot.display());
    s.stop().await;
}

async fn count_from_list(c: &Client, origin: &str, status: &str) -> u64 {
    c.goto(&format!("{origin}/tasks")).await.unwrap();
    count(c, status).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_agent_tasks_page_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let started = Instant::now();
    let profile = tempfile::tempdir().unwrap();
    let driver = start_driver().await;
    let client = start_browser(&driver, profile.path()).await;
    let server = TestServer::start().await;
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tasks-page.png");
    let run = tokio::spawn(walk_through(client.clone(), server, screenshot));
    let outcome = tokio::time::timeout(TEST_BOUND, run).await;
    // Always end the browser session (Chromium quits), then chromedriver (dropped).
    let _ = client.close().await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => println!(
            "browser walk-through: {:.1}s",
            started.elapsed().as_secs_f64()
        ),
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("the browser walk-through took over {TEST_BOUND:?}"),
    }
}
