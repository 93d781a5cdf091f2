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
/// Largest export document [`crate::Engine::import_text`] accepts, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;
/// Longest accepted session key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
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

/// A session key: 1 to [`MAX_KEY_BYTES`] bytes of any characters but
/// control characters. A key is the caller's (a framework's thread or
/// conversation id), so it is taken as it is; the store never sees it as a
/// name (it is hashed), so it cannot reach a path.
pub fn key(key: &str) -> Result<(), SessionError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "session key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(format!(
            "session key {:?} contains control characters",
            truncate(key)
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

/// Parse JSON text of at most [`MAX_JSON_BYTES`] whose numbers are all
/// exact (see [`json_numbers_exact`]). Every host hands JSON values to the
/// core as text and parses them here, so they all accept the same values.
pub fn json(what: &str, text: &str) -> Result<Value, SessionError> {
    json_limited(what, text, MAX_JSON_BYTES)
}

/// [`json`] with another size limit (values kept apart from events).
pub fn json_limited(what: &str, text: &str, max: usize) -> Result<Value, SessionError> {
    if text.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes of JSON; the limit is {max}",
            text.len()
        )));
    }
    let value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))?;
    json_numbers_exact(what, text)?;
    Ok(value)
}

/// Refuse JSON text holding a number that a double cannot hold exactly.
///
/// Every host ends up with numbers as IEEE doubles (JavaScript has nothing
/// else), so a number is accepted only if its exact decimal value is the
/// value of the shortest decimal that round-trips its double: `0.1`,
/// `1e21`, `-0`, `12.50` and `9007199254740992` pass;
/// `123456789012345678901234567890`, `9007199254740993` and
/// `1.0000000000000001` do not (a JavaScript host would silently store
/// something else). Only number tokens outside strings are looked at; the
/// text is expected to be valid JSON (parse it first), and anything else
/// is scanned without panicking but with no promise about the result.
pub fn json_numbers_exact(what: &str, text: &str) -> Result<(), SessionError> {
    match first_inexact(text) {
        Some(token) => Err(inexact(what, token)),
        None => Ok(()),
    }
}

/// The first number in JSON text that no double holds exactly; scans
/// without allocating.
fn first_inexact(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        // The escaped byte can be a quote: skip it whole.
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                // Only ASCII bytes were consumed, so both ends are char
                // boundaries.
                let token = text.get(start..i).unwrap_or_default();
                if !number_is_exact(token) {
                    return Some(token);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Largest integer every host holds exactly (JavaScript's
/// `Number.MAX_SAFE_INTEGER`, 2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Check the size of an already-parsed JSON value (serialized, at most
/// [`MAX_JSON_BYTES`]) and that its integers are exact for every host: an
/// integer beyond ±[`MAX_SAFE_INTEGER`] is refused unless it is exactly
/// the double it rounds to *and* that double's shortest decimal (the rule
/// [`json_numbers_exact`] applies to text, so a value is accepted as a
/// `Value` exactly when it would be as text). Every operation that takes a
/// JSON value runs it through here.
pub fn json_value_size(what: &str, value: &Value) -> Result<(), SessionError> {
    let len = json_len(value);
    if len > MAX_JSON_BYTES {
        return Err(invalid(format!(
            "{what} is {len} bytes of JSON; the limit is {MAX_JSON_BYTES}"
        )));
    }
    json_value_numbers(what, value)
}

/// The length of `value` as JSON text: counted, not built, so that a huge
/// value is not copied just to be refused.
pub(crate) fn json_len(value: &Value) -> usize {
    let mut counter = SizeCounter { len: 0 };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.len
}

/// The integer part of [`json_value_size`]'s check, for values of any size
/// (a whole export document).
pub fn json_value_numbers(what: &str, value: &Value) -> Result<(), SessionError> {
    // An explicit stack: values built natively can be nested deeper than
    // any parser would allow.
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => {
                let exact = if let Some(u) = n.as_u64() {
                    u <= MAX_SAFE_INTEGER || integer_is_exact(&u.to_string(), u as f64)
                } else if let Some(i) = n.as_i64() {
                    i.unsigned_abs() <= MAX_SAFE_INTEGER
                        || integer_is_exact(&i.to_string(), i as f64)
                } else {
                    // A double is exactly itself.
                    true
                };
                if !exact {
                    return Err(inexact(what, &n.to_string()));
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    Ok(())
}

/// Counts serialized bytes.
struct SizeCounter {
    len: usize,
}

impl std::io::Write for SizeCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len = self.len.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn inexact(what: &str, number: &str) -> SessionError {
    let shown: String = if number.len() > 40 {
        format!("{}...", &number[..number.floor_char_boundary(40)])
    } else {
        number.to_owned()
    };
    invalid(format!(
        "{what}: the number {shown} cannot be stored exactly; send it as a string"
    ))
}

fn integer_is_exact(decimal: &str, f: f64) -> bool {
    Decimal::parse(decimal).is_some_and(|d| Decimal::parse(&format!("{f:e}")) == Some(d))
}

/// Whether a JSON number token is exactly its double's shortest decimal.
fn number_is_exact(token: &str) -> bool {
    let Ok(f) = token.parse::<f64>() else {
        return false;
    };
    if !f.is_finite() {
        return false;
    }
    // `{:e}` prints the shortest digits that round-trip.
    match (Decimal::parse(token), Decimal::parse(&format!("{f:e}"))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A decimal number as sign, significant digits (no leading or trailing
/// zeros) and the position of the decimal point relative to them: the
/// value is `0.DIGITS × 10^point`. Zero has no digits and no sign, so
/// `-0` equals `0`.
#[derive(PartialEq, Eq, Debug)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    point: i64,
}

impl Decimal {
    /// Parse `-?digits(.digits)?([eE][+-]?digits)?`; `None` for anything else.
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(at) => (&s[..at], Some(&s[at + 1..])),
            None => (s, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let exp = match exponent {
            None => 0i64,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Saturate: an exponent this large is out of any double's
                // range, and the comparison fails either way.
                let magnitude = digits.bytes().fold(0i64, |acc, b| {
                    acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
                });
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        let all = int.bytes().chain(frac.bytes());
        let leading = all.clone().take_while(|b| *b == b'0').count();
        let mut digits: Vec<u8> = all.skip(leading).collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                point: 0,
            });
        }
        let point = (int.len() as i64)
            .saturating_sub(leading as i64)
            .saturating_add(exp);
        Some(Decimal {
            negative,
            digits,
            point,
        })
    }
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
/// The first 80 characters of `s`, for messages.
pub fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
