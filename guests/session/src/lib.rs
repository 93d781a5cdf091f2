//! The `agent:session` component: the core engine behind the exported WIT
//! interface. This crate only translates between WIT values and core
//! values; every session rule lives in `agent-session-core`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "session-component",
});

mod api;
mod threads;

use agent::session::{notify, store};
use agent_session_core as core;
use api::{Component, WasiEnvironment};
use core::{Engine, IndexEntry, StoreError, Versioned};

/// The store the host gave the component.
struct ImportedStore;

impl core::Store for ImportedStore {
    fn append(
        &self,
        c: &str,
        k: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        store::append(c, k, seq, records, summary).map_err(from_store_error)
    }
    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        store::read(c, k, from, limit).map_err(from_store_error)
    }
    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let entries = store::scan(c, after, limit).map_err(from_store_error)?;
        Ok(entries
            .into_iter()
            .map(|e| IndexEntry {
                key: e.key,
                summary: e.summary,
            })
            .collect())
    }
    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        store::reindex(c, k, summary).map_err(from_store_error)
    }
    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        store::keys(c, after, limit).map_err(from_store_error)
    }
    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        store::get(c, k)
            .map(|o| {
                o.map(|v| Versioned {
                    version: v.version,
                    data: v.data,
                })
            })
            .map_err(from_store_error)
    }
    fn put(&self, c: &str, k: &str, d: &[u8], v: u64, durable: bool) -> Result<u64, StoreError> {
        store::put(c, k, d, v, durable).map_err(from_store_error)
    }
    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        store::remove(c, k, expected_length).map_err(from_store_error)
    }
}

fn from_store_error(e: store::StoreError) -> StoreError {
    match e {
        store::StoreError::Conflict(m) => StoreError::Conflict(m),
        store::StoreError::InvalidKey(m) => StoreError::InvalidKey(m),
        store::StoreError::Full(m) => StoreError::Full(m),
        store::StoreError::Io(m) => StoreError::Io(m),
    }
}

/// The notification transport the host gave the component.
struct ImportedNotifier;

impl core::Notifier for ImportedNotifier {
    fn enqueue(&self, n: &core::Notification) -> Result<(), String> {
        notify::enqueue(&notify::Notification {
            id: n.id.clone(),
            session_id: n.session_id.clone(),
            seq: n.seq,
            url: n.url.clone(),
            secret: n.secret.clone(),
            kind: n.kind.clone(),
            timestamp: n.timestamp,
            body: n.body.clone(),
        })
    }
}

fn engine() -> Engine<ImportedStore, ImportedNotifier, WasiEnvironment> {
    Engine::new(ImportedStore, ImportedNotifier, WasiEnvironment)
}

export!(Component);
