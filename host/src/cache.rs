//! A cache of compiled components, so that a process start (every CLI
//! command) costs a file map instead of a Cranelift compile.
//!
//! Entries are keyed by the SHA-256 of the component and by the engine's
//! compatibility hash (wasmtime version and every setting that changes
//! code generation), so an upgrade or a different configuration never
//! loads an incompatible artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::runtime::CacheDir;

/// Compile `wasm`, or load its compiled form from the cache.
pub fn load(engine: &Engine, wasm: &[u8], cache: &CacheDir) -> anyhow::Result<Component> {
    let Some(dir) = resolve(cache) else {
        return compile(engine, wasm);
    };
    let path = dir.join(file_name(engine, wasm));
    if path.exists() {
        // SAFETY: the file was written by `store` below from a component
        // this engine configuration compiled, and is replaced only by
        // atomic renames, so it is never modified while mapped. Anyone able
        // to write the cache directory could already run code as this user.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled component")
            }
        }
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&dir, &path, &component) {
        // The cache only saves time; a read-only home must not break the host.
        tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
    }
    Ok(component)
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    tracing::debug!(bytes = wasm.len(), "compiling the session component");
    let component = Component::new(engine, wasm)?;
    Ok(component)
}

fn store(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn file_name(engine: &Engine, wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("session-{hex}-{:016x}.cwasm", h.finish())
}

fn resolve(cache: &CacheDir) -> Option<PathBuf> {
    match cache {
        CacheDir::Disabled => None,
        CacheDir::At(p) => Some(p.clone()),
        CacheDir::Default => std::env::var_os("AGENT_SESSION_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("agent-session"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/agent-session"))
            }),
    }
}
