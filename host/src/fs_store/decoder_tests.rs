//! The store's decoders over arbitrary bytes: the frames of a log, marked
//! frames (the index, the notification intake), index entries and
//! documents. None may panic, and none may allocate more than a bound of
//! the input's length: an allocation sized from a length field or a count
//! in the bytes is what this catches. Allocations are counted by the
//! allocator the core's decoder tests use (`core/tests/support/counting.rs`),
//! installed for the host's unit tests.
//! `PROPTEST_CASES=20000 cargo test --release -p agent-session-host --lib
//! decoder` runs longer.

use proptest::prelude::*;

use crate::counting::peak_during;
use crate::inputs;
use agent_session_dir_store::{
    decode_doc, decode_index_entry, encode_doc, encode_index_entry, frame, marked,
};

/// Real store bytes of each kind, for mutation.
fn samples() -> Vec<Vec<u8>> {
    let mut log = Vec::new();
    frame::encode_batch(0, &[b"{\"a\":1}".to_vec()], &mut log);
    frame::encode_batch(1, &[b"x".to_vec(), b"yy".to_vec(), vec![7; 40]], &mut log);
    let mut marked_file = Vec::new();
    for (key, summary) in [
        ("k1", &b"s"[..]),
        ("another-key", &[1, 2, 3][..]),
        ("k1", &[][..]),
    ] {
        encode_index_entry(key, summary, &mut marked_file);
    }
    vec![log, marked_file, encode_doc(7, b"{\"doc\":true}")]
}

/// Bytes: arbitrary, or real bytes with a few changed, cut or repeated
/// (which get past the first checks).
fn input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = inputs::mutated(samples());
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutated]
}

/// What decoding `len` bytes may hold at once: offsets, slices or copies
/// of what is there, never more than a few bytes per input byte.
fn bound(len: usize) -> isize {
    (16 * len + 4096) as isize
}

proptest! {
    #![proptest_config(inputs::config(256))]

    #[test]
    fn decoders_of_store_bytes_never_panic_and_stay_in_bounds(bytes in input()) {
        let peak = peak_during(|| {
            let _ = frame::walk(&bytes, 0, 0);
            let _ = frame::walk_committed(&bytes, 3, 1);
            let _ = frame::decode(&bytes);
            for complete in [false, true] {
                let (bodies, _) = marked::read(agent_session_dir_store::INDEX_MARK, &bytes, "index", complete);
                for body in bodies {
                    let _ = decode_index_entry(body);
                }
            }
            let _ = decode_doc(&bytes);
        });
        prop_assert!(peak <= bound(bytes.len()), "{} bytes of input took {} bytes", bytes.len(), peak);
    }
}

#[test]
fn the_samples_decode_and_are_counted() {
    let [log, marked_file, doc] = <[Vec<u8>; 3]>::try_from(samples()).unwrap();
    assert_eq!(frame::walk(&log, 0, 0).unwrap().offsets.len(), 4);
    let (bodies, _) = marked::read(
        agent_session_dir_store::INDEX_MARK,
        &marked_file,
        "index",
        true,
    );
    assert_eq!(bodies.len(), 3);
    assert_eq!(decode_doc(&doc).unwrap().version, 7);
    // The counter sees a copy of the document's data.
    assert!(peak_during(|| drop(decode_doc(&doc))) >= 12);
}
