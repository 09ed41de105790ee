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

    /// The timer index holds one entry per scanner front while each scanner's queued
    /// deadlines are in id order, and every queued task's once they are not: against the
    /// definition (the earliest timer of any open task, ties to the lower id) through random
    /// queueing on three scanners, deadline changes (restores), assignment, cancellation,
    /// revocation and expiry, with the invariants checked after every step.
    #[test]
    fn next_timer_is_the_earliest_open_timer() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let scanners = ["a", "b", "c"];
        let mut deadline = 12 * HOUR;
        let mut q = Queue::new(config(deadline), KeySource::from_seed([3; 32])).unwrap();
        let mut now = T0;
        let mut agents = Vec::new();
        let mut explicit_steps = 0;
        for step in 0..1_500u64 {
            now += rand(HOUR);
            match rand(8) {
                0 | 1 => {
                    let scanner = scanners[rand(3) as usize];
                    q.queue_scan(now, NewScan::new(ApplicationId(1), scanner))
                        .unwrap();
                }
                2 => {
                    let agent = q.register_agent(now).unwrap();
                    agents.push((agent.id, agent.key.expose_secret().to_owned()));
                }
                3 if !agents.is_empty() => {
                    let (_, key) = &agents[rand(agents.len() as u64) as usize];
                    let wanted = &scanners[..1 + rand(3) as usize];
                    q.request_task(now, key, wanted, "").unwrap();
                }
                4 => {
                    let id = TaskId(1 + rand(q.next_task_id));
                    let _ = q.cancel_task(now, id);
                }
                5 if rand(4) == 0 && !agents.is_empty() => {
                    let (id, _) = agents.swap_remove(rand(agents.len() as u64) as usize);
                    q.revoke_agent(now, id).unwrap();
                }
                6 if rand(8) == 0 => {
                    // The task deadline changes between restarts, queued tasks kept.
                    deadline = HOUR * (1 + rand(24));
                    let keys = KeySource::from_seed([step as u8; 32]);
                    q = Queue::restore(config(deadline), keys, q.snapshot()).unwrap();
                }
                _ => {
                    q.advance(now);
                }
            }
            q.check_invariants().unwrap();
            let earliest = q
                .tasks_by_id(..)
                .filter_map(|t| Some((t.timer_ms()?, t.id())))
                .min();
            assert_eq!(q.next_timer(), earliest, "step {step}");
            explicit_steps += usize::from(q.scanners.values().any(|s| s.explicit));
            q.drain_events().for_each(drop);
        }
        // Both ways were taken.
        assert!(
            explicit_steps > 0 && explicit_steps < 1_500,
            "{explicit_steps}"
        );
    }
}
