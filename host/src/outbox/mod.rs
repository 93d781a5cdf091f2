//! The notification outbox: where the `notify` capability queues
//! notifications durably, and where the webhook sender claims them and
//! records every delivery attempt.
//!
//! Two implementations, one per store:
//! - [`FsOutbox`] (`fs.rs`): files in the filesystem store's root; one
//!   sender at a time per root, under a lock file.
//! - [`PgOutbox`] (`pg.rs`): a table in the PostgreSQL store's database;
//!   any number of senders, each claiming rows for a lease.
//!
//! The sender ([`crate::webhook::Sender`]) sees both through [`Outbox`] and
//! [`Claims`].

mod fs;
mod pg;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use agent_session_core::Notifier;
pub use agent_session_core::{Attempt, Claimed, Delivery, DeliveryState};

pub use fs::{FsOutbox, OUTBOX_DIR};
pub use pg::PgOutbox;

/// An outbox the webhook sender can deliver from.
pub trait Outbox: Notifier + Send + Sync + 'static {
    /// Start delivering: the claims of one sender, whose address policy
    /// has the fingerprint `policy` (a pending delivery another policy
    /// refused is due at once for it), or `None` while another sender has
    /// this outbox to itself. A claim that is not recorded within `lease`
    /// (its sender died) may be taken over by another sender, where the
    /// outbox lets several run.
    fn sender(
        self: Arc<Self>,
        lease: Duration,
        policy: &str,
    ) -> io::Result<Option<Arc<dyn Claims>>>;

    /// Whether the writer that queued a delivery (its [`Delivery::writer`])
    /// may still append the event it announces.
    fn writer_alive(&self, writer: &str) -> io::Result<bool>;

    /// Every delivery, pending and finished, oldest first.
    fn deliveries(&self) -> io::Result<Vec<Delivery>>;

    /// The delivery of notification `id`.
    fn find(&self, id: &str) -> io::Result<Option<Delivery>> {
        Ok(self.deliveries()?.into_iter().find(|d| d.id() == id))
    }

    /// The notifications waiting for delivery, oldest first.
    fn pending(&self) -> io::Result<Vec<Delivery>> {
        Ok(self
            .deliveries()?
            .into_iter()
            .filter(|d| d.state == DeliveryState::Pending)
            .collect())
    }

    /// Put a finished delivery back in the queue, due at `now`; its
    /// attempts are kept and new ones are added.
    fn requeue(&self, d: &Delivery, now: u64) -> io::Result<Delivery>;

    /// Remove the records of finished deliveries raised before `cutoff`
    /// (milliseconds since the epoch); with `dry_run`, only list them.
    /// Returns their ids.
    fn prune(&self, cutoff: u64, dry_run: bool) -> io::Result<Vec<String>>;
}

/// The deliveries one sender has claimed: nobody else attempts them until
/// they are recorded (or, where leases apply, the lease runs out).
pub trait Claims: Send + Sync {
    /// Claim up to `limit` deliveries due at `now` (milliseconds since the
    /// epoch), and say what else waits.
    fn claim_due(&self, now: u64, limit: usize) -> io::Result<Claimed>;

    /// Claim the pending delivery `d` (just put back by
    /// [`Outbox::requeue`]), unless another sender has it.
    fn claim(&self, d: &Delivery) -> io::Result<Option<Delivery>>;

    /// Record `d`, a delivery claimed here, and release it. A delivery
    /// that could not be recorded stays claimed here and is handed out
    /// again by [`Claims::claim_due`], to be recorded again (if finished)
    /// or attempted again when due; where claims expire, only while its
    /// claim has not been taken over.
    fn save(&self, d: &Delivery) -> io::Result<()>;
}

/// A notification id names a file: the directory format's rule, for the
/// database outbox too (the core makes `msg_` + a UUID, but any component
/// may call `notify`).
use agent_session_dir_store::check_id;

/// Now, in milliseconds since the Unix epoch (the unit of delivery times).
pub(crate) fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}
