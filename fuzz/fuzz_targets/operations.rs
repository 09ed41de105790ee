//! Arbitrary operation sequences on the core. After every step the invariant check passes,
//! and a refused call leaves the queue exactly as `advance(now)` alone would.

#![no_main]

mod input;

use input::{Input, Op, pick};
use libfuzzer_sys::fuzz_target;
use scan_queue::{KeySource, Queue, TaskId};
fuzz_target!(|input: Input| {
    let config = input::config(input.small);
    let mut queue = Queue::new(config, KeySource::from_seed(input.seed)).unwrap();
    let mut agents: Vec<(scan_queue::AgentId, String)> = Vec::new();
    let mut task_keys: Vec<String> = Vec::new();
    let mut now: u64 = 1_000;
    for (step, op) in input.ops.into_iter().take(200) {
        now = now.saturating_add(u64::from(step % 64));
        queue.advance(now);
        // Events of time passing belong before the snapshot the replay starts from.
        queue.drain_events().for_each(drop);
        let before = queue.snapshot();
        let refused = match &op {
            Op::Queue {
                app,
                scanner,
                raw_scanner,
                url,
                config,
            } => {
                let scan = input::new_scan(*app, *scanner, raw_scanner, url, *config);
                queue.queue_scan(now, scan).is_err()
            }
            Op::Register => match queue.register_agent(now) {
                Ok(a) => {
                    agents.push((a.id, a.key.expose_secret().to_owned()));
                    false
                }
                Err(_) => true,
            },
            Op::Request {
                agent,
                scanners,
                raw,
                config,
            } => {
                let key = pick(&agents, &task_keys, agent);
                let names = input::scanner_names(scanners, raw);
                match queue.request_task(now, &key, &names, config) {
                    Ok(Some(task)) => {
                        let a = task.assignment().expect("assigned task has an assignment");
                        task_keys.push(a.task_key().expose_secret().to_owned());
                        false
                    }
                    Ok(None) => false,
                    Err(_) => true,
                }
            }
            Op::Update {
                task,
                message,
                agent,
                key,
            } => queue
                .update_status(
                    now,
                    TaskId(*task % 16),
                    message,
                    &pick(&agents, &task_keys, agent),
                    &pick(&agents, &task_keys, key),
                )
                .is_err(),
            Op::Complete { task, agent, key } => queue
                .complete_task(
                    now,
                    TaskId(*task % 16),
                    &pick(&agents, &task_keys, agent),
                    &pick(&agents, &task_keys, key),
                )
                .is_err(),
            Op::Fail {
                task,
                message,
                agent,
                key,
            } => queue
                .fail_task(
                    now,
                    TaskId(*task % 16),
                    message,
                    &pick(&agents, &task_keys, agent),
                    &pick(&agents, &task_keys, key),
                )
                .is_err(),
            Op::Cancel { task } => queue.cancel_task(now, TaskId(*task % 16)).is_err(),
            Op::Revoke { agent } => {
                let id = input::agent_id(&agents, *agent);
                queue.revoke_agent(now, id).is_err()
            }
            Op::Tick { ms } => {
                now = now.saturating_add(u64::from(*ms));
                queue.advance(now);
                false
            }
            Op::Jump { now: t } => {
                // Any instant, including the past (ignored) and the far future (saturating).
                queue.advance(*t);
                now = queue.clock_ms();
                false
            }
        };
        if refused {
            assert_eq!(
                queue.snapshot(),
                before,
                "a refused {op:?} changed the queue"
            );
        }
        if let Err(e) = queue.check_invariants() {
            panic!("invariant broken after {op:?}: {e}");
        }
        // Events replay onto the snapshot they started from.
        let mut replay = Queue::restore(
            queue.config().clone(),
            KeySource::from_seed([0; 32]),
            before.clone(),
        )
        .expect("a snapshot of a live queue restores");
        for event in queue.drain_events() {
            if let Err(e) = replay.apply(event.clone()) {
                panic!("event {event:?} does not replay: {e}");
            }
        }
        // Compare both at the same instant. (Only at saturated times, u64::MAX, can an
        // operation leave a deadline due at the current instant for the next call to apply.)
        let clock = queue.clock_ms();
        queue.advance(clock);
        for event in queue.drain_events() {
            replay.apply(event).expect("expiry events replay");
        }
        replay.advance(clock);
        assert_eq!(
            replay.snapshot(),
            queue.snapshot(),
            "replay differs after {op:?}"
        );
    }
});
