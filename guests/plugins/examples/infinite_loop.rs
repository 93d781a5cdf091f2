//! Hostile: never returns. The host's deadline (epoch interruption) must
//! stop it and mark the session it started as failed.

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

use agent::session::sessions;
use agent::session::types::StartOptions;

struct InfiniteLoop;

impl Guest for InfiniteLoop {
    fn run(task: String, _config: String) -> Result<String, String> {
        let started = sessions::start(&StartOptions {
            key: None,
            task,
            mode: None,
            user_id: None,
            channel_id: None,
            max_iterations: None,
            context: None,
        });
        let mut n: u64 = started.is_ok() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn resume(_session_id: String) -> Result<String, String> {
        Err("nothing to resume".into())
    }
}

export!(InfiniteLoop);
