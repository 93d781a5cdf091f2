//! The filesystem store: the `store` capability on one directory, confined
//! with cap-std so that no key can name a path outside the root.
//!
//! Layout under the root (format 2):
//!
//! ```text
//! FORMAT                          layout version of this root
//! REINDEX                         present while the index must be rebuilt
//! <collection>/<key>/events.log   the history: framed records (see frame.rs)
//! <collection>/<key>/events.idx   byte offset of each record (derived)
//! <collection>/<key>/doc          snapshot / setting (framed, checksummed)
//! <collection>/<key>/lock         flock serializing writers of the key
//! index/<collection>.log          summary index (see index.rs)
//! ```
//!
//! Crash safety (BRIEF §4): an append is one `write` of whole frames and an
//! `fdatasync` before it is acknowledged (unless [`Durability::Relaxed`]).
//! Before appending, the writer checks the log's tail: a torn last append
//! (a crash mid-write) is cut back to the last whole append. A document is
//! replaced by temp file + fsync + rename + directory fsync. Writers of one
//! key, in any process, are serialized by `flock` on its lock file (a lock
//! that does not vanish when another descriptor of the file is closed,
//! unlike fcntl locks); readers take no lock.

mod frame;
use crate::confined;
/// The largest record or document a store accepts (the filesystem store's
/// frame limit; the database store keeps the same, so data moves both
/// ways).
pub(crate) use frame::MAX_PAYLOAD as MAX_RECORD;
mod index;
pub(crate) mod marked;
mod migrate;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use agent_session_core::{IndexEntry, Store, StoreError, Versioned};
use cap_std::fs::{Dir, OpenOptions};

use index::Index;

/// Written to `FORMAT` in a new root.
const FORMAT: &str = "agent-session-fs 2\n";
/// The first format; migrated on open.
const FORMAT_1: &str = "agent-session-fs 1\n";
const REINDEX: &str = "REINDEX";
const DOC_MAGIC: &[u8; 4] = b"ASD1";
const DOC_HEADER: usize = 4 + 8 + 4 + 4;
/// The largest document file: a header and the largest payload.
const MAX_DOC: u64 = (DOC_HEADER + frame::MAX_PAYLOAD) as u64;
const MAX_NAME: usize = 64;
const LOG: &str = "events.log";
const IDX: &str = "events.idx";

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After `fdatasync`: an acknowledged append survives power loss.
    #[default]
    Durable,
    /// After the `write`: survives a crash of the process, not of the
    /// machine. For tests and throwaway sessions.
    Relaxed,
}

/// A [`Store`] on a directory. Cheap to share across threads (`Sync`);
/// several processes may open the same root.
pub struct FsStore {
    root: Dir,
    durability: Durability,
    index: Index,
    /// Open files of recently used keys, so an append costs no `open`.
    files: Mutex<HashMap<String, Arc<EntryFiles>>>,
}

/// The open files of one key.
struct EntryFiles {
    /// Serializes this process's writers: `flock` is per open file
    /// description, so threads sharing `lock` would not exclude each other.
    guard: Mutex<()>,
    lock: std::fs::File,
    log: std::fs::File,
    idx: std::fs::File,
    /// False when the filesystem is mounted read-only.
    writable: bool,
}

impl EntryFiles {
    /// A remover unlinks the lock file (after renaming the key away): a
    /// handle whose lock file is gone belongs to a removed key.
    fn removed(&self) -> bool {
        self.lock.metadata().map_or(true, |m| m.nlink() == 0)
    }

    /// Whether these handles are still the key's files at `entry`: checked
    /// by writers under the lock, so that a key renamed away (even by a
    /// remover that crashed before unlinking) is never written to.
    fn current(&self, root: &Dir, entry: &str) -> bool {
        let here = root
            .metadata(format!("{entry}/lock"))
            .map(|m| cap_std::fs::MetadataExt::ino(&m));
        let held = self.lock.metadata().map(|m| m.ino());
        matches!((here, held), (Ok(a), Ok(b)) if a == b)
    }
}

/// Open files kept per store; beyond this the cache starts over.
const MAX_OPEN_ENTRIES: usize = 256;

/// What [`FsStore::check`] found (and, with repair, fixed).
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

impl FsStore {
    /// Open (creating if needed) the store rooted at `path`, durably.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(path, Durability::Durable)
    }

    /// Open with the given durability. A root of the first format is
    /// migrated in place (logs rewritten in format 2, index rebuild
    /// requested).
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> io::Result<Self> {
        let path = path.as_ref();
        Self::open_in(confined::open_root(path)?, durability, path)
    }

    /// Open the store in the directory `root` (a capability the caller
    /// opened, e.g. a plugin namespace beneath another root); `label` names
    /// it in messages.
    pub fn open_in(root: Dir, durability: Durability, label: &Path) -> io::Result<Self> {
        let path = label;
        let store = Self {
            root,
            durability,
            index: Index::default(),
            files: Mutex::new(HashMap::new()),
        };
        let format = confined::read(&store.root, "FORMAT", 64).and_then(|b| {
            String::from_utf8(b).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
        });
        match format {
            Ok(f) if f == FORMAT => {}
            Ok(f) if f == FORMAT_1 => migrate::format_1_to_2(&store)?,
            Ok(other) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} holds an agent-session root of format {:?}; this build reads {:?} and {:?}",
                        path.display(),
                        other.trim(),
                        FORMAT_1.trim(),
                        FORMAT.trim()
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                write_durably(&store.root, Path::new("."), "FORMAT", FORMAT.as_bytes())?;
            }
            Err(e) => return Err(e),
        }
        // A lost index file cannot be told from an empty one by reading it.
        if !Index::exists(&store.root, agent_session_core::SESSIONS)
            && store.has_entries(agent_session_core::SESSIONS)?
        {
            store.request_reindex()?;
        }
        Ok(store)
    }

    /// Whether the index must be rebuilt (`Engine::reindex`) before lists
    /// and stats can be trusted: after a migration or a lost index.
    pub fn needs_reindex(&self) -> bool {
        self.root.exists(REINDEX)
    }

    /// Empty the index of `collection` before a rebuild; the rebuild is
    /// requested until [`FsStore::reindexed`] is called.
    pub fn clear_index(&self, collection: &str) -> io::Result<()> {
        self.request_reindex()?;
        self.index.clear(&self.root, collection)
    }

    /// The index was rebuilt.
    pub fn reindexed(&self) -> io::Result<()> {
        match self.root.remove_file(REINDEX) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.root, Path::new(".")),
        }
    }

    /// Rewrite the index of `collection` without superseded entries.
    /// Returns its size before and after.
    pub fn compact(&self, collection: &str) -> io::Result<(u64, u64)> {
        name("collection", collection).map_err(io::Error::other)?;
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
    ) -> io::Result<CheckReport> {
        name("collection", collection).map_err(io::Error::other)?;
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
    ) -> io::Result<()> {
        let _lock = if repair {
            Some(self.lock(entry)?)
        } else {
            None
        };
        match self.walk_all(entry) {
            Ok((walk, _)) => {
                report.records += walk.offsets.len() as u64;
                if walk.torn_bytes > 0 {
                    report.torn_tails.push(entry.to_owned());
                }
                if repair {
                    let idx_len = self
                        .root
                        .metadata(format!("{entry}/{IDX}"))
                        .map_or(0, |m| m.len() / 8);
                    self.fix_tail(entry, &Tail::from_walk(walk, idx_len))
                        .map_err(io::Error::other)?;
                }
            }
            Err(e) => report.damaged.push((entry.to_owned(), e.to_string())),
        }
        if let Err(e) = self.read_doc(entry) {
            // A session document is only a snapshot of its history.
            // Removing it unlinks the name in the root, never the content
            // of a file it may be hard-linked to.
            if repair && collection == agent_session_core::SESSIONS {
                self.root.remove_file(format!("{entry}/doc"))?;
                report.dropped_snapshots.push(entry.to_owned());
            } else {
                report.damaged.push((entry.to_owned(), e.to_string()));
            }
        }
        Ok(())
    }

    fn request_reindex(&self) -> io::Result<()> {
        write_durably(&self.root, Path::new("."), REINDEX, b"")
    }

    fn has_entries(&self, c: &str) -> io::Result<bool> {
        match self.root.read_dir(c) {
            Ok(mut it) => Ok(it.any(|e| {
                e.ok()
                    .and_then(|e| e.file_name().into_string().ok())
                    .is_some_and(|n| name("key", &n).is_ok())
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Valid key names in a collection directory, descending.
    fn list_dir(&self, c: &str) -> io::Result<Vec<String>> {
        let entries = match self.root.read_dir(c) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        for entry in entries {
            if let Ok(key) = entry?.file_name().into_string()
                && name("key", &key).is_ok()
            {
                keys.push(key);
            }
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        Ok(keys)
    }

    fn entry(&self, c: &str, k: &str) -> Result<String, StoreError> {
        name("collection", c)?;
        name("key", k)?;
        Ok(format!("{c}/{k}"))
    }

    /// Make a new key's directory, and its collection's if that is new
    /// too; with `durable`, the new directory entries are fsynced, so an
    /// acknowledged write does not vanish with the path that leads to it.
    fn create_key(&self, c: &str, entry: &str, durable: bool) -> io::Result<()> {
        let new_collection = !self.root.exists(c);
        self.root.create_dir_all(entry)?;
        if durable {
            if new_collection {
                sync_dir(&self.root, Path::new("."))?;
            }
            sync_dir(&self.root, Path::new(c))?;
        }
        Ok(())
    }

    /// Take the entry's writer lock (blocking). Released when dropped.
    fn lock(&self, entry: &str) -> io::Result<std::fs::File> {
        let file = confined::open(
            &self.root,
            format!("{entry}/lock"),
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        file.lock()?;
        Ok(file)
    }

    fn read_doc(&self, entry: &str) -> Result<Option<Versioned>, StoreError> {
        let bytes = match confined::read(&self.root, format!("{entry}/doc"), MAX_DOC) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&format!("reading {entry}/doc"), e)),
        };
        decode_doc(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Io(format!("{entry}/doc is damaged")))
    }

    /// The open files of a key (cached); `None` if the key does not exist
    /// and `create` is false.
    fn files(&self, entry: &str, create: bool) -> Result<Option<Arc<EntryFiles>>, StoreError> {
        let cached = self.cache().get(entry).cloned();
        if let Some(f) = cached {
            if !f.removed() {
                return Ok(Some(f));
            }
            self.cache().remove(entry);
        }
        let open = |name: &str, append: bool, writable: bool| {
            let mut o = OpenOptions::new();
            o.read(true);
            if writable {
                o.create(create || name == IDX);
                if append {
                    o.append(true);
                } else {
                    o.write(true);
                }
            }
            confined::open(&self.root, format!("{entry}/{name}"), &o)
        };
        let open_all = |writable: bool| {
            open("lock", false, writable).and_then(|lock| {
                Ok(EntryFiles {
                    guard: Mutex::new(()),
                    lock,
                    log: open(LOG, true, writable)?,
                    idx: open(IDX, false, writable)?,
                    writable,
                })
            })
        };
        // A read-only root still reads; its writes fail when they write.
        let opened = match open_all(true) {
            Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => open_all(false),
            other => other,
        };
        let files = match opened {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&format!("opening {entry}"), e)),
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_OPEN_ENTRIES {
            cache.clear();
        }
        cache.insert(entry.to_owned(), files.clone());
        Ok(Some(files))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<EntryFiles>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Walk the whole log from the start.
    fn walk_all(&self, entry: &str) -> Result<(frame::Walk, Vec<u8>), StoreError> {
        let bytes = match confined::read(&self.root, format!("{entry}/{LOG}"), confined::MAX_BUFFER)
        {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&format!("reading {entry}/{LOG}"), e)),
        };
        let walk = frame::walk(&bytes, 0, 0).map_err(|(at, why)| damaged(entry, at, why))?;
        Ok((walk, bytes))
    }

    /// Where a log's committed records end, how many there are, and how
    /// much of the offsets file is right. Starts at the last recorded
    /// offset (O(1) for a healthy log); falls back to a full walk if the
    /// offsets file does not check out.
    fn tail(
        &self,
        entry: &str,
        log: &std::fs::File,
        idx: &std::fs::File,
    ) -> Result<Tail, StoreError> {
        let idx = Offsets::of(idx).map_err(|e| io_error(entry, e))?;
        let size = log.metadata().map_err(|e| io_error(entry, e))?.len();
        if idx.len > 0
            && let Some(last) = idx.get(idx.len - 1)
            && last < size
        {
            let mut bytes = confined::buffer(size - last).map_err(|e| io_error(entry, e))?;
            if log.read_exact_at(&mut bytes, last).is_ok()
                && let Ok(w) = frame::walk(&bytes, last, idx.len - 1)
                && w.offsets.first() == Some(&last)
            {
                return Ok(Tail {
                    count: idx.len - 1 + w.offsets.len() as u64,
                    end: w.end,
                    torn_bytes: w.torn_bytes,
                    idx_valid: idx.len,
                    idx_len: idx.len,
                    extra: w.offsets[1..].to_vec(),
                });
            }
        }
        let walk = self.walk_all(entry)?.0;
        Ok(Tail::from_walk(walk, idx.len))
    }

    /// Make the log end at its last whole append and the offsets file
    /// match it. Caller holds the entry lock.
    fn fix_tail(&self, entry: &str, tail: &Tail) -> Result<(), StoreError> {
        let ctx = |what: &str| format!("{what} {entry}/{LOG}");
        if tail.torn_bytes > 0 {
            tracing::warn!(
                entry,
                bytes = tail.torn_bytes,
                "cutting a torn append off the log"
            );
            let f = confined::open(
                &self.root,
                format!("{entry}/{LOG}"),
                OpenOptions::new().write(true),
            )
            .map_err(|e| io_error(&ctx("opening"), e))?;
            f.set_len(tail.end)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_error(&ctx("cutting"), e))?;
        }
        if tail.idx_valid != tail.idx_len || !tail.extra.is_empty() {
            let f = confined::open(
                &self.root,
                format!("{entry}/{IDX}"),
                OpenOptions::new().write(true).create(true),
            )
            .map_err(|e| io_error(&ctx("indexing"), e))?;
            let bytes: Vec<u8> = tail.extra.iter().flat_map(|o| o.to_le_bytes()).collect();
            f.set_len(tail.idx_valid * 8)
                .and_then(|()| f.write_all_at(&bytes, tail.idx_valid * 8))
                .map_err(|e| io_error(&ctx("indexing"), e))?;
        }
        Ok(())
    }
}

/// A log's committed end, as [`FsStore::tail`] found it.
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

/// Read access to an offsets file (`events.idx`): one `u64` per record.
struct Offsets<'a> {
    file: &'a std::fs::File,
    len: u64,
}

impl<'a> Offsets<'a> {
    fn of(file: &'a std::fs::File) -> io::Result<Self> {
        Ok(Self {
            len: file.metadata()?.len() / 8,
            file,
        })
    }

    fn get(&self, i: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        if i >= self.len {
            return None;
        }
        self.file.read_exact_at(&mut b, i * 8).ok()?;
        Some(u64::from_le_bytes(b))
    }
}

impl Store for FsStore {
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
        let durable = self.durability == Durability::Durable;
        let new_key = seq == 0 && !self.root.exists(&entry);
        if new_key {
            self.create_key(c, &entry, durable)
                .map_err(|e| io_error(&ctx("creating"), e))?;
        }
        let Some(files) = self.files(&entry, seq == 0)? else {
            return Err(StoreError::Conflict(format!("{entry} does not exist")));
        };
        if !files.writable {
            return Err(StoreError::Io(format!(
                "cannot append to {entry}: the store is on a read-only file system"
            )));
        }
        let _guard = files.guard.lock().unwrap_or_else(|p| p.into_inner());
        files
            .lock
            .lock()
            .map_err(|e| io_error(&ctx("locking"), e))?;
        let _unlock = Unlock(&files.lock);
        if !files.current(&self.root, &entry) {
            self.cache().remove(&entry);
            return Err(StoreError::Conflict(format!(
                "{entry} was removed by another writer"
            )));
        }
        let (log, idx) = (&files.log, &files.idx);
        let tail = self.tail(&entry, log, idx)?;
        if !tail.is_clean() {
            self.fix_tail(&entry, &tail)?;
        }
        let count = tail.count;
        if count != seq {
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
        let mut writer = log;
        writer
            .write_all(&bytes)
            .map_err(|e| io_error(&ctx("appending to"), e))?;
        if durable {
            log.sync_data().map_err(|e| io_error(&ctx("syncing"), e))?;
            if new_key {
                // The files of a new key are entries of its directory.
                sync_dir(&self.root, Path::new(&entry))
                    .map_err(|e| io_error(&ctx("syncing"), e))?;
            }
        }
        // The records are durable: from here on the append has happened.
        // The rest is derived data; failing to write it is repaired by the
        // next writer's tail check and by `fsck --repair`, not reported as a
        // failed append (a retry would only get a conflict).
        if let Err(e) = idx.write_all_at(&offsets, tail.count * 8) {
            tracing::warn!(entry, error = %e, "could not record record offsets");
        }
        if let Err(e) = self.index.put(&self.root, c, k, summary) {
            tracing::warn!(entry, error = %e, "could not update the index; fsck --repair rebuilds it");
        }
        Ok(())
    }

    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let entry = self.entry(c, k)?;
        let Some(files) = self.files(&entry, false)? else {
            return Ok(Vec::new());
        };
        let log = &files.log;
        let size = log.metadata().map_err(|e| io_error(&entry, e))?.len();
        let idx = Offsets::of(&files.idx).map_err(|e| io_error(&entry, e))?;
        // Start at the record's offset if the offsets file has it, else at
        // the last offset it has, and walk from there.
        let start_pos = from.min(idx.len.saturating_sub(1));
        let (start, first_seq) = match idx.get(start_pos) {
            Some(o) if o < size => (o, start_pos),
            _ => (0, 0),
        };
        // Offsets the offsets file recorded are of committed records, so a
        // read that ends at one needs no look at what follows.
        let bounded = idx
            .get(from.saturating_add(u64::from(limit)))
            .filter(|&e| e > start && e <= size);
        let read_from =
            |start: u64, first_seq: u64, end: Option<u64>| -> Result<Vec<Vec<u8>>, StoreError> {
                let mut bytes = confined::buffer(end.unwrap_or(size) - start)
                    .map_err(|e| io_error(&format!("reading {entry}/{LOG}"), e))?;
                log.read_exact_at(&mut bytes, start)
                    .map_err(|e| io_error(&format!("reading {entry}/{LOG}"), e))?;
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
        self.index.scan(&self.root, c, after, limit)
    }

    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        self.index
            .put(&self.root, c, k, summary)
            .map_err(|e| io_error(&format!("indexing {entry}"), e))
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        name("collection", c)?;
        let mut keys = self
            .list_dir(c)
            .map_err(|e| io_error(&format!("listing {c}"), e))?;
        // A key whose log cannot even be looked at (a symlink out of the
        // root) is still a key: its readers get the error, and a rebuilt
        // index keeps naming it, rather than it vanishing from sight.
        keys.retain(|k| {
            after.is_none_or(|a| k.as_str() < a)
                && !matches!(self.root.metadata(format!("{c}/{k}/{LOG}")),
                             Err(e) if e.kind() == ErrorKind::NotFound)
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
        if expected == 0 && !self.root.exists(&entry) {
            if !durable {
                // A snapshot written late, after its key was removed.
                return Err(StoreError::Conflict(format!(
                    "{entry} does not exist; a non-durable document never creates it"
                )));
            }
            self.create_key(c, &entry, self.durability == Durability::Durable)
                .map_err(|e| io_error(&ctx("creating"), e))?;
        }
        let _lock = match self.lock(&entry) {
            Ok(lock) => lock,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::Conflict(format!("{entry} does not exist")));
            }
            Err(e) => return Err(io_error(&ctx("locking"), e)),
        };
        let current = self.read_doc(&entry)?.map_or(0, |d| d.version);
        if current != expected {
            return Err(StoreError::Conflict(format!(
                "expected version {expected} of {entry}, found {current}"
            )));
        }
        let version = current + 1;
        let bytes = encode_doc(version, data);
        if durable && self.durability == Durability::Durable {
            write_durably(&self.root, Path::new(&entry), "doc", &bytes)
        } else {
            // Still atomic (a reader sees the old or the new document), but
            // after a power loss it may be either, or unreadable: callers
            // ask for this only for data they can rebuild.
            write_atomically(&self.root, Path::new(&entry), "doc", &bytes, false)
        }
        .map_err(|e| io_error(&ctx("writing"), e))?;
        Ok(version)
    }

    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        if !self.root.exists(&entry) {
            return Ok(());
        }
        let ctx = |what: &str| format!("{what} {entry}");
        let _lock = match self.lock(&entry) {
            Ok(lock) => lock,
            // Removed by another writer meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&ctx("locking"), e)),
        };
        let length = match self.files(&entry, false)? {
            Some(f) => self.tail(&entry, &f.log, &f.idx)?.count,
            None => 0,
        };
        if length != expected_length {
            return Err(StoreError::Conflict(format!(
                "{entry}: expected {expected_length} records, found {length}"
            )));
        }
        // Rename first: the key disappears atomically, and writers check
        // under the lock that their files are still at the key's path. Then
        // unlink the lock file, which tells readers with cached handles.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let trash = format!("{c}/.trash-{k}-{}-{nanos}", std::process::id());
        self.root
            .rename(&entry, &self.root, &trash)
            .map_err(|e| io_error(&ctx("removing"), e))?;
        sync_dir(&self.root, Path::new(c)).map_err(|e| io_error(&ctx("syncing"), e))?;
        let _ = self.root.remove_file(format!("{trash}/lock"));
        self.cache().remove(&entry);
        if let Err(e) = self.index.put(&self.root, c, k, &[]) {
            tracing::warn!(entry, error = %e, "could not unindex; fsck --repair rebuilds the index");
        }
        self.root
            .remove_dir_all(&trash)
            .map_err(|e| io_error(&ctx("deleting"), e))
    }
}

/// Collection and key names become path components: only `[A-Za-z0-9_-]`.
/// A collection or key name every store accepts: it names a directory here.
pub(crate) fn name(what: &str, s: &str) -> Result<(), StoreError> {
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

fn io_error(what: &str, e: io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            StoreError::Full(format!("{what}: {e}"))
        }
        _ => StoreError::Io(format!("{what}: {e}")),
    }
}

fn damaged(entry: &str, at: u64, why: &str) -> StoreError {
    StoreError::Io(format!(
        "{entry}/{LOG} is damaged at byte {at} ({why}); the records before it are intact"
    ))
}

/// Replace `dir/name` crash-safely: temp file, fsync, rename, fsync dir.
pub(crate) fn write_durably(root: &Dir, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_atomically(root, dir, name, bytes, true)
}

/// Replace `dir/name` by renaming a temp file over it; with `sync`, the
/// temp file and the directory are fsynced so the new content survives a
/// power loss.
pub(crate) fn write_atomically(
    root: &Dir,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    sync: bool,
) -> io::Result<()> {
    // A name of its own per writer: two processes making the same new
    // root (both writing FORMAT) must not rename each other's temp file.
    let unique = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.{}-{unique:016x}.tmp", std::process::id()));
    let target = dir.join(name);
    let written = (|| {
        let mut file = root.open_with(&tmp, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        root.rename(&tmp, root, &target)
    })();
    if written.is_err() {
        let _ = root.remove_file(&tmp);
    }
    written?;
    if sync {
        sync_dir(root, dir)?;
    }
    Ok(())
}

/// fsync a directory so a rename or create in it is durable. A plain
/// read-only open is used: cap-std's own `Dir` handles are `O_PATH`, on which
/// fsync fails.
pub(crate) fn sync_dir(root: &Dir, dir: &Path) -> io::Result<()> {
    root.open(dir)?.sync_all()
}

fn encode_doc(version: u64, data: &[u8]) -> Vec<u8> {
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

fn decode_doc(bytes: &[u8]) -> Option<Versioned> {
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

/// Releases a `flock` when dropped.
struct Unlock<'a>(&'a std::fs::File);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod decoder_tests;
#[cfg(test)]
mod tests;
