//! Copying everything a store holds into another store (a directory into
//! PostgreSQL and back), verified by counts and a checksum read back from
//! the target.
//!
//! What is copied: every session's history (records byte for byte, at
//! their positions) and its snapshot, every blob log (a session's large
//! values, record for record), and the settings documents. Not copied:
//! webhook deliveries (an outbox belongs to the host that sends it; deliver
//! or let them finish first), and the key documents, which are derived
//! from the histories like the index: `rebuild-index` binds each key again.

use agent_session_core::{BLOBS, CONFIG, SESSIONS, Store, StoreError, WEBHOOK_KEY};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Records read or appended per call.
const BATCH: u32 = 1000;

/// Records read or appended per call in `collection`: blob records are up
/// to 1 MiB each, so fewer of them.
fn batch(collection: &str) -> u32 {
    if collection == BLOBS { 8 } else { BATCH }
}

/// What a copy moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Sessions (keys with a history).
    pub sessions: u64,
    /// Records of all their histories.
    pub records: u64,
    /// Records of all blob logs (large values, in parts of at most 1 MiB).
    pub blob_records: u64,
    /// Settings documents.
    pub documents: u64,
    /// SHA-256 over every log's collection, key, positions and records
    /// and every settings document, in key order: the same on both sides.
    pub checksum: String,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds sessions or settings; a copy does not merge.
    #[error("the target is not empty: it holds {0}")]
    TargetNotEmpty(String),
    /// Reading the source or writing the target failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// The store's error.
        source: StoreError,
    },
    /// What was read back from the target, or from the source after the
    /// copy (a writer was still at work), differs from what was copied.
    #[error(
        "the copy does not match: copied {copied:?}, found {found:?} (stop every writer of the source during a migration)"
    )]
    Mismatch {
        /// Counts and checksum of the source.
        copied: Box<CopyReport>,
        /// The same, read back from the target.
        found: Box<CopyReport>,
    },
}

fn at(what: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let what = what.into();
    move |source| CopyError::Store { what, source }
}

/// The collections whose logs are copied, and what one of their keys is
/// called in messages.
const LOGS: [(&str, &str); 2] = [(SESSIONS, "session"), (BLOBS, "blob log")];

/// Copy everything in `from` into the empty store `to`, then read the
/// target back and check it against the source. `progress(done)` is called
/// after each session. The target's index and key documents are left
/// empty: rebuild them with the session API's `rebuild-index` (the core
/// derives them from the histories; a store only keeps them).
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(u64),
) -> Result<CopyReport, CopyError> {
    for (collection, name) in LOGS {
        if let Some(key) = to
            .keys(collection, None, 1)
            .map_err(at("reading the target"))?
            .first()
        {
            return Err(CopyError::TargetNotEmpty(format!("{name} {key}")));
        }
    }
    if to
        .get(CONFIG, WEBHOOK_KEY)
        .map_err(at("reading the target"))?
        .is_some()
    {
        return Err(CopyError::TargetNotEmpty("a webhook setting".into()));
    }
    let mut sum = Sha256::new();
    let mut counts = [(0u64, 0u64); 2];
    for (i, (collection, name)) in LOGS.into_iter().enumerate() {
        each_key(from, collection, |key| {
            let copied = copy_log(from, to, collection, name, key, &mut sum)?;
            // A key whose log holds nothing (a crash during its first
            // append) is not a session.
            if copied == 0 {
                return Ok(());
            }
            counts[i].0 += 1;
            counts[i].1 += copied;
            if collection == SESSIONS {
                if let Some(doc) = from
                    .get(SESSIONS, key)
                    .map_err(at(format!("reading the snapshot of {key}")))?
                {
                    to.put(SESSIONS, key, &doc.data, 0, false)
                        .map_err(at(format!("writing the snapshot of {key}")))?;
                }
                progress(counts[i].0);
            }
            Ok(())
        })?;
    }
    let mut documents = 0;
    if let Some(doc) = from
        .get(CONFIG, WEBHOOK_KEY)
        .map_err(at("reading the webhook setting"))?
    {
        to.put(CONFIG, WEBHOOK_KEY, &doc.data, 0, true)
            .map_err(at("writing the webhook setting"))?;
        digest(&mut sum, CONFIG, WEBHOOK_KEY, 0, &doc.data);
        documents += 1;
    }
    let source = CopyReport {
        sessions: counts[0].0,
        records: counts[0].1,
        blob_records: counts[1].1,
        documents,
        checksum: hex(sum.finalize().as_slice()),
    };
    // The target must hold what was read, and the source must still hold
    // it too: a writer that changed the source meanwhile (which `migrate`
    // asks the user to stop) would otherwise go unnoticed.
    for found in [summarize(to)?, summarize(from)?] {
        if found != source {
            return Err(CopyError::Mismatch {
                copied: Box::new(source),
                found: Box::new(found),
            });
        }
    }
    Ok(source)
}

/// Call `each` with every key of `collection` that has a log, in the
/// store's order.
fn each_key(
    store: &dyn Store,
    collection: &str,
    mut each: impl FnMut(&str) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let mut after: Option<String> = None;
    loop {
        let keys = store
            .keys(collection, after.as_deref(), BATCH)
            .map_err(at(format!("listing the keys of {collection}")))?;
        for key in &keys {
            each(key)?;
        }
        if keys.len() < BATCH as usize {
            return Ok(());
        }
        after = keys.last().cloned();
    }
}

/// Copy one log in batches; the number of records.
fn copy_log(
    from: &dyn Store,
    to: &dyn Store,
    collection: &str,
    name: &str,
    key: &str,
    sum: &mut Sha256,
) -> Result<u64, CopyError> {
    let batch = batch(collection);
    let mut seq = 0u64;
    loop {
        let records = from
            .read(collection, key, seq, batch)
            .map_err(at(format!("reading {name} {key}")))?;
        if records.is_empty() {
            return Ok(seq);
        }
        for (i, r) in records.iter().enumerate() {
            digest(sum, collection, key, seq + i as u64, r);
        }
        // No summary: the index is derived data, rebuilt from the copied
        // histories by the core (`rebuild-index`) once the copy is done.
        to.append(collection, key, seq, &records, &[])
            .map_err(at(format!("writing {name} {key}")))?;
        seq += records.len() as u64;
    }
}

/// Counts and checksum of what `store` holds, computed as [`copy`] does.
pub fn summarize(store: &dyn Store) -> Result<CopyReport, CopyError> {
    let mut sum = Sha256::new();
    let mut counts = [(0u64, 0u64); 2];
    for (i, (collection, name)) in LOGS.into_iter().enumerate() {
        let batch = batch(collection);
        each_key(store, collection, |key| {
            let mut seq = 0u64;
            loop {
                let records = store
                    .read(collection, key, seq, batch)
                    .map_err(at(format!("reading {name} {key}")))?;
                if records.is_empty() {
                    break;
                }
                for r in &records {
                    digest(&mut sum, collection, key, seq, r);
                    seq += 1;
                }
            }
            if seq > 0 {
                counts[i].0 += 1;
                counts[i].1 += seq;
            }
            Ok(())
        })?;
    }
    let mut documents = 0;
    if let Some(doc) = store
        .get(CONFIG, WEBHOOK_KEY)
        .map_err(at("reading the webhook setting"))?
    {
        digest(&mut sum, CONFIG, WEBHOOK_KEY, 0, &doc.data);
        documents += 1;
    }
    Ok(CopyReport {
        sessions: counts[0].0,
        records: counts[0].1,
        blob_records: counts[1].1,
        documents,
        checksum: hex(sum.finalize().as_slice()),
    })
}

/// Framed, so that moving bytes between records or keys changes the sum.
fn digest(sum: &mut Sha256, collection: &str, key: &str, seq: u64, record: &[u8]) {
    sum.update((collection.len() as u64).to_le_bytes());
    sum.update(collection.as_bytes());
    sum.update((key.len() as u64).to_le_bytes());
    sum.update(key.as_bytes());
    sum.update(seq.to_le_bytes());
    sum.update((record.len() as u64).to_le_bytes());
    sum.update(record);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
