//! The Scan Agent Tasks page and `/metrics` over plain HTTP: access (API key, session
//! cookie), CSRF refusal, escaping of what agents send, and `/metrics` parsed by an
//! independent Prometheus text-format parser against the queue's statistics.

mod common;

use common::{API_KEY, TestServer};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use scan_queue::{TaskId, TaskStatus};
use serde_json::Value;

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in; returns the `Cookie` header value and the page's CSRF token.
async fn login(s: &TestServer, prefix: &str) -> (String, String) {
    let r = client()
        .post(format!("{}{prefix}/tasks/login", s.origin))
        .form(&[("api_key", API_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], format!("{prefix}/tasks"));
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|f| f == flag), "{flag} in {set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = get_page(s, &format!("{prefix}/tasks"), &cookie).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn get_page(s: &TestServer, path: &str, cookie: &str) -> String {
    let r = client()
        .get(format!("{}{path}", s.origin))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    r.text().await.unwrap()
}

async fn post(
    s: &TestServer,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", s.origin)).form(form);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn metrics(s: &TestServer, auth: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}/metrics", s.origin));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_page_and_metrics_refuse_requests_without_the_key_or_a_session() {
    let s = TestServer::start().await;
    let id = s.queue_scan("zap").await;
    for path in [
        "/tasks",
        "/threadfix/tasks",
        &format!("/tasks/task/{id}"),
        &format!("/tasks/task/{id}/cancel"),
    ] {
        let r = client()
            .get(format!("{}{path}", s.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.headers()[LOCATION]
                .to_str()
                .unwrap()
                .ends_with("/tasks/login")
        );
        assert!(!r.text().await.unwrap().contains("http://targeturl"));
    }
    let r = client()
        .get(format!("{}/tasks", s.origin))
        .header(COOKIE, "scan_queue_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = client()
        .get(format!("{}/tasks/summary", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Actions without a session change nothing, token or not.
    let r = post(
        &s,
        &format!("/tasks/task/{id}/cancel"),
        None,
        &[("csrf", "x")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post(
        &s,
        "/tasks/queue",
        None,
        &[("applicationId", "1"), ("scannerType", "zap")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.server.queue().stats().counters.queued, 1);
    assert_eq!(
        s.server.queue().task(TaskId(id)).unwrap().status(),
        TaskStatus::Queued
    );
    // A wrong key at the login form: no cookie.
    let r = post(&s, "/tasks/login", None, &[("api_key", "wrong")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // /metrics: no key, a wrong key, the key in a query string: refused.
    for auth in [
        None,
        Some("APIKEY wrong"),
        Some("Bearer wrong"),
        Some("Basic x"),
    ] {
        let r = metrics(&s, auth).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(!r.text().await.unwrap().contains("scan_queue_"));
    }
    let r = client()
        .get(format!("{}/metrics?apiKey={API_KEY}", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The key (either scheme) or a session opens it.
    for auth in [format!("APIKEY {API_KEY}"), format!("Bearer {API_KEY}")] {
        assert_eq!(metrics(&s, Some(&auth)).await.status(), StatusCode::OK);
    }
    let (cookie, _) = login(&s, "").await;
    let r = client()
        .get(format!("{}/threadfix/metrics", s.origin))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn pages_summary_and_paging() {
    let s = TestServer::start().await;
    for _ in 0..60 {
        s.queue_scan("zap").await;
    }
    s.queue_scan("burp").await;
    let (cookie, _) = login(&s, "").await;
    let first = get_page(&s, "/tasks", &cookie).await;
    assert_eq!(first.matches("<tr data-task-id=").count(), 50);
    assert!(first.contains("<tr data-task-id=\"61\">"));
    assert!(first.contains("href=\"/tasks?from=12\""), "next link");
    assert!(first.contains(">61</span> task(s) match"), "total");
    let second = get_page(&s, "/tasks?from=12", &cookie).await;
    assert_eq!(second.matches("<tr data-task-id=").count(), 11);
    assert!(!second.contains("id=\"next\""));
    assert!(second.contains("href=\"/tasks?to=11\""), "previous link");
    // The Id, Created and Status headers sort.
    assert!(first.contains("href=\"/tasks?sort=oldest\""));
    assert!(first.contains("href=\"/tasks?sort=status\""));
    let oldest = get_page(&s, "/tasks?sort=oldest", &cookie).await;
    assert!(oldest.contains("<tr data-task-id=\"1\">"));
    assert!(!oldest.contains("<tr data-task-id=\"61\">"));
    assert!(
        oldest.contains("href=\"/tasks?sort=oldest&amp;from=50\""),
        "next link keeps the order"
    );
    let burp = get_page(&s, "/tasks?scanner=burp&status=QUEUED", &cookie).await;
    assert_eq!(burp.matches("<tr data-task-id=").count(), 1);
    let detail = get_page(&s, "/threadfix/tasks/task/61", &cookie).await;
    assert!(detail.contains("Scan queued at: "));
    let r = client()
        .get(format!("{}/tasks/task/999", s.origin))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let summary: serde_json::Value = client()
        .get(format!("{}/tasks/summary", s.origin))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["counts"]["QUEUED"], 61);
    assert_eq!(summary["counts"]["COMPLETE_FAILED"], 0);
    assert_eq!(summary["agents"], 0);
    let depth = summary["depth"].as_array().unwrap();
    assert_eq!(depth.last().unwrap()["queued"], 61);
    s.stop().await;
}

#[tokio::test]
async fn every_action_needs_the_sessions_csrf_token() {
    let s = TestServer::start().await;
    let id = s.queue_scan("zap").await;
    let agent = s.agent_key().await;
    let (_, _) = s.request_task(&agent, "zap").await.unwrap();
    let uuid = s.server.queue().agents().next().unwrap().to_string();
    let (cookie, csrf) = login(&s, "/threadfix").await;
    let (other_cookie, other_csrf) = login(&s, "").await;
    assert_ne!(csrf, other_csrf);
    let cancel = format!("/tasks/task/{id}/cancel");
    let revoke = format!("/threadfix/tasks/agent/{uuid}/revoke");
    for (path, form) in [
        (cancel.as_str(), vec![]),
        (cancel.as_str(), vec![("csrf", "")]),
        (cancel.as_str(), vec![("csrf", "forged")]),
        (cancel.as_str(), vec![("csrf", other_csrf.as_str())]),
        (revoke.as_str(), vec![("csrf", other_csrf.as_str())]),
        (
            "/tasks/queue",
            vec![("applicationId", "1"), ("scannerType", "zap")],
        ),
        ("/tasks/logout", vec![]),
    ] {
        let r = post(&s, path, Some(&cookie), &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    {
        let q = s.server.queue();
        assert_eq!(q.task(TaskId(id)).unwrap().status(), TaskStatus::Assigned);
        assert_eq!(q.stats().agents, 1);
        assert_eq!(q.stats().counters.queued, 1);
    }
    // The right token for the session: done, and redirected to a page that shows it.
    let r = post(&s, &revoke, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/threadfix/tasks?done=revoked&n=1");
    assert_eq!(
        s.server.queue().task(TaskId(id)).unwrap().status(),
        TaskStatus::Queued
    );
    let r = post(&s, &cancel, Some(&other_cookie), &[("csrf", &other_csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = get_page(&s, r.headers()[LOCATION].to_str().unwrap(), &other_cookie).await;
    assert!(page.contains(&format!("Task {id} cancelled.")));
    assert!(page.contains("COMPLETE_DELETED"));
    // Cancelling again repeats the same answer (the core's retry rule).
    let r = post(&s, &cancel, Some(&other_cookie), &[("csrf", &other_csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A form posted from another site is refused even with the right token and cookie (a
    // browser says so in Sec-Fetch-Site), and so is a login from another site.
    let r = client()
        .post(format!("{}{cancel}", s.origin))
        .header(COOKIE, &other_cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("csrf", &other_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .post(format!("{}/tasks/login", s.origin))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("api_key", API_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // Logout ends the session.
    let r = post(
        &s,
        "/tasks/logout",
        Some(&other_cookie),
        &[("csrf", &other_csrf)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = client()
        .get(format!("{}/tasks", s.origin))
        .header(COOKIE, &other_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

const SCRIPT: &str = "<script>window.__xss=1;alert('xss')</script>";
const IMG: &str = "\"><img src=x onerror=\"window.__xss=2;alert(2)\">";

#[tokio::test]
async fn what_agents_send_is_rendered_as_text() {
    let s = TestServer::start().await;
    let id = s.queue_scan("zap").await;
    let agent = s.agent_key().await;
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", "zap"),
                ("scanAgentSecureKey", &agent),
                ("agentConfig", &format!("{SCRIPT}{IMG}")),
            ],
        )
        .await;
    let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    s.update(id, &format!("progress {IMG}"), &agent, &task_key)
        .await;
    s.fail(id, SCRIPT, &agent, &task_key).await;
    let (cookie, _) = login(&s, "").await;
    let page = get_page(&s, &format!("/tasks/task/{id}"), &cookie).await;
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<script>window"), "{page}");
    assert!(!page.contains("onerror=\""), "{page}");
    assert!(page.contains("&lt;script&gt;window.__xss=1;alert('xss')&lt;/script&gt;"));
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=&quot;window.__xss=2;alert(2)&quot;&gt;")
    );
    assert!(page.contains("had failed client-side for the following reason: &lt;script&gt;"));
    // Keys never appear on a page.
    assert!(!page.contains(&agent) && !page.contains(&task_key));
    let list = get_page(&s, "/tasks", &cookie).await;
    assert!(!list.contains(&agent) && !list.contains(&task_key));
    // The only script is the static file.
    assert_eq!(list.matches("<script").count(), 1);
    assert!(list.contains("<script src=\"/tasks/static/app.js\" defer></script>"));
    s.stop().await;
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("{name} {label:?} missing"));
    match sample.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_match_the_queue() {
    let s = TestServer::start_with(|c| c.queue.lease_ms = 1_000).await;
    let agent = s.agent_key().await;
    for _ in 0..5 {
        s.queue_scan("zap").await;
    }
    let (a, ka) = s.request_task(&agent, "zap").await.unwrap();
    s.complete(a, &agent, &ka).await;
    let (b, kb) = s.request_task(&agent, "zap").await.unwrap();
    s.fail(b, "boom", &agent, &kb).await;
    let (c, _) = s.request_task(&agent, "zap").await.unwrap();
    let r = s.update(c, "spider", &agent, "wrong-task-key").await;
    assert_eq!(r["success"], false);
    s.clock.advance_ms(5_000); // the lease runs out: requeued
    let r = s
        .form(
            "requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", "not-a-key")],
        )
        .await;
    assert_eq!(r["success"], false);
    let _ = s.fail(b, "again", &agent, "wrong-task-key").await;
    let refused = client()
        .post(s.url("failTask"))
        .header("Authorization", "APIKEY nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    let r = metrics(&s, Some(&format!("APIKEY {API_KEY}"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let stats = s.server.queue().stats();
    for status in TaskStatus::ALL {
        assert_eq!(
            value(&scrape, "scan_queue_tasks", Some(("status", status.name()))),
            stats.count(status) as f64,
            "{status}"
        );
    }
    assert_eq!(stats.count(TaskStatus::Queued), 3);
    assert_eq!(value(&scrape, "scan_queue_agents", None), 1.0);
    let c = &stats.counters;
    for (name, expected) in [
        ("scan_queue_scans_queued_total", c.queued),
        ("scan_queue_assignments_total", c.assignments),
        ("scan_queue_completions_total", c.completions),
        ("scan_queue_failures_total", c.failures),
        ("scan_queue_timeouts_total", c.timeouts),
        ("scan_queue_requeues_total", c.requeues),
        ("scan_queue_lease_expiries_total", c.lease_expiries),
        (
            "scan_queue_rejected_key_checks_total",
            stats.rejected_key_checks,
        ),
    ] {
        assert_eq!(value(&scrape, name, None), expected as f64, "{name}");
    }
    assert_eq!(
        (c.assignments, c.completions, c.failures, c.requeues),
        (3, 1, 1, 1)
    );
    assert!(stats.rejected_key_checks >= 1);
    assert_eq!(
        value(&scrape, "scan_queue_api_key_rejections_total", None),
        1.0
    );
    let http = |endpoint: &str, outcome: &str| {
        scrape
            .samples
            .iter()
            .find(|x| {
                x.metric == "scan_queue_http_requests_total"
                    && x.labels.get("endpoint") == Some(endpoint)
                    && x.labels.get("outcome") == Some(outcome)
            })
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => panic!(),
            })
    };
    assert_eq!(http("queueScan", "ok"), Some(5.0));
    assert_eq!(http("requestTask", "ok"), Some(3.0));
    assert_eq!(http("failTask", "unauthenticated"), Some(1.0));
    assert_eq!(http("failTask", "ok"), Some(1.0));
    assert_eq!(http("failTask", "refused"), Some(1.0));
    assert_eq!(
        scrape.docs.get("scan_queue_tasks").map(String::as_str),
        Some("Retained tasks per status (finished tasks until evicted).")
    );
    assert_eq!(value(&scrape, "scan_queue_active", None), 1.0);
    // Every metric printed is in the README's table.
    let readme = include_str!("../../README.md");
    let table = &readme[readme.find("| metric | type | what |").unwrap()..];
    for name in scrape.docs.keys() {
        assert!(
            table.contains(&format!("`{name}`")) || table.contains(&format!("`{name}{{")),
            "{name} is not in the README's metrics table"
        );
    }
    s.stop().await;
}

/// A completed task's page shows its result and downloads it behind the session; the list
/// filters by application.
#[tokio::test]
async fn a_tasks_result_on_its_page_and_the_application_filter() {
    let s = TestServer::start().await;
    let app7 = s
        .form(
            "queueScan",
            &[("applicationId", "7"), ("scannerType", "zap")],
        )
        .await["object"]["id"]
        .as_u64()
        .unwrap();
    s.queue_scan("zap").await;
    let agent = s.agent_key().await;
    let (id, key) = s
        .request_task(&agent, "OWASP Zed Attack Proxy")
        .await
        .unwrap();
    assert_eq!(id, app7);
    let r = s.complete(id, &agent, &key).await;
    assert_eq!(r["success"], true, "{r}");
    let (cookie, _) = login(&s, "").await;
    let page = get_page(&s, &format!("/tasks/task/{id}"), &cookie).await;
    assert!(page.contains("id=\"result\""), "{page}");
    assert!(page.contains("scanResults.xml"));
    // sha256("<xml/>"), computed independently (Python's hashlib).
    assert!(page.contains("6eb820e0f9762c611c2a77189f686afeca64dfb212e023017e0346e7ab826c39"));
    let href = format!("/tasks/task/{id}/result");
    assert!(page.contains(&format!("href=\"{href}\"")), "{page}");
    let r = client()
        .get(format!("{}{href}", s.origin))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"<xml/>");
    // Without a session: refused, no bytes.
    let r = client()
        .get(format!("{}{href}", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.text().await.unwrap().contains("<xml/>"));
    // The application filter.
    let seven = get_page(&s, "/tasks?application=7", &cookie).await;
    assert_eq!(seven.matches("<tr data-task-id=").count(), 1);
    assert!(seven.contains(&format!("<tr data-task-id=\"{app7}\">")));
    let one = get_page(&s, "/tasks?application=1", &cookie).await;
    assert_eq!(one.matches("<tr data-task-id=").count(), 1);
    s.stop().await;
}

async fn live(s: &TestServer, path: &str, cookie: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", s.origin))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn queue_url(s: &TestServer, scanner: &str, url: &str) -> u64 {
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

async fn take(s: &TestServer, agent: &str, config: &str) -> (u64, String) {
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", "zap"),
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

const BUILDER: &str = "scan-queue-agent 0.1.0\nname=builder-7\nhost=scan-01\nos=linux";

/// The JSON the live page polls: rows with reason, time in status and the agent's name;
/// agents with name, host, last seen, liveness and what they hold; filters by URL and agent;
/// a timed-out task keeps the agent of its last attempt; never a key.
#[tokio::test]
async fn the_live_json_follows_tasks_and_agents() {
    let s = TestServer::start_with(|c| {
        c.queue.lease_ms = 60_000;
        c.queue.max_attempts = 1;
    })
    .await;
    let (cookie, _) = login(&s, "").await;
    let shop = queue_url(&s, "zap", "https://shop.example/cart").await;
    let blog = queue_url(&s, "zap", "https://blog.example/").await;
    let idle = s.agent_key().await;
    let agent = s.agent_key().await;
    let (taken, key) = take(&s, &agent, BUILDER).await;
    assert_eq!(taken, shop);
    s.clock.advance_ms(5_000);
    s.update(shop, "Spider 10%", &agent, &key).await;
    s.clock.advance_ms(3_000);
    let j = live(&s, "/tasks/live.json", &cookie).await;
    let text = j.to_string();
    assert!(
        !text.contains(&agent) && !text.contains(&key) && !text.contains(&idle),
        "no key"
    );
    assert_eq!(j["counts"]["IN_PROGRESS"], 1);
    assert_eq!(j["tasks"]["total"], 2);
    let rows = j["tasks"]["rows"].as_array().unwrap();
    assert_eq!(rows[0]["id"], blog);
    let row = &rows[1];
    assert_eq!(row["status"], "IN_PROGRESS");
    assert_eq!(row["agentName"], "builder-7");
    assert_eq!(
        j["now"].as_u64().unwrap() - row["sinceMs"].as_u64().unwrap(),
        3_000
    );
    assert_eq!(j["agents"]["total"], 2);
    assert_eq!(j["agents"]["live"], 1, "the idle agent was never seen");
    let named = j["agents"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "builder-7")
        .unwrap();
    assert_eq!(named["host"], "scan-01");
    assert_eq!(named["os"], "linux");
    assert_eq!(named["live"], true);
    assert_eq!(named["lastSeenMs"], j["now"].as_u64().unwrap() - 3_000);
    assert_eq!(named["tasks"][0]["id"], shop);

    // Search by URL substring (any case) and by agent name; the page counts them.
    let by_url = live(&s, "/tasks/live.json?url=SHOP.example", &cookie).await;
    assert_eq!(by_url["tasks"]["total"], 1);
    assert_eq!(by_url["tasks"]["rows"][0]["id"], shop);
    let by_agent = live(&s, "/tasks/live.json?agent=builder", &cookie).await;
    assert_eq!(by_agent["tasks"]["rows"][0]["id"], shop);
    assert_eq!(by_agent["tasks"]["total"], 1);
    let page = get_page(&s, "/tasks?url=shop", &cookie).await;
    assert_eq!(page.matches("<tr data-task-id=").count(), 1);

    // The lease of the only attempt runs out: the task keeps its agent, with a reason.
    s.clock.advance_ms(120_000);
    s.server.wake_timer();
    let started = std::time::Instant::now();
    let timed_out = loop {
        let j = live(&s, &format!("/tasks/task/{shop}/live.json"), &cookie).await;
        if j["task"]["status"] == "COMPLETE_TIMEDOUT" {
            break j;
        }
        assert!(started.elapsed().as_secs() < 10, "{j}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(timed_out["task"]["agentName"], "builder-7");
    assert!(timed_out["task"]["agent"].as_str().unwrap().len() == 36);
    assert!(
        timed_out["task"]["reason"]
            .as_str()
            .unwrap()
            .contains("Lease expired")
    );
    let j = live(&s, "/tasks/live.json", &cookie).await;
    assert_eq!(j["agents"]["live"], 0, "silent longer than the lease");
    s.stop().await;
}

/// Past the core's bound on a task's history, the task's page keeps the first entries
/// (queued, the assignment with its agentConfig) and the newest, with the count between.
#[tokio::test]
async fn a_long_history_keeps_its_first_entries_and_says_how_many_are_elided() {
    let s = TestServer::start_with(|c| c.queue.max_status_history = 10).await;
    let (cookie, _) = login(&s, "").await;
    let id = queue_url(&s, "zap", "https://shop.example/").await;
    let agent = s.agent_key().await;
    let (_, key) = take(&s, &agent, BUILDER).await;
    for i in 1..=30 {
        s.update(id, &format!("progress {i}"), &agent, &key).await;
    }
    let j = live(&s, &format!("/tasks/task/{id}/live.json"), &cookie).await;
    let head: Vec<&str> = j["head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(head[0].starts_with("Scan queued at: "), "{head:?}");
    assert!(
        head[1].contains("agentConfig:\nscan-queue-agent 0.1.0\nname=builder-7"),
        "{head:?}"
    );
    assert_eq!(head[2], "progress 1");
    let history = j["history"].as_array().unwrap();
    assert_eq!(history.len(), 10);
    assert_eq!(history.last().unwrap()["message"], "progress 30");
    assert_eq!(history[0]["id"], 23);
    assert_eq!(j["elided"], 19, "entries 4 to 22");
    let page = get_page(&s, &format!("/tasks/task/{id}"), &cookie).await;
    assert!(page.contains("… 19 message(s) not kept …"));
    assert!(page.contains("name=builder-7"));
    s.stop().await;
}

/// Retry (linked both ways) and bulk actions over a filtered selection, confirmed once;
/// journaled: a restart from the same data directory shows the same.
#[tokio::test]
async fn retry_and_bulk_actions_are_journaled_and_linked() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    let s = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    let (cookie, csrf) = login(&s, "").await;
    let failed = queue_url(&s, "zap", "https://shop.example/").await;
    let agent = s.agent_key().await;
    let (_, key) = take(&s, &agent, BUILDER).await;
    s.fail(failed, "ZAP crashed", &agent, &key).await;
    let r = post(
        &s,
        &format!("/tasks/task/{failed}/retry"),
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let retry = failed + 1;
    assert_eq!(
        r.headers()[LOCATION],
        format!("/tasks/task/{retry}?done=retried&id={retry}&of={failed}")
    );
    let old = live(&s, &format!("/tasks/task/{failed}/live.json"), &cookie).await;
    assert_eq!(old["task"]["retriedAs"], retry);
    let new = live(&s, &format!("/tasks/task/{retry}/live.json"), &cookie).await;
    assert_eq!(new["task"]["retryOf"], failed);
    assert_eq!(new["task"]["status"], "QUEUED");
    assert_eq!(new["task"]["targetUrl"], "https://shop.example/");
    assert_eq!(new["task"]["scanner"], old["task"]["scanner"]);
    // Once only; and a queued task is not retried.
    let again = post(
        &s,
        &format!("/tasks/task/{failed}/retry"),
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let queued = post(
        &s,
        &format!("/tasks/task/{retry}/retry"),
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(queued.status(), StatusCode::CONFLICT);
    let no_csrf = post(
        &s,
        &format!("/tasks/task/{failed}/retry"),
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);

    // Bulk cancel of the tasks whose URL holds "bulk": one confirmation, then one POST.
    let mut bulk = Vec::new();
    for i in 0..5 {
        bulk.push(queue_url(&s, "zap", &format!("https://bulk{i}.example/")).await);
    }
    let confirm = get_page(&s, "/tasks/bulk?action=cancel&url=bulk", &cookie).await;
    assert!(confirm.contains("Cancel 5 task(s)?"), "{confirm}");
    let hidden = |name: &str| {
        confirm
            .split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .map(|v| v.split('"').next().unwrap().to_owned())
    };
    let upto = hidden("upto").unwrap();
    assert_eq!(hidden("url").as_deref(), Some("bulk"));
    let late = queue_url(&s, "zap", "https://bulk-late.example/").await;
    let r = post(
        &s,
        "/tasks/bulk",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("action", "cancel"),
            ("url", "bulk"),
            ("upto", &upto),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        "/tasks?url=bulk&done=bulk_cancel&n=5"
    );
    let deleted = live(&s, "/tasks/live.json?status=COMPLETE_DELETED", &cookie).await;
    assert_eq!(deleted["tasks"]["total"], 5);
    assert_eq!(
        s.server.queue().task(TaskId(late)).unwrap().status(),
        TaskStatus::Queued
    );
    // Bulk retry of what was cancelled: five new tasks, each linked.
    let confirm = get_page(
        &s,
        "/tasks/bulk?action=retry&url=bulk&status=COMPLETE_DELETED",
        &cookie,
    )
    .await;
    assert!(confirm.contains("Retry 5 task(s)?"), "{confirm}");
    let r = post(
        &s,
        "/tasks/bulk",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("action", "retry"),
            ("url", "bulk"),
            ("status", "COMPLETE_DELETED"),
            ("upto", &late.to_string()),
        ],
    )
    .await;
    assert_eq!(
        r.headers()[LOCATION],
        "/tasks?status=COMPLETE_DELETED&url=bulk&done=bulk_retry&n=5"
    );
    let relinked: Vec<u64> = {
        let mut v = Vec::new();
        for id in &bulk {
            let j = live(&s, &format!("/tasks/task/{id}/live.json"), &cookie).await;
            v.push(j["task"]["retriedAs"].as_u64().unwrap());
        }
        v
    };
    s.stop().await;

    // After a restart from the journal: the same statuses and links.
    let s = TestServer::start_with(|c| c.data_dir = path.clone()).await;
    let (cookie, _) = login(&s, "").await;
    let old = live(&s, &format!("/tasks/task/{failed}/live.json"), &cookie).await;
    assert_eq!(old["task"]["retriedAs"], retry);
    assert_eq!(old["task"]["agentName"], "builder-7");
    for (id, new) in bulk.iter().zip(&relinked) {
        let j = live(&s, &format!("/tasks/task/{new}/live.json"), &cookie).await;
        assert_eq!(j["task"]["retryOf"], *id);
        assert_eq!(j["task"]["status"], "QUEUED");
    }
    let deleted = live(&s, "/tasks/live.json?status=COMPLETE_DELETED", &cookie).await;
    assert_eq!(deleted["tasks"]["total"], 5);
    s.stop().await;
}

/// An agent silent past the expiry is revoked (journaled): its key is refused from then on;
/// an agent that called recently stays.
#[tokio::test]
async fn agents_silent_past_the_expiry_are_revoked() {
    const DAY_MS: u64 = 86_400_000;
    let s = TestServer::start_with(|c| {
        c.agent_expiry_ms = Some(2 * DAY_MS);
        c.queue.lease_ms = 3 * DAY_MS;
        c.queue.task_deadline_ms = 10 * DAY_MS;
    })
    .await;
    let silent = s.agent_key().await;
    let busy = s.agent_key().await;
    let held = queue_url(&s, "zap", "https://shop.example/").await;
    take(&s, &silent, BUILDER).await;
    s.clock.advance_ms(DAY_MS);
    assert_eq!(s.request_task(&busy, "zap").await, None);
    s.clock.advance_ms(DAY_MS + 1_000);
    s.server.wake_timer();
    let started = std::time::Instant::now();
    while s.server.queue().stats().agents != 1 {
        assert!(started.elapsed().as_secs() < 10, "not expired");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", "zap"),
                ("scanAgentSecureKey", &silent),
                ("agentConfig", "x"),
            ],
        )
        .await;
    assert_eq!(r["success"], false, "{r}");
    // Its task went back to the queue: no "Started", but it keeps the agent of its last attempt.
    let (cookie, _) = login(&s, "").await; // (sessions last 12 hours)
    let j = live(&s, &format!("/tasks/task/{held}/live.json"), &cookie).await;
    assert_eq!(j["task"]["status"], "QUEUED", "{j}");
    assert_eq!(j["task"]["startedMs"], Value::Null);
    assert_eq!(j["task"]["agentName"], "builder-7");
    assert!(
        j["history"].to_string().contains("Scan agent revoked"),
        "{j}"
    );
    let listed = live(&s, "/tasks/live.json", &cookie).await;
    assert_eq!(listed["agents"]["total"], 1);
    let (id, _) = s
        .request_task(&busy, "zap")
        .await
        .expect("the busy agent's key still works");
    assert_eq!(id, held);
    s.stop().await;
}
