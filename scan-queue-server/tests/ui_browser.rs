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
const TEST_BOUND: Duration = Duration::from_secs(90);
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

/// The text at `css`, found again if the live refresh replaced the element meanwhile.
async fn text(c: &Client, css: &str) -> String {
    wait_text(c, css, |_| true).await
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

/// The ids of the listed rows, read in one script: the page's live refresh replaces rows,
/// so element handles found one call earlier may already be stale.
async fn row_ids(c: &Client) -> Vec<u64> {
    let ids = c
        .execute(
            "return Array.from(document.querySelectorAll('#tasks tr[data-task-id]'), \
             r => Number(r.dataset.taskId));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(ids).unwrap()
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
/// Chooses a status and a scanner in the filter form, submits it and waits for the filtered
/// page: the heading already says "Tasks" before it loads, so wait for its URL too.
async fn filter(c: &Client, status: &str, scanner: &str) {
    let form = c.find(Locator::Css("#filter")).await.unwrap();
    form.find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value(status)
        .await
        .unwrap();
    form.find(Locator::Css("select[name=scanner]"))
        .await
        .unwrap()
        .select_by_value(scanner)
        .await
        .unwrap();
    form.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let want = format!("status={status}");
    let started = Instant::now();
    while !c.current_url().await.unwrap().as_str().contains(&want) {
        assert!(started.elapsed() < WAIT, "the filter {want} never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_text(c, "#list h2", |t| t == "Tasks").await;
}

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
    log_in(&c, &origin).await;
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
    filter(&c, "QUEUED", "Burp Suite Pro").await;
    assert_eq!(row_ids(&c).await, [5]); // task 4 is held by the burp agent
    assert_eq!(text(&c, "#tasks td.scanner").await, "Burp Suite Pro");
    filter(&c, "COMPLETE_FAILED", "").await;
    assert_eq!(row_ids(&c).await, [failed]);

    // Open the failed task: the agent's reason, as text; nothing it sent ran.
    click(&c, ".task-link").await;
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
    wait_text(&c, "#updated", |t| t.starts_with("Live: updated")).await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(&screenshot, png).unwrap();
    println!("screenshot: {}", screenshot.display());
    s.stop().await;
}

/// Opens the page, is sent to the login form, logs in with the API key.
async fn log_in(c: &Client, origin: &str) {
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
    wait_text(c, "#list h2", |t| t == "Tasks").await;
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`): viewport and
/// `prefers-color-scheme` emulation.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "cmd": self.0, "params": self.1 });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

async fn cdp(c: &Client, cmd: &'static str, params: Value) {
    c.issue_cmd(Cdp(cmd, params)).await.unwrap();
}

async fn color_scheme(c: &Client, scheme: &str) {
    cdp(
        c,
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
    )
    .await;
}

/// The page's width and the document's scrolling width (equal: nothing scrolls sideways).
async fn widths(c: &Client) -> (u64, u64) {
    let w = c
        .execute(
            "return [window.innerWidth, document.documentElement.scrollWidth];",
            vec![],
        )
        .await
        .unwrap();
    (w[0].as_u64().unwrap(), w[1].as_u64().unwrap())
}

async fn save(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(dir.join(name), png).unwrap();
}

/// Clicks the element at `css`, finding it again if the live refresh replaced it between the
/// find and the click (a stale element reference).
async fn click(c: &Client, css: &str) {
    let started = Instant::now();
    loop {
        let found = c.find(Locator::Css(css)).await;
        let err = match found {
            Ok(e) => match e.click().await {
                Ok(_) => return,
                Err(e) => e,
            },
            Err(e) => e,
        };
        assert!(started.elapsed() < WAIT, "{css}: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(c: &Client, id: u64) -> String {
    text(c, &format!("tr[data-task-id=\"{id}\"] td.status .badge")).await
}

/// The console as an operator uses it: the table and the agents change while the page is
/// open (an agent takes and completes a task; no reload), pause and resume, search by URL,
/// bulk cancel of that selection with one confirmation, retry from a task's page (which then
/// follows the new task live), and the page at 390 px and in dark mode.
async fn console_walk(c: Client, s: TestServer, dir: PathBuf) {
    let origin = s.origin.clone();
    let shop = queue(&s, "zap", "https://shop.example/").await;
    let mut bulk = Vec::new();
    for (scanner, url) in [
        ("zap", "https://bulk-1.example/"),
        ("zap", "https://bulk-2.example/"),
        ("burp", "https://bulk-3.example/a?b=c"),
    ] {
        bulk.push(queue(&s, scanner, url).await);
    }
    let keep = queue(&s, "zap", "https://keep.example/").await;
    log_in(&c, &origin).await;
    wait_text(&c, "#updated", |t| t.starts_with("Live: updated")).await;
    assert_eq!(status_of(&c, shop).await, "QUEUED");
    assert_eq!(text(&c, "#agent-table tbody").await, "No scan agents.");
    // A mark a reload would wipe.
    c.execute("window.__stayed = 1; return 0;", vec![])
        .await
        .unwrap();

    // An agent takes the oldest zap task: the row and the agent list change live.
    let agent = s.agent_key().await;
    let (taken, key) = take(
        &s,
        &agent,
        "zap",
        "scan-queue-agent 0.1.0\nname=builder-7\nhost=scan-01\nos=linux",
    )
    .await;
    assert_eq!(taken, shop);
    wait_text(&c, &format!("tr[data-task-id=\"{shop}\"] td.status"), |t| {
        t == "ASSIGNED"
    })
    .await;
    wait_text(&c, &format!("tr[data-task-id=\"{shop}\"] td.agent"), |t| {
        t == "builder-7"
    })
    .await;
    let agents = wait_text(&c, "#agent-table tbody", |t| t.contains("builder-7")).await;
    assert!(
        agents.contains("scan-01 (linux)") && agents.contains("live"),
        "{agents}"
    );
    assert_eq!(text(&c, "#agent-table td.holds a").await, shop.to_string());
    assert_eq!(count(&c, "AGENTS").await, 1);
    s.complete(shop, &agent, &key).await;
    wait_text(&c, &format!("tr[data-task-id=\"{shop}\"] td.status"), |t| {
        t.starts_with("COMPLETE_SUCCESSFUL")
    })
    .await;
    wait_text(&c, "#agent-table td.holds", str::is_empty).await;
    assert_eq!(count(&c, "COMPLETE_SUCCESSFUL").await, 1);
    assert_eq!(
        c.execute("return window.__stayed === 1;", vec![])
            .await
            .unwrap(),
        true,
        "the page was not reloaded"
    );

    // Paused, the page stays as it was; resumed, it catches up.
    click(&c, "#live-toggle").await;
    wait_text(&c, "#updated", |t| t.starts_with("Paused")).await;
    let late = queue(&s, "zap", "https://late.example/").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!row_ids(&c).await.contains(&late), "paused");
    click(&c, "#live-toggle").await;
    let started = Instant::now();
    while !row_ids(&c).await.contains(&late) {
        assert!(started.elapsed() < WAIT, "resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Search by URL: the three bulk tasks, counted.
    c.find(Locator::Css("#filter input[name=url]"))
        .await
        .unwrap()
        .send_keys("BULK")
        .await
        .unwrap();
    click(&c, "#filter button").await;
    wait_text(&c, "#total", |t| t == "3").await;
    let mut newest_first = bulk.clone();
    newest_first.reverse();
    assert_eq!(row_ids(&c).await, newest_first);

    // Bulk cancel of that selection: one confirmation.
    click(&c, "#bulk-cancel").await;
    wait_text(&c, "#confirm h2", |t| t == "Cancel 3 task(s)?").await;
    click(&c, "#confirm-button").await;
    wait_text(&c, "#flash", |t| t == "3 task(s) cancelled.").await;
    // Back on the same selection, now cancelled.
    assert_eq!(row_ids(&c).await, newest_first);
    assert_eq!(status_of(&c, bulk[0]).await, "COMPLETE_DELETED");
    for id in &bulk {
        assert_eq!(
            s.server.queue().task(TaskId(*id)).unwrap().status(),
            TaskStatus::CompleteDeleted
        );
    }
    for id in [keep, late] {
        assert_eq!(
            s.server.queue().task(TaskId(id)).unwrap().status(),
            TaskStatus::Queued
        );
    }

    // Retry a cancelled task from its page: a new task, linked both ways, followed live.
    c.goto(&format!("{origin}/tasks/task/{}", bulk[0]))
        .await
        .unwrap();
    click(&c, "#retry").await;
    let flash = wait_text(&c, "#flash", |t| t.contains("a retry of task")).await;
    let retry: u64 = flash
        .trim_start_matches("Task ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(text(&c, "#retry-of").await, format!("task {}", bulk[0]));
    assert_eq!(text(&c, "#task-url").await, "https://bulk-1.example/");
    assert_eq!(text(&c, "#task-status").await, "QUEUED");
    // The agent takes the zap tasks in order (keep, late, then the retry); the page follows.
    for _ in 0..3 {
        take(&s, &agent, "zap", "name=builder-7").await;
    }
    wait_text(&c, "#task-status", |t| t == "ASSIGNED").await;
    wait_text(&c, "#task-agent", |t| t == "builder-7").await;
    wait_text(&c, "#task-stale", |t| t.starts_with("The status changed")).await;
    wait_text(&c, "#messages", |t| {
        t.contains("agentConfig:\nname=builder-7")
    })
    .await;
    save(&c, &dir, "task-page-live.png").await;
    c.goto(&format!("{origin}/tasks/task/{}", bulk[0]))
        .await
        .unwrap();
    assert_eq!(text(&c, "#retried-as").await, format!("task {retry}"));

    // 390 px wide: nothing scrolls sideways, light and dark.
    cdp(
        &c,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    )
    .await;
    for (path, name) in [
        (format!("{origin}/tasks"), "tasks-390"),
        (format!("{origin}/tasks/task/{retry}"), "task-390"),
    ] {
        for scheme in ["light", "dark"] {
            color_scheme(&c, scheme).await;
            c.goto(&path).await.unwrap();
            wait_text(&c, "#updated", |t| t.starts_with("Live: updated")).await;
            let (inner, scroll) = widths(&c).await;
            assert_eq!(inner, 390);
            assert!(
                scroll <= inner,
                "{name} {scheme}: {scroll} px wide in a {inner} px viewport"
            );
            save(&c, &dir, &format!("{name}-{scheme}.png")).await;
        }
    }
    cdp(&c, "Emulation.clearDeviceMetricsOverride", json!({})).await;
    // Dark mode at full width: the page follows prefers-color-scheme.
    c.goto(&format!("{origin}/tasks")).await.unwrap();
    wait_text(&c, "#updated", |t| t.starts_with("Live: updated")).await;
    let background = c
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, "rgb(18, 21, 26)");
    save(&c, &dir, "tasks-page-dark.png").await;
    color_scheme(&c, "light").await;
    c.refresh().await.unwrap();
    let background = c
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, "rgb(246, 247, 249)");
    assert_no_script_ran(&c).await;
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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).to_owned();
    let screenshot = dir.join("tasks-page.png");
    let run = tokio::spawn({
        let c = client.clone();
        async move {
            walk_through(c.clone(), server, screenshot).await;
            let walked = started.elapsed();
            console_walk(c, TestServer::start().await, dir).await;
            println!(
                "walk-through {:.1}s, console {:.1}s",
                walked.as_secs_f64(),
                (started.elapsed() - walked).as_secs_f64()
            );
        }
    });
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
