//! Sessions by key, conversation items and large values, on the
//! in-memory store.

use serde_json::{Value, json};

use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
use crate::*;

type TestEngine = Engine<MemoryStore, MemoryOutbox, ManualEnvironment>;

fn engine() -> TestEngine {
    Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(1_700_000_000_000),
    )
}

fn keyed(e: &TestEngine, key: &str) -> Session {
    e.start(StartOptions {
        task: "t".into(),
        key: Some(key.into()),
        ..Default::default()
    })
    .unwrap()
}

fn texts(values: &[Value]) -> Vec<String> {
    values.iter().map(Value::to_string).collect()
}

#[test]
fn a_key_names_one_session_and_start_with_it_gets_that_session() {
    let e = engine();
    let a = keyed(&e, "thread/../../etc/passwd \u{1F600}");
    assert_eq!(a.key.as_deref(), Some("thread/../../etc/passwd \u{1F600}"));
    let again = e
        .start(StartOptions {
            task: "other task".into(),
            key: Some("thread/../../etc/passwd \u{1F600}".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(again.id, a.id);
    assert_eq!(again.task, "t", "get-or-create keeps the first options");
    let other = keyed(&e, "thread-2");
    assert_ne!(other.id, a.id);
    // Every operation takes the key where it takes the id.
    let by_key = SessionRef::key("thread-2");
    e.iterate(&by_key, None).unwrap();
    assert_eq!(e.get(&other.id).unwrap().iteration, 1);
    assert_eq!(e.get(&by_key).unwrap().id, other.id);
    assert!(e.export(&by_key).unwrap()["session"]["key"] == "thread-2");
    // A key that looks like an id is a key.
    assert!(matches!(
        e.get(SessionRef::key(other.id.clone())),
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(
        e.get(SessionRef::key("nope")),
        Err(SessionError::NotFound(_))
    ));
}

#[test]
fn keys_are_validated() {
    let e = engine();
    for bad in ["", "a\nb", "nul\0", &"k".repeat(513)] {
        let r = e.start(StartOptions {
            task: "t".into(),
            key: Some(bad.into()),
            ..Default::default()
        });
        assert!(matches!(r, Err(SessionError::InvalidInput(_))), "{bad:?}");
        assert!(matches!(
            e.get(SessionRef::key(bad)),
            Err(SessionError::InvalidInput(_))
        ));
    }
    // Bad options claim no key.
    let r = e.start(StartOptions {
        task: " ".into(),
        key: Some("k".into()),
        ..Default::default()
    });
    assert!(matches!(r, Err(SessionError::InvalidInput(_))));
    assert!(e.store().get(KEYS, &keys_name("k")).unwrap().is_none());
}

fn keys_name(key: &str) -> String {
    crate::engine::key_name_for_tests(key)
}

#[test]
fn deleting_a_keyed_session_frees_its_key_and_its_values() {
    let e = engine();
    let a = keyed(&e, "k");
    let big = json!({ "text": "x".repeat(100_000) });
    e.add_items(SessionRef::key("k"), &texts(std::slice::from_ref(&big)))
        .unwrap();
    assert!(!e.store().read(BLOBS, &a.id, 0, 10).unwrap().is_empty());
    e.delete(SessionRef::key("k")).unwrap();
    assert!(e.store().read(BLOBS, &a.id, 0, 10).unwrap().is_empty());
    assert!(e.store().get(KEYS, &keys_name("k")).unwrap().is_none());
    let b = keyed(&e, "k");
    assert_ne!(a.id, b.id);
    assert!(e.items(SessionRef::key("k"), None).unwrap().is_empty());
}

#[test]
fn a_key_bound_by_a_creator_that_died_is_used() {
    let e = engine();
    // The key's document names an id whose session was never made.
    let bound = "0190a0a0-0000-7000-8000-000000000001";
    let doc = codec::encode(&json!({ "key": "k", "id": bound })).unwrap();
    e.store().put(KEYS, &keys_name("k"), &doc, 0, true).unwrap();
    let s = keyed(&e, "k");
    assert_eq!(s.id, bound);
    assert_eq!(e.get(SessionRef::key("k")).unwrap().id, bound);
}

#[test]
fn a_deleted_session_never_comes_back_with_its_key() {
    let e = engine();
    let a = keyed(&e, "k");
    e.add_items(&a.id, &texts(&[json!("v".repeat(20_000))]))
        .unwrap();
    e.delete(&a.id).unwrap();
    // The key went first: a new start makes a new session, with nothing of
    // the old one.
    let b = keyed(&e, "k");
    assert_ne!(b.id, a.id);
    assert!(e.items(&b.id, None).unwrap().is_empty());
    assert!(e.store().read(BLOBS, &a.id, 0, 1).unwrap().is_empty());
}

#[test]
fn import_binds_the_key_and_refuses_a_key_in_use() {
    let e = engine();
    let a = keyed(&e, "k");
    e.add_items(
        &a.id,
        &texts(&[json!(1), json!({"big": "y".repeat(40_000)})]),
    )
    .unwrap();
    let doc = e.export(&a.id).unwrap().to_string();
    e.delete(&a.id).unwrap();
    let back = e.import_text(&doc).unwrap();
    assert_eq!(back.key.as_deref(), Some("k"));
    assert_eq!(e.get(SessionRef::key("k")).unwrap().id, a.id);
    assert_eq!(
        e.items(SessionRef::key("k"), None).unwrap(),
        vec![json!(1), json!({"big": "y".repeat(40_000)})]
    );
    // Another root with the key taken by another session.
    let f = Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(1_700_000_500_000),
    );
    let mine = keyed(&f, "k");
    assert_ne!(mine.id, a.id);
    assert!(matches!(
        f.import_text(&doc),
        Err(SessionError::Conflict(_))
    ));
    assert!(matches!(f.get(&a.id), Err(SessionError::NotFound(_))));
    assert!(f.store().read(BLOBS, &a.id, 0, 10).unwrap().is_empty());
    assert_eq!(f.get(SessionRef::key("k")).unwrap().id, mine.id);
}

#[test]
fn items_follow_adds_pops_and_clears() {
    let e = engine();
    let s = keyed(&e, "conv");
    let r = SessionRef::key("conv");
    assert_eq!(e.pop_item(&r).unwrap(), None);
    e.add_items(
        &r,
        &texts(&[
            json!({"role": "user", "content": "hi"}),
            json!(2),
            json!(null),
        ]),
    )
    .unwrap();
    e.record_event(&s.id, "note", json!({})).unwrap();
    e.add_items(&r, &texts(&[json!("four")])).unwrap();
    assert_eq!(
        e.items(&r, Some(2)).unwrap(),
        vec![json!(null), json!("four")]
    );
    assert_eq!(e.items(&r, Some(0)).unwrap(), Vec::<Value>::new());
    assert_eq!(e.pop_item(&r).unwrap(), Some(json!("four")));
    assert_eq!(e.pop_item(&r).unwrap(), Some(json!(null)));
    assert_eq!(
        e.items(&r, None).unwrap(),
        vec![json!({"role": "user", "content": "hi"}), json!(2)]
    );
    e.clear_items(&r).unwrap();
    assert!(e.items(&r, None).unwrap().is_empty());
    assert_eq!(e.pop_item(&r).unwrap(), None);
    e.add_items(&r, &texts(&[json!(5)])).unwrap();
    assert_eq!(e.items(&r, Some(10)).unwrap(), vec![json!(5)]);
    // Nothing was rewritten: every step is in the history.
    let kinds: Vec<String> = e
        .events(&r, 0, 100)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "item",
            "item",
            "item",
            "note",
            "item",
            "item_pop",
            "item_pop",
            "items_clear",
            "item"
        ]
    );
    // Forged item events are refused.
    assert!(matches!(
        e.record_event(&r, "item", json!({"item": 1})),
        Err(SessionError::InvalidInput(_))
    ));
}

#[test]
fn items_are_read_from_the_end_of_a_long_history() {
    let e = engine();
    let r = SessionRef::key("long");
    keyed(&e, "long");
    for i in 0..3000 {
        e.add_items(&r, &[json!(i).to_string()]).unwrap();
    }
    let before = e.store().reads();
    assert_eq!(
        e.items(&r, Some(10)).unwrap(),
        (2990..3000).map(|i| json!(i)).collect::<Vec<_>>()
    );
    // Loading reads the events since the snapshot, the walk one page.
    assert!(
        e.store().reads() - before <= 4,
        "{}",
        e.store().reads() - before
    );
    assert_eq!(e.items(&r, None).unwrap().len(), 3000);
}

#[test]
fn large_items_go_to_the_blob_log_and_come_back() {
    let e = engine();
    let s = keyed(&e, "big");
    let big = json!({ "output": "z".repeat(5 << 20) });
    let small = json!({ "output": "small" });
    let after = e
        .add_items(&s.id, &texts(&[small.clone(), big.clone()]))
        .unwrap();
    // 5 MiB and a little JSON: six records of at most 1 MiB.
    assert_eq!(after.blobs, 6);
    assert!(
        e.store()
            .read(BLOBS, &s.id, 0, 10)
            .unwrap()
            .iter()
            .all(|r| r.len() <= 1 << 20)
    );
    let events = e.events(&s.id, 0, 10).unwrap().events;
    assert!(events.iter().all(|e| e.data.to_string().len() < 1024));
    assert_eq!(e.items(&s.id, None).unwrap(), vec![small, big.clone()]);
    assert_eq!(e.pop_item(&s.id).unwrap(), Some(big));
    let too_big = json!("w".repeat(MAX_VALUE_BYTES));
    assert!(matches!(
        e.add_items(&s.id, &texts(&[too_big])),
        Err(SessionError::LimitExceeded(_) | SessionError::InvalidInput(_))
    ));
}

#[test]
fn values_orphaned_by_a_crash_are_skipped_and_removed() {
    let e = engine();
    let s = keyed(&e, "o");
    // A writer that died between its two appends.
    e.store()
        .append(BLOBS, &s.id, 0, &[b"orphan".to_vec()], &[])
        .unwrap();
    e.add_items(&s.id, &texts(&[json!("q".repeat(20_000))]))
        .unwrap();
    assert_eq!(e.get(&s.id).unwrap().blobs, 2);
    assert_eq!(
        e.items(&s.id, None).unwrap(),
        vec![json!("q".repeat(20_000))]
    );
    // Many orphans (a copy of a large thread that never committed).
    let orphans: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("orphan {i}").into_bytes())
        .collect();
    e.store().append(BLOBS, &s.id, 2, &orphans, &[]).unwrap();
    e.add_items(&s.id, &texts(&[json!("r".repeat(20_000))]))
        .unwrap();
    assert_eq!(e.get(&s.id).unwrap().blobs, 203);
    assert_eq!(
        e.items(&s.id, None).unwrap(),
        vec![json!("q".repeat(20_000)), json!("r".repeat(20_000))]
    );
    e.store()
        .append(BLOBS, &s.id, 203, &[b"another".to_vec()], &[])
        .unwrap();
    e.delete(&s.id).unwrap();
    assert!(e.store().read(BLOBS, &s.id, 0, 10).unwrap().is_empty());
}

#[test]
fn items_of_an_ended_session_are_refused() {
    let e = engine();
    let s = keyed(&e, "done");
    e.complete(&s.id, None).unwrap();
    assert!(matches!(
        e.add_items(&s.id, &texts(&[json!(1)])),
        Err(SessionError::InvalidTransition(_))
    ));
    assert!(e.items(&s.id, None).unwrap().is_empty());
}

/// A store that runs `hook` once, on the inner store, just before the
/// first removal of a session's history (and `after` once, just after
/// one): another writer's step, landing between what an operation read
/// and what it removes.
struct Racing {
    inner: MemoryStore,
    hook: std::cell::RefCell<Option<Step>>,
    after: std::cell::RefCell<Option<Step>>,
}

/// Another writer's step, on the store underneath.
type Step = Box<dyn FnOnce(&MemoryStore)>;

impl Store for Racing {
    fn append(
        &self,
        c: &str,
        k: &str,
        seq: u64,
        r: &[Vec<u8>],
        s: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.append(c, k, seq, r, s)
    }
    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.read(c, k, from, limit)
    }
    fn scan(&self, c: &str, a: Option<&str>, l: u32) -> Result<Vec<IndexEntry>, StoreError> {
        self.inner.scan(c, a, l)
    }
    fn reindex(&self, c: &str, k: &str, s: &[u8]) -> Result<(), StoreError> {
        self.inner.reindex(c, k, s)
    }
    fn keys(&self, c: &str, a: Option<&str>, l: u32) -> Result<Vec<String>, StoreError> {
        self.inner.keys(c, a, l)
    }
    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(c, k)
    }
    fn put(&self, c: &str, k: &str, d: &[u8], v: u64, durable: bool) -> Result<u64, StoreError> {
        self.inner.put(c, k, d, v, durable)
    }
    fn remove(&self, c: &str, k: &str, expected: u64) -> Result<(), StoreError> {
        if c != SESSIONS {
            return self.inner.remove(c, k, expected);
        }
        let hook = self.hook.borrow_mut().take();
        if let Some(hook) = hook {
            hook(&self.inner);
        }
        let removed = self.inner.remove(c, k, expected);
        let after = self.after.borrow_mut().take();
        if let Some(after) = after {
            after(&self.inner);
        }
        removed
    }
}

/// An engine on a [`Racing`] store, and the id of `key`'s session, whose
/// hook adds an item to that session (through an engine of its own on the
/// same store: a writer that found the session before the key went).
fn racing(key: &'static str) -> (Engine<Racing, MemoryOutbox, ManualEnvironment>, String) {
    let e = Engine::new(
        Racing {
            inner: MemoryStore::new(),
            hook: std::cell::RefCell::new(None),
            after: std::cell::RefCell::new(None),
        },
        MemoryOutbox::new(),
        ManualEnvironment::at(1_700_000_000_000),
    );
    let id = e
        .start(StartOptions {
            task: "t".into(),
            key: Some(key.into()),
            ..Default::default()
        })
        .unwrap()
        .id;
    e.add_items(SessionRef::key(key), &texts(&[json!("z".repeat(30_000))]))
        .unwrap();
    let writes = id.clone();
    *e.store().hook.borrow_mut() = Some(Box::new(move |store: &MemoryStore| {
        let writer = Engine::new(
            store,
            MemoryOutbox::new(),
            ManualEnvironment::at(1_700_000_000_500),
        );
        writer
            .add_items(&writes, &texts(&[json!("w".repeat(30_000))]))
            .unwrap();
    }));
    (e, id)
}

#[test]
fn a_delete_racing_a_writer_removes_what_the_writer_added() {
    let (e, id) = racing("r");
    // The writer resolved the key before the delete took it away, and
    // appends (a value and an event) as the delete removes the history.
    e.delete(SessionRef::key("r")).unwrap();
    assert!(e.store().hook.borrow().is_none(), "the writer ran");
    assert!(matches!(e.get(&id), Err(SessionError::NotFound(_))));
    assert!(e.store().read(BLOBS, &id, 0, 10).unwrap().is_empty());
    assert!(e.store().get(KEYS, &keys_name("r")).unwrap().is_none());
    // So the key is free, and the next start is a new, empty session.
    let again = e
        .start(StartOptions {
            task: "t".into(),
            key: Some("r".into()),
            ..Default::default()
        })
        .unwrap();
    assert_ne!(again.id, id);
    assert!(e.items(SessionRef::key("r"), None).unwrap().is_empty());
}

#[test]
fn a_cleanup_racing_a_writer_leaves_the_session_and_its_key() {
    let (e, id) = racing("c");
    e.complete(&id, None).unwrap();
    e.env().advance(40 * 24 * 60 * 60 * 1000);
    // Complete sessions take no items: the writer appends a custom event.
    let writes = id.clone();
    *e.store().hook.borrow_mut() = Some(Box::new(move |store: &MemoryStore| {
        let writer = Engine::new(
            store,
            MemoryOutbox::new(),
            ManualEnvironment::at(1_700_000_000_500),
        );
        let l = writer.get(&writes).unwrap();
        let event = codec::encode(&Event {
            seq: l.event_count,
            kind: "note".into(),
            timestamp: 1,
            data: json!({}),
        })
        .unwrap();
        store
            .append(SESSIONS, &l.id, l.event_count, &[event], &[])
            .unwrap();
    }));
    let report = e.cleanup(Some(30), false).unwrap();
    assert!(e.store().hook.borrow().is_none(), "the writer ran");
    assert!(report.removed.is_empty(), "{report:?}");
    // The session grew, so it stays, and its key still leads to it.
    assert_eq!(e.get(SessionRef::key("c")).unwrap().id, id);
    assert_eq!(
        e.items(SessionRef::key("c"), None).unwrap(),
        vec![json!("z".repeat(30_000))]
    );
}

#[test]
fn rebuild_index_binds_keys_again() {
    let e = engine();
    let a = keyed(&e, "lost");
    e.store().remove(KEYS, &keys_name("lost"), 0).unwrap();
    assert!(matches!(
        e.get(SessionRef::key("lost")),
        Err(SessionError::NotFound(_))
    ));
    let dry = e.reindex(true).unwrap();
    assert_eq!(dry.stale, vec![a.id.clone()]);
    assert!(e.store().get(KEYS, &keys_name("lost")).unwrap().is_none());
    let done = e.reindex(false).unwrap();
    assert_eq!(done.stale, vec![a.id.clone()]);
    assert_eq!(e.get(SessionRef::key("lost")).unwrap().id, a.id);
    assert!(e.reindex(true).unwrap().stale.is_empty());
    // A key document naming another live session is reported, not taken.
    let b = keyed(&e, "other");
    let doc = codec::encode(&json!({ "key": "lost", "id": b.id })).unwrap();
    let v = e.store().get(KEYS, &keys_name("lost")).unwrap().unwrap();
    e.store()
        .put(KEYS, &keys_name("lost"), &doc, v.version, true)
        .unwrap();
    let r = e.reindex(false).unwrap();
    assert_eq!(r.unreadable.len(), 1, "{r:?}");
    assert!(r.unreadable[0].starts_with(&a.id), "{r:?}");
    assert_eq!(e.get(SessionRef::key("lost")).unwrap().id, b.id);
}

#[test]
fn an_import_clears_values_a_removed_session_of_its_id_left() {
    let e = engine();
    let a = keyed(&e, "i");
    let big = json!("m".repeat(40_000));
    e.add_items(&a.id, &texts(std::slice::from_ref(&big)))
        .unwrap();
    let doc = e.export(&a.id).unwrap().to_string();
    // A delete cut short after the history: its values stay behind.
    let s = e.get(&a.id).unwrap();
    e.store().remove(KEYS, &keys_name("i"), 0).unwrap();
    e.store().remove(SESSIONS, &a.id, s.event_count).unwrap();
    e.store()
        .append(BLOBS, &a.id, 1, &[b"later".to_vec()], &[])
        .unwrap();
    let back = e.import_text(&doc).unwrap();
    assert_eq!(back.blobs, 1);
    assert_eq!(e.items(SessionRef::key("i"), None).unwrap(), vec![big]);
    assert_eq!(e.store().read(BLOBS, &a.id, 0, 10).unwrap().len(), 1);
}

#[test]
fn a_blob_log_shorter_than_its_history_is_damage_not_a_race() {
    let e = engine();
    let s = keyed(&e, "d");
    e.add_items(&s.id, &texts(&[json!("d".repeat(40_000))]))
        .unwrap();
    // Its values lost (an import cut short between its two appends).
    e.store().remove(BLOBS, &s.id, 1).unwrap();
    let more = e.add_items(&s.id, &texts(&[json!("e".repeat(40_000))]));
    assert!(matches!(more, Err(SessionError::Storage(_))), "{more:?}");
    assert!(matches!(
        e.items(&s.id, None),
        Err(SessionError::Storage(_))
    ));
    // It can still be deleted, values and all.
    e.delete(&s.id).unwrap();
    assert!(e.store().read(BLOBS, &s.id, 0, 10).unwrap().is_empty());
}

#[test]
fn a_key_bound_again_never_names_a_session_another_delete_removed() {
    let (e, id) = racing("two");
    // The first delete's removal fails (the writer appended); before it
    // binds the key again, a second delete (which finds no key) removes
    // the session.
    let removes = id.clone();
    *e.store().after.borrow_mut() = Some(Box::new(move |store: &MemoryStore| {
        let other = Engine::new(
            store,
            MemoryOutbox::new(),
            ManualEnvironment::at(1_700_000_000_900),
        );
        other.delete(&removes).unwrap();
    }));
    e.delete(SessionRef::key("two")).unwrap();
    assert!(e.store().after.borrow().is_none(), "the second delete ran");
    assert!(matches!(e.get(&id), Err(SessionError::NotFound(_))));
    assert!(e.store().get(KEYS, &keys_name("two")).unwrap().is_none());
    assert!(matches!(
        e.get(SessionRef::key("two")),
        Err(SessionError::NotFound(_))
    ));
}
