//! Arbitrary operation sequences on the core. After every step the invariant check passes,
//! and a refused call leaves the queue exactly as `advance(now)` alone would.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, ScanConfigId, TaskId};

const SCANNERS: [&str; 3] = ["OWASP Zed Attack Proxy", "Burp Suite Pro", "zap"];

/// A key as the fuzzer presents it: one the queue minted (by index) or arbitrary text.
#[derive(Arbitrary, Debug)]
enum KeyChoice {
    Agent(u8),
    Task(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Queue {
        app: u64,
        scanner: u8,
        raw_scanner: Option<String>,
        url: Option<String>,
        config: Option<u64>,
    },
    Register,
    Request {
        agent: KeyChoice,
        scanners: Vec<u8>,
        raw: Option<String>,
        config: String,
    },
    Update {
        task: u64,
        message: String,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Complete {
        task: u64,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Fail {
        task: u64,
        message: String,
        agent: KeyChoice,
        key: KeyChoice,
    },
    Cancel {
        task: u64,
    },
    Revoke {
        agent: u8,
    },
    Tick {
        ms: u32,
    },
    Jump {
        now: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: [u8; 32],
    small: bool,
    ops: Vec<(u16, Op)>,
}

fn pick(agents: &[(scan_queue::AgentId, String)], task_keys: &[String], c: &KeyChoice) -> String {
    match c {
        KeyChoice::Agent(i) if !agents.is_empty() => agents[*i as usize % agents.len()].1.clone(),
        KeyChoice::Task(i) if !task_keys.is_empty() => {
            task_keys[*i as usize % task_keys.len()].clone()
        }
        KeyChoice::Raw(s) => s.clone(),
        _ => String::new(),
    }
}

fuzz_target!(|input: Input| {
    let config = if input.small {
        Config {
            lease_ms: 50,
            task_deadline_ms: 400,
            max_attempts: 2,
            max_open_tasks: 8,
            max_finished_tasks: 4,
            max_agents: 3,
            max_scanners: 2,
            max_scanners_per_request: 3,
            max_scanner_len: 24,
            max_url_len: 40,
            max_message_len: 16,
            max_agent_config_len: 16,
            max_status_history: 3,
            record_events: true,
        }
    } else {
        Config::default()
    };
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
                let name = raw_scanner
                    .as_deref()
                    .unwrap_or(SCANNERS[*scanner as usize % 3]);
                let scan = NewScan {
                    application: ApplicationId(*app % 4),
                    scanner: name,
                    target_url: url.as_deref(),
                    scan_config: config.map(ScanConfigId),
                };
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
                let mut names: Vec<&str> =
                    scanners.iter().map(|i| SCANNERS[*i as usize % 3]).collect();
                if let Some(r) = raw {
                    names.push(r);
                }
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
                let id = if agents.is_empty() {
                    scan_queue::AgentId(Default::default())
                } else {
                    agents[*agent as usize % agents.len()].0
                };
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
            if let Err(e) = replay.apply(&event) {
                panic!("event {event:?} does not replay: {e}");
            }
        }
        // Compare both at the same instant. (Only at saturated times, u64::MAX, can an
        // operation leave a deadline due at the current instant for the next call to apply.)
        let clock = queue.clock_ms();
        queue.advance(clock);
        for event in queue.drain_events() {
            replay.apply(&event).expect("expiry events replay");
        }
        replay.advance(clock);
        assert_eq!(
            replay.snapshot(),
            queue.snapshot(),
            "replay differs after {op:?}"
        );
    }
});
