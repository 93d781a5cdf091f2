//! How the core lays out the bytes it hands to a store. Every stored record
//! carries a schema version so later formats can read (and migrate) it.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::SessionError;

/// Schema version written into every record by this build.
///
/// History: 1 — first format (a context event names the changed keys);
/// 2 — the log is the truth (a context event carries its patch, documents
/// are snapshots, summaries feed the index). Version 1 records are still
/// read; see `engine::fold` for how their events are interpreted.
pub const SCHEMA_VERSION: u32 = 2;
/// Oldest schema version this build reads.
pub const MIN_SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    schema: u32,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize)]
struct StoredRef<'a, T> {
    schema: u32,
    #[serde(flatten)]
    inner: &'a T,
}

/// Serialize a record with the current schema version.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(&StoredRef {
        schema: SCHEMA_VERSION,
        inner: value,
    })
    .map_err(|e| SessionError::Storage(format!("cannot encode record: {e}")))
}

/// Read a record, rejecting schema versions this build does not know.
/// `what` names the record (e.g. the session id) in error messages.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, SessionError> {
    decode_versioned(what, bytes).map(|(_, v)| v)
}

/// [`decode`], also returning the record's schema version.
pub fn decode_versioned<T: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<(u32, T), SessionError> {
    #[derive(Deserialize)]
    struct Header {
        schema: u32,
    }
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| SessionError::Storage(format!("{what} is damaged: {e}")))?;
    if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&header.schema) {
        return Err(SessionError::Storage(format!(
            "{what} has schema version {}; this build reads versions {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}",
            header.schema
        )));
    }
    let stored: Stored<T> = serde_json::from_slice(bytes)
        .map_err(|e| SessionError::Storage(format!("{what} is damaged: {e}")))?;
    Ok((header.schema, stored.inner))
}
