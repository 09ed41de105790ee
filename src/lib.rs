//! # scan-queue
//!
//! The task queue behind security scan agents (ZAP, Burp, AppScan, …), with the semantics of
//! ThreadFix's "Tasks API" and none of its bugs: a task is never held by two agents,
//! timeouts are enforced, and finished tasks stay finished.
//!
//! This crate is a **deterministic state machine with no I/O**. It never reads a clock, never
//! touches the OS random source, never spawns a thread, never opens a file or socket. Time
//! comes in as `now_ms` (milliseconds since the Unix epoch) on every operation, and
//! randomness from a [`KeySource`] (a 32-byte seed or a CSPRNG you supply), so any transport
//! can embed it and any run can be replayed exactly.
//!
//! ## The lifecycle
//!
//! ```
//! use scan_queue::{ApplicationId, Config, KeySource, NewScan, Queue, TaskStatus};
//!
//! let mut queue = Queue::new(Config::default(), KeySource::from_seed([42; 32]))?;
//! let t0 = 1_475_094_356_000;
//!
//! // An administrator queues a scan; an agent gets a key.
//! let scan = NewScan::new(ApplicationId(1), "Burp Suite Pro").target_url("http://targeturl/app");
//! let id = queue.queue_scan(t0, scan)?.id();
//! let agent = queue.register_agent(t0)?;
//!
//! // The agent asks for work it can do and gets the oldest matching task, with a task key.
//! let task = queue
//!     .request_task(t0 + 1_000, agent.key.expose_secret(), &["Burp Suite Pro"], "scanagent.properties")?
//!     .expect("a task is queued");
//! assert_eq!(task.id(), id);
//! let task_key = task.assignment().unwrap().task_key().expose_secret().to_owned();
//!
//! // Progress (renews the lease), then completion.
//! let k = agent.key.expose_secret();
//! queue.update_status(t0 + 2_000, id, "This task is still in progress", k, &task_key)?;
//! let done = queue.complete_task(t0 + 3_000, id, k, &task_key)?;
//! assert_eq!(done.status(), TaskStatus::CompleteSuccessful);
//! assert_eq!(done.history().last().unwrap().message.to_string(),
//!            "Scan completed successfully at: 28-09-16:20:25:00 +0000");
//!
//! // Finished is final; a retry of the same call gets the same answer, marked as a repeat.
//! assert!(!done.is_repeat());
//! assert!(queue.fail_task(t0 + 4_000, id, "late", k, &task_key).is_err());
//! let retry = queue.complete_task(t0 + 5_000, id, k, &task_key)?;
//! assert!(retry.is_repeat());
//! assert_eq!(retry.end_ms(), Some(t0 + 3_000));
//!
//! // Every change came out as an event, for a journal.
//! assert_eq!(queue.drain_events().count(), 5);
//! # Ok::<(), scan_queue::Error>(())
//! ```
//!
//! ## The run-loop contract
//!
//! 1. Call an operation with the current time. It first applies every lease expiry and task
//!    deadline up to `now_ms`; then it either succeeds or returns an [`Error`] and changes
//!    nothing more.
//! 2. Take [`Queue::drain_events`] and persist the events if you need durability
//!    ([`Queue::apply`] replays them; [`Queue::snapshot`] / [`Queue::restore`] bound replay).
//! 3. Sleep until [`Queue::next_deadline_ms`] (or the next request) and call
//!    [`Queue::advance`].
//!
//! Time never runs backwards inside the queue: an earlier `now_ms` counts as the latest seen.
//!
//! ## From many threads
//!
//! [`SharedQueue`] is the queue behind one lock, with every operation from `&self`;
//! [`SharedQueue::lock`] gives the plain queue under a guard. The same contract holds (take
//! events with [`SharedQueue::drain_events`], wake up for [`Queue::next_deadline_ms`] through
//! [`SharedQueue::read`] and call [`SharedQueue::advance`]). The crate itself starts no thread.
//!
//! ## Secrets
//!
//! Agent keys and task keys ([`AgentKey`], [`TaskKey`]) are 44 characters of `[A-Za-z0-9]`
//! (≈262 bits) from the [`KeySource`], compared in constant time, and never shown by `Debug`,
//! `Display` or errors. Snapshots and events contain them (to survive restarts): store those
//! as secrets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Bad input must never panic the core: panicking constructs are denied outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod admin;
mod agent;
mod agent_call;
mod assign;
mod config;
mod error;
mod event;
mod hash;
mod ids;
mod key;
mod lease;
mod queue;
mod rng;
mod scan;
mod shared;
mod snapshot;
mod stats;
mod status;
mod task;
mod task_store;
mod time;

pub use agent::RegisteredAgent;
pub use agent_call::Answer;
pub use assign::split_scanner_list;
pub use config::{Config, MIN_URL_LEN};
pub use error::{Bound, Error, Field};
pub use event::Event;
pub use ids::{AgentId, ApplicationId, ScanConfigId, TaskId};
pub use key::{AgentKey, KEY_LEN, TaskKey};
pub use queue::Queue;
pub use rng::KeySource;
pub use scan::NewScan;
pub use shared::SharedQueue;
pub use snapshot::{AgentRecord, SNAPSHOT_FORMAT, Snapshot};
pub use stats::{Counters, Stats};
pub use status::TaskStatus;
pub use task::{Assignment, StatusEntry, StatusMessage, Task};
pub use time::ThreadfixTime;

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
