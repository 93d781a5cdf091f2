//! The `root` capability on a local directory, for the Rust host: what the
//! directory format (`agent-session-dir-store`) is written against, here
//! over plain `openat`-family system calls (rustix).
//!
//! Every path is checked ([`check_path`]) and resolved one segment at a
//! time beneath the root's descriptor with `O_NOFOLLOW`: a symbolic link
//! anywhere on a path is refused, so nothing outside the root is read,
//! written or removed whatever the root contains. Files are opened
//! non-blocking (a FIFO is refused, not waited on) and used only if they
//! are regular, have one link (a hard link may lead anywhere) and belong
//! to the root's owner or to this user. The Node and Python hosts
//! implement the same capability in their own modules, with the same
//! rules; `tests/root/cases.json` holds the cases all of them pass.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use agent_session_dir_store::{ErrorCode, Root, RootError, Stat, check_path};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::confined;

/// A directory granted as a `root`.
pub struct DirRoot {
    /// The root, opened for reading (so it can be fsynced).
    fd: OwnedFd,
    /// The root's owner: files of this user (or of the one running the
    /// host) are the store's.
    owner: u32,
    /// Locks held, by handle.
    locks: Mutex<HashMap<u64, File>>,
    next: AtomicU64,
    label: String,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
const FILE_MODE: Mode = Mode::from_raw_mode(0o644);
const DIR_MODE: Mode = Mode::from_raw_mode(0o755);

/// A directory descriptor: the root's, or one opened on the way.
enum DirFd<'a> {
    Root(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl DirFd<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => *fd,
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

impl DirRoot {
    /// The root at `dir`, a capability the caller opened; `label` names it
    /// in messages.
    pub fn new(dir: &cap_std::fs::Dir, label: &Path) -> std::io::Result<Self> {
        // cap-std's own handle may be `O_PATH`, which cannot be fsynced.
        let fd = rustix::fs::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
        let owner = rustix::fs::fstat(&fd)?.st_uid;
        Ok(Self {
            fd,
            owner,
            locks: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            label: label.display().to_string(),
        })
    }

    /// The root at `path` (made if missing), as [`confined::open_root`].
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::new(&confined::open_root(path)?, path)
    }

    fn fail(&self, path: &str, e: Errno) -> RootError {
        let code = match e {
            Errno::NOENT | Errno::NOTDIR => ErrorCode::NotFound,
            Errno::NOSPC | Errno::DQUOT => ErrorCode::Full,
            Errno::ROFS => ErrorCode::ReadOnly,
            // A symbolic link met with O_NOFOLLOW, a directory or a FIFO
            // where a file is asked for.
            Errno::LOOP | Errno::ISDIR | Errno::NXIO => ErrorCode::Refused,
            Errno::EXIST | Errno::NOTEMPTY => ErrorCode::Exists,
            _ => ErrorCode::Io,
        };
        let why = if e == Errno::LOOP {
            "a symbolic link; refusing to follow it".to_owned()
        } else {
            std::io::Error::from(e).to_string()
        };
        RootError::new(code, format!("{}/{path}: {why}", self.label))
    }

    fn refused(&self, path: &str, why: impl std::fmt::Display) -> RootError {
        RootError::new(ErrorCode::Refused, format!("{}/{path}: {why}", self.label))
    }

    /// The directory holding `path`'s last segment, and that segment.
    /// The root itself (`.`) has no parent here: it is never removed,
    /// moved or opened as a file.
    fn parent<'p>(&self, path: &'p str) -> Result<(DirFd<'_>, &'p str), RootError> {
        check_path(path)?;
        if path == "." {
            return Err(self.refused(path, "the root itself"));
        }
        match path.rsplit_once('/') {
            None => Ok((DirFd::Root(self.fd.as_fd()), path)),
            Some((dirs, leaf)) => Ok((self.walk(dirs, false)?, leaf)),
        }
    }

    /// The directory at `path` (checked), the target of a call.
    fn dir(&self, path: &str) -> Result<DirFd<'_>, RootError> {
        check_path(path)?;
        self.walk(path, true)
    }

    /// Resolve the directory `path` segment by segment. A symbolic link on
    /// the way is refused; a file on the way means the directory does not
    /// exist, unless it is the `target` itself (then it is refused).
    fn walk(&self, path: &str, target: bool) -> Result<DirFd<'_>, RootError> {
        let mut at = DirFd::Root(self.fd.as_fd());
        if path == "." {
            return Ok(at);
        }
        let mut segments = path.split('/').peekable();
        while let Some(segment) = segments.next() {
            let next = match rustix::fs::openat(at.fd(), segment, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                // O_NOFOLLOW | O_DIRECTORY on a link says ENOTDIR: tell a
                // link from a file by looking.
                Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                    let last = segments.peek().is_none();
                    let file = if target && last {
                        self.refused(path, "not a directory")
                    } else {
                        self.fail(path, e)
                    };
                    return Err(self.not_a_directory(&at, segment, path, e, file));
                }
                Err(e) => return Err(self.fail(path, e)),
            };
            at = DirFd::Owned(next);
        }
        Ok(at)
    }

    /// Why `segment` (in `at`) could not be opened as a directory: a
    /// symbolic link is refused; anything else there is `file`.
    fn not_a_directory(
        &self,
        at: &DirFd<'_>,
        segment: &str,
        path: &str,
        e: Errno,
        file: RootError,
    ) -> RootError {
        match rustix::fs::statat(at.fd(), segment, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => self.refused(
                path,
                format_args!("{segment} is a symbolic link; refusing to follow it"),
            ),
            Ok(_) => file,
            Err(_) => self.fail(path, e),
        }
    }

    /// Open the file at `path` with `flags` (plus no-follow, non-blocking)
    /// and check it is one of the store's.
    fn open_file(&self, path: &str, flags: OFlags) -> Result<File, RootError> {
        let (dir, leaf) = self.parent(path)?;
        // NOCTTY: a terminal planted in the root is refused by the check,
        // never made this process's controlling terminal by the open.
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(dir.fd(), leaf, flags, FILE_MODE).map_err(|e| self.fail(path, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.fail(path, e))?;
        self.check(path, &st)?;
        Ok(File::from(fd))
    }

    /// A store file: regular, one link, of the root's owner or this user.
    fn check(&self, path: &str, st: &rustix::fs::Stat) -> Result<(), RootError> {
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(self.refused(path, "not a regular file; refusing it"));
        }
        if st.st_nlink > 1 {
            return Err(self.refused(
                path,
                format_args!(
                    "has {} hard links; a store file has exactly one, so it is refused as \
                     damage (it may be linked to a file outside the root)",
                    st.st_nlink
                ),
            ));
        }
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != self.owner && st.st_uid != me {
            return Err(self.refused(
                path,
                format_args!(
                    "belongs to user {}, neither the root's owner ({}) nor this user ({me}); \
                     refusing it",
                    st.st_uid, self.owner
                ),
            ));
        }
        Ok(())
    }

    fn io(&self, path: &str, e: std::io::Error) -> RootError {
        match e.raw_os_error() {
            Some(n) => self.fail(path, Errno::from_raw_os_error(n)),
            None => RootError::new(ErrorCode::Io, format!("{}/{path}: {e}", self.label)),
        }
    }

    fn remove_dir_contents(&self, dir: &OwnedFd, path: &str) -> Result<(), RootError> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(|e| self.fail(path, e))? {
            let entry = entry.map_err(|e| self.fail(path, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(entry.file_name().to_owned());
            }
        }
        for name in names {
            let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.fail(path, e)),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = rustix::fs::openat(dir, &name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| self.fail(path, e))?;
                self.remove_dir_contents(&sub, path)?;
                rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR)
            } else {
                rustix::fs::unlinkat(dir, &name, AtFlags::empty())
            }
            .or_else(|e| if e == Errno::NOENT { Ok(()) } else { Err(e) })
            .map_err(|e| self.fail(path, e))?;
        }
        Ok(())
    }
}

impl Root for DirRoot {
    fn stat(&self, path: &str) -> Result<Option<Stat>, RootError> {
        let st = if path == "." {
            rustix::fs::fstat(&self.fd)
        } else {
            let (dir, leaf) = match self.parent(path) {
                Err(e) if e.code == ErrorCode::NotFound => return Ok(None),
                other => other?,
            };
            rustix::fs::statat(dir.fd(), leaf, AtFlags::SYMLINK_NOFOLLOW)
        };
        let st = match st {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(self.fail(path, e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Ok(Some(Stat {
                size: 0,
                id: st.st_ino,
                directory: true,
            })),
            FileType::Symlink => Err(self.refused(path, "a symbolic link; refusing to follow it")),
            _ => {
                self.check(path, &st)?;
                Ok(Some(Stat {
                    size: st.st_size as u64,
                    id: st.st_ino,
                    directory: false,
                }))
            }
        }
    }

    fn read(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RootError> {
        let file = self.open_file(path, OFlags::RDONLY)?;
        let size = file.metadata().map_err(|e| self.io(path, e))?.len();
        let want = len.min(size.saturating_sub(offset));
        let mut bytes = confined::buffer(want).map_err(|e| self.io(path, e))?;
        let mut got = 0;
        while got < bytes.len() {
            match file.read_at(&mut bytes[got..], offset + got as u64) {
                Ok(0) => break, // the file shrank meanwhile
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(path, e)),
            }
        }
        bytes.truncate(got);
        Ok(bytes)
    }

    fn append(&self, path: &str, bytes: &[u8], sync: bool) -> Result<u64, RootError> {
        let mut file = self.open_file(path, OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE)?;
        file.write_all(bytes).map_err(|e| self.io(path, e))?;
        if sync {
            file.sync_data().map_err(|e| self.io(path, e))?;
        }
        Ok(file.metadata().map_err(|e| self.io(path, e))?.len())
    }

    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), RootError> {
        let file = self.open_file(path, OFlags::WRONLY | OFlags::CREATE)?;
        file.set_len(offset)
            .and_then(|()| file.write_all_at(bytes, offset))
            .map_err(|e| self.io(path, e))
    }

    fn truncate(&self, path: &str, size: u64, sync: bool) -> Result<(), RootError> {
        let file = self.open_file(path, OFlags::WRONLY)?;
        let now = file.metadata().map_err(|e| self.io(path, e))?.len();
        if size < now {
            file.set_len(size).map_err(|e| self.io(path, e))?;
        }
        if sync {
            file.sync_all().map_err(|e| self.io(path, e))?;
        }
        Ok(())
    }

    fn replace(&self, path: &str, bytes: &[u8], sync: bool) -> Result<(), RootError> {
        // Only a store file (or nothing) is replaced: what `stat` refuses,
        // or a directory, stays as it is.
        if self.stat(path)?.is_some_and(|s| s.directory) {
            return Err(self.refused(path, "a directory"));
        }
        let (dir, leaf) = self.parent(path)?;
        let unique = getrandom::u64().unwrap_or_default();
        // A name of its own per writer: two processes making the same new
        // file (both writing FORMAT) must not rename each other's.
        // The leaf shortened, so the temporary name stays a valid segment.
        let stem: String = leaf.chars().take(200).collect();
        let tmp = format!(".{stem}.{}-{unique:016x}.tmp", std::process::id());
        let written = (|| {
            let fd = rustix::fs::openat(
                dir.fd(),
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                FILE_MODE,
            )?;
            let mut file = File::from(fd);
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            drop(file);
            rustix::fs::renameat(dir.fd(), &tmp, dir.fd(), leaf)?;
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(dir.fd(), &tmp, AtFlags::empty());
            return Err(self.io(path, e));
        }
        if sync {
            rustix::fs::fsync(dir.fd()).map_err(|e| self.fail(path, e))?;
        }
        Ok(())
    }

    fn create_dir(&self, path: &str, sync: bool) -> Result<bool, RootError> {
        check_path(path)?;
        if path == "." {
            return Ok(false);
        }
        let mut at = DirFd::Root(self.fd.as_fd());
        let mut made = false;
        for segment in path.split('/') {
            made = match rustix::fs::mkdirat(at.fd(), segment, DIR_MODE) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(self.fail(path, e)),
            };
            if made && sync {
                rustix::fs::fsync(at.fd()).map_err(|e| self.fail(path, e))?;
            }
            let next = match rustix::fs::openat(at.fd(), segment, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                    let file = RootError::new(
                        ErrorCode::Exists,
                        format!("{}/{path}: {segment} is not a directory", self.label),
                    );
                    return Err(self.not_a_directory(&at, segment, path, e, file));
                }
                Err(e) => return Err(self.fail(path, e)),
            };
            at = DirFd::Owned(next);
        }
        Ok(made)
    }

    fn sync_dir(&self, path: &str) -> Result<(), RootError> {
        let dir = self.dir(path)?;
        rustix::fs::fsync(dir.fd()).map_err(|e| self.fail(path, e))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, RootError> {
        let dir = self.dir(path)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir.fd()).map_err(|e| self.fail(path, e))? {
            let entry = entry.map_err(|e| self.fail(path, e))?;
            let name = entry.file_name().to_string_lossy();
            if name != "." && name != ".." {
                names.push(name.into_owned());
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), RootError> {
        let (a, a_leaf) = self.parent(from)?;
        let (b, b_leaf) = self.parent(to)?;
        match rustix::fs::renameat(a.fd(), a_leaf, b.fd(), b_leaf) {
            Ok(()) => Ok(()),
            // A file over a directory or a directory over a file.
            Err(Errno::ISDIR | Errno::NOTDIR) => Err(RootError::new(
                ErrorCode::Exists,
                format!("{}/{to}: of another kind than {from}", self.label),
            )),
            Err(e) => Err(self.fail(from, e)),
        }
    }

    fn remove_file(&self, path: &str) -> Result<bool, RootError> {
        let (dir, leaf) = match self.parent(path) {
            Err(e) if e.code == ErrorCode::NotFound => return Ok(false),
            other => other?,
        };
        match rustix::fs::unlinkat(dir.fd(), leaf, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.fail(path, e)),
        }
    }

    fn remove_tree(&self, path: &str) -> Result<bool, RootError> {
        let (dir, leaf) = match self.parent(path) {
            Err(e) if e.code == ErrorCode::NotFound => return Ok(false),
            other => other?,
        };
        let st = match rustix::fs::statat(dir.fd(), leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.fail(path, e)),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(self.refused(path, "not a directory (remove-file removes files)"));
        }
        let sub = rustix::fs::openat(dir.fd(), leaf, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.fail(path, e))?;
        self.remove_dir_contents(&sub, path)?;
        match rustix::fs::unlinkat(dir.fd(), leaf, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.fail(path, e)),
        }
    }

    fn lock(&self, path: &str, exclusive: bool, wait: bool) -> Result<Option<u64>, RootError> {
        let file = self.open_file(path, OFlags::RDWR | OFlags::CREATE)?;
        let op = match (exclusive, wait) {
            (true, true) => FlockOperation::LockExclusive,
            (true, false) => FlockOperation::NonBlockingLockExclusive,
            (false, true) => FlockOperation::LockShared,
            (false, false) => FlockOperation::NonBlockingLockShared,
        };
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => break,
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(self.fail(path, e)),
            }
        }
        // The file may have been removed (or replaced) while this waited:
        // then the lock guards nothing.
        let held = rustix::fs::fstat(&file).map_err(|e| self.fail(path, e))?;
        let here = self.parent(path).ok().and_then(|(dir, leaf)| {
            rustix::fs::statat(dir.fd(), leaf, AtFlags::SYMLINK_NOFOLLOW).ok()
        });
        if held.st_nlink == 0
            || here.is_none_or(|h| (h.st_dev, h.st_ino) != (held.st_dev, held.st_ino))
        {
            return Err(RootError::new(
                ErrorCode::Gone,
                format!(
                    "{}/{path} was removed while waiting for its lock",
                    self.label
                ),
            ));
        }
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle, file);
        Ok(Some(handle))
    }

    fn unlock(&self, handle: u64) {
        // Closing the file releases its lock.
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
    }
}
