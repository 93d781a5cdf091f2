//! The notification intake: the `notify` capability as durable frames in
//! the root, where a sender (any host's) takes them in.
//!
//! `outbox/intake/<segment>.log`: where `enqueue` puts a notification,
//! before the core appends the events that raise it. Each process appends
//! to a segment of its own (marked frames, one `write` + `fdatasync`: the
//! cheapest durable write there is, as the segment's directory entry was
//! made durable when it was created), and holds a shared `flock` on it
//! while it may still write, so a sender can tell live segments from those
//! of processes that have ended (or rotated past 4 MiB).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_session_core::{Notification, Notifier};

use crate::{Held, Root, RootError, marked};

/// Directory of pending delivery records, relative to the root.
pub const OUTBOX_DIR: &str = "outbox";
/// Directory of finished delivery records.
pub const DONE_DIR: &str = "outbox/done";
/// Directory of intake segments.
pub const INTAKE_DIR: &str = "outbox/intake";
/// Marks every intake frame (see `marked`).
pub const INTAKE_MARK: &[u8; 4] = b"ASNQ";
/// The suffix of a segment's name once it is in use.
pub const SEGMENT_SUFFIX: &str = ".log";
/// A segment still being made: senders do not look at it.
pub const FRESH_SUFFIX: &str = ".new";
/// A process starts a new intake segment past this size, so the old one
/// can be taken in and deleted while the process goes on.
const SEGMENT_MAX: u64 = 4 << 20;
/// How long a rotated-away segment stays held (far longer than any one
/// operation takes between its enqueue and its append): an operation may
/// have queued its notification in it and not yet appended its event, and
/// a sender that saw the segment unheld would take its writer for ended
/// and discard that notification.
const RETIRED_HOLD: Duration = Duration::from_secs(60);

/// A segment this process writes: its path, lock and size.
struct Segment {
    path: String,
    lock: u64,
    size: u64,
}

/// The [`Notifier`] of a root: this process's intake segments.
pub struct Intake<R: Root> {
    root: R,
    current: Mutex<Option<Segment>>,
    /// Segments rotated away, still held for [`RETIRED_HOLD`].
    retired: Mutex<Vec<(Instant, u64)>>,
}

impl<R: Root> Intake<R> {
    /// The intake of `root`; its directories are made (durably) if new.
    pub fn open(root: R) -> Result<Self, RootError> {
        if root.stat(INTAKE_DIR)?.is_none() {
            root.create_dir(DONE_DIR, true)?;
            // Segments are trusted to be durable once their own entry is.
            root.create_dir(INTAKE_DIR, true)?;
        }
        Ok(Self {
            root,
            current: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The root this intake is on.
    pub fn root(&self) -> &R {
        &self.root
    }

    /// A new segment, locked (shared) before it gets the name senders look
    /// at: a sender must never take a segment that is about to be written
    /// for one whose process has ended.
    fn new_segment(&self) -> Result<Segment, RootError> {
        let unique = getrandom::u64()
            .map_err(|e| RootError::new(crate::ErrorCode::Io, format!("no randomness: {e}")))?;
        let name = format!("{}-{unique:016x}{SEGMENT_SUFFIX}", process_tag());
        let fresh = format!("{INTAKE_DIR}/.{name}{FRESH_SUFFIX}");
        let lock = Held::wait(&self.root, &fresh, false)?;
        let path = format!("{INTAKE_DIR}/{name}");
        self.root.rename(&fresh, &path)?;
        self.root.sync_dir(INTAKE_DIR)?;
        Ok(Segment {
            path,
            lock: lock.into_handle(),
            size: 0,
        })
    }

    /// Keep a segment held a while longer (see `retired`).
    fn retire(&self, lock: u64) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        retired.retain(|&(at, handle)| {
            let keep = now.duration_since(at) < RETIRED_HOLD;
            if !keep {
                self.root.unlock(handle);
            }
            keep
        });
        retired.push((now, lock));
    }
}

impl<R: Root> Drop for Intake<R> {
    fn drop(&mut self) {
        let current = self.current.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = current.take() {
            self.root.unlock(s.lock);
        }
        let retired = self.retired.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, handle) in retired.drain(..) {
            self.root.unlock(handle);
        }
    }
}

/// Who made a segment, for people reading the directory: the process id
/// natively; inside a component there is none to know.
fn process_tag() -> String {
    if cfg!(target_family = "wasm") {
        "component".into()
    } else {
        std::process::id().to_string()
    }
}

/// A notification id names a delivery record file: letters, digits, `-`,
/// `_` only.
pub fn check_id(n: &Notification) -> Result<(), String> {
    if n.id.is_empty()
        || !n
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "notification id {:?} is not a safe name (letters, digits, - and _)",
            n.id
        ));
    }
    Ok(())
}

impl<R: Root> Notifier for Intake<R> {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        check_id(n)?;
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let mut frame = Vec::with_capacity(marked::HEADER + body.len());
        marked::encode(INTAKE_MARK, &body, &mut frame);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let appended = (|| {
            if current.as_ref().is_none_or(|s| s.size >= SEGMENT_MAX) {
                let fresh = self.new_segment()?;
                if let Some(previous) = current.replace(fresh) {
                    self.retire(previous.lock);
                }
            }
            let segment = current.as_mut().expect("made above");
            // O_APPEND: one write per frame, so the frames of concurrent
            // callers never interleave.
            segment.size = self.root.append(&segment.path, &frame, true)?;
            Ok::<_, RootError>(())
        })();
        appended.map_err(|e| {
            // A failed write may have left part of a frame: later frames go
            // to a new segment, not behind it.
            if let Some(failed) = current.take() {
                self.retire(failed.lock);
            }
            format!("queueing in {INTAKE_DIR}: {e}")
        })
    }
}
