//! The outbox of the filesystem store: the directory format's outbox
//! (`agent_session_dir_store::Outbox`: the intake, the delivery records,
//! the sender lock; one implementation for every host) over this host's
//! [`DirRoot`], seen through [`Outbox`] and [`Claims`].

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_session_core::{Notification, Notifier};
use agent_session_dir_store as dir;
use cap_std::fs::Dir;

pub use agent_session_dir_store::OUTBOX_DIR;

use super::{Claimed, Claims, Delivery, Outbox};
use crate::confined;
use crate::fs_store::to_io;
use crate::root::DirRoot;

/// A [`Notifier`] writing to `<root>/outbox/` (the directory format's
/// intake), and the delivery records.
pub struct FsOutbox {
    outbox: Arc<dir::Outbox<DirRoot>>,
}

impl FsOutbox {
    /// The outbox of the store rooted at `path` (created if needed).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_in(confined::open_root(path.as_ref())?)
    }

    /// The outbox of the store in the directory `root` (a capability the
    /// caller opened).
    pub fn open_in(root: Dir) -> io::Result<Self> {
        let root = DirRoot::new(&root, Path::new("the outbox's root"))?;
        Ok(Self {
            outbox: Arc::new(dir::Outbox::open(root).map_err(to_io)?),
        })
    }
}

impl Outbox for FsOutbox {
    fn sender(
        self: Arc<Self>,
        _lease: Duration,
        policy: &str,
    ) -> io::Result<Option<Arc<dyn Claims>>> {
        // No lease: a sender's claims end with its lock, that is, with it.
        Ok(self.outbox.sender().map_err(to_io)?.map(|sender| {
            sender.set_policy(policy);
            Arc::new(FsClaims(sender)) as Arc<dyn Claims>
        }))
    }

    fn writer_alive(&self, segment: &str) -> io::Result<bool> {
        self.outbox.writer_alive(segment).map_err(to_io)
    }

    fn deliveries(&self) -> io::Result<Vec<Delivery>> {
        self.outbox.deliveries().map_err(to_io)
    }

    fn prune(&self, cutoff: u64, dry_run: bool) -> io::Result<Vec<String>> {
        self.outbox.prune(cutoff, dry_run).map_err(to_io)
    }

    fn requeue(&self, d: &Delivery, now: u64) -> io::Result<Delivery> {
        self.outbox.requeue(d, now).map_err(to_io)
    }
}

/// The claims of the one sender holding the root's sender lock.
struct FsClaims(dir::Sender<DirRoot>);

impl Claims for FsClaims {
    fn claim_due(&self, now: u64, limit: usize) -> io::Result<Claimed> {
        Ok(self.0.claim_due(now, limit))
    }

    fn claim(&self, d: &Delivery) -> io::Result<Option<Delivery>> {
        self.0.claim(d).map_err(to_io)
    }

    fn save(&self, d: &Delivery) -> io::Result<()> {
        self.0.save(d).map_err(to_io)
    }
}

impl Notifier for FsOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        self.outbox.enqueue(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_session_core::DeliveryState;
    use agent_session_dir_store::{INTAKE_DIR, INTAKE_MARK, marked};

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

        let lock = sender.outbox.sender().unwrap().unwrap();
        assert!(
            sender.outbox.sender().unwrap().is_none(),
            "one sender at a time"
        );
        let fresh = lock.take_in().unwrap();
        assert_eq!(fresh.len(), 2);
        assert!(lock.take_in().unwrap().is_empty(), "taken in once");
        assert_eq!(
            segments(dir.path()),
            1,
            "the writer is alive: its segment stays"
        );
        let mut done = fresh[0].clone();
        done.state = DeliveryState::Delivered;
        lock.save(&done).unwrap();
        // A new holder of the lock reads live segments again: what was read
        // but not recorded (b) comes back, what was recorded (a) does not.
        drop(lock);
        let lock = sender.outbox.sender().unwrap().unwrap();
        let again: Vec<_> = lock.take_in().unwrap();
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
        drop(lock);
        let restarted = FsOutbox::open(dir.path()).unwrap();
        let lock = restarted.outbox.sender().unwrap().unwrap();
        assert!(lock.take_in().unwrap().is_empty());
        assert_eq!(segments(dir.path()), 0, "an ended segment is deleted");
        assert!(
            !restarted
                .writer_alive(again[0].writer.as_ref().unwrap())
                .unwrap()
        );
        let records = std::fs::read_dir(dir.path().join(OUTBOX_DIR))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(records, 2, "b and c recorded");
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
    fn what_a_sender_holds_in_memory_is_written_before_its_segment_goes() {
        let dir = tempfile::tempdir().unwrap();
        let writer = FsOutbox::open(dir.path()).unwrap();
        writer.enqueue(&note("msg_waiting")).unwrap();
        let sender = FsOutbox::open(dir.path()).unwrap();
        let lock = sender.outbox.sender().unwrap().unwrap();
        // Taken in from the live segment: in memory only (waiting its turn).
        assert_eq!(lock.take_in().unwrap().len(), 1);
        // Its writer ends; the same sender takes the ended segment in and
        // deletes it, then stops before attempting it.
        drop(writer);
        assert!(lock.take_in().unwrap().is_empty());
        assert_eq!(segments(dir.path()), 0);
        drop(lock);
        let states: Vec<_> = sender
            .deliveries()
            .unwrap()
            .into_iter()
            .map(|d| (d.notification.id, d.state))
            .collect();
        assert_eq!(states, [("msg_waiting".to_owned(), DeliveryState::Pending)]);
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
        let lock = outbox.outbox.sender().unwrap().unwrap();
        assert!(lock.take_in().unwrap().is_empty());
        let pending = outbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id(), "msg_whole");
        assert_eq!(segments(dir.path()), 0);
    }

    #[test]
    fn a_segment_still_being_made_is_not_removed_at_first_sight() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FsOutbox::open(dir.path()).unwrap();
        // Left by a process killed between making and naming a segment, or
        // one about to lock it: the sender cannot tell at one look.
        let fresh = dir.path().join(INTAKE_DIR).join(".1-cut.log.new");
        std::fs::write(&fresh, b"").unwrap();
        let sender = outbox.outbox.sender().unwrap().unwrap();
        for _ in 0..3 {
            assert!(sender.take_in().unwrap().is_empty());
        }
        assert!(fresh.exists());
        assert!(outbox.pending().unwrap().is_empty());
    }
}
