//! Surviving a panic (docs/faults.md). The build leaves out worker-build's
//! panic-recovery shim, whose per-call Proxy cost 15–25 % CPU per message;
//! instead a panic hook marks the module poisoned, and the entry module
//! (`src/entry.js`) re-instantiates it at the next entry and re-creates each
//! Durable Object from its storage. Nothing here runs on the hot path.
//!
//! With the `fault-injection` feature (test builds only: scripts/build.sh
//! with `MINDCACHE_FAULTS=1`) a request or a frame can panic on purpose.

/// The global object the entry module reads before every call.
#[cfg(target_arch = "wasm32")]
const FAULTS_GLOBAL: &str = "__mindcacheFaults";

/// Runs once per module instance, so again after a re-instantiation.
#[cfg(target_arch = "wasm32")]
#[worker::event(start)]
fn start() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // First, so that a failing log line cannot leave the module unmarked.
        mark_poisoned();
        crate::log_error!("panic: {info}; the module is re-instantiated before its next call");
        previous(info);
    }));
}

/// Tells the entry module that this instance's memory can no longer be trusted.
#[cfg(target_arch = "wasm32")]
fn mark_poisoned() {
    use worker::js_sys::{global, Object, Reflect};
    use worker::wasm_bindgen::JsValue;
    let key = JsValue::from_str(FAULTS_GLOBAL);
    let faults = match Reflect::get(&global(), &key) {
        Ok(v) if v.is_object() => v,
        _ => {
            let fresh: JsValue = Object::new().into();
            let _ = Reflect::set(&global(), &key, &fresh);
            fresh
        }
    };
    let _ = Reflect::set(&faults, &JsValue::from_str("poisoned"), &JsValue::TRUE);
}

/// The frame that makes the object panic (fault-injection builds only).
pub const PANIC_FRAME: &str = r#"{"type":"__panic"}"#;
/// The request header (value `panic`) that makes the Worker panic
/// (fault-injection builds only, development mode only).
pub const PANIC_HEADER: &str = "X-MindCache-Fault";

/// Whether a request asks for an injected panic: the build has the
/// feature, the server is in development mode and the header says `panic`.
pub fn wants_panic(header: Option<&str>, development: bool) -> bool {
    cfg!(feature = "fault-injection") && development && header == Some("panic")
}

/// Whether a frame asks for an injected panic inside the object.
pub fn frame_wants_panic(frame: &str) -> bool {
    cfg!(feature = "fault-injection") && frame == PANIC_FRAME
}

/// Panics on purpose (fault injection).
#[cold]
pub fn injected(place: &str) -> ! {
    panic!("injected fault in {place}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_needs_the_feature_and_development_mode() {
        let on = cfg!(feature = "fault-injection");
        assert_eq!(wants_panic(Some("panic"), true), on);
        assert!(!wants_panic(Some("panic"), false));
        assert!(!wants_panic(Some("other"), true));
        assert!(!wants_panic(None, true));
        assert_eq!(frame_wants_panic(PANIC_FRAME), on);
        assert!(!frame_wants_panic(r#"{"type":"ping"}"#));
    }
}
