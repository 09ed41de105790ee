//! A deterministic simulation of the scan queue: agents that take tasks, heartbeat, complete,
//! fail, crash silently and get revoked, an administrator that queues and cancels, all in
//! simulated time from one seed, with every answer checked against a reference model.
//!
//! ```text
//! cargo run --release --example simulate -- --agents 8 --tasks 100000 --seed 42
//! ```
//!
//! Flags (all optional):
//! - `--agents N`      agent slots running at once (default 8)
//! - `--tasks N`       tasks the administrator queues in total (default 10000)
//! - `--seed N`        the seed; the same seed prints the same summary (default 42)
//! - `--check-every N` steps between full checks, 0 for the end only (default 1000)
//! - `--max-steps N`   stop after N steps even if not drained (default 100 × tasks + 100000)
//! - `--no-replay`     skip feeding the event log to a replica and comparing snapshots
//! - `--help`          print this help
//!
//! The harness itself (`sim.rs`) is shared with `tests/simulation.rs`; only this file reads a
//! clock, for the throughput line.

mod sim;

use std::process::ExitCode;
use std::time::Instant;

const HELP: &str = "\
Deterministic simulation of the scan queue.

USAGE:
    cargo run --release --example simulate -- [FLAGS]

FLAGS:
    --agents N        agent slots running at once (default 8)
    --tasks N         tasks the administrator queues in total (default 10000)
    --seed N          the seed; the same seed prints the same summary (default 42)
    --check-every N   steps between full checks, 0 for the end only (default 1000)
    --max-steps N     stop after N steps even if not drained (default 100 x tasks + 100000)
    --no-replay       skip feeding the event log to a replica and comparing snapshots
    --help            print this help

Exit status: 0 when every check passed and the queue drained, 1 when the step limit was
reached first, 2 for bad flags; a broken rule panics with `simulation failure ...`.
";

fn parse() -> Result<Option<sim::Params>, String> {
    let mut params = sim::Params::new(42, 8, 10_000);
    let mut max_steps = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            value
                .parse()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match flag.as_str() {
            "--agents" => {
                params.agents = usize::try_from(number("--agents")?).map_err(|e| e.to_string())?
            }
            "--tasks" => params.tasks = number("--tasks")?,
            "--seed" => params.seed = number("--seed")?,
            "--check-every" => params.check_every = number("--check-every")?,
            "--max-steps" => max_steps = Some(number("--max-steps")?),
            "--no-replay" => params.replay = false,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if params.agents == 0 {
        return Err("--agents must be at least 1".into());
    }
    params.max_steps = max_steps.unwrap_or(sim::Params::new(0, 1, params.tasks).max_steps);
    Ok(Some(params))
}

fn main() -> ExitCode {
    let params = match parse() {
        Ok(Some(params)) => params,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let run = sim::run(&params);
    let wall = started.elapsed();
    let r = &run.report;

    let simulated_s = (r.end_ms - sim::EPOCH_MS) / 1000;
    println!(
        "seed {}: {} agents, {} tasks queued, {} steps, {}h{:02}m{:02}s simulated",
        r.seed,
        r.agents,
        r.tasks_queued,
        r.steps,
        simulated_s / 3600,
        simulated_s / 60 % 60,
        simulated_s % 60
    );
    println!(
        "final status of every task queued ({} evicted after finishing):",
        r.evicted
    );
    for status in scan_queue::TaskStatus::ALL {
        println!(
            "  {:<20} {:>8}",
            status.name(),
            r.final_status[status.index()]
        );
    }
    println!("assignments:          {:>8}", r.assignments);
    println!("status updates:       {:>8}", r.status_updates);
    println!("requeues:             {:>8}", r.requeues);
    println!("lease expiries:       {:>8}", r.lease_expiries);
    println!(
        "time-outs:            {:>8}  ({} by deadline)",
        r.timeouts, r.deadline_timeouts
    );
    println!("agents registered:    {:>8}", r.agents_registered);
    println!("revocations:          {:>8}", r.revocations);
    println!("silent crashes:       {:>8}", r.crashes);
    println!("rejected key checks:  {:>8}", r.rejected_key_checks);
    println!(
        "stale keys refused:   {:>8}  (after a crash, a slow job, a revocation)",
        r.stale_refused
    );
    println!(
        "bad calls refused:    {:>8}  (garbage or foreign keys, wrong retries)",
        r.garbage_refused
    );
    println!("retries answered:     {:>8}", r.retries_answered);
    println!("bound refusals:       {:>8}", r.bound_refusals);
    println!("malformed scans:      {:>8}", r.invalid_refused);
    println!("timer wake-ups:       {:>8}", r.timer_wakeups);
    println!("full checks:          {:>8}", r.full_checks);
    println!(
        "transitions (events): {:>8}  (digest {:016x})",
        r.events, r.event_digest
    );
    if r.replayed {
        println!("replay: the event log rebuilds an identical snapshot");
    }
    let secs = wall.as_secs_f64();
    println!(
        "throughput: {:.0} transitions/s ({:.2} s wall clock for the whole run and its checks)",
        r.events as f64 / secs.max(1e-9),
        secs
    );
    if r.drained {
        println!("OK: no task lost, none held by two agents");
        ExitCode::SUCCESS
    } else {
        println!("NOT DRAINED: the step limit stopped the run (no check failed)");
        ExitCode::from(1)
    }
}
