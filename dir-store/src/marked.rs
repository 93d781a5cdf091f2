//! Frames that start with a marker: `marker | body length | body CRC-32 |
//! body`. Files of such frames are appended to by several writers at once
//! (one `write` per frame, so frames never interleave); a reader that meets
//! a frame torn by a killed writer finds the next whole one by its marker.
//! Used by the summary index and the notification intake.

/// Bytes before the body.
pub const HEADER: usize = 12;

/// Append the frame of `body` (not empty) to `out`.
pub fn encode(marker: &[u8; 4], body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(marker);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The frame at the start of `bytes` (of one of `markers`): which marker,
/// its body and length; `None` if the bytes end inside it, `Some(Err)` if
/// it is not a valid frame.
#[allow(clippy::type_complexity)]
fn decode<'a>(
    markers: &[&[u8; 4]],
    bytes: &'a [u8],
) -> Option<Result<(usize, &'a [u8], usize), ()>> {
    if bytes.len() < HEADER {
        let prefix = |m: &&[u8; 4]| bytes.starts_with(&m[..bytes.len().min(4)]);
        return (!markers.iter().any(prefix)).then_some(Err(()));
    }
    let Some(which) = markers.iter().position(|m| &bytes[..4] == *m) else {
        return Some(Err(()));
    };
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    // No writer makes an empty frame; zeroes are garbage, not a frame.
    if len == 0 {
        return Some(Err(()));
    }
    let body = bytes.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return Some(Err(()));
    }
    Some(Ok((which, body, HEADER + len)))
}

/// The bodies of the whole frames in `bytes`, skipping torn ones, and how
/// many bytes they span. A frame cut short (its header claims more bytes
/// than follow) may be one being written: it ends the read, to be looked
/// at again later, unless the file is `complete` (nobody writes to it any
/// more), where it is torn like any other and the read goes on after it.
pub fn read<'a>(
    marker: &[u8; 4],
    bytes: &'a [u8],
    what: &str,
    complete: bool,
) -> (Vec<&'a [u8]>, usize) {
    let (frames, used) = read_any(&[marker], bytes, what, complete);
    (frames.into_iter().map(|(_, body)| body).collect(), used)
}

/// As [`read`], for files with frames of several kinds: each body comes
/// with the index of its marker in `markers`.
pub fn read_any<'a>(
    markers: &[&[u8; 4]],
    bytes: &'a [u8],
    what: &str,
    complete: bool,
) -> (Vec<(usize, &'a [u8])>, usize) {
    let marker = markers;
    let mut at = 0usize;
    let mut bodies = Vec::new();
    while at < bytes.len() {
        match decode(marker, &bytes[at..]) {
            Some(Ok((which, body, len))) => {
                bodies.push((which, body));
                at += len;
            }
            None if !complete => break,
            None | Some(Err(())) => {
                // Torn by a killed writer, with frames of other writers
                // after it: go on at the next whole frame.
                let next = (at + 1..bytes.len())
                    .find(|&i| matches!(decode(marker, &bytes[i..]), Some(Ok(_))));
                match next {
                    Some(n) => {
                        tracing::warn!(what, at, "skipping a torn frame");
                        at = n;
                    }
                    None => break,
                }
            }
        }
    }
    (bodies, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_frames_are_skipped_and_a_cut_tail_waits() {
        let mut bytes = Vec::new();
        encode(b"TEST", b"one", &mut bytes);
        let mut torn = Vec::new();
        encode(b"TEST", b"torn by a kill", &mut torn);
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        encode(b"TEST", b"two", &mut bytes);
        let whole = bytes.len();
        let mut cut = Vec::new();
        encode(b"TEST", b"being written", &mut cut);
        bytes.extend_from_slice(&cut[..7]);
        let (bodies, used) = read(b"TEST", &bytes, "test", false);
        assert_eq!(bodies, [b"one".as_slice(), b"two".as_slice()]);
        assert_eq!(used, whole);
        assert!(read(b"ELSE", &bytes, "test", false).0.is_empty());

        // A failed write left a header claiming more than follows; in a
        // complete file the frames after it are still found.
        let mut bytes = Vec::new();
        encode(b"TEST", &[7u8; 100], &mut bytes);
        bytes.truncate(30);
        encode(b"TEST", b"after", &mut bytes);
        assert!(read(b"TEST", &bytes, "test", false).0.is_empty());
        assert_eq!(read(b"TEST", &bytes, "test", true).0, [b"after".as_slice()]);
    }
}
