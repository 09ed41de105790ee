//! The queue: state, indexes, and the one place where events change them.
//!
//! Every mutation follows the same two steps (TigerBeetle's "compute, then apply"):
//! 1. an operation checks its inputs against the state and builds an [`Event`] describing
//!    exactly what will change (including any ids, keys and deadlines it generated); nothing
//!    is mutated if a check fails;
//! 2. [`Queue::commit`] applies the event. Replaying a journal goes through the same
//!    function, so live operation and replay cannot drift apart.
//!
//! The operations themselves live in files named for them: `scan.rs` (queue a scan),
//! `agent.rs` (keys and revocation), `assign.rs` (request a task), `agent_call.rs` (status
//! update, complete, fail), `lease.rs` (time), `admin.rs` (cancel), `snapshot.rs`.

use crate::config::Config;
use crate::error::Error;
use crate::event::Event;
use crate::hash::FxHashMap;
use crate::ids::{AgentId, TaskId};
use crate::key::{AgentKey, presented_selector};
use crate::rng::KeySource;
use crate::stats::{Counters, Stats};
use crate::status::TaskStatus;
use crate::task::{Assignment, StatusEntry, StatusMessage, Task};
use crate::task_store::TaskStore;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The scan task queue: a deterministic state machine with no I/O.
///
/// Methods come in four kinds (as in quinn-proto):
/// - getters (`&self`): [`task`](Queue::task), [`tasks_with_status`](Queue::tasks_with_status),
///   [`stats`](Queue::stats), [`next_deadline_ms`](Queue::next_deadline_ms), ...;
/// - operations (`&mut self`, each taking `now_ms`): [`queue_scan`](Queue::queue_scan),
///   [`register_agent`](Queue::register_agent), [`request_task`](Queue::request_task),
///   [`update_status`](Queue::update_status), [`complete_task`](Queue::complete_task),
///   [`fail_task`](Queue::fail_task), [`cancel_task`](Queue::cancel_task),
///   [`revoke_agent`](Queue::revoke_agent), and [`advance`](Queue::advance) for time alone;
/// - outputs: [`drain_events`](Queue::drain_events) (the journal) and
///   [`next_deadline_ms`](Queue::next_deadline_ms) (when to wake up);
/// - persistence: [`snapshot`](Queue::snapshot), [`restore`](Queue::restore),
///   [`apply`](Queue::apply).
///
/// Every operation first advances time to `now_ms` (applying every lease expiry and deadline
/// up to then, in time order), then either succeeds or fails with no further change.
pub struct Queue {
    pub(crate) config: Config,
    pub(crate) keys: KeySource,
    /// The latest `now` seen; time never runs backwards inside the queue.
    pub(crate) clock_ms: u64,
    /// The id the next queued task gets; ids are never reused.
    pub(crate) next_task_id: u64,
    /// Every task not yet evicted.
    pub(crate) tasks: TaskStore,
    /// Retained tasks per status (index [`TaskStatus::index`]). Counts, not sets of ids:
    /// listings read `tasks` in id order and filter.
    pub(crate) counts: [usize; 7],
    /// Per scanner: open tasks using it, and its queued task ids in order (oldest first).
    pub(crate) scanners: Scanners,
    /// (next timer instant, id) of every active task, and of the queued tasks that
    /// [`ScannerQueue::explicit`] says have one. The first entry is the next timer due.
    pub(crate) timers: BTreeSet<(u64, TaskId)>,
    /// Finished tasks in the order they finished; the front is evicted first.
    pub(crate) finished: VecDeque<TaskId>,
    /// Registered agents by id (ordered, for deterministic snapshots).
    pub(crate) agents: BTreeMap<AgentId, Agent>,
    /// Agents and their keys by the first 8 bytes of the key (see `key.rs`): a presented key
    /// is checked with one hash lookup, without the agents' B-tree (≈ 60 instructions less
    /// per call, BENCHMARKS.md). The only copy of each agent's key.
    pub(crate) agent_by_selector: FxHashMap<u64, (AgentId, AgentKey)>,
    pub(crate) counters: Counters,
    /// A metric, not state: not in snapshots or events, so a refused call changes no state.
    pub(crate) rejected_key_checks: u64,
    /// Events not yet taken by [`Queue::drain_events`].
    pub(crate) events: Vec<Event>,
    /// Allocations of evicted tasks, reused by the next ones (at most [`SPARE`] of each).
    spare: Spare,
}

/// How many evicted tasks' allocations are kept for reuse: one suffices while tasks finish
/// as fast as they come; a few more absorb bursts. At most ≈ 7 KiB.
const SPARE: usize = 16;

/// Evicted tasks' boxes (with their old strings, until reused), assignment boxes, and empty
/// history buffers of one entry (for queued tasks) and of four (swapped in at assignment,
/// the one-entry buffer coming back): so a queued task still holds one entry's buffer, and a
/// lifecycle allocates none of these four (4 allocations and ≈ 490 instructions less per
/// lifecycle, BENCHMARKS.md).
#[derive(Default)]
#[expect(clippy::vec_box, reason = "the boxes are what is reused")]
struct Spare {
    tasks: Vec<Box<Task>>,
    assignments: Vec<Box<Assignment>>,
    /// Empty buffers with room for 1 and for 4 entries.
    histories: [Vec<Vec<StatusEntry>>; 2],
}

impl Spare {
    fn keep(&mut self, mut task: Box<Task>) {
        if let Some(a) = task.assignment.take()
            && self.assignments.len() < SPARE
        {
            self.assignments.push(a);
        }
        self.keep_history(std::mem::take(&mut task.history));
        if self.tasks.len() < SPARE {
            self.tasks.push(task);
        }
    }

    fn keep_history(&mut self, mut history: Vec<StatusEntry>) {
        let pool = match history.capacity() {
            1 => &mut self.histories[0],
            4 => &mut self.histories[1],
            _ => return,
        };
        if pool.len() < SPARE {
            history.clear();
            pool.push(history);
        }
    }
}

/// How many scanners [`Slot`] numbers: `Config::max_scanners` is at most this.
pub(crate) const MAX_SCANNER_SLOTS: usize = u16::MAX as usize;

/// The slot of an open task's scanner in [`Scanners`]: a cache that saves hashing the name on
/// each change of the task (three per lifecycle: ≈ 220 instructions, BENCHMARKS.md), checked
/// by pointer before use and looked up by name when stale. Not state: never compared,
/// serialized or trusted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot(u16);

impl Default for Slot {
    fn default() -> Slot {
        Slot(u16::MAX)
    }
}

impl PartialEq for Slot {
    fn eq(&self, _: &Slot) -> bool {
        true
    }
}
impl Eq for Slot {}

/// The per-scanner indexes, by name and by slot.
#[derive(Default)]
pub(crate) struct Scanners {
    by_name: FxHashMap<Arc<str>, u16>,
    slots: Vec<Option<ScannerQueue>>,
    /// The slot `queue_scan` found its scanner in, for the task it is about to queue (so
    /// `reindex` does not hash the name again: ≈ 120 instructions per queued task).
    pub(crate) next: Slot,
}

impl Scanners {
    /// A scanner's index entry, by name.
    pub(crate) fn get(&self, name: &str) -> Option<&ScannerQueue> {
        self.find(name).map(|(_, entry)| entry)
    }

    /// A scanner's slot and index entry, by name.
    pub(crate) fn find(&self, name: &str) -> Option<(Slot, &ScannerQueue)> {
        let slot = *self.by_name.get(name)?;
        Some((Slot(slot), self.slots.get(usize::from(slot))?.as_ref()?))
    }

    /// The number of scanners with open tasks.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every entry, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &ScannerQueue> {
        self.slots.iter().flatten()
    }

    /// The entry of `name`, found by `hint` when that slot holds this very name (the interned
    /// `Arc`), else by name, else created in the first free slot. `None` only past
    /// [`MAX_SCANNER_SLOTS`], which the scanner bound keeps out of reach.
    fn entry(&mut self, hint: Slot, name: &Arc<str>) -> Option<(Slot, &mut ScannerQueue)> {
        let hit = |s: &Option<ScannerQueue>| s.as_ref().is_some_and(|e| Arc::ptr_eq(&e.name, name));
        let slot = match self.slots.get(usize::from(hint.0)) {
            Some(s) if hit(s) => hint.0,
            _ => match self.by_name.get(&**name) {
                Some(slot) => *slot,
                None => {
                    let free = self.slots.iter().position(Option::is_none);
                    let slot = free.unwrap_or(self.slots.len());
                    let slot = u16::try_from(slot).ok().filter(|s| *s < u16::MAX)?;
                    if free.is_none() {
                        self.slots.push(None);
                    }
                    *self.slots.get_mut(usize::from(slot))? = Some(ScannerQueue {
                        name: Arc::clone(name),
                        open: 0,
                        queued: VecDeque::new(),
                        explicit: false,
                    });
                    self.by_name.insert(Arc::clone(name), slot);
                    slot
                }
            },
        };
        let entry = self.slots.get_mut(usize::from(slot))?.as_mut()?;
        Some((Slot(slot), entry))
    }

    fn remove(&mut self, slot: Slot) {
        if let Some(entry) = self
            .slots
            .get_mut(usize::from(slot.0))
            .and_then(Option::take)
        {
            self.by_name.remove(&entry.name);
        }
    }
}

/// The per-scanner index.
#[derive(Debug)]
pub(crate) struct ScannerQueue {
    /// The scanner's name, shared by its open tasks (interned: one allocation per scanner).
    pub(crate) name: Arc<str>,
    /// Open (non-terminal) tasks of this scanner; the entry is dropped at zero.
    pub(crate) open: usize,
    /// Queued task ids, oldest first. A sorted `VecDeque`, not a B-tree: a new task joins at
    /// the back and assignment takes the front, so the usual changes cost O(1); a requeued
    /// (old) task goes in near the front and a cancelled one leaves by binary search.
    pub(crate) queued: VecDeque<TaskId>,
    /// Whether every queued task of this scanner has its deadline in `timers`. False while
    /// their deadlines are non-decreasing in id (always, unless the task deadline changed
    /// with tasks queued): then only the front task's is there, since it is the earliest.
    /// One timer entry per scanner instead of one per queued task: ≈ 28 B less per queued
    /// task (259 → 231 B at 1 000 000 queued, BENCHMARKS.md) and a B-tree as small as the
    /// active tasks. Set when a task breaks the order, cleared when the queue empties.
    pub(crate) explicit: bool,
}

/// A registered scan agent.
#[derive(Debug)]
pub(crate) struct Agent {
    /// Its key's selector; the key itself is kept once, in `Queue::agent_by_selector`.
    pub(crate) selector: u64,
    pub(crate) registered_ms: u64,
    /// Tasks it holds (Assigned or InProgress), in id order: a sorted `Vec`, since an agent
    /// holds a few tasks and a B-tree's two operations per assignment cost more.
    pub(crate) tasks: Vec<TaskId>,
}

/// What the indexes know about a task, taken before a change so `reindex` can move it.
#[derive(Clone, Copy)]
pub(crate) struct IndexKey {
    status: TaskStatus,
    timer: Option<u64>,
    holder: Option<AgentId>,
}

impl IndexKey {
    pub(crate) fn of(task: &Task) -> IndexKey {
        IndexKey {
            status: task.status,
            // Queued tasks' timers belong to the scanner index.
            timer: task
                .timer_ms()
                .filter(|_| task.status != TaskStatus::Queued),
            holder: match &task.assignment {
                Some(a) if task.status.is_active() => Some(a.agent),
                _ => None,
            },
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("clock_ms", &self.clock_ms)
            .field("next_task_id", &self.next_task_id)
            .field("tasks", &self.tasks.len())
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// An empty queue.
    ///
    /// ```
    /// use scan_queue::{Config, KeySource, Queue};
    /// let queue = Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
    /// assert_eq!(queue.stats().open_tasks(), 0);
    /// ```
    pub fn new(config: Config, keys: KeySource) -> Result<Queue, Error> {
        config.validate()?;
        Ok(Queue {
            config,
            keys,
            clock_ms: 0,
            next_task_id: 1,
            tasks: TaskStore::default(),
            counts: [0; 7],
            scanners: Scanners::default(),
            timers: BTreeSet::new(),
            finished: VecDeque::new(),
            agents: BTreeMap::new(),
            agent_by_selector: FxHashMap::default(),
            counters: Counters::default(),
            rejected_key_checks: 0,
            events: Vec::new(),
            spare: Spare::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest `now` the queue has seen.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// A task by id, with its full status history.
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// Tasks with `status`, oldest (lowest id) first; `.rev()` for newest first.
    pub fn tasks_with_status(
        &self,
        status: TaskStatus,
    ) -> impl DoubleEndedIterator<Item = &Task> + '_ {
        self.tasks_in(status, ..)
    }

    /// Tasks with `status` and an id in `range`, oldest first: a filter over
    /// [`tasks_by_id`](Queue::tasks_by_id), so it costs one step per retained task in the range.
    pub fn tasks_in(
        &self,
        status: TaskStatus,
        range: impl std::ops::RangeBounds<TaskId>,
    ) -> impl DoubleEndedIterator<Item = &Task> + '_ {
        self.tasks_by_id(range).filter(move |t| t.status == status)
    }

    /// Every retained task with an id in `range`, oldest (lowest id) first, e.g.
    /// `..TaskId(100)` with `.rev()` to page newest first: O(log n) to start, then one step
    /// per task (an inverted range is empty).
    pub fn tasks_by_id(
        &self,
        range: impl std::ops::RangeBounds<TaskId>,
    ) -> impl DoubleEndedIterator<Item = &Task> + '_ {
        self.tasks.range(range).map(|(_, t)| t)
    }

    /// Counts per status and lifetime counters.
    pub fn stats(&self) -> Stats {
        Stats {
            by_status: self.counts,
            agents: self.agents.len(),
            counters: self.counters.clone(),
            rejected_key_checks: self.rejected_key_checks,
        }
    }

    /// The registered agents' ids, in id order.
    pub fn agents(&self) -> impl DoubleEndedIterator<Item = AgentId> + '_ {
        self.agents.keys().copied()
    }

    /// The tasks an agent holds, if it is registered.
    pub fn agent_tasks(&self, agent: AgentId) -> Option<impl Iterator<Item = TaskId> + '_> {
        self.agents.get(&agent).map(|a| a.tasks.iter().copied())
    }

    /// When an agent registered, if it is registered.
    pub fn agent_registered_ms(&self, agent: AgentId) -> Option<u64> {
        self.agents.get(&agent).map(|a| a.registered_ms)
    }

    /// The agent a presented key belongs to, if it is a live key (constant-time comparison).
    pub fn agent_for_key(&self, presented: &str) -> Option<AgentId> {
        let (id, key) = self
            .agent_by_selector
            .get(&presented_selector(presented)?)?;
        key.matches(presented).then_some(*id)
    }

    /// Takes every event not yet taken, oldest first: the journal. Drain after every call
    /// when `record_events` is on, since events accumulate until taken.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    /// Applies an event from a journal (one this queue, or one with the same configuration,
    /// produced), after checking that it fits the current state. A refused event changes
    /// nothing. Events applied here are not queued for [`drain_events`](Queue::drain_events).
    pub fn apply(&mut self, event: Event) -> Result<(), Error> {
        self.validate_event(&event)?;
        self.commit_inner(&event);
        Ok(())
    }

    /// Counts a refused call if it was a failed key check.
    pub(crate) fn note_rejection<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result
            && e.is_key_rejection()
        {
            self.rejected_key_checks = self.rejected_key_checks.saturating_add(1);
        }
        result
    }

    /// The number of open (queued, assigned or in progress) tasks.
    pub(crate) fn open_tasks(&self) -> usize {
        self.counts.iter().take(3).sum()
    }

    /// Applies a checked event and records it for the embedder.
    pub(crate) fn commit(&mut self, event: Event) {
        self.commit_inner(&event);
        if self.config.record_events {
            self.events.push(event);
        }
    }

    /// The only code that mutates state. `event` has been checked (by the operation that
    /// built it, or by `validate_event`); what cannot happen is skipped, never panicked on.
    /// The task shares the event's strings.
    fn commit_inner(&mut self, event: &Event) {
        self.clock_ms = self.clock_ms.max(event.at_ms());
        let max_history = self.config.max_status_history;
        match *event {
            Event::AgentRegistered {
                agent,
                ref key,
                at_ms,
            } => {
                let selector = key.selector();
                self.agent_by_selector
                    .insert(selector, (agent, key.clone()));
                self.agents.insert(
                    agent,
                    Agent {
                        selector,
                        registered_ms: at_ms,
                        tasks: Vec::new(),
                    },
                );
                self.counters.agents_registered = self.counters.agents_registered.saturating_add(1);
            }
            Event::AgentRevoked { agent, at_ms } => {
                let Some(record) = self.agents.remove(&agent) else {
                    return;
                };
                self.agent_by_selector.remove(&record.selector);
                for id in record.tasks {
                    self.change(id, |task| {
                        requeue(
                            task,
                            at_ms,
                            StatusMessage::AgentRevoked { at_ms },
                            max_history,
                        );
                    });
                    self.counters.requeues = self.counters.requeues.saturating_add(1);
                }
                self.counters.agents_revoked = self.counters.agents_revoked.saturating_add(1);
            }
            Event::TaskQueued {
                task,
                application,
                ref scanner,
                ref target_url,
                scan_config,
                at_ms,
                timeout_ms,
            } => {
                // Most queued tasks never get a second entry; don't reserve four.
                let history = self.spare.histories[0].pop();
                let history = history.unwrap_or_else(|| Vec::with_capacity(1));
                let slot = std::mem::take(&mut self.scanners.next);
                let mut new = match self.spare.tasks.pop() {
                    // An evicted task's box, written field by field (the pattern names every
                    // field): ≈ 70 instructions less than building a task and moving it in.
                    Some(mut b) => {
                        let Task {
                            id,
                            application: app,
                            scanner: name,
                            slot: s,
                            target_url: url,
                            scan_config: config,
                            status,
                            create_ms,
                            start_ms,
                            end_ms,
                            timeout_ms: timeout,
                            attempts,
                            assignment,
                            lease_lost_by,
                            history: h,
                        } = &mut *b;
                        (*id, *app, *s, *config, *status) =
                            (task, application, slot, scan_config, TaskStatus::Queued);
                        (*name, *url) = (Arc::clone(scanner), target_url.clone());
                        (*create_ms, *start_ms, *end_ms, *timeout) =
                            (at_ms, None, None, timeout_ms);
                        (*attempts, *assignment, *lease_lost_by) = (0, None, None);
                        *h = history;
                        b
                    }
                    None => Box::new(Task {
                        id: task,
                        application,
                        // Interned by `reindex`.
                        scanner: Arc::clone(scanner),
                        slot,
                        target_url: target_url.clone(),
                        scan_config,
                        status: TaskStatus::Queued,
                        create_ms: at_ms,
                        start_ms: None,
                        end_ms: None,
                        timeout_ms,
                        attempts: 0,
                        assignment: None,
                        lease_lost_by: None,
                        history,
                    }),
                };
                // The first entry of an empty history (spare buffers are cleared): ≈ 40
                // instructions less than `push_status`.
                let message = StatusMessage::Queued { at_ms };
                new.history.push(StatusEntry {
                    id: 1,
                    at_ms,
                    message,
                });
                self.tasks.insert(task, new);
                self.next_task_id = self.next_task_id.max(task.0.saturating_add(1));
                self.counters.queued = self.counters.queued.saturating_add(1);
                self.reindex(task, None, true);
            }
            Event::TaskAssigned {
                task,
                agent,
                ref task_key,
                ref agent_config,
                at_ms,
                lease_until_ms,
            } => {
                let spare = self.spare.assignments.pop();
                let mut history = self.spare.histories[1].pop();
                self.change(task, |t| {
                    t.status = TaskStatus::Assigned;
                    t.start_ms = Some(at_ms);
                    t.attempts = t.attempts.saturating_add(1);
                    // The agent that lost its lease holds the task again: its later calls are
                    // about this assignment, whose lease has not run out.
                    if t.lease_lost_by.as_deref() == Some(&agent) {
                        t.lease_lost_by = None;
                    }
                    let assignment = Assignment {
                        agent,
                        task_key: task_key.clone(),
                        lease_until_ms,
                    };
                    t.assignment = Some(match spare {
                        Some(mut b) => {
                            *b = assignment;
                            b
                        }
                        None => Box::new(assignment),
                    });
                    if let Some(h) = history.as_mut().filter(|_| t.history.len() == 1) {
                        h.append(&mut t.history);
                        std::mem::swap(h, &mut t.history);
                    }
                    let agent_config = Arc::clone(agent_config);
                    t.push_status(at_ms, StatusMessage::Assigned { agent_config }, max_history);
                });
                if let Some(h) = history {
                    self.spare.keep_history(h);
                }
                self.counters.assignments = self.counters.assignments.saturating_add(1);
            }
            Event::StatusUpdated {
                task,
                ref message,
                at_ms,
                lease_until_ms,
            } => {
                self.change(task, |t| {
                    t.status = TaskStatus::InProgress;
                    if let Some(a) = &mut t.assignment {
                        a.lease_until_ms = lease_until_ms;
                    }
                    let message = StatusMessage::Update(Arc::clone(message));
                    t.push_status(at_ms, message, max_history);
                });
                self.counters.status_updates = self.counters.status_updates.saturating_add(1);
            }
            Event::TaskCompleted { task, at_ms } => {
                self.change(task, |t| {
                    t.status = TaskStatus::CompleteSuccessful;
                    t.end_ms = Some(at_ms);
                    t.push_status(at_ms, StatusMessage::Completed { at_ms }, max_history);
                });
                self.counters.completions = self.counters.completions.saturating_add(1);
            }
            Event::TaskFailed {
                task,
                ref reason,
                at_ms,
            } => {
                self.change(task, |t| {
                    t.status = TaskStatus::CompleteFailed;
                    t.end_ms = Some(at_ms);
                    let reason = Arc::clone(reason);
                    t.push_status(at_ms, StatusMessage::Failed { task, reason }, max_history);
                });
                self.counters.failures = self.counters.failures.saturating_add(1);
            }
            Event::TaskCancelled { task, at_ms } => {
                self.change(task, |t| {
                    t.status = TaskStatus::CompleteDeleted;
                    t.end_ms = Some(at_ms);
                    t.push_status(at_ms, StatusMessage::Deleted { at_ms }, max_history);
                });
                self.counters.cancellations = self.counters.cancellations.saturating_add(1);
            }
            Event::LeaseExpired {
                task,
                at_ms,
                requeued,
            } => {
                self.change(task, |t| {
                    let attempts = t.attempts;
                    t.lease_lost_by = t.assignment.as_ref().map(|a| Box::new(a.agent));
                    if requeued {
                        let message = StatusMessage::LeaseExpiredRequeued { at_ms, attempts };
                        requeue(t, at_ms, message, max_history);
                    } else {
                        t.status = TaskStatus::CompleteTimedOut;
                        t.end_ms = Some(at_ms);
                        t.assignment = None;
                        let message = StatusMessage::LeaseExpiredTimedOut { at_ms, attempts };
                        t.push_status(at_ms, message, max_history);
                    }
                });
                self.counters.lease_expiries = self.counters.lease_expiries.saturating_add(1);
                if requeued {
                    self.counters.requeues = self.counters.requeues.saturating_add(1);
                } else {
                    self.counters.timeouts = self.counters.timeouts.saturating_add(1);
                }
            }
            Event::DeadlineReached { task, at_ms } => {
                self.change(task, |t| {
                    t.status = TaskStatus::CompleteTimedOut;
                    t.end_ms = Some(at_ms);
                    t.assignment = None;
                    t.push_status(at_ms, StatusMessage::DeadlinePassed { at_ms }, max_history);
                });
                self.counters.timeouts = self.counters.timeouts.saturating_add(1);
            }
        }
    }

    /// Runs `f` on a task, then moves it in every index to match its new state.
    fn change(&mut self, id: TaskId, f: impl FnOnce(&mut Task)) {
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        let old = IndexKey::of(task);
        f(task);
        self.reindex(id, Some(old), true);
    }

    /// Brings every index in line with task `id`'s state, given what the indexes held for it
    /// before (`None`: a task new to the indexes). With `track_finished`, a task that has just
    /// finished joins the eviction order (restore builds that order itself).
    pub(crate) fn reindex(&mut self, id: TaskId, old: Option<IndexKey>, track_finished: bool) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        let new = IndexKey::of(task);
        let was_open = old.is_some_and(|o| !o.status.is_terminal());
        let was_queued = old.is_some_and(|o| o.status == TaskStatus::Queued);

        if let Some(old) = old {
            if let Some(count) = self.counts.get_mut(old.status.index()) {
                *count = count.saturating_sub(1);
            }
            if old.timer != new.timer
                && let Some(at) = old.timer
            {
                self.timers.remove(&(at, id));
            }
        }
        if let Some(count) = self.counts.get_mut(new.status.index()) {
            *count = count.saturating_add(1);
        }
        let holder_moved = old.is_none_or(|o| o.holder != new.holder);
        if holder_moved
            && let Some(agent) = old.and_then(|o| o.holder)
            && let Some(agent) = self.agents.get_mut(&agent)
            && let Ok(i) = agent.tasks.binary_search(&id)
        {
            agent.tasks.remove(i);
        }
        if holder_moved
            && let Some(agent) = new.holder
            && let Some(agent) = self.agents.get_mut(&agent)
            && let Err(i) = agent.tasks.binary_search(&id)
        {
            agent.tasks.insert(i, id);
        }

        // The scanner index: open count and queued order.
        let is_open = !new.status.is_terminal();
        let is_queued = new.status == TaskStatus::Queued;

        if was_open != is_open || was_queued != is_queued {
            let Some((slot, entry)) = self.scanners.entry(task.slot, &task.scanner) else {
                return;
            };
            // A task new to the indexes (queued, replayed or restored) shares the name.
            let intern = (old.is_none() && !Arc::ptr_eq(&entry.name, &task.scanner))
                .then(|| Arc::clone(&entry.name));
            if !was_open && is_open {
                entry.open = entry.open.saturating_add(1);
            }
            if was_open && !is_open {
                entry.open = entry.open.saturating_sub(1);
            }
            let (queued, timers) = (&mut entry.queued, &mut self.timers);
            let deadline = |id: &TaskId| (self.tasks.get(id).map_or(0, |t| t.timeout_ms), *id);
            if was_queued && !is_queued {
                let was_front = queued.front() == Some(&id);
                if was_front {
                    queued.pop_front();
                } else if let Ok(i) = queued.binary_search(&id) {
                    queued.remove(i);
                }
                if entry.explicit || was_front {
                    timers.remove(&(task.timeout_ms, id));
                }
                if let Some(front) = queued.front().filter(|_| was_front && !entry.explicit) {
                    timers.insert(deadline(front));
                }
                entry.explicit &= !queued.is_empty();
            }
            if !was_queued && is_queued {
                let i = if queued.back().is_none_or(|last| *last < id) {
                    queued.len()
                } else {
                    match queued.binary_search(&id) {
                        Err(i) => i,
                        Ok(_) => return, // already there: unreachable while the indexes agree
                    }
                };
                if i == queued.len() {
                    queued.push_back(id); // (`insert` at the end costs ≈ 25 more)
                } else {
                    queued.insert(i, id);
                }
                let fits = |j: Option<usize>, ok: fn(u64, u64) -> bool| {
                    let other = j.and_then(|j| queued.get(j));
                    other.is_none_or(|o| ok(deadline(o).0, task.timeout_ms))
                };
                if entry.explicit {
                    timers.insert((task.timeout_ms, id));
                } else if !fits(i.checked_sub(1), |a, b| a <= b)
                    || !fits(Some(i + 1), |a, b| a >= b)
                {
                    // Out of order: every queued task of this scanner gets its entry.
                    entry.explicit = true;
                    let old_front = if i == 0 {
                        queued.get(1)
                    } else {
                        queued.front()
                    };
                    if let Some(front) = old_front {
                        timers.remove(&deadline(front));
                    }
                    timers.extend(queued.iter().map(deadline));
                } else if i == 0 {
                    if let Some(old_front) = queued.get(1) {
                        timers.remove(&deadline(old_front));
                    }
                    timers.insert((task.timeout_ms, id));
                }
            }
            if entry.open == 0 && entry.queued.is_empty() {
                self.scanners.remove(slot);
            }
            if let Some(task) = self.tasks.get_mut(&id) {
                task.slot = slot;
                if let Some(name) = intern {
                    task.scanner = name;
                }
            }
        }
        // After the scanner index, which may have just removed the same (deadline, id).
        if old.is_none_or(|o| o.timer != new.timer)
            && let Some(at) = new.timer
        {
            self.timers.insert((at, id));
        }

        let just_finished = !is_open && (was_open || old.is_none());
        if track_finished && just_finished {
            self.finished.push_back(id);
            self.evict();
        }
    }

    /// Drops the oldest finished tasks past the configured bound.
    fn evict(&mut self) {
        while self.finished.len() > self.config.max_finished_tasks {
            let Some(id) = self.finished.pop_front() else {
                break;
            };
            if let Some(task) = self.tasks.take(&id) {
                if let Some(count) = self.counts.get_mut(task.status.index()) {
                    *count = count.saturating_sub(1);
                }
                self.counters.evicted = self.counters.evicted.saturating_add(1);
                self.spare.keep(task);
            }
        }
        // Give memory back after a burst.
        self.tasks.shrink();
    }

    /// Checks an event from a journal against the state, as the operation that produced it
    /// checked its inputs.
    fn validate_event(&self, event: &Event) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Inconsistent(what.to_owned()));
        let task_in = |id: TaskId, ok: fn(TaskStatus) -> bool| -> Result<&Task, Error> {
            let task = self.tasks.get(&id).ok_or(Error::UnknownTask(id))?;
            if ok(task.status) {
                Ok(task)
            } else {
                Err(Error::WrongState {
                    task: id,
                    status: task.status,
                })
            }
        };
        match event {
            Event::AgentRegistered { agent, key, .. } => {
                if self.agents.contains_key(agent) {
                    return bad("agent registered twice");
                }
                if self.agent_by_selector.contains_key(&key.selector()) {
                    return bad("agent key selector collides with a live agent's");
                }
                if self.agents.len() >= self.config.max_agents {
                    return Err(self.bound(crate::Bound::Agents));
                }
            }
            Event::AgentRevoked { agent, .. } => {
                if !self.agents.contains_key(agent) {
                    return Err(Error::UnknownAgent(*agent));
                }
            }
            Event::TaskQueued {
                task,
                application,
                scanner,
                target_url,
                ..
            } => {
                if task.0 != self.next_task_id {
                    return bad("task id out of sequence");
                }
                self.check_new_scan(*application, scanner, target_url.as_deref())?;
            }
            Event::TaskAssigned {
                task,
                agent,
                agent_config,
                ..
            } => {
                task_in(*task, |s| s == TaskStatus::Queued)?;
                if !self.agents.contains_key(agent) {
                    return Err(Error::UnknownAgent(*agent));
                }
                self.check_len(
                    agent_config,
                    self.config.max_agent_config_len,
                    crate::Bound::AgentConfigLen,
                )?;
            }
            Event::StatusUpdated { task, message, .. }
            | Event::TaskFailed {
                task,
                reason: message,
                ..
            } => {
                task_in(*task, TaskStatus::is_active)?;
                self.check_len(
                    message,
                    self.config.max_message_len,
                    crate::Bound::MessageLen,
                )?;
            }
            Event::TaskCompleted { task, .. } => {
                task_in(*task, TaskStatus::is_active)?;
            }
            Event::TaskCancelled { task, .. } => {
                task_in(*task, |s| !s.is_terminal())?;
            }
            Event::LeaseExpired {
                task,
                at_ms,
                requeued,
            } => {
                let t = task_in(*task, TaskStatus::is_active)?;
                if t.assignment.as_ref().map(|a| a.lease_until_ms) != Some(*at_ms) {
                    return bad("lease expiry at another instant than the lease");
                }
                if t.timeout_ms <= *at_ms {
                    return bad("lease expiry after the task deadline");
                }
                if *requeued != (t.attempts < self.config.max_attempts) {
                    return bad("lease expiry requeue flag contradicts the attempts used");
                }
            }
            Event::DeadlineReached { task, at_ms } => {
                let t = task_in(*task, |s| !s.is_terminal())?;
                if t.timeout_ms != *at_ms {
                    return bad("deadline event at another instant than the deadline");
                }
            }
        }
        // Time: a journal is in time order, and every operation applies the expiries due by
        // its `now` first (`advance`), in timer order. So an event before the clock, an
        // expiry that is not the next one due, or another event at or past a due expiry does
        // not fit the state.
        if event.at_ms() < self.clock_ms {
            return bad("event before the latest time seen");
        }
        let next_timer = self.next_timer();
        match event {
            Event::LeaseExpired { task, at_ms, .. } | Event::DeadlineReached { task, at_ms } => {
                if next_timer != Some((*at_ms, *task)) {
                    return bad("expiry out of timer order");
                }
            }
            _ => {
                if next_timer.is_some_and(|(due_ms, _)| due_ms <= event.at_ms()) {
                    return bad("event after an expiry that was due first");
                }
            }
        }
        Ok(())
    }

    /// The next timer due: (instant, task).
    pub(crate) fn next_timer(&self) -> Option<(u64, TaskId)> {
        self.timers.first().copied()
    }

    pub(crate) fn bound(&self, bound: crate::Bound) -> Error {
        let c = &self.config;
        let limit = match bound {
            crate::Bound::OpenTasks => c.max_open_tasks,
            crate::Bound::FinishedTasks => c.max_finished_tasks,
            crate::Bound::Agents => c.max_agents,
            crate::Bound::Scanners => c.max_scanners,
            crate::Bound::ScannersPerRequest => c.max_scanners_per_request,
            crate::Bound::ScannerLen => c.max_scanner_len,
            crate::Bound::UrlLen => c.max_url_len,
            crate::Bound::MessageLen => c.max_message_len,
            crate::Bound::AgentConfigLen => c.max_agent_config_len,
            crate::Bound::StatusHistory => c.max_status_history,
        };
        Error::BoundExceeded { bound, limit }
    }

    pub(crate) fn check_len(&self, s: &str, max: usize, bound: crate::Bound) -> Result<(), Error> {
        if s.len() > max {
            return Err(self.bound(bound));
        }
        Ok(())
    }
}

/// Puts an active task back in the queue; its task key dies with the assignment.
fn requeue(task: &mut Task, at_ms: u64, message: StatusMessage, max_history: usize) {
    task.status = TaskStatus::Queued;
    task.assignment = None;
    task.push_status(at_ms, message, max_history);
}
