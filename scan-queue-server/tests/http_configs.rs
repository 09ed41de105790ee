//! Scan configuration documents (`setTaskConfig`, `queueScan … scanConfigId`) over real HTTP:
//! a task keeps the document it was queued with, and a document belongs to its application
//! and scanner.

mod common;

use base64::Engine;
use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const ZAP: &str = "OWASP Zed Attack Proxy";

async fn set_config(s: &TestServer, app: &str, scanner: &str, bytes: &[u8]) -> u64 {
    let form = Form::new()
        .text("appId", app.to_owned())
        .text("scannerType", scanner.to_owned())
        .part("file", Part::bytes(bytes.to_vec()).file_name("c.cfg"));
    let r = s.multipart("setTaskConfig", form).await;
    assert_eq!(r["success"], true, "{r}");
    r["object"]["id"].as_u64().unwrap()
}

async fn queue(s: &TestServer, app: &str, config: Option<u64>) -> Value {
    let config = config.map(|c| c.to_string());
    let mut params = vec![("applicationId", app), ("scannerType", "zap")];
    if let Some(c) = &config {
        params.push(("scanConfigId", c));
    }
    s.form("queueScan", &params).await
}

/// The configFile an agent gets with its next task.
async fn next_config_file(s: &TestServer, agent: &str) -> (u64, Option<Vec<u8>>) {
    let r = s
        .form(
            "requestTask",
            &[("scanners", "zap"), ("scanAgentSecureKey", agent)],
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    let blob = r["object"]["taskConfig"]["dataBlobs"]["configFile"]
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
    (r["object"]["taskId"].as_u64().unwrap(), blob)
}

/// Regression: replacing a document stripped it from the tasks queued with it (`dataBlobs`
/// came back empty).
#[tokio::test]
async fn a_replaced_config_stays_with_the_tasks_queued_with_it() {
    let s = TestServer::start().await;
    assert_eq!(set_config(&s, "7", ZAP, b"first").await, 1);
    let r = queue(&s, "7", Some(1)).await;
    assert_eq!(r["object"]["scanConfig"]["id"], 1, "{r}");
    // Queued without naming one: it takes the pair's current document, and keeps it.
    let r = queue(&s, "7", None).await;
    assert_eq!(r["object"]["scanConfig"]["id"], 1, "{r}");
    assert_eq!(set_config(&s, "7", ZAP, b"second").await, 2);
    let r = queue(&s, "7", None).await;
    assert_eq!(r["object"]["scanConfig"]["id"], 2, "{r}");

    let agent = s.agent_key().await;
    assert_eq!(
        next_config_file(&s, &agent).await,
        (1, Some(b"first".to_vec()))
    );
    assert_eq!(
        next_config_file(&s, &agent).await,
        (2, Some(b"first".to_vec()))
    );
    assert_eq!(
        next_config_file(&s, &agent).await,
        (3, Some(b"second".to_vec()))
    );
    // The replaced document can still be named while a task refers to it.
    let r = queue(&s, "7", Some(1)).await;
    assert_eq!(r["success"], true, "{r}");
    s.stop().await;
}

/// Regression: application 7's document was accepted for application 8.
#[tokio::test]
async fn a_config_belongs_to_its_application_and_scanner() {
    let s = TestServer::start().await;
    assert_eq!(set_config(&s, "7", ZAP, b"zap for 7").await, 1);
    assert_eq!(set_config(&s, "7", "burp", b"burp for 7").await, 2);
    let r = queue(&s, "8", Some(1)).await;
    assert_failure(
        &r,
        "Invalid scanConfigId: scan config 1 is for application 7 and OWASP Zed Attack Proxy, \
         not application 8 and OWASP Zed Attack Proxy.",
    );
    let r = queue(&s, "7", Some(2)).await;
    assert_failure(
        &r,
        "Invalid scanConfigId: scan config 2 is for application 7 and Burp Suite Pro, not \
         application 7 and OWASP Zed Attack Proxy.",
    );
    assert_eq!(
        s.server.queue().stats().counters.queued,
        0,
        "nothing queued"
    );
    s.stop().await;
}
