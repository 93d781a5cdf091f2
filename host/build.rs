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
        "guests/session-on-root",
        "guests/session",
        "guests/plugins",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_COMPONENT");
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_ON_ROOT");
    println!("cargo:rerun-if-env-changed=AGENT_SESSION_SKIP_PLUGINS");

    // Prebuilt components may be given instead (packagers, offline builds);
    // what is not given is built, in one nested cargo.
    let release = target_dir(workspace).join(TARGET).join("release");
    let given = |var: &str| env::var_os(var).map(PathBuf::from);
    let (wasm, on_root) = (
        given("AGENT_SESSION_COMPONENT"),
        given("AGENT_SESSION_ON_ROOT"),
    );
    let mut packages = Vec::new();
    if wasm.is_none() {
        packages.extend(["-p", "agent-session-guest"]);
    }
    // The session component with the directory store linked in: the
    // artifact the Node and Python hosts run (the Rust host links the same
    // store natively).
    if on_root.is_none() {
        packages.extend(["-p", "agent-session-on-root"]);
    }
    if !packages.is_empty() {
        build_guest(workspace, &packages, "session components");
    }
    let wasm = wasm.unwrap_or_else(|| release.join("agent_session_guest.wasm"));
    let on_root = on_root.unwrap_or_else(|| release.join("agent_session_on_root.wasm"));
    println!(
        "cargo:rustc-env=AGENT_SESSION_COMPONENT_PATH={}",
        wasm.display()
    );
    println!(
        "cargo:rustc-env=AGENT_SESSION_ON_ROOT_PATH={}",
        on_root.display()
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
