//! What the operators' page knows beside the queue, derived from the records: per task, the
//! agent of its latest attempt (kept after the task times out or goes back to the queue),
//! when that attempt started and when it went in progress, the first entries of its status
//! history (the core keeps only the newest `max_status_history`), and retry links; per agent,
//! what its `agentConfig` says it is. Pure, and the same on the live path and in replay.

use scan_queue::{AgentId, Event, Queue, StatusEntry, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The first status entries kept per task (queued, the assignment with its `agentConfig`,
/// the first progress line), shown before the core's newest ones when the middle was dropped.
pub(crate) const HEAD_ENTRIES: usize = 3;
/// Bytes of an agent's `agentConfig` kept to describe it.
const AGENT_CONFIG_BYTES: usize = 1024;
/// Bytes of an agent's name, host or OS as parsed.
const FIELD_BYTES: usize = 128;
/// Notes are swept of evicted tasks when they outnumber the queue's tasks twice over plus this
/// many (so a sweep's cost is spread over at least as many new notes as it kept).
const SWEEP_FLOOR: usize = 1024;

/// What the page knows of one task beyond the core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskNote {
    /// The agent of the latest attempt.
    pub(crate) agent: Option<AgentId>,
    /// Its name (else host) as its `agentConfig` said then: kept after the agent is revoked.
    #[serde(default)]
    pub(crate) agent_name: Option<String>,
    /// When the latest attempt started.
    pub(crate) assigned_ms: Option<u64>,
    /// When the latest attempt sent its first status update (IN_PROGRESS).
    pub(crate) progress_ms: Option<u64>,
    /// The first [`HEAD_ENTRIES`] entries of its status history.
    pub(crate) head: Vec<StatusEntry>,
    /// The task this one retries.
    pub(crate) retry_of: Option<TaskId>,
    /// The task that retries this one.
    pub(crate) retried_as: Option<TaskId>,
}

/// What an agent's `agentConfig` says it is (the latest one it sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentNote {
    /// `name=`: the agent's own name.
    pub(crate) name: Option<String>,
    /// `host=` (or `hostname=`, `computername=`).
    pub(crate) host: Option<String>,
    /// `os=` (or `os.name=`).
    pub(crate) os: Option<String>,
    /// `user=` (or `user.name=`).
    pub(crate) user: Option<String>,
    /// The text, bounded.
    pub(crate) config: String,
}

impl AgentNote {
    /// Reads `key=value` (or `key: value`) lines; anything else is kept only in `config`.
    pub(crate) fn parse(config: &str) -> AgentNote {
        let mut note = AgentNote {
            config: bounded(config, AGENT_CONFIG_BYTES),
            ..AgentNote::default()
        };
        for line in config.lines().take(64) {
            let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let slot = match key.trim().to_ascii_lowercase().as_str() {
                "name" | "agent.name" | "agentname" => &mut note.name,
                "host" | "hostname" | "host.name" | "computername" => &mut note.host,
                "os" | "os.name" => &mut note.os,
                "user" | "user.name" | "username" => &mut note.user,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(bounded(value, FIELD_BYTES));
            }
        }
        note
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The page's notes on tasks and agents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Console {
    tasks: BTreeMap<TaskId, TaskNote>,
    agents: BTreeMap<AgentId, AgentNote>,
}

impl Console {
    /// A task's note, if it has one (it was assigned, or retried, or is a retry).
    pub(crate) fn task(&self, task: TaskId) -> Option<&TaskNote> {
        self.tasks.get(&task)
    }

    /// How many task notes there are.
    #[cfg(test)]
    pub(crate) fn task_notes(&self) -> usize {
        self.tasks.len()
    }

    /// An agent's note, if it ever sent an `agentConfig`.
    pub(crate) fn agent(&self, agent: AgentId) -> Option<&AgentNote> {
        self.agents.get(&agent)
    }

    /// Follows one event the queue has applied.
    pub(crate) fn observe(&mut self, queue: &Queue, event: &Event) {
        match event {
            Event::TaskAssigned {
                task,
                agent,
                agent_config,
                at_ms,
                ..
            } => {
                let described = AgentNote::parse(agent_config);
                let note = self.note(queue, *task);
                note.agent = Some(*agent);
                note.agent_name = described.name.clone().or_else(|| described.host.clone());
                note.assigned_ms = Some(*at_ms);
                note.progress_ms = None;
                self.agents.insert(*agent, described);
            }
            Event::StatusUpdated { task, at_ms, .. } => {
                if let Some(note) = self.tasks.get_mut(task)
                    && note.progress_ms.is_none()
                {
                    note.progress_ms = Some(*at_ms);
                }
            }
            Event::AgentRevoked { agent, .. } => {
                self.agents.remove(agent);
            }
            _ => {}
        }
        if let Some(task) = event.task() {
            self.refresh_head(queue, task);
        }
    }

    /// Links a retry to the task it retries.
    pub(crate) fn link_retry(&mut self, queue: &Queue, from: TaskId, to: TaskId) {
        self.note(queue, from).retried_as = Some(to);
        self.note(queue, to).retry_of = Some(from);
        self.refresh_head(queue, to);
    }

    fn refresh_head(&mut self, queue: &Queue, task: TaskId) {
        let Some(note) = self.tasks.get_mut(&task) else {
            return;
        };
        if note.head.len() >= HEAD_ENTRIES {
            return;
        }
        let Some(history) = queue.task(task).map(scan_queue::Task::history) else {
            return;
        };
        if history.first().is_some_and(|e| e.id == 1) {
            note.head = history.iter().take(HEAD_ENTRIES).cloned().collect();
        }
    }

    /// The note of `task`, made if missing; notes of evicted tasks (and of agents no longer
    /// registered) are swept when the notes outnumber the queue's tasks twice over, so the
    /// sweep depends only on the state (the same live, in replay and after a restore).
    fn note(&mut self, queue: &Queue, task: TaskId) -> &mut TaskNote {
        if !self.tasks.contains_key(&task) {
            let stats = queue.stats();
            let held: usize = TaskStatus::ALL.into_iter().map(|s| stats.count(s)).sum();
            if self.tasks.len() >= 2 * held + SWEEP_FLOOR {
                self.tasks.retain(|id, _| queue.task(*id).is_some());
                let agents: std::collections::BTreeSet<AgentId> = queue.agents().collect();
                self.agents.retain(|id, _| agents.contains(id));
            }
        }
        self.tasks.entry(task).or_default()
    }
}

/// When a task entered its current status, as far as the queue and the notes tell.
pub(crate) fn status_since_ms(task: &scan_queue::Task, note: Option<&TaskNote>) -> u64 {
    use scan_queue::StatusMessage as M;
    match task.status() {
        TaskStatus::Assigned => note
            .and_then(|n| n.assigned_ms)
            .or(task.start_ms())
            .unwrap_or(task.create_ms()),
        TaskStatus::InProgress => note
            .and_then(|n| n.progress_ms.or(n.assigned_ms))
            .or(task.start_ms())
            .unwrap_or(task.create_ms()),
        TaskStatus::Queued => task
            .history()
            .iter()
            .rev()
            .find_map(|e| match e.message {
                M::LeaseExpiredRequeued { .. } | M::AgentRevoked { .. } => Some(e.at_ms),
                _ => None,
            })
            .unwrap_or(task.create_ms()),
        _ => task.end_ms().unwrap_or(task.create_ms()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_config_lines_name_the_agent() {
        let n = AgentNote::parse(
            "scan-queue-agent 0.1.0\nname=builder-7\nos=linux\narch=x86_64\nscanners=zap",
        );
        assert_eq!(n.name.as_deref(), Some("builder-7"));
        assert_eq!(n.os.as_deref(), Some("linux"));
        assert_eq!(n.host, None);
        let t = AgentNote::parse("os.name: Windows Server 2019\nhost: SCAN-01\nuser.name: svc");
        assert_eq!(t.host.as_deref(), Some("SCAN-01"));
        assert_eq!(t.user.as_deref(), Some("svc"));
        let bare = AgentNote::parse("C:\\ThreadFix\\scanagent\\scanagent.properties");
        assert_eq!((bare.name, bare.host), (None, None));
        let long = AgentNote::parse(&format!("name={}", "é".repeat(500)));
        assert!(long.name.unwrap().len() <= FIELD_BYTES);
        assert!(long.config.len() <= AGENT_CONFIG_BYTES);
    }
}
