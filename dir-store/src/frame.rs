//! Record framing of the event logs and the index.
//!
//! A log frame is `len: u32 | seq: u64 | header crc: u32 | payload crc: u32
//! | payload`. The top bit of `len` says that more records of the same
//! append follow, so an append of several records is all-or-nothing: a
//! crash that tears it leaves a batch without its last frame, which is cut
//! like any torn tail. The header has its own checksum so that a damaged
//! length is told apart from a torn write.

/// Bytes before the payload.
pub const HEADER: usize = 4 + 8 + 4 + 4;
/// Flag in `len`: more frames of this append follow.
const MORE: u32 = 1 << 31;
/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Append the frames of one append to `out`.
pub fn encode_batch(first_seq: u64, records: &[Vec<u8>], out: &mut Vec<u8>) {
    for (i, payload) in records.iter().enumerate() {
        let more = if i + 1 < records.len() { MORE } else { 0 };
        let len = payload.len() as u32 | more;
        let seq = first_seq + i as u64;
        let mut h = crc32fast::Hasher::new();
        h.update(&len.to_le_bytes());
        h.update(&seq.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }
}

/// What is at some offset of a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole, valid frame.
    Whole {
        seq: u64,
        payload: &'a [u8],
        /// More frames of the same append follow.
        more: bool,
        /// Bytes the frame takes.
        len: usize,
    },
    /// The bytes end inside the frame (a torn or in-progress write), or
    /// only zeros follow (a crash after the size grew but before the data
    /// reached the disk).
    Torn,
    /// The frame is complete but does not check out.
    Damaged(&'static str),
}

/// Decode the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Frame<'_> {
    if bytes.len() < HEADER {
        return Frame::Torn;
    }
    let raw_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[4..12]);
    let header_crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let payload_crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let mut h = crc32fast::Hasher::new();
    h.update(&raw_len.to_le_bytes());
    h.update(&seq);
    if h.finalize() != header_crc {
        if bytes.iter().all(|b| *b == 0) {
            return Frame::Torn;
        }
        return Frame::Damaged("frame header checksum mismatch");
    }
    let len = (raw_len & !MORE) as usize;
    if len > MAX_PAYLOAD {
        return Frame::Damaged("frame longer than the limit");
    }
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Frame::Torn;
    };
    if crc32fast::hash(payload) != payload_crc {
        return Frame::Damaged("record checksum mismatch");
    }
    Frame::Whole {
        seq: u64::from_le_bytes(seq),
        payload,
        more: raw_len & MORE != 0,
        len: HEADER + len,
    }
}

/// The result of walking a log from some offset.
#[derive(Debug, Default)]
pub struct Walk {
    /// Offsets of the committed frames found, in order.
    pub offsets: Vec<u64>,
    /// Where the committed frames end.
    pub end: u64,
    /// Bytes after `end` that belong to no committed append (torn tail).
    pub torn_bytes: u64,
}

/// Walk the frames in `bytes` (which start at log offset `base`, at
/// position `first_seq`), keeping only whole appends. Damage before the
/// end of the bytes is an error.
pub fn walk(bytes: &[u8], base: u64, first_seq: u64) -> Result<Walk, (u64, &'static str)> {
    walk_inner(bytes, base, first_seq, false)
}

/// [`walk`] over a range known to hold only committed appends (it ends at
/// an offset the offsets file recorded), which may end inside an append.
pub fn walk_committed(
    bytes: &[u8],
    base: u64,
    first_seq: u64,
) -> Result<Walk, (u64, &'static str)> {
    walk_inner(bytes, base, first_seq, true)
}

fn walk_inner(
    bytes: &[u8],
    base: u64,
    first_seq: u64,
    committed: bool,
) -> Result<Walk, (u64, &'static str)> {
    let mut walk = Walk {
        end: base,
        ..Walk::default()
    };
    let mut at = 0usize;
    let mut pending: Vec<u64> = Vec::new();
    let mut seq = first_seq;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Frame::Whole {
                seq: s, more, len, ..
            } => {
                if s != seq {
                    return Err((base + at as u64, "frame out of sequence"));
                }
                pending.push(base + at as u64);
                at += len;
                seq += 1;
                if !more || committed {
                    walk.offsets.append(&mut pending);
                    walk.end = base + at as u64;
                }
            }
            Frame::Torn => break,
            // After a power loss, the pages of an unsynced last append can
            // reach the disk in any order: bad bytes with no whole later
            // frame after them are that torn append, not damage.
            Frame::Damaged(why) => {
                let later = (at + 1..bytes.len()).any(
                    |i| matches!(decode(&bytes[i..]), Frame::Whole { seq: s, .. } if s >= seq),
                );
                if later {
                    return Err((base + at as u64, why));
                }
                break;
            }
        }
    }
    walk.torn_bytes = base + bytes.len() as u64 - walk.end;
    Ok(walk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_all_or_nothing() {
        let mut log = Vec::new();
        encode_batch(0, &[b"a".to_vec()], &mut log);
        let one = log.len();
        encode_batch(1, &[b"b".to_vec(), b"c".to_vec()], &mut log);
        let w = walk(&log, 0, 0).unwrap();
        assert_eq!(
            (w.offsets.len(), w.end, w.torn_bytes),
            (3, log.len() as u64, 0)
        );
        // Tear the batch inside its second frame: the whole batch goes.
        let torn = &log[..log.len() - 1];
        let w = walk(torn, 0, 0).unwrap();
        assert_eq!((w.offsets.len(), w.end), (1, one as u64));
        // A tear right after the first frame of the batch: same.
        let w = walk(&log[..one + HEADER + 1], 0, 0).unwrap();
        assert_eq!(w.end, one as u64);
        // Zeros after the end are a torn tail, not damage.
        let mut zeros = log.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(walk(&zeros, 0, 0).unwrap().torn_bytes, 64);
    }

    #[test]
    fn a_garbled_last_append_is_a_tear() {
        let mut log = Vec::new();
        encode_batch(0, &[b"kept".to_vec()], &mut log);
        let end = log.len();
        encode_batch(1, &[vec![9u8; 5000]], &mut log);
        log[end + HEADER + 100] ^= 1; // a page of the last append lost
        let w = walk(&log, 0, 0).unwrap();
        assert_eq!((w.offsets.len(), w.end), (1, end as u64));
    }

    #[test]
    fn damage_is_told_apart_from_a_tear() {
        let mut log = Vec::new();
        encode_batch(0, &[b"first".to_vec()], &mut log);
        encode_batch(1, &[b"second".to_vec()], &mut log);
        let mut flipped = log.clone();
        flipped[HEADER] ^= 1; // payload of the first record
        assert!(walk(&flipped, 0, 0).is_err());
        let mut bad_len = log.clone();
        bad_len[1] ^= 0x40; // length of the first record
        assert!(walk(&bad_len, 0, 0).is_err());
    }
}
