//! The component binary itself: its contract and its sandbox.

use agent_session_host::SESSION_COMPONENT;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

#[test]
fn exports_the_session_api_and_imports_only_store_notify_and_wasi() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::new(&engine, SESSION_COMPONENT).unwrap();
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
    assert_eq!(
        exports,
        [
            "agent:session/sessions@0.4.0",
            "agent:session/conversations@0.4.0",
            "agent:session/checkpoints@0.4.0"
        ]
    );
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
    for needed in ["agent:session/store@0.4.0", "agent:session/notify@0.4.0"] {
        assert!(
            imports.iter().any(|i| i == needed),
            "{needed} in {imports:?}"
        );
    }
    // Anything else must be WASI (std pulls some in) or the type-only
    // interface; no network interface is imported.
    for i in &imports {
        assert!(
            i.starts_with("wasi:") || i.starts_with("agent:session/"),
            "unexpected import {i}"
        );
        assert!(
            !i.starts_with("wasi:sockets"),
            "the component must not import sockets: {i}"
        );
    }
}
