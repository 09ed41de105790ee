//! The calls an agent makes on a task it holds: status update, complete, fail (SPEC §3),
//! and the key checks they share ("Key checks on every agent transition").

use crate::error::{Bound, Error};
use crate::event::{Event, shared};
use crate::ids::{AgentId, TaskId};
use crate::queue::Queue;
use crate::status::TaskStatus;
use crate::task::Task;

/// Which agent call is being made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Update,
    Complete,
    Fail,
}

impl Call {
    /// The terminal status this call leads to, for recognizing a retry of it.
    fn terminal_status(self) -> Option<TaskStatus> {
        match self {
            Call::Update => None,
            Call::Complete => Some(TaskStatus::CompleteSuccessful),
            Call::Fail => Some(TaskStatus::CompleteFailed),
        }
    }

    /// The event a passed call commits at `now_ms` (already advanced to).
    fn event(self, task: TaskId, message: &str, now_ms: u64, lease_ms: u64) -> Event {
        match self {
            Call::Update => Event::StatusUpdated {
                task,
                message: shared(message),
                at_ms: now_ms,
                lease_until_ms: now_ms.saturating_add(lease_ms),
            },
            Call::Complete => Event::TaskCompleted {
                task,
                at_ms: now_ms,
            },
            Call::Fail => Event::TaskFailed {
                task,
                reason: shared(message),
                at_ms: now_ms,
            },
        }
    }
}

/// What an agent call did: applied it, or recognized the repeat of the same finishing call
/// that already succeeded with the same keys (a retry after a lost answer), which changes
/// nothing and answers as then. Either way it holds the answer (`Deref` reaches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    /// The call changed the task.
    Applied(T),
    /// The call repeated the completion or failure that finished the task.
    Repeated(T),
}

impl<T> Answer<T> {
    /// True for [`Answer::Repeated`].
    pub fn is_repeat(&self) -> bool {
        matches!(self, Answer::Repeated(_))
    }

    /// The answer itself.
    pub fn into_inner(self) -> T {
        match self {
            Answer::Applied(t) | Answer::Repeated(t) => t,
        }
    }

    /// The same kind of answer, with `f` applied to what it holds.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        match self {
            Answer::Applied(t) => Answer::Applied(f(t)),
            Answer::Repeated(t) => Answer::Repeated(f(t)),
        }
    }
}

impl<T> std::ops::Deref for Answer<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Answer::Applied(t) | Answer::Repeated(t) => t,
        }
    }
}

impl Queue {
    /// The agent reports progress: the message is appended verbatim to the task's history,
    /// Assigned becomes InProgress, and the lease is renewed to `now + lease` (a heartbeat).
    /// ThreadFix answers `"Successfully updated ScanQueueTask"`.
    ///
    /// Errors: [`Error::BoundExceeded`] for a too long message, and the key-check errors
    /// (see [`complete_task`](Queue::complete_task)).
    pub fn update_status(
        &mut self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<&Task>, Error> {
        self.agent_call(now_ms, Call::Update, task, message, agent_key, task_key)
    }

    /// The agent completes the task: CompleteSuccessful, `endTime = now`, status message
    /// `Scan completed successfully at: …`. Storing the result file is the embedder's job.
    ///
    /// Repeating the call with the same keys after it succeeded returns the same task again
    /// (a retry after a lost response); any other call on a finished task is refused.
    ///
    /// Errors, in the order checked: [`Error::InvalidAgentKey`] (not a live key),
    /// [`Error::UnknownTask`], [`Error::WrongState`] (not Assigned/InProgress),
    /// [`Error::LeaseExpired`] (this agent's lease ran out and the task was taken back),
    /// [`Error::NotTaskHolder`] (another agent holds it), [`Error::InvalidTaskKey`] (wrong or
    /// stale task key).
    pub fn complete_task(
        &mut self,
        now_ms: u64,
        task: TaskId,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<&Task>, Error> {
        self.agent_call(now_ms, Call::Complete, task, "", agent_key, task_key)
    }

    /// The agent reports failure: CompleteFailed, `endTime = now`, and the status message
    /// (also ThreadFix's answer, see [`Task::failure_message`]) `ScanAgent reported that the
    /// scan task: {id} had failed client-side for the following reason: {message}`.
    ///
    /// Errors and retries as [`complete_task`](Queue::complete_task), plus
    /// [`Error::BoundExceeded`] for a too long message. A repeated call answers with the
    /// reason first recorded.
    pub fn fail_task(
        &mut self,
        now_ms: u64,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<&Task>, Error> {
        self.agent_call(now_ms, Call::Fail, task, message, agent_key, task_key)
    }

    /// Checks, changing nothing, whether [`complete_task`](Queue::complete_task) with these
    /// keys would be refused now: what an embedder asks before it stores the result file, so
    /// that a call with wrong keys costs no disk. `Ok` also for a retry of the call that
    /// finished the task (completed, or failed by the embedder after refusing its file) by
    /// the same keys. A lease that ran out but was not yet taken back passes; the call
    /// itself then refuses it.
    pub fn check_completion(
        &self,
        task: TaskId,
        agent_key: &str,
        task_key: &str,
    ) -> Result<(), Error> {
        match self.check_agent_call(task, agent_key, task_key, Call::Complete) {
            Err(Error::WrongState {
                status: TaskStatus::CompleteFailed,
                ..
            }) if self.agent_for_key(agent_key).is_some_and(|agent| {
                self.tasks.get(&task).is_some_and(|t| {
                    t.assignment
                        .as_ref()
                        .is_some_and(|a| a.agent == agent && a.task_key.matches(task_key))
                })
            }) =>
            {
                Ok(())
            }
            checked => checked.map(|_| ()),
        }
    }

    /// The three agent calls: advance time, check, commit the call's event.
    fn agent_call(
        &mut self,
        now_ms: u64,
        call: Call,
        task: TaskId,
        message: &str,
        agent_key: &str,
        task_key: &str,
    ) -> Result<Answer<&Task>, Error> {
        let now_ms = self.advance(now_ms);
        self.check_len(message, self.config.max_message_len, Bound::MessageLen)?;
        let checked = self.check_agent_call(task, agent_key, task_key, call);
        let repeat = self.note_rejection(checked)?;
        if !repeat {
            let event = call.event(task, message, now_ms, self.config.lease_ms);
            self.commit(event);
        }
        let task = self.tasks.get(&task).ok_or(Error::UnknownTask(task))?;
        Ok(if repeat {
            Answer::Repeated(task)
        } else {
            Answer::Applied(task)
        })
    }

    /// The key checks every agent call passes; true if the call repeats the one that finished
    /// the task. Time has already been advanced, so a lease that ran out by `now` has already
    /// been taken back.
    fn check_agent_call(
        &self,
        id: TaskId,
        agent_key: &str,
        task_key: &str,
        call: Call,
    ) -> Result<bool, Error> {
        let agent = self
            .agent_for_key(agent_key)
            .ok_or(Error::InvalidAgentKey)?;
        let task = self.tasks.get(&id).ok_or(Error::UnknownTask(id))?;
        let lost_lease = || task.lease_lost_by.as_deref() == Some(&agent);
        let holds = |a: AgentId| a == agent;
        let wrong_state = Error::WrongState {
            task: id,
            status: task.status,
        };
        if !task.status.is_active() {
            // A retry of the call that finished the task, with the keys that made it.
            if task.status.is_terminal()
                && call.terminal_status() == Some(task.status)
                && let Some(a) = &task.assignment
                && holds(a.agent)
                && a.task_key.matches(task_key)
            {
                return Ok(true);
            }
            return Err(if lost_lease() {
                Error::LeaseExpired { task: id }
            } else {
                wrong_state
            });
        }
        let Some(assignment) = &task.assignment else {
            return Err(Error::Inconsistent(format!(
                "active task {id} has no assignment"
            )));
        };
        if !holds(assignment.agent) {
            return Err(if lost_lease() {
                Error::LeaseExpired { task: id }
            } else {
                Error::NotTaskHolder { task: id }
            });
        }
        if !assignment.task_key.matches(task_key) {
            return Err(Error::InvalidTaskKey { task: id });
        }
        Ok(false)
    }
}
