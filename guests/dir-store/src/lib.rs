//! The directory store as a component: it exports the `store` and `notify`
//! interfaces that the session component imports, implemented by the one
//! implementation of the directory format (`agent-session-dir-store`) over
//! the `root` capability the host grants. Composed with the session
//! component (host/build.rs), it is the artifact the Node and Python hosts
//! run. This crate only translates between WIT values and the crate's.

wit_bindgen::generate!({
    path: "../../wit",
    world: "dir-store-component",
});

use std::sync::{Arc, Mutex};

use agent::session::root as wit_root;
use agent_session_core::{Notifier, Store, StoreError};
use agent_session_dir_store::{DirStore, ErrorCode, Intake, Root, RootError, Stat};
use exports::agent::session::notify::{self, Notification};
use exports::agent::session::store::{self, IndexEntry, Versioned};

/// The root the host granted.
struct HostRoot;

fn from_wit(e: wit_root::Failure) -> RootError {
    use wit_root::ErrorCode as C;
    let code = match e.code {
        C::NotFound => ErrorCode::NotFound,
        C::Exists => ErrorCode::Exists,
        C::Refused => ErrorCode::Refused,
        C::Gone => ErrorCode::Gone,
        C::Full => ErrorCode::Full,
        C::ReadOnly => ErrorCode::ReadOnly,
        C::Io => ErrorCode::Io,
    };
    RootError::new(code, e.message)
}

impl Root for HostRoot {
    fn stat(&self, path: &str) -> Result<Option<Stat>, RootError> {
        let s = wit_root::stat(path).map_err(from_wit)?;
        Ok(s.map(|s| Stat {
            size: s.size,
            id: s.id,
            directory: s.directory,
        }))
    }
    fn read(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, RootError> {
        wit_root::read(path, offset, len).map_err(from_wit)
    }
    fn append(&self, path: &str, bytes: &[u8], sync: bool) -> Result<u64, RootError> {
        wit_root::append(path, bytes, sync).map_err(from_wit)
    }
    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), RootError> {
        wit_root::write_at(path, offset, bytes).map_err(from_wit)
    }
    fn truncate(&self, path: &str, size: u64, sync: bool) -> Result<(), RootError> {
        wit_root::truncate(path, size, sync).map_err(from_wit)
    }
    fn replace(&self, path: &str, bytes: &[u8], sync: bool) -> Result<(), RootError> {
        wit_root::replace(path, bytes, sync).map_err(from_wit)
    }
    fn create_dir(&self, path: &str, sync: bool) -> Result<bool, RootError> {
        wit_root::create_dir(path, sync).map_err(from_wit)
    }
    fn sync_dir(&self, path: &str) -> Result<(), RootError> {
        wit_root::sync_dir(path).map_err(from_wit)
    }
    fn list(&self, path: &str) -> Result<Vec<String>, RootError> {
        wit_root::list(path).map_err(from_wit)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), RootError> {
        wit_root::rename(from, to).map_err(from_wit)
    }
    fn remove_file(&self, path: &str) -> Result<bool, RootError> {
        wit_root::remove_file(path).map_err(from_wit)
    }
    fn remove_tree(&self, path: &str) -> Result<bool, RootError> {
        wit_root::remove_tree(path).map_err(from_wit)
    }
    fn lock(&self, path: &str, exclusive: bool, wait: bool) -> Result<Option<u64>, RootError> {
        wit_root::lock(path, exclusive, wait).map_err(from_wit)
    }
    fn unlock(&self, handle: u64) {
        wit_root::unlock(handle)
    }
}

/// The store and intake of this instance, opened on first use (opening
/// reads the root; a failure is reported and tried again next call).
static STORE: Mutex<Option<Arc<DirStore<HostRoot>>>> = Mutex::new(None);
static INTAKE: Mutex<Option<Arc<Intake<HostRoot>>>> = Mutex::new(None);

fn opened() -> Result<Arc<DirStore<HostRoot>>, store::StoreError> {
    let mut slot = STORE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.as_ref() {
        return Ok(s.clone());
    }
    let s = Arc::new(
        DirStore::open(HostRoot, true, "the root")
            .map_err(|e| store::StoreError::Io(format!("opening the store: {e}")))?,
    );
    *slot = Some(s.clone());
    Ok(s)
}

fn to_wit(e: StoreError) -> store::StoreError {
    match e {
        StoreError::Conflict(m) => store::StoreError::Conflict(m),
        StoreError::InvalidKey(m) => store::StoreError::InvalidKey(m),
        StoreError::Full(m) => store::StoreError::Full(m),
        StoreError::Io(m) => store::StoreError::Io(m),
    }
}

struct Component;

impl store::Guest for Component {
    fn append(
        collection: String,
        key: String,
        seq: u64,
        records: Vec<Vec<u8>>,
        summary: Vec<u8>,
    ) -> Result<(), store::StoreError> {
        opened()?
            .append(&collection, &key, seq, &records, &summary)
            .map_err(to_wit)
    }
    fn read(
        collection: String,
        key: String,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, store::StoreError> {
        opened()?
            .read(&collection, &key, from, limit)
            .map_err(to_wit)
    }
    fn scan(
        collection: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, store::StoreError> {
        let entries = opened()?
            .scan(&collection, start_after.as_deref(), limit)
            .map_err(to_wit)?;
        Ok(entries
            .into_iter()
            .map(|e| IndexEntry {
                key: e.key,
                summary: e.summary,
            })
            .collect())
    }
    fn reindex(collection: String, key: String, summary: Vec<u8>) -> Result<(), store::StoreError> {
        opened()?
            .reindex(&collection, &key, &summary)
            .map_err(to_wit)
    }
    fn keys(
        collection: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, store::StoreError> {
        opened()?
            .keys(&collection, start_after.as_deref(), limit)
            .map_err(to_wit)
    }
    fn get(collection: String, key: String) -> Result<Option<Versioned>, store::StoreError> {
        let doc = opened()?.get(&collection, &key).map_err(to_wit)?;
        Ok(doc.map(|d| Versioned {
            version: d.version,
            data: d.data,
        }))
    }
    fn put(
        collection: String,
        key: String,
        data: Vec<u8>,
        expected_version: u64,
        durable: bool,
    ) -> Result<u64, store::StoreError> {
        opened()?
            .put(&collection, &key, &data, expected_version, durable)
            .map_err(to_wit)
    }
    fn remove(
        collection: String,
        key: String,
        expected_length: u64,
    ) -> Result<(), store::StoreError> {
        opened()?
            .remove(&collection, &key, expected_length)
            .map_err(to_wit)
    }
}

impl notify::Guest for Component {
    fn enqueue(n: Notification) -> Result<(), String> {
        let intake = {
            let mut slot = INTAKE.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(i) => i.clone(),
                None => {
                    let i = Arc::new(
                        Intake::open(HostRoot).map_err(|e| format!("opening the outbox: {e}"))?,
                    );
                    *slot = Some(i.clone());
                    i
                }
            }
        };
        intake.enqueue(&agent_session_core::Notification {
            id: n.id,
            session_id: n.session_id,
            seq: n.seq,
            url: n.url,
            secret: n.secret,
            kind: n.kind,
            timestamp: n.timestamp,
            body: n.body,
        })
    }
}

export!(Component);
