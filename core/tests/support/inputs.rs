//! Inputs for the decoder property tests of the core and of the host's
//! store (included by both with `#[path]`): how many cases, and real
//! encoded bytes mutated so that they get past a decoder's first checks.

use proptest::prelude::*;

/// `cases` unless `PROPTEST_CASES` says otherwise; no persistence files.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One of `samples` with a few bytes changed, then cut, then repeated.
pub fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(samples),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        0usize..4,
    )
        .prop_map(|(mut bytes, edits, cut, repeat)| {
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let copy = bytes.clone();
            for _ in 0..repeat {
                bytes.extend_from_slice(&copy);
            }
            bytes
        })
}
