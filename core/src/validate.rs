//! Input validation (BRIEF §8). Every public entry point of the engine runs
//! its arguments through these before touching storage.

use serde_json::{Map, Value};

use crate::error::SessionError;

/// Longest accepted session id.
pub const MAX_ID_LEN: usize = 64;
/// Longest accepted task, in bytes.
pub const MAX_TASK_BYTES: usize = 16 * 1024;
/// Longest accepted short name (mode, user, channel, tool, event kind), in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest accepted free text (reasons, errors, insights), in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest accepted JSON value (context, event data, results), serialized.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Largest accepted iteration bound.
pub const MAX_ITERATIONS_LIMIT: u32 = 1_000_000;
/// Largest page size of `list` and `events`.
pub const MAX_PAGE: u32 = 1000;

fn invalid(msg: impl Into<String>) -> SessionError {
    SessionError::InvalidInput(msg.into())
}

/// An id names a directory in file stores, so only `[A-Za-z0-9_-]` is
/// accepted: no separators, dots, NUL or absurd lengths can reach a path.
pub fn id(what: &str, id: &str) -> Result<(), SessionError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(invalid(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters, got {}",
            id.len()
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(invalid(format!(
            "{what} {:?} contains {c:?}; only letters, digits, '-' and '_' are allowed",
            truncate(id)
        )));
    }
    Ok(())
}

/// Required text: non-blank, at most `max` bytes, no control characters
/// other than newlines and tabs.
pub fn text(what: &str, value: &str, max: usize) -> Result<(), SessionError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes; the limit is {max}",
            value.len()
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(())
}

/// A short single-line name (mode, user id, channel id, tool name).
pub fn name(what: &str, value: &str) -> Result<(), SessionError> {
    text(what, value, MAX_NAME_BYTES)?;
    if value.contains(['\n', '\r', '\t']) {
        return Err(invalid(format!("{what} must be a single line")));
    }
    Ok(())
}

/// A custom event kind: lowercase letters, digits, `_`, `-`, `.`; not a
/// built-in kind (those are recorded only by their own operations).
pub fn custom_kind(kind: &str) -> Result<(), SessionError> {
    if kind.is_empty() || kind.len() > 64 {
        return Err(invalid("event kind must be 1 to 64 characters"));
    }
    if !kind
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
    {
        return Err(invalid(format!(
            "event kind {:?} may only contain a-z, 0-9, '_', '-' and '.'",
            truncate(kind)
        )));
    }
    if crate::model::event_kind::BUILT_IN.contains(&kind) {
        return Err(invalid(format!(
            "event kind {kind:?} is built in; record it with its own operation"
        )));
    }
    Ok(())
}

/// Parse JSON text of at most [`MAX_JSON_BYTES`].
pub fn json(what: &str, text: &str) -> Result<Value, SessionError> {
    if text.len() > MAX_JSON_BYTES {
        return Err(invalid(format!(
            "{what} is {} bytes of JSON; the limit is {MAX_JSON_BYTES}",
            text.len()
        )));
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

/// Check the size of an already-parsed JSON value.
pub fn json_value_size(what: &str, value: &Value) -> Result<(), SessionError> {
    let len = value.to_string().len();
    if len > MAX_JSON_BYTES {
        return Err(invalid(format!(
            "{what} is {len} bytes of JSON; the limit is {MAX_JSON_BYTES}"
        )));
    }
    Ok(())
}

/// A JSON value that must be an object (context and context patches).
pub fn json_object(what: &str, value: Value) -> Result<Map<String, Value>, SessionError> {
    json_value_size(what, &value)?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid(format!(
            "{what} must be a JSON object, got {}",
            json_type(&other)
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A page size between 1 and [`MAX_PAGE`].
pub fn page_limit(limit: u32) -> Result<(), SessionError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    Ok(())
}

/// Date ranges must not be inverted.
pub fn range(what: &str, after: Option<u64>, before: Option<u64>) -> Result<(), SessionError> {
    if let (Some(a), Some(b)) = (after, before)
        && a > b
    {
        return Err(invalid(format!(
            "{what}: the start ({a}) is after the end ({b})"
        )));
    }
    Ok(())
}

/// Keep echoed input short in messages.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
