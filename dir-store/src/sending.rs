//! A root's webhook sender, without the HTTP: the [`Sender`]'s claims
//! joined to the engine's decisions (`Engine::prepare_delivery`,
//! `Engine::record_answer`). What the session-on-root component exports as
//! its `delivery` interface, for hosts that make the requests themselves
//! (Node, Python); the conformance runner drives it natively.

use std::collections::HashMap;
use std::sync::Arc;

use agent_session_core::address::AddressPolicy;
use agent_session_core::delivery::{self, Answer, Prepared, Request};
use agent_session_core::{Delivery, DeliveryState, Engine, Environment, Notifier, Store};

use crate::{Outbox, Root, RootError, Sender};

/// This process as the root's sender.
pub struct Sending<R: Root> {
    outbox: Arc<Outbox<R>>,
    sender: Sender<R>,
    policy: AddressPolicy,
    schedule_ms: Vec<u64>,
    /// Handed out as requests, by id, until their answers are recorded.
    asked: HashMap<String, Delivery>,
}

/// What a look for due deliveries found.
#[derive(Debug, Default)]
pub struct Due {
    /// Requests to make now; answer each with [`Sending::record_answer`].
    pub requests: Vec<Request>,
    /// Deliveries recorded in this look without a request: discarded,
    /// failed (the endpoint removed or disabled), or refused by the address
    /// policy (pending, for a sender allowed to dial it).
    pub settled: Vec<Delivery>,
    /// Pending deliveries not handed out.
    pub waiting: usize,
    /// When the earliest of those is due.
    pub next_due: Option<u64>,
}

/// A sender's options as every host gives them (the WIT
/// `sender-options`): the policy's exceptions and the retry schedule
/// (`None`: the core's default), checked.
pub fn sender_options(
    allow: &[String],
    schedule_ms: Option<Vec<u64>>,
) -> Result<(AddressPolicy, Option<Vec<u64>>), String> {
    let policy =
        AddressPolicy::from_rules(allow).map_err(|e| format!("webhook allow rule: {e}"))?;
    if let Some(s) = &schedule_ms {
        delivery::check_schedule(s)?;
    }
    Ok((policy, schedule_ms))
}

impl<R: Root> Sending<R> {
    /// Become `outbox`'s sender with `policy` and the retry schedule
    /// `schedule_ms` (the core's default if `None`); `None` while another
    /// process is.
    pub fn start(
        outbox: &Arc<Outbox<R>>,
        policy: AddressPolicy,
        schedule_ms: Option<Vec<u64>>,
    ) -> Result<Option<Self>, RootError> {
        let Some(sender) = outbox.sender()? else {
            return Ok(None);
        };
        sender.set_policy(&policy.fingerprint());
        Ok(Some(Self {
            outbox: Arc::clone(outbox),
            sender,
            policy,
            schedule_ms: schedule_ms.unwrap_or_else(|| delivery::DEFAULT_SCHEDULE_MS.to_vec()),
            asked: HashMap::new(),
        }))
    }

    /// Dial under `policy` and retry on `schedule_ms` (the core's default
    /// if `None`) from now on.
    pub fn configure(&mut self, policy: AddressPolicy, schedule_ms: Option<Vec<u64>>) {
        self.sender.set_policy(&policy.fingerprint());
        self.policy = policy;
        self.schedule_ms = schedule_ms.unwrap_or_else(|| delivery::DEFAULT_SCHEDULE_MS.to_vec());
    }

    /// The address policy this sender dials under.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Claim up to `limit` deliveries due by `due_by`, decide what each
    /// needs with `engine` (on the same root), and hand out the requests.
    pub fn claim_due<S: Store, N: Notifier, E: Environment>(
        &mut self,
        engine: &Engine<S, N, E>,
        due_by: u64,
        limit: usize,
    ) -> Due {
        let claimed = self.sender.claim_due(due_by, limit);
        let mut due = Due {
            waiting: claimed.waiting,
            next_due: claimed.next_due,
            ..Due::default()
        };
        // When that cannot be told, it may.
        let writer_alive = |w: &str| self.outbox.writer_alive(w).unwrap_or(true);
        // Read once for the look; not knowing it is no reason to give up.
        let endpoint = match claimed.due.is_empty() {
            true => None,
            false => engine.get_webhook().ok(),
        };
        for d in claimed.due {
            // One whose record could not be written before only needs
            // recording.
            if d.state != DeliveryState::Pending {
                let _ = self.sender.save(&d);
                continue;
            }
            let endpoint = endpoint.as_ref().map(Option::as_ref);
            match engine.prepare_delivery(
                d,
                endpoint,
                &self.policy,
                &self.schedule_ms,
                &writer_alive,
            ) {
                Prepared::Send(d, request) => {
                    self.asked.insert(d.id().to_owned(), d);
                    due.requests.push(request);
                }
                // Not recorded: kept by the claims, handed out again.
                Prepared::Settled(d) => {
                    let waits_for_its_event =
                        d.state == DeliveryState::Pending && d.attempts.is_empty();
                    if self.sender.save(&d).is_ok() && !waits_for_its_event {
                        due.settled.push(d);
                    }
                }
            }
        }
        due
    }

    /// Record the answer to request `id`, made at `at` and taking
    /// `duration_ms`: the delivery as it now stands, or `None` if no such
    /// request is waiting for its answer.
    pub fn record_answer<S: Store, N: Notifier, E: Environment>(
        &mut self,
        engine: &Engine<S, N, E>,
        id: &str,
        at: u64,
        duration_ms: u64,
        answer: &Answer,
    ) -> Result<Option<Delivery>, RootError> {
        let Some(d) = self.asked.remove(id) else {
            return Ok(None);
        };
        // A refusal is this sender's policy's.
        let answer = match answer {
            Answer::Refused { reason, .. } => &Answer::Refused {
                reason: reason.clone(),
                policy: Some(self.policy.fingerprint()),
            },
            other => other,
        };
        let d = engine.record_answer(d, at, duration_ms, answer, &self.schedule_ms);
        self.sender.save(&d)?;
        Ok(Some(d))
    }
}
