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
        while let Some((at_ms, id)) = self.next_timer() {
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
                // the stray entry (or stopping, if it is not one we can drop) keeps this loop
                // finite either way.
                _ => {
                    if self.timers.remove(&(at_ms, id)) {
                        continue;
                    }
                    break;
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
        self.next_timer().map(|(at_ms, _)| at_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ApplicationId, Config, Event, KeySource, NewScan, Queue, TaskId, TaskStatus};

    const ZAP: &str = "OWASP Zed Attack Proxy";
    const T0: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn config(task_deadline_ms: u64) -> Config {
        Config {
            task_deadline_ms,
            lease_ms: 10 * HOUR,
            ..Config::default()
        }
    }

    /// Deadlines out of id order (the task deadline shortened between restarts): every
    /// deadline still fires at its instant, in (instant, id) order, and `next_deadline_ms`
    /// stays exact.
    #[test]
    fn deadlines_out_of_id_order() {
        let mut q = Queue::new(config(12 * HOUR), KeySource::from_seed([1; 32])).unwrap();
        for i in 0..3 {
            q.queue_scan(T0 + i, NewScan::new(ApplicationId(1), ZAP))
                .unwrap();
        }
        let snapshot = q.snapshot();
        let mut q = Queue::restore(config(HOUR), KeySource::from_seed([2; 32]), snapshot).unwrap();
        // Task 4's deadline is before tasks 1-3's.
        q.queue_scan(T0 + 10, NewScan::new(ApplicationId(1), ZAP))
            .unwrap();
        q.check_invariants().unwrap();
        assert_eq!(q.next_deadline_ms(), Some(T0 + 10 + HOUR));
        // Task 1 is taken; its lease runs out (requeued) before its deadline.
        let agent = q
            .register_agent(T0 + 20)
            .unwrap()
            .key
            .expose_secret()
            .to_owned();
        let id = q
            .request_task(T0 + 20, &agent, &[ZAP], "")
            .unwrap()
            .unwrap()
            .id();
        assert_eq!(id, TaskId(1));
        q.check_invariants().unwrap();
        q.drain_events().for_each(drop);
        // Every deadline, in time order.
        q.advance(T0 + 13 * HOUR);
        let fired: Vec<(TaskId, u64)> = q
            .drain_events()
            .filter_map(|e| match e {
                Event::DeadlineReached { task, at_ms } => Some((task, at_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(
            fired,
            [
                (TaskId(4), T0 + 10 + HOUR),
                (TaskId(1), T0 + 12 * HOUR),
                (TaskId(2), T0 + 1 + 12 * HOUR),
                (TaskId(3), T0 + 2 + 12 * HOUR),
            ]
        );
        assert_eq!(q.next_deadline_ms(), None);
        q.check_invariants().unwrap();
        q.queue_scan(T0 + 14 * HOUR, NewScan::new(ApplicationId(1), ZAP))
            .unwrap();
        assert_eq!(q.next_deadline_ms(), Some(T0 + 15 * HOUR));
        assert_eq!(q.tasks_with_status(TaskStatus::Queued).count(), 1);
        q.check_invariants().unwrap();
    }

    /// A requeued task keeps its deadline; the oldest queued deadline is the next one.
    #[test]
    fn requeued_tasks_keep_the_order() {
        let mut q = Queue::new(config(12 * HOUR), KeySource::from_seed([1; 32])).unwrap();
        for i in 0..4 {
            q.queue_scan(T0 + i, NewScan::new(ApplicationId(1), ZAP))
                .unwrap();
        }
        let agent = q.register_agent(T0).unwrap();
        let (agent_id, key) = (agent.id, agent.key.expose_secret().to_owned());
        for _ in 0..2 {
            q.request_task(T0 + 5, &key, &[ZAP], "").unwrap().unwrap();
        }
        // The leases run out first.
        assert_eq!(q.next_deadline_ms(), Some(T0 + 5 + 10 * HOUR));
        q.revoke_agent(T0 + 6, agent_id).unwrap();
        q.check_invariants().unwrap();
        assert_eq!(q.next_deadline_ms(), Some(T0 + 12 * HOUR));
    }
}
