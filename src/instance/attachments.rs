//! Each socket's session: kept in the socket's attachment (which survives
//! hibernation) and, while the object is in memory, in a map beside it, so
//! a frame does not pay the attachment's deserialisation and JSON parse
//! (7 % of a set's CPU with ten listeners, in a profile).
//!
//! The map is keyed by the session's connection id, which is also written
//! on the JavaScript socket object as a property: a frame reads that one
//! number to find its session. A socket the map does not know (after
//! hibernation or a re-created object, whose memory is new) is read from
//! its attachment once. Every session write goes through here, so the two
//! copies never differ.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::ext::WebSocketExt;
use worker::{Result, WebSocket};

use super::engine::Session;

#[wasm_bindgen]
extern "C" {
    /// The runtime's WebSocket with the property that names its session.
    type TaggedSocket;
    #[wasm_bindgen(method, getter, js_name = __mindcacheConnection)]
    fn connection(this: &TaggedSocket) -> Option<u32>;
    #[wasm_bindgen(method, setter, js_name = __mindcacheConnection)]
    fn set_connection(this: &TaggedSocket, id: u32);
}

#[derive(Default)]
pub struct SocketSessions {
    known: RefCell<HashMap<u32, Session>>,
}

impl SocketSessions {
    /// The socket's session; `None` for a socket that has none (yet).
    pub fn read(&self, ws: &WebSocket) -> Result<Option<Session>> {
        let js = tagged(ws);
        if let Some(id) = js.connection() {
            if let Some(session) = self.known.borrow().get(&id) {
                return Ok(Some(session.clone()));
            }
        }
        let session = read_attachment(ws)?;
        if let Some(s) = &session {
            js.set_connection(s.connection);
            self.known.borrow_mut().insert(s.connection, s.clone());
        }
        Ok(session)
    }

    /// Stores the socket's session, in its attachment and here.
    pub fn write(&self, ws: &WebSocket, session: &Session) -> Result<()> {
        let text = serde_json::to_string(session)
            .map_err(|e| worker::Error::RustError(format!("socket attachment: {e}")))?;
        let raw: &worker::web_sys::WebSocket = ws.as_ref();
        raw.serialize_attachment(JsValue::from_str(&text))
            .map_err(worker::Error::from)?;
        tagged(ws).set_connection(session.connection);
        self.known
            .borrow_mut()
            .insert(session.connection, session.clone());
        Ok(())
    }

    /// The socket is gone.
    pub fn forget(&self, connection: u32) {
        self.known.borrow_mut().remove(&connection);
    }
}

fn tagged(ws: &WebSocket) -> &TaggedSocket {
    let raw: &worker::web_sys::WebSocket = ws.as_ref();
    raw.unchecked_ref()
}

/// The session as the attachment holds it: compact JSON text (one string
/// crosses into wasm), or, written by an earlier version before
/// hibernation, a JS object.
fn read_attachment(ws: &WebSocket) -> Result<Option<Session>> {
    let raw: &worker::web_sys::WebSocket = ws.as_ref();
    let value = raw.deserialize_attachment().map_err(worker::Error::from)?;
    match value.as_string() {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| worker::Error::RustError(format!("socket attachment: {e}"))),
        None if value.is_null() || value.is_undefined() => Ok(None),
        None => ws.deserialize_attachment::<Session>(),
    }
}
