//! The deterministic simulation (`examples/simulate/sim.rs`, see STYLE.md) over many seeds at
//! small size: every run is fully checked by the harness (a broken rule panics with
//! `simulation failure (seed N, step M, ...)`; rerun that seed with
//! `cargo run --example simulate -- --agents 4 --tasks 300 --seed N --check-every 50`).

#[path = "../examples/simulate/sim.rs"]
mod sim;

use scan_queue::TaskStatus;

const AGENTS: usize = 4;
const TASKS: u64 = 300;

fn small(seed: u64) -> sim::Params {
    sim::Params {
        check_every: 50,
        ..sim::Params::new(seed, AGENTS, TASKS)
    }
}

/// Runs `seeds`, each fully checked, and checks that together they went down every path the
/// world offers (so a quiet change to the world cannot make the simulation test nothing).
fn run_seeds(seeds: std::ops::Range<u64>) {
    let mut total = sim::Report::default();
    for seed in seeds {
        let r = sim::run(&small(seed)).report;
        assert!(
            r.drained,
            "seed {seed}: not drained after {} steps",
            r.steps
        );
        assert_eq!(r.tasks_queued, TASKS, "seed {seed}");
        assert_eq!(
            r.final_status.iter().sum::<u64>(),
            TASKS,
            "seed {seed}: tasks lost"
        );
        assert!(r.replayed && r.full_checks >= 2, "seed {seed}");
        for (sum, n) in total.final_status.iter_mut().zip(r.final_status) {
            *sum += n;
        }
        total.evicted += r.evicted;
        total.requeues += r.requeues;
        total.lease_expiries += r.lease_expiries;
        total.timeouts += r.timeouts;
        total.deadline_timeouts += r.deadline_timeouts;
        total.revocations += r.revocations;
        total.stale_refused += r.stale_refused;
        total.garbage_refused += r.garbage_refused;
        total.retries_answered += r.retries_answered;
        total.crashes += r.crashes;
        total.bound_refusals += r.bound_refusals;
        total.invalid_refused += r.invalid_refused;
        total.timer_wakeups += r.timer_wakeups;
    }
    let t = &total;
    for status in [
        TaskStatus::CompleteSuccessful,
        TaskStatus::CompleteDeleted,
        TaskStatus::CompleteTimedOut,
        TaskStatus::CompleteFailed,
    ] {
        assert!(t.final_status[status.index()] > 0, "no task ended {status}");
    }
    let paths = [
        ("eviction", t.evicted),
        ("requeue", t.requeues),
        ("lease expiry", t.lease_expiries),
        (
            "time-out on the last lease",
            t.timeouts - t.deadline_timeouts,
        ),
        ("deadline", t.deadline_timeouts),
        ("revocation", t.revocations),
        ("stale key refused", t.stale_refused),
        ("garbage key refused", t.garbage_refused),
        ("retry answered", t.retries_answered),
        ("silent crash", t.crashes),
        ("bound refusal", t.bound_refusals),
        ("malformed scan", t.invalid_refused),
        ("timer wake-up", t.timer_wakeups),
    ];
    for (path, count) in paths {
        assert!(count > 0, "no run went through: {path}");
    }
}

// Four tests of 16 seeds each, so that the harness runs them in parallel.
#[test]
fn seeds_0_to_15() {
    run_seeds(0..16);
}

#[test]
fn seeds_16_to_31() {
    run_seeds(16..32);
}

#[test]
fn seeds_32_to_47() {
    run_seeds(32..48);
}

#[test]
fn seeds_48_to_63() {
    run_seeds(48..64);
}

#[test]
fn same_seed_same_report_and_event_log() {
    let params = sim::Params {
        keep_events: true,
        ..small(7)
    };
    let a = sim::run(&params);
    let b = sim::run(&params);
    assert_eq!(a.report, b.report);
    assert!(!a.events.is_empty());
    assert_eq!(a.events.len() as u64, a.report.events);
    assert!(a.events == b.events, "same seed, different event logs");

    let c = sim::run(&sim::Params {
        keep_events: true,
        ..small(8)
    });
    assert_ne!(
        a.report.event_digest, c.report.event_digest,
        "the seed changes nothing"
    );
}
