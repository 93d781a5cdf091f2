//! What became of a notification: the record of its delivery, shared by
//! every outbox (the directory's, the database's) and every sender.

use serde::{Deserialize, Serialize};

use crate::Notification;

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
    /// Who queued it, while that may matter: as long as that writer lives,
    /// the event it announces may still be appended. What the name means
    /// is the outbox's own (an intake segment, a database session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
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
            writer: None,
        }
    }

    /// A delivery of a notification just queued by `writer` (see
    /// [`Delivery::writer`]).
    pub fn queued_by(notification: Notification, writer: &str) -> Self {
        Self {
            writer: Some(writer.to_owned()),
            ..Self::new(notification)
        }
    }

    /// The `webhook-id`.
    pub fn id(&self) -> &str {
        &self.notification.id
    }
}

/// What a sender's look for due deliveries found.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The deliveries claimed, now due.
    pub due: Vec<Delivery>,
    /// Pending deliveries not claimed here (not due yet, or another
    /// sender's).
    pub waiting: usize,
    /// When the earliest pending delivery that nobody has claimed is due,
    /// if there is one.
    pub next_due: Option<u64>,
}
