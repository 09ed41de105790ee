//! Differential: arbitrary transition sequences on the core and on the reference model of the
//! property tests (`tests/support/reference_model.rs`); every result must agree. After every
//! step the harness compares the call's result with the model's expectation, the whole state
//! (every task field, statuses, holders, agents, counters, the next deadline), the queue's
//! own invariants, that a refused call changed nothing but time, and that the journal
//! replays. Any disagreement panics naming what differs, after a line naming the step.

#![no_main]

#[path = "../../tests/support/reference_model.rs"]
#[allow(dead_code, reason = "helpers of the property test's strategies")]
mod reference_model;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use reference_model::{
    AGENT_CONFIGS, AGENT_SCANNERS, AgentPick, Choice, GARBAGE_KEYS, KeyPick, MESSAGES, Model,
    SCAN_SCANNERS, Step, Sut, TaskPick, Transition, URLS,
};
use std::cell::RefCell;
use std::sync::Once;

/// A choice: a byte, taken modulo the number of candidates.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Pick(u8);

impl Choice for Pick {
    fn among(&self, len: usize) -> usize {
        usize::from(self.0) % len
    }
}

#[derive(Arbitrary, Debug)]
enum FuzzTaskPick {
    Busy(Pick),
    Any(Pick),
}

#[derive(Arbitrary, Debug)]
enum FuzzAgentPick {
    Holder,
    Live(Pick),
    Any(Pick),
    Garbage(u8),
}

#[derive(Arbitrary, Debug)]
enum FuzzKeyPick {
    Current,
    Stale(Pick),
    Foreign(Pick),
    Garbage(u8),
}

/// The model's transitions, with every table index a byte (taken modulo the table) and every
/// time step small: `dt` in -128..=127 ms around the clock (the lease is 100 ms), `Tick` in
/// ±32 s (the task deadline is 1 s). Extreme instants are the `operations` target's job.
#[derive(Arbitrary, Debug)]
enum Op {
    QueueScan {
        dt: i8,
        app: u8,
        scanner: u8,
        url: u8,
    },
    RegisterAgent {
        dt: i8,
    },
    RequestTask {
        dt: i8,
        agent: FuzzAgentPick,
        scanners: Vec<u8>,
        config: u8,
    },
    UpdateStatus {
        dt: i8,
        task: FuzzTaskPick,
        agent: FuzzAgentPick,
        key: FuzzKeyPick,
        message: u8,
    },
    Complete {
        dt: i8,
        task: FuzzTaskPick,
        agent: FuzzAgentPick,
        key: FuzzKeyPick,
    },
    Fail {
        dt: i8,
        task: FuzzTaskPick,
        agent: FuzzAgentPick,
        key: FuzzKeyPick,
        message: u8,
    },
    Cancel {
        dt: i8,
        task: FuzzTaskPick,
    },
    Revoke {
        dt: i8,
        agent: Pick,
    },
    Tick {
        ms: i16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    ops: Vec<Op>,
}

/// At most this many steps per input (the property test runs up to 60).
const MAX_STEPS: usize = 256;

/// One more entry than `max_scanners_per_request` (3) can exceed the bound.
const MAX_AGENT_SCANNERS: usize = 5;

fn index(byte: u8, len: usize) -> usize {
    usize::from(byte) % len
}

fn task(pick: &FuzzTaskPick) -> TaskPick<Pick> {
    match pick {
        FuzzTaskPick::Busy(i) => TaskPick::Busy(*i),
        FuzzTaskPick::Any(i) => TaskPick::Any(*i),
    }
}

fn agent(pick: &FuzzAgentPick) -> AgentPick<Pick> {
    match pick {
        FuzzAgentPick::Holder => AgentPick::Holder,
        FuzzAgentPick::Live(i) => AgentPick::Live(*i),
        FuzzAgentPick::Any(i) => AgentPick::Any(*i),
        FuzzAgentPick::Garbage(g) => AgentPick::Garbage(index(*g, GARBAGE_KEYS.len())),
    }
}

fn key(pick: &FuzzKeyPick) -> KeyPick<Pick> {
    match pick {
        FuzzKeyPick::Current => KeyPick::Current,
        FuzzKeyPick::Stale(i) => KeyPick::Stale(*i),
        FuzzKeyPick::Foreign(i) => KeyPick::Foreign(*i),
        FuzzKeyPick::Garbage(g) => KeyPick::Garbage(index(*g, GARBAGE_KEYS.len())),
    }
}

/// The model's transition for a decoded one.
fn transition(op: &Op) -> Transition<Pick> {
    match op {
        Op::QueueScan {
            dt,
            app,
            scanner,
            url,
        } => Transition::QueueScan {
            dt: i64::from(*dt),
            // 0 is refused (no application 0); 1..=4 as in the property test.
            app: u64::from(*app % 5),
            scanner: index(*scanner, SCAN_SCANNERS.len()),
            url: index(*url, URLS.len()),
        },
        Op::RegisterAgent { dt } => Transition::RegisterAgent { dt: i64::from(*dt) },
        Op::RequestTask {
            dt,
            agent: a,
            scanners,
            config,
        } => Transition::RequestTask {
            dt: i64::from(*dt),
            agent: agent(a),
            scanners: scanners
                .iter()
                .take(MAX_AGENT_SCANNERS)
                .map(|s| index(*s, AGENT_SCANNERS.len()))
                .collect(),
            config: index(*config, AGENT_CONFIGS.len()),
        },
        Op::UpdateStatus {
            dt,
            task: t,
            agent: a,
            key: k,
            message,
        } => Transition::UpdateStatus {
            dt: i64::from(*dt),
            task: task(t),
            agent: agent(a),
            key: key(k),
            message: index(*message, MESSAGES.len()),
        },
        Op::Complete {
            dt,
            task: t,
            agent: a,
            key: k,
        } => Transition::Complete {
            dt: i64::from(*dt),
            task: task(t),
            agent: agent(a),
            key: key(k),
        },
        Op::Fail {
            dt,
            task: t,
            agent: a,
            key: k,
            message,
        } => Transition::Fail {
            dt: i64::from(*dt),
            task: task(t),
            agent: agent(a),
            key: key(k),
            message: index(*message, MESSAGES.len()),
        },
        Op::Cancel { dt, task: t } => Transition::Cancel {
            dt: i64::from(*dt),
            task: task(t),
        },
        Op::Revoke { dt, agent } => Transition::Revoke {
            dt: i64::from(*dt),
            agent: *agent,
        },
        Op::Tick { ms } => Transition::Tick { ms: i64::from(*ms) },
    }
}

thread_local! {
    /// The step in progress, for the panic report: its number, the transition, and the call
    /// as the model resolved it with what the model expects.
    static STEP: RefCell<Option<(usize, Transition<Pick>, Option<Step>)>> =
        const { RefCell::new(None) };
}

/// Before libFuzzer's hook (which prints the panic and aborts), names the step that disagreed.
fn report_step_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            STEP.with(|step| {
                if let Some((n, transition, expected)) = &*step.borrow() {
                    eprintln!(
                        "differential: core and model disagree at step {n}\n  \
                         transition: {transition:?}\n  model expects: {expected:?}"
                    );
                }
            });
            next(info);
        }));
    });
}

fuzz_target!(|input: Input| {
    report_step_on_panic();
    let mut model = Model::new(input.seed);
    let mut sut = Sut::new(&model);
    sut.check_invariants(&model);
    for (n, op) in input.ops.iter().take(MAX_STEPS).enumerate() {
        let transition = transition(op);
        STEP.with(|step| *step.borrow_mut() = Some((n, transition.clone(), None)));
        model.step(&transition);
        STEP.with(|step| *step.borrow_mut() = Some((n, transition, Some(model.last().clone()))));
        sut.apply(&model);
        sut.check_invariants(&model);
    }
    STEP.with(|step| *step.borrow_mut() = None);
});
