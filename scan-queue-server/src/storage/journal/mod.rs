//! The local journal: every [`Record`] in a checksummed, append-only log under
//! `<data-dir>/journal/`, with periodic snapshots, and the recovery that rebuilds the state
//! from them at start-up.
//!
//! Three parts: [`format`] (the bytes of records and snapshots, and the torn-versus-corrupt
//! rule), [`recovery`] (the state that a directory holds), and [`writer`] (the thread that
//! does the I/O). This file is the handle the server holds: [`Journal::append`] under the
//! state's lock, then [`Journal::durable`] before answering.
//!
//! Layout of `journal/`: `LOCK` (an OS file lock held while a server runs on the directory);
//! `segment-{first_seq:020}.log` (records; a new segment starts at every snapshot);
//! `snapshot-{seq:020}.snap` (written to a `.tmp` file, synced, renamed, the directory
//! synced); `*.tmp` (a snapshot being written; removed at start-up).

pub(crate) mod format;
pub(crate) mod recovery;
mod writer;

use crate::state::{Record, State};
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use writer::{Files, Item, Pending, Progress, Shared};

/// When an acknowledged transition reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fsync {
    /// Every answer waits for an `fsync` that covers its changes (requests arriving while one
    /// `fsync` runs share the next one). An acknowledged transition survives power loss.
    Always,
    /// Group commit: the writer gathers changes for up to [`Durability::batch_delay`], then
    /// one `fsync` covers them all; answers are still released only after it. Survives power
    /// loss too; trades latency for fewer `fsync`s under load.
    Batch,
    /// Changes are written (to the OS) before the answer, never synced: they survive the
    /// process being killed, not the machine losing power. For tests.
    Never,
}

impl Fsync {
    /// The policy's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }

    pub(crate) fn syncs(self) -> bool {
        self != Fsync::Never
    }
}

/// How the server persists its state under the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// When changes are synced.
    pub fsync: Fsync,
    /// With [`Fsync::Batch`], how long the writer gathers changes before one `fsync`.
    pub batch_delay: Duration,
    /// A snapshot is taken after this many records…
    pub snapshot_every_events: u64,
    /// …or when this long has passed since the last one and there are new records.
    pub snapshot_every: Duration,
}

impl Default for Durability {
    /// `fsync` always, batches of 2 ms, a snapshot every 100 000 records or 5 minutes.
    fn default() -> Durability {
        Durability {
            fsync: Fsync::Always,
            batch_delay: Duration::from_millis(2),
            snapshot_every_events: 100_000,
            snapshot_every: Duration::from_secs(300),
        }
    }
}

/// How long start-up waits for the data directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes `dir`'s `LOCK` (one server per data directory), waiting up to a second for a server
/// just stopped in this process to release it, and removes `.tmp` files left by a crash.
pub(crate) fn lock(dir: &Path) -> std::io::Result<File> {
    let lock = crate::storage::fs::private_options()
        .truncate(false)
        .open(dir.join("LOCK"))?;
    crate::storage::fs::make_private(&lock)?;
    let waited = Instant::now();
    while lock.try_lock().is_err() {
        if waited.elapsed() >= LOCK_WAIT {
            return Err(std::io::Error::other(format!(
                "{} is in use by another server (its LOCK is held)",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for path in crate::storage::fs::files_in(dir)? {
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(lock)
}

/// The journal of a running server. A writer thread does the I/O.
#[derive(Debug)]
pub(crate) struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    durability: Durability,
    /// When the last snapshot was taken (only read and written under the state's lock).
    last_snapshot_at: Mutex<Instant>,
    /// Held for the server's life: one server per data directory.
    _lock: File,
}

impl Journal {
    /// Starts the journal after recovery found `state` at record `last`: a snapshot of it
    /// first when `snapshot_now` (records were replayed, or the state was changed since),
    /// a new segment after it, nothing older kept; then the writer thread.
    pub(crate) fn start(
        dir: &Path,
        durability: Durability,
        lock: File,
        last: u64,
        state: &State,
        snapshot_now: bool,
    ) -> std::io::Result<Journal> {
        let mut files = Files::new(dir, durability.fsync, last)?;
        if snapshot_now {
            files.snapshot(last, &state.snapshot())?;
        } else {
            files.remove_older_than(last)?;
        }
        let (progress, _) = watch::channel(Progress {
            durable: last,
            failed: false,
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                last,
                ..Pending::default()
            }),
            wake: Condvar::new(),
            progress,
        });
        let writer = std::thread::Builder::new()
            .name("scan-queue-journal".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let delay = match durability.fsync {
                    Fsync::Batch => Some(durability.batch_delay),
                    _ => None,
                };
                move || writer::run(&shared, files, delay)
            })?;
        Ok(Journal {
            shared,
            writer: Mutex::new(Some(writer)),
            durability,
            last_snapshot_at: Mutex::new(Instant::now()),
            _lock: lock,
        })
    }

    /// Appends the records one operation made; call it under the state's lock, which gives
    /// the records their order. Takes a snapshot of `state` too when one is due. Returns the
    /// sequence number the answer must wait for (the last one appended, whoever appended it:
    /// an answer may reflect state that earlier operations changed).
    pub(crate) fn append(&self, records: Vec<Record>, state: &State) -> u64 {
        let mut pending = self.shared.pending.lock();
        if records.is_empty() {
            return pending.last;
        }
        for record in records {
            pending.last += 1;
            pending.records_since_snapshot += 1;
            let seq = pending.last;
            pending.push(Item::Record(seq, record), &self.shared.wake);
        }
        let last = pending.last;
        let mut last_snapshot_at = self.last_snapshot_at.lock();
        let due = pending.records_since_snapshot >= self.durability.snapshot_every_events
            || last_snapshot_at.elapsed() >= self.durability.snapshot_every;
        if due {
            pending.records_since_snapshot = 0;
            *last_snapshot_at = Instant::now();
            // Copy the state without blocking the writer; the state's lock, still held, keeps
            // any other append from coming between the records and their snapshot.
            drop(pending);
            let snapshot = Box::new(state.snapshot());
            pending = self.shared.pending.lock();
            pending.push(Item::Snapshot(last, snapshot), &self.shared.wake);
        }
        last
    }

    /// Waits until every record up to `seq` is persisted; `false` when the journal failed
    /// (the answer must not claim success).
    pub(crate) async fn durable(&self, seq: u64) -> bool {
        let mut rx = self.shared.progress.subscribe();
        matches!(rx.wait_for(|p| p.failed || p.durable >= seq).await, Ok(p) if !p.failed)
    }

    /// Completes when the journal has failed (and the server must stop).
    pub(crate) async fn failed(&self) {
        let mut rx = self.shared.progress.subscribe();
        if rx.wait_for(|p| p.failed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the writer failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.shared.progress.borrow().failed
    }

    /// Persists everything appended and stops the writer.
    pub(crate) fn close(&self) {
        self.shared.pending.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}
