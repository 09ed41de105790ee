//! Durability: the core's events in a checksummed, append-only journal, with periodic
//! snapshots, and the recovery that rebuilds the queue from them at start-up.
//!
//! Layout of `<data-dir>/journal/`:
//! - `LOCK`: held (an OS file lock) while a server runs on this directory;
//! - `segment-{first_seq:020}.log`: the magic `SQJRNL01`, then records; a new segment starts
//!   at every snapshot, so a segment holds the events between two snapshots;
//! - `snapshot-{seq:020}.snap`: the magic `SQSNAP01`, `seq` (u64 LE), the payload's length
//!   (u32 LE) and CRC32 (u32 LE), then the payload: `Queue::snapshot()` as JSON, the state
//!   after event `seq`; written to a `.tmp` file, synced, renamed, the directory synced;
//! - `*.tmp`: a snapshot or segment being written; removed at start-up.
//!
//! A record is `len: u32 LE | crc: u32 LE | seq: u64 LE | payload (len bytes)`, where the
//! payload is one [`Event`] as JSON and the CRC32 covers `seq` and the payload. Sequence
//! numbers start at 1 and increase by one, in the order the events were produced (under the
//! queue lock).
//!
//! Recovery reads the latest snapshot, then applies every record after it, checking that the
//! sequence numbers follow on. A bad record at the very end of the last segment (short, a
//! checksum that fails on the final record, or a zero-filled tail) is a write torn by a crash:
//! it was never acknowledged, so it is cut off with a warning. Anything else that does not read
//! back (a bad checksum with records after it, a gap, a record that does not apply) stops the
//! start with an error naming the file and the byte offset.

use parking_lot::{Condvar, Mutex};
use scan_queue::{Config, Event, KeySource, Queue, Snapshot};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// When an acknowledged transition reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fsync {
    /// Every answer waits for an `fsync` that covers its events (requests arriving while one
    /// `fsync` runs share the next one). An acknowledged transition survives power loss.
    Always,
    /// Group commit: the writer gathers events for up to [`Durability::batch_delay`], then
    /// one `fsync` covers them all; answers are still released only after it. Survives power
    /// loss too; trades latency for fewer `fsync`s under load.
    Batch,
    /// Events are written (to the OS) before the answer, never synced: they survive the
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

    fn syncs(self) -> bool {
        self != Fsync::Never
    }
}

/// How the server persists its queue under the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// When events are synced.
    pub fsync: Fsync,
    /// With [`Fsync::Batch`], how long the writer gathers events before one `fsync`.
    pub batch_delay: Duration,
    /// A snapshot is taken after this many events…
    pub snapshot_every_events: u64,
    /// …or when this long has passed since the last one and there are new events.
    pub snapshot_every: Duration,
}

impl Default for Durability {
    /// `fsync` always, batches of 2 ms, a snapshot every 100 000 events or 5 minutes.
    fn default() -> Durability {
        Durability {
            fsync: Fsync::Always,
            batch_delay: Duration::from_millis(2),
            snapshot_every_events: 100_000,
            snapshot_every: Duration::from_secs(300),
        }
    }
}

const SEGMENT_MAGIC: &[u8; 8] = b"SQJRNL01";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SQSNAP01";
const RECORD_HEADER: usize = 16;
const SNAPSHOT_HEADER: usize = 24;
/// How long start-up waits for the data directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(1);
/// The largest record payload: far above any event the core's bounds allow.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

fn segment_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.log")
}

fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one record to `buf`.
fn encode_record(buf: &mut Vec<u8>, seq: u64, event: &Event) -> std::io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER]);
    serde_json::to_writer(&mut *buf, event).map_err(std::io::Error::other)?;
    let payload_len = buf.len() - start - RECORD_HEADER;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|_| payload_len <= MAX_RECORD_BYTES)
        .ok_or_else(|| std::io::Error::other("event too large for a journal record"))?;
    let sum = crc(seq, &buf[start + RECORD_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    buf[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    Ok(())
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Why the journal cannot be read back: names the file and the byte offset.
fn unreadable(path: &Path, offset: usize, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "journal file {}, byte offset {offset}: {what}; refusing to start (nothing was \
             changed; move the file aside only if losing its records is acceptable)",
            path.display()
        ),
    )
}

/// Creates a file readable by its owner only (it holds keys).
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Syncs a directory, so that files created, renamed or removed in it stay so.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a `.tmp` file, synced, renamed, the directory synced
/// (the syncs only when `sync`).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = create_private(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) queue: Queue,
    /// The sequence number of the last event applied (0: none ever).
    pub(crate) last_seq: u64,
    /// Events applied after the snapshot.
    pub(crate) replayed: u64,
    /// The snapshot it started from, if any.
    pub(crate) snapshot_seq: Option<u64>,
}

/// The files of a journal directory, sorted by sequence number.
struct Listing {
    snapshots: Vec<(u64, PathBuf)>,
    segments: Vec<(u64, PathBuf)>,
}

fn list(dir: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing {
        snapshots: Vec::new(),
        segments: Vec::new(),
    };
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(seq) = parse_name(name, "segment-", ".log") {
            listing.segments.push((seq, path));
        } else if let Some(seq) = parse_name(name, "snapshot-", ".snap") {
            listing.snapshots.push((seq, path));
        }
    }
    listing.snapshots.sort();
    listing.segments.sort();
    Ok(listing)
}

fn read_snapshot(path: &Path, seq: u64) -> std::io::Result<Snapshot> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < SNAPSHOT_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(unreadable(
            path,
            0,
            "corrupt: not a snapshot file (bad header)",
        ));
    }
    if le_u64(&bytes[8..]) != seq {
        return Err(unreadable(
            path,
            8,
            "corrupt: its sequence number differs from its name",
        ));
    }
    let len = le_u32(&bytes[16..]) as usize;
    let payload = &bytes[SNAPSHOT_HEADER..];
    if payload.len() != len {
        return Err(unreadable(
            path,
            16,
            "corrupt: its length differs from the file's",
        ));
    }
    if crc(seq, payload) != le_u32(&bytes[20..]) {
        return Err(unreadable(
            path,
            SNAPSHOT_HEADER,
            "corrupt: checksum mismatch",
        ));
    }
    serde_json::from_slice(payload).map_err(|e| {
        unreadable(
            path,
            SNAPSHOT_HEADER,
            format!("corrupt: undecodable snapshot: {e}"),
        )
    })
}

fn encode_snapshot(seq: u64, snapshot: &Snapshot) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(64 * 1024);
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    serde_json::to_writer(&mut bytes, snapshot).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len() - SNAPSHOT_HEADER)
        .map_err(|_| std::io::Error::other("snapshot larger than 4 GiB"))?;
    let sum = crc(seq, &bytes[SNAPSHOT_HEADER..]);
    bytes[16..20].copy_from_slice(&len.to_le_bytes());
    bytes[20..24].copy_from_slice(&sum.to_le_bytes());
    Ok(bytes)
}

/// Rebuilds the queue from `dir`: the latest snapshot, then every record after it. Cuts a
/// torn tail off the last segment (with a warning); any other damage is an error naming the
/// file and offset.
pub(crate) fn recover(dir: &Path, config: Config, keys: KeySource) -> std::io::Result<Recovered> {
    let listing = list(dir)?;
    let (mut queue, base) = match listing.snapshots.last() {
        Some((seq, path)) => {
            let snapshot = read_snapshot(path, *seq)?;
            let queue = Queue::restore(config, keys, snapshot)
                .map_err(|e| unreadable(path, SNAPSHOT_HEADER, format!("cannot restore: {e}")))?;
            (queue, *seq)
        }
        None => (Queue::new(config, keys).map_err(std::io::Error::other)?, 0),
    };
    let mut last = base;
    let mut replayed = 0;
    let count = listing.segments.len();
    for (i, (_, path)) in listing.segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes = std::fs::read(path)?;
        let torn_at = replay_segment(path, &bytes, is_last, base, &mut last, &mut queue)?;
        replayed = last - base;
        if let Some(offset) = torn_at {
            tracing::warn!(
                file = %path.display(),
                offset,
                dropped_bytes = bytes.len() - offset,
                "journal: dropped a torn write at the end of the last segment (a crash mid-write; \
                 it was never acknowledged)"
            );
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
    }
    Ok(Recovered {
        queue,
        last_seq: last,
        replayed,
        snapshot_seq: listing.snapshots.last().map(|(s, _)| *s),
    })
}

/// Applies the records of one segment after `base`; returns where a torn tail starts.
fn replay_segment(
    path: &Path,
    bytes: &[u8],
    is_last: bool,
    base: u64,
    last: &mut u64,
    queue: &mut Queue,
) -> std::io::Result<Option<usize>> {
    let all_zero = |from: usize| bytes[from..].iter().all(|b| *b == 0);
    if bytes.len() < SEGMENT_MAGIC.len() {
        let prefix = SEGMENT_MAGIC.starts_with(bytes) || all_zero(0);
        return if is_last && prefix {
            Ok(Some(0))
        } else {
            Err(unreadable(path, 0, "corrupt: truncated segment header"))
        };
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err(unreadable(
            path,
            0,
            "corrupt: not a journal segment (bad header)",
        ));
    }
    let mut offset = SEGMENT_MAGIC.len();
    let mut previous: Option<u64> = None;
    while offset < bytes.len() {
        let rest = bytes.len() - offset;
        if is_last && all_zero(offset) {
            return Ok(Some(offset));
        }
        if rest < RECORD_HEADER {
            return if is_last {
                Ok(Some(offset))
            } else {
                Err(unreadable(path, offset, "corrupt: truncated record header"))
            };
        }
        let len = le_u32(&bytes[offset..]) as usize;
        let sum = le_u32(&bytes[offset + 4..]);
        let seq = le_u64(&bytes[offset + 8..]);
        let end = offset + RECORD_HEADER + len;
        if len > MAX_RECORD_BYTES || end > bytes.len() {
            return if is_last {
                Ok(Some(offset))
            } else {
                Err(unreadable(
                    path,
                    offset,
                    "record runs past the end of the file",
                ))
            };
        }
        let payload = &bytes[offset + RECORD_HEADER..end];
        if crc(seq, payload) != sum {
            return if is_last && end == bytes.len() {
                Ok(Some(offset))
            } else {
                Err(unreadable(path, offset, "corrupt: checksum mismatch"))
            };
        }
        if previous.is_some_and(|p| seq != p + 1) {
            return Err(unreadable(
                path,
                offset,
                format!(
                    "corrupt: sequence number {seq} does not follow {}",
                    previous.unwrap_or(0)
                ),
            ));
        }
        previous = Some(seq);
        if seq > base {
            if seq != *last + 1 {
                return Err(unreadable(
                    path,
                    offset,
                    format!(
                        "corrupt: sequence number {seq} where {} was expected (records are missing)",
                        *last + 1
                    ),
                ));
            }
            let event: Event = serde_json::from_slice(payload).map_err(|e| {
                unreadable(path, offset, format!("corrupt: undecodable event: {e}"))
            })?;
            queue.apply(event).map_err(|e| {
                unreadable(
                    path,
                    offset,
                    format!(
                        "event {seq} does not apply to the recovered state (a bound lowered \
                     since it was written?): {e}"
                    ),
                )
            })?;
            *last = seq;
        }
        offset = end;
    }
    Ok(None)
}

/// One thing for the writer to persist, in order.
enum Item {
    Event(u64, Event),
    /// The state after event `.0`.
    Snapshot(u64, Box<Snapshot>),
}

/// What the writer has done, for the answers waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    /// Every event up to this one is persisted (per the fsync policy).
    durable: u64,
    /// The writer hit an I/O error and stopped: nothing more will be persisted.
    failed: bool,
}

#[derive(Debug, Default)]
struct Pending {
    items: Vec<Item>,
    /// The sequence number of the last event appended.
    last: u64,
    /// When the oldest item in `items` arrived (for batch).
    first_at: Option<Instant>,
    events_since_snapshot: u64,
    shutdown: bool,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Event(seq, _) => write!(f, "Event({seq})"),
            Item::Snapshot(seq, _) => write!(f, "Snapshot({seq})"),
        }
    }
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
}

/// The journal of a running server: [`append`](Journal::append) under the queue lock, then
/// [`durable`](Journal::durable) before answering. A writer thread does the I/O.
#[derive(Debug)]
pub(crate) struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    durability: Durability,
    /// When the last snapshot was taken (only read and written under the queue lock).
    last_snapshot_at: Mutex<Instant>,
    /// Held for the server's life: one server per data directory.
    _lock: File,
}

/// The files the writer appends to.
struct Files {
    dir: PathBuf,
    fsync: Fsync,
    segment: File,
    segment_first: u64,
}

impl Files {
    fn open_segment(dir: &Path, first_seq: u64, fsync: Fsync) -> std::io::Result<File> {
        let mut file = create_private(&dir.join(segment_name(first_seq)))?;
        file.write_all(SEGMENT_MAGIC)?;
        if fsync.syncs() {
            file.sync_all()?;
            sync_dir(dir)?;
        }
        Ok(file)
    }

    /// Writes a snapshot of the state after `seq`, starts a new segment after it, and removes
    /// the segments and snapshots it makes unnecessary.
    fn snapshot(&mut self, seq: u64, snapshot: &Snapshot) -> std::io::Result<()> {
        let bytes = encode_snapshot(seq, snapshot)?;
        write_atomically(
            &self.dir.join(snapshot_name(seq)),
            &bytes,
            self.fsync.syncs(),
        )?;
        if self.segment_first != seq + 1 {
            self.segment = Files::open_segment(&self.dir, seq + 1, self.fsync)?;
            self.segment_first = seq + 1;
        }
        self.remove_older_than(seq)?;
        tracing::debug!(seq, "journal: snapshot written, older segments removed");
        Ok(())
    }

    /// Persists `items` in order; returns the last event's sequence number, if any.
    fn write(&mut self, items: Vec<Item>, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
        let mut last = None;
        for item in items {
            match item {
                Item::Event(seq, event) => {
                    encode_record(buf, seq, &event)?;
                    last = Some(seq);
                }
                Item::Snapshot(seq, snapshot) => {
                    self.flush(buf)?;
                    self.snapshot(seq, &snapshot)?;
                }
            }
        }
        self.flush(buf)?;
        Ok(last)
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.segment.write_all(buf)?;
        buf.clear();
        if self.fsync.syncs() {
            self.segment.sync_data()?;
        }
        Ok(())
    }
}

impl Journal {
    /// Recovers the queue from `<data_dir>/journal/` and starts the writer after it.
    pub(crate) fn open(
        data_dir: &Path,
        durability: Durability,
        config: Config,
        keys: KeySource,
    ) -> std::io::Result<(Journal, Queue)> {
        let dir = data_dir.join("journal");
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))?;
        // A server that was just stopped in this process may take a moment to release it.
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
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        let recovered = recover(&dir, config, keys)?;
        let last = recovered.last_seq;
        tracing::info!(
            snapshot = recovered.snapshot_seq,
            replayed = recovered.replayed,
            last_seq = last,
            "journal: recovered"
        );
        // Start afresh: a snapshot of what was recovered (when anything was replayed), a new
        // segment after it, and nothing older kept.
        let segment = Files::open_segment(&dir, last + 1, durability.fsync)?;
        let mut files = Files {
            dir: dir.clone(),
            fsync: durability.fsync,
            segment,
            segment_first: last + 1,
        };
        if recovered.replayed > 0 || recovered.snapshot_seq.is_none_or(|s| s != last) {
            files.snapshot(last, &recovered.queue.snapshot())?;
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
                move || run_writer(&shared, files, delay)
            })?;
        Ok((
            Journal {
                shared,
                writer: Mutex::new(Some(writer)),
                durability,
                last_snapshot_at: Mutex::new(Instant::now()),
                _lock: lock,
            },
            recovered.queue,
        ))
    }

    /// Appends the events one core call produced; call it under the queue lock, which gives
    /// the events their order. Takes a snapshot of `queue` too when one is due. Returns the
    /// sequence number the answer must wait for (the last one appended, whoever appended it:
    /// an answer may reflect state that earlier calls changed).
    pub(crate) fn append(&self, events: Vec<Event>, queue: &Queue) -> u64 {
        let mut pending = self.shared.pending.lock();
        if events.is_empty() {
            return pending.last;
        }
        for event in events {
            pending.last += 1;
            let seq = pending.last;
            pending.events_since_snapshot += 1;
            self.push(&mut pending, Item::Event(seq, event));
        }
        let last = pending.last;
        let mut last_snapshot_at = self.last_snapshot_at.lock();
        let due = pending.events_since_snapshot >= self.durability.snapshot_every_events
            || last_snapshot_at.elapsed() >= self.durability.snapshot_every;
        if due {
            pending.events_since_snapshot = 0;
            *last_snapshot_at = Instant::now();
            // Copy the state without blocking the writer; the queue lock, still held, keeps
            // any other append from coming between the events and their snapshot.
            drop(pending);
            let snapshot = Box::new(queue.snapshot());
            pending = self.shared.pending.lock();
            self.push(&mut pending, Item::Snapshot(last, snapshot));
        }
        last
    }

    /// Adds an item, waking the writer if it was idle.
    fn push(&self, pending: &mut Pending, item: Item) {
        if pending.items.is_empty() {
            pending.first_at = Some(Instant::now());
            self.shared.wake.notify_one();
        }
        pending.items.push(item);
    }

    /// Waits until every event up to `seq` is persisted; `Err` when the journal failed (the
    /// answer must not claim success).
    pub(crate) async fn durable(&self, seq: u64) -> Result<(), JournalFailed> {
        let mut rx = self.shared.progress.subscribe();
        match rx.wait_for(|p| p.failed || p.durable >= seq).await {
            Ok(p) if !p.failed => Ok(()),
            _ => Err(JournalFailed),
        }
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

/// The journal writer stopped after an I/O error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JournalFailed;

impl Files {
    /// Removes what the snapshot at `seq` (already on disk) makes unnecessary: the segments
    /// before it and the older snapshots.
    fn remove_older_than(&mut self, seq: u64) -> std::io::Result<()> {
        let listing = list(&self.dir)?;
        for (first, path) in listing.segments {
            if first <= seq {
                std::fs::remove_file(path)?;
            }
        }
        for (at, path) in listing.snapshots {
            if at < seq {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

fn run_writer(shared: &Shared, mut files: Files, batch_delay: Option<Duration>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let items = {
            let mut pending = shared.pending.lock();
            while pending.items.is_empty() && !pending.shutdown {
                shared.wake.wait(&mut pending);
            }
            if pending.items.is_empty() {
                break;
            }
            if let (Some(delay), Some(first)) = (batch_delay, pending.first_at) {
                let until = first + delay;
                while !pending.shutdown && Instant::now() < until {
                    shared.wake.wait_until(&mut pending, until);
                }
            }
            pending.first_at = None;
            std::mem::take(&mut pending.items)
        };
        match files.write(items, &mut buf) {
            Ok(Some(last)) => {
                shared
                    .progress
                    .send_modify(|p| p.durable = p.durable.max(last));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, dir = %files.dir.display(), "journal: write failed; no further change will be acknowledged, the server stops");
                shared.progress.send_modify(|p| p.failed = true);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue {
        Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap()
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue();
        q.register_agent(5).unwrap();
        let events: Vec<Event> = q.drain_events().collect();
        let mut bytes = SEGMENT_MAGIC.to_vec();
        encode_record(&mut bytes, 1, &events[0]).unwrap();
        let whole = bytes.len();
        encode_record(&mut bytes, 2, &events[0]).unwrap();
        let path = dir.path().join(segment_name(1));
        // A torn second record: the first is kept.
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let r = recover(dir.path(), Config::default(), KeySource::from_seed([2; 32])).unwrap();
        assert_eq!(r.last_seq, 1);
        assert_eq!(r.queue.stats().agents, 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name(&segment_name(42), "segment-", ".log"), Some(42));
        assert_eq!(parse_name("segment-42.log", "segment-", ".log"), None);
        assert_eq!(parse_name(&snapshot_name(7), "snapshot-", ".snap"), Some(7));
    }
}
