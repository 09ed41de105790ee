//! Administrator operations on tasks: cancel (SPEC "cancel / delete").

use crate::error::Error;
use crate::event::Event;
use crate::ids::TaskId;
use crate::queue::Queue;
use crate::status::TaskStatus;
use crate::task::Task;

impl Queue {
    /// Cancels a task that has not finished: CompleteDeleted (ThreadFix `active: false`),
    /// whatever agent holds it (its later calls are refused). Cancelling a deleted task again
    /// answers the same; cancelling another finished task is [`Error::WrongState`].
    pub fn cancel_task(&mut self, now_ms: u64, task: TaskId) -> Result<&Task, Error> {
        let now_ms = self.advance(now_ms);
        let status = self
            .tasks
            .get(&task)
            .ok_or(Error::UnknownTask(task))?
            .status;
        if status == TaskStatus::CompleteDeleted {
            return self.tasks.get(&task).ok_or(Error::UnknownTask(task));
        }
        if status.is_terminal() {
            return Err(Error::WrongState { task, status });
        }
        self.commit(Event::TaskCancelled {
            task,
            at_ms: now_ms,
        });
        self.tasks.get(&task).ok_or(Error::UnknownTask(task))
    }
}
