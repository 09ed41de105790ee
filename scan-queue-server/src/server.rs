//! The server: its configuration, its shared state, the one function through which every
//! core operation runs ([`App::transact`]), and the deadline timer.

use crate::auth::ApiKey;
use crate::clock::Clock;
use crate::journal::{Durability, Journal};
use crate::scanners::Scanners;
use crate::store::{ConfigStore, DataDir};
use parking_lot::Mutex;
use scan_queue::{AgentId, Event, KeySource, Queue, TaskId, TaskStatus};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Everything a server is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The administrator API key every call must present.
    pub api_key: ApiKey,
    /// Where uploaded result files, scan configs and the journal are stored.
    pub data_dir: PathBuf,
    /// How the queue and the scan configs persist across restarts (`None`: in memory only,
    /// lost when the process stops).
    pub durability: Option<Durability>,
    /// The queue's durations and bounds (lease, task deadline, attempts, …).
    pub queue: scan_queue::Config,
    /// The scanners tasks may use.
    pub scanners: Scanners,
    /// The largest result file `completeTask` accepts, in bytes.
    pub max_upload_bytes: u64,
    /// The largest scan configuration document `setTaskConfig` accepts, in bytes.
    pub max_config_bytes: usize,
}

impl ServerConfig {
    /// Default upload bound: 100 MiB.
    pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
    /// Default configuration document bound: 1 MiB.
    pub const DEFAULT_MAX_CONFIG_BYTES: usize = 1024 * 1024;

    /// The defaults (queue defaults, the six scanners, the default bounds, durable with
    /// `fsync` always) with this key and data directory.
    pub fn new(api_key: ApiKey, data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            api_key,
            data_dir: data_dir.into(),
            durability: Some(Durability::default()),
            queue: scan_queue::Config::default(),
            scanners: Scanners::default(),
            max_upload_bytes: Self::DEFAULT_MAX_UPLOAD_BYTES,
            max_config_bytes: Self::DEFAULT_MAX_CONFIG_BYTES,
        }
    }
}

/// The state every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    /// The core, behind one lock (as quinn keeps quinn-proto): every operation is short.
    pub(crate) queue: Mutex<Queue>,
    pub(crate) clock: Clock,
    pub(crate) api_key: ApiKey,
    pub(crate) scanners: Scanners,
    pub(crate) data: DataDir,
    /// Scan configuration documents. Never locked while the queue is locked, or the reverse.
    pub(crate) configs: Mutex<ConfigStore>,
    pub(crate) max_upload_bytes: u64,
    pub(crate) max_config_bytes: usize,
    pub(crate) max_agent_config_bytes: usize,
    /// Wakes the timer when a deadline earlier than the one it sleeps until appears.
    timer: Notify,
    /// The deadline the timer sleeps until (`u64::MAX`: none). Written and compared only
    /// while the queue is locked, so no earlier deadline can slip between the two.
    armed_ms: AtomicU64,
    /// Where the queue's events are persisted (`None`: in memory only).
    pub(crate) journal: Option<Journal>,
    /// HTTP request counters and the queue-depth history (`/metrics`, the page's chart).
    pub(crate) metrics: crate::metrics::Metrics,
    /// The Scan Agent Tasks page's login sessions.
    pub(crate) sessions: crate::ui::session::Sessions,
}

tokio::task_local! {
    /// The journal sequence number the current HTTP answer waits for (see [`App::transact`]).
    static ACK_SEQ: Cell<u64>;
}

/// One transition, as logged: never a key.
struct Transition {
    what: &'static str,
    task: Option<TaskId>,
    agent: Option<AgentId>,
    status: Option<TaskStatus>,
}

impl App {
    /// Runs one core operation under the queue lock at the current time, and takes the
    /// events it produced.
    ///
    /// This is the only place the queue is driven from, so it is where durability is: the
    /// drained events are appended to the journal still under the lock (the lock gives them
    /// their total order), and the sequence number the answer must wait for is noted for the
    /// HTTP layer ([`durable_answers`]), which holds the answer until the journal has it on
    /// disk. The lock is not held across the disk write. Nothing here awaits.
    pub(crate) fn transact<T>(&self, op: impl FnOnce(&mut Queue, u64) -> T) -> T {
        let now_ms = self.clock.now_ms();
        let mut queue = self.queue.lock();
        let out = op(&mut queue, now_ms);
        let events: Vec<Event> = queue.drain_events().collect();
        let transitions: Vec<Transition> = events.iter().map(|e| describe(&queue, e)).collect();
        let wake = queue
            .next_deadline_ms()
            .is_some_and(|next| next < self.armed_ms.load(Ordering::Relaxed));
        let ack_seq = self.journal.as_ref().map(|j| j.append(events, &queue));
        drop(queue);
        if let Some(seq) = ack_seq {
            // Outside an HTTP answer (the timer) nobody is told, so nobody waits.
            let _ = ACK_SEQ.try_with(|ack| ack.set(ack.get().max(seq)));
        }
        if wake {
            self.timer.notify_one();
        }
        for t in transitions {
            let task = t.task.map(|t| t.0);
            let agent = t.agent.map(tracing::field::display);
            let status = t.status.map(TaskStatus::name);
            tracing::info!(task, agent, status, "{}", t.what);
        }
        out
    }
}

/// What an event was, for the log: the task, the agent's public id, the status now.
fn describe(queue: &Queue, event: &Event) -> Transition {
    let task = event.task();
    let current = task.and_then(|id| queue.task(id));
    let holder = current.and_then(|t| t.assignment()).map(|a| a.agent());
    let status = current.map(scan_queue::Task::status);
    let (what, agent) = match event {
        Event::AgentRegistered { agent, .. } => ("scan agent registered", Some(*agent)),
        Event::AgentRevoked { agent, .. } => ("scan agent revoked", Some(*agent)),
        Event::TaskQueued { .. } => ("task queued", None),
        Event::TaskAssigned { agent, .. } => ("task assigned", Some(*agent)),
        Event::StatusUpdated { .. } => ("task status update", holder),
        Event::TaskCompleted { .. } => ("task completed", holder),
        Event::TaskFailed { .. } => ("task failed", holder),
        Event::TaskCancelled { .. } => ("task cancelled", holder),
        Event::LeaseExpired { .. } => ("lease expired", None),
        Event::DeadlineReached { .. } => ("task deadline reached", holder),
        _ => ("queue event", None),
    };
    Transition {
        what,
        task,
        agent,
        status,
    }
}

/// Holds every HTTP answer until the journal has persisted what it reflects: the events of
/// its own call and every event before them (an answer may show state an earlier call
/// changed). When the journal has failed, the answer is a failure envelope instead.
async fn durable_answers(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(journal) = &app.journal else {
        return next.run(request).await;
    };
    let (response, seq) = ACK_SEQ
        .scope(Cell::new(0), async {
            let response = next.run(request).await;
            (response, ACK_SEQ.with(Cell::get))
        })
        .await;
    match journal.durable(seq).await {
        Ok(()) => response,
        Err(_) => {
            use axum::response::IntoResponse;
            let envelope = crate::wire::Envelope::<()>::failure(
                "The server could not persist this change and is stopping; retry against the \
                 restarted server.",
            );
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(envelope),
            )
                .into_response()
        }
    }
}

/// The longest the timer sleeps without looking again (wall-clock jumps, manual clocks).
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

impl App {
    /// Sleeps until the queue's next deadline and applies it, forever.
    async fn run_timer(&self) {
        loop {
            let wait_ms = {
                let queue = self.queue.lock();
                let next = queue.next_deadline_ms();
                self.armed_ms
                    .store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
                next.map(|at| at.saturating_sub(self.clock.now_ms()))
            };
            match wait_ms {
                Some(0) => {
                    self.transact(|q, now| q.advance(now));
                }
                Some(ms) => {
                    let sleep = Duration::from_millis(ms).min(MAX_TIMER_SLEEP);
                    tokio::select! {
                        () = tokio::time::sleep(sleep) => { self.transact(|q, now| q.advance(now)); }
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

/// A scan queue server: the core behind ThreadFix's Tasks API.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use scan_queue_server::{ApiKey, Server, ServerConfig};
/// let server = Server::new(ServerConfig::new(ApiKey::generate(), "./scan-queue-data"))?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    pub(crate) app: Arc<App>,
}

impl Server {
    /// A server on the system clock, with keys from a ChaCha20 generator seeded by the OS.
    pub fn new(config: ServerConfig) -> std::io::Result<Server> {
        use rand::SeedableRng;
        let keys = KeySource::from_rng(rand_chacha::ChaCha20Rng::from_os_rng());
        Server::with_parts(config, keys, Clock::system())
    }

    /// A server with the given key source and clock (tests: a seed and a manual clock).
    /// Creates the data directory and empties its `incoming/`; when durable, restores the
    /// queue from the journal (the latest snapshot, then every event after it) and the scan
    /// configs from their files. A damaged journal is an error naming the file and offset.
    pub fn with_parts(
        config: ServerConfig,
        keys: KeySource,
        clock: Clock,
    ) -> std::io::Result<Server> {
        let max_agent_config_bytes = config.queue.max_agent_config_len;
        let data = DataDir::open(&config.data_dir, clock.now_ms())?;
        let (queue, journal, configs) = match config.durability {
            Some(durability) => {
                let sync = durability.fsync != crate::Fsync::Never;
                let configs = ConfigStore::open(&config.data_dir.join("configs"), sync)?;
                let (journal, queue) =
                    Journal::open(&config.data_dir, durability, config.queue, keys)?;
                (queue, Some(journal), configs)
            }
            None => (
                Queue::new(config.queue, keys).map_err(std::io::Error::other)?,
                None,
                ConfigStore::default(),
            ),
        };
        Ok(Server {
            app: Arc::new(App {
                queue: Mutex::new(queue),
                clock,
                api_key: config.api_key,
                scanners: config.scanners,
                data,
                configs: Mutex::new(configs),
                max_upload_bytes: config.max_upload_bytes,
                max_config_bytes: config.max_config_bytes,
                max_agent_config_bytes,
                timer: Notify::new(),
                armed_ms: AtomicU64::new(u64::MAX),
                metrics: crate::metrics::Metrics::new(),
                sessions: crate::ui::session::Sessions::default(),
                journal,
            }),
        })
    }

    /// The HTTP routes (every endpoint under every accepted prefix), ready to serve or to
    /// drive without a network (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        crate::http::router(Arc::clone(&self.app)).layer(axum::middleware::from_fn_with_state(
            Arc::clone(&self.app),
            durable_answers,
        ))
    }

    /// Serves on `listener`, with the deadline timer, until `shutdown` completes; then stops
    /// accepting, lets requests in flight finish, and stops the timer. Also stops (with an
    /// error) if the journal cannot be written: no change is acknowledged after that.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let timer = tokio::spawn({
            let app = Arc::clone(&self.app);
            async move { app.run_timer().await }
        });
        let app = Arc::clone(&self.app);
        let stop = async move {
            match &app.journal {
                Some(journal) => tokio::select! {
                    () = shutdown => {}
                    () = journal.failed() => {}
                },
                None => shutdown.await,
            }
        };
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(stop)
            .await;
        timer.abort();
        // Wait for it to be gone, so that dropping the server releases the data directory.
        let _ = timer.await;
        if self.app.journal.as_ref().is_some_and(Journal::has_failed) {
            return Err(std::io::Error::other(
                "the journal could not be written (see the log); stopped",
            ));
        }
        served
    }

    /// The queue, to inspect (read only: every change goes through the API, so it is
    /// journaled). Holds the queue's lock until dropped: keep it briefly.
    pub fn queue(&self) -> impl std::ops::Deref<Target = Queue> + '_ {
        ReadOnly(self.app.queue.lock())
    }

    /// Where completed tasks' result files are.
    pub fn results_dir(&self) -> &Path {
        self.app.data.results_dir()
    }

    /// Makes the timer look at the next deadline again now (after moving a manual clock).
    pub fn wake_timer(&self) {
        self.app.timer.notify_one();
    }
}

/// A lock guard that only reads.
struct ReadOnly<'a>(parking_lot::MutexGuard<'a, Queue>);

impl std::ops::Deref for ReadOnly<'_> {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.0
    }
}
