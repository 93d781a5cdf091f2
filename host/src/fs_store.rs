//! The filesystem store: the `store` capability on one directory, confined
//! with cap-std so that no key can name a path outside the root.
//!
//! Layout under the root:
//!
//! ```text
//! FORMAT                            layout version of this root
//! <collection>/<key>/doc            current document (framed, checksummed)
//! <collection>/<key>/events.log     append-only log of framed records
//! <collection>/<key>/lock           advisory lock serializing writers
//! <collection>/.trash-*             entries being removed
//! ```
//!
//! Crash safety (BRIEF §4): a document is replaced by writing a temp file in
//! the same directory, fsyncing it, renaming it over the old one and
//! fsyncing the directory. Log records are appended with one `write` and an
//! `fdatasync` before the append is acknowledged. Writers of one entry, in
//! any process, are serialized by `flock` on its lock file (a lock that does
//! not vanish when another descriptor of the file is closed, unlike fcntl).

use std::io::{self, ErrorKind, Write};
use std::path::Path;

use agent_session_core::{Store, StoreError, Versioned};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// Written to `FORMAT` in a new root; a root with another format is refused.
const FORMAT: &str = "agent-session-fs 1\n";
const DOC_MAGIC: &[u8; 4] = b"ASD1";
const DOC_HEADER: usize = 4 + 8 + 4 + 4;
/// Log frame: payload length (u32), CRC-32 of seq+payload (u32), seq (u64).
const FRAME_HEADER: usize = 4 + 4 + 8;
/// Largest record or document accepted (far above the core's own caps).
const MAX_RECORD: usize = 64 * 1024 * 1024;
const MAX_NAME: usize = 64;

/// A [`Store`] on a directory. Cheap to share across threads (`Sync`);
/// several processes may open the same root.
pub struct FsStore {
    root: Dir,
}

impl FsStore {
    /// Open (creating if needed) the store rooted at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        Dir::create_ambient_dir_all(path, ambient_authority())?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        match root.read_to_string("FORMAT") {
            Ok(f) if f == FORMAT => {}
            Ok(other) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} holds an agent-session root of format {:?}; this build reads {:?}",
                        path.display(),
                        other.trim(),
                        FORMAT.trim()
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                write_durably(&root, Path::new("."), "FORMAT", FORMAT.as_bytes())?;
            }
            Err(e) => return Err(e),
        }
        Ok(Self { root })
    }

    fn entry(&self, c: &str, k: &str) -> Result<String, StoreError> {
        name("collection", c)?;
        name("key", k)?;
        Ok(format!("{c}/{k}"))
    }

    /// Take the entry's writer lock (blocking). Released when dropped.
    fn lock(&self, entry: &str) -> io::Result<std::fs::File> {
        let file = self
            .root
            .open_with(
                format!("{entry}/lock"),
                OpenOptions::new().read(true).write(true).create(true),
            )?
            .into_std();
        file.lock()?;
        Ok(file)
    }

    fn read_doc(&self, entry: &str) -> Result<Option<Versioned>, StoreError> {
        let bytes = match self.root.read(format!("{entry}/doc")) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&format!("reading {entry}/doc"), e)),
        };
        decode_doc(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Io(format!("document {entry}/doc is damaged")))
    }
}

impl Store for FsStore {
    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        let entry = self.entry(c, k)?;
        self.read_doc(&entry)
    }

    fn put(&self, c: &str, k: &str, data: &[u8], expected: u64) -> Result<u64, StoreError> {
        let entry = self.entry(c, k)?;
        if data.len() > MAX_RECORD {
            return Err(StoreError::Full(format!(
                "document of {} bytes",
                data.len()
            )));
        }
        let ctx = |what: &str| format!("{what} {entry}");
        if expected == 0 {
            let created = !self.root.exists(&entry);
            self.root
                .create_dir_all(&entry)
                .map_err(|e| io_error(&ctx("creating"), e))?;
            if created {
                sync_dir(&self.root, Path::new(c)).map_err(|e| io_error(&ctx("syncing"), e))?;
            }
        } else if !self.root.exists(&entry) {
            return Err(StoreError::Conflict(format!(
                "expected version {expected} of {entry}, but it does not exist"
            )));
        }
        let _lock = match self.lock(&entry) {
            Ok(lock) => lock,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::Conflict(format!(
                    "{entry} was removed by another writer"
                )));
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
        write_durably(
            &self.root,
            Path::new(&entry),
            "doc",
            &encode_doc(version, data),
        )
        .map_err(|e| io_error(&ctx("writing"), e))?;
        Ok(version)
    }

    fn remove(&self, c: &str, k: &str, expected: u64) -> Result<(), StoreError> {
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
        let Some(current) = self.read_doc(&entry)?.map(|d| d.version) else {
            // Removed by the writer that held the lock before us.
            return Ok(());
        };
        if current != expected {
            return Err(StoreError::Conflict(format!(
                "expected version {expected} of {entry}, found {current}"
            )));
        }
        // Rename first so the entry disappears atomically; writers blocked
        // on the lock then find no document and report a conflict.
        let trash = format!("{c}/.trash-{k}-{}", std::process::id());
        self.root
            .rename(&entry, &self.root, &trash)
            .map_err(|e| io_error(&ctx("removing"), e))?;
        sync_dir(&self.root, Path::new(c)).map_err(|e| io_error(&ctx("syncing"), e))?;
        self.root
            .remove_dir_all(&trash)
            .map_err(|e| io_error(&ctx("deleting"), e))
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        name("collection", c)?;
        let entries = match self.root.read_dir(c) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&format!("listing {c}"), e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&format!("listing {c}"), e))?;
            if let Ok(key) = entry.file_name().into_string()
                && name("key", &key).is_ok()
                && after.is_none_or(|a| key.as_str() < a)
            {
                keys.push(key);
            }
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(limit as usize);
        Ok(keys)
    }

    fn append(&self, c: &str, k: &str, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        let entry = self.entry(c, k)?;
        if record.len() > MAX_RECORD {
            return Err(StoreError::Full(format!(
                "record of {} bytes",
                record.len()
            )));
        }
        let path = format!("{entry}/events.log");
        let mut file = self
            .root
            .open_with(&path, OpenOptions::new().append(true).create(true))
            .map_err(|e| io_error(&format!("opening {path}"), e))?;
        // One write per frame: with O_APPEND, frames of concurrent writers
        // never interleave.
        file.write_all(&encode_frame(seq, record))
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&format!("appending to {path}"), e))
    }

    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let entry = self.entry(c, k)?;
        let path = format!("{entry}/events.log");
        let bytes = match self.root.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&format!("reading {path}"), e)),
        };
        let mut records = std::collections::BTreeMap::new();
        let mut at = 0;
        while at < bytes.len() {
            match decode_frame(&bytes[at..]) {
                Frame::Whole { seq, payload, len } => {
                    if seq >= from {
                        // A position written twice (a retried append) keeps
                        // its first record.
                        records.entry(seq).or_insert(payload);
                    }
                    at += len;
                }
                // A crash during an append leaves a torn last frame; the
                // append was never acknowledged, so it is ignored.
                Frame::Torn => break,
                Frame::Damaged => {
                    return Err(StoreError::Io(format!("{path} is damaged at byte {at}")));
                }
            }
        }
        Ok(records
            .into_values()
            .take(limit as usize)
            .map(<[u8]>::to_vec)
            .collect())
    }
}

/// Collection and key names become path components: only `[A-Za-z0-9_-]`.
fn name(what: &str, s: &str) -> Result<(), StoreError> {
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

/// Replace `dir/name` crash-safely: temp file, fsync, rename, fsync dir.
pub(crate) fn write_durably(root: &Dir, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = root.open_with(
        &tmp,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    root.rename(&tmp, root, &target)?;
    sync_dir(root, dir)
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

fn encode_frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

enum Frame<'a> {
    Whole {
        seq: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// The bytes end inside this frame.
    Torn,
    /// The frame is complete but its checksum does not match.
    Damaged,
}

fn decode_frame(bytes: &[u8]) -> Frame<'_> {
    if bytes.len() < FRAME_HEADER {
        return Frame::Torn;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[8..16]);
    if len > MAX_RECORD {
        return Frame::Damaged;
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Torn;
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&seq);
    h.update(payload);
    if h.finalize() != crc {
        // A damaged last frame is indistinguishable from a torn write.
        return if bytes.len() == FRAME_HEADER + len {
            Frame::Torn
        } else {
            Frame::Damaged
        };
    }
    Frame::Whole {
        seq: u64::from_le_bytes(seq),
        payload,
        len: FRAME_HEADER + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_versioned_and_conflicts_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        assert_eq!(s.get("c", "k").unwrap(), None);
        assert_eq!(s.put("c", "k", b"one", 0).unwrap(), 1);
        assert!(matches!(
            s.put("c", "k", b"x", 0),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.put("c", "k", b"two", 1).unwrap(), 2);
        assert!(matches!(
            s.put("c", "k", b"x", 1),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.get("c", "k").unwrap().unwrap().data, b"two");
        // Another handle on the same root sees the same state.
        let again = FsStore::open(dir.path()).unwrap();
        assert_eq!(again.get("c", "k").unwrap().unwrap().version, 2);
        assert!(matches!(
            s.remove("c", "k", 1),
            Err(StoreError::Conflict(_))
        ));
        s.remove("c", "k", 2).unwrap();
        assert_eq!(s.get("c", "k").unwrap(), None);
        s.remove("c", "k", 2).unwrap();
    }

    #[test]
    fn logs_keep_position_order_and_ignore_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.put("c", "k", b"doc", 0).unwrap();
        for seq in [0, 2, 1, 3] {
            s.append("c", "k", seq, format!("r{seq}").as_bytes())
                .unwrap();
        }
        let read = s.read("c", "k", 1, 2).unwrap();
        assert_eq!(read, [b"r1".to_vec(), b"r2".to_vec()]);
        let log = dir.path().join("c/k/events.log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes.extend_from_slice(&encode_frame(4, b"torn")[..10]);
        std::fs::write(&log, &bytes).unwrap();
        assert_eq!(s.read("c", "k", 0, 10).unwrap().len(), 4);
        // A flipped byte in the middle is damage, reported with the path.
        bytes[FRAME_HEADER] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();
        match s.read("c", "k", 0, 10) {
            Err(StoreError::Io(m)) => assert!(m.contains("c/k/events.log"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_are_descending_and_names_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        for k in ["a", "c", "b"] {
            s.put("col", k, b"x", 0).unwrap();
        }
        assert_eq!(s.keys("col", None, 10).unwrap(), ["c", "b", "a"]);
        assert_eq!(s.keys("col", Some("c"), 1).unwrap(), ["b"]);
        for bad in ["..", "../x", "a/b", "", ".trash", "a\0"] {
            assert!(
                matches!(s.get("col", bad), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
            assert!(
                matches!(s.put(bad, "k", b"x", 0), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_damaged_document_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.put("c", "k", b"doc", 0).unwrap();
        std::fs::write(dir.path().join("c/k/doc"), b"garbage").unwrap();
        assert!(matches!(s.get("c", "k"), Err(StoreError::Io(_))));
        std::fs::write(dir.path().join("FORMAT"), b"other 9\n").unwrap();
        assert!(FsStore::open(dir.path()).is_err());
    }
}
