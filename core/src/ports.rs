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

/// Storage primitives: versioned documents and append-only logs, both
/// addressed by collection and key. See `wit/session.wit` (`store`) for
/// the contract every implementation must keep.
pub trait Store {
    /// Read a document, or `None` if absent.
    fn get(&self, collection: &str, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Replace a document if its version is `expected_version` (0: must not
    /// exist), atomically and durably; returns the new version.
    fn put(
        &self,
        collection: &str,
        key: &str,
        data: &[u8],
        expected_version: u64,
    ) -> Result<u64, StoreError>;
    /// Remove a document and its log if the document's version is
    /// `expected_version`; removing an absent key succeeds.
    fn remove(&self, collection: &str, key: &str, expected_version: u64) -> Result<(), StoreError>;
    /// Keys of a collection in descending order, after `start_after`.
    fn keys(
        &self,
        collection: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Store a record at position `seq` of a key's log, durably. Positions
    /// may arrive out of order; a taken position may be reported as a
    /// conflict.
    fn append(
        &self,
        collection: &str,
        key: &str,
        seq: u64,
        record: &[u8],
    ) -> Result<(), StoreError>;
    /// Read at most `limit` records at positions >= `from`, in position
    /// order, skipping positions never written.
    fn read(
        &self,
        collection: &str,
        key: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
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
