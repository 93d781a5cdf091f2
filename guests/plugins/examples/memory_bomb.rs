//! Hostile: allocates until something gives. The host's memory cap must
//! stop it; the host itself must not notice.

wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-plugin",
});

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn run(_task: String, _config: String) -> Result<String, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xAB; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }

    fn resume(_session_id: String) -> Result<String, String> {
        Err("nothing to resume".into())
    }
}

export!(MemoryBomb);
