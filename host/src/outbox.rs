//! The notification outbox: the `notify` capability as durable files in
//! the store's root. Each notification is one JSON file in `outbox/`,
//! written crash-safely before the session operation returns; a delivery
//! worker (see the webhook issue) drains it.

use std::io;
use std::path::Path;

use agent_session_core::{Notification, Notifier};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::fs_store::write_durably;

/// Directory of pending notifications, relative to the root.
pub const OUTBOX_DIR: &str = "outbox";

/// A [`Notifier`] writing to `<root>/outbox/`.
pub struct FsOutbox {
    root: Dir,
}

impl FsOutbox {
    /// The outbox of the store rooted at `path` (created if needed).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        Dir::create_ambient_dir_all(path, ambient_authority())?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        root.create_dir_all(OUTBOX_DIR)?;
        Ok(Self { root })
    }

    /// The notifications waiting for delivery, oldest first.
    pub fn pending(&self) -> io::Result<Vec<Notification>> {
        let mut names = Vec::new();
        for entry in self.root.read_dir(OUTBOX_DIR)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let bytes = self.root.read(format!("{OUTBOX_DIR}/{n}"))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{n}: {e}")))
            })
            .collect()
    }
}

impl Notifier for FsOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        // The core makes ids from `msg_` + UUID v7, so ids are safe file
        // names and the timestamp prefix keeps the directory in order.
        if !n
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "notification id {:?} is not a safe file name",
                n.id
            ));
        }
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let name = format!("{:013}-{}.json", n.timestamp, n.id);
        write_durably(&self.root, Path::new(OUTBOX_DIR), &name, &body)
            .map_err(|e| format!("writing {OUTBOX_DIR}/{name}: {e}"))
    }
}
