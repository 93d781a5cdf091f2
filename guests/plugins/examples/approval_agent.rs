//! A bounded agent step with a human in the loop: plans, greps, pauses for
//! approval; when resumed, applies the change and completes.

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

use agent::session::sessions;
use agent::session::types::{SessionError, SessionRef, StartOptions, ToolCall};

struct ApprovalAgent;

fn message(e: SessionError) -> String {
    match e {
        SessionError::NotFound(m) => format!("not-found: {m}"),
        SessionError::InvalidTransition(m) => format!("invalid-transition: {m}"),
        SessionError::InvalidInput(m) => format!("invalid-input: {m}"),
        SessionError::Conflict(m) => format!("conflict: {m}"),
        SessionError::Storage(m) => format!("storage: {m}"),
        SessionError::LimitExceeded(m) => format!("limit-exceeded: {m}"),
    }
}

impl Guest for ApprovalAgent {
    fn run(task: String, config: String) -> Result<String, String> {
        let s = sessions::start(&StartOptions {
            key: None,
            task,
            mode: Some("plugin".into()),
            user_id: None,
            channel_id: None,
            max_iterations: Some(10),
            context: Some(format!(r#"{{"config": {}}}"#, json_string(&config))),
        })
        .map_err(message)?;
        sessions::iterate(&SessionRef::Id(s.id.clone()), Some(r#"{"step":"plan"}"#))
            .map_err(message)?;
        sessions::record_tool_call(
            &SessionRef::Id(s.id.clone()),
            &ToolCall {
                name: "grep".into(),
                input: r#"{"pattern":"fn main"}"#.into(),
                output: r#"["src/main.rs:1"]"#.into(),
                duration_ms: 3,
            },
        )
        .map_err(message)?;
        sessions::iterate(&SessionRef::Id(s.id.clone()), Some(r#"{"step":"propose"}"#))
            .map_err(message)?;
        let s = sessions::pause(&SessionRef::Id(s.id.clone()), Some("waiting for approval"))
            .map_err(message)?;
        Ok(format!(r#"{{"session":"{}","status":"paused"}}"#, s.id))
    }

    fn resume(session_id: String) -> Result<String, String> {
        sessions::resume(&SessionRef::Id(session_id.clone())).map_err(message)?;
        sessions::iterate(
            &SessionRef::Id(session_id.clone()),
            Some(r#"{"step":"apply"}"#),
        )
        .map_err(message)?;
        let s = sessions::complete(
            &SessionRef::Id(session_id.clone()),
            Some(r#"{"applied":true}"#),
        )
        .map_err(message)?;
        Ok(format!(
            r#"{{"session":"{}","status":"completed","iterations":{}}}"#,
            s.id, s.iteration
        ))
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

export!(ApprovalAgent);
