//! The `agent-session` binary: the acceptance scenarios of the README.

use crate::common::{cli, cli_json};

#[test]
fn max_iterations_time_out_and_completed_sessions_refuse_iterate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = cli_json(
        root,
        &[
            "start",
            "Implement feature X",
            "--mode",
            "developer",
            "--user",
            "u1",
            "--channel",
            "c1",
            "--max-iterations",
            "3",
        ],
    );
    let id = s["id"].as_str().unwrap();
    for _ in 0..3 {
        cli_json(root, &["iterate", id]);
    }
    let shown = cli_json(root, &["show", id]);
    assert_eq!(shown["status"], "timeout");
    assert_eq!(shown["iteration"], 3);
    assert_eq!(shown["progress"], 100.0);
    let again = cli(root, &["iterate", id]);
    assert_eq!(again.status.code(), Some(5), "invalid transition");
}

#[test]
fn pause_and_resume_in_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = cli_json(root, &["start", "long task"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = cli_json(root, &["pause", &id, "--reason", "waiting for review"]);
    assert_eq!(p["status"], "paused");
    let r = cli_json(root, &["resume", &id]);
    assert_eq!(r["status"], "active");
    assert_eq!(r["pause_reason"], serde_json::Value::Null);
    let ctx = cli_json(root, &["context", &id]);
    let kinds: Vec<_> = ctx["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["start", "pause", "resume"]);
}

#[test]
fn list_filters_and_stats_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = cli_json(root, &["start", "a", "--user", "u1", "--mode", "developer"]);
    let b = cli_json(root, &["start", "b", "--user", "u1", "--mode", "chat"]);
    cli_json(root, &["start", "c", "--user", "u2", "--mode", "developer"]);
    cli_json(root, &["pause", b["id"].as_str().unwrap()]);
    cli_json(
        root,
        &[
            "complete",
            a["id"].as_str().unwrap(),
            "--result",
            "{\"ok\":true}",
        ],
    );
    let d = cli_json(root, &["start", "d", "--user", "u1"]);
    let e = cli_json(root, &["start", "e", "--user", "u1"]);
    cli_json(root, &["fail", e["id"].as_str().unwrap(), "broken"]);

    let page = cli_json(root, &["list", "--status", "active", "--user", "u1"]);
    let ids: Vec<_> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [d["id"].clone()]);

    let st = cli_json(root, &["stats"]);
    assert_eq!(st["total"], 5);
    assert_eq!(st["by_status"]["active"], 2);
    assert_eq!(st["by_status"]["paused"], 1);
    assert_eq!(st["by_status"]["completed"], 1);
    assert_eq!(st["by_status"]["failed"], 1);
    assert_eq!(st["by_mode"]["developer"], 2);
    assert_eq!(st["by_mode"]["default"], 2);
    assert_eq!(st["average_iterations"], 0.0);
    assert_eq!(st["success_rate"], 0.5);
    let u2 = cli_json(root, &["stats", "--user", "u2"]);
    assert_eq!(u2["total"], 1);
}

#[test]
fn every_subcommand_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = cli_json(root, &["start", "tour", "--context", "{\"repo\":\"x\"}"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli_json(root, &["iterate", &id, "--data", "{\"step\":1}"]);
    let tc = cli_json(
        root,
        &[
            "tool-call",
            &id,
            "--name",
            "grep",
            "--input",
            "{\"q\":\"fn\"}",
            "--output",
            "[1]",
            "--duration-ms",
            "5",
        ],
    );
    assert_eq!(tc["events"][0]["kind"], "tool_call");
    cli_json(
        root,
        &["learn", &id, "tests live in tests/", "--file", "NOTES.md"],
    );
    cli_json(root, &["record", &id, "deploy.started", "--data", "{}"]);
    let c = cli_json(root, &["context", &id, "--set", "{\"branch\":\"main\"}"]);
    assert_eq!(
        c["context"],
        serde_json::json!({"repo": "x", "branch": "main"})
    );
    let ev = cli_json(root, &["events", &id, "--from", "1", "--limit", "2"]);
    assert_eq!(ev["events"].as_array().unwrap().len(), 2);
    assert_eq!(ev["next_seq"], 3);
    assert_eq!(
        cli_json(root, &["events", &id, "--recent"])["events"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    let export = dir.path().join("export.json");
    let out = cli(root, &["export", &id, "-o", export.to_str().unwrap()]);
    assert!(out.status.success());
    let other = tempfile::tempdir().unwrap();
    let imported = cli_json(other.path(), &["import", export.to_str().unwrap()]);
    assert_eq!(imported["id"], id.as_str());

    let hook = cli_json(
        root,
        &[
            "webhook",
            "set",
            "https://example.test/h",
            "--secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--events",
            "session.completed,session.failed",
        ],
    );
    assert_eq!(hook["event_kinds"].as_array().unwrap().len(), 2);
    let shown = cli_json(root, &["webhook", "show"]);
    assert!(
        !shown["secret"].as_str().unwrap().contains("MfKQ"),
        "secret is masked"
    );
    cli_json(root, &["complete", &id]);
    let queued = cli_json(root, &["deliveries", "--state", "pending"]);
    assert_eq!(queued.as_array().unwrap().len(), 1);
    assert_eq!(queued[0]["notification"]["kind"], "session.completed");
    cli_json(root, &["webhook", "clear"]);
    assert_eq!(
        cli_json(root, &["webhook", "show"]),
        serde_json::Value::Null
    );

    let dry = cli_json(root, &["cleanup", "--older-than", "0", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1);
    assert!(cli(root, &["show", &id]).status.success());
    cli_json(root, &["cleanup", "--older-than", "0"]);
    assert_eq!(cli(root, &["show", &id]).status.code(), Some(3));
    cli_json(other.path(), &["delete", &id]);
    assert_eq!(cli(other.path(), &["show", &id]).status.code(), Some(3));

    // Tables for people.
    let table = cli(root, &["list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("no sessions"));
    let help = cli(root, &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes"));
}

#[test]
fn dir_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .args(["--json", "start", "from env"])
        .env("AGENT_SESSION_DIR", dir.path())
        .env("AGENT_SESSION_CACHE_DIR", crate::common::cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("sessions").is_dir());
}

#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    cli_json(root, &["start", "printed to nobody"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .arg("--dir")
        .arg(root)
        .arg("list")
        .env("AGENT_SESSION_CACHE_DIR", crate::common::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the CLI has loaded the component, so its first write
    // meets a pipe without a reader (`agent-session list | head`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// One version for the whole project (README "Versions"): the CLI, the
/// crates, the npm package, the Python package and the WIT package say the
/// same.
#[test]
fn every_artifact_tells_the_same_version() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let version = env!("CARGO_PKG_VERSION");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("agent-session {version}")
    );
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).unwrap();
    let npm: serde_json::Value = serde_json::from_str(&read("packages/node/package.json")).unwrap();
    assert_eq!(npm["version"], version, "packages/node/package.json");
    assert!(
        read("packages/python/pyproject.toml").contains(&format!("\nversion = \"{version}\"\n")),
        "packages/python/pyproject.toml"
    );
    for wit in ["wit/session.wit", "wit/plugin.wit"] {
        assert!(
            read(wit).starts_with(&format!("package agent:session@{version};")),
            "{wit}"
        );
    }
    // The hosts name the WIT package with that version too.
    assert!(
        read("packages/python/agent_session/_runtime.py")
            .contains(&format!("VERSION = \"{version}\"")),
        "packages/python/agent_session/_runtime.py"
    );
}
