//! The directory format of agent-session, in one place: session logs and
//! their frames, record offsets, documents and snapshots, the summary
//! index, the notification outbox (intake and delivery records), the torn-tail cut and the format
//! migration. It is written against [`Root`], a narrow capability over one
//! directory (the `root` interface of `wit/session.wit`), so the same code
//! runs natively in the Rust host (over `openat`-family calls) and, compiled to
//! `wasm32-wasip2`, inside the session-on-root component that the Node and
//! Python hosts run (over their own small implementation of `root`).
//!
//! Layout under a root (format 2):
//!
//! ```text
//! FORMAT                          layout version of this root
//! REINDEX                         present while the index must be rebuilt
//! <collection>/<key>/events.log   the history: framed records (frame.rs)
//! <collection>/<key>/events.idx   byte offset of each record (derived)
//! <collection>/<key>/doc          snapshot / setting (framed, checksummed)
//! <collection>/<key>/lock         flock serializing writers of the key
//! index/<collection>.log          summary index (index.rs)
//! outbox/intake/<segment>.log     queued notifications (intake.rs)
//! outbox/<raised>-<id>.json       a pending delivery's record (outbox.rs)
//! outbox/done/<raised>-<id>.json  a finished delivery's record
//! outbox/.sender.lock             held by the one sender of the root
//! ```

pub mod frame;
mod index;
mod intake;
pub mod marked;
mod migrate;
mod outbox;
mod sending;
mod store;

pub use index::{MAGIC as INDEX_MARK, decode as decode_index_entry, encode as encode_index_entry};
pub use intake::{
    DONE_DIR, FRESH_SUFFIX, INTAKE_DIR, INTAKE_MARK, Intake, OUTBOX_DIR, SEGMENT_SUFFIX, check_id,
};
pub use outbox::{Outbox, SENDER_LOCK, Sender, record_name};
pub use sending::{Due, Sending, sender_options};
pub use store::{CheckReport, DirStore, MAX_RECORD, decode_doc, encode_doc, name};

/// Why a [`Root`] call failed (the `error-code` of the WIT `root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The path, or a directory on it, does not exist.
    NotFound,
    /// `create_dir` met a file, or `rename`'s target is a full directory.
    Exists,
    /// A path the capability does not accept, or a file it will not touch.
    Refused,
    /// `lock`: the locked file is no longer at its path.
    Gone,
    /// `lock` with `wait`: the host gave up waiting (it bounds its waits).
    Busy,
    /// Out of space or quota.
    Full,
    /// The file system is read-only.
    ReadOnly,
    /// Anything else.
    Io,
}

/// A failed [`Root`] call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RootError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, naming the path.
    pub message: String,
}

impl RootError {
    /// A failure of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn is_not_found(&self) -> bool {
        self.code == ErrorCode::NotFound
    }
}

/// What [`Root::stat`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// The file's identity (inode number).
    pub id: u64,
    /// A directory rather than a file.
    pub directory: bool,
}

/// One directory, as the store sees it: the `root` interface of
/// `wit/session.wit`, whose documentation is the contract (paths, their
/// confinement, what each call does and guarantees). Paths passed here are
/// always made by this crate from validated names.
pub trait Root: Send + Sync {
    /// What is at `path`, if anything.
    fn stat(&self, path: &str) -> Result<Option<Stat>, RootError>;
    /// Up to `len` bytes of a file from `offset`.
    fn read(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RootError>;
    /// Append in one write (creating the file), `fdatasync` with `sync`;
    /// returns the size after.
    fn append(&self, path: &str, bytes: &[u8], sync: bool) -> Result<u64, RootError>;
    /// Cut the file to `offset`, then write `bytes` there (creating it).
    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), RootError>;
    /// Cut a file to `size` (never longer); `fsync` with `sync`.
    fn truncate(&self, path: &str, size: u64, sync: bool) -> Result<(), RootError>;
    /// Replace a file's content atomically (temp file + rename; with
    /// `sync`, fsynced file and directory).
    fn replace(&self, path: &str, bytes: &[u8], sync: bool) -> Result<(), RootError>;
    /// Make a directory and its missing parents; whether `path` was made.
    fn create_dir(&self, path: &str, sync: bool) -> Result<bool, RootError>;
    /// `fsync` a directory.
    fn sync_dir(&self, path: &str) -> Result<(), RootError>;
    /// The names in a directory.
    fn list(&self, path: &str) -> Result<Vec<String>, RootError>;
    /// Rename within the root.
    fn rename(&self, from: &str, to: &str) -> Result<(), RootError>;
    /// Remove a file; false if absent.
    fn remove_file(&self, path: &str) -> Result<bool, RootError>;
    /// Remove a directory tree (never following symlinks); false if absent.
    fn remove_tree(&self, path: &str) -> Result<bool, RootError>;
    /// An advisory `flock` on the file at `path` (created if missing):
    /// `None` if `wait` is false and another holder excludes it.
    fn lock(&self, path: &str, exclusive: bool, wait: bool) -> Result<Option<u64>, RootError>;
    /// Release a lock.
    fn unlock(&self, handle: u64);
}

/// Whether `path` is one the `root` capability accepts: `.`, or segments of
/// `[A-Za-z0-9._-]` (1 to 255 bytes, not `.` or `..`) joined by `/`. Every
/// implementation of [`Root`] checks this before touching anything.
pub fn check_path(path: &str) -> Result<(), RootError> {
    let ok = path == "."
        || path.split('/').all(|s| {
            !s.is_empty()
                && s.len() <= 255
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if ok {
        Ok(())
    } else {
        Err(RootError::new(
            ErrorCode::Refused,
            format!(
                "{:?} is not a path within the root",
                path.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// A lock taken through [`Root::lock`], released when dropped.
pub(crate) struct Held<'a, R: Root + ?Sized> {
    root: &'a R,
    handle: u64,
}

impl<'a, R: Root + ?Sized> Held<'a, R> {
    /// Wait for the lock on `path`.
    pub(crate) fn wait(root: &'a R, path: &str, exclusive: bool) -> Result<Self, RootError> {
        match root.lock(path, exclusive, true)? {
            Some(handle) => Ok(Self { root, handle }),
            None => Err(RootError::new(
                ErrorCode::Io,
                format!("{path}: a waiting lock was not granted"),
            )),
        }
    }

    /// Take the lock on `path` if nobody excludes it.
    pub(crate) fn try_take(
        root: &'a R,
        path: &str,
        exclusive: bool,
    ) -> Result<Option<Self>, RootError> {
        Ok(root
            .lock(path, exclusive, false)?
            .map(|handle| Self { root, handle }))
    }

    /// Keep the lock beyond this value's life (released with [`Root::unlock`]).
    pub(crate) fn into_handle(self) -> u64 {
        let handle = self.handle;
        std::mem::forget(self);
        handle
    }
}

impl<R: Root + ?Sized> Drop for Held<'_, R> {
    fn drop(&mut self) {
        self.root.unlock(self.handle);
    }
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_are_relative_segments() {
        for ok in [
            ".",
            "a",
            "sessions/0190-ab/events.log",
            ".trash-x-1",
            "index/c.log",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/", "/etc", "a//b", "a/", "./a", "a/./b", "..", "a/../b", "a b", "a\\b", "é",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(256)).is_err());
    }
}
