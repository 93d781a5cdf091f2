//! Builds the session component (`guests/session`) for `wasm32-wasip2` and
//! hands its path to the host crate, which embeds it; and the agent plugins
//! (`guests/plugins`, used by the tests and benchmarks), whose directory it
//! hands on as `AGENT_SESSION_PLUGINS_DIR`. A nested cargo with its own
//! target directory is used (as wasmtime builds its test programs), so the
//! outer build's lock is not contended.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ is inside the workspace");
    for path in [
        "wit",
        "core/src",
        "core/Cargo.toml",
        "dir-store/src",
        "dir-store/Cargo.toml",
        "guests/dir-store",
        "guests/session",
        "guests/plugins",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_COMPONENT");
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_COMPOSED");
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_SKIP_PLUGINS");

    // A prebuilt component may be given instead (packagers, offline builds).
    let wasm = match env::var_os("AGENT_SESSION_COMPONENT") {
        Some(path) => PathBuf::from(path),
        None => {
            let release = target_dir(workspace).join(TARGET).join("release");
            build_guest(
                workspace,
                &["-p", "agent-session-guest"],
                "session component",
            );
            release.join("agent_session_guest.wasm")
        }
    };
    println!(
        "cargo:rustc-env=AGENT_SESSION_COMPONENT_PATH={}",
        wasm.display()
    );
    // The directory store as a component, composed with the session
    // component: the artifact the Node and Python hosts run (the Rust host
    // links the same store natively). It sits beside the session component.
    let composed = match env::var_os("AGENT_SESSION_COMPOSED") {
        Some(path) => PathBuf::from(path),
        None => {
            let release = target_dir(workspace).join(TARGET).join("release");
            build_guest(
                workspace,
                &["-p", "agent-session-dir-store-guest"],
                "directory-store component",
            );
            let out = release.join("agent_session.wasm");
            compose(
                &wasm,
                &release.join("agent_session_dir_store_guest.wasm"),
                &out,
            );
            out
        }
    };
    println!(
        "cargo:rustc-env=AGENT_SESSION_COMPOSED_PATH={}",
        composed.display()
    );
    let plugins = match env::var_os("AGENT_SESSION_SKIP_PLUGINS") {
        // Packagers need no test plugins (the tests then say they are missing).
        Some(_) => PathBuf::new(),
        None => {
            build_guest(
                workspace,
                &["-p", "agent-session-plugins", "--examples"],
                "example plugins",
            );
            target_dir(workspace)
                .join(TARGET)
                .join("release")
                .join("examples")
        }
    };
    println!(
        "cargo:rustc-env=AGENT_SESSION_PLUGINS_DIR={}",
        plugins.display()
    );
}

fn target_dir(workspace: &std::path::Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-guest")
}

fn build_guest(workspace: &std::path::Path, what: &[&str], name: &str) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "--release", "--locked"])
        .args(what)
        .args(["--target", TARGET, "--target-dir"])
        .arg(target_dir(workspace))
        // The outer build's flags and wrappers (clippy, coverage) are for
        // the host target, not for the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the {name}: {e}"));
    if !status.success() {
        panic!(
            "building the {name} for {TARGET} failed (see above). \
             If the target is missing, run: rustup target add {TARGET}"
        );
    }
}

/// The WIT package the components share, with its version.
const PACKAGE: &str = "agent:session";
const VERSION: &str = "0.3.0";

/// Plug the directory store's `store` and `notify` exports into the session
/// component's imports; the composed component exports `sessions` and
/// imports what is left: `root` and the WASI clocks and randomness.
fn compose(session: &std::path::Path, dir_store: &std::path::Path, out: &std::path::Path) {
    use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
    let read = |p: &std::path::Path| {
        std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        panic!("composing the components: {what}: {e}")
    };
    let mut graph = CompositionGraph::new();
    let store_pkg =
        Package::from_bytes("agent:dir-store", None, read(dir_store), graph.types_mut())
            .unwrap_or_else(|e| fail("the directory store", &e));
    let store_pkg = graph
        .register_package(store_pkg)
        .unwrap_or_else(|e| fail("registering the directory store", &e));
    let session_pkg = Package::from_bytes(
        "agent:session-engine",
        None,
        read(session),
        graph.types_mut(),
    )
    .unwrap_or_else(|e| fail("the session component", &e));
    let session_pkg = graph
        .register_package(session_pkg)
        .unwrap_or_else(|e| fail("registering the session component", &e));
    let store = graph.instantiate(store_pkg);
    let sessions = graph.instantiate(session_pkg);
    for interface in ["store", "notify"] {
        let name = format!("{PACKAGE}/{interface}@{VERSION}");
        let export = graph
            .alias_instance_export(store, &name)
            .unwrap_or_else(|e| fail(&name, &e));
        graph
            .set_instantiation_argument(sessions, &name, export)
            .unwrap_or_else(|e| fail(&name, &e));
    }
    let name = format!("{PACKAGE}/sessions@{VERSION}");
    let export = graph
        .alias_instance_export(sessions, &name)
        .unwrap_or_else(|e| fail(&name, &e));
    graph
        .export(export, &name)
        .unwrap_or_else(|e| fail(&name, &e));
    let bytes = graph
        .encode(EncodeOptions::default())
        .unwrap_or_else(|e| fail("encoding", &e));
    std::fs::write(out, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
