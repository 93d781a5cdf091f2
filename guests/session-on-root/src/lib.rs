//! The session component with the one implementation of the directory
//! format (`agent-session-dir-store`) linked in: it exports `sessions` and
//! imports only `root`, the narrow capability on the directory the host
//! grants (and WASI clocks and randomness). This is the artifact the Node
//! and Python hosts run. The exported API is the session component's own
//! code (`guests/session/src/api.rs`); this crate adds the store and the
//! notification intake over `root`.
//!
//! Linked into one module rather than composed from two components
//! (`wac`): a composition has two linear memories, and jco on Node 20 (no
//! multi-memory) copies every byte between them in JavaScript, which made
//! an append 1.8x and a read of the last ten events 5x slower
//! (ARCHITECTURE.md, "One directory format").

wit_bindgen::generate!({
    path: "../../wit",
    world: "session-on-root",
});

#[path = "../../session/src/api.rs"]
mod api;
mod delivery;
#[path = "../../session/src/threads.rs"]
mod threads;

use std::sync::{Arc, Mutex};

use agent::session::root as wit_root;
use agent_session_core::{
    Engine, IndexEntry, Notification, Notifier, Store, StoreError, Versioned,
};
use agent_session_dir_store::{DirStore, ErrorCode, Intake, Root, RootError, Stat};
pub(crate) use api::Component;
use api::WasiEnvironment;

/// The root the host granted.
struct HostRoot;

/// The most bytes one `root` call carries. wasmtime-py lifts a `list<u8>`
/// into a value per byte and wasmtime caps what one host call may copy
/// (its "hostcall fuel"), which a single call of about 2.6 MiB exhausts;
/// larger reads and appends are made in pieces of this size.
const MAX_CALL_BYTES: u64 = 1 << 20;

fn from_wit(e: wit_root::Failure) -> RootError {
    use wit_root::ErrorCode as C;
    let code = match e.code {
        C::NotFound => ErrorCode::NotFound,
        C::Exists => ErrorCode::Exists,
        C::Refused => ErrorCode::Refused,
        C::Gone => ErrorCode::Gone,
        C::Busy => ErrorCode::Busy,
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
        let first = wit_root::read(path, offset, len.min(MAX_CALL_BYTES)).map_err(from_wit)?;
        if (first.len() as u64) < MAX_CALL_BYTES.min(len) {
            return Ok(first);
        }
        // A large value (a checkpoint of several MiB) comes in pieces.
        let mut bytes = first;
        while (bytes.len() as u64) < len {
            let at = offset + bytes.len() as u64;
            let want = (len - bytes.len() as u64).min(MAX_CALL_BYTES);
            let piece = wit_root::read(path, at, want).map_err(from_wit)?;
            let short = (piece.len() as u64) < want;
            bytes.extend_from_slice(&piece);
            if short {
                break;
            }
        }
        Ok(bytes)
    }
    fn append(&self, path: &str, bytes: &[u8], sync: bool) -> Result<u64, RootError> {
        // A large append goes in pieces, synced once at the end: the
        // writer holds the log's lock, and a crash between pieces leaves a
        // torn tail, which the log's framing finds and cuts like any other.
        let mut pieces = bytes.chunks(MAX_CALL_BYTES as usize).peekable();
        let mut size = 0;
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            size = wit_root::append(path, piece, sync && last).map_err(from_wit)?;
        }
        if bytes.is_empty() {
            size = wit_root::append(path, bytes, sync).map_err(from_wit)?;
        }
        Ok(size)
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
/// reads the root; a failure is reported and tried again next call). They
/// live as long as the instance: the index read so far, the ends of the
/// logs appended to, this instance's intake segment.
static STORE: Mutex<Option<Arc<DirStore<HostRoot>>>> = Mutex::new(None);
static INTAKE: Mutex<Option<Arc<Intake<HostRoot>>>> = Mutex::new(None);

fn opened<T>(
    slot: &Mutex<Option<Arc<T>>>,
    open: impl FnOnce() -> Result<T, RootError>,
) -> Result<Arc<T>, String> {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.as_ref() {
        return Ok(s.clone());
    }
    let s = Arc::new(open().map_err(|e| e.to_string())?);
    *slot = Some(s.clone());
    Ok(s)
}

/// The directory store of this instance.
struct OnRoot;

impl OnRoot {
    fn store(&self) -> Result<Arc<DirStore<HostRoot>>, StoreError> {
        opened(&STORE, || DirStore::open(HostRoot, true, "the root"))
            .map_err(|e| StoreError::Io(format!("opening the store: {e}")))
    }
}

impl Store for OnRoot {
    fn append(
        &self,
        c: &str,
        k: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        self.store()?.append(c, k, seq, records, summary)
    }
    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.store()?.read(c, k, from, limit)
    }
    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.store()?.scan(c, after, limit)
    }
    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        self.store()?.reindex(c, k, summary)
    }
    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        self.store()?.keys(c, after, limit)
    }
    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        self.store()?.get(c, k)
    }
    fn put(
        &self,
        c: &str,
        k: &str,
        data: &[u8],
        expected: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        self.store()?.put(c, k, data, expected, durable)
    }
    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        self.store()?.remove(c, k, expected_length)
    }
}

/// The notification intake of this instance.
struct IntakeOnRoot;

impl Notifier for IntakeOnRoot {
    fn enqueue(&self, n: &Notification) -> Result<(), String> {
        opened(&INTAKE, || Intake::open(HostRoot))
            .map_err(|e| format!("opening the outbox: {e}"))?
            .enqueue(n)
    }
}

fn engine() -> Engine<OnRoot, IntakeOnRoot, WasiEnvironment> {
    Engine::new(OnRoot, IntakeOnRoot, WasiEnvironment)
}

export!(Component);
