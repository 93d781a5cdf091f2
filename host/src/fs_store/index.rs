//! The summary index of a collection: one append-only file
//! `index/<collection>.log` of `(key, summary)` frames, the last frame of a
//! key winning (an empty summary removes the key). Every process keeps the
//! file's live entries in memory and reads only what was appended since
//! its last look, so `scan` costs a map lookup after the first call.
//!
//! The index is derived data: it is written without fsync, and
//! `Engine::reindex` (run by `agent-session fsck --repair`, and
//! automatically after a migration or when the file is lost) rebuilds it
//! from the histories. Appenders hold a shared lock on
//! `index/<collection>.lock`; compaction rewrites the file under the
//! exclusive lock and renames it into place, and readers notice the new
//! inode and reload.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use agent_session_core::{IndexEntry, StoreError};
use cap_std::fs::{Dir, OpenOptions};

use super::{marked, sync_dir, write_durably};
use crate::confined;

const DIR: &str = "index";
/// Compact when the file is this large and mostly superseded frames.
const COMPACT_MIN_BYTES: u64 = 4 << 20;

#[derive(Default)]
struct Cache {
    /// Held open so its inode number cannot be reused by a later file.
    file: Option<std::fs::File>,
    ino: u64,
    offset: u64,
    live: BTreeMap<String, Vec<u8>>,
    live_bytes: u64,
}

/// In-memory view of the index files of one root.
#[derive(Default)]
pub struct Index {
    caches: Mutex<HashMap<String, Cache>>,
}

fn log_path(c: &str) -> String {
    format!("{DIR}/{c}.log")
}

fn lock(root: &Dir, c: &str, exclusive: bool) -> io::Result<std::fs::File> {
    let open = || {
        confined::open(
            root,
            format!("{DIR}/{c}.lock"),
            OpenOptions::new().read(true).write(true).create(true),
        )
    };
    // The directory exists after the first append; only then is it made.
    let f = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            root.create_dir_all(DIR)?;
            open()?
        }
        other => other?,
    };
    if exclusive {
        f.lock()?;
    } else {
        f.lock_shared()?;
    }
    Ok(f)
}

/// Marks every index frame (see `marked`).
pub(super) const MAGIC: &[u8; 4] = b"ASIX";
const FRAME_HEADER: usize = marked::HEADER;

/// Frame body: key length (u8), key, summary.
pub(super) fn encode(key: &str, summary: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(1 + key.len() + summary.len());
    body.push(key.len() as u8);
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(summary);
    marked::encode(MAGIC, &body, out);
}

pub(super) fn decode(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let (&key_len, rest) = body.split_first()?;
    let key = rest.get(..usize::from(key_len))?;
    Some((
        String::from_utf8_lossy(key).into_owned(),
        rest[key.len()..].to_vec(),
    ))
}

impl Index {
    /// Whether the collection has an index file.
    pub fn exists(root: &Dir, c: &str) -> bool {
        root.exists(log_path(c))
    }

    /// Record `key`'s summary (empty: the key is gone).
    pub fn put(&self, root: &Dir, c: &str, key: &str, summary: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(FRAME_HEADER + 1 + key.len() + summary.len());
        encode(key, summary, &mut frame);
        let size = {
            let _shared = lock(root, c, false)?;
            let mut f = confined::open(
                root,
                log_path(c),
                OpenOptions::new().append(true).create(true),
            )?;
            // One write per frame: frames of concurrent appenders never
            // interleave.
            f.write_all(&frame)?;
            f.metadata()?.len()
        };
        // Only a process that has the index loaded knows how much of the
        // file is live; it compacts once most of the file is superseded.
        let live = self.with(c, |cache| (cache.ino != 0).then_some(cache.live_bytes));
        if let Some(live) = live
            && size > COMPACT_MIN_BYTES
            && size > 3 * live
        {
            self.compact(root, c)?;
        }
        Ok(())
    }

    /// Entries in descending key order after `after`.
    pub fn scan(
        &self,
        root: &Dir,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.refresh(root, c)?;
        Ok(self.with(c, |cache| {
            let range = match after {
                Some(a) => cache
                    .live
                    .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(a))),
                None => cache.live.range::<str, _>(..),
            };
            range
                .rev()
                .take(limit as usize)
                .map(|(k, s)| IndexEntry {
                    key: k.clone(),
                    summary: s.clone(),
                })
                .collect()
        }))
    }

    /// Rewrite the file with live entries only. Returns the sizes before
    /// and after.
    pub fn compact(&self, root: &Dir, c: &str) -> io::Result<(u64, u64)> {
        let _exclusive = lock(root, c, true)?;
        self.refresh(root, c).map_err(io::Error::other)?;
        let before = root.metadata(log_path(c)).map(|m| m.len()).unwrap_or(0);
        let mut bytes = Vec::new();
        self.with(c, |cache| {
            for (k, s) in &cache.live {
                encode(k, s, &mut bytes);
            }
        });
        write_durably(root, Path::new(DIR), &format!("{c}.log"), &bytes)?;
        let file = confined::open(root, log_path(c), OpenOptions::new().read(true))?;
        let ino = file.metadata()?.ino();
        self.with(c, |cache| {
            cache.ino = ino;
            cache.file = Some(file);
            cache.offset = bytes.len() as u64;
        });
        Ok((before, bytes.len() as u64))
    }

    /// Drop every entry (before a rebuild).
    pub fn clear(&self, root: &Dir, c: &str) -> io::Result<()> {
        let _exclusive = lock(root, c, true)?;
        write_durably(root, Path::new(DIR), &format!("{c}.log"), &[])?;
        sync_dir(root, Path::new(DIR))?;
        self.with(c, |cache| *cache = Cache::default());
        Ok(())
    }

    fn with<T>(&self, c: &str, f: impl FnOnce(&mut Cache) -> T) -> T {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        f(caches.entry(c.to_owned()).or_default())
    }

    /// Read what was appended since the last look (or everything, if the
    /// file was replaced).
    fn refresh(&self, root: &Dir, c: &str) -> Result<(), StoreError> {
        let path = log_path(c);
        let io_err = |e: io::Error| StoreError::Io(format!("reading {path}: {e}"));
        let file = match confined::open(root, &path, OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.with(c, |cache| *cache = Cache::default());
                return Ok(());
            }
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        let (ino, offset) = self.with(c, |cache| {
            if cache.ino != meta.ino() || cache.offset > meta.len() {
                *cache = Cache {
                    ino: meta.ino(),
                    file: file.try_clone().ok(),
                    ..Cache::default()
                };
            }
            (cache.ino, cache.offset)
        });
        if meta.len() == offset {
            return Ok(());
        }
        let mut bytes = confined::buffer(meta.len() - offset).map_err(io_err)?;
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, offset).map_err(io_err)?;
        // A torn frame's key keeps its previous summary until its next
        // append, or `fsck --repair`.
        let (bodies, at) = marked::read(MAGIC, &bytes, &path, false);
        let updates: Vec<(String, Vec<u8>)> = bodies.into_iter().filter_map(decode).collect();
        self.with(c, |cache| {
            if cache.ino != ino {
                return;
            }
            for (key, summary) in updates {
                if let Some(old) = cache.live.remove(&key) {
                    cache.live_bytes -= (old.len() + key.len() + 1 + FRAME_HEADER) as u64;
                }
                if !summary.is_empty() {
                    cache.live_bytes += (summary.len() + key.len() + 1 + FRAME_HEADER) as u64;
                    cache.live.insert(key, summary);
                }
            }
            cache.offset = offset + at as u64;
        });
        Ok(())
    }
}
