//! The directory outbox: the notification intake ([`crate::Intake`]) and
//! the record of every delivery, for the one sender of a root at a time.
//!
//! - `outbox/intake/<segment>.log`: what processes queued (see `intake`).
//! - `outbox/<raised ms>-<id>.json`: a notification the sender took in,
//!   with the attempts made so far. Taking in is idempotent (a record that
//!   exists, pending or done, is not made again), so a segment is deleted
//!   only once its process is gone, and re-read after a sender restart.
//! - `outbox/done/<raised ms>-<id>.json`: delivered, failed or discarded.
//!
//! Only the [`Sender`] holding `outbox/.sender.lock` takes in and rewrites
//! records, so processes sharing a root (whatever their host) never send a
//! notification twice at once. What to do with a delivery (sign, send,
//! retry, give up) is the sender's caller's business; this module keeps
//! the records.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use agent_session_core::delivery::{self, HoldBack};
use agent_session_core::{Claimed, Delivery, DeliveryState, Notification, Notifier};

use crate::intake::{DONE_DIR, FRESH_SUFFIX, INTAKE_DIR, INTAKE_MARK, OUTBOX_DIR, SEGMENT_SUFFIX};
use crate::{ErrorCode, Held, Intake, Root, RootError, marked};

/// The lock the one sender of a root holds.
pub const SENDER_LOCK: &str = "outbox/.sender.lock";
/// The largest delivery record read (a notification is far smaller; its
/// attempts are capped by the retry schedule).
const MAX_RECORD_FILE: u64 = 16 << 20;
/// How long a segment still being made (`.<name>.new`) must be seen
/// unheld before it is taken for one whose making was cut short (its
/// process died between creating and naming it).
const FRESH_GRACE: Duration = Duration::from_secs(60);
/// How often a sender with work in memory reads the outbox again: often
/// enough that what other processes queue is not kept waiting, seldom
/// enough that a large backlog is not listed once per delivery.
const RESCAN: Duration = Duration::from_millis(100);

/// The name of a delivery's record file.
pub fn record_name(n: &Notification) -> String {
    // Timestamp first keeps a directory listing in the order raised.
    format!("{:013}-{}.json", n.timestamp, n.id)
}

/// A record file, as read.
enum Record {
    Missing,
    Unreadable(String),
    Found(Box<Delivery>),
}

/// The outbox of a root: its [`Notifier`] (this process's intake) and the
/// delivery records.
pub struct Outbox<R: Root> {
    intake: Intake<R>,
}

impl<R: Root> Outbox<R> {
    /// The outbox of `root`; its directories are made (durably) if new.
    pub fn open(root: R) -> Result<Self, RootError> {
        Ok(Self {
            intake: Intake::open(root)?,
        })
    }

    /// The root this outbox is in.
    pub fn root(&self) -> &R {
        self.intake.root()
    }

    /// Start sending: the [`Sender`] of this root, or `None` while another
    /// (in any process, any host) holds it.
    pub fn sender(self: &Arc<Self>) -> Result<Option<Sender<R>>, RootError> {
        let Some(lock) = Held::try_take(self.root(), SENDER_LOCK, true)? else {
            return Ok(None);
        };
        // A new holder reads the live segments from the start: what an
        // earlier one read but did not record is taken in again.
        Ok(Some(Sender {
            lock: lock.into_handle(),
            outbox: Arc::clone(self),
            state: Mutex::new(State::default()),
        }))
    }

    /// Whether the process that wrote intake segment `segment` (a
    /// [`Delivery::writer`]) may still append the event it announced.
    pub fn writer_alive(&self, segment: &str) -> Result<bool, RootError> {
        if !segment.ends_with(SEGMENT_SUFFIX) || segment.starts_with('.') {
            return Ok(false); // not a segment this format names
        }
        let path = format!("{INTAKE_DIR}/{segment}");
        if self.root().stat(&path)?.is_none() {
            // Taken in and deleted: its process had ended.
            return Ok(false);
        }
        Ok(Held::try_take(self.root(), &path, true)?.is_none())
    }

    /// Every delivery, pending and finished, and what is queued and not
    /// taken in yet; oldest first.
    pub fn deliveries(&self) -> Result<Vec<Delivery>, RootError> {
        // Intake first: a sender may take a notification in (and even
        // finish it) while this runs, and must then be seen in its record.
        let mut intake = Vec::new();
        for name in self.list(INTAKE_DIR, SEGMENT_SUFFIX)? {
            let path = format!("{INTAKE_DIR}/{name}");
            intake.extend(self.read_segment(&path, 0, false)?.0);
        }
        let mut out = Vec::new();
        let mut names = HashSet::new();
        for dir in [DONE_DIR, OUTBOX_DIR] {
            for name in self.list(dir, ".json")? {
                if !names.insert(name.clone()) {
                    continue; // finished: the pending copy is stale
                }
                match self.read(&format!("{dir}/{name}"))? {
                    Record::Found(d) => out.push(*d),
                    // Finished and moved by a sender meanwhile.
                    Record::Missing => {}
                    Record::Unreadable(e) => {
                        tracing::warn!("skipping an unreadable delivery record: {e}")
                    }
                }
            }
        }
        for n in intake {
            if names.insert(record_name(&n)) {
                out.push(Delivery::new(n));
            }
        }
        // Raised in the same millisecond, a session's go in its order.
        out.sort_by(|a, b| {
            let key = |d: &Delivery| {
                let n = &d.notification;
                (n.timestamp, n.session_id.clone(), n.seq, n.id.clone())
            };
            key(a).cmp(&key(b))
        });
        Ok(out)
    }

    /// Put a finished delivery back in the queue, due at `now`; its
    /// attempts are kept.
    pub fn requeue(&self, d: &Delivery, now: u64) -> Result<Delivery, RootError> {
        let mut again = d.clone();
        again.state = DeliveryState::Pending;
        again.next_attempt_at = now;
        again.reason = None;
        let name = record_name(&again.notification);
        // Moved first (atomically: never two copies, never none), then
        // made pending; a sender skips it in between (see `load_pending`),
        // and a repeated requeue finds it already moved.
        match self.root().rename(
            &format!("{DONE_DIR}/{name}"),
            &format!("{OUTBOX_DIR}/{name}"),
        ) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        self.save(&again)?;
        Ok(again)
    }

    /// Remove the records of finished deliveries raised before `cutoff`
    /// (milliseconds since the epoch); with `dry_run`, only list them.
    /// Returns their ids.
    pub fn prune(&self, cutoff: u64, dry_run: bool) -> Result<Vec<String>, RootError> {
        let mut removed = Vec::new();
        for name in self.list(DONE_DIR, ".json")? {
            // Names are `<raised ms, 13 digits>-<id>.json`.
            let raised = name.get(..13).and_then(|t| t.parse::<u64>().ok());
            let id = name.get(14..name.len() - ".json".len()).unwrap_or_default();
            if raised.is_none_or(|t| t >= cutoff) || id.is_empty() {
                continue;
            }
            if !dry_run {
                self.root().remove_file(&format!("{DONE_DIR}/{name}"))?;
            }
            removed.push(id.to_owned());
        }
        Ok(removed)
    }

    /// Record `d`: rewritten in place while pending; once finished, written
    /// to `done/` before the pending copy is removed, so a crash leaves at
    /// worst both (and the next look at the pending record sorts that out).
    fn save(&self, d: &Delivery) -> Result<(), RootError> {
        let name = record_name(&d.notification);
        let bytes = serde_json::to_vec_pretty(d)
            .map_err(|e| RootError::new(ErrorCode::Io, format!("encoding {name}: {e}")))?;
        if d.state == DeliveryState::Pending {
            return self
                .root()
                .replace(&format!("{OUTBOX_DIR}/{name}"), &bytes, true);
        }
        self.root()
            .replace(&format!("{DONE_DIR}/{name}"), &bytes, true)?;
        self.root().remove_file(&format!("{OUTBOX_DIR}/{name}"))?;
        Ok(())
    }

    /// A pending record, or `None` if it is not one: already finished (a
    /// sender stopped between recording the end and removing the pending
    /// copy, which is removed now), or a finished record being put back by
    /// [`Outbox::requeue`] (pending once that is done).
    fn load_pending(&self, name: &str) -> Result<Option<Delivery>, RootError> {
        if self.present(&format!("{DONE_DIR}/{name}"))? {
            self.root().remove_file(&format!("{OUTBOX_DIR}/{name}"))?;
            return Ok(None);
        }
        match self.read(&format!("{OUTBOX_DIR}/{name}"))? {
            Record::Found(d) if d.state == DeliveryState::Pending => Ok(Some(*d)),
            Record::Found(_) | Record::Missing => Ok(None),
            Record::Unreadable(e) => Err(RootError::new(ErrorCode::Io, e)),
        }
    }

    fn read(&self, path: &str) -> Result<Record, RootError> {
        let size = match self.root().stat(path) {
            Ok(Some(s)) => s.size,
            Ok(None) => return Ok(Record::Missing),
            Err(e) if e.code == ErrorCode::Refused => return Ok(Record::Unreadable(e.message)),
            Err(e) => return Err(e),
        };
        if size > MAX_RECORD_FILE {
            return Ok(Record::Unreadable(format!(
                "{path}: {size} bytes, more than a delivery record holds"
            )));
        }
        let bytes = match self.root().read(path, 0, size) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(Record::Missing),
            Err(e) => return Err(e),
        };
        Ok(serde_json::from_slice::<Delivery>(&bytes)
            // Outboxes written before delivery existed hold bare notifications.
            .or_else(|_| serde_json::from_slice::<Notification>(&bytes).map(Delivery::new))
            .map_or_else(
                |e| Record::Unreadable(format!("{path}: {e}")),
                |d| Record::Found(Box::new(d)),
            ))
    }

    /// Whether something is at `path`; what the root will not touch (a
    /// symbolic link, say) counts as something, so nothing is made over it.
    fn present(&self, path: &str) -> Result<bool, RootError> {
        match self.root().stat(path) {
            Ok(s) => Ok(s.is_some()),
            Err(e) if e.code == ErrorCode::Refused => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Names in `dir` ending in `suffix`, sorted (temp files, fresh
    /// segments and the lock skipped).
    fn list(&self, dir: &str, suffix: &str) -> Result<Vec<String>, RootError> {
        let mut names: Vec<String> = self
            .root()
            .list(dir)?
            .into_iter()
            .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The notifications in a segment from `from`, and how many bytes of
    /// whole frames that was. An `ended` segment will not grow: a frame cut
    /// short in it is torn, not being written.
    fn read_segment(
        &self,
        path: &str,
        from: u64,
        ended: bool,
    ) -> Result<(Vec<Notification>, u64), RootError> {
        let size = match self.root().stat(path)? {
            Some(s) => s.size,
            // Taken in and deleted by a sender meanwhile.
            None => return Ok((Vec::new(), 0)),
        };
        let bytes = match self.root().read(path, from, size.saturating_sub(from)) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
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
}

impl<R: Root> Notifier for Outbox<R> {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        self.intake.enqueue(n)
    }
}

/// The one sender of a root, holding [`SENDER_LOCK`] until dropped. Every
/// pending record is its own, so it keeps them in memory and only reads
/// what is new.
pub struct Sender<R: Root> {
    outbox: Arc<Outbox<R>>,
    lock: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// How far each live intake segment has been taken in.
    taken: HashMap<String, u64>,
    /// Pending deliveries by record name. This sender is the only writer
    /// of pending records while it holds the lock, so what it read once
    /// stays true until it changes it (records only appear: taken in, or
    /// put back by a requeue in another process).
    pending: HashMap<String, Delivery>,
    /// Handed out and not recorded yet.
    in_flight: HashSet<String>,
    /// When the outbox was last read (taken in, listed).
    scanned: Option<Instant>,
    /// Segments still being made, and since when they have been seen
    /// unheld.
    unheld_fresh: HashMap<String, Instant>,
    /// Looks at the outbox completed so far.
    pass: u64,
    /// The look in which each pending delivery became known here (those
    /// known from the start are not in it). One is handed out only after a
    /// later look has completed: a notification is queued before its event
    /// is appended, so an earlier one of its session (queued before this
    /// one's event could be appended) is known by then, wherever it was
    /// queued, and holds it back.
    known_in: HashMap<String, u64>,
    /// The [fingerprint] of the policy this sender dials under.
    ///
    /// [fingerprint]: agent_session_core::address::AddressPolicy::fingerprint
    policy: String,
}

impl<R: Root> Drop for Sender<R> {
    fn drop(&mut self) {
        self.outbox.root().unlock(self.lock);
    }
}

impl<R: Root> Sender<R> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take in what processes queued in their intake segments.
    ///
    /// A segment whose process has ended gets a pending record for every
    /// notification that has none yet, and is deleted. From a live segment,
    /// the notifications queued since the last look that have no record
    /// are returned (and kept pending in memory), to be attempted before
    /// anything is written for them (the attempt's record is the first).
    /// Either way nothing is made twice: a restarted sender reads the
    /// segments again from the start.
    pub fn take_in(&self) -> Result<Vec<Delivery>, RootError> {
        let mut state = self.state();
        let fresh = self.take_in_with(&mut state)?;
        for d in &fresh {
            state
                .pending
                .entry(record_name(&d.notification))
                .or_insert_with(|| d.clone());
        }
        Ok(fresh)
    }

    fn take_in_with(&self, state: &mut State) -> Result<Vec<Delivery>, RootError> {
        let outbox = &self.outbox;
        let root = outbox.root();
        let mut fresh = Vec::new();
        let mut progress = Vec::new();
        for name in outbox.list(INTAKE_DIR, SEGMENT_SUFFIX)? {
            let path = format!("{INTAKE_DIR}/{name}");
            if root.stat(&path)?.is_none() {
                continue; // taken in and deleted meanwhile
            }
            // Held (exclusively) from here to its deletion: an ended
            // segment's process is gone, and nobody else takes it in.
            let unheld = Held::try_take(root, &path, true)?;
            let ended = unheld.is_some();
            let from = match ended {
                true => 0,
                false => state.taken.get(&name).copied().unwrap_or(0),
            };
            let (notifications, used) = outbox.read_segment(&path, from, ended)?;
            for n in notifications {
                let record = record_name(&n);
                if outbox.present(&format!("{OUTBOX_DIR}/{record}"))?
                    || outbox.present(&format!("{DONE_DIR}/{record}"))?
                {
                    continue;
                }
                if let Some(d) = state.pending.get(&record) {
                    // Taken in while its segment was live, and only in
                    // memory since (waiting its turn, or in flight): the
                    // segment is about to go, so it is written now, or a
                    // sender stopping before it is attempted would lose
                    // it. (An attempt in flight records over it.)
                    if ended {
                        outbox.save(d)?;
                    }
                    continue;
                }
                match ended {
                    true => outbox.save(&Delivery::queued_by(n, &name))?,
                    false => fresh.push(Delivery::queued_by(n, &name)),
                }
            }
            if ended {
                // If this removal is lost, the segment is read again and
                // nothing is made twice.
                root.remove_file(&path)?;
                progress.push((name, None));
            } else {
                progress.push((name, Some(from + used)));
            }
        }
        self.sweep_fresh_segments(state)?;
        // Only a pass that went through moves the offsets on.
        for (name, offset) in progress {
            match offset {
                Some(o) => state.taken.insert(name, o),
                None => state.taken.remove(&name),
            };
        }
        Ok(fresh)
    }

    /// Remove segments whose making was cut short: seen unheld, with the
    /// name of one still being made, for [`FRESH_GRACE`]. (A maker locks
    /// its segment before naming it; a sender may look in between.)
    fn sweep_fresh_segments(&self, state: &mut State) -> Result<(), RootError> {
        let root = self.outbox.root();
        let mut seen = HashSet::new();
        for name in root.list(INTAKE_DIR)? {
            if !(name.starts_with('.') && name.ends_with(FRESH_SUFFIX)) {
                continue;
            }
            let path = format!("{INTAKE_DIR}/{name}");
            match root.stat(&path) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) if e.code == ErrorCode::Refused => continue,
                Err(e) => return Err(e),
            }
            let Some(_held) = Held::try_take(root, &path, true)? else {
                continue;
            };
            seen.insert(name.clone());
            let since = *state.unheld_fresh.entry(name).or_insert_with(Instant::now);
            if since.elapsed() >= FRESH_GRACE {
                root.remove_file(&path)?;
            }
        }
        state.unheld_fresh.retain(|name, _| seen.contains(name));
        Ok(())
    }

    /// Claim up to `limit` deliveries due at `now` (milliseconds since the
    /// epoch), and say what else waits. A failed read (a full disk, say) is
    /// logged and tried again at the next look; what is in memory is still
    /// handed out.
    pub fn claim_due(&self, now: u64, limit: usize) -> Claimed {
        let mut claimed = Claimed::default();
        let mut state = self.state();
        let q = &mut *state;
        let due_in_memory = q
            .pending
            .iter()
            .any(|(n, d)| d.next_attempt_at <= now && !q.in_flight.contains(n));
        if !due_in_memory || q.scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
            // What a look finds goes out after the next (see `known_in`),
            // which is made at once.
            if self.look(q, now) > 0 {
                self.look(q, now);
            }
        }
        // A session's notifications go out in order: one waits while an
        // earlier one of its session is pending here, in flight or not.
        let hold = HoldBack::new(q.pending.values(), now);
        let pass = q.pass;
        let mut free: Vec<(&String, &Delivery)> = Vec::new();
        for (n, d) in &q.pending {
            if q.in_flight.contains(n) || hold.holds(d) {
                continue;
            }
            if q.known_in.get(n).is_some_and(|&p| p >= pass) {
                let at = d.next_attempt_at.max(now + RESCAN.as_millis() as u64);
                claimed.next_due = Some(claimed.next_due.map_or(at, |t| t.min(at)));
                continue;
            }
            free.push((n, d));
        }
        claimed.waiting = q.pending.len() - q.in_flight.len() - free.len();
        free.sort_by_key(|(n, d)| (d.next_attempt_at, *n));
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
        claimed
    }

    /// Read what is new in the outbox (the intake, and records another
    /// process put back): how many deliveries became known.
    fn look(&self, q: &mut State, now: u64) -> usize {
        let before = q.pending.len();
        let pass = q.pass + 1;
        match self.take_in_with(q) {
            Ok(fresh) => {
                for d in fresh {
                    let name = record_name(&d.notification);
                    if !q.pending.contains_key(&name) {
                        q.known_in.insert(name.clone(), pass);
                        q.pending.insert(name, d);
                    }
                }
            }
            Err(e) => tracing::warn!("taking in queued notifications: {e}"),
        }
        let names = self.outbox.list(OUTBOX_DIR, ".json").unwrap_or_else(|e| {
            tracing::warn!("listing the outbox: {e}");
            Vec::new()
        });
        for name in names {
            if q.pending.contains_key(&name) {
                continue;
            }
            match self.outbox.load_pending(&name) {
                Ok(Some(mut d)) => {
                    // New to this sender: another policy may have refused
                    // it, which this one may allow.
                    delivery::take_over(&mut d, now, &q.policy);
                    q.known_in.insert(name.clone(), pass);
                    q.pending.insert(name, d);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %name, "skipping an unreadable outbox record: {e}")
                }
            }
        }
        q.pass = pass;
        q.scanned = Some(Instant::now());
        q.pending.len() - before
    }

    /// Dial under the policy with this [fingerprint] from now on: a pending
    /// delivery another policy refused is due at once for it.
    ///
    /// [fingerprint]: agent_session_core::address::AddressPolicy::fingerprint
    pub fn set_policy(&self, fingerprint: &str) {
        self.state().policy = fingerprint.to_owned();
    }

    /// Claim the pending delivery `d` (just put back by
    /// [`Outbox::requeue`]), unless it is claimed already.
    pub fn claim(&self, d: &Delivery) -> Result<Option<Delivery>, RootError> {
        let name = record_name(&d.notification);
        let mut q = self.state();
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

    /// Record `d`, a delivery claimed here, and release it. One that could
    /// not be recorded is kept in memory as it is now, to be recorded again
    /// (if finished) or attempted again, not before five seconds from now
    /// (the endpoint may have it already).
    pub fn save(&self, d: &Delivery) -> Result<(), RootError> {
        let name = record_name(&d.notification);
        let saved = self.outbox.save(d);
        let mut q = self.state();
        q.in_flight.remove(&name);
        match &saved {
            Ok(()) if d.state != DeliveryState::Pending => {
                q.pending.remove(&name);
                q.known_in.remove(&name);
            }
            Ok(()) => {
                q.pending.insert(name, d.clone());
            }
            Err(_) => {
                let mut again = d.clone();
                again.next_attempt_at = again.next_attempt_at.max(now_ms().saturating_add(5000));
                q.pending.insert(name, again);
            }
        }
        saved
    }
}

/// Now, in milliseconds since the Unix epoch (the unit of delivery times).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
