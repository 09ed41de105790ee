//! [`Server`]: a scan queue server built from its configuration, and serving until told to
//! stop (or until its storage fails).

use crate::app::App;
use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::state::State;
use crate::storage::{LocalStore, PgStore, Storage};
use scan_queue::{KeySource, Queue};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long a stopping server lets requests in flight finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

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
    app: Arc<App>,
    results_dir: PathBuf,
}

impl Server {
    /// A server on the system clock, with keys from a ChaCha20 generator seeded by the OS.
    pub fn new(config: ServerConfig) -> std::io::Result<Server> {
        use rand::SeedableRng;
        let keys = KeySource::from_rng(rand_chacha::ChaCha20Rng::from_os_rng());
        Server::with_parts(config, keys, Clock::system())
    }

    /// A server with the given key source and clock (tests: a seed and a manual clock).
    /// Opens the data directory (created private if needed) and, when durable, recovers the
    /// state the journal holds. A damaged journal is an error naming the file and offset; a
    /// configuration the server cannot keep its promises with is refused.
    pub fn with_parts(
        config: ServerConfig,
        keys: KeySource,
        clock: Clock,
    ) -> std::io::Result<Server> {
        config.check().map_err(std::io::Error::other)?;
        let (store, state, results_dir): (Box<dyn Storage>, State, PathBuf) =
            if let Some(pg) = &config.postgres {
                let (store, state) = PgStore::open(pg, config.queue.clone(), clock.now_ms())?;
                let dir = store.staging_dir().to_owned();
                (Box::new(store), state, dir)
            } else {
                let (store, state) = LocalStore::open(
                    &config.data_dir,
                    config.durability.clone(),
                    config.queue.clone(),
                    keys,
                    clock.now_ms(),
                )?;
                let dir = store.results_dir().to_owned();
                (Box::new(store), state, dir)
            };
        let app = App::new(state, store, clock, config);
        Ok(Server {
            app: Arc::new(app),
            results_dir,
        })
    }

    /// The HTTP routes (every endpoint under every accepted prefix, the page and
    /// `/metrics`), ready to serve or to drive without a network
    /// (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        let page = crate::ui::routes(axum::Router::new());
        crate::http::router(Arc::clone(&self.app), page)
    }

    /// Serves on `listener`, with the deadline timer, until `shutdown` completes; then stops
    /// accepting, lets requests in flight finish, stops the timer and closes the storage.
    /// Also stops (with an error) if the storage fails: no change is acknowledged after that.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let timer = tokio::spawn({
            let app = Arc::clone(&self.app);
            async move { app.run_timer().await }
        });
        let webhooks = tokio::spawn({
            let app = Arc::clone(&self.app);
            async move { crate::webhook::run(&app).await }
        });
        let storage = tokio::spawn({
            let app = Arc::clone(&self.app);
            async move { app.run_storage().await }
        });
        let app = Arc::clone(&self.app);
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                () = app.storage.failed() => {}
            }
        };
        let metrics_app = Arc::clone(&self.app);
        let served = crate::edge::serve(
            listener,
            self.router(),
            &self.app.edge,
            move || metrics_app.metrics.record_connection_refused(),
            stop,
            SHUTDOWN_GRACE,
        )
        .await;
        timer.abort();
        webhooks.abort();
        storage.abort();
        let _ = storage.await;
        // Wait for them to be gone, so that dropping the server releases the data directory.
        let _ = timer.await;
        let _ = webhooks.await;
        if self.app.storage.has_failed() {
            return Err(std::io::Error::other(
                "the storage could not be written (see the log); stopped",
            ));
        }
        served
    }

    /// The queue, to inspect (read only: every change goes through the API, so it is
    /// journaled). Holds the state's lock until dropped: keep it briefly.
    pub fn queue(&self) -> impl std::ops::Deref<Target = Queue> + '_ {
        QueueRead(self.app.lock())
    }

    /// Where completed tasks' result files are (with PostgreSQL: where uploads are staged on
    /// their way into the database).
    pub fn results_dir(&self) -> &Path {
        &self.results_dir
    }

    /// Makes the timer look at the next deadline, retention at the results and agent expiry
    /// at the agents, again now (after moving a manual clock).
    pub fn wake_timer(&self) {
        self.app.wake_timer();
    }
}

/// The state's lock guard, reading the queue only.
struct QueueRead<'a>(parking_lot::MutexGuard<'a, State>);

impl std::ops::Deref for QueueRead<'_> {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.0.queue
    }
}
