//! A queue that many threads can drive at once.
//!
//! # Locking design
//!
//! Three kinds of lock, always taken in this order (a thread may skip any, never go back):
//! 1. `core`: a `parking_lot::Mutex` around the single-threaded [`Queue`];
//! 2. one of [`SHARDS`] `parking_lot::Mutex`es, chosen by task id, each holding a map of
//!    *entries*: for an assigned or in-progress task the shared path may decide, its holder's
//!    agent key and its task key (copies of the queue's);
//! 3. `pending`: a `parking_lot::Mutex` around the events decided on the shared path and not
//!    yet committed, the time of the latest of them, and `next_due_ms`, a lower bound on every
//!    timer (lease or deadline) of the queue.
//!
//! **Shared path** (no `core`): [`SharedQueue::update_status`],
//! [`complete_task`](SharedQueue::complete_task) and [`fail_task`](SharedQueue::fail_task)
//! lock the task's shard, check both keys against its entry in constant time, then, under
//! `pending`, take `now` (never before the latest time seen), check that no timer is due by
//! then, and append the call's event (built by the same code as [`Queue`]'s methods). That
//! append is the call's linearization point. A finishing call removes the entry. Calls on
//! different tasks meet only in that short `pending` section (and in a shard, for ids that
//! share one).
//!
//! **Exclusive path** (`core`): every other operation — queueing, assignment (one task, one
//! agent, oldest first), registration, revocation, cancel, advancing time, reads — and any
//! agent call the shared path cannot decide. It commits the pending events in order through
//! `Queue::commit` (the one function that mutates state, as for every other operation and
//! for replay), moves the pending clock to its own `now` and lowers `next_due_ms` to cover any
//! timer it may create; removes the entries of the tasks it may change (those it cancels or
//! revokes, and those with a timer due by `now`), commits the events of calls that raced it
//! on them, and runs the plain `Queue` method; then it adds entries for tasks it assigned or
//! found still active, and sets `next_due_ms` from the queue.
//!
//! The shared path decides only the common case and leaves the rest to the exclusive path,
//! which answers exactly as the single-threaded queue does: a key that fails to match (the
//! call is then checked, refused and counted there), a task with no entry (not active, or
//! finished by a pending event, or assigned outside this wrapper), a repeat of a finishing
//! call, a call at an instant when a timer may be due, a message over the bound, a full
//! `pending` ([`MAX_PENDING`] events), or a [`lock`](SharedQueue::lock) guard alive.
//!
//! Why the shared path is exact: an entry exists only while its task is active with that
//! holder and task key, since everything that ends that (finish, expiry, cancel, revocation)
//! either removes the entry first or is a shared-path finish that removes it. Pending events
//! only renew leases or finish tasks, so they only move timers later or remove them, and the
//! queue's timers stay a lower bound of the true ones; an accepted call is before
//! `next_due_ms`, so no expiry is due before it. Time is taken under `pending`, so events are
//! appended in time order, and an exclusive operation moves that clock to its own `now`
//! before it runs, so events decided during it come after its own.
//!
//! Inside the wrapper the queue commits heartbeats as *lazy renewals* (the task's timer entry
//! stays early, noted in `Queue::lazy_timers`, and is moved when it comes due or the task
//! changes otherwise), and its timers are made exact before it is handed out ([`lock`],
//! [`read`], [`into_inner`]). Tasks evicted under `core` are freed after it is released.
//!
//! [`lock`]: SharedQueue::lock
//! [`read`]: SharedQueue::read
//! [`into_inner`]: SharedQueue::into_inner

use crate::agent::RegisteredAgent;
use crate::agent_call::Call;
use crate::error::Error;
use crate::event::Event;
use crate::hash::FxHashMap;
use crate::ids::{AgentId, TaskId};
use crate::key::{AgentKey, TaskKey};
use crate::queue::Queue;
use crate::scan::NewScan;
use crate::status::TaskStatus;
use crate::task::Task;
use parking_lot::{Mutex, MutexGuard};

/// The most events the shared path holds before a call takes the exclusive path (which
/// commits them): bounds the memory and the work of the next exclusive operation.
pub const MAX_PENDING: usize = 4096;

/// How many locks the shared path's entries are spread over (by task id).
pub const SHARDS: usize = 64;

/// A [`Queue`] that many threads drive at once: `Send + Sync`, operations from `&self`.
///
/// Status updates (heartbeats), completions and failures of different tasks run in parallel,
/// without the queue's lock; every other operation takes it, and [`lock`](SharedQueue::lock)
/// gives the plain `Queue` for anything else. Either way every transition is atomic (one
/// task, one agent), expiry is exact, and the events come out in one total order that
/// replays to the same state on a single-threaded queue. The module docs of `shared.rs` (and
/// ARCHITECTURE.md) give the locking design.
///
/// ```
/// use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, SharedQueue, TaskStatus};
/// let shared = SharedQueue::new(Queue::new(Config::default(), KeySource::from_seed([0; 32])).unwrap());
/// let zap = "OWASP Zed Attack Proxy";
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let agent = shared.register_agent(1_000).unwrap();
///             let agent_key = agent.key.expose_secret();
///             shared.queue_scan(1_000, NewScan::new(ApplicationId(1), zap)).unwrap();
///             let task = shared.request_task(1_000, agent_key, &[zap], "", Clone::clone);
///             let task = task.unwrap().unwrap();
///             let task_key = task.assignment().unwrap().task_key().expose_secret();
///             // Heartbeats and completions of the two tasks run in parallel.
///             for i in 0..10 {
///                 shared.update_status(2_000 + i, task.id(), "scanning", agent_key, task_key).unwrap();
///             }
///             let done = shared.complete_task(3_000, task.id(), agent_key, task_key).unwrap();
///             assert_eq!(done.status, TaskStatus::CompleteSuccessful);
///         });
///     }
/// });
/// let mut queue = shared.lock();
/// assert_eq!(queue.stats().count(TaskStatus::CompleteSuccessful), 2);
/// assert_eq!(queue.drain_events().count(), 28);
/// ```
pub struct SharedQueue {
    core: Mutex<Core>,
    shards: [Padded<Mutex<FxHashMap<TaskId, Entry>>>; SHARDS],
    pending: Padded<Mutex<Pending>>,
    /// Copies of the queue's configuration, for the shared path.
    lease_ms: u64,
    max_message_len: usize,
    record_events: bool,
    /// The least time from an operation's `now` to any timer it can create.
    min_timer_ms: u64,
}

/// One lock per cache line pair, so that threads on different shards do not share a line.
#[repr(align(128))]
struct Padded<T>(T);

struct Core {
    queue: Queue,
    /// An empty vector with capacity, swapped with `Pending::events` to commit them.
    spare: Vec<(Event, Option<Box<str>>)>,
}

/// What the shared path needs to decide a call on an active task.
struct Entry {
    agent_key: AgentKey,
    task_key: TaskKey,
}

/// Events decided on the shared path and not yet committed, and the shared path's clock.
struct Pending {
    /// The latest time seen by the shared path or set by an exclusive operation.
    clock_ms: u64,
    /// No timer of the queue is before this (`None`: no timer).
    next_due_ms: Option<u64>,
    /// A [`QueueGuard`] is alive: every call takes the exclusive path.
    blocked: bool,
    /// Entries in all shards.
    entries: usize,
    /// In the order decided (the linearization order), each with the task's copy of its
    /// message when the queue keeps events (made here, outside the queue's lock).
    events: Vec<(Event, Option<Box<str>>)>,
    paths: PathCounts,
}

/// How many agent calls each path has decided, from [`SharedQueue::path_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathCounts {
    /// Decided on the shared path (in parallel).
    pub shared: u64,
    /// Left to the exclusive path (refused, repeated, at a due timer, first call on a task
    /// assigned under [`SharedQueue::lock`], ...).
    pub exclusive: u64,
}

/// What an agent call on a [`SharedQueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The task.
    pub task: TaskId,
    /// Its status after the call.
    pub status: TaskStatus,
    /// True if the call repeated a completion or failure that had already succeeded with the
    /// same keys (a retry after a lost answer): it changed nothing.
    pub repeated: bool,
}

/// Exclusive access to a [`SharedQueue`]'s queue, from [`SharedQueue::lock`]. Every agent
/// call waits for it to drop; dropping it checks the shared path's entries against the queue
/// (work in proportion to the active tasks that have one) and lets calls run in parallel
/// again.
pub struct QueueGuard<'a> {
    core: MutexGuard<'a, Core>,
    shared: &'a SharedQueue,
}

impl std::ops::Deref for QueueGuard<'_> {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.core.queue
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut Queue {
        &mut self.core.queue
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        // Anything may have changed: keep only the entries whose task is still active with
        // the same holder key and task key (an entry dropped here comes back the first time
        // a call on its task takes the exclusive path). No work when there are none.
        let queue = &self.core.queue;
        let had = self.shared.pending.0.lock().entries;
        let mut kept = 0usize;
        if had > 0 {
            for shard in &self.shared.shards {
                let mut shard = shard.0.lock();
                shard.retain(|id, entry| {
                    entry_for(queue, *id).is_some_and(|now| {
                        now.agent_key.matches(entry.agent_key.expose_secret())
                            & now.task_key.matches(entry.task_key.expose_secret())
                    })
                });
                kept = kept.saturating_add(shard.len());
            }
        }
        let mut pending = self.shared.pending.0.lock();
        pending.entries = kept;
        pending.blocked = false;
        self.shared.publish(queue, &mut pending);
        drop(pending);
        // The lock is released after this function, so evicted tasks are dropped here.
        if let Some(graveyard) = &mut self.core.queue.graveyard {
            graveyard.clear();
        }
        self.core.queue.lazy_timers = Some(FxHashMap::default());
    }
}

impl std::fmt::Debug for QueueGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("QueueGuard").field(&self.core.queue).finish()
    }
}

impl std::fmt::Debug for SharedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.pending.0.lock();
        f.debug_struct("SharedQueue")
            .field("pending_events", &pending.events.len())
            .field("entries", &pending.entries)
            .finish_non_exhaustive()
    }
}

impl SharedQueue {
    /// Wraps a queue.
    pub fn new(mut queue: Queue) -> SharedQueue {
        queue.graveyard = Some(Vec::new());
        queue.lazy_timers = Some(FxHashMap::default());
        let config = queue.config();
        let (lease_ms, max_message_len) = (config.lease_ms, config.max_message_len);
        let record_events = config.record_events;
        let min_timer_ms = config.lease_ms.min(config.task_deadline_ms);
        let pending = Pending {
            clock_ms: queue.clock_ms(),
            next_due_ms: queue.next_deadline_ms(),
            blocked: false,
            entries: 0,
            events: Vec::new(),
            paths: PathCounts::default(),
        };
        SharedQueue {
            core: Mutex::new(Core {
                queue,
                spare: Vec::new(),
            }),
            shards: std::array::from_fn(|_| Padded(Mutex::new(FxHashMap::default()))),
            pending: Padded(Mutex::new(pending)),
            lease_ms,
            max_message_len,
            record_events,
            min_timer_ms,
        }
    }

    /// Locks the queue exclusively, for any operation or read, after committing the events
    /// decided on the shared path (so the queue is up to date and their events are ready for
    /// [`Queue::poll_event`]). Agent calls wait until the guard drops. Keep it briefly.
    pub fn lock(&self) -> QueueGuard<'_> {
        let mut core = self.core.lock();
        self.pending.0.lock().blocked = true;
        self.commit_pending(&mut core, None);
        // The guard's queue is a plain one: exact timers, no lazy renewals.
        core.queue.fix_timers();
        core.queue.lazy_timers = None;
        QueueGuard { core, shared: self }
    }

    /// Reads the queue, after committing the pending events, without stopping the shared
    /// path (calls decided meanwhile take effect after this read). Cheaper than
    /// [`lock`](SharedQueue::lock) when nothing is to change.
    pub fn read<R>(&self, f: impl FnOnce(&Queue) -> R) -> R {
        let mut core = self.core.lock();
        self.commit_pending(&mut core, None);
        core.queue.fix_timers();
        let out = f(&core.queue);
        release(core);
        out
    }

    /// Unwraps the queue, with every pending event committed.
    pub fn into_inner(self) -> Queue {
        let SharedQueue { core, pending, .. } = self;
        let mut queue = core.into_inner().queue;
        for (event, copy) in pending.0.into_inner().events {
            queue.commit_prepared(event, copy);
        }
        queue.fix_timers();
        queue.lazy_timers = None;
        queue.graveyard = None;
        queue
    }

    /// Takes every event committed so far (after committing the pending ones), oldest first,
    /// without stopping the shared path: for a journal. Events decided after this call come
    /// after these.
    pub fn drain_events(&self, into: &mut Vec<Event>) {
        let mut core = self.core.lock();
        self.commit_pending(&mut core, None);
        into.extend(core.queue.drain_events());
        release(core);
    }

    /// How many agent calls each path has decided so far.
    pub fn path_counts(&self) -> PathCounts {
        self.pending.0.lock().paths
    }

    /// [`Queue::queue_scan`]; returns the new task's id.
    pub fn queue_scan(&self, now_ms: u64, scan: NewScan<'_>) -> Result<TaskId, Error> {
        self.exclusive(
            now_ms,
            |_| Vec::new(),
            |q, now| (q.queue_scan(now, scan).map(Task::id), None),
        )
    }

    /// [`Queue::register_agent`].
    pub fn register_agent(&self, now_ms: u64) -> Result<RegisteredAgent, Error> {
        self.exclusive(
            now_ms,
            |_| Vec::new(),
            |q, now| (q.register_agent(now), None),
        )
    }

    /// [`Queue::request_task`]; `read` gets the task taken, under the lock, and returns what
    /// the caller needs of it (its id and task key, or `Task::clone` for everything).
    ///
    /// ```
    /// # use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, SharedQueue};
    /// # let shared = SharedQueue::new(Queue::new(Config::default(), KeySource::from_seed([0; 32])).unwrap());
    /// # let agent = shared.register_agent(1_000).unwrap();
    /// # shared.queue_scan(1_000, NewScan::new(ApplicationId(1), "zap")).unwrap();
    /// let taken = shared.request_task(1_000, agent.key.expose_secret(), &["zap"], "", |t| {
    ///     (t.id(), t.assignment().unwrap().task_key().clone())
    /// });
    /// assert!(taken.unwrap().is_some());
    /// ```
    pub fn request_task<S: AsRef<str>, R>(
        &self,
        now_ms: u64,
        agent_key: &str,
        scanners: &[S],
        agent_config: &str,
        read: impl FnOnce(&Task) -> R,
    ) -> Result<Option<R>, Error> {
        self.exclusive(
            now_ms,
            |_| Vec::new(),
            |q, now| match q.request_task(now, agent_key, scanners, agent_config) {
                Ok(Some(task)) => {
                    let id = task.id();
                    (Ok(Some(read(task))), Some(id))
                }
                Ok(None) => (Ok(None), None),
                Err(e) => (Err(e), None),
            },
        )
    }

    /// [`Queue::cancel_task`]; returns the task's status after the call.
    pub fn cancel_task(&self, now_ms: u64, task: TaskId) -> Result<TaskStatus, Error> {
        self.exclusive(
            now_ms,
            |_| vec![task],
            |q, now| (q.cancel_task(now, task).map(Task::status), None),
        )
    }

    /// [`Queue::revoke_agent`].
    pub fn revoke_agent(&self, now_ms: u64, agent: AgentId) -> Result<Vec<TaskId>, Error> {
        self.exclusive(
            now_ms,
            |q| {
                q.agent_tasks(agent)
                    .map(Iterator::collect)
                    .unwrap_or_default()
            },
            |q, now| (q.revoke_agent(now, agent), None),
        )
    }

    /// [`Queue::advance`]: applies every lease expiry and deadline up to `now_ms`.
    pub fn advance(&self, now_ms: u64) -> u64 {
        self.exclusive(now_ms, |_| Vec::new(), |q, now| (q.advance(now), None))
    }

    /// [`Queue::update_status`] from any thread: a heartbeat, in parallel with calls on other
    /// tasks.
    pub fn update_status(
        &self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Outcome, Error> {
        self.agent_call(now_ms, Call::Update, task, message, agent_key, task_key)
    }

    /// [`Queue::complete_task`] from any thread, in parallel with calls on other tasks.
    pub fn complete_task(
        &self,
        now_ms: u64,
        task: TaskId,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Outcome, Error> {
        self.agent_call(now_ms, Call::Complete, task, "", agent_key, task_key)
    }

    /// [`Queue::fail_task`] from any thread, in parallel with calls on other tasks.
    pub fn fail_task(
        &self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Outcome, Error> {
        self.agent_call(now_ms, Call::Fail, task, message, agent_key, task_key)
    }

    fn agent_call(
        &self,
        now_ms: u64,
        call: Call,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Outcome, Error> {
        if let Some(outcome) = self.try_shared(now_ms, call, task, message, agent_key, task_key) {
            return Ok(outcome);
        }
        {
            let mut pending = self.pending.0.lock();
            pending.paths.exclusive = pending.paths.exclusive.saturating_add(1);
        }
        self.exclusive(
            now_ms,
            |_| vec![task],
            |q, now| {
                let before = q.task(task).map(Task::status);
                let result = match call {
                    Call::Update => q.update_status(now, task, message, agent_key, task_key),
                    Call::Complete => q.complete_task(now, task, agent_key, task_key),
                    Call::Fail => q.fail_task(now, task, message, agent_key, task_key),
                };
                let outcome = result.map(|t| Outcome {
                    task,
                    status: t.status(),
                    repeated: call != Call::Update && before.is_some_and(TaskStatus::is_terminal),
                });
                (outcome, None)
            },
        )
    }

    /// The shared path: `Some` if the call was decided and appended to `pending`, `None` if
    /// it must take the exclusive path (see the module docs for when, and why this is exact).
    fn try_shared(
        &self,
        now_ms: u64,
        call: Call,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Option<Outcome> {
        if message.len() > self.max_message_len {
            return None;
        }
        let copy = (self.record_events && call != Call::Complete).then(|| Box::from(message));
        let message = message.to_owned();
        let mut shard = self.shard(task).lock();
        let entry = shard.get(&task)?;
        // Both comparisons, always (constant time whichever key is wrong).
        let agent_ok = entry.agent_key.matches(agent_key);
        let task_ok = entry.task_key.matches(task_key);
        if !(agent_ok & task_ok) {
            return None;
        }
        let status = call.status_after();
        {
            let mut pending = self.pending.0.lock();
            let now_ms = now_ms.max(pending.clock_ms);
            if pending.blocked
                || pending.events.len() >= MAX_PENDING
                || pending.next_due_ms.is_some_and(|due| due <= now_ms)
            {
                return None;
            }
            let event = call.event(task, message, now_ms, self.lease_ms);
            pending.events.push((event, copy));
            pending.clock_ms = now_ms;
            pending.paths.shared = pending.paths.shared.saturating_add(1);
            if status.is_terminal() {
                pending.entries = pending.entries.saturating_sub(1);
            }
        }
        if status.is_terminal() {
            shard.remove(&task);
        }
        Some(Outcome {
            task,
            status,
            repeated: false,
        })
    }

    #[allow(clippy::indexing_slicing)] // masked to below SHARDS, a power of two
    fn shard(&self, task: TaskId) -> &Mutex<FxHashMap<TaskId, Entry>> {
        &self.shards[(task.0 as usize) & (SHARDS - 1)].0
    }

    /// An operation on the queue under `core`, alongside the shared path: `touches` names the
    /// active tasks it may change besides those with a timer due (whose entries are removed
    /// first); `op` runs on the queue at the effective `now` and returns its result and the
    /// task it assigned, if any.
    fn exclusive<R>(
        &self,
        now_ms: u64,
        touches: impl FnOnce(&Queue) -> Vec<TaskId>,
        op: impl FnOnce(&mut Queue, u64) -> (R, Option<TaskId>),
    ) -> R {
        let mut core = self.core.lock();
        let now_ms = self.commit_pending(&mut core, Some(now_ms));
        // The tasks this operation may change while they are active: remove their entries,
        // then commit what the shared path decided on them before it saw the removal.
        let mut frozen = touches(&core.queue);
        frozen.extend(core.queue.timers_due_by(now_ms));
        let removed: usize = frozen
            .iter()
            .map(|id| usize::from(self.shard(*id).lock().remove(id).is_some()))
            .sum();
        if removed > 0 {
            self.commit_pending(&mut core, None);
        }
        let (out, assigned) = op(&mut core.queue, now_ms);
        // Entries for the tasks it left or made active: those it touched, and the one it
        // assigned.
        let mut added = 0usize;
        for id in frozen.into_iter().chain(assigned) {
            if let Some(entry) = entry_for(&core.queue, id)
                && self.shard(id).lock().insert(id, entry).is_none()
            {
                added += 1;
            }
        }
        let mut pending = self.pending.0.lock();
        pending.entries = pending
            .entries
            .saturating_add(added)
            .saturating_sub(removed);
        self.publish(&core.queue, &mut pending);
        out
    }

    /// Commits the pending events. With `Some(now)` (an operation about to run at `now`):
    /// returns the effective `now` (never before the latest time seen), moves the pending
    /// clock there, so that events decided while the operation runs come after its own, and
    /// lowers `next_due_ms` to the earliest timer the operation could create.
    fn commit_pending(&self, core: &mut Core, now_ms: Option<u64>) -> u64 {
        let Core { queue, spare } = core;
        let now_ms = {
            let mut pending = self.pending.0.lock();
            std::mem::swap(&mut pending.events, spare);
            let latest = pending.clock_ms.max(queue.clock_ms());
            if let Some(now_ms) = now_ms {
                let now_ms = now_ms.max(latest);
                pending.clock_ms = now_ms;
                let horizon = now_ms.saturating_add(self.min_timer_ms);
                pending.next_due_ms =
                    Some(pending.next_due_ms.map_or(horizon, |due| due.min(horizon)));
                now_ms
            } else {
                latest
            }
        };
        for (event, copy) in spare.drain(..) {
            queue.commit_prepared(event, copy);
        }
        now_ms
    }

    /// After an exclusive operation: the shared path's clock and timer bound from the queue.
    fn publish(&self, queue: &Queue, pending: &mut Pending) {
        pending.clock_ms = pending.clock_ms.max(queue.clock_ms());
        // The queue's timers are a lower bound of the true ones (pending events only move
        // them later or remove them).
        pending.next_due_ms = queue.next_deadline_ms();
    }
}

/// Unlocks the queue, then drops the tasks evicted meanwhile (freeing a finished task's
/// history is most of the cost of an eviction; no need to hold the lock for it).
fn release(mut core: MutexGuard<'_, Core>) {
    let dead = core.queue.graveyard.as_mut().map(std::mem::take);
    drop(core);
    drop(dead);
}

/// The entry for a task, if it is active (assigned or in progress) with a live holder.
fn entry_for(queue: &Queue, id: TaskId) -> Option<Entry> {
    let task = queue.task(id)?;
    if !task.status().is_active() {
        return None;
    }
    let assignment = task.assignment()?;
    Some(Entry {
        agent_key: queue.agents.get(&assignment.agent())?.key.clone(),
        task_key: assignment.task_key().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::SharedQueue;
    use crate::{ApplicationId, Config, KeySource, NewScan, Queue};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// While a guard is alive, an agent call that the shared path could otherwise decide
    /// waits for it (the guard's holder sees and changes a queue nobody else changes).
    #[test]
    fn a_guard_holds_agent_calls_until_it_drops() {
        let queue = Queue::new(Config::default(), KeySource::from_seed([3; 32])).unwrap();
        let shared = SharedQueue::new(queue);
        let agent = shared.register_agent(1_000).unwrap();
        let agent_key = agent.key.expose_secret();
        shared
            .queue_scan(1_000, NewScan::new(ApplicationId(1), "zap"))
            .unwrap();
        let task = shared
            .request_task(1_000, agent_key, &["zap"], "", Clone::clone)
            .unwrap()
            .unwrap();
        let task_key = task.assignment().unwrap().task_key().expose_secret();
        // The shared path decides this one.
        shared
            .update_status(1_001, task.id(), "a", agent_key, task_key)
            .unwrap();
        assert_eq!(shared.path_counts().shared, 1);

        let dropped = AtomicBool::new(false);
        std::thread::scope(|s| {
            let guard = shared.lock();
            let call = s.spawn(|| {
                shared
                    .update_status(1_002, task.id(), "b", agent_key, task_key)
                    .unwrap();
                dropped.load(Ordering::SeqCst)
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            dropped.store(true, Ordering::SeqCst);
            drop(guard);
            assert!(call.join().unwrap(), "the call was decided under the guard");
        });
        assert_eq!(shared.lock().task(task.id()).unwrap().history().len(), 4);
    }

    /// With no exclusive operation to commit it, the log stops at `MAX_PENDING` events: the
    /// calls after that take the exclusive path (which commits the log), and `read` sees
    /// every call committed.
    #[test]
    fn a_full_log_sends_calls_the_exclusive_way() {
        let queue = Queue::new(Config::default(), KeySource::from_seed([4; 32])).unwrap();
        let shared = SharedQueue::new(queue);
        let agent = shared.register_agent(1_000).unwrap();
        let agent_key = agent.key.expose_secret();
        shared
            .queue_scan(1_000, NewScan::new(ApplicationId(1), "zap"))
            .unwrap();
        let (id, task_key) = shared
            .request_task(1_000, agent_key, &["zap"], "", |t| {
                let key = t.assignment().unwrap().task_key();
                (t.id(), key.expose_secret().to_owned())
            })
            .unwrap()
            .unwrap();
        let calls = super::MAX_PENDING + 10;
        for i in 0..calls {
            shared
                .update_status(1_001 + i as u64, id, "scanning", agent_key, &task_key)
                .unwrap();
        }
        let paths = shared.path_counts();
        assert_eq!(paths.shared + paths.exclusive, calls as u64);
        // The first exclusive call committed the full log; the rest fit in the log again.
        assert_eq!(paths.exclusive, 1);
        let updates = shared.read(|q| q.stats().counters.status_updates);
        assert_eq!(updates, calls as u64);
    }
}
