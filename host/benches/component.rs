//! Component benchmark: what the sandbox costs, side by side in one run.
//!
//! ```sh
//! cargo bench -p agent-session-host --bench component
//! ```
//!
//! 1. Starting the session component: compiling it (Cranelift), loading the
//!    compiled form from the cache (what a new process does), and
//!    instantiating it from its `InstancePre` (what every call does that
//!    finds no idle instance; target <= 100 us).
//! 2. Session operations through the component next to the native core,
//!    both on an in-memory store, interleaved (target <= 1.5x).
//! 3. Running a plugin (`approval_agent`: start, 2 iterations, a tool call,
//!    pause) in a fresh sandboxed instance.

use std::path::PathBuf;
use std::sync::Arc;

use agent_session_core::memory::{MemoryOutbox, MemoryStore};
use agent_session_core::{Engine as Core, StartOptions};
use agent_session_host::plugin::{PluginLimits, PluginRuntime};
use agent_session_host::{CacheDir, SESSION_COMPONENT, SessionHost, cache};
use common::{WallClock, fmt, machine, ratio, time, time_pair};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod common;

const OPS: usize = 2000;

struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-component");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    machine(&base);
    let cache = CacheDir::At(base.join("cache"));
    println!("\n  {:<52} {:>12}", "", "median");

    // 1. Starting the component. Same engine configuration as SessionHost.
    let engine = Engine::new(&Config::new())?;
    let compile = time(3, || {
        let _ = Component::new(&engine, SESSION_COMPONENT)?;
        Ok(())
    })?;
    println!(
        "  {:<52} {:>12}",
        "compile the session component",
        fmt(compile.median)
    );
    cache::load(&engine, SESSION_COMPONENT, &cache)?;
    let load = time(50, || {
        let _ = cache::load(&engine, SESSION_COMPONENT, &cache)?;
        Ok(())
    })?;
    println!(
        "  {:<52} {:>12}",
        "load it compiled, from the cache",
        fmt(load.median)
    );
    let component = cache::load(&engine, SESSION_COMPONENT, &cache)?;
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // The store and notify imports are not called by instantiation: stubs.
    for (name, item) in component.component_type().imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("agent:session/") {
            continue;
        }
        let mut stubs = linker.instance(name)?;
        for (func, kind) in instance.exports(&engine) {
            if matches!(kind.ty, ComponentItem::ComponentFunc(_)) {
                stubs.func_new(func, |_, _, _, _| {
                    Err(wasmtime::Error::msg("not linked in this benchmark"))
                })?;
            }
        }
    }
    let pre = linker.instantiate_pre(&component)?;
    let instantiate = time(1000, || {
        let mut store = wasmtime::Store::new(
            &engine,
            Ctx {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        {
            let _ = pre.instantiate(&mut store)?;
            Ok(())
        }
    })?;
    println!(
        "  {:<52} {:>12}",
        "instantiate from InstancePre (target <= 100 us)",
        fmt(instantiate.median)
    );

    // 2. Operations: the component in wasmtime vs the native core.
    let host = SessionHost::builder(Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new()))
        .cache(cache.clone())
        .build()?;
    let native = Core::new(MemoryStore::new(), MemoryOutbox::new(), WallClock);
    let options = || StartOptions {
        task: "bench".into(),
        max_iterations: Some(1_000_000),
        ..Default::default()
    };
    let (a, b) = (host.start(options())?, native.start(options())?);
    let data = serde_json::json!({"step": "plan", "notes": "x".repeat(200)});
    let (c, n) = time_pair(
        OPS,
        || {
            let _ = host.iterate(&a.id, Some(&data))?;
            Ok(())
        },
        || {
            native.iterate(&b.id, Some(data.clone()))?;
            Ok(())
        },
    )?;
    println!(
        "\n  {:<52} {:>12} {:>12}",
        "in-memory store", "component", "native"
    );
    println!(
        "  {:<52} {:>12} {:>12}",
        "iterate",
        fmt(c.median),
        fmt(n.median)
    );
    let iterate_ratio = ratio(c.median, n.median);
    let (c, n) = time_pair(
        OPS,
        || {
            let _ = host.get(&a.id)?;
            Ok(())
        },
        || {
            let _ = native.get(&b.id)?;
            Ok(())
        },
    )?;
    println!(
        "  {:<52} {:>12} {:>12}",
        "get",
        fmt(c.median),
        fmt(n.median)
    );
    println!(
        "  {:<52} {:>12}",
        "  ratio, iterate / get (target <= 1.5)",
        format!("{iterate_ratio:.2}x / {:.2}x", ratio(c.median, n.median))
    );

    // 3. A plugin run in a fresh sandbox.
    let plugin_wasm = std::fs::read(
        PathBuf::from(env!("AGENT_SESSION_PLUGINS_DIR")).join("approval_agent.wasm"),
    )?;
    let runtime = PluginRuntime::new(cache.clone())?;
    let plugin = runtime.load(&plugin_wasm)?;
    let sessions = PluginRuntime::namespace(&base, "bench", cache)?;
    let limits = PluginLimits::default();
    let run = time(200, || {
        let _ = runtime.run(&plugin, &sessions, "bench", "", &limits)?;
        Ok(())
    })?;
    println!(
        "\n  {:<52} {:>12}",
        "plugin run: instantiate + 5 durable session calls",
        fmt(run.median)
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
