//! The instance's state machine (protocol.md §3–§7): given the store, the
//! socket's session and a message, apply it and say what to send to whom.
//! Nothing here touches the platform, so all of it is tested natively.

use super::attributes::Attributes;
use super::error::{ErrorCode, MessageId, ProtocolError};
use super::json::{json_equal, RawObject};
use super::limits::{check_value_size, validate_key, AUTH_TIMEOUT_MS, MAX_KEYS};
use super::protocol::{
    encode_ack, encode_auth_error, encode_auth_success, encode_cleared, encode_error,
    encode_key_deleted, encode_key_updated, encode_pong, encode_sync_with_data, parse_client_frame,
    AuthErrorCode, ClientFrame, ClientMessage,
};
use super::size::{self, InstanceSize, MAX_INSTANCE_BYTES};
use super::store::{Entry, InstanceMeta, KeyRow, KeyStore, PageRange, StoreError};
use crate::permission::{AccessBasis, Permission};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Per-socket state, stored as the WebSocket attachment so it survives
/// hibernation. Small by design: the attachment cap is 2 KiB on older runtimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Layout version, so a later change can read attachments written by this one.
    #[serde(rename = "v")]
    pub version: u8,
    /// Empty until authenticated.
    #[serde(rename = "userId", default)]
    pub user_id: String,
    pub permission: Permission,
    pub authenticated: bool,
    /// Server ms after which an unauthenticated socket is timed out; 0 once authenticated.
    #[serde(rename = "authDeadline", default)]
    pub auth_deadline_ms: i64,
    /// The connection was made in development mode: an in-band `auth`
    /// is then accepted as `dev-user` whatever its key (auth.md).
    #[serde(rename = "dev", default)]
    pub development: bool,
    /// Identifies the socket within its object (for per-socket queues).
    #[serde(rename = "conn", default)]
    pub connection: u32,
    /// The API key or delegate secret the access rests on (protocol.md §8).
    #[serde(rename = "b", default, skip_serializing_if = "AccessBasis::is_user")]
    pub basis: AccessBasis,
    /// Server ms when the socket was accepted (for the session's log line).
    #[serde(rename = "t0", default, skip_serializing_if = "is_zero")]
    pub opened_ms: i64,
    /// What its first frame made it (yjs.md).
    #[serde(rename = "k", default, skip_serializing_if = "SocketKind::is_unknown")]
    pub kind: SocketKind,
}

/// A socket's kind, set by its first frame (yjs.md): binary → a MindCache 3
/// (Y) socket, text → a JSON socket. Once the instance has a Y document, Y
/// sockets get only binary updates and JSON sockets only JSON broadcasts;
/// a socket that has sent nothing yet gets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SocketKind {
    #[default]
    #[serde(rename = "u")]
    Unknown,
    #[serde(rename = "j")]
    Json,
    #[serde(rename = "y")]
    Y,
}

impl SocketKind {
    pub fn is_unknown(&self) -> bool {
        *self == SocketKind::Unknown
    }

    /// Whether a socket of this kind gets JSON broadcasts.
    pub fn wants_json(self) -> bool {
        self != SocketKind::Y
    }

    /// Whether a socket of this kind gets binary Y updates.
    pub fn wants_updates(self) -> bool {
        self != SocketKind::Json
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Session {
    pub const VERSION: u8 = 1;

    /// A socket the Worker already authenticated (token, header, development).
    pub fn authenticated(user_id: impl Into<String>, permission: Permission) -> Session {
        Session {
            version: Self::VERSION,
            user_id: user_id.into(),
            permission,
            authenticated: true,
            auth_deadline_ms: 0,
            development: false,
            connection: 0,
            basis: AccessBasis::default(),
            opened_ms: 0,
            kind: SocketKind::Unknown,
        }
    }

    /// A socket that must send `auth` within `AUTH_TIMEOUT_MS` of `now_ms`.
    pub fn pending(now_ms: i64) -> Session {
        Session {
            version: Self::VERSION,
            user_id: String::new(),
            permission: Permission::Read,
            authenticated: false,
            auth_deadline_ms: now_ms.saturating_add(AUTH_TIMEOUT_MS),
            development: false,
            connection: 0,
            basis: AccessBasis::default(),
            opened_ms: 0,
            kind: SocketKind::Unknown,
        }
    }

    pub fn auth_expired(&self, now_ms: i64) -> bool {
        !self.authenticated && now_ms >= self.auth_deadline_ms
    }
}

/// One frame to send, in order: to the sender only, or to every socket of the
/// instance (the sender included) that is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Reply(String),
    Broadcast(String),
}

/// What the caller should do with a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these frames, in this order.
    Send(Vec<Outbound>),
    /// An `auth` message: verify `api_key` (asynchronously, against D1), then
    /// call `Engine::auth_succeeded` or send `encode_auth_error` and close 1008.
    /// Later messages of this socket must wait until this is settled.
    VerifyAuth {
        api_key: String,
        id: Option<MessageId>,
    },
    /// Send `frame` to the sender, then close its socket with `code`.
    Close {
        frame: String,
        code: u16,
        reason: &'static str,
    },
}

/// WebSocket close code for a policy violation (RFC 6455).
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// The operations of one instance over its store. Cheap to build per message.
pub struct Engine<'a, S: KeyStore + ?Sized> {
    pub(super) store: &'a S,
    pub(super) meta: &'a InstanceMeta,
    pub(super) max_keys: u64,
    /// The instance's running total (size.rs); without one, it is counted
    /// from the store whenever a write needs it.
    pub(super) size: Option<&'a InstanceSize>,
    pub(super) max_bytes: u64,
    /// Where a listing page stops (data_ops.rs; tests use a small one).
    pub(super) page_budget: usize,
    /// The instance has a Y document: a 2.0 set keeps the key's 3.x
    /// attribute fields it leaves out (yjs/attrs.rs).
    pub(super) keep_v3_fields: bool,
}

/// What a set that changed something wrote, and its broadcast.
pub(super) struct Written {
    pub attributes: Attributes,
    pub updated_at: i64,
    pub broadcast: String,
}

impl<'a, S: KeyStore + ?Sized> Engine<'a, S> {
    pub fn new(store: &'a S, meta: &'a InstanceMeta) -> Self {
        Engine {
            store,
            meta,
            max_keys: MAX_KEYS,
            size: None,
            max_bytes: MAX_INSTANCE_BYTES,
            page_budget: super::data_ops::PAGE_BUDGET_BYTES,
            keep_v3_fields: false,
        }
    }

    /// See `keep_v3_fields`.
    pub fn with_v3_fields(mut self, keep: bool) -> Self {
        self.keep_v3_fields = keep;
        self
    }

    /// Keeps the instance's total in `size` (the object holds one per lifetime).
    pub fn with_size(mut self, size: &'a InstanceSize) -> Self {
        self.size = Some(size);
        self
    }

    /// Overrides the bytes-per-instance limit (tests use a small one).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Overrides where a listing page stops (tests page small instances).
    pub fn with_page_budget(mut self, budget: usize) -> Self {
        self.page_budget = budget;
        self
    }

    /// The instance's total size (size.rs): kept, counted by the object's
    /// counter, or summed page by page (never all keys in memory at once).
    pub fn total_bytes(&self) -> Result<u64, ProtocolError> {
        if let Some(counted) = self.size.and_then(InstanceSize::get_or_count) {
            return counted.map_err(internal);
        }
        let below = super::data_ops::above_all_keys();
        let mut after = String::new();
        let mut total = 0u64;
        loop {
            let range = PageRange {
                from: "",
                after: &after,
                below: &below,
                tag: None,
                limit: super::data_ops::MAX_PAGE_KEYS,
                // Small pages: counting holds one page in memory at a time.
                budget: 1024 * 1024,
            };
            let (rows, more) = self.store.page(&range).map_err(internal)?;
            total += rows.iter().map(|(_, f)| f.len() as u64).sum::<u64>();
            match rows.last() {
                Some((last, _)) if more => after = last.clone(),
                _ => break,
            }
        }
        if let Some(s) = self.size {
            s.set(total);
        }
        Ok(total)
    }

    /// The total after replacing `old` bytes by `new`; refused when it
    /// grows past the cap (a shrinking write is always allowed, so an
    /// instance over the cap can still be trimmed).
    fn grown(&self, old: u64, new: u64) -> Result<u64, ProtocolError> {
        let total = self.total_bytes()?;
        let after = total.saturating_sub(old).saturating_add(new);
        if new > old && after > self.max_bytes {
            return Err(size::too_large(total, after, self.max_bytes));
        }
        Ok(after)
    }

    /// Deletes a key, keeping the total: the entry is read first only when
    /// the total is being kept (otherwise it is counted when next needed).
    pub(super) fn remove(&self, key: &str) -> Result<bool, ProtocolError> {
        let kept = self.size.and_then(InstanceSize::known);
        let old = match kept {
            Some(_) => self.store.get(key).map_err(internal)?,
            None => None,
        };
        let existed = self.store.delete(key).map_err(internal)?;
        if let (Some(s), Some(total)) = (self.size, kept) {
            s.set(total.saturating_sub(old.as_ref().map_or(0, size::entry_len)));
        }
        Ok(existed)
    }

    /// Empties the store; the total is then zero.
    pub(super) fn clear_store(&self) -> Result<(), ProtocolError> {
        self.store.clear().map_err(internal)?;
        if let Some(s) = self.size {
            s.set(0);
        }
        Ok(())
    }

    /// Overrides the keys-per-instance limit (tests use a small one).
    pub fn with_max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    // --- WebSocket path -----------------------------------------------------

    /// Handles one text frame from a socket.
    pub fn handle_frame(&self, session: &Session, frame: &str, now_ms: i64) -> Outcome {
        if let Some(close) = session_over(session, now_ms) {
            return close;
        }
        match parse_client_frame(frame) {
            Ok(parsed) => self.handle(session, parsed, now_ms),
            Err(e) => error_reply(&e),
        }
    }

    /// Handles one parsed message.
    pub fn handle(&self, session: &Session, frame: ClientFrame<'_>, now_ms: i64) -> Outcome {
        if session.auth_expired(now_ms) {
            return auth_timeout();
        }
        let ClientFrame { id, message } = frame;
        let (kind, needs) = match &message {
            ClientMessage::Auth { .. } | ClientMessage::Ping => ("", None),
            ClientMessage::Set { .. } => ("set", Some(Permission::Write)),
            ClientMessage::Delete { .. } => ("delete", Some(Permission::Write)),
            ClientMessage::Clear { .. } => ("clear", Some(Permission::Admin)),
        };
        if let Some(needed) = needs {
            if let Err(e) = authorize(session, kind, needed) {
                return error_reply(&e.with_id(id));
            }
        }
        let actor = session.user_id.as_str();
        let applied = match message {
            ClientMessage::Auth { api_key } => return Outcome::VerifyAuth { api_key, id },
            ClientMessage::Ping => {
                let mut out = vec![Outbound::Reply(encode_pong())];
                // An unauthenticated socket gets nothing but auth_*, error and pong (§2).
                if session.authenticated {
                    out.extend(ack(id.as_ref(), now_ms));
                }
                return Outcome::Send(out);
            }
            ClientMessage::Set {
                key,
                value,
                attributes,
                ..
            } => self.set_as(actor, &key, value, attributes, now_ms),
            ClientMessage::Delete { key, .. } => self.delete_as(actor, &key, now_ms),
            ClientMessage::Clear { .. } => self.clear_as(actor, now_ms),
        };
        match applied {
            Ok(broadcast) => {
                let mut out: Vec<Outbound> =
                    broadcast.into_iter().map(Outbound::Broadcast).collect();
                out.extend(ack(id.as_ref(), now_ms));
                Outcome::Send(out)
            }
            Err(e) => error_reply(&e.with_id(id)),
        }
    }

    /// After the caller verified an `auth`: the frames for the sender, in
    /// order (`auth_success`, `sync`, then `ack` when the auth had an id).
    /// The caller also stores `Session::authenticated(user_id, permission)`.
    pub fn auth_succeeded(
        &self,
        user_id: &str,
        permission: Permission,
        id: Option<&MessageId>,
        now_ms: i64,
    ) -> Result<Vec<String>, ProtocolError> {
        let mut out = vec![
            encode_auth_success(&self.meta.instance_id, user_id, permission),
            self.sync_message()?,
        ];
        out.extend(id.map(|id| encode_ack(id, now_ms)));
        Ok(out)
    }

    // --- Reads (sync, admin introspection, AI) ------------------------------

    pub fn get(&self, key: &str) -> Result<Option<Entry>, ProtocolError> {
        self.store.get(key).map_err(internal)
    }

    /// Every key, ordered by name.
    pub fn entries(&self) -> Result<Vec<Entry>, ProtocolError> {
        self.store.all().map_err(internal)
    }

    /// The full-state `sync` message.
    pub fn sync_message(&self) -> Result<String, ProtocolError> {
        Ok(encode_sync_with_data(
            &self.meta.instance_id,
            &self.data_json()?,
        ))
    }

    /// All keys as the `sync.data` map; also the dump `import` takes.
    pub fn data_json(&self) -> Result<String, ProtocolError> {
        self.store.data_json().map_err(internal)
    }

    // --- Writes (the WebSocket path and the Worker's internal interface) ---
    // `actor` is the user id, or "system"; the caller has checked permissions.
    // Each returns the broadcast to send to every socket, or `None` when the
    // write changed nothing. The store has committed before it returns.

    /// Sets a key. `attributes: None` keeps the key's current attributes (the
    /// defaults for a new key). A set equal to what is stored writes nothing.
    pub fn set_as(
        &self,
        actor: &str,
        key: &str,
        value: &RawValue,
        attributes: Option<Attributes>,
        now_ms: i64,
    ) -> Result<Option<String>, ProtocolError> {
        self.writable()?;
        check_set(key, value, attributes.as_ref())?;
        let existing = self.store.get(key).map_err(internal)?;
        let written = self.write_checked(actor, key, value, attributes, existing, now_ms)?;
        Ok(written.map(|w| w.broadcast))
    }

    /// Deletes a key; deleting a missing key is not an error and broadcasts nothing.
    pub fn delete_as(
        &self,
        actor: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<String>, ProtocolError> {
        self.writable()?;
        validate_key(key)?;
        let existed = self.remove(key)?;
        Ok(existed.then(|| encode_key_deleted(key, actor, now_ms)))
    }

    /// Removes every key. Always broadcasts `cleared`, so that every client
    /// drops its local copy even of keys it alone still holds.
    pub fn clear_as(&self, actor: &str, now_ms: i64) -> Result<Option<String>, ProtocolError> {
        self.writable()?;
        self.clear_store()?;
        Ok(Some(encode_cleared(actor, now_ms)))
    }

    /// Copies every key of another instance's dump (the `data_json` map) into
    /// this one (clone). Everything is validated before anything is written,
    /// so a refused dump changes nothing. `updatedAt` becomes `now_ms`, like
    /// any write here. Returns the `key_updated` broadcasts, in the dump's order.
    pub fn import(
        &self,
        actor: &str,
        dump: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, ProtocolError> {
        self.writable()?;
        let items = parse_dump(dump)?;
        self.merge(actor, items, now_ms)
    }

    /// Sets every item, atomically: all are checked (with the key limit)
    /// before the first is written, and a storage failure rolls all back.
    pub(super) fn merge(
        &self,
        actor: &str,
        items: Vec<DumpItem>,
        now_ms: i64,
    ) -> Result<Vec<String>, ProtocolError> {
        self.check_items(&items)?;
        let mut broadcasts = Vec::new();
        self.atomically(|| {
            broadcasts.clear();
            self.write_items(actor, &items, now_ms, &mut broadcasts)
        })?;
        Ok(broadcasts)
    }

    /// Checks every item to be set (a refusal names it) and that the new
    /// keys among them fit under the key limit.
    pub(super) fn check_items(&self, items: &[DumpItem]) -> Result<(), ProtocolError> {
        let mut new_keys = std::collections::HashSet::new();
        for (key, value, attributes) in items {
            check_set(key, value, attributes.as_ref()).map_err(|e| named("set", key, e))?;
            if self.store.get(key).map_err(internal)?.is_none() {
                new_keys.insert(key.as_str());
            }
        }
        if !new_keys.is_empty() {
            let count = self.store.count().map_err(internal)?;
            if count.saturating_add(new_keys.len() as u64) > self.max_keys {
                return Err(too_many_keys(self.max_keys));
            }
        }
        Ok(())
    }

    /// Writes checked items in order, appending their broadcasts.
    pub(super) fn write_items(
        &self,
        actor: &str,
        items: &[DumpItem],
        now_ms: i64,
        broadcasts: &mut Vec<String>,
    ) -> Result<(), ProtocolError> {
        for (key, value, attributes) in items {
            let existing = self.store.get(key).map_err(internal)?;
            let written =
                self.write_checked(actor, key, value, attributes.clone(), existing, now_ms)?;
            broadcasts.extend(written.map(|w| w.broadcast));
        }
        Ok(())
    }

    /// Runs `f` in one storage transaction; its error (or the storage's)
    /// comes back, and nothing `f` wrote stays.
    pub(super) fn atomically(
        &self,
        mut f: impl FnMut() -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let mut refused = None;
        let result = self.store.atomically(&mut || {
            f().map_err(|e| {
                let text = e.message.clone();
                refused = Some(e);
                StoreError(text)
            })
        });
        if result.is_err() {
            if let Some(s) = self.size {
                s.forget();
            }
        }
        match (result, refused) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(internal(e)),
        }
    }

    /// Empties the store without the read-only check or a broadcast: for
    /// destroying the instance, after its sockets are closed.
    pub fn wipe(&self) -> Result<(), ProtocolError> {
        self.clear_store()
    }

    pub(super) fn writable(&self) -> Result<(), ProtocolError> {
        if self.meta.read_only {
            return Err(ProtocolError::new(
                ErrorCode::ReadOnly,
                "this instance is read-only: set, delete and clear are refused",
            ));
        }
        Ok(())
    }

    /// The write half of a set, once the input is valid and the row was read.
    /// A changed key's `updatedAt` always moves forward (by 1 ms when the
    /// clock has not), so it can serve as the key's version (`ETag`).
    pub(super) fn write_checked(
        &self,
        actor: &str,
        key: &str,
        value: &RawValue,
        attributes: Option<Attributes>,
        existing: Option<Entry>,
        now_ms: i64,
    ) -> Result<Option<Written>, ProtocolError> {
        let is_new = existing.is_none();
        let old_len = existing.as_ref().map_or(0, size::entry_len);
        let at = existing
            .as_ref()
            .map_or(now_ms, |old| now_ms.max(old.updated_at.saturating_add(1)));
        let attributes = match (attributes, existing) {
            (Some(given), Some(old)) => {
                let given = if self.keep_v3_fields {
                    super::yjs::attrs::carry_v3_fields(given, &old.attributes)
                } else {
                    given
                };
                if given == old.attributes && json_equal(value.get(), old.value.get()) {
                    return Ok(None);
                }
                given
            }
            (None, Some(old)) => {
                if json_equal(value.get(), old.value.get()) {
                    return Ok(None);
                }
                old.attributes
            }
            (given, None) => {
                let count = self.store.count().map_err(internal)?;
                if count >= self.max_keys {
                    return Err(too_many_keys(self.max_keys));
                }
                given.unwrap_or_default()
            }
        };
        let total = self.grown(
            old_len,
            size::fragment_len(key, value.get(), &attributes, at),
        )?;
        let row = KeyRow {
            key,
            value: value.get(),
            attributes: &attributes,
            updated_at: at,
        };
        self.store.put(row, is_new).map_err(internal)?;
        if let Some(s) = self.size {
            s.set(total);
        }
        let broadcast = encode_key_updated(key, value, &attributes, actor, at);
        Ok(Some(Written {
            attributes,
            updated_at: at,
            broadcast,
        }))
    }
}

/// Names the operation a refusal is about (`set "a": …`).
pub(super) fn named(op: &str, key: &str, e: ProtocolError) -> ProtocolError {
    ProtocolError {
        message: format!("{op} {key:?}: {}", e.message),
        ..e
    }
}

/// The input checks of a set, shared by every path.
pub(super) fn check_set(
    key: &str,
    value: &RawValue,
    attributes: Option<&Attributes>,
) -> Result<(), ProtocolError> {
    validate_key(key)?;
    check_value_size(value.get().len())?;
    if let Some(a) = attributes {
        a.validate()?;
    }
    Ok(())
}

pub(super) type DumpItem = (String, Box<RawValue>, Option<Attributes>);

/// Parses `{ <key>: { "value": …, "attributes"?: {…}, "updatedAt"?: … } }`.
pub(super) fn parse_dump(dump: &str) -> Result<Vec<DumpItem>, ProtocolError> {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default, deserialize_with = "present")]
        value: Option<Box<RawValue>>,
        #[serde(default)]
        attributes: Option<Box<RawValue>>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
        Box::<RawValue>::deserialize(d).map(Some)
    }
    let object = RawObject::parse(dump).ok_or_else(|| {
        ProtocolError::invalid("the dump must be a JSON object of keys, as sync.data is")
    })?;
    object
        .0
        .into_iter()
        .map(|(key, raw)| {
            let bad =
                |what: &str| ProtocolError::invalid(format!("key {key:?} of the dump: {what}"));
            let item: Item = serde_json::from_str(raw.get())
                .map_err(|_| bad("each entry must be an object with \"value\""))?;
            let value = item
                .value
                .ok_or_else(|| bad("the entry has no \"value\""))?;
            let attributes = match item.attributes {
                Some(a) => Some(Attributes::from_json(a.get()).map_err(|e| ProtocolError {
                    message: format!("key {key:?} of the dump: {}", e.message),
                    ..e
                })?),
                None => None,
            };
            Ok((key, value, attributes))
        })
        .collect()
}

fn authorize(session: &Session, kind: &str, needed: Permission) -> Result<(), ProtocolError> {
    if !session.authenticated {
        return Err(ProtocolError::new(
            ErrorCode::NotAuthenticated,
            format!(
                "\"{kind}\" needs an authenticated socket: send {{\"type\":\"auth\",\"apiKey\":…}} first"
            ),
        ));
    }
    if !session.permission.allows(needed) {
        return Err(ProtocolError::new(
            ErrorCode::NoPermission,
            format!(
                "\"{kind}\" needs {} permission; this session has {}",
                needed.as_str(),
                session.permission.for_session().as_str()
            ),
        ));
    }
    Ok(())
}

pub(super) fn too_many_keys(max: u64) -> ProtocolError {
    ProtocolError::too_large(format!(
        "this instance already holds the maximum of {max} keys; delete some before adding new ones"
    ))
}

/// The storage error's text stays in the server's log (the store logs it);
/// the client learns only that nothing was applied.
pub(super) fn internal(_e: StoreError) -> ProtocolError {
    ProtocolError::internal("the change was not applied: the instance's storage failed")
}

fn ack(id: Option<&MessageId>, now_ms: i64) -> Option<Outbound> {
    id.map(|id| Outbound::Reply(encode_ack(id, now_ms)))
}

fn error_reply(e: &ProtocolError) -> Outcome {
    Outcome::Send(vec![Outbound::Reply(encode_error(e))])
}

/// Close code for a session whose access ended (protocol.md §8).
pub const CLOSE_ACCESS_REVOKED: u16 = 4003;

/// Whether a socket's session is over before its next frame, of either
/// kind: its auth deadline passed, or its delegate's access expired.
pub fn session_over(session: &Session, now_ms: i64) -> Option<Outcome> {
    if session.auth_expired(now_ms) {
        return Some(auth_timeout());
    }
    if session.authenticated && session.basis.expired(now_ms) {
        return Some(access_expired());
    }
    None
}

/// A delegate's access expired while its socket was open.
fn access_expired() -> Outcome {
    Outcome::Close {
        frame: encode_auth_error(AuthErrorCode::Expired, "the delegate's access has expired"),
        code: CLOSE_ACCESS_REVOKED,
        reason: "Access revoked",
    }
}

fn auth_timeout() -> Outcome {
    Outcome::Close {
        frame: encode_auth_error(
            AuthErrorCode::AuthTimeout,
            "no valid auth message within 10 seconds of connecting",
        ),
        code: CLOSE_POLICY_VIOLATION,
        reason: "Authentication timeout",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
    use crate::instance::sqlite_store::SqliteStore;
    use crate::instance::store::migrate;
    use serde_json::{json, Value};

    const NOW: i64 = 1_700_000_000_000;

    struct World {
        store: SqliteStore,
        meta: InstanceMeta,
        max_keys: u64,
    }

    impl World {
        fn new() -> World {
            let store = SqliteStore::in_memory();
            migrate(&store).unwrap();
            World {
                store,
                meta: InstanceMeta {
                    instance_id: "inst-1".into(),
                    read_only: false,
                    read_only_version: 0,
                },
                max_keys: MAX_KEYS,
            }
        }

        fn engine(&self) -> Engine<'_, SqliteStore> {
            Engine::new(&self.store, &self.meta).with_max_keys(self.max_keys)
        }

        fn send(&self, session: &Session, frame: &str) -> Vec<(Kind, Value)> {
            self.send_at(session, frame, NOW)
        }

        fn send_at(&self, session: &Session, frame: &str, now: i64) -> Vec<(Kind, Value)> {
            match self.engine().handle_frame(session, frame, now) {
                Outcome::Send(out) => out.into_iter().map(decode).collect(),
                other => panic!("expected frames, got {other:?}"),
            }
        }

        /// The single error reply a refused frame gets.
        fn refused(&self, session: &Session, frame: &str) -> Value {
            let out = self.send(session, frame);
            assert_eq!(out.len(), 1, "{frame}: {out:?}");
            assert_eq!(out[0].0, Kind::Reply);
            assert_eq!(out[0].1["type"], "error", "{frame}: {out:?}");
            out[0].1.clone()
        }

        fn data(&self) -> Value {
            serde_json::from_str(&self.engine().data_json().unwrap()).unwrap()
        }
    }

    #[derive(Debug, PartialEq, Clone, Copy)]
    enum Kind {
        Reply,
        Broadcast,
    }

    fn decode(o: Outbound) -> (Kind, Value) {
        match o {
            Outbound::Reply(s) => (Kind::Reply, serde_json::from_str(&s).unwrap()),
            Outbound::Broadcast(s) => (Kind::Broadcast, serde_json::from_str(&s).unwrap()),
        }
    }

    fn writer() -> Session {
        Session::authenticated("writer", Permission::Write)
    }

    fn reader() -> Session {
        Session::authenticated("reader", Permission::Read)
    }

    fn admin() -> Session {
        Session::authenticated("admin", Permission::Admin)
    }

    fn default_attrs() -> Value {
        json!({"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]})
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn set_broadcasts_then_acks_and_everyone_sees_it() {
        let w = World::new();
        let out = w.send(
            &writer(),
            r#"{"type":"set","key":"name","value":"Ada","id":"m1","timestamp":1}"#,
        );
        assert_eq!(
            out,
            [
                (
                    Kind::Broadcast,
                    json!({"type":"key_updated","key":"name","value":"Ada","attributes":default_attrs(),"updatedBy":"writer","timestamp":NOW})
                ),
                (Kind::Reply, json!({"type":"ack","id":"m1","timestamp":NOW})),
            ]
        );
        // A second session (a reader) gets it in its sync.
        let sync: Value = serde_json::from_str(&w.engine().sync_message().unwrap()).unwrap();
        assert_eq!(
            sync,
            json!({"type":"sync","instanceId":"inst-1","data":{"name":{"value":"Ada","attributes":default_attrs(),"updatedAt":NOW}}})
        );
        // The reader cannot write, and its refusal changes nothing.
        let e = w.refused(&reader(), r#"{"type":"set","key":"name","value":"Bob"}"#);
        assert_eq!(e["code"], "NO_PERMISSION");
        assert_eq!(w.data()["name"]["value"], "Ada");
    }

    #[test]
    fn without_id_there_is_no_ack() {
        let w = World::new();
        let out = w.send(&writer(), r#"{"type":"set","key":"k","value":1}"#);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Kind::Broadcast);
        let out = w.send(&writer(), r#"{"type":"ping"}"#);
        assert_eq!(out, [(Kind::Reply, json!({"type":"pong"}))]);
    }

    #[test]
    fn ping_with_id_gets_pong_then_ack() {
        let w = World::new();
        let out = w.send(&reader(), r#"{"type":"ping","id":7}"#);
        assert_eq!(
            out,
            [
                (Kind::Reply, json!({"type":"pong"})),
                (Kind::Reply, json!({"type":"ack","id":7,"timestamp":NOW})),
            ]
        );
        // Not yet authenticated: pong only.
        let out = w.send(&Session::pending(NOW), r#"{"type":"ping","id":7}"#);
        assert_eq!(out, [(Kind::Reply, json!({"type":"pong"}))]);
    }

    #[test]
    fn value_is_stored_and_echoed_as_sent() {
        let w = World::new();
        let frame = r#"{"type":"set","key":"k","value":{"b": 1.50, "a": [true, null]}}"#;
        match w.engine().handle_frame(&writer(), frame, NOW) {
            Outcome::Send(out) => match &out[0] {
                Outbound::Broadcast(s) => assert!(
                    s.contains(r#""value":{"b": 1.50, "a": [true, null]}"#),
                    "{s}"
                ),
                o => panic!("{o:?}"),
            },
            o => panic!("{o:?}"),
        }
        let e = w.engine().get("k").unwrap().unwrap();
        assert_eq!(e.value.get(), r#"{"b": 1.50, "a": [true, null]}"#);
    }

    #[test]
    fn null_is_a_value() {
        let w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"k","value":null}"#);
        assert_eq!(w.data()["k"]["value"], Value::Null);
        assert!(w.data().get("k").is_some());
    }

    #[test]
    fn permissions() {
        let w = World::new();
        for frame in [
            r#"{"type":"set","key":"k","value":1,"id":"x"}"#,
            r#"{"type":"delete","key":"k","id":"x"}"#,
            r#"{"type":"clear","id":"x"}"#,
        ] {
            let e = w.refused(&reader(), frame);
            assert_eq!(e["code"], "NO_PERMISSION", "{frame}");
            assert_eq!(e["id"], "x");
            assert!(e["error"]
                .as_str()
                .unwrap()
                .contains("this session has read"));
        }
        let e = w.refused(&writer(), r#"{"type":"clear"}"#);
        assert_eq!(e["code"], "NO_PERMISSION");
        assert!(e["error"].as_str().unwrap().contains("needs admin"));
        assert!(e.get("id").is_none());
        // Admin and owner may clear; write may set and delete.
        w.send(&writer(), r#"{"type":"set","key":"k","value":1}"#);
        let out = w.send(&writer(), r#"{"type":"delete","key":"k"}"#);
        assert_eq!(out[0].1["type"], "key_deleted");
        let out = w.send(&admin(), r#"{"type":"clear"}"#);
        assert_eq!(out[0].1["type"], "cleared");
        let owner = Session::authenticated("o", Permission::Owner);
        let out = w.send(&owner, r#"{"type":"clear"}"#);
        assert_eq!(
            out[0].1,
            json!({"type":"cleared","clearedBy":"o","timestamp":NOW})
        );
    }

    #[test]
    fn unauthenticated_sockets_may_only_ping_and_auth() {
        let w = World::new();
        let pending = Session::pending(NOW);
        for frame in [
            r#"{"type":"set","key":"k","value":1,"id":1}"#,
            r#"{"type":"delete","key":"k","id":1}"#,
            r#"{"type":"clear","id":1}"#,
        ] {
            let e = w.refused(&pending, frame);
            assert_eq!(e["code"], "NOT_AUTHENTICATED");
            assert_eq!(e["id"], 1);
        }
        assert!(w.data().as_object().unwrap().is_empty());
        match w.engine().handle_frame(
            &pending,
            r#"{"type":"auth","apiKey":"mc_live_abc","id":"a"}"#,
            NOW,
        ) {
            Outcome::VerifyAuth { api_key, id } => {
                assert_eq!(api_key, "mc_live_abc");
                assert_eq!(id.unwrap().json(), r#""a""#);
            }
            o => panic!("{o:?}"),
        }
        // Re-auth on an authenticated socket is also handed to the caller.
        assert!(matches!(
            w.engine()
                .handle_frame(&reader(), r#"{"type":"auth","apiKey":"k"}"#, NOW),
            Outcome::VerifyAuth { id: None, .. }
        ));
    }

    #[test]
    fn auth_timeout_closes_the_socket() {
        let w = World::new();
        let pending = Session::pending(NOW);
        assert!(!pending.auth_expired(NOW + AUTH_TIMEOUT_MS - 1));
        w.send_at(&pending, r#"{"type":"ping"}"#, NOW + AUTH_TIMEOUT_MS - 1);
        for frame in [r#"{"type":"auth","apiKey":"k"}"#, "garbage"] {
            match w
                .engine()
                .handle_frame(&pending, frame, NOW + AUTH_TIMEOUT_MS)
            {
                Outcome::Close {
                    frame,
                    code,
                    reason,
                } => {
                    let v: Value = serde_json::from_str(&frame).unwrap();
                    assert_eq!(v["type"], "auth_error");
                    assert_eq!(v["code"], "AUTH_TIMEOUT");
                    assert_eq!(code, 1008);
                    assert!(!reason.is_empty());
                }
                o => panic!("{o:?}"),
            }
        }
        // An authenticated socket never times out.
        assert!(!writer().auth_expired(i64::MAX));
    }

    #[test]
    fn session_over_ends_timed_out_and_expired_sessions_for_either_frame_kind() {
        // Binary (Y.js) frames go through `session_over` without a text
        // frame to parse; it alone must end the session.
        assert!(session_over(&writer(), i64::MAX).is_none());
        let pending = Session::pending(NOW);
        assert!(session_over(&pending, NOW).is_none());
        assert!(matches!(
            session_over(&pending, NOW + AUTH_TIMEOUT_MS),
            Some(Outcome::Close { code: 1008, .. })
        ));
        let mut delegate = writer();
        delegate.basis.delegate = Some("del_1".into());
        delegate.basis.expires = Some(NOW / 1000 + 60);
        assert!(session_over(&delegate, NOW).is_none());
        match session_over(&delegate, NOW + 60_000) {
            Some(Outcome::Close { frame, code, .. }) => {
                assert_eq!(code, CLOSE_ACCESS_REVOKED);
                let v: Value = serde_json::from_str(&frame).unwrap();
                assert_eq!(v["type"], "auth_error");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn auth_succeeded_sends_auth_success_sync_and_ack() {
        let w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"k","value":"v"}"#);
        let id = crate::instance::protocol::parse_client_frame(
            r#"{"type":"auth","apiKey":"x","id":"a1"}"#,
        )
        .unwrap()
        .id;
        let frames = w
            .engine()
            .auth_succeeded("u9", Permission::Owner, id.as_ref(), NOW)
            .unwrap();
        let v: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(
            v[0],
            json!({"type":"auth_success","instanceId":"inst-1","userId":"u9","permission":"admin"})
        );
        assert_eq!(v[1]["type"], "sync");
        assert_eq!(v[1]["data"]["k"]["value"], "v");
        assert_eq!(v[2], json!({"type":"ack","id":"a1","timestamp":NOW}));
        assert_eq!(
            w.engine()
                .auth_succeeded("u9", Permission::Read, None, NOW)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn every_error_code_reachable_from_a_frame() {
        let mut w = World::new();
        let cases: &[(&Session, &str, &str)] = &[
            (&writer(), "{not json", "PARSE_ERROR"),
            (&writer(), r#"{"type":"set","key":"k"}"#, "INVALID_MESSAGE"),
            (&writer(), r#"{"type":"sett"}"#, "UNKNOWN_TYPE"),
            (
                &Session::pending(NOW),
                r#"{"type":"clear"}"#,
                "NOT_AUTHENTICATED",
            ),
            (
                &reader(),
                r#"{"type":"set","key":"k","value":1}"#,
                "NO_PERMISSION",
            ),
            (
                &writer(),
                r#"{"type":"set","key":"$time","value":1}"#,
                "INVALID_KEY",
            ),
            (
                &writer(),
                r#"{"type":"set","key":"","value":1}"#,
                "INVALID_KEY",
            ),
            (
                &writer(),
                r#"{"type":"set","key":"a\u0007","value":1}"#,
                "INVALID_KEY",
            ),
        ];
        for (session, frame, code) in cases {
            assert_eq!(w.refused(session, frame)["code"], *code, "{frame}");
        }
        let big = format!(
            r#"{{"type":"set","key":"k","value":"{}"}}"#,
            "x".repeat(MAX_VALUE_BYTES)
        );
        assert_eq!(w.refused(&writer(), &big)["code"], "TOO_LARGE");
        w.meta.read_only = true;
        assert_eq!(
            w.refused(&writer(), r#"{"type":"set","key":"k","value":1}"#)["code"],
            "READ_ONLY"
        );
        w.meta.read_only = false;
        w.store.fail_writes.set(true);
        let e = w.refused(&writer(), r#"{"type":"set","key":"k","value":1,"id":"i"}"#);
        assert_eq!(e["code"], "INTERNAL");
        assert_eq!(e["id"], "i");
        // The storage's own text stays in the log, out of the frame.
        let text = e["error"].as_str().unwrap();
        assert!(!text.contains("injected"), "{text}");
        assert_eq!(
            text,
            "the change was not applied: the instance's storage failed"
        );
        w.store.fail_writes.set(false);
        assert!(
            w.data().as_object().unwrap().is_empty(),
            "refused messages change nothing"
        );
    }

    #[test]
    fn errors_echo_the_id_as_sent() {
        let w = World::new();
        let e = w.refused(
            &writer(),
            r#"{"type":"set","key":"$date","value":1,"id":12.50}"#,
        );
        assert_eq!(e["code"], "INVALID_KEY");
        match w.engine().handle_frame(
            &writer(),
            r#"{"type":"set","key":"$date","value":1,"id":12.50}"#,
            NOW,
        ) {
            Outcome::Send(out) => match &out[0] {
                Outbound::Reply(s) => assert!(s.ends_with(r#","id":12.50}"#), "{s}"),
                o => panic!("{o:?}"),
            },
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn key_and_value_boundaries() {
        let w = World::new();
        let key = "k".repeat(MAX_KEY_BYTES);
        let out = w.send(
            &writer(),
            &format!(r#"{{"type":"set","key":"{key}","value":1}}"#),
        );
        assert_eq!(out[0].1["type"], "key_updated");
        let e = w.refused(
            &writer(),
            &format!(r#"{{"type":"set","key":"{key}k","value":1}}"#),
        );
        assert_eq!(e["code"], "INVALID_KEY");
        // A string value of exactly the limit, counted with its quotes.
        let s = "v".repeat(MAX_VALUE_BYTES - 2);
        let out = w.send(
            &writer(),
            &format!(r#"{{"type":"set","key":"big","value":"{s}"}}"#),
        );
        assert_eq!(out[0].1["type"], "key_updated");
        let e = w.refused(
            &writer(),
            &format!(r#"{{"type":"set","key":"big","value":"{s}v"}}"#),
        );
        assert_eq!(e["code"], "TOO_LARGE");
        assert_eq!(
            w.engine().get("big").unwrap().unwrap().value.get().len(),
            MAX_VALUE_BYTES
        );
    }

    #[test]
    fn reserved_keys_cannot_be_set_or_deleted() {
        let w = World::new();
        for frame in [
            r#"{"type":"set","key":"$date","value":"x","id":"r"}"#,
            r#"{"type":"delete","key":"$time","id":"r"}"#,
        ] {
            let e = w.refused(&writer(), frame);
            assert_eq!(e["code"], "INVALID_KEY");
            assert_eq!(e["id"], "r");
            assert!(e["error"].as_str().unwrap().contains("reserved"));
        }
        // Case-sensitive: "$Date" is an ordinary key.
        assert_eq!(
            w.send(&writer(), r#"{"type":"set","key":"$Date","value":1}"#)
                .len(),
            1
        );
    }

    #[test]
    fn set_equal_to_stored_is_a_no_op_but_still_acks() {
        let w = World::new();
        w.send(
            &writer(),
            r#"{"type":"set","key":"k","value":{"a":1,"b":[1,2]},"attributes":{"tags":["t"]}}"#,
        );
        let before = w.engine().get("k").unwrap().unwrap();
        for frame in [
            // Identical.
            r#"{"type":"set","key":"k","value":{"a":1,"b":[1,2]},"attributes":{"tags":["t"]},"id":"n"}"#,
            // Same value, other spacing and member order; defaults spelled out.
            r#"{"type":"set","key":"k","value":{ "b":[1, 2], "a":1 },"attributes":{"tags":["t"],"visible":true,"type":"text"},"id":"n"}"#,
            // Attributes omitted keep the stored ones.
            r#"{"type":"set","key":"k","value":{"a":1,"b":[1,2]},"id":"n"}"#,
        ] {
            let out = w.send_at(&writer(), frame, NOW + 5);
            assert_eq!(
                out,
                [(
                    Kind::Reply,
                    json!({"type":"ack","id":"n","timestamp":NOW + 5})
                )],
                "{frame}"
            );
        }
        // Without an id, nothing at all.
        assert!(w
            .send(
                &writer(),
                r#"{"type":"set","key":"k","value":{"a":1,"b":[1,2]}}"#
            )
            .is_empty());
        let after = w.engine().get("k").unwrap().unwrap();
        assert_eq!(after.updated_at, before.updated_at, "no write happened");
        assert_eq!(after.value.get(), before.value.get());
    }

    #[test]
    fn changed_attributes_alone_are_a_write() {
        let w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"k","value":1}"#);
        let out = w.send_at(
            &writer(),
            r#"{"type":"set","key":"k","value":1,"attributes":{"readonly":true}}"#,
            NOW + 1,
        );
        assert_eq!(out[0].1["attributes"]["readonly"], true);
        assert_eq!(out[0].1["timestamp"], NOW + 1);
        assert_eq!(w.data()["k"]["updatedAt"], NOW + 1);
    }

    #[test]
    fn missing_attributes_keep_the_stored_ones() {
        let w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"k","value":1,"attributes":{"type":"json","tags":["a"],"contentTags":["c"]}}"#);
        let out = w.send(
            &writer(),
            r#"{"type":"set","key":"k","value":2,"attributes":null}"#,
        );
        let a = &out[0].1["attributes"];
        assert_eq!(a["type"], "json");
        assert_eq!(a["tags"], json!(["a"]));
        assert_eq!(a["contentTags"], json!(["c"]));
        assert_eq!(w.data()["k"]["attributes"], *a);
        // Explicit attributes replace them whole.
        let out = w.send(
            &writer(),
            r#"{"type":"set","key":"k","value":2,"attributes":{}}"#,
        );
        assert_eq!(out[0].1["attributes"], default_attrs());
    }

    #[test]
    fn unknown_attribute_fields_round_trip() {
        let w = World::new();
        let frame = r#"{"type":"set","key":"k","value":"x","attributes":{"type":"markdown","contentTags":["draft"],"systemTags":["SystemPrompt","ApplyTemplate"],"future":{"nested":[1,{"z":null}]}}}"#;
        let out = w.send(&writer(), frame);
        let expected = json!({"type":"markdown","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[],
            "contentTags":["draft"],"systemTags":["SystemPrompt","ApplyTemplate"],"future":{"nested":[1,{"z":null}]}});
        assert_eq!(out[0].1["attributes"], expected);
        assert_eq!(w.data()["k"]["attributes"], expected);
        let sync: Value = serde_json::from_str(&w.engine().sync_message().unwrap()).unwrap();
        assert_eq!(sync["data"]["k"]["attributes"], expected);
        // Re-sending the same extras in another order is a no-op.
        let again = r#"{"type":"set","key":"k","value":"x","attributes":{"future":{"nested":[1,{"z":null}]},"systemTags":["SystemPrompt","ApplyTemplate"],"contentTags":["draft"],"type":"markdown"}}"#;
        assert!(w.send(&writer(), again).is_empty());
    }

    #[test]
    fn delete_and_clear() {
        let w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"a","value":1}"#);
        w.send(&writer(), r#"{"type":"set","key":"b","value":2}"#);
        let out = w.send(&writer(), r#"{"type":"delete","key":"a","id":"d"}"#);
        assert_eq!(
            out,
            [
                (
                    Kind::Broadcast,
                    json!({"type":"key_deleted","key":"a","deletedBy":"writer","timestamp":NOW})
                ),
                (Kind::Reply, json!({"type":"ack","id":"d","timestamp":NOW})),
            ]
        );
        // Deleting a missing key: no error, no broadcast, ack only.
        assert_eq!(
            w.send(&writer(), r#"{"type":"delete","key":"a","id":"d"}"#),
            [(Kind::Reply, json!({"type":"ack","id":"d","timestamp":NOW}))]
        );
        assert!(w
            .send(&writer(), r#"{"type":"delete","key":"a"}"#)
            .is_empty());
        let out = w.send(&admin(), r#"{"type":"clear","id":"c","timestamp":3}"#);
        assert_eq!(
            out,
            [
                (
                    Kind::Broadcast,
                    json!({"type":"cleared","clearedBy":"admin","timestamp":NOW})
                ),
                (Kind::Reply, json!({"type":"ack","id":"c","timestamp":NOW})),
            ]
        );
        assert!(w.data().as_object().unwrap().is_empty());
        assert_eq!(w.store.count().unwrap(), 0);
    }

    #[test]
    fn read_only_instance_refuses_writes_but_serves_reads() {
        let mut w = World::new();
        w.send(&writer(), r#"{"type":"set","key":"k","value":1}"#);
        w.meta.read_only = true;
        for (session, frame) in [
            (writer(), r#"{"type":"set","key":"k","value":2,"id":"r"}"#),
            (writer(), r#"{"type":"delete","key":"k","id":"r"}"#),
            (admin(), r#"{"type":"clear","id":"r"}"#),
        ] {
            let e = w.refused(&session, frame);
            assert_eq!(e["code"], "READ_ONLY", "{frame}");
            assert_eq!(e["id"], "r");
        }
        let e = w
            .engine()
            .set_as("system", "k", &raw("3"), None, NOW)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ReadOnly);
        assert_eq!(w.send(&reader(), r#"{"type":"ping"}"#).len(), 1);
        assert_eq!(w.data()["k"]["value"], 1);
        // Destroy still empties it.
        w.engine().wipe().unwrap();
        assert!(w.data().as_object().unwrap().is_empty());
    }

    #[test]
    fn key_count_limit() {
        let mut w = World::new();
        w.max_keys = 2;
        w.send(&writer(), r#"{"type":"set","key":"a","value":1}"#);
        w.send(&writer(), r#"{"type":"set","key":"b","value":1}"#);
        let e = w.refused(&writer(), r#"{"type":"set","key":"c","value":1,"id":"c"}"#);
        assert_eq!(e["code"], "TOO_LARGE");
        assert_eq!(e["id"], "c");
        assert!(e["error"].as_str().unwrap().contains("maximum of 2 keys"));
        // Updating an existing key is still fine at the limit.
        assert_eq!(
            w.send(&writer(), r#"{"type":"set","key":"a","value":2}"#)
                .len(),
            1
        );
        w.send(&writer(), r#"{"type":"delete","key":"b"}"#);
        assert_eq!(
            w.send(&writer(), r#"{"type":"set","key":"c","value":1}"#)
                .len(),
            1
        );
        assert_eq!(w.store.count().unwrap(), 2);
    }

    #[test]
    fn server_time_orders_writes_not_client_time() {
        let w = World::new();
        w.send_at(
            &writer(),
            r#"{"type":"set","key":"k","value":1,"timestamp":99999999999999}"#,
            NOW,
        );
        let out = w.send_at(
            &admin(),
            r#"{"type":"set","key":"k","value":2,"timestamp":1}"#,
            NOW + 1,
        );
        assert_eq!(out[0].1["updatedBy"], "admin");
        assert_eq!(out[0].1["timestamp"], NOW + 1);
        assert_eq!(
            w.data()["k"],
            json!({"value":2,"attributes":default_attrs(),"updatedAt":NOW + 1})
        );
    }

    #[test]
    fn internal_set_and_delete_share_validation_and_broadcasts() {
        let w = World::new();
        let e = w.engine();
        let b = e
            .set_as(
                "system",
                "k",
                &raw(r#"{"x":1}"#),
                Some(Attributes::from_json(r#"{"type":"json"}"#).unwrap()),
                NOW,
            )
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["updatedBy"], "system");
        assert_eq!(v["attributes"]["type"], "json");
        // Same again: no write, no broadcast.
        assert_eq!(
            e.set_as("u1", "k", &raw(r#"{ "x": 1 }"#), None, NOW + 1)
                .unwrap(),
            None
        );
        assert_eq!(
            e.set_as("u1", "$date", &raw("1"), None, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidKey
        );
        let too_many_tags = Attributes {
            tags: (0..65).map(|i| i.to_string()).collect(),
            ..Attributes::default()
        };
        assert_eq!(
            e.set_as("u1", "k", &raw("1"), Some(too_many_tags), NOW)
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
        let big = raw(&format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES)));
        assert_eq!(
            e.set_as("u1", "k", &big, None, NOW).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let d: Value =
            serde_json::from_str(&e.delete_as("u1", "k", NOW + 2).unwrap().unwrap()).unwrap();
        assert_eq!(
            d,
            json!({"type":"key_deleted","key":"k","deletedBy":"u1","timestamp":NOW + 2})
        );
        assert_eq!(e.delete_as("u1", "k", NOW).unwrap(), None);
        assert_eq!(
            e.clear_as("system", NOW).unwrap().as_deref(),
            Some(r#"{"type":"cleared","clearedBy":"system","timestamp":1700000000000}"#)
        );
    }

    #[test]
    fn data_json_is_sync_data() {
        let w = World::new();
        w.send(
            &writer(),
            r#"{"type":"set","key":"b","value":[1],"attributes":{"systemTags":["s"]}}"#,
        );
        w.send(&writer(), r#"{"type":"set","key":"a","value":"x"}"#);
        let sync: Value = serde_json::from_str(&w.engine().sync_message().unwrap()).unwrap();
        assert_eq!(sync["data"], w.data());
        assert_eq!(w.engine().entries().unwrap().len(), 2);
    }

    #[test]
    fn import_copies_a_dump_losslessly() {
        let src = World::new();
        src.send(&writer(), r#"{"type":"set","key":"a","value":{"n":1},"attributes":{"type":"json","contentTags":["c"]}}"#);
        src.send(
            &writer(),
            r#"{"type":"set","key":"b","value":null,"attributes":{"hardcoded":true}}"#,
        );
        let dump = src.engine().data_json().unwrap();

        let dst = World::new();
        let broadcasts = dst.engine().import("owner-1", &dump, NOW + 9).unwrap();
        assert_eq!(broadcasts.len(), 2);
        let first: Value = serde_json::from_str(&broadcasts[0]).unwrap();
        assert_eq!(first["type"], "key_updated");
        assert_eq!(first["updatedBy"], "owner-1");
        let (s, d) = (src.data(), dst.data());
        for k in ["a", "b"] {
            assert_eq!(s[k]["value"], d[k]["value"]);
            assert_eq!(s[k]["attributes"], d[k]["attributes"]);
            assert_eq!(d[k]["updatedAt"], NOW + 9);
        }
        // Importing the same dump again changes nothing.
        assert!(dst
            .engine()
            .import("owner-1", &dump, NOW + 10)
            .unwrap()
            .is_empty());
        // Entries without attributes take the defaults.
        dst.engine()
            .import("o", r#"{"c":{"value":3}}"#, NOW)
            .unwrap();
        assert_eq!(dst.data()["c"]["attributes"], default_attrs());
    }

    #[test]
    fn a_bad_dump_changes_nothing() {
        let mut w = World::new();
        for (dump, code) in [
            ("[1]", ErrorCode::InvalidMessage),
            ("{", ErrorCode::InvalidMessage),
            (
                r#"{"ok":{"value":1},"bad":{"attributes":{}}}"#,
                ErrorCode::InvalidMessage,
            ),
            (r#"{"ok":{"value":1},"bad":5}"#, ErrorCode::InvalidMessage),
            (
                r#"{"ok":{"value":1},"$date":{"value":1}}"#,
                ErrorCode::InvalidKey,
            ),
            (
                r#"{"ok":{"value":1},"x":{"value":1,"attributes":{"type":"nope"}}}"#,
                ErrorCode::InvalidMessage,
            ),
        ] {
            let e = w.engine().import("o", dump, NOW).unwrap_err();
            assert_eq!(e.code, code, "{dump}");
            assert!(w.data().as_object().unwrap().is_empty(), "{dump}");
        }
        w.max_keys = 1;
        let e = w
            .engine()
            .import("o", r#"{"a":{"value":1},"b":{"value":2}}"#, NOW)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert!(w.data().as_object().unwrap().is_empty());
        w.meta.read_only = true;
        let e = w
            .engine()
            .import("o", r#"{"a":{"value":1}}"#, NOW)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ReadOnly);
    }

    #[test]
    fn session_fits_the_attachment_and_round_trips() {
        let s = Session::authenticated(
            "user_2abcdefghijklmnopqrstuvwxyz0123456789".repeat(4),
            Permission::Admin,
        );
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.len() < 2048, "{}", text.len());
        assert_eq!(serde_json::from_str::<Session>(&text).unwrap(), s);
        let p = Session::pending(NOW);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"v":1,"userId":"","permission":"read","authenticated":false,
                "authDeadline":NOW + AUTH_TIMEOUT_MS,"dev":false,"conn":0})
        );
        assert_eq!(serde_json::from_str::<Session>(&text).unwrap(), p);
    }

    #[test]
    fn binary_frames_are_parse_errors() {
        let v: Value = serde_json::from_str(&encode_error(&ProtocolError::binary_frame())).unwrap();
        assert_eq!(v["code"], "PARSE_ERROR");
    }
}
