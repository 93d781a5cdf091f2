//! Hostile: records events as fast as it can, forever. The host's call
//! budget must cut it off with `limit-exceeded` (and its deadline stop it
//! if it ignores that).

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

use agent::session::sessions;
use agent::session::types::{SessionError, SessionRef, StartOptions};

struct EventFlood;

impl Guest for EventFlood {
    fn run(task: String, _config: String) -> Result<String, String> {
        let s = sessions::start(&StartOptions {
            key: None,
            task,
            mode: None,
            user_id: None,
            channel_id: None,
            max_iterations: None,
            context: None,
        })
        .map_err(|e| format!("{e:?}"))?;
        let mut recorded = 0u64;
        loop {
            match sessions::record_event(&SessionRef::Id(s.id.clone()), "flood", r#"{"x":1}"#) {
                Ok(_) => recorded += 1,
                Err(SessionError::LimitExceeded(m)) => {
                    return Err(format!("stopped after {recorded} events: {m}"));
                }
                Err(_) => {}
            }
        }
    }

    fn resume(_session_id: String) -> Result<String, String> {
        Err("nothing to resume".into())
    }
}

export!(EventFlood);
