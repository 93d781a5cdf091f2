//! The outbox of the filesystem store: the `notify` capability as durable
//! files in the store's root, and the record of every delivery attempt.
//!
//! - `outbox/intake/<segment>.log`: where `enqueue` puts a notification,
//!   before the core appends the events that raise it. Each process appends
//!   to a segment of its own (marked frames, one `write` + `fdatasync`: the
//!   cheapest durable write there is, as the segment's directory entry was
//!   made durable when it was created), and holds a shared `flock` on it
//!   while it may still write, so a sender can tell live segments from
//!   those of processes that have ended (or rotated past 4 MiB).
//! - `outbox/<raised ms>-<id>.json`: a notification the sender took in,
//!   with the attempts made so far. Taking in is idempotent (a record that
//!   exists, pending or done, is not made again), so a segment is deleted
//!   only once its process is gone, and re-read after a sender restart.
//! - `outbox/done/<raised ms>-<id>.json`: delivered, failed or discarded.
//!
//! Only the sender holding `outbox/.sender.lock` takes in and rewrites
//! records, so processes sharing a root never send a notification twice at
//! once.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_session_core::{Notification, Notifier};
use cap_std::fs::{Dir, OpenOptions};

pub use agent_session_dir_store::OUTBOX_DIR;
use agent_session_dir_store::{
    DONE_DIR, FRESH_SUFFIX, INTAKE_DIR, INTAKE_MARK, Intake, SEGMENT_SUFFIX, marked,
};

use super::{Claimed, Claims, Delivery, DeliveryState, Outbox, now_ms};
use crate::confined;
use crate::fs_store::{to_io, write_durably};
use crate::root::DirRoot;

const LOCK_FILE: &str = "outbox/.sender.lock";
/// The largest delivery record read (a notification is far smaller; its
/// attempts are capped by the retry schedule).
const MAX_RECORD_FILE: u64 = 16 << 20;

fn read_only() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true);
    o
}

/// The name of a delivery's record file.
fn file_name(n: &Notification) -> String {
    // Timestamp first keeps a directory listing in the order raised.
    format!("{:013}-{}.json", n.timestamp, n.id)
}

/// A [`Notifier`] writing to `<root>/outbox/` (the directory format's
/// intake), and the delivery records.
pub struct FsOutbox {
    root: Dir,
    /// This process's intake segments (the one implementation of the
    /// intake, shared with the other hosts through the component).
    intake: Intake<DirRoot>,
}

/// Held by the one sender that delivers from an outbox; released on drop.
pub(crate) struct SenderLock {
    _file: File,
    /// How far each live intake segment has been taken in under this lock.
    taken: Mutex<HashMap<String, u64>>,
}

impl FsOutbox {
    /// The outbox of the store rooted at `path` (created if needed).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_in(confined::open_root(path.as_ref())?)
    }

    /// The outbox of the store in the directory `root` (a capability the
    /// caller opened).
    pub fn open_in(root: Dir) -> io::Result<Self> {
        let intake =
            Intake::open(DirRoot::new(&root, Path::new("the outbox's root"))?).map_err(to_io)?;
        Ok(Self { root, intake })
    }

    /// Take in what processes queued in their intake segments. Only for
    /// the holder of the [`SenderLock`].
    ///
    /// A segment whose process has ended gets a pending record for every
    /// notification that has none yet, and is deleted. From a live segment,
    /// the notifications queued since the last look that have no record
    /// are returned, to be attempted before anything is written for them
    /// (the attempt's record is the first). Either way nothing is made
    /// twice: a restarted sender reads the segments again from the start.
    /// `held(record)` says which records the caller already holds in memory
    /// (they are neither returned nor written).
    pub(crate) fn take_in(
        &self,
        lock: &SenderLock,
        held: impl Fn(&str) -> bool,
    ) -> io::Result<Vec<Delivery>> {
        let mut fresh = Vec::new();
        let mut taken = lock.taken.lock().unwrap_or_else(|p| p.into_inner());
        let mut progress = Vec::new();
        for (name, path, file) in self.segments()? {
            let ended = !is_held(&file)?;
            let from = if ended {
                0
            } else {
                taken.get(&name).copied().unwrap_or(0)
            };
            let (notifications, used) = read_segment(&file, from, &path, ended)?;
            for n in notifications {
                let record = file_name(&n);
                if held(&record)
                    || self.root.exists(format!("{OUTBOX_DIR}/{record}"))
                    || self.root.exists(format!("{DONE_DIR}/{record}"))
                {
                    continue;
                }
                match ended {
                    true => self.save(&Delivery::queued_by(n, &name))?,
                    false => fresh.push(Delivery::queued_by(n, &name)),
                }
            }
            if ended {
                // If this removal is lost, the segment is read again and
                // nothing is made twice.
                remove_if_present(&self.root, &path)?;
                progress.push((name, None));
            } else {
                progress.push((name, Some(from + used)));
            }
        }
        self.sweep_fresh_segments()?;
        // Only a pass that went through moves the offsets on.
        for (name, offset) in progress {
            match offset {
                Some(o) => taken.insert(name, o),
                None => taken.remove(&name),
            };
        }
        Ok(fresh)
    }

    /// Remove segments whose making was cut short (their process died
    /// between creating and naming them): empty, unheld, a minute old.
    fn sweep_fresh_segments(&self) -> io::Result<()> {
        for entry in self.root.read_dir(INTAKE_DIR)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(FRESH_SUFFIX) {
                continue;
            }
            let old = entry
                .metadata()?
                .modified()
                .map(|t| t.into_std().elapsed().unwrap_or_default().as_secs() > 60)?;
            let path = format!("{INTAKE_DIR}/{name}");
            if old && !is_held(&confined::open(&self.root, &path, &read_only())?)? {
                remove_if_present(&self.root, &path)?;
            }
        }
        Ok(())
    }

    /// Notifications in the intake segments (not yet taken in).
    fn in_intake(&self) -> io::Result<Vec<Notification>> {
        let mut out = Vec::new();
        for (_, path, file) in self.segments()? {
            out.extend(read_segment(&file, 0, &path, false)?.0);
        }
        Ok(out)
    }

    /// The intake segments, open: name, path and file.
    fn segments(&self) -> io::Result<Vec<(String, String, File)>> {
        let mut out = Vec::new();
        for name in list_with(&self.root, INTAKE_DIR, SEGMENT_SUFFIX)? {
            let path = format!("{INTAKE_DIR}/{name}");
            match confined::open(&self.root, &path, &read_only()) {
                Ok(f) => out.push((name, path, f)),
                // Taken in and deleted by a sender meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The sender lock, if no other sender holds it.
    fn try_lock_sender(&self) -> io::Result<Option<SenderLock>> {
        let file = confined::open(
            &self.root,
            LOCK_FILE,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        match file.try_lock() {
            // A new holder reads the live segments from the start: what an
            // earlier one read but did not record is taken in again.
            Ok(()) => Ok(Some(SenderLock {
                _file: file,
                taken: Mutex::new(HashMap::new()),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Names of the pending records, oldest first.
    pub(crate) fn pending_names(&self) -> io::Result<Vec<String>> {
        list(&self.root, OUTBOX_DIR)
    }

    /// A pending record, or `None` if it is not one: already finished (a
    /// sender stopped between recording the end and removing the pending
    /// copy, which is removed now), or a finished record being put back by
    /// [`FsOutbox::requeue`] (pending once that is done).
    pub(crate) fn load_pending(&self, name: &str) -> io::Result<Option<Delivery>> {
        if self.root.exists(format!("{DONE_DIR}/{name}")) {
            remove_if_present(&self.root, &format!("{OUTBOX_DIR}/{name}"))?;
            return Ok(None);
        }
        match read(&self.root, &format!("{OUTBOX_DIR}/{name}")) {
            Ok(d) if d.state == DeliveryState::Pending => Ok(Some(d)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn all(&self) -> io::Result<Vec<Delivery>> {
        // Intake first: a sender may take a notification in (and even
        // finish it) while this runs, and must then be seen in its record.
        let intake = self.in_intake()?;
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for dir in [DONE_DIR, OUTBOX_DIR] {
            for name in list(&self.root, dir)? {
                if !names.insert(name.clone()) {
                    continue; // finished: the pending copy is stale
                }
                match read(&self.root, &format!("{dir}/{name}")) {
                    Ok(d) => out.push(d),
                    // Finished and moved by a sender meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        tracing::warn!("skipping an unreadable delivery record: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for n in intake {
            if names.insert(file_name(&n)) {
                out.push(Delivery::new(n));
            }
        }
        out.sort_by_key(|d| (d.notification.timestamp, d.notification.id.clone()));
        Ok(out)
    }

    /// Record `d`: rewritten in place while pending; once finished, written
    /// to `done/` before the pending copy is removed, so a crash leaves at
    /// worst both (and the next look at the pending record sorts that out).
    pub(crate) fn save(&self, d: &Delivery) -> io::Result<()> {
        let name = file_name(&d.notification);
        let bytes = serde_json::to_vec_pretty(d).map_err(io::Error::other)?;
        if d.state == DeliveryState::Pending {
            return write_durably(&self.root, Path::new(OUTBOX_DIR), &name, &bytes);
        }
        write_durably(&self.root, Path::new(DONE_DIR), &name, &bytes)?;
        remove_if_present(&self.root, &format!("{OUTBOX_DIR}/{name}"))
    }
}

impl Outbox for FsOutbox {
    fn sender(self: Arc<Self>, _lease: Duration) -> io::Result<Option<Arc<dyn Claims>>> {
        // No lease: a sender's claims end with its lock, that is, with it.
        Ok(self.try_lock_sender()?.map(|lock| {
            Arc::new(FsClaims {
                outbox: self,
                lock,
                queue: Mutex::new(Queue::default()),
            }) as Arc<dyn Claims>
        }))
    }

    fn writer_alive(&self, segment: &str) -> io::Result<bool> {
        match confined::open(&self.root, format!("{INTAKE_DIR}/{segment}"), &read_only()) {
            Ok(f) => is_held(&f),
            // Taken in and deleted: its process had ended.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn deliveries(&self) -> io::Result<Vec<Delivery>> {
        self.all()
    }

    fn prune(&self, cutoff: u64, dry_run: bool) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in list(&self.root, DONE_DIR)? {
            // Names are `<raised ms, 13 digits>-<id>.json`.
            let raised = name.get(..13).and_then(|t| t.parse::<u64>().ok());
            let id = name.get(14..name.len() - ".json".len()).unwrap_or_default();
            if raised.is_none_or(|t| t >= cutoff) || id.is_empty() {
                continue;
            }
            if !dry_run {
                remove_if_present(&self.root, &format!("{DONE_DIR}/{name}"))?;
            }
            removed.push(id.to_owned());
        }
        Ok(removed)
    }

    fn requeue(&self, d: &Delivery, now: u64) -> io::Result<Delivery> {
        let mut again = d.clone();
        again.state = DeliveryState::Pending;
        again.next_attempt_at = now;
        again.reason = None;
        let name = file_name(&again.notification);
        // Moved first (atomically: never two copies, never none), then
        // made pending; a sender skips it in between (see `load_pending`),
        // and a repeated requeue finds it already moved.
        match self.root.rename(
            format!("{DONE_DIR}/{name}"),
            &self.root,
            format!("{OUTBOX_DIR}/{name}"),
        ) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.save(&again)?;
        Ok(again)
    }
}

/// The claims of the one sender holding the lock: every pending record is
/// its own, so it keeps them in memory and only reads what is new.
struct FsClaims {
    outbox: Arc<FsOutbox>,
    lock: SenderLock,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Pending deliveries by record name. This sender is the only writer
    /// of pending records while it holds the lock, so what it read once
    /// stays true until it changes it (records only appear: taken in, or
    /// put back by a requeue in another process).
    pending: HashMap<String, Delivery>,
    /// Handed out and not recorded yet.
    in_flight: HashSet<String>,
    /// When the outbox was last read (taken in, listed).
    scanned: Option<std::time::Instant>,
}

/// How often a sender with work in memory reads the outbox again: often
/// enough that what other processes queue is not kept waiting, seldom
/// enough that a large backlog is not listed once per delivery.
const RESCAN: Duration = Duration::from_millis(100);

impl Claims for FsClaims {
    fn claim_due(&self, now: u64, limit: usize) -> io::Result<Claimed> {
        let outbox = &self.outbox;
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let due_in_memory = q
            .pending
            .iter()
            .any(|(n, d)| d.next_attempt_at <= now && !q.in_flight.contains(n));
        if !due_in_memory || q.scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
            // A failed read (a full disk, say) is logged and tried again
            // at the next look; what is in memory is still delivered.
            match outbox.take_in(&self.lock, |name| q.pending.contains_key(name)) {
                Ok(fresh) => {
                    for d in fresh {
                        q.pending.entry(file_name(&d.notification)).or_insert(d);
                    }
                }
                Err(e) => tracing::warn!("taking in queued notifications: {e}"),
            }
            let names = outbox.pending_names().unwrap_or_else(|e| {
                tracing::warn!("listing the outbox: {e}");
                Vec::new()
            });
            for name in names {
                if q.pending.contains_key(&name) {
                    continue;
                }
                match outbox.load_pending(&name) {
                    Ok(Some(d)) => {
                        q.pending.insert(name, d);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(file = %name, "skipping an unreadable outbox record: {e}")
                    }
                }
            }
            q.scanned = Some(std::time::Instant::now());
        }
        let mut free: Vec<(&String, &Delivery)> = q
            .pending
            .iter()
            .filter(|(n, _)| !q.in_flight.contains(*n))
            .collect();
        free.sort_by_key(|(n, d)| (d.next_attempt_at, *n));
        let mut claimed = Claimed::default();
        let mut due = Vec::new();
        for (name, d) in free {
            if d.next_attempt_at <= now && due.len() < limit {
                due.push((name.clone(), d.clone()));
            } else {
                claimed.waiting += 1;
                claimed.next_due = Some(
                    claimed
                        .next_due
                        .map_or(d.next_attempt_at, |t| t.min(d.next_attempt_at)),
                );
            }
        }
        for (name, d) in due {
            q.in_flight.insert(name);
            claimed.due.push(d);
        }
        Ok(claimed)
    }

    fn claim(&self, d: &Delivery) -> io::Result<Option<Delivery>> {
        let name = file_name(&d.notification);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.in_flight.contains(&name) {
            return Ok(None);
        }
        let Some(d) = self.outbox.load_pending(&name)? else {
            return Ok(None);
        };
        q.in_flight.insert(name.clone());
        q.pending.insert(name, d.clone());
        Ok(Some(d))
    }

    fn save(&self, d: &Delivery) -> io::Result<()> {
        let name = file_name(&d.notification);
        let saved = self.outbox.save(d);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.in_flight.remove(&name);
        match &saved {
            Ok(()) if d.state != DeliveryState::Pending => {
                q.pending.remove(&name);
            }
            Ok(()) => {
                q.pending.insert(name, d.clone());
            }
            // Kept as it is now, to be recorded again: not attempted again
            // before it is due (the endpoint may have it already).
            Err(_) => {
                let mut again = d.clone();
                again.next_attempt_at = again.next_attempt_at.max(now_ms().saturating_add(5000));
                q.pending.insert(name, again);
            }
        }
        saved
    }
}

impl Notifier for FsOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        self.intake.enqueue(n)
    }
}

/// Whether a process holds `file` (shared lock of a live writer).
fn is_held(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        // Released when `file` is closed.
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The notifications in a segment from `from`, and how many bytes of whole
/// frames that was. An `ended` segment will not grow: a frame cut short in
/// it is torn, not being written.
fn read_segment(
    file: &File,
    from: u64,
    path: &str,
    ended: bool,
) -> io::Result<(Vec<Notification>, u64)> {
    let len = file.metadata()?.len();
    let mut bytes = confined::buffer(len.saturating_sub(from))?;
    std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, from)?;
    let (bodies, used) = marked::read(INTAKE_MARK, &bytes, path, ended);
    let notifications = bodies
        .into_iter()
        .filter_map(|b| match serde_json::from_slice(b) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(path, "skipping an unreadable notification: {e}");
                None
            }
        })
        .collect();
    Ok((notifications, used as u64))
}

/// Record file names in `dir`, sorted (temp files and the lock skipped).
fn list(root: &Dir, dir: &str) -> io::Result<Vec<String>> {
    list_with(root, dir, ".json")
}

fn list_with(root: &Dir, dir: &str, suffix: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in root.read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read(root: &Dir, path: &str) -> io::Result<Delivery> {
    let bytes = confined::read(root, path, MAX_RECORD_FILE)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn note(id: &str) -> Notification {
        Notification {
            id: id.into(),
            session_id: "s1".into(),
            seq: 0,
            url: "https://example.test/h".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            kind: "session.started".into(),
            timestamp: 1_700_000_000_000,
            body: "{}".into(),
        }
    }

    fn segments(dir: &Path) -> usize {
        std::fs::read_dir(dir.join(INTAKE_DIR)).unwrap().count()
    }

    #[test]
    fn intake_is_taken_in_once_and_ended_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let writer = FsOutbox::open(dir.path()).unwrap();
        writer.enqueue(&note("msg_a")).unwrap();
        writer.enqueue(&note("msg_b")).unwrap();
        let sender = FsOutbox::open(dir.path()).unwrap();
        assert_eq!(
            sender.pending().unwrap().len(),
            2,
            "seen before it is taken in"
        );

        let lock = sender.try_lock_sender().unwrap().unwrap();
        assert!(
            sender.try_lock_sender().unwrap().is_none(),
            "one sender at a time"
        );
        let fresh = sender.take_in(&lock, |_| false).unwrap();
        assert_eq!(fresh.len(), 2);
        assert!(
            sender.take_in(&lock, |_| false).unwrap().is_empty(),
            "taken in once"
        );
        assert_eq!(
            segments(dir.path()),
            1,
            "the writer is alive: its segment stays"
        );
        let mut done = fresh[0].clone();
        done.state = DeliveryState::Delivered;
        sender.save(&done).unwrap();
        // A new holder of the lock reads live segments again: what was read
        // but not recorded (b) comes back, what was recorded (a) does not.
        drop(lock);
        let lock = sender.try_lock_sender().unwrap().unwrap();
        let again: Vec<_> = sender.take_in(&lock, |_| false).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id(), "msg_b");
        assert_eq!(
            again[0].writer.as_deref().map(|w| w.ends_with(".log")),
            Some(true)
        );
        assert!(
            sender
                .writer_alive(again[0].writer.as_ref().unwrap())
                .unwrap()
        );

        writer.enqueue(&note("msg_c")).unwrap();
        drop(writer);
        // A restarted sender reads the segment from the start: nothing is
        // made twice, finished records are not brought back.
        let restarted = FsOutbox::open(dir.path()).unwrap();
        assert!(restarted.take_in(&lock, |_| false).unwrap().is_empty());
        assert_eq!(segments(dir.path()), 0, "an ended segment is deleted");
        assert!(
            !restarted
                .writer_alive(again[0].writer.as_ref().unwrap())
                .unwrap()
        );
        assert_eq!(
            restarted.pending_names().unwrap().len(),
            2,
            "b and c recorded"
        );
        let states: Vec<_> = restarted
            .deliveries()
            .unwrap()
            .into_iter()
            .map(|d| (d.notification.id, d.state))
            .collect();
        assert_eq!(
            states,
            [
                ("msg_a".to_owned(), DeliveryState::Delivered),
                ("msg_b".to_owned(), DeliveryState::Pending),
                ("msg_c".to_owned(), DeliveryState::Pending),
            ]
        );

        // Retention: finished records only, by when they were raised.
        let cutoff = note("x").timestamp + 1;
        assert_eq!(restarted.prune(cutoff, true).unwrap(), ["msg_a"]);
        assert_eq!(restarted.deliveries().unwrap().len(), 3, "dry run");
        assert!(restarted.prune(cutoff - 1, false).unwrap().is_empty());
        assert_eq!(restarted.prune(cutoff, false).unwrap(), ["msg_a"]);
        assert_eq!(restarted.deliveries().unwrap().len(), 2);
    }

    #[test]
    fn a_frame_torn_by_a_killed_writer_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FsOutbox::open(dir.path()).unwrap();
        let mut bytes = Vec::new();
        for id in ["msg_whole", "msg_torn"] {
            marked::encode(
                INTAKE_MARK,
                &serde_json::to_vec(&note(id)).unwrap(),
                &mut bytes,
            );
        }
        bytes.truncate(bytes.len() - 5);
        std::fs::write(dir.path().join(INTAKE_DIR).join("1-dead.log"), bytes).unwrap();
        let lock = outbox.try_lock_sender().unwrap().unwrap();
        assert!(outbox.take_in(&lock, |_| false).unwrap().is_empty());
        let pending = outbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id(), "msg_whole");
        assert_eq!(segments(dir.path()), 0);
    }
}
