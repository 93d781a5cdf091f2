//! The shared cases of the `root` capability (`tests/root/cases.json`, the
//! same file the Node and Python implementations run) against the Rust
//! host's [`DirRoot`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use agent_session_dir_store::{ErrorCode, Root, RootError};
use agent_session_host::root::DirRoot;
use serde_json::{Value, json};

fn code(e: &RootError) -> &'static str {
    match e.code {
        ErrorCode::NotFound => "not-found",
        ErrorCode::Exists => "exists",
        ErrorCode::Refused => "refused",
        ErrorCode::Gone => "gone",
        ErrorCode::Busy => "busy",
        ErrorCode::Full => "full",
        ErrorCode::ReadOnly => "read-only",
        ErrorCode::Io => "io",
    }
}

/// `outside/` as names → kind and content, never following a link.
fn snapshot(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.strip_prefix(base).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(
                name,
                format!("link {}", std::fs::read_link(&path).unwrap().display()),
            );
        } else if meta.is_dir() {
            out.insert(name, "dir".into());
            snapshot(&path, base, out);
        } else {
            out.insert(name, format!("file {:?}", std::fs::read(&path).unwrap()));
        }
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    v["text"]
        .as_str()
        .expect("bytes are {text}")
        .as_bytes()
        .to_vec()
}

fn run_case(case: &Value) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir(t.join("root")).unwrap();
    std::fs::create_dir(t.join("outside")).unwrap();
    let parent = |p: &Path| std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    for step in case["setup"].as_array().into_iter().flatten() {
        if let Some(p) = step["mkdir"].as_str() {
            std::fs::create_dir_all(t.join(p)).unwrap();
        } else if let Some(p) = step["write"].as_str() {
            parent(&t.join(p));
            std::fs::write(t.join(p), step["text"].as_str().unwrap()).unwrap();
        } else if let Some(target) = step["symlink"].as_str() {
            let at = t.join(step["at"].as_str().unwrap());
            parent(&at);
            std::os::unix::fs::symlink(target, at).unwrap();
        } else if let Some(src) = step["hardlink"].as_str() {
            let at = t.join(step["at"].as_str().unwrap());
            parent(&at);
            std::fs::hard_link(t.join(src), at).unwrap();
        } else if let Some(p) = step["fifo"].as_str() {
            parent(&t.join(p));
            rustix::fs::mknodat(
                rustix::fs::CWD,
                t.join(p),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        } else {
            panic!("unknown setup step {step}");
        }
    }
    let mut before = BTreeMap::new();
    snapshot(&t.join("outside"), t, &mut before);
    let root = DirRoot::open(&t.join("root")).unwrap();
    let mut results: Vec<Option<u64>> = Vec::new();
    let mut failures = Vec::new();
    for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        results.push(None);
        if let Some(p) = step["check"].as_str() {
            let got = std::fs::read(t.join(p)).map(|b| String::from_utf8_lossy(&b).into_owned());
            if got.as_deref().ok() != step["text"].as_str() {
                failures.push(format!("step {i}: {p} holds {got:?}"));
            }
            continue;
        }
        if let Some(p) = step["check_absent"].as_str() {
            if std::fs::symlink_metadata(t.join(p)).is_ok() {
                failures.push(format!("step {i}: {p} is there"));
            }
            continue;
        }
        let a = step["args"].as_array().unwrap();
        let s = |n: usize| a[n].as_str().unwrap();
        let u = |n: usize| a[n].as_u64().unwrap();
        let b = |n: usize| a[n].as_bool().unwrap();
        let call = step["call"].as_str().unwrap();
        let got: Result<Value, RootError> = match call {
            "stat" => root.stat(s(0)).map(|o| {
                o.map_or(
                    Value::Null,
                    |st| json!({"size": st.size, "directory": st.directory}),
                )
            }),
            "read" => root
                .read(s(0), u(1), u(2))
                .map(|v| json!({"text": String::from_utf8_lossy(&v)})),
            "append" => root.append(s(0), &bytes(&a[1]), b(2)).map(|n| json!(n)),
            "write-at" => root
                .write_at(s(0), u(1), &bytes(&a[2]))
                .map(|()| Value::Null),
            "truncate" => root.truncate(s(0), u(1), b(2)).map(|()| Value::Null),
            "replace" => root
                .replace(s(0), &bytes(&a[1]), b(2))
                .map(|()| Value::Null),
            "create-dir" => root.create_dir(s(0), b(1)).map(|m| json!(m)),
            "sync-dir" => root.sync_dir(s(0)).map(|()| Value::Null),
            "list" => root.list(s(0)).map(|mut v| {
                v.sort();
                json!(v)
            }),
            "rename" => root.rename(s(0), s(1)).map(|()| Value::Null),
            "remove-file" => root.remove_file(s(0)).map(|m| json!(m)),
            "remove-tree" => root.remove_tree(s(0)).map(|m| json!(m)),
            "lock" => root.lock(s(0), b(1), b(2)).map(|h| {
                results[i] = h;
                h.map_or(Value::Null, |_| json!("handle"))
            }),
            "unlock" => {
                let handle = match a[0].get("handle") {
                    Some(k) => results[k.as_u64().unwrap() as usize].expect("a handle"),
                    None => u(0),
                };
                root.unlock(handle);
                Ok(Value::Null)
            }
            other => panic!("unknown call {other}"),
        };
        match (&got, step.get("ok"), step.get("err")) {
            (Ok(v), Some(want), None) if v == want => {}
            (Err(e), None, Some(want)) if code(e) == want.as_str().unwrap() => {}
            _ => failures.push(format!(
                "step {i}: {call} {a:?} gave {:?}, wanted {}",
                got.as_ref().map_err(|e| (code(e), e.message.clone())),
                step.get("ok")
                    .map_or_else(|| format!("err {}", step["err"]), |v| format!("ok {v}"))
            )),
        }
    }
    drop(root);
    let mut after = BTreeMap::new();
    snapshot(&t.join("outside"), t, &mut after);
    if before != after {
        failures.push(format!("outside/ changed: {before:?} → {after:?}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n  "))
    }
}

#[test]
fn the_rust_root_passes_the_shared_cases() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/root/cases.json");
    let cases: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let mut failed = Vec::new();
    let cases = cases["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 20,
        "the case file holds {} cases",
        cases.len()
    );
    for case in cases {
        let name = case["name"].as_str().unwrap().to_owned();
        let (tx, rx) = mpsc::channel();
        let case = case.clone();
        std::thread::spawn(move || {
            let _ = tx.send(run_case(&case));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failed.push(format!("{name}:\n  {why}")),
            Err(_) => failed.push(format!("{name}: no answer within 30 s (or it panicked)")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
