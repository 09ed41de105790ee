//! The reference model of the queue, written from SPEC.md, and the harness that holds a real
//! [`Queue`] to it. Shared by the model-based property test (`tests/model.rs`, which generates
//! transitions with proptest) and the differential fuzz target
//! (`fuzz/fuzz_targets/differential.rs`, which decodes them from bytes); both include this
//! file with `#[path]`, so it depends on nothing but `scan_queue` and `std`.
//!
//! The reference model ([`Model`]) is a `BTreeMap` of tasks, a list of agents and a clock,
//! and says for every operation what SPEC §3 makes of it: success (which task, which status)
//! or which error. [`Model::step`] applies a [`Transition`] and records the call as resolved
//! and its expected outcome in [`Model::last`]; [`Sut::apply`] makes the same call on a real
//! [`Queue`] and compares the result, and [`Sut::check_invariants`] then compares the two
//! states completely (every retained task field by field, its status history, the agents,
//! the holders, the counts) and checks the queue's own invariants. Every disagreement is a
//! panic naming what differs.
//!
//! ## Choices
//!
//! A transition never names a task, an agent or a key directly: it carries a [`Choice`]
//! ("the 3rd of the busy tasks") resolved against the state when it applies, so any sequence
//! of transitions is valid (as shrinking and fuzzing need). The property test chooses with
//! proptest's `sample::Index`, the fuzz target with a byte modulo the number of candidates.
//!
//! ## Keys: handles in the model, strings in the harness
//!
//! The real queue mints keys; the model cannot know them (it runs first, even while
//! proptest generates the sequence). So the model never holds a key, only a *handle*:
//! agent `n` is the `n`-th agent ever registered ([`AgentKeyH::Agent`]), task key `k` is the
//! one minted by the `k`-th successful assignment of any task ([`TaskKeyH::Assignment`]),
//! and garbage keys are indexes into [`GARBAGE_KEYS`]. Transitions pick keys abstractly
//! ("the holder", "another agent", "a stale key of this task"); the model resolves each pick
//! to a handle and records the resolved call and its expected outcome in [`Model::last`].
//! The SUT side ([`Sut`]) keeps `agent_keys[n]` and `task_keys[k]`: it appends a key each time
//! a registration or an assignment the model predicted succeeds (checking that its handle is
//! the next one), and turns handles back into real key strings for every call.
//!
//! ## Error order
//!
//! SPEC §3 lists the checks but not which one reports first when several fail. The model
//! uses the order the API documents: input bounds and syntax first, then the agent key, the
//! task's existence, its state, its holder, and the task key.

use scan_queue::{
    AgentId, ApplicationId, Bound, Config, Error, Field, KeySource, NewScan, Queue,
    RegisteredAgent, ScanConfigId, StatusMessage, Task, TaskId, TaskStatus,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// The first `now`: 28 Sep 2016, as in the ThreadFix samples.
pub const T0: u64 = 1_475_094_356_000;

/// Small bounds and short durations, so that every bound and every timer is actually hit.
pub fn config() -> Config {
    Config {
        lease_ms: 100,
        task_deadline_ms: 1_000,
        max_attempts: 2,
        max_open_tasks: 6,
        max_finished_tasks: 4,
        max_agents: 3,
        max_scanners: 3,
        max_scanners_per_request: 3,
        max_scanner_len: 16,
        max_url_len: 32,
        max_message_len: 16,
        max_agent_config_len: 24,
        max_status_history: 4,
        record_events: true,
    }
}

pub fn limit(bound: Bound) -> usize {
    let c = config();
    match bound {
        Bound::OpenTasks => c.max_open_tasks,
        Bound::FinishedTasks => c.max_finished_tasks,
        Bound::Agents => c.max_agents,
        Bound::Scanners => c.max_scanners,
        Bound::ScannersPerRequest => c.max_scanners_per_request,
        Bound::ScannerLen => c.max_scanner_len,
        Bound::UrlLen => c.max_url_len,
        Bound::MessageLen => c.max_message_len,
        Bound::AgentConfigLen => c.max_agent_config_len,
        _ => c.max_status_history,
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs, each with what the SPEC (and the documented bounds) make of it
// ---------------------------------------------------------------------------------------------

/// What an input should produce on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(Field),
    TooLong(Bound),
}
pub use Verdict::{Invalid, TooLong, Valid};

/// Scanner names for queue scan: four valid ones (one more than `max_scanners`), then bad ones.
pub const SCAN_SCANNERS: [(&str, Verdict); 8] = [
    ("zap", Valid),
    ("burp", Valid),
    ("appscan", Valid),
    ("w3af", Valid),
    ("", Invalid(Field::Scanner)),
    (" zap", Invalid(Field::Scanner)),
    ("zap,burp", Invalid(Field::Scanner)),
    ("scanner-name-17ch", TooLong(Bound::ScannerLen)),
];

/// Target URLs for queue scan (`max_url_len` is 32).
pub const URLS: [(Option<&str>, Verdict); 8] = [
    (None, Valid),
    (Some("http://targeturl/app"), Valid),
    (Some("https://example.com:8443/x?y#z"), Valid),
    (Some("http://aaaaaaaaaaaaaaaaaaaaaaaaa"), Valid), // exactly 32
    (Some("ftp://host/"), Invalid(Field::TargetUrl)),
    (Some("targeturl/app"), Invalid(Field::TargetUrl)),
    (Some("http://a b/"), Invalid(Field::TargetUrl)),
    (
        Some("http://aaaaaaaaaaaaaaaaaaaaaaaaaa"),
        TooLong(Bound::UrlLen),
    ), // 33
];

/// Scanner names an agent may list: the four of the pool, one no task uses, one too long,
/// and two that SPEC §3 cleans up: entries are trimmed and empty ones ignored.
pub const AGENT_SCANNERS: [(&str, Verdict); 8] = [
    ("zap", Valid),
    ("burp", Valid),
    ("appscan", Valid),
    ("w3af", Valid),
    ("nikto", Valid),
    ("scanner-name-17ch", TooLong(Bound::ScannerLen)),
    (" burp ", Valid),
    ("", Valid),
];

/// Agent configuration texts (`max_agent_config_len` is 24).
pub const AGENT_CONFIGS: [(&str, Verdict); 4] = [
    ("", Valid),
    ("scanagent.properties", Valid),
    ("cccccccccccccccccccccccc", Valid), // exactly 24
    ("ccccccccccccccccccccccccc", TooLong(Bound::AgentConfigLen)), // 25
];

/// Status and failure messages (`max_message_len` is 16).
pub const MESSAGES: [(&str, Verdict); 4] = [
    ("", Valid),
    ("50% done", Valid),
    ("mmmmmmmmmmmmmmmm", Valid),                       // exactly 16
    ("nnnnnnnnnnnnnnnnn", TooLong(Bound::MessageLen)), // 17
];

/// Keys no queue minted: empty, short, well-formed but unknown, right length but not
/// alphanumeric.
pub const GARBAGE_KEYS: [&str; 4] = [
    "",
    "short",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
];

// ---------------------------------------------------------------------------------------------
// Transitions: abstract picks, resolved by the model against its state
// ---------------------------------------------------------------------------------------------

/// One choice among the candidates that exist when a transition applies (tasks, agents,
/// assignments): proptest's `sample::Index` in the property test, a byte taken modulo the
/// number of candidates in the fuzz target.
pub trait Choice: Clone + fmt::Debug {
    /// A position in `0..len`; `len` is never 0.
    fn among(&self, len: usize) -> usize;
}

/// Which task an agent call or a cancel names.
#[derive(Clone, Debug)]
pub enum TaskPick<C> {
    /// One an agent holds (for cancel: one not finished); any task if there is none.
    Busy(C),
    /// Any id from 1 to one past the last given out (never queued, or evicted).
    Any(C),
}

/// Which scan agent key a call presents.
#[derive(Clone, Debug)]
pub enum AgentPick<C> {
    /// The agent holding the task (or that last held it).
    Holder,
    /// A registered, unrevoked agent.
    Live(C),
    /// Any agent ever registered, revoked ones included.
    Any(C),
    /// A key no queue minted.
    Garbage(usize),
}

/// Which task key a call presents.
#[derive(Clone, Debug)]
pub enum KeyPick<C> {
    /// The task's current assignment (or its last one).
    Current,
    /// Any key of an assignment of this task, earlier ones included.
    Stale(C),
    /// Any task key ever minted, of any task.
    Foreign(C),
    /// A key no queue minted.
    Garbage(usize),
}

/// One step of a test: an operation with every input an index into the tables above (each
/// below its table's length), every time relative to the model's clock, and every task,
/// agent or key a pick resolved when the step applies.
#[derive(Clone, Debug)]
pub enum Transition<C> {
    QueueScan {
        dt: i64,
        app: u64,
        scanner: usize,
        url: usize,
    },
    RegisterAgent {
        dt: i64,
    },
    RequestTask {
        dt: i64,
        agent: AgentPick<C>,
        scanners: Vec<usize>,
        config: usize,
    },
    UpdateStatus {
        dt: i64,
        task: TaskPick<C>,
        agent: AgentPick<C>,
        key: KeyPick<C>,
        message: usize,
    },
    Complete {
        dt: i64,
        task: TaskPick<C>,
        agent: AgentPick<C>,
        key: KeyPick<C>,
    },
    Fail {
        dt: i64,
        task: TaskPick<C>,
        agent: AgentPick<C>,
        key: KeyPick<C>,
        message: usize,
    },
    Cancel {
        dt: i64,
        task: TaskPick<C>,
    },
    Revoke {
        dt: i64,
        agent: C,
    },
    /// Time alone (`advance`), forwards, not at all, or backwards.
    Tick {
        ms: i64,
    },
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

/// A scan agent key as the model knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKeyH {
    /// The key of the `n`-th agent ever registered.
    Agent(usize),
    /// `GARBAGE_KEYS[i]`.
    Garbage(usize),
}

/// A task key as the model knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKeyH {
    /// The key minted by the `k`-th successful assignment (of any task).
    Assignment(usize),
    /// `GARBAGE_KEYS[i]`.
    Garbage(usize),
}

/// One assignment of a task to an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    agent: usize,
    key: usize,
    lease_until: u64,
}

/// A status history entry, as facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hist {
    Queued,
    Assigned(String),
    Update(String),
    Completed,
    Failed(String),
    LeaseRequeued { attempts: u32 },
    LeaseTimedOut { attempts: u32 },
    Deadline,
    Deleted,
    Revoked,
}

#[derive(Clone, Debug)]
pub struct Entry {
    id: u64,
    at: u64,
    hist: Hist,
}

#[derive(Clone, Debug)]
pub struct ModelTask {
    app: u64,
    scanner: &'static str,
    url: Option<&'static str>,
    scan_config: Option<u64>,
    status: TaskStatus,
    create: u64,
    start: Option<u64>,
    end: Option<u64>,
    timeout: u64,
    attempts: u32,
    /// The current assignment while Assigned/InProgress; after complete or fail, the one that
    /// finished the task (so the same call can be answered again). None after a requeue.
    held: Option<Held>,
    /// Every assignment the task had, oldest first (stale keys come from here).
    past: Vec<Held>,
    /// The agent whose lease on this task ran out and which has not taken it again since.
    lease_lost_by: Option<usize>,
    history: VecDeque<Entry>,
    next_entry: u64,
}

impl ModelTask {
    fn push(&mut self, at: u64, hist: Hist) {
        if self.history.len() == config().max_status_history {
            self.history.pop_front();
        }
        self.history.push_back(Entry {
            id: self.next_entry,
            at,
            hist,
        });
        self.next_entry += 1;
    }

    /// The next timer of an open task: (instant, is it the deadline). The deadline wins a tie
    /// with the lease (the task is past its deadline either way).
    fn timer(&self) -> Option<(u64, bool)> {
        if self.status.is_terminal() {
            return None;
        }
        match self.held {
            Some(h) if self.status.is_active() && h.lease_until < self.timeout => {
                Some((h.lease_until, false))
            }
            _ => Some((self.timeout, true)),
        }
    }
}

/// The expected error, in a form both sides can produce (agents by handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrKind {
    UnknownTask(u64),
    UnknownAgent(usize),
    InvalidAgentKey,
    NotTaskHolder(u64),
    InvalidTaskKey(u64),
    LeaseExpired(u64),
    WrongState(u64, TaskStatus),
    Bound(Bound, usize),
    Input(Field),
}

impl ErrKind {
    fn of(v: Verdict) -> Option<ErrKind> {
        match v {
            Valid => None,
            Invalid(f) => Some(ErrKind::Input(f)),
            TooLong(b) => Some(ErrKind::Bound(b, limit(b))),
        }
    }
}

/// What a call should return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `advance` returns the model's clock.
    Clock,
    /// This task (whose fields the state comparison checks).
    Task(u64),
    /// A registration, the `n`-th.
    Agent(usize),
    /// This task, with the `key`-th task key.
    Assigned {
        task: u64,
        key: usize,
    },
    /// Request task found nothing.
    NoTask,
    /// Revocation requeued these tasks.
    Revoked(Vec<u64>),
    Err(ErrKind),
}

/// A call with every key resolved to a handle.
#[derive(Clone, Debug)]
pub enum Call {
    Advance,
    QueueScan {
        app: u64,
        scanner: &'static str,
        url: Option<&'static str>,
        scan_config: Option<u64>,
    },
    Register,
    Request {
        agent: AgentKeyH,
        scanners: Vec<&'static str>,
        config: &'static str,
    },
    Update {
        task: u64,
        message: &'static str,
        agent: AgentKeyH,
        key: TaskKeyH,
    },
    Complete {
        task: u64,
        agent: AgentKeyH,
        key: TaskKeyH,
    },
    Fail {
        task: u64,
        message: &'static str,
        agent: AgentKeyH,
        key: TaskKeyH,
    },
    Cancel {
        task: u64,
    },
    Revoke {
        agent: usize,
    },
}

/// The last step: the call as made, and what it should do.
#[derive(Clone, Debug)]
pub struct Step {
    /// The `now` passed (possibly earlier than the clock).
    now: u64,
    call: Call,
    expect: Expect,
    /// Whether the call should change nothing beyond `advance(now)`.
    unchanged: bool,
}

/// The reference model: what SPEC §3 says the queue holds.
#[derive(Clone, Debug)]
pub struct Model {
    /// Seed of the SUT's key source (keys differ between cases; the model never sees them).
    seed: u64,
    clock: u64,
    next_id: u64,
    tasks: BTreeMap<u64, ModelTask>,
    /// Finished task ids in the order they finished; the front is evicted first.
    finished: VecDeque<u64>,
    evicted: u64,
    /// Per agent handle: still registered (not revoked).
    live: Vec<bool>,
    /// Task key handles minted so far.
    minted: usize,
    tally: Tally,
    last: Step,
}

/// The lifetime counters of `Stats` (`queued` is `next_id - 1`, `evicted` is above).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    assignments: u64,
    status_updates: u64,
    completions: u64,
    failures: u64,
    cancellations: u64,
    lease_expiries: u64,
    requeues: u64,
    timeouts: u64,
    agents_registered: u64,
    agents_revoked: u64,
    rejected_key_checks: u64,
}

/// Which agent call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Update,
    Complete,
    Fail,
}

impl Model {
    /// The agents registered and not revoked.
    pub fn live_agents(&self) -> usize {
        self.live.iter().filter(|l| **l).count()
    }

    /// The retained tasks whose status passes `filter`.
    pub fn tasks_where(&self, filter: fn(TaskStatus) -> bool) -> usize {
        self.tasks.values().filter(|t| filter(t.status)).count()
    }

    /// The last step: the call as resolved and what it should do.
    #[allow(
        dead_code,
        reason = "the fuzz target reports it; the property test does not"
    )]
    pub fn last(&self) -> &Step {
        &self.last
    }

    /// A fresh model at [`T0`]; `seed` seeds the real queue's key source.
    pub fn new(seed: u64) -> Model {
        Model {
            seed,
            clock: T0,
            next_id: 1,
            tasks: BTreeMap::new(),
            finished: VecDeque::new(),
            evicted: 0,
            live: Vec::new(),
            minted: 0,
            tally: Tally::default(),
            last: Step {
                now: T0,
                call: Call::Advance,
                expect: Expect::Clock,
                unchanged: true,
            },
        }
    }

    fn open_tasks(&self) -> impl Iterator<Item = (&u64, &ModelTask)> {
        self.tasks.iter().filter(|(_, t)| !t.status.is_terminal())
    }

    /// The earliest timer: (instant, task id, is it the deadline); ties by task id.
    fn next_timer(&self) -> Option<(u64, u64, bool)> {
        self.tasks
            .iter()
            .filter_map(|(id, t)| t.timer().map(|(at, deadline)| (at, *id, deadline)))
            .min()
    }

    /// Time never runs backwards: an earlier `now` is the clock. Every timer up to `now`
    /// applies first, in time order, each at its own instant.
    fn advance(&mut self, requested: u64) -> u64 {
        let now = requested.max(self.clock);
        while let Some((at, id, deadline)) = self.next_timer().filter(|t| t.0 <= now) {
            let max_attempts = config().max_attempts;
            let t = self.tasks.get_mut(&id).expect("timer of a retained task");
            if deadline {
                t.status = TaskStatus::CompleteTimedOut;
                t.end = Some(at);
                t.held = None;
                t.push(at, Hist::Deadline);
                self.tally.timeouts += 1;
                self.finish(id);
            } else {
                let holder = t.held.take().expect("lease of a held task").agent;
                t.lease_lost_by = Some(holder);
                let attempts = t.attempts;
                self.tally.lease_expiries += 1;
                if attempts < max_attempts {
                    t.status = TaskStatus::Queued;
                    t.push(at, Hist::LeaseRequeued { attempts });
                    self.tally.requeues += 1;
                } else {
                    t.status = TaskStatus::CompleteTimedOut;
                    t.end = Some(at);
                    t.push(at, Hist::LeaseTimedOut { attempts });
                    self.tally.timeouts += 1;
                    self.finish(id);
                }
            }
        }
        self.clock = now;
        now
    }

    /// A task just finished: it joins the eviction order; the oldest finished go past the bound.
    fn finish(&mut self, id: u64) {
        self.finished.push_back(id);
        while self.finished.len() > config().max_finished_tasks {
            let old = self.finished.pop_front().expect("non-empty");
            self.tasks.remove(&old);
            self.evicted += 1;
        }
    }

    fn now_for(&self, dt: i64) -> u64 {
        self.clock.saturating_add_signed(dt)
    }

    // --- resolving picks against the state the caller saw (before time advanced) ---

    fn resolve_task<C: Choice>(
        &self,
        pick: &TaskPick<C>,
        busy: impl Fn(&ModelTask) -> bool,
    ) -> u64 {
        let candidates: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| busy(t))
            .map(|(id, _)| *id)
            .collect();
        match pick {
            TaskPick::Busy(i) if !candidates.is_empty() => candidates[i.among(candidates.len())],
            TaskPick::Busy(i) | TaskPick::Any(i) => {
                // 1..=next_id: every id given out, plus the next one (never queued).
                i.among(usize::try_from(self.next_id).expect("small")) as u64 + 1
            }
        }
    }

    fn resolve_agent<C: Choice>(&self, pick: &AgentPick<C>, task: Option<u64>) -> AgentKeyH {
        let live: Vec<usize> = (0..self.live.len()).filter(|h| self.live[*h]).collect();
        let holder = task
            .and_then(|id| self.tasks.get(&id))
            .and_then(|t| t.held.or(t.past.last().copied()))
            .map(|h| h.agent);
        match pick {
            AgentPick::Holder => match (holder, live.first()) {
                (Some(agent), _) | (None, Some(&agent)) => AgentKeyH::Agent(agent),
                (None, None) => AgentKeyH::Garbage(2),
            },
            AgentPick::Live(i) if !live.is_empty() => AgentKeyH::Agent(live[i.among(live.len())]),
            AgentPick::Live(i) | AgentPick::Any(i) if !self.live.is_empty() => {
                AgentKeyH::Agent(i.among(self.live.len()))
            }
            AgentPick::Live(_) | AgentPick::Any(_) => AgentKeyH::Garbage(2),
            AgentPick::Garbage(g) => AgentKeyH::Garbage(*g),
        }
    }

    fn resolve_key<C: Choice>(&self, pick: &KeyPick<C>, task: u64) -> TaskKeyH {
        let t = self.tasks.get(&task);
        let current = t.and_then(|t| t.held.or(t.past.last().copied()));
        let past: Vec<usize> = t
            .map(|t| t.past.iter().map(|h| h.key).collect())
            .unwrap_or_default();
        match pick {
            KeyPick::Current if current.is_some() => {
                TaskKeyH::Assignment(current.expect("some").key)
            }
            KeyPick::Stale(i) if !past.is_empty() => {
                TaskKeyH::Assignment(past[i.among(past.len())])
            }
            KeyPick::Current | KeyPick::Stale(_) | KeyPick::Foreign(_) if self.minted > 0 => {
                let i = match pick {
                    KeyPick::Stale(i) | KeyPick::Foreign(i) => i.among(self.minted),
                    _ => self.minted - 1,
                };
                TaskKeyH::Assignment(i)
            }
            KeyPick::Current | KeyPick::Stale(_) | KeyPick::Foreign(_) => TaskKeyH::Garbage(2),
            KeyPick::Garbage(g) => TaskKeyH::Garbage(*g),
        }
    }

    /// The live agent a key belongs to, if any.
    fn live_agent(&self, key: AgentKeyH) -> Option<usize> {
        match key {
            AgentKeyH::Agent(a) if self.live[a] => Some(a),
            _ => None,
        }
    }

    // --- the operations (time already advanced to `now`) ---

    fn queue_scan(&mut self, now: u64, app: u64, scanner: usize, url: usize) -> (Call, Expect) {
        let (scanner, scanner_verdict) = SCAN_SCANNERS[scanner];
        let (url, url_verdict) = URLS[url];
        // Even applications come with a scan configuration reference.
        let scan_config = app.is_multiple_of(2).then_some(app * 10);
        let call = Call::QueueScan {
            app,
            scanner,
            url,
            scan_config,
        };
        let open_scanners: BTreeSet<&str> = self.open_tasks().map(|(_, t)| t.scanner).collect();
        let refused = if app == 0 {
            Some(ErrKind::Input(Field::ApplicationId))
        } else if let Some(e) = ErrKind::of(scanner_verdict).or(ErrKind::of(url_verdict)) {
            Some(e)
        } else if self.open_tasks().count() >= config().max_open_tasks {
            Some(ErrKind::Bound(Bound::OpenTasks, limit(Bound::OpenTasks)))
        } else if !open_scanners.contains(scanner) && open_scanners.len() >= config().max_scanners {
            Some(ErrKind::Bound(Bound::Scanners, limit(Bound::Scanners)))
        } else {
            None
        };
        if let Some(e) = refused {
            return (call, Expect::Err(e));
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut task = ModelTask {
            app,
            scanner,
            url,
            scan_config,
            status: TaskStatus::Queued,
            create: now,
            start: None,
            end: None,
            timeout: now + config().task_deadline_ms,
            attempts: 0,
            held: None,
            past: Vec::new(),
            lease_lost_by: None,
            history: VecDeque::new(),
            next_entry: 1,
        };
        task.push(now, Hist::Queued);
        self.tasks.insert(id, task);
        (call, Expect::Task(id))
    }

    fn register(&mut self) -> Expect {
        if self.live.iter().filter(|l| **l).count() >= config().max_agents {
            return Expect::Err(ErrKind::Bound(Bound::Agents, limit(Bound::Agents)));
        }
        self.live.push(true);
        self.tally.agents_registered += 1;
        Expect::Agent(self.live.len() - 1)
    }

    fn request(
        &mut self,
        now: u64,
        agent: AgentKeyH,
        names: &[usize],
        cfg: usize,
    ) -> (Call, Expect) {
        let scanners: Vec<&'static str> = names.iter().map(|n| AGENT_SCANNERS[*n].0).collect();
        let (agent_config, config_verdict) = AGENT_CONFIGS[cfg];
        let call = Call::Request {
            agent,
            scanners: scanners.clone(),
            config: agent_config,
        };
        let refused = if scanners.iter().all(|s| s.trim().is_empty()) {
            Some(ErrKind::Input(Field::Scanners))
        } else if names.len() > config().max_scanners_per_request {
            Some(ErrKind::Bound(
                Bound::ScannersPerRequest,
                limit(Bound::ScannersPerRequest),
            ))
        } else if let Some(e) = names.iter().find_map(|n| ErrKind::of(AGENT_SCANNERS[*n].1)) {
            Some(e)
        } else if let Some(e) = ErrKind::of(config_verdict) {
            Some(e)
        } else if self.live_agent(agent).is_none() {
            Some(ErrKind::InvalidAgentKey)
        } else {
            None
        };
        if let Some(e) = refused {
            return (call, Expect::Err(e));
        }
        let agent = self.live_agent(agent).expect("checked");
        // The oldest (lowest id) queued task whose scanner the agent listed.
        let Some((&id, _)) = self.tasks.iter().find(|(_, t)| {
            t.status == TaskStatus::Queued && scanners.iter().any(|s| s.trim() == t.scanner)
        }) else {
            return (call, Expect::NoTask);
        };
        let key = self.minted;
        self.minted += 1;
        let t = self.tasks.get_mut(&id).expect("found");
        let held = Held {
            agent,
            key,
            lease_until: now + config().lease_ms,
        };
        t.status = TaskStatus::Assigned;
        t.start = Some(now);
        t.attempts += 1;
        self.tally.assignments += 1;
        t.held = Some(held);
        t.past.push(held);
        if t.lease_lost_by == Some(agent) {
            // A new assignment: this agent's lease on the task no longer ran out.
            t.lease_lost_by = None;
        }
        t.push(now, Hist::Assigned(agent_config.to_owned()));
        (call, Expect::Assigned { task: id, key })
    }

    /// Status update, complete and fail: the key checks of SPEC §3, then the transition.
    fn agent_call(
        &mut self,
        now: u64,
        verb: Verb,
        id: u64,
        message: (&str, Verdict),
        agent: AgentKeyH,
        key: TaskKeyH,
    ) -> (Expect, bool) {
        let err = |e| (Expect::Err(e), true);
        if let Some(e) = ErrKind::of(message.1) {
            return err(e);
        }
        let Some(agent) = self.live_agent(agent) else {
            return err(ErrKind::InvalidAgentKey);
        };
        let Some(t) = self.tasks.get_mut(&id) else {
            return err(ErrKind::UnknownTask(id));
        };
        let presented = match key {
            TaskKeyH::Assignment(k) => Some(k),
            TaskKeyH::Garbage(_) => None,
        };
        let lost = t.lease_lost_by == Some(agent);
        if !t.status.is_active() {
            let finishing = match verb {
                Verb::Update => None,
                Verb::Complete => Some(TaskStatus::CompleteSuccessful),
                Verb::Fail => Some(TaskStatus::CompleteFailed),
            };
            let same_keys = t
                .held
                .is_some_and(|h| h.agent == agent && Some(h.key) == presented);
            if finishing == Some(t.status) && same_keys {
                // The same terminal call with the keys that made it: the same answer.
                return (Expect::Task(id), true);
            }
            return err(if lost {
                ErrKind::LeaseExpired(id)
            } else {
                ErrKind::WrongState(id, t.status)
            });
        }
        let held = t.held.expect("an active task is held");
        if held.agent != agent {
            return err(if lost {
                ErrKind::LeaseExpired(id)
            } else {
                ErrKind::NotTaskHolder(id)
            });
        }
        if Some(held.key) != presented {
            return err(ErrKind::InvalidTaskKey(id));
        }
        match verb {
            Verb::Update => {
                t.status = TaskStatus::InProgress;
                t.held = Some(Held {
                    lease_until: now + config().lease_ms,
                    ..held
                });
                t.push(now, Hist::Update(message.0.to_owned()));
                self.tally.status_updates += 1;
            }
            Verb::Complete => {
                t.status = TaskStatus::CompleteSuccessful;
                t.end = Some(now);
                t.push(now, Hist::Completed);
                self.tally.completions += 1;
                self.finish(id);
            }
            Verb::Fail => {
                t.status = TaskStatus::CompleteFailed;
                t.end = Some(now);
                t.push(now, Hist::Failed(message.0.to_owned()));
                self.tally.failures += 1;
                self.finish(id);
            }
        }
        (Expect::Task(id), false)
    }

    fn cancel(&mut self, now: u64, id: u64) -> (Expect, bool) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return (Expect::Err(ErrKind::UnknownTask(id)), true);
        };
        match t.status {
            // Deleting a deleted task again answers as the first time (an idempotent delete).
            TaskStatus::CompleteDeleted => (Expect::Task(id), true),
            s if s.is_terminal() => (Expect::Err(ErrKind::WrongState(id, s)), true),
            _ => {
                t.status = TaskStatus::CompleteDeleted;
                t.end = Some(now);
                t.push(now, Hist::Deleted);
                self.tally.cancellations += 1;
                self.finish(id);
                (Expect::Task(id), false)
            }
        }
    }

    fn revoke(&mut self, now: u64, agent: usize) -> (Expect, bool) {
        if !self.live[agent] {
            return (Expect::Err(ErrKind::UnknownAgent(agent)), true);
        }
        self.live[agent] = false;
        self.tally.agents_revoked += 1;
        let mut requeued = Vec::new();
        for (id, t) in &mut self.tasks {
            if t.status.is_active() && t.held.is_some_and(|h| h.agent == agent) {
                t.status = TaskStatus::Queued;
                t.held = None;
                t.push(now, Hist::Revoked);
                requeued.push(*id);
                self.tally.requeues += 1;
            }
        }
        (Expect::Revoked(requeued), false)
    }

    /// Applies one transition and records the call and its expected outcome in [`Model::last`].
    pub fn step<C: Choice>(&mut self, transition: &Transition<C>) {
        let (requested, call, expect, unchanged) = match transition {
            Transition::Tick { ms } => {
                let requested = self.now_for(*ms);
                self.advance(requested);
                (requested, Call::Advance, Expect::Clock, true)
            }
            Transition::QueueScan {
                dt,
                app,
                scanner,
                url,
            } => {
                let requested = self.now_for(*dt);
                let now = self.advance(requested);
                let (call, expect) = self.queue_scan(now, *app, *scanner, *url);
                let unchanged = matches!(expect, Expect::Err(_));
                (requested, call, expect, unchanged)
            }
            Transition::RegisterAgent { dt } => {
                let requested = self.now_for(*dt);
                self.advance(requested);
                let expect = self.register();
                let unchanged = matches!(expect, Expect::Err(_));
                (requested, Call::Register, expect, unchanged)
            }
            Transition::RequestTask {
                dt,
                agent,
                scanners,
                config,
            } => {
                let requested = self.now_for(*dt);
                let agent = self.resolve_agent(agent, None);
                let now = self.advance(requested);
                let (call, expect) = self.request(now, agent, scanners, *config);
                let unchanged = matches!(expect, Expect::Err(_) | Expect::NoTask);
                (requested, call, expect, unchanged)
            }
            Transition::UpdateStatus {
                dt,
                task,
                agent,
                key,
                message,
            }
            | Transition::Fail {
                dt,
                task,
                agent,
                key,
                message,
            } => {
                let verb = match transition {
                    Transition::Fail { .. } => Verb::Fail,
                    _ => Verb::Update,
                };
                self.step_agent_call(verb, *dt, task, agent, key, *message)
            }
            Transition::Complete {
                dt,
                task,
                agent,
                key,
            } => self.step_agent_call(Verb::Complete, *dt, task, agent, key, 0),
            Transition::Cancel { dt, task } => {
                let requested = self.now_for(*dt);
                let id = self.resolve_task(task, |t| !t.status.is_terminal());
                let now = self.advance(requested);
                let (expect, unchanged) = self.cancel(now, id);
                (requested, Call::Cancel { task: id }, expect, unchanged)
            }
            Transition::Revoke { dt, agent } => {
                let requested = self.now_for(*dt);
                let now = self.advance(requested);
                if self.live.is_empty() {
                    (requested, Call::Advance, Expect::Clock, true)
                } else {
                    let agent = agent.among(self.live.len());
                    let (expect, unchanged) = self.revoke(now, agent);
                    (requested, Call::Revoke { agent }, expect, unchanged)
                }
            }
        };
        if let Expect::Err(
            ErrKind::InvalidAgentKey
            | ErrKind::NotTaskHolder(_)
            | ErrKind::InvalidTaskKey(_)
            | ErrKind::LeaseExpired(_),
        ) = expect
        {
            self.tally.rejected_key_checks += 1;
        }
        self.last = Step {
            now: requested,
            call,
            expect,
            unchanged,
        };
    }

    fn step_agent_call<C: Choice>(
        &mut self,
        verb: Verb,
        dt: i64,
        task: &TaskPick<C>,
        agent: &AgentPick<C>,
        key: &KeyPick<C>,
        message: usize,
    ) -> (u64, Call, Expect, bool) {
        let requested = self.now_for(dt);
        // The caller picks the task and its keys from what it knew before time advanced: a
        // lease may run out just before its call lands.
        let id = self.resolve_task(task, |t| t.status.is_active());
        let agent = self.resolve_agent(agent, Some(id));
        let key = self.resolve_key(key, id);
        let now = self.advance(requested);
        let message = MESSAGES[message];
        let (expect, unchanged) = self.agent_call(now, verb, id, message, agent, key);
        let call = match verb {
            Verb::Update => Call::Update {
                task: id,
                message: message.0,
                agent,
                key,
            },
            Verb::Complete => Call::Complete {
                task: id,
                agent,
                key,
            },
            Verb::Fail => Call::Fail {
                task: id,
                message: message.0,
                agent,
                key,
            },
        };
        (requested, call, expect, unchanged)
    }
}

// ---------------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------------

/// The system under test: a real queue, and the keys it minted by handle.
pub struct Sut {
    queue: Queue,
    /// Key and id of the `n`-th agent ever registered.
    agent_keys: Vec<String>,
    agent_ids: Vec<AgentId>,
    /// Key minted by the `k`-th assignment.
    task_keys: Vec<String>,
}

/// What a call returned, owned.
#[derive(Debug)]
pub enum Got {
    Clock(u64),
    Task(Task),
    Agent(RegisteredAgent),
    Assigned(Option<Task>),
    Revoked(Vec<TaskId>),
}

pub fn seeded(seed: u64) -> KeySource {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    KeySource::from_seed(bytes)
}

/// A copy of a queue's state (the copy's keys come from another seed: they are never drawn).
pub fn copy(queue: &Queue) -> Queue {
    Queue::restore(config(), seeded(u64::MAX), queue.snapshot()).expect("a snapshot restores")
}

pub fn hist_of(message: &StatusMessage) -> Hist {
    match message {
        StatusMessage::Queued { .. } => Hist::Queued,
        StatusMessage::Assigned { agent_config } => Hist::Assigned(agent_config.to_string()),
        StatusMessage::Update(m) => Hist::Update(m.to_string()),
        StatusMessage::Completed { .. } => Hist::Completed,
        StatusMessage::Failed { reason, .. } => Hist::Failed(reason.to_string()),
        StatusMessage::LeaseExpiredRequeued { attempts, .. } => Hist::LeaseRequeued {
            attempts: *attempts,
        },
        StatusMessage::LeaseExpiredTimedOut { attempts, .. } => Hist::LeaseTimedOut {
            attempts: *attempts,
        },
        StatusMessage::DeadlinePassed { .. } => Hist::Deadline,
        StatusMessage::Deleted { .. } => Hist::Deleted,
        StatusMessage::AgentRevoked { .. } => Hist::Revoked,
        other => panic!("status message the model does not know: {other:?}"),
    }
}

impl Sut {
    fn agent_key(&self, key: AgentKeyH) -> String {
        match key {
            AgentKeyH::Agent(n) => self.agent_keys[n].clone(),
            AgentKeyH::Garbage(g) => GARBAGE_KEYS[g].to_owned(),
        }
    }

    fn task_key(&self, key: TaskKeyH) -> String {
        match key {
            TaskKeyH::Assignment(k) => self.task_keys[k].clone(),
            TaskKeyH::Garbage(g) => GARBAGE_KEYS[g].to_owned(),
        }
    }

    fn call(&mut self, call: &Call, now: u64) -> Result<Got, Error> {
        let got = match call {
            Call::Advance => Got::Clock(self.queue.advance(now)),
            Call::QueueScan {
                app,
                scanner,
                url,
                scan_config,
            } => {
                let mut scan = NewScan::new(ApplicationId(*app), scanner);
                if let Some(url) = url {
                    scan = scan.target_url(url);
                }
                if let Some(config) = scan_config {
                    scan = scan.scan_config(ScanConfigId(*config));
                }
                Got::Task(self.queue.queue_scan(now, scan)?.clone())
            }
            Call::Register => Got::Agent(self.queue.register_agent(now)?),
            Call::Request {
                agent,
                scanners,
                config,
            } => {
                let agent = self.agent_key(*agent);
                let task = self.queue.request_task(now, &agent, scanners, config)?;
                Got::Assigned(task.cloned())
            }
            Call::Update {
                task,
                message,
                agent,
                key,
            } => {
                let (agent, key) = (self.agent_key(*agent), self.task_key(*key));
                let task = self
                    .queue
                    .update_status(now, TaskId(*task), message, &agent, &key)?;
                Got::Task(task.into_inner().clone())
            }
            Call::Complete { task, agent, key } => {
                let (agent, key) = (self.agent_key(*agent), self.task_key(*key));
                Got::Task(
                    self.queue
                        .complete_task(now, TaskId(*task), &agent, &key)?
                        .into_inner()
                        .clone(),
                )
            }
            Call::Fail {
                task,
                message,
                agent,
                key,
            } => {
                let (agent, key) = (self.agent_key(*agent), self.task_key(*key));
                let task = self
                    .queue
                    .fail_task(now, TaskId(*task), message, &agent, &key)?;
                Got::Task(task.into_inner().clone())
            }
            Call::Cancel { task } => Got::Task(self.queue.cancel_task(now, TaskId(*task))?.clone()),
            Call::Revoke { agent } => {
                Got::Revoked(self.queue.revoke_agent(now, self.agent_ids[*agent])?)
            }
        };
        Ok(got)
    }

    fn kind(&self, error: &Error) -> ErrKind {
        match error {
            Error::UnknownTask(id) => ErrKind::UnknownTask(id.0),
            Error::UnknownAgent(agent) => ErrKind::UnknownAgent(
                self.agent_ids
                    .iter()
                    .position(|a| a == agent)
                    .expect("an agent this test registered"),
            ),
            Error::InvalidAgentKey => ErrKind::InvalidAgentKey,
            Error::NotTaskHolder { task } => ErrKind::NotTaskHolder(task.0),
            Error::InvalidTaskKey { task } => ErrKind::InvalidTaskKey(task.0),
            Error::LeaseExpired { task } => ErrKind::LeaseExpired(task.0),
            Error::WrongState { task, status } => ErrKind::WrongState(task.0, *status),
            Error::BoundExceeded { bound, limit } => ErrKind::Bound(*bound, *limit),
            Error::InvalidInput { field, .. } => ErrKind::Input(*field),
            other => panic!("unexpected error {other:?}"),
        }
    }

    /// Compares a call's result with the model's expectation, and learns minted keys.
    fn check_outcome(&mut self, got: Result<Got, Error>, model: &Model) {
        let expect = &model.last.expect;
        match (got, expect) {
            (Ok(Got::Clock(now)), Expect::Clock) => assert_eq!(now, model.clock, "advance"),
            (Ok(Got::Task(task)), Expect::Task(id)) => {
                assert_eq!(task.id(), TaskId(*id), "returned task");
                assert_eq!(
                    Some(&task),
                    self.queue.task(task.id()),
                    "returned task is stored"
                );
            }
            (Ok(Got::Agent(agent)), Expect::Agent(n)) => {
                assert_eq!(*n, self.agent_keys.len(), "agent handle");
                assert!(!self.agent_ids.contains(&agent.id), "agent ids are unique");
                self.agent_keys.push(agent.key.expose_secret().to_owned());
                self.agent_ids.push(agent.id);
            }
            (Ok(Got::Assigned(Some(task))), Expect::Assigned { task: id, key }) => {
                assert_eq!(task.id(), TaskId(*id), "assigned task");
                assert_eq!(*key, self.task_keys.len(), "task key handle");
                let assignment = task.assignment().expect("an assigned task has its key");
                let minted = assignment.task_key().expose_secret().to_owned();
                assert!(!self.task_keys.contains(&minted), "task keys are fresh");
                assert!(!self.agent_keys.contains(&minted), "task keys are fresh");
                self.task_keys.push(minted);
            }
            (Ok(Got::Assigned(None)), Expect::NoTask) => {}
            (Ok(Got::Revoked(mut ids)), Expect::Revoked(expected)) => {
                ids.sort();
                let ids: Vec<u64> = ids.iter().map(|id| id.0).collect();
                assert_eq!(&ids, expected, "tasks requeued by revocation");
            }
            (Err(error), Expect::Err(kind)) => {
                assert_eq!(&self.kind(&error), kind, "error ({error})");
            }
            (got, expect) => panic!("expected {expect:?}, got {got:?}"),
        }
    }

    fn compare_task(&self, task: &Task, m: &ModelTask) {
        let id = task.id();
        assert_eq!(task.status(), m.status, "task {id} status");
        assert_eq!(
            task.application(),
            ApplicationId(m.app),
            "task {id} application"
        );
        assert_eq!(task.scanner(), m.scanner, "task {id} scanner");
        assert_eq!(task.target_url(), m.url, "task {id} target URL");
        assert_eq!(
            task.scan_config(),
            m.scan_config.map(ScanConfigId),
            "task {id} scan config"
        );
        assert_eq!(task.create_ms(), m.create, "task {id} createTime");
        assert_eq!(task.start_ms(), m.start, "task {id} startTime");
        assert_eq!(task.end_ms(), m.end, "task {id} endTime");
        assert_eq!(task.timeout_ms(), m.timeout, "task {id} timeoutTime");
        assert_eq!(task.attempts(), m.attempts, "task {id} attempts");
        assert_eq!(
            task.is_active_flag(),
            m.status != TaskStatus::CompleteDeleted
        );
        if m.status.is_active() {
            let held = m.held.expect("active tasks are held");
            let a = task.assignment().expect("an active task has an assignment");
            assert_eq!(a.agent(), self.agent_ids[held.agent], "task {id} holder");
            assert_eq!(
                a.task_key().expose_secret(),
                self.task_keys[held.key],
                "task {id} key"
            );
            assert_eq!(a.lease_until_ms(), held.lease_until, "task {id} lease");
        }
        if m.status == TaskStatus::Queued {
            assert!(
                task.assignment().is_none(),
                "task {id}: a queued task has no live key"
            );
        }
        let history = task.history();
        assert_eq!(history.len(), m.history.len(), "task {id} history length");
        for (entry, expected) in history.iter().zip(&m.history) {
            assert_eq!(entry.id, expected.id, "task {id} history entry id");
            assert_eq!(entry.at_ms, expected.at, "task {id} history entry time");
            assert_eq!(
                hist_of(&entry.message),
                expected.hist,
                "task {id} history entry"
            );
            let text = entry.message.to_string();
            let prefix_ok = match &expected.hist {
                Hist::Queued => text.starts_with("Scan queued at: "),
                Hist::Assigned(cfg) => {
                    text == format!("Assigning task to an agent with agentConfig:\n{cfg}")
                }
                Hist::Update(m) => text == *m,
                Hist::Completed => text.starts_with("Scan completed successfully at: "),
                Hist::Failed(reason) => {
                    text == format!(
                        "ScanAgent reported that the scan task: {id} had failed client-side for the following reason: {reason}"
                    )
                }
                _ => !text.is_empty(),
            };
            assert!(prefix_ok, "task {id} status message text {text:?}");
        }
    }
}

impl Sut {
    /// A real queue for a fresh model (the same config, keys from the model's seed).
    pub fn new(model: &Model) -> Sut {
        let mut queue = Queue::new(config(), seeded(model.seed)).expect("a valid config");
        queue.advance(T0);
        Sut {
            queue,
            agent_keys: Vec::new(),
            agent_ids: Vec::new(),
            task_keys: Vec::new(),
        }
    }

    /// Makes the call the model just stepped through ([`Model::last`]) and compares its result
    /// with the expectation; checks that a refused call changed nothing but time, and that
    /// the call's events replay to the same state.
    pub fn apply(&mut self, model: &Model) {
        let step = &model.last;
        // Two copies of the state before the call: one advanced to `now` alone (what a refused
        // call must leave), one to replay the call's events on.
        let mut alone = copy(&self.queue);
        alone.advance(step.now);
        let mut replay = copy(&self.queue);

        let got = self.call(&step.call, step.now);
        self.check_outcome(got, model);

        let after = self.queue.snapshot();
        if step.unchanged {
            assert_eq!(
                alone.snapshot(),
                after,
                "a refused call changed more than time"
            );
        }
        let events: Vec<_> = self.queue.drain_events().collect();
        for event in &events {
            replay
                .apply(event.clone())
                .unwrap_or_else(|e| panic!("journal does not replay: {e} at {event:?}"));
        }
        replay.advance(step.now);
        assert!(
            replay.drain_events().next().is_none(),
            "the journal missed a timer"
        );
        assert_eq!(
            replay.snapshot(),
            after,
            "the journal replays to another state"
        );
    }

    /// Compares the whole state with the model's (tasks field by field, statuses, agents,
    /// holders, counters, the next deadline) and checks the queue's own invariants.
    pub fn check_invariants(&self, model: &Model) {
        let q = &self.queue;
        if let Err(e) = q.check_invariants() {
            panic!("queue invariants: {e}");
        }
        assert_eq!(q.clock_ms(), model.clock, "clock");

        // Every retained task is in exactly one status, and the same one as in the model.
        let mut seen = BTreeMap::new();
        for status in TaskStatus::ALL {
            for task in q.tasks_with_status(status) {
                assert_eq!(
                    task.status(),
                    status,
                    "task {} listed under {status}",
                    task.id()
                );
                let twice = seen.insert(task.id().0, status);
                assert!(twice.is_none(), "task {} in two statuses", task.id());
            }
        }
        let expected: BTreeMap<u64, TaskStatus> =
            model.tasks.iter().map(|(id, t)| (*id, t.status)).collect();
        assert_eq!(seen, expected, "retained tasks and their statuses");
        for (id, m) in &model.tasks {
            self.compare_task(q.task(TaskId(*id)).expect("retained"), m);
        }
        if let Some(&id) = model.tasks.keys().next_back() {
            assert!(id < model.next_id, "ids increase");
        }

        // Agents, and who holds what: no task held by two agents.
        assert_eq!(self.agent_ids.len(), model.live.len(), "agents registered");
        let live: BTreeSet<AgentId> = (0..model.live.len())
            .filter(|n| model.live[*n])
            .map(|n| self.agent_ids[n])
            .collect();
        assert_eq!(q.agents().collect::<BTreeSet<_>>(), live, "live agents");
        let mut held = BTreeSet::new();
        for (n, agent) in self.agent_ids.iter().enumerate() {
            let Some(tasks) = q.agent_tasks(*agent) else {
                assert!(!model.live[n], "agent {n} is registered");
                continue;
            };
            let tasks: BTreeSet<u64> = tasks.map(|id| id.0).collect();
            let expected: BTreeSet<u64> = model
                .tasks
                .iter()
                .filter(|(_, t)| t.status.is_active() && t.held.is_some_and(|h| h.agent == n))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(tasks, expected, "tasks held by agent {n}");
            for id in tasks {
                assert!(held.insert(id), "task {id} held by two agents");
            }
            assert_eq!(
                q.agent_for_key(&self.agent_keys[n]),
                Some(*agent),
                "agent {n} key"
            );
        }
        for (n, key) in self.agent_keys.iter().enumerate() {
            if !model.live[n] {
                assert_eq!(
                    q.agent_for_key(key),
                    None,
                    "revoked agent {n}'s key is dead"
                );
            }
        }

        // Counts: per status, and conserved (queued + active + finished + evicted = queued ever).
        let stats = q.stats();
        for status in TaskStatus::ALL {
            let expected = model.tasks.values().filter(|t| t.status == status).count();
            assert_eq!(stats.count(status), expected, "count of {status}");
        }
        assert_eq!(stats.agents, live.len(), "agent count");
        let c = &stats.counters;
        assert_eq!(c.queued, model.next_id - 1, "tasks queued ever");
        assert_eq!(c.evicted, model.evicted, "tasks evicted");
        let t = &model.tally;
        assert_eq!(c.assignments, t.assignments, "assignments");
        assert_eq!(c.status_updates, t.status_updates, "status updates");
        assert_eq!(c.completions, t.completions, "completions");
        assert_eq!(c.failures, t.failures, "failures");
        assert_eq!(c.cancellations, t.cancellations, "cancellations");
        assert_eq!(c.lease_expiries, t.lease_expiries, "lease expiries");
        assert_eq!(c.requeues, t.requeues, "requeues");
        assert_eq!(c.timeouts, t.timeouts, "timeouts");
        assert_eq!(
            c.agents_registered, t.agents_registered,
            "agents registered"
        );
        assert_eq!(c.agents_revoked, t.agents_revoked, "agents revoked");
        assert_eq!(
            stats.rejected_key_checks, t.rejected_key_checks,
            "rejected key checks"
        );
        let queued = stats.count(TaskStatus::Queued) as u64;
        let active =
            (stats.count(TaskStatus::Assigned) + stats.count(TaskStatus::InProgress)) as u64;
        let finished = stats.by_status[3..].iter().sum::<usize>() as u64;
        assert_eq!(
            queued + active + finished + c.evicted,
            c.queued,
            "tasks conserved"
        );
        assert!(finished as usize <= config().max_finished_tasks);
        assert!(stats.open_tasks() <= config().max_open_tasks);

        assert_eq!(
            q.next_deadline_ms(),
            model.next_timer().map(|(at, _, _)| at),
            "next deadline"
        );
    }
}
