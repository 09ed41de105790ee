//! [`PgStore`]: the state in PostgreSQL (`--postgres`), any number of servers on one
//! database, one of them active.
//!
//! Tables (`migrations/`, applied by refinery at start under an advisory lock):
//! `sq_log` (one row per [`Record`], its sequence number the key, its JSON the payload, the
//! local journal's encoding), `sq_snapshot` (the latest state, JSON), `sq_leader` (the active
//! server's advertised URL and an epoch counting take-overs), `sq_result_file` and
//! `sq_result_chunk` (result files in 256 KiB chunks).
//!
//! Roles. Each server runs one loop ([`Storage::run`]): connect (with back-off), rebuild the
//! state from the latest snapshot and the log after it, then, as a standby, tail the log
//! (`LISTEN sq_log` plus polling) into the state while trying the leader's advisory lock.
//! The server whose connection gets the lock takes over: it records its URL, reads the log to
//! its end, and from then on appends — on that same connection, so that every append is made
//! by the lock's holder. When that connection ends (PostgreSQL restarted, the backend
//! terminated, a commit failed or timed out), the server stops acknowledging at once: every
//! answer still waiting is refused, its state (which may hold records never committed) is
//! rebuilt from the database, and it starts again as a standby.
//!
//! The fencing argument is in ARCHITECTURE.md ("High availability").

use super::upload::{Kept, Upload};
use super::{BoxFuture, ResultSource, Standby, Storage};
use crate::state::{Record, State, StateSnapshot};
use parking_lot::Mutex;
use scan_queue::{KeySource, TaskId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;

mod embedded {
    refinery::embed_migrations!("src/storage/postgres/migrations");
}

/// What [`Storage::append`] returns when this server is not active: never durable.
const REFUSED: u64 = u64::MAX;
/// A ticket is `term << TERM_SHIFT | n`: the `n`-th record appended in that term.
const TERM_SHIFT: u32 = 40;
/// The advisory lock whose holder is the active server.
const LEADER_LOCK: i64 = 0x5351_4c45_4144;
/// The advisory lock migrations run under (servers starting together).
const MIGRATE_LOCK: i64 = 0x5351_4d49_4752;
/// Bytes per result file chunk.
const CHUNK_BYTES: usize = 256 * 1024;
/// How often a standby looks at the log and the lock without a notification.
const POLL: Duration = Duration::from_millis(100);
/// Back-off between failed connections: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// The longest a commit (or a connection attempt) may take before the server gives up its
/// term (an answer must not wait forever on a database that does not answer).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Log rows read at once (a record is at most 16 MiB; most are under 1 KiB).
const TAIL_BATCH: i64 = 256;
/// Connections for result files at once (each held for one chunk or one file's keep).
const FILE_CONNECTIONS: usize = 8;
/// How often the active server removes result files no record names, and how old such a
/// file must be: a file is kept (committed) just before the transaction naming it runs, so
/// a young one may be about to be named. A minute is far above that gap (a commit that
/// takes longer than [`IO_TIMEOUT`] ends the term instead).
const ORPHAN_AGE_SECS: i64 = 60;

/// How a server keeps its state in PostgreSQL (`--postgres`).
#[derive(Clone)]
pub struct Postgres {
    config: tokio_postgres::Config,
    /// The certificates that may vouch for the database's (`sslmode=require`).
    roots: rustls::RootCertStore,
    /// The URL clients should use to reach this server; standbys name the active server's in
    /// their refusals.
    pub advertise_url: String,
    /// A snapshot is written after this many records.
    pub snapshot_every_events: u64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .field("advertise_url", &self.advertise_url)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// A connection string (`postgresql://user:password@host/db` or `host=… dbname=…`) and
    /// this server's URL as clients should reach it. The error never repeats the string (it
    /// may hold a password).
    pub fn new(url: &str, advertise_url: impl Into<String>) -> Result<Postgres, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| "not a PostgreSQL connection string".to_owned())?;
        let advertise_url = advertise_url.into();
        let name: String = format!("scan-queue {advertise_url}")
            .chars()
            .take(63)
            .collect();
        config
            .application_name(&name)
            .connect_timeout(IO_TIMEOUT)
            .keepalives_idle(Duration::from_secs(10));
        // TLS when the string asks for it (`sslmode=require`), and then always verified: the
        // certificate must chain to a trusted root and name the host. tokio-postgres's default,
        // `prefer`, would try TLS with any server that offers it, and Debian's default cluster
        // offers a self-signed one that no verification accepts: here it means plain TCP.
        if config.get_ssl_mode() == SslMode::Prefer {
            config.ssl_mode(SslMode::Disable);
        }
        let mut roots = rustls::RootCertStore::empty();
        if config.get_ssl_mode() == SslMode::Require {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        Ok(Postgres {
            config,
            roots,
            advertise_url,
            snapshot_every_events: 10_000,
        })
    }

    /// Also trusts the CA certificates in `pem` (PEM text, as in `--postgres-ca`) for the
    /// database's certificate, beside the system's roots. Returns how many it added.
    /// Refused when the connection string does not ask for TLS: the CA would go unused.
    pub fn trust_ca_pem(&mut self, pem: &[u8]) -> Result<usize, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        if self.config.get_ssl_mode() != SslMode::Require {
            return Err(
                "the connection string does not ask for TLS: add sslmode=require to it".to_owned(),
            );
        }
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        match self.roots.add_parsable_certificates(certs) {
            (0, _) => Err("no usable CA certificate in it".to_owned()),
            (added, _) => Ok(added),
        }
    }

    /// The TLS connector for `sslmode=require` (unused otherwise): ring, as the HTTPS edge.
    fn tls(&self) -> MakeRustlsConnect {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        MakeRustlsConnect::new(config)
    }
}

/// What appends are waiting for: the last durable ticket of the current term.
#[derive(Clone, Copy, Debug)]
struct Progress {
    term: u64,
    durable: u64,
}

/// The log's end as this server sees it (under its own lock, taken under the state's).
#[derive(Debug, Default)]
struct Log {
    /// Whether this server is active (appends are accepted).
    active: bool,
    /// The active server's URL, as `sq_leader` says.
    active_url: Option<String>,
    /// Counts role changes; a ticket of an ended term is never durable.
    term: u64,
    /// Records appended in this term.
    n: u64,
    /// The log's last sequence number when the term began.
    base: u64,
    since_snapshot: u64,
    /// Appended, not yet taken by the writer: (seq, record).
    queued: Vec<(u64, Record)>,
    snapshot: Option<(u64, Box<StateSnapshot>)>,
    /// The in-memory state may hold records the log does not: rebuild it before use.
    dirty: bool,
}

/// The state in PostgreSQL, as a [`Storage`]. See the module docs.
pub(crate) struct PgStore {
    pg: Postgres,
    tls: MakeRustlsConnect,
    queue_config: scan_queue::Config,
    log: Mutex<Log>,
    /// Wakes the writer.
    wake: Notify,
    progress: watch::Sender<Progress>,
    /// Uploads on their way in (removed with the store).
    staging: tempfile::TempDir,
    nonce: AtomicU64,
    boot_ms: u64,
    files: Arc<Pool>,
}

type PgResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn io(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
    std::io::Error::other(chain(&*e.into()))
}

/// An error and its sources, `: `-separated (tokio-postgres says only "db error" at the top).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A connection's notifications and its end, from the task that drives it.
struct Events {
    notified: Arc<Notify>,
    closed: watch::Receiver<bool>,
}

impl Events {
    async fn closed(&mut self) {
        let _ = self.closed.wait_for(|c| *c).await;
    }
}

impl PgStore {
    /// A store on `pg`, as a standby with an empty state until [`Storage::run`] connects.
    pub(crate) fn open(
        pg: &Postgres,
        queue_config: scan_queue::Config,
        now_ms: u64,
    ) -> std::io::Result<(PgStore, State)> {
        let state = State::new(queue_config.clone(), fresh_keys()).map_err(io)?;
        let staging = tempfile::Builder::new()
            .prefix("scan-queue-staging-")
            .tempdir()?;
        let (progress, _) = watch::channel(Progress {
            term: 0,
            durable: 0,
        });
        let tls = pg.tls();
        let store = PgStore {
            pg: pg.clone(),
            tls: tls.clone(),
            queue_config,
            log: Mutex::new(Log {
                dirty: true,
                ..Log::default()
            }),
            wake: Notify::new(),
            progress,
            staging,
            nonce: AtomicU64::new(0),
            boot_ms: now_ms,
            files: Arc::new(Pool {
                config: pg.config.clone(),
                tls,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(FILE_CONNECTIONS)),
            }),
        };
        Ok((store, state))
    }

    /// Where uploads are staged.
    pub(crate) fn staging_dir(&self) -> &std::path::Path {
        self.staging.path()
    }

    async fn connect(&self) -> PgResult<(Client, Events)> {
        let (client, mut connection) =
            tokio::time::timeout(IO_TIMEOUT, self.pg.config.connect(self.tls.clone()))
                .await
                .map_err(|_| "connecting timed out")??;
        let notified = Arc::new(Notify::new());
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn({
            let notified = Arc::clone(&notified);
            async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(_))) => notified.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %chain(&e), "postgres: connection lost");
                            break;
                        }
                        None => break,
                    }
                }
                let _ = closed_tx.send(true);
            }
        });
        Ok((client, Events { notified, closed }))
    }

    /// One term: connect, migrate, rebuild, stand by until the lock is ours, then write until
    /// something fails. Returns why it ended, and whether it got as far as standing by.
    async fn term(
        &self,
        state: &parking_lot::Mutex<State>,
        took_over: &(dyn Fn() + Send + Sync),
        connected: &mut bool,
    ) -> PgResult<()> {
        let (mut client, mut events) = self.connect().await?;
        client
            .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
            .await?;
        embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| format!("schema migration: {e}"))?;
        client
            .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
            .await?;
        client.batch_execute("LISTEN sq_log").await?;
        let mut last = self.rebuild(&mut client, state).await?;
        *connected = true;
        tracing::info!(last, "postgres: connected, standing by");
        loop {
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                .await?
                .get(0);
            if locked {
                break;
            }
            let url: String = client
                .query_one("SELECT url FROM sq_leader WHERE id = 1", &[])
                .await?
                .get(0);
            self.log.lock().active_url = (!url.is_empty()).then_some(url);
            last = self.catch_up(&mut client, state, last).await?;
            let notified = Arc::clone(&events.notified);
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = notified.notified() => {}
                () = events.closed() => return Err("connection lost".into()),
            }
        }
        let epoch: i64 = client
            .query_one(
                "UPDATE sq_leader SET epoch = epoch + 1, url = $1, since = now() WHERE id = 1 \
                 RETURNING epoch",
                &[&self.pg.advertise_url],
            )
            .await?
            .get(0);
        let term = loop {
            last = self.catch_up(&mut client, state, last).await?;
            let _state = state.lock();
            let mut log = self.log.lock();
            if log.dirty {
                continue;
            }
            log.active = true;
            log.active_url = Some(self.pg.advertise_url.clone());
            log.term += 1;
            log.n = 0;
            log.base = last;
            log.since_snapshot = 0;
            let term = log.term;
            self.progress.send_replace(Progress {
                term,
                durable: term << TERM_SHIFT,
            });
            break term;
        };
        tracing::info!(epoch, last, "postgres: took over; this server is active");
        took_over();
        self.write(&mut client, &mut events, state, term, last)
            .await
    }

    /// The active server's writer: every queued record, one transaction per batch (group
    /// commit: what arrives during a commit goes in the next), each conditional on the log
    /// ending where this server last left it.
    async fn write(
        &self,
        client: &mut Client,
        events: &mut Events,
        state: &parking_lot::Mutex<State>,
        term: u64,
        mut last: u64,
    ) -> PgResult<()> {
        let base = last;
        let mut swept = None::<std::time::Instant>;
        // The usual batch, one statement (one round trip, its own transaction): the records,
        // if the log still ends at $3, and the standbys' notification.
        let append = client
            .prepare(
                "WITH appended AS (INSERT INTO sq_log (seq, payload) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[]) \
                 WHERE (SELECT coalesce(max(seq), 0) FROM sq_log) = $3 RETURNING 1) \
                 SELECT (SELECT count(*) FROM appended), pg_notify('sq_log', '')::text",
            )
            .await?;
        loop {
            if swept.is_none_or(|at| at.elapsed().as_secs() >= ORPHAN_AGE_SECS as u64) {
                swept = Some(std::time::Instant::now());
                self.remove_orphans(client, state).await?;
            }
            let (batch, snapshot) = {
                let mut log = self.log.lock();
                (std::mem::take(&mut log.queued), log.snapshot.take())
            };
            if batch.is_empty() && snapshot.is_none() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = events.closed() => return Err("connection lost".into()),
                    () = tokio::time::sleep(Duration::from_secs(ORPHAN_AGE_SECS as u64)) => {}
                }
                continue;
            }
            let mut seqs = Vec::with_capacity(batch.len());
            let mut payloads = Vec::with_capacity(batch.len());
            for (seq, record) in &batch {
                seqs.push(i64::try_from(*seq)?);
                payloads.push(serde_json::to_vec(record)?);
            }
            let snapshot = match snapshot {
                Some((seq, s)) => Some((i64::try_from(seq)?, serde_json::to_vec(&*s)?)),
                None => None,
            };
            let expected = i64::try_from(last)?;
            let conflict = || -> Box<dyn std::error::Error + Send + Sync> {
                "the log does not end where this server left it: another server appended; \
                 stepping down"
                    .into()
            };
            let commit = async {
                let Some((seq, payload)) = &snapshot else {
                    let row = client
                        .query_one(&append, &[&seqs, &payloads, &expected])
                        .await?;
                    let inserted: i64 = row.get(0);
                    return if inserted == seqs.len() as i64 {
                        Ok(())
                    } else {
                        Err(conflict())
                    };
                };
                let tx = client.transaction().await?;
                let inserted = tx
                    .execute(
                        "INSERT INTO sq_log (seq, payload) \
                         SELECT * FROM unnest($1::bigint[], $2::bytea[]) \
                         WHERE (SELECT coalesce(max(seq), 0) FROM sq_log) = $3",
                        &[&seqs, &payloads, &expected],
                    )
                    .await?;
                if inserted != seqs.len() as u64 {
                    return Err(conflict());
                }
                {
                    tx.execute(
                        "DELETE FROM sq_log WHERE seq <= \
                         (SELECT coalesce(max(seq), 0) FROM sq_snapshot)",
                        &[],
                    )
                    .await?;
                    tx.execute("DELETE FROM sq_snapshot", &[]).await?;
                    tx.execute(
                        "INSERT INTO sq_snapshot (seq, payload) VALUES ($1, $2)",
                        &[seq, payload],
                    )
                    .await?;
                }
                tx.batch_execute("NOTIFY sq_log").await?;
                tx.commit().await?;
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            };
            tokio::time::timeout(IO_TIMEOUT, commit)
                .await
                .map_err(|_| "a commit timed out")??;
            if let Some((seq, _)) = batch.last() {
                last = *seq;
            }
            let ticket = (term << TERM_SHIFT) | (last - base);
            self.progress.send_if_modified(|p| {
                let current = p.term == term;
                if current {
                    p.durable = ticket;
                }
                current
            });
        }
    }

    /// Ends the term: nothing waiting is acknowledged, nothing more is accepted, and the
    /// state must be rebuilt before it is used again.
    fn step_down(&self) {
        let mut log = self.log.lock();
        if log.active {
            tracing::warn!("postgres: no longer active; stopped acknowledging");
        }
        log.active = false;
        log.active_url = None;
        log.dirty = true;
        log.queued.clear();
        log.snapshot = None;
        log.term += 1;
        let term = log.term;
        drop(log);
        self.progress.send_replace(Progress {
            term,
            durable: term << TERM_SHIFT,
        });
    }

    /// Replaces the state by the database's (latest snapshot, then the log after it, read in
    /// one repeatable-read transaction); returns the last sequence number applied.
    async fn rebuild(
        &self,
        client: &mut Client,
        state: &parking_lot::Mutex<State>,
    ) -> PgResult<u64> {
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let snapshot = tx
            .query_opt(
                "SELECT seq, payload FROM sq_snapshot ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        let (mut fresh, mut last) = match snapshot {
            Some(row) => {
                let seq: i64 = row.get(0);
                let payload: &[u8] = row.get(1);
                let snapshot = StateSnapshot::from_json(payload)
                    .map_err(|e| format!("snapshot {seq} is undecodable: {e}"))?;
                let state = State::restore(self.queue_config.clone(), fresh_keys(), snapshot)
                    .map_err(|e| format!("snapshot {seq} does not restore: {e}"))?;
                (state, u64::try_from(seq)?)
            }
            None => (State::new(self.queue_config.clone(), fresh_keys())?, 0),
        };
        loop {
            let rows = tx
                .query(
                    "SELECT seq, payload FROM sq_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&i64::try_from(last)?, &TAIL_BATCH],
                )
                .await?;
            for record in decode(&rows, last)? {
                fresh
                    .apply(record)
                    .map_err(|e| format!("record {} does not apply: {e}", last + 1))?;
                last += 1;
            }
            if rows.len() < TAIL_BATCH as usize {
                break;
            }
        }
        tx.commit().await?;
        drop(fresh.take_records());
        let mut state = state.lock();
        *state = fresh;
        self.log.lock().dirty = false;
        Ok(last)
    }

    /// Applies the log's records after `last` to the state (rebuilding it instead when it is
    /// dirty, or when a snapshot removed the records it needs); returns the new last.
    async fn catch_up(
        &self,
        client: &mut Client,
        state: &parking_lot::Mutex<State>,
        mut last: u64,
    ) -> PgResult<u64> {
        loop {
            if self.log.lock().dirty {
                last = self.rebuild(client, state).await?;
            }
            let rows = client
                .query(
                    "SELECT seq, payload FROM sq_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&i64::try_from(last)?, &TAIL_BATCH],
                )
                .await?;
            let Some(first) = rows.first() else {
                return Ok(last);
            };
            if u64::try_from(first.get::<_, i64>(0))? != last + 1 {
                // Removed by a snapshot since: start again from it.
                last = self.rebuild(client, state).await?;
                continue;
            }
            let records = decode(&rows, last)?;
            {
                let mut state = state.lock();
                if self.log.lock().dirty {
                    continue;
                }
                for record in records {
                    if let Err(e) = state.apply(record) {
                        self.log.lock().dirty = true;
                        return Err(format!("record {} does not apply: {e}", last + 1).into());
                    }
                    last += 1;
                }
                drop(state.take_records());
            }
            if rows.len() < TAIL_BATCH as usize {
                return Ok(last);
            }
        }
    }

    /// Removes the result files no record names, older than [`ORPHAN_AGE_SECS`] (a crash
    /// between keeping a file and its record, a record never committed, a lost discard). The
    /// active server's state names every file of a record appended, committed or not.
    async fn remove_orphans(
        &self,
        client: &Client,
        state: &parking_lot::Mutex<State>,
    ) -> PgResult<()> {
        let named: Vec<String> = state.lock().result_files().map(str::to_owned).collect();
        let removed = client
            .execute(
                "DELETE FROM sq_result_file WHERE name <> ALL($1) \
                 AND created < now() - make_interval(secs => $2)",
                &[&named, &(ORPHAN_AGE_SECS as f64)],
            )
            .await?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "postgres: result files no record names (left by a crash) removed"
            );
        }
        Ok(())
    }

    /// Writes a staged file as `name`'s chunks, in one transaction.
    async fn store_file(&self, name: &str, path: &std::path::Path, size: u64) -> PgResult<()> {
        let mut client = self.files.get().await?;
        let mut file = tokio::fs::File::open(path).await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO sq_result_file (name, size, chunks) VALUES ($1, $2, 0)",
            &[&name, &i64::try_from(size)?],
        )
        .await?;
        let mut buf = vec![0; CHUNK_BYTES];
        let mut n: i32 = 0;
        loop {
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                let read = file.read(&mut buf[filled..]).await?;
                if read == 0 {
                    break;
                }
                filled += read;
            }
            if filled == 0 {
                break;
            }
            tx.execute(
                "INSERT INTO sq_result_chunk (name, n, data) VALUES ($1, $2, $3)",
                &[&name, &n, &&buf[..filled]],
            )
            .await?;
            n += 1;
        }
        tx.execute(
            "UPDATE sq_result_file SET chunks = $2 WHERE name = $1",
            &[&name, &n],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_files(&self, names: Vec<String>) {
        let deleted = async {
            let client = self.files.get().await?;
            client
                .execute("DELETE FROM sq_result_file WHERE name = ANY($1)", &[&names])
                .await?;
            PgResult::Ok(())
        };
        if let Err(e) = deleted.await {
            tracing::error!(error = %chain(&*e), "postgres: could not remove result files (removed at the next take-over)");
        }
    }
}

/// Connections for result files: at most [`FILE_CONNECTIONS`] in use, idle ones reused.
struct Pool {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Client>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// A connection of the [`Pool`], back to it when dropped (unless closed).
struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Pool {
    async fn get(self: &Arc<Pool>) -> PgResult<Pooled> {
        let permit = Arc::clone(&self.permits).acquire_owned().await?;
        let idle = std::iter::from_fn(|| self.idle.lock().pop()).find(|c| !c.is_closed());
        let client = match idle {
            Some(client) => client,
            None => {
                let (client, connection) =
                    tokio::time::timeout(IO_TIMEOUT, self.config.connect(self.tls.clone()))
                        .await
                        .map_err(|_| "connecting timed out")??;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres: a file connection ended");
                    }
                });
                client
            }
        };
        Ok(Pooled {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool.idle.lock().push(client);
        }
    }
}

/// The records of log rows that must follow `last` one by one.
fn decode(rows: &[tokio_postgres::Row], last: u64) -> PgResult<Vec<Record>> {
    let mut expected = last;
    rows.iter()
        .map(|row| {
            expected += 1;
            let seq: i64 = row.get(0);
            if u64::try_from(seq)? != expected {
                return Err(format!("the log skips from {} to {seq}", expected - 1).into());
            }
            let payload: &[u8] = row.get(1);
            Record::from_json(payload)
                .map_err(|e| format!("record {seq} is undecodable: {e}").into())
        })
        .collect()
}

/// A key source for a state rebuilt from the database: keys are drawn only by the active
/// server and recorded in events, so each rebuild may start a new generator.
fn fresh_keys() -> KeySource {
    use rand::SeedableRng;
    KeySource::from_rng(rand_chacha::ChaCha20Rng::from_os_rng())
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pg", &self.pg)
            .finish_non_exhaustive()
    }
}

impl Storage for PgStore {
    fn append(&self, records: Vec<Record>, state: &State) -> u64 {
        let mut log = self.log.lock();
        if !log.active {
            log.dirty |= !records.is_empty();
            return REFUSED;
        }
        if records.is_empty() {
            return (log.term << TERM_SHIFT) | log.n;
        }
        for record in records {
            log.n += 1;
            let seq = log.base + log.n;
            log.queued.push((seq, record));
            log.since_snapshot += 1;
        }
        let ticket = (log.term << TERM_SHIFT) | log.n;
        if log.since_snapshot >= self.pg.snapshot_every_events {
            log.since_snapshot = 0;
            let seq = log.base + log.n;
            // The state's lock, held by the caller, keeps other appends out meanwhile.
            drop(log);
            let snapshot = Box::new(state.snapshot());
            log = self.log.lock();
            log.snapshot = Some((seq, snapshot));
        }
        drop(log);
        self.wake.notify_one();
        ticket
    }

    fn durable(&self, seq: u64) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if seq == REFUSED {
                return false;
            }
            let term = seq >> TERM_SHIFT;
            let mut rx = self.progress.subscribe();
            match rx.wait_for(|p| p.term != term || p.durable >= seq).await {
                Ok(p) => p.term == term && p.durable >= seq,
                Err(_) => false,
            }
        })
    }

    fn failed(&self) -> BoxFuture<'_, ()> {
        // Never for good: a lost database is retried, refusing calls meanwhile.
        Box::pin(std::future::pending())
    }

    fn has_failed(&self) -> bool {
        false
    }

    fn stage(&self, file_name: Option<String>) -> BoxFuture<'_, std::io::Result<Upload>> {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        let path = self
            .staging
            .path()
            .join(format!("{}x{n}.part", self.boot_ms));
        Box::pin(Upload::create(path, file_name))
    }

    fn keep(&self, mut upload: Upload, task: TaskId) -> BoxFuture<'_, std::io::Result<Kept>> {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "task-{task}-{}x{n}-{}",
            self.boot_ms,
            super::local::sanitize(upload.file_name.as_deref().unwrap_or(""))
        );
        Box::pin(async move {
            let sha256 = upload.finish().await?;
            if let Err(e) = self.store_file(&name, upload.path(), upload.len).await {
                // An idle connection may have been closed by the database meanwhile: once
                // more, on a new one.
                tracing::info!(error = %chain(&*e), "postgres: storing a result file failed; retrying");
                self.files.idle.lock().clear();
                self.store_file(&name, upload.path(), upload.len)
                    .await
                    .map_err(io)?;
            }
            // The staged file goes with `upload`; the kept one is in the database.
            Ok(Kept::new(name, upload.path().to_owned(), &upload, sha256))
        })
    }

    fn discard(&self, kept: Kept) -> BoxFuture<'_, ()> {
        let name = kept.file.clone();
        kept.referenced();
        Box::pin(self.delete_files(vec![name]))
    }

    fn result_source(&self, file: &str) -> ResultSource {
        let (pool, name) = (Arc::clone(&self.files), file.to_owned());
        ResultSource::Stream(Box::new(move |from| {
            // Every chunk but the last holds CHUNK_BYTES: start at the one holding `from`,
            // without its first `skip` bytes.
            let chunk = CHUNK_BYTES as u64;
            let first = i32::try_from(from / chunk).ok();
            let skip = (from % chunk) as usize;
            // One chunk at a time, each on a pooled connection taken for that chunk only (a
            // slow reader holds none); after an error the stream ends.
            let chunks = futures_util::stream::unfold(
                (pool, name, first),
                move |(pool, name, n)| async move {
                    let n = n?;
                    let fetched = async {
                        let client = pool.get().await?;
                        let row = client
                            .query_opt(
                                "SELECT data FROM sq_result_chunk WHERE name = $1 AND n = $2",
                                &[&name, &n],
                            )
                            .await?;
                        PgResult::Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
                    };
                    match fetched.await {
                        Ok(Some(data)) => {
                            let mut data = bytes::Bytes::from(data);
                            if first == Some(n) {
                                data = data.slice(skip.min(data.len())..);
                            }
                            Some((Ok(data), (pool, name, n.checked_add(1))))
                        }
                        Ok(None) => None,
                        Err(e) => Some((Err(io(e)), (pool, name, None))),
                    }
                },
            );
            Box::pin(chunks)
        }))
    }

    fn remove_results(&self, files: Vec<String>) -> BoxFuture<'_, ()> {
        Box::pin(self.delete_files(files))
    }

    fn run<'a>(
        &'a self,
        state: &'a parking_lot::Mutex<State>,
        took_over: &'a (dyn Fn() + Send + Sync),
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut backoff = BACKOFF.0;
            loop {
                let mut connected = false;
                let ended = self.term(state, took_over, &mut connected).await;
                self.step_down();
                if connected {
                    backoff = BACKOFF.0;
                }
                if let Err(e) = ended {
                    tracing::warn!(error = %chain(&*e), retry_in_ms = backoff.as_millis() as u64, "postgres: unavailable; refusing calls until reconnected");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        })
    }

    fn standby(&self) -> Option<Standby> {
        let log = self.log.lock();
        (!log.active).then(|| Standby {
            active: log.active_url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_string_never_shows() {
        let pg = Postgres::new(
            "postgresql://scanqueue:s3cret-pw@127.0.0.1:5432/scanqueue",
            "http://a:8080",
        )
        .unwrap();
        let debug = format!("{pg:?}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        assert!(debug.contains("http://a:8080"), "{debug}");
        let error = Postgres::new("postgresql://u:s3cret-pw@[bad", "x").unwrap_err();
        assert!(!error.contains("s3cret-pw"), "{error}");
    }

    #[test]
    fn tickets_of_an_ended_term_are_never_durable() {
        let pg = Postgres::new("host=127.0.0.1", "http://a").unwrap();
        let (store, state) = PgStore::open(&pg, scan_queue::Config::default(), 1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A standby accepts nothing: never durable, and its state must be rebuilt.
        let record = Record::Fact(crate::state::Fact::ResultsDeleted { tasks: vec![] });
        let ticket = store.append(vec![record.clone()], &state);
        assert_eq!(ticket, REFUSED);
        assert!(!runtime.block_on(store.durable(ticket)));
        assert!(store.log.lock().dirty);
        assert!(store.standby().is_some());
        // Active in term 1: a ticket waits for its commit; stepping down refuses it.
        {
            let mut log = store.log.lock();
            log.active = true;
            log.term = 1;
            log.dirty = false;
        }
        store.progress.send_replace(Progress {
            term: 1,
            durable: 1 << TERM_SHIFT,
        });
        let ticket = store.append(vec![record], &state);
        assert_eq!(ticket, (1 << TERM_SHIFT) | 1);
        let waiting = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), store.durable(ticket)).await
        });
        assert!(waiting.is_err(), "not durable before its commit");
        store.step_down();
        assert!(!runtime.block_on(store.durable(ticket)));
        assert!(store.log.lock().queued.is_empty());
    }
}
