//! The next wake-up is the earliest timer of any open task (its lease or its deadline),
//! whatever the timer index keeps (one entry per scanner's front task while that scanner's
//! queued deadlines are in id order, every queued task's once they are not), and expiries
//! fire in (instant, task id) order: random queueing on three scanners, task deadline changes
//! between restarts, assignment, cancellation, revocation and expiry, with the invariants
//! checked after every step.

use scan_queue::{ApplicationId, Config, Event, KeySource, NewScan, Queue, Task, TaskId};

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn config(task_deadline_ms: u64) -> Config {
    Config {
        task_deadline_ms,
        lease_ms: 2 * HOUR,
        ..Config::default()
    }
}

/// An open task's next timer: the earlier of its lease (while held) and its deadline.
fn timer(t: &Task) -> Option<u64> {
    if t.status().is_terminal() {
        return None;
    }
    Some(match t.assignment() {
        Some(a) if t.status().is_active() => a.lease_until_ms().min(t.timeout_ms()),
        _ => t.timeout_ms(),
    })
}

#[test]
fn next_deadline_is_the_earliest_open_timer() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let scanners = ["a", "b", "c"];
    let mut q = Queue::new(config(12 * HOUR), KeySource::from_seed([3; 32])).unwrap();
    let mut now = T0;
    let mut agents = Vec::new();
    let mut fired = 0;
    for step in 0..1_500u64 {
        now += rand(HOUR / 4);
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
                let next = q.stats().counters.queued + 1;
                let _ = q.cancel_task(now, TaskId(1 + rand(next)));
            }
            5 if rand(4) == 0 && !agents.is_empty() => {
                let (id, _) = agents.swap_remove(rand(agents.len() as u64) as usize);
                q.revoke_agent(now, id).unwrap();
            }
            6 if rand(2) == 0 => {
                // The task deadline changes between restarts, queued tasks kept.
                let deadline = HOUR * (1 + rand(24));
                let keys = KeySource::from_seed([step as u8; 32]);
                q = Queue::restore(config(deadline), keys, q.snapshot()).unwrap();
            }
            _ => {
                q.advance(now);
            }
        }
        q.check_invariants().unwrap();
        let earliest = q.tasks_by_id(..).filter_map(timer).min();
        assert_eq!(q.next_deadline_ms(), earliest, "step {step}");
        let expiries: Vec<(u64, TaskId)> = q
            .drain_events()
            .filter_map(|e| match e {
                Event::DeadlineReached { task, at_ms }
                | Event::LeaseExpired { task, at_ms, .. } => Some((at_ms, task)),
                _ => None,
            })
            .collect();
        assert!(expiries.is_sorted(), "step {step}: {expiries:?}");
        fired += expiries.len();
    }
    assert!(fired > 100, "{fired}");
}

/// A task requeued in front of a newer one with an earlier deadline (the task deadline was
/// shortened in between): the scanner's order breaks, and both deadlines still fire in time
/// order.
#[test]
fn a_requeued_task_that_breaks_the_order() {
    let zap = "OWASP Zed Attack Proxy";
    let mut q = Queue::new(config(20 * HOUR), KeySource::from_seed([1; 32])).unwrap();
    let a = q
        .queue_scan(T0, NewScan::new(ApplicationId(1), zap))
        .unwrap()
        .id();
    let agent = q.register_agent(T0).unwrap();
    let key = agent.key.expose_secret().to_owned();
    q.request_task(T0, &key, &[zap], "").unwrap().unwrap();
    let mut q = Queue::restore(
        config(2 * HOUR),
        KeySource::from_seed([2; 32]),
        q.snapshot(),
    )
    .unwrap();
    let b = q
        .queue_scan(T0 + 1, NewScan::new(ApplicationId(1), zap))
        .unwrap()
        .id();
    q.revoke_agent(T0 + 2, agent.id).unwrap();
    q.check_invariants().unwrap();
    assert_eq!(q.next_deadline_ms(), Some(T0 + 1 + 2 * HOUR));
    q.drain_events().for_each(drop);
    q.advance(T0 + 21 * HOUR);
    let fired: Vec<(u64, TaskId)> = q
        .drain_events()
        .filter_map(|e| match e {
            Event::DeadlineReached { task, at_ms } => Some((at_ms, task)),
            _ => None,
        })
        .collect();
    assert_eq!(fired, [(T0 + 1 + 2 * HOUR, b), (T0 + 20 * HOUR, a)]);
    q.check_invariants().unwrap();
}
