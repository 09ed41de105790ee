//! Many threads driving one `SharedQueue` at once with random operations (wrong keys, time
//! advancing so leases expire, cancel, revoke), then: the invariants hold, no task was held by
//! two agents, every first-time completion used the key of an assignment of that task, counts
//! are conserved, and replaying the recorded events on a fresh single-threaded queue gives the
//! same state. This guards any future finer-grained locking of the concurrent wrapper.

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scan_queue::{
    ApplicationId, Config, Event, KeySource, NewScan, Queue, SharedQueue, TaskId, TaskStatus,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

const SCANNERS: [&str; 3] = ["OWASP Zed Attack Proxy", "Burp Suite Pro", "WebInspect"];
const T0: u64 = 1_700_000_000_000;
const THREADS: u64 = 4;
const OPS_PER_THREAD: usize = 10_000;

/// `lease_ms` short: leases run out all the time (most agent calls are then refused); long:
/// most calls succeed.
fn config(lease_ms: u64) -> Config {
    Config {
        lease_ms,
        task_deadline_ms: 25 * lease_ms,
        max_attempts: 2,
        max_open_tasks: 400,
        max_finished_tasks: 300,
        max_agents: 16,
        max_status_history: 6,
        ..Config::default()
    }
}

/// What the threads saw, merged at the end.
#[derive(Default)]
struct Seen {
    /// Every task key handed out, per task.
    assigned: BTreeMap<u64, BTreeSet<String>>,
    /// First-time completions and failures accepted: (task, task key).
    finished: Vec<(u64, String)>,
}

fn worker(
    shared: &SharedQueue,
    log: &Mutex<Vec<Event>>,
    clock: &AtomicU64,
    seed: u64,
    lease_ms: u64,
) -> Seen {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = Seen::default();
    let mut agents: Vec<(scan_queue::AgentId, String)> = Vec::new();
    let mut held: Vec<(TaskId, String, String)> = Vec::new(); // (task, agent key, task key)
    // Runs operations under the exclusive guard and records the events in commit order (the
    // log's lock is always taken before the queue's).
    let locked = |f: &mut dyn FnMut(&mut Queue)| {
        let mut log = log.lock();
        let mut q = shared.lock();
        f(&mut q);
        // The guard's queue is a plain, consistent one, whatever the other threads did.
        if q.stats().counters.queued.is_multiple_of(16) {
            q.check_invariants().unwrap();
        }
        log.extend(q.drain_events());
    };
    // After a call through the wrapper's own methods: take the events committed so far.
    let drain = || shared.drain_events(&mut log.lock());
    for _ in 0..OPS_PER_THREAD {
        let now = clock.fetch_add(rng.random_range(0..12), Ordering::Relaxed);
        // Some exclusive operations through the guard, most through the wrapper.
        let guard = rng.random_bool(0.25);
        match rng.random_range(0..100) {
            0..=17 => {
                let scanner = SCANNERS[rng.random_range(0..SCANNERS.len())];
                let scan = NewScan::new(ApplicationId(1), scanner);
                if guard {
                    locked(&mut |q| drop(q.queue_scan(now, scan)));
                } else {
                    let _ = shared.queue_scan(now, scan);
                    drain();
                }
            }
            18..=21 => {
                let agent = if guard {
                    let mut agent = None;
                    locked(&mut |q| agent = q.register_agent(now).ok());
                    agent
                } else {
                    let agent = shared.register_agent(now).ok();
                    drain();
                    agent
                };
                if let Some(a) = agent {
                    agents.push((a.id, a.key.expose_secret().to_owned()));
                }
            }
            22..=41 if !agents.is_empty() => {
                let key = agents[rng.random_range(0..agents.len())].1.clone();
                let n = rng.random_range(1..=SCANNERS.len());
                let task = if guard {
                    let mut task = None;
                    locked(&mut |q| {
                        if let Ok(Some(t)) = q.request_task(now, &key, &SCANNERS[..n], "cfg") {
                            task = Some(t.clone());
                        }
                    });
                    task
                } else {
                    let task = shared.request_task(now, &key, &SCANNERS[..n], "cfg", Clone::clone);
                    drain();
                    task.ok().flatten()
                };
                if let Some(t) = task {
                    let tk = t
                        .assignment()
                        .unwrap()
                        .task_key()
                        .expose_secret()
                        .to_owned();
                    seen.assigned
                        .entry(t.id().0)
                        .or_default()
                        .insert(tk.clone());
                    held.push((t.id(), key.clone(), tk));
                }
            }
            42..=79 if !held.is_empty() => {
                let i = rng.random_range(0..held.len());
                let (id, agent_key, task_key) = held[i].clone();
                // Sometimes a wrong key: another agent's, or a mangled task key.
                let (agent_key, task_key) = match rng.random_range(0..10) {
                    0 if !agents.is_empty() => (
                        agents[rng.random_range(0..agents.len())].1.clone(),
                        task_key,
                    ),
                    1 => (agent_key, task_key.chars().rev().collect()),
                    _ => (agent_key, task_key),
                };
                let what = rng.random_range(0..10);
                // Sometimes from a clock running ahead (past leases other calls just set).
                let now = if rng.random_bool(0.1) {
                    now + rng.random_range(0..2 * lease_ms)
                } else {
                    now
                };
                // Through the wrapper's own methods.
                let result = match what {
                    0..=5 => shared.update_status(now, id, "progress", &agent_key, &task_key),
                    6..=8 => shared.complete_task(now, id, &agent_key, &task_key),
                    _ => shared.fail_task(now, id, "broken", &agent_key, &task_key),
                };
                if let Ok(answer) = result {
                    if answer.is_terminal() && !answer.is_repeat() {
                        seen.finished.push((id.0, task_key.clone()));
                    }
                    assert_eq!(answer.is_terminal(), what >= 6);
                }
                // A finished task is mostly forgotten; sometimes the call is retried (as after
                // a lost answer), which must be answered as a repeat, never applied twice.
                if (what >= 6 && rng.random_bool(0.8)) || rng.random_bool(0.05) {
                    held.swap_remove(i);
                }
            }
            80..=85 => {
                let id = TaskId(rng.random_range(1..=clock.load(Ordering::Relaxed) % 500 + 1));
                if guard {
                    locked(&mut |q| drop(q.cancel_task(now, id)));
                } else {
                    let _ = shared.cancel_task(now, id);
                    drain();
                }
            }
            86..=87 if !agents.is_empty() => {
                let (id, _) = agents.swap_remove(rng.random_range(0..agents.len()));
                if guard {
                    locked(&mut |q| drop(q.revoke_agent(now, id)));
                } else {
                    let _ = shared.revoke_agent(now, id);
                    drain();
                }
            }
            _ => {
                let to = now + rng.random_range(0..300);
                if guard {
                    locked(&mut |q| {
                        q.advance(to);
                    });
                } else {
                    shared.advance(to);
                    drain();
                }
            }
        }
    }
    seen
}

#[test]
fn threads_hammering_one_queue_with_short_leases_keep_every_invariant_and_replay_exactly() {
    hammer(200);
}

#[test]
fn threads_hammering_one_queue_with_long_leases_keep_every_invariant_and_replay_exactly() {
    hammer(20_000);
}

/// Runs the workers and checks everything.
fn hammer(lease_ms: u64) {
    let config = || config(lease_ms);
    let queue = Queue::new(config(), KeySource::from_seed([11; 32])).unwrap();
    let shared = SharedQueue::new(queue);
    let log = Mutex::new(Vec::new());
    let clock = AtomicU64::new(T0);
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, log, clock) = (&shared, &log, &clock);
                s.spawn(move || worker(shared, log, clock, 100 + t, lease_ms))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The events of the calls after the last drain.
    shared.drain_events(&mut log.lock());
    let mut queue = shared.into_inner();
    assert_eq!(queue.drain_events().next(), None);
    queue.check_invariants().unwrap();

    // Every first-time finish used a key that was handed out for that very task, and no task
    // was finished twice.
    let mut assigned: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut finished = BTreeSet::new();
    for s in &seen {
        for (id, keys) in &s.assigned {
            assigned
                .entry(*id)
                .or_default()
                .extend(keys.iter().cloned());
        }
    }
    for s in &seen {
        for (id, key) in &s.finished {
            assert!(
                assigned.get(id).is_some_and(|k| k.contains(key)),
                "task {id} finished with a key never assigned to it"
            );
            assert!(finished.insert(*id), "task {id} finished twice");
        }
    }
    // Counts conserved: every task ever queued is retained in one status or was evicted.
    let stats = queue.stats();
    let retained: usize = TaskStatus::ALL.iter().map(|s| stats.count(*s)).sum();
    assert_eq!(
        retained as u64 + stats.counters.evicted,
        stats.counters.queued
    );
    assert!(stats.counters.queued > 100, "the run queued too little");
    assert!(
        stats.counters.completions > 10,
        "the run completed too little"
    );
    assert!(
        stats.counters.lease_expiries > 0 && stats.counters.agents_revoked > 0,
        "the run never expired a lease or revoked an agent"
    );
    assert!(stats.rejected_key_checks > 0, "no wrong key was ever tried");
    // No task is held by two agents: each active task is in exactly one agent's set.
    let mut holders: BTreeMap<TaskId, usize> = BTreeMap::new();
    for agent in queue.agents().collect::<Vec<_>>() {
        for id in queue.agent_tasks(agent).unwrap() {
            *holders.entry(id).or_default() += 1;
        }
    }
    assert!(holders.values().all(|&n| n == 1));
    let active = stats.count(TaskStatus::Assigned) + stats.count(TaskStatus::InProgress);
    assert_eq!(holders.len(), active);

    // The recorded events, replayed in order on a fresh single-threaded queue, rebuild it.
    let mut replay = Queue::new(config(), KeySource::from_seed([0; 32])).unwrap();
    for event in log.into_inner() {
        replay.apply(event.clone()).unwrap();
    }
    let end = queue.clock_ms();
    queue.advance(end);
    replay.advance(end);
    assert_eq!(replay.snapshot(), queue.snapshot());
}

/// One thread, the same random calls on a plain `Queue` and through `SharedQueue`'s methods,
/// with its guard now and then: the same answers (applied or repeated), errors, events, next
/// deadline, statistics and state at every step the guard looks.
#[test]
fn shared_queue_answers_as_the_plain_queue_does() {
    for seed in 0..12 {
        let new = || Queue::new(config(3_000), KeySource::from_seed([5; 32])).unwrap();
        let mut plain = new();
        let shared = SharedQueue::new(new());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut now = T0;
        let mut agents: Vec<(scan_queue::AgentId, String)> = Vec::new();
        let mut held: Vec<(TaskId, String, String)> = Vec::new();
        for _ in 0..3_000 {
            now += rng.random_range(0..25);
            // A client clock behind the queue's, now and then.
            let at = now.saturating_sub(rng.random_range(0..3) * 40);
            match rng.random_range(0..100) {
                0..=14 => {
                    let scanner = SCANNERS[rng.random_range(0..SCANNERS.len())];
                    let scan = NewScan::new(ApplicationId(1), scanner);
                    let a = plain.queue_scan(at, scan).map(|t| t.id());
                    assert_eq!(a, shared.queue_scan(at, scan));
                }
                15..=18 => {
                    let a = plain.register_agent(at);
                    assert_eq!(a, shared.register_agent(at));
                    if let Ok(a) = a {
                        agents.push((a.id, a.key.expose_secret().to_owned()));
                    }
                }
                19..=35 if !agents.is_empty() => {
                    let key = agents[rng.random_range(0..agents.len())].1.clone();
                    let a = plain
                        .request_task(at, &key, &SCANNERS, "cfg")
                        .map(|t| t.cloned());
                    assert_eq!(
                        a,
                        shared.request_task(at, &key, &SCANNERS, "cfg", Clone::clone)
                    );
                    if let Ok(Some(t)) = a {
                        let tk = t.assignment().unwrap().task_key().expose_secret();
                        held.push((t.id(), key, tk.to_owned()));
                    }
                }
                36..=85 if !held.is_empty() => {
                    let i = rng.random_range(0..held.len());
                    let (id, agent_key, task_key) = held[i].clone();
                    let task_key = if rng.random_bool(0.05) {
                        task_key.chars().rev().collect()
                    } else {
                        task_key
                    };
                    let (a, b) = match rng.random_range(0..10) {
                        0..=6 => (
                            plain.update_status(at, id, "progress", &agent_key, &task_key),
                            shared.update_status(at, id, "progress", &agent_key, &task_key),
                        ),
                        7..=8 => (
                            plain.complete_task(at, id, &agent_key, &task_key),
                            shared.complete_task(at, id, &agent_key, &task_key),
                        ),
                        _ => (
                            plain.fail_task(at, id, "broken", &agent_key, &task_key),
                            shared.fail_task(at, id, "broken", &agent_key, &task_key),
                        ),
                    };
                    assert_eq!(a.map(|t| t.map(|t| t.status())), b);
                    let a = b.map(|b| *b);
                    // Mostly forget a task that no call can change any more.
                    let settled = match &a {
                        Ok(status) => status.is_terminal(),
                        Err(e) => !e.is_key_rejection(),
                    };
                    if settled && rng.random_bool(0.8) {
                        held.swap_remove(i);
                    }
                }
                86..=88 => {
                    let id = TaskId(rng.random_range(1..=plain.stats().counters.queued + 1));
                    let a = plain.cancel_task(at, id).map(|t| t.status());
                    assert_eq!(a, shared.cancel_task(at, id));
                }
                89 if !agents.is_empty() => {
                    let (id, _) = agents.swap_remove(rng.random_range(0..agents.len()));
                    assert_eq!(plain.revoke_agent(at, id), shared.revoke_agent(at, id));
                }
                90..=94 => {
                    let to = at + rng.random_range(0..4_000);
                    assert_eq!(plain.advance(to), shared.advance(to));
                }
                _ => {
                    let guard = shared.lock();
                    guard.check_invariants().unwrap();
                    assert_eq!(guard.next_deadline_ms(), plain.next_deadline_ms());
                    assert_eq!(guard.stats(), plain.stats());
                    assert_eq!(guard.snapshot(), plain.snapshot());
                }
            }
        }
        let mut events = Vec::new();
        shared.drain_events(&mut events);
        assert_eq!(events, plain.drain_events().collect::<Vec<_>>());
        let mut queue = shared.into_inner();
        queue.check_invariants().unwrap();
        assert_eq!(queue.next_deadline_ms(), plain.next_deadline_ms());
        assert_eq!(queue.snapshot(), plain.snapshot());
        assert_eq!(queue.drain_events().next(), None);
    }
}
