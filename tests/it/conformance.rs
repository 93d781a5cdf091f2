//! The conformance suite (`tests/conformance/*.json`, format in its
//! README) on the two Rust hosts: the native core on an in-memory store,
//! and the component in wasmtime on a filesystem store. The Node and
//! Python runners (`packages/`) execute the same files.

use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_session_core::Delivery;
use agent_session_core::delivery::Answer;
use agent_session_core::memory::{MemoryOutbox, MemoryStore};
use agent_session_core::{
    Engine, Environment, Learning, SessionError, SessionFilter, StartOptions, ToolCall,
    WebhookConfig,
};
use agent_session_dir_store::{Outbox, Sending, sender_options};
use agent_session_host::root::DirRoot;
use agent_session_host::{CacheDir, Error as HostError, SessionHost};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::common;

/// A host of the session API, called by WIT operation name with canonical
/// arguments, answering in canonical form.
trait Host {
    fn call(&self, op: &str, args: &[Value]) -> Result<Value, Failure>;
}

/// Why a call produced no canonical result.
enum Failure {
    /// The API answered with an error (a possible expectation).
    Session(SessionError),
    /// The scenario or the host is broken (never expected).
    Broken(String),
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Session(e) => Self::Session(e),
            other => Self::Broken(other.to_string()),
        }
    }
}

/// Argument `i` of `args`, decoded.
fn arg<T: DeserializeOwned>(args: &[Value], i: usize) -> Result<T, Failure> {
    let v = args.get(i).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| Failure::Broken(format!("argument {i}: {e}")))
}

fn out(v: impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::Broken(e.to_string()))
}

/// Dispatches by name to the typed methods of `$api`, which both hosts
/// have with the same names; the `$adapted` arms cover the few whose
/// argument types differ (owned in the core, borrowed in the host).
macro_rules! dispatch {
    ($api:expr, $op:expr, $args:expr, |$a:ident| { $($adapted:tt)* }) => {{
        let $a = $args;
        let api = $api;
        match $op {
            "start" => out(api.start(arg::<StartOptions>($a, 0)?)?),
            "get" => out(api.get(&arg::<String>($a, 0)?)?),
            "resume" => out(api.resume(&arg::<String>($a, 0)?)?),
            "events" => out(api.events(&arg::<String>($a, 0)?, arg($a, 1)?, arg($a, 2)?)?),
            "recent-events" => out(api.recent_events(&arg::<String>($a, 0)?)?),
            "resumption-context" => out(api.resumption_context(&arg::<String>($a, 0)?)?),
            "list" => out(api.list(
                &arg::<SessionFilter>($a, 0)?,
                arg::<Option<String>>($a, 1)?.as_deref(),
                arg($a, 2)?,
            )?),
            "stats" => out(api.stats(&arg::<SessionFilter>($a, 0)?)?),
            "cleanup" => out(api.cleanup(arg($a, 0)?, arg($a, 1)?)?),
            "delete" => out(api.delete(&arg::<String>($a, 0)?)?),
            "export" => out(api.export(&arg::<String>($a, 0)?)?),
            "get-webhook" => out(api.get_webhook()?),
            "clear-webhook" => out(api.clear_webhook()?),
            "disable-webhook" => out(api.disable_webhook(&arg::<String>($a, 0)?)?),
            "is-resumable" => out(api.is_resumable(&arg::<String>($a, 0)?)?),
            "duration" => out(api.duration(&arg::<String>($a, 0)?)?),
            "progress" => out(api.progress(&arg::<String>($a, 0)?)?),
            $($adapted)*
            other => Err(Failure::Broken(format!("unknown operation {other:?}"))),
        }
    }};
}

struct Native(Engine<MemoryStore, MemoryOutbox, WallClock>);

impl Native {
    fn call_on<N: agent_session_core::Notifier>(
        e: &Engine<MemoryStore, N, WallClock>,
        op: &str,
        args: &[Value],
    ) -> Result<Value, Failure> {
        dispatch!(e, op, args, |a| {
            "pause" => out(e.pause(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "complete" => out(e.complete(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "fail" => out(e.fail(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "iterate" => out(e.iterate(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "record-tool-call" => out(e.record_tool_call(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "record-learning" => out(e.record_learning(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "record-event" => out(e.record_event(&arg::<String>(a, 0)?, &arg::<String>(a, 1)?, arg(a, 2)?)?),
            "update-context" => out(e.update_context(&arg::<String>(a, 0)?, arg(a, 1)?)?),
            "rebuild-index" => out(e.reindex(arg(a, 0)?)?),
            "import" => out(e.import(arg(a, 0)?)?),
            "set-webhook" => out(e.set_webhook(arg(a, 0)?)?),
            "check-webhook-url" => out(agent_session_core::webhook::check_url(&arg::<String>(a, 0)?, &arg::<Vec<String>>(a, 1)?)?),
        })
    }
}

impl Host for Native {
    fn call(&self, op: &str, args: &[Value]) -> Result<Value, Failure> {
        Self::call_on(&self.0, op, args)
    }
}

struct Component(SessionHost);

impl Host for Component {
    fn call(&self, op: &str, args: &[Value]) -> Result<Value, Failure> {
        dispatch!(&self.0, op, args, |a| {
            "pause" => out(self.0.pause(&arg::<String>(a, 0)?, arg::<Option<String>>(a, 1)?.as_deref())?),
            "complete" => out(self.0.complete(&arg::<String>(a, 0)?, arg::<Option<Value>>(a, 1)?.as_ref())?),
            "fail" => out(self.0.fail(&arg::<String>(a, 0)?, &arg::<String>(a, 1)?)?),
            "iterate" => out(self.0.iterate(&arg::<String>(a, 0)?, arg::<Option<Value>>(a, 1)?.as_ref())?),
            "record-tool-call" => out(self.0.record_tool_call(&arg::<String>(a, 0)?, &arg::<ToolCall>(a, 1)?)?),
            "record-learning" => out(self.0.record_learning(&arg::<String>(a, 0)?, &arg::<Learning>(a, 1)?)?),
            "record-event" => out(self.0.record_event(&arg::<String>(a, 0)?, &arg::<String>(a, 1)?, &arg::<Value>(a, 2)?)?),
            "update-context" => out(self.0.update_context(&arg::<String>(a, 0)?, &arg::<Value>(a, 1)?)?),
            "rebuild-index" => out(self.0.rebuild_index(arg(a, 0)?)?),
            "import" => out(self.0.import(&arg::<Value>(a, 0)?)?),
            "set-webhook" => out(self.0.set_webhook(&arg::<WebhookConfig>(a, 0)?)?),
            "check-webhook-url" => out(self.0.check_webhook_url(&arg::<String>(a, 0)?, &arg::<Vec<String>>(a, 1)?)?),
        })
    }
}

/// The native core as the root's webhook sender: the engine (in memory)
/// queueing into a directory outbox, and `dir-store`'s `Sending` over it,
/// as the session-on-root component exports them as `delivery`.
struct NativeSender {
    engine: Engine<MemoryStore, Queue, WallClock>,
    outbox: Arc<Outbox<DirRoot>>,
    sending: RefCell<Option<Sending<DirRoot>>>,
}

/// The directory outbox as the engine's notifier.
struct Queue(Arc<Outbox<DirRoot>>);

impl agent_session_core::Notifier for Queue {
    fn enqueue(&self, n: &agent_session_core::Notification) -> Result<(), String> {
        self.0.enqueue(n)
    }
}

#[derive(serde::Deserialize)]
struct SenderOptions {
    schedule_ms: Option<Vec<u64>>,
    allow: Vec<String>,
}

/// A delivery in canonical form (its secret left out).
fn shown(d: &Delivery) -> Value {
    let n = &d.notification;
    json!({
        "id": n.id, "session_id": n.session_id, "seq": n.seq, "kind": n.kind,
        "url": n.url, "timestamp": n.timestamp, "state": d.state.as_str(),
        "next_attempt_at": d.next_attempt_at, "reason": d.reason,
        "attempts": d.attempts.iter().map(|t| json!({
            "at": t.at, "duration_ms": t.duration_ms, "status": t.status,
            "error": t.error, "refused": t.refused,
        })).collect::<Vec<_>>(),
    })
}

impl NativeSender {
    fn new(dir: &Path) -> Self {
        let outbox = Arc::new(Outbox::open(DirRoot::open(dir).unwrap()).unwrap());
        Self {
            engine: Engine::new(MemoryStore::new(), Queue(outbox.clone()), WallClock),
            outbox,
            sending: RefCell::new(None),
        }
    }

    fn delivery(&self, op: &str, a: &[Value]) -> Option<Result<Value, Failure>> {
        let not_sending = || {
            Failure::Session(SessionError::InvalidInput(
                "this instance is not the root's sender (start-sending)".into(),
            ))
        };
        let broken = |e: agent_session_dir_store::RootError| Failure::Broken(e.to_string());
        let mut slot = self.sending.borrow_mut();
        Some((|| match op {
            "start-sending" => {
                let o: SenderOptions = arg(a, 0)?;
                let (policy, schedule_ms) =
                    sender_options(&o.allow, o.schedule_ms).map_err(SessionError::InvalidInput)?;
                if let Some(s) = slot.as_mut() {
                    s.configure(policy, schedule_ms);
                    return out(true);
                }
                *slot = Sending::start(&self.outbox, policy, schedule_ms).map_err(broken)?;
                out(slot.is_some())
            }
            "claim-due" => {
                let s = slot.as_mut().ok_or_else(not_sending)?;
                let due = s.claim_due(&self.engine, arg(a, 0)?, arg(a, 1)?);
                Ok(json!({
                    "requests": due.requests.iter().map(|r| json!({
                        "id": r.id, "url": r.url, "headers": r.headers, "body": r.body,
                    })).collect::<Vec<_>>(),
                    "settled": due.settled.iter().map(shown).collect::<Vec<_>>(),
                    "waiting": due.waiting,
                    "next_due": due.next_due,
                }))
            }
            "record-answer" => {
                let s = slot.as_mut().ok_or_else(not_sending)?;
                let id: String = arg(a, 0)?;
                let answer: Value = arg(a, 3)?;
                let answer = match answer.as_object().and_then(|o| o.iter().next()) {
                    Some((k, v)) if k == "response" => Answer::Status {
                        status: serde_json::from_value(v["status"].clone())
                            .map_err(|e| Failure::Broken(e.to_string()))?,
                        retry_after: v["retry_after"].as_str().map(str::to_owned),
                    },
                    Some((k, Value::String(r))) if k == "refused" => Answer::Refused {
                        reason: r.clone(),
                        policy: None,
                    },
                    Some((k, Value::String(e))) if k == "failed" => {
                        Answer::Failed { error: e.clone() }
                    }
                    _ => return Err(Failure::Broken(format!("not an answer: {answer}"))),
                };
                match s.record_answer(&self.engine, &id, arg(a, 1)?, arg(a, 2)?, &answer) {
                    Ok(Some(d)) => Ok(shown(&d)),
                    Ok(None) => Err(Failure::Session(SessionError::NotFound(format!(
                        "no request {id} is waiting for its answer"
                    )))),
                    Err(e) => Err(broken(e)),
                }
            }
            "stop-sending" => {
                slot.take();
                Ok(Value::Null)
            }
            "deliveries" => Ok(Value::Array(
                self.outbox
                    .deliveries()
                    .map_err(broken)?
                    .iter()
                    .map(shown)
                    .collect(),
            )),
            _ => Err(Failure::Broken(String::new())),
        })())
        .filter(|r| !matches!(r, Err(Failure::Broken(m)) if m.is_empty()))
    }
}

impl Host for NativeSender {
    fn call(&self, op: &str, args: &[Value]) -> Result<Value, Failure> {
        if let Some(r) = self.delivery(op, args) {
            return r;
        }
        Native::call_on(&self.engine, op, args)
    }
}

/// Time and randomness from the machine, as WASI gives them to the
/// component.
struct WallClock;

impl Environment for WallClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the system's random source works");
    }
}

fn scenario_files(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

/// Runs every scenario on a fresh host from `fresh`, reports the count,
/// writes the transcript (README "Transcripts") as `<file>.json`, and
/// fails listing every scenario that did not pass.
fn run_all<H: Host>(name: &str, file: &str, fresh: impl FnMut() -> (Option<tempfile::TempDir>, H)) {
    run_dir("", name, file, fresh)
}

/// [`run_all`] on the scenarios in `sub` (a folder of `tests/conformance`).
fn run_dir<H: Host>(
    sub: &str,
    name: &str,
    file: &str,
    mut fresh: impl FnMut() -> (Option<tempfile::TempDir>, H),
) {
    let files = scenario_files(sub);
    let mut failures = Vec::new();
    let mut transcript = Map::new();
    for path in &files {
        let (_dir, host) = fresh();
        let scenario = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut steps = Vec::new();
        if let Err(e) = run_scenario(&host, path, &mut steps) {
            failures.push(format!("{scenario}: {e}"));
        }
        transcript.insert(scenario, Value::Array(steps));
    }
    let out = std::env::var_os("AGENT_SESSION_CONFORMANCE_OUT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/conformance"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join(format!("{file}.json")),
        serde_json::to_vec_pretty(&transcript).unwrap(),
    )
    .unwrap();
    let passed = files.len() - failures.len();
    // Written to the stream directly: the test harness captures `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "conformance ({name}): {passed} of {} scenarios passed",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn run_scenario(host: &impl Host, file: &Path, transcript: &mut Vec<Value>) -> Result<(), String> {
    let delivery = file.parent().and_then(Path::file_name) == Some("delivery".as_ref());
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let scenario: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let steps = scenario["steps"].as_array().ok_or("no \"steps\" array")?;
    let mut names = Map::new();
    for (i, step) in steps.iter().enumerate() {
        let op = step["op"].as_str().ok_or(format!("step {i}: no \"op\""))?;
        let at = |e: String| format!("step {i} ({op}): {e}");
        let args = match step.get("args") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| substitute(v, &names))
                .collect::<Result<_, _>>()
                .map_err(at)?,
            Some(_) => return Err(at("\"args\" is not an array".into())),
        };
        let actual = match host.call(op, &args) {
            Ok(v) => Ok(v),
            Err(Failure::Session(e)) => Err(json!({"error": e.code(), "message": e.message()})),
            Err(Failure::Broken(e)) => return Err(at(e)),
        };
        transcript.push(json!([
            op,
            comparable(op, actual.as_ref().unwrap_or_else(|e| e), delivery)
        ]));
        let expect = &step["expect"];
        match (&actual, expect.get("ok"), expect.get("error")) {
            (Ok(v), Some(pattern), None) => {
                matches(pattern, v, &names, "").map_err(|e| at(format!("{e}\n  actual: {v}")))?
            }
            (Err(e), None, Some(Value::String(code))) => {
                if e["error"] != *code {
                    return Err(at(format!("expected error {code}, got {e}")));
                }
                if let Some(Value::String(part)) = expect.get("message")
                    && !e["message"].as_str().unwrap_or("").contains(part.as_str())
                {
                    return Err(at(format!(
                        "expected a message containing {part:?}, got {e}"
                    )));
                }
            }
            (actual, _, _) => {
                return Err(at(format!("expected {expect}, got {}", show(actual))));
            }
        }
        if let (Some(Value::String(name)), Ok(v)) = (step.get("as"), &actual) {
            names.insert(name.clone(), v.clone());
        }
    }
    Ok(())
}

/// An outcome with what legitimately differs between runs masked (README
/// "Transcripts"): ids, times, durations and cursors.
/// In the delivery scenarios (`delivery`), also the times
/// of attempts and retries, and what a request signs (its body, with the
/// times of its session and event; its timestamp and signature headers).
fn comparable(op: &str, v: &Value, delivery: bool) -> Value {
    const TIMES: [&str; 4] = ["created_at", "updated_at", "ended_at", "timestamp"];
    const DELIVERY_TIMES: [&str; 3] = ["at", "next_attempt_at", "next_due"];
    const VARYING_HEADERS: [&str; 2] = ["webhook-timestamp", "webhook-signature"];
    let time = |k: &str| TIMES.contains(&k) || (delivery && DELIVERY_TIMES.contains(&k));
    match v {
        _ if op == "duration" && v.is_number() => json!("<duration>"),
        Value::String(s) => Value::String(mask_uuids(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| comparable(op, x, delivery)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = if time(k) && x.is_number() {
                        json!("<time>")
                    } else if k == "next_cursor" && x.is_string() {
                        json!("<cursor>")
                    } else if delivery && k == "body" && x.is_string() {
                        json!("<varies>")
                    } else if delivery && k == "headers" && x.is_array() {
                        let headers = x.as_array().into_iter().flatten().map(|h| match h {
                            Value::Array(p)
                                if p.len() == 2 && VARYING_HEADERS.iter().any(|v| p[0] == *v) =>
                            {
                                json!([p[0], "<varies>"])
                            }
                            other => comparable(op, other, delivery),
                        });
                        Value::Array(headers.collect())
                    } else {
                        comparable(op, x, delivery)
                    };
                    (mask_uuids(k), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `s` with every UUID in it replaced by `<uuid>`.
fn mask_uuids(s: &str) -> String {
    const SHAPE: &[u8; 36] = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    let b = s.as_bytes();
    let is_uuid = |at: usize| {
        b.get(at..at + 36).is_some_and(|w| {
            w.iter().zip(SHAPE).all(|(c, m)| match m {
                b'-' => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            })
        })
    };
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    while at < b.len() {
        if is_uuid(at) {
            out.push_str("<uuid>");
            at += 36;
        } else {
            let c = s[at..].chars().next().unwrap();
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
}

fn show(r: &Result<Value, Value>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("error {e}"),
    }
}

/// The value of a `$name.path` reference, `None` if `s` is not one.
fn reference(s: &str, names: &Map<String, Value>) -> Option<Result<Value, String>> {
    let rest = s.strip_prefix('$')?;
    if rest.starts_with('$') || rest == "any" {
        return None;
    }
    let mut parts = rest.split('.');
    let name = parts.next().unwrap_or_default();
    let Some(mut v) = names.get(name) else {
        return Some(Err(format!("no value kept as {name:?}")));
    };
    for p in parts {
        let next = match v {
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
            Value::Object(o) => o.get(p),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return Some(Err(format!("{s}: no {p:?}"))),
        }
    }
    Some(Ok(v.clone()))
}

/// `v` with references and generators replaced.
fn substitute(v: &Value, names: &Map<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => match reference(s, names) {
            Some(r) => r?,
            None => Value::String(
                s.strip_prefix('$')
                    .filter(|r| r.starts_with('$'))
                    .unwrap_or(s)
                    .into(),
            ),
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, names))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) if o.len() == 1 && o.contains_key("$now") => {
            let offset = o["$now"]
                .as_i64()
                .ok_or("$now takes a number of milliseconds")?;
            json!(WallClock.now_ms() as i64 + offset)
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("$repeat") => {
            let (unit, n) = match &o["$repeat"] {
                Value::Array(p) if p.len() == 2 => (p[0].as_str(), p[1].as_u64()),
                _ => (None, None),
            };
            match (unit, n) {
                (Some(u), Some(n)) => Value::String(u.repeat(n as usize)),
                _ => return Err("$repeat takes [string, count]".into()),
            }
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether `actual` matches `pattern` (README "Patterns"); the error says
/// where it does not.
fn matches(
    pattern: &Value,
    actual: &Value,
    names: &Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    let fail = |why: String| {
        Err(format!(
            "at {}: {why}",
            if at.is_empty() { "." } else { at }
        ))
    };
    match pattern {
        Value::String(s) if s == "$any" => {
            if actual.is_null() {
                return fail("expected a value, got null".into());
            }
            Ok(())
        }
        Value::String(s) if reference(s, names).is_some() => {
            let want = reference(s, names).unwrap()?;
            matches(&want, actual, names, at)
        }
        Value::String(s) => {
            let want = s
                .strip_prefix('$')
                .filter(|r| r.starts_with('$'))
                .unwrap_or(s);
            if actual.as_str() != Some(want) {
                return fail(format!("expected {want:?}, got {actual}"));
            }
            Ok(())
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("$len") => {
            let len = match actual {
                Value::Array(a) => a.len(),
                Value::String(s) => s.chars().count(),
                other => return fail(format!("expected an array or string, got {other}")),
            };
            if o["$len"].as_u64() != Some(len as u64) {
                return fail(format!("expected length {}, got {len}", o["$len"]));
            }
            Ok(())
        }
        Value::Object(o) if o.len() == 1 && (o.contains_key("$gte") || o.contains_key("$lte")) => {
            let (key, bound) = o.iter().next().unwrap();
            let bound = substitute(bound, names)?
                .as_f64()
                .ok_or("the bound is not a number")?;
            let Some(n) = actual.as_f64() else {
                return fail(format!("expected a number, got {actual}"));
            };
            let ok = if key == "$gte" {
                n >= bound
            } else {
                n <= bound
            };
            if !ok {
                return fail(format!("expected {key} {bound}, got {n}"));
            }
            Ok(())
        }
        Value::Object(o) => {
            let Value::Object(a) = actual else {
                return fail(format!("expected an object, got {actual}"));
            };
            for (k, p) in o {
                let Some(v) = a.get(k) else {
                    return fail(format!("no field {k:?}"));
                };
                matches(p, v, names, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        Value::Array(p) => {
            let Value::Array(a) = actual else {
                return fail(format!("expected an array, got {actual}"));
            };
            if p.len() != a.len() {
                return fail(format!("expected {} elements, got {}", p.len(), a.len()));
            }
            for (i, (p, v)) in p.iter().zip(a).enumerate() {
                matches(p, v, names, &format!("{at}.{i}"))?;
            }
            Ok(())
        }
        Value::Number(n) => match (n.as_f64(), actual.as_f64()) {
            (Some(x), Some(y)) if x == y => Ok(()),
            _ => fail(format!("expected {n}, got {actual}")),
        },
        other => {
            if other != actual {
                return fail(format!("expected {other}, got {actual}"));
            }
            Ok(())
        }
    }
}

#[test]
fn native_core() {
    run_all("native core", "native", || {
        (
            None,
            Native(Engine::new(
                MemoryStore::new(),
                MemoryOutbox::new(),
                WallClock,
            )),
        )
    });
}

/// The delivery decisions (`tests/conformance/delivery`), natively: the
/// Node and Python runners make the same calls on the component's
/// `delivery` interface. (The Rust host's own sender is the webhook
/// tests'.)
#[test]
fn delivery_native() {
    run_dir("delivery", "native, delivery", "native-delivery", || {
        let dir = tempfile::tempdir().unwrap();
        let host = NativeSender::new(dir.path());
        (Some(dir), host)
    });
}

#[test]
fn component_in_wasmtime() {
    run_all("wasmtime", "wasmtime", || {
        let (dir, host) = common::host();
        (Some(dir), Component(host))
    });
}

#[test]
fn component_on_postgres() {
    let mut n = 0;
    run_all("wasmtime + PostgreSQL", "postgres", || {
        n += 1;
        let url = common::fresh_database(&format!("conformance_{n}"));
        // Notifications go to the database's outbox, as in production.
        let (host, _outbox) =
            SessionHost::open_postgres(&url, CacheDir::At(common::cache_dir())).unwrap();
        (None, Component(host))
    });
}
