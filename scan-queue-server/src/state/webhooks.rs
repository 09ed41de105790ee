//! The webhook outbox: deliveries of terminal transitions waiting to reach their receivers.
//! Part of the durable state, so a delivery survives a restart until it is delivered or
//! given up (at least once).

use super::ApplyError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One POST to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Delivery {
    /// Sent as `X-ScanQueue-Delivery` and in the body: the receiver de-duplicates on it.
    pub(crate) id: u64,
    /// Where to.
    pub(crate) url: String,
    /// `task.completed`, `task.failed`, `task.timed_out` or `task.deleted`.
    pub(crate) event: String,
    /// The JSON body, exactly as signed and sent.
    pub(crate) body: String,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// Not before this instant, epoch milliseconds.
    pub(crate) next_attempt_ms: u64,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Attempt {
    /// The receiver answered 2xx: done.
    Delivered,
    /// It failed; try again then.
    Retry {
        /// Epoch milliseconds.
        next_attempt_ms: u64,
    },
    /// It failed for the last time (or the outbox overflowed): no more attempts.
    GaveUp,
}

/// The deliveries waiting, and what became of the others.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outbox {
    pending: BTreeMap<u64, Arc<Delivery>>,
    /// The last delivery id given.
    last_id: u64,
    delivered: u64,
    gave_up: u64,
}

impl Outbox {
    /// The most deliveries waiting; past it the oldest is given up.
    pub(crate) const MAX_PENDING: usize = 100_000;

    /// The id the next delivery gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.last_id + 1
    }

    /// Waiting deliveries, oldest first.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &Arc<Delivery>> + '_ {
        self.pending.values()
    }

    /// (waiting, delivered, given up).
    pub(crate) fn counts(&self) -> (usize, u64, u64) {
        (self.pending.len(), self.delivered, self.gave_up)
    }

    pub(crate) fn queue(&mut self, deliveries: &[Delivery]) -> Result<(), ApplyError> {
        for d in deliveries {
            if d.id != self.last_id + 1 {
                return Err(ApplyError::Fact(format!(
                    "webhook delivery {} out of order (after {})",
                    d.id, self.last_id
                )));
            }
            self.last_id = d.id;
            self.pending.insert(d.id, Arc::new(d.clone()));
            while self.pending.len() > Self::MAX_PENDING {
                if let Some((id, _)) = self.pending.pop_first() {
                    tracing::warn!(
                        delivery = id,
                        "webhook outbox full: the oldest delivery is given up"
                    );
                    self.gave_up += 1;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn attempted(&mut self, id: u64, attempt: Attempt) -> Result<(), ApplyError> {
        // A delivery the outbox gave up on while it was in flight is no longer there.
        let Some(delivery) = self.pending.get_mut(&id) else {
            return Ok(());
        };
        match attempt {
            Attempt::Delivered => {
                self.pending.remove(&id);
                self.delivered += 1;
            }
            Attempt::GaveUp => {
                self.pending.remove(&id);
                self.gave_up += 1;
            }
            Attempt::Retry { next_attempt_ms } => {
                let d = Arc::make_mut(delivery);
                d.attempts = d.attempts.saturating_add(1);
                d.next_attempt_ms = next_attempt_ms;
            }
        }
        Ok(())
    }
}
