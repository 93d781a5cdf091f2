//! The native host of the agent-session component.
//!
//! - [`SessionHost`]: the session component in wasmtime behind a typed Rust
//!   API (every operation of the `agent:session/sessions` interface).
//! - [`FsStore`]: the `store` capability on one directory, confined with
//!   cap-std and crash-safe.
//! - [`PgStore`]: the `store` capability on a PostgreSQL database, for
//!   hosts on many machines sharing sessions.
//! - [`Outbox`]: the `notify` capability as a durable outbox next to the
//!   sessions, with the record of every delivery attempt: [`FsOutbox`] in
//!   the directory, [`PgOutbox`] in the database.
//! - [`webhook::Sender`]: delivers the outbox over HTTP (signed, retried,
//!   behind an address policy against SSRF).
//! - [`plugin::PluginRuntime`]: runs agent plugins (components of the
//!   `agent-plugin` world) sandboxed, each on a session namespace of its own.
//! - [`cache`]: compiled components cached across processes.
//!
//! The host carries bytes; every session rule is in `agent-session-core`,
//! compiled into the component.
//!
//! ```no_run
//! use agent_session_host::SessionHost;
//! use agent_session_core::StartOptions;
//!
//! let host = SessionHost::open("./.agent-sessions")?;
//! let s = host.start(StartOptions { task: "Implement feature X".into(), ..Default::default() })?;
//! host.iterate(&s.id, Some(&serde_json::json!({"step": "plan"})))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod cache;
mod confined;
pub mod copy;
// Counts allocations for the decoder tests (`fs_store/decoder_tests.rs`);
// the same allocator the core's decoder tests use.
#[cfg(test)]
#[path = "../../core/tests/support/counting.rs"]
mod counting;
mod fs_store;
#[cfg(test)]
#[path = "../../core/tests/support/inputs.rs"]
mod inputs;
mod outbox;
mod pg_store;
pub mod plugin;
pub mod root;
mod runtime;
mod threads;
pub mod webhook;

pub use fs_store::{CheckReport, Durability, FsStore};
pub use outbox::{
    Attempt, Claimed, Claims, Delivery, DeliveryState, FsOutbox, OUTBOX_DIR, Outbox, PgOutbox,
};
pub use pg_store::{PgStore, SCHEMA_VERSION as PG_SCHEMA_VERSION};
pub use runtime::{
    CacheDir, Error, SESSION_COMPONENT, SessionHost, SessionHostBuilder, SharedNotifier,
    SharedStore,
};

/// The largest file the host reads whole on a caller's behalf (an export
/// document to import, a plugin component) unless told otherwise: the
/// store's record limit, so whatever one host stores another can read.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = fs_store::MAX_RECORD as u64;
