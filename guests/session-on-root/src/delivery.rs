//! The exported `delivery` interface: this instance as the root's webhook
//! sender. The claims are the directory outbox's (`dir-store`), every
//! decision is the core's (`agent_session_core::delivery`); the host only
//! makes the HTTP requests and reports the answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use agent_session_core::address::AddressPolicy;
use agent_session_core::delivery::{self, Answer, Prepared};
use agent_session_core::{Delivery, DeliveryState};
use agent_session_dir_store::{Outbox, Sender};

use crate::exports::agent::session::delivery::{self as wit, Guest};
use crate::{HostRoot, engine, opened};

/// The outbox of this instance, opened on first use.
static OUTBOX: Mutex<Option<Arc<Outbox<HostRoot>>>> = Mutex::new(None);
/// This instance as the root's sender, between `start-sending` and
/// `stop-sending`.
static SENDING: Mutex<Option<Sending>> = Mutex::new(None);

struct Sending {
    sender: Sender<HostRoot>,
    policy: AddressPolicy,
    schedule_ms: Vec<u64>,
    /// Handed out as requests, by id, until their answers are recorded.
    asked: HashMap<String, Delivery>,
}

type R<T> = Result<T, wit::SessionError>;

fn outbox() -> R<Arc<Outbox<HostRoot>>> {
    opened(&OUTBOX, || Outbox::open(HostRoot))
        .map_err(|e| wit::SessionError::Storage(format!("opening the outbox: {e}")))
}

fn sending() -> MutexGuard<'static, Option<Sending>> {
    SENDING.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_sending() -> wit::SessionError {
    wit::SessionError::InvalidInput("this instance is not the root's sender (start-sending)".into())
}

fn storage(what: &str, e: impl std::fmt::Display) -> wit::SessionError {
    wit::SessionError::Storage(format!("{what}: {e}"))
}

/// A delivery as the interface shows it (no secret).
fn shown(d: &Delivery) -> wit::Delivery {
    let n = &d.notification;
    wit::Delivery {
        id: n.id.clone(),
        session_id: n.session_id.clone(),
        seq: n.seq,
        kind: n.kind.clone(),
        url: n.url.clone(),
        timestamp: n.timestamp,
        state: match d.state {
            DeliveryState::Pending => wit::DeliveryState::Pending,
            DeliveryState::Delivered => wit::DeliveryState::Delivered,
            DeliveryState::Failed => wit::DeliveryState::Failed,
            DeliveryState::Discarded => wit::DeliveryState::Discarded,
        },
        next_attempt_at: d.next_attempt_at,
        attempts: d
            .attempts
            .iter()
            .map(|a| wit::Attempt {
                at: a.at,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error.clone(),
                refused: a.refused,
            })
            .collect(),
        reason: d.reason.clone(),
    }
}

impl Guest for crate::Component {
    fn start_sending(options: wit::SenderOptions) -> R<bool> {
        let mut slot = sending();
        if slot.is_some() {
            return Ok(true);
        }
        let policy = AddressPolicy::from_rules(&options.allow)
            .map_err(|e| wit::SessionError::InvalidInput(format!("webhook allow rule: {e}")))?;
        let schedule_ms = options
            .schedule_ms
            .unwrap_or_else(|| delivery::DEFAULT_SCHEDULE_MS.to_vec());
        let Some(sender) = outbox()?
            .sender()
            .map_err(|e| storage("taking the sender lock", e))?
        else {
            return Ok(false);
        };
        *slot = Some(Sending {
            sender,
            policy,
            schedule_ms,
            asked: HashMap::new(),
        });
        Ok(true)
    }

    fn claim_due(due_by: u64, limit: u32) -> R<wit::Due> {
        let mut slot = sending();
        let s = slot.as_mut().ok_or_else(not_sending)?;
        let claimed = s.sender.claim_due(due_by, limit as usize);
        let mut due = wit::Due {
            requests: Vec::new(),
            settled: Vec::new(),
            waiting: claimed.waiting.min(u32::MAX as usize) as u32,
            next_due: claimed.next_due,
        };
        for d in claimed.due {
            // One whose record could not be written before only needs
            // recording.
            let d = match d.state {
                DeliveryState::Pending => d,
                _ => {
                    let _ = s.sender.save(&d);
                    continue;
                }
            };
            let writer_alive = |w: &str| match outbox() {
                // When that cannot be told, it may.
                Ok(o) => o.writer_alive(w).unwrap_or(true),
                Err(_) => true,
            };
            match engine().prepare_delivery(d, &s.policy, &s.schedule_ms, &writer_alive) {
                Prepared::Send(d, request) => {
                    due.requests.push(wit::Request {
                        id: request.id,
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                    });
                    s.asked.insert(d.id().to_owned(), d);
                }
                Prepared::Settled(d) => {
                    // Not recorded: kept by the claims, handed out again.
                    if s.sender.save(&d).is_ok()
                        && !(d.state == DeliveryState::Pending && d.attempts.is_empty())
                    {
                        due.settled.push(shown(&d));
                    }
                }
            }
        }
        Ok(due)
    }

    fn check_address(host: String, address: String) -> Result<(), String> {
        let slot = sending();
        let s = slot
            .as_ref()
            .ok_or("this instance is not the root's sender")?;
        let ip = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        s.policy.check(&host, ip).map_err(|r| r.to_string())
    }

    fn record_answer(
        id: String,
        at: u64,
        duration_ms: u64,
        answer: wit::Answer,
    ) -> R<wit::Delivery> {
        let mut slot = sending();
        let s = slot.as_mut().ok_or_else(not_sending)?;
        let d = s.asked.remove(&id).ok_or_else(|| {
            wit::SessionError::NotFound(format!("no request {id} is waiting for its answer"))
        })?;
        let answer = match answer {
            wit::Answer::Response(r) => Answer::Status {
                status: r.status,
                retry_after: r.retry_after,
            },
            wit::Answer::Refused(reason) => Answer::Refused { reason },
            wit::Answer::Failed(error) => Answer::Failed { error },
        };
        let d = engine().record_answer(d, at, duration_ms, &answer, &s.schedule_ms);
        s.sender
            .save(&d)
            .map_err(|e| storage(&format!("recording delivery {id}"), e))?;
        Ok(shown(&d))
    }

    fn stop_sending() {
        sending().take();
    }

    fn deliveries() -> R<Vec<wit::Delivery>> {
        Ok(outbox()?
            .deliveries()
            .map_err(|e| storage("reading the outbox", e))?
            .iter()
            .map(shown)
            .collect())
    }
}
