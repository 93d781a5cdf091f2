//! The filesystem store of the Rust host: the one implementation of the
//! directory format (`agent-session-dir-store`, the same source the Node
//! and Python hosts run inside the session-on-root component) linked natively,
//! over [`DirRoot`], the `root` capability on a local directory.
//!
//! Linked natively rather than run inside the component: it is the same
//! code, and each of the ten or so `root` calls of an append would
//! otherwise cross the component boundary (ARCHITECTURE.md, "One directory
//! format").

use std::io::{self, ErrorKind, Write};
use std::path::Path;

use agent_session_core::{IndexEntry, Store, StoreError, Versioned};
use agent_session_dir_store::{DirStore, ErrorCode, RootError};
use cap_std::fs::{Dir, OpenOptions};

pub use agent_session_dir_store::{CheckReport, MAX_RECORD, name};

use crate::confined;
use crate::root::DirRoot;

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
/// several processes, of any host, may open the same root.
pub struct FsStore(DirStore<DirRoot>);

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
        let root = DirRoot::new(&root, label)?;
        let durable = durability == Durability::Durable;
        DirStore::open(root, durable, &label.display().to_string())
            .map(Self)
            .map_err(to_io)
    }

    /// Whether the index must be rebuilt (`Engine::reindex`) before lists
    /// and stats can be trusted: after a migration or a lost index.
    pub fn needs_reindex(&self) -> io::Result<bool> {
        self.0.needs_reindex().map_err(to_io)
    }

    /// Empty the index of `collection` before a rebuild; the rebuild is
    /// requested until [`FsStore::reindexed`] is called.
    pub fn clear_index(&self, collection: &str) -> io::Result<()> {
        self.0.clear_index(collection).map_err(to_io)
    }

    /// The index was rebuilt.
    pub fn reindexed(&self) -> io::Result<()> {
        self.0.reindexed().map_err(to_io)
    }

    /// Rewrite the index of `collection` without superseded entries.
    /// Returns its size before and after.
    pub fn compact(&self, collection: &str) -> io::Result<(u64, u64)> {
        self.0.compact(collection).map_err(to_io)
    }

    /// Check every key of `collection`: every log frame, every document.
    /// With `repair`, torn tails are cut and offset files rewritten.
    /// `progress(done, total)` is called as keys are checked.
    pub fn check(
        &self,
        collection: &str,
        repair: bool,
        progress: impl FnMut(u64, u64),
    ) -> io::Result<CheckReport> {
        self.0.check(collection, repair, progress).map_err(to_io)
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
        self.0.append(c, k, seq, records, summary)
    }
    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.0.read(c, k, from, limit)
    }
    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.0.scan(c, after, limit)
    }
    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        self.0.reindex(c, k, summary)
    }
    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        self.0.keys(c, after, limit)
    }
    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        self.0.get(c, k)
    }
    fn put(
        &self,
        c: &str,
        k: &str,
        data: &[u8],
        expected: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        self.0.put(c, k, data, expected, durable)
    }
    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        self.0.remove(c, k, expected_length)
    }
}

/// A root failure as an `io::Error` of the matching kind.
pub(crate) fn to_io(e: RootError) -> io::Error {
    let kind = match e.code {
        ErrorCode::NotFound => ErrorKind::NotFound,
        ErrorCode::Exists => ErrorKind::AlreadyExists,
        ErrorCode::Refused => ErrorKind::InvalidData,
        ErrorCode::Gone => ErrorKind::NotFound,
        ErrorCode::Busy => ErrorKind::WouldBlock,
        ErrorCode::Full => ErrorKind::StorageFull,
        ErrorCode::ReadOnly => ErrorKind::ReadOnlyFilesystem,
        ErrorCode::Io => ErrorKind::Other,
    };
    io::Error::new(kind, e.message)
}

/// Replace `dir/name` crash-safely: temp file, fsync, rename, fsync dir.
/// (For the host's own files beside a store: plugin copies, outbox
/// records; the store's go through [`DirRoot`].)
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
    // A name of its own per writer: two processes writing the same file
    // must not rename each other's temp file.
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

#[cfg(test)]
mod decoder_tests;
#[cfg(test)]
mod tests;
