//! Each socket's session: kept in the socket's attachment (which survives
//! hibernation) and, while the object is in memory, in a map beside it, so
//! a frame does not pay the attachment's deserialisation and JSON parse
//! (7 % of a set's CPU with ten listeners, in a profile).
//!
//! Each socket gets a slot in a map, and the slot's number is written on
//! the JavaScript socket object as a property: a frame reads that number
//! and checks the slot holds this very socket (`===`), so two sockets can
//! never share a session. A socket the map does not know (after
//! hibernation or a re-created object, whose memory is new) is read from
//! its attachment once. Every session write goes through here, so the two
//! copies never differ.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::ext::WebSocketExt;
use worker::{Result, WebSocket};

use super::engine::Session;

#[wasm_bindgen]
extern "C" {
    /// The runtime's WebSocket with the property that names its map slot.
    type TaggedSocket;
    #[wasm_bindgen(method, getter, js_name = __mindcacheSlot)]
    fn slot(this: &TaggedSocket) -> Option<u32>;
    #[wasm_bindgen(method, setter, js_name = __mindcacheSlot)]
    fn set_slot(this: &TaggedSocket, slot: u32);
}

#[derive(Default)]
pub struct SocketSessions {
    /// Slot → the socket and its session. The socket is kept to check a
    /// slot against: a socket object that outlived an earlier copy of this
    /// object (re-created after a panic) may carry a slot number this map
    /// gave to another socket since.
    known: RefCell<HashMap<u32, (WebSocket, Session)>>,
    next_slot: Cell<u32>,
}

impl SocketSessions {
    /// The socket's session; `None` for a socket that has none (yet).
    pub fn read(&self, ws: &WebSocket) -> Result<Option<Session>> {
        if let Some(slot) = self.slot_of(ws) {
            if let Some((_, session)) = self.known.borrow().get(&slot) {
                return Ok(Some(session.clone()));
            }
        }
        let session = read_attachment(ws)?;
        if let Some(s) = &session {
            self.remember(ws, s);
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
        self.remember(ws, session);
        Ok(())
    }

    /// The socket is gone.
    pub fn forget(&self, ws: &WebSocket) {
        if let Some(slot) = self.slot_of(ws) {
            self.known.borrow_mut().remove(&slot);
        }
    }

    /// The socket's slot in `known`, if it has one there.
    fn slot_of(&self, ws: &WebSocket) -> Option<u32> {
        let slot = tagged(ws).slot()?;
        let known = self.known.borrow();
        let (held, _) = known.get(&slot)?;
        same_socket(held, ws).then_some(slot)
    }

    fn remember(&self, ws: &WebSocket, session: &Session) {
        let slot = self.slot_of(ws).unwrap_or_else(|| {
            let slot = self.next_slot.get();
            self.next_slot.set(slot.wrapping_add(1));
            tagged(ws).set_slot(slot);
            slot
        });
        self.known
            .borrow_mut()
            .insert(slot, (ws.clone(), session.clone()));
    }
}

fn tagged(ws: &WebSocket) -> &TaggedSocket {
    let raw: &worker::web_sys::WebSocket = ws.as_ref();
    raw.unchecked_ref()
}

/// The same JavaScript object (`===`).
fn same_socket(a: &WebSocket, b: &WebSocket) -> bool {
    let a: &JsValue = AsRef::<worker::web_sys::WebSocket>::as_ref(a).as_ref();
    let b: &JsValue = AsRef::<worker::web_sys::WebSocket>::as_ref(b).as_ref();
    a == b
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
