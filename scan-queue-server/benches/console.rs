//! What the live page costs: `GET /tasks/live.json` (the JSON the page polls every 2 s)
//! against a queue of `SCAN_QUEUE_BENCH_TASKS` tasks (default 100 000), with and without row
//! filters, beside `GET /tasks/summary` (counts only) measured in the same run as the
//! baseline. In process (the router, no socket), in memory, so the figure is the handler:
//! mostly the time the state's lock is held.
//!
//! `cargo bench -p scan-queue-server --bench console`. Prints the mean per request and the
//! ratio to the baseline; asserts nothing about time.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use scan_queue_server::{ApiKey, Server, ServerConfig};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const API_KEY: &str = "bench-api-key";

async fn call(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, Vec<u8>, Option<String>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec(), cookie)
}

fn form(path: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("APIKEY {API_KEY}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Mean time of `GET path` over at least `min` and at least 200 requests.
async fn time(router: &axum::Router, cookie: &str, path: &str, min: Duration) -> (Duration, usize) {
    let started = Instant::now();
    let mut n = 0u32;
    let mut bytes = 0;
    while n < 200 || started.elapsed() < min {
        let request = Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let (status, body, _) = call(router, request).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        bytes = body.len();
        n += 1;
    }
    (started.elapsed() / n, bytes)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tasks: usize = std::env::var("SCAN_QUEUE_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir.path());
    config.durability = None;
    let server = Server::new(config).unwrap();
    let router = server.router();
    for i in 0..tasks {
        let body = format!(
            "applicationId={}&scannerType=zap&targetURL=https%3A%2F%2Fhost{i}.example%2Fapp",
            i % 50 + 1
        );
        let (status, _, _) = call(&router, form("/rest/tasks/queueScan", body)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let login = Request::post("/tasks/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("api_key={API_KEY}")))
        .unwrap();
    let (_, _, cookie) = call(&router, login).await;
    let cookie = cookie.expect("a session cookie");
    let min = Duration::from_secs(2);
    println!("{tasks} queued tasks; mean per request (response bytes), ratio to /tasks/summary");
    let (base, base_bytes) = time(&router, &cookie, "/tasks/summary", min).await;
    println!("  /tasks/summary                      {base:>10.1?} ({base_bytes} B)  1.0");
    for (label, path) in [
        ("live.json (first page)", "/tasks/live.json"),
        ("live.json?from=50000", "/tasks/live.json?from=50000"),
        ("live.json?application=7", "/tasks/live.json?application=7"),
        (
            "live.json?url=host99999 (rare)",
            "/tasks/live.json?url=host99999.",
        ),
        (
            "live.json?agent=nobody (none)",
            "/tasks/live.json?agent=nobody",
        ),
        ("/tasks (HTML, first page)", "/tasks"),
    ] {
        let (mean, bytes) = time(&router, &cookie, path, min).await;
        let ratio = mean.as_secs_f64() / base.as_secs_f64();
        println!("  {label:<34}  {mean:>10.1?} ({bytes} B)  {ratio:.1}");
    }
}
