//! Hostile input on the wire: NUL bytes, invalid UTF-8, absurd task ids, a 100 000-entry
//! scanner list, bodies past every bound. Each answer is a ThreadFix envelope with a clear
//! message, never a panic or an error page, and the queue stays consistent.

mod common;

use common::*;
use scan_queue::{TaskId, TaskStatus};
use serde_json::Value;

const BURP: &str = "Burp Suite Pro";

/// POSTs a raw url-encoded body (bytes as given, not re-encoded).
async fn raw_form(s: &TestServer, op: &str, body: Vec<u8>) -> (u16, Value) {
    let response = s
        .http
        .post(s.url(op))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not a JSON envelope ({e}): {text:?}"));
    assert_eq!(value["responseCode"], -1, "{value}");
    (status, value)
}

fn consistent(s: &TestServer) {
    s.server.queue().check_invariants().unwrap();
}

#[tokio::test]
async fn nul_bytes_are_data_not_terminators() {
    let s = TestServer::start().await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    let (id, task_key) = s.request_task(&agent, BURP).await.unwrap();
    // A status message with NUL bytes is stored verbatim (it is the agent's text)...
    let body = format!(
        "scanQueueTaskId={id}&message=a%00b%00&scanAgentSecureKey={agent}&secureTaskKey={task_key}"
    );
    let (status, r) = raw_form(&s, "taskStatusUpdate", body.into_bytes()).await;
    assert_eq!((status, &r["success"]), (200, &Value::Bool(true)), "{r}");
    let last = s
        .server
        .queue()
        .task(TaskId(id))
        .unwrap()
        .last_message()
        .unwrap()
        .to_string();
    assert_eq!(last, "a\0b\0");
    // ...but a NUL inside a key or an id is just a wrong key or a malformed id.
    let body = format!(
        "scanQueueTaskId={id}&message=m&scanAgentSecureKey={}%00&secureTaskKey={task_key}",
        &agent[..43]
    );
    let (_, r) = raw_form(&s, "taskStatusUpdate", body.into_bytes()).await;
    assert_failure(&r, "Scan agent secure key was not recognized.");
    let body = format!(
        "scanQueueTaskId=1%00&message=m&scanAgentSecureKey={agent}&secureTaskKey={task_key}"
    );
    let (_, r) = raw_form(&s, "taskStatusUpdate", body.into_bytes()).await;
    assert_failure(
        &r,
        "Invalid scanQueueTaskId: '1\0' is not a positive integer.",
    );
    // A scanner name with a NUL is not a known scanner.
    let (_, r) = raw_form(
        &s,
        "queueScan",
        b"applicationId=1&scannerType=burp%00".to_vec(),
    )
    .await;
    assert_eq!(r["success"], false, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("Bad scanner type of: burp"),
        "{r}"
    );
    assert_eq!(s.server.queue().stats().open_tasks(), 1);
    consistent(&s);
    s.stop().await;
}

#[tokio::test]
async fn invalid_utf8_gets_a_clear_failure() {
    let s = TestServer::start().await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    let (id, task_key) = s.request_task(&agent, BURP).await.unwrap();
    // Raw invalid bytes and percent-encoded invalid bytes, in a value and in a name.
    let bodies: Vec<Vec<u8>> = vec![
        [
            format!("scanQueueTaskId={id}&message=").as_bytes(),
            &[0xff, 0xfe, b'x'],
            format!("&scanAgentSecureKey={agent}&secureTaskKey={task_key}").as_bytes(),
        ]
        .concat(),
        format!("scanQueueTaskId={id}&message=%FF%FE&scanAgentSecureKey={agent}&secureTaskKey={task_key}")
            .into_bytes(),
        format!("scanQueueTaskId={id}&mess%C3age=x&scanAgentSecureKey={agent}&secureTaskKey={task_key}")
            .into_bytes(),
    ];
    for body in bodies {
        let (status, r) = raw_form(&s, "failTask", body.clone()).await;
        assert_eq!(status, 200, "{r}");
        // Either refused with a message, or (lossy decoding) accepted as text; never a crash.
        if r["success"] == false {
            assert!(!r["message"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    consistent(&s);
    // A task id that is not UTF-8 is malformed, not a crash.
    let (_, r) = raw_form(
        &s,
        "completeTask",
        [b"scanQueueTaskId=".as_slice(), &[0xc3, 0x28]].concat(),
    )
    .await;
    assert_eq!(r["success"], false, "{r}");
    s.stop().await;
}

#[tokio::test]
async fn absurd_task_ids() {
    let s = TestServer::start().await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    let (_, task_key) = s.request_task(&agent, BURP).await.unwrap();
    for (raw, expected) in [
        (
            "0",
            "Invalid scanQueueTaskId: '0' is not a positive integer.",
        ),
        (
            "-5",
            "Invalid scanQueueTaskId: '-5' is not a positive integer.",
        ),
        (
            "1e3",
            "Invalid scanQueueTaskId: '1e3' is not a positive integer.",
        ),
        (
            "18446744073709551616",
            "Invalid scanQueueTaskId: '18446744073709551616' is not a positive integer.",
        ),
        (
            "9223372036854775808",
            "No scan queue task with id 9223372036854775808.",
        ),
        (
            "18446744073709551615",
            "No scan queue task with id 18446744073709551615.",
        ),
    ] {
        let r = s
            .form(
                "failTask",
                &[
                    ("scanQueueTaskId", raw),
                    ("message", "m"),
                    ("scanAgentSecureKey", &agent),
                    ("secureTaskKey", &task_key),
                ],
            )
            .await;
        assert_failure(&r, expected);
    }
    // A very long id is cut short in the message, not echoed whole.
    let long = "9".repeat(100_000);
    let r = s
        .form(
            "failTask",
            &[
                ("scanQueueTaskId", long.as_str()),
                ("message", "m"),
                ("scanAgentSecureKey", &agent),
                ("secureTaskKey", &task_key),
            ],
        )
        .await;
    assert_eq!(r["success"], false, "{r}");
    assert!(r["message"].as_str().unwrap().len() < 1_000, "{r}");
    let status = s.server.queue().task(TaskId(1)).unwrap().status();
    assert_eq!(status, TaskStatus::Assigned);
    consistent(&s);
    s.stop().await;
}

#[tokio::test]
async fn a_scanner_list_of_100_000_entries_is_refused() {
    let s = TestServer::start().await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    let list = vec![BURP; 100_000].join(",");
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", list.as_str()),
                ("scanAgentSecureKey", &agent),
                ("agentConfig", "c"),
            ],
        )
        .await;
    // 2.3 MB of names: refused for its size before any parsing.
    assert_failure(&r, "Request body too large: at most 196608 bytes.");
    // 1 000 short names fit the body; the server resolves them to its known scanners (one,
    // here: ZAP), so the core sees a short list and finds no ZAP task.
    let list = vec!["zap"; 1_000].join(",");
    let r = s
        .form(
            "requestTask",
            &[
                ("scanners", list.as_str()),
                ("scanAgentSecureKey", &agent),
                ("agentConfig", "c"),
            ],
        )
        .await;
    assert_failure(&r, "No task found.");
    assert_eq!(s.server.queue().stats().count(TaskStatus::Queued), 1);
    s.stop().await;
}

#[tokio::test]
async fn bodies_past_their_bounds_are_refused() {
    let s = TestServer::start_with(|c| c.max_upload_bytes = 1024).await;
    s.queue_scan(BURP).await;
    let agent = s.agent_key().await;
    // A url-encoded body far past any parameter bound.
    let mut body = format!("scanners={BURP}&scanAgentSecureKey={agent}&agentConfig=").into_bytes();
    body.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
    let (status, r) = raw_form(&s, "requestTask", body).await;
    assert_eq!(r["success"], false, "{status} {r}");
    assert!(!r["message"].as_str().unwrap().is_empty());
    // Nothing was assigned by the refused request.
    assert_eq!(s.server.queue().stats().count(TaskStatus::Queued), 1);
    // A status message past the core's bound.
    let (id, task_key) = s.request_task(&agent, BURP).await.unwrap();
    let long = "m".repeat(4097);
    let r = s.update(id, &long, &agent, &task_key).await;
    assert_failure(&r, "Limit reached for message length: at most 4096 bytes.");
    let r = s.update(id, &"m".repeat(4096), &agent, &task_key).await;
    assert_eq!(r["success"], true, "{r}");
    consistent(&s);
    s.stop().await;
}
