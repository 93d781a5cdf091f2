//! The exported `sessions` interface over the core engine: translation
//! between WIT values and core values only. Shared by the session
//! component (`lib.rs`, store and notify imported) and the session-on-root
//! component (`guests/session-on-root`, the directory store linked in):
//! each crate root generates its world's bindings and provides `engine()`.

use agent_session_core as core;
use core::SessionError;
use serde_json::Value;

use crate::agent::session::types as wit;
use crate::engine;
use crate::exports::agent::session::sessions::Guest;

/// Time and randomness from WASI (`wasi:clocks`, `wasi:random`), through std
/// and getrandom.
pub(crate) struct WasiEnvironment;

impl core::Environment for WasiEnvironment {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        // wasi:random cannot fail; an error here means the host broke it,
        // and a time-only id is still unique enough to keep working.
        if getrandom::fill(buf).is_err() {
            buf.fill(0);
        }
    }
}

pub(crate) type R<T> = Result<T, wit::SessionError>;

pub(crate) fn err(e: SessionError) -> wit::SessionError {
    match e {
        SessionError::NotFound(m) => wit::SessionError::NotFound(m),
        SessionError::InvalidTransition(m) => wit::SessionError::InvalidTransition(m),
        SessionError::InvalidInput(m) => wit::SessionError::InvalidInput(m),
        SessionError::Conflict(m) => wit::SessionError::Conflict(m),
        SessionError::Storage(m) => wit::SessionError::Storage(m),
        SessionError::LimitExceeded(m) => wit::SessionError::LimitExceeded(m),
    }
}

pub(crate) fn json(what: &str, text: &str) -> R<Value> {
    core::validate::json(what, text).map_err(err)
}

fn opt_json(what: &str, text: Option<String>) -> R<Option<Value>> {
    text.map(|t| json(what, &t)).transpose()
}

fn status(s: core::SessionStatus) -> wit::SessionStatus {
    match s {
        core::SessionStatus::Active => wit::SessionStatus::Active,
        core::SessionStatus::Paused => wit::SessionStatus::Paused,
        core::SessionStatus::Completed => wit::SessionStatus::Completed,
        core::SessionStatus::Failed => wit::SessionStatus::Failed,
        core::SessionStatus::Timeout => wit::SessionStatus::Timeout,
    }
}

fn from_status(s: wit::SessionStatus) -> core::SessionStatus {
    match s {
        wit::SessionStatus::Active => core::SessionStatus::Active,
        wit::SessionStatus::Paused => core::SessionStatus::Paused,
        wit::SessionStatus::Completed => core::SessionStatus::Completed,
        wit::SessionStatus::Failed => core::SessionStatus::Failed,
        wit::SessionStatus::Timeout => core::SessionStatus::Timeout,
    }
}

pub(crate) fn sref(r: wit::SessionRef) -> core::SessionRef {
    match r {
        wit::SessionRef::Id(id) => core::SessionRef::Id(id),
        wit::SessionRef::Key(key) => core::SessionRef::Key(key),
    }
}

pub(crate) fn to_session(s: core::Session) -> wit::Session {
    wit::Session {
        key: s.key,
        context: Value::Object(s.context).to_string(),
        result: s.result.map(|r| r.to_string()),
        id: s.id,
        task: s.task,
        mode: s.mode,
        user_id: s.user_id,
        channel_id: s.channel_id,
        status: status(s.status),
        iteration: s.iteration,
        max_iterations: s.max_iterations,
        pause_reason: s.pause_reason,
        error: s.error,
        created_at: s.created_at,
        updated_at: s.updated_at,
        ended_at: s.ended_at,
        event_count: s.event_count,
        version: s.version,
    }
}

fn event(e: core::Event) -> wit::Event {
    wit::Event {
        seq: e.seq,
        kind: e.kind,
        timestamp: e.timestamp,
        data: e.data.to_string(),
    }
}

pub(crate) fn filter(f: wit::SessionFilter) -> core::SessionFilter {
    core::SessionFilter {
        user_id: f.user_id,
        channel_id: f.channel_id,
        mode: f.mode,
        status: f.status.map(from_status),
        created_after: f.created_after,
        created_before: f.created_before,
        updated_after: f.updated_after,
        updated_before: f.updated_before,
    }
}

fn webhook(c: core::WebhookConfig) -> wit::WebhookConfig {
    wit::WebhookConfig {
        url: c.url,
        secret: c.secret,
        event_kinds: c.event_kinds,
        enabled: c.enabled,
    }
}

pub(crate) struct Component;

impl Guest for Component {
    fn start(o: wit::StartOptions) -> R<wit::Session> {
        let options = core::StartOptions {
            context: opt_json("context", o.context)?,
            key: o.key,
            task: o.task,
            mode: o.mode,
            user_id: o.user_id,
            channel_id: o.channel_id,
            max_iterations: o.max_iterations,
        };
        engine().start(options).map(to_session).map_err(err)
    }

    fn get(session: wit::SessionRef) -> R<wit::Session> {
        engine().get(sref(session)).map(to_session).map_err(err)
    }

    fn pause(session: wit::SessionRef, reason: Option<String>) -> R<wit::Session> {
        engine()
            .pause(sref(session), reason)
            .map(to_session)
            .map_err(err)
    }

    fn resume(session: wit::SessionRef) -> R<wit::Session> {
        engine().resume(sref(session)).map(to_session).map_err(err)
    }

    fn complete(session: wit::SessionRef, result: Option<String>) -> R<wit::Session> {
        let result = opt_json("result", result)?;
        engine()
            .complete(sref(session), result)
            .map(to_session)
            .map_err(err)
    }

    fn fail(session: wit::SessionRef, error: String) -> R<wit::Session> {
        engine()
            .fail(sref(session), error)
            .map(to_session)
            .map_err(err)
    }

    fn iterate(session: wit::SessionRef, data: Option<String>) -> R<wit::Session> {
        let data = opt_json("iteration data", data)?;
        engine()
            .iterate(sref(session), data)
            .map(to_session)
            .map_err(err)
    }

    fn record_tool_call(session: wit::SessionRef, call: wit::ToolCall) -> R<wit::Event> {
        let call = core::ToolCall {
            input: json("tool input", &call.input)?,
            output: json("tool output", &call.output)?,
            name: call.name,
            duration_ms: call.duration_ms,
        };
        engine()
            .record_tool_call(sref(session), call)
            .map(event)
            .map_err(err)
    }

    fn record_learning(session: wit::SessionRef, l: wit::Learning) -> R<wit::Event> {
        let learning = core::Learning {
            insight: l.insight,
            expertise_file: l.expertise_file,
        };
        engine()
            .record_learning(sref(session), learning)
            .map(event)
            .map_err(err)
    }

    fn record_event(session: wit::SessionRef, kind: String, data: String) -> R<wit::Event> {
        let data = json("event data", &data)?;
        engine()
            .record_event(sref(session), &kind, data)
            .map(event)
            .map_err(err)
    }

    fn events(session: wit::SessionRef, from: u64, limit: u32) -> R<wit::EventPage> {
        let page = engine().events(sref(session), from, limit).map_err(err)?;
        Ok(wit::EventPage {
            events: page.events.into_iter().map(event).collect(),
            next_seq: page.next_seq,
        })
    }

    fn recent_events(session: wit::SessionRef) -> R<Vec<wit::Event>> {
        let events = engine().recent_events(sref(session)).map_err(err)?;
        Ok(events.into_iter().map(event).collect())
    }

    fn update_context(session: wit::SessionRef, patch: String) -> R<wit::Session> {
        let patch = json("context patch", &patch)?;
        engine()
            .update_context(sref(session), patch)
            .map(to_session)
            .map_err(err)
    }

    fn resumption_context(session: wit::SessionRef) -> R<wit::Resumption> {
        let r = engine().resumption_context(sref(session)).map_err(err)?;
        Ok(wit::Resumption {
            session: to_session(r.session),
            recent_events: r.recent_events.into_iter().map(event).collect(),
            resumable: r.resumable,
        })
    }

    fn list(f: wit::SessionFilter, cursor: Option<String>, limit: u32) -> R<wit::SessionPage> {
        let page = engine()
            .list(&filter(f), cursor.as_deref(), limit)
            .map_err(err)?;
        Ok(wit::SessionPage {
            sessions: page.sessions.into_iter().map(to_session).collect(),
            next_cursor: page.next_cursor,
            unreadable: page.unreadable,
        })
    }

    fn stats(f: wit::SessionFilter) -> R<wit::SessionStats> {
        let s = engine().stats(&filter(f)).map_err(err)?;
        Ok(wit::SessionStats {
            total: s.total,
            by_status: s
                .by_status
                .into_iter()
                .map(|(st, count)| wit::StatusCount {
                    status: status(st),
                    count,
                })
                .collect(),
            by_mode: s
                .by_mode
                .into_iter()
                .map(|(mode, count)| wit::ModeCount { mode, count })
                .collect(),
            average_iterations: s.average_iterations,
            success_rate: s.success_rate,
        })
    }

    fn cleanup(older_than_days: Option<u32>, dry_run: bool) -> R<wit::CleanupReport> {
        let r = engine().cleanup(older_than_days, dry_run).map_err(err)?;
        Ok(wit::CleanupReport {
            dry_run: r.dry_run,
            removed: r.removed,
        })
    }

    fn delete(session: wit::SessionRef) -> R<()> {
        engine().delete(sref(session)).map_err(err)
    }

    fn rebuild_index(dry_run: bool) -> R<wit::IndexReport> {
        let r = engine().reindex(dry_run).map_err(err)?;
        Ok(wit::IndexReport {
            sessions: r.sessions,
            stale: r.stale,
            unreadable: r.unreadable,
        })
    }

    fn export(session: wit::SessionRef) -> R<String> {
        engine()
            .export(sref(session))
            .map(|v| v.to_string())
            .map_err(err)
    }

    fn import(document: String) -> R<wit::Session> {
        engine().import_text(&document).map(to_session).map_err(err)
    }

    fn set_webhook(c: wit::WebhookConfig) -> R<wit::WebhookConfig> {
        let config = core::WebhookConfig {
            url: c.url,
            secret: c.secret,
            event_kinds: c.event_kinds,
            enabled: c.enabled,
        };
        engine().set_webhook(config).map(webhook).map_err(err)
    }

    fn check_webhook_url(url: String, allow: Vec<String>) -> R<()> {
        core::webhook::check_url(&url, &allow).map_err(err)
    }

    fn get_webhook() -> R<Option<wit::WebhookConfig>> {
        engine().get_webhook().map(|c| c.map(webhook)).map_err(err)
    }

    fn clear_webhook() -> R<()> {
        engine().clear_webhook().map_err(err)
    }

    fn disable_webhook(url: String) -> R<bool> {
        engine().disable_webhook(&url).map_err(err)
    }

    fn is_resumable(session: wit::SessionRef) -> R<bool> {
        engine().is_resumable(sref(session)).map_err(err)
    }

    fn duration(session: wit::SessionRef) -> R<u64> {
        engine().duration(sref(session)).map_err(err)
    }

    fn progress(session: wit::SessionRef) -> R<f64> {
        engine().progress(sref(session)).map_err(err)
    }
}
