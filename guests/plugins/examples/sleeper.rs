//! Hostile: waits in the host (a WASI sleep) where a deadline cannot reach
//! it. The runtime must refuse to block rather than hang.

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

struct Sleeper;

impl Guest for Sleeper {
    fn run(_task: String, _config: String) -> Result<String, String> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok("woke up".into())
    }

    fn resume(_session_id: String) -> Result<String, String> {
        Err("nothing to resume".into())
    }
}

export!(Sleeper);
