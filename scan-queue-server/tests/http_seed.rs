//! The seed's two sample calls over real HTTP, in the seed's form, and their sample outputs.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// `curl … --data 'scanQueueTaskId=3&message=Just because&…' …/threadfix/rest/latest/tasks/failTask`:
/// an url-encoded body with an unencoded space, sent as it is.
#[tokio::test]
async fn seed_fail_task_urlencoded() {
    let s = TestServer::start().await;
    for _ in 0..3 {
        s.queue_scan("Burp Suite Pro").await;
    }
    let agent = s.agent_key().await;
    let mut task_key = String::new();
    for expected in 1..=3 {
        let (id, key) = s.request_task(&agent, "Burp Suite Pro").await.unwrap();
        assert_eq!(id, expected);
        task_key = key;
    }
    let body = format!(
        "scanQueueTaskId=3&message=Just because&scanAgentSecureKey={agent}&secureTaskKey={task_key}"
    );
    let response = s
        .http
        .post(s.url("failTask"))
        .header("Accept", "application/json")
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ours = json(response).await;
    let seed: Value = serde_json::from_str(SEED_FAIL_OUTPUT).unwrap();
    assert_eq!(ours, seed);
    // The task is COMPLETE_FAILED; tasks 1 and 2 are untouched.
    let status = |id| {
        let q = s.server.queue();
        q.task(scan_queue::TaskId(id))
            .unwrap()
            .status()
            .status_string()
    };
    assert_eq!(
        (status(1), status(2), status(3)),
        ("ASSIGNED", "ASSIGNED", "COMPLETE_FAILED")
    );
    s.stop().await;
}

/// `curl … -F 'scanQueueTaskId=1' -F 'scanAgentSecureKey=…' -F 'secureTaskKey=…'
/// -F 'file=@C:/path/to/scanResults.xml' …/completeTask`, after the history the sample shows
/// (queued, assigned with the sample's agentConfig, two status updates), at the sample's times.
#[tokio::test]
async fn seed_complete_task_multipart() {
    let s = TestServer::start().await;
    // The scan config document the sample shows (uploadedDate 1475094354000, id 1, "burp").
    let config = Form::new()
        .text("appId", "1")
        .text("scannerType", "Burp Suite Pro")
        .part(
            "file",
            Part::bytes(b"burp.config=1".to_vec()).file_name("burp.cfg"),
        );
    let r = s.multipart("setTaskConfig", config).await;
    assert_eq!(r["success"], true, "{r}");

    s.clock.advance_ms(SEED_CREATE_MS - SEED_UPLOADED_MS);
    assert_eq!(s.queue_scan("Burp Suite Pro").await, 1);
    let agent = s.agent_key().await;

    s.clock.advance_ms(SEED_START_MS - SEED_CREATE_MS);
    let r = s
        .multipart(
            "requestTask",
            Form::new()
                .text("scanners", "Burp Suite Pro")
                .text("scanAgentSecureKey", agent.clone())
                .text("agentConfig", SEED_AGENT_CONFIG),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let task_key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
    assert_eq!(
        r["object"]["taskConfig"]["dataBlobs"]["configFile"], "YnVycC5jb25maWc9MQ==",
        "the config document, base64"
    );

    for _ in 0..2 {
        s.clock.advance_ms(1_800_000);
        let r = s
            .update(1, "This task is still in progress", &agent, &task_key)
            .await;
        assert_eq!(r["object"], "Successfully updated ScanQueueTask", "{r}");
    }

    s.clock.advance_ms(SEED_END_MS - SEED_START_MS - 3_600_000);
    let response = s
        .http
        .post(s.url("completeTask"))
        .header("Accept", "application/json")
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .multipart(complete_form(1, &agent, &task_key, b"<issues/>"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ours = text(response).await;
    assert_matches_seed(&reindent(&ours), (&task_key, &agent));
    // The re-indenter itself, on the seed: the same field order as the seed's own layout.
    assert_eq!(
        field_order(&reindent(SEED_COMPLETE_OUTPUT), 2),
        field_order(SEED_COMPLETE_OUTPUT, 2)
    );

    // The file is stored, named after the task and the uploaded name.
    let results = s.results();
    assert_eq!(results.len(), 1);
    let name = results[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("task-1-") && name.ends_with("-scanResults.xml"),
        "{name}"
    );
    assert_eq!(std::fs::read(&results[0]).unwrap(), b"<issues/>");
    assert!(s.incoming().is_empty());
    s.stop().await;
}

/// Every path form of SPEC §7 reaches the endpoints.
#[tokio::test]
async fn every_path_form() {
    let s = TestServer::start().await;
    for path in [
        "/rest/tasks/scanners",
        "/rest/latest/tasks/scanners",
        "/rest/v2.8/tasks/scanners",
        "/threadfix/rest/tasks/scanners",
        "/threadfix/rest/latest/tasks/scanners",
        "/threadfix/rest/v2.8/tasks/scanners",
    ] {
        let r = json(
            s.http
                .get(format!("{}{path}", s.origin))
                .header("Authorization", format!("APIKEY {API_KEY}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r["success"], true, "{path}: {r}");
        assert_eq!(r["object"].as_array().unwrap().len(), 6, "{path}");
        assert_eq!(r["object"][2], "Burp Suite Pro");
    }
    s.stop().await;
}
