use super::*;
use agent_session_dir_store::{DirStore, ErrorCode, RootError, frame};

fn rec(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn appends_are_positional_and_conflicts_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append("c", "k", 0, &[rec("a")], b"s0").unwrap();
    assert!(matches!(
        s.append("c", "k", 0, &[rec("x")], b"s"),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.append("c", "k", 2, &[rec("x")], b"s"),
        Err(StoreError::Conflict(_))
    ));
    s.append("c", "k", 1, &[rec("b"), rec("c")], b"s2").unwrap();
    assert_eq!(
        s.read("c", "k", 0, 10).unwrap(),
        [rec("a"), rec("b"), rec("c")]
    );
    assert_eq!(s.read("c", "k", 1, 1).unwrap(), [rec("b")]);
    assert_eq!(s.read("c", "k", 3, 10).unwrap(), Vec::<Vec<u8>>::new());
    // Another handle on the same root sees the same log and index.
    let again = FsStore::open(dir.path()).unwrap();
    assert_eq!(again.read("c", "k", 2, 10).unwrap(), [rec("c")]);
    let idx = again.scan("c", None, 10).unwrap();
    assert_eq!(
        (idx[0].key.as_str(), idx[0].summary.as_slice()),
        ("k", &b"s2"[..])
    );
    assert_eq!(s.keys("c", None, 10).unwrap(), ["k"]);
    assert!(matches!(
        s.remove("c", "k", 2),
        Err(StoreError::Conflict(_))
    ));
    s.remove("c", "k", 3).unwrap();
    assert!(s.read("c", "k", 0, 10).unwrap().is_empty());
    assert!(again.scan("c", None, 10).unwrap().is_empty());
}

#[test]
fn a_torn_append_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append("c", "k", 0, &[rec("a")], b"").unwrap();
    let log = dir.path().join("c/k/events.log");
    let good = std::fs::metadata(&log).unwrap().len();
    // A crash in the middle of a two-record append.
    let mut torn = Vec::new();
    frame::encode_batch(1, &[rec("b"), rec("c")], &mut torn);
    torn.truncate(torn.len() - 1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    assert_eq!(
        s.read("c", "k", 0, 10).unwrap(),
        [rec("a")],
        "readers skip it"
    );
    let report = s.check("c", false, |_, _| {}).unwrap();
    assert_eq!(report.torn_tails, ["c/k"]);
    s.append("c", "k", 1, &[rec("d")], b"").unwrap();
    assert_eq!(s.read("c", "k", 0, 10).unwrap(), [rec("a"), rec("d")]);
    assert!(std::fs::metadata(&log).unwrap().len() > good);
    assert!(
        s.check("c", false, |_, _| {})
            .unwrap()
            .torn_tails
            .is_empty()
    );
}

#[test]
fn damage_names_the_log_and_other_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append("c", "bad", 0, &[rec("first"), rec("second")], b"")
        .unwrap();
    s.append("c", "good", 0, &[rec("x")], b"").unwrap();
    let log = dir.path().join("c/bad/events.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[frame::HEADER] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    match s.read("c", "bad", 0, 10) {
        Err(StoreError::Io(m)) => assert!(m.contains("c/bad/events.log"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.read("c", "good", 0, 10).unwrap(), [rec("x")]);
    let report = s.check("c", true, |_, _| {}).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].0, "c/bad");
}

#[test]
fn a_stale_or_lost_offsets_file_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append("c", "k", 0, &[rec("a"), rec("b")], b"").unwrap();
    std::fs::remove_file(dir.path().join("c/k/events.idx")).unwrap();
    assert_eq!(s.read("c", "k", 1, 5).unwrap(), [rec("b")]);
    std::fs::write(dir.path().join("c/k/events.idx"), 7u64.to_le_bytes()).unwrap();
    assert_eq!(s.read("c", "k", 0, 5).unwrap(), [rec("a"), rec("b")]);
    s.append("c", "k", 2, &[rec("c")], b"").unwrap();
    assert_eq!(s.read("c", "k", 2, 5).unwrap(), [rec("c")]);
}

#[test]
fn documents_are_versioned_and_damage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    assert_eq!(s.get("c", "k").unwrap(), None);
    assert_eq!(s.put("c", "k", b"one", 0, true).unwrap(), 1);
    assert!(matches!(
        s.put("c", "k", b"x", 0, true),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.put("c", "k", b"two", 1, true).unwrap(), 2);
    assert_eq!(s.get("c", "k").unwrap().unwrap().data, b"two");
    std::fs::write(dir.path().join("c/k/doc"), b"garbage").unwrap();
    assert!(matches!(s.get("c", "k"), Err(StoreError::Io(_))));
    std::fs::write(dir.path().join("FORMAT"), b"other 9\n").unwrap();
    assert!(FsStore::open(dir.path()).is_err());
}

#[test]
fn names_are_confined() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    for bad in ["..", "../x", "a/b", "", ".trash", "a\0"] {
        assert!(
            matches!(s.get("col", bad), Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
        assert!(
            matches!(
                s.append(bad, "k", 0, &[], b""),
                Err(StoreError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_index_survives_compaction_and_other_handles_follow() {
    let dir = tempfile::tempdir().unwrap();
    let a = FsStore::open(dir.path()).unwrap();
    let b = FsStore::open(dir.path()).unwrap();
    for i in 0..50 {
        a.append("c", &format!("k{i:02}"), 0, &[rec("x")], b"v1")
            .unwrap();
    }
    assert_eq!(b.scan("c", None, 100).unwrap().len(), 50);
    for i in 0..50 {
        a.reindex("c", &format!("k{i:02}"), b"v2").unwrap();
    }
    let (before, after) = a.compact("c").unwrap();
    assert!(after < before);
    let entries = b.scan("c", Some("k10"), 3).unwrap();
    let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["k09", "k08", "k07"]);
    assert!(entries.iter().all(|e| e.summary == b"v2"));
    a.reindex("c", "k00", b"v3").unwrap();
    assert_eq!(
        b.scan("c", None, 100).unwrap().last().unwrap().summary,
        b"v3"
    );
}

#[test]
fn a_lost_index_asks_for_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append(agent_session_core::SESSIONS, "k", 0, &[rec("x")], b"s")
        .unwrap();
    assert!(!s.needs_reindex().unwrap());
    std::fs::remove_file(dir.path().join("index/sessions.log")).unwrap();
    let reopened = FsStore::open(dir.path()).unwrap();
    assert!(reopened.needs_reindex().unwrap());
    reopened
        .reindex(agent_session_core::SESSIONS, "k", b"s")
        .unwrap();
    reopened.reindexed().unwrap();
    assert!(!FsStore::open(dir.path()).unwrap().needs_reindex().unwrap());
}

#[test]
fn garbage_in_the_index_is_skipped_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::open(dir.path()).unwrap();
    s.append("c", "a", 0, &[rec("x")], b"s1").unwrap();
    let path = dir.path().join("index/c.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"ASIX\0\0\0\0\0\0\0\0ASIX\xff\xff");
    std::fs::write(&path, &bytes).unwrap();
    s.append("c", "b", 0, &[rec("y")], b"s2").unwrap();
    let fresh = FsStore::open(dir.path()).unwrap();
    let keys: Vec<_> = fresh
        .scan("c", None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["b", "a"]);
}

/// A root whose index summary frames, or whose log appends, fail on demand:
/// the state a writer killed between its history append and its summary
/// frame leaves behind (or one whose history append failed).
struct Crashy {
    inner: crate::root::DirRoot,
    summaries_fail: std::sync::atomic::AtomicBool,
    logs_fail: std::sync::atomic::AtomicBool,
    /// Run once, just before the next try of an exclusive lock (a reader
    /// about to settle intents).
    before_settling: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// How many times a log was read.
    log_reads: std::sync::atomic::AtomicUsize,
}

impl Crashy {
    fn on(dir: &std::path::Path) -> Self {
        Crashy {
            inner: crate::root::DirRoot::open(dir).unwrap(),
            summaries_fail: false.into(),
            logs_fail: false.into(),
            before_settling: Default::default(),
            log_reads: 0.into(),
        }
    }
}

impl agent_session_dir_store::Root for Crashy {
    fn stat(&self, p: &str) -> Result<Option<agent_session_dir_store::Stat>, RootError> {
        self.inner.stat(p)
    }
    fn read(&self, p: &str, o: u64, n: u64) -> Result<Vec<u8>, RootError> {
        if p.ends_with("events.log") {
            self.log_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.read(p, o, n)
    }
    fn append(&self, p: &str, b: &[u8], sync: bool) -> Result<u64, RootError> {
        use std::sync::atomic::Ordering::SeqCst;
        let summary = p.starts_with("index/") && b.starts_with(agent_session_dir_store::INDEX_MARK);
        if (summary && self.summaries_fail.load(SeqCst))
            || (p.ends_with("events.log") && self.logs_fail.load(SeqCst))
        {
            return Err(RootError::new(ErrorCode::Io, "killed"));
        }
        self.inner.append(p, b, sync)
    }
    fn write_at(&self, p: &str, o: u64, b: &[u8]) -> Result<(), RootError> {
        self.inner.write_at(p, o, b)
    }
    fn truncate(&self, p: &str, n: u64, sync: bool) -> Result<(), RootError> {
        self.inner.truncate(p, n, sync)
    }
    fn replace(&self, p: &str, b: &[u8], sync: bool) -> Result<(), RootError> {
        self.inner.replace(p, b, sync)
    }
    fn create_dir(&self, p: &str, sync: bool) -> Result<bool, RootError> {
        self.inner.create_dir(p, sync)
    }
    fn sync_dir(&self, p: &str) -> Result<(), RootError> {
        self.inner.sync_dir(p)
    }
    fn list(&self, p: &str) -> Result<Vec<String>, RootError> {
        self.inner.list(p)
    }
    fn rename(&self, a: &str, b: &str) -> Result<(), RootError> {
        self.inner.rename(a, b)
    }
    fn remove_file(&self, p: &str) -> Result<bool, RootError> {
        self.inner.remove_file(p)
    }
    fn remove_tree(&self, p: &str) -> Result<bool, RootError> {
        self.inner.remove_tree(p)
    }
    fn lock(&self, p: &str, x: bool, w: bool) -> Result<Option<u64>, RootError> {
        if x && !w {
            let hook = self.before_settling.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.lock(p, x, w)
    }
    fn unlock(&self, h: u64) {
        self.inner.unlock(h)
    }
}

#[test]
fn a_writer_killed_before_its_index_entry_is_listed_right_after() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let crashy = Crashy::on(dir.path());
    let writer = DirStore::open(crashy, true, "test").unwrap();
    writer.append("c", "k", 0, &[rec("a")], b"s0").unwrap();
    writer.root().summaries_fail.store(true, SeqCst);
    // The history append happens; its summary frame does not.
    writer.append("c", "k", 1, &[rec("b")], b"s1").unwrap();
    writer.append("c", "new", 0, &[rec("x")], b"n0").unwrap();
    // Another process (a fresh view of the root) lists right after, with
    // no repair: the intents are settled from the histories.
    let reader = FsStore::open(dir.path()).unwrap();
    let listed = |s: &dyn Store| -> Vec<(String, Vec<u8>)> {
        s.scan("c", None, 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.summary))
            .collect()
    };
    let want = vec![
        ("new".to_owned(), b"n0".to_vec()),
        ("k".to_owned(), b"s1".to_vec()),
    ];
    assert_eq!(listed(&reader), want);
    // The settlement was written: the writer's own view agrees, and so does
    // one that reads the file from the start.
    assert_eq!(listed(&writer), want);
    assert_eq!(listed(&FsStore::open(dir.path()).unwrap()), want);

    // An intent whose history append failed settles to the summary before.
    writer.root().summaries_fail.store(false, SeqCst);
    writer.root().logs_fail.store(true, SeqCst);
    assert!(writer.append("c", "k", 2, &[rec("c")], b"s2").is_err());
    assert!(writer.append("c", "never", 0, &[rec("y")], b"v0").is_err());
    let want_after = vec![
        ("new".to_owned(), b"n0".to_vec()),
        ("k".to_owned(), b"s1".to_vec()),
    ];
    assert_eq!(listed(&FsStore::open(dir.path()).unwrap()), want_after);
    assert_eq!(listed(&writer), want_after);
    // Compaction keeps what is settled.
    reader.compact("c").unwrap();
    assert_eq!(listed(&FsStore::open(dir.path()).unwrap()), want_after);
}

#[test]
fn a_reader_never_settles_an_intent_over_a_newer_summary() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let crashy = |logs_fail: bool| Crashy {
        logs_fail: logs_fail.into(),
        ..Crashy::on(dir.path())
    };
    let writer = DirStore::open(crashy(false), true, "test").unwrap();
    writer.append("c", "k", 0, &[rec("a")], b"s0").unwrap();
    // A writer dies at its history append: its intent ("done") stays.
    writer.root().logs_fail.store(true, SeqCst);
    assert!(writer.append("c", "k", 1, &[rec("x")], b"done").is_err());
    // A reader sees that intent; before it settles, two other writers
    // append and index their own summaries.
    let reader = DirStore::open(crashy(false), true, "test").unwrap();
    let path = dir.path().to_owned();
    *reader.root().before_settling.lock().unwrap() = Some(Box::new(move || {
        let other = FsStore::open(&path).unwrap();
        other.append("c", "k", 1, &[rec("b")], b"s1").unwrap();
        other.append("c", "k", 2, &[rec("c")], b"s2").unwrap();
    }));
    let listed = |s: &dyn Store| s.scan("c", None, 10).unwrap()[0].summary.clone();
    let seen = listed(&reader);
    assert!(
        seen == b"s0" || seen == b"s2",
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    // Whatever the reader wrote, the newest summary stands.
    assert_eq!(listed(&FsStore::open(dir.path()).unwrap()), b"s2");
    assert_eq!(listed(&reader), b"s2");
}

#[test]
fn the_last_records_appended_are_read_back_from_memory_while_the_log_is_unchanged() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let writer = DirStore::open(Crashy::on(dir.path()), true, "test").unwrap();
    // Records of varying sizes, single and batched, well past what is kept
    // (64 KiB), so the kept bytes are cut at record starts many times.
    let record = |i: u64| format!("{i}:{}", "x".repeat((i as usize * 997) % 3000)).into_bytes();
    let mut all = Vec::new();
    let mut seq = 0;
    while seq < 300 {
        let batch: Vec<Vec<u8>> = (seq..seq + 1 + seq % 3).map(record).collect();
        writer.append("c", "k", seq, &batch, b"s").unwrap();
        seq += batch.len() as u64;
        all.extend(batch);
        let reads = writer.root().log_reads.load(SeqCst);
        for (from, limit) in [
            (seq.saturating_sub(10), 10),
            (seq - 1, 5),
            (seq.saturating_sub(3), 2),
        ] {
            assert_eq!(
                writer.read("c", "k", from, limit).unwrap(),
                all[from as usize..(from + u64::from(limit)).min(seq) as usize],
                "at {seq}, from {from}"
            );
        }
        // (Only what this store appended is known: a log's first append
        // made the file, whose identity is learnt at the next.)
        if seq > 20 {
            assert_eq!(
                writer.root().log_reads.load(SeqCst),
                reads,
                "at {seq}: read from memory"
            );
        }
    }
    // Older records than those kept are read from the log.
    assert_eq!(writer.read("c", "k", 5, 3).unwrap(), all[5..8]);
    // Another writer appends: the memory no longer holds, the log decides.
    let other = FsStore::open(dir.path()).unwrap();
    other.append("c", "k", seq, &[rec("theirs")], b"s").unwrap();
    let reads = writer.root().log_reads.load(SeqCst);
    assert_eq!(
        writer.read("c", "k", seq - 1, 10).unwrap(),
        [all[seq as usize - 1].clone(), rec("theirs")]
    );
    assert!(writer.root().log_reads.load(SeqCst) > reads);
}
