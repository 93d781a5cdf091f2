//! The plugin runtime: runs agent plugins (components of the `agent-plugin`
//! world, `wit/plugin.wit`) with the session API as their only capability.
//!
//! - **Namespaces.** A plugin's `sessions` import is served by a
//!   [`SessionHost`] on its own root, `<dir>/plugins/<namespace>/`: there is
//!   no path from one namespace to another's sessions, so a plugin cannot
//!   list, read or change them (it gets `not-found`, as for any unknown id).
//! - **Limits.** Each run gets a fresh instance with a wall-clock deadline
//!   (epoch interruption), a memory cap over all its memories (a resource
//!   limiter, with bounds on instances, tables and memories), optionally a
//!   fuel budget, and a budget of session calls. WASI is linked with
//!   nothing granted: no preopened directories, no network, no
//!   environment or arguments, and no way to block (`poll` and
//!   `pollable.block` trap, as a plugin waiting in the host could not be
//!   interrupted by its deadline).
//! - **Clean failure.** A trapped or timed-out instance is dropped, never
//!   reused. The sessions a run started or resumed that it leaves active
//!   when it does not return success (trap, timeout, or an error it
//!   returned) are marked failed with the reason; sessions it paused stay
//!   paused, ready to resume.
//! - **Cheap starts.** Plugins are compiled once (cached across processes,
//!   keyed by the engine's compatibility hash) and pre-instantiated.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use cap_std::fs::Dir;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::fs_store::{Durability, write_durably};
use crate::runtime::{CacheDir, CallResult, Guest, HostState, SessionHost, wit_types as wit};
use crate::{cache, confined};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent-plugin",
        with: {
            "agent:session/types": crate::runtime::wit_types,
        },
    });
}

use bindings::agent::session::sessions;
use bindings::{AgentPlugin, AgentPluginPre};

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);
/// The copy of a namespace's plugin, in the namespace's directory.
const PLUGIN_FILE: &str = "plugin.wasm";
/// The folder of the namespaces, in a root.
const PLUGINS_DIR: &str = "plugins";

/// `<root>/plugins/<name>`, for a name that cannot lead anywhere else,
/// opened beneath the root without following symbolic links (`plugins` and
/// `<name>` must be real directories: a symlink could hand the plugin
/// another namespace, the main root or a folder outside it). `None` when
/// it does not exist and `create` is false.
fn namespace_dir(root: &Path, name: &str, create: bool) -> anyhow::Result<Option<Dir>> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(agent_session_core::SessionError::InvalidInput(format!(
            "namespace {name:?} must be 1 to 64 letters, digits, '-' or '_'"
        ))
        .into());
    }
    let opened = (|| {
        let root = if create {
            confined::open_root(root)?
        } else {
            Dir::open_ambient_dir(root, cap_std::ambient_authority())?
        };
        let plugins = confined::subdir(&root, PLUGINS_DIR, create)?;
        confined::subdir(&plugins, name, create)
    })();
    match opened {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "opening plugin namespace {}",
                namespace_label(root, name).display()
            )
        }),
    }
}

fn namespace_label(root: &Path, name: &str) -> std::path::PathBuf {
    root.join(PLUGINS_DIR).join(name)
}

/// What one run of a plugin may use.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Wall-clock time for the run.
    pub timeout: Duration,
    /// Linear memory, in bytes, over all its memories.
    pub memory: usize,
    /// WebAssembly fuel (roughly, instructions); `None`: unbounded.
    pub fuel: Option<u64>,
    /// Calls of the session API.
    pub calls: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory: 64 << 20,
            fuel: None,
            calls: 10_000,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The plugin returned (its own success or error).
    Returned(Result<String, String>),
    /// The deadline passed (or the fuel ran out).
    TimedOut(String),
    /// The plugin trapped: out of memory, a bug, an abort.
    Trapped(String),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRun {
    /// How it ended.
    pub outcome: Outcome,
    /// Sessions it started or resumed (failed by the host if the run
    /// did not return).
    pub sessions: Vec<String>,
    /// Session API calls it made.
    pub calls: u64,
}

/// A compiled, pre-instantiated plugin.
pub struct Plugin {
    pre: AgentPluginPre<PluginState>,
}

/// Runs plugins. One per process is enough; plugins loaded by it share its
/// engine and deadline clock.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: CacheDir,
    ticking: Arc<AtomicBool>,
}

struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    sessions: SessionHost,
    calls_left: u64,
    calls: u64,
    touched: BTreeSet<String>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginRuntime {
    /// A runtime caching compiled plugins in `cache`.
    pub fn new(cache: CacheDir) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true).consume_fuel(true);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        // What Rust's std pulls in; the context grants nothing but clocks
        // and randomness.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Waiting happens in the host, where the deadline cannot reach.
        linker.allow_shadowing(true);
        let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
        for name in ["poll", "[method]pollable.block"] {
            poll.func_new(name, |_, _, _, _| {
                Err(wasmtime::Error::msg(
                    "plugins may not block (wasi:io/poll): the deadline could not stop them",
                ))
            })?;
        }
        linker.allow_shadowing(false);
        sessions::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (clock, running) = (engine.weak(), ticking.clone());
        std::thread::Builder::new()
            .name("plugin-deadlines".into())
            .spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match clock.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the plugin deadline clock")?;
        Ok(Self {
            engine,
            linker,
            cache,
            ticking,
        })
    }

    /// Compile (or load from the cache) and pre-instantiate a plugin.
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<Plugin> {
        let component: Component = cache::load(&self.engine, wasm, &self.cache)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin needs imports it is not granted (agent:session/sessions and WASI without files, network or environment are)")?;
        Ok(Plugin {
            pre: AgentPluginPre::new(pre)
                .map_err(anyhow::Error::from)
                .context("the component is not an agent plugin")?,
        })
    }

    /// The session host of namespace `name` under `root`
    /// (`<root>/plugins/<name>/`, created if needed).
    pub fn namespace(root: &Path, name: &str, cache: CacheDir) -> anyhow::Result<SessionHost> {
        let dir = namespace_dir(root, name, true)?.context("the namespace was not created")?;
        let label = namespace_label(root, name);
        Ok(SessionHost::open_in(dir, &label, Durability::Durable, cache)?.0)
    }

    /// Keep a copy of the plugin that works in namespace `name`, so a
    /// session it paused can be resumed by id alone (in another process,
    /// or on another machine the root was copied to).
    pub fn remember(root: &Path, name: &str, wasm: &[u8]) -> anyhow::Result<()> {
        // A copy larger than this plugin is another one: it is not read.
        if matches!(Self::kept(root, name, wasm.len() as u64), Ok(Some(k)) if k == wasm) {
            return Ok(());
        }
        let dir = namespace_dir(root, name, true)?.context("the namespace was not created")?;
        write_durably(&dir, Path::new("."), PLUGIN_FILE, wasm).with_context(|| {
            format!(
                "keeping a copy of the plugin in {}",
                namespace_label(root, name).join(PLUGIN_FILE).display()
            )
        })
    }

    /// The plugin kept in namespace `name` by [`PluginRuntime::remember`],
    /// if it is at most `max` bytes (e.g. [`crate::DEFAULT_MAX_INPUT_BYTES`]).
    pub fn kept(root: &Path, name: &str, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(dir) = namespace_dir(root, name, false)? else {
            return Ok(None);
        };
        match confined::read(&dir, PLUGIN_FILE, max) {
            Ok(wasm) => Ok(Some(wasm)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "reading {}",
                    namespace_label(root, name).join(PLUGIN_FILE).display()
                )
            }),
        }
    }

    /// The namespace under `root` holding session `id`, and the plugin
    /// kept there by [`PluginRuntime::remember`] (see [`PluginRuntime::kept`]
    /// for `max`).
    pub fn find(
        root: &Path,
        id: &str,
        cache: CacheDir,
        max: u64,
    ) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        let plugins = Dir::open_ambient_dir(root, cap_std::ambient_authority())
            .and_then(|root| confined::subdir(&root, PLUGINS_DIR, false));
        let entries = match plugins {
            Ok(dir) => dir.entries()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("opening {}", root.join(PLUGINS_DIR).display()));
            }
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let wasm = match Self::kept(root, &name, max) {
                Ok(Some(wasm)) => wasm,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(namespace = %name, "skipping a namespace: {e:#}");
                    continue;
                }
            };
            match Self::namespace(root, &name, cache.clone()) {
                Ok(sessions) if sessions.get(id).is_ok() => return Ok(Some((name, wasm))),
                Ok(_) => {}
                Err(e) => tracing::warn!(namespace = %name, "skipping a namespace: {e:#}"),
            }
        }
        Ok(None)
    }

    /// Run `plugin`'s `run(task, config)` on `sessions` (its namespace).
    /// Blocks until the run ends (at most its timeout, plus the session
    /// call in flight); from async code, call it on a blocking thread.
    pub fn run(
        &self,
        plugin: &Plugin,
        sessions: &SessionHost,
        task: &str,
        config: &str,
        limits: &PluginLimits,
    ) -> anyhow::Result<PluginRun> {
        self.call(plugin, sessions, limits, |p, store| {
            p.call_run(store, task, config)
        })
    }

    /// Run `plugin`'s `resume(session-id)` on `sessions`.
    pub fn resume(
        &self,
        plugin: &Plugin,
        sessions: &SessionHost,
        session_id: &str,
        limits: &PluginLimits,
    ) -> anyhow::Result<PluginRun> {
        self.call(plugin, sessions, limits, |p, store| {
            p.call_resume(store, session_id)
        })
    }

    fn call(
        &self,
        plugin: &Plugin,
        sessions: &SessionHost,
        limits: &PluginLimits,
        f: impl FnOnce(
            &AgentPlugin,
            &mut wasmtime::Store<PluginState>,
        ) -> wasmtime::Result<Result<String, String>>,
    ) -> anyhow::Result<PluginRun> {
        let state = PluginState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                cap: limits.memory,
                used: 0,
            },
            sessions: sessions.clone(),
            calls_left: limits.calls,
            calls: 0,
            touched: BTreeSet::new(),
        };
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
        let ticks = (limits.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = plugin
            .pre
            .instantiate(&mut store)
            .and_then(|p| f(&p, &mut store));
        let outcome = match result {
            Ok(r) => Outcome::Returned(r),
            Err(e) if e.downcast_ref::<MemoryCapReached>().is_some() => {
                Outcome::Trapped(format!("{}", MemoryCapReached(limits.memory)))
            }
            Err(e) => match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Outcome::TimedOut(format!(
                    "the plugin ran past its deadline of {:?}",
                    limits.timeout
                )),
                Some(Trap::OutOfFuel) => {
                    Outcome::TimedOut("the plugin used up its fuel".to_owned())
                }
                _ => Outcome::Trapped(format!("{e:#}")),
            },
        };
        // The instance (and its store) goes with this function: never
        // reused after a trap.
        let state = store.into_data();
        let touched: Vec<String> = state.touched.into_iter().collect();
        let why = match &outcome {
            Outcome::Returned(Ok(_)) => None,
            Outcome::Returned(Err(e)) => Some(format!("plugin returned an error: {e}")),
            Outcome::TimedOut(e) | Outcome::Trapped(e) => Some(format!("plugin stopped: {e}")),
        };
        if let Some(why) = why {
            for id in &touched {
                match sessions.get(id) {
                    Ok(s) if s.status == agent_session_core::SessionStatus::Active => {
                        if let Err(e) = sessions.fail(id, &why) {
                            tracing::warn!(session = %id, "recording a plugin's failure: {e}");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(session = %id, "checking a plugin's session: {e}"),
                }
            }
        }
        Ok(PluginRun {
            outcome,
            sessions: touched,
            calls: state.calls,
        })
    }
}

/// Caps the linear memory of a run over all its memories (a component may
/// hold several core modules, each with its own), and bounds how many
/// instances, memories and tables it may make.
struct MemoryCap {
    cap: usize,
    used: usize,
}

/// The error a run stops with at its memory cap.
#[derive(Debug)]
struct MemoryCapReached(usize);

impl std::fmt::Display for MemoryCapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plugin reached its memory cap of {} MiB",
            self.0 >> 20
        )
    }
}

impl std::error::Error for MemoryCapReached {}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used - current.min(self.used) + desired;
        if total > self.cap {
            return Err(wasmtime::Error::new(MemoryCapReached(self.cap)));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl PluginState {
    /// Count a call against the budget.
    fn spend(&mut self) -> Result<(), wit::SessionError> {
        if self.calls_left == 0 {
            return Err(wit::SessionError::LimitExceeded(format!(
                "this run made its {} calls of the session API",
                self.calls
            )));
        }
        self.calls_left -= 1;
        self.calls += 1;
        Ok(())
    }

    /// A session call handed on to the namespace, within the budget.
    fn pass<T>(
        &mut self,
        f: impl FnOnce(&Guest, &mut wasmtime::Store<HostState>) -> CallResult<T>,
    ) -> Result<T, wit::SessionError> {
        self.spend()?;
        self.sessions.forward(f)
    }

    /// A session the run works on, to be cleaned up if it dies.
    fn touch<T>(
        &mut self,
        id: impl Fn(&T) -> &str,
        r: Result<T, wit::SessionError>,
    ) -> Result<T, wit::SessionError> {
        if let Ok(v) = &r {
            self.touched.insert(id(v).to_owned());
        }
        r
    }
}

fn not_granted<T>(what: &str) -> Result<T, wit::SessionError> {
    Err(wit::SessionError::InvalidInput(format!(
        "{what} is not granted to plugins"
    )))
}

impl sessions::Host for PluginState {
    fn start(&mut self, options: wit::StartOptions) -> Result<wit::Session, wit::SessionError> {
        let r = self.pass(|g, s| g.call_start(s, &options));
        self.touch(|s: &wit::Session| &s.id, r)
    }
    fn get(&mut self, session: wit::SessionRef) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_get(s, &session))
    }
    fn pause(
        &mut self,
        session: wit::SessionRef,
        reason: Option<String>,
    ) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_pause(s, &session, reason.as_deref()))
    }
    fn resume(&mut self, session: wit::SessionRef) -> Result<wit::Session, wit::SessionError> {
        let r = self.pass(|g, s| g.call_resume(s, &session));
        self.touch(|s: &wit::Session| &s.id, r)
    }
    fn complete(
        &mut self,
        session: wit::SessionRef,
        result: Option<String>,
    ) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_complete(s, &session, result.as_deref()))
    }
    fn fail(
        &mut self,
        session: wit::SessionRef,
        error: String,
    ) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_fail(s, &session, &error))
    }
    fn iterate(
        &mut self,
        session: wit::SessionRef,
        data: Option<String>,
    ) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_iterate(s, &session, data.as_deref()))
    }
    fn record_tool_call(
        &mut self,
        session: wit::SessionRef,
        call: wit::ToolCall,
    ) -> Result<wit::Event, wit::SessionError> {
        self.pass(|g, s| g.call_record_tool_call(s, &session, &call))
    }
    fn record_learning(
        &mut self,
        session: wit::SessionRef,
        learning: wit::Learning,
    ) -> Result<wit::Event, wit::SessionError> {
        self.pass(|g, s| g.call_record_learning(s, &session, &learning))
    }
    fn record_event(
        &mut self,
        session: wit::SessionRef,
        kind: String,
        data: String,
    ) -> Result<wit::Event, wit::SessionError> {
        self.pass(|g, s| g.call_record_event(s, &session, &kind, &data))
    }
    fn events(
        &mut self,
        session: wit::SessionRef,
        from: u64,
        limit: u32,
    ) -> Result<wit::EventPage, wit::SessionError> {
        self.pass(|g, s| g.call_events(s, &session, from, limit))
    }
    fn recent_events(
        &mut self,
        session: wit::SessionRef,
    ) -> Result<Vec<wit::Event>, wit::SessionError> {
        self.pass(|g, s| g.call_recent_events(s, &session))
    }
    fn update_context(
        &mut self,
        session: wit::SessionRef,
        patch: String,
    ) -> Result<wit::Session, wit::SessionError> {
        self.pass(|g, s| g.call_update_context(s, &session, &patch))
    }
    fn resumption_context(
        &mut self,
        session: wit::SessionRef,
    ) -> Result<wit::Resumption, wit::SessionError> {
        self.pass(|g, s| g.call_resumption_context(s, &session))
    }
    fn list(
        &mut self,
        filter: wit::SessionFilter,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<wit::SessionPage, wit::SessionError> {
        self.pass(|g, s| g.call_list(s, &filter, cursor.as_deref(), limit))
    }
    fn stats(
        &mut self,
        filter: wit::SessionFilter,
    ) -> Result<wit::SessionStats, wit::SessionError> {
        self.pass(|g, s| g.call_stats(s, &filter))
    }
    fn cleanup(
        &mut self,
        _: Option<u32>,
        _: bool,
    ) -> Result<wit::CleanupReport, wit::SessionError> {
        not_granted("cleanup")
    }
    fn delete(&mut self, session: wit::SessionRef) -> Result<(), wit::SessionError> {
        self.pass(|g, s| g.call_delete(s, &session))
    }
    fn rebuild_index(&mut self, _: bool) -> Result<wit::IndexReport, wit::SessionError> {
        not_granted("rebuild-index")
    }
    fn export(&mut self, session: wit::SessionRef) -> Result<String, wit::SessionError> {
        self.pass(|g, s| g.call_export(s, &session))
    }
    fn import(&mut self, _: String) -> Result<wit::Session, wit::SessionError> {
        not_granted("import")
    }
    fn check_webhook_url(
        &mut self,
        url: String,
        allow: Vec<String>,
    ) -> Result<(), wit::SessionError> {
        // A pure judgement: nothing of the host's is reached.
        agent_session_core::webhook::check_url(&url, &allow).map_err(|e| match e {
            agent_session_core::SessionError::InvalidInput(m) => wit::SessionError::InvalidInput(m),
            other => wit::SessionError::InvalidInput(other.to_string()),
        })
    }
    fn set_webhook(
        &mut self,
        _: wit::WebhookConfig,
    ) -> Result<wit::WebhookConfig, wit::SessionError> {
        not_granted("set-webhook")
    }
    fn get_webhook(&mut self) -> Result<Option<wit::WebhookConfig>, wit::SessionError> {
        not_granted("get-webhook")
    }
    fn clear_webhook(&mut self) -> Result<(), wit::SessionError> {
        not_granted("clear-webhook")
    }
    fn disable_webhook(&mut self, _: String) -> Result<bool, wit::SessionError> {
        not_granted("disable-webhook")
    }
    fn is_resumable(&mut self, session: wit::SessionRef) -> Result<bool, wit::SessionError> {
        self.pass(|g, s| g.call_is_resumable(s, &session))
    }
    fn duration(&mut self, session: wit::SessionRef) -> Result<u64, wit::SessionError> {
        self.pass(|g, s| g.call_duration(s, &session))
    }
    fn progress(&mut self, session: wit::SessionRef) -> Result<f64, wit::SessionError> {
        self.pass(|g, s| g.call_progress(s, &session))
    }
}
