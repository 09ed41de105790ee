//! A queue that many threads can drive at once.
//!
//! # Locking design
//!
//! Two locks, always taken in this order: `core` (a `parking_lot::RwLock<Queue>`), then
//! `pending` (a `parking_lot::Mutex`).
//!
//! - **Shared path** (`core` read-locked): [`SharedQueue::update_status`],
//!   [`complete_task`](SharedQueue::complete_task) and [`fail_task`](SharedQueue::fail_task).
//!   The call is checked against the queue with the same key checks as [`Queue`]'s own
//!   methods, its event is built by the same code, and it is appended to `pending` — the
//!   linearization point — under the short `pending` lock, which also holds the clock and
//!   the tasks that pending events have finished. The indexes are not touched, so calls on
//!   different tasks overlap everywhere but in that append.
//! - **Exclusive path** (`core` write-locked): [`SharedQueue::lock`] first commits the pending
//!   events to the queue, in the order they were appended, through `Queue::commit` (the one
//!   function that mutates state, as for every other operation and for replay), then hands
//!   out the queue. Queueing, assignment (one task, one agent, oldest first), cancel, revoke,
//!   registration, time advancing and every read go this way, as does any agent call the
//!   shared path cannot decide.
//!
//! The shared path decides only the common case, and leaves everything else to the exclusive
//! path, which runs the plain [`Queue`] method and so answers exactly as the single-threaded
//! queue does: a call that fails a check (it is then refused, counted, and answered with the
//! error in the documented order), a repeat of a finishing call, a call on a task that a
//! pending event has finished, a call at an instant when a lease or a deadline is due (expiry
//! must run first, in time order), or a full `pending` ([`MAX_PENDING`] events).
//!
//! Why the shared path is exact: pending events are only status updates, completions and
//! failures of active tasks. None of them changes an agent, a key, a holder or a task's
//! existence, so the key checks made on the queue give the answer they would give after the
//! pending events; the one thing they change that matters — a task finished — is in
//! `pending`. They only move leases later or remove timers, so the queue's next timer is never
//! later than the true one, and "nothing due by now" on the queue means nothing is due. Time
//! is taken inside `pending` (the latest of `now`, the queue's clock and the last pending
//! event's), so events are appended in time order, as a journal must be.
//!
//! Each event reaches [`Queue::poll_event`] when it is committed, i.e. at the next
//! [`lock`](SharedQueue::lock); events come out in one total order that replays to the same
//! state on a single-threaded queue.

use crate::agent_call::Call;
use crate::error::Error;
use crate::event::Event;
use crate::hash::FxHashSet;
use crate::ids::TaskId;
use crate::queue::Queue;
use crate::status::TaskStatus;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

/// The most events the shared path holds before a call takes the exclusive path (which
/// commits them): bounds the memory and the work of the next [`SharedQueue::lock`].
pub const MAX_PENDING: usize = 4096;

/// A [`Queue`] that many threads drive at once: `Send + Sync`, operations from `&self`.
///
/// Status updates (heartbeats), completions and failures of different tasks run in parallel
/// under a shared lock; everything else takes [`lock`](SharedQueue::lock), an exclusive lock
/// that gives the plain `Queue`. Either way every transition is atomic (one task, one agent),
/// expiry is exact, and the events come out in one total order. The module docs of
/// `shared.rs` (and ARCHITECTURE.md) give the locking design.
///
/// ```
/// use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, SharedQueue, TaskStatus};
/// let shared = SharedQueue::new(Queue::new(Config::default(), KeySource::from_seed([0; 32])).unwrap());
/// let zap = "OWASP Zed Attack Proxy";
/// // Set up under the exclusive lock: two agents, each holding one task.
/// let held: Vec<_> = (0..2)
///     .map(|_| {
///         let mut q = shared.lock();
///         q.queue_scan(1_000, NewScan::new(ApplicationId(1), zap)).unwrap();
///         let agent = q.register_agent(1_000).unwrap().key.expose_secret().to_owned();
///         let task = q.request_task(1_000, &agent, &[zap], "").unwrap().unwrap();
///         let task_key = task.assignment().unwrap().task_key().expose_secret().to_owned();
///         (task.id(), agent, task_key)
///     })
///     .collect();
/// // Heartbeats and completions of the two tasks run in parallel.
/// std::thread::scope(|s| {
///     for (id, agent, task_key) in &held {
///         let shared = &shared;
///         s.spawn(move || {
///             for i in 0..10 {
///                 shared.update_status(2_000 + i, *id, "scanning", agent, task_key).unwrap();
///             }
///             let done = shared.complete_task(3_000, *id, agent, task_key).unwrap();
///             assert_eq!(done.status, TaskStatus::CompleteSuccessful);
///         });
///     }
/// });
/// assert_eq!(shared.lock().stats().count(TaskStatus::CompleteSuccessful), 2);
/// ```
pub struct SharedQueue {
    core: RwLock<Queue>,
    pending: Mutex<Pending>,
}

/// Events decided under the shared lock and not yet committed.
#[derive(Default)]
struct Pending {
    /// The time of the last pending event (0 when none).
    clock_ms: u64,
    /// In the order decided (the linearization order).
    events: Vec<Event>,
    /// Tasks a pending completion or failure finished.
    finished: FxHashSet<TaskId>,
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

impl std::fmt::Debug for SharedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQueue")
            .field("pending", &self.pending.lock().events.len())
            .finish_non_exhaustive()
    }
}

impl SharedQueue {
    /// Wraps a queue.
    pub fn new(queue: Queue) -> SharedQueue {
        SharedQueue {
            core: RwLock::new(queue),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Locks the queue exclusively, for any operation or read, after committing the events
    /// the shared path has decided (so the queue is up to date, and their events are ready
    /// for [`Queue::poll_event`]). Keep the guard briefly.
    pub fn lock(&self) -> RwLockWriteGuard<'_, Queue> {
        let mut queue = self.core.write();
        let mut pending = self.pending.lock();
        for event in pending.events.drain(..) {
            queue.commit(event);
        }
        pending.finished.clear();
        pending.clock_ms = 0;
        drop(pending);
        queue
    }

    /// Unwraps the queue, with every pending event committed.
    pub fn into_inner(self) -> Queue {
        let SharedQueue { core, pending } = self;
        let mut queue = core.into_inner();
        for event in pending.into_inner().events {
            queue.commit(event);
        }
        queue
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
        let mut queue = self.lock();
        let before = queue.task(task).map(|t| t.status());
        let result = match call {
            Call::Update => queue.update_status(now_ms, task, message, agent_key, task_key),
            Call::Complete => queue.complete_task(now_ms, task, agent_key, task_key),
            Call::Fail => queue.fail_task(now_ms, task, message, agent_key, task_key),
        };
        let status = result?.status();
        Ok(Outcome {
            task,
            status,
            repeated: call != Call::Update && before.is_some_and(TaskStatus::is_terminal),
        })
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
        let queue = self.core.read();
        if !queue.passes_agent_call(call, task, message, agent_key, task_key) {
            return None;
        }
        let due_ms = queue.next_timer().map(|(at_ms, _)| at_ms);
        let lease_ms = queue.config.lease_ms;
        let message = message.to_owned();
        let mut pending = self.pending.lock();
        let now_ms = now_ms.max(queue.clock_ms).max(pending.clock_ms);
        if pending.events.len() >= MAX_PENDING
            || due_ms.is_some_and(|due| due <= now_ms)
            || pending.finished.contains(&task)
        {
            return None;
        }
        let status = call.status_after();
        if status.is_terminal() {
            pending.finished.insert(task);
        }
        pending
            .events
            .push(call.event(task, message, now_ms, lease_ms));
        pending.clock_ms = now_ms;
        Some(Outcome {
            task,
            status,
            repeated: false,
        })
    }
}
