//! Migration of a format-1 root (the first on-disk format) to format 2.
//!
//! Format 1 framed log records as `len | crc(seq, payload) | seq | payload`
//! and allowed concurrent appenders to land records out of order; its
//! session documents hold the whole state. Format 2 keeps the documents
//! (they become snapshots), rewrites every log in format-2 frames in
//! position order, and asks for the index to be rebuilt. The migration runs
//! once, under an exclusive lock on the root, and is idempotent: a crash
//! halfway leaves `FORMAT` at 1 and the next open finishes it.

use std::collections::BTreeMap;

use crate::store::{DirStore, FORMAT, IDX, LOG};
use crate::{Held, Root, RootError, frame};

const V1_HEADER: usize = 4 + 4 + 8;
/// The largest format-1 log migrated.
const MAX_LOG: u64 = 1 << 30;

pub(crate) fn format_1_to_2<R: Root>(store: &DirStore<R>) -> Result<(), RootError> {
    let root = &store.root;
    let _lock = Held::wait(root, "LOCK", true)?;
    if root.read("FORMAT", 0, 64)? == FORMAT.as_bytes() {
        return Ok(()); // another process migrated meanwhile
    }
    let mut migrated = 0u64;
    for collection in [agent_session_core::SESSIONS, agent_session_core::CONFIG] {
        for key in store.list_dir(collection)? {
            let entry = format!("{collection}/{key}");
            let bytes = match root.read(&format!("{entry}/{LOG}"), 0, MAX_LOG) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            // A migration cut short by a crash left some logs rewritten
            // already: those read cleanly as format 2 and are kept.
            if bytes.is_empty()
                || frame::walk(&bytes, 0, 0)
                    .is_ok_and(|w| w.torn_bytes == 0 && !w.offsets.is_empty())
            {
                continue;
            }
            let records = read_v1(&bytes);
            let mut log = Vec::with_capacity(bytes.len() + records.len() * 4);
            let mut offsets = Vec::with_capacity(records.len() * 8);
            for (seq, payload) in records {
                offsets.extend_from_slice(&(log.len() as u64).to_le_bytes());
                frame::encode_batch(seq, &[payload], &mut log);
            }
            // By rename: a log hard-linked elsewhere is replaced, never cut.
            root.replace(&format!("{entry}/{LOG}"), &log, true)?;
            root.replace(&format!("{entry}/{IDX}"), &offsets, true)?;
            migrated += 1;
        }
    }
    store.request_reindex()?;
    root.replace("FORMAT", FORMAT.as_bytes(), true)?;
    tracing::info!(
        logs = migrated,
        "migrated the root from format 1 to format 2"
    );
    Ok(())
}

/// The records of a format-1 log in position order, up to the first gap
/// (a position lost to a crash) and without a torn tail.
fn read_v1(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut by_seq = BTreeMap::new();
    let mut at = 0;
    while at + V1_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let seq_bytes = &bytes[at + 8..at + 16];
        let Some(payload) = bytes.get(at + V1_HEADER..at + V1_HEADER + len) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(seq_bytes);
        h.update(payload);
        if h.finalize() != crc {
            break;
        }
        let seq = u64::from_le_bytes(seq_bytes.try_into().unwrap_or_default());
        by_seq.entry(seq).or_insert_with(|| payload.to_vec());
        at += V1_HEADER + len;
    }
    by_seq
        .into_iter()
        .enumerate()
        .take_while(|(i, (seq, _))| *seq == *i as u64)
        .map(|(_, r)| r)
        .collect()
}
