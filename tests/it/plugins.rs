//! Agent plugins in the sandbox: the example plugin across two processes,
//! and hostile plugins that must be stopped without harm to anything else.

use std::path::PathBuf;
use std::time::Duration;

use agent_session_core::{SessionStatus, StartOptions};
use agent_session_host::plugin::{Outcome, PluginLimits, PluginRuntime};
use agent_session_host::{CacheDir, SessionHost};

use crate::common::{cache_dir, cli_json};

fn plugin_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("AGENT_SESSION_PLUGINS_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is built by host/build.rs (unless AGENT_SESSION_SKIP_PLUGINS is set)",
        path.display()
    );
    path
}

fn namespace(root: &std::path::Path, name: &str) -> SessionHost {
    PluginRuntime::namespace(root, name, CacheDir::At(cache_dir())).unwrap()
}

#[test]
fn the_example_plugin_pauses_and_a_second_process_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let wasm = plugin_path("approval_agent");
    let wasm = wasm.to_str().unwrap();
    let ran = cli_json(
        root,
        &[
            "plugin",
            "run",
            wasm,
            "--task",
            "fix the flaky test",
            "--config",
            r#"{"repo":"x"}"#,
        ],
    );
    assert_eq!(ran["outcome"], "returned", "{ran}");
    let result: serde_json::Value = serde_json::from_str(ran["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "paused");
    let id = result["session"].as_str().unwrap().to_owned();

    // Another process picks it up after the approval, by id alone.
    let resumed = cli_json(root, &["plugin", "resume", &id]);
    assert_eq!(resumed["outcome"], "returned", "{resumed}");

    let sessions = namespace(root, "approval_agent");
    let s = sessions.get(&id).unwrap();
    assert_eq!(s.status, SessionStatus::Completed);
    assert_eq!(s.iteration, 3);
    assert_eq!(
        s.context["config"], r#"{"repo":"x"}"#,
        "the config it was given"
    );
    let kinds: Vec<String> = sessions
        .events(&id, 0, 100)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "iteration",
            "tool_call",
            "iteration",
            "pause",
            "resume",
            "iteration",
            "complete"
        ]
    );
    // A different plugin may not take the namespace (and its sessions) over.
    let other = plugin_path("namespace_escape");
    let taken = crate::common::cli(
        root,
        &[
            "plugin",
            "run",
            other.to_str().unwrap(),
            "--task",
            "x",
            "--namespace",
            "approval_agent",
        ],
    );
    assert_eq!(
        taken.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let zero = crate::common::cli(
        root,
        &["plugin", "run", wasm, "--task", "x", "--memory", "0"],
    );
    assert_eq!(zero.status.code(), Some(2));

    // The namespace is the plugin's: the main root holds no sessions.
    assert!(
        crate::common::host_at(root)
            .list(&Default::default(), None, 10)
            .unwrap()
            .sessions
            .is_empty()
    );
}

#[test]
fn hostile_plugins_are_stopped_and_nothing_else_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let runtime = PluginRuntime::new(CacheDir::At(cache_dir())).unwrap();
    let load = |name: &str| {
        runtime
            .load(&std::fs::read(plugin_path(name)).unwrap())
            .unwrap()
    };
    // Someone else's session, in another namespace.
    let victim_ns = namespace(root, "victim");
    let victim = victim_ns
        .start(StartOptions {
            task: "minding my own business".into(),
            ..Default::default()
        })
        .unwrap();

    // Only the deadline case runs on a short clock: the others append up to
    // 200 durable events, which a busy 2-core machine cannot be trusted to
    // finish in a fraction of a second.
    let limits = PluginLimits {
        timeout: Duration::from_secs(60),
        memory: 16 << 20,
        fuel: None,
        calls: 200,
    };
    let deadline = PluginLimits {
        timeout: Duration::from_millis(300),
        ..limits.clone()
    };
    let looping = namespace(root, "loop");
    let run = runtime
        .run(&load("infinite_loop"), &looping, "spin", "", &deadline)
        .unwrap();
    assert!(
        matches!(&run.outcome, Outcome::TimedOut(m) if m.contains("deadline")),
        "{run:?}"
    );
    let started = looping.get(&run.sessions[0]).unwrap();
    assert_eq!(started.status, SessionStatus::Failed, "left consistent");
    assert!(started.error.unwrap().contains("deadline"));

    let fuelled = PluginLimits {
        fuel: Some(50_000_000),
        ..limits.clone()
    };
    let run = runtime
        .run(
            &load("infinite_loop"),
            &looping,
            "spin on fuel",
            "",
            &fuelled,
        )
        .unwrap();
    assert!(
        matches!(&run.outcome, Outcome::TimedOut(m) if m.contains("fuel")),
        "{run:?}"
    );

    let run = runtime
        .run(
            &load("memory_bomb"),
            &namespace(root, "bomb"),
            "grow",
            "",
            &limits,
        )
        .unwrap();
    assert!(
        matches!(&run.outcome, Outcome::Trapped(m) if m.contains("memory cap of 16 MiB")),
        "{run:?}"
    );

    let run = runtime
        .run(
            &load("sleeper"),
            &namespace(root, "sleep"),
            "nap",
            "",
            &limits,
        )
        .unwrap();
    assert!(
        matches!(&run.outcome, Outcome::Trapped(m) if m.contains("may not block")),
        "{run:?}"
    );

    let escape = namespace(root, "escape");
    let run = runtime
        .run(
            &load("namespace_escape"),
            &escape,
            "peek",
            &victim.id,
            &limits,
        )
        .unwrap();
    let Outcome::Returned(Ok(report)) = &run.outcome else {
        panic!("{run:?}");
    };
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["visible"], 0);
    for op in ["get", "fail", "delete"] {
        assert_eq!(report[&victim.id][op], "not-found", "{report}");
    }

    let flood = namespace(root, "flood");
    let run = runtime
        .run(&load("event_flood"), &flood, "flood", "", &limits)
        .unwrap();
    assert!(
        matches!(&run.outcome, Outcome::Returned(Err(m)) if m.contains("199 events")),
        "{run:?}"
    );
    assert_eq!(run.calls, 200);
    let flooded = flood.get(&run.sessions[0]).unwrap();
    assert_eq!(
        flooded.event_count, 201,
        "its start, 199 events, and the host's failure"
    );
    assert_eq!(flooded.status, SessionStatus::Failed, "not left active");

    // The host is still up, and the victim's session is as it was.
    let after = victim_ns.get(&victim.id).unwrap();
    assert_eq!(
        (after.status, after.version),
        (victim.status, victim.version)
    );
    let run = runtime
        .run(
            &load("approval_agent"),
            &namespace(root, "fine"),
            "still works",
            "",
            &limits,
        )
        .unwrap();
    assert!(matches!(run.outcome, Outcome::Returned(Ok(_))), "{run:?}");
}

#[test]
fn a_component_that_is_not_a_plugin_is_refused() {
    let runtime = PluginRuntime::new(CacheDir::At(cache_dir())).unwrap();
    let e = runtime
        .load(agent_session_host::SESSION_COMPONENT)
        .err()
        .expect("the session component imports a store plugins are not given");
    assert!(format!("{e:#}").contains("not granted"), "{e:#}");
    assert!(runtime.load(b"not wasm").is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(PluginRuntime::namespace(dir.path(), "../escape", CacheDir::Disabled).is_err());
    let unknown = crate::common::cli(
        dir.path(),
        &["plugin", "resume", "01a220e9-8bbd-7e22-97fb-b33b8a5d9f69"],
    );
    assert_eq!(unknown.status.code(), Some(3), "no namespace holds it");
}

#[test]
fn a_python_plugin_runs_in_the_same_runtime() {
    let wasm = std::env::var("AGENT_SESSION_PY_PLUGIN").expect(
        "AGENT_SESSION_PY_PLUGIN names the Python plugin; ./scripts/test.sh builds it \
         (scripts/python-plugin.sh)",
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ran = cli_json(root, &["plugin", "run", &wasm, "--task", "review the PR"]);
    assert_eq!(ran["outcome"], "returned", "{ran}");
    let result: serde_json::Value = serde_json::from_str(ran["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "paused");
    let id = result["session"].as_str().unwrap();
    let resumed = cli_json(root, &["plugin", "resume", id, "--plugin", &wasm]);
    assert_eq!(resumed["outcome"], "returned", "{resumed}");

    let s = namespace(root, "checklist_agent").get(id).unwrap();
    assert_eq!(s.status, SessionStatus::Completed);
    assert_eq!((s.mode.as_str(), s.iteration), ("python", 2));
    assert_eq!(s.context["language"], "python");
}
