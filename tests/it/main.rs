//! Integration tests: the real session component in wasmtime, on a real
//! filesystem store in a temporary directory, through the Rust API and
//! through the `agent-session` binary.

mod api;
mod bad_input;
mod cli;
mod common;
mod component;
mod conformance;
mod crash;
mod cross_host;
mod hostile_root;
mod pg_outbox;
mod pg_store;
mod plugins;
mod receiver;
mod root_cases;
mod senders;
mod storage;
mod threads;
mod webhooks;
