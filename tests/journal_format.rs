//! The journal format stays readable: a small event log and the snapshot of the state it
//! leads to, both written by the code of 2026-12-02 (before the core's event output and
//! agent-call answers changed), are committed under `tests/fixtures/`. Replaying the log on a
//! fresh queue must give that snapshot, and the snapshot must restore.
//!
//! `SCAN_QUEUE_WRITE_FIXTURE=1 cargo test --test journal_format` rewrites the files from
//! [`scenario`]; only do that on purpose, since the point of the files is that old journals
//! keep replaying.

mod common;

use common::*;
use scan_queue::{ApplicationId, Config, Event, KeySource, NewScan, Queue, ScanConfigId, Snapshot};

const LOG: &str = "tests/fixtures/journal-2026-12-02.jsonl";
const SNAPSHOT: &str = "tests/fixtures/snapshot-2026-12-02.json";

fn fixture_config() -> Config {
    Config {
        max_finished_tasks: 4,
        max_attempts: 2,
        ..config()
    }
}

/// Every kind of event at least once: registration, queueing (with and without URL and scan
/// config), assignment, heartbeats, completion, failure, cancel (queued and active), lease
/// expiry (requeued and timed out), deadline, revocation, eviction.
fn scenario() -> Vec<Event> {
    let mut q = Queue::new(fixture_config(), KeySource::from_seed([9; 32])).unwrap();
    let mut events = Vec::new();
    let mut t = T0;
    let (a_id, a) = agent(&mut q, t);
    let (_, b) = agent(&mut q, t);
    let (_, c) = agent(&mut q, t);
    for i in 0..8u64 {
        t += 10;
        let scan = NewScan::new(
            ApplicationId(i % 2 + 1),
            if i % 2 == 0 { ZAP } else { BURP },
        );
        let scan = if i % 3 == 0 {
            scan.target_url("http://targeturl/app")
        } else {
            scan
        };
        let scan = if i % 4 == 1 {
            scan.scan_config(ScanConfigId(i))
        } else {
            scan
        };
        q.queue_scan(t, scan).unwrap();
    }
    // a: completes one after two heartbeats; b: fails one; c: lets its lease run out twice.
    let done = take(&mut q, t + 1, &a, &[ZAP]);
    q.update_status(t + 2, done.id, "Spider 40% done", &a, &done.task_key)
        .unwrap();
    q.update_status(t + 3, done.id, "Spider 80% done", &a, &done.task_key)
        .unwrap();
    q.complete_task(t + 4, done.id, &a, &done.task_key).unwrap();
    let failed = take(&mut q, t + 5, &b, &[BURP]);
    q.fail_task(t + 6, failed.id, "Just because", &b, &failed.task_key)
        .unwrap();
    let lost = take(&mut q, t + 7, &c, &[ZAP]);
    q.update_status(t + 8, lost.id, "started", &c, &lost.task_key)
        .unwrap();
    t += 8 + LEASE_MS + 1; // the lease runs out: requeued (attempt 1 of 2)
    q.advance(t);
    let again = take(&mut q, t, &c, &[ZAP]);
    assert_eq!(again.id, lost.id);
    t += LEASE_MS + 1; // the last attempt's lease runs out: timed out
    q.advance(t);
    // Cancel a queued task and an active one; a's other task goes back when a is revoked.
    let queued = q
        .tasks_with_status(scan_queue::TaskStatus::Queued)
        .next()
        .unwrap()
        .id();
    q.cancel_task(t + 1, queued).unwrap();
    let active = take(&mut q, t + 2, &b, &[BURP]);
    q.cancel_task(t + 3, active.id).unwrap();
    let held = take(&mut q, t + 4, &a, &[BURP, ZAP]);
    q.update_status(t + 5, held.id, "half way", &a, &held.task_key)
        .unwrap();
    q.revoke_agent(t + 6, a_id).unwrap();
    // The remaining queued tasks reach their deadline.
    q.advance(T0 + DEADLINE_MS + 100);
    // One more task after that, left queued, and one assigned.
    q.queue_scan(T0 + DEADLINE_MS + 200, NewScan::new(ApplicationId(3), ZAP))
        .unwrap();
    q.queue_scan(T0 + DEADLINE_MS + 201, NewScan::new(ApplicationId(3), BURP))
        .unwrap();
    take(&mut q, T0 + DEADLINE_MS + 202, &b, &[BURP]);
    events.extend(q.drain_events());
    q.check_invariants().unwrap();
    events
}

fn committed_log() -> Vec<Event> {
    std::fs::read_to_string(LOG)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn committed_snapshot() -> Snapshot {
    serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).unwrap()).unwrap()
}

#[test]
fn committed_log_replays_to_the_committed_snapshot() {
    if std::env::var_os("SCAN_QUEUE_WRITE_FIXTURE").is_some() {
        let events = scenario();
        let mut q = Queue::new(fixture_config(), KeySource::from_seed([0; 32])).unwrap();
        let mut log = String::new();
        for e in &events {
            log.push_str(&serde_json::to_string(e).unwrap());
            log.push('\n');
            q.apply(e.clone()).unwrap();
        }
        std::fs::write(LOG, log).unwrap();
        std::fs::write(
            SNAPSHOT,
            serde_json::to_string_pretty(&q.snapshot()).unwrap(),
        )
        .unwrap();
    }
    let events = committed_log();
    assert!(events.len() > 30, "the log covers every kind of event");
    let mut q = Queue::new(fixture_config(), KeySource::from_seed([0; 32])).unwrap();
    for e in events {
        q.apply(e).unwrap();
    }
    q.check_invariants().unwrap();
    assert_eq!(q.snapshot(), committed_snapshot());
}

#[test]
fn committed_snapshot_restores() {
    let snapshot = committed_snapshot();
    let q = Queue::restore(
        fixture_config(),
        KeySource::from_seed([0; 32]),
        snapshot.clone(),
    )
    .unwrap();
    assert_eq!(q.snapshot(), snapshot);
}

/// Today's code, run through the same scenario, writes the same log byte for byte.
#[test]
fn todays_code_writes_the_same_log() {
    let written: Vec<String> = scenario()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let committed: Vec<String> = std::fs::read_to_string(LOG)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(written, committed);
}
