//! Where tasks live: a dense slab indexed by id, with a small map for stragglers.
//!
//! Task ids are given out in order from 1 and tasks leave roughly in order (finished tasks are
//! evicted oldest first), so the retained ids form an almost dense window. The slab holds that
//! window as a `VecDeque` of boxed tasks, slot `i` being task `base + i`: a lookup is a
//! subtraction and an index, with no hashing and no probing, and the oldest queued task (taken
//! on every request) sits next to its neighbours. An empty slot costs 8 bytes.
//!
//! A task that stays long while many later ones come and go (a scan nobody serves, kept until
//! its deadline) would leave a long run of empty slots behind it; when empty slots outnumber
//! live ones (plus a fixed allowance), the oldest live tasks move to the straggler map instead,
//! so memory stays linear in the number of tasks whatever the ids. Ids far past the window (a
//! crafted snapshot) are handled the same way, never by allocating the gap. Every straggler's
//! id is below the slab's, so the store reads in id order (stragglers, then the slab): the
//! Tasks page lists from it directly, with no per-status index to keep.

use crate::ids::TaskId;
use crate::task::Task;
use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};

/// Empty slots always tolerated in the slab, on top of one per live task in it.
const SLACK: usize = 1024;

/// Every retained task, by id.
#[derive(Default)]
pub(crate) struct TaskStore {
    /// The id of `slots[0]`.
    base: u64,
    /// Tasks `base`, `base + 1`, ...; never starts with an empty slot.
    slots: VecDeque<Option<Box<Task>>>,
    /// Live tasks in `slots`.
    in_slots: usize,
    /// Tasks not in the slab (left behind by it, see the module docs), all with ids below
    /// `base` while the slab is not empty. An id is in at most one of the two places.
    stragglers: BTreeMap<TaskId, Box<Task>>,
}

impl TaskStore {
    /// The number of tasks.
    pub(crate) fn len(&self) -> usize {
        self.in_slots + self.stragglers.len()
    }

    /// The slot index of `id`, if it is inside the slab's window.
    fn slot(&self, id: TaskId) -> Option<usize> {
        let offset = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        (offset < self.slots.len()).then_some(offset)
    }

    /// A task by id.
    #[inline]
    pub(crate) fn get(&self, id: &TaskId) -> Option<&Task> {
        if let Some(i) = self.slot(*id)
            && let Some(Some(task)) = self.slots.get(i)
        {
            return Some(task);
        }
        if self.stragglers.is_empty() {
            return None;
        }
        self.stragglers.get(id).map(|t| &**t)
    }

    /// A task by id, to change it.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        if let Some(i) = self.slot(*id)
            && let Some(Some(_)) = self.slots.get(i)
        {
            return self.slots.get_mut(i)?.as_deref_mut();
        }
        if self.stragglers.is_empty() {
            return None;
        }
        self.stragglers.get_mut(id).map(|t| &mut **t)
    }

    /// Whether a task with this id is retained.
    pub(crate) fn contains_key(&self, id: &TaskId) -> bool {
        self.get(id).is_some()
    }

    /// Stores a task under `id`, replacing any task stored under it.
    pub(crate) fn insert(&mut self, id: TaskId, task: Box<Task>) {
        // The usual case, a new task right after the last one: ≈ 60 instructions of the
        // checks below less per queued task (BENCHMARKS.md).
        if !self.slots.is_empty() && Some(id.0) == self.base.checked_add(self.slots.len() as u64) {
            self.slots.push_back(Some(task));
            self.in_slots += 1;
            return;
        }
        if self.slots.is_empty() {
            // Stragglers stay below the slab: an id below one of them joins them.
            if self
                .stragglers
                .last_key_value()
                .is_some_and(|(s, _)| *s > id)
            {
                self.stragglers.insert(id, task);
                return;
            }
            self.base = id.0;
        }
        if let Some(i) = self.slot(id) {
            if !self.stragglers.is_empty() {
                self.stragglers.remove(&id);
            }
            if let Some(slot) = self.slots.get_mut(i) {
                if slot.is_none() {
                    self.in_slots += 1;
                }
                *slot = Some(task);
            }
            return;
        }
        if id.0 < self.base {
            self.stragglers.insert(id, task);
            return;
        }
        // Past the end of the window: fill the gap with empty slots, unless the gap is long,
        // in which case the whole slab moves to the stragglers and the window starts at `id`.
        let end = self.base.saturating_add(self.slots.len() as u64);
        let gap = id.0.saturating_sub(end);
        if gap > (self.in_slots + SLACK) as u64 {
            let base = self.base;
            for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
                if let Some(t) = slot {
                    self.stragglers
                        .insert(TaskId(base.saturating_add(i as u64)), t);
                }
            }
            self.in_slots = 0;
            self.base = id.0;
        } else {
            // `gap` is at most `in_slots + SLACK`, so it fits a usize.
            let gap = usize::try_from(gap).unwrap_or(0);
            self.slots.extend(std::iter::repeat_with(|| None).take(gap));
        }
        if !self.stragglers.is_empty() {
            self.stragglers.remove(&id);
        }
        self.slots.push_back(Some(task));
        self.in_slots += 1;
    }

    /// Takes a task out.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, id: &TaskId) -> Option<Task> {
        self.take(id).map(|t| *t)
    }

    /// Takes a task out, still boxed (so that it can be dropped elsewhere).
    pub(crate) fn take(&mut self, id: &TaskId) -> Option<Box<Task>> {
        if let Some(i) = self.slot(*id)
            && let Some(slot) = self.slots.get_mut(i)
            && let Some(task) = slot.take()
        {
            self.in_slots -= 1;
            self.trim_front();
            return Some(task);
        }
        self.stragglers.remove(id)
    }

    /// Keeps the slab dense: drops empty slots at the front, and moves the oldest live tasks
    /// to the stragglers while empty slots outnumber live ones past the allowance.
    fn trim_front(&mut self) {
        loop {
            match self.slots.front() {
                Some(None) => {
                    self.slots.pop_front();
                    self.base = self.base.saturating_add(1);
                }
                Some(Some(_)) if self.slots.len() - self.in_slots > self.in_slots + SLACK => {
                    if let Some(Some(t)) = self.slots.pop_front() {
                        self.stragglers.insert(TaskId(self.base), t);
                        self.in_slots -= 1;
                    }
                    self.base = self.base.saturating_add(1);
                }
                _ => break,
            }
        }
    }

    /// Every task with its id, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> + '_ {
        self.range(..)
    }

    /// The tasks with an id in `range`, in id order; an inverted range is empty.
    pub(crate) fn range(
        &self,
        range: impl RangeBounds<TaskId>,
    ) -> impl DoubleEndedIterator<Item = (TaskId, &Task)> + '_ {
        // As offsets from `base`: [start, end).
        let offset = |id: u64| id.saturating_sub(self.base).min(self.slots.len() as u64);
        let start = match range.start_bound() {
            Bound::Included(id) => id.0,
            Bound::Excluded(id) => id.0.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(id) => id.0.saturating_add(1),
            Bound::Excluded(id) => id.0,
            Bound::Unbounded => u64::MAX,
        };
        let end = end.max(start);
        // Both fit a usize: they are at most `slots.len()`.
        let (first, last) = (offset(start), offset(end));
        let base = self.base.saturating_add(first);
        let slab = self.slots.range(first as usize..last as usize).enumerate();
        self.stragglers
            .range(TaskId(start)..TaskId(end))
            .map(|(id, t)| (*id, &**t))
            .chain(slab.filter_map(move |(i, t)| {
                Some((TaskId(base.saturating_add(i as u64)), t.as_deref()?))
            }))
    }

    /// Gives memory back after a burst: storage at a quarter of its use halves (amortized
    /// O(1) per removal, since half the entries must go again before the next shrink).
    pub(crate) fn shrink(&mut self) {
        if self.slots.capacity() > 4 * self.slots.len() + SLACK {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SLACK, TaskStore};
    use crate::ids::{ApplicationId, TaskId};
    use crate::status::TaskStatus;
    use crate::task::Task;
    use std::collections::BTreeMap;

    fn task(id: u64) -> Task {
        Task {
            id: TaskId(id),
            application: ApplicationId(1),
            scanner: "zap".into(),
            slot: Default::default(),
            target_url: None,
            scan_config: None,
            status: TaskStatus::Queued,
            create_ms: id,
            start_ms: None,
            end_ms: None,
            timeout_ms: 0,
            attempts: 0,
            assignment: None,
            lease_lost_by: None,
            history: Vec::new(),
        }
    }

    fn same(store: &TaskStore, model: &BTreeMap<u64, u64>) {
        assert_eq!(store.len(), model.len());
        // In id order, whole and by range, both ways.
        let ids: Vec<u64> = store.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, model.keys().copied().collect::<Vec<_>>());
        if let (Some(&lo), Some(&hi)) = (model.keys().nth(model.len() / 3), model.keys().last()) {
            let ranged: Vec<u64> = store
                .range(TaskId(lo)..TaskId(hi))
                .rev()
                .map(|(id, _)| id.0)
                .collect();
            let expected: Vec<u64> = model.range(lo..hi).rev().map(|(id, _)| *id).collect();
            assert_eq!(ranged, expected);
            assert_eq!(store.range(TaskId(hi)..TaskId(lo)).count(), 0);
        }
        for (id, create) in model {
            assert_eq!(store.get(&TaskId(*id)).map(|t| t.create_ms), Some(*create));
        }
        // Memory stays linear in the number of tasks, whatever the ids.
        assert!(store.slots.len() <= 2 * store.in_slots + SLACK + 1);
    }

    /// Against a `BTreeMap`: mostly sequential inserts and roughly ordered removals, with
    /// stragglers that stay, out-of-order and far-away ids (as a crafted snapshot has).
    #[test]
    fn matches_a_map() {
        let mut store = TaskStore::default();
        let mut model = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut next = 1u64;
        for step in 0..60_000u64 {
            match rand(10) {
                0..=4 => {
                    store.insert(TaskId(next), Box::new(task(next)));
                    model.insert(next, next);
                    next += 1;
                }
                5..=7 => {
                    // Remove one of the oldest, but leave every 97th task behind for long.
                    if let Some(&id) = model.keys().find(|id| *id % 97 != 0 || step % 5000 == 0) {
                        assert_eq!(
                            store.remove(&TaskId(id)).map(|t| t.create_ms),
                            model.get(&id).copied()
                        );
                        model.remove(&id);
                    }
                }
                8 => {
                    let id = rand(next + 10);
                    assert_eq!(
                        store.remove(&TaskId(id)).is_some(),
                        model.remove(&id).is_some()
                    );
                }
                _ => {
                    let id = if rand(50) == 0 {
                        next + 5_000 + rand(1 << 40)
                    } else {
                        rand(next + 1)
                    };
                    store.insert(TaskId(id), Box::new(task(id + 1)));
                    model.insert(id, id + 1);
                    next = next.max(id + 1);
                }
            }
            if step % 997 == 0 {
                same(&store, &model);
                store.shrink();
            }
        }
        same(&store, &model);
        let ids: Vec<u64> = model.keys().copied().collect();
        for id in ids {
            assert!(store.remove(&TaskId(id)).is_some());
        }
        assert_eq!(store.len(), 0);
        assert!(store.get(&TaskId(1)).is_none());
    }
}
