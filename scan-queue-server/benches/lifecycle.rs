//! Request rate of the whole task lifecycle over loopback HTTP, against a trivial axum handler
//! measured in the same run with the same client, concurrency and request shapes.
//!
//! `cargo bench -p scan-queue-server --bench lifecycle` (release build). Each phase runs for
//! `SCAN_QUEUE_BENCH_SECS` seconds (default 3) with `SCAN_QUEUE_BENCH_CLIENTS` concurrent
//! clients (default 8), only against 127.0.0.1, then stops by itself. It prints requests per
//! second for both and their ratio; it asserts nothing about time.
//!
//! One lifecycle is four requests: `queueScan` (url-encoded), `requestTask` (url-encoded),
//! `taskStatusUpdate` (url-encoded) and `completeTask` (multipart with a 2 KiB result file,
//! which the server writes and syncs to disk before completing). The baseline handler reads
//! the same request bodies and answers a fixed envelope.

use axum::routing::post;
use reqwest::multipart::{Form, Part};
use scan_queue_server::{ApiKey, Server, ServerConfig};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const API_KEY: &str = "bench-api-key";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves `router` on a free loopback port; returns its origin and a handle to stop it.
async fn serve(router: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (origin, tx)
}

/// One client's loop: lifecycles until `until`; returns requests made.
async fn client(
    http: reqwest::Client,
    base: String,
    agent_key: String,
    until: Instant,
    check: bool,
) -> u64 {
    let result_file = vec![b'r'; 2048];
    let auth = format!("APIKEY {API_KEY}");
    let mut requests = 0;
    while Instant::now() < until {
        let send = |op: &str, params: Vec<(&str, String)>| {
            http.post(format!("{base}/{op}"))
                .header("Authorization", &auth)
                .form(&params)
                .send()
        };
        let r: Value = send(
            "queueScan",
            vec![
                ("applicationId", "1".into()),
                ("scannerType", "zap".into()),
                ("targetURL", "http://target.example/app".into()),
            ],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let r2: Value = send(
            "requestTask",
            vec![
                ("scanners", "OWASP Zed Attack Proxy".into()),
                ("scanAgentSecureKey", agent_key.clone()),
                ("agentConfig", "scanagent.properties".into()),
            ],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let (id, task_key) = if check {
            assert_eq!(r["success"], true, "{r}");
            let o = &r2["object"];
            (
                o["taskId"].as_u64().unwrap().to_string(),
                o["secureTaskKey"].as_str().unwrap().to_owned(),
            )
        } else {
            ("1".to_owned(), "k".repeat(44))
        };
        let r3: Value = send(
            "taskStatusUpdate",
            vec![
                ("scanQueueTaskId", id.clone()),
                ("message", "This task is still in progress".into()),
                ("scanAgentSecureKey", agent_key.clone()),
                ("secureTaskKey", task_key.clone()),
            ],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let form = Form::new()
            .text("scanQueueTaskId", id)
            .text("scanAgentSecureKey", agent_key.clone())
            .text("secureTaskKey", task_key)
            .part(
                "file",
                Part::bytes(result_file.clone()).file_name("scanResults.xml"),
            );
        let r4: Value = http
            .post(format!("{base}/completeTask"))
            .header("Authorization", &auth)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if check {
            assert_eq!(r3["success"], true, "{r3}");
            assert_eq!(r4["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r4}");
        }
        requests += 4;
    }
    requests
}

/// Runs `clients` loops for `secs`; returns requests per second.
async fn phase(base: &str, keys: &[String], secs: u64, check: bool) -> f64 {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for key in keys {
        let (http, base, key, total) = (
            http.clone(),
            base.to_owned(),
            key.clone(),
            Arc::clone(&total),
        );
        tasks.push(tokio::spawn(async move {
            let n = client(http, base, key, until, check).await;
            total.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a test harness probe) runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_u64("SCAN_QUEUE_BENCH_SECS", 3).clamp(1, 60);
    let clients = env_u64("SCAN_QUEUE_BENCH_CLIENTS", 8).clamp(1, 64) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // In memory: this bench measures the HTTP layer and the queue; benches/durability.rs
        // measures the journal's cost against the same in-memory baseline.
        let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir.path());
        config.durability = None;
        let server = Server::new(config).unwrap();
        let (origin, stop_server) = serve(server.router()).await;
        let base = format!("{origin}/threadfix/rest/latest/tasks");
        let http = reqwest::Client::new();
        let mut keys = Vec::new();
        for _ in 0..clients {
            let r: Value = http
                .get(format!("{base}/requestScanAgentKey"))
                .header("Authorization", format!("APIKEY {API_KEY}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            keys.push(r["object"].as_str().unwrap().to_owned());
        }

        let trivial = axum::Router::new().route(
            "/threadfix/rest/latest/tasks/{op}",
            post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                axum::Json(serde_json::json!({
                    "message": "", "success": true, "responseCode": -1, "object": "ok"
                }))
            }),
        );
        let (trivial_origin, stop_trivial) = serve(trivial).await;
        let trivial_base = format!("{trivial_origin}/threadfix/rest/latest/tasks");

        // Warm up both, then measure alternately: trivial, lifecycle.
        phase(&trivial_base, &keys, 1, false).await;
        phase(&base, &keys, 1, true).await;
        let trivial_rps = phase(&trivial_base, &keys, secs, false).await;
        let lifecycle_rps = phase(&base, &keys, secs, true).await;
        let done = server.queue().stats().counters.completions;

        println!("lifecycle over loopback HTTP, {clients} clients, {secs} s per phase:");
        println!("  trivial axum handler   {trivial_rps:>9.0} requests/s");
        println!(
            "  scan-queue lifecycle   {lifecycle_rps:>9.0} requests/s  ({:.0} lifecycles/s, {done} tasks completed in all)",
            lifecycle_rps / 4.0
        );
        println!("  ratio lifecycle/trivial  {:.2}", lifecycle_rps / trivial_rps);
        let _ = stop_server.send(());
        let _ = stop_trivial.send(());
    });
}
