//! Signed webhooks over real HTTP on loopback: a receiver checks every signature; deliveries
//! wait while it is down and all arrive once it is up; a receiver that always fails is given
//! up after the bound, and `/metrics` says so. (Across a SIGKILL: `durability_crash.rs`.)

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use scan_queue_server::{Clock, Webhook, WebhookSecret, Webhooks};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhook-secret-0123456789";
const BURP: &str = "Burp Suite Pro";

/// What a receiver got: delivery id → (event header, body), every signature checked.
#[derive(Clone, Default)]
struct Received {
    deliveries: Arc<Mutex<BTreeMap<u64, (String, Value)>>>,
    posts: Arc<Mutex<usize>>,
    failing: Arc<AtomicBool>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    *r.posts.lock().unwrap() += 1;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = headers["x-scanqueue-signature-256"].to_str().unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    mac.verify_slice(&bytes).expect("a valid signature");
    if r.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    let id: u64 = headers["x-scanqueue-delivery"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body["deliveryId"], id);
    let event = headers["x-scanqueue-event"].to_str().unwrap().to_owned();
    assert_eq!(body["event"], event.as_str());
    r.deliveries.lock().unwrap().insert(id, (event, body));
    StatusCode::NO_CONTENT
}

/// A receiver on `listener`, until the test ends.
fn serve_receiver(listener: tokio::net::TcpListener, received: Received) {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(received);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

async fn server(url: &str, max_attempts: u32) -> TestServer {
    let url = url.to_owned();
    TestServer::start_on(Clock::system(), move |c| {
        c.queue.lease_ms = 300;
        c.queue.max_attempts = 1;
        c.webhooks = Webhooks {
            receivers: vec![Webhook::new(url).unwrap()],
            secret: WebhookSecret::new(SECRET),
            first_retry: Duration::from_millis(20),
            max_retry: Duration::from_millis(100),
            max_attempts,
        };
    })
    .await
}

/// Completes one task, fails one, lets one time out: three terminal transitions.
async fn three_endings(s: &TestServer) -> (String, Vec<String>) {
    let agent = s.agent_key().await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        s.queue_scan(BURP).await;
        keys.push(s.request_task(&agent, BURP).await.unwrap().1);
    }
    let r = s.complete(1, &agent, &keys[0]).await;
    assert_eq!(r["success"], true, "{r}");
    let r = s.fail(2, "scanner crashed", &agent, &keys[1]).await;
    assert_eq!(r["success"], true, "{r}");
    // Task 3's lease (300 ms, one attempt) runs out: it times out.
    wait_until(Duration::from_secs(5), || {
        s.server
            .queue()
            .task(scan_queue::TaskId(3))
            .unwrap()
            .status()
            == scan_queue::TaskStatus::CompleteTimedOut
    })
    .await;
    (agent, keys)
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_metric(s: &TestServer, name: &str, value: f64) {
    for _ in 0..500 {
        if metric(s, name).await == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} did not reach {value} within 5 s");
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = s.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_terminal_transition_arrives_signed_and_without_keys() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Received::default();
    serve_receiver(listener, received.clone());
    let s = server(&url, 5).await;
    let (agent, keys) = three_endings(&s).await;
    wait_until(Duration::from_secs(5), || {
        received.deliveries.lock().unwrap().len() == 3
    })
    .await;
    let got = received.deliveries.lock().unwrap().clone();
    let by_task: BTreeMap<u64, (&str, &Value)> = got
        .values()
        .map(|(e, b)| (b["task"]["id"].as_u64().unwrap(), (e.as_str(), b)))
        .collect();
    assert_eq!(by_task[&1].0, "task.completed");
    assert_eq!(by_task[&2].0, "task.failed");
    assert_eq!(by_task[&3].0, "task.timed_out");
    let completed = by_task[&1].1;
    assert_eq!(completed["task"]["statusString"], "COMPLETE_SUCCESSFUL");
    assert_eq!(completed["result"]["size"], 6);
    assert_eq!(
        completed["result"]["downloadPath"],
        "/rest/latest/tasks/1/result"
    );
    assert!(
        by_task[&2].1["task"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("scanner crashed")
    );
    for (_, body) in got.values() {
        let text = body.to_string();
        assert!(!text.contains(&agent) && !text.contains(API_KEY) && !text.contains(SECRET));
        for key in &keys {
            assert!(!text.contains(key.as_str()), "a task key in {text}");
        }
    }
    assert_eq!(metric(&s, "scan_queue_webhook_deliveries_total").await, 3.0);
    assert_eq!(
        metric(&s, "scan_queue_webhook_deliveries_pending").await,
        0.0
    );
    s.stop().await;
}

#[tokio::test]
async fn deliveries_wait_for_a_receiver_that_is_down_then_all_arrive() {
    // A port with nothing listening: every attempt is refused until the receiver starts.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let s = server(&url, 1000).await;
    three_endings(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&s, "scan_queue_webhook_deliveries_pending").await,
        3.0
    );
    assert_eq!(metric(&s, "scan_queue_webhook_deliveries_total").await, 0.0);
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    serve_receiver(listener, received.clone());
    wait_until(Duration::from_secs(5), || {
        received.deliveries.lock().unwrap().len() == 3
    })
    .await;
    wait_for_metric(&s, "scan_queue_webhook_deliveries_pending", 0.0).await;
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_is_given_up_after_the_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Received::default();
    received.failing.store(true, Ordering::SeqCst);
    serve_receiver(listener, received.clone());
    let s = server(&url, 3).await;
    three_endings(&s).await;
    wait_for_metric(&s, "scan_queue_webhook_deliveries_failed_total", 3.0).await;
    // Given up after three attempts each: no fourth comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&s, "scan_queue_webhook_deliveries_pending").await,
        0.0
    );
    assert_eq!(*received.posts.lock().unwrap(), 9);
    assert_eq!(
        metric(&s, "scan_queue_webhook_deliveries_failed_total").await,
        3.0
    );
    assert_eq!(metric(&s, "scan_queue_webhook_deliveries_total").await, 0.0);
    s.stop().await;
}

/// The README's receiver (`examples/webhook_receiver.py`) verifies real deliveries.
#[tokio::test]
async fn the_example_receiver_verifies_real_deliveries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut receiver = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/webhook_receiver.py"
        ))
        .args(["127.0.0.1", &port.to_string()])
        .env("SCAN_QUEUE_WEBHOOK_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        receiver.stdout.take().unwrap(),
    ));
    let s = server(&format!("http://127.0.0.1:{port}/"), 1000).await;
    three_endings(&s).await;
    let mut events = Vec::new();
    while events.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a delivery within 10 s")
            .unwrap()
            .expect("a line");
        let v: Value = serde_json::from_str(&line).unwrap();
        events.push((
            v["task"].as_u64().unwrap(),
            v["event"].as_str().unwrap().to_owned(),
        ));
    }
    events.sort();
    assert_eq!(
        events,
        [
            (1, "task.completed".to_owned()),
            (2, "task.failed".to_owned()),
            (3, "task.timed_out".to_owned())
        ]
    );
    s.stop().await;
    receiver.kill().await.unwrap();
}
