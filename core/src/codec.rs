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
    encode_as(value, SCHEMA_VERSION)
}

/// Serialize a record under an older schema version: an imported format-1
/// history keeps saying how its context events are to be read.
pub(crate) fn encode_as<T: Serialize>(value: &T, schema: u32) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(&StoredRef {
        schema,
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

/// Version byte that starts every index summary.
const SUMMARY_VERSION: u8 = 1;
const NONE_STR: u16 = u16::MAX;

/// Index summaries are read by the hundred thousand for `stats`, so they
/// are a compact binary record (versioned by its first byte) instead of
/// JSON: version, status, created, updated, ended (`u64::MAX`: none),
/// iteration, event count, then mode, user id, channel id as
/// length-prefixed strings (`0xFFFF`: none). Integers are little-endian.
pub fn encode_summary(s: &crate::SessionSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + s.mode.len());
    out.push(SUMMARY_VERSION);
    out.push(
        crate::SessionStatus::ALL
            .iter()
            .position(|x| *x == s.status)
            .unwrap_or(0) as u8,
    );
    for n in [s.created_at, s.updated_at, s.ended_at.unwrap_or(u64::MAX)] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&s.iteration.to_le_bytes());
    out.extend_from_slice(&s.event_count.to_le_bytes());
    for text in [Some(&s.mode), s.user_id.as_ref(), s.channel_id.as_ref()] {
        match text {
            // Names are validated to at most 256 bytes.
            Some(t) => {
                out.extend_from_slice(
                    &(t.len().min(usize::from(NONE_STR - 1)) as u16).to_le_bytes(),
                );
                out.extend_from_slice(&t.as_bytes()[..t.len().min(usize::from(NONE_STR - 1))]);
            }
            None => out.extend_from_slice(&NONE_STR.to_le_bytes()),
        }
    }
    out
}

/// Read an index summary written by [`encode_summary`].
pub fn decode_summary(what: &str, bytes: &[u8]) -> Result<crate::SessionSummary, SessionError> {
    let damaged = || SessionError::Storage(format!("{what} is damaged"));
    let mut r = Reader { bytes, at: 0 };
    if r.take(1).ok_or_else(damaged)?[0] != SUMMARY_VERSION {
        return Err(SessionError::Storage(format!(
            "{what} has an unknown summary version; `agent-session fsck --repair` rebuilds the index"
        )));
    }
    let status = *crate::SessionStatus::ALL
        .get(usize::from(r.take(1).ok_or_else(damaged)?[0]))
        .ok_or_else(damaged)?;
    let created_at = r.u64().ok_or_else(damaged)?;
    let updated_at = r.u64().ok_or_else(damaged)?;
    let ended_at = Some(r.u64().ok_or_else(damaged)?).filter(|e| *e != u64::MAX);
    let iteration = u32::from_le_bytes(
        r.take(4)
            .ok_or_else(damaged)?
            .try_into()
            .map_err(|_| damaged())?,
    );
    let event_count = r.u64().ok_or_else(damaged)?;
    let mode = r.text().ok_or_else(damaged)?.ok_or_else(damaged)?;
    let user_id = r.text().ok_or_else(damaged)?;
    let channel_id = r.text().ok_or_else(damaged)?;
    Ok(crate::SessionSummary {
        status,
        mode,
        user_id,
        channel_id,
        created_at,
        updated_at,
        ended_at,
        iteration,
        event_count,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// `None` when the bytes end; `Some(None)` for an absent string.
    fn text(&mut self) -> Option<Option<String>> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        if len == NONE_STR {
            return Some(None);
        }
        let s = self.take(usize::from(len))?;
        Some(Some(String::from_utf8_lossy(s).into_owned()))
    }
}
