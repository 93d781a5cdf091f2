//! Every file the host opens in a root goes through here: directories are
//! opened beneath a [`Dir`] capability without following symbolic links,
//! and files are refused unless they are plain files with exactly one
//! link, of the root's owner or of the user running the host.
//!
//! cap-std already refuses a path that resolves outside its `Dir` (an
//! absolute symlink, `..`); what it allows is a symlink that stays inside.
//! For a namespace root that is not enough (a `plugins/<name>` symlink to
//! `../sessions` would hand a plugin the main root), so sub-roots refuse
//! symlinks altogether. A hard link, in turn, is invisible to path
//! resolution: `events.log` linked to a file elsewhere is opened "inside"
//! the root and would be written and cut. Its link count gives it away.

use std::io::{self, ErrorKind, Read};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt, OpenOptions};

/// Open (creating it and its parents if needed) the directory at `path`,
/// chosen by the user: the one ambient open of a root.
pub fn open_root(path: &Path) -> io::Result<Dir> {
    match Dir::create_ambient_dir_all(path, ambient_authority()) {
        Err(e) if path.is_file() => {
            return Err(io::Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a file, not a directory ({e})", path.display()),
            ));
        }
        other => other?,
    }
    Dir::open_ambient_dir(path, ambient_authority())
}

/// Open directory `name` (one path segment) beneath `parent`, creating it
/// if `create`; a symbolic link (or anything but a directory) is refused.
pub fn subdir(parent: &Dir, name: &str, create: bool) -> io::Result<Dir> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a single path segment"),
        ));
    }
    if create {
        match parent.create_dir(name) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    let before = parent.symlink_metadata(name)?;
    if !before.is_dir() {
        return Err(refused(format!(
            "{name} is a {}, not a directory; refusing to follow it",
            kind(&before)
        )));
    }
    let dir = parent.open_dir(name)?;
    // The entry may have been swapped for a symlink between the two looks:
    // the directory opened must be the one that was looked at.
    let after = dir.dir_metadata()?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(refused(format!(
            "{name} changed while it was being opened; refusing it"
        )));
    }
    Ok(dir)
}

/// Open a store file beneath `root`; see [`check_file`].
///
/// Opened non-blocking, so that a FIFO planted in the root is refused by
/// the check instead of blocking the open (the flag changes nothing for a
/// regular file). Errors name the path.
pub fn open(
    root: &Dir,
    path: impl AsRef<Path>,
    options: &OpenOptions,
) -> io::Result<std::fs::File> {
    use cap_std::fs::OpenOptionsExt as _;
    let path = path.as_ref();
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut options = options.clone();
    options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let file = root.open_with(path, &options).map_err(named)?.into_std();
    check_file(root, path, &file)?;
    Ok(file)
}

/// The most the host reads from a store file at once (a whole log for
/// `fsck`, the unacknowledged end of a log): more is refused as damage
/// rather than risking the process on a file's claimed size.
pub const MAX_BUFFER: u64 = 1 << 30;

/// A zeroed buffer of `len` bytes, or an error if it is larger than
/// [`MAX_BUFFER`] or cannot be had: the size of a store file is not trusted
/// with an allocation that aborts the process when it fails (a sparse
/// 100 GB log, say).
pub fn buffer(len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = reserve(len)?;
    bytes.resize(len as usize, 0);
    Ok(bytes)
}

/// An empty buffer with room for exactly `len` bytes (see [`buffer`]).
fn reserve(len: u64) -> io::Result<Vec<u8>> {
    if len > MAX_BUFFER {
        return Err(io::Error::new(
            ErrorKind::FileTooLarge,
            format!("{len} bytes are more than the {MAX_BUFFER} read at once"),
        ));
    }
    let mut bytes = Vec::new();
    usize::try_from(len)
        .ok()
        .and_then(|n| bytes.try_reserve_exact(n).ok())
        .ok_or_else(|| {
            io::Error::new(
                ErrorKind::OutOfMemory,
                format!("{len} bytes cannot be held in memory"),
            )
        })?;
    Ok(bytes)
}

/// The whole content of a store file beneath `root` (see [`check_file`]),
/// refusing one larger than `max` bytes before reading it.
pub fn read(root: &Dir, path: impl AsRef<Path>, max: u64) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let file = open(root, path, OpenOptions::new().read(true))?;
    read_capped(file, path, max)
}

/// Read `file` whole, refusing it up front when it is larger than `max`,
/// and not trusting the size it had: a file that grows while it is read
/// still stops at `max`.
pub fn read_capped(file: std::fs::File, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_large(path, max));
    }
    let mut bytes = reserve(len)?;
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(bytes)
}

/// A store file must be a regular file with one link, of the root's owner
/// or of the user running this process (who made it): a hard link (to a
/// file outside the root, say) or a third user's file is damage, never
/// written, cut or read as if it were the store's.
pub fn check_file(root: &Dir, path: &Path, file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(refused(format!(
            "{} is not a regular file; refusing it",
            path.display()
        )));
    }
    // A file unlinked since it was opened (a removed key's lock) has 0.
    if m.nlink() > 1 {
        return Err(refused(format!(
            "{} has {} hard links; a store file has exactly one, so it is refused as \
             damage (it may be linked to a file outside the root)",
            path.display(),
            m.nlink()
        )));
    }
    let owner = root.dir_metadata()?.uid();
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != owner && m.uid() != me {
        return Err(refused(format!(
            "{} belongs to user {}, neither the root's owner ({owner}) nor this user ({me}); \
             refusing it",
            path.display(),
            m.uid()
        )));
    }
    Ok(())
}

fn too_large(path: &Path, max: u64) -> io::Error {
    io::Error::new(
        ErrorKind::FileTooLarge,
        format!("{} is larger than {max} bytes", path.display()),
    )
}

fn refused(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message)
}

fn kind(m: &cap_std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}
