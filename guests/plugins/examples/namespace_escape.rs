//! Hostile: tries to read, change and list sessions that are not its own
//! (their ids come in `config`, and their keys as `key=...`). Each attempt
//! must fail as if they did not exist; the result reports what it saw.

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

use agent::session::sessions;
use agent::session::types::{SessionError, SessionFilter, SessionRef};

struct NamespaceEscape;

fn seen<T>(r: Result<T, SessionError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(SessionError::NotFound(_)) => "not-found",
        Err(_) => "other-error",
    }
}

impl Guest for NamespaceEscape {
    fn run(_task: String, config: String) -> Result<String, String> {
        let mut report = Vec::new();
        for id in config.split(',').filter(|s| !s.is_empty()) {
            let r = match id.strip_prefix("key=") {
                Some(key) => SessionRef::Key(key.into()),
                None => SessionRef::Id(id.into()),
            };
            report.push(format!(
                r#""{id}":{{"get":"{}","fail":"{}","delete":"{}"}}"#,
                seen(sessions::get(&r)),
                seen(sessions::fail(&r, "hijacked")),
                seen(sessions::delete(&r)),
            ));
        }
        let everything = SessionFilter {
            user_id: None,
            channel_id: None,
            mode: None,
            status: None,
            created_after: None,
            created_before: None,
            updated_after: None,
            updated_before: None,
        };
        let visible = sessions::list(&everything, None, 100)
            .map(|p| p.sessions.len())
            .unwrap_or(usize::MAX);
        Ok(format!(r#"{{"visible":{visible},{}}}"#, report.join(",")))
    }

    fn resume(_session_id: String) -> Result<String, String> {
        Err("nothing to resume".into())
    }
}

export!(NamespaceEscape);
