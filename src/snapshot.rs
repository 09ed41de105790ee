//! Snapshots of the whole queue, restore, and the invariant check both rely on.

use crate::config::Config;
use crate::error::Error;
use crate::ids::{AgentId, TaskId};
use crate::key::AgentKey;
use crate::queue::{Agent, Queue};
use crate::rng::KeySource;
use crate::scan::check_scanner_name;
use crate::stats::Counters;
use crate::status::TaskStatus;
use crate::task::StatusMessage;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The format version written by this release.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The whole state of a queue, as plain serde data. It contains keys: store it as you would
/// store the keys themselves. The random source and the `rejected_key_checks` metric are not
/// part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The latest time the queue had seen.
    pub clock_ms: u64,
    /// The id the next task gets.
    pub next_task_id: u64,
    /// Every retained task, by id.
    pub tasks: Vec<crate::Task>,
    /// Finished tasks in the order they finished (the eviction order).
    pub finished: Vec<TaskId>,
    /// Registered agents, by id.
    pub agents: Vec<AgentRecord>,
    /// Lifetime counters.
    pub counters: Counters,
}

/// A registered agent in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its public identity.
    pub id: AgentId,
    /// Its key.
    pub key: AgentKey,
    /// When it registered.
    pub registered_ms: u64,
}

impl Queue {
    /// The whole state, tasks and agents in id order (so equal states give equal snapshots).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            clock_ms: self.clock_ms,
            next_task_id: self.next_task_id,
            tasks: self.tasks.iter().map(|(_, t)| t.clone()).collect(),
            finished: self.finished.iter().copied().collect(),
            // Every agent's key is in the selector index (check_invariants).
            agents: self
                .agents
                .iter()
                .filter_map(|(id, a)| {
                    Some(AgentRecord {
                        id: *id,
                        key: self.agent_by_selector.get(&a.selector)?.1.clone(),
                        registered_ms: a.registered_ms,
                    })
                })
                .collect(),
            counters: self.counters.clone(),
        }
    }

    /// Rebuilds a queue from a snapshot, checking every invariant under `config`. An
    /// inconsistent snapshot (or one past `config`'s bounds) is an error, never a panic.
    pub fn restore(config: Config, keys: KeySource, snapshot: Snapshot) -> Result<Queue, Error> {
        let bad = |what: String| Err(Error::Inconsistent(what));
        if snapshot.format != SNAPSHOT_FORMAT {
            return bad(format!(
                "snapshot format {} is not {SNAPSHOT_FORMAT}",
                snapshot.format
            ));
        }
        let mut queue = Queue::new(config, keys)?;
        queue.clock_ms = snapshot.clock_ms;
        queue.next_task_id = snapshot.next_task_id;
        queue.counters = snapshot.counters;
        for agent in snapshot.agents {
            let selector = agent.key.selector();
            if queue.agents.contains_key(&agent.id) {
                return bad(format!("agent {} twice", agent.id));
            }
            let indexed = queue
                .agent_by_selector
                .insert(selector, (agent.id, agent.key));
            if indexed.is_some() {
                return bad(format!("agent {} key selector collides", agent.id));
            }
            queue.agents.insert(
                agent.id,
                Agent {
                    selector,
                    registered_ms: agent.registered_ms,
                    tasks: Vec::new(),
                },
            );
        }
        for task in snapshot.tasks {
            let id = task.id;
            if queue.tasks.contains_key(&id) {
                return bad(format!("task {id} twice"));
            }
            if let Some(a) = &task.assignment
                && task.status.is_active()
                && !queue.agents.contains_key(&a.agent)
            {
                return bad(format!("task {id} held by unknown agent {}", a.agent));
            }
            queue.tasks.insert(id, Box::new(task));
            queue.reindex(id, None, false);
        }
        queue.finished = snapshot.finished.into_iter().collect();
        queue.check_invariants()?;
        Ok(queue)
    }

    /// Checks every invariant of the state and its indexes. Cost: linear in the queue's size.
    /// Tests and fuzzers call it after every step; [`restore`](Queue::restore) calls it once.
    pub fn check_invariants(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Inconsistent(what));
        let c = &self.config;

        // Ids and counts.
        let queued_ever = self.next_task_id.saturating_sub(1);
        if self.counters.queued != queued_ever {
            return bad("queued counter differs from the ids given out".into());
        }
        if (self.tasks.len() as u64).saturating_add(self.counters.evicted) != queued_ever {
            return bad("retained + evicted tasks differ from tasks queued".into());
        }
        let mut counts = [0usize; 7];
        for (_, t) in self.tasks.iter() {
            if let Some(count) = counts.get_mut(t.status.index()) {
                *count += 1;
            }
        }
        if counts != self.counts {
            return bad("status counts differ from the tasks".into());
        }
        if self.open_tasks() > c.max_open_tasks {
            return bad("more open tasks than max_open_tasks".into());
        }
        if self.finished.len() > c.max_finished_tasks {
            return bad("more finished tasks than max_finished_tasks".into());
        }
        if self.agents.len() > c.max_agents {
            return bad("more agents than max_agents".into());
        }
        if self.scanners.len() > c.max_scanners {
            return bad("more scanners than max_scanners".into());
        }

        // Each task, against every index.
        let mut held = 0usize;
        let mut finished_seen = HashSet::with_capacity(0);
        for id in &self.finished {
            if !finished_seen.insert(*id) {
                return bad(format!("task {id} finished twice"));
            }
        }
        let mut open_per_scanner: std::collections::BTreeMap<&str, usize> = Default::default();
        for (id, t) in self.tasks.iter() {
            let id = &id;
            let at = |what: &str| Err(Error::Inconsistent(format!("task {id}: {what}")));
            if t.id != *id || id.0 == 0 || id.0 >= self.next_task_id {
                return at("id out of range or misfiled");
            }
            if t.application.0 == 0 || check_scanner_name(&t.scanner, c.max_scanner_len).is_err() {
                return at("invalid application or scanner");
            }
            if t.target_url
                .as_ref()
                .is_some_and(|u| u.len() > c.max_url_len)
            {
                return at("target URL too long");
            }
            if t.history.len() > c.max_status_history || t.history.is_empty() {
                return at("status history empty or past its bound");
            }
            let mut last_id = 0;
            for e in &t.history {
                if e.id <= last_id {
                    return at("status entry ids out of order");
                }
                last_id = e.id;
                let too_long = match &e.message {
                    StatusMessage::Update(m) | StatusMessage::Failed { reason: m, .. } => {
                        m.len() > c.max_message_len
                    }
                    StatusMessage::Assigned { agent_config } => {
                        agent_config.len() > c.max_agent_config_len
                    }
                    _ => false,
                };
                if too_long {
                    return at("status message past its bound");
                }
            }
            let in_timers = t.timer_ms().map(|ms| self.timers.contains(&(ms, *id)));
            let scanner = self.scanners.get(&t.scanner);
            let in_scanner_queue = scanner.is_some_and(|s| s.queued.binary_search(id).is_ok());
            match t.status {
                TaskStatus::Queued => {
                    if t.assignment.is_some() || !in_scanner_queue {
                        return at("queued with an assignment, or not in its scanner queue");
                    }
                }
                TaskStatus::Assigned | TaskStatus::InProgress => {
                    let Some(a) = &t.assignment else {
                        return at("active without an assignment");
                    };
                    let holds = self
                        .agents
                        .get(&a.agent)
                        .is_some_and(|ag| ag.tasks.binary_search(id).is_ok());
                    if !holds || t.attempts == 0 || t.start_ms.is_none() || in_scanner_queue {
                        return at("active but not held by a live agent, or still queued");
                    }
                    held += 1;
                }
                _ => {
                    if t.end_ms.is_none() || !finished_seen.contains(id) || in_scanner_queue {
                        return at("finished without an end time or outside the finished order");
                    }
                }
            }
            if !t.status.is_terminal() {
                let front = scanner.is_some_and(|s| s.explicit || s.queued.front() == Some(id));
                if in_timers != Some(t.status != TaskStatus::Queued || front) {
                    return at(
                        "timer entry missing, or queued with one its scanner should not have",
                    );
                }
                *open_per_scanner.entry(&t.scanner).or_default() += 1;
            }
        }
        let queued_timers = self.scanners.values().map(|s| match s.explicit {
            true => s.queued.len(),
            false => s.queued.len().min(1),
        });
        let queued_timers: usize = queued_timers.sum();
        if self.timers.len() != held.saturating_add(queued_timers) {
            return bad("timer count differs from the active tasks and scanner fronts".into());
        }
        if finished_seen.len() != self.tasks.len().saturating_sub(self.open_tasks()) {
            return bad("finished order differs from the finished tasks".into());
        }
        let agent_held: usize = self.agents.values().map(|a| a.tasks.len()).sum();
        let sorted = |ids: &[TaskId]| ids.iter().zip(ids.iter().skip(1)).all(|(a, b)| a < b);
        if agent_held != held || !self.agents.values().all(|a| sorted(&a.tasks)) {
            return bad("agents' task sets differ from the active tasks".into());
        }
        if self.agent_by_selector.len() != self.agents.len() {
            return bad("agent selector index differs from the agents".into());
        }
        for (id, agent) in &self.agents {
            let indexed = self.agent_by_selector.get(&agent.selector);
            if !indexed.is_some_and(|(a, key)| a == id && key.selector() == agent.selector) {
                return bad(format!("agent {id} missing from the selector index"));
            }
        }
        if self.scanners.len() != open_per_scanner.len() {
            return bad("scanner index differs from the open tasks' scanners".into());
        }
        for (name, open) in open_per_scanner {
            let Some(s) = self.scanners.get(name) else {
                return bad(format!("scanner {name:?} missing from its index"));
            };
            if s.open != open {
                return bad(format!("scanner {name:?} open count is wrong"));
            }
            let sorted = s
                .queued
                .iter()
                .zip(s.queued.iter().skip(1))
                .all(|(a, b)| a < b);
            let all_queued = sorted
                && s.queued.iter().all(|id| {
                    self.tasks
                        .get(id)
                        .is_some_and(|t| t.status == TaskStatus::Queued && *t.scanner == *name)
                });
            let deadlines = s.queued.iter().filter_map(|id| self.tasks.get(id));
            let ordered = deadlines
                .clone()
                .zip(deadlines.skip(1))
                .all(|(a, b)| a.timeout_ms <= b.timeout_ms);
            if !all_queued || !(s.explicit || ordered) || (s.explicit && s.queued.is_empty()) {
                return bad(format!(
                    "scanner {name:?} queue is out of order or holds a task not queued for it"
                ));
            }
        }
        Ok(())
    }
}
