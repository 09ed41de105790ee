//! The journal's writer thread: it takes what appends queued, in order, writes records to the
//! current segment and snapshots beside it, syncs per the policy, and publishes how far the
//! journal is durable. All journal I/O after start-up happens here, never under the state's
//! lock and never on an async worker.

use super::Fsync;
use super::format::{SEGMENT_MAGIC, encode_record, encode_snapshot, segment_name, snapshot_name};
use crate::state::{Record, StateSnapshot};
use crate::storage::fs::{create_private, sync_dir, write_atomically};
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One thing for the writer to persist, in order.
pub(super) enum Item {
    Record(u64, Record),
    /// The state after record `.0`.
    Snapshot(u64, Box<StateSnapshot>),
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Record(seq, _) => write!(f, "Record({seq})"),
            Item::Snapshot(seq, _) => write!(f, "Snapshot({seq})"),
        }
    }
}

/// What the writer has done, for the answers waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Progress {
    /// Every record up to this one is persisted (per the fsync policy).
    pub(super) durable: u64,
    /// The writer hit an I/O error and stopped: nothing more will be persisted.
    pub(super) failed: bool,
}

/// What appends hand the writer.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) items: Vec<Item>,
    /// The sequence number of the last record appended.
    pub(super) last: u64,
    /// When the oldest item in `items` arrived (for batch).
    pub(super) first_at: Option<Instant>,
    pub(super) records_since_snapshot: u64,
    pub(super) shutdown: bool,
}

impl Pending {
    /// Adds an item, waking the writer if it was idle.
    pub(super) fn push(&mut self, item: Item, wake: &Condvar) {
        if self.items.is_empty() {
            self.first_at = Some(Instant::now());
            wake.notify_one();
        }
        self.items.push(item);
    }
}

/// Shared between appends and the writer.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    pub(super) wake: Condvar,
    pub(super) progress: watch::Sender<Progress>,
}

/// The files the writer appends to.
pub(super) struct Files {
    pub(super) dir: PathBuf,
    pub(super) fsync: Fsync,
    segment: File,
    segment_first: u64,
}

impl Files {
    /// Starts a new segment after record `last`.
    pub(super) fn new(dir: &Path, fsync: Fsync, last: u64) -> std::io::Result<Files> {
        Ok(Files {
            dir: dir.to_owned(),
            fsync,
            segment: Files::open_segment(dir, last + 1, fsync)?,
            segment_first: last + 1,
        })
    }

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
    pub(super) fn snapshot(&mut self, seq: u64, snapshot: &StateSnapshot) -> std::io::Result<()> {
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

    /// Removes what the snapshot at `seq` (already on disk) makes unnecessary: the segments
    /// before it and the older snapshots.
    pub(super) fn remove_older_than(&mut self, seq: u64) -> std::io::Result<()> {
        let listing = super::recovery::list(&self.dir)?;
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

    /// Persists `items` in order; returns the last record's sequence number, if any.
    fn write(&mut self, items: Vec<Item>, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
        let mut last = None;
        for item in items {
            match item {
                Item::Record(seq, record) => {
                    encode_record(buf, seq, &record)?;
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

/// The writer's loop: until shut down (after persisting everything appended) or an I/O
/// error (after which nothing more is acknowledged).
pub(super) fn run(shared: &Shared, mut files: Files, batch_delay: Option<Duration>) {
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
