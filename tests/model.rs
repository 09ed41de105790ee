//! Model-based property test: the queue against a tiny reference model written from SPEC.md.
//!
//! The model, its transitions and the harness that compares a real [`Queue`] with it after
//! every step live in `support/reference_model.rs` (shared with the differential fuzz
//! target, see its docs for how keys and choices work). This file only generates: proptest
//! strategies for [`Transition`]s, weighted by the model's state, and the
//! proptest-state-machine glue. Choices are proptest's [`Index`].

#[path = "support/reference_model.rs"]
mod reference_model;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use reference_model::{
    AGENT_CONFIGS, AGENT_SCANNERS, AgentPick, Choice, GARBAGE_KEYS, KeyPick, MESSAGES, Model,
    SCAN_SCANNERS, Sut, T0, TaskPick, TooLong, Transition, URLS, Valid, config, seeded,
};
use scan_queue::{ApplicationId, Bound, Error, NewScan, Queue, Task, TaskStatus};

impl Choice for Index {
    fn among(&self, len: usize) -> usize {
        self.index(len)
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// How far from the clock an operation's `now` is: usually a little later, sometimes the
/// same instant, sometimes earlier (which the queue must treat as the clock).
fn dt() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        8 => 1..=40i64,
        2 => 41..=150i64,
        1 => -100..=-1i64,
    ]
}

fn task_pick() -> impl Strategy<Value = TaskPick<Index>> {
    prop_oneof![
        5 => any::<Index>().prop_map(TaskPick::Busy),
        1 => any::<Index>().prop_map(TaskPick::Any),
    ]
}

fn agent_pick() -> impl Strategy<Value = AgentPick<Index>> {
    prop_oneof![
        7 => Just(AgentPick::Holder),
        2 => any::<Index>().prop_map(AgentPick::Live),
        1 => any::<Index>().prop_map(AgentPick::Any),
        1 => (0..GARBAGE_KEYS.len()).prop_map(AgentPick::Garbage),
    ]
}

fn key_pick() -> impl Strategy<Value = KeyPick<Index>> {
    prop_oneof![
        8 => Just(KeyPick::Current),
        1 => any::<Index>().prop_map(KeyPick::Stale),
        1 => any::<Index>().prop_map(KeyPick::Foreign),
        1 => (0..GARBAGE_KEYS.len()).prop_map(KeyPick::Garbage),
    ]
}

fn message() -> impl Strategy<Value = usize> {
    prop_oneof![20 => 0..3usize, 1 => Just(3usize)]
}

/// Transitions, weighted by what the state makes interesting: agents register when there are
/// none, agents ask for work when some is queued, holders call when tasks are held. Every
/// choice is an [`Index`] resolved against the state when applied, so any subsequence of a
/// generated sequence (as shrinking produces) is still a valid sequence.
fn transitions_from(state: &Model) -> BoxedStrategy<Transition<Index>> {
    let live = state.live_agents();
    let queued = state.tasks_where(|s| s == TaskStatus::Queued);
    let active = state.tasks_where(TaskStatus::is_active);
    let w_register = if live == 0 { 8 } else { 1 };
    let w_queue = if queued == 0 { 5 } else { 2 };
    let w_request = if live > 0 && queued > 0 { 6 } else { 1 };
    let w_holder = if active > 0 { 4 } else { 1 };

    let app = prop_oneof![1 => Just(0u64), 15 => 1..5u64];
    let scanner = prop_oneof![20 => 0..4usize, 1 => 4..SCAN_SCANNERS.len()];
    let url = prop_oneof![10 => 0..4usize, 1 => 4..URLS.len()];
    let name = prop_oneof![30 => 0..4usize, 2 => Just(4usize), 1 => Just(5usize), 2 => 6..8usize];
    let names = prop_oneof![
        1 => Just(Vec::new()),
        30 => proptest::collection::vec(name.clone(), 1..=3),
        1 => proptest::collection::vec(name, 4..=5),
    ];
    let request_agent = prop_oneof![
        12 => any::<Index>().prop_map(AgentPick::Live),
        1 => any::<Index>().prop_map(AgentPick::Any),
        1 => (0..GARBAGE_KEYS.len()).prop_map(AgentPick::Garbage),
    ];
    let agent_config = prop_oneof![25 => 0..3usize, 1 => Just(3usize)];
    let tick = prop_oneof![
        1 => Just(0i64),
        4 => 1..=120i64,
        1 => 121..=1_100i64,
        1 => -300..=-1i64,
    ];
    prop_oneof![
        w_queue => (dt(), app, scanner, url).prop_map(|(dt, app, scanner, url)| {
            Transition::QueueScan { dt, app, scanner, url }
        }),
        w_register => dt().prop_map(|dt| Transition::RegisterAgent { dt }),
        w_request => (dt(), request_agent, names, agent_config).prop_map(
            |(dt, agent, scanners, config)| Transition::RequestTask { dt, agent, scanners, config }
        ),
        2 * w_holder => (dt(), task_pick(), agent_pick(), key_pick(), message()).prop_map(
            |(dt, task, agent, key, message)| Transition::UpdateStatus { dt, task, agent, key, message }
        ),
        w_holder => (dt(), task_pick(), agent_pick(), key_pick()).prop_map(
            |(dt, task, agent, key)| Transition::Complete { dt, task, agent, key }
        ),
        w_holder => (dt(), task_pick(), agent_pick(), key_pick(), message()).prop_map(
            |(dt, task, agent, key, message)| Transition::Fail { dt, task, agent, key, message }
        ),
        1 => (dt(), task_pick()).prop_map(|(dt, task)| Transition::Cancel { dt, task }),
        1 => (dt(), any::<Index>()).prop_map(|(dt, agent)| Transition::Revoke { dt, agent }),
        2 => tick.prop_map(|ms| Transition::Tick { ms }),
    ]
    .boxed()
}

struct QueueModel;

impl ReferenceStateMachine for QueueModel {
    type State = Model;
    type Transition = Transition<Index>;

    fn init_state() -> BoxedStrategy<Model> {
        any::<u64>().prop_map(Model::new).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition<Index>> {
        transitions_from(state)
    }

    fn apply(mut state: Model, transition: &Transition<Index>) -> Model {
        state.step(transition);
        state
    }
}

struct QueueTest;

impl StateMachineTest for QueueTest {
    type SystemUnderTest = Sut;
    type Reference = QueueModel;

    fn init_test(model: &Model) -> Sut {
        Sut::new(model)
    }

    fn apply(mut sut: Sut, model: &Model, _transition: Transition<Index>) -> Sut {
        sut.apply(model);
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        sut.check_invariants(model);
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        // 256 cases by default; PROPTEST_CASES overrides.
        cases: ProptestConfig::default().cases,
        max_shrink_iters: 4_096,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn queue_behaves_as_the_model(sequential 1..60 => QueueTest);
}

/// The input tables say what they mean.
#[test]
fn input_tables_match_the_bounds() {
    let c = config();
    assert!(c.validate().is_ok());
    for (s, v) in SCAN_SCANNERS.iter().chain(&AGENT_SCANNERS) {
        assert_eq!(
            s.len() > c.max_scanner_len,
            *v == TooLong(Bound::ScannerLen),
            "{s:?}"
        );
    }
    for (u, v) in URLS.iter().filter_map(|(u, v)| Some((u.as_ref()?, v))) {
        assert_eq!(
            u.len() > c.max_url_len,
            *v == TooLong(Bound::UrlLen),
            "{u:?}"
        );
    }
    assert_eq!(URLS[3].0.map(str::len), Some(c.max_url_len));
    for (s, v) in AGENT_CONFIGS {
        assert_eq!(s.len() > c.max_agent_config_len, v != Valid, "{s:?}");
    }
    for (s, v) in MESSAGES {
        assert_eq!(s.len() > c.max_message_len, v != Valid, "{s:?}");
    }
    assert!(GARBAGE_KEYS.iter().any(|k| k.len() == scan_queue::KEY_LEN));
}

/// Pins the first bug this model found, whatever the strategies generate: an agent whose
/// lease ran out and which then took the same task again was told "lease expired" about its
/// new assignment (here: when retrying the wrong terminal call), instead of the task's state.
#[test]
fn a_retaken_task_forgets_its_holders_lost_lease() {
    let mut q = Queue::new(config(), seeded(1)).expect("valid config");
    let scan = NewScan::new(ApplicationId(1), "zap");
    let id = q.queue_scan(T0, scan).expect("queued").id();
    let a = q.register_agent(T0).expect("agent a");
    let b = q.register_agent(T0).expect("agent b");
    let (a, b) = (a.key.expose_secret(), b.key.expose_secret());
    let take = |q: &mut Queue, now: u64, agent: &str| {
        let task = q
            .request_task(now, agent, &["zap"], "")
            .expect("ok")
            .expect("a task");
        let key = task.assignment().expect("assigned").task_key();
        key.expose_secret().to_owned()
    };

    // A's lease runs out and the task is queued again; A takes it again and completes it.
    let first = take(&mut q, T0, a);
    let second = take(&mut q, T0 + 100, a);
    assert_eq!(q.task(id).map(Task::attempts), Some(2));
    let stale = q.update_status(T0 + 110, id, "", a, &first).unwrap_err();
    assert_eq!(stale, Error::InvalidTaskKey { task: id });
    q.complete_task(T0 + 120, id, a, &second)
        .expect("completed");
    assert_eq!(
        q.fail_task(T0 + 130, id, "late", a, &second).unwrap_err(),
        Error::WrongState {
            task: id,
            status: TaskStatus::CompleteSuccessful
        }
    );

    // Whereas an agent that lost the lease to another agent is told why.
    let id = q.queue_scan(T0 + 200, scan).expect("queued").id();
    let lost = take(&mut q, T0 + 200, a);
    let _ = take(&mut q, T0 + 300, b);
    assert_eq!(
        q.complete_task(T0 + 310, id, a, &lost).unwrap_err(),
        Error::LeaseExpired { task: id }
    );
}
