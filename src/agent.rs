//! Scan agents: minting keys (SPEC "Request scan agent key") and revocation (ours).

use crate::error::{Bound, Error};
use crate::event::Event;
use crate::ids::{AgentId, TaskId};
use crate::key::AgentKey;
use crate::queue::Queue;

/// A newly registered agent: its public id and its secret key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredAgent {
    /// The agent's public identity (for logs and statistics).
    pub id: AgentId,
    /// The key to hand to the agent (`scanAgentSecureKey`).
    pub key: AgentKey,
}

impl Queue {
    /// Mints a scan agent key and registers its agent.
    ///
    /// Errors: [`Error::BoundExceeded`] when `max_agents` agents are registered.
    pub fn register_agent(&mut self, now_ms: u64) -> Result<RegisteredAgent, Error> {
        let now_ms = self.advance(now_ms);
        if self.agents.len() >= self.config.max_agents {
            return Err(self.bound(Bound::Agents));
        }
        // Draw until the id and the key's selector are both unused; with 122 and 47 random
        // bits a second draw is astronomically rare, and the seed makes it reproducible.
        let (id, key) = loop {
            let mut bytes = [0u8; 16];
            self.keys.rng().fill_bytes(&mut bytes);
            let id = AgentId(uuid::Builder::from_random_bytes(bytes).into_uuid());
            let key = AgentKey::generate(self.keys.rng());
            if !self.agents.contains_key(&id)
                && !self.agent_by_selector.contains_key(&key.selector())
            {
                break (id, key);
            }
        };
        self.commit(Event::AgentRegistered {
            agent: id,
            key: key.clone(),
            at_ms: now_ms,
        });
        Ok(RegisteredAgent { id, key })
    }

    /// Revokes an agent: its key stops working everywhere and every task it holds goes back
    /// to the queue (its task keys die). Returns those tasks.
    ///
    /// Errors: [`Error::UnknownAgent`].
    pub fn revoke_agent(&mut self, now_ms: u64, agent: AgentId) -> Result<Vec<TaskId>, Error> {
        let now_ms = self.advance(now_ms);
        let held: Vec<TaskId> = match self.agents.get(&agent) {
            Some(a) => a.tasks.clone(),
            None => return Err(Error::UnknownAgent(agent)),
        };
        self.commit(Event::AgentRevoked {
            agent,
            at_ms: now_ms,
        });
        Ok(held)
    }
}
