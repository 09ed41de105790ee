//! `scan-queue-server`: ThreadFix's Tasks API over the scan-queue core.
//!
//! A thin command line: parse flags, set up logging, bind, serve until SIGINT/SIGTERM.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use clap::Parser;
use scan_queue_server::report::ResultCheck;
use scan_queue_server::{
    ApiKey, AuthThrottle, Durability, Edge, Fsync, Postgres, Retention, Scanner, Scanners, Server,
    ServerConfig, TlsFiles, Webhook, WebhookSecret, Webhooks,
};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// jemalloc, with its background thread purging freed pages (10 s after they are freed): glibc's
/// allocator kept a burst of connections' buffers for good (edge_attacks.rs, 10 000
/// connections: glibc 18.7 -> 33.3 MB resident and staying; jemalloc 21.6 -> 25.8 MB within
/// 7 s; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The scan agent task queue, speaking ThreadFix's Tasks API.
///
/// Serves /rest/{version}/tasks/{name} (also /rest/tasks/{name}, and both under /threadfix)
/// for queueScan, setTaskConfig, requestScanAgentKey, requestTask, taskStatusUpdate,
/// completeTask, failTask and scanners. Every call needs the API key, as the header
/// `Authorization: APIKEY {key}` or the parameter `apiKey`. Logs go to stderr (filter with
/// RUST_LOG, e.g. RUST_LOG=debug); they never contain a key.
///
/// The queue (tasks, agents, their keys, leases) and the scan configs survive a restart: every
/// change is written to a checksummed journal under --data-dir before it is acknowledged, with
/// periodic snapshots; on start the server restores them (see --fsync).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The API key every call must present. Without it (and without SCAN_QUEUE_API_KEY) a
    /// random key is generated and printed on start.
    #[arg(
        long,
        value_name = "KEY",
        env = "SCAN_QUEUE_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// The previous API key, still accepted for --api-key-grace-hours after start while
    /// agents and scripts move to the new one (key rotation). Page sessions do not survive a
    /// restart, so rotating ends them all.
    #[arg(
        long,
        value_name = "KEY",
        env = "SCAN_QUEUE_API_KEY_PREVIOUS",
        hide_env_values = true
    )]
    api_key_previous: Option<String>,

    /// How long after start --api-key-previous is accepted.
    #[arg(long, value_name = "HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    api_key_grace_hours: u64,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Connections open at once; one more is answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,

    /// Result uploads (completeTask) in flight at once; one more is answered 503.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_uploads: u64,

    /// How long a client may take to send a request's headers; also how long an idle
    /// connection (new, or kept alive between requests) stays open.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,

    /// How long a request body (or a response body) may make no progress before it is cut.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,

    /// How long any call but completeTask may take, body included.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,

    /// The slowest an upload may arrive, in bytes per second on average, once it has gone on
    /// for --body-timeout-secs (8 KiB/s: 100 MiB in 3.6 hours; 0 disables the check).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024)]
    min_upload_rate: u64,

    /// Failed API-key checks and logins a client address may make at once; after them, one
    /// per --auth-failure-period-secs, and requests past that get 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    auth_failures_burst: u32,

    /// See --auth-failures-burst.
    #[arg(long, value_name = "SECS", default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    auth_failure_period_secs: u64,

    /// A proxy in front of the server (HAProxy, nginx; repeat the flag for each) whose
    /// X-Forwarded-For header names the client: requests through it are throttled and logged
    /// by the client's address instead of the proxy's.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<std::net::IpAddr>,

    /// Directory for the journal and snapshots (journal/), scan configs (configs/), uploaded
    /// result files (results/) and uploads in flight (incoming/). Holds keys: keep it private.
    #[arg(long, value_name = "DIR", default_value = "./scan-queue-data")]
    data_dir: PathBuf,

    /// When an acknowledged change reaches the disk. always: each answer waits for an fsync
    /// that covers it (survives power loss; concurrent answers share fsyncs). batch: group
    /// commit, one fsync per --fsync-batch-ms window, answers still wait for it (survives
    /// power loss, fewer fsyncs, more latency). never: written to the OS before answering but
    /// never synced (survives the process being killed, not power loss; for tests).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = FsyncArg::Always)]
    fsync: FsyncArg,

    /// With --fsync batch: how long the writer gathers changes before one fsync.
    #[arg(long, value_name = "MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    fsync_batch_ms: u64,

    /// Take a snapshot (and drop the journal before it) after this many changes [default:
    /// 100000; 10000 with --postgres, where the log is rows].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: Option<u64>,

    /// Take a snapshot at least this often while changes happen (data dir only).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every_secs: u64,

    /// Keep the queue in memory only: nothing survives a restart.
    #[arg(long)]
    in_memory: bool,

    /// Keep everything in PostgreSQL (a connection string; replaces --data-dir): any number
    /// of servers on one database, one active, the others standbys that take over.
    #[arg(
        long,
        value_name = "URL",
        env = "SCAN_QUEUE_POSTGRES",
        hide_env_values = true,
        conflicts_with = "in_memory"
    )]
    postgres: Option<String>,

    /// With --postgres and sslmode=require in its connection string: CA certificates (PEM)
    /// that may sign the database's certificate, beside the system's roots.
    #[arg(
        long,
        value_name = "FILE",
        env = "SCAN_QUEUE_POSTGRES_CA",
        requires = "postgres"
    )]
    postgres_ca: Option<PathBuf>,

    /// With --postgres: this server's URL as clients reach it, named by standbys when they
    /// refuse a call (by default http://<--listen>).
    #[arg(long, value_name = "URL", env = "SCAN_QUEUE_ADVERTISE_URL")]
    advertise_url: Option<String>,

    /// Lease: how long an agent holds a task without a status update before the task is
    /// taken back (queued again, or timed out after the last attempt).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    lease_secs: u64,

    /// Task deadline: how long after it is queued a task times out, whatever its state
    /// (ThreadFix's timeoutTime; 12 hours as ThreadFix).
    #[arg(long, value_name = "SECS", default_value_t = 43_200, value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    task_deadline_secs: u64,

    /// Assignments a task may have; when the lease of the last one runs out the task is
    /// COMPLETE_TIMEDOUT instead of queued again.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,

    /// The largest result file completeTask accepts, in bytes (100 MiB by default).
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::DEFAULT_MAX_UPLOAD_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    max_upload_bytes: u64,

    /// The largest scan configuration file setTaskConfig accepts, in bytes (1 MiB by default).
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::DEFAULT_MAX_CONFIG_BYTES)]
    max_config_bytes: usize,

    /// Registered scan agents at most.
    #[arg(long, value_name = "N", default_value_t = scan_queue::Config::default().max_agents)]
    max_agents: usize,

    /// Open (queued, assigned or in progress) tasks at most.
    #[arg(long, value_name = "N", default_value_t = scan_queue::Config::default().max_open_tasks)]
    max_open_tasks: usize,

    /// How completeTask's file is checked: none (any bytes), wellformed (well-formed XML or
    /// JSON, not empty), or scanner (also the task's scanner's report format: ZAP XML/JSON,
    /// Burp, AppScan, Acunetix, WebInspect, Wapiti XML/JSON, AppSpider; other scanners as
    /// wellformed). A refused file fails the task with the reason.
    #[arg(long, value_name = "CHECK", default_value = "wellformed")]
    result_check: ResultCheck,

    /// Delete a result (its record and its file) this many days after it was received
    /// (0: keep results until their task is evicted, which always deletes them).
    #[arg(long, value_name = "DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    keep_results_days: u64,

    /// Keep at most this many results per application, deleting the oldest tasks' first
    /// (0: no count limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_results_per_app: usize,

    /// POST every terminal transition (completed, failed, timed out, deleted) to this URL as
    /// signed JSON (repeat the flag for each receiver). Needs --webhook-secret.
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,

    /// The secret webhook deliveries are signed with (HMAC-SHA256 of the body, in the header
    /// X-ScanQueue-Signature-256: sha256=<hex>); at least 16 characters.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SCAN_QUEUE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    webhook_secret: Option<String>,

    /// Attempts per webhook delivery; after the last failure it is given up (and counted in
    /// scan_queue_webhook_deliveries_failed_total).
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100))]
    webhook_max_attempts: u32,

    /// The wait after a webhook delivery's first failed attempt; it doubles after each one,
    /// up to 10 minutes.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    webhook_retry_ms: u64,

    /// A scanner tasks may use, as "Display Name=short" (repeat the flag for each). Replaces
    /// the default six: Acunetix WVS=acunetix, AppSpider=appspider, Burp Suite Pro=burp, IBM
    /// Security AppScan Standard=appscan, OWASP Zed Attack Proxy=zap, WebInspect=webinspect.
    #[arg(long = "scanner", value_name = "NAME=SHORT")]
    scanners: Vec<Scanner>,

    /// Revoke a scan agent silent (no call with its key) this many days: its key is refused
    /// from then on and the tasks it held go back to the queue; journaled like a revocation
    /// from the page (0: agents never expire). Silence is counted from the server's start at
    /// the earliest.
    #[arg(long, value_name = "DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    agent_expiry_days: u64,

    /// Log format on stderr: text (one readable line per event) or json (one JSON object per
    /// line, for a log collector).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `--fsync`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum FsyncArg {
    Always,
    Batch,
    Never,
}

impl From<FsyncArg> for Fsync {
    fn from(arg: FsyncArg) -> Fsync {
        match arg {
            FsyncArg::Always => Fsync::Always,
            FsyncArg::Batch => Fsync::Batch,
            FsyncArg::Never => Fsync::Never,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("scan-queue-server: jemalloc's background purging is off ({e})");
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("scan-queue-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let strong = |key: String, flag: &str| {
        let key = ApiKey::new(key).ok_or_else(|| {
            format!("{flag}: the key must be non-empty, without surrounding whitespace or control characters")
        })?;
        key.check_strength().map_err(|e| format!("{flag}: {e}"))?;
        Ok::<_, String>(key)
    };
    let (api_key, generated) = match args.api_key {
        Some(key) => (strong(key, "--api-key")?, false),
        None => (ApiKey::generate(), true),
    };
    let previous_api_key = match args.api_key_previous {
        Some(key) => Some(strong(key, "--api-key-previous")?),
        None => None,
    };
    let scanners = if args.scanners.is_empty() {
        Scanners::default()
    } else {
        Scanners::new(args.scanners)
            .ok_or("each --scanner name and short name must be used once")?
    };
    // Absolute, so that the service's working directory does not decide where data goes.
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(|e| format!("--data-dir {}: {e}", args.data_dir.display()))?;
    let mut config = ServerConfig::new(api_key.clone(), &data_dir);
    config.agent_expiry_ms =
        (args.agent_expiry_days > 0).then(|| args.agent_expiry_days * 86_400_000);
    config.queue.lease_ms = args.lease_secs * 1000;
    config.queue.task_deadline_ms = args.task_deadline_secs * 1000;
    config.queue.max_attempts = args.max_attempts;
    config.queue.max_agents = args.max_agents;
    config.queue.max_open_tasks = args.max_open_tasks;
    config.scanners = scanners;
    config.durability = (!args.in_memory).then(|| Durability {
        fsync: args.fsync.into(),
        batch_delay: std::time::Duration::from_millis(args.fsync_batch_ms),
        snapshot_every_events: args.snapshot_every.unwrap_or(100_000),
        snapshot_every: std::time::Duration::from_secs(args.snapshot_every_secs),
    });
    if let Some(url) = &args.postgres {
        let advertise = args
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.listen));
        let mut pg = Postgres::new(url, advertise).map_err(|e| format!("--postgres: {e}"))?;
        if let Some(path) = &args.postgres_ca {
            let what = |e: String| format!("--postgres-ca {}: {e}", path.display());
            let mut pem = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(1 << 20).read_to_end(&mut pem))
                .map_err(|e| what(e.to_string()))?;
            pg.trust_ca_pem(&pem).map_err(what)?;
        }
        if let Some(n) = args.snapshot_every {
            pg.snapshot_every_events = n;
        }
        config.postgres = Some(pg);
    }
    config.max_upload_bytes = args.max_upload_bytes;
    config.max_config_bytes = args.max_config_bytes;
    config.webhooks = Webhooks {
        receivers: args
            .webhooks
            .iter()
            .map(|url| {
                Webhook::new(url.as_str())
                    .ok_or_else(|| format!("--webhook {url}: not an absolute http(s) URL"))
            })
            .collect::<Result<_, _>>()?,
        secret: match args.webhook_secret {
            Some(s) => Some(
                WebhookSecret::new(s).ok_or("--webhook-secret must be at least 16 characters")?,
            ),
            None => None,
        },
        first_retry: std::time::Duration::from_millis(args.webhook_retry_ms),
        max_attempts: args.webhook_max_attempts,
        ..Webhooks::default()
    };
    config.result_check = args.result_check;
    config.previous_api_key = previous_api_key;
    config.previous_api_key_grace = Duration::from_secs(args.api_key_grace_hours * 3600);
    config.edge = Edge {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        max_uploads: usize::try_from(args.max_uploads).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        min_upload_rate: args.min_upload_rate,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        },
        trusted_proxies: args.trusted_proxies,
    };
    config.auth_throttle = AuthThrottle {
        burst: args.auth_failures_burst,
        period: Duration::from_secs(args.auth_failure_period_secs),
    };
    let scheme = if config.edge.tls.is_some() {
        "https"
    } else {
        "http"
    };
    config.retention = Retention {
        max_age_ms: (args.keep_results_days > 0).then(|| args.keep_results_days * 86_400_000),
        per_application: (args.keep_results_per_app > 0).then_some(args.keep_results_per_app),
    };
    let server = Server::new(config)
        .map_err(|e| format!("cannot start with data dir {}: {e}", data_dir.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = shutdown_signal()?;
        // stdout, once, in one write: what a person starting the server needs to copy. A
        // closed stdout (a supervisor that read the first line) must not stop the server.
        let mut banner = format!(
            "scan-queue-server listening on {scheme}://{local}/threadfix/rest/latest/tasks/\n\
             Scan Agent Tasks page: {scheme}://{local}/tasks\n"
        );
        if args.in_memory {
            banner
                .push_str("data: in memory only (--in-memory): everything is lost when it stops\n");
        } else if args.postgres.is_some() {
            banner.push_str(
                "data: in PostgreSQL (--postgres); a standby until it holds the election (GET /ready)\n",
            );
        } else {
            banner.push_str(&format!("data directory: {}\n", data_dir.display()));
        }
        if generated {
            banner.push_str(&format!(
                "generated API key (set --api-key or SCAN_QUEUE_API_KEY to choose one): {}\n",
                api_key.expose_secret()
            ));
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        }
        if args.postgres.is_some() {
            tracing::info!(listen = %local, store = "postgres", "started");
        } else {
            let fsync = if args.in_memory {
                "in-memory"
            } else {
                Fsync::from(args.fsync).name()
            };
            let data = if args.in_memory {
                "(in memory)".to_owned()
            } else {
                data_dir.display().to_string()
            };
            tracing::info!(listen = %local, data_dir = %data, fsync, "started");
        }
        server
            .serve(listener, shutdown)
            .await
            .map_err(|e| format!("server error: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Registers SIGINT (Ctrl-C) and SIGTERM handlers now, and completes on either. Registered
/// before the banner is printed: a supervisor (or test) that signals as soon as it has read
/// the banner must get a graceful stop, not the signal's default action.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
        let (mut int, mut term) = (
            handler(SignalKind::interrupt())?,
            handler(SignalKind::terminate())?,
        );
        Ok(async move {
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    })
}
