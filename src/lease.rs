//! Time: lease expiry and task deadlines (SPEC §3 "Time"), and the next wake-up instant.

use crate::event::Event;
use crate::queue::Queue;

impl Queue {
    /// Moves time to `now_ms` (or keeps the latest time seen, if `now_ms` is earlier) and
    /// applies every lease expiry and task deadline up to then, in time order. Returns the
    /// effective now. Every operation calls this first; call it yourself when a timer set to
    /// [`next_deadline_ms`](Queue::next_deadline_ms) fires.
    ///
    /// A lease that runs out sends its task back to the queue (its task key dies), unless the
    /// task has used `max_attempts` assignments, in which case it is CompleteTimedOut. A task
    /// past its deadline is CompleteTimedOut whatever its state.
    pub fn advance(&mut self, now_ms: u64) -> u64 {
        let now_ms = now_ms.max(self.clock_ms);
        while let Some(&(at_ms, id)) = self.timers.first() {
            if at_ms > now_ms {
                break;
            }
            let event = match self.tasks.get(&id) {
                Some(task) if task.timer_ms() == Some(at_ms) => {
                    if task.timeout_ms <= at_ms {
                        Event::DeadlineReached { task: id, at_ms }
                    } else {
                        Event::LeaseExpired {
                            task: id,
                            at_ms,
                            requeued: task.attempts < self.config.max_attempts,
                        }
                    }
                }
                // Unreachable while the indexes are consistent (check_invariants); dropping
                // the stray entry keeps this loop finite either way.
                _ => {
                    self.timers.remove(&(at_ms, id));
                    continue;
                }
            };
            self.commit(event);
        }
        self.clock_ms = now_ms;
        now_ms
    }

    /// The next instant at which a lease or a deadline runs out, if any task is open: sleep
    /// until then, then call [`advance`](Queue::advance).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.timers.first().map(|&(at_ms, _)| at_ms)
    }
}
