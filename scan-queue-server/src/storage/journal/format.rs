//! The journal's on-disk format: one encoder and one decoder side by side, for records and
//! for snapshots, and the rule that tells a write torn by a crash from damage.
//!
//! A segment is the magic `SQJRNL01`, then records. A record is
//! `len: u32 LE | crc: u32 LE | seq: u64 LE | payload (len bytes)`: the payload is one
//! [`Record`] as JSON, and the CRC32 covers `seq` and the payload. A snapshot file is the magic
//! `SQSNAP01`, `seq: u64 LE`, the payload's `len: u32 LE` and `crc: u32 LE`, then the payload:
//! a [`StateSnapshot`] as JSON, the state after record `seq`.

use crate::state::{Record, StateSnapshot};

/// The first bytes of a segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SQJRNL01";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SQSNAP01";
const RECORD_HEADER: usize = 16;
const SNAPSHOT_HEADER: usize = 24;
/// The largest record payload: far above any record the bounds allow (a scan configuration
/// document is at most [`crate::ServerConfig::MAX_CONFIG_BYTES_LIMIT`], 8 MiB, before base64).
pub(crate) const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.log")
}

/// The file name of the snapshot of the state after record `seq`.
pub(crate) fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

/// The sequence number in a segment's or snapshot's file name.
pub(crate) fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
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

/// Appends one record to `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, seq: u64, record: &Record) -> std::io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER]);
    serde_json::to_writer(&mut *buf, record).map_err(std::io::Error::other)?;
    let payload_len = buf.len() - start - RECORD_HEADER;
    let Some(len) = u32::try_from(payload_len)
        .ok()
        .filter(|_| payload_len <= MAX_RECORD_BYTES)
    else {
        buf.truncate(start);
        return Err(std::io::Error::other("record too large for the journal"));
    };
    let sum = crc(seq, &buf[start + RECORD_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    buf[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    Ok(())
}

/// What [`decode_record`] found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole record with a good checksum; the next one starts at `end`.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Its JSON.
        payload: &'a [u8],
        /// Where the next record starts.
        end: usize,
    },
    /// The end of the segment.
    End,
    /// The rest of the last segment is a write a crash tore (short, zero-filled, or a bad
    /// checksum on its final record): never acknowledged, to be cut off.
    Torn,
    /// Damage: the journal cannot be trusted past this offset.
    Corrupt(&'static str),
}

/// Decodes the record at `offset` of a segment's `bytes` (the magic already checked). Only
/// the last segment can end in a torn write; in any other, the same bytes are damage.
pub(crate) fn decode_record(bytes: &[u8], offset: usize, is_last: bool) -> Decoded<'_> {
    let torn_or = |what| {
        if is_last {
            Decoded::Torn
        } else {
            Decoded::Corrupt(what)
        }
    };
    let Some(rest) = bytes.get(offset..) else {
        return Decoded::End;
    };
    if rest.is_empty() {
        return Decoded::End;
    }
    if rest.iter().all(|b| *b == 0) {
        return torn_or("corrupt: zero-filled tail");
    }
    if rest.len() < RECORD_HEADER {
        return torn_or("corrupt: truncated record header");
    }
    let len = le_u32(rest) as usize;
    let sum = le_u32(&rest[4..]);
    let seq = le_u64(&rest[8..]);
    if len > MAX_RECORD_BYTES || RECORD_HEADER + len > rest.len() {
        return torn_or("corrupt: record runs past the end of the file");
    }
    let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
    let end = offset + RECORD_HEADER + len;
    if crc(seq, payload) != sum {
        // Only the final record can be torn: a bad one with records after it is damage.
        return if end == bytes.len() {
            torn_or("corrupt: checksum mismatch")
        } else {
            Decoded::Corrupt("corrupt: checksum mismatch")
        };
    }
    Decoded::Record { seq, payload, end }
}

/// A whole snapshot file for the state after record `seq`.
pub(crate) fn encode_snapshot(seq: u64, snapshot: &StateSnapshot) -> std::io::Result<Vec<u8>> {
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

/// Decodes a snapshot file named for `seq`; on damage, the offset and what is wrong.
pub(crate) fn decode_snapshot(bytes: &[u8], seq: u64) -> Result<StateSnapshot, (usize, String)> {
    if bytes.len() < SNAPSHOT_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err((0, "corrupt: not a snapshot file (bad header)".into()));
    }
    if le_u64(&bytes[8..]) != seq {
        return Err((
            8,
            "corrupt: its sequence number differs from its name".into(),
        ));
    }
    let payload = &bytes[SNAPSHOT_HEADER..];
    if payload.len() != le_u32(&bytes[16..]) as usize {
        return Err((16, "corrupt: its length differs from the file's".into()));
    }
    if crc(seq, payload) != le_u32(&bytes[20..]) {
        return Err((SNAPSHOT_HEADER, "corrupt: checksum mismatch".into()));
    }
    StateSnapshot::from_json(payload).map_err(|e| {
        (
            SNAPSHOT_HEADER,
            format!("corrupt: undecodable snapshot: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::{Config, KeySource, Queue};

    fn records(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut q = Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
        let mut bytes = SEGMENT_MAGIC.to_vec();
        let mut ends = Vec::new();
        for seq in 1..=n {
            q.register_agent(seq).unwrap();
            let event = q.drain_events().next().unwrap();
            encode_record(&mut bytes, seq, &Record::Event(event)).unwrap();
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    fn seqs(bytes: &[u8], is_last: bool) -> (Vec<u64>, Decoded<'_>) {
        let mut offset = SEGMENT_MAGIC.len();
        let mut seen = Vec::new();
        loop {
            match decode_record(bytes, offset, is_last) {
                Decoded::Record { seq, end, .. } => {
                    seen.push(seq);
                    offset = end;
                }
                other => return (seen, other),
            }
        }
    }

    #[test]
    fn records_round_trip() {
        let (bytes, _) = records(3);
        let (seen, last) = seqs(&bytes, false);
        assert_eq!((seen, last), (vec![1, 2, 3], Decoded::End));
        let Decoded::Record { payload, .. } = decode_record(&bytes, 8, true) else {
            panic!("a record");
        };
        assert!(matches!(Record::from_json(payload), Ok(Record::Event(_))));
    }

    #[test]
    fn a_cut_anywhere_in_the_last_record_is_torn_in_the_last_segment_only() {
        let (bytes, ends) = records(2);
        for cut in ends[0] + 1..ends[1] {
            let (seen, tail) = seqs(&bytes[..cut], true);
            assert_eq!((seen, tail), (vec![1], Decoded::Torn), "cut at {cut}");
            let (_, tail) = seqs(&bytes[..cut], false);
            assert!(
                matches!(tail, Decoded::Corrupt(_)),
                "cut at {cut}: {tail:?}"
            );
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let (mut bytes, _) = records(1);
        bytes.extend_from_slice(&[0; 100]);
        assert_eq!(seqs(&bytes, true), (vec![1], Decoded::Torn));
    }

    #[test]
    fn a_bad_checksum_is_torn_only_on_the_final_record() {
        let (bytes, ends) = records(2);
        // A flipped payload byte in the final record: torn (its write did not finish).
        let mut last = bytes.clone();
        last[ends[1] - 2] ^= 1;
        assert_eq!(seqs(&last, true), (vec![1], Decoded::Torn));
        // The same in the first record, with one after it: damage, even in the last segment.
        let mut first = bytes.clone();
        first[ends[0] - 2] ^= 1;
        assert_eq!(
            seqs(&first, true),
            (vec![], Decoded::Corrupt("corrupt: checksum mismatch"))
        );
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let q = Queue::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
        let snap = StateSnapshot {
            queue: q.snapshot(),
            configs: Vec::new(),
            results: Vec::new(),
            results_tracked: true,
            webhooks: Default::default(),
            console: Default::default(),
        };
        let bytes = encode_snapshot(9, &snap).unwrap();
        assert!(decode_snapshot(&bytes, 9).is_ok());
        assert_eq!(decode_snapshot(&bytes, 8).unwrap_err().0, 8);
        let mut bad = bytes.clone();
        let at = bad.len() - 3;
        bad[at] ^= 1;
        assert_eq!(decode_snapshot(&bad, 9).unwrap_err().0, SNAPSHOT_HEADER);
        assert_eq!(decode_snapshot(&bytes[..10], 9).unwrap_err().0, 0);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name(&segment_name(42), "segment-", ".log"), Some(42));
        assert_eq!(parse_name("segment-42.log", "segment-", ".log"), None);
        assert_eq!(parse_name(&snapshot_name(7), "snapshot-", ".snap"), Some(7));
    }
}
