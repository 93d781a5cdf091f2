//! A cache of compiled components, so that a process start (every CLI
//! command) costs a file map instead of a Cranelift compile.
//!
//! Entries are keyed by the SHA-256 of the component and by the engine's
//! compatibility hash (wasmtime version and every setting that changes
//! code generation), so an upgrade or a different configuration never
//! loads an incompatible artifact.

use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::confined;
use crate::runtime::CacheDir;

/// Leads every entry, before the checksum of the rest.
const MAGIC: &[u8; 8] = b"ASCWASM1";
const HEADER: usize = MAGIC.len() + 32;
/// Compiled session components and plugins are a few MiB; anything far
/// larger is not an entry of ours.
const MAX_ENTRY: u64 = 512 << 20;

/// Compile `wasm`, or load its compiled form from the cache.
///
/// A cache entry is native code that runs as this user, so it is used
/// only from a directory that this user owns and nobody else can write
/// (which keeps others from planting or altering entries), from a plain
/// file with one link, and only when its SHA-256 (written with it, over its
/// name and code) matches, so that a damaged entry, or one copied under
/// another component's name, is compiled again, never executed.
pub fn load(engine: &Engine, wasm: &[u8], cache: &CacheDir) -> anyhow::Result<Component> {
    let Some(path) = resolve(cache) else {
        return compile(engine, wasm);
    };
    let dir = match open_dir(&path) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "not using the compiled-component cache");
            return compile(engine, wasm);
        }
    };
    let name = file_name(engine, wasm);
    match confined::read(&dir, &name, MAX_ENTRY) {
        Ok(bytes) => match verified(&name, &bytes) {
            // SAFETY: the bytes were written by `store` below from a
            // component this engine configuration compiled (the name
            // carries the engine's compatibility hash) and match the
            // checksum written with them; `deserialize` copies them, so
            // nothing can change them while they are used.
            Some(code) => match unsafe { Component::deserialize(engine, code) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(entry = %name, error = %e, "ignoring unusable compiled component")
                }
            },
            None => tracing::warn!(
                entry = %name,
                "a compiled component in the cache does not match its checksum; compiling again"
            ),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(entry = %name, error = %e, "ignoring a cache entry"),
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&dir, &name, &component) {
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

/// The compiled code of entry `name` if its checksum matches.
fn verified<'a>(name: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let (header, code) = (bytes.get(..HEADER)?, bytes.get(HEADER..)?);
    (header[..MAGIC.len()] == MAGIC[..] && header[MAGIC.len()..] == checksum(name, code)[..])
        .then_some(code)
}

/// Covers the name too (it carries the component's digest and the
/// engine's hash): a good entry copied under another component's name does
/// not check out.
fn checksum(name: &str, code: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(code);
    h.finalize().into()
}

/// The cache directory (made, private, if missing), if only this user can
/// change what is in it.
fn open_dir(path: &Path) -> io::Result<Dir> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
    let meta = dir.dir_metadata()?;
    let me = rustix::process::geteuid().as_raw();
    let owner = cap_std::fs::MetadataExt::uid(&meta);
    let mode = cap_std::fs::PermissionsExt::mode(&meta.permissions());
    if owner != me || mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it belongs to user {owner} with mode {mode:o}; it must be this user's ({me}) \
                 and writable by nobody else"
            ),
        ));
    }
    Ok(dir)
}

fn store(dir: &Dir, name: &str, component: &Component) -> anyhow::Result<()> {
    let code = component.serialize()?;
    let mut bytes = Vec::with_capacity(HEADER + code.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&checksum(name, &code));
    bytes.extend_from_slice(&code);
    // Not fsynced: an entry torn by a power loss fails its checksum and is
    // compiled again.
    crate::fs_store::write_atomically(dir, Path::new("."), name, &bytes, false)?;
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
