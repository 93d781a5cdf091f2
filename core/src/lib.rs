//! The agent-session engine.
//!
//! Everything a session *is* lives here: the lifecycle state machine, the
//! event history, context merging, queries, stats, retention, validation
//! and what to notify. The crate performs no I/O: it reaches storage,
//! notification transport, time and randomness through the traits in
//! [`ports`], which the session component implements with its WIT imports
//! and a native embedding implements directly.
//!
//! ```
//! use agent_session_core::{Engine, StartOptions, SessionStatus};
//! use agent_session_core::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
//!
//! let engine = Engine::new(MemoryStore::new(), MemoryOutbox::new(), ManualEnvironment::at(0));
//! let s = engine.start(StartOptions { task: "demo".into(), max_iterations: Some(2), ..Default::default() })?;
//! engine.iterate(&s.id, None)?;
//! let s = engine.iterate(&s.id, None)?;
//! assert_eq!(s.status, SessionStatus::Timeout);
//! # Ok::<(), agent_session_core::SessionError>(())
//! ```

pub mod address;
pub mod codec;
pub mod delivery;
mod engine;
mod error;
pub mod memory;
mod model;
pub mod ports;
pub mod validate;
pub mod webhook;

pub use delivery::{Attempt, Claimed, Delivery, DeliveryState};
pub use engine::{
    BLOBS, CONFIG, DEFAULT_MAX_ITERATIONS, DEFAULT_MODE, DEFAULT_RETENTION_DAYS, EXPORT_FORMAT,
    Engine, INLINE_MAX, KEYS, MAX_VALUE_BYTES, RECENT_EVENTS, SESSIONS, SNAPSHOT_EVERY,
    WEBHOOK_KEY, fold, replay,
};
pub use error::{SessionError, StoreError};
pub use model::*;
pub use ports::{Environment, IndexEntry, Notifier, Store, Versioned};

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod keyed_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
