//! Arbitrary bytes as a snapshot and as an event stream: an error or a consistent queue,
//! never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scan_queue::{Config, Event, KeySource, Queue, Snapshot};

fuzz_target!(|data: &[u8]| {
    let small = Config {
        max_open_tasks: 16,
        max_finished_tasks: 8,
        max_agents: 4,
        max_status_history: 4,
        ..Config::default()
    };
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        for config in [Config::default(), small.clone()] {
            if let Ok(mut queue) =
                Queue::restore(config, KeySource::from_seed([1; 32]), snapshot.clone())
            {
                queue
                    .check_invariants()
                    .expect("restore checked the invariants");
                // The restored queue must keep working.
                let now = queue.clock_ms().saturating_add(1);
                queue.advance(now.saturating_add(3_600_000));
                let _ = queue.register_agent(now);
                queue
                    .check_invariants()
                    .expect("a restored queue stays consistent");
            }
        }
    }
    if let Ok(events) = serde_json::from_slice::<Vec<Event>>(data) {
        let mut queue = Queue::new(small, KeySource::from_seed([2; 32])).unwrap();
        for event in events {
            let before = queue.snapshot();
            match queue.apply(event) {
                Ok(()) => queue
                    .check_invariants()
                    .expect("an applied event keeps the invariants"),
                Err(_) => assert_eq!(
                    queue.snapshot(),
                    before,
                    "a refused event changed the queue"
                ),
            }
        }
    }
});
