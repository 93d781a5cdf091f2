//! The exported `delivery` interface: this instance as the root's webhook
//! sender. The claims and decisions are `dir-store`'s `Sending` (the
//! directory outbox's claims, the core engine's decisions); this file only
//! translates WIT values. The host makes the HTTP requests.

use std::sync::{Arc, Mutex, MutexGuard};

use agent_session_core::delivery::Answer;
use agent_session_core::{Delivery, DeliveryState};
use agent_session_dir_store::{Outbox, Sending, sender_options};

use crate::exports::agent::session::delivery::{self as wit, Guest};
use crate::{HostRoot, engine, opened};

/// The outbox of this instance, opened on first use.
static OUTBOX: Mutex<Option<Arc<Outbox<HostRoot>>>> = Mutex::new(None);
/// This instance as the root's sender, between `start-sending` and
/// `stop-sending`.
static SENDING: Mutex<Option<Sending<HostRoot>>> = Mutex::new(None);

type R<T> = Result<T, wit::SessionError>;

fn outbox() -> R<Arc<Outbox<HostRoot>>> {
    opened(&OUTBOX, || Outbox::open(HostRoot))
        .map_err(|e| wit::SessionError::Storage(format!("opening the outbox: {e}")))
}

fn sending() -> MutexGuard<'static, Option<Sending<HostRoot>>> {
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
        let (policy, schedule_ms) = sender_options(&options.allow, options.schedule_ms)
            .map_err(wit::SessionError::InvalidInput)?;
        let mut slot = sending();
        if let Some(s) = slot.as_mut() {
            s.configure(policy, schedule_ms);
            return Ok(true);
        }
        let started = Sending::start(&outbox()?, policy, schedule_ms)
            .map_err(|e| storage("taking the sender lock", e))?;
        let sending = started.is_some();
        *slot = started;
        Ok(sending)
    }

    fn claim_due(due_by: u64, limit: u32) -> R<wit::Due> {
        let mut slot = sending();
        let s = slot.as_mut().ok_or_else(not_sending)?;
        let due = s.claim_due(&engine(), due_by, limit as usize);
        Ok(wit::Due {
            requests: due
                .requests
                .into_iter()
                .map(|r| wit::Request {
                    id: r.id,
                    url: r.url,
                    headers: r.headers,
                    body: r.body,
                })
                .collect(),
            settled: due.settled.iter().map(shown).collect(),
            waiting: due.waiting.min(u32::MAX as usize) as u32,
            next_due: due.next_due,
        })
    }

    fn check_address(host: String, address: String) -> Result<(), String> {
        let slot = sending();
        let s = slot
            .as_ref()
            .ok_or("this instance is not the root's sender")?;
        let ip = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        s.policy().check(&host, ip).map_err(|r| r.to_string())
    }

    fn record_answer(
        id: String,
        at: u64,
        duration_ms: u64,
        answer: wit::Answer,
    ) -> R<wit::Delivery> {
        let mut slot = sending();
        let s = slot.as_mut().ok_or_else(not_sending)?;
        let answer = match answer {
            wit::Answer::Response(r) => Answer::Status {
                status: r.status,
                retry_after: r.retry_after,
            },
            // The refusing policy is this sender's (recorded by `Sending`).
            wit::Answer::Refused(reason) => Answer::Refused {
                reason,
                policy: None,
            },
            wit::Answer::Failed(error) => Answer::Failed { error },
        };
        match s.record_answer(&engine(), &id, at, duration_ms, &answer) {
            Ok(Some(d)) => Ok(shown(&d)),
            Ok(None) => Err(wit::SessionError::NotFound(format!(
                "no request {id} is waiting for its answer"
            ))),
            Err(e) => Err(storage(&format!("recording delivery {id}"), e)),
        }
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
