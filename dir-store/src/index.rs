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
//! file (its identity changed) and reload.
//!
//! A writer killed between its history append and its summary frame would
//! leave the index behind the history. So before appending to a history,
//! the writer puts an *intent* frame: the key, the log length the append
//! will make, and the summary it will have. The summary frame that follows
//! settles it. An intent still unsettled when a reader scans is settled by
//! that reader once the key's writer lock is free (the writer has finished
//! or died): the history decides whether the append happened, and the
//! reader writes the summary that is true (see `DirStore::settle`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use agent_session_core::IndexEntry;

use crate::{Held, Root, RootError, marked};

const DIR: &str = "index";
/// Compact when the file is this large and mostly superseded frames.
const COMPACT_MIN_BYTES: u64 = 4 << 20;

#[derive(Default)]
struct Cache {
    /// The identity of the file read (0: none yet).
    id: u64,
    offset: u64,
    live: BTreeMap<String, Vec<u8>>,
    live_bytes: u64,
    /// Intents not (yet) followed by a summary frame of their key.
    pending: BTreeMap<String, Intent>,
    /// The generation the file began with, if it was written whole
    /// (compaction, clearing): told apart from a later file that got the
    /// same inode number.
    generation: Option<[u8; 8]>,
}

/// An append about to happen (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The key's log length once the append is made.
    pub length: u64,
    /// The key's summary then.
    pub summary: Vec<u8>,
}

/// In-memory view of the index files of one root.
#[derive(Default)]
pub struct Index {
    caches: Mutex<HashMap<String, Cache>>,
}

fn log_path(c: &str) -> String {
    format!("{DIR}/{c}.log")
}

fn lock<'a, R: Root>(root: &'a R, c: &str, exclusive: bool) -> Result<Held<'a, R>, RootError> {
    let path = format!("{DIR}/{c}.lock");
    // The directory exists after the first append; only then is it made.
    match Held::wait(root, &path, exclusive) {
        Err(e) if e.is_not_found() => {
            root.create_dir(DIR, false)?;
            Held::wait(root, &path, exclusive)
        }
        other => other,
    }
}

/// The exclusive lock of the index of `c` if nobody holds the lock now.
fn try_exclusive<'a, R: Root>(root: &'a R, c: &str) -> Result<Option<Held<'a, R>>, RootError> {
    match Held::try_take(root, &format!("{DIR}/{c}.lock"), true) {
        Err(e) if e.is_not_found() => Ok(None),
        other => other,
    }
}

/// Marks every summary frame of the index (see `marked`).
pub const MAGIC: &[u8; 4] = b"ASIX";
/// Marks an intent frame. (A reader that knows only summary frames skips
/// these as torn.)
pub const INTENT_MAGIC: &[u8; 4] = b"ASII";
/// Marks the generation frame that begins a file written whole: 8 random
/// bytes.
pub const GENERATION_MAGIC: &[u8; 4] = b"ASIG";
/// A removal intent's `length`: the key is about to be removed.
pub const REMOVAL: u64 = u64::MAX;

fn generation_frame(out: &mut Vec<u8>) -> Result<[u8; 8], RootError> {
    let g = getrandom::u64()
        .map_err(|e| RootError::new(crate::ErrorCode::Io, format!("no randomness: {e}")))?
        .to_le_bytes();
    marked::encode(GENERATION_MAGIC, &g, out);
    Ok(g)
}
const FRAME_HEADER: usize = marked::HEADER;

/// Frame body: key length (u8), key, summary.
pub fn encode(key: &str, summary: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(1 + key.len() + summary.len());
    body.push(key.len() as u8);
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(summary);
    marked::encode(MAGIC, &body, out);
}

/// Intent frame body: key length (u8), key, log length (u64 LE), summary.
fn encode_intent(key: &str, intent: &Intent, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(1 + key.len() + 8 + intent.summary.len());
    body.push(key.len() as u8);
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(&intent.length.to_le_bytes());
    body.extend_from_slice(&intent.summary);
    marked::encode(INTENT_MAGIC, &body, out);
}

fn decode_intent(body: &[u8]) -> Option<(String, Intent)> {
    let (key, rest) = decode(body)?;
    let length = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    Some((
        key,
        Intent {
            length,
            summary: rest[8..].to_vec(),
        },
    ))
}

/// The key and summary of a frame body.
pub fn decode(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let (&key_len, rest) = body.split_first()?;
    let key = rest.get(..usize::from(key_len))?;
    Some((
        String::from_utf8_lossy(key).into_owned(),
        rest[key.len()..].to_vec(),
    ))
}

impl Index {
    /// Whether something is at the collection's index file's path.
    pub fn present<R: Root>(&self, root: &R, c: &str) -> bool {
        !matches!(root.stat(&log_path(c)), Ok(None))
    }

    /// Put an intent frame for `key` and keep the index's shared lock,
    /// to be released once the summary frame is put ([`Index::put_held`]):
    /// compaction cannot come between the two.
    pub fn intend<'a, R: Root>(
        &self,
        root: &'a R,
        c: &str,
        key: &str,
        intent: &Intent,
    ) -> Result<Held<'a, R>, RootError> {
        let mut frame = Vec::new();
        encode_intent(key, intent, &mut frame);
        let shared = lock(root, c, false)?;
        root.append(&log_path(c), &frame, false)?;
        Ok(shared)
    }

    /// Record `key`'s summary (empty: the key is gone).
    pub fn put<R: Root>(
        &self,
        root: &R,
        c: &str,
        key: &str,
        summary: &[u8],
    ) -> Result<(), RootError> {
        let shared = lock(root, c, false)?;
        self.put_held(root, c, key, summary, shared)
    }

    /// [`Index::put`] under the shared lock `shared` (released here).
    pub fn put_held<R: Root>(
        &self,
        root: &R,
        c: &str,
        key: &str,
        summary: &[u8],
        shared: Held<'_, R>,
    ) -> Result<(), RootError> {
        let mut frame = Vec::with_capacity(FRAME_HEADER + 1 + key.len() + summary.len());
        encode(key, summary, &mut frame);
        let size = {
            let _shared = shared;
            // One write per frame: frames of concurrent appenders never
            // interleave.
            root.append(&log_path(c), &frame, false)?
        };
        // Only a process that has the index loaded knows how much of the
        // file is live; it compacts once most of the file is superseded.
        let live = self.with(c, |cache| (cache.id != 0).then_some(cache.live_bytes));
        if let Some(live) = live
            && size > COMPACT_MIN_BYTES
            && size > 3 * live
            // Never waits: writers hold shared locks, and a writer that
            // waited here would hold its key's lock meanwhile.
            && let Some(exclusive) = try_exclusive(root, c)?
        {
            self.compact_held(root, c, exclusive)?;
        }
        Ok(())
    }

    /// Settle the intents of writers that died between their intent and
    /// their summary. Under the index's exclusive lock, taken only if free:
    /// writers hold the shared lock from intent to summary, so an intent
    /// still unsettled in the file then is a dead writer's. `decide` says,
    /// from the histories, what each key's summary is (`key`, its intent,
    /// the summary it has now); the summaries are written under the same
    /// lock, before any later writer's intent. Returns whether any was.
    pub fn settle<R: Root>(
        &self,
        root: &R,
        c: &str,
        decide: impl Fn(&str, &Intent, Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<bool, RootError> {
        let Some(_exclusive) = try_exclusive(root, c)? else {
            return Ok(false);
        };
        self.refresh_as(root, c, true)?;
        let mut frames = Vec::new();
        for (key, intent, now) in self.pending(c) {
            if let Some(summary) = decide(&key, &intent, now.as_deref()) {
                encode(&key, &summary, &mut frames);
            }
        }
        if frames.is_empty() {
            return Ok(false);
        }
        root.append(&log_path(c), &frames, false)?;
        Ok(true)
    }

    /// Entries in descending key order after `after`.
    pub fn scan<R: Root>(
        &self,
        root: &R,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, RootError> {
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
    pub fn compact<R: Root>(&self, root: &R, c: &str) -> Result<(u64, u64), RootError> {
        let exclusive = lock(root, c, true)?;
        self.compact_held(root, c, exclusive)
    }

    fn compact_held<R: Root>(
        &self,
        root: &R,
        c: &str,
        _exclusive: Held<'_, R>,
    ) -> Result<(u64, u64), RootError> {
        // Nobody writes under the exclusive lock: a frame cut short is torn,
        // and the frames after it are read too.
        self.refresh_as(root, c, true)?;
        let before = root.stat(&log_path(c))?.map_or(0, |s| s.size);
        let mut bytes = Vec::new();
        let generation = generation_frame(&mut bytes)?;
        self.with(c, |cache| {
            for (k, s) in &cache.live {
                encode(k, s, &mut bytes);
            }
            // Unsettled intents stay, after the summaries they may replace.
            for (k, intent) in &cache.pending {
                encode_intent(k, intent, &mut bytes);
            }
        });
        root.replace(&log_path(c), &bytes, true)?;
        let id = root.stat(&log_path(c))?.map_or(0, |s| s.id);
        self.with(c, |cache| {
            cache.id = id;
            cache.offset = bytes.len() as u64;
            cache.generation = Some(generation);
        });
        Ok((before, bytes.len() as u64))
    }

    /// Drop every entry (before a rebuild).
    pub fn clear<R: Root>(&self, root: &R, c: &str) -> Result<(), RootError> {
        let _exclusive = lock(root, c, true)?;
        let mut bytes = Vec::new();
        generation_frame(&mut bytes)?;
        root.replace(&log_path(c), &bytes, true)?;
        self.with(c, |cache| *cache = Cache::default());
        Ok(())
    }

    /// The intents of `c` not settled in the file as last read, with the
    /// summary each key has now (none: not indexed).
    pub fn pending(&self, c: &str) -> Vec<(String, Intent, Option<Vec<u8>>)> {
        self.with(c, |cache| {
            cache
                .pending
                .iter()
                .map(|(k, i)| (k.clone(), i.clone(), cache.live.get(k).cloned()))
                .collect()
        })
    }

    fn with<T>(&self, c: &str, f: impl FnOnce(&mut Cache) -> T) -> T {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        f(caches.entry(c.to_owned()).or_default())
    }

    /// Read what was appended since the last look (or everything, if the
    /// file was replaced).
    fn refresh<R: Root>(&self, root: &R, c: &str) -> Result<(), RootError> {
        self.refresh_as(root, c, false)
    }

    /// [`Index::refresh`]; `complete` when nobody can be writing (under the
    /// exclusive lock): a frame cut short is then torn, not being written.
    fn refresh_as<R: Root>(&self, root: &R, c: &str, complete: bool) -> Result<(), RootError> {
        let path = log_path(c);
        let Some(stat) = root.stat(&path)? else {
            self.with(c, |cache| *cache = Cache::default());
            return Ok(());
        };
        let (id, offset, generation) = self.with(c, |cache| {
            if cache.id != stat.id || cache.offset > stat.size {
                *cache = Cache {
                    id: stat.id,
                    ..Cache::default()
                };
            }
            (cache.id, cache.offset, cache.generation)
        });
        if stat.size == offset {
            return Ok(());
        }
        // A file written whole since the last look may have been given the
        // inode number of the one read (after two compactions): its
        // generation tells.
        let mut offset = offset;
        if let Some(g) = generation {
            let head = root.read(&path, 0, (marked::HEADER + 8) as u64)?;
            let (frames, _) = marked::read_any(&[GENERATION_MAGIC], &head, &path, true);
            if frames.first().map(|(_, b)| *b) != Some(&g[..]) {
                self.with(c, |cache| {
                    *cache = Cache {
                        id: stat.id,
                        ..Cache::default()
                    }
                });
                offset = 0;
            }
        }
        let bytes = root.read(&path, offset, stat.size - offset)?;
        // A torn frame's key keeps its previous summary until its next
        // append, or `fsck --repair`.
        let (bodies, at) = marked::read_any(
            &[MAGIC, INTENT_MAGIC, GENERATION_MAGIC],
            &bytes,
            &path,
            complete,
        );
        self.with(c, |cache| {
            if cache.id != id {
                return;
            }
            for (kind, body) in bodies {
                if kind == 2 {
                    if offset == 0 && body.len() == 8 {
                        cache.generation = body.try_into().ok();
                    }
                    continue;
                }
                if kind == 1 {
                    if let Some((key, intent)) = decode_intent(body) {
                        cache.pending.insert(key, intent);
                    }
                    continue;
                }
                let Some((key, summary)) = decode(body) else {
                    continue;
                };
                cache.pending.remove(&key);
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
