//! The notification outbox: the `notify` capability as durable files in
//! the store's root, and the record of every delivery attempt.
//!
//! - `outbox/<raised ms>-<id>.json`: a notification waiting for delivery,
//!   with the attempts made so far. The core queues it (crash-safely)
//!   before it appends the events that raise it.
//! - `outbox/done/<raised ms>-<id>.json`: delivered, failed or discarded.
//!
//! Only the sender holding `outbox/.sender.lock` rewrites pending records,
//! so processes sharing a root never send a notification twice at once.

use std::fs::File;
use std::io;
use std::path::Path;

use agent_session_core::{Notification, Notifier};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Serialize};

use crate::fs_store::write_durably;

/// Directory of pending notifications, relative to the root.
pub const OUTBOX_DIR: &str = "outbox";
/// Directory of finished deliveries, relative to the root.
const DONE_DIR: &str = "outbox/done";
const LOCK_FILE: &str = "outbox/.sender.lock";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up: attempts exhausted, endpoint gone (410) or refused by the
    /// address policy.
    Failed,
    /// Not sent: the operation that queued it did not commit.
    Discarded,
}

impl DeliveryState {
    /// The state's name, as in the records and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Discarded => "discarded",
        }
    }
}

/// One HTTP request to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, milliseconds since the Unix epoch.
    pub at: u64,
    /// How long it took until the response head (or the error).
    pub duration_ms: u64,
    /// The HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, if anything: connection error, timeout, refused
    /// address, non-2xx status.
    pub error: Option<String>,
}

/// A notification and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// What to send.
    pub notification: Notification,
    /// Where it stands.
    pub state: DeliveryState,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: u64,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// Why it failed or was discarded.
    pub reason: Option<String>,
}

impl Delivery {
    /// A delivery not attempted yet, due at once.
    pub fn new(notification: Notification) -> Self {
        Self {
            next_attempt_at: notification.timestamp,
            notification,
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            reason: None,
        }
    }

    /// The `webhook-id`.
    pub fn id(&self) -> &str {
        &self.notification.id
    }

    fn file_name(&self) -> String {
        file_name(&self.notification)
    }
}

fn file_name(n: &Notification) -> String {
    // Timestamp first keeps a directory listing in the order raised.
    format!("{:013}-{}.json", n.timestamp, n.id)
}

/// A [`Notifier`] writing to `<root>/outbox/`, and the delivery records.
pub struct FsOutbox {
    root: Dir,
}

/// Held by the one sender that delivers from an outbox; released on drop.
pub struct SenderLock {
    _file: File,
}

impl FsOutbox {
    /// The outbox of the store rooted at `path` (created if needed).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        Dir::create_ambient_dir_all(path, ambient_authority())?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        root.create_dir_all(DONE_DIR)?;
        Ok(Self { root })
    }

    /// The sender lock, if no other sender holds it.
    pub fn try_lock_sender(&self) -> io::Result<Option<SenderLock>> {
        let file = self
            .root
            .open_with(
                LOCK_FILE,
                OpenOptions::new().read(true).write(true).create(true),
            )?
            .into_std();
        match file.try_lock() {
            Ok(()) => Ok(Some(SenderLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Names of the pending records, oldest first.
    pub(crate) fn pending_names(&self) -> io::Result<Vec<String>> {
        list(&self.root, OUTBOX_DIR)
    }

    /// A pending record, or `None` if it is already finished (a sender
    /// stopped between recording the end and removing the pending copy;
    /// the copy is removed now).
    pub(crate) fn load_pending(&self, name: &str) -> io::Result<Option<Delivery>> {
        if self.root.exists(format!("{DONE_DIR}/{name}")) {
            remove_if_present(&self.root, &format!("{OUTBOX_DIR}/{name}"))?;
            return Ok(None);
        }
        read(&self.root, &format!("{OUTBOX_DIR}/{name}")).map(Some)
    }

    /// How many notifications wait for delivery (without reading them).
    pub fn pending_count(&self) -> io::Result<usize> {
        Ok(self.pending_names()?.len())
    }

    /// The notifications waiting for delivery, oldest first.
    pub fn pending(&self) -> io::Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for name in self.pending_names()? {
            out.extend(self.load_pending(&name)?);
        }
        Ok(out)
    }

    /// Every delivery record, pending and finished, oldest first.
    pub fn deliveries(&self) -> io::Result<Vec<Delivery>> {
        let mut out = self.pending()?;
        for name in list(&self.root, DONE_DIR)? {
            out.push(read(&self.root, &format!("{DONE_DIR}/{name}"))?);
        }
        out.sort_by_key(|d| (d.notification.timestamp, d.notification.id.clone()));
        Ok(out)
    }

    /// The delivery of notification `id`.
    pub fn find(&self, id: &str) -> io::Result<Option<Delivery>> {
        let suffix = format!("-{id}.json");
        for dir in [DONE_DIR, OUTBOX_DIR] {
            if let Some(name) = list(&self.root, dir)?
                .into_iter()
                .find(|n| n.ends_with(&suffix))
            {
                return read(&self.root, &format!("{dir}/{name}")).map(Some);
            }
        }
        Ok(None)
    }

    /// Record `d`: rewritten in place while pending; once finished, written
    /// to `done/` before the pending copy is removed, so a crash leaves at
    /// worst both (and [`FsOutbox::load_pending`] sorts that out).
    pub fn save(&self, d: &Delivery) -> io::Result<()> {
        let name = d.file_name();
        let bytes = serde_json::to_vec_pretty(d).map_err(io::Error::other)?;
        if d.state == DeliveryState::Pending {
            return write_durably(&self.root, Path::new(OUTBOX_DIR), &name, &bytes);
        }
        write_durably(&self.root, Path::new(DONE_DIR), &name, &bytes)?;
        remove_if_present(&self.root, &format!("{OUTBOX_DIR}/{name}"))
    }

    /// Put a finished delivery back in the queue, due at `now`; its
    /// attempts are kept and new ones are added.
    pub fn requeue(&self, d: &Delivery, now: u64) -> io::Result<Delivery> {
        let mut again = d.clone();
        again.state = DeliveryState::Pending;
        again.next_attempt_at = now;
        again.reason = None;
        let name = again.file_name();
        let bytes = serde_json::to_vec_pretty(&again).map_err(io::Error::other)?;
        write_durably(&self.root, Path::new(OUTBOX_DIR), &name, &bytes)?;
        remove_if_present(&self.root, &format!("{DONE_DIR}/{name}"))?;
        Ok(again)
    }
}

impl Notifier for FsOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        // The core makes ids from `msg_` + UUID v7: safe file names. Check
        // anyway, since any component may call this import.
        if n.id.is_empty()
            || !n
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "notification id {:?} is not a safe file name",
                n.id
            ));
        }
        let name = file_name(n);
        let bytes =
            serde_json::to_vec_pretty(&Delivery::new(n.clone())).map_err(|e| e.to_string())?;
        write_durably(&self.root, Path::new(OUTBOX_DIR), &name, &bytes)
            .map_err(|e| format!("writing {OUTBOX_DIR}/{name}: {e}"))
    }
}

/// Record file names in `dir`, sorted (temp files and the lock skipped).
fn list(root: &Dir, dir: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in root.read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read(root: &Dir, path: &str) -> io::Result<Delivery> {
    let bytes = root.read(path)?;
    serde_json::from_slice::<Delivery>(&bytes)
        // Outboxes written before delivery existed hold bare notifications.
        .or_else(|_| serde_json::from_slice::<Notification>(&bytes).map(Delivery::new))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

fn remove_if_present(root: &Dir, path: &str) -> io::Result<()> {
    match root.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
