//! The result records: one per completed task that kept its file, indexed for an
//! application's listing, with the totals `/metrics` shows and the choice of what retention
//! deletes.

use super::{ApplyError, ResultRecord};
use scan_queue::{ApplicationId, Queue, TaskId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How long results are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete a result this long after it was received (`None`: no age limit).
    pub max_age_ms: Option<u64>,
    /// Keep at most this many results per application, deleting the oldest tasks' first
    /// (`None`: no count limit).
    pub per_application: Option<usize>,
}

/// The result records.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Results {
    by_task: BTreeMap<TaskId, Arc<ResultRecord>>,
    /// (application, task) of every record: an application's results in task order.
    by_application: BTreeSet<(ApplicationId, TaskId)>,
    /// Bytes of every result file.
    bytes: u64,
}

impl Results {
    pub(crate) fn get(&self, task: TaskId) -> Option<&Arc<ResultRecord>> {
        self.by_task.get(&task)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<ResultRecord>> + '_ {
        self.by_task.values()
    }

    /// How many there are, and their bytes.
    pub(crate) fn totals(&self) -> (usize, u64) {
        (self.by_task.len(), self.bytes)
    }

    pub(crate) fn insert(&mut self, result: Arc<ResultRecord>) -> Result<(), ApplyError> {
        if self.by_task.contains_key(&result.task) {
            return Err(ApplyError::Fact(format!(
                "a second result for task {}",
                result.task
            )));
        }
        self.by_application
            .insert((result.application, result.task));
        self.bytes = self.bytes.saturating_add(result.size);
        self.by_task.insert(result.task, result);
        Ok(())
    }

    pub(crate) fn remove(&mut self, task: TaskId) -> Option<Arc<ResultRecord>> {
        let result = self.by_task.remove(&task)?;
        self.by_application
            .remove(&(result.application, result.task));
        self.bytes = self.bytes.saturating_sub(result.size);
        Some(result)
    }

    /// An application's results, newest task first, after `before` (a task id, exclusive),
    /// at most `limit`; and whether more follow.
    pub(crate) fn of_application(
        &self,
        application: ApplicationId,
        before: Option<TaskId>,
        limit: usize,
    ) -> (Vec<Arc<ResultRecord>>, bool) {
        let end = before.unwrap_or(TaskId(u64::MAX));
        let mut found = self
            .by_application
            .range((application, TaskId(0))..(application, end))
            .rev()
            .filter_map(|(_, task)| self.by_task.get(task).cloned());
        let page: Vec<_> = found.by_ref().take(limit).collect();
        let more = found.next().is_some();
        (page, more)
    }

    /// What retention deletes at `now_ms`, at most `max`: results whose task has been
    /// evicted from the queue, results older than the age limit, and each application's
    /// oldest beyond the count limit.
    pub(crate) fn due(
        &self,
        queue: &Queue,
        retention: Retention,
        now_ms: u64,
        max: usize,
    ) -> Vec<TaskId> {
        let expired = self.by_task.values().filter(|r| {
            queue.task(r.task).is_none()
                || retention
                    .max_age_ms
                    .is_some_and(|age| r.received_ms.saturating_add(age) <= now_ms)
        });
        let mut due: BTreeSet<TaskId> = expired.map(|r| r.task).take(max).collect();
        if let Some(keep) = retention.per_application {
            let mut apps = self.by_application.iter().peekable();
            while let Some(&&(app, _)) = apps.peek() {
                let tasks: Vec<TaskId> = std::iter::from_fn(|| apps.next_if(|(a, _)| *a == app))
                    .map(|(_, t)| *t)
                    .collect();
                let live: Vec<TaskId> = tasks.into_iter().filter(|t| !due.contains(t)).collect();
                let over = live.len().saturating_sub(keep);
                due.extend(live.into_iter().take(over));
            }
        }
        due.into_iter().take(max).collect()
    }
}
