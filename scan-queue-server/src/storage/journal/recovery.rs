//! Recovery: the state a journal directory holds, as a function of what is on disk. The latest
//! snapshot, then every record after it, checking that sequence numbers follow on. A torn
//! write at the end of the last segment (see [`decode_record`]) was never acknowledged and is
//! cut off with a warning; any other damage stops the start with an error naming the file
//! and the byte offset.

use super::format::{Decoded, SEGMENT_MAGIC, decode_record, decode_snapshot, parse_name};
use crate::state::{Record, State};
use scan_queue::{Config, KeySource};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) state: State,
    /// The sequence number of the last record applied (0: none ever).
    pub(crate) last_seq: u64,
    /// Records applied after the snapshot.
    pub(crate) replayed: u64,
    /// The snapshot it started from, if any.
    pub(crate) snapshot_seq: Option<u64>,
}

/// The files of a journal directory, sorted by sequence number.
pub(crate) struct Listing {
    pub(crate) snapshots: Vec<(u64, PathBuf)>,
    pub(crate) segments: Vec<(u64, PathBuf)>,
}

pub(crate) fn list(dir: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing {
        snapshots: Vec::new(),
        segments: Vec::new(),
    };
    for path in crate::storage::fs::files_in(dir)? {
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

/// Rebuilds the state from `dir`: the latest snapshot, then every record after it. Cuts a torn
/// tail off the last segment (with a warning); any other damage is an error naming the file
/// and offset.
pub(crate) fn recover(dir: &Path, config: Config, keys: KeySource) -> std::io::Result<Recovered> {
    let listing = list(dir)?;
    let (mut state, base) = match listing.snapshots.last() {
        Some((seq, path)) => {
            let bytes = std::fs::read(path)?;
            let snapshot =
                decode_snapshot(&bytes, *seq).map_err(|(at, what)| unreadable(path, at, what))?;
            let state = State::restore(config, keys, snapshot)
                .map_err(|e| unreadable(path, 24, format!("cannot restore: {e}")))?;
            (state, *seq)
        }
        None => (State::new(config, keys).map_err(std::io::Error::other)?, 0),
    };
    let mut last = base;
    let count = listing.segments.len();
    for (i, (_, path)) in listing.segments.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        let torn_at = replay_segment(path, &bytes, i + 1 == count, base, &mut last, &mut state)?;
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
        state,
        last_seq: last,
        replayed: last - base,
        snapshot_seq: listing.snapshots.last().map(|(s, _)| *s),
    })
}

/// Applies the records of one segment that come after the snapshot at `base`, each of which
/// must follow `last`; returns where a torn tail starts.
fn replay_segment(
    path: &Path,
    bytes: &[u8],
    is_last: bool,
    base: u64,
    last: &mut u64,
    state: &mut State,
) -> std::io::Result<Option<usize>> {
    let magic = SEGMENT_MAGIC.len();
    if bytes.len() < magic {
        let torn = SEGMENT_MAGIC.starts_with(bytes) || bytes.iter().all(|b| *b == 0);
        return if is_last && torn {
            Ok(Some(0))
        } else {
            Err(unreadable(path, 0, "corrupt: truncated segment header"))
        };
    }
    if &bytes[..magic] != SEGMENT_MAGIC {
        return Err(unreadable(
            path,
            0,
            "corrupt: not a journal segment (bad header)",
        ));
    }
    let mut offset = magic;
    let mut previous: Option<u64> = None;
    loop {
        let (seq, payload, end) = match decode_record(bytes, offset, is_last) {
            Decoded::Record { seq, payload, end } => (seq, payload, end),
            Decoded::End => return Ok(None),
            Decoded::Torn => return Ok(Some(offset)),
            Decoded::Corrupt(what) => return Err(unreadable(path, offset, what)),
        };
        if let Some(p) = previous
            && seq != p + 1
        {
            return Err(unreadable(
                path,
                offset,
                format!("corrupt: sequence number {seq} does not follow {p}"),
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
            let record = Record::from_json(payload).map_err(|e| {
                unreadable(path, offset, format!("corrupt: undecodable record: {e}"))
            })?;
            state.apply(record).map_err(|e| {
                unreadable(
                    path,
                    offset,
                    format!(
                        "record {seq} does not apply to the recovered state (a bound lowered \
                         since it was written?): {e}"
                    ),
                )
            })?;
            *last = seq;
        }
        offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::{encode_record, segment_name};
    use super::*;
    use scan_queue::Queue;

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
        q.register_agent(5).unwrap();
        q.register_agent(6).unwrap();
        let events: Vec<_> = q.drain_events().collect();
        let mut bytes = SEGMENT_MAGIC.to_vec();
        encode_record(&mut bytes, 1, &Record::Event(events[0].clone())).unwrap();
        let whole = bytes.len();
        encode_record(&mut bytes, 2, &Record::Event(events[1].clone())).unwrap();
        let path = dir.path().join(segment_name(1));
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let r = recover(dir.path(), Config::default(), KeySource::from_seed([2; 32])).unwrap();
        assert_eq!(r.last_seq, 1);
        assert_eq!(r.state.queue.stats().agents, 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
    }
}
