//! A queue that many threads can drive at once.

use crate::queue::Queue;
use parking_lot::{Mutex, MutexGuard};

/// A [`Queue`] behind a `parking_lot` mutex: `Send + Sync`, operations from `&self`.
///
/// Each operation runs in one short critical section on the single-threaded core, so every
/// transition stays atomic (one task, one agent) and the events come out in one total order.
///
/// ```
/// use scan_queue::{Config, KeySource, Queue, SharedQueue};
/// let shared = SharedQueue::new(Queue::new(Config::default(), KeySource::from_seed([0; 32])).unwrap());
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| shared.lock().register_agent(0).unwrap());
///     }
/// });
/// assert_eq!(shared.lock().stats().agents, 2);
/// ```
#[derive(Debug)]
pub struct SharedQueue {
    inner: Mutex<Queue>,
}

impl SharedQueue {
    /// Wraps a queue.
    pub fn new(queue: Queue) -> SharedQueue {
        SharedQueue {
            inner: Mutex::new(queue),
        }
    }

    /// Locks the queue for one or more operations. Keep the guard briefly.
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.inner.lock()
    }

    /// Unwraps the queue.
    pub fn into_inner(self) -> Queue {
        self.inner.into_inner()
    }
}
