//! The deterministic simulation harness (TigerBeetle style, see STYLE.md): one seed drives a
//! whole world of scan agents and an administrator around one [`Queue`], in simulated time,
//! and every answer the queue gives is checked against a small reference model written from
//! the SPEC.
//!
//! Shared by the `simulate` example (big runs, prints a summary) and `tests/simulation.rs`
//! (many seeds, small runs). This file never prints and never reads a clock: [`run`] takes
//! [`Params`] and returns a [`Run`]; a broken rule is a panic whose message starts with
//! `simulation failure` and names the seed and step.
//!
//! The world:
//! - an **administrator** queues scans over time (batches, sometimes a burst past
//!   `max_open_tasks`, sometimes a malformed one), cancels tasks, revokes agents (registering
//!   a replacement) and revokes registrations that crashed agents abandoned;
//! - **agents** (one per slot, each supporting a random subset of the scanners) poll for
//!   tasks, send status updates (heartbeats, sometimes a message past its bound), then
//!   complete or fail; some are slow (their lease runs out while they work), some crash
//!   silently (no heartbeat, so the lease expires) and later either come back with their
//!   stale keys (which must be refused) or restart as a new agent; some retry a completion
//!   (the same answer must come back); some send garbage or foreign keys;
//! - **time** advances from actor to actor; the embedder usually wakes at
//!   [`Queue::next_deadline_ms`] and calls [`Queue::advance`], and sometimes oversleeps so
//!   the next operation has to apply the overdue expiries itself.
//!
//! The checks: every call's outcome (accepted, repeated, refused) and the exact events it
//! produced are predicted by the model; the model follows every event and refuses any the
//! SPEC does not allow; periodically `check_invariants`, counts against [`Queue::stats`],
//! every live agent's tasks, and "every active task is believed held by exactly one agent
//! process"; at the end, every task queued is accounted for (terminal, open or evicted) and
//! a replica that applied the event log has the same snapshot.

// Shared by the example and the test; each uses part of the report.
#![allow(dead_code)]

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scan_queue::{
    AgentId, ApplicationId, Bound, Config, Error, Event, KeySource, NewScan, Queue, ScanConfigId,
    TaskId, TaskStatus, split_scanner_list,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Simulated time starts here (14 Nov 2023, in ms since the Unix epoch).
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// The scanners tasks ask for (ThreadFix's display names).
pub const SCANNERS: [&str; 6] = [
    "OWASP Zed Attack Proxy",
    "Burp Suite Pro",
    "Acunetix WVS",
    "AppSpider",
    "IBM Security AppScan Standard",
    "WebInspect",
];
/// How often the administrator picks each scanner (relative weights).
const SCANNER_WEIGHTS: [u32; 6] = [30, 25, 15, 15, 10, 5];
/// The chance that an agent supports each scanner (WebInspect is rare, so its tasks wait).
const SCANNER_SUPPORT: [f64; 6] = [0.8, 0.6, 0.5, 0.4, 0.4, 0.15];

/// The lease: a healthy agent heartbeats well within it.
pub const LEASE_MS: u64 = 30_000;
/// The task deadline: only tasks that wait long (bursts, rare scanners) reach it.
pub const DEADLINE_MS: u64 = 15 * 60_000;
/// Registrations left behind by agents that restarted, before the admin cleans up.
const ABANDONED_MAX: usize = 32;

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Drives everything: the world's choices and the queue's keys.
    pub seed: u64,
    /// Agent slots (agent processes running at once).
    pub agents: usize,
    /// Tasks the administrator queues in total.
    pub tasks: u64,
    /// Steps between full checks (`check_invariants`, stats, holders); 0: at the end only.
    pub check_every: u64,
    /// Apply every event to a replica and compare snapshots at the end.
    pub replay: bool,
    /// Return the event log in [`Run::events`].
    pub keep_events: bool,
    /// Stop after this many steps even if the queue has not drained.
    pub max_steps: u64,
}

impl Params {
    /// Defaults for everything but the size: full checks every 1000 steps, replay on.
    pub fn new(seed: u64, agents: usize, tasks: u64) -> Params {
        Params {
            seed,
            agents,
            tasks,
            check_every: 1000,
            replay: true,
            keep_events: false,
            max_steps: tasks.saturating_mul(100).saturating_add(100_000),
        }
    }
}

/// The queue configuration of a run: a short lease, 3 attempts, a small status history, and
/// bounds that the run reaches (open tasks during bursts, finished tasks by eviction).
pub fn config_for(params: &Params) -> Config {
    let agents = params.agents.max(1);
    Config {
        lease_ms: LEASE_MS,
        task_deadline_ms: DEADLINE_MS,
        max_attempts: 3,
        max_open_tasks: 16 * agents + 64,
        max_finished_tasks: usize::try_from(params.tasks / 4)
            .unwrap_or(usize::MAX)
            .clamp(50, 20_000),
        max_agents: agents + ABANDONED_MAX + 8,
        max_message_len: 256,
        max_status_history: 8,
        ..Config::default()
    }
}

/// What happened in a run. Equal seeds and params give equal reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The params' seed.
    pub seed: u64,
    /// Agent slots.
    pub agents: usize,
    /// Tasks the administrator queued (accepted by the queue).
    pub tasks_queued: u64,
    /// Steps taken (one actor action or one timer wake-up each).
    pub steps: u64,
    /// Whether every task queued reached a terminal status (else the step limit stopped it).
    pub drained: bool,
    /// Simulated time at the end.
    pub end_ms: u64,
    /// Every task queued by its status at the end, indexed by [`TaskStatus::index`]
    /// (including tasks evicted after finishing).
    pub final_status: [u64; 7],
    /// Finished tasks evicted past `max_finished_tasks`.
    pub evicted: u64,
    /// Assignments.
    pub assignments: u64,
    /// Status updates accepted.
    pub status_updates: u64,
    /// Tasks put back in the queue (lease expiry or revocation).
    pub requeues: u64,
    /// Leases that ran out.
    pub lease_expiries: u64,
    /// Tasks that timed out (last lease, or deadline).
    pub timeouts: u64,
    /// Of those, by the task deadline.
    pub deadline_timeouts: u64,
    /// Agents registered (initial, replacements, restarts).
    pub agents_registered: u64,
    /// Agents revoked.
    pub revocations: u64,
    /// Calls refused by a key check ([`scan_queue::Stats::rejected_key_checks`]).
    pub rejected_key_checks: u64,
    /// Calls with stale keys (after a crash, a slow job, a revocation) that were refused.
    pub stale_refused: u64,
    /// Calls with garbage or foreign keys, all refused.
    pub garbage_refused: u64,
    /// Completions or failures retried and answered as the first time.
    pub retries_answered: u64,
    /// Agents that crashed silently.
    pub crashes: u64,
    /// Calls refused by a bound (open tasks, message length).
    pub bound_refusals: u64,
    /// Malformed scans refused.
    pub invalid_refused: u64,
    /// Times the embedder woke at `next_deadline_ms`.
    pub timer_wakeups: u64,
    /// Full checks run.
    pub full_checks: u64,
    /// Events (transitions) produced.
    pub events: u64,
    /// FNV-1a over the JSON of every event, in order.
    pub event_digest: u64,
    /// Whether a replica was fed the log and compared.
    pub replayed: bool,
}

/// A finished run.
pub struct Run {
    /// The summary.
    pub report: Report,
    /// The event log, if [`Params::keep_events`].
    pub events: Vec<Event>,
}

/// Runs one simulation. Panics (`simulation failure ...`) when the queue breaks a rule.
pub fn run(params: &Params) -> Run {
    assert!(params.agents >= 1, "at least one agent");
    let mut sim = Sim::new(params.clone());
    sim.run();
    sim.finish()
}

// ---------------------------------------------------------------------------------------------
// The reference model, written from the SPEC and fed by the events.

/// The agent calls on a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Update,
    Complete,
    Fail,
}

impl Call {
    fn terminal_status(self) -> Option<TaskStatus> {
        match self {
            Call::Update => None,
            Call::Complete => Some(TaskStatus::CompleteSuccessful),
            Call::Fail => Some(TaskStatus::CompleteFailed),
        }
    }
}

/// What the model expects of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Accepted: exactly one event.
    Proceed,
    /// A retry of the call that finished the task: the same answer, no event.
    Repeat,
    /// Refused, no event.
    Refuse(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// `InvalidAgentKey`.
    AgentKey,
    /// `UnknownTask` (never queued, or evicted).
    UnknownTask,
    /// `UnknownAgent`.
    UnknownAgent,
    /// `BoundExceeded` for this bound.
    Bound(Bound),
    /// `InvalidInput`.
    Invalid,
    /// A key check failed or the state does not allow the call.
    NotHolder,
}

struct MTask {
    scanner: usize,
    status: TaskStatus,
    /// The current assignment (agent, task key); kept after complete/fail/cancel for retries.
    holder: Option<(AgentId, String)>,
    lease_until_ms: u64,
    timeout_ms: u64,
    end_ms: Option<u64>,
    attempts: u32,
    evicted: bool,
}

#[derive(Default)]
struct MCounters {
    assignments: u64,
    status_updates: u64,
    completions: u64,
    failures: u64,
    cancellations: u64,
    lease_expiries: u64,
    requeues: u64,
    timeouts: u64,
    deadline_timeouts: u64,
    agents_registered: u64,
    agents_revoked: u64,
    evicted: u64,
}

struct Model {
    config: Config,
    /// Task `id` at index `id - 1`.
    tasks: Vec<MTask>,
    /// Queued task ids per scanner index.
    queued: Vec<BTreeSet<TaskId>>,
    /// Open (non-terminal) task ids.
    open: BTreeSet<TaskId>,
    /// Live agents and the tasks they hold.
    held: BTreeMap<AgentId, BTreeSet<TaskId>>,
    /// Live agents by key.
    by_key: BTreeMap<String, AgentId>,
    /// Finished order, for eviction.
    finished: VecDeque<TaskId>,
    /// Every task by status (evicted included).
    by_status: [u64; 7],
    /// Retained tasks by status.
    retained: [u64; 7],
    counters: MCounters,
}

impl Model {
    fn new(config: Config) -> Model {
        Model {
            config,
            tasks: Vec::new(),
            queued: vec![BTreeSet::new(); SCANNERS.len()],
            open: BTreeSet::new(),
            held: BTreeMap::new(),
            by_key: BTreeMap::new(),
            finished: VecDeque::new(),
            by_status: [0; 7],
            retained: [0; 7],
            counters: MCounters::default(),
        }
    }

    fn task(&self, id: TaskId) -> Option<&MTask> {
        let index = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.tasks.get(index)
    }

    fn task_mut(&mut self, id: TaskId) -> Result<&mut MTask, String> {
        let index = usize::try_from(id.0).ok().and_then(|i| i.checked_sub(1));
        index
            .and_then(|i| self.tasks.get_mut(i))
            .ok_or_else(|| format!("event names task {id}, never queued"))
    }

    fn agent_for_key(&self, key: &str) -> Option<AgentId> {
        self.by_key.get(key).copied()
    }

    fn is_live(&self, agent: AgentId) -> bool {
        self.held.contains_key(&agent)
    }

    /// The task `scanners` should get: the oldest queued among them.
    fn oldest_queued(&self, scanners: &[usize]) -> Option<TaskId> {
        scanners
            .iter()
            .filter_map(|&s| self.queued[s].first())
            .min()
            .copied()
    }

    /// The next timer instant: the earliest lease or deadline among open tasks.
    fn next_timer_ms(&self) -> Option<u64> {
        self.open
            .iter()
            .filter_map(|&id| self.task(id))
            .map(|t| {
                if t.status.is_active() {
                    t.lease_until_ms.min(t.timeout_ms)
                } else {
                    t.timeout_ms
                }
            })
            .min()
    }

    fn predict(&self, call: Call, agent_key: &str, task: TaskId, task_key: &str) -> Expect {
        let Some(agent) = self.agent_for_key(agent_key) else {
            return Expect::Refuse(Refusal::AgentKey);
        };
        let Some(t) = self.task(task).filter(|t| !t.evicted) else {
            return Expect::Refuse(Refusal::UnknownTask);
        };
        let holds = t
            .holder
            .as_ref()
            .is_some_and(|(a, k)| *a == agent && k == task_key);
        if t.status.is_active() && holds {
            Expect::Proceed
        } else if holds && call.terminal_status() == Some(t.status) {
            Expect::Repeat
        } else {
            Expect::Refuse(Refusal::NotHolder)
        }
    }

    fn set_status(&mut self, id: TaskId, status: TaskStatus) -> Result<(), String> {
        let t = self.task_mut(id)?;
        let old = t.status;
        t.status = status;
        let scanner = t.scanner;
        self.by_status[old.index()] -= 1;
        self.retained[old.index()] -= 1;
        self.by_status[status.index()] += 1;
        self.retained[status.index()] += 1;
        if old == TaskStatus::Queued {
            self.queued[scanner].remove(&id);
        }
        if status == TaskStatus::Queued {
            self.queued[scanner].insert(id);
        }
        if status.is_terminal() {
            self.open.remove(&id);
            self.finished.push_back(id);
            while self.finished.len() > self.config.max_finished_tasks {
                let Some(gone) = self.finished.pop_front() else {
                    break;
                };
                let g = self.task_mut(gone)?;
                g.evicted = true;
                let s = g.status.index();
                self.retained[s] -= 1;
                self.counters.evicted += 1;
            }
        }
        Ok(())
    }

    /// Drops the task from its holder's set (the holder itself stays recorded on the task).
    fn release(&mut self, id: TaskId) -> Result<(), String> {
        let t = self.task_mut(id)?;
        if let Some((agent, _)) = &t.holder
            && t.status.is_active()
        {
            let agent = *agent;
            let set = self
                .held
                .get_mut(&agent)
                .ok_or("active task held by a dead agent")?;
            if !set.remove(&id) {
                return Err(format!("agent {agent} did not hold task {id}"));
            }
        }
        Ok(())
    }

    /// Follows one event, refusing any the SPEC does not allow.
    fn apply(&mut self, event: &Event) -> Result<(), String> {
        let c = &self.config;
        let (lease_ms, deadline_ms, max_attempts) =
            (c.lease_ms, c.task_deadline_ms, c.max_attempts);
        match event {
            Event::AgentRegistered { agent, key, .. } => {
                if self.held.len() >= self.config.max_agents {
                    return Err("agent registered past max_agents".into());
                }
                if self.held.insert(*agent, BTreeSet::new()).is_some() {
                    return Err(format!("agent {agent} registered twice"));
                }
                let key = key.expose_secret().to_owned();
                if self.by_key.insert(key, *agent).is_some() {
                    return Err("two live agents share a key".into());
                }
                self.counters.agents_registered += 1;
            }
            Event::AgentRevoked { agent, .. } => {
                let tasks = self
                    .held
                    .remove(agent)
                    .ok_or(format!("revoked unknown agent {agent}"))?;
                self.by_key.retain(|_, a| a != agent);
                for id in tasks {
                    let t = self.task_mut(id)?;
                    if !t.status.is_active() || t.holder.as_ref().map(|h| h.0) != Some(*agent) {
                        return Err(format!(
                            "revoked agent {agent} held task {id} it should not"
                        ));
                    }
                    t.holder = None;
                    self.set_status(id, TaskStatus::Queued)?;
                    self.counters.requeues += 1;
                }
                self.counters.agents_revoked += 1;
            }
            Event::TaskQueued {
                task,
                scanner,
                at_ms,
                timeout_ms,
                ..
            } => {
                if task.0 != self.tasks.len() as u64 + 1 {
                    return Err(format!("task {task} queued out of sequence"));
                }
                if *timeout_ms != at_ms + deadline_ms {
                    return Err(format!("task {task} deadline is not queue time + deadline"));
                }
                if self.open.len() >= self.config.max_open_tasks {
                    return Err("task queued past max_open_tasks".into());
                }
                let scanner = SCANNERS
                    .iter()
                    .position(|s| *s == &**scanner)
                    .ok_or("task queued for an unknown scanner")?;
                self.tasks.push(MTask {
                    scanner,
                    status: TaskStatus::Queued,
                    holder: None,
                    lease_until_ms: 0,
                    timeout_ms: *timeout_ms,
                    end_ms: None,
                    attempts: 0,
                    evicted: false,
                });
                self.by_status[0] += 1;
                self.retained[0] += 1;
                self.queued[scanner].insert(*task);
                self.open.insert(*task);
            }
            Event::TaskAssigned {
                task,
                agent,
                task_key,
                at_ms,
                lease_until_ms,
                ..
            } => {
                let t = self.task(*task).ok_or("assigned an unknown task")?;
                if t.status != TaskStatus::Queued {
                    return Err(format!("task {task} assigned while {}", t.status));
                }
                if t.timeout_ms <= *at_ms {
                    return Err(format!("task {task} assigned after its deadline"));
                }
                if *lease_until_ms != at_ms + lease_ms {
                    return Err(format!("task {task} lease is not now + lease"));
                }
                let set = self
                    .held
                    .get_mut(agent)
                    .ok_or("task assigned to a dead agent")?;
                set.insert(*task);
                let t = self.task_mut(*task)?;
                t.holder = Some((*agent, task_key.expose_secret().to_owned()));
                t.attempts += 1;
                t.lease_until_ms = *lease_until_ms;
                self.set_status(*task, TaskStatus::Assigned)?;
                self.counters.assignments += 1;
            }
            Event::StatusUpdated {
                task,
                at_ms,
                lease_until_ms,
                ..
            } => {
                let t = self.task_mut(*task)?;
                if !t.status.is_active() {
                    return Err(format!("status update on task {task} while {}", t.status));
                }
                if *lease_until_ms != at_ms + lease_ms {
                    return Err(format!("task {task} renewed lease is not now + lease"));
                }
                t.lease_until_ms = *lease_until_ms;
                self.set_status(*task, TaskStatus::InProgress)?;
                self.counters.status_updates += 1;
            }
            Event::TaskCompleted { task, at_ms } | Event::TaskFailed { task, at_ms, .. } => {
                let t = self.task(*task).ok_or("finished an unknown task")?;
                if !t.status.is_active() {
                    return Err(format!(
                        "task {task} finished by its agent while {}",
                        t.status
                    ));
                }
                self.release(*task)?;
                self.task_mut(*task)?.end_ms = Some(*at_ms);
                if matches!(event, Event::TaskCompleted { .. }) {
                    self.set_status(*task, TaskStatus::CompleteSuccessful)?;
                    self.counters.completions += 1;
                } else {
                    self.set_status(*task, TaskStatus::CompleteFailed)?;
                    self.counters.failures += 1;
                }
            }
            Event::TaskCancelled { task, at_ms } => {
                let t = self.task(*task).ok_or("cancelled an unknown task")?;
                if t.status.is_terminal() {
                    return Err(format!("task {task} cancelled while {}", t.status));
                }
                self.release(*task)?;
                self.task_mut(*task)?.end_ms = Some(*at_ms);
                self.set_status(*task, TaskStatus::CompleteDeleted)?;
                self.counters.cancellations += 1;
            }
            Event::LeaseExpired {
                task,
                at_ms,
                requeued,
            } => {
                let t = self.task(*task).ok_or("lease of an unknown task")?;
                if !t.status.is_active() {
                    return Err(format!("lease of task {task} expired while {}", t.status));
                }
                if t.lease_until_ms != *at_ms || t.timeout_ms <= *at_ms {
                    return Err(format!("lease of task {task} expired at the wrong instant"));
                }
                if *requeued != (t.attempts < max_attempts) {
                    return Err(format!("task {task} requeue decision ignores max_attempts"));
                }
                self.release(*task)?;
                self.task_mut(*task)?.holder = None;
                self.counters.lease_expiries += 1;
                if *requeued {
                    self.set_status(*task, TaskStatus::Queued)?;
                    self.counters.requeues += 1;
                } else {
                    self.task_mut(*task)?.end_ms = Some(*at_ms);
                    self.set_status(*task, TaskStatus::CompleteTimedOut)?;
                    self.counters.timeouts += 1;
                }
            }
            Event::DeadlineReached { task, at_ms } => {
                let t = self.task(*task).ok_or("deadline of an unknown task")?;
                if t.status.is_terminal() || t.timeout_ms != *at_ms {
                    return Err(format!(
                        "deadline of task {task} at the wrong instant or state"
                    ));
                }
                if t.status.is_active() && t.lease_until_ms < *at_ms {
                    return Err(format!("deadline of task {task} after its lease ran out"));
                }
                self.release(*task)?;
                let t = self.task_mut(*task)?;
                t.holder = None;
                t.end_ms = Some(*at_ms);
                self.set_status(*task, TaskStatus::CompleteTimedOut)?;
                self.counters.timeouts += 1;
                self.counters.deadline_timeouts += 1;
            }
            other => return Err(format!("unknown event kind {other:?}")),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The world.

#[derive(Clone)]
struct Reg {
    id: AgentId,
    key: String,
}

/// An agent process's belief that it holds a task.
#[derive(Clone)]
struct Job {
    agent: AgentId,
    agent_key: String,
    task: TaskId,
    task_key: String,
    /// Status updates still to send before finishing.
    updates_left: u32,
    fate: Fate,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Complete,
    Fail,
    /// Crash silently before the next call.
    Crash,
    /// Work so slowly that the lease runs out between calls.
    Slow,
}

/// A completion or failure to send again, as a client would after a lost response.
struct Retry {
    call: Call,
    agent_key: String,
    task: TaskId,
    task_key: String,
    message: String,
    end_ms: Option<u64>,
}

enum SlotState {
    Idle,
    Working(Job),
    Crashed(Job),
}

struct Slot {
    reg: Reg,
    scanners: Vec<usize>,
    /// The same scanners as ThreadFix agents send them: comma-separated, untidy.
    scanner_list: String,
    state: SlotState,
    next_ms: u64,
    retry: Option<Retry>,
}

struct Sim {
    p: Params,
    rng: ChaCha8Rng,
    queue: Queue,
    replica: Option<Queue>,
    model: Model,
    now_ms: u64,
    step: u64,
    slots: Vec<Slot>,
    admin_next_ms: u64,
    /// Registrations left behind by agents that restarted as a new agent.
    abandoned: VecDeque<AgentId>,
    /// Some revoked ids, to revoke again (must be refused).
    revoked: Vec<AgentId>,
    /// Jobs of processes that restarted as a new agent: the old registration may still hold
    /// the task until its lease runs out or the registration is revoked.
    ghosts: Vec<Job>,
    kept: Vec<Event>,
    r: Report,
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn is_timer(event: &Event) -> bool {
    matches!(
        event,
        Event::LeaseExpired { .. } | Event::DeadlineReached { .. }
    )
}

/// The parts of a task an answer is checked on.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    id: TaskId,
    status: TaskStatus,
    end_ms: Option<u64>,
}

impl Seen {
    fn of(task: &scan_queue::Task) -> Seen {
        Seen {
            id: task.id(),
            status: task.status(),
            end_ms: task.end_ms(),
        }
    }
}

impl Sim {
    fn new(p: Params) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut key_seed = [0u8; 32];
        rng.fill_bytes(&mut key_seed);
        let config = config_for(&p);
        let queue = Queue::new(config.clone(), KeySource::from_seed(key_seed))
            .unwrap_or_else(|e| panic!("simulation failure: config refused: {e}"));
        let replica = p.replay.then(|| {
            Queue::new(config.clone(), KeySource::from_seed([0; 32])).expect("config checked above")
        });
        let r = Report {
            seed: p.seed,
            agents: p.agents,
            tasks_queued: 0,
            steps: 0,
            drained: false,
            end_ms: EPOCH_MS,
            final_status: [0; 7],
            evicted: 0,
            assignments: 0,
            status_updates: 0,
            requeues: 0,
            lease_expiries: 0,
            timeouts: 0,
            deadline_timeouts: 0,
            agents_registered: 0,
            revocations: 0,
            rejected_key_checks: 0,
            stale_refused: 0,
            garbage_refused: 0,
            retries_answered: 0,
            crashes: 0,
            bound_refusals: 0,
            invalid_refused: 0,
            timer_wakeups: 0,
            full_checks: 0,
            events: 0,
            event_digest: 0xcbf2_9ce4_8422_2325,
            replayed: p.replay,
        };
        let mut sim = Sim {
            rng,
            queue,
            replica,
            model: Model::new(config),
            now_ms: EPOCH_MS,
            step: 0,
            slots: Vec::new(),
            admin_next_ms: EPOCH_MS,
            abandoned: VecDeque::new(),
            revoked: Vec::new(),
            ghosts: Vec::new(),
            kept: Vec::new(),
            r,
            p,
        };
        for _ in 0..sim.p.agents {
            let reg = sim.register();
            let scanners: Vec<usize> = loop {
                let chosen: Vec<usize> = (0..SCANNERS.len())
                    .filter(|&s| sim.rng.random_bool(SCANNER_SUPPORT[s]))
                    .collect();
                if !chosen.is_empty() {
                    break chosen;
                }
            };
            let scanner_list = scanners
                .iter()
                .map(|&s| format!("{}{}", " ".repeat(sim.rng.random_range(0..2)), SCANNERS[s]))
                .collect::<Vec<_>>()
                .join(" ,");
            let next_ms = EPOCH_MS + sim.rng.random_range(0..5_000);
            sim.slots.push(Slot {
                reg,
                scanners,
                scanner_list,
                state: SlotState::Idle,
                next_ms,
                retry: None,
            });
        }
        sim
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "simulation failure (seed {}, step {}, t = EPOCH + {} ms): {what}",
            self.p.seed,
            self.step,
            self.now_ms - EPOCH_MS
        )
    }

    // --- events ---------------------------------------------------------------------------

    fn take_events(&mut self) -> Vec<Event> {
        self.queue.drain_events().collect()
    }

    /// Feeds one event to the model, the replica, the digest and the kept log.
    fn absorb(&mut self, event: Event) {
        if let Err(e) = self.model.apply(&event) {
            self.fail(format!("the queue emitted an event the SPEC forbids: {e}"));
        }
        if let Some(replica) = &mut self.replica
            && let Err(e) = replica.apply(event.clone())
        {
            self.fail(format!(
                "replica refused event {} of the log: {e}",
                self.r.events + 1
            ));
        }
        let json = serde_json::to_vec(&event).expect("events serialize");
        self.r.event_digest = fnv1a(self.r.event_digest, &json);
        self.r.events += 1;
        if self.p.keep_events {
            self.kept.push(event);
        }
    }

    /// Splits a call's events into the expiries its own `advance` applied (absorbed here) and
    /// the events of the call itself (returned). Checks the expiries are due and in order.
    fn split_events(&mut self, effective_ms: u64) -> Vec<Event> {
        let events = self.take_events();
        let own = events
            .iter()
            .position(|e| !is_timer(e))
            .unwrap_or(events.len());
        let mut last = 0;
        let mut events = events.into_iter();
        for event in events.by_ref().take(own) {
            if event.at_ms() > effective_ms || event.at_ms() < last {
                self.fail(format!(
                    "expiry at {} applied at {effective_ms}, or out of order",
                    event.at_ms()
                ));
            }
            last = event.at_ms();
            self.absorb(event);
        }
        let rest: Vec<Event> = events.collect();
        if rest.iter().any(is_timer) {
            self.fail("an expiry event came after the call's own event");
        }
        if let Some(next) = self.queue.next_deadline_ms()
            && next <= effective_ms
        {
            self.fail(format!(
                "after a call at {effective_ms}, a timer at {next} is still pending"
            ));
        }
        rest
    }

    /// Checks a call produced nothing (refusal or repeat), or exactly `expected` (accepted).
    fn expect_events(
        &mut self,
        rest: Vec<Event>,
        expected: Option<&dyn Fn(&Event) -> bool>,
        what: &str,
    ) {
        match expected {
            None if rest.is_empty() => {}
            None => self.fail(format!(
                "{what}: refused or repeated, yet produced {} event(s)",
                rest.len()
            )),
            Some(ok) => {
                if rest.len() != 1 || !ok(&rest[0]) {
                    self.fail(format!(
                        "{what}: accepted, but its events are not the one expected: {rest:?}"
                    ));
                }
                for event in rest {
                    self.absorb(event);
                }
            }
        }
    }

    fn clock_before(&self, at_ms: u64) -> u64 {
        at_ms.max(self.queue.clock_ms())
    }

    // --- operations, each checked against the model ------------------------------------------

    fn register(&mut self) -> Reg {
        let effective = self.clock_before(self.now_ms);
        let result = self.queue.register_agent(self.now_ms);
        let rest = self.split_events(effective);
        let reg = match result {
            Ok(agent) => Reg {
                id: agent.id,
                key: agent.key.expose_secret().to_owned(),
            },
            Err(e) => self.fail(format!(
                "register_agent refused with {} live agents: {e}",
                self.model.held.len()
            )),
        };
        if reg.key.len() != scan_queue::KEY_LEN
            || !reg.key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            self.fail("an agent key is not 44 ASCII alphanumerics");
        }
        let (id, key) = (reg.id, reg.key.clone());
        let ok = move |e: &Event| {
            matches!(e, Event::AgentRegistered { agent, key: k, at_ms }
                if *agent == id && k.expose_secret() == key && *at_ms == effective)
        };
        self.expect_events(rest, Some(&ok), "register_agent");
        reg
    }

    /// Revokes `agent`; returns whether it was live.
    fn revoke(&mut self, agent: AgentId) -> bool {
        let at_ms = self.admin_time();
        let effective = self.clock_before(at_ms);
        let result = self.queue.revoke_agent(at_ms, agent);
        let rest = self.split_events(effective);
        let held: Option<Vec<TaskId>> = self
            .model
            .held
            .get(&agent)
            .map(|s| s.iter().copied().collect());
        match (held, result) {
            (Some(expected), Ok(tasks)) => {
                if tasks != expected {
                    self.fail(format!(
                        "revoke_agent returned {tasks:?}, the agent held {expected:?}"
                    ));
                }
                let ok = move |e: &Event| matches!(e, Event::AgentRevoked { agent: a, at_ms } if *a == agent && *at_ms == effective);
                self.expect_events(rest, Some(&ok), "revoke_agent");
                self.r.revocations += 1;
                if self.revoked.len() < 16 {
                    self.revoked.push(agent);
                }
                true
            }
            (None, Err(Error::UnknownAgent(a))) if a == agent => {
                self.expect_events(rest, None, "revoke_agent");
                false
            }
            (held, result) => self.fail(format!(
                "revoke_agent of an agent {}: got {:?}",
                if held.is_some() { "live" } else { "not live" },
                result.map(|_| ())
            )),
        }
    }

    /// The time an admin call is made with: usually now, sometimes an earlier instant (a
    /// request delayed in transit); the queue must treat it as now.
    fn admin_time(&mut self) -> u64 {
        if self.rng.random_bool(0.05) {
            self.now_ms.saturating_sub(self.rng.random_range(0..10_000))
        } else {
            self.now_ms
        }
    }

    fn queue_scan(&mut self, malformed: bool) {
        let total: u32 = SCANNER_WEIGHTS.iter().sum();
        let mut pick = self.rng.random_range(0..total);
        let scanner = SCANNER_WEIGHTS
            .iter()
            .position(|&w| {
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let app = self.rng.random_range(1..=500u64);
        let url = format!("https://app{app}.example.com/");
        let mut scan = NewScan::new(ApplicationId(app), SCANNERS[scanner]);
        if self.rng.random_bool(0.7) {
            scan = scan.target_url(&url);
        }
        if self.rng.random_bool(0.3) {
            scan = scan.scan_config(ScanConfigId(self.rng.random_range(1..100)));
        }
        if malformed {
            scan = match self.rng.random_range(0..3) {
                0 => NewScan {
                    scanner: "Burp, ZAP",
                    ..scan
                },
                1 => scan.target_url("ftp://app.example.com/"),
                _ => NewScan {
                    application: ApplicationId(0),
                    ..scan
                },
            };
        }
        let at_ms = self.admin_time();
        let effective = self.clock_before(at_ms);
        let result = self
            .queue
            .queue_scan(at_ms, scan)
            .map(|t| (Seen::of(t), t.create_ms(), t.timeout_ms()));
        let rest = self.split_events(effective);
        // Predicted after the call's own expiries are absorbed (an expiry can free room).
        let expect = if malformed {
            Expect::Refuse(Refusal::Invalid)
        } else if self.model.open.len() >= self.model.config.max_open_tasks {
            Expect::Refuse(Refusal::Bound(Bound::OpenTasks))
        } else {
            Expect::Proceed
        };
        let id = TaskId(self.model.tasks.len() as u64 + 1);
        match (expect, result) {
            (Expect::Proceed, Ok((seen, create_ms, timeout_ms))) => {
                if seen.id != id || seen.status != TaskStatus::Queued || create_ms != effective {
                    self.fail(format!("queue_scan answered {seen:?} created at {create_ms}, expected {id} at {effective}"));
                }
                let deadline = self.model.config.task_deadline_ms;
                let name = SCANNERS[scanner];
                let ok = move |e: &Event| {
                    matches!(e, Event::TaskQueued { task, scanner, at_ms, timeout_ms: t, .. }
                        if *task == id && &**scanner == name && *at_ms == effective
                            && *t == effective + deadline && *t == timeout_ms)
                };
                self.expect_events(rest, Some(&ok), "queue_scan");
                self.r.tasks_queued += 1;
            }
            (Expect::Refuse(Refusal::Bound(b)), Err(Error::BoundExceeded { bound, .. }))
                if b == bound =>
            {
                self.expect_events(rest, None, "queue_scan");
                self.r.bound_refusals += 1;
            }
            (Expect::Refuse(Refusal::Invalid), Err(Error::InvalidInput { .. })) => {
                self.expect_events(rest, None, "queue_scan");
                self.r.invalid_refused += 1;
            }
            (expect, result) => self.fail(format!(
                "queue_scan: expected {expect:?}, got {:?}",
                result.map(|r| r.0)
            )),
        }
    }

    fn cancel(&mut self, id: TaskId) {
        let at_ms = self.admin_time();
        let effective = self.clock_before(at_ms);
        let result = self.queue.cancel_task(at_ms, id).map(Seen::of);
        let rest = self.split_events(effective);
        let model = self
            .model
            .task(id)
            .filter(|t| !t.evicted)
            .map(|t| (t.status, t.end_ms));
        let expect = match model {
            None => Expect::Refuse(Refusal::UnknownTask),
            Some((TaskStatus::CompleteDeleted, _)) => Expect::Repeat,
            Some((status, _)) if status.is_terminal() => Expect::Refuse(Refusal::NotHolder),
            Some(_) => Expect::Proceed,
        };
        let end_ms = model.and_then(|(_, end)| end);
        match (expect, result) {
            (Expect::Proceed, Ok(seen))
                if seen.status == TaskStatus::CompleteDeleted && seen.end_ms == Some(effective) =>
            {
                let ok = move |e: &Event| matches!(e, Event::TaskCancelled { task, at_ms } if *task == id && *at_ms == effective);
                self.expect_events(rest, Some(&ok), "cancel_task");
            }
            (Expect::Repeat, Ok(seen))
                if seen.status == TaskStatus::CompleteDeleted && seen.end_ms == end_ms =>
            {
                self.expect_events(rest, None, "cancel_task");
            }
            (Expect::Refuse(Refusal::UnknownTask), Err(Error::UnknownTask(t))) if t == id => {
                self.expect_events(rest, None, "cancel_task");
            }
            (Expect::Refuse(Refusal::NotHolder), Err(Error::WrongState { task, status }))
                if task == id && model.is_some_and(|(s, _)| s == status) =>
            {
                self.expect_events(rest, None, "cancel_task");
            }
            (expect, result) => self.fail(format!(
                "cancel_task({id}): expected {expect:?}, got {result:?}"
            )),
        }
    }

    /// An agent asks for a task with `agent_key`; returns the job if it got one.
    fn request(
        &mut self,
        agent_key: &str,
        scanners: &[usize],
        list: &str,
    ) -> Option<(AgentId, TaskId, String)> {
        let tidy = self.rng.random_bool(0.7);
        let unknown = self.rng.random_bool(0.05);
        let mut names: Vec<&str> = if tidy {
            scanners.iter().map(|&s| SCANNERS[s]).collect()
        } else {
            split_scanner_list(list).collect()
        };
        if unknown {
            names.push("Nessus");
        }
        let effective = self.clock_before(self.now_ms);
        let result = self
            .queue
            .request_task(self.now_ms, agent_key, &names, "scanagent.properties")
            .map(|found| {
                found.map(|t| {
                    let a = t.assignment().map(|a| {
                        (
                            a.agent(),
                            a.task_key().expose_secret().to_owned(),
                            a.lease_until_ms(),
                        )
                    });
                    (Seen::of(t), a)
                })
            });
        if let Err(e) = &result
            && e.is_key_rejection()
        {
            self.r.rejected_key_checks += 1;
        }
        let rest = self.split_events(effective);
        let agent = self.model.agent_for_key(agent_key);
        let expected = agent.map(|_| self.model.oldest_queued(scanners));
        match (agent, expected, result) {
            (Some(agent), Some(Some(id)), Ok(Some((seen, Some((holder, key, lease)))))) => {
                let lease_ms = self.model.config.lease_ms;
                if seen.id != id
                    || seen.status != TaskStatus::Assigned
                    || holder != agent
                    || lease != effective + lease_ms
                {
                    self.fail(format!("request_task gave {seen:?} to {holder} until {lease}; expected {id} to {agent}"));
                }
                if key.len() != scan_queue::KEY_LEN
                    || !key.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    self.fail("a task key is not 44 ASCII alphanumerics");
                }
                let k = key.clone();
                let ok = move |e: &Event| {
                    matches!(e, Event::TaskAssigned { task, agent: a, task_key, at_ms, lease_until_ms, .. }
                        if *task == id && *a == agent && task_key.expose_secret() == k
                            && *at_ms == effective && *lease_until_ms == lease)
                };
                self.expect_events(rest, Some(&ok), "request_task");
                Some((agent, id, key))
            }
            (Some(_), Some(None), Ok(None)) => {
                self.expect_events(rest, None, "request_task");
                None
            }
            (None, None, Err(Error::InvalidAgentKey)) => {
                self.expect_events(rest, None, "request_task");
                None
            }
            (_, expected, result) => self.fail(format!(
                "request_task: expected {expected:?}, got {:?}",
                result.map(|r| r.map(|r| r.0))
            )),
        }
    }

    /// An agent call on a task, checked against the model. Returns the model's expectation
    /// (which the queue met).
    fn agent_call(
        &mut self,
        call: Call,
        agent_key: &str,
        task: TaskId,
        task_key: &str,
        message: &str,
    ) -> Expect {
        let effective = self.clock_before(self.now_ms);
        let now = self.now_ms;
        let result = match call {
            Call::Update => self
                .queue
                .update_status(now, task, message, agent_key, task_key),
            Call::Complete => self.queue.complete_task(now, task, agent_key, task_key),
            Call::Fail => self
                .queue
                .fail_task(now, task, message, agent_key, task_key),
        }
        .map(|answer| Seen::of(&answer));
        if let Err(e) = &result
            && e.is_key_rejection()
        {
            self.r.rejected_key_checks += 1;
        }
        let rest = self.split_events(effective);
        let expect = if call != Call::Complete && message.len() > self.model.config.max_message_len
        {
            Expect::Refuse(Refusal::Bound(Bound::MessageLen))
        } else {
            self.model.predict(call, agent_key, task, task_key)
        };
        let first = self.model.task(task).map(|t| (t.status, t.end_ms));
        let what = format!("{call:?} of task {task}");
        match (expect, &result) {
            (Expect::Proceed, Ok(seen)) => {
                let status = call.terminal_status().unwrap_or(TaskStatus::InProgress);
                let end_ms = call.terminal_status().map(|_| effective);
                if seen.id != task || seen.status != status || seen.end_ms != end_ms {
                    self.fail(format!("{what}: accepted but answered {seen:?}"));
                }
                let lease = effective + self.model.config.lease_ms;
                let message = message.to_owned();
                let ok = move |e: &Event| match (call, e) {
                    (
                        Call::Update,
                        Event::StatusUpdated {
                            task: t,
                            message: m,
                            at_ms,
                            lease_until_ms,
                        },
                    ) => {
                        *t == task
                            && **m == *message
                            && *at_ms == effective
                            && *lease_until_ms == lease
                    }
                    (Call::Complete, Event::TaskCompleted { task: t, at_ms }) => {
                        *t == task && *at_ms == effective
                    }
                    (
                        Call::Fail,
                        Event::TaskFailed {
                            task: t,
                            reason,
                            at_ms,
                        },
                    ) => *t == task && **reason == *message && *at_ms == effective,
                    _ => false,
                };
                self.expect_events(rest, Some(&ok), &what);
            }
            (Expect::Repeat, Ok(seen)) => {
                if Some((seen.status, seen.end_ms)) != first {
                    self.fail(format!(
                        "{what}: a retry answered {seen:?}, the first answer was {first:?}"
                    ));
                }
                self.expect_events(rest, None, &what);
            }
            (Expect::Refuse(refusal), Err(e)) => {
                let matches = match refusal {
                    Refusal::AgentKey => *e == Error::InvalidAgentKey,
                    Refusal::UnknownTask => *e == Error::UnknownTask(task),
                    Refusal::Bound(b) => {
                        matches!(e, Error::BoundExceeded { bound, .. } if *bound == b)
                    }
                    Refusal::NotHolder => {
                        e.is_key_rejection() || matches!(e, Error::WrongState { .. })
                    }
                    Refusal::UnknownAgent | Refusal::Invalid => false,
                };
                if !matches {
                    self.fail(format!("{what}: expected refusal {refusal:?}, got {e:?}"));
                }
                if refusal == Refusal::Bound(Bound::MessageLen) {
                    self.r.bound_refusals += 1;
                }
                self.expect_events(rest, None, &what);
            }
            (expect, result) => self.fail(format!("{what}: expected {expect:?}, got {result:?}")),
        }
        expect
    }

    // --- actors ----------------------------------------------------------------------------

    fn admin_act(&mut self) {
        let agents = self.p.agents as u64;
        let remaining = self.p.tasks - self.r.tasks_queued;
        if remaining > 0 {
            let queued_now = self.model.queued.iter().map(BTreeSet::len).sum::<usize>() as u64;
            let batch = if self.rng.random_bool(0.003) {
                // A burst, past max_open_tasks now and then.
                20 * agents
            } else if queued_now < 2 * agents + 4 {
                self.rng.random_range(1..=agents + 1)
            } else {
                0
            };
            let mut queued = 0;
            let mut attempts = 0;
            while queued < batch.min(remaining) && attempts < batch * 2 {
                attempts += 1;
                let before = self.r.tasks_queued;
                self.queue_scan(false);
                if self.r.tasks_queued == before {
                    break; // the open-task bound: try again later
                }
                queued += 1;
            }
        }
        if self.rng.random_bool(0.01) {
            self.queue_scan(true);
        }
        if self.rng.random_bool(0.03) && self.r.tasks_queued > 0 {
            let id = if !self.model.open.is_empty() && self.rng.random_bool(0.7) {
                let n = self.rng.random_range(0..self.model.open.len());
                *self
                    .model
                    .open
                    .iter()
                    .nth(n)
                    .expect("index within the open set")
            } else {
                TaskId(self.rng.random_range(0..=self.r.tasks_queued + 2))
            };
            self.cancel(id);
        }
        if self.rng.random_bool(0.004) {
            // Revoke a slot's agent; the admin registers a replacement for that slot. The
            // process keeps its job (and old key) until its next call is refused.
            let slot = self.rng.random_range(0..self.slots.len());
            let agent = self.slots[slot].reg.id;
            if !self.revoke(agent) {
                self.fail("a slot's current agent was not live");
            }
            self.slots[slot].reg = self.register();
        }
        if !self.abandoned.is_empty()
            && (self.abandoned.len() > ABANDONED_MAX / 2 || self.rng.random_bool(0.03))
        {
            let agent = self.abandoned.pop_front().expect("not empty");
            self.revoke(agent);
        }
        if !self.revoked.is_empty() && self.rng.random_bool(0.002) {
            let agent = self.revoked[self.rng.random_range(0..self.revoked.len())];
            if self.revoke(agent) {
                self.fail("a revoked agent was revoked again");
            }
        }
        self.admin_next_ms = self.now_ms + self.rng.random_range(500..6_000);
    }

    fn random_key(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => String::new(),
            1 => "x".repeat(self.rng.random_range(1..60)),
            2 => "ключ-ключ-ключ-ключ-ключ-ключ-ключ-кл".to_owned(),
            3 => format!("{}!", "A".repeat(43)),
            _ => (0..scan_queue::KEY_LEN)
                .map(|_| char::from(self.rng.sample(rand::distr::Alphanumeric)))
                .collect(),
        }
    }

    /// A call with garbage or foreign keys, which must be refused.
    fn garbage_call(&mut self, slot: usize) {
        let own_key = self.slots[slot].reg.key.clone();
        let own_id = self.slots[slot].reg.id;
        // An active task and its real task key, if any.
        let victim = {
            let active: Vec<TaskId> = self.model.held.values().flatten().copied().collect();
            (!active.is_empty()).then(|| {
                let id = active[self.rng.random_range(0..active.len())];
                let t = self.model.task(id).expect("held tasks exist");
                let (holder, key) = t.holder.clone().expect("active tasks have a holder");
                (id, holder, key)
            })
        };
        let own_task = match &self.slots[slot].state {
            SlotState::Working(job) if job.agent == own_id => Some(job.task),
            _ => None,
        };
        let call = [Call::Update, Call::Complete, Call::Fail][self.rng.random_range(0..3)];
        let expect = match (self.rng.random_range(0..4), victim) {
            // A garbage agent key with a real task key.
            (0, Some((id, _, task_key))) => {
                let key = self.random_key();
                self.agent_call(call, &key, id, &task_key, "garbage")
            }
            // Our own agent key with another agent's task and its key.
            (1, Some((id, holder, task_key))) if holder != own_id => {
                self.agent_call(call, &own_key, id, &task_key, "foreign")
            }
            // Our own agent key, a real task (ours if we hold one), a garbage task key.
            (2, victim) if own_task.or(victim.as_ref().map(|v| v.0)).is_some() => {
                let id = own_task
                    .or(victim.map(|v| v.0))
                    .expect("checked in the guard");
                let key = self.random_key();
                self.agent_call(call, &own_key, id, &key, "garbage")
            }
            // A request for a task with a garbage agent key.
            _ => {
                let key = self.random_key();
                let scanners = self.slots[slot].scanners.clone();
                let list = self.slots[slot].scanner_list.clone();
                if self.request(&key, &scanners, &list).is_some() {
                    self.fail("a garbage agent key got a task");
                }
                Expect::Refuse(Refusal::AgentKey)
            }
        };
        if !matches!(expect, Expect::Refuse(_)) {
            self.fail(format!(
                "a call with garbage or foreign keys was predicted {expect:?}"
            ));
        }
        self.r.garbage_refused += 1;
    }

    fn heartbeat_delay(&mut self, fate: Fate) -> u64 {
        if fate == Fate::Slow && self.rng.random_bool(0.5) {
            self.rng.random_range(LEASE_MS..3 * LEASE_MS)
        } else {
            self.rng.random_range(1_000..20_000)
        }
    }

    fn agent_act(&mut self, i: usize) {
        if self.rng.random_bool(0.03) {
            self.garbage_call(i);
        }
        if let Some(retry) = self.slots[i].retry.take() {
            // Sometimes a wrong retry: the other terminal call, or a garbage task key. Both
            // must be refused however the task finished.
            let wrong = self.rng.random_range(0..10);
            let (call, task_key) = match (wrong, retry.call) {
                (0, Call::Complete) => (Call::Fail, retry.task_key.clone()),
                (0, _) => (Call::Complete, retry.task_key.clone()),
                (1, call) => (call, self.random_key()),
                (_, call) => (call, retry.task_key.clone()),
            };
            let expect = self.agent_call(
                call,
                &retry.agent_key,
                retry.task,
                &task_key,
                &retry.message,
            );
            if wrong < 2 {
                if !matches!(expect, Expect::Refuse(_)) {
                    self.fail(format!("a wrong retry was predicted {expect:?}"));
                }
                self.r.garbage_refused += 1;
                self.slots[i].next_ms = self.now_ms + self.rng.random_range(100..2_000);
                return;
            }
            match expect {
                Expect::Repeat => {
                    let end = self.model.task(retry.task).and_then(|t| t.end_ms);
                    if end != retry.end_ms {
                        self.fail("a retried completion changed the end time");
                    }
                    self.r.retries_answered += 1;
                }
                Expect::Refuse(Refusal::UnknownTask | Refusal::AgentKey) => {} // evicted, or revoked since
                other => self.fail(format!(
                    "a retried {:?} was predicted {other:?}",
                    retry.call
                )),
            }
            self.slots[i].next_ms = self.now_ms + self.rng.random_range(100..2_000);
            return;
        }
        let state = std::mem::replace(&mut self.slots[i].state, SlotState::Idle);
        match state {
            SlotState::Idle => {
                let reg = self.slots[i].reg.clone();
                let scanners = self.slots[i].scanners.clone();
                let list = self.slots[i].scanner_list.clone();
                match self.request(&reg.key, &scanners, &list) {
                    Some((agent, task, task_key)) => {
                        let fate = match self.rng.random_range(0..100) {
                            0..75 => Fate::Complete,
                            75..87 => Fate::Fail,
                            87..95 => Fate::Crash,
                            _ => Fate::Slow,
                        };
                        let job = Job {
                            agent,
                            agent_key: reg.key,
                            task,
                            task_key,
                            updates_left: self.rng.random_range(0..4),
                            fate,
                        };
                        self.slots[i].next_ms = self.now_ms + self.heartbeat_delay(fate);
                        self.slots[i].state = SlotState::Working(job);
                    }
                    None => self.slots[i].next_ms = self.now_ms + self.rng.random_range(500..5_000),
                }
            }
            SlotState::Working(mut job) => {
                if job.fate == Fate::Crash && self.rng.random_bool(0.5) {
                    // Silence: no more heartbeats; back after a while.
                    self.r.crashes += 1;
                    self.slots[i].next_ms =
                        self.now_ms + self.rng.random_range(LEASE_MS / 2..4 * LEASE_MS);
                    self.slots[i].state = SlotState::Crashed(job);
                    return;
                }
                let (call, message) = if job.updates_left > 0 {
                    let message = if self.rng.random_bool(0.02) {
                        "x".repeat(self.model.config.max_message_len + 1)
                    } else {
                        format!("progress {}%", self.rng.random_range(0..100))
                    };
                    (Call::Update, message)
                } else if job.fate == Fate::Fail {
                    (
                        Call::Fail,
                        format!("scanner exited with code {}", self.rng.random_range(1..128)),
                    )
                } else {
                    (Call::Complete, String::new())
                };
                let expect =
                    self.agent_call(call, &job.agent_key, job.task, &job.task_key, &message);
                match expect {
                    Expect::Proceed if call == Call::Update => {
                        job.updates_left -= 1;
                        self.slots[i].next_ms = self.now_ms + self.heartbeat_delay(job.fate);
                        self.slots[i].state = SlotState::Working(job);
                    }
                    Expect::Refuse(Refusal::Bound(_)) => {
                        // A too long message: the job goes on (and so does the lease clock).
                        self.slots[i].next_ms = self.now_ms + self.heartbeat_delay(job.fate);
                        self.slots[i].state = SlotState::Working(job);
                    }
                    Expect::Proceed => {
                        if self.rng.random_bool(0.2) {
                            self.slots[i].retry = Some(Retry {
                                call,
                                agent_key: job.agent_key,
                                task: job.task,
                                task_key: job.task_key,
                                message,
                                end_ms: Some(self.now_ms.max(self.queue.clock_ms())),
                            });
                        }
                        self.slots[i].next_ms = self.now_ms + self.rng.random_range(100..3_000);
                    }
                    Expect::Refuse(_) => {
                        // Lease lost, task cancelled or timed out, or agent revoked: stale keys.
                        self.r.stale_refused += 1;
                        self.slots[i].next_ms = self.now_ms + self.rng.random_range(100..3_000);
                    }
                    Expect::Repeat => self.fail("a first call on a job was answered as a retry"),
                }
            }
            SlotState::Crashed(job) => {
                if self.rng.random_bool(0.5) {
                    // Back with the old keys: they must be refused once the lease ran out.
                    let call = if self.rng.random_bool(0.5) {
                        Call::Update
                    } else {
                        Call::Complete
                    };
                    let expect =
                        self.agent_call(call, &job.agent_key, job.task, &job.task_key, "resumed");
                    match expect {
                        Expect::Refuse(_) => self.r.stale_refused += 1,
                        Expect::Proceed if call == Call::Update => {
                            // Woke before the lease ran out: carry on.
                            self.slots[i].next_ms =
                                self.now_ms + self.rng.random_range(1_000..20_000);
                            self.slots[i].state = SlotState::Working(Job {
                                fate: Fate::Complete,
                                ..job
                            });
                            return;
                        }
                        Expect::Proceed => {}
                        Expect::Repeat => self.fail("a resumed call was answered as a retry"),
                    }
                } else {
                    // Restart as a new agent; the old registration is left behind.
                    let old = self.slots[i].reg.id;
                    if self.model.is_live(old) {
                        self.abandoned.push_back(old);
                    }
                    self.ghosts.push(job);
                    while self.abandoned.len() >= ABANDONED_MAX {
                        let oldest = self.abandoned.pop_front().expect("not empty");
                        self.revoke(oldest);
                    }
                    self.slots[i].reg = self.register();
                }
                self.slots[i].next_ms = self.now_ms + self.rng.random_range(100..3_000);
            }
        }
    }

    fn timer_wakeup(&mut self, deadline_ms: u64) {
        self.r.timer_wakeups += 1;
        self.now_ms = self.now_ms.max(deadline_ms);
        // Nothing is due a millisecond earlier than the announced instant.
        let before = deadline_ms.saturating_sub(1);
        if before >= self.queue.clock_ms() {
            self.queue.advance(before);
            if self.queue.drain_events().next().is_some() {
                self.fail(format!(
                    "next_deadline_ms said {deadline_ms}, but something expired earlier"
                ));
            }
        }
        let now = self.queue.advance(self.now_ms);
        if now != self.now_ms {
            self.fail("advance returned another instant than now");
        }
        let events = self.take_events();
        if events.is_empty() {
            self.fail(format!(
                "woke at next_deadline_ms {deadline_ms}: nothing expired"
            ));
        }
        let mut last = 0;
        for event in events {
            if !is_timer(&event) || event.at_ms() > now || event.at_ms() < last {
                self.fail(format!(
                    "advance produced {event:?} out of order or not an expiry"
                ));
            }
            last = event.at_ms();
            self.absorb(event);
        }
        if self
            .queue
            .next_deadline_ms()
            .is_some_and(|next| next <= now)
        {
            self.fail("advance left an expiry due");
        }
    }

    // --- checks ------------------------------------------------------------------------------

    fn full_check(&mut self) {
        self.r.full_checks += 1;
        if let Err(e) = self.queue.check_invariants() {
            self.fail(format!("check_invariants: {e}"));
        }
        let stats = self.queue.stats();
        let m = &self.model;
        let c = &stats.counters;
        let pairs = [
            ("queued", c.queued, m.tasks.len() as u64),
            ("assignments", c.assignments, m.counters.assignments),
            (
                "status_updates",
                c.status_updates,
                m.counters.status_updates,
            ),
            ("completions", c.completions, m.counters.completions),
            ("failures", c.failures, m.counters.failures),
            ("cancellations", c.cancellations, m.counters.cancellations),
            (
                "lease_expiries",
                c.lease_expiries,
                m.counters.lease_expiries,
            ),
            ("requeues", c.requeues, m.counters.requeues),
            ("timeouts", c.timeouts, m.counters.timeouts),
            (
                "agents_registered",
                c.agents_registered,
                m.counters.agents_registered,
            ),
            (
                "agents_revoked",
                c.agents_revoked,
                m.counters.agents_revoked,
            ),
            ("evicted", c.evicted, m.counters.evicted),
            (
                "rejected_key_checks",
                stats.rejected_key_checks,
                self.r.rejected_key_checks,
            ),
            ("agents", stats.agents as u64, m.held.len() as u64),
        ];
        for (name, queue, model) in pairs {
            if queue != model {
                self.fail(format!(
                    "stats: {name} is {queue}, the model counts {model}"
                ));
            }
        }
        for s in TaskStatus::ALL {
            if stats.count(s) as u64 != m.retained[s.index()] {
                self.fail(format!(
                    "stats: {} {s} tasks, the model has {}",
                    stats.count(s),
                    m.retained[s.index()]
                ));
            }
        }
        // Nothing lost: every task queued is counted once, by status, evicted or retained.
        let total: u64 = m.by_status.iter().sum();
        let retained: u64 = stats.by_status.iter().map(|&n| n as u64).sum();
        if total != c.queued || retained + c.evicted != c.queued {
            self.fail(format!(
                "lost tasks: {} queued, {retained} retained + {} evicted",
                c.queued, c.evicted
            ));
        }
        if self.queue.next_deadline_ms() != m.next_timer_ms() {
            self.fail(format!(
                "next_deadline_ms is {:?}, the model's next timer {:?}",
                self.queue.next_deadline_ms(),
                m.next_timer_ms()
            ));
        }
        // Each live agent holds what the model says, with the keys it was given.
        for (agent, held) in &m.held {
            let queue_held: Option<BTreeSet<TaskId>> =
                self.queue.agent_tasks(*agent).map(Iterator::collect);
            if queue_held.as_ref() != Some(held) {
                self.fail(format!(
                    "agent {agent} holds {queue_held:?}, the model says {held:?}"
                ));
            }
            for id in held {
                let t = self.queue.task(*id).expect("held tasks are retained");
                let holder = m.task(*id).and_then(|t| t.holder.as_ref());
                let same = t.assignment().zip(holder).is_some_and(|(a, (agent, key))| {
                    a.agent() == *agent && a.task_key().matches(key)
                });
                if !t.status().is_active() || !same {
                    self.fail(format!(
                        "task {id}: the queue's assignment is not the one handed out"
                    ));
                }
            }
        }
        // No task held by two agents, and every active task believed held by exactly one agent
        // process (working, crashed, or restarted and left behind).
        self.ghosts.retain(|job| {
            m.task(job.task)
                .and_then(|t| t.holder.as_ref().filter(|_| t.status.is_active()))
                .is_some_and(|(a, k)| *a == job.agent && *k == job.task_key)
        });
        let mut believers: BTreeMap<TaskId, u32> = BTreeMap::new();
        let jobs = self.slots.iter().filter_map(|s| match &s.state {
            SlotState::Working(job) | SlotState::Crashed(job) => Some(job),
            SlotState::Idle => None,
        });
        for job in jobs.chain(&self.ghosts) {
            let Some(t) = self.queue.task(job.task) else {
                continue;
            };
            let holds = t.status().is_active()
                && t.assignment()
                    .is_some_and(|a| a.agent() == job.agent && a.task_key().matches(&job.task_key));
            if holds {
                *believers.entry(job.task).or_default() += 1;
            }
        }
        if let Some((id, n)) = believers.iter().find(|&(_, &n)| n > 1) {
            self.fail(format!("task {id} is held by {n} agents"));
        }
        for id in m.held.values().flatten() {
            if !believers.contains_key(id) {
                self.fail(format!("task {id} is held, but by no agent that knows it"));
            }
        }
    }

    /// Every task queued is in the queue with the model's status, or was evicted after it
    /// finished; nothing else is in the queue.
    fn account_for_every_task(&self) {
        for (index, m) in self.model.tasks.iter().enumerate() {
            let id = TaskId(index as u64 + 1);
            match (self.queue.task(id), m.evicted) {
                (None, true) if m.status.is_terminal() => {}
                (Some(t), false)
                    if t.status() == m.status
                        && t.attempts() == m.attempts
                        && t.end_ms() == m.end_ms => {}
                (t, evicted) => self.fail(format!(
                    "task {id}: the queue has {:?}, the model {} (evicted: {evicted})",
                    t.map(|t| (t.status(), t.attempts(), t.end_ms())),
                    m.status
                )),
            }
        }
        let beyond = TaskId(self.model.tasks.len() as u64 + 1);
        if self.queue.task(beyond).is_some() {
            self.fail("the queue holds a task nobody queued");
        }
    }

    // --- the run ---------------------------------------------------------------------------

    fn drained(&self) -> bool {
        self.r.tasks_queued == self.p.tasks && self.model.open.is_empty()
    }

    fn run(&mut self) {
        while self.step < self.p.max_steps && !self.drained() {
            self.step += 1;
            let (actor, actor_ms) = self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| (Some(i), s.next_ms))
                .fold((None, self.admin_next_ms), |best, (i, ms)| {
                    if ms < best.1 { (i, ms) } else { best }
                });
            // The embedder usually wakes at the next deadline; sometimes it oversleeps and the
            // next call applies the overdue expiries itself.
            let oversleep = self.rng.random_bool(0.2);
            match self.queue.next_deadline_ms() {
                Some(deadline) if deadline <= actor_ms && !oversleep => self.timer_wakeup(deadline),
                _ => {
                    self.now_ms = self.now_ms.max(actor_ms);
                    match actor {
                        Some(i) => self.agent_act(i),
                        None => self.admin_act(),
                    }
                }
            }
            if self.p.check_every > 0 && self.step.is_multiple_of(self.p.check_every) {
                self.full_check();
            }
        }
    }

    fn finish(mut self) -> Run {
        // Settle: both queues advanced to the same final instant.
        self.now_ms += 1;
        self.queue.advance(self.now_ms);
        for event in self.take_events() {
            if !is_timer(&event) {
                self.fail("advance produced a non-expiry event");
            }
            self.absorb(event);
        }
        self.full_check();
        self.account_for_every_task();
        self.r.drained = self.drained();
        if let Some(mut replica) = self.replica.take() {
            replica.advance(self.now_ms);
            if replica.drain_events().next().is_some() {
                self.fail("the replica found an expiry the live queue did not");
            }
            if let Err(e) = replica.check_invariants() {
                self.fail(format!("replica check_invariants: {e}"));
            }
            let (live, copy) = (self.queue.snapshot(), replica.snapshot());
            if live != copy {
                let first_task = live
                    .tasks
                    .iter()
                    .zip(&copy.tasks)
                    .find(|(a, b)| a != b)
                    .map(|(a, _)| a.id());
                self.fail(format!(
                    "replayed snapshot differs: clock {} vs {}, tasks {} vs {} (first differing: {first_task:?}), \
                     agents equal: {}, counters equal: {}, finished equal: {}",
                    live.clock_ms,
                    copy.clock_ms,
                    live.tasks.len(),
                    copy.tasks.len(),
                    live.agents == copy.agents,
                    live.counters == copy.counters,
                    live.finished == copy.finished
                ));
            }
        }
        let m = &self.model;
        let r = &mut self.r;
        r.steps = self.step;
        r.end_ms = self.now_ms;
        r.final_status = m.by_status;
        r.evicted = m.counters.evicted;
        r.assignments = m.counters.assignments;
        r.status_updates = m.counters.status_updates;
        r.requeues = m.counters.requeues;
        r.lease_expiries = m.counters.lease_expiries;
        r.timeouts = m.counters.timeouts;
        r.deadline_timeouts = m.counters.deadline_timeouts;
        r.agents_registered = m.counters.agents_registered;
        Run {
            report: self.r,
            events: self.kept,
        }
    }
}
