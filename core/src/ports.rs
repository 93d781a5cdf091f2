//! The small traits through which the core reaches the outside world. The
//! session component implements them with the imported WIT interfaces; a
//! native Rust embedding implements them directly.

use crate::error::StoreError;
use crate::model::Notification;

/// A document and the version the store assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// 1 on creation, +1 on every replace.
    pub version: u64,
    /// The document's bytes, as the core wrote them.
    pub data: Vec<u8>,
}

/// One key of an index and its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The key.
    pub key: String,
    /// The summary the core stored with the key's last append.
    pub summary: Vec<u8>,
}

/// Storage primitives: per key, an append-only log (the truth), an index
/// summary (derived, for fast listing) and a versioned document
/// (snapshots, settings). See `wit/session.wit` (`store`) for the contract
/// every implementation must keep.
pub trait Store {
    /// Append `records` at positions `seq..` iff the log holds exactly
    /// `seq` records (else [`StoreError::Conflict`]), all or nothing,
    /// durably; replace the key's summary.
    fn append(
        &self,
        collection: &str,
        key: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError>;
    /// At most `limit` records from position `from`, in order.
    fn read(
        &self,
        collection: &str,
        key: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Index entries in descending key order after `start_after`.
    fn scan(
        &self,
        collection: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError>;
    /// Replace a key's summary without appending (index repair); an empty
    /// summary drops the key from the index.
    fn reindex(&self, collection: &str, key: &str, summary: &[u8]) -> Result<(), StoreError>;
    /// Keys that have a log, descending, after `start_after` (ground truth).
    fn keys(
        &self,
        collection: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Read a document, or `None` if absent.
    fn get(&self, collection: &str, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Replace a document if its version is `expected_version` (0: must not
    /// exist), atomically, and durably if `durable`; returns the new
    /// version. A non-durable put never creates a missing key.
    fn put(
        &self,
        collection: &str,
        key: &str,
        data: &[u8],
        expected_version: u64,
        durable: bool,
    ) -> Result<u64, StoreError>;
    /// Remove a key (log, summary, document) iff its log holds
    /// `expected_length` records; removing an absent key succeeds.
    fn remove(&self, collection: &str, key: &str, expected_length: u64) -> Result<(), StoreError>;
}

/// A borrowed store is a store: two engines (two writers) can share one.
impl<S: Store + ?Sized> Store for &S {
    fn append(
        &self,
        collection: &str,
        key: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        (**self).append(collection, key, seq, records, summary)
    }
    fn read(
        &self,
        collection: &str,
        key: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).read(collection, key, from, limit)
    }
    fn scan(
        &self,
        collection: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        (**self).scan(collection, start_after, limit)
    }
    fn reindex(&self, collection: &str, key: &str, summary: &[u8]) -> Result<(), StoreError> {
        (**self).reindex(collection, key, summary)
    }
    fn keys(
        &self,
        collection: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        (**self).keys(collection, start_after, limit)
    }
    fn get(&self, collection: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        (**self).get(collection, key)
    }
    fn put(
        &self,
        collection: &str,
        key: &str,
        data: &[u8],
        expected_version: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        (**self).put(collection, key, data, expected_version, durable)
    }
    fn remove(&self, collection: &str, key: &str, expected_length: u64) -> Result<(), StoreError> {
        (**self).remove(collection, key, expected_length)
    }
}

/// Hands lifecycle notifications to a transport. It must be durable when
/// `enqueue` returns; delivery is the transport's business.
pub trait Notifier {
    /// Queue one notification; the error is a message for a person.
    fn enqueue(&self, notification: &Notification) -> Result<(), String>;
}

/// Time and randomness. In the component both come from WASI.
pub trait Environment {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fill `buf` with random bytes (used for ids).
    fn fill_random(&self, buf: &mut [u8]);
}
