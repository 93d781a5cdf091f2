//! The decoders of stored bytes and of JSON text from hosts, over arbitrary
//! input: no panic, and memory bounded by the input's size.
//!
//! A separate test binary because it installs a counting global allocator.
//! `PROPTEST_CASES=20000 cargo test -p agent-session-core --release --test
//! decoders` runs longer.

use agent_session_core::{Event, Session, SessionStatus, SessionSummary, WebhookConfig, codec};
use proptest::prelude::*;

#[path = "support/counting.rs"]
mod counting;
#[path = "support/inputs.rs"]
mod inputs;
use counting::peak_during;

/// What a decode of `len` bytes may hold at once: parsed JSON holds a
/// few words per input byte (a one-byte `0` in an array becomes a 32-byte
/// value, `#[serde(flatten)]` buffers the record once more, vectors grow
/// by doubling), plus a constant. What this catches is an allocation sized
/// from the input's *content* (a length prefix, a count), not its length.
fn bound(len: usize) -> isize {
    (256 * len + 64 * 1024) as isize
}

fn samples() -> Vec<Vec<u8>> {
    let summary = SessionSummary {
        status: SessionStatus::Paused,
        mode: "developer".into(),
        user_id: Some("u".into()),
        channel_id: None,
        created_at: 1,
        updated_at: 2,
        ended_at: None,
        iteration: 3,
        event_count: 4,
    };
    let event = Event {
        seq: 3,
        kind: "iteration".into(),
        timestamp: 5,
        data: serde_json::json!({"iteration": 1, "data": [1, {"a": "b"}, null, 2.5]}),
    };
    vec![
        codec::encode_summary(&summary),
        codec::encode(&event).expect("an event encodes"),
        br#"{"schema":2,"url":"https://a.example.com","secret":"whsec_x","event_kinds":[],"enabled":true}"#.to_vec(),
        br#"{"schema":1,"id":"x","task":"t","mode":"m","user_id":null,"channel_id":null,"status":"active","iteration":0,"max_iterations":5,"context":{"k":[1,2,3]},"pause_reason":null,"result":null,"error":null,"created_at":1,"updated_at":1,"ended_at":null,"event_count":1,"version":1}"#.to_vec(),
    ]
}

/// Bytes: arbitrary, or a real record with a few bytes changed, cut or
/// repeated (those get past the first checks).
fn input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = inputs::mutated(samples());
    let json_soup = prop::collection::vec(
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            "\"a\"",
            "0",
            "-1",
            "1e400",
            "1.5",
            "123456789012345678901234567890",
            "null",
            "true",
            "\"schema\"",
            "2",
            " ",
            "\"data\"",
            "\"\\u0000\"",
        ]),
        0..64,
    )
    .prop_map(|parts| parts.concat().into_bytes());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mutated,
        json_soup,
    ]
}

proptest! {
    #![proptest_config(inputs::config(256))]

    #[test]
    fn record_decoders_never_panic_and_stay_in_bounds(bytes in input()) {
        let peak = peak_during(|| {
            let _ = codec::decode::<Event>("event", &bytes);
            let _ = codec::decode::<Session>("snapshot", &bytes);
            let _ = codec::decode::<WebhookConfig>("webhook", &bytes);
            let _ = codec::decode_versioned::<serde_json::Value>("record", &bytes);
        });
        prop_assert!(peak <= bound(bytes.len()), "{} bytes of input took {} bytes", bytes.len(), peak);
    }

    #[test]
    fn summary_decoder_never_panics_and_stays_in_bounds(bytes in input()) {
        let peak = peak_during(|| {
            let _ = codec::decode_summary("summary", &bytes);
        });
        // Binary, no nesting: at most the strings it copies out.
        prop_assert!(peak <= (2 * bytes.len() + 1024) as isize, "{} bytes of input took {} bytes", bytes.len(), peak);
    }

    #[test]
    fn json_text_checks_never_panic_and_stay_in_bounds(bytes in input()) {
        let text = String::from_utf8_lossy(&bytes);
        let peak = peak_during(|| {
            let _ = agent_session_core::validate::json("value", &text);
            let _ = importer().import_text(&text);
            let _ = agent_session_core::validate::json_numbers_exact("value", &text);
        });
        prop_assert!(peak <= bound(text.len()), "{} bytes of input took {} bytes", text.len(), peak);
    }
}

#[test]
fn a_summary_claiming_long_strings_allocates_nothing_for_them() {
    // Version, status, three times, iteration, count, then a string that
    // claims 65534 bytes but has none.
    let mut bytes = vec![1u8, 0];
    bytes.extend_from_slice(&[0; 8 * 3 + 4 + 8]);
    bytes.extend_from_slice(&0xfffeu16.to_le_bytes());
    let peak = peak_during(|| {
        assert!(codec::decode_summary("summary", &bytes).is_err());
    });
    assert!(peak < 1024, "{peak}");
}

#[test]
fn the_counter_counts() {
    let bytes = format!("{{\"schema\":2,\"a\":[{}0]}}", "0,".repeat(10_000)).into_bytes();
    let peak = peak_during(|| {
        let v = codec::decode_versioned::<serde_json::Value>("record", &bytes);
        assert!(v.is_ok());
    });
    // 10 001 values of 32 bytes, at least.
    assert!(peak >= 320_000, "{peak}");
    assert!(peak <= bound(bytes.len()), "{peak}");
}

/// An engine on an in-memory store, to import into.
fn importer() -> agent_session_core::Engine<
    agent_session_core::memory::MemoryStore,
    agent_session_core::memory::MemoryOutbox,
    agent_session_core::memory::ManualEnvironment,
> {
    use agent_session_core::memory::*;
    agent_session_core::Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(1_700_000_000_000),
    )
}

#[test]
fn an_import_of_many_small_values_holds_one_event_at_a_time() {
    let zeros = format!("[{}0]", "0,".repeat(4 << 20));
    let head = r#""format":"agent-session/export","schema":2"#;
    for text in [
        format!("{{\"a\":{zeros}}}"),
        format!("{{{head},\"session\":{zeros}}}"),
        format!("{{{head},\"session\":{{}},\"events\":{zeros}}}"),
    ] {
        let e = importer();
        let peak = peak_during(|| assert!(e.import_text(&text).is_err()));
        // Parsed whole, 4 Mi values would take over 100 MiB.
        assert!(
            peak < 1 << 20,
            "{} bytes of text took {peak} bytes",
            text.len()
        );
    }
}
