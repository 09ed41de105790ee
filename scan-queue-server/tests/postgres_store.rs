//! The PostgreSQL store over real HTTP and a real PostgreSQL (see `pg/mod.rs`): the state and
//! result files live in the database; a second server on it is a standby (`/ready` 503, calls
//! refused with 503 naming the active server) that keeps its state current and takes over
//! when the active one stops; a restarted server finds everything.

mod common;
mod pg;

use common::*;
use reqwest::StatusCode;
use scan_queue_server::Postgres;
use std::time::{Duration, Instant};

const ZAP: &str = "OWASP Zed Attack Proxy";

async fn on(pg: &pg::Pg, name: &str) -> TestServer {
    let url = pg.url();
    TestServer::start_with(|c| {
        let mut pg = Postgres::new(&url, format!("http://{name}.invalid:8080")).unwrap();
        // Snapshots (and the log rows they replace removed) every few records: standbys
        // must rebuild from them.
        pg.snapshot_every_events = 3;
        c.postgres = Some(pg);
    })
    .await
}

async fn ready(s: &TestServer) -> StatusCode {
    s.http
        .get(format!("{}/ready", s.origin))
        .send()
        .await
        .unwrap()
        .status()
}

async fn wait_until_active(s: &TestServer) {
    let start = Instant::now();
    while ready(s).await != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no take-over within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn download(s: &TestServer, id: u64) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = fetch_result(s, id, None).await;
    (status, body)
}

/// Status, `Content-Range` and body of a result download, with `Range: range` if any.
async fn fetch_result(
    s: &TestServer,
    id: u64,
    range: Option<&str>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut request = s
        .http
        .get(format!(
            "{}/threadfix/rest/latest/tasks/{id}/result",
            s.origin
        ))
        .header("Authorization", format!("APIKEY {API_KEY}"));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let r = request.send().await.unwrap();
    let content_range = r
        .headers()
        .get("content-range")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status(), content_range, r.bytes().await.unwrap().to_vec())
}

/// A report of `len` bytes, well-formed XML, not repeating itself in 256 KiB.
fn report(len: usize) -> Vec<u8> {
    let mut bytes = b"<report>".to_vec();
    let mut i: u64 = 0;
    while bytes.len() + 10 < len {
        i += 1;
        bytes.extend_from_slice(format!("<f n=\"{i}\"/>").as_bytes());
    }
    bytes.extend_from_slice(b"</report>");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_lives_in_postgres_and_a_standby_takes_over() {
    let Some(pg) = pg::Pg::start("the_state_lives_in_postgres_and_a_standby_takes_over") else {
        return;
    };
    let a = on(&pg, "a").await;
    wait_until_active(&a).await;
    let b = on(&pg, "b").await;

    // Work on the active server: a task completed with a file of several chunks.
    let id = a.queue_scan("zap").await;
    let agent = a.agent_key().await;
    let (taken, key) = a.request_task(&agent, ZAP).await.unwrap();
    assert_eq!(taken, id);
    let file = report(700 * 1024);
    let r = a
        .multipart("completeTask", complete_form(id, &agent, &key, &file))
        .await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    assert_eq!(download(&a, id).await, (StatusCode::OK, file.clone()));
    assert_eq!(pg.psql("SELECT count(*) FROM sq_result_chunk"), "3");
    assert_eq!(pg.psql("SELECT count(*) FROM sq_snapshot"), "1");
    let log: u64 = pg.psql("SELECT count(*) FROM sq_log").parse().unwrap();
    assert!(
        log <= 6,
        "log rows before the last two snapshots are removed: {log}"
    );

    // The standby refuses, naming the active server, and follows its log.
    assert_eq!(ready(&b).await, StatusCode::SERVICE_UNAVAILABLE);
    let active = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("scan_queue_active "))
            .map(str::to_owned)
    };
    assert_eq!(active(a.metrics_text().await).as_deref(), Some("1"));
    assert_eq!(active(b.metrics_text().await).as_deref(), Some("0"));
    let refused = b
        .http
        .get(b.url("requestScanAgentKey"))
        .header("Authorization", format!("APIKEY {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = json(refused).await;
    assert_failure(
        &refused,
        "This server is a standby; the active server is http://a.invalid:8080",
    );
    let start = Instant::now();
    while b
        .server
        .queue()
        .task(scan_queue::TaskId(id))
        .map(|t| t.status())
        != Some(scan_queue::TaskStatus::CompleteSuccessful)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the standby does not follow the log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The active server stops: the standby takes over, with the same keys, ids and files.
    a.stop().await;
    wait_until_active(&b).await;
    assert_eq!(download(&b, id).await, (StatusCode::OK, file.clone()));
    let next = b.queue_scan("zap").await;
    assert_eq!(next, id + 1, "ids continue");
    let (taken, key) = b.request_task(&agent, ZAP).await.unwrap();
    assert_eq!(taken, next);
    let r = b.update(next, "half way", &agent, &key).await;
    assert_eq!(r["success"], true, "{r}");

    // A server started later on the database (b still active) stands by with everything.
    let c = on(&pg, "c").await;
    let start = Instant::now();
    while c.server.queue().task(scan_queue::TaskId(next)).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new standby does not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready(&c).await, StatusCode::SERVICE_UNAVAILABLE);
    b.stop().await;
    wait_until_active(&c).await;
    let r = c.complete(next, &agent, &key).await;
    assert_eq!(r["object"]["statusString"], "COMPLETE_SUCCESSFUL", "{r}");
    assert_eq!(download(&c, id).await, (StatusCode::OK, file));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_completion_keeps_no_file_in_postgres() {
    let Some(pg) = pg::Pg::start("a_refused_completion_keeps_no_file_in_postgres") else {
        return;
    };
    let a = on(&pg, "a").await;
    wait_until_active(&a).await;
    let id = a.queue_scan("zap").await;
    let agent = a.agent_key().await;
    let (_, key) = a.request_task(&agent, ZAP).await.unwrap();
    // A refused completion (a wrong task key) keeps no file.
    let r = a
        .multipart(
            "completeTask",
            complete_form(id, &agent, "wrong-key", &report(1000)),
        )
        .await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(pg.psql("SELECT count(*) FROM sq_result_file"), "0");
    let r = a
        .multipart(
            "completeTask",
            complete_form(id, &agent, &key, &report(1000)),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(pg.psql("SELECT count(*) FROM sq_result_file"), "1");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_verified() {
    let Some(pg) = pg::Pg::start("tls_to_postgres_is_verified") else {
        return;
    };
    let ca = pg.require_tls();
    let url = format!("{}?sslmode=require", pg.url());
    let start = |name: &'static str, ca: Option<String>| {
        let url = url.clone();
        TestServer::start_with(move |c| {
            let mut pg = Postgres::new(&url, format!("http://{name}.invalid")).unwrap();
            if let Some(ca) = ca {
                assert_eq!(pg.trust_ca_pem(ca.as_bytes()), Ok(1));
            }
            c.postgres = Some(pg);
        })
    };
    // Plain TCP is refused by this cluster, and a server that does not trust its certificate
    // ends every handshake itself: neither ever gets a session.
    let plain = TestServer::start_with(|c| {
        let url = format!("{}?sslmode=disable", pg.url());
        c.postgres = Some(Postgres::new(&url, "http://plain.invalid").unwrap());
    })
    .await;
    let untrusting = start("untrusting", None).await;
    let started = Instant::now();
    while !(pg.log().contains("rejects connection for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption") && pg.log().contains("unknown ca")) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "both refusals never logged:\n{}",
            pg.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // With the CA: active, over TLS, results and all.
    let trusting = start("trusting", Some(ca)).await;
    wait_until_active(&trusting).await;
    let id = trusting.queue_scan("zap").await;
    let agent = trusting.agent_key().await;
    let (_, key) = trusting.request_task(&agent, ZAP).await.unwrap();
    let file = report(300_000);
    let r = trusting
        .multipart("completeTask", complete_form(id, &agent, &key, &file))
        .await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(download(&trusting, id).await, (StatusCode::OK, file));
    let sessions = |name: &str| {
        pg.psql(&format!(
            "SELECT count(*) FILTER (WHERE ssl), count(*) FROM pg_stat_activity \
             JOIN pg_stat_ssl USING (pid) WHERE application_name = 'scan-queue http://{name}.invalid'"
        ))
    };
    let tls = sessions("trusting");
    let (with_tls, all) = tls.split_once('|').unwrap();
    assert!(all != "0" && with_tls == all, "TLS sessions | all: {tls}");
    assert_eq!(sessions("untrusting"), "0|0");
    assert_eq!(sessions("plain"), "0|0");
    for s in [&plain, &untrusting] {
        assert_eq!(ready(s).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    for s in [plain, untrusting, trusting] {
        s.stop().await;
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let mut pg = Postgres::new("postgresql://u@127.0.0.1/db?sslmode=require", "http://x").unwrap();
    assert!(pg.trust_ca_pem(b"not a certificate").is_err());
    assert!(pg.trust_ca_pem(b"").is_err());
    let ca = rcgen::generate_simple_self_signed(vec!["db".to_owned()]).unwrap();
    assert_eq!(pg.trust_ca_pem(ca.cert.pem().as_bytes()), Ok(1));
    // Without sslmode=require the CA would go unused: refused, saying so.
    let mut plain = Postgres::new("postgresql://u@127.0.0.1/db", "http://x").unwrap();
    let refused = plain.trust_ca_pem(ca.cert.pem().as_bytes()).unwrap_err();
    assert!(refused.contains("sslmode=require"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_from_postgres_answer_as_from_a_data_dir() {
    let Some(pg) = pg::Pg::start("byte_ranges_from_postgres_answer_as_from_a_data_dir") else {
        return;
    };
    let on_pg = on(&pg, "a").await;
    wait_until_active(&on_pg).await;
    let on_disk = TestServer::start().await;
    let file = report(700 * 1024); // three chunks of 256 KiB in PostgreSQL
    let mut ids = Vec::new();
    for s in [&on_pg, &on_disk] {
        let id = s.queue_scan("zap").await;
        let agent = s.agent_key().await;
        let (_, key) = s.request_task(&agent, ZAP).await.unwrap();
        let r = s
            .multipart("completeTask", complete_form(id, &agent, &key, &file))
            .await;
        assert_eq!(r["success"], true, "{r}");
        ids.push(id);
    }
    let size = file.len();
    let chunk = 256 * 1024;
    for (range, want) in [
        ("bytes=0-4", Some(0..5)),
        ("bytes=262140-262150", Some(chunk - 4..chunk + 7)), // across a chunk's end
        ("bytes=262144-524288", Some(chunk..2 * chunk + 1)),
        ("bytes=600000-", Some(600_000..size)),
        ("bytes=-100", Some(size - 100..size)),
        ("bytes=10-99999999", Some(10..size)),
        ("bytes=99999999-", None),
        ("bytes=0-1,5-9", None),
        ("bytes=9-1", None),
        ("pages=1", None),
    ] {
        let from_pg = fetch_result(&on_pg, ids[0], Some(range)).await;
        let from_disk = fetch_result(&on_disk, ids[1], Some(range)).await;
        assert_eq!(from_pg.0, from_disk.0, "{range}");
        assert_eq!(from_pg.1, from_disk.1, "{range}");
        match want {
            Some(want) => {
                assert_eq!(from_pg.0, StatusCode::PARTIAL_CONTENT, "{range}");
                let header = format!("bytes {}-{}/{size}", want.start, want.end - 1);
                assert_eq!(from_pg.1, Some(header), "{range}");
                assert!(from_pg.2 == file[want.clone()], "{range}: other bytes");
                assert!(from_disk.2 == file[want], "{range}: other bytes from disk");
            }
            None => {
                assert_eq!(from_pg.0, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
                assert_eq!(from_pg.1, Some(format!("bytes */{size}")), "{range}");
            }
        }
    }
    // No range: the whole file.
    assert_eq!(download(&on_pg, ids[0]).await, (StatusCode::OK, file));
    on_pg.stop().await;
    on_disk.stop().await;
}
