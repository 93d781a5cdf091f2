//! What to notify: which lifecycle events become webhook notifications, and
//! what their bodies hold. How they are delivered is the host's business.

use serde_json::json;

use crate::error::SessionError;
use crate::model::{Event, Notification, Session, WebhookConfig, event_kind};

/// Every notification kind, in lifecycle order.
pub const NOTIFICATION_KINDS: [&str; 6] = [
    "session.started",
    "session.paused",
    "session.resumed",
    "session.completed",
    "session.failed",
    "session.timed_out",
];

/// Whether `s` is standard, padded base64 (what a `whsec_` secret holds:
/// the signing key is its decoding).
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The notification kind an event raises, if it is a lifecycle event.
pub fn notification_kind(event_kind: &str) -> Option<&'static str> {
    let i = match event_kind {
        event_kind::START => 0,
        event_kind::PAUSE => 1,
        event_kind::RESUME => 2,
        event_kind::COMPLETE => 3,
        event_kind::ERROR => 4,
        event_kind::TIMEOUT => 5,
        _ => return None,
    };
    Some(NOTIFICATION_KINDS[i])
}

/// Check an endpoint URL's form: http(s), a host, at most 2048 characters
/// without spaces, a valid authority.
pub fn validate_url(url: &str) -> Result<(), SessionError> {
    let invalid = |m: String| Err(SessionError::InvalidInput(m));
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        None => {
            return invalid(format!(
                "webhook url {url:?} must start with http:// or https://"
            ));
        }
        Some(r) if r.is_empty() || r.starts_with('/') => {
            return invalid("webhook url has no host".into());
        }
        Some(_) => {}
    }
    if url.len() > 2048 || url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return invalid("webhook url must be at most 2048 characters without spaces".into());
    }
    if let Some(rest) = rest {
        check_authority(rest).map_err(SessionError::InvalidInput)?;
    }
    Ok(())
}

/// Check an endpoint configuration.
pub fn validate_config(c: &WebhookConfig) -> Result<(), SessionError> {
    let invalid = |m: String| Err(SessionError::InvalidInput(m));
    validate_url(&c.url)?;
    let key = c.secret.strip_prefix("whsec_").unwrap_or("");
    if key.len() < 16 || key.len() > 512 || !is_base64(key) {
        return invalid(
            "webhook secret must be \"whsec_\" followed by 16 to 512 base64 characters".into(),
        );
    }
    if let Some(k) = c
        .event_kinds
        .iter()
        .find(|k| !NOTIFICATION_KINDS.contains(&k.as_str()))
    {
        return invalid(format!(
            "unknown webhook event kind {k:?}; expected some of {}",
            NOTIFICATION_KINDS.join(", ")
        ));
    }
    Ok(())
}

/// Whether webhooks may be sent to `url` under the address policy with the
/// exceptions `allow` (see [`crate::address`]): `invalid-input` says why
/// not. The check every host makes when an endpoint is set.
pub fn check_url(url: &str, allow: &[String]) -> Result<(), SessionError> {
    // Its form first, judged as `set-webhook` judges it.
    validate_url(url)?;
    crate::address::AddressPolicy::from_rules(allow)
        .map_err(|e| SessionError::InvalidInput(format!("webhook allow rule: {e}")))?
        .check_url(url)
        .map_err(|r| SessionError::InvalidInput(r.to_string()))
}

/// Check the authority (what follows the scheme, up to the path) of a
/// webhook url: no user name or password (a secret in a url ends up in
/// logs, and `https://trusted@other/` dials `other`); an IPv6 literal
/// closed and without a zone (a zone names an interface of the sending
/// host, which means nothing to the others); a port, if given, from 1 to
/// 65535.
fn check_authority(rest: &str) -> Result<(), String> {
    let authority = crate::address::authority(rest);
    if let Some(why) = crate::address::unplain(authority) {
        return Err(format!("webhook url: {why}"));
    }
    if authority.contains('@') {
        return Err("webhook url must not contain a user name or password".into());
    }
    let port = if let Some(literal) = authority.strip_prefix('[') {
        let Some((address, after)) = literal.split_once(']') else {
            return Err("webhook url has an unterminated IPv6 address ('[' without ']')".into());
        };
        if address.contains('%') {
            return Err("webhook url must not name an IPv6 zone ('%')".into());
        }
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!(
                "webhook url has an invalid IPv6 address {:?}",
                crate::validate::truncate(address)
            ));
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err("webhook url has text after its IPv6 address".into()),
            },
        }
    } else {
        if authority.contains(['[', ']']) {
            return Err("webhook url has a '[' or ']' outside an IPv6 address".into());
        }
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("webhook url has no host".into());
        }
        port
    };
    // An empty port (`http://host:/`) means the scheme's default.
    let valid = |p: &str| {
        p.is_empty()
            || (p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)))
    };
    match port {
        Some(p) if !valid(p) => Err(format!(
            "webhook url port {:?} must be a number from 1 to 65535",
            crate::validate::truncate(p)
        )),
        _ => Ok(()),
    }
}

/// Key, in a lifecycle event's data, of the id of the notification it
/// raised (its `webhook-id`).
pub const ID_FIELD: &str = "webhook_id";

/// The notification kind an event of kind `event_kind` raises for the
/// endpoint `config`, or `None` if it raises none there (not a lifecycle
/// event, endpoint disabled, or a kind the endpoint does not want).
pub fn wanted(config: &WebhookConfig, event_kind: &str) -> Option<&'static str> {
    let kind = notification_kind(event_kind)?;
    accepts(config, kind).then_some(kind)
}

/// Whether the endpoint `config` takes notifications of `kind` now
/// (enabled, and subscribed to that kind).
pub fn accepts(config: &WebhookConfig, kind: &str) -> bool {
    config.enabled
        && (config.event_kinds.is_empty() || config.event_kinds.iter().any(|k| k == kind))
}

/// The notification `event` raises for the endpoint `config`: the event
/// must be one it wants and must name the notification's id in its data
/// ([`ID_FIELD`], set when the event was made).
pub fn notification(
    config: &WebhookConfig,
    session: &Session,
    event: &Event,
) -> Option<Notification> {
    let kind = wanted(config, &event.kind)?;
    let id = event.data.get(ID_FIELD)?.as_str()?.to_owned();
    // Standard Webhooks body shape: type, timestamp, data.
    let body = json!({
        "type": kind,
        "timestamp": rfc3339(event.timestamp),
        "data": {
            "session": {
                "id": session.id,
                "task": session.task,
                "mode": session.mode,
                "user_id": session.user_id,
                "channel_id": session.channel_id,
                "status": session.status,
                "iteration": session.iteration,
                "max_iterations": session.max_iterations,
                "created_at": rfc3339(session.created_at),
                "updated_at": rfc3339(session.updated_at),
                "ended_at": session.ended_at.map(rfc3339),
            },
            "event": event,
        },
    });
    Some(Notification {
        id,
        session_id: session.id.clone(),
        seq: event.seq,
        url: config.url.clone(),
        secret: config.secret.clone(),
        kind: kind.to_owned(),
        timestamp: event.timestamp,
        body: body.to_string(),
    })
}

/// Kind of the notification sent by [`test_notification`].
pub const TEST_KIND: &str = "webhook.test";

/// A ping for the endpoint `config`, sent on request to check that it is
/// reachable and verifies signatures. It is sent even to a disabled
/// endpoint (to check it before enabling it again) and names no session.
pub fn test_notification(config: &WebhookConfig, id: String, now: u64) -> Notification {
    let body = json!({
        "type": TEST_KIND,
        "timestamp": rfc3339(now),
        "data": {},
    });
    Notification {
        id,
        session_id: String::new(),
        seq: 0,
        url: config.url.clone(),
        secret: config.secret.clone(),
        kind: TEST_KIND.to_owned(),
        timestamp: now,
        body: body.to_string(),
    }
}

/// Whether `event`, read from the history at the notification's position,
/// is the event the notification was raised for. A sender asks this before
/// the first attempt: notifications are queued just before their events
/// are appended, so one whose append lost a race or never happened (a
/// crash in between) must not be sent. Two writers can make identical
/// events in the same millisecond; only the notification id in the event
/// tells them apart.
pub fn describes(n: &Notification, event: &Event) -> bool {
    event.seq == n.seq && event.data.get(ID_FIELD).and_then(|v| v.as_str()) == Some(n.id.as_str())
}

/// Milliseconds since the epoch as RFC 3339 UTC text.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
