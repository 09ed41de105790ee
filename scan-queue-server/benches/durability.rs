//! Acknowledged transitions per second over loopback HTTP for each `--fsync` policy, against
//! the in-memory server (no journal) measured in the same run with the same clients.
//!
//! `cargo bench -p scan-queue-server --bench durability` (release build). Each phase runs for
//! `SCAN_QUEUE_BENCH_SECS` seconds (default 2), once with 1 client and once with
//! `SCAN_QUEUE_BENCH_CLIENTS` concurrent clients (default 16), each on a fresh data directory
//! under the system temp dir, only against 127.0.0.1; then it stops by itself. It prints
//! transitions per second and the ratio to the in-memory server; it asserts nothing about time.
//!
//! With PostgreSQL installed (see `tests/pg/mod.rs`), one more row: `--postgres`, a
//! cluster started in a temporary directory (fsync on, as PostgreSQL ships), a fresh
//! database per phase, the server active before the clock starts.
//!
//! A transition is one acknowledged mutating call. Each client loops over `queueScan`,
//! `requestTask`, `taskStatusUpdate` and `failTask` (all url-encoded, no result file, so that
//! the only disk writes are the journal's).

#[path = "../tests/pg/mod.rs"]
mod pg;

use scan_queue_server::{ApiKey, Durability, Fsync, Postgres, Server, ServerConfig};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const API_KEY: &str = "bench-api-key";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client's loop until `until`; returns the transitions acknowledged.
async fn client(http: reqwest::Client, base: String, agent: String, until: Instant) -> u64 {
    let auth = format!("APIKEY {API_KEY}");
    let call = |op: &str, params: Vec<(&str, String)>| {
        let request = http
            .post(format!("{base}/{op}"))
            .header("Authorization", &auth)
            .form(&params);
        async move {
            let r: Value = request.send().await.unwrap().json().await.unwrap();
            r
        }
    };
    let mut acknowledged = 0;
    while Instant::now() < until {
        let r = call(
            "queueScan",
            vec![("applicationId", "1".into()), ("scannerType", "zap".into())],
        )
        .await;
        assert_eq!(r["success"], true, "{r}");
        let r = call(
            "requestTask",
            vec![
                ("scanners", "zap".into()),
                ("scanAgentSecureKey", agent.clone()),
            ],
        )
        .await;
        acknowledged += 1;
        if r["success"] != true {
            continue;
        }
        let id = r["object"]["taskId"].as_u64().unwrap().to_string();
        let key = r["object"]["secureTaskKey"].as_str().unwrap().to_owned();
        let agent_call = |message: &str| {
            vec![
                ("scanQueueTaskId", id.clone()),
                ("message", message.to_owned()),
                ("scanAgentSecureKey", agent.clone()),
                ("secureTaskKey", key.clone()),
            ]
        };
        let r = call("taskStatusUpdate", agent_call("50% done")).await;
        assert_eq!(r["success"], true, "{r}");
        let r = call("failTask", agent_call("bench")).await;
        assert_eq!(r["success"], true, "{r}");
        acknowledged += 3;
    }
    acknowledged
}

/// Transitions per second of one server with `clients` concurrent clients.
async fn phase(store: &Store, clients: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(ApiKey::new(API_KEY).unwrap(), dir.path());
    match store {
        Store::Local(durability) => config.durability = durability.clone(),
        Store::Postgres(pg) => {
            let db = format!("bench_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
            pg.psql(&format!("CREATE DATABASE {db}"));
            config.postgres = Some(Postgres::new(&pg.url_of(&db), "http://bench.invalid").unwrap());
        }
    }
    let server = Server::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let base = format!(
        "http://{}/threadfix/rest/latest/tasks",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
        }
    });
    let http = reqwest::Client::new();
    let waited = Instant::now();
    while http
        .get(format!("{origin}/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != reqwest::StatusCode::OK
    {
        assert!(waited.elapsed() < Duration::from_secs(20), "never active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut agents = Vec::new();
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
        agents.push(r["object"].as_str().unwrap().to_owned());
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let handles: Vec<_> = agents
        .into_iter()
        .map(|agent| tokio::spawn(client(http.clone(), base.clone(), agent, until)))
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let _ = tx.send(());
    serving.await.unwrap().unwrap();
    rate
}

/// Where a phase's server keeps its state.
enum Store {
    Local(Option<Durability>),
    Postgres(pg::Pg),
}

static DATABASES: AtomicU64 = AtomicU64::new(0);

fn main() {
    let secs = env_u64("SCAN_QUEUE_BENCH_SECS", 2);
    let many = env_u64("SCAN_QUEUE_BENCH_CLIENTS", 16) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let durable = |fsync| {
        Some(Durability {
            fsync,
            ..Durability::default()
        })
    };
    let mut modes: Vec<(&str, Store)> = vec![
        ("in-memory (baseline)", Store::Local(None)),
        ("--fsync never", Store::Local(durable(Fsync::Never))),
        ("--fsync batch (2 ms)", Store::Local(durable(Fsync::Batch))),
        ("--fsync always", Store::Local(durable(Fsync::Always))),
    ];
    if let Some(pg) = pg::Pg::start("durability bench, --postgres row") {
        modes.push(("--postgres (fsync on)", Store::Postgres(pg)));
    }
    println!("acknowledged transitions per second over loopback HTTP, {secs} s per phase\n");
    println!("| server | 1 client | ratio | {many} clients | ratio |\n|---|---:|---:|---:|---:|");
    let mut baseline = (0.0, 0.0);
    for (name, store) in &modes {
        let one = runtime.block_on(phase(store, 1, secs));
        let lots = runtime.block_on(phase(store, many, secs));
        if matches!(store, Store::Local(None)) {
            baseline = (one, lots);
        }
        println!(
            "| {name} | {one:.0} | {:.3} | {lots:.0} | {:.3} |",
            one / baseline.0,
            lots / baseline.1
        );
    }
}
