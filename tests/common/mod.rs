//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use scan_queue::{AgentId, ApplicationId, Config, Error, KeySource, NewScan, Queue, TaskId};

/// 28 Sep 2016, 20:25:00.000 UTC (the seed's sample day).
pub const T0: u64 = 1_475_094_300_000;
pub const BURP: &str = "Burp Suite Pro";
pub const ZAP: &str = "OWASP Zed Attack Proxy";
pub const LEASE_MS: u64 = 10_000;
pub const DEADLINE_MS: u64 = 1_000_000;

/// A configuration with short, round durations.
pub fn config() -> Config {
    Config {
        lease_ms: LEASE_MS,
        task_deadline_ms: DEADLINE_MS,
        max_attempts: 3,
        ..Config::default()
    }
}

pub fn queue_with(config: Config) -> Queue {
    Queue::new(config, KeySource::from_seed([7; 32])).expect("valid config")
}

pub fn queue() -> Queue {
    queue_with(config())
}

/// Queues a scan of application 1 with `scanner`; returns its id.
pub fn scan(q: &mut Queue, now: u64, scanner: &str) -> TaskId {
    q.queue_scan(now, NewScan::new(ApplicationId(1), scanner))
        .expect("scan queued")
        .id()
}

/// Registers an agent; returns its id and key.
pub fn agent(q: &mut Queue, now: u64) -> (AgentId, String) {
    let a = q.register_agent(now).expect("agent registered");
    (a.id, a.key.expose_secret().to_owned())
}

/// A task an agent holds, with the keys to act on it.
#[derive(Clone, Debug)]
pub struct Held {
    pub id: TaskId,
    pub agent_key: String,
    pub task_key: String,
}

/// The agent takes the oldest task among `scanners`, which must exist.
pub fn take(q: &mut Queue, now: u64, agent_key: &str, scanners: &[&str]) -> Held {
    let t = q
        .request_task(now, agent_key, scanners, "scanagent.properties")
        .expect("request accepted")
        .expect("a task is queued");
    Held {
        id: t.id(),
        agent_key: agent_key.to_owned(),
        task_key: t
            .assignment()
            .expect("assigned")
            .task_key()
            .expose_secret()
            .to_owned(),
    }
}

/// Runs a call that must be refused at `now`, and checks that it changed nothing: the
/// snapshot equals the one taken after `advance(now)` alone, no event came out, the
/// invariants hold, and the key-check metric moved exactly when the error is a key rejection.
pub fn refused<T>(
    q: &mut Queue,
    now: u64,
    call: impl FnOnce(&mut Queue) -> Result<T, Error>,
) -> Error {
    q.advance(now);
    q.drain_events().for_each(drop);
    let before = q.snapshot();
    let rejected_before = q.stats().rejected_key_checks;
    let err = match call(q) {
        Ok(_) => panic!("call at {now} should have been refused"),
        Err(e) => e,
    };
    assert_eq!(
        q.snapshot(),
        before,
        "a refused call ({err}) changed the state"
    );
    assert_eq!(
        q.drain_events().count(),
        0,
        "a refused call ({err}) produced events"
    );
    q.check_invariants()
        .expect("invariants after a refused call");
    let counted = q.stats().rejected_key_checks - rejected_before;
    assert_eq!(
        counted,
        u64::from(err.is_key_rejection()),
        "rejected_key_checks for {err:?}"
    );
    err
}

/// A syntactically valid key (44 alphanumerics) that this queue never minted.
pub const FOREIGN_KEY: &str = "yMFCvtcmBtAARYS5QX8x54zvMruNLIvNMzqMI44K4JG8";

/// `key` with its last character changed (same length, same selector).
pub fn tweak(key: &str) -> String {
    let mut s = key[..key.len() - 1].to_owned();
    s.push(if key.ends_with('a') { 'b' } else { 'a' });
    s
}
