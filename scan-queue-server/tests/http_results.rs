//! The results API over real HTTP: a completed task's file downloads byte for byte (with its
//! name, type, `ETag`, ranges), an application's results list newest first and page, every
//! refusal is a clear envelope, and retention deletes records and files.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use scan_queue_server::Retention;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ZAP: &str = "OWASP Zed Attack Proxy";
const DAY_MS: u64 = 86_400_000;

/// Queues a ZAP scan for `app`, has a fresh agent take it and complete it with `file`
/// (named `name`): the task id.
async fn completed(s: &TestServer, app: &str, name: &str, file: &[u8]) -> u64 {
    let r = s
        .form(
            "queueScan",
            &[("applicationId", app), ("scannerType", "zap")],
        )
        .await;
    let id = r["object"]["id"].as_u64().unwrap();
    let agent = s.agent_key().await;
    let (taken, key) = s.request_task(&agent, ZAP).await.unwrap();
    assert_eq!(taken, id);
    let form = Form::new()
        .text("scanQueueTaskId", id.to_string())
        .text("scanAgentSecureKey", agent)
        .text("secureTaskKey", key)
        .part(
            "file",
            Part::bytes(file.to_vec())
                .file_name(name.to_owned())
                .mime_str("text/xml")
                .unwrap(),
        );
    let r = s.multipart("completeTask", form).await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    id
}

fn api(s: &TestServer, path: &str) -> String {
    format!("{}/threadfix/rest/latest/{path}", s.origin)
}

async fn get(s: &TestServer, url: &str) -> reqwest::Response {
    s.http
        .get(url)
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap()
}

async fn list(s: &TestServer, app: u64, query: &str) -> Value {
    json(get(s, &api(s, &format!("applications/{app}/results{query}"))).await).await
}

#[tokio::test]
async fn a_result_downloads_byte_for_byte_and_lists_with_its_record() {
    let s = TestServer::start().await;
    let report =
        b"<?xml version=\"1.0\"?><OWASPZAPReport version=\"2.11\"><site/></OWASPZAPReport>";
    let id = completed(&s, "7", "zap report.xml", report).await;
    let sha = format!("{:x}", Sha256::digest(report));

    let r = get(&s, &api(&s, &format!("tasks/{id}/result"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["etag"], format!("\"{sha}\"").as_str());
    // As detected (the agent said text/xml).
    assert_eq!(h["content-type"], "application/xml");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"zapreport.xml\""
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), report);

    // A range, and a conditional request.
    let r = s
        .http
        .get(api(&s, &format!("tasks/{id}/result")))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .header("Range", "bytes=0-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"<?xml");
    let r = s
        .http
        .get(api(&s, &format!("tasks/{id}/result")))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .header("If-None-Match", format!("\"{sha}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Under every prefix, with the key as a query parameter too.
    let r = s
        .http
        .get(format!(
            "{}/rest/tasks/{id}/result?apiKey={API_KEY}",
            s.origin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), report);

    let page = list(&s, 7, "").await;
    assert_eq!(page["success"], true, "{page}");
    let results = page["object"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["taskId"], id);
    assert_eq!(r["applicationId"], 7);
    assert_eq!(r["scanner"], ZAP);
    assert_eq!(r["fileName"], "zap report.xml");
    assert_eq!(r["size"], report.len());
    assert_eq!(r["sha256"], sha.as_str());
    assert_eq!(r["contentType"], "application/xml");
    assert!(r["receivedTime"].as_u64().unwrap() >= SEED_UPLOADED_MS);
    assert_eq!(
        r["downloadPath"],
        format!("/threadfix/rest/latest/tasks/{id}/result")
    );
    assert_eq!(page["object"]["nextPath"], Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn an_applications_results_come_newest_first_in_pages() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(completed(&s, "3", "r.xml", format!("<r{i}/>").as_bytes()).await);
    }
    completed(&s, "4", "other.xml", b"<other/>").await;
    let mut seen = Vec::new();
    let mut next = "?limit=2".to_owned();
    loop {
        let page = list(&s, 3, &next).await;
        assert_eq!(page["success"], true, "{page}");
        let results = page["object"]["results"].as_array().unwrap();
        assert!(results.len() <= 2);
        seen.extend(results.iter().map(|r| r["taskId"].as_u64().unwrap()));
        match page["object"]["nextPath"].as_str() {
            Some(path) => next = path[path.find('?').unwrap()..].to_owned(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    s.stop().await;
}

#[tokio::test]
async fn refusals_are_clear_envelopes() {
    let s = TestServer::start().await;
    let id = completed(&s, "7", "r.xml", b"<r/>").await;
    // No key, a wrong key.
    let r = s
        .http
        .get(api(&s, &format!("tasks/{id}/result")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_failure(&json(r).await, "Authentication failed, check your API Key.");
    let r = s
        .http
        .get(api(&s, "applications/7/results"))
        .header("Authorization", "APIKEY wrong")
        .send()
        .await
        .unwrap();
    assert_failure(&json(r).await, "Authentication failed, check your API Key.");
    // Unknown task, a task without a result, an unknown application, a bad id.
    let r = get(&s, &api(&s, "tasks/99/result")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_failure(&json(r).await, "No scan queue task with id 99.");
    s.form(
        "queueScan",
        &[("applicationId", "7"), ("scannerType", "zap")],
    )
    .await;
    let r = get(&s, &api(&s, &format!("tasks/{}/result", id + 1))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_failure(
        &json(r).await,
        &format!(
            "Task {} has no result (it is QUEUED, or its result was deleted).",
            id + 1
        ),
    );
    assert_failure(
        &list(&s, 8, "").await,
        "No scan queue task or result for application 8.",
    );
    let r = json(get(&s, &api(&s, "applications/x/results")).await).await;
    assert_failure(&r, "Invalid appId: 'x' is not a positive integer.");
    // Another method: a 405 envelope (a fuzz finding: it was an empty 405).
    let r = s
        .http
        .post(api(&s, &format!("tasks/{id}/result")))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_failure(&json(r).await, "Method POST is not allowed here; use GET.");
    let r = list(&s, 7, "?limit=0").await;
    assert_failure(&r, "Invalid limit: '0' is not a positive integer.");
    s.stop().await;
}

/// The files in results/.
fn files(s: &TestServer) -> usize {
    s.results().len()
}

#[tokio::test]
async fn retention_deletes_records_and_files() {
    let s = TestServer::start_with(|c| {
        c.retention = Retention {
            max_age_ms: Some(2 * DAY_MS),
            per_application: Some(2),
        };
    })
    .await;
    let old = completed(&s, "1", "a.xml", b"<a/>").await;
    s.clock.advance_ms(DAY_MS);
    let kept: Vec<u64> = [
        completed(&s, "1", "b.xml", b"<b/>").await,
        completed(&s, "1", "c.xml", b"<c/>").await,
    ]
    .into();
    let other = completed(&s, "2", "d.xml", b"<d/>").await;
    // Application 1 has three: its oldest goes (the count limit).
    s.server.wake_timer();
    wait_for(|| files(&s) == 3).await;
    let page = list(&s, 1, "").await;
    let ids: Vec<u64> = page["object"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["taskId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [kept[1], kept[0]]);
    let r = get(&s, &api(&s, &format!("tasks/{old}/result"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Past the age limit for all but... none: every one is older than two days.
    s.clock.advance_ms(2 * DAY_MS);
    s.server.wake_timer();
    wait_for(|| files(&s) == 0).await;
    let r = get(&s, &api(&s, &format!("tasks/{other}/result"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let metrics = s.metrics_text().await;
    assert!(metrics.contains("scan_queue_results 0"), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn a_result_goes_with_its_evicted_task() {
    let s = TestServer::start_with(|c| c.queue.max_finished_tasks = 1).await;
    let first = completed(&s, "1", "a.xml", b"<a/>").await;
    let second = completed(&s, "1", "b.xml", b"<bb/>").await;
    s.server.wake_timer();
    wait_for(|| files(&s) == 1).await;
    let r = get(&s, &api(&s, &format!("tasks/{first}/result"))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get(&s, &api(&s, &format!("tasks/{second}/result"))).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"<bb/>");
    let metrics = s.metrics_text().await;
    assert!(metrics.contains("scan_queue_results 1"), "{metrics}");
    assert!(metrics.contains("scan_queue_result_bytes 5"), "{metrics}");
    s.stop().await;
}

/// Polls `done` for up to 5 s.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not done within 5 s");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/reports/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Completes task `id` (held by `agent` with `key`) with `file`: the answer.
async fn complete_with(s: &TestServer, id: u64, agent: &str, key: &str, file: &[u8]) -> Value {
    s.multipart("completeTask", complete_form(id, agent, key, file))
        .await
}

/// Queues a ZAP task and has a fresh agent take it: (id, agent key, task key).
async fn taken(s: &TestServer) -> (u64, String, String) {
    let id = s.queue_scan("zap").await;
    let agent = s.agent_key().await;
    let (taken, key) = s.request_task(&agent, ZAP).await.unwrap();
    assert_eq!(taken, id);
    (id, agent, key)
}

#[tokio::test]
async fn a_real_zap_report_is_summarised_and_downloads_unchanged() {
    let s = TestServer::start().await;
    // DefectDojo's unittests/scans/zap/some_2.9.0.xml: riskcode 2 once, 1 five times, 0 once.
    let report = fixture("zap-some_2.9.0.xml");
    let (id, agent, key) = taken(&s).await;
    let r = complete_with(&s, id, &agent, &key, &report).await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    let page = list(&s, 1, "").await;
    let result = &page["object"]["results"][0];
    assert_eq!(result["report"], "zap-xml", "{page}");
    assert_eq!(
        result["findings"],
        serde_json::json!({"high": 0, "medium": 1, "low": 5, "informational": 1})
    );
    assert_eq!(result["contentType"], "application/xml");
    let r = get(&s, &api(&s, &format!("tasks/{id}/result"))).await;
    let body = r.bytes().await.unwrap();
    assert_eq!(
        format!("{:x}", Sha256::digest(&body)),
        format!("{:x}", Sha256::digest(&report))
    );
    s.stop().await;
}

#[tokio::test]
async fn empty_and_malformed_files_fail_the_task_with_the_reason() {
    let s = TestServer::start().await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    for (file, reason) in [
        (
            Vec::new(),
            "The server refused the result file: The result file is empty.",
        ),
        (
            png,
            "The server refused the result file: The result file is neither XML nor JSON: its \
             first byte is 0x89 (a PNG image?).",
        ),
    ] {
        let (id, agent, key) = taken(&s).await;
        let r = complete_with(&s, id, &agent, &key, &file).await;
        assert_failure(&r, reason);
        let task = s
            .server
            .queue()
            .task(scan_queue::TaskId(id))
            .unwrap()
            .clone();
        assert_eq!(task.status(), scan_queue::TaskStatus::CompleteFailed);
        assert!(
            task.failure_message().unwrap().ends_with(reason),
            "{task:?}"
        );
        // A retry answers the same; nothing was kept.
        let r = complete_with(&s, id, &agent, &key, &file).await;
        assert_failure(&r, reason);
    }
    let (id, agent, key) = taken(&s).await;
    let r = complete_with(&s, id, &agent, &key, b"<OWASPZAPReport><site>").await;
    let message = r["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "The server refused the result file: The result file is not well-formed XML"
        ),
        "{message}"
    );
    assert!(s.results().is_empty() && s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn under_result_check_scanner_a_report_of_another_scanner_is_refused() {
    let s = TestServer::start_with(|c| {
        c.result_check = scan_queue_server::report::ResultCheck::Scanner
    })
    .await;
    let (id, agent, key) = taken(&s).await;
    let r = complete_with(
        &s,
        id,
        &agent,
        &key,
        &fixture("burp-one_finding_with_cwe.xml"),
    )
    .await;
    assert_eq!(r["success"], false, "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("is not an OWASP Zed Attack Proxy report") && message.contains("<issues>"),
        "{message}"
    );
    assert_eq!(
        s.server
            .queue()
            .task(scan_queue::TaskId(id))
            .unwrap()
            .status(),
        scan_queue::TaskStatus::CompleteFailed
    );
    // The task's own scanner's report passes.
    let (id, agent, key) = taken(&s).await;
    let r = complete_with(
        &s,
        id,
        &agent,
        &key,
        &fixture("zap-basic-traditional-json.json"),
    )
    .await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    assert_eq!(s.results().len(), 1);
    s.stop().await;
}
