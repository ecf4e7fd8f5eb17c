//! MindCache 3 sockets on the object (yjs.md): binary frames, the Step1 of
//! the connect sequence, and sending the document's updates. The document
//! and its storage are `ybridge.rs`; the pure parts are `yjs/`.

use serde_json::value::RawValue;
use wasm_bindgen::JsValue;
use worker::js_sys;
use worker::WebSocket;

use super::super::store::KeyStore;

use super::super::engine::DumpItem;
use super::super::error::{ErrorCode, ProtocolError};
use super::super::limits::{check_frame_size, validate_key};
use super::super::protocol::{encode_cleared, encode_error, encode_key_deleted};
use super::super::size::sync_too_large;
use super::super::yjs::attrs::from_v3;
use super::super::yjs::doc::{KeyChange, Unusable};
use super::super::yjs::wire::{self, SyncMessage, STEP1, STEP2, UPDATE};
use super::{now_ms, send, send_js, Instance};
use crate::instance::engine::{session_over, Outcome, Session, SocketKind};
use crate::permission::Permission;

/// The Step1 of an instance that has no document yet: an empty state
/// vector (building one just to say "empty" would cost every instance).
const EMPTY_STEP1: [u8; 3] = [0, 1, 0];

impl Instance {
    /// The binary Step1 that ends the connect sequence.
    pub(super) fn send_step1(&self, ws: &WebSocket) {
        if !self.store.has_doc() {
            let _ = ws.send_with_bytes(EMPTY_STEP1);
            return;
        }
        match self.store.with_doc(|d| d.state_vector()) {
            Ok(sv) => {
                let _ = ws.send_with_bytes(wire::encode(STEP1, &sv));
            }
            Err(e) => crate::log_error!("y document: {}", e.0),
        }
    }

    /// A binary frame: one y-protocols sync message.
    pub(super) fn on_binary(&self, ws: &WebSocket, message: &JsValue) {
        let Ok(Some(session)) = self.attachments.read(ws) else {
            return;
        };
        let session = self.classify(ws, session, SocketKind::Y);
        {
            let mut sessions = self.sessions.borrow_mut();
            sessions.received(session.connection, session.authenticated);
        }
        // The same end as a text frame gets: auth deadline, expired delegate.
        if let Some(Outcome::Close {
            frame,
            code,
            reason,
        }) = session_over(&session, now_ms())
        {
            self.count_sent(&session, 1);
            send(ws, &frame);
            let _ = ws.close(Some(code), Some(reason));
            return;
        }
        let bytes = js_sys::Uint8Array::new(message).to_vec();
        if let Err(e) = self.handle_binary(ws, &session, &bytes) {
            self.count_sent(&session, 1);
            send(ws, &encode_error(&e));
        }
    }

    fn handle_binary(
        &self,
        ws: &WebSocket,
        session: &Session,
        bytes: &[u8],
    ) -> Result<(), ProtocolError> {
        check_frame_size(bytes.len())?;
        let message = wire::decode(bytes).map_err(|e| {
            ProtocolError::new(
                ErrorCode::ParseError,
                format!(
                    "a binary frame must be one y-protocols sync message: {}",
                    e.0
                ),
            )
        })?;
        if !session.authenticated {
            return Err(ProtocolError::new(
                ErrorCode::NotAuthenticated,
                "authenticate before sending sync messages",
            ));
        }
        if self.deleted.get() || !self.ensure_ready() {
            return Err(ProtocolError::internal("instance storage unavailable"));
        }
        if !self.store.has_doc() {
            // The document is built from every key at once: an instance too
            // large for one `sync` is too large for that too.
            if let Ok(total) = self.with_engine(|e| e.total_bytes()) {
                if total > self.max_sync_bytes {
                    return Err(sync_too_large(total));
                }
            }
        }
        self.store.enable().map_err(storage)?;
        match message {
            SyncMessage::Step1(sv) => {
                let diff = self
                    .store
                    .with_doc(|d| d.diff(&sv))
                    .map_err(storage)?
                    .map_err(|e| ProtocolError::new(ErrorCode::ParseError, e))?;
                self.count_sent(session, 1);
                let _ = ws.send_with_bytes(wire::encode(STEP2, &diff));
                Ok(())
            }
            SyncMessage::Step2(update) | SyncMessage::Update(update) => {
                self.apply_client_update(session, &update)
            }
        }
    }

    /// Tries, checks, applies, stores and sends a client's update; refused
    /// whole when any change in it breaks a rule.
    fn apply_client_update(&self, session: &Session, update: &[u8]) -> Result<(), ProtocolError> {
        if !session.permission.allows(Permission::Write) {
            return Err(ProtocolError::new(
                ErrorCode::NoPermission,
                "this socket may only read: its update was refused",
            ));
        }
        if self.meta.borrow().read_only {
            return Err(ProtocolError::new(
                ErrorCode::ReadOnly,
                "this instance is read-only: the update was refused",
            ));
        }
        let changes = self
            .store
            .try_update(update)
            .map_err(storage)?
            .map_err(|e| match e {
                Unusable::NotAnUpdate(m) => ProtocolError::new(ErrorCode::ParseError, m),
                Unusable::OutsideTheRoot(m) => ProtocolError::invalid(m),
            })?;
        if changes.is_empty() && update.len() <= 2 {
            return Ok(());
        }
        let (sets, deletes) = match self.rows_of(&changes) {
            Ok(rows) => rows,
            Err(e) => {
                self.store.refuse();
                return Err(e);
            }
        };
        if let Err(e) = self.with_engine(|engine| engine.check_items(&sets)) {
            self.store.refuse();
            return Err(e);
        }
        let actor = session.user_id.as_str();
        let now = now_ms();
        let mut broadcasts = Vec::new();
        let mut removed = Vec::new();
        self.store.apply_client_update(update, |store_update| {
            self.with_engine(|engine| {
                engine.atomically(|| {
                    broadcasts.clear();
                    removed.clear();
                    engine.write_items(actor, &sets, now, &mut broadcasts)?;
                    for key in &deletes {
                        if engine.remove(key)? {
                            removed.push(encode_key_deleted(key, actor, now));
                        }
                    }
                    store_update().map_err(storage)
                })
            })
        })?;
        // Several keys removed, none left: 2.0 clients hear `cleared`.
        if removed.len() >= 2 && self.store.count().unwrap_or(1) == 0 {
            broadcasts.push(encode_cleared(actor, now));
        } else {
            broadcasts.append(&mut removed);
        }
        for text in &broadcasts {
            self.publish(text);
        }
        self.send_update(&wire::encode(UPDATE, update), Some(session.connection));
        Ok(())
    }

    /// The rows a client's changes write: sets with 2.0 attributes, and
    /// the keys to delete.
    fn rows_of(
        &self,
        changes: &[KeyChange],
    ) -> Result<(Vec<DumpItem>, Vec<String>), ProtocolError> {
        let mut sets = Vec::new();
        let mut deletes = Vec::new();
        for change in changes {
            match change {
                KeyChange::Set {
                    key,
                    value,
                    attributes,
                } => {
                    validate_key(key)?;
                    let stored = self.with_engine(|e| e.get(key))?;
                    let attributes = from_v3(
                        &attributes.clone().unwrap_or_default(),
                        stored.as_ref().map(|s| &s.attributes),
                    )
                    .map_err(|e| {
                        ProtocolError::new(e.code, format!("key {key:?}: {}", e.message))
                    })?;
                    let raw = RawValue::from_string(value.to_string())
                        .map_err(|e| ProtocolError::invalid(format!("key {key:?}: {e}")))?;
                    sets.push((key.clone(), raw, Some(attributes)));
                }
                KeyChange::Deleted(key) => deletes.push(key.clone()),
                KeyChange::Malformed(key) => {
                    return Err(ProtocolError::invalid(format!(
                        "mindcache.{key:?} must be a Y.Map with \"value\" and \"attributes\""
                    )))
                }
            }
        }
        Ok((sets, deletes))
    }

    /// Publishes a change on an instance with a Y document, reading each
    /// socket's attachment once: the JSON broadcast to JSON and
    /// unclassified sockets, the Y updates of the 2.0-side writes to Y and
    /// unclassified ones.
    pub(super) fn publish_both(&self, json: &JsValue) {
        let updates: Vec<js_sys::Uint8Array> = self
            .store
            .take_outgoing()
            .iter()
            .map(|u| js_sys::Uint8Array::from(wire::encode(UPDATE, u).as_slice()))
            .collect();
        self.each_socket(|ws, _| {
            let Ok(Some(s)) = self.attachments.read(ws) else {
                return;
            };
            if !s.authenticated {
                return;
            }
            if s.kind.wants_json() {
                send_js(ws, json);
            }
            if s.kind.wants_updates() {
                let raw: &worker::web_sys::WebSocket = ws.as_ref();
                for update in &updates {
                    let _ = raw.send_with_array_buffer_view(update);
                }
            }
        });
    }

    /// Sends a binary Update to every authenticated Y or unclassified
    /// socket but `except` (JSON sockets get the change as JSON instead).
    fn send_update(&self, frame: &[u8], except: Option<u32>) {
        let array = js_sys::Uint8Array::from(frame);
        self.each_socket(|ws, _| {
            let Ok(Some(s)) = self.attachments.read(ws) else {
                return;
            };
            if !s.authenticated || !s.kind.wants_updates() || Some(s.connection) == except {
                return;
            }
            let raw: &worker::web_sys::WebSocket = ws.as_ref();
            let _ = raw.send_with_array_buffer_view(&array);
        });
    }
}

fn storage(e: super::super::store::StoreError) -> ProtocolError {
    crate::log_error!("y document storage: {}", e.0);
    ProtocolError::internal("the instance's document could not be stored")
}
