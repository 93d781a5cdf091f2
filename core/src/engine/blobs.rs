//! Large values: the bytes of a checkpoint, a long conversation item.
//!
//! Events stay small (every load replays up to [`SNAPSHOT_EVERY`] of them
//! and an event's data is capped), so a value above [`INLINE_MAX`] bytes
//! is kept in the session's *blob log*: a second log of the store, in
//! [`BLOBS`] under the session's id, one record per value, appended
//! durably (one `append`, all values of an operation together) before the
//! event that refers to them. The event names the positions (`"blobs":
//! [first, count]` in its data, and each value its own position), so a
//! value is read with one positioned read, whatever the history's length.
//!
//! A crash between the two appends leaves values that no event names:
//! the next writer skips past them (its append at the position it expects
//! is refused, so it tries the next one), and removing the session
//! removes them with the rest.
//!
//! [`SNAPSHOT_EVERY`]: super::SNAPSHOT_EVERY

use serde_json::Value;

use super::Engine;
use crate::error::{SessionError, StoreError};
use crate::model::{Session, event_kind};
use crate::ports::{Environment, Notifier, Store};

/// Collection holding each session's blob log.
pub const BLOBS: &str = "blobs";
/// The largest value kept in an event; larger ones go to the blob log.
pub const INLINE_MAX: usize = 16 * 1024;
/// The largest single value (checkpoint, item, write) accepted.
pub const MAX_VALUE_BYTES: usize = 32 * 1024 * 1024;
/// The most bytes one operation may hand over in all its values.
pub const MAX_CALL_BYTES: usize = 48 * 1024 * 1024;

/// The largest record of the blob log: a value above it takes several.
/// One store call carries at most about this much (records are appended
/// in groups up to it, read one at a time): wasmtime-py lifts a byte list
/// as one value per byte and caps what one host call may copy (about
/// 2.6 MiB), and the Python host's PostgreSQL store is reached that way.
pub(crate) const CHUNK: usize = 1 << 20;
/// The most records one value takes.
const MAX_PARTS: u64 = (MAX_VALUE_BYTES / CHUNK) as u64;

/// Appends a writer tries (each refused one finds the log's end again)
/// before it gives up with `conflict`.
const APPEND_ATTEMPTS: usize = 16;

/// The end of the blob log an event of `kind` with `data` says it used:
/// `"blob": n` (one value) or `"blobs": [first, count]`, honoured only on
/// the kinds that put values.
pub(crate) fn blobs_end(kind: &str, data: &Value) -> Option<u64> {
    if !event_kind::WITH_BLOBS.contains(&kind) {
        return None;
    }
    if let Some((n, parts)) = blob_of(data) {
        return n.checked_add(parts);
    }
    let range = data.get("blobs")?.as_array()?;
    let first = range.first()?.as_u64()?;
    let count = range.get(1)?.as_u64()?;
    first.checked_add(count)
}

/// Values of one operation, split into those kept inline and those to put
/// in the blob log.
#[derive(Default)]
pub(crate) struct Values {
    /// Values going to the blob log, in order.
    pub blobs: Vec<Vec<u8>>,
    total: usize,
    /// Bytes still allowed inline in the one event that holds them all
    /// (`None`: each value has an event of its own).
    inline_left: Option<usize>,
}

/// Where a value is: in the event (as given) or at a position of the blob
/// log (relative to the operation's first, until it is known) and the
/// number of records it takes.
pub(crate) enum Placed<T> {
    Inline(T),
    Blob(u64, u64),
}

/// The most bytes of values one event holds inline.
pub(crate) const INLINE_PER_EVENT: usize = 32 * 1024;

impl Values {
    /// Values that all go into one event: at most [`INLINE_PER_EVENT`]
    /// bytes of them inline.
    pub(crate) fn for_one_event() -> Self {
        Self {
            inline_left: Some(INLINE_PER_EVENT),
            ..Self::default()
        }
    }

    /// Place a value of `len` bytes: inline if small, else queued for the
    /// blob log. `what` names it in errors.
    pub(crate) fn place<T>(
        &mut self,
        what: &str,
        bytes: Vec<u8>,
        inline: impl FnOnce(Vec<u8>) -> Result<T, SessionError>,
    ) -> Result<Placed<T>, SessionError> {
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(SessionError::LimitExceeded(format!(
                "{what} is {} bytes; the limit is {MAX_VALUE_BYTES}",
                bytes.len()
            )));
        }
        self.total += bytes.len();
        if self.total > MAX_CALL_BYTES {
            return Err(SessionError::LimitExceeded(format!(
                "the values of one call are more than {MAX_CALL_BYTES} bytes together"
            )));
        }
        let fits = match &mut self.inline_left {
            None => bytes.len() <= INLINE_MAX,
            Some(left) if bytes.len() <= INLINE_MAX && bytes.len() <= *left => {
                *left -= bytes.len();
                true
            }
            Some(_) => false,
        };
        if fits {
            return inline(bytes).map(Placed::Inline);
        }
        // In records of at most CHUNK bytes, so that no store call carries
        // more than about that (see CHUNK).
        let first = self.blobs.len() as u64;
        if bytes.len() <= CHUNK {
            self.blobs.push(bytes);
        } else {
            self.blobs.extend(bytes.chunks(CHUNK).map(<[u8]>::to_vec));
        }
        Ok(Placed::Blob(first, self.blobs.len() as u64 - first))
    }
}

/// A value's place in the blob log: `"blob": first, "parts": count`
/// (`parts` left out when 1).
pub(crate) fn blob_json(first: u64, parts: u64) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("blob".into(), Value::from(first));
    if parts != 1 {
        m.insert("parts".into(), Value::from(parts));
    }
    m
}

/// The `(first, parts)` of a value's place, as [`blob_json`] wrote it.
pub(crate) fn blob_of(v: &Value) -> Option<(u64, u64)> {
    let first = v.get("blob")?.as_u64()?;
    let parts = match v.get("parts") {
        None => 1,
        Some(p) => p.as_u64().filter(|p| (1..=MAX_PARTS).contains(p))?,
    };
    Some((first, parts))
}

impl<S: Store, N: Notifier, E: Environment> Engine<S, N, E> {
    /// Append `records` to the session's blob log, in calls of at most
    /// [`CHUNK`] bytes; the position of the first. On a refusal (another
    /// writer's values, or orphans) it starts again after them, so the
    /// records are contiguous; an attempt cut short leaves orphans.
    pub(crate) fn put_blobs(&self, s: &Session, records: &[Vec<u8>]) -> Result<u64, SessionError> {
        if records.is_empty() {
            return Ok(s.blobs);
        }
        let mut at = s.blobs;
        'attempt: for _ in 0..APPEND_ATTEMPTS {
            let mut pos = at;
            for group in groups(records) {
                match self.store.append(BLOBS, &s.id, pos, group, &[]) {
                    Ok(()) => pos += group.len() as u64,
                    Err(StoreError::Conflict(_)) => {
                        if !self.holds_blob(&s.id, pos)? {
                            return Err(self.short_blob_log(s)?);
                        }
                        at = self.blob_end(&s.id, pos + 1)?;
                        continue 'attempt;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(at);
        }
        Err(SessionError::Conflict(format!(
            "session {}: other writers kept adding large values; try again",
            s.id
        )))
    }

    /// Append `records` at position `at` exactly (an import's), in calls
    /// of at most [`CHUNK`] bytes.
    pub(super) fn append_blobs_at(
        &self,
        id: &str,
        at: u64,
        records: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut pos = at;
        for group in groups(records) {
            self.store.append(BLOBS, id, pos, group, &[])?;
            pos += group.len() as u64;
        }
        Ok(())
    }

    /// Why a blob log is shorter than where a writer appends: the session
    /// was removed meanwhile, or its values were lost (an import cut
    /// short); never a reason to try again.
    fn short_blob_log(&self, s: &Session) -> Result<SessionError, SessionError> {
        Ok(
            match self.store.read(super::SESSIONS, &s.id, 0, 1)?.is_empty() {
                true => SessionError::NotFound(format!("no session with id {}", s.id)),
                false => SessionError::Storage(format!(
                    "session {}: its blob log holds fewer values than its history names ({}): \
                     an import of it is still putting them back, or was cut short (then delete \
                     the session and import it again)",
                    s.id, s.blobs
                )),
            },
        )
    }

    /// Whether position `n` of a session's blob log holds a record.
    fn holds_blob(&self, id: &str, n: u64) -> Result<bool, SessionError> {
        Ok(!self.store.read(BLOBS, id, n, 1)?.is_empty())
    }

    /// The length of a session's blob log, at least `from`: the first
    /// position from `from` on that holds nothing (a log has no gaps),
    /// found by reading ahead in doubling steps, then halving.
    pub(super) fn blob_end(&self, id: &str, from: u64) -> Result<u64, SessionError> {
        let holds = |n: u64| self.holds_blob(id, n);
        if !holds(from)? {
            return Ok(from);
        }
        // holds(lo) and not holds(hi).
        let (mut lo, mut step) = (from, 1u64);
        let mut hi = loop {
            let probe = lo.saturating_add(step);
            if !holds(probe)? {
                break probe;
            }
            lo = probe;
            step = step.saturating_mul(2);
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if holds(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }

    /// The value in records `n` to `n + parts` of a session's blob log.
    pub(crate) fn blob(&self, id: &str, n: u64, parts: u64) -> Result<Vec<u8>, SessionError> {
        let mut bytes = self.blob_record(id, n)?;
        for i in 1..parts {
            bytes.extend_from_slice(&self.blob_record(id, n + i)?);
        }
        Ok(bytes)
    }

    /// Record `n` of a session's blob log.
    pub(crate) fn blob_record(&self, id: &str, n: u64) -> Result<Vec<u8>, SessionError> {
        self.store
            .read(BLOBS, id, n, 1)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                SessionError::Storage(format!(
                    "session {id}: the value at position {n} of its blob log is missing"
                ))
            })
    }

    /// Remove a session's blob log (the values its history names, and any
    /// orphans past them).
    pub(super) fn remove_blobs(&self, s: &Session) -> Result<(), SessionError> {
        // Where the history says the log ends, or (once that was wrong: a
        // writer still adding, a log cut short) wherever it does.
        let mut from = s.blobs;
        for _ in 0..APPEND_ATTEMPTS {
            if from > 0 && !self.holds_blob(&s.id, from - 1)? {
                from = 0;
            }
            let length = self.blob_end(&s.id, from)?;
            match self.store.remove(BLOBS, &s.id, length) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => from = 0,
                Err(e) => return Err(e.into()),
            }
            // A session made at the id since (an import of it) owns what
            // its log holds now.
            if !self.store.read(super::SESSIONS, &s.id, 0, 1)?.is_empty() {
                return Ok(());
            }
        }
        Err(SessionError::Conflict(format!(
            "session {} was removed, but values kept being added to its blob log",
            s.id
        )))
    }
}

/// `records` in runs of at most [`CHUNK`] bytes (one record at least).
fn groups(records: &[Vec<u8>]) -> impl Iterator<Item = &[Vec<u8>]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = 0;
        let n = rest
            .iter()
            .take_while(|r| {
                size += r.len();
                size <= CHUNK
            })
            .count()
            .max(1);
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}
