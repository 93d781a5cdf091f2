//! The session component's `conversations` and `checkpoints` interfaces
//! behind [`SessionHost`]'s typed API: conversion only, the rules are the
//! core's.

use agent_session_core::{
    CheckpointPage, CheckpointQuery, CheckpointTuple, NewCheckpoint, PendingWrite, Session,
    SessionFilter, SessionRef, TypedValue,
};
use serde_json::Value;

use crate::runtime::bindings::exports::agent::session::checkpoints as wit;
use crate::runtime::{Error, SessionHost, parse_json, to_wit_filter, wit_ref};

fn to_wit(v: &TypedValue) -> wit::TypedValue {
    wit::TypedValue {
        type_: v.type_.clone(),
        bytes: v.bytes.clone(),
    }
}

fn from_wit(v: wit::TypedText) -> Result<TypedValue, Error> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&v.base64)
        .map_err(|e| Error::Component(format!("the component returned bad base64: {e}")))?;
    Ok(TypedValue {
        type_: v.type_,
        bytes,
    })
}

fn tuple(t: wit::CheckpointTuple) -> Result<CheckpointTuple, Error> {
    Ok(CheckpointTuple {
        metadata: parse_json(&t.metadata)?,
        session_id: t.session_id,
        key: t.key,
        ns: t.ns,
        id: t.id,
        parent_id: t.parent_id,
        checkpoint: from_wit(t.checkpoint)?,
        channel_values: t
            .channel_values
            .into_iter()
            .map(|(c, v)| Ok((c, from_wit(v)?)))
            .collect::<Result<_, Error>>()?,
        pending_writes: t
            .pending_writes
            .into_iter()
            .map(|w| {
                Ok(PendingWrite {
                    task_id: w.task_id,
                    task_path: w.task_path,
                    channel: w.channel,
                    value: from_wit(w.value)?,
                })
            })
            .collect::<Result<_, Error>>()?,
    })
}

impl SessionHost {
    // ----- conversations -----

    /// Add items (JSON values) at the end of the session's conversation.
    pub fn add_items(
        &self,
        session: impl Into<SessionRef>,
        items: &[Value],
    ) -> Result<Session, Error> {
        let r = wit_ref(session.into());
        let items: Vec<String> = items.iter().map(Value::to_string).collect();
        self.call_in(|i, s| {
            i.agent_session_conversations()
                .call_add_items(s, &r, &items)
        })?
        .try_into()
    }

    /// The last `limit` items (all with `None`), oldest first.
    pub fn items(
        &self,
        session: impl Into<SessionRef>,
        limit: Option<u32>,
    ) -> Result<Vec<Value>, Error> {
        let r = wit_ref(session.into());
        let items =
            self.call_in(|i, s| i.agent_session_conversations().call_items(s, &r, limit))?;
        items.iter().map(|t| parse_json(t)).collect()
    }

    /// Take the last item off and return it.
    pub fn pop_item(&self, session: impl Into<SessionRef>) -> Result<Option<Value>, Error> {
        let r = wit_ref(session.into());
        let item = self.call_in(|i, s| i.agent_session_conversations().call_pop_item(s, &r))?;
        item.as_deref().map(parse_json).transpose()
    }

    /// Empty the conversation.
    pub fn clear_items(&self, session: impl Into<SessionRef>) -> Result<Session, Error> {
        let r = wit_ref(session.into());
        self.call_in(|i, s| i.agent_session_conversations().call_clear_items(s, &r))?
            .try_into()
    }

    // ----- checkpoints -----

    /// Put a checkpoint.
    pub fn put_checkpoint(
        &self,
        session: impl Into<SessionRef>,
        cp: &NewCheckpoint,
    ) -> Result<(), Error> {
        let r = wit_ref(session.into());
        let cp = wit::NewCheckpoint {
            ns: cp.ns.clone(),
            id: cp.id.clone(),
            parent_id: cp.parent_id.clone(),
            checkpoint: to_wit(&cp.checkpoint),
            metadata: cp.metadata.to_string(),
            channel_versions: cp.channel_versions.to_string(),
            new_values: cp
                .new_values
                .iter()
                .map(|v| wit::ChannelValue {
                    channel: v.channel.clone(),
                    version: v.version.to_string(),
                    value: v.value.as_ref().map(to_wit),
                })
                .collect(),
        };
        self.call_in(|i, s| {
            i.agent_session_checkpoints()
                .call_put_checkpoint(s, &r, &cp)
        })
    }

    /// Put writes pending on a checkpoint.
    pub fn put_writes(
        &self,
        session: impl Into<SessionRef>,
        ns: &str,
        checkpoint_id: &str,
        task_id: &str,
        task_path: &str,
        writes: &[(String, TypedValue)],
    ) -> Result<(), Error> {
        let r = wit_ref(session.into());
        let writes: Vec<(String, wit::TypedValue)> =
            writes.iter().map(|(c, v)| (c.clone(), to_wit(v))).collect();
        self.call_in(|i, s| {
            i.agent_session_checkpoints().call_put_writes(
                s,
                &r,
                ns,
                checkpoint_id,
                task_id,
                task_path,
                &writes,
            )
        })
    }

    /// A checkpoint (the latest with no id), if there is one.
    pub fn get_checkpoint(
        &self,
        session: impl Into<SessionRef>,
        ns: &str,
        id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>, Error> {
        let r = wit_ref(session.into());
        self.call_in(|i, s| {
            i.agent_session_checkpoints()
                .call_get_checkpoint(s, &r, ns, id)
        })?
        .map(tuple)
        .transpose()
    }

    /// One page of the checkpoints `query` selects.
    pub fn list_checkpoints(
        &self,
        query: &CheckpointQuery,
        cursor: Option<&str>,
    ) -> Result<CheckpointPage, Error> {
        let q = wit::CheckpointQuery {
            session: query.session.clone().map(wit_ref),
            threads: to_wit_filter(&query.threads),
            ns: query.ns.clone(),
            id: query.id.clone(),
            before: query.before.clone(),
            metadata: query
                .metadata
                .as_ref()
                .map(|m| Value::Object(m.clone()).to_string()),
            limit: query.limit,
        };
        let page = self.call_in(|i, s| {
            i.agent_session_checkpoints()
                .call_list_checkpoints(s, &q, cursor)
        })?;
        Ok(CheckpointPage {
            checkpoints: page
                .checkpoints
                .into_iter()
                .map(tuple)
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
        })
    }

    /// Copy every checkpoint of one session into another.
    pub fn copy_checkpoints(
        &self,
        from: impl Into<SessionRef>,
        to: impl Into<SessionRef>,
    ) -> Result<(), Error> {
        let (from, to) = (wit_ref(from.into()), wit_ref(to.into()));
        self.call_in(|i, s| {
            i.agent_session_checkpoints()
                .call_copy_checkpoints(s, &from, &to)
        })
    }

    /// Drop the checkpoints of these runs in the sessions `threads` selects.
    pub fn drop_runs(&self, threads: &SessionFilter, run_ids: &[String]) -> Result<u32, Error> {
        let f = to_wit_filter(threads);
        self.call_in(|i, s| i.agent_session_checkpoints().call_drop_runs(s, &f, run_ids))
    }

    /// Keep only the latest checkpoint of each namespace.
    pub fn prune_checkpoints(&self, session: impl Into<SessionRef>) -> Result<(), Error> {
        let r = wit_ref(session.into());
        self.call_in(|i, s| i.agent_session_checkpoints().call_prune_checkpoints(s, &r))
    }
}
