//! In-memory implementations of the ports, for tests, benchmarks and
//! embedders that do not need durability.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;
use crate::model::Notification;
use crate::ports::{Environment, IndexEntry, Notifier, Store, Versioned};

#[derive(Default)]
struct Entry {
    doc: Option<Versioned>,
    log: Vec<Vec<u8>>,
    summary: Option<Vec<u8>>,
}

type Key = (String, String);

/// A [`Store`] in a map. Thread-safe; keeps the same contract as a durable
/// store (versions, log positions, conflicts), so the engine's rules can be
/// tested against it.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<Key, Entry>>,
    reads: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many `read` calls were made (tests of how much an operation
    /// reads).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Key, Entry>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-test; every
        // edit below is complete before it can panic.
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn descending<T>(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
        pick: impl Fn(&str, &Entry) -> Option<T>,
    ) -> Vec<T> {
        self.with(|m| {
            m.iter()
                .rev()
                .filter(|((col, key), _)| col == c && after.is_none_or(|a| key.as_str() < a))
                .filter_map(|((_, key), e)| pick(key, e))
                .take(limit as usize)
                .collect()
        })
    }
}

fn k(c: &str, key: &str) -> Key {
    (c.to_owned(), key.to_owned())
}

impl Store for MemoryStore {
    fn append(
        &self,
        c: &str,
        key: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        self.with(|m| {
            let entry = m.entry(k(c, key)).or_default();
            if entry.log.len() as u64 != seq {
                return Err(StoreError::Conflict(format!(
                    "append at position {seq}, but the log holds {} records",
                    entry.log.len()
                )));
            }
            entry.log.extend(records.iter().cloned());
            entry.summary = Some(summary.to_vec());
            Ok(())
        })
    }

    fn read(&self, c: &str, key: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.with(|m| {
            m.get(&k(c, key))
                .map(|e| {
                    let from = usize::try_from(from).unwrap_or(usize::MAX);
                    e.log
                        .iter()
                        .skip(from)
                        .take(limit as usize)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        Ok(self.descending(c, after, limit, |key, e| {
            e.summary.as_ref().map(|s| IndexEntry {
                key: key.to_owned(),
                summary: s.clone(),
            })
        }))
    }

    fn reindex(&self, c: &str, key: &str, summary: &[u8]) -> Result<(), StoreError> {
        self.with(|m| match m.get_mut(&k(c, key)) {
            Some(e) if !e.log.is_empty() => {
                e.summary = Some(summary.to_vec());
                Ok(())
            }
            _ => Err(StoreError::Conflict(format!(
                "{c}/{key} has no log to index"
            ))),
        })
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(self.descending(c, after, limit, |key, e| {
            (!e.log.is_empty()).then(|| key.to_owned())
        }))
    }

    fn get(&self, c: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.with(|m| m.get(&k(c, key)).and_then(|e| e.doc.clone())))
    }

    fn put(
        &self,
        c: &str,
        key: &str,
        data: &[u8],
        expected: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        self.with(|m| {
            if !durable && !m.contains_key(&k(c, key)) {
                return Err(StoreError::Conflict(format!(
                    "{c}/{key} does not exist; a non-durable document never creates it"
                )));
            }
            let entry = m.entry(k(c, key)).or_default();
            let current = entry.doc.as_ref().map_or(0, |d| d.version);
            if current != expected {
                return Err(StoreError::Conflict(format!(
                    "expected version {expected}, found {current}"
                )));
            }
            entry.doc = Some(Versioned {
                version: current + 1,
                data: data.to_vec(),
            });
            Ok(current + 1)
        })
    }

    fn remove(&self, c: &str, key: &str, expected_length: u64) -> Result<(), StoreError> {
        self.with(|m| {
            let length = m.get(&k(c, key)).map_or(0, |e| e.log.len() as u64);
            if m.contains_key(&k(c, key)) && length != expected_length {
                return Err(StoreError::Conflict(format!(
                    "expected {expected_length} records, found {length}"
                )));
            }
            m.remove(&k(c, key));
            Ok(())
        })
    }
}

/// A [`Notifier`] that keeps what it was given.
#[derive(Default)]
pub struct MemoryOutbox {
    queued: Mutex<Vec<Notification>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything queued so far, oldest first.
    pub fn queued(&self) -> Vec<Notification> {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Notifier for MemoryOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(n.clone());
        Ok(())
    }
}

/// An [`Environment`] whose clock only moves when told to, and whose
/// randomness is a counter: reproducible ids and timestamps for tests.
pub struct ManualEnvironment {
    now_ms: AtomicU64,
    counter: AtomicU64,
}

impl ManualEnvironment {
    /// A clock set to `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
            counter: AtomicU64::new(0),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Environment for ManualEnvironment {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        // Counter in the low bytes: ids made in one millisecond still sort
        // in creation order.
        let n = self.counter.fetch_add(1, Ordering::SeqCst).to_be_bytes();
        buf.fill(0);
        let len = buf.len().min(n.len());
        let start = buf.len() - len;
        buf[start..].copy_from_slice(&n[n.len() - len..]);
    }
}
