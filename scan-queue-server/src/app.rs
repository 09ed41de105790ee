//! The server's shared state and the one function every change goes through,
//! [`App::transact`]: an operation on the [`State`] under its lock, its records handed to the
//! [`Storage`] in order, and an [`Unacked`] result that can only be answered after the
//! storage says it is durable. Also the deadline timer.

use crate::auth::ApiKeys;
use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::http::Failure;
use crate::metrics::Metrics;
use crate::scanners::Scanners;
use crate::state::{Fact, Record, Retention, State};
use crate::storage::Storage;
use crate::webhook::Webhooks;
use parking_lot::Mutex;
use scan_queue::{AgentId, Event, TaskId, TaskStatus};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The bounds on what one request may carry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest result file `completeTask` accepts, in bytes.
    pub(crate) upload_bytes: u64,
    /// The largest scan configuration document `setTaskConfig` accepts, in bytes.
    pub(crate) config_bytes: usize,
    /// The largest agent configuration text `requestTask` accepts, in bytes.
    pub(crate) agent_config_bytes: usize,
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    /// The queue and what the server keeps beside it, behind one lock (as quinn keeps
    /// quinn-proto): every operation under it is short, and no I/O happens under it.
    state: Mutex<State>,
    /// Where every change is kept.
    pub(crate) storage: Box<dyn Storage>,
    pub(crate) clock: Clock,
    /// The API key, and the previous one during a rotation's grace period.
    pub(crate) api_keys: ApiKeys,
    /// Failed authentication per client address.
    pub(crate) throttle: crate::throttle::Throttle,
    /// What the network edge accepts (timeouts, bounds).
    pub(crate) edge: crate::edge::Edge,
    /// One permit per upload in flight (`edge.max_uploads`).
    pub(crate) uploads: std::sync::Arc<tokio::sync::Semaphore>,
    pub(crate) scanners: Scanners,
    pub(crate) limits: Limits,
    /// How result files are checked at completion.
    pub(crate) result_check: crate::report::ResultCheck,
    /// How long results are kept.
    pub(crate) retention: Retention,
    /// Where terminal transitions are pushed.
    pub(crate) webhooks: Webhooks,
    /// Wakes the webhook worker when a transaction queued deliveries.
    pub(crate) webhook_wake: Notify,
    /// HTTP request counters and the queue-depth history (`/metrics`, the page's chart).
    pub(crate) metrics: Metrics,
    /// The Scan Agent Tasks page's login sessions.
    pub(crate) sessions: crate::sessions::Sessions,
    /// When each agent was last seen.
    pub(crate) presence: crate::presence::Presence,
    /// Agents silent this long are revoked.
    pub(crate) agent_expiry_ms: Option<u64>,
    /// Wakes the timer when a deadline earlier than the one it sleeps until appears.
    timer: Notify,
    /// Set by [`App::wake_timer`]: the timer also runs retention at once when it wakes.
    sweep_now: std::sync::atomic::AtomicBool,
    /// The deadline the timer sleeps until (`u64::MAX`: none). Written and compared only
    /// under the state's lock, so no earlier deadline can slip between the two.
    armed_ms: AtomicU64,
}

/// The result of an operation whose records may not be durable yet. The only ways to its
/// value are [`App::ack`] (wait until durable: every answer) and
/// [`unanswered`](Unacked::unanswered) (nobody is told: the timer).
#[must_use = "an answer must wait until its change is durable: App::ack"]
#[derive(Debug)]
pub(crate) struct Unacked<T> {
    value: T,
    seq: u64,
}

impl<T> Unacked<T> {
    /// The value, for a caller that answers nobody.
    pub(crate) fn unanswered(self) -> T {
        self.value
    }
}

/// The storage failed: the change may not be kept, and the server is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StorageFailed;

impl App {
    /// The shared state of a server configured by `config`, on `state` kept by `storage`.
    pub(crate) fn new(
        state: State,
        storage: Box<dyn Storage>,
        clock: Clock,
        config: ServerConfig,
    ) -> App {
        let limits = Limits {
            upload_bytes: config.max_upload_bytes,
            config_bytes: config.max_config_bytes,
            agent_config_bytes: config.queue.max_agent_config_len,
        };
        let previous_until = clock.now_ms().saturating_add(
            u64::try_from(config.previous_api_key_grace.as_millis()).unwrap_or(u64::MAX),
        );
        App {
            presence: crate::presence::Presence::new(clock.now_ms()),
            agent_expiry_ms: config.agent_expiry_ms,
            state: Mutex::new(state),
            storage,
            clock,
            api_keys: ApiKeys::new(
                config.api_key,
                config.previous_api_key.map(|key| (key, previous_until)),
            ),
            throttle: crate::throttle::Throttle::new(config.auth_throttle),
            uploads: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.edge.max_uploads.max(1),
            )),
            edge: config.edge,
            scanners: config.scanners,
            limits,
            result_check: config.result_check,
            retention: config.retention,
            webhooks: config.webhooks,
            webhook_wake: Notify::new(),
            metrics: Metrics::new(),
            sessions: crate::sessions::Sessions::default(),
            timer: Notify::new(),
            sweep_now: std::sync::atomic::AtomicBool::new(false),
            armed_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Refuses at once a request from an address blocked for failing authentication (429),
    /// before its key is looked at.
    pub(crate) fn auth_blocked(&self, peer: Option<IpAddr>) -> Result<(), Failure> {
        match peer.and_then(|ip| self.throttle.blocked(ip)) {
            Some(wait) => {
                self.metrics.record_throttled();
                Err(Failure::throttled(wait))
            }
            None => Ok(()),
        }
    }

    /// A request presented a wrong API key (`what`: "call", "login", "scrape"…): counted
    /// against its address and in the metrics, logged with the address (never the key).
    /// Answers ThreadFix's authentication failure, or 429 once the address is past its quota.
    pub(crate) fn auth_failed(&self, peer: Option<IpAddr>, what: &'static str) -> Failure {
        self.metrics.record_api_key_rejection();
        let throttled = peer.and_then(|ip| self.throttle.failed(ip));
        let client = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        match throttled {
            Some(wait) => {
                tracing::warn!(%client, what, retry_after_s = wait.as_secs(), "wrong API key; client throttled");
                self.metrics.record_throttled();
                Failure::throttled(wait)
            }
            None => {
                tracing::info!(%client, what, "wrong API key");
                Failure::new(crate::wire::AUTH_FAILED)
            }
        }
    }

    /// Runs one operation on the state at the current time, under its lock, and hands the
    /// records it made to the storage (still under the lock, which gives them their order;
    /// the storage does no I/O there). Nothing here awaits.
    pub(crate) fn transact<T>(&self, op: impl FnOnce(&mut State, u64) -> T) -> Unacked<T> {
        let now_ms = self.clock.now_ms();
        let mut state = self.state.lock();
        let value = op(&mut state, now_ms);
        let mut records = state.take_records();
        let deliveries = crate::webhook::deliveries(
            &state,
            &records,
            &self.webhooks.receivers,
            &self.scanners,
            now_ms,
        );
        let queued = !deliveries.is_empty();
        if queued {
            match state.queue_webhooks(deliveries) {
                Ok(()) => records.extend(state.take_records()),
                Err(e) => tracing::error!(error = %e, "webhook deliveries did not apply"),
            }
        }
        let logged: Vec<Option<Logged>> = records.iter().map(|r| describe(&state, r)).collect();
        let wake = state
            .queue
            .next_deadline_ms()
            .is_some_and(|next| next < self.armed_ms.load(Ordering::Relaxed));
        let seq = self.storage.append(records, &state);
        drop(state);
        if wake {
            self.timer.notify_one();
        }
        if queued {
            self.webhook_wake.notify_one();
        }
        for l in logged.into_iter().flatten() {
            l.log();
        }
        Unacked { value, seq }
    }

    /// Waits until the change behind `unacked` — and every change before it, which the
    /// answer may reflect — is durable.
    pub(crate) async fn ack<T>(&self, unacked: Unacked<T>) -> Result<T, StorageFailed> {
        if self.storage.durable(unacked.seq).await {
            Ok(unacked.value)
        } else {
            Err(StorageFailed)
        }
    }

    /// Reads the state under its lock (briefly: copy out what is needed).
    pub(crate) fn read<T>(&self, view: impl FnOnce(&State) -> T) -> T {
        view(&self.state.lock())
    }

    /// The state's lock, to read; for [`crate::Server::queue`].
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Runs what the storage does beside requests (a standby's log tailing, the election).
    pub(crate) async fn run_storage(&self) {
        self.storage.run(&self.state, &|| self.wake_timer()).await;
    }

    /// Whether this server may change the state (not a standby).
    pub(crate) fn is_active(&self) -> bool {
        self.storage.standby().is_none()
    }

    /// Makes the timer look at the next deadline, and retention at the results, again now.
    pub(crate) fn wake_timer(&self) {
        self.sweep_now.store(true, Ordering::Relaxed);
        self.timer.notify_one();
    }
}

/// The longest the timer sleeps without looking again (wall-clock jumps, manual clocks).
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);
/// How often, at most, retention looks for results to delete (it also looks at every wake).
const SWEEP_EVERY_MS: u64 = 10_000;

impl App {
    /// Sleeps until the queue's next deadline and applies it, forever; deletes the results
    /// retention says are due at most every [`SWEEP_EVERY_MS`] when it wakes (so within a
    /// minute of being due).
    pub(crate) async fn run_timer(&self) {
        let advance = || {
            self.transact(|s, now| s.queue.advance(now)).unanswered();
        };
        let mut next_sweep_ms = 0;
        loop {
            if !self.is_active() {
                // A standby's state follows the active server's log; its deadlines are
                // applied there.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = self.timer.notified() => {}
                }
                continue;
            }
            let now_ms = self.clock.now_ms();
            if now_ms >= next_sweep_ms || self.sweep_now.swap(false, Ordering::Relaxed) {
                next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
                crate::ops::sweep_results(self).await;
                self.throttle.sweep();
                crate::ops::expire_agents(self).await;
            }
            let wait_ms = {
                let state = self.state.lock();
                let next = state.queue.next_deadline_ms();
                self.armed_ms
                    .store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
                next.map(|at| at.saturating_sub(self.clock.now_ms()))
            };
            match wait_ms {
                Some(0) => advance(),
                Some(ms) => {
                    let sleep = Duration::from_millis(ms).min(MAX_TIMER_SLEEP);
                    tokio::select! {
                        () = tokio::time::sleep(sleep) => advance(),
                        () = self.timer.notified() => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(MAX_TIMER_SLEEP) => {}
                        () = self.timer.notified() => {}
                    }
                }
            }
        }
    }
}

/// One change, as logged: what an operator needs (the task, its scanner, application and
/// URL, the agent's public id and name, the reason), never a key.
#[derive(Default)]
struct Logged {
    what: &'static str,
    /// Heartbeats are a quarter of all changes: they go at DEBUG.
    debug: bool,
    task: Option<TaskId>,
    agent: Option<AgentId>,
    agent_name: Option<String>,
    status: Option<TaskStatus>,
    scanner: Option<String>,
    application: Option<u64>,
    url: Option<String>,
    reason: Option<String>,
}

/// Characters of an agent's reason in a log line.
const LOGGED_REASON_CHARS: usize = 300;

impl Logged {
    fn log(&self) {
        let task = self.task.map(|t| t.0);
        let agent = self.agent.map(tracing::field::display);
        let status = self.status.map(TaskStatus::name);
        let (name, scanner, url, reason) = (
            self.agent_name.as_deref(),
            self.scanner.as_deref(),
            self.url.as_deref(),
            self.reason.as_deref(),
        );
        let application = self.application;
        if self.debug {
            tracing::debug!(
                task,
                agent,
                agent_name = name,
                status,
                scanner,
                application,
                url,
                reason,
                "{}",
                self.what
            );
        } else {
            tracing::info!(
                task,
                agent,
                agent_name = name,
                status,
                scanner,
                application,
                url,
                reason,
                "{}",
                self.what
            );
        }
    }
}

/// What a record was, for the log (`None`: not logged here; the webhook worker logs its own).
fn describe(state: &State, record: &Record) -> Option<Logged> {
    let queue = &state.queue;
    let event = match record {
        Record::Event(event) => event,
        Record::Fact(Fact::WebhooksQueued { .. } | Fact::WebhookAttempted { .. }) => return None,
        Record::Fact(Fact::ScanConfigStored(doc)) => {
            return Some(Logged {
                what: "scan config stored",
                scanner: Some(doc.scanner.clone()),
                application: Some(doc.application.0),
                ..Logged::default()
            });
        }
        Record::Fact(Fact::Completed { event, .. }) => event,
        Record::Fact(Fact::Retried { from, to }) => {
            return Some(Logged {
                what: "task retried",
                task: Some(*to),
                reason: Some(format!("a retry of task {from}")),
                ..Logged::default()
            });
        }
        Record::Fact(Fact::ResultsDeleted { tasks }) => {
            return Some(Logged {
                what: "results deleted by retention",
                task: tasks.first().copied(),
                ..Logged::default()
            });
        }
    };
    let task = event.task();
    let current = task.and_then(|id| queue.task(id));
    let note = task.and_then(|id| state.console().task(id));
    let holder = current
        .and_then(|t| t.assignment())
        .map(|a| a.agent())
        .or_else(|| note.and_then(|n| n.agent));
    let status = current.map(scan_queue::Task::status);
    let mut reason = None;
    let mut debug = false;
    let (what, agent) = match event {
        Event::AgentRegistered { agent, .. } => ("scan agent registered", Some(*agent)),
        Event::AgentRevoked { agent, .. } => ("scan agent revoked", Some(*agent)),
        Event::TaskQueued { .. } => ("task queued", None),
        Event::TaskAssigned { agent, .. } => ("task assigned", Some(*agent)),
        Event::StatusUpdated { .. } => {
            debug = true;
            ("task status update", holder)
        }
        Event::TaskCompleted { .. } => ("task completed", holder),
        Event::TaskFailed { reason: why, .. } => {
            reason = Some(why.chars().take(LOGGED_REASON_CHARS).collect());
            ("task failed", holder)
        }
        Event::TaskCancelled { .. } => ("task cancelled", holder),
        Event::LeaseExpired { requeued, .. } => {
            reason = Some(
                if *requeued {
                    "no status update within the lease; back to the queue"
                } else {
                    "no status update within the lease on the last attempt; timed out"
                }
                .to_owned(),
            );
            ("lease expired", holder)
        }
        Event::DeadlineReached { .. } => {
            reason = Some("the task deadline passed".to_owned());
            ("task deadline reached", holder)
        }
        _ => ("queue event", None),
    };
    let agent_name = agent
        .and_then(|a| state.console().agent(a))
        .and_then(|n| n.name.clone().or_else(|| n.host.clone()))
        .or_else(|| note.and_then(|n| n.agent_name.clone()));
    Some(Logged {
        what,
        debug,
        task,
        agent,
        agent_name,
        status,
        scanner: current.map(|t| t.scanner().to_owned()),
        application: current.map(|t| t.application().0),
        url: current.and_then(|t| t.target_url()).map(str::to_owned),
        reason,
    })
}
