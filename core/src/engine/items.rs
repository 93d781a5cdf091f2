//! A session as a conversation: an ordered list of items (the OpenAI
//! Agents SDK's session memory, a chat transcript).
//!
//! The list is *derived from the history*, never rewritten: `add_items`
//! records one `item` event per item, `pop_item` an `item_pop` event naming
//! the item it took off, `clear_items` an `items_clear` event. The live
//! list is what those events leave, read from the end of the history
//! backwards, so the last items cost the same at item 10 and at item
//! 100 000 (until the next clear, which ends the walk).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::blobs::{self, Placed, Values};
use super::{Engine, Loaded, NewEvent, Op};
use crate::error::SessionError;
use crate::model::{Event, Session, SessionRef, event_kind};
use crate::ports::{Environment, Notifier, Store};
use crate::validate;

/// How many times an item operation re-reads and tries again when another
/// writer appended first (items commute: an add or a clear has no
/// precondition but the status; a pop picks again).
const ATTEMPTS: usize = 16;

/// An item as its event holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemData {
    /// The item itself (small items).
    Inline(Value),
    /// The item's JSON text in these records of the blob log (first,
    /// count).
    Blob(u64, u64),
}

impl ItemData {
    pub(crate) fn event(self) -> NewEvent {
        match self {
            Self::Inline(v) => NewEvent::new(event_kind::ITEM, json!({ "item": v })),
            Self::Blob(n, parts) => {
                NewEvent::new(event_kind::ITEM, Value::Object(blobs::blob_json(n, parts)))
            }
        }
    }

    /// The item of a recorded `item` event.
    pub(crate) fn of(data: &Value) -> Result<Self, SessionError> {
        if let Some(v) = data.get("item") {
            return Ok(Self::Inline(v.clone()));
        }
        match blobs::blob_of(data) {
            Some((n, parts)) if n <= validate::MAX_SAFE_INTEGER => Ok(Self::Blob(n, parts)),
            _ => Err(SessionError::InvalidInput(
                "an item event holds \"item\" or \"blob\" (a position) and \"parts\"".into(),
            )),
        }
    }
}

impl<S: Store, N: Notifier, E: Environment> Engine<S, N, E> {
    /// Add `items` (JSON texts) to the end of the session's conversation,
    /// in one append. Items above [`INLINE_MAX`](super::INLINE_MAX) bytes
    /// are kept in the blob log. Returns the session as changed.
    pub fn add_items(
        &self,
        session: impl Into<SessionRef>,
        items: &[String],
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        if items.len() > validate::MAX_PAGE as usize {
            return Err(SessionError::InvalidInput(format!(
                "at most {} items can be added at once, got {}",
                validate::MAX_PAGE,
                items.len()
            )));
        }
        let mut values = Values::default();
        let mut placed = Vec::with_capacity(items.len());
        for (i, text) in items.iter().enumerate() {
            let what = format!("item {i}");
            // Checked whatever its size: every host must read it back.
            let value = validate::json_limited(&what, text, super::MAX_VALUE_BYTES)?;
            placed.push(values.place(&what, text.clone().into_bytes(), |_| Ok(value))?);
        }
        let mut first_blob = None;
        self.retrying(id, |engine, loaded| {
            let first = match first_blob {
                Some(f) => f,
                None => {
                    super::require_live(&loaded.session, "add items to")?;
                    let f = engine.put_blobs(&loaded.session, &values.blobs)?;
                    first_blob = Some(f);
                    f
                }
            };
            let data = placed
                .iter()
                .map(|p| match p {
                    Placed::Inline(v) => ItemData::Inline(v.clone()),
                    Placed::Blob(i, parts) => ItemData::Blob(first + i, *parts),
                })
                .collect();
            Ok(Some(Op::Items(data)))
        })
        .map(|done| done.expect("an add always commits").0)
    }

    /// The conversation's items, oldest first: the last `limit` of them,
    /// or all with `None`.
    pub fn items(
        &self,
        session: impl Into<SessionRef>,
        limit: Option<u32>,
    ) -> Result<Vec<Value>, SessionError> {
        let id = &self.resolve(&session.into())?;
        let loaded = self.load(id)?;
        let found = self.live_items(&loaded, limit.map(|l| l as usize))?;
        found
            .into_iter()
            .rev()
            .map(|(_, item)| self.item_value(id, item))
            .collect()
    }

    /// Take the last item off the conversation (recorded as an event; the
    /// item stays in the history) and return it; `None` if there is none.
    pub fn pop_item(&self, session: impl Into<SessionRef>) -> Result<Option<Value>, SessionError> {
        let id = &self.resolve(&session.into())?;
        let mut taken = None;
        self.retrying(id, |engine, loaded| {
            super::require_live(&loaded.session, "pop an item of")?;
            taken = engine.live_items(loaded, Some(1))?.pop();
            Ok(taken.as_ref().map(|(seq, _)| Op::PopItem(*seq)))
        })?;
        taken.map(|(_, item)| self.item_value(id, item)).transpose()
    }

    /// Empty the conversation (recorded as an event).
    pub fn clear_items(&self, session: impl Into<SessionRef>) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.retrying(id, |_, loaded| {
            super::require_live(&loaded.session, "clear the items of")?;
            Ok(Some(Op::ClearItems))
        })
        .map(|done| done.expect("a clear always commits").0)
    }

    /// Load, make the operation, commit; again (up to [`ATTEMPTS`]) when
    /// another writer appended first. `make` returning `None` means there
    /// is nothing to record.
    pub(super) fn retrying(
        &self,
        id: &str,
        mut make: impl FnMut(&Self, &Loaded) -> Result<Option<Op>, SessionError>,
    ) -> Result<Option<(Session, Vec<Event>)>, SessionError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let loaded = self.load(id)?;
            let Some(op) = make(self, &loaded)? else {
                return Ok(None);
            };
            let events = op.events(Some(&loaded.session))?;
            let now = self.env.now_ms().max(loaded.session.updated_at);
            match self.commit(id, Some(loaded), events, now) {
                Err(SessionError::Conflict(m)) => last = Some(m),
                other => return other.map(Some),
            }
        }
        Err(SessionError::Conflict(last.unwrap_or_default()))
    }

    /// The live items, newest first: at most `limit`, walking the history
    /// back from its end to its last clear.
    fn live_items(
        &self,
        loaded: &Loaded,
        limit: Option<usize>,
    ) -> Result<Vec<(u64, ItemData)>, SessionError> {
        let mut found = Vec::new();
        if limit == Some(0) {
            return Ok(found);
        }
        let mut popped = HashSet::new();
        let mut damaged = None;
        self.walk_back(loaded, |e| {
            match e.kind.as_str() {
                event_kind::ITEMS_CLEAR => return Ok(false),
                event_kind::ITEM_POP => {
                    if let Some(of) = e.data.get("of").and_then(Value::as_u64) {
                        popped.insert(of);
                    }
                }
                event_kind::ITEM if !popped.remove(&e.seq) => match ItemData::of(&e.data) {
                    Ok(item) => {
                        found.push((e.seq, item));
                        if Some(found.len()) == limit {
                            return Ok(false);
                        }
                    }
                    Err(m) => {
                        damaged = Some((e.seq, m));
                        return Ok(false);
                    }
                },
                _ => {}
            }
            Ok(true)
        })?;
        if let Some((seq, m)) = damaged {
            return Err(SessionError::Storage(format!(
                "session {} history is damaged at event {seq}: {}",
                loaded.session.id,
                m.message()
            )));
        }
        Ok(found)
    }

    fn item_value(&self, id: &str, item: ItemData) -> Result<Value, SessionError> {
        match item {
            ItemData::Inline(v) => Ok(v),
            ItemData::Blob(n, parts) => {
                serde_json::from_slice(&self.blob(id, n, parts)?).map_err(|e| {
                    SessionError::Storage(format!(
                        "session {id}: the item at position {n} of its blob log is damaged: {e}"
                    ))
                })
            }
        }
    }
}
