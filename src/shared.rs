//! A queue that many threads can drive at once: the single-threaded [`Queue`] behind one
//! `std::sync::Mutex` (as quinn wraps quinn-proto).
//!
//! Why one lock and nothing cleverer: the queue's work per call is a few hundred nanoseconds
//! of index and allocator work on one working set, so every finer-grained design measured
//! here (per-task shard locks with an ordered log of agent calls, lazy timers, freeing evicted
//! tasks after unlocking) cost more instructions and more lock round trips than it won back
//! on two cores; BENCHMARKS.md ("Concurrent wrapper") has the figures. What the wrapper does
//! besides locking is keep the caller's work outside the lock: answers are small copies, and
//! events leave in batches ([`SharedQueue::drain_events`]) so that freeing them happens after
//! unlocking.
//!
//! What sharing costs: two threads calling it in turn run at about half one thread's rate, with
//! this lock or any other (a spin lock did worse): the queue's state moves between the cores'
//! caches at every call (BENCHMARKS.md, "Concurrent wrapper"). Where throughput matters, make
//! several calls under one [`SharedQueue::lock`], or let one thread own the queue and send it
//! the calls.
//!
//! The standard library's mutex, not `parking_lot`'s (which the server uses): measured in the
//! same runs, with more threads than cores it lets the holder run several operations while the
//! others sleep, where `parking_lot`'s hands the lock over more often (4 threads on 2 cores:
//! 1 469–1 951 against 2 731–3 030 ns per lifecycle); with 1 and 2 threads they are equal.
//! A poisoned lock (a panic inside the core, which its lints forbid) is taken as it is, as
//! `parking_lot` would.

use crate::agent::RegisteredAgent;
use crate::agent_call::Answer;
use crate::error::Error;
use crate::event::Event;
use crate::ids::{AgentId, TaskId};
use crate::queue::Queue;
use crate::scan::NewScan;
use crate::status::TaskStatus;
use crate::task::Task;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A [`Queue`] that many threads drive at once: `Send + Sync`, operations from `&self`,
/// each one atomic. [`lock`](SharedQueue::lock) gives the plain queue for anything else.
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
///             for i in 0..10 {
///                 shared.update_status(2_000 + i, task.id(), "scanning", agent_key, task_key).unwrap();
///             }
///             let done = shared.complete_task(3_000, task.id(), agent_key, task_key).unwrap();
///             assert_eq!(*done, TaskStatus::CompleteSuccessful);
///             assert!(!done.is_repeat());
///         });
///     }
/// });
/// let mut queue = shared.lock();
/// assert_eq!(queue.stats().count(TaskStatus::CompleteSuccessful), 2);
/// assert_eq!(queue.drain_events().count(), 28);
/// ```
#[derive(Debug)]
pub struct SharedQueue {
    queue: Mutex<Queue>,
}

impl SharedQueue {
    /// Wraps a queue.
    pub fn new(queue: Queue) -> SharedQueue {
        SharedQueue {
            queue: Mutex::new(queue),
        }
    }

    /// The plain queue, for any operation or read; every other call waits until the guard
    /// drops. Keep it briefly.
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the queue under the lock.
    pub fn read<R>(&self, f: impl FnOnce(&Queue) -> R) -> R {
        f(&self.lock())
    }

    /// Unwraps the queue.
    pub fn into_inner(self) -> Queue {
        self.queue
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves every event produced so far into `into`, oldest first, for a journal. The
    /// caller drops them after the lock is released.
    pub fn drain_events(&self, into: &mut Vec<Event>) {
        into.extend(self.lock().drain_events());
    }

    /// [`Queue::queue_scan`]; returns the new task's id.
    pub fn queue_scan(&self, now_ms: u64, scan: NewScan<'_>) -> Result<TaskId, Error> {
        self.lock().queue_scan(now_ms, scan).map(Task::id)
    }

    /// [`Queue::register_agent`].
    pub fn register_agent(&self, now_ms: u64) -> Result<RegisteredAgent, Error> {
        self.lock().register_agent(now_ms)
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
        let mut queue = self.lock();
        let task = queue.request_task(now_ms, agent_key, scanners, agent_config)?;
        Ok(task.map(read))
    }

    /// [`Queue::cancel_task`]; returns the task's status after the call.
    pub fn cancel_task(&self, now_ms: u64, task: TaskId) -> Result<TaskStatus, Error> {
        self.lock().cancel_task(now_ms, task).map(Task::status)
    }

    /// [`Queue::revoke_agent`].
    pub fn revoke_agent(&self, now_ms: u64, agent: AgentId) -> Result<Vec<TaskId>, Error> {
        self.lock().revoke_agent(now_ms, agent)
    }

    /// [`Queue::advance`]: applies every lease expiry and deadline up to `now_ms`.
    pub fn advance(&self, now_ms: u64) -> u64 {
        self.lock().advance(now_ms)
    }

    /// [`Queue::update_status`]; answers with the task's status after the call.
    pub fn update_status(
        &self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<TaskStatus>, Error> {
        let mut queue = self.lock();
        let answer = queue.update_status(now_ms, task, message, agent_key, task_key)?;
        Ok(answer.map(Task::status))
    }

    /// [`Queue::complete_task`]; answers with the task's status after the call.
    pub fn complete_task(
        &self,
        now_ms: u64,
        task: TaskId,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<TaskStatus>, Error> {
        let mut queue = self.lock();
        let answer = queue.complete_task(now_ms, task, agent_key, task_key)?;
        Ok(answer.map(Task::status))
    }

    /// [`Queue::fail_task`]; answers with the task's status after the call.
    pub fn fail_task(
        &self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<TaskStatus>, Error> {
        let mut queue = self.lock();
        let answer = queue.fail_task(now_ms, task, message, agent_key, task_key)?;
        Ok(answer.map(Task::status))
    }
}
