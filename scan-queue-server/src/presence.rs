//! When each scan agent was last seen (any call with its key), in memory: a poll that finds
//! nothing changes no state and is not journaled. After a restart an agent counts as seen at
//! its registration or at the start, whichever is later, so a restart never expires an agent
//! early (it may expire it up to a restart late). Agents silent past `--agent-expiry-days` are revoked (journaled).

use parking_lot::Mutex;
use scan_queue::{AgentId, Queue};
use std::collections::HashMap;

/// Last-seen instants of agents.
#[derive(Debug)]
pub(crate) struct Presence {
    seen_ms: Mutex<HashMap<AgentId, u64>>,
    /// When this process started: nobody is "silent" since before it.
    started_ms: u64,
}

impl Presence {
    pub(crate) fn new(started_ms: u64) -> Presence {
        Presence {
            seen_ms: Mutex::new(HashMap::new()),
            started_ms,
        }
    }

    /// The agent whose key is `key`, if any, was seen at `now_ms`. Entries of agents no
    /// longer registered are swept when the map outgrows `max_agents`.
    pub(crate) fn saw_key(&self, queue: &Queue, key: &str, now_ms: u64) {
        let Some(agent) = queue.agent_for_key(key) else {
            return;
        };
        let mut seen = self.seen_ms.lock();
        if seen.len() >= queue.config().max_agents && !seen.contains_key(&agent) {
            seen.retain(|a, _| queue.agent_registered_ms(*a).is_some());
        }
        seen.insert(agent, now_ms);
    }

    /// When the agent was last seen by this process.
    pub(crate) fn last_seen_ms(&self, agent: AgentId) -> Option<u64> {
        self.seen_ms.lock().get(&agent).copied()
    }

    /// The latest of: last seen, registered, this process's start.
    pub(crate) fn silent_since_ms(&self, queue: &Queue, agent: AgentId) -> u64 {
        let registered = queue.agent_registered_ms(agent).unwrap_or(0);
        self.last_seen_ms(agent)
            .unwrap_or(0)
            .max(registered)
            .max(self.started_ms)
    }

    /// How many registered agents were seen within the lease.
    pub(crate) fn live(&self, queue: &Queue, now_ms: u64) -> usize {
        let lease_ms = queue.config().lease_ms;
        self.seen_ms
            .lock()
            .iter()
            .filter(|(a, t)| {
                t.saturating_add(lease_ms) >= now_ms && queue.agent_registered_ms(**a).is_some()
            })
            .count()
    }

    /// Forgets a revoked agent.
    pub(crate) fn forget(&self, agent: AgentId) {
        self.seen_ms.lock().remove(&agent);
    }
}
