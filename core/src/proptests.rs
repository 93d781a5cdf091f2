//! Property tests: the engine against a plain model of its rules, and
//! imports of mutated histories against live replays.
//!
//! Few cases by default so the suite stays quick; `PROPTEST_CASES=5000`
//! runs longer.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
use crate::*;

type TestEngine = Engine<MemoryStore, MemoryOutbox, ManualEnvironment>;

const T0: u64 = 1_700_000_000_000;

// The case count and its `PROPTEST_CASES` override, shared with the
// decoder tests.
#[path = "../tests/support/inputs.rs"]
#[allow(dead_code, reason = "the byte mutations serve the decoder tests")]
mod inputs;
use inputs::config;

/// One call of the public API on the session under test.
#[derive(Debug, Clone)]
enum Step {
    Iterate(Option<Value>),
    Pause(Option<String>),
    Resume,
    Complete(Option<Value>),
    Fail(String),
    Record(String, Value),
    Learning(String),
    ToolCall(String, Value),
    Context(Value),
    Advance(u64),
}

/// Small JSON values, now and then one no host holds exactly.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => (-5i64..5).prop_map(|n| json!(n)),
        2 => (-1e6f64..1e6).prop_map(|f| json!(f)),
        4 => "[a-z]{0,3}".prop_map(Value::String),
        1 => Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![6 => "[a-z][a-z ]{0,5}", 1 => Just(String::new()), 1 => Just("  ".to_owned())]
}

fn kind() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z][a-z0-9_.-]{0,6}",
        1 => Just("pause".to_owned()),
        1 => Just("../x".to_owned()),
        1 => Just(String::new()),
    ]
}

/// A context patch: keys set, replaced or removed (null); sometimes not an
/// object at all.
fn patch() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::collection::btree_map(
            "k[0-3]",
            prop_oneof![2 => Just(Value::Null), 3 => value()],
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => value(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::option::of(value()).prop_map(Step::Iterate),
        2 => prop::option::of(text()).prop_map(Step::Pause),
        2 => Just(Step::Resume),
        1 => prop::option::of(value()).prop_map(Step::Complete),
        1 => text().prop_map(Step::Fail),
        2 => (kind(), value()).prop_map(|(k, v)| Step::Record(k, v)),
        1 => text().prop_map(Step::Learning),
        2 => (text(), value()).prop_map(|(n, v)| Step::ToolCall(n, v)),
        3 => patch().prop_map(Step::Context),
        2 => (0u64..3).prop_map(Step::Advance),
    ]
}

/// The rules, written plainly.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    status: SessionStatus,
    iteration: u32,
    max: u32,
    context: Map<String, Value>,
    events: u64,
}

fn exact(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_u64().is_none_or(|u| u <= validate::MAX_SAFE_INTEGER),
        Value::Array(a) => a.iter().all(exact),
        Value::Object(o) => o.values().all(exact),
        _ => true,
    }
}

fn text_ok(t: &str) -> bool {
    !t.trim().is_empty()
}

impl Model {
    /// What `step` does: `Err(code)` of the refusal, or the change.
    fn apply(&mut self, step: &Step) -> Result<(), &'static str> {
        use SessionStatus::*;
        let live = [Active, Paused];
        let allow = |ok: &[SessionStatus], s: SessionStatus| {
            if ok.contains(&s) {
                Ok(())
            } else {
                Err("invalid-transition")
            }
        };
        let input = |ok: bool| if ok { Ok(()) } else { Err("invalid-input") };
        match step {
            Step::Advance(_) => return Ok(()),
            Step::Iterate(d) => {
                input(d.as_ref().is_none_or(exact))?;
                allow(&[Active], self.status)?;
                self.iteration += 1;
                if self.iteration >= self.max {
                    self.status = Timeout;
                    self.events += 1;
                }
            }
            Step::Pause(r) => {
                input(r.as_deref().is_none_or(text_ok))?;
                allow(&[Active], self.status)?;
                self.status = Paused;
            }
            Step::Resume => {
                allow(&[Paused], self.status)?;
                self.status = Active;
            }
            Step::Complete(r) => {
                input(r.as_ref().is_none_or(exact))?;
                allow(&live, self.status)?;
                self.status = Completed;
            }
            Step::Fail(e) => {
                input(text_ok(e))?;
                allow(&live, self.status)?;
                self.status = Failed;
            }
            Step::Record(k, v) => {
                let kind_ok = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
                    && !event_kind::BUILT_IN.contains(&k.as_str());
                input(kind_ok && exact(v))?;
                allow(&live, self.status)?;
            }
            Step::Learning(i) => {
                input(text_ok(i))?;
                allow(&live, self.status)?;
            }
            Step::ToolCall(n, v) => {
                input(text_ok(n) && exact(v))?;
                allow(&[Active], self.status)?;
            }
            Step::Context(p) => {
                let Value::Object(p) = p else {
                    return Err("invalid-input");
                };
                input(exact(&Value::Object(p.clone())))?;
                allow(&live, self.status)?;
                for (k, v) in p {
                    if v.is_null() {
                        self.context.remove(k);
                    } else {
                        self.context.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        self.events += 1;
        Ok(())
    }
}

fn run(e: &TestEngine, id: &str, step: &Step) -> Result<(), SessionError> {
    match step.clone() {
        Step::Iterate(d) => e.iterate(id, d).map(drop),
        Step::Pause(r) => e.pause(id, r).map(drop),
        Step::Resume => e.resume(id).map(drop),
        Step::Complete(r) => e.complete(id, r).map(drop),
        Step::Fail(m) => e.fail(id, m).map(drop),
        Step::Record(k, v) => e.record_event(id, &k, v).map(drop),
        Step::Learning(i) => e
            .record_learning(
                id,
                Learning {
                    insight: i,
                    expertise_file: None,
                },
            )
            .map(drop),
        Step::ToolCall(name, v) => e
            .record_tool_call(
                id,
                ToolCall {
                    name,
                    input: v,
                    output: json!({}),
                    duration_ms: 1,
                },
            )
            .map(drop),
        Step::Context(p) => e.update_context(id, p).map(drop),
        Step::Advance(ms) => {
            e.env().advance(ms);
            Ok(())
        }
    }
}

fn started(max: u32, context: &Map<String, Value>) -> (TestEngine, String, Model) {
    let e = Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(T0),
    );
    let s = e
        .start(StartOptions {
            task: "t".into(),
            max_iterations: Some(max),
            context: Some(Value::Object(context.clone())),
            ..Default::default()
        })
        .expect("a valid start");
    let model = Model {
        status: SessionStatus::Active,
        iteration: 0,
        max,
        context: context.clone(),
        events: 1,
    };
    (e, s.id, model)
}

fn context() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("k[0-3]", (-3i64..3).prop_map(|n| json!(n)), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

/// A live session after random steps, and its export.
fn exported() -> impl Strategy<Value = (Value, String)> {
    (
        1u32..6,
        context(),
        prop::collection::vec(step(), 0..20),
        any::<bool>(),
    )
        .prop_map(|(max, ctx, steps, hooked)| {
            let (e, id, _) = started(max, &ctx);
            if hooked {
                // Lifecycle events then carry their notification's id.
                e.set_webhook(WebhookConfig {
                    url: "https://hooks.example.com/x".into(),
                    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                    event_kinds: vec![],
                    enabled: true,
                })
                .expect("a valid endpoint");
            }
            for s in &steps {
                let _ = run(&e, &id, s);
            }
            (e.export(&id).expect("an export"), id)
        })
}

/// A change to an exported document.
#[derive(Debug, Clone)]
enum Mutation {
    Kind(usize, String),
    SetField(usize, String, Value),
    RemoveField(usize, String),
    Timestamp(usize, i64),
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    SessionField(String, Value),
}

fn field() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "iteration",
        "max_iterations",
        "data",
        "reason",
        "result",
        "error",
        "patch",
        "task",
        "context",
        "name",
        "duration_ms",
        "webhook_id",
        "extra",
    ])
    .prop_map(str::to_owned)
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        value(),
        (0u64..8).prop_map(|n| json!(n)),
        Just(json!("msg_x")),
        Just(json!({"k0": 1})),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = 0usize..32;
    prop_oneof![
        (
            i.clone(),
            prop::sample::select(event_kind::BUILT_IN.to_vec())
        )
            .prop_map(|(i, k)| Mutation::Kind(i, k.to_owned())),
        (i.clone(), "[a-z]{1,4}").prop_map(|(i, k)| Mutation::Kind(i, k)),
        (i.clone(), field(), field_value()).prop_map(|(i, k, v)| Mutation::SetField(i, k, v)),
        (i.clone(), field()).prop_map(|(i, k)| Mutation::RemoveField(i, k)),
        (i.clone(), -3i64..3).prop_map(|(i, d)| Mutation::Timestamp(i, d)),
        i.clone().prop_map(Mutation::Drop),
        i.clone().prop_map(Mutation::Duplicate),
        (i.clone(), i).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (
            prop::sample::select(vec![
                "status",
                "iteration",
                "context",
                "updated_at",
                "ended_at",
                "version",
                "result"
            ]),
            field_value()
        )
            .prop_map(|(k, v)| Mutation::SessionField(k.to_owned(), v)),
    ]
}

fn mutate(doc: &mut Value, m: &Mutation, renumber: bool, resync: bool, id: &str) {
    let Some(events) = doc["events"].as_array_mut() else {
        return;
    };
    let n = events.len();
    if n == 0 {
        return;
    }
    match m.clone() {
        Mutation::Kind(i, k) => events[i % n]["kind"] = json!(k),
        Mutation::SetField(i, k, v) => {
            if let Some(d) = events[i % n]["data"].as_object_mut() {
                d.insert(k, v);
            }
        }
        Mutation::RemoveField(i, k) => {
            if let Some(d) = events[i % n]["data"].as_object_mut() {
                d.remove(&k);
            }
        }
        Mutation::Timestamp(i, d) => {
            let t = events[i % n]["timestamp"].as_u64().unwrap_or(0);
            events[i % n]["timestamp"] = json!(t.saturating_add_signed(d));
        }
        Mutation::Drop(i) => {
            events.remove(i % n);
        }
        Mutation::Duplicate(i) => {
            let e = events[i % n].clone();
            events.insert(i % n, e);
        }
        Mutation::Swap(a, b) => events.swap(a % n, b % n),
        Mutation::SessionField(k, v) => doc["session"][k] = v,
    }
    let Some(events) = doc["events"].as_array_mut() else {
        return;
    };
    if renumber {
        for (i, e) in events.iter_mut().enumerate() {
            e["seq"] = json!(i);
        }
    }
    // The state `fold` makes of the mutated history: what an import that
    // only replays would accept.
    if resync
        && let Ok(events) = serde_json::from_value::<Vec<Event>>(Value::Array(events.clone()))
        && let Ok(Some(s)) = replay(id, &events)
    {
        doc["session"] = serde_json::to_value(s).unwrap_or(Value::Null);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// (a) Every step does to the engine what the model says.
    #[test]
    fn the_engine_follows_the_model(
        max in 1u32..6,
        ctx in context(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (e, id, mut model) = started(max, &ctx);
        for (n, step) in steps.iter().enumerate() {
            let mut next = model.clone();
            let want = next.apply(step);
            let got = run(&e, &id, step);
            prop_assert_eq!(
                got.as_ref().err().map(SessionError::code),
                want.err(),
                "step {} {:?}: {:?}", n, step, got
            );
            if want.is_ok() {
                model = next;
            }
            let s = e.get(&id).expect("the session");
            prop_assert_eq!(s.status, model.status, "step {}", n);
            prop_assert_eq!(s.iteration, model.iteration, "step {}", n);
            prop_assert_eq!(&s.context, &model.context, "step {}", n);
            prop_assert_eq!(s.event_count, model.events, "step {}", n);
        }
    }

    /// (b) A mutated history is refused, or it is one the live operations
    /// could have written: importing it and exporting again gives it back.
    #[test]
    fn imports_of_mutated_histories_are_refused_or_exact(
        (doc, id) in exported(),
        mutations in prop::collection::vec(mutation(), 1..3),
        renumber in any::<bool>(),
        resync in any::<bool>(),
    ) {
        let mut doc = doc;
        for m in &mutations {
            mutate(&mut doc, m, renumber, resync, &id);
        }
        let e = Engine::new(MemoryStore::new(), MemoryOutbox::new(), ManualEnvironment::at(T0 + 1000));
        if e.import(doc.clone()).is_ok() {
            let mut again = e.export(&id).expect("an export");
            if doc["session"]["version"] == json!(0) {
                again["session"]["version"] = json!(0);
            }
            prop_assert_eq!(again, doc);
        }
    }

    /// (b) Unmutated exports always import.
    #[test]
    fn exports_import((doc, id) in exported()) {
        let e = Engine::new(MemoryStore::new(), MemoryOutbox::new(), ManualEnvironment::at(T0 + 1000));
        e.import(doc.clone()).expect("a live export imports");
        prop_assert_eq!(e.export(&id).expect("an export"), doc);
    }
}
