//! The outbox of the PostgreSQL store: one row per notification in
//! `agent_session_outbox`, in the sessions' database.
//!
//! - `enqueue` inserts a pending row (an existing id is left alone), with
//!   the writer that queued it in its record. A writer is one database
//!   session per process, holding an advisory lock on a random key for as
//!   long as it lives: the server releases the lock when the process dies
//!   or its connection breaks, which is how a sender tells that the event
//!   a notification announces will never be appended.
//! - Senders claim due rows with `FOR UPDATE SKIP LOCKED`, setting
//!   `claimed_by` and `claimed_until` (server time): several hosts deliver
//!   at once without attempting the same `webhook-id` twice, and a claim
//!   whose sender died is taken over once it has expired.
//! - Recording an attempt releases the claim, and only the claim's holder
//!   may record.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Claimed, Claims, Delivery, DeliveryState, Outbox, check_id};
use crate::pg_store::{Pool, Tls, drop_off_runtime};
use agent_session_core::delivery::HOLD_BACK_MS;
use agent_session_core::{Notification, Notifier};

/// Removed per statement by [`Outbox::prune`], so a large cleanup does not
/// hold one long transaction.
const PRUNE_BATCH: i64 = 1000;

/// The webhook outbox in a PostgreSQL database (see the module docs). Made
/// by [`crate::PgStore::outbox`].
pub struct PgOutbox {
    pool: Pool,
    config: postgres::Config,
    tls: Tls,
    /// This process's writer: its name and the connection holding its lock,
    /// made on the first enqueue.
    writer: Mutex<Option<Writer>>,
}

struct Writer {
    name: String,
    db: postgres::Client,
    insert: postgres::Statement,
}

impl PgOutbox {
    pub(crate) fn new(pool: Pool, config: postgres::Config, tls: Tls) -> Self {
        Self {
            pool,
            config,
            tls,
            writer: Mutex::new(None),
        }
    }

    fn db(
        &self,
    ) -> io::Result<r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<Tls>>> {
        self.pool
            .get()
            .map_err(|e| io::Error::other(format!("no connection to PostgreSQL: {e}")))
    }

    /// A new writer: a connection of its own, holding the advisory lock
    /// that says it lives.
    fn new_writer(&self) -> io::Result<Writer> {
        let mut db = self.config.connect(self.tls.clone()).map_err(err)?;
        let key = loop {
            // Random keys; in the unlikely case one is taken, another.
            let key = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))? as i64;
            let got: bool = db
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map_err(err)?
                .get(0);
            if got {
                break key;
            }
        };
        let insert = db
            .prepare(
                "INSERT INTO agent_session_outbox
                     (id, raised, state, next_attempt_at, record, session_id, seq)
                 VALUES ($1, $2, 'pending', $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .map_err(err)?;
        Ok(Writer {
            name: format!("pg-{key}"),
            db,
            insert,
        })
    }

    fn records(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> io::Result<Vec<Delivery>> {
        Ok(self
            .db()?
            .query(sql, params)
            .map_err(err)?
            .iter()
            .filter_map(|r| match parse(r.get(0)) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!("skipping an unreadable delivery record: {e}");
                    None
                }
            })
            .collect())
    }
}

impl Drop for PgOutbox {
    fn drop(&mut self) {
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writer.take() {
            drop_off_runtime(w);
        }
    }
}

impl Notifier for PgOutbox {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        check_id(n)?;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // Through the writer's own connection: an insert that succeeds was
        // made while its lock was held. A broken connection (the server
        // restarted) gets a new writer, once.
        let raised = signed(n.timestamp);
        for attempt in 0..2 {
            let mut w = match writer.take() {
                Some(w) if !w.db.is_closed() => w,
                _ => self
                    .new_writer()
                    .map_err(|e| format!("queueing a notification: {e}"))?,
            };
            let record = serde_json::to_string(&Delivery::queued_by(n.clone(), &w.name))
                .map_err(|e| e.to_string())?;
            let inserted = w.db.execute(
                &w.insert,
                &[&n.id, &raised, &record, &n.session_id, &signed(n.seq)],
            );
            match inserted {
                // Its connection is gone: dropped, and a new writer made.
                Err(e) if e.is_closed() && attempt == 0 => drop_off_runtime(w),
                Err(e) => {
                    *writer = Some(w);
                    return Err(format!("queueing a notification: {e}"));
                }
                Ok(_) => {
                    *writer = Some(w);
                    return Ok(());
                }
            }
        }
        Err("queueing a notification: the connection to PostgreSQL closed twice".into())
    }
}

impl Outbox for PgOutbox {
    fn sender(
        self: Arc<Self>,
        lease: Duration,
        policy: &str,
    ) -> io::Result<Option<Arc<dyn Claims>>> {
        let me = format!(
            "{}-{:016x}",
            std::process::id(),
            getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?
        );
        Ok(Some(Arc::new(PgClaims {
            outbox: self,
            me,
            lease_secs: lease.as_secs_f64(),
            unsaved: Mutex::new(HashMap::new()),
            taken_over: AtomicBool::new(false),
            policy: policy.to_owned(),
        })))
    }

    fn writer_alive(&self, writer: &str) -> io::Result<bool> {
        let Some(key) = writer
            .strip_prefix("pg-")
            .and_then(|k| k.parse::<i64>().ok())
        else {
            // Not a writer of this outbox.
            return Ok(false);
        };
        // A shared lock is granted only if the writer's exclusive one is
        // gone; if granted, it is given back at once.
        let row = self
            .db()?
            .query_one(
                "SELECT CASE WHEN pg_try_advisory_lock_shared($1)
                        THEN NOT pg_advisory_unlock_shared($1) ELSE true END",
                &[&key],
            )
            .map_err(err)?;
        Ok(row.get(0))
    }

    fn deliveries(&self) -> io::Result<Vec<Delivery>> {
        self.records(
            "SELECT record FROM agent_session_outbox ORDER BY raised, id",
            &[],
        )
    }

    fn find(&self, id: &str) -> io::Result<Option<Delivery>> {
        Ok(self
            .records(
                "SELECT record FROM agent_session_outbox WHERE id = $1",
                &[&id],
            )?
            .pop())
    }

    fn pending(&self) -> io::Result<Vec<Delivery>> {
        self.records(
            "SELECT record FROM agent_session_outbox WHERE state = 'pending' ORDER BY raised, id",
            &[],
        )
    }

    fn requeue(&self, d: &Delivery, now: u64) -> io::Result<Delivery> {
        let mut again = d.clone();
        again.state = DeliveryState::Pending;
        again.next_attempt_at = now;
        again.reason = None;
        let changed = self
            .db()?
            .execute(
                "UPDATE agent_session_outbox
                 SET state = 'pending', next_attempt_at = $2, record = $3,
                     claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1 AND state <> 'pending'",
                &[&again.id(), &signed(now), &json(&again)?],
            )
            .map_err(err)?;
        if changed == 0 {
            // Pending already (another requeue was first) or gone.
            return self.find(d.id())?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no delivery with id {}", d.id()),
                )
            });
        }
        Ok(again)
    }

    fn prune(&self, cutoff: u64, dry_run: bool) -> io::Result<Vec<String>> {
        let mut db = self.db()?;
        let finished = "state <> 'pending' AND raised < $1";
        if dry_run {
            let rows = db
                .query(
                    &format!(
                        "SELECT id FROM agent_session_outbox WHERE {finished} ORDER BY raised, id"
                    ),
                    &[&signed(cutoff)],
                )
                .map_err(err)?;
            return Ok(rows.iter().map(|r| r.get(0)).collect());
        }
        let mut removed = Vec::new();
        loop {
            let rows = db
                .query(
                    &format!(
                        "DELETE FROM agent_session_outbox WHERE id IN (
                             SELECT id FROM agent_session_outbox WHERE {finished} LIMIT $2)
                         RETURNING id"
                    ),
                    &[&signed(cutoff), &PRUNE_BATCH],
                )
                .map_err(err)?;
            let n = rows.len();
            removed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            if (n as i64) < PRUNE_BATCH {
                return Ok(removed);
            }
        }
    }
}

/// One sender's claims.
struct PgClaims {
    outbox: Arc<PgOutbox>,
    /// This sender's name in `claimed_by`.
    me: String,
    /// How long a claim holds, in seconds.
    lease_secs: f64,
    /// Deliveries whose record could not be written, by id: still claimed
    /// here (until the lease ends), recorded again by the next pass.
    unsaved: Mutex<HashMap<String, Delivery>>,
    /// Whether this sender has made the deliveries another sender's policy
    /// refused due (at its first look: claims are made off the async
    /// threads, and so is this).
    taken_over: AtomicBool,
    /// The fingerprint of this sender's address policy.
    policy: String,
}

impl Claims for PgClaims {
    fn claim_due(&self, now: u64, limit: usize) -> io::Result<Claimed> {
        let mut db = self.outbox.db()?;
        if !self.taken_over.load(Ordering::Relaxed) {
            // A delivery another address policy refused is due at once
            // for this sender, which may be allowed to dial it (the core's
            // `delivery::take_over`, in SQL).
            db.execute(
                "UPDATE agent_session_outbox SET next_attempt_at = $1
                 WHERE state = 'pending' AND next_attempt_at > $1
                   AND (record::jsonb #>> '{attempts,-1,refused}') = 'true'
                   AND (record::jsonb #>> '{attempts,-1,policy}') IS DISTINCT FROM $2",
                &[&signed(now), &self.policy],
            )
            .map_err(err)?;
            self.taken_over.store(true, Ordering::Relaxed);
        }
        let mut claimed = Claimed::default();
        // First what could not be recorded: handed out again only while
        // its claim is still this sender's (renewed here); once another
        // sender has taken it over, what that one records stands.
        let ready: Vec<Delivery> = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            // A finished one only needs recording; a pending one waits for
            // its time.
            .filter(|d| d.state != DeliveryState::Pending || d.next_attempt_at <= now)
            .take(limit)
            .cloned()
            .collect();
        if !ready.is_empty() {
            let ids: Vec<&str> = ready.iter().map(|d| d.id()).collect();
            let held: HashSet<String> = db
                .query(
                    "UPDATE agent_session_outbox
                     SET claimed_until = clock_timestamp() + make_interval(secs => $3)
                     WHERE id = ANY($1) AND claimed_by = $2
                     RETURNING id",
                    &[&ids, &self.me, &self.lease_secs],
                )
                .map_err(err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            for d in ready {
                unsaved.remove(d.id());
                if held.contains(d.id()) {
                    claimed.due.push(d);
                } else {
                    tracing::warn!(
                        id = d.id(),
                        "a delivery this sender could not record was taken over by another"
                    );
                }
            }
        }
        let room = limit
            .saturating_sub(claimed.due.len())
            .min(i64::MAX as usize) as i64;
        if room > 0 {
            // Never what waits in `unsaved`: its row may be older than what
            // this sender knows.
            let mine: Vec<String> = self
                .unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            let rows = match db.query(
                    "UPDATE agent_session_outbox o
                     SET claimed_by = $3, claimed_until = clock_timestamp() + make_interval(secs => $4)
                     FROM (SELECT id FROM agent_session_outbox c
                           WHERE state = 'pending' AND next_attempt_at <= $1
                             AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
                             AND id <> ALL($5)
                             -- In the order of the session's events: not
                             -- while an earlier one of it is pending, not
                             -- attempted yet or first attempted less than
                             -- the hold-back ago (the core's
                             -- `delivery::HoldBack`).
                             AND NOT EXISTS (
                                 SELECT 1 FROM agent_session_outbox e
                                 WHERE e.state = 'pending' AND c.session_id <> ''
                                   AND e.session_id = c.session_id AND e.seq < c.seq
                                   AND COALESCE((e.record::jsonb #>> '{attempts,0,at}')::bigint, $1)
                                       > $1 - $6)
                           ORDER BY next_attempt_at, id
                           LIMIT $2
                           FOR UPDATE OF c SKIP LOCKED) due
                     WHERE o.id = due.id
                     RETURNING o.record",
                    &[
                        &signed(now),
                        &room,
                        &self.me,
                        &self.lease_secs,
                        &mine,
                        &signed(HOLD_BACK_MS),
                    ],
                ) {
                Ok(rows) => rows,
                Err(e) => {
                    // What was renewed above waits for the next look.
                    let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
                    for d in claimed.due {
                        unsaved.insert(d.id().to_owned(), d);
                    }
                    return Err(err(e));
                }
            };
            for r in &rows {
                // An unreadable row stays claimed until its lease ends, and
                // is skipped again then; the others go on.
                match parse(r.get(0)) {
                    Ok(d) => claimed.due.push(d),
                    Err(e) => tracing::warn!("skipping a delivery: {e}"),
                }
            }
            claimed.due.sort_by_key(|d| d.next_attempt_at);
        }
        // Only for the report and the sender's next look: the claims stand
        // without it.
        match db.query_one(
            "SELECT count(*) FILTER (WHERE claimed_by IS DISTINCT FROM $1),
                    min(next_attempt_at) FILTER (
                        WHERE claimed_until IS NULL OR claimed_until < clock_timestamp())
             FROM agent_session_outbox WHERE state = 'pending'",
            &[&self.me],
        ) {
            Ok(row) => {
                claimed.waiting = row.get::<_, i64>(0) as usize;
                claimed.next_due = row.get::<_, Option<i64>>(1).map(|t| t.max(0) as u64);
            }
            Err(e) => tracing::warn!("counting waiting deliveries: {e}"),
        }
        Ok(claimed)
    }

    fn claim(&self, d: &Delivery) -> io::Result<Option<Delivery>> {
        let row = self
            .outbox
            .db()?
            .query_opt(
                "UPDATE agent_session_outbox
                 SET claimed_by = $2, claimed_until = clock_timestamp() + make_interval(secs => $3)
                 WHERE id = $1 AND state = 'pending'
                   AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
                 RETURNING record",
                &[&d.id(), &self.me, &self.lease_secs],
            )
            .map_err(err)?;
        row.map(|r| parse(r.get(0))).transpose()
    }

    fn save(&self, d: &Delivery) -> io::Result<()> {
        let saved = self.outbox.db().and_then(|mut db| {
            db.execute(
                "UPDATE agent_session_outbox
                 SET state = $2, next_attempt_at = $3, record = $4,
                     claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1 AND claimed_by = $5",
                &[
                    &d.id(),
                    &d.state.as_str(),
                    &signed(d.next_attempt_at),
                    &json(d)?,
                    &self.me,
                ],
            )
            .map_err(err)
        });
        match saved {
            Ok(1) => Ok(()),
            // Another sender took the claim over: what it records stands.
            Ok(_) => Err(io::Error::other(format!(
                "the claim on delivery {} expired and another sender took it over",
                d.id()
            ))),
            Err(e) => {
                self.unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(d.id().to_owned(), d.clone());
                Err(e)
            }
        }
    }
}

fn parse(record: &str) -> io::Result<Delivery> {
    serde_json::from_str(record).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a delivery record: {e}"),
        )
    })
}

fn json(d: &Delivery) -> io::Result<String> {
    serde_json::to_string(d).map_err(io::Error::other)
}

/// Times past `i64` (year 292 million) are clamped.
fn signed(ms: u64) -> i64 {
    ms.min(i64::MAX as u64) as i64
}

fn err(e: postgres::Error) -> io::Error {
    io::Error::other(e.to_string())
}
