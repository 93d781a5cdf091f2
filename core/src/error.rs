//! Errors of the session API and of the storage capability.

use thiserror::Error;

/// Every failure of a session operation. Each variant maps one-to-one to the
/// `session-error` variant of the WIT contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// No session (or other object) with that id exists.
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation is not allowed in the session's current status.
    #[error("invalid transition: {0}")]
    InvalidTransition(String),
    /// An argument failed validation.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Another writer changed the session first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Storage failed or holds damaged data.
    #[error("storage error: {0}")]
    Storage(String),
    /// A configured bound was reached.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}

impl SessionError {
    /// Stable machine-readable name of the variant (as in the WIT contract).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not-found",
            Self::InvalidTransition(_) => "invalid-transition",
            Self::InvalidInput(_) => "invalid-input",
            Self::Conflict(_) => "conflict",
            Self::Storage(_) => "storage",
            Self::LimitExceeded(_) => "limit-exceeded",
        }
    }

    /// The human-readable message without the variant prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::InvalidTransition(m)
            | Self::InvalidInput(m)
            | Self::Conflict(m)
            | Self::Storage(m)
            | Self::LimitExceeded(m) => m,
        }
    }
}

/// Failures a [`Store`](crate::Store) reports; the `store-error` variant of
/// the WIT contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The expected version did not match, or a log position was taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The collection or key is not acceptable to the store.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Out of space or another quota.
    #[error("store full: {0}")]
    Full(String),
    /// Any other failure.
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        match e {
            // Callers that can name the session turn this into a clearer
            // conflict message; this is the fallback.
            StoreError::Conflict(m) => SessionError::Conflict(m),
            StoreError::InvalidKey(m) => SessionError::InvalidInput(m),
            StoreError::Full(m) => SessionError::Storage(format!("storage is full: {m}")),
            StoreError::Io(m) => SessionError::Storage(m),
        }
    }
}
