//! Arbitrary ThreadFix requests (paths, methods, query strings, url-encoded, multipart and raw
//! bodies, real or garbage keys) through the server's parsing and handling, in process (no
//! network). Every answer must be a ThreadFix envelope; none may come from a panic.

#![no_main]

use arbitrary::Arbitrary;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use scan_queue::KeySource;
use scan_queue_server::{ApiKey, Clock, Server, ServerConfig};
use std::sync::OnceLock;
use tower::ServiceExt;

const API_KEY: &str = "fuzz-api-key";

struct World {
    runtime: tokio::runtime::Runtime,
    server: Server,
    clock: Clock,
    agent_key: String,
    task_keys: Vec<(u64, String)>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scan-queue-fuzz-wire-{}", std::process::id()));
        let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir);
        config.max_upload_bytes = 4096;
        config.max_config_bytes = 4096;
        config.queue.max_open_tasks = 1_000;
        config.queue.max_agents = 100;
        config.queue.max_finished_tasks = 100;
        let clock = Clock::manual(1_700_000_000_000);
        let server =
            Server::with_parts(config, KeySource::from_seed([5; 32]), clock.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A few tasks held by a known agent, so requests with real keys reach deep paths.
        // Set up through the API, as every change must go (it is journaled).
        let call = |op: &str, form: String| -> serde_json::Value {
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("/rest/latest/tasks/{op}"))
                .header("Authorization", format!("APIKEY {API_KEY}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap();
            runtime.block_on(async {
                let response = server.router().oneshot(request).await.unwrap();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                serde_json::from_slice(&body).unwrap()
            })
        };
        let agent = call("requestScanAgentKey", String::new())["object"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..8 {
            call("queueScan", "applicationId=1&scannerType=zap".into());
        }
        let mut task_keys = Vec::new();
        for _ in 0..6 {
            let r = call(
                "requestTask",
                format!("scanners=zap&scanAgentSecureKey={agent}&agentConfig="),
            );
            task_keys.push((
                r["object"]["taskId"].as_u64().unwrap(),
                r["object"]["secureTaskKey"].as_str().unwrap().to_owned(),
            ));
        }
        let agent_key = agent;
        World {
            runtime,
            server,
            clock,
            agent_key,
            task_keys,
        }
    })
}

const OPS: [&str; 9] = [
    "queueScan",
    "setTaskConfig",
    "requestScanAgentKey",
    "requestTask",
    "taskStatusUpdate",
    "completeTask",
    "failTask",
    "scanners",
    "nope",
];
const PREFIXES: [&str; 5] = [
    "/rest/tasks/",
    "/rest/latest/tasks/",
    "/threadfix/rest/v2.8/tasks/",
    "/threadfix/rest/tasks/",
    "/rest/",
];
const NAMES: [&str; 14] = [
    "applicationId",
    "appId",
    "scannerType",
    "targetURL",
    "scanConfigId",
    "scanners",
    "scanAgentSecureKey",
    "agentConfig",
    "scanQueueTaskId",
    "message",
    "secureTaskKey",
    "apiKey",
    "file",
    "files",
];

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(String),
    Bytes(Vec<u8>),
    Int(i64),
    Big(u128),
    AgentKey,
    TaskKey(u8),
    TaskId(u8),
    Scanner(bool),
}

#[derive(Arbitrary, Debug)]
enum Encoding {
    Query,
    UrlEncoded,
    Multipart,
    RawBody { content_type: String, body: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Auth {
    Header,
    Param,
    Wrong(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: bool,
    op: u8,
    prefix: u8,
    raw_path: Option<String>,
    auth: Auth,
    encoding: Encoding,
    params: Vec<(u8, Option<String>, Value)>,
    file: Option<(bool, Vec<u8>)>,
    tick_ms: u16,
}

/// The parameters that carry secrets. A real key goes only into these: in any other field
/// (a scanner name, a message, an agent config) the server may rightly echo or store the
/// value, so a real key there would make "no key in an answer" untestable. Elsewhere a
/// key-shaped stand-in (the key reversed) is sent instead.
const KEY_FIELDS: [&str; 3] = ["scanAgentSecureKey", "secureTaskKey", "apiKey"];

fn value_bytes(w: &World, name: &str, v: &Value) -> Vec<u8> {
    let key = |k: &str| {
        if KEY_FIELDS.contains(&name) {
            k.as_bytes().to_vec()
        } else {
            k.bytes().rev().collect()
        }
    };
    match v {
        Value::Raw(s) => s.clone().into_bytes(),
        Value::Bytes(b) => b.clone(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Big(i) => i.to_string().into_bytes(),
        Value::AgentKey => key(&w.agent_key),
        Value::TaskKey(i) => key(&w.task_keys[*i as usize % w.task_keys.len()].1),
        Value::TaskId(i) => w.task_keys[*i as usize % w.task_keys.len()]
            .0
            .to_string()
            .into_bytes(),
        Value::Scanner(short) => {
            if *short {
                b"zap".to_vec()
            } else {
                b"Burp Suite Pro".to_vec()
            }
        }
    }
}

fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let w = world();
    w.clock.advance_ms(u64::from(input.tick_ms));
    let mut params: Vec<(String, Vec<u8>)> = input
        .params
        .iter()
        .take(16)
        .map(|(n, raw, v)| {
            let name = raw
                .clone()
                .unwrap_or_else(|| NAMES[*n as usize % NAMES.len()].to_owned());
            let value = value_bytes(w, &name, v);
            (name, value)
        })
        .collect();
    let mut request = Request::builder();
    match &input.auth {
        Auth::Header => request = request.header("Authorization", format!("APIKEY {API_KEY}")),
        Auth::Param => params.push(("apiKey".into(), API_KEY.into())),
        Auth::Wrong(k) => {
            if let Ok(v) = http::HeaderValue::from_str(&format!("APIKEY {k}")) {
                request = request.header("Authorization", v);
            }
        }
        Auth::Missing => {}
    }
    let path = match &input.raw_path {
        Some(p) if p.starts_with('/') => p.clone(),
        _ => format!(
            "{}{}",
            PREFIXES[input.prefix as usize % PREFIXES.len()],
            OPS[input.op as usize % OPS.len()]
        ),
    };
    let query: String = params
        .iter()
        .map(|(n, v)| format!("{}={}", percent(n.as_bytes()), percent(v)))
        .collect::<Vec<_>>()
        .join("&");
    let (uri, content_type, body): (String, Option<String>, Vec<u8>) = match &input.encoding {
        Encoding::Query => (format!("{path}?{query}"), None, Vec::new()),
        Encoding::UrlEncoded => (
            path,
            Some("application/x-www-form-urlencoded".into()),
            query.into_bytes(),
        ),
        Encoding::RawBody { content_type, body } => {
            (path, Some(content_type.clone()), body.clone())
        }
        Encoding::Multipart => {
            let mut body = Vec::new();
            for (n, v) in &params {
                body.extend_from_slice(
                    format!("--XB\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n")
                        .as_bytes(),
                );
                body.extend_from_slice(v);
                body.extend_from_slice(b"\r\n");
            }
            if let Some((files, content)) = &input.file {
                let name = if *files { "files" } else { "file" };
                body.extend_from_slice(format!("--XB\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"r.xml\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
                body.extend_from_slice(content);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"--XB--\r\n");
            (path, Some("multipart/form-data; boundary=XB".into()), body)
        }
    };
    let method = if input.method {
        Method::POST
    } else {
        Method::GET
    };
    request = request.method(method).uri(uri.as_str());
    if let Some(ct) = content_type {
        match http::HeaderValue::from_str(&ct) {
            Ok(v) => request = request.header("Content-Type", v),
            Err(_) => return,
        }
    }
    let Ok(request) = request.body(Body::from(body)) else {
        return; // not a valid HTTP request (e.g. a path with spaces): nothing to send
    };
    // The Scan Agent Tasks page and /metrics answer HTML, redirects and Prometheus text, not
    // envelopes: there, check only that nothing panicked and no key is shown.
    let page = [
        "/tasks",
        "/threadfix/tasks",
        "/metrics",
        "/threadfix/metrics",
    ]
    .iter()
    .any(|p| {
        let path = request.uri().path();
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    // GET on the root redirects to the page; GET /ready answers a word for load balancers.
    let page = page
        || (request.method() == Method::GET
            && ["/", "/threadfix", "/threadfix/", "/ready"].contains(&request.uri().path()));
    // A result download answers the file itself when it succeeds (its refusals are envelopes).
    let download = request.uri().path().ends_with("/result");
    let (status, bytes) = w.runtime.block_on(async {
        let response = w
            .server
            .router()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a bounded answer");
        (status, bytes)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a handler panicked"
    );
    if page || (download && (status.is_success() || status == StatusCode::NOT_MODIFIED)) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(API_KEY), "a page shows the API key");
        assert!(!text.contains(&w.agent_key), "a page shows the agent key");
        for (_, k) in &w.task_keys {
            assert!(!text.contains(k.as_str()), "a page shows a task key");
        }
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    assert!(json["success"].is_boolean(), "no success flag: {json}");
    assert!(json["message"].is_string(), "no message: {json}");
    assert_eq!(json["responseCode"], -1, "{json}");
    if json["success"] == false {
        assert!(json["object"].is_null(), "failure with an object: {json}");
        assert!(
            !json["message"].as_str().unwrap_or("").is_empty(),
            "failure without a reason: {json}"
        );
    }
    let text = String::from_utf8_lossy(&bytes);
    // Keys reach an answer only where ThreadFix puts them (assignment/complete objects), and
    // never inside a failure message.
    if json["success"] == false {
        assert!(
            !text.contains(&w.agent_key),
            "a failure shows the agent key"
        );
        for (_, k) in &w.task_keys {
            assert!(!text.contains(k.as_str()), "a failure shows a task key");
        }
        assert!(!text.contains(API_KEY), "a failure shows the API key");
    }
    w.server
        .queue()
        .check_invariants()
        .expect("the queue stays consistent");
});
