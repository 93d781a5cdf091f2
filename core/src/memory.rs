//! In-memory implementations of the ports, for tests, benchmarks and
//! embedders that do not need durability.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;
use crate::model::Notification;
use crate::ports::{Environment, Notifier, Store, Versioned};

#[derive(Default)]
struct Entry {
    doc: Option<Versioned>,
    log: BTreeMap<u64, Vec<u8>>,
}

/// A [`Store`] in a map. Thread-safe; keeps the same contract as a durable
/// store (versions, conflicts, log positions), so the engine's rules can be
/// tested against it.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<(String, String), Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<(String, String), Entry>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-test; the
        // map itself is still consistent (every edit is a single insert).
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn k(c: &str, key: &str) -> (String, String) {
    (c.to_owned(), key.to_owned())
}

impl Store for MemoryStore {
    fn get(&self, c: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.with(|m| m.get(&k(c, key)).and_then(|e| e.doc.clone())))
    }

    fn put(&self, c: &str, key: &str, data: &[u8], expected: u64) -> Result<u64, StoreError> {
        self.with(|m| {
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

    fn remove(&self, c: &str, key: &str, expected: u64) -> Result<(), StoreError> {
        self.with(|m| {
            let current = m
                .get(&k(c, key))
                .and_then(|e| e.doc.as_ref())
                .map_or(0, |d| d.version);
            if current != 0 && current != expected {
                return Err(StoreError::Conflict(format!(
                    "expected version {expected}, found {current}"
                )));
            }
            m.remove(&k(c, key));
            Ok(())
        })
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|m| {
            m.iter()
                .rev()
                .filter(|((col, key), e)| {
                    col == c && e.doc.is_some() && after.is_none_or(|a| key.as_str() < a)
                })
                .take(limit as usize)
                .map(|((_, key), _)| key.clone())
                .collect()
        }))
    }

    fn append(&self, c: &str, key: &str, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        self.with(|m| {
            let log = &mut m.entry(k(c, key)).or_default().log;
            if log.contains_key(&seq) {
                return Err(StoreError::Conflict(format!(
                    "log position {seq} is already taken"
                )));
            }
            log.insert(seq, record.to_vec());
            Ok(())
        })
    }

    fn read(&self, c: &str, key: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.with(|m| {
            m.get(&k(c, key))
                .map(|e| {
                    e.log
                        .range(from..)
                        .take(limit as usize)
                        .map(|(_, r)| r.clone())
                        .collect()
                })
                .unwrap_or_default()
        }))
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
