//! The session component in wasmtime, behind a typed Rust API.
//!
//! Instances come from an [`InstancePre`]-backed pre-instantiation and are
//! kept in a small pool between calls: the component keeps no state
//! between calls (all of it is in the store), so an instance that returned
//! normally serves the next call, calls from several threads each get
//! their own, and an instance that trapped is dropped, never reused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agent_session_core::{
    self as core, CleanupReport, Event, EventPage, IndexReport, Learning, Notifier, Resumption,
    Session, SessionError, SessionFilter, SessionPage, SessionStats, StartOptions, Store, ToolCall,
    WebhookConfig,
};
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::cache;
use crate::fs_store::{Durability, FsStore};
use crate::outbox::FsOutbox;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "session-component",
    });
}

use bindings::agent::session::{notify, store as wit_store, types as wit};
use bindings::{SessionComponent, SessionComponentPre};

/// The WIT types of the session API, shared with the plugin runtime's
/// bindings so calls are handed on without conversion.
pub use bindings::agent::session::types as wit_types;

/// The session component, as built from `guests/session` by this crate's
/// build script.
pub static SESSION_COMPONENT: &[u8] = include_bytes!(env!("AGENT_SESSION_COMPONENT_PATH"));

/// A failure of a [`SessionHost`] call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The session API refused or failed the operation.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The component could not be run (trap, instantiation failure). The
    /// store is unchanged by a call that failed this way before writing.
    #[error("the session component failed: {0}")]
    Component(String),
}

impl Error {
    fn component(e: impl std::fmt::Display) -> Self {
        Self::Component(format!("{e:#}"))
    }
}

/// What a store implementation must be to serve the component.
pub type SharedStore = Arc<dyn Store + Send + Sync>;
/// What a notifier implementation must be to serve the component.
pub type SharedNotifier = Arc<dyn Notifier + Send + Sync>;

/// Per-call state of a component instance: its (empty) WASI context and
/// the capabilities it imports.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    store: SharedStore,
    notifier: SharedNotifier,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for HostState {}

impl wit_store::Host for HostState {
    fn append(
        &mut self,
        c: String,
        k: String,
        seq: u64,
        records: Vec<Vec<u8>>,
        summary: Vec<u8>,
    ) -> Result<(), wit_store::StoreError> {
        self.store
            .append(&c, &k, seq, &records, &summary)
            .map_err(to_wit_store_error)
    }
    fn read(
        &mut self,
        c: String,
        k: String,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, wit_store::StoreError> {
        self.store
            .read(&c, &k, from, limit)
            .map_err(to_wit_store_error)
    }
    fn scan(
        &mut self,
        c: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<wit_store::IndexEntry>, wit_store::StoreError> {
        let entries = self
            .store
            .scan(&c, after.as_deref(), limit)
            .map_err(to_wit_store_error)?;
        Ok(entries
            .into_iter()
            .map(|e| wit_store::IndexEntry {
                key: e.key,
                summary: e.summary,
            })
            .collect())
    }
    fn reindex(
        &mut self,
        c: String,
        k: String,
        summary: Vec<u8>,
    ) -> Result<(), wit_store::StoreError> {
        self.store
            .reindex(&c, &k, &summary)
            .map_err(to_wit_store_error)
    }
    fn keys(
        &mut self,
        c: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, wit_store::StoreError> {
        self.store
            .keys(&c, after.as_deref(), limit)
            .map_err(to_wit_store_error)
    }
    fn get(
        &mut self,
        c: String,
        k: String,
    ) -> Result<Option<wit_store::Versioned>, wit_store::StoreError> {
        self.store
            .get(&c, &k)
            .map(|o| {
                o.map(|v| wit_store::Versioned {
                    version: v.version,
                    data: v.data,
                })
            })
            .map_err(to_wit_store_error)
    }
    fn put(
        &mut self,
        c: String,
        k: String,
        d: Vec<u8>,
        v: u64,
        durable: bool,
    ) -> Result<u64, wit_store::StoreError> {
        self.store
            .put(&c, &k, &d, v, durable)
            .map_err(to_wit_store_error)
    }
    fn remove(&mut self, c: String, k: String, length: u64) -> Result<(), wit_store::StoreError> {
        self.store
            .remove(&c, &k, length)
            .map_err(to_wit_store_error)
    }
}

impl notify::Host for HostState {
    fn enqueue(&mut self, n: notify::Notification) -> Result<(), String> {
        self.notifier.enqueue(&core::Notification {
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

fn to_wit_store_error(e: core::StoreError) -> wit_store::StoreError {
    match e {
        core::StoreError::Conflict(m) => wit_store::StoreError::Conflict(m),
        core::StoreError::InvalidKey(m) => wit_store::StoreError::InvalidKey(m),
        core::StoreError::Full(m) => wit_store::StoreError::Full(m),
        core::StoreError::Io(m) => wit_store::StoreError::Io(m),
    }
}

/// Where compiled components are cached between processes.
#[derive(Debug, Clone, Default)]
pub enum CacheDir {
    /// `$AGENT_SESSION_CACHE_DIR`, else `$XDG_CACHE_HOME/agent-session`, else
    /// `~/.cache/agent-session`.
    #[default]
    Default,
    /// This directory.
    At(PathBuf),
    /// Compile in every process.
    Disabled,
}

/// Configures a [`SessionHost`].
pub struct SessionHostBuilder {
    store: SharedStore,
    notifier: SharedNotifier,
    component: Option<Vec<u8>>,
    cache: CacheDir,
}

impl SessionHostBuilder {
    /// Use another component binary instead of the embedded one.
    pub fn component(mut self, wasm: Vec<u8>) -> Self {
        self.component = Some(wasm);
        self
    }

    /// Where to cache the compiled component.
    pub fn cache(mut self, cache: CacheDir) -> Self {
        self.cache = cache;
        self
    }

    /// Compile (or load from the cache) and pre-instantiate the component.
    pub fn build(self) -> anyhow::Result<SessionHost> {
        let engine = Engine::new(&Config::new())?;
        let wasm = self.component.as_deref().unwrap_or(SESSION_COMPONENT);
        let component: Component = cache::load(&engine, wasm, &self.cache)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        // Rust's std in the guest imports wasi:cli, wasi:io, wasi:clocks,
        // wasi:random and wasi:filesystem; the context grants no files, no
        // network, no environment: only clocks and randomness work.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        SessionComponent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let pre = SessionComponentPre::new(linker.instantiate_pre(&component)?)?;
        Ok(SessionHost {
            inner: Arc::new(Inner {
                engine,
                pre,
                store: self.store,
                notifier: self.notifier,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }
}

struct Inner {
    engine: Engine,
    pre: SessionComponentPre<HostState>,
    store: SharedStore,
    notifier: SharedNotifier,
    /// Instances that finished a call normally, ready for the next one.
    idle: Mutex<Vec<(wasmtime::Store<HostState>, SessionComponent)>>,
}

/// Idle instances kept per host (one per thread that calls concurrently).
const MAX_IDLE: usize = 8;

/// The session API, run through the session component in wasmtime.
///
/// Methods block on storage I/O; from async code, use [`SessionHost::run`]
/// to move a batch of calls onto tokio's blocking pool. Cloning is cheap
/// and clones share the compiled component.
#[derive(Clone)]
pub struct SessionHost {
    inner: Arc<Inner>,
}

pub(crate) type Guest = bindings::exports::agent::session::sessions::Guest;
pub(crate) type CallResult<T> = wasmtime::Result<Result<T, wit::SessionError>>;

impl SessionHost {
    /// A host on the filesystem store rooted at `dir` (created if needed),
    /// with notifications queued in `dir/outbox`.
    pub fn open(dir: impl AsRef<Path>) -> anyhow::Result<Self> {
        Ok(Self::open_dir(dir, Durability::Durable, CacheDir::Default)?.0)
    }

    /// [`SessionHost::open`] with a chosen durability, also returning the
    /// store (for maintenance: [`FsStore::check`], [`FsStore::compact`]).
    /// A root that needs its index rebuilt (after a migration or a lost
    /// index file) is reindexed here, before anything else runs.
    pub fn open_dir(
        dir: impl AsRef<Path>,
        durability: Durability,
        cache: CacheDir,
    ) -> anyhow::Result<(Self, Arc<FsStore>)> {
        use anyhow::Context as _;
        let dir = dir.as_ref();
        let root = crate::confined::open_root(dir)
            .with_context(|| format!("opening the session store at {}", dir.display()))?;
        Self::open_in(root, dir, durability, cache)
    }

    /// [`SessionHost::open_dir`] on a directory the caller opened (a
    /// capability: nothing outside it is reachable); `label` names it in
    /// messages.
    pub fn open_in(
        root: cap_std::fs::Dir,
        label: &Path,
        durability: Durability,
        cache: CacheDir,
    ) -> anyhow::Result<(Self, Arc<FsStore>)> {
        use anyhow::Context as _;
        let dir = label;
        let outbox = FsOutbox::open_in(root.try_clone()?)
            .with_context(|| format!("opening the outbox in {}", dir.display()))?;
        let store = FsStore::open_in(root, durability, dir)
            .with_context(|| format!("opening the session store at {}", dir.display()))?;
        let store = Arc::new(store);
        let host = Self::builder(store.clone(), Arc::new(outbox))
            .cache(cache)
            .build()?;
        if store.needs_reindex()? {
            host.reindex_fs(&store)
                .with_context(|| format!("rebuilding the index of {}", dir.display()))?;
        }
        Ok((host, store))
    }

    /// A host on the PostgreSQL database at `url` (schema brought up to
    /// date), with notifications queued in the same database; also returns
    /// the outbox, for a [`crate::webhook::Sender`].
    pub fn open_postgres(
        url: &str,
        cache: CacheDir,
    ) -> anyhow::Result<(Self, Arc<crate::PgOutbox>)> {
        let store = crate::PgStore::connect(url)?;
        let outbox = Arc::new(store.outbox());
        let host = Self::builder(Arc::new(store), outbox.clone())
            .cache(cache)
            .build()?;
        Ok((host, outbox))
    }

    /// Rebuild the index of a filesystem store from scratch.
    pub fn reindex_fs(&self, store: &FsStore) -> anyhow::Result<IndexReport> {
        store.clear_index(core::SESSIONS)?;
        let report = self.rebuild_index(false)?;
        store.reindexed()?;
        tracing::info!(sessions = report.sessions, "index rebuilt");
        Ok(report)
    }

    /// Bring the index of a filesystem store in line with the histories,
    /// in place (`fsck --repair`): a session whose history cannot be read
    /// keeps its entry, so `list` goes on naming it until a person deals
    /// with it. An index that needs a rebuild anyway (after a migration or
    /// a loss), or that cannot be brought in line, is rebuilt from scratch.
    pub fn repair_index_fs(&self, store: &FsStore) -> anyhow::Result<IndexReport> {
        if !store.needs_reindex()? {
            match self.rebuild_index(false) {
                Ok(report) => return Ok(report),
                Err(e) => tracing::warn!("rebuilding the index from scratch: {e}"),
            }
        }
        self.reindex_fs(store)
    }

    /// A host over any store and notifier.
    pub fn builder(store: SharedStore, notifier: SharedNotifier) -> SessionHostBuilder {
        SessionHostBuilder {
            store,
            notifier,
            component: None,
            cache: CacheDir::Default,
        }
    }

    /// Run `f` on tokio's blocking pool, so storage I/O never stalls the
    /// async runtime.
    ///
    /// ```no_run
    /// # async fn demo(host: agent_session_host::SessionHost) -> Result<(), agent_session_host::Error> {
    /// let session = host.run(|h| h.start(agent_session_core::StartOptions {
    ///     task: "triage the inbox".into(),
    ///     ..Default::default()
    /// })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&SessionHost) -> Result<T, Error> + Send + 'static,
    {
        let host = self.clone();
        tokio::task::spawn_blocking(move || f(&host))
            .await
            .map_err(Error::component)?
    }

    /// A call of the session API at the WIT level, for hosts that hand it on
    /// (the plugin runtime). A failure of the component itself becomes a
    /// `storage` error: the caller cannot tell it apart and need not.
    pub(crate) fn forward<T>(
        &self,
        f: impl FnOnce(&Guest, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<T, wit::SessionError> {
        self.call_raw(f)
            .unwrap_or_else(|e| Err(wit::SessionError::Storage(e.to_string())))
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&Guest, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<T, Error> {
        self.call_raw(f)?
            .map_err(|e| Error::Session(from_wit_error(e)))
    }

    fn call_raw<T>(
        &self,
        f: impl FnOnce(&Guest, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<Result<T, wit::SessionError>, Error> {
        self.call_instance(|i, s| f(i.agent_session_sessions(), s))
    }

    /// A call of any interface the component exports.
    pub(crate) fn call_in<T>(
        &self,
        f: impl FnOnce(&SessionComponent, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<T, Error> {
        self.call_instance(f)?
            .map_err(|e| Error::Session(from_wit_error(e)))
    }

    fn call_instance<T>(
        &self,
        f: impl FnOnce(&SessionComponent, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<Result<T, wit::SessionError>, Error> {
        let mut warm = match self.inner.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(_) => None,
        };
        let (mut store, instance) = match warm.take() {
            Some(w) => w,
            None => self.instantiate()?,
        };
        let result = f(&instance, &mut store);
        match result {
            Ok(r) => {
                // The component keeps nothing between calls, so a call that
                // returned normally leaves an instance fit for the next one.
                if let Ok(mut idle) = self.inner.idle.lock()
                    && idle.len() < MAX_IDLE
                {
                    idle.push((store, instance));
                }
                Ok(r)
            }
            // A trapped instance is dropped, never reused.
            Err(trap) => Err(Error::component(trap)),
        }
    }

    fn instantiate(&self) -> Result<(wasmtime::Store<HostState>, SessionComponent), Error> {
        let state = HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            store: self.inner.store.clone(),
            notifier: self.inner.notifier.clone(),
        };
        let mut store = wasmtime::Store::new(&self.inner.engine, state);
        let instance = self
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(Error::component)?;
        Ok((store, instance))
    }

    // ----- lifecycle -----

    /// Start a new active session.
    pub fn start(&self, o: StartOptions) -> Result<Session, Error> {
        let options = wit::StartOptions {
            key: o.key,
            task: o.task,
            mode: o.mode,
            user_id: o.user_id,
            channel_id: o.channel_id,
            max_iterations: o.max_iterations,
            context: o.context.map(|c| c.to_string()),
        };
        self.call(|g, s| g.call_start(s, &options))?.try_into()
    }

    /// Read a session.
    pub fn get(&self, session: impl Into<core::SessionRef>) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_get(s, id))?.try_into()
    }

    /// Pause an active session.
    pub fn pause(
        &self,
        session: impl Into<core::SessionRef>,
        reason: Option<&str>,
    ) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_pause(s, id, reason))?.try_into()
    }

    /// Resume a paused session.
    pub fn resume(&self, session: impl Into<core::SessionRef>) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_resume(s, id))?.try_into()
    }

    /// Complete an active or paused session.
    pub fn complete(
        &self,
        session: impl Into<core::SessionRef>,
        result: Option<&Value>,
    ) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        let result = result.map(Value::to_string);
        self.call(|g, s| g.call_complete(s, id, result.as_deref()))?
            .try_into()
    }

    /// Fail an active or paused session.
    pub fn fail(
        &self,
        session: impl Into<core::SessionRef>,
        error: &str,
    ) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_fail(s, id, error))?.try_into()
    }

    // ----- iterations and events -----

    /// Count one iteration; reaching the bound moves the session to timeout.
    pub fn iterate(
        &self,
        session: impl Into<core::SessionRef>,
        data: Option<&Value>,
    ) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        let data = data.map(Value::to_string);
        self.call(|g, s| g.call_iterate(s, id, data.as_deref()))?
            .try_into()
    }

    /// Record a tool call.
    pub fn record_tool_call(
        &self,
        session: impl Into<core::SessionRef>,
        call: &ToolCall,
    ) -> Result<Event, Error> {
        let id = &wit_ref(session.into());
        let call = wit::ToolCall {
            name: call.name.clone(),
            input: call.input.to_string(),
            output: call.output.to_string(),
            duration_ms: call.duration_ms,
        };
        self.call(|g, s| g.call_record_tool_call(s, id, &call))?
            .try_into()
    }

    /// Record a learning.
    pub fn record_learning(
        &self,
        session: impl Into<core::SessionRef>,
        learning: &Learning,
    ) -> Result<Event, Error> {
        let id = &wit_ref(session.into());
        let learning = wit::Learning {
            insight: learning.insight.clone(),
            expertise_file: learning.expertise_file.clone(),
        };
        self.call(|g, s| g.call_record_learning(s, id, &learning))?
            .try_into()
    }

    /// Record a custom event.
    pub fn record_event(
        &self,
        session: impl Into<core::SessionRef>,
        kind: &str,
        data: &Value,
    ) -> Result<Event, Error> {
        let id = &wit_ref(session.into());
        let data = data.to_string();
        self.call(|g, s| g.call_record_event(s, id, kind, &data))?
            .try_into()
    }

    /// Read at most `limit` events from position `from`.
    pub fn events(
        &self,
        session: impl Into<core::SessionRef>,
        from: u64,
        limit: u32,
    ) -> Result<EventPage, Error> {
        let id = &wit_ref(session.into());
        let page = self.call(|g, s| g.call_events(s, id, from, limit))?;
        Ok(EventPage {
            events: events(page.events)?,
            next_seq: page.next_seq,
        })
    }

    /// The last 10 events, oldest first.
    pub fn recent_events(&self, session: impl Into<core::SessionRef>) -> Result<Vec<Event>, Error> {
        let id = &wit_ref(session.into());
        events(self.call(|g, s| g.call_recent_events(s, id))?)
    }

    // ----- context -----

    /// Merge a JSON object into the context.
    pub fn update_context(
        &self,
        session: impl Into<core::SessionRef>,
        patch: &Value,
    ) -> Result<Session, Error> {
        let id = &wit_ref(session.into());
        let patch = patch.to_string();
        self.call(|g, s| g.call_update_context(s, id, &patch))?
            .try_into()
    }

    /// The session, its recent history and whether it can be resumed.
    pub fn resumption_context(
        &self,
        session: impl Into<core::SessionRef>,
    ) -> Result<Resumption, Error> {
        let id = &wit_ref(session.into());
        let r = self.call(|g, s| g.call_resumption_context(s, id))?;
        Ok(Resumption {
            session: r.session.try_into()?,
            recent_events: events(r.recent_events)?,
            resumable: r.resumable,
        })
    }

    // ----- queries -----

    /// Sessions matching `filter`, newest first.
    pub fn list(
        &self,
        filter: &SessionFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SessionPage, Error> {
        let filter = to_wit_filter(filter);
        let page = self.call(|g, s| g.call_list(s, &filter, cursor, limit))?;
        Ok(SessionPage {
            sessions: page
                .sessions
                .into_iter()
                .map(Session::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
            unreadable: page.unreadable,
        })
    }

    /// Aggregates over the sessions matching `filter`.
    pub fn stats(&self, filter: &SessionFilter) -> Result<SessionStats, Error> {
        let filter = to_wit_filter(filter);
        let st = self.call(|g, s| g.call_stats(s, &filter))?;
        Ok(SessionStats {
            total: st.total,
            by_status: st
                .by_status
                .into_iter()
                .map(|c| (from_wit_status(c.status), c.count))
                .collect(),
            by_mode: st.by_mode.into_iter().map(|c| (c.mode, c.count)).collect(),
            average_iterations: st.average_iterations,
            success_rate: st.success_rate,
        })
    }

    // ----- maintenance -----

    /// Remove ended sessions older than the retention period.
    pub fn cleanup(
        &self,
        older_than_days: Option<u32>,
        dry_run: bool,
    ) -> Result<CleanupReport, Error> {
        let r = self.call(|g, s| g.call_cleanup(s, older_than_days, dry_run))?;
        Ok(CleanupReport {
            dry_run: r.dry_run,
            removed: r.removed,
        })
    }

    /// Remove one session and its history.
    pub fn delete(&self, session: impl Into<core::SessionRef>) -> Result<(), Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_delete(s, id))
    }

    /// Compare the index with the histories; unless `dry_run`, refresh
    /// what differs.
    pub fn rebuild_index(&self, dry_run: bool) -> Result<IndexReport, Error> {
        let r = self.call(|g, s| g.call_rebuild_index(s, dry_run))?;
        Ok(IndexReport {
            sessions: r.sessions,
            stale: r.stale,
            unreadable: r.unreadable,
        })
    }

    /// The session and its history as a portable JSON document.
    pub fn export(&self, session: impl Into<core::SessionRef>) -> Result<Value, Error> {
        let id = &wit_ref(session.into());
        let text = self.call(|g, s| g.call_export(s, id))?;
        parse_json(&text)
    }

    /// Recreate a session from an exported document.
    pub fn import(&self, document: &Value) -> Result<Session, Error> {
        self.import_text(&document.to_string())
    }

    /// [`SessionHost::import`] of a document as JSON text, handed to the
    /// component as it is (the component parses and checks it).
    pub fn import_text(&self, document: &str) -> Result<Session, Error> {
        self.call(|g, s| g.call_import(s, document))?.try_into()
    }

    // ----- webhooks -----

    /// Set (or replace) the webhook endpoint.
    pub fn set_webhook(&self, c: &WebhookConfig) -> Result<WebhookConfig, Error> {
        let config = wit::WebhookConfig {
            url: c.url.clone(),
            secret: c.secret.clone(),
            event_kinds: c.event_kinds.clone(),
            enabled: c.enabled,
        };
        self.call(|g, s| g.call_set_webhook(s, &config))
            .map(from_wit_webhook)
    }

    /// Whether webhooks may be sent to `url` under the address policy with
    /// the exceptions `allow` (the check a host makes before
    /// [`SessionHost::set_webhook`]; the CLI also resolves host names).
    pub fn check_webhook_url(&self, url: &str, allow: &[String]) -> Result<(), Error> {
        self.call(|g, s| g.call_check_webhook_url(s, url, allow))
    }

    /// The webhook endpoint, if one is set.
    pub fn get_webhook(&self) -> Result<Option<WebhookConfig>, Error> {
        self.call(|g, s| g.call_get_webhook(s))
            .map(|c| c.map(from_wit_webhook))
    }

    /// Remove the webhook endpoint.
    pub fn clear_webhook(&self) -> Result<(), Error> {
        self.call(|g, s| g.call_clear_webhook(s))
    }

    /// Disable the endpoint if it still points at `url` (it answered 410
    /// Gone); whether it was disabled (see the engine's `disable_webhook`).
    pub fn disable_webhook(&self, url: &str) -> Result<bool, Error> {
        self.call(|g, s| g.call_disable_webhook(s, url))
    }

    // ----- utilities -----

    /// Whether the session can be resumed.
    pub fn is_resumable(&self, session: impl Into<core::SessionRef>) -> Result<bool, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_is_resumable(s, id))
    }

    /// Milliseconds from creation to end (or now).
    pub fn duration(&self, session: impl Into<core::SessionRef>) -> Result<u64, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_duration(s, id))
    }

    /// Progress in percent.
    pub fn progress(&self, session: impl Into<core::SessionRef>) -> Result<f64, Error> {
        let id = &wit_ref(session.into());
        self.call(|g, s| g.call_progress(s, id))
    }
}

// ----- WIT values to core values -----

pub(crate) fn wit_ref(r: core::SessionRef) -> wit::SessionRef {
    match r {
        core::SessionRef::Id(id) => wit::SessionRef::Id(id),
        core::SessionRef::Key(key) => wit::SessionRef::Key(key),
    }
}

pub(crate) fn parse_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::component(format!("the component returned invalid JSON: {e}")))
}

fn from_wit_error(e: wit::SessionError) -> SessionError {
    match e {
        wit::SessionError::NotFound(m) => SessionError::NotFound(m),
        wit::SessionError::InvalidTransition(m) => SessionError::InvalidTransition(m),
        wit::SessionError::InvalidInput(m) => SessionError::InvalidInput(m),
        wit::SessionError::Conflict(m) => SessionError::Conflict(m),
        wit::SessionError::Storage(m) => SessionError::Storage(m),
        wit::SessionError::LimitExceeded(m) => SessionError::LimitExceeded(m),
    }
}

fn from_wit_status(s: wit::SessionStatus) -> core::SessionStatus {
    match s {
        wit::SessionStatus::Active => core::SessionStatus::Active,
        wit::SessionStatus::Paused => core::SessionStatus::Paused,
        wit::SessionStatus::Completed => core::SessionStatus::Completed,
        wit::SessionStatus::Failed => core::SessionStatus::Failed,
        wit::SessionStatus::Timeout => core::SessionStatus::Timeout,
    }
}

fn to_wit_status(s: core::SessionStatus) -> wit::SessionStatus {
    match s {
        core::SessionStatus::Active => wit::SessionStatus::Active,
        core::SessionStatus::Paused => wit::SessionStatus::Paused,
        core::SessionStatus::Completed => wit::SessionStatus::Completed,
        core::SessionStatus::Failed => wit::SessionStatus::Failed,
        core::SessionStatus::Timeout => wit::SessionStatus::Timeout,
    }
}

pub(crate) fn to_wit_filter(f: &SessionFilter) -> wit::SessionFilter {
    wit::SessionFilter {
        user_id: f.user_id.clone(),
        channel_id: f.channel_id.clone(),
        mode: f.mode.clone(),
        status: f.status.map(to_wit_status),
        created_after: f.created_after,
        created_before: f.created_before,
        updated_after: f.updated_after,
        updated_before: f.updated_before,
    }
}

fn from_wit_webhook(c: wit::WebhookConfig) -> WebhookConfig {
    WebhookConfig {
        url: c.url,
        secret: c.secret,
        event_kinds: c.event_kinds,
        enabled: c.enabled,
    }
}

fn events(list: Vec<wit::Event>) -> Result<Vec<Event>, Error> {
    list.into_iter().map(Event::try_from).collect()
}

impl TryFrom<wit::Event> for Event {
    type Error = Error;
    fn try_from(e: wit::Event) -> Result<Self, Error> {
        Ok(Event {
            data: parse_json(&e.data)?,
            seq: e.seq,
            kind: e.kind,
            timestamp: e.timestamp,
        })
    }
}

impl TryFrom<wit::Session> for Session {
    type Error = Error;
    fn try_from(s: wit::Session) -> Result<Self, Error> {
        let Value::Object(context) = parse_json(&s.context)? else {
            return Err(Error::component(
                "the component returned a non-object context",
            ));
        };
        Ok(Session {
            context,
            result: s.result.as_deref().map(parse_json).transpose()?,
            id: s.id,
            key: s.key,
            blobs: 0,
            task: s.task,
            mode: s.mode,
            user_id: s.user_id,
            channel_id: s.channel_id,
            status: from_wit_status(s.status),
            iteration: s.iteration,
            max_iterations: s.max_iterations,
            pause_reason: s.pause_reason,
            error: s.error,
            created_at: s.created_at,
            updated_at: s.updated_at,
            ended_at: s.ended_at,
            event_count: s.event_count,
            version: s.version,
        })
    }
}
