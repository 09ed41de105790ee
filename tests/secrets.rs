//! No secret in any `Debug`, `Display` or error output (SPEC §4).

mod common;

use common::*;
use scan_queue::{
    AgentKey, ApplicationId, Config, Error, Event, KeySource, NewScan, Queue, SharedQueue,
    Snapshot, TaskId, TaskKey, TaskStatus, ThreadfixTime,
};
use std::collections::HashSet;
use std::fmt::Debug;

/// Every formatted string, checked against every key.
struct Leaks {
    keys: Vec<String>,
    windows: HashSet<String>,
    checked: usize,
}

impl Leaks {
    fn new() -> Leaks {
        Leaks {
            keys: Vec::new(),
            windows: HashSet::new(),
            checked: 0,
        }
    }

    fn key(&mut self, key: &str) {
        assert_eq!(key.len(), 44, "{key}");
        for i in 0..=key.len() - 16 {
            self.windows.insert(key[i..i + 16].to_owned());
        }
        self.keys.push(key.to_owned());
    }

    fn text(&mut self, what: &str, text: &str) {
        self.checked += 1;
        let bytes = text.as_bytes();
        for i in 0..bytes.len().saturating_sub(15) {
            if let Ok(w) = std::str::from_utf8(&bytes[i..i + 16]) {
                assert!(!self.windows.contains(w), "{what} shows a secret: {text}");
            }
        }
    }

    fn debug(&mut self, what: &str, value: &impl Debug) {
        self.text(what, &format!("{value:?}"));
        self.text(what, &format!("{value:#?}"));
    }

    fn both<T: Debug + std::fmt::Display>(&mut self, what: &str, value: &T) {
        self.debug(what, value);
        self.text(what, &value.to_string());
    }
}

/// A queue with agents (live and revoked), tasks in every state, stale and live task keys.
struct World {
    q: Queue,
    leaks: Leaks,
    errors: Vec<Error>,
    events: Vec<Event>,
    outputs: Vec<String>,
}

fn world() -> World {
    let mut q = queue_with(Config {
        max_attempts: 2,
        ..config()
    });
    let mut leaks = Leaks::new();
    let mut errors = Vec::new();
    let mut outputs = Vec::new();
    // A scan no agent runs, whose deadline passes at the end.
    let lonely = NewScan::new(ApplicationId(3), "WebInspect");
    q.queue_scan(T0 + 2 * LEASE_MS + 10 - DEADLINE_MS, lonely)
        .unwrap();
    let agents: Vec<_> = (0..4).map(|_| q.register_agent(T0).unwrap()).collect();
    for a in &agents {
        leaks.key(a.key.expose_secret());
        leaks.both("AgentId", &a.id);
        leaks.debug("RegisteredAgent", a);
        leaks.debug("AgentKey", &a.key);
    }
    let k: Vec<String> = agents
        .iter()
        .map(|a| a.key.expose_secret().to_owned())
        .collect();
    for i in 0..12 {
        let scan = NewScan::new(
            ApplicationId(1 + i % 2),
            if i % 2 == 0 { BURP } else { ZAP },
        )
        .target_url("http://targeturl/app");
        let t = q.queue_scan(T0, scan).unwrap();
        outputs.push(format!("{t:?}"));
    }
    let mut held = Vec::new();
    for key in &k {
        for _ in 0..3 {
            let h = take(&mut q, T0 + 1, key, &[BURP, ZAP]);
            leaks.key(&h.task_key);
            outputs.push(format!("{:?}", q.task(h.id)));
            held.push(h);
        }
    }
    // In progress, completed (and retried), failed, cancelled.
    q.update_status(T0 + 2, held[0].id, "working", &k[0], &held[0].task_key)
        .unwrap();
    let done = q
        .complete_task(T0 + 3, held[1].id, &k[0], &held[1].task_key)
        .unwrap()
        .into_inner()
        .clone();
    leaks.debug("completed Task", &done);
    let again = q.complete_task(T0 + 4, held[1].id, &k[0], &held[1].task_key);
    outputs.push(format!("{again:?}"));
    let failed = q.fail_task(T0 + 5, held[2].id, "Just because", &k[0], &held[2].task_key);
    outputs.push(format!("{failed:?}"));
    outputs.push(format!("{:?}", q.cancel_task(T0 + 6, held[3].id)));
    // Refused calls made with real keys, in every combination.
    for (i, h) in held.iter().enumerate() {
        let other = &held[(i + 1) % held.len()];
        let foreign_agent = &k[(i / 3 + 1) % k.len()];
        for (ak, tk) in [
            (&h.agent_key, &other.task_key),
            (foreign_agent, &h.task_key),
            (&other.task_key, &h.task_key),
            (&h.task_key, &h.agent_key),
        ] {
            errors.extend(q.complete_task(T0 + 7, h.id, ak, tk).err());
            errors.extend(q.fail_task(T0 + 7, h.id, "x", ak, tk).err());
            errors.extend(q.update_status(T0 + 7, h.id, "x", ak, tk).err());
            errors.extend(q.complete_task(T0 + 7, TaskId(99), ak, tk).err());
        }
        errors.extend(q.request_task(T0 + 7, &h.task_key, &[BURP], "").err());
    }
    // Agent 1 keeps its tasks alive past the lease; agent 2 is revoked; agent 3's leases
    // run out (requeued), then are retaken by agent 0 with new keys, then run out for good.
    let t = T0 + LEASE_MS;
    for h in &held[3..6] {
        let _ = q.update_status(t - 1, h.id, "heartbeat", &k[1], &h.task_key);
    }
    q.revoke_agent(t - 1, agents[2].id).unwrap();
    q.advance(t + 1);
    for h in &held {
        errors.extend(
            q.complete_task(t + 2, h.id, &h.agent_key, &h.task_key)
                .err(),
        );
    }
    for _ in 0..3 {
        if let Some(task) = q.request_task(t + 3, &k[0], &[BURP, ZAP], "again").unwrap() {
            let key = task
                .assignment()
                .unwrap()
                .task_key()
                .expose_secret()
                .to_owned();
            leaks.key(&key);
        }
    }
    q.advance(t + 3 + LEASE_MS);
    for h in &held {
        errors.extend(
            q.update_status(t + 4 + LEASE_MS, h.id, "late", &h.agent_key, &h.task_key)
                .err(),
        );
    }
    q.advance(T0 + 2 * LEASE_MS + 10);
    // Finally one task in progress and one assigned.
    let now = T0 + 2 * LEASE_MS + 11;
    for (i, key) in [&k[1], &k[3]].into_iter().enumerate() {
        let h = take(&mut q, now, key, &[BURP, ZAP]);
        leaks.key(&h.task_key);
        if i == 0 {
            q.update_status(now, h.id, "x", key, &h.task_key).unwrap();
        }
    }
    let events: Vec<Event> = q.drain_events().collect();
    assert!(errors.len() > 100);
    World {
        q,
        leaks,
        errors,
        events,
        outputs,
    }
}

#[test]
fn no_debug_display_or_error_output_shows_a_key() {
    let World {
        q,
        mut leaks,
        errors,
        events,
        outputs,
    } = world();
    // Positive control: the keys are real and the serialized snapshot holds them (by design),
    // so the checks below would see a leak.
    let json = serde_json::to_string(&q.snapshot()).unwrap();
    let live: Vec<&String> = leaks.keys[..4]
        .iter()
        .filter(|k| q.agent_for_key(k).is_some())
        .collect();
    assert_eq!(live.len(), 3, "one agent was revoked");
    for key in live {
        assert!(json.contains(key.as_str()));
    }
    let held_keys = q.tasks_with_status(TaskStatus::InProgress).map(|t| {
        t.assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned()
    });
    for key in held_keys {
        assert!(leaks.keys.contains(&key) && json.contains(&key));
    }
    assert!(leaks.keys.len() >= 4 + 12 + 3, "{}", leaks.keys.len());

    for e in &errors {
        leaks.both("Error", e);
    }
    let kinds: HashSet<String> = errors
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "InvalidAgentKey",
        "NotTaskHolder",
        "InvalidTaskKey",
        "LeaseExpired",
        "WrongState",
        "UnknownTask",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    for (i, o) in outputs.iter().enumerate() {
        leaks.text(&format!("output {i}"), o);
    }
    let variants: HashSet<String> = events
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(variants.len(), 10, "every Event variant: {variants:?}");
    for e in &events {
        leaks.debug("Event", e);
        leaks.debug("Event::task", &e.task());
    }
    leaks.debug("Queue", &q);
    let snapshot = q.snapshot();
    leaks.debug("Snapshot", &snapshot);
    for a in &snapshot.agents {
        leaks.debug("AgentRecord", a);
        leaks.debug("AgentKey", &a.key);
    }
    for t in &snapshot.tasks {
        leaks.debug("Task", t);
        if let Some(a) = t.assignment() {
            leaks.debug("Assignment", a);
            leaks.debug("TaskKey", a.task_key());
        }
        for e in t.history() {
            leaks.debug("StatusEntry", e);
            leaks.both("StatusMessage", &e.message);
        }
        leaks.both("TaskStatus", &t.status());
        leaks.debug("failure_message", &t.failure_message());
        leaks.both("ThreadfixTime", &ThreadfixTime(t.create_ms()));
    }
    let statuses: HashSet<TaskStatus> = snapshot.tasks.iter().map(|t| t.status()).collect();
    assert!(statuses.len() >= 6, "{statuses:?}");
    leaks.debug("Stats", &q.stats());
    leaks.debug("Counters", &q.stats().counters);
    leaks.debug("Config", q.config());
    leaks.debug("KeySource", &KeySource::from_seed([7; 32]));
    for key in leaks.keys.clone() {
        leaks.debug("AgentKey::parse", &AgentKey::parse(&key));
        leaks.debug("TaskKey::parse", &TaskKey::parse(&key));
    }
    let restored =
        Queue::restore(config(), KeySource::from_seed([7; 32]), snapshot.clone()).unwrap();
    leaks.debug("restored Queue", &restored);
    let shared = SharedQueue::new(restored);
    leaks.debug("SharedQueue", &shared);
    q.check_invariants().unwrap();
    assert!(leaks.checked > 1000, "{}", leaks.checked);
}

#[test]
fn refused_restores_applies_and_parses_do_not_show_keys() {
    let World {
        q,
        mut leaks,
        events,
        ..
    } = world();
    let snapshot = q.snapshot();
    let key0 = snapshot.agents[0].key.expose_secret().to_owned();
    // Two agents with one key: the error names agents, never the key.
    let mut dup = snapshot.clone();
    dup.agents[1].key = dup.agents[0].key.clone();
    let e = Queue::restore(config(), KeySource::from_seed([0; 32]), dup).unwrap_err();
    leaks.both("restore error", &e);
    // Every event applied again to the final state is refused; the errors show no key.
    let mut q = q;
    let mut refused = 0;
    for ev in &events {
        if let Err(e) = q.apply(ev.clone()) {
            leaks.both("apply error", &e);
            refused += 1;
        }
    }
    assert!(refused > 0);
    // A key one character too long, or with a bad character, in a snapshot: the parse error
    // does not echo it.
    let json = serde_json::to_string(&snapshot).unwrap();
    for bad in [
        format!("{key0}A"),
        format!("{}!", &key0[..43]),
        key0[..43].to_owned(),
    ] {
        let broken = json.replacen(&key0, &bad, 1);
        assert_ne!(broken, json);
        let e = serde_json::from_str::<Snapshot>(&broken).unwrap_err();
        leaks.both("snapshot parse error", &e);
        let e = serde_json::from_str::<AgentKey>(&format!("\"{bad}\"")).unwrap_err();
        leaks.both("key parse error", &e);
        let e = serde_json::from_str::<TaskKey>(&format!("\"{bad}\"")).unwrap_err();
        leaks.both("key parse error", &e);
    }
    assert!(leaks.checked > 10);
}

#[test]
fn the_leak_checker_catches_a_leak() {
    let mut leaks = Leaks::new();
    leaks.key(FOREIGN_KEY);
    let shown = format!("prefix {} suffix", &FOREIGN_KEY[20..36]);
    let caught = std::panic::catch_unwind(move || leaks.text("test", &shown));
    assert!(caught.is_err());
}
