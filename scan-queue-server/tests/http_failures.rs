//! Every failure path over real HTTP: each answer is a ThreadFix failure envelope with a clear
//! message, the queue is unchanged, and no refused upload stays on disk.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};
use scan_queue::{TaskId, TaskStatus};

const BURP: &str = "Burp Suite Pro";
const NOT_OURS: &str = "Scan agent secure key was not recognized.";

/// A server with one task assigned to one agent: (server, agent key, task key).
async fn one_assigned() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    assert_eq!(s.queue_scan(BURP).await, 1);
    let agent = s.agent_key().await;
    let (id, task_key) = s.request_task(&agent, BURP).await.unwrap();
    assert_eq!(id, 1);
    (s, agent, task_key)
}

/// completeTask with `form` and no `Authorization` header (any key is in the form).
async fn without_header(s: &TestServer, form: Form) -> serde_json::Value {
    json(
        s.http
            .post(s.url("completeTask"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn status(s: &TestServer, id: u64) -> TaskStatus {
    s.server.queue().task(TaskId(id)).unwrap().status()
}

#[tokio::test]
async fn api_key_missing_wrong_or_given_as_a_parameter() {
    let s = TestServer::start().await;
    let url = s.url("queueScan");
    let params = [("applicationId", "1"), ("scannerType", "zap")];
    // No key at all, on a POST and on a GET.
    let r = json(s.http.post(&url).form(&params).send().await.unwrap()).await;
    assert_failure(&r, "Authentication failed, check your API Key.");
    let r = json(
        s.http
            .get(s.url("requestScanAgentKey"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_failure(&r, "Authentication failed, check your API Key.");
    // A wrong key in the header, in the query, in the body, with another scheme.
    for request in [
        s.http.post(&url).header("Authorization", "APIKEY nope"),
        s.http
            .post(&url)
            .header("Authorization", format!("Bearer {API_KEY}")),
        s.http.post(format!("{url}?apiKey=nope")),
    ] {
        let r = json(request.form(&params).send().await.unwrap()).await;
        assert_failure(&r, "Authentication failed, check your API Key.");
    }
    let with_bad_key = [
        ("applicationId", "1"),
        ("scannerType", "zap"),
        ("apiKey", "nope"),
    ];
    let r = json(s.http.post(&url).form(&with_bad_key).send().await.unwrap()).await;
    assert_failure(&r, "Authentication failed, check your API Key.");
    // A wrong header is not rescued by a right parameter.
    let r = json(
        s.http
            .post(format!("{url}?apiKey={API_KEY}"))
            .header("Authorization", "APIKEY nope")
            .form(&params)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_failure(&r, "Authentication failed, check your API Key.");
    assert_eq!(s.server.queue().stats().open_tasks(), 0);

    // The right key as `apiKey`: in the query, in an url-encoded body, in a multipart field.
    let r = json(
        s.http
            .post(format!("{url}?apiKey={API_KEY}"))
            .form(&params)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    let with_key = [
        ("applicationId", "1"),
        ("scannerType", "zap"),
        ("apiKey", API_KEY),
    ];
    let r = json(s.http.post(&url).form(&with_key).send().await.unwrap()).await;
    assert_eq!(r["success"], true, "{r}");
    let form = Form::new()
        .text("apiKey", API_KEY)
        .text("applicationId", "1")
        .text("scannerType", "zap");
    let r = json(s.http.post(&url).multipart(form).send().await.unwrap()).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(s.server.queue().stats().open_tasks(), 3);
    s.stop().await;
}

#[tokio::test]
async fn an_api_key_after_the_file_is_honoured_and_a_large_early_file_refused() {
    let (s, agent, task_key) = one_assigned().await;
    // A wrong key after the file: refused, nothing stored.
    let form = complete_form(1, &agent, &task_key, b"<xml/>").text("apiKey", "wrong");
    let r = without_header(&s, form).await;
    assert_failure(&r, "Authentication failed, check your API Key.");
    assert_eq!(status(&s, 1), TaskStatus::Assigned);
    assert!(s.results().is_empty() && s.incoming().is_empty());
    // A file larger than what is held before the key is known, key after it: refused with
    // a message saying to send the key first; nothing reached the disk.
    let big = vec![b'x'; 200 * 1024];
    let form = complete_form(1, &agent, &task_key, &big).text("apiKey", API_KEY);
    let r = without_header(&s, form).await;
    assert_eq!(r["success"], false, "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.starts_with("Send the API key before the file"),
        "{message}"
    );
    assert_eq!(status(&s, 1), TaskStatus::Assigned);
    assert!(s.results().is_empty() && s.incoming().is_empty());
    // The right key after a small file: honoured (regression: it used to be refused).
    let form = complete_form(1, &agent, &task_key, b"<xml/>").text("apiKey", API_KEY);
    let r = without_header(&s, form).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    let results = s.results();
    assert_eq!(results.len(), 1);
    assert_eq!(std::fs::read(&results[0]).unwrap(), b"<xml/>");
    assert!(s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_api_key_field_before_the_file_works() {
    let (s, agent, task_key) = one_assigned().await;
    // Before the file, it works.
    let form = Form::new()
        .text("apiKey", API_KEY)
        .text("scanQueueTaskId", "1")
        .text("scanAgentSecureKey", agent.clone())
        .text("secureTaskKey", task_key.clone())
        .part("file", Part::bytes(b"<xml/>".to_vec()).file_name("r.xml"));
    let r = without_header(&s, form).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(s.results().len(), 1);
    assert!(s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn agent_and_task_key_failures() {
    let (s, agent, task_key) = one_assigned().await;
    let stranger = "A".repeat(44);
    // An agent key this server never minted.
    let r = s
        .form(
            "requestTask",
            &[("scanners", BURP), ("scanAgentSecureKey", &stranger)],
        )
        .await;
    assert_failure(&r, NOT_OURS);
    let r = s.fail(1, "x", &stranger, &task_key).await;
    assert_failure(&r, NOT_OURS);
    let r = s.fail(1, "x", "short", &task_key).await;
    assert_failure(&r, NOT_OURS);
    // Another (real) agent's key with the right task key.
    let other = s.agent_key().await;
    let r = s.update(1, "mine now", &other, &task_key).await;
    assert_failure(
        &r,
        "Task 1 is held by another scan agent: the scanAgentSecureKey must be the one used to assign the task from the queue.",
    );
    let r = s.complete(1, &other, &task_key).await;
    assert_failure(
        &r,
        "Task 1 is held by another scan agent: the scanAgentSecureKey must be the one used to assign the task from the queue.",
    );
    // The right agent with a wrong task key.
    let r = s.fail(1, "x", &agent, &"B".repeat(44)).await;
    assert_failure(&r, "Secure task key was not recognized.");
    let r = s.update(1, "x", &agent, &agent).await;
    assert_failure(&r, "Secure task key was not recognized.");
    // Nothing changed; no file was kept.
    assert_eq!(status(&s, 1), TaskStatus::Assigned);
    assert_eq!(s.server.queue().task(TaskId(1)).unwrap().history().len(), 2);
    assert!(s.results().is_empty() && s.incoming().is_empty());
    assert!(s.server.queue().stats().rejected_key_checks >= 6);
    s.stop().await;
}

#[tokio::test]
async fn stale_key_after_lease_expiry() {
    let (s, agent, old_key) = one_assigned().await;
    let lease_ms = scan_queue::Config::default().lease_ms;
    // A status update renews the lease (a heartbeat).
    s.clock.advance_ms(lease_ms - 1);
    let r = s.update(1, "still scanning", &agent, &old_key).await;
    assert_eq!(r["success"], true, "{r}");
    // Then silence for a whole lease: the task goes back to the queue.
    s.clock.advance_ms(lease_ms);
    let r = s.update(1, "too late", &agent, &old_key).await;
    let expired = "The lease of task 1 expired and the task was taken back; its secure task key is no longer valid.";
    assert_failure(&r, expired);
    assert_eq!(status(&s, 1), TaskStatus::Queued);
    // Another agent takes it; the old key stays refused, for its completion too.
    let second = s.agent_key().await;
    let (id, new_key) = s.request_task(&second, "burp").await.unwrap();
    assert_eq!(id, 1);
    assert_ne!(new_key, old_key);
    let r = s.complete(1, &agent, &old_key).await;
    assert_failure(&r, expired);
    let r = s.complete(1, &second, &old_key).await;
    assert_failure(&r, "Secure task key was not recognized.");
    assert!(s.results().is_empty() && s.incoming().is_empty());
    let r = s.complete(1, &second, &new_key).await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    assert_eq!(s.results().len(), 1);
    s.stop().await;
}

/// Regression: a late call on a task whose lease ran out on its last attempt was told the
/// task "was taken back", though it timed out and was not queued again.
#[tokio::test]
async fn a_late_call_after_the_last_attempt_says_the_task_timed_out() {
    let s = TestServer::start_with(|c| c.queue.max_attempts = 1).await;
    assert_eq!(s.queue_scan(BURP).await, 1);
    let agent = s.agent_key().await;
    let (_, task_key) = s.request_task(&agent, BURP).await.unwrap();
    s.clock
        .advance_ms(scan_queue::Config::default().lease_ms + 1);
    let r = s.update(1, "too late", &agent, &task_key).await;
    assert_failure(
        &r,
        "The lease of task 1 expired on its last attempt and the task timed out \
         (COMPLETE_TIMEDOUT); its secure task key is no longer valid.",
    );
    assert_eq!(status(&s, 1), TaskStatus::CompleteTimedOut);
    let r = s.complete(1, &agent, &task_key).await;
    assert!(
        r["message"].as_str().unwrap().contains("COMPLETE_TIMEDOUT"),
        "{r}"
    );
    assert!(s.results().is_empty() && s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn the_timer_applies_expiries_without_a_request() {
    let (s, _agent, _key) = one_assigned().await;
    s.clock
        .advance_ms(scan_queue::Config::default().lease_ms + 1);
    s.server.wake_timer();
    // Wait (bounded) for the timer task to run; no request touches the queue meanwhile.
    let mut requeued = false;
    for _ in 0..1000 {
        if s.server.queue().stats().counters.lease_expiries == 1 {
            requeued = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(requeued, "the timer never applied the lease expiry");
    assert_eq!(status(&s, 1), TaskStatus::Queued);
    s.stop().await;
}

/// An endpoint, its parameters, the failure message.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn missing_and_malformed_parameters() {
    let (s, agent, task_key) = one_assigned().await;
    let (a, k) = (agent.as_str(), task_key.as_str());
    let cases: &[Case<'_>] = &[
        (
            "failTask",
            &[
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Missing required parameter: scanQueueTaskId.",
        ),
        (
            "failTask",
            &[
                ("scanQueueTaskId", "1"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Missing required parameter: message.",
        ),
        (
            "failTask",
            &[
                ("scanQueueTaskId", "1"),
                ("message", "m"),
                ("secureTaskKey", k),
            ],
            "Missing required parameter: scanAgentSecureKey.",
        ),
        (
            "failTask",
            &[
                ("scanQueueTaskId", "1"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
            ],
            "No secure task key found error.",
        ),
        (
            "failTask",
            &[
                ("scanQueueTaskId", "1"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", ""),
            ],
            "No secure task key found error.",
        ),
        (
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", "abc"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Invalid scanQueueTaskId: 'abc' is not a positive integer.",
        ),
        (
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", "-1"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Invalid scanQueueTaskId: '-1' is not a positive integer.",
        ),
        (
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", "0"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Invalid scanQueueTaskId: '0' is not a positive integer.",
        ),
        (
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", "1.5"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Invalid scanQueueTaskId: '1.5' is not a positive integer.",
        ),
        (
            "taskStatusUpdate",
            &[
                ("scanQueueTaskId", "99999999999999999999999"),
                ("message", "m"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Invalid scanQueueTaskId: '99999999999999999999999' is not a positive integer.",
        ),
        (
            "completeTask",
            &[
                ("scanQueueTaskId", "1"),
                ("scanAgentSecureKey", a),
                ("secureTaskKey", k),
            ],
            "Missing required parameter: file.",
        ),
        (
            "requestTask",
            &[("scanAgentSecureKey", a)],
            "Missing required parameter: scanners.",
        ),
        (
            "requestTask",
            &[("scanners", BURP)],
            "Missing required parameter: scanAgentSecureKey.",
        ),
        (
            "requestTask",
            &[("scanners", "Nessus, ,"), ("scanAgentSecureKey", a)],
            "No known scanner in scanners. Known scanners: Acunetix WVS, AppSpider, Burp Suite Pro, IBM Security AppScan Standard, OWASP Zed Attack Proxy, WebInspect.",
        ),
        (
            "queueScan",
            &[("scannerType", BURP)],
            "Missing required parameter: applicationId.",
        ),
        (
            "queueScan",
            &[("applicationId", "one"), ("scannerType", BURP)],
            "Invalid applicationId: 'one' is not a positive integer.",
        ),
        (
            "queueScan",
            &[("applicationId", "1")],
            "Missing required parameter: scannerType.",
        ),
        (
            "queueScan",
            &[("applicationId", "1"), ("scannerType", "Nessus")],
            "Bad scanner type of: Nessus provided. Will not queue scan.",
        ),
        (
            "queueScan",
            &[
                ("applicationId", "1"),
                ("scannerType", "burp"),
                ("targetURL", "ftp://x/"),
            ],
            "Invalid targetURL: scheme must be http or https.",
        ),
        (
            "queueScan",
            &[
                ("applicationId", "1"),
                ("scannerType", "burp"),
                ("targetURL", &"http://x/".repeat(40)),
            ],
            "Limit reached for target URL length: at most 255 bytes.",
        ),
        (
            "queueScan",
            &[
                ("applicationId", "1"),
                ("scannerType", "burp"),
                ("scanConfigId", "7"),
            ],
            "Invalid scanConfigId: no scan config with id 7.",
        ),
        (
            "setTaskConfig",
            &[("appId", "1"), ("scannerType", "Nessus")],
            "Bad scanner type of: Nessus provided. Will not save scan config.",
        ),
        (
            "setTaskConfig",
            &[("appId", "1"), ("scannerType", "burp")],
            "Missing required parameter: file.",
        ),
        (
            "setTaskConfig",
            &[("scannerType", "burp")],
            "Missing required parameter: appId.",
        ),
    ];
    for (op, params, message) in cases {
        let r = s.form(op, params).await;
        assert_failure(&r, message);
    }
    // Also as multipart (where completeTask's file is really missing).
    let form = Form::new()
        .text("scanQueueTaskId", "x1")
        .text("scanAgentSecureKey", agent.clone())
        .text("secureTaskKey", task_key.clone())
        .part("file", Part::bytes(b"<xml/>".to_vec()).file_name("r.xml"));
    let r = s.multipart("completeTask", form).await;
    assert_failure(
        &r,
        "Invalid scanQueueTaskId: 'x1' is not a positive integer.",
    );
    // A message over the core's bound.
    let long = "m".repeat(5000);
    let r = s.update(1, &long, &agent, &task_key).await;
    assert_failure(&r, "Limit reached for message length: at most 4096 bytes.");
    // Nothing was queued, changed or stored.
    assert_eq!(s.server.queue().stats().counters.queued, 1);
    assert_eq!(status(&s, 1), TaskStatus::Assigned);
    assert!(s.results().is_empty() && s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn unknown_task_no_task_and_unknown_endpoint() {
    let (s, agent, task_key) = one_assigned().await;
    let r = s.fail(999, "x", &agent, &task_key).await;
    assert_failure(&r, "No scan queue task with id 999.");
    let r = s.complete(999, &agent, &task_key).await;
    assert_failure(&r, "No scan queue task with id 999.");
    assert!(s.results().is_empty() && s.incoming().is_empty());
    // Nothing queued for ZAP.
    let r = s
        .form(
            "requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", &agent)],
        )
        .await;
    assert_failure(&r, "No task found.");
    // Unknown endpoint and wrong method: still envelopes, with 404 and 405.
    let response = s
        .http
        .post(s.url("deleteEverything"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let r = json(response).await;
    assert_failure(
        &r,
        "Unknown endpoint: /threadfix/rest/latest/tasks/deleteEverything. Endpoints are /rest/{version}/tasks/{name}.",
    );
    let response = s
        .http
        .get(format!("{}/nothing-here", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    json(response).await;
    // The root leads to the page (its login form, without a session).
    let response = s.http.get(format!("{}/", s.origin)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/tasks/login");
    let response = s
        .http
        .get(s.url("failTask"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let r = json(response).await;
    assert_failure(&r, "Method GET is not allowed on tasks/failTask; use POST.");
    // A method other paths do not take: an envelope too (a fuzz finding: it was an empty 405).
    for path in ["/", "/ready", "/tasks/summary", "/threadfix"] {
        let response = s
            .http
            .post(format!("{}{path}", s.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        let r = json(response).await;
        assert_failure(&r, &format!("Method POST is not allowed for {path}."));
    }
    s.stop().await;
}

#[tokio::test]
async fn complete_twice_and_fail_after_complete() {
    let (s, agent, task_key) = one_assigned().await;
    let first = s.complete(1, &agent, &task_key).await;
    assert_eq!(first["success"], true, "{first}");
    // The same call again (a retry after a lost answer): the same answer, one file kept.
    s.clock.advance_ms(5_000);
    let again = s.complete(1, &agent, &task_key).await;
    assert_eq!(again, first);
    assert_eq!(s.results().len(), 1);
    // Anything else on the finished task is refused.
    let finished = "Failed to update the ScanQueueTask: task 1 is COMPLETE_SUCCESSFUL and can no longer change.";
    let r = s.fail(1, "late", &agent, &task_key).await;
    assert_failure(&r, finished);
    let r = s.update(1, "late", &agent, &task_key).await;
    assert_failure(&r, finished);
    let other = s.agent_key().await;
    let r = s.complete(1, &other, &task_key).await;
    assert_failure(&r, finished);
    assert_eq!(s.results().len(), 1);
    assert!(s.incoming().is_empty());

    // Fail twice with the same keys: the same answer, the first reason.
    s.queue_scan(BURP).await;
    let (id, key2) = s.request_task(&agent, BURP).await.unwrap();
    let first = s.fail(id, "Just because", &agent, &key2).await;
    let again = s.fail(id, "another reason", &agent, &key2).await;
    assert_eq!(again, first);
    assert_eq!(
        first["object"],
        "ScanAgent reported that the scan task: 2 had failed client-side for the following reason: Just because"
    );
    let r = s.complete(id, &agent, &key2).await;
    assert_failure(
        &r,
        "Failed to update the ScanQueueTask: task 2 is COMPLETE_FAILED and can no longer change.",
    );
    assert_eq!(s.results().len(), 1);
    assert!(s.incoming().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn oversized_uploads_are_refused_and_removed() {
    let s = TestServer::start_with(|c| {
        c.max_upload_bytes = 1024;
        c.max_config_bytes = 100;
    })
    .await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    let (id, task_key) = s.request_task(&agent, BURP).await.unwrap();
    for size in [1025, 64 * 1024, 3 * 1024 * 1024] {
        let r = s
            .multipart(
                "completeTask",
                complete_form(id, &agent, &task_key, &vec![b'x'; size]),
            )
            .await;
        assert_failure(
            &r,
            "Upload too large: the file exceeds the limit of 1024 bytes.",
        );
        assert_eq!(status(&s, id), TaskStatus::Assigned);
        assert!(
            s.results().is_empty() && s.incoming().is_empty(),
            "size {size}"
        );
    }
    let form = Form::new()
        .text("appId", "1")
        .text("scannerType", "burp")
        .part("file", Part::bytes(vec![b'c'; 101]).file_name("c.cfg"));
    let r = s.multipart("setTaskConfig", form).await;
    assert_failure(
        &r,
        "Upload too large: the file exceeds the limit of 100 bytes.",
    );
    // Exactly at the bound is fine (a well-formed document of 1 024 bytes).
    let at_bound = format!("<r>{}</r>", "x".repeat(1024 - 7));
    let r = s
        .multipart(
            "completeTask",
            complete_form(id, &agent, &task_key, at_bound.as_bytes()),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(s.results().len(), 1);
    s.stop().await;
}

/// Every kind of refused completion, then one accepted: only the accepted file is on disk.
#[tokio::test]
async fn no_file_is_left_behind_by_a_refused_completion() {
    let (s, agent, task_key) = one_assigned().await;
    let other = s.agent_key().await;
    let refused = [
        complete_form(1, &"Z".repeat(44), &task_key, b"<unknown-agent/>"),
        complete_form(1, &other, &task_key, b"<other-agent/>"),
        complete_form(1, &agent, &"Y".repeat(44), b"<wrong-task-key/>"),
        complete_form(42, &agent, &task_key, b"<unknown-task/>"),
    ];
    for form in refused {
        let r = s.multipart("completeTask", form).await;
        assert_eq!(r["success"], false, "{r}");
        assert!(s.results().is_empty() && s.incoming().is_empty());
    }
    let r = s
        .multipart(
            "completeTask",
            complete_form(1, &agent, &task_key, b"<the-result/>"),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let r = s
        .multipart(
            "completeTask",
            complete_form(1, &agent, &task_key, b"<a-retry/>"),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let results = s.results();
    assert_eq!(results.len(), 1);
    assert_eq!(std::fs::read(&results[0]).unwrap(), b"<the-result/>");
    assert!(s.incoming().is_empty());
    s.stop().await;
}
