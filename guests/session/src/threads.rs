//! The exported `conversations` and `checkpoints` interfaces over the core
//! engine: translation between WIT values and core values only. Shared by
//! both session components, like `api.rs`.

use agent_session_core as core;
use serde_json::Value;

use crate::agent::session::types as wit;
use crate::api::{Component, R, err, filter, json, sref, to_session};
use crate::engine;
use crate::exports::agent::session::checkpoints::{
    self as cp, CheckpointPage, CheckpointQuery, CheckpointTuple, NewCheckpoint, PendingWrite,
    TypedText, TypedValue,
};
use crate::exports::agent::session::conversations;

impl conversations::Guest for Component {
    fn add_items(session: wit::SessionRef, items: Vec<String>) -> R<wit::Session> {
        engine()
            .add_items(sref(session), &items)
            .map(to_session)
            .map_err(err)
    }

    fn items(session: wit::SessionRef, limit: Option<u32>) -> R<Vec<String>> {
        let items = engine().items(sref(session), limit).map_err(err)?;
        Ok(items.iter().map(Value::to_string).collect())
    }

    fn pop_item(session: wit::SessionRef) -> R<Option<String>> {
        let item = engine().pop_item(sref(session)).map_err(err)?;
        Ok(item.map(|v| v.to_string()))
    }

    fn clear_items(session: wit::SessionRef) -> R<wit::Session> {
        engine()
            .clear_items(sref(session))
            .map(to_session)
            .map_err(err)
    }
}

fn typed(v: TypedValue) -> core::TypedValue {
    core::TypedValue {
        type_: v.type_,
        bytes: v.bytes,
    }
}

fn to_text(v: core::TypedValue) -> TypedText {
    use base64::Engine as _;
    TypedText {
        base64: base64::engine::general_purpose::STANDARD.encode(&v.bytes),
        type_: v.type_,
    }
}

fn tuple(t: core::CheckpointTuple) -> CheckpointTuple {
    CheckpointTuple {
        session_id: t.session_id,
        key: t.key,
        ns: t.ns,
        id: t.id,
        parent_id: t.parent_id,
        checkpoint: to_text(t.checkpoint),
        metadata: t.metadata.to_string(),
        channel_values: t
            .channel_values
            .into_iter()
            .map(|(c, v)| (c, to_text(v)))
            .collect(),
        pending_writes: t
            .pending_writes
            .into_iter()
            .map(|w| PendingWrite {
                task_id: w.task_id,
                task_path: w.task_path,
                channel: w.channel,
                value: to_text(w.value),
            })
            .collect(),
    }
}

impl cp::Guest for Component {
    fn put_checkpoint(session: wit::SessionRef, c: NewCheckpoint) -> R<()> {
        let new_values = c
            .new_values
            .into_iter()
            .map(|v| {
                Ok(core::ChannelValue {
                    version: json("channel version", &v.version)?,
                    channel: v.channel,
                    value: v.value.map(typed),
                })
            })
            .collect::<R<_>>()?;
        let checkpoint = core::NewCheckpoint {
            metadata: json("checkpoint metadata", &c.metadata)?,
            channel_versions: json("channel versions", &c.channel_versions)?,
            ns: c.ns,
            id: c.id,
            parent_id: c.parent_id,
            checkpoint: typed(c.checkpoint),
            new_values,
        };
        engine()
            .put_checkpoint(sref(session), checkpoint)
            .map_err(err)
    }

    fn put_writes(
        session: wit::SessionRef,
        ns: String,
        checkpoint_id: String,
        task_id: String,
        task_path: String,
        writes: Vec<(String, TypedValue)>,
    ) -> R<()> {
        let writes = writes.into_iter().map(|(c, v)| (c, typed(v))).collect();
        engine()
            .put_writes(
                sref(session),
                &ns,
                &checkpoint_id,
                &task_id,
                &task_path,
                writes,
            )
            .map_err(err)
    }

    fn get_checkpoint(
        session: wit::SessionRef,
        ns: String,
        id: Option<String>,
    ) -> R<Option<CheckpointTuple>> {
        let t = engine()
            .get_checkpoint(sref(session), &ns, id.as_deref())
            .map_err(err)?;
        Ok(t.map(tuple))
    }

    fn list_checkpoints(q: CheckpointQuery, cursor: Option<String>) -> R<CheckpointPage> {
        let metadata = match q.metadata {
            Some(m) => match json("metadata filter", &m)? {
                Value::Object(m) => Some(m),
                _ => {
                    return Err(wit::SessionError::InvalidInput(
                        "the metadata filter must be a JSON object".into(),
                    ));
                }
            },
            None => None,
        };
        let query = core::CheckpointQuery {
            session: q.session.map(sref),
            threads: filter(q.threads),
            ns: q.ns,
            id: q.id,
            before: q.before,
            metadata,
            limit: q.limit,
        };
        let page = engine()
            .list_checkpoints(&query, cursor.as_deref())
            .map_err(err)?;
        Ok(CheckpointPage {
            checkpoints: page.checkpoints.into_iter().map(tuple).collect(),
            next_cursor: page.next_cursor,
        })
    }

    fn copy_checkpoints(from: wit::SessionRef, to: wit::SessionRef) -> R<()> {
        engine().copy_checkpoints(sref(from), sref(to)).map_err(err)
    }

    fn drop_runs(threads: wit::SessionFilter, run_ids: Vec<String>) -> R<u32> {
        engine().drop_runs(&filter(threads), &run_ids).map_err(err)
    }

    fn prune_checkpoints(session: wit::SessionRef) -> R<()> {
        engine().prune_checkpoints(sref(session)).map_err(err)
    }
}
