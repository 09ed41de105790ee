//! Arbitrary operation sequences (the `operations` target's input) on a plain `Queue` and,
//! one call at a time, on a `SharedQueue` through its own methods: every answer, error and
//! event is the same (an agent call's answer applied or repeated alike), and the state too
//! whenever the wrapper's guard looks (every few steps and at the end). Whatever the wrapper's
//! design, it must be invisible.

#![no_main]

mod input;

use input::{Input, Op, pick};
use libfuzzer_sys::fuzz_target;
use scan_queue::{KeySource, Queue, SharedQueue, TaskId};
fuzz_target!(|input: Input| {
    let config = input::config(input.small);
    let mut plain = Queue::new(config.clone(), KeySource::from_seed(input.seed)).unwrap();
    let shared = SharedQueue::new(Queue::new(config, KeySource::from_seed(input.seed)).unwrap());
    let mut agents: Vec<(scan_queue::AgentId, String)> = Vec::new();
    let mut task_keys: Vec<String> = Vec::new();
    let mut now: u64 = 1_000;
    for (i, (step, op)) in input.ops.into_iter().take(200).enumerate() {
        now = now.saturating_add(u64::from(step % 64));
        match &op {
            Op::Queue {
                app,
                scanner,
                raw_scanner,
                url,
                config,
            } => {
                let scan = input::new_scan(*app, *scanner, raw_scanner, url, *config);
                let a = plain.queue_scan(now, scan).map(|t| t.id());
                assert_eq!(a, shared.queue_scan(now, scan), "{op:?}");
            }
            Op::Register => {
                let a = plain.register_agent(now);
                assert_eq!(a, shared.register_agent(now));
                if let Ok(a) = a {
                    agents.push((a.id, a.key.expose_secret().to_owned()));
                }
            }
            Op::Request {
                agent,
                scanners,
                raw,
                config,
            } => {
                let key = pick(&agents, &task_keys, agent);
                let names = input::scanner_names(scanners, raw);
                let a = plain
                    .request_task(now, &key, &names, config)
                    .map(|t| t.cloned());
                let b = shared.request_task(now, &key, &names, config, Clone::clone);
                assert_eq!(a, b, "{op:?}");
                if let Ok(Some(task)) = a {
                    let a = task.assignment().expect("assigned task has an assignment");
                    task_keys.push(a.task_key().expose_secret().to_owned());
                }
            }
            Op::Update {
                task,
                message,
                agent,
                key,
            } => {
                let (id, agent, key) = (
                    TaskId(*task % 16),
                    pick(&agents, &task_keys, agent),
                    pick(&agents, &task_keys, key),
                );
                let a = plain.update_status(now, id, message, &agent, &key);
                let b = shared.update_status(now, id, message, &agent, &key);
                assert_eq!(a.map(|t| t.map(|t| t.status())), b, "{op:?}");
            }
            Op::Complete { task, agent, key } => {
                let (id, agent, key) = (
                    TaskId(*task % 16),
                    pick(&agents, &task_keys, agent),
                    pick(&agents, &task_keys, key),
                );
                let a = plain.complete_task(now, id, &agent, &key);
                let b = shared.complete_task(now, id, &agent, &key);
                assert_eq!(a.map(|t| t.map(|t| t.status())), b, "{op:?}");
            }
            Op::Fail {
                task,
                message,
                agent,
                key,
            } => {
                let (id, agent, key) = (
                    TaskId(*task % 16),
                    pick(&agents, &task_keys, agent),
                    pick(&agents, &task_keys, key),
                );
                let a = plain.fail_task(now, id, message, &agent, &key);
                let b = shared.fail_task(now, id, message, &agent, &key);
                assert_eq!(a.map(|t| t.map(|t| t.status())), b, "{op:?}");
            }
            Op::Cancel { task } => {
                let id = TaskId(*task % 16);
                let a = plain.cancel_task(now, id).map(|t| t.status());
                assert_eq!(a, shared.cancel_task(now, id), "{op:?}");
            }
            Op::Revoke { agent } => {
                let id = input::agent_id(&agents, *agent);
                assert_eq!(plain.revoke_agent(now, id), shared.revoke_agent(now, id));
            }
            Op::Tick { ms } => {
                now = now.saturating_add(u64::from(*ms));
                assert_eq!(plain.advance(now), shared.advance(now));
            }
            Op::Jump { now: t } => {
                let at = plain.advance(*t);
                assert_eq!(at, shared.advance(*t));
                now = at;
            }
        }
        if i % 4 == 3 {
            let guard = shared.lock();
            if let Err(e) = guard.check_invariants() {
                panic!("invariant broken after {op:?}: {e}");
            }
            assert_eq!(guard.stats(), plain.stats(), "after {op:?}");
            assert_eq!(guard.next_deadline_ms(), plain.next_deadline_ms());
            assert_eq!(guard.snapshot(), plain.snapshot(), "after {op:?}");
        }
    }
    let mut events = Vec::new();
    shared.drain_events(&mut events);
    assert_eq!(events, plain.drain_events().collect::<Vec<_>>());
    let queue = shared.into_inner();
    queue.check_invariants().expect("invariants at the end");
    assert_eq!(queue.next_deadline_ms(), plain.next_deadline_ms());
    assert_eq!(queue.snapshot(), plain.snapshot());
});
