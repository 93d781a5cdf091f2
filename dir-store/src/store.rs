//! The store: the `store` capability of the core on one [`Root`].
//!
//! Crash safety: an append is one `write` of whole frames and an
//! `fdatasync` before it is acknowledged (unless the store is relaxed).
//! Before appending, the writer checks the log's tail: a torn last append
//! (a crash mid-write) is cut back to the last whole append. A document is
//! replaced by temp file + fsync + rename + directory fsync. Writers of one
//! key, in any process of any host, are serialized by `flock` on its lock
//! file (a lock that does not vanish when another descriptor of the file is
//! closed, unlike fcntl locks); readers take no lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use agent_session_core::{IndexEntry, Store, StoreError, Versioned};

use crate::index::{Index, Intent};
use crate::{ErrorCode, Held, Root, RootError, frame, migrate};

/// Written to `FORMAT` in a new root.
pub(crate) const FORMAT: &str = "agent-session-fs 2\n";
/// The first format; migrated on open.
pub(crate) const FORMAT_1: &str = "agent-session-fs 1\n";
const REINDEX: &str = "REINDEX";
const DOC_MAGIC: &[u8; 4] = b"ASD1";
const DOC_HEADER: usize = 4 + 8 + 4 + 4;
/// The largest document file: a header and the largest payload.
const MAX_DOC: u64 = (DOC_HEADER + frame::MAX_PAYLOAD) as u64;
const MAX_NAME: usize = 64;
pub(crate) const LOG: &str = "events.log";
pub(crate) const IDX: &str = "events.idx";
/// The most a log read asks for at once (a whole log, for a check).
const MAX_READ: u64 = 1 << 30;

/// The largest record or document a store accepts (the frame limit; the
/// database store keeps the same, so data moves both ways).
pub const MAX_RECORD: usize = frame::MAX_PAYLOAD;

/// A [`Store`] on a [`Root`]. Cheap to share across threads (`Sync`);
/// several processes, of any host, may open the same root.
pub struct DirStore<R: Root> {
    pub(crate) root: R,
    /// Appends and documents are fsynced before they are acknowledged.
    durable: bool,
    index: Index,
    /// The ends of the logs this store appended to last (see [`Known`]).
    known: Mutex<HashMap<String, Known>>,
}

/// Where a log ended after this store's last append to it, and the offsets
/// of its last records. Trusted only while the log is the same file of the
/// same size (one `stat`): records are only ever appended, so a log that
/// nobody else appended to since is exactly as this store left it. It
/// spares an append the tail check's reads, and a read of the last records
/// the offsets file.
struct Known {
    id: u64,
    end: u64,
    count: u64,
    /// Offsets of the last (at most [`KNOWN_OFFSETS`]) records.
    last: VecDeque<u64>,
    /// The log's bytes from offset `bytes_from` to `end` (whole records,
    /// at most [`KNOWN_BYTES`]): the records this store appended last, so
    /// that reading them back (the events since a snapshot, the last ten)
    /// costs a `stat` and no `read`.
    bytes: Vec<u8>,
    bytes_from: u64,
}

const KNOWN_OFFSETS: usize = 64;
/// Logs remembered; beyond this the memory starts over.
const KNOWN_LOGS: usize = 1024;
/// The most of a log's last records kept in memory ...
const KNOWN_BYTES: usize = 64 << 10;
/// ... and of all logs' together; beyond this the kept bytes start over.
const KNOWN_BYTES_TOTAL: usize = 4 << 20;

/// What [`DirStore::check`] found (and, with repair, fixed).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Keys checked.
    pub checked: u64,
    /// Records found in all logs.
    pub records: u64,
    /// Keys whose log ended in a torn append (cut when repairing).
    pub torn_tails: Vec<String>,
    /// Damage that is not a torn tail: key and what is wrong.
    pub damaged: Vec<(String, String)>,
    /// Unreadable snapshots removed by a repair (the history is replayed
    /// instead).
    pub dropped_snapshots: Vec<String>,
}

impl<R: Root> DirStore<R> {
    /// Open the store on `root` (made a store if it is not one yet). With
    /// `durable` false, appends are acknowledged after the `write` (they
    /// survive a crash of the process, not of the machine). A root of the
    /// first format is migrated in place. `label` names the root in
    /// messages.
    pub fn open(root: R, durable: bool, label: &str) -> Result<Self, RootError> {
        let store = Self {
            root,
            durable,
            index: Index::default(),
            known: Mutex::new(HashMap::new()),
        };
        let format = match store.root.read("FORMAT", 0, 64) {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        match format.as_deref() {
            Some(f) if f == FORMAT.as_bytes() => {}
            Some(f) if f == FORMAT_1.as_bytes() => migrate::format_1_to_2(&store)?,
            Some(other) => {
                return Err(RootError::new(
                    ErrorCode::Io,
                    format!(
                        "{label} holds an agent-session root of format {:?}; this build reads {:?} and {:?}",
                        String::from_utf8_lossy(other).trim(),
                        FORMAT_1.trim(),
                        FORMAT.trim()
                    ),
                ));
            }
            None => store.root.replace("FORMAT", FORMAT.as_bytes(), true)?,
        }
        // A lost index file cannot be told from an empty one by reading it.
        // (One that is there but refused, a hard link say, is not lost: its
        // readers get the error.)
        if !store
            .index
            .present(&store.root, agent_session_core::SESSIONS)
            && store.has_entries(agent_session_core::SESSIONS)?
        {
            store.request_reindex()?;
        }
        Ok(store)
    }

    /// The root this store is on.
    pub fn root(&self) -> &R {
        &self.root
    }

    /// Whether the index must be rebuilt (`Engine::reindex`) before lists
    /// and stats can be trusted: after a migration or a lost index.
    pub fn needs_reindex(&self) -> Result<bool, RootError> {
        Ok(self.root.stat(REINDEX)?.is_some())
    }

    /// Empty the index of `collection` before a rebuild; the rebuild is
    /// requested until [`DirStore::reindexed`] is called.
    pub fn clear_index(&self, collection: &str) -> Result<(), RootError> {
        self.request_reindex()?;
        self.index.clear(&self.root, collection)
    }

    /// The index was rebuilt.
    pub fn reindexed(&self) -> Result<(), RootError> {
        self.root.remove_file(REINDEX)?;
        self.root.sync_dir(".")
    }

    /// Rewrite the index of `collection` without superseded entries.
    /// Returns its size before and after.
    pub fn compact(&self, collection: &str) -> Result<(u64, u64), RootError> {
        name("collection", collection).map_err(refused)?;
        self.index.compact(&self.root, collection)
    }

    /// Check every key of `collection`: every log frame, every document.
    /// With `repair`, torn tails are cut and offset files rewritten.
    /// `progress(done, total)` is called as keys are checked.
    pub fn check(
        &self,
        collection: &str,
        repair: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<CheckReport, RootError> {
        name("collection", collection).map_err(refused)?;
        let keys = self.list_dir(collection)?;
        let total = keys.len() as u64;
        let mut report = CheckReport::default();
        for key in keys {
            let entry = format!("{collection}/{key}");
            // One unreadable key (a symlink, a file without permissions, a
            // hard link) is reported and the walk goes on: the others
            // still get checked and repaired.
            if let Err(e) = self.check_key(collection, &entry, repair, &mut report) {
                report.damaged.push((entry.clone(), e.to_string()));
            }
            report.checked += 1;
            progress(report.checked, total);
        }
        Ok(report)
    }

    fn check_key(
        &self,
        collection: &str,
        entry: &str,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<(), RootError> {
        let _lock = if repair {
            Some(Held::wait(&self.root, &format!("{entry}/lock"), true)?)
        } else {
            None
        };
        match self.walk_all(entry) {
            Ok(walk) => {
                report.records += walk.offsets.len() as u64;
                if walk.torn_bytes > 0 {
                    report.torn_tails.push(entry.to_owned());
                }
                if repair {
                    let idx_len = self
                        .root
                        .stat(&format!("{entry}/{IDX}"))
                        .ok()
                        .flatten()
                        .map_or(0, |s| s.size / 8);
                    self.fix_tail(entry, &Tail::from_walk(walk, idx_len))
                        .map_err(|e| RootError::new(ErrorCode::Io, e.to_string()))?;
                }
            }
            Err(e) => report.damaged.push((entry.to_owned(), e.to_string())),
        }
        if let Err(e) = self.read_doc(entry) {
            // A session document is only a snapshot of its history.
            // Removing it unlinks the name in the root, never the content
            // of a file it may be hard-linked to.
            if repair && collection == agent_session_core::SESSIONS {
                self.root.remove_file(&format!("{entry}/doc"))?;
                report.dropped_snapshots.push(entry.to_owned());
            } else {
                report.damaged.push((entry.to_owned(), e.to_string()));
            }
        }
        Ok(())
    }

    pub(crate) fn request_reindex(&self) -> Result<(), RootError> {
        self.root.replace(REINDEX, b"", true)
    }

    fn has_entries(&self, c: &str) -> Result<bool, RootError> {
        Ok(!self.list_dir(c)?.is_empty())
    }

    /// Valid key names in a collection directory, descending.
    pub(crate) fn list_dir(&self, c: &str) -> Result<Vec<String>, RootError> {
        let mut keys = match self.root.list(c) {
            Ok(names) => names,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        keys.retain(|k| name("key", k).is_ok());
        keys.sort_unstable_by(|a, b| b.cmp(a));
        Ok(keys)
    }

    fn entry(&self, c: &str, k: &str) -> Result<String, StoreError> {
        name("collection", c)?;
        name("key", k)?;
        Ok(format!("{c}/{k}"))
    }

    /// Make a new key's directory, and its collection's if that is new
    /// too; when durable, the new directory entries are fsynced, so an
    /// acknowledged write does not vanish with the path that leads to it.
    fn create_key(&self, entry: &str) -> Result<(), RootError> {
        self.root.create_dir(entry, self.durable).map(|_| ())
    }

    fn read_doc(&self, entry: &str) -> Result<Option<Versioned>, StoreError> {
        let bytes = match self.root.read(&format!("{entry}/doc"), 0, MAX_DOC + 1) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(store_error(&format!("reading {entry}/doc"), e)),
        };
        decode_doc(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Io(format!("{entry}/doc is damaged")))
    }

    /// Walk the whole log from the start.
    fn walk_all(&self, entry: &str) -> Result<frame::Walk, StoreError> {
        let bytes = self.read_log_to_end(entry, 0)?;
        frame::walk(&bytes, 0, 0).map_err(|(at, why)| damaged(entry, at, why))
    }

    /// The log from `offset` to its end, refused (as damage) when that is
    /// more than is read at once: the size of a file is not trusted with an
    /// allocation (a log made sparse at 100 GB, say).
    fn read_log_to_end(&self, entry: &str, offset: u64) -> Result<Vec<u8>, StoreError> {
        let size = match self.root.stat(&format!("{entry}/{LOG}")) {
            Ok(s) => s.map_or(0, |s| s.size),
            Err(e) => return Err(store_error(&format!("reading {entry}/{LOG}"), e)),
        };
        let len = size.saturating_sub(offset);
        if len > MAX_READ {
            return Err(StoreError::Io(format!(
                "reading {entry}/{LOG}: {len} bytes after byte {offset} are more than the \
                 {MAX_READ} read at once"
            )));
        }
        self.read_log(entry, offset, len)
    }

    fn read_log(&self, entry: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        match self.root.read(&format!("{entry}/{LOG}"), offset, len) {
            Ok(b) => Ok(b),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(store_error(&format!("reading {entry}/{LOG}"), e)),
        }
    }

    /// How many record offsets the offsets file holds.
    fn offsets_len(&self, entry: &str) -> Result<u64, StoreError> {
        match self.root.stat(&format!("{entry}/{IDX}")) {
            Ok(s) => Ok(s.map_or(0, |s| s.size / 8)),
            Err(e) => Err(store_error(&format!("reading {entry}/{IDX}"), e)),
        }
    }

    /// The offsets of records `from..from + n` the offsets file has.
    fn offsets(&self, entry: &str, from: u64, n: u64) -> Vec<u64> {
        let bytes = self
            .root
            .read(&format!("{entry}/{IDX}"), from * 8, n * 8)
            .unwrap_or_default();
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect()
    }

    /// Where a log's committed records end, how many there are, and how
    /// much of the offsets file is right. Starts at the last recorded
    /// offset (O(1) for a healthy log); falls back to a full walk if the
    /// offsets file does not check out.
    fn tail(&self, entry: &str) -> Result<Tail, StoreError> {
        let idx_len = self.offsets_len(entry)?;
        if idx_len > 0
            && let Some(&last) = self.offsets(entry, idx_len - 1, 1).first()
        {
            let bytes = self.read_log_to_end(entry, last)?;
            if !bytes.is_empty()
                && let Ok(w) = frame::walk(&bytes, last, idx_len - 1)
                && w.offsets.first() == Some(&last)
            {
                return Ok(Tail {
                    count: idx_len - 1 + w.offsets.len() as u64,
                    end: w.end,
                    torn_bytes: w.torn_bytes,
                    idx_valid: idx_len,
                    idx_len,
                    extra: w.offsets[1..].to_vec(),
                });
            }
        }
        let walk = self.walk_all(entry)?;
        Ok(Tail::from_walk(walk, idx_len))
    }

    /// Make the log end at its last whole append and the offsets file
    /// match it. Caller holds the entry lock.
    fn fix_tail(&self, entry: &str, tail: &Tail) -> Result<(), StoreError> {
        let log = format!("{entry}/{LOG}");
        if tail.torn_bytes > 0 {
            tracing::warn!(
                entry,
                bytes = tail.torn_bytes,
                "cutting a torn append off the log"
            );
            self.root
                .truncate(&log, tail.end, true)
                .map_err(|e| store_error(&format!("cutting {log}"), e))?;
        }
        if tail.idx_valid != tail.idx_len || !tail.extra.is_empty() {
            let bytes: Vec<u8> = tail.extra.iter().flat_map(|o| o.to_le_bytes()).collect();
            self.root
                .write_at(&format!("{entry}/{IDX}"), tail.idx_valid * 8, &bytes)
                .map_err(|e| store_error(&format!("indexing {log}"), e))?;
        }
        Ok(())
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's tail as this store left it, if the log is still that: the
    /// same file, of the same size.
    fn known_tail(&self, entry: &str, log: Option<crate::Stat>) -> Option<Tail> {
        let log = log?;
        let known = self.known();
        let k = known.get(entry)?;
        (k.id == log.id && k.end == log.size).then(|| Tail {
            count: k.count,
            end: k.end,
            torn_bytes: 0,
            idx_valid: k.count,
            idx_len: k.count,
            extra: Vec::new(),
        })
    }

    /// Remember the log's end after an append of records at `offsets`,
    /// written as `appended` (the log's bytes from the first of them).
    #[allow(clippy::too_many_arguments)]
    fn remember(
        &self,
        entry: &str,
        id: u64,
        end: u64,
        count: u64,
        offsets: &[u64],
        appended: &[u8],
        follows: bool,
    ) {
        let mut known = self.known();
        if known.len() >= KNOWN_LOGS && !known.contains_key(entry) {
            known.clear();
        }
        // What this log will keep (at most KNOWN_BYTES) on top of the others.
        let others: usize = known
            .iter()
            .filter(|(e, _)| e.as_str() != entry)
            .map(|(_, k)| k.bytes.len())
            .sum();
        if others + appended.len().min(KNOWN_BYTES) > KNOWN_BYTES_TOTAL {
            for k in known.values_mut() {
                k.bytes = Vec::new();
                k.bytes_from = k.end;
            }
        }
        let k = known.entry(entry.to_owned()).or_insert_with(|| Known {
            id,
            end,
            count,
            last: VecDeque::new(),
            bytes: Vec::new(),
            bytes_from: end,
        });
        let start = end - appended.len() as u64;
        if !follows || k.id != id || k.end != start || k.bytes_from + k.bytes.len() as u64 != start
        {
            k.last.clear();
            k.bytes.clear();
            k.bytes_from = start;
        }
        k.id = id;
        k.end = end;
        k.count = count;
        k.last.extend(offsets);
        while k.last.len() > KNOWN_OFFSETS {
            k.last.pop_front();
        }
        k.bytes.extend_from_slice(appended);
        // Keep whole records only: cut at the first remembered record
        // start within the bound (or keep nothing).
        if k.bytes.len() > KNOWN_BYTES {
            let keep_from = end - KNOWN_BYTES as u64;
            let cut = k
                .last
                .iter()
                .copied()
                .find(|&o| o >= keep_from)
                .unwrap_or(end);
            k.bytes.drain(..(cut - k.bytes_from) as usize);
            k.bytes_from = cut;
        }
    }

    /// Records `from..from + limit` from what this store knows of the
    /// log's end, if the log is still as it left it and they are among the
    /// records it remembers.
    fn read_known(
        &self,
        entry: &str,
        from: u64,
        limit: u32,
    ) -> Option<Result<Vec<Vec<u8>>, StoreError>> {
        // What to read, as this store left the log: the byte range of the
        // records, and those bytes if it kept them.
        let (id, end, range) = {
            let known = self.known();
            let k = known.get(entry)?;
            let first = k.count - k.last.len() as u64;
            if from < first {
                return None;
            }
            let upto = from.saturating_add(u64::from(limit)).min(k.count);
            let range = if from >= k.count || upto <= from {
                None
            } else {
                let mut offsets = k.last.iter().copied().skip((from - first) as usize);
                let start = offsets.next()?;
                let stop = offsets.nth((upto - from - 1) as usize).unwrap_or(k.end);
                let kept = (start >= k.bytes_from).then(|| {
                    k.bytes[(start - k.bytes_from) as usize..(stop - k.bytes_from) as usize]
                        .to_vec()
                });
                Some((start, stop, kept))
            };
            (k.id, k.end, range)
        };
        let log = self.root.stat(&format!("{entry}/{LOG}")).ok()??;
        if log.id != id || log.size != end {
            return None;
        }
        let Some((start, stop, kept)) = range else {
            return Some(Ok(Vec::new()));
        };
        Some((|| {
            let bytes = match kept {
                Some(bytes) => bytes,
                None => self.read_log(entry, start, stop - start)?,
            };
            let walk = frame::walk_committed(&bytes, start, from)
                .map_err(|(at, why)| damaged(entry, at, why))?;
            if walk.end != stop {
                return Err(damaged(
                    entry,
                    walk.end,
                    "the log changed while it was read",
                ));
            }
            Ok(walk
                .offsets
                .iter()
                .filter_map(|o| match frame::decode(&bytes[(o - start) as usize..]) {
                    frame::Frame::Whole { payload, .. } => Some(payload.to_vec()),
                    _ => None,
                })
                .collect())
        })())
    }

    /// Wait for the writer lock of `entry`: `conflict` if the key is gone
    /// (never made, or removed while waiting).
    fn lock_entry(&self, entry: &str) -> Result<Held<'_, R>, StoreError> {
        match Held::wait(&self.root, &format!("{entry}/lock"), true) {
            Ok(lock) => Ok(lock),
            Err(e) if e.is_not_found() => {
                Err(StoreError::Conflict(format!("{entry} does not exist")))
            }
            Err(e) if e.code == ErrorCode::Gone => Err(StoreError::Conflict(format!(
                "{entry} was removed by another writer"
            ))),
            Err(e) => Err(store_error(&format!("locking {entry}"), e)),
        }
    }

    /// What the summary of `key` is, given the intent a dead writer left
    /// (see `index.rs`): the history decides. Called under the index's
    /// exclusive lock, when no writer is between an intent and its summary;
    /// `None` when it cannot be told now (the history cannot be read).
    fn settle(&self, c: &str, key: &str, intent: &Intent, now: Option<&[u8]>) -> Option<Vec<u8>> {
        let entry = format!("{c}/{key}");
        let exists = match self.root.stat(&entry) {
            Ok(s) => s.is_some(),
            Err(e) => {
                tracing::warn!(entry, error = %e, "cannot settle an intent in the index");
                return None;
            }
        };
        if intent.length == crate::index::REMOVAL {
            // The removal happened if the key is gone.
            return Some(if exists {
                now.unwrap_or_default().to_vec()
            } else {
                Vec::new()
            });
        }
        if !exists {
            return Some(Vec::new());
        }
        match self.tail(&entry) {
            Ok(tail) if tail.count >= intent.length => Some(intent.summary.clone()),
            Ok(_) => Some(now.unwrap_or_default().to_vec()),
            Err(e) => {
                tracing::warn!(entry, error = %e, "cannot settle an intent in the index");
                None
            }
        }
    }

    fn exists(&self, path: &str) -> Result<bool, StoreError> {
        self.root
            .stat(path)
            .map(|s| s.is_some())
            .map_err(|e| store_error(path, e))
    }
}

/// A log's committed end, as [`DirStore::tail`] found it.
struct Tail {
    /// Committed records.
    count: u64,
    /// Where they end.
    end: u64,
    /// Bytes after `end` (a torn append).
    torn_bytes: u64,
    /// Leading entries of the offsets file that are right.
    idx_valid: u64,
    /// Entries the offsets file has.
    idx_len: u64,
    /// Offsets of the records after the first `idx_valid`.
    extra: Vec<u64>,
}

impl Tail {
    fn from_walk(walk: frame::Walk, idx_len: u64) -> Self {
        Tail {
            count: walk.offsets.len() as u64,
            end: walk.end,
            torn_bytes: walk.torn_bytes,
            idx_valid: 0,
            idx_len,
            extra: walk.offsets,
        }
    }

    fn is_clean(&self) -> bool {
        self.torn_bytes == 0 && self.idx_valid == self.idx_len && self.extra.is_empty()
    }
}

impl<R: Root> Store for DirStore<R> {
    fn append(
        &self,
        c: &str,
        k: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        if records.iter().any(|r| r.len() > frame::MAX_PAYLOAD) {
            return Err(StoreError::Full(format!(
                "a record for {entry} is too large"
            )));
        }
        let ctx = |what: &str| format!("{what} {entry}");
        let new_key = seq == 0 && !self.exists(&entry)?;
        if new_key {
            self.create_key(&entry)
                .map_err(|e| store_error(&ctx("creating"), e))?;
        }
        let _lock = self.lock_entry(&entry)?;
        let log = self
            .root
            .stat(&format!("{entry}/{LOG}"))
            .map_err(|e| store_error(&ctx("reading"), e))?;
        let (tail, follows) = match self.known_tail(&entry, log) {
            Some(tail) => (tail, true),
            None => (self.tail(&entry)?, false),
        };
        if !tail.is_clean() {
            self.fix_tail(&entry, &tail)?;
        }
        let count = tail.count;
        if count != seq {
            self.known().remove(&entry);
            return Err(StoreError::Conflict(format!(
                "{entry}: append at position {seq}, but the log holds {count} records"
            )));
        }
        let mut bytes = Vec::new();
        frame::encode_batch(seq, records, &mut bytes);
        let mut offsets = Vec::with_capacity(records.len() * 8);
        let mut at = tail.end;
        for r in records {
            offsets.extend_from_slice(&at.to_le_bytes());
            at += (frame::HEADER + r.len()) as u64;
        }
        // The intent first: a writer killed after the history append and
        // before the summary leaves what a reader needs to settle it.
        let intent = Intent {
            length: seq + records.len() as u64,
            summary: summary.to_vec(),
        };
        let index_lock = match self.index.intend(&self.root, c, k, &intent) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(entry, error = %e, "could not put an intent in the index");
                None
            }
        };
        let size = match self
            .root
            .append(&format!("{entry}/{LOG}"), &bytes, self.durable)
        {
            Ok(size) => size,
            Err(e) => {
                self.known().remove(&entry);
                return Err(store_error(&ctx("appending to"), e));
            }
        };
        if size != at {
            // Something outside the lock wrote to the log: the frames are
            // where they are, and the next writer's tail check decides.
            tracing::warn!(entry, size, expected = at, "the log grew outside its lock");
            self.known().remove(&entry);
        } else if let Some(log) = log {
            let starts: Vec<u64> = offsets
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            self.remember(
                &entry,
                log.id,
                size,
                count + records.len() as u64,
                &starts,
                &bytes,
                follows,
            );
        }
        if self.durable && new_key {
            // The files of a new key are entries of its directory.
            self.root
                .sync_dir(&entry)
                .map_err(|e| store_error(&ctx("syncing"), e))?;
        }
        // The records are durable: from here on the append has happened.
        // The rest is derived data; failing to write it is repaired by the
        // next writer's tail check and by `fsck --repair`, not reported as a
        // failed append (a retry would only get a conflict).
        if let Err(e) = self
            .root
            .write_at(&format!("{entry}/{IDX}"), tail.count * 8, &offsets)
        {
            tracing::warn!(entry, error = %e, "could not record record offsets");
            // The next append looks at the tail itself and mends the file.
            self.known().remove(&entry);
        }
        let indexed = match index_lock {
            Some(lock) => self.index.put_held(&self.root, c, k, summary, lock),
            None => self.index.put(&self.root, c, k, summary),
        };
        if let Err(e) = indexed {
            tracing::warn!(entry, error = %e, "could not update the index; fsck --repair rebuilds it");
        }
        Ok(())
    }

    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let entry = self.entry(c, k)?;
        match self.read_known(&entry, from, limit) {
            Some(Ok(records)) => return Ok(records),
            // What this store remembered does not hold: forget it, and
            // let the log and its offsets file decide.
            Some(Err(_)) => {
                self.known().remove(&entry);
            }
            None => {}
        }
        let idx_len = self.offsets_len(&entry)?;
        // Start at the record's offset if the offsets file has it, else at
        // the last offset it has, and walk from there.
        let start_pos = from.min(idx_len.saturating_sub(1));
        let end_pos = from.saturating_add(u64::from(limit));
        // The start offset and, if the offsets file has it, the end one.
        let (start, first_seq, bounded) = if idx_len == 0 {
            (0, 0, None)
        } else if end_pos < idx_len && end_pos - start_pos <= 64 {
            let o = self.offsets(&entry, start_pos, end_pos - start_pos + 1);
            (
                o.first().copied().unwrap_or(0),
                start_pos,
                o.last().copied(),
            )
        } else {
            let start = self
                .offsets(&entry, start_pos, 1)
                .first()
                .copied()
                .unwrap_or(0);
            let end = (end_pos < idx_len)
                .then(|| self.offsets(&entry, end_pos, 1).first().copied())
                .flatten();
            (start, start_pos, end)
        };
        // Offsets the offsets file recorded are of committed records, so a
        // read that ends at one needs no look at what follows.
        let bounded = bounded.filter(|&e| e > start);
        let read_from =
            |start: u64, first_seq: u64, end: Option<u64>| -> Result<Vec<Vec<u8>>, StoreError> {
                let bytes = match end {
                    Some(e) => self.read_log(&entry, start, e - start)?,
                    None => self.read_log_to_end(&entry, start)?,
                };
                if end.is_some_and(|e| bytes.len() as u64 != e - start) {
                    return Err(damaged(&entry, start, "stale offsets file"));
                }
                let walk = match end {
                    Some(_) => frame::walk_committed(&bytes, start, first_seq),
                    None => frame::walk(&bytes, start, first_seq),
                }
                .map_err(|(at, why)| damaged(&entry, at, why))?;
                // A bounded read must end where the offsets file said; if
                // not, that file is stale and the unbounded read decides.
                if end.is_some_and(|e| e != walk.end) {
                    return Err(damaged(&entry, walk.end, "stale offsets file"));
                }
                Ok(walk
                    .offsets
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (first_seq + i as u64, o))
                    .filter(|(s, _)| *s >= from)
                    .take(limit as usize)
                    .filter_map(
                        |(_, o)| match frame::decode(&bytes[(o - start) as usize..]) {
                            frame::Frame::Whole { payload, .. } => Some(payload.to_vec()),
                            _ => None,
                        },
                    )
                    .collect())
            };
        match read_from(start, first_seq, bounded) {
            Ok(records) => Ok(records),
            // The offsets file may be stale; the log itself decides.
            Err(_) if start != 0 || bounded.is_some() => read_from(0, 0, None),
            Err(e) => Err(e),
        }
    }

    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        name("collection", c)?;
        let scan = || {
            self.index
                .scan(&self.root, c, after, limit)
                .map_err(|e| store_error(&format!("reading the index of {c}"), e))
        };
        let entries = scan()?;
        if self.index.pending(c).is_empty() {
            return Ok(entries);
        }
        let settled = self.index.settle(&self.root, c, |key, intent, now| {
            self.settle(c, key, intent, now)
        });
        match settled {
            Ok(true) => scan(),
            Ok(false) => Ok(entries),
            Err(e) => {
                tracing::warn!(collection = c, error = %e, "cannot settle the index's intents");
                Ok(entries)
            }
        }
    }

    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        self.index
            .put(&self.root, c, k, summary)
            .map_err(|e| store_error(&format!("indexing {entry}"), e))
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        name("collection", c)?;
        let mut keys = self
            .list_dir(c)
            .map_err(|e| store_error(&format!("listing {c}"), e))?;
        // A key whose log cannot even be looked at (a symlink out of the
        // root) is still a key: its readers get the error, and a rebuilt
        // index keeps naming it, rather than it vanishing from sight.
        keys.retain(|k| {
            after.is_none_or(|a| k.as_str() < a)
                && !matches!(
                    self.root.stat(&format!("{c}/{k}/{LOG}")),
                    Ok(None)
                        | Err(RootError {
                            code: ErrorCode::NotFound,
                            ..
                        })
                )
        });
        keys.truncate(limit as usize);
        Ok(keys)
    }

    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        let entry = self.entry(c, k)?;
        self.read_doc(&entry)
    }

    fn put(
        &self,
        c: &str,
        k: &str,
        data: &[u8],
        expected: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        let entry = self.entry(c, k)?;
        if data.len() > frame::MAX_PAYLOAD {
            return Err(StoreError::Full(format!(
                "document of {} bytes",
                data.len()
            )));
        }
        let ctx = |what: &str| format!("{what} {entry}");
        if expected == 0 && !self.exists(&entry)? {
            if !durable {
                // A snapshot written late, after its key was removed.
                return Err(StoreError::Conflict(format!(
                    "{entry} does not exist; a non-durable document never creates it"
                )));
            }
            self.create_key(&entry)
                .map_err(|e| store_error(&ctx("creating"), e))?;
        }
        let _lock = self.lock_entry(&entry)?;
        let current = self.read_doc(&entry)?.map_or(0, |d| d.version);
        if current != expected {
            return Err(StoreError::Conflict(format!(
                "expected version {expected} of {entry}, found {current}"
            )));
        }
        let version = current + 1;
        // Without durability still atomic (a reader sees the old or the
        // new document), but after a power loss it may be either, or
        // unreadable: callers ask for this only for data they can rebuild.
        self.root
            .replace(
                &format!("{entry}/doc"),
                &encode_doc(version, data),
                durable && self.durable,
            )
            .map_err(|e| store_error(&ctx("writing"), e))?;
        Ok(version)
    }

    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        if !self.exists(&entry)? {
            return Ok(());
        }
        let ctx = |what: &str| format!("{what} {entry}");
        let lock = match self.lock_entry(&entry) {
            Ok(lock) => lock,
            // Removed by another writer meanwhile.
            Err(StoreError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let length = self.tail(&entry)?.count;
        if length != expected_length {
            return Err(StoreError::Conflict(format!(
                "{entry}: expected {expected_length} records, found {length}"
            )));
        }
        // A removal intent first, as a writer's: a remover killed after the
        // rename leaves what a reader needs to unlist the key.
        let removal = Intent {
            length: crate::index::REMOVAL,
            summary: Vec::new(),
        };
        let index_lock = match self.index.intend(&self.root, c, k, &removal) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(entry, error = %e, "could not put an intent in the index");
                None
            }
        };
        // Rename first: the key disappears atomically, and a writer waiting
        // for the lock finds its file no longer at the key's path (`gone`).
        // Then unlink the lock file, which a writer that already has the
        // file open sees as well.
        let unique = getrandom::u64().unwrap_or_default();
        let trash = format!("{c}/.trash-{k}-{unique:016x}");
        self.root
            .rename(&entry, &trash)
            .map_err(|e| store_error(&ctx("removing"), e))?;
        self.root
            .sync_dir(c)
            .map_err(|e| store_error(&ctx("syncing"), e))?;
        let _ = self.root.remove_file(&format!("{trash}/lock"));
        self.known().remove(&entry);
        // Unlisted before the key's lock goes: a key made again under the
        // same name (an import) is indexed after this.
        let unindexed = match index_lock {
            Some(held) => self.index.put_held(&self.root, c, k, &[], held),
            None => self.index.put(&self.root, c, k, &[]),
        };
        if let Err(e) = unindexed {
            tracing::warn!(entry, error = %e, "could not unindex; fsck --repair rebuilds the index");
        }
        drop(lock);
        self.root
            .remove_tree(&trash)
            .map(|_| ())
            .map_err(|e| store_error(&ctx("deleting"), e))
    }
}

/// Collection and key names become path components: only `[A-Za-z0-9_-]`.
/// A collection or key name every store accepts: it names a directory here.
pub fn name(what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty()
        || s.len() > MAX_NAME
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StoreError::InvalidKey(format!(
            "{what} {:?} is not a valid name (1 to {MAX_NAME} of A-Z a-z 0-9 - _)",
            s.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

fn refused(e: StoreError) -> RootError {
    RootError::new(ErrorCode::Refused, e.to_string())
}

pub(crate) fn store_error(what: &str, e: RootError) -> StoreError {
    match e.code {
        ErrorCode::Full => StoreError::Full(format!("{what}: {}", e.message)),
        // A lock another writer held past the host's bound: nothing was
        // done, the call may be tried again.
        ErrorCode::Busy => StoreError::Conflict(format!(
            "{what}: another writer holds its lock: {}",
            e.message
        )),
        _ => StoreError::Io(format!("{what}: {}", e.message)),
    }
}

fn damaged(entry: &str, at: u64, why: &str) -> StoreError {
    StoreError::Io(format!(
        "{entry}/{LOG} is damaged at byte {at} ({why}); the records before it are intact"
    ))
}

/// A document file: magic, version, length, CRC-32 over version and data.
pub fn encode_doc(version: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOC_HEADER + data.len());
    out.extend_from_slice(DOC_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&version.to_le_bytes());
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The document in a file's bytes, `None` if they are not a whole one.
pub fn decode_doc(bytes: &[u8]) -> Option<Versioned> {
    if bytes.len() < DOC_HEADER || &bytes[..4] != DOC_MAGIC {
        return None;
    }
    let version = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    let data = bytes.get(DOC_HEADER..)?;
    if data.len() != len {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    h.update(data);
    (h.finalize() == crc).then(|| Versioned {
        version,
        data: data.to_vec(),
    })
}
