//! Hostile roots and hostile input, tried as an attacker would through the
//! CLI: symlinks and hard links at every level, files that are not what
//! they claim, endless inputs, a corrupted compile cache, many first users
//! at once. Each must end in a typed error with its exit code, with no
//! byte outside the root changed and the process's memory bounded.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::common::{cache_dir, cli_json, snapshot};

/// A decoy tree next to the root: whatever the CLI does to the root, these
/// bytes must not change.
struct Decoy {
    dir: PathBuf,
    before: Vec<(PathBuf, Vec<u8>)>,
}

impl Decoy {
    fn new(parent: &Path) -> Self {
        let dir = parent.join("outside");
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        std::fs::write(dir.join("secret"), b"do not touch").unwrap();
        std::fs::write(dir.join("nested/log"), vec![7u8; 4096]).unwrap();
        Decoy {
            before: snapshot(&dir),
            dir,
        }
    }

    #[track_caller]
    fn untouched(&self) {
        assert_eq!(
            snapshot(&self.dir),
            self.before,
            "something outside the root changed"
        );
    }
}

/// What a CLI run ended with: exit code, stderr, peak memory.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss_kib: i64,
}

/// Run the CLI and measure the peak resident memory of that program alone.
/// A run that takes longer than [`RUN_LIMIT`] is killed and fails the test:
/// a hostile root must not hang a command either.
fn run(root: &Path, args: &[&str], cache: &Path) -> Run {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .arg("--dir")
        .arg(root)
        .args(args)
        .env("AGENT_SESSION_CACHE_DIR", cache)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id();
    // The peak of the program's own memory (VmHWM, kept per address space;
    // the rusage of wait4 would also count this test process, whose memory
    // the child had until its exec), read until it exits: a high-water
    // mark only grows, so the last reading is the peak but for the last
    // milliseconds.
    let hwm = || -> Option<i64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let started = std::time::Instant::now();
    let (mut max_rss_kib, mut timed_out) = (0i64, false);
    let status = loop {
        if let Some(kib) = hwm() {
            max_rss_kib = max_rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if !timed_out && started.elapsed() > RUN_LIMIT {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(!timed_out, "agent-session {args:?} hung; stderr: {stderr}");
    Run {
        code: status.code(),
        stdout,
        stderr,
        max_rss_kib,
    }
}

/// Longest a CLI run may take here (a compile of the component included).
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

#[track_caller]
fn expect(r: &Run, code: i32, kind: &str, mentions: &str) {
    assert_eq!(r.code, Some(code), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("error ({kind})")),
        "expected a {kind} error: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(mentions),
        "the message should name {mentions:?}: {}",
        r.stderr
    );
}

fn plugin(name: &str) -> String {
    PathBuf::from(env!("AGENT_SESSION_PLUGINS_DIR"))
        .join(format!("{name}.wasm"))
        .to_string_lossy()
        .into_owned()
}

fn start(root: &Path) -> String {
    cli_json(root, &["start", "t"])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The memory bound of the issue: every hostile input is refused under it.
const MAX_RSS_KIB: i64 = 256 * 1024;

#[test]
fn plugin_namespaces_do_not_follow_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::new(tmp.path());
    let cache = cache_dir();
    let wasm = plugin("approval_agent");

    // A namespace that is a symlink out of the root.
    let root = tmp.path().join("r1");
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::os::unix::fs::symlink(&decoy.dir, root.join("plugins/evil")).unwrap();
    let r = run(
        &root,
        &["plugin", "run", &wasm, "--task", "x", "--namespace", "evil"],
        &cache,
    );
    expect(&r, 8, "storage", "plugins/evil");
    decoy.untouched();

    // `plugins` itself a symlink.
    let root = tmp.path().join("r2");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&decoy.dir, root.join("plugins")).unwrap();
    let r = run(
        &root,
        &[
            "plugin",
            "run",
            &wasm,
            "--task",
            "x",
            "--namespace",
            "nested",
        ],
        &cache,
    );
    expect(&r, 8, "storage", "plugins");
    decoy.untouched();

    // A symlink that stays inside the root, to the main sessions: cap-std
    // would allow it, a namespace must not.
    let root = tmp.path().join("r3");
    let id = start(&root);
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::os::unix::fs::symlink("..", root.join("plugins/up")).unwrap();
    let r = run(
        &root,
        &["plugin", "run", &wasm, "--task", "x", "--namespace", "up"],
        &cache,
    );
    expect(&r, 8, "storage", "plugins/up");
    let r = run(&root, &["plugin", "resume", &id], &cache);
    assert_eq!(
        r.code,
        Some(3),
        "no namespace may reach the main root: {}",
        r.stderr
    );
    decoy.untouched();
}

#[test]
fn hard_linked_store_files_are_refused_and_never_written_or_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::new(tmp.path());
    let root = tmp.path().join("root");
    let id = start(&root);
    let cache = cache_dir();
    let log = root.join(format!("sessions/{id}/events.log"));
    // The outside file: a copy of the log with a torn append after it, so
    // a writer that trusted it would cut it and append to it.
    let outside = decoy.dir.join("nested/log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0xAB; 13]);
    std::fs::write(&outside, &bytes).unwrap();
    let decoy = Decoy {
        before: snapshot(&decoy.dir),
        dir: decoy.dir,
    };
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&outside, &log).unwrap();

    let r = run(&root, &["iterate", &id], &cache);
    expect(&r, 8, "storage", "hard links");
    let r = run(&root, &["fsck", "--repair"], &cache);
    assert_eq!(r.code, Some(8), "{}", r.stderr);
    assert!(r.stdout.contains("hard links"), "{}", r.stdout);
    decoy.untouched();

    // The snapshot document and the index, linked out.
    let other = start(&root);
    for _ in 0..17 {
        cli_json(&root, &["iterate", &other]);
    }
    let doc = root.join(format!("sessions/{other}/doc"));
    let index = root.join("index/sessions.log");
    for (file, name) in [(&doc, "doc"), (&index, "index")] {
        let out = decoy.dir.join(name);
        std::fs::copy(file, &out).unwrap();
        std::fs::remove_file(file).unwrap();
        std::fs::hard_link(&out, file).unwrap();
    }
    let decoy = Decoy {
        before: snapshot(&decoy.dir),
        dir: decoy.dir,
    };
    // Derived data that is refused does not stop the history: the session
    // is replayed from its log, the index entry is not written.
    let r = run(&root, &["iterate", &other], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&root, &["fsck", "--repair"], &cache);
    assert_eq!(r.code, Some(8), "{}", r.stderr);
    decoy.untouched();
}

#[test]
fn endless_and_oversized_inputs_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = cache_dir();
    start(&root);
    let big = tmp.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(100 << 20).unwrap();
    let text = tmp.path().join("not-utf8.json");
    std::fs::write(&text, [b'{', 0xff, 0xfe, b'}']).unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_str().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let cases: &[(&[&str], i32, &str, &str)] = &[
        (&["import", "/dev/zero"], 4, "invalid-input", "/dev/zero"),
        (
            &["import", "/dev/urandom"],
            4,
            "invalid-input",
            "/dev/urandom",
        ),
        (&["import", fifo], 4, "invalid-input", "fifo"),
        (
            &["import", big.to_str().unwrap()],
            4,
            "invalid-input",
            "big.json",
        ),
        (
            &["import", text.to_str().unwrap()],
            4,
            "invalid-input",
            "UTF-8",
        ),
        (&["import", dir], 4, "invalid-input", dir),
        (&["import", "/nonexistent/x.json"], 3, "not-found", "x.json"),
        (
            &["--max-input-bytes", "10", "import", text.to_str().unwrap()],
            0,
            "",
            "",
        ),
        (
            &["plugin", "run", "/dev/zero", "--task", "x"],
            10,
            "plugin-failed",
            "/dev/zero",
        ),
        (
            &["plugin", "run", big.to_str().unwrap(), "--task", "x"],
            10,
            "plugin-failed",
            "big.json",
        ),
        (
            &["plugin", "run", dir, "--task", "x"],
            10,
            "plugin-failed",
            dir,
        ),
    ];
    // A document under the cap whose one event holds 60 MB: read, handed
    // to the component, refused there, all under the memory bound.
    let id = start(&root);
    cli_json(&root, &["record", &id, "x.y", "--data", "{}"]);
    let mut doc = cli_json(&root, &["export", &id]);
    doc["events"][1]["data"] = serde_json::json!({ "blob": "x".repeat(60 << 20) });
    let huge = tmp.path().join("huge.json");
    std::fs::write(&huge, serde_json::to_vec(&doc).unwrap()).unwrap();
    drop(doc);
    let huge_args = ["import", huge.to_str().unwrap()];
    let r = run(&tmp.path().join("other"), &huge_args, &cache);
    expect(&r, 4, "invalid-input", "event 1: it is");
    // The measure sees the document it read (so it measures something).
    assert!(r.max_rss_kib > 60 * 1024, "{} KiB", r.max_rss_kib);
    assert!(
        r.max_rss_kib < MAX_RSS_KIB,
        "a 60 MB document used {} KiB",
        r.max_rss_kib
    );

    // 32 MiB of `0,`: 16 Mi values, refused before they are parsed.
    let zeros = tmp.path().join("zeros.json");
    std::fs::write(
        &zeros,
        format!("{{\"format\":\"x\",\"a\":[{}0]}}", "0,".repeat(16 << 20)),
    )
    .unwrap();
    let r = run(
        &tmp.path().join("other"),
        &["import", zeros.to_str().unwrap()],
        &cache,
    );
    expect(&r, 4, "invalid-input", "\"format\" must be");
    assert!(
        r.max_rss_kib < MAX_RSS_KIB,
        "16 Mi small values used {} KiB",
        r.max_rss_kib
    );

    for (args, code, kind, mentions) in cases {
        let r = run(&root, args, &cache);
        if *code == 0 {
            // 4 bytes under a 10-byte cap are read, and then refused as
            // what they are: not UTF-8.
            expect(&r, 4, "invalid-input", "UTF-8");
        } else {
            expect(&r, *code, kind, mentions);
        }
        assert!(
            r.max_rss_kib < MAX_RSS_KIB,
            "{args:?} used {} KiB",
            r.max_rss_kib
        );
    }
}

#[test]
fn bad_plugin_files_are_plugin_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = cache_dir();
    let file = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    };
    let real = std::fs::read(plugin("approval_agent")).unwrap();
    let mut garbage = real.clone();
    for b in garbage.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5a;
    }
    let session = PathBuf::from(env!("AGENT_SESSION_COMPONENT_PATH"));
    let files = [
        file("empty.wasm", b""),
        file("one.wasm", b"\0"),
        file("text.wasm", b"hello, I am a plugin\n"),
        // A core module, not a component.
        file("core.wasm", b"\0asm\x01\0\0\0"),
        file("truncated.wasm", &real[..real.len() / 2]),
        file("garbage.wasm", &garbage),
        session.to_string_lossy().into_owned(),
    ];
    for f in &files {
        let r = run(
            &root,
            &["plugin", "run", f, "--task", "x", "--namespace", "n"],
            &cache,
        );
        expect(&r, 10, "plugin-failed", "plugin");
    }
}

#[test]
fn a_corrupted_compile_cache_is_compiled_again_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = tmp.path().join("cache");
    let r = run(&root, &["start", "t", "-q"], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("the compiled component is cached");
    let good = std::fs::read(&entry).unwrap();
    let mut bad = good.clone();
    for b in &mut bad[0x1000..0x1100] {
        *b ^= 0xff;
    }
    std::fs::write(&entry, &bad).unwrap();
    let r = run(&root, &["start", "t", "-q"], &cache);
    assert_eq!(
        r.code,
        Some(0),
        "a flipped entry is compiled again: {}",
        r.stderr
    );
    assert!(r.stderr.contains("checksum"), "{}", r.stderr);
    assert_eq!(std::fs::read(&entry).unwrap(), good, "and written again");

    // An entry with another link, or in a folder others can write, is not
    // trusted either (the run still works, compiling).
    let elsewhere = tmp.path().join("linked.cwasm");
    std::fs::hard_link(&entry, &elsewhere).unwrap();
    let r = run(&root, &["start", "t", "-q"], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("hard links"), "{}", r.stderr);
    std::fs::remove_file(&elsewhere).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = run(&root, &["start", "t", "-q"], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("writable by nobody else"), "{}", r.stderr);
}

#[test]
fn many_first_users_of_a_new_root_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_dir();
    // Compiled once up front, so the race is about the root only.
    run(&tmp.path().join("warm"), &["stats"], &cache);
    for round in 0..6 {
        let root = tmp.path().join(format!("new-{round}"));
        // `run` bounds each wait; all six start at once.
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|p| {
                    let (root, cache) = (&root, &cache);
                    scope.spawn(move || run(root, &["start", &format!("x{p}"), "-q"], cache))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in runs {
            assert_eq!(r.code, Some(0), "round {round}: {}", r.stderr);
        }
        let listed = cli_json(&root, &["list"]);
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 6);
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn fsck_repair_goes_through_every_session_and_rebuilds_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::new(tmp.path());
    let root = tmp.path().join("root");
    let cache = cache_dir();
    let ids: Vec<String> = (0..5).map(|_| start(&root)).collect();
    // Newest first is the order fsck walks: damage comes before the torn
    // tail, so a walk that stopped at the first would not cut it.
    let sessions = root.join("sessions");
    // 1. the session directory a symlink out of the root;
    std::fs::remove_dir_all(sessions.join(&ids[4])).unwrap();
    std::os::unix::fs::symlink(&decoy.dir, sessions.join(&ids[4])).unwrap();
    // 2. the log a directory;
    let log = sessions.join(format!("{}/events.log", ids[3]));
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    // 3. the log a hard link;
    let log = sessions.join(format!("{}/events.log", ids[2]));
    let out = decoy.dir.join("linked-log");
    std::fs::copy(&log, &out).unwrap();
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&out, &log).unwrap();
    let decoy = Decoy {
        before: snapshot(&decoy.dir),
        dir: decoy.dir,
    };
    // 4. a torn tail on a healthy one.
    let torn = sessions.join(format!("{}/events.log", ids[1]));
    let whole = std::fs::read(&torn).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&torn)
        .unwrap();
    std::io::Write::write_all(&mut f, &[1, 2, 3]).unwrap();
    std::fs::remove_file(root.join("index/sessions.log")).unwrap();

    let r = run(&root, &["--json", "fsck", "--repair"], &cache);
    assert_eq!(r.code, Some(8), "damage is a storage error: {}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let damaged: Vec<String> = report["store"]["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[0].as_str().unwrap().to_owned())
        .collect();
    for id in &ids[2..] {
        assert!(
            damaged.iter().any(|d| d.ends_with(id.as_str())),
            "{id} is reported: {report}"
        );
    }
    assert_eq!(report["store"]["checked"], 5, "{report}");
    assert_eq!(
        std::fs::read(&torn).unwrap(),
        whole,
        "the torn tail was cut"
    );
    assert!(
        report["index"]["error"].is_null(),
        "the index was rebuilt: {report}"
    );
    assert!(!root.join("REINDEX").exists());
    let listed = cli_json(&root, &["list"]);
    let listed: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&ids[0].as_str()) && listed.contains(&ids[1].as_str()));
    decoy.untouched();
}

#[test]
fn bad_roots_and_unusable_files_get_typed_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_dir();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let r = run(&file, &["list"], &cache);
    expect(&r, 8, "storage", "a-file");

    // A root that belongs to another user (a service account's volume)
    // works for this one; a store file of a third user is refused.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    let id = start(&shared);
    let log = shared.join(format!("sessions/{id}/events.log"));
    std::os::unix::fs::chown(&log, Some(12345), None).unwrap();
    let r = run(&shared, &["iterate", &id], &cache);
    expect(&r, 8, "storage", "belongs to user 12345");

    // index/ and outbox/ symlinked out of the root.
    let decoy = Decoy::new(tmp.path());
    for sub in ["index", "outbox"] {
        let root = tmp.path().join(format!("root-{sub}"));
        start(&root);
        std::fs::remove_dir_all(root.join(sub)).unwrap();
        std::os::unix::fs::symlink(&decoy.dir, root.join(sub)).unwrap();
        let r = run(&root, &["--json", "list"], &cache);
        assert!(
            matches!(r.code, Some(0) | Some(8)),
            "{sub}: {} {}",
            r.stdout,
            r.stderr
        );
        // The outbox is needed to start (its notifications are queued
        // first); the index is derived data, so a history may still be
        // written, and listing it is the storage error.
        let r = run(&root, &["start", "x"], &cache);
        match sub {
            "outbox" => assert_eq!(r.code, Some(8), "{sub}: {}", r.stderr),
            _ => {
                assert!(matches!(r.code, Some(0) | Some(8)), "{sub}: {}", r.stderr);
                let r = run(&root, &["list"], &cache);
                expect(&r, 8, "storage", "symbolic link");
            }
        }
        decoy.untouched();
    }
}

#[test]
fn maintenance_on_a_read_only_root_is_a_storage_error() {
    let fs = crate::common::Tmpfs::mount("16m");
    let root = fs.path().join("root");
    let cache = cache_dir();
    let id = start(&root);
    let log = root.join(format!("sessions/{id}/events.log"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[9; 5]).unwrap();
    drop(f);
    fs.remount_read_only();
    for args in [
        &["fsck", "--repair"][..],
        &["compact"][..],
        &["deliver", "--once"][..],
        &["iterate", &id][..],
    ] {
        let r = run(&root, args, &cache);
        assert_eq!(r.code, Some(8), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("error (storage)"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Reading still works.
    let r = run(&root, &["show", &id], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn a_listing_with_unreadable_sessions_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let decoy = Decoy::new(tmp.path());
    let root = tmp.path().join("root");
    let cache = cache_dir();
    let ids: Vec<String> = (0..4).map(|_| start(&root)).collect();
    let sessions = root.join("sessions");
    std::fs::remove_dir_all(sessions.join(&ids[0])).unwrap();
    std::os::unix::fs::symlink(&decoy.dir, sessions.join(&ids[0])).unwrap();
    let log = sessions.join(format!("{}/events.log", ids[1]));
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let log = sessions.join(format!("{}/events.log", ids[2]));
    let linked = decoy.dir.join("linked");
    std::fs::copy(&log, &linked).unwrap();
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&linked, &log).unwrap();
    let decoy = Decoy {
        before: snapshot(&decoy.dir),
        dir: decoy.dir,
    };

    let r = run(&root, &["--json", "list"], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let page: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1, "{page}");
    let unreadable = page["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 3, "{page}");
    for id in &ids[..3] {
        assert!(r.stderr.contains(id.as_str()), "{id} named: {}", r.stderr);
        assert!(
            unreadable
                .iter()
                .any(|u| u.as_str().unwrap().starts_with(id.as_str()))
        );
    }
    let r = run(&root, &["list"], &cache);
    assert!(
        r.stderr
            .contains("3 session(s) of this page could not be read"),
        "{}",
        r.stderr
    );
    // stats counts what the index holds: listed + unreadable.
    assert_eq!(cli_json(&root, &["stats"])["total"], 4);
    // A repair cannot mend them, and does not hide them either.
    let r = run(&root, &["fsck", "--repair"], &cache);
    assert_eq!(r.code, Some(8), "{}", r.stderr);
    let r = run(&root, &["--json", "list"], &cache);
    let page: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(page["unreadable"].as_array().unwrap().len(), 3, "{page}");
    assert_eq!(cli_json(&root, &["stats"])["total"], 4);
    decoy.untouched();
}

#[test]
fn small_things_are_refused_or_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = cache_dir();
    for url in [
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://[fe80::1%25lo]:18080/",
        "http://[::1/",
        "http://user:pw@example.com/",
    ] {
        let r = run(
            &root,
            &[
                "webhook",
                "set",
                url,
                "--secret",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
            &cache,
        );
        expect(&r, 4, "invalid-input", "webhook url");
    }
    let r = run(
        &root,
        &[
            "start",
            "x",
            "--context",
            r#"{"a":123456789012345678901234567890}"#,
        ],
        &cache,
    );
    expect(&r, 4, "invalid-input", "cannot be stored exactly");
    let r = run(&root, &["list", "--cursor", "garbage"], &cache);
    expect(&r, 4, "invalid-input", "cursor");

    // A task that would print right-to-left: escaped on a terminal, kept
    // exactly in JSON.
    let task = "invoice \u{202e}fdp.exe";
    let id = cli_json(&root, &["start", task])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [&["list"][..], &["show", &id][..]] {
        let r = run(&root, args, &cache);
        assert_eq!(r.code, Some(0));
        assert!(!r.stdout.contains('\u{202e}'), "{args:?}: {}", r.stdout);
        assert!(r.stdout.contains("\\u{202e}"), "{args:?}: {}", r.stdout);
    }
    assert_eq!(cli_json(&root, &["show", &id])["task"], task);
}

#[test]
fn fifos_and_sparse_giants_in_the_root_are_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache_dir();
    let mkfifo = |p: &Path| {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success()
        )
    };
    // FORMAT a FIFO: every command is refused, none waits for a writer.
    let root = tmp.path().join("format");
    start(&root);
    std::fs::remove_file(root.join("FORMAT")).unwrap();
    mkfifo(&root.join("FORMAT"));
    for args in [&["list"][..], &["fsck"][..]] {
        let r = run(&root, args, &cache);
        expect(&r, 8, "storage", "FORMAT");
    }
    // A snapshot that is a FIFO is ignored (the history is replayed) and
    // reported by fsck.
    let root = tmp.path().join("doc");
    let id = start(&root);
    mkfifo(&root.join(format!("sessions/{id}/doc")));
    let r = run(&root, &["show", &id], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&root, &["fsck"], &cache);
    assert_eq!(r.code, Some(8), "{}", r.stderr);
    assert!(r.stdout.contains("not a regular file"), "{}", r.stdout);
    // A log made sparse and huge: a storage error, not an abort, and the
    // other sessions are still listed.
    let root = tmp.path().join("sparse");
    let other = start(&root);
    let id = start(&root);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(format!("sessions/{id}/events.log")))
        .unwrap();
    f.set_len(100 << 30).unwrap();
    let r = run(&root, &["show", &id], &cache);
    expect(&r, 8, "storage", "read at once");
    let r = run(&root, &["--json", "list"], &cache);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains(&other), "{}", r.stdout);
    let r = run(&root, &["fsck"], &cache);
    assert_eq!(r.code, Some(8), "{}", r.stderr);
    assert!(
        r.max_rss_kib < MAX_RSS_KIB,
        "fsck used {} KiB",
        r.max_rss_kib
    );
}
