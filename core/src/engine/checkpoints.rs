//! A session as a thread of checkpoints: LangGraph's checkpointer
//! contract, once, for every host and language.
//!
//! Everything is an event of the session's history, never rewritten:
//!
//! - `checkpoint`: `{ns, id, parent, checkpoint, metadata, versions,
//!   values, from, blobs?}`. `values` are the channel values put with it
//!   (`{channel, version, value}`, `value` null for an emptied channel);
//!   `from` says, for each other channel of `versions`, which earlier
//!   `checkpoint` event holds its value at that version, so a read needs
//!   no search however long ago the value was put.
//! - `writes`: `{ns, checkpoint, task, path, writes: [{idx, channel,
//!   value}], blobs?}`, the writes of one task pending on a checkpoint.
//! - `checkpoints_drop`: `{keep: [[ns, id]...]}` (every checkpoint before
//!   it but these is gone: `prune`) or `{runs: [...]}` (every checkpoint
//!   before it whose metadata `run_id` is one of these is gone: LangGraph's
//!   `delete_for_runs`).
//!
//! A value is `{type, b64}` in the event when small, `{type, blob}` (a
//! position of the blob log, see `blobs.rs`) when not.
//!
//! Reads walk the history back from its end: the first `checkpoint` event
//! of an id is its latest put, drops seen on the way hide what they name,
//! and the `writes` events passed on the way are the writes pending on the
//! checkpoints reached. So the latest checkpoints cost the same at 200 and
//! at 20 000, and "latest" is the one put last (LangGraph's ids sort in the
//! order they are made).

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::blobs::{self, Placed, Values};
use super::{Engine, Loaded, NewEvent, Op};
use crate::error::SessionError;
use crate::model::{
    CheckpointPage, CheckpointQuery, CheckpointTuple, Event, NewCheckpoint, PendingWrite, Session,
    SessionFilter, SessionRef, TypedValue, event_kind,
};
use crate::ports::{Environment, Notifier, Store};
use crate::validate;

/// LangGraph's special channels and the positions their writes take (a
/// write at a negative position replaces; any other is kept if its task
/// has none there yet).
const SPECIAL_WRITES: [(&str, i64); 4] = [
    ("__error__", -1),
    ("__scheduled__", -2),
    ("__interrupt__", -3),
    ("__resume__", -4),
];

/// Longest namespace, id, task id, task path, channel or type tag.
const MAX_LABEL_BYTES: usize = 4096;
/// Most writes (or channel values) in one call.
const MAX_ENTRIES: usize = 10_000;
/// Most checkpoints a page holds ...
const PAGE_CHECKPOINTS: usize = 100;
/// ... and most bytes of values.
const PAGE_BYTES: usize = 8 << 20;
/// The most bytes of large values a copy moves.
const MAX_COPY_BYTES: usize = 256 << 20;
/// Writes of a checkpoint may be recorded before the checkpoint itself
/// (LangGraph puts a step's writes while the checkpoint's put is still
/// on its way): a read looks this far back past the checkpoint for them,
/// in checkpoints of any namespace ...
const WRITES_LOOKBACK_CHECKPOINTS: usize = 2;
/// ... and in events.
const WRITES_LOOKBACK_EVENTS: usize = 64;
/// Events read per step of a walk back, at first (it grows).
const FIRST_STEP: u64 = 8;

fn invalid(m: impl Into<String>) -> SessionError {
    SessionError::InvalidInput(m.into())
}

/// A position (in a blob log, or of an event) at least as long in JSON as
/// any a log will reach: an event built with it is as large as the real
/// one can be.
const PROBE_POSITION: u64 = 1 << 52;

/// An event holds at most what an import accepts of one: what does not
/// fit (many channels with long names, large metadata) is refused here
/// rather than written into a history no export could carry.
fn event_size(what: &str, data: &Value) -> Result<(), SessionError> {
    let len = validate::json_len(data);
    if len > super::MAX_EVENT_DATA_BYTES {
        return Err(SessionError::LimitExceeded(format!(
            "{what} would be an event of {len} bytes; the limit is {} (large values go \
             apart; metadata, versions and names must fit)",
            super::MAX_EVENT_DATA_BYTES
        )));
    }
    Ok(())
}

fn label(what: &str, s: &str, empty_ok: bool) -> Result<(), SessionError> {
    if (!empty_ok && s.is_empty()) || s.len() > MAX_LABEL_BYTES {
        return Err(invalid(format!(
            "{what} must be {} to {MAX_LABEL_BYTES} bytes, got {}",
            u8::from(!empty_ok),
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} {:?} contains control characters",
            validate::truncate(s)
        )));
    }
    Ok(())
}

/// A version: a JSON number or string.
fn version(what: &str, v: &Value) -> Result<(), SessionError> {
    match v {
        Value::Number(_) => Ok(()),
        Value::String(s) => label(what, s, true),
        _ => Err(invalid(format!("{what} must be a number or a string"))),
    }
}

/// Two JSON values are equal as LangGraph compares them: numbers by value
/// (`1 == 1.0`), the rest structurally.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn metadata_matches(filter: &Map<String, Value>, metadata: &Value) -> bool {
    filter.iter().all(|(k, want)| match metadata.get(k) {
        None => want.is_null(),
        Some(have) => same(want, have),
    })
}

/// A value as an event holds it.
fn value_json(type_: &str, placed: &Placed<Vec<u8>>, first_blob: u64) -> Value {
    match placed {
        Placed::Inline(bytes) => json!({ "type": type_, "b64": BASE64.encode(bytes) }),
        Placed::Blob(i, parts) => {
            let mut v = blobs::blob_json(first_blob + i, *parts);
            v.insert("type".into(), json!(type_));
            Value::Object(v)
        }
    }
}

/// Where a recorded value is.
enum Stored {
    Inline(TypedValue),
    /// Type, first record, records.
    Blob(String, u64, u64),
}

fn stored(v: &Value) -> Option<Stored> {
    let type_ = v.get("type")?.as_str()?.to_owned();
    if let Some(b64) = v.get("b64").and_then(Value::as_str) {
        let bytes = BASE64.decode(b64).ok()?;
        return Some(Stored::Inline(TypedValue { type_, bytes }));
    }
    let (n, parts) = blobs::blob_of(v)?;
    Some(Stored::Blob(type_, n, parts))
}

fn text<'a>(d: &'a Value, k: &str) -> &'a str {
    d.get(k).and_then(Value::as_str).unwrap_or("")
}

/// What a `checkpoints_drop` event hides, of the checkpoints before it
/// (from position `since` on: a drop copied from another thread hides
/// only what was copied with it).
enum DropRule {
    /// Every one but these (ns, id).
    Keep(HashSet<(String, String)>),
    /// Every one whose metadata `run_id` is one of these.
    Runs(HashSet<String>),
}

struct Drop {
    rule: DropRule,
    since: u64,
}

impl Drop {
    fn of(d: &Value) -> Option<Self> {
        let since = d.get("since").and_then(Value::as_u64).unwrap_or(0);
        if let Some(keep) = d.get("keep").and_then(Value::as_array) {
            let pairs = keep
                .iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    Some((
                        p.first()?.as_str()?.to_owned(),
                        p.get(1)?.as_str()?.to_owned(),
                    ))
                })
                .collect();
            return Some(Self {
                rule: DropRule::Keep(pairs),
                since,
            });
        }
        let runs = d.get("runs")?.as_array()?;
        Some(Self {
            rule: DropRule::Runs(
                runs.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect(),
            ),
            since,
        })
    }

    fn hides(&self, seq: u64, ns: &str, id: &str, metadata: &Value) -> bool {
        seq >= self.since
            && match &self.rule {
                DropRule::Keep(keep) => !keep.contains(&(ns.to_owned(), id.to_owned())),
                DropRule::Runs(runs) => metadata
                    .get("run_id")
                    .and_then(Value::as_str)
                    .is_some_and(|r| runs.contains(r)),
            }
    }
}

/// How far a read goes past the last checkpoint it wants, for the writes
/// recorded before their checkpoint.
#[derive(Default)]
struct Lookback {
    events: usize,
    checkpoints: usize,
}

impl Lookback {
    /// Count `e`; whether to read on.
    fn more(&mut self, e: &Event) -> bool {
        self.events += 1;
        if e.kind == event_kind::CHECKPOINT {
            self.checkpoints += 1;
        }
        self.events < WRITES_LOOKBACK_EVENTS && self.checkpoints < WRITES_LOOKBACK_CHECKPOINTS
    }
}

/// A walk back through one session's history: what it has seen so far.
#[derive(Default)]
struct Walk {
    drops: Vec<Drop>,
    /// (ns, id) of the checkpoint events passed (a later put of an id
    /// supersedes the earlier ones).
    seen: HashSet<(String, String)>,
    /// `writes` events passed, by (ns, checkpoint id), newest first.
    writes: HashMap<(String, String), Vec<Event>>,
}

impl Walk {
    /// Take in one event (walking back); a checkpoint event that is
    /// visible is returned.
    fn visit(&mut self, e: Event) -> Option<Event> {
        match e.kind.as_str() {
            event_kind::CHECKPOINTS_DROP => {
                if let Some(d) = Drop::of(&e.data) {
                    self.drops.push(d);
                }
                None
            }
            event_kind::WRITES => {
                let key = (
                    text(&e.data, "ns").to_owned(),
                    text(&e.data, "checkpoint").to_owned(),
                );
                self.writes.entry(key).or_default().push(e);
                None
            }
            event_kind::CHECKPOINT => {
                let (ns, id) = (text(&e.data, "ns"), text(&e.data, "id"));
                let metadata = e.data.get("metadata").unwrap_or(&Value::Null);
                let fresh = self.seen.insert((ns.to_owned(), id.to_owned()));
                (fresh && !self.drops.iter().any(|d| d.hides(e.seq, ns, id, metadata))).then_some(e)
            }
            _ => None,
        }
    }

    /// The writes pending on checkpoint (ns, id), as recorded: in history
    /// order.
    fn writes_of(&self, ns: &str, id: &str) -> Vec<&Event> {
        let mut events: Vec<&Event> = self
            .writes
            .get(&(ns.to_owned(), id.to_owned()))
            .map(|w| w.iter().collect())
            .unwrap_or_default();
        events.reverse();
        events
    }
}

impl<S: Store, N: Notifier, E: Environment> Engine<S, N, E> {
    /// Put a checkpoint (see `wit/session.wit`, `checkpoints`).
    pub fn put_checkpoint(
        &self,
        session: impl Into<SessionRef>,
        cp: NewCheckpoint,
    ) -> Result<(), SessionError> {
        let id = &self.resolve(&session.into())?;
        label("checkpoint namespace", &cp.ns, true)?;
        label("checkpoint id", &cp.id, false)?;
        if let Some(p) = &cp.parent_id {
            label("parent checkpoint id", p, false)?;
        }
        label("checkpoint type", &cp.checkpoint.type_, true)?;
        if !cp.metadata.is_object() {
            return Err(invalid("checkpoint metadata must be a JSON object"));
        }
        validate::json_value_size("checkpoint metadata", &cp.metadata)?;
        let Some(versions) = cp.channel_versions.as_object() else {
            return Err(invalid("channel versions must be a JSON object"));
        };
        validate::json_value_size("channel versions", &cp.channel_versions)?;
        for (channel, v) in versions {
            label("channel", channel, false)?;
            version(&format!("version of channel {channel:?}"), v)?;
        }
        if cp.new_values.len() > MAX_ENTRIES {
            return Err(invalid(format!(
                "at most {MAX_ENTRIES} channel values per checkpoint"
            )));
        }
        let mut values = Values::for_one_event();
        let checkpoint = values.place("the checkpoint", cp.checkpoint.bytes, Ok)?;
        let mut new_values = Vec::with_capacity(cp.new_values.len());
        for v in cp.new_values {
            label("channel", &v.channel, false)?;
            version(&format!("version of channel {:?}", v.channel), &v.version)?;
            let placed = match v.value {
                Some(t) => {
                    label("value type", &t.type_, true)?;
                    let what = format!("the value of channel {:?}", v.channel);
                    Some((t.type_, values.place(&what, t.bytes, Ok)?))
                }
                None => None,
            };
            new_values.push((v.channel, v.version, placed));
        }
        let type_ = cp.checkpoint.type_;
        let blob_count = values.blobs.len();
        let build = |first: u64| -> Value {
            let values_json: Vec<Value> = new_values
                .iter()
                .map(|(channel, version, placed)| {
                    json!({
                        "channel": channel,
                        "version": version,
                        "value": placed.as_ref().map(|(t, p)| value_json(t, p, first)),
                    })
                })
                .collect();
            let mut data = json!({
                "ns": cp.ns,
                "id": cp.id,
                "parent": cp.parent_id,
                "checkpoint": value_json(&type_, &checkpoint, first),
                "metadata": cp.metadata,
                "versions": cp.channel_versions,
                "values": values_json,
            });
            if blob_count > 0 {
                data["blobs"] = json!([first, blob_count]);
            }
            data
        };
        // Names, metadata and versions that cannot fit are refused before
        // any value is written: the probe names an event for every channel
        // not put now, as `from` will at most.
        let mut probe = build(PROBE_POSITION);
        let from: Map<String, Value> = versions
            .keys()
            .filter(|c| !new_values.iter().any(|(put, _, _)| put == *c))
            .map(|c| (c.clone(), json!(PROBE_POSITION)))
            .collect();
        probe["from"] = Value::Object(from);
        event_size("the checkpoint", &probe)?;
        let mut data = None;
        self.retrying(id, |engine, loaded| {
            super::require_live(&loaded.session, "put a checkpoint in")?;
            let data = match &mut data {
                Some(d) => d,
                None => {
                    let first = engine.put_blobs(&loaded.session, &values.blobs)?;
                    data.insert(build(first))
                }
            };
            // Where each channel not put now has its value: found again on
            // every attempt, as the history may have grown.
            let from = engine.value_sources(loaded, data)?;
            data["from"] = Value::Object(from);
            event_size("the checkpoint", data)?;
            Ok(Some(Op::Checkpointing(vec![NewEvent::new(
                event_kind::CHECKPOINT,
                data.clone(),
            )])))
        })?;
        Ok(())
    }

    /// For each channel of a new checkpoint's `versions` that it does not
    /// put, the `checkpoint` event holding its value at that version (a
    /// value is LangGraph's per namespace, channel and version). Its own
    /// lineage first: the parent's event (its own values, or where it
    /// found its others), then what was put before the parent; only a
    /// parent that is not in the thread makes the whole namespace's
    /// history searched, newest first. The search normally stops at the
    /// parent, the last checkpoint put.
    fn value_sources(
        &self,
        loaded: &Loaded,
        data: &Value,
    ) -> Result<Map<String, Value>, SessionError> {
        let ns = text(data, "ns");
        let versions = data.get("versions").and_then(Value::as_object);
        let put: HashSet<&str> = data
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().map(|v| text(v, "channel")).collect())
            .unwrap_or_default();
        let mut wanted: BTreeMap<String, Value> = versions
            .map(|v| {
                v.iter()
                    .filter(|(c, _)| !put.contains(c.as_str()))
                    .map(|(c, v)| (c.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut from = Map::new();
        if wanted.is_empty() {
            return Ok(from);
        }
        let parent = data.get("parent").and_then(Value::as_str);
        let mut searching_all = parent.is_none();
        let mut parent_found = false;
        for _pass in 0..2 {
            self.walk_back(loaded, |e| {
                if e.kind != event_kind::CHECKPOINT || text(&e.data, "ns") != ns {
                    return Ok(true);
                }
                let is_parent = !parent_found && parent.is_some_and(|p| text(&e.data, "id") == p);
                if !(searching_all || is_parent) {
                    return Ok(true);
                }
                for entry in e
                    .data
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let channel = text(entry, "channel");
                    if let Some(v) = wanted.get(channel)
                        && entry.get("version").is_some_and(|have| same(have, v))
                    {
                        from.insert(channel.to_owned(), json!(e.seq));
                        wanted.remove(channel);
                    }
                }
                if is_parent {
                    parent_found = true;
                    searching_all = true;
                    // A channel at the parent's version that the parent
                    // could not find has no value; one whose version moved
                    // without a value being put is searched for further
                    // back.
                    let parent_versions = e.data.get("versions");
                    let parent_from = e.data.get("from");
                    wanted.retain(|channel, v| {
                        let same_version = parent_versions
                            .and_then(|pv| pv.get(channel))
                            .is_some_and(|pv| same(pv, v));
                        if !same_version {
                            return true;
                        }
                        if let Some(seq) = parent_from.and_then(|f| f.get(channel)) {
                            from.insert(channel.clone(), seq.clone());
                        }
                        false
                    });
                }
                Ok(!wanted.is_empty())
            })?;
            if searching_all || wanted.is_empty() {
                break;
            }
            // The parent is not in this thread: any checkpoint of the
            // namespace that put the version will do.
            searching_all = true;
        }
        Ok(from)
    }

    /// Put the writes of task `task_id` pending on checkpoint
    /// `checkpoint_id` of namespace `ns`.
    pub fn put_writes(
        &self,
        session: impl Into<SessionRef>,
        ns: &str,
        checkpoint_id: &str,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, TypedValue)>,
    ) -> Result<(), SessionError> {
        let id = &self.resolve(&session.into())?;
        label("checkpoint namespace", ns, true)?;
        label("checkpoint id", checkpoint_id, false)?;
        label("task id", task_id, true)?;
        label("task path", task_path, true)?;
        if writes.len() > MAX_ENTRIES {
            return Err(invalid(format!("at most {MAX_ENTRIES} writes per call")));
        }
        let mut values = Values::for_one_event();
        let mut placed = Vec::with_capacity(writes.len());
        for (i, (channel, value)) in writes.into_iter().enumerate() {
            label("channel", &channel, false)?;
            label("value type", &value.type_, true)?;
            let idx = SPECIAL_WRITES
                .iter()
                .find(|(c, _)| *c == channel)
                .map_or(i as i64, |(_, idx)| *idx);
            let what = format!("the write to channel {channel:?}");
            let p = values.place(&what, value.bytes, Ok)?;
            placed.push((idx, channel, value.type_, p));
        }
        let blob_count = values.blobs.len();
        let build = |first: u64| -> Value {
            let writes: Vec<Value> = placed
                .iter()
                .map(|(idx, channel, t, p)| {
                    json!({ "idx": idx, "channel": channel, "value": value_json(t, p, first) })
                })
                .collect();
            let mut d = json!({
                "ns": ns,
                "checkpoint": checkpoint_id,
                "task": task_id,
                "path": task_path,
                "writes": writes,
            });
            if blob_count > 0 {
                d["blobs"] = json!([first, blob_count]);
            }
            d
        };
        // Checked before any value is written; the event is this size
        // whatever the positions turn out to be, or smaller.
        event_size("the writes", &build(PROBE_POSITION))?;
        let mut data = None;
        self.retrying(id, |engine, loaded| {
            super::require_live(&loaded.session, "put writes in")?;
            let d = match &data {
                Some(d) => d,
                None => {
                    let first = engine.put_blobs(&loaded.session, &values.blobs)?;
                    data.insert(build(first))
                }
            };
            Ok(Some(Op::Checkpointing(vec![NewEvent::new(
                event_kind::WRITES,
                d.clone(),
            )])))
        })?;
        Ok(())
    }

    /// Checkpoint `id` of namespace `ns`, or the latest one; `None` if
    /// there is none, or no such session.
    pub fn get_checkpoint(
        &self,
        session: impl Into<SessionRef>,
        ns: &str,
        id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>, SessionError> {
        label("checkpoint namespace", ns, true)?;
        if let Some(id) = id {
            label("checkpoint id", id, false)?;
        }
        let Some(loaded) = self.thread(&session.into())? else {
            return Ok(None);
        };
        let mut walk = Walk::default();
        let mut found = None;
        let mut lookback = Lookback::default();
        self.walk_back(&loaded, |e| {
            if found.is_some() {
                walk.visit(e.clone());
                return Ok(lookback.more(e));
            }
            if let Some(cp) = walk.visit(e.clone())
                && text(&cp.data, "ns") == ns
                && id.is_none_or(|id| text(&cp.data, "id") == id)
            {
                found = Some(cp);
            }
            Ok(true)
        })?;
        let mut cache = HashMap::new();
        found
            .map(|cp| self.tuple(&loaded.session, &walk, &cp, &mut cache))
            .transpose()
    }

    /// Checkpoints matching `query`, a page at a time (see
    /// [`CheckpointQuery`]); `cursor` is a page's `next_cursor`.
    pub fn list_checkpoints(
        &self,
        query: &CheckpointQuery,
        cursor: Option<&str>,
    ) -> Result<CheckpointPage, SessionError> {
        if let Some(ns) = &query.ns {
            label("checkpoint namespace", ns, true)?;
        }
        for (what, v) in [("checkpoint id", &query.id), ("before", &query.before)] {
            if let Some(v) = v {
                label(what, v, false)?;
            }
        }
        if let Some(m) = &query.metadata {
            validate::json_value_size("metadata filter", &Value::Object(m.clone()))?;
        }
        let (mut from_session, mut skip, mut returned) = match cursor {
            Some(c) => parse_cursor(c)?,
            None => (None, 0, 0),
        };
        let mut page = CheckpointPage {
            checkpoints: Vec::new(),
            next_cursor: None,
        };
        let sessions = match &query.session {
            Some(r) => match self.thread(r)? {
                Some(l) => vec![l.session.id],
                None => return Ok(page),
            },
            None => self.thread_ids(&query.threads)?,
        };
        let mut bytes = 0usize;
        for sid in sessions {
            // Sessions come newest first, by id: resume at the cursor's, or
            // after where it was if it is gone.
            if let Some(f) = &from_session {
                if sid.as_str() > f.as_str() {
                    continue;
                }
                if sid != *f {
                    skip = 0;
                }
                from_session = None;
            }
            let loaded = match self.load(&sid) {
                Ok(l) => l,
                Err(SessionError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let session = &loaded.session;
            let mut walk = Walk::default();
            let mut matched = Vec::new();
            let mut full = false;
            let mut to_skip = skip;
            let mut closing: Option<Lookback> = None;
            let mut pending = 0usize;
            self.walk_back(&loaded, |e| {
                if let Some(lookback) = &mut closing {
                    walk.visit(e.clone());
                    return Ok(lookback.more(e));
                }
                let Some(cp) = walk.visit(e.clone()) else {
                    return Ok(true);
                };
                let d = &cp.data;
                let cid = text(d, "id");
                if query.ns.as_deref().is_some_and(|ns| text(d, "ns") != ns)
                    || query.id.as_deref().is_some_and(|id| cid != id)
                    || query.before.as_deref().is_some_and(|b| cid >= b)
                    || query.metadata.as_ref().is_some_and(|m| {
                        !metadata_matches(m, d.get("metadata").unwrap_or(&Value::Null))
                    })
                {
                    return Ok(true);
                }
                if to_skip > 0 {
                    to_skip -= 1;
                    return Ok(true);
                }
                pending += validate::json_len(&cp.data);
                returned += 1;
                matched.push(cp);
                let done = query.limit.is_some_and(|l| returned >= u64::from(l));
                full = page.checkpoints.len() + matched.len() == PAGE_CHECKPOINTS
                    || bytes + pending >= PAGE_BYTES;
                if done || full {
                    // The writes of the last ones may lie a little before
                    // them.
                    closing = Some(Lookback::default());
                }
                Ok(true)
            })?;
            // The values are only known now (large ones, and those found
            // in earlier checkpoints): the page closes once they pass the
            // bound too, after at least one checkpoint.
            let mut cache = HashMap::new();
            let found = matched.len() as u64;
            let mut taken = 0u64;
            for cp in matched {
                if bytes >= PAGE_BYTES && !page.checkpoints.is_empty() {
                    full = true;
                    break;
                }
                let t = self.tuple(session, &walk, &cp, &mut cache)?;
                bytes += validate::json_len(&cp.data)
                    + t.checkpoint.bytes.len()
                    + t.channel_values
                        .iter()
                        .map(|(_, v)| v.bytes.len())
                        .sum::<usize>();
                page.checkpoints.push(t);
                taken += 1;
            }
            returned -= found - taken;
            if full && query.limit.is_none_or(|l| returned < u64::from(l)) {
                page.next_cursor = Some(format!("{sid}.{}.{returned}", skip + taken));
                return Ok(page);
            }
            skip = 0;
            if query.limit.is_some_and(|l| returned >= u64::from(l)) {
                break;
            }
        }
        Ok(page)
    }

    /// Copy every checkpoint, write and drop of session `from` to the end
    /// of session `to` (ids kept), in one append.
    pub fn copy_checkpoints(
        &self,
        from: impl Into<SessionRef>,
        to: impl Into<SessionRef>,
    ) -> Result<(), SessionError> {
        let src_id = self.resolve(&from.into())?;
        let dst_id = self.resolve(&to.into())?;
        if src_id == dst_id {
            return Err(invalid("a session cannot be copied into itself"));
        }
        let src = self.load(&src_id)?.session;
        let events: Vec<Event> = self
            .read_events(&src, 0, u32::MAX)?
            .into_iter()
            .filter(|e| {
                matches!(
                    e.kind.as_str(),
                    event_kind::CHECKPOINT | event_kind::WRITES | event_kind::CHECKPOINTS_DROP
                )
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        // The source's values, read once.
        let mut blob_refs: Vec<(u64, u64)> = Vec::new();
        for e in &events {
            blob_refs.extend(value_slots(&e.data).filter_map(blobs::blob_of));
        }
        blob_refs.sort_unstable();
        blob_refs.dedup();
        // Record for record: a value keeps its parts.
        let mut records = Vec::new();
        let mut offsets = HashMap::new();
        let mut size = 0usize;
        for (n, parts) in &blob_refs {
            offsets.insert(*n, records.len() as u64);
            for i in 0..*parts {
                let bytes = self.blob_record(&src_id, n + i)?;
                size += bytes.len();
                if size > MAX_COPY_BYTES {
                    return Err(SessionError::LimitExceeded(format!(
                        "session {src_id} holds more than {MAX_COPY_BYTES} bytes of large \
                         values; a copy takes at most that"
                    )));
                }
                records.push(bytes);
            }
        }
        let mut first_blob = None;
        self.retrying(&dst_id, |engine, loaded| {
            super::require_live(&loaded.session, "copy checkpoints into")?;
            let first = match first_blob {
                Some(f) => f,
                None => {
                    let f = engine.put_blobs(&loaded.session, &records)?;
                    first_blob = Some(f);
                    f
                }
            };
            let blob_map: HashMap<u64, u64> = offsets
                .iter()
                .map(|(n, offset)| (*n, first + offset))
                .collect();
            let base = loaded.session.event_count;
            let seq_map: HashMap<u64, u64> = events
                .iter()
                .enumerate()
                .map(|(i, e)| (e.seq, base + i as u64))
                .collect();
            let copied = events
                .iter()
                .map(|e| {
                    let mut data = e.data.clone();
                    let mut refs = Vec::new();
                    for v in value_slots_mut(&mut data) {
                        if let Some((n, parts)) = blobs::blob_of(v)
                            && let Some(new) = blob_map.get(&n)
                        {
                            v["blob"] = json!(new);
                            refs.push(*new);
                            refs.push(new + parts - 1);
                        }
                    }
                    if e.kind == event_kind::CHECKPOINTS_DROP {
                        // It hides only what was copied with it, not what
                        // the target had.
                        let since = data.get("since").and_then(Value::as_u64).unwrap_or(0);
                        let first = events
                            .iter()
                            .position(|c| c.seq >= since)
                            .map_or(base, |i| base + i as u64);
                        data["since"] = json!(first);
                    }
                    if let Some(Value::Object(from)) = data.get_mut("from") {
                        from.retain(|_, seq| match seq.as_u64().and_then(|s| seq_map.get(&s)) {
                            Some(n) => {
                                *seq = json!(n);
                                true
                            }
                            None => false,
                        });
                    }
                    if let Some(obj) = data.as_object_mut() {
                        obj.remove("blobs");
                        if let (Some(lo), Some(hi)) = (refs.iter().min(), refs.iter().max()) {
                            obj.insert("blobs".into(), json!([lo, hi - lo + 1]));
                        }
                    }
                    NewEvent::new(e.kind.clone(), data)
                })
                .collect();
            Ok(Some(Op::Checkpointing(copied)))
        })?;
        Ok(())
    }

    /// Drop the checkpoints of runs `run_ids` (metadata `run_id`) in every
    /// session `threads` selects; how many sessions changed.
    pub fn drop_runs(
        &self,
        threads: &SessionFilter,
        run_ids: &[String],
    ) -> Result<u32, SessionError> {
        for r in run_ids {
            label("run id", r, false)?;
        }
        if run_ids.is_empty() {
            return Ok(0);
        }
        let runs: HashSet<&str> = run_ids.iter().map(String::as_str).collect();
        let mut changed = 0;
        for sid in self.thread_ids(threads)? {
            let loaded = match self.load(&sid) {
                Ok(l) => l,
                Err(SessionError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut walk = Walk::default();
            let mut hit = false;
            self.walk_back(&loaded, |e| {
                if let Some(cp) = walk.visit(e.clone())
                    && cp
                        .data
                        .get("metadata")
                        .and_then(|m| m.get("run_id"))
                        .and_then(Value::as_str)
                        .is_some_and(|r| runs.contains(r))
                {
                    hit = true;
                    return Ok(false);
                }
                Ok(true)
            })?;
            if hit && !loaded.session.status.is_terminal() {
                self.retrying(&sid, |_, _| {
                    Ok(Some(Op::Checkpointing(vec![NewEvent::new(
                        event_kind::CHECKPOINTS_DROP,
                        json!({ "runs": run_ids }),
                    )])))
                })?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Drop every checkpoint but the latest of each namespace.
    pub fn prune_checkpoints(&self, session: impl Into<SessionRef>) -> Result<(), SessionError> {
        let id = &self.resolve(&session.into())?;
        self.retrying(id, |engine, loaded| {
            let mut walk = Walk::default();
            let mut latest: BTreeMap<String, String> = BTreeMap::new();
            let mut visible = 0usize;
            engine.walk_back(loaded, |e| {
                if let Some(cp) = walk.visit(e.clone()) {
                    visible += 1;
                    latest
                        .entry(text(&cp.data, "ns").to_owned())
                        .or_insert_with(|| text(&cp.data, "id").to_owned());
                }
                Ok(true)
            })?;
            if visible == latest.len() {
                return Ok(None);
            }
            let keep: Vec<Value> = latest.into_iter().map(|(ns, id)| json!([ns, id])).collect();
            Ok(Some(Op::Checkpointing(vec![NewEvent::new(
                event_kind::CHECKPOINTS_DROP,
                json!({ "keep": keep }),
            )])))
        })?;
        Ok(())
    }

    /// The session `r` names, `None` if there is none.
    fn thread(&self, r: &SessionRef) -> Result<Option<Loaded>, SessionError> {
        let id = match self.resolve(r) {
            Ok(id) => id,
            Err(SessionError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.load(&id) {
            Ok(l) => Ok(Some(l)),
            Err(SessionError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ids of the sessions `filter` selects, newest first.
    fn thread_ids(&self, filter: &SessionFilter) -> Result<Vec<String>, SessionError> {
        super::validate_filter(filter)?;
        let mut ids = Vec::new();
        self.scan(None, |id, summary| {
            if filter.matches(summary) {
                ids.push(id.to_owned());
            }
            true
        })?;
        Ok(ids)
    }

    /// Visit the session's events from the last back to the first, until
    /// `visit` says stop: first those its load read after the snapshot,
    /// then the earlier ones, read a step at a time (growing).
    pub(super) fn walk_back(
        &self,
        loaded: &Loaded,
        mut visit: impl FnMut(&Event) -> Result<bool, SessionError>,
    ) -> Result<(), SessionError> {
        for e in loaded.tail.iter().rev() {
            if !visit(e)? {
                return Ok(());
            }
        }
        let session = &loaded.session;
        let mut end = loaded.tail.first().map_or(session.event_count, |e| e.seq);
        let mut step = FIRST_STEP;
        while end > 0 {
            let from = end.saturating_sub(step);
            let events = self.read_events(session, from, (end - from) as u32)?;
            for e in events.iter().rev() {
                if !visit(e)? {
                    return Ok(());
                }
            }
            end = from;
            step = (step * 4).min(u64::from(validate::MAX_PAGE));
        }
        Ok(())
    }

    /// The tuple of checkpoint event `cp`, with its values and the writes
    /// the walk passed.
    fn tuple(
        &self,
        s: &Session,
        walk: &Walk,
        cp: &Event,
        cache: &mut HashMap<u64, Event>,
    ) -> Result<CheckpointTuple, SessionError> {
        let d = &cp.data;
        let damaged = |m: &str| {
            SessionError::Storage(format!(
                "session {} history is damaged at event {}: {m}",
                s.id, cp.seq
            ))
        };
        let (ns, id) = (text(d, "ns"), text(d, "id"));
        let checkpoint = d
            .get("checkpoint")
            .and_then(stored)
            .ok_or_else(|| damaged("a checkpoint without its value"))?;
        let mut channel_values = Vec::new();
        if let Some(versions) = d.get("versions").and_then(Value::as_object) {
            for (channel, want) in versions {
                let holder = match d
                    .get("from")
                    .and_then(|f| f.get(channel))
                    .and_then(Value::as_u64)
                {
                    Some(seq) if seq < cp.seq => {
                        if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(seq) {
                            let e = self
                                .read_events(s, seq, 1)?
                                .pop()
                                .ok_or_else(|| damaged("a value's event is missing"))?;
                            slot.insert(e);
                        }
                        cache.get(&seq).map(|e| &e.data)
                    }
                    _ => Some(d),
                };
                let entry = holder
                    .and_then(|h| h.get("values"))
                    .and_then(Value::as_array)
                    .and_then(|vs| {
                        vs.iter().find(|v| {
                            text(v, "channel") == channel
                                && v.get("version").is_some_and(|have| same(have, want))
                        })
                    });
                let Some(value) = entry.and_then(|e| e.get("value")).filter(|v| !v.is_null())
                else {
                    continue;
                };
                let value = stored(value).ok_or_else(|| damaged("a value of a bad shape"))?;
                channel_values.push((channel.clone(), self.typed(&s.id, value)?));
            }
        }
        // The writes, in the order they were recorded: a regular write is
        // kept if its task has none at its position yet; a special one
        // replaces.
        let mut writes: BTreeMap<(String, i64), (String, String, Stored)> = BTreeMap::new();
        for e in walk.writes_of(ns, id) {
            let task = text(&e.data, "task").to_owned();
            let path = text(&e.data, "path").to_owned();
            for w in e
                .data
                .get("writes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let idx = w.get("idx").and_then(Value::as_i64).unwrap_or_default();
                let Some(value) = w.get("value").and_then(stored) else {
                    return Err(damaged("a write of a bad shape"));
                };
                let key = (task.clone(), idx);
                if idx >= 0 && writes.contains_key(&key) {
                    continue;
                }
                writes.insert(key, (path.clone(), text(w, "channel").to_owned(), value));
            }
        }
        let mut sorted: Vec<_> = writes.into_iter().collect();
        sorted.sort_by(|((ta, ia), (pa, _, _)), ((tb, ib), (pb, _, _))| {
            (pa, ta, ia).cmp(&(pb, tb, ib))
        });
        let pending_writes = sorted
            .into_iter()
            .map(|((task_id, _), (task_path, channel, value))| {
                Ok(PendingWrite {
                    task_id,
                    task_path,
                    channel,
                    value: self.typed(&s.id, value)?,
                })
            })
            .collect::<Result<_, SessionError>>()?;
        Ok(CheckpointTuple {
            session_id: s.id.clone(),
            key: s.key.clone(),
            ns: ns.to_owned(),
            id: id.to_owned(),
            parent_id: d
                .get("parent")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            checkpoint: self.typed(&s.id, checkpoint)?,
            metadata: d.get("metadata").cloned().unwrap_or_else(|| json!({})),
            channel_values,
            pending_writes,
        })
    }

    fn typed(&self, id: &str, v: Stored) -> Result<TypedValue, SessionError> {
        match v {
            Stored::Inline(t) => Ok(t),
            Stored::Blob(type_, n, parts) => Ok(TypedValue {
                type_,
                bytes: self.blob(id, n, parts)?,
            }),
        }
    }
}

/// The values (`{type, b64}` or `{type, blob}`) a checkpoint or writes
/// event holds: the checkpoint, its channel values, the writes.
fn value_slots(data: &Value) -> impl Iterator<Item = &Value> {
    let checkpoint = data.get("checkpoint").into_iter();
    let values = data
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("value"));
    let writes = data
        .get("writes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.get("value"));
    checkpoint
        .chain(values)
        .chain(writes)
        .filter(|v| v.is_object())
}

/// [`value_slots`], to change them.
fn value_slots_mut(data: &mut Value) -> Vec<&mut Value> {
    let Some(obj) = data.as_object_mut() else {
        return Vec::new();
    };
    let mut slots = Vec::new();
    for (k, v) in obj.iter_mut() {
        match k.as_str() {
            "checkpoint" => slots.push(v),
            "values" | "writes" => {
                for entry in v.as_array_mut().into_iter().flatten() {
                    if let Some(value) = entry.get_mut("value") {
                        slots.push(value);
                    }
                }
            }
            _ => {}
        }
    }
    slots.retain(|v| v.is_object());
    slots
}

/// A page cursor: `<session id>.<checkpoints of it already returned>.<all
/// returned so far>`.
fn parse_cursor(c: &str) -> Result<(Option<String>, u64, u64), SessionError> {
    let bad = || {
        invalid(format!(
            "{:?} is not a checkpoint cursor",
            validate::truncate(c)
        ))
    };
    let mut parts = c.rsplitn(3, '.');
    // Counts a listing can reach (pages of at most PAGE_CHECKPOINTS; a
    // session's skip is among those returned), so that they stay far from
    // overflowing.
    let count = |p: Option<&str>| {
        p.and_then(|p| p.parse::<u64>().ok())
            .filter(|n| *n <= u64::from(u32::MAX))
            .ok_or_else(bad)
    };
    let returned = count(parts.next())?;
    let skip = count(parts.next())?;
    if skip > returned {
        return Err(bad());
    }
    let sid = parts.next().ok_or_else(bad)?;
    validate::id("cursor", sid).map_err(|_| bad())?;
    Ok((Some(sid.to_owned()), skip, returned))
}
