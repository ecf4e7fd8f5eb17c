//! The `MindCacheInstance` Durable Object: the platform layer around the
//! engine. It accepts hibernatable WebSockets, keeps every bit of
//! per-socket state in the socket's attachment, runs each socket's frames
//! strictly in arrival order, and serves the Worker's internal interface.
//! It exists only on wasm32: natively the engine is tested over rusqlite.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State,
    WebSocket, WebSocketPair, WebSocketRequestResponsePair,
};

use super::attachments::SocketSessions;
use super::attributes::Attributes;
use super::data_ops::PAGE_BUDGET_BYTES;
use super::engine::{
    Engine, Outbound, Outcome, Session, SocketKind, CLOSE_ACCESS_REVOKED, CLOSE_POLICY_VIOLATION,
};
use super::error::{ErrorCode, MessageId, ProtocolError};
use super::internal::{
    self, DeleteRequest, ImportRequest, ReadOnlyFlag, RecheckRequest, RecheckResult, Refusal,
    SetRequest, WriteResult,
};
use super::protocol::{encode_ack, encode_auth_error, encode_auth_success, encode_error};
use super::sessions::Sessions;
use super::size::{sync_too_large, InstanceSize, MAX_INSTANCE_BYTES, MAX_SYNC_BYTES};
use super::store::{load_meta, migrate, save_meta, InstanceMeta};
use super::store::{StoreError, SUM_DATA_BYTES};
use crate::permission::AccessBasis;
use crate::permission::Permission;
use crate::services::access::{current_permission, socket_grant, SocketRefusal};

/// Who an in-band `auth` proved the socket to be; `read_only` when D1 was
/// asked.
struct InBandGrant {
    user_id: String,
    permission: Permission,
    read_only: Option<ReadOnlyFlag>,
    basis: AccessBasis,
}

/// Frames that may wait behind an `auth` being verified, and their bytes.
const MAX_QUEUED_FRAMES: usize = 1_000;
const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;
/// RFC 6455 "message too big": the queue behind an `auth` overflowed.
const CLOSE_TOO_BIG: u16 = 1009;

/// A socket's frames that arrived while its `auth` was being verified.
#[derive(Default)]
struct Pending {
    frames: VecDeque<String>,
    bytes: usize,
}

impl Pending {
    /// Queues a frame; false (and nothing queued) when over the caps.
    fn push(&mut self, frame: String) -> bool {
        if self.frames.len() >= MAX_QUEUED_FRAMES || self.bytes + frame.len() > MAX_QUEUED_BYTES {
            self.frames.clear();
            self.bytes = 0;
            return false;
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        true
    }

    fn pop(&mut self) -> Option<String> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }
}

/// Close code for a connect to a deleted instance (protocol.md §8).
const CLOSE_INSTANCE_NOT_FOUND: u16 = 4004;
/// The one table a deleted instance keeps.
const TOMBSTONE_TABLE: &str = "tombstone";

#[derive(serde::Deserialize)]
struct TableName {
    name: String,
}

/// Whether the object's SQLite has a table of that name (a read).
fn has_table(sql: &worker::SqlStorage, name: &str) -> bool {
    sql.exec(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
        Some(vec![SqlStorageValue::String(name.to_string())]),
    )
    .and_then(|c| c.to_array::<TableName>())
    .is_ok_and(|rows| !rows.is_empty())
}

#[path = "object_data.rs"]
mod data;
#[path = "object_yjs.rs"]
mod yjs_sockets;

use super::mirror::Mirrored;
use super::sql_store::SqlStore;
use super::ybridge::Bridged;

/// The object's store: SQLite, with the keys mirrored in memory.
type Store = Bridged<Mirrored<SqlStore>>;

/// Socket tags: connections authenticated by the Worker before the upgrade
/// are tagged so broadcasts need not read their attachments.
const TAG_AUTHENTICATED: &str = "a";
const TAG_PENDING: &str = "p";

const PING: &str = r#"{"type":"ping"}"#;
const PONG: &str = r#"{"type":"pong"}"#;

/// The Durable Object class the runtime instantiates. Its state lives in
/// an `Rc<Instance>` so that the rare asynchronous path (verifying an
/// `auth`) can hold it in a `'static` future.
#[durable_object(alarm)]
pub struct MindCacheInstance {
    inner: Rc<Instance>,
}

impl DurableObject for MindCacheInstance {
    fn new(state: State, env: Env) -> Self {
        MindCacheInstance {
            inner: Rc::new(Instance::new(state, env)),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        Instance::fetch(&self.inner, req).await
    }

    async fn alarm(&self) -> Result<Response> {
        self.inner.alarm().await
    }
}

/// The WebSocket handlers are exported by hand rather than through the
/// `DurableObject` trait, whose handlers are always `async`: a frame is
/// handled synchronously (no promise, no task on the microtask queue), and
/// only an `auth`, which must await D1, returns a promise.
#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl MindCacheInstance {
    #[wasm_bindgen(js_name = webSocketMessage)]
    pub fn web_socket_message(&self, ws: worker::web_sys::WebSocket, message: JsValue) -> JsValue {
        let ws = WebSocket::from(ws);
        match message.as_string() {
            #[cfg(feature = "fault-injection")]
            Some(text) if crate::panic::frame_wants_panic(&text) => {
                // Holding a borrow, as a real bug would: without recovery
                // every later call into this object would panic on it.
                let _held = self.inner.sessions.borrow_mut();
                crate::panic::injected("the instance's object")
            }
            Some(text) => Instance::on_text(&self.inner, ws, text),
            None => {
                self.inner.on_binary(&ws, &message);
                JsValue::UNDEFINED
            }
        }
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn web_socket_close(
        &self,
        ws: worker::web_sys::WebSocket,
        code: u16,
        reason: String,
        _was_clean: bool,
    ) {
        self.inner.on_close(&WebSocket::from(ws), code, reason);
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn web_socket_error(&self, ws: worker::web_sys::WebSocket, _error: JsValue) {
        let ws = WebSocket::from(ws);
        // 1006: the connection ended without a close frame.
        self.inner.log_session_end(&ws, 1006);
        self.inner.forget(&ws);
    }
}

/// One instance's object state and behaviour.
pub struct Instance {
    state: State,
    env: Env,
    store: Store,
    meta: RefCell<InstanceMeta>,
    /// Whether the schema exists and `meta` was loaded. Set up lazily: a
    /// connect that never authenticates must write nothing (protocol.md §8).
    ready: Cell<bool>,
    /// The instance was deleted: a tombstone is all its storage holds, and
    /// every connect, read and write is refused from then on.
    deleted: Cell<bool>,
    /// Why the schema could not be set up, if it could not (then every
    /// request is refused rather than risking data).
    setup_error: RefCell<Option<String>>,
    /// Frames that arrived for a socket while an earlier frame of the same
    /// socket was still being handled (an `auth` being verified).
    queues: RefCell<HashMap<u32, Pending>>,
    /// Counts rechecks: an in-band `auth` whose verification overlapped one
    /// verifies again, so a revocation cannot slip between the D1 lookup and
    /// the socket becoming authenticated.
    rechecks: Cell<u64>,
    /// Frame counts of the sessions, for their log lines.
    sessions: RefCell<Sessions>,
    /// Each socket's session (its attachment, cached: attachments.rs).
    attachments: SocketSessions,
    /// Whether sockets tagged pending (accepted before authenticating) may
    /// be open: a broadcast then looks for them. Unknown (`None`) in a
    /// fresh object until a broadcast has looked once; tags are set only
    /// at accept, so `Some(false)` stays true until a pending accept.
    maybe_pending: Cell<Option<bool>>,
    /// The sockets tagged authenticated, as the runtime last listed them:
    /// a broadcast reuses the list instead of asking again (each socket
    /// handed into wasm costs). Sockets are only ever added by our own
    /// accept, which drops the list; a socket that closed since is
    /// dropped with it at its close event, and until then a send to it
    /// fails harmlessly.
    authenticated_sockets: RefCell<Option<Rc<Vec<WebSocket>>>>,
    /// Open server-sent event streams (data-api.md).
    streams: RefCell<data::Streams>,
    /// Outbound webhooks: the outbox and its sender (docs/webhooks.md).
    hooks: super::hooks::Hooks,
    /// The instance's total size and its caps (size.rs, docs/faults.md).
    size: InstanceSize,
    max_bytes: u64,
    max_sync_bytes: u64,
    /// Where a listing page stops (`PAGE_BUDGET_BYTES` but in tests).
    page_budget: usize,
}

/// The instance's total, summed by SQLite (`SUM_DATA_BYTES`).
fn sum_data_bytes(sql: &worker::SqlStorage) -> std::result::Result<u64, StoreError> {
    #[derive(serde::Deserialize)]
    struct Sum {
        n: f64,
    }
    sql.exec(SUM_DATA_BYTES, None)
        .and_then(|c| c.one::<Sum>())
        .map(|s| s.n.max(0.0) as u64)
        .map_err(|e| StoreError(e.to_string()))
}

/// A size cap lowered for tests by an environment variable, honoured only
/// when `ENVIRONMENT` is `development` (a deployment never has it).
fn test_cap(env: &Env, name: &str, default: u64) -> u64 {
    if crate::config::setting(env, "ENVIRONMENT").as_deref() != Some("development") {
        return default;
    }
    crate::config::setting(env, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Instance {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        let deleted = has_table(&sql, TOMBSTONE_TABLE);
        let existing = !deleted && has_table(&sql, "meta");
        let storage: JsValue = state
            .as_raw()
            .storage()
            .map(JsValue::from)
            .unwrap_or(JsValue::UNDEFINED);
        let hooks = super::hooks::Hooks::new(sql.clone(), &env, existing);
        let counted = sql.clone();
        let size = InstanceSize::with_counter(Box::new(move || sum_data_bytes(&counted)));
        let store = Bridged::new(Mirrored::new(SqlStore::new(sql, storage)));
        let max_bytes = test_cap(
            &env,
            "MINDCACHE_TEST_MAX_INSTANCE_BYTES",
            MAX_INSTANCE_BYTES,
        );
        let max_sync_bytes = test_cap(&env, "MINDCACHE_TEST_MAX_SYNC_BYTES", MAX_SYNC_BYTES);
        let page_budget = test_cap(
            &env,
            "MINDCACHE_TEST_PAGE_BUDGET_BYTES",
            PAGE_BUDGET_BYTES as u64,
        ) as usize;
        // `{"type":"ping"}` is answered by the runtime without waking us.
        if let Ok(pair) = WebSocketRequestResponsePair::new(PING, PONG) {
            state.set_websocket_auto_response(&pair);
        }
        let instance = Instance {
            state,
            env,
            store,
            meta: RefCell::new(InstanceMeta::default()),
            ready: Cell::new(false),
            deleted: Cell::new(deleted),
            setup_error: RefCell::new(None),
            queues: RefCell::new(HashMap::new()),
            rechecks: Cell::new(0),
            sessions: RefCell::new(Sessions::default()),
            attachments: SocketSessions::default(),
            maybe_pending: Cell::new(None),
            authenticated_sockets: RefCell::new(None),
            streams: RefCell::new(data::Streams::default()),
            hooks,
            size,
            max_bytes,
            max_sync_bytes,
            page_budget,
        };
        if existing {
            instance.ensure_ready();
        }
        if instance.hooks.active() {
            // Deliveries may be waiting with no alarm to send them.
            instance.hooks.wake(&instance.state, now_ms());
        }
        instance
    }

    /// Creates the schema (once) and loads the object's record; the first
    /// write to storage an object ever makes happens here.
    fn ensure_ready(&self) -> bool {
        if self.ready.get() {
            return true;
        }
        let loaded = migrate(&self.store)
            .and_then(|_| self.store.load_flag())
            .and_then(|_| load_meta(&self.store));
        match loaded {
            Ok(stored) => {
                let mut meta = self.meta.borrow_mut();
                if let Some(stored) = stored {
                    // Merge what this request said (kept in memory until
                    // now) with the record: the newer flag wins.
                    let told = meta.clone();
                    *meta = stored;
                    if !told.instance_id.is_empty() {
                        meta.instance_id = told.instance_id;
                    }
                    meta.apply(ReadOnlyFlag {
                        read_only: told.read_only,
                        version: told.read_only_version,
                    });
                }
                if !meta.instance_id.is_empty() {
                    if let Err(e) = save_meta(&self.store, &meta) {
                        *self.setup_error.borrow_mut() = Some(e.0);
                        return false;
                    }
                }
                self.ready.set(true);
                true
            }
            Err(e) => {
                *self.setup_error.borrow_mut() = Some(e.0);
                false
            }
        }
    }

    async fn fetch(this: &Rc<Self>, mut req: Request) -> Result<Response> {
        let path = req.path();
        if this.deleted.get() {
            return this.refuse_deleted(&req, &path);
        }
        // Nothing is stored for a connect that has yet to authenticate, nor
        // to answer a read of an object that holds nothing.
        let needs_storage = match path.as_str() {
            internal::PATH_SYNC => req.headers().get(internal::HEADER_USER_ID)?.is_some(),
            internal::PATH_KEYS
            | internal::PATH_DATA_LIST
            | internal::PATH_STORAGE
            | internal::PATH_RECHECK => false,
            _ => true,
        };
        this.refresh_meta(&req)?;
        if needs_storage && !this.ensure_ready() {
            if let Some(e) = this.setup_error.borrow().as_ref() {
                crate::log_error!("instance storage setup failed: {e}");
            }
            return refusal(&ProtocolError::internal("instance storage unavailable"));
        }
        match (req.method(), path.as_str()) {
            (Method::Get, internal::PATH_SYNC) => Instance::accept(this, &req).await,
            (Method::Get, internal::PATH_KEYS) if !this.ready.get() => {
                json_text(r#"{"keys":{}}"#.to_string())
            }
            (Method::Get, internal::PATH_KEYS) => match this.engine_data() {
                Ok(data) => json_text(format!(r#"{{"keys":{data}}}"#)),
                Err(e) => refusal(&e),
            },
            // Not ready and no setup error: nothing was ever stored, so the
            // page is empty; an admin's read by object id creates no schema.
            (Method::Get, internal::PATH_DATA_LIST) if !this.ready.get() => {
                match this.setup_error.borrow().as_ref() {
                    Some(_) => refusal(&ProtocolError::internal("instance storage unavailable")),
                    None => json_text(r#"{"keys":{},"cursor":null}"#.to_string()),
                }
            }
            (Method::Post, internal::PATH_SET) => {
                let body = req.text().await?;
                this.internal_set(&body)
            }
            (Method::Post, internal::PATH_DELETE) => {
                let body = req.text().await?;
                this.internal_delete(&body)
            }
            (Method::Post, internal::PATH_IMPORT) => {
                let body = req.text().await?;
                this.internal_import(&body)
            }
            (Method::Post, internal::PATH_DESTROY) => this.destroy().await,
            (Method::Get, internal::PATH_STORAGE) => this.storage_report().await,
            (Method::Post, internal::PATH_CONFIGURE) => json_text("{}".to_string()),
            (Method::Post, internal::PATH_WEBHOOKS) => {
                let body = req.text().await?;
                this.hooks.configure(&this.state, &body)
            }
            (Method::Get, internal::PATH_WEBHOOK_LOG) => this.hooks.log(&req.url()?),
            (Method::Post, internal::PATH_RECHECK) => {
                let body = req.text().await?;
                this.recheck(&body).await
            }
            (Method::Get, internal::PATH_EVENTS) => Instance::open_stream(this, &req),
            (_, p) if p.starts_with("/internal/data/") => this.data(req, &path).await,
            _ => Response::error("Not found", 404),
        }
    }

    /// Completes the close handshake, echoing the client's code when it is
    /// one that may be sent on the wire (RFC 6455 §7.4).
    fn on_close(&self, ws: &WebSocket, code: u16, reason: String) {
        let code = Some(code)
            .filter(|c| (1000..5000).contains(c) && ![1004, 1005, 1006, 1015].contains(c))
            .unwrap_or(1000);
        let _ = ws.close(Some(code), Some(reason));
        self.log_session_end(ws, code);
        self.forget(ws);
    }

    /// The session's log line (docs/operations.md): how long, how many
    /// frames each way, the close code, who.
    fn log_session_end(&self, ws: &WebSocket, code: u16) {
        let Ok(Some(session)) = self.attachments.read(ws) else {
            return;
        };
        let ended = self
            .sessions
            .borrow_mut()
            .end(session.connection, session.authenticated);
        let instance_id = self.meta.borrow().instance_id.clone();
        let who = crate::log::Who::of(&session.user_id, &session.basis);
        let line = ended.line(now_ms(), session.opened_ms, &instance_id, code, who);
        crate::log::emit(line.head.level, &crate::log::to_line(&line));
    }

    /// Calls `f` with every socket that may be authenticated and whether it
    /// is tagged pending (then it authenticated in-band, if at all: its
    /// session says). The authenticated-tagged come from the cached list
    /// (`authenticated_sockets`); pending-tagged ones are looked for only
    /// when some may be open (`maybe_pending`).
    fn each_socket(&self, mut f: impl FnMut(&WebSocket, bool)) {
        let authenticated = Rc::clone(
            self.authenticated_sockets
                .borrow_mut()
                .get_or_insert_with(|| {
                    Rc::new(self.state.get_websockets_with_tag(TAG_AUTHENTICATED))
                }),
        );
        for ws in authenticated.iter() {
            f(ws, false);
        }
        if self.maybe_pending.get() != Some(false) {
            let pending = self.state.get_websockets_with_tag(TAG_PENDING);
            self.maybe_pending.set(Some(!pending.is_empty()));
            for ws in &pending {
                f(ws, true);
            }
        }
    }

    /// Drops whatever was queued for a socket that is gone.
    fn forget(&self, ws: &WebSocket) {
        self.authenticated_sockets.replace(None);
        if let Ok(Some(session)) = self.attachments.read(ws) {
            self.queues.borrow_mut().remove(&session.connection);
        }
        self.attachments.forget(ws);
    }

    /// The alarm is the backstop of the in-memory auth timer (an object
    /// evicted during those 10 s loses its timer).
    async fn alarm(&self) -> Result<Response> {
        if let Some(deadline) = self.close_expired() {
            self.schedule_alarm(deadline).await?;
        }
        // Webhook deliveries share the alarm: the earliest deadline wins.
        if let Some(next) = self.hooks.deliver(&self.env).await {
            self.hooks.wake(&self.state, next);
        }
        Response::empty()
    }

    /// Times out sockets that did not authenticate within 10 seconds: the
    /// `AUTH_TIMEOUT` error and the close go out together. Returns the next
    /// deadline of a socket still pending.
    fn close_expired(&self) -> Option<i64> {
        let now = now_ms();
        let mut next_deadline: Option<i64> = None;
        for ws in self.state.get_websockets() {
            let Ok(Some(session)) = self.attachments.read(&ws) else {
                continue;
            };
            // A pending socket's auth deadline, or the end of a delegate's
            // access (`expires_at`); the engine says how each ends.
            let deadline = if session.authenticated {
                session.basis.expires.map(|s| s.saturating_mul(1000))
            } else {
                Some(session.auth_deadline_ms)
            };
            let Some(deadline) = deadline else { continue };
            if now < deadline {
                next_deadline = Some(next_deadline.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            if let Outcome::Close {
                frame,
                code,
                reason,
            } = self.engine_outcome(&session, "")
            {
                self.sessions
                    .borrow_mut()
                    .sent(session.connection, false, 1);
                send(&ws, &frame);
                let _ = ws.close(Some(code), Some(reason));
            }
        }
        next_deadline
    }

    /// The Worker sends the instance id (and, when it read D1, the
    /// read-only flag with its version) with its requests; remember them so
    /// messages never need D1. Only a newer version of the flag replaces the
    /// one the object has (protocol.md §8).
    fn refresh_meta(&self, req: &Request) -> Result<()> {
        let headers = req.headers();
        let Some(instance_id) = headers.get(internal::HEADER_INSTANCE_ID)? else {
            return Ok(());
        };
        let flag = match (
            headers.get(internal::HEADER_READ_ONLY)?,
            headers.get(internal::HEADER_READ_ONLY_VERSION)?,
        ) {
            (Some(flag), Some(version)) => version.parse().ok().map(|version| ReadOnlyFlag {
                read_only: flag == "1",
                version,
            }),
            _ => None,
        };
        let mut fresh = InstanceMeta {
            instance_id,
            ..self.meta.borrow().clone()
        };
        if let Some(flag) = flag {
            fresh.apply(flag);
        }
        self.replace_meta(fresh)
    }

    /// Takes the flag if it is newer than the object's.
    fn set_read_only(&self, flag: ReadOnlyFlag) -> Result<()> {
        let mut fresh = self.meta.borrow().clone();
        fresh.apply(flag);
        self.replace_meta(fresh)
    }

    fn replace_meta(&self, fresh: InstanceMeta) -> Result<()> {
        if *self.meta.borrow() != fresh {
            if self.ready.get() {
                save_meta(&self.store, &fresh).map_err(|e| worker::Error::RustError(e.0))?;
            }
            *self.meta.borrow_mut() = fresh;
        }
        Ok(())
    }

    /// Runs `f` on the engine over the store and the current meta (borrowed
    /// only for that long).
    fn with_engine<T>(&self, f: impl FnOnce(&Engine<'_, Store>) -> T) -> T {
        let meta = self.meta.borrow();
        f(&Engine::new(&self.store, &meta)
            .with_v3_fields(self.store.has_doc())
            .with_size(&self.size)
            .with_max_bytes(self.max_bytes)
            .with_page_budget(self.page_budget))
    }

    fn engine_outcome(&self, session: &Session, frame: &str) -> Outcome {
        self.with_engine(|e| e.handle_frame(session, frame, now_ms()))
    }

    fn engine_data(&self) -> std::result::Result<String, ProtocolError> {
        self.with_engine(|e| e.data_json())
    }

    /// Accepts a WebSocket the Worker forwarded, with the identity it set.
    async fn accept(this: &Rc<Self>, req: &Request) -> Result<Response> {
        let headers = req.headers();
        let user = headers.get(internal::HEADER_USER_ID)?;
        let permission = headers
            .get(internal::HEADER_PERMISSION)?
            .and_then(|p| Permission::parse_grantable(&p));
        let development = headers.get(internal::HEADER_DEVELOPMENT)?.as_deref() == Some("1");
        let basis = match headers.get(internal::HEADER_BASIS)? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| worker::Error::RustError(format!("basis header: {e}")))?,
            None => AccessBasis::default(),
        };
        let now = now_ms();

        let mut session = match (user, permission) {
            (Some(user), Some(permission)) => Session::authenticated(user, permission),
            _ => Session::pending(now),
        };
        session.development = development;
        session.basis = basis;
        session.connection = connection_id();
        session.opened_ms = now;
        this.sessions
            .borrow_mut()
            .opened(session.connection, session.authenticated);

        let pair = WebSocketPair::new()?;
        let server = pair.server;
        let tag = if session.authenticated {
            TAG_AUTHENTICATED
        } else {
            TAG_PENDING
        };
        this.state.accept_websocket_with_tags(&server, &[tag]);
        if session.authenticated {
            this.authenticated_sockets.replace(None);
        } else {
            this.maybe_pending.set(Some(true));
        }
        this.attachments.write(&server, &session)?;

        if session.authenticated {
            this.welcome(&server, &session, None, now);
            this.schedule_expiry(&session).await?;
        } else {
            // A timer closes it on time; an alarm (storage) only backs the
            // timer up where the object already has storage (§8: none is
            // created before authentication).
            let timer = Rc::clone(this);
            let wait = (session.auth_deadline_ms - now).max(0) as u64 + 20;
            worker::wasm_bindgen_futures::spawn_local(async move {
                worker::Delay::from(Duration::from_millis(wait)).await;
                timer.close_expired();
            });
            if this.ready.get() {
                this.schedule_alarm(session.auth_deadline_ms).await?;
            }
        }
        Response::from_websocket(pair.client)
    }

    /// Runs a socket's frames one at a time in arrival order. Frames are
    /// handled synchronously except an `auth`, whose verification awaits
    /// D1: while it runs, the socket's later frames wait in its queue and
    /// are then handled in order (protocol.md §3). Returns what the runtime
    /// should wait for: nothing, or the promise of that verification.
    fn on_text(this: &Rc<Self>, ws: WebSocket, frame: String) -> JsValue {
        let Ok(Some(session)) = this.attachments.read(&ws) else {
            return JsValue::UNDEFINED;
        };
        let session = this.classify(&ws, session, SocketKind::Json);
        let conn = session.connection;
        this.sessions
            .borrow_mut()
            .received(conn, session.authenticated);
        if let Some(queue) = this.queues.borrow_mut().get_mut(&conn) {
            if !queue.push(frame) {
                // A client flooding a socket whose `auth` is being verified.
                let _ = ws.close(
                    Some(CLOSE_TOO_BIG),
                    Some("Too many messages before authentication"),
                );
            }
            return JsValue::UNDEFINED;
        }
        let Some((api_key, id)) = this.handle_sync(&ws, &session, &frame) else {
            return JsValue::UNDEFINED;
        };
        // An `auth`: hold this socket's later frames until it is settled.
        this.queues.borrow_mut().insert(conn, Pending::default());
        let this = Rc::clone(this);
        let done = async move {
            let result = this.settle_auth(&ws, session, api_key, id).await;
            this.queues.borrow_mut().remove(&conn);
            result.map(|_| JsValue::UNDEFINED).map_err(JsValue::from)
        };
        worker::wasm_bindgen_futures::future_to_promise(done).into()
    }

    /// Verifies an `auth`, then handles the frames that queued behind it.
    async fn settle_auth(
        &self,
        ws: &WebSocket,
        session: Session,
        api_key: String,
        id: Option<MessageId>,
    ) -> Result<()> {
        let conn = session.connection;
        let mut open = self.finish_auth(ws, &session, &api_key, id).await?;
        while open {
            let next = self
                .queues
                .borrow_mut()
                .get_mut(&conn)
                .and_then(Pending::pop);
            let Some(frame) = next else { break };
            let Some(session) = self.attachments.read(ws)? else {
                break;
            };
            open = match self.handle_sync(ws, &session, &frame) {
                None => !self.is_closed(ws),
                Some((api_key, id)) => self.finish_auth(ws, &session, &api_key, id).await?,
            };
        }
        Ok(())
    }

    fn is_closed(&self, ws: &WebSocket) -> bool {
        let raw: &worker::web_sys::WebSocket = ws.as_ref();
        raw.ready_state() >= 2
    }

    /// Handles a frame that needs no waiting and returns `None`; for an
    /// `auth` it returns the credential (and message id) to verify.
    fn handle_sync(
        &self,
        ws: &WebSocket,
        session: &Session,
        frame: &str,
    ) -> Option<(String, Option<MessageId>)> {
        match self.engine_outcome(session, frame) {
            Outcome::Send(out) => {
                for item in out {
                    match item {
                        Outbound::Reply(text) => {
                            self.count_sent(session, 1);
                            send(ws, &text)
                        }
                        Outbound::Broadcast(text) => self.publish(&text),
                    }
                }
                None
            }
            Outcome::Close {
                frame,
                code,
                reason,
            } => {
                self.count_sent(session, 1);
                send(ws, &frame);
                let _ = ws.close(Some(code), Some(reason));
                None
            }
            Outcome::VerifyAuth { api_key, id } => Some((api_key, id)),
        }
    }

    /// Verifies an `auth` and answers it; returns false when the socket
    /// was closed because the credential was refused.
    async fn finish_auth(
        &self,
        ws: &WebSocket,
        session: &Session,
        api_key: &str,
        id: Option<MessageId>,
    ) -> Result<bool> {
        let before = self.rechecks.get();
        let mut verdict = self.verify_in_band(session, api_key).await;
        if verdict.is_ok() && self.rechecks.get() != before {
            verdict = self.verify_in_band(session, api_key).await;
        }
        match verdict {
            Ok(_) if self.deleted.get() => {
                let _ = ws.close(Some(CLOSE_INSTANCE_NOT_FOUND), Some("Instance not found"));
                Ok(false)
            }
            Ok(_) if !self.ensure_ready() => {
                self.count_sent(session, 1);
                let e = ProtocolError::internal("instance storage unavailable").with_id(id);
                send(ws, &encode_error(&e));
                Ok(true)
            }
            Ok(grant) => {
                if let Some(read_only) = grant.read_only {
                    self.set_read_only(read_only)?;
                }
                let mut updated = Session::authenticated(grant.user_id, grant.permission);
                updated.development = session.development;
                updated.connection = session.connection;
                updated.basis = grant.basis;
                updated.opened_ms = session.opened_ms;
                updated.kind = session.kind;
                self.attachments.write(ws, &updated)?;
                self.sessions.borrow_mut().authenticated(updated.connection);
                self.welcome(ws, &updated, id, now_ms());
                self.schedule_expiry(&updated).await?;
                Ok(true)
            }
            Err((code, message)) => {
                self.count_sent(session, 1);
                send(ws, &encode_auth_error(code, &message));
                let _ = ws.close(Some(CLOSE_POLICY_VIOLATION), Some("Authentication failed"));
                Ok(false)
            }
        }
    }

    /// Greets a socket that has just authenticated: `auth_success`, the
    /// full-state `sync`, then the `ack` when its `auth` carried an id. The
    /// `sync` text is assembled and sent on the JavaScript side (see
    /// `SqlStore::sync_message`): a large instance's state never crosses
    /// into wasm and back.
    fn welcome(&self, ws: &WebSocket, session: &Session, id: Option<MessageId>, now: i64) {
        // auth_success, then sync (or the error), then the ack.
        self.count_sent(session, 2);
        let instance_id = self.meta.borrow().instance_id.clone();
        send(
            ws,
            &encode_auth_success(&instance_id, &session.user_id, session.permission),
        );
        // An instance filled before the size cap may hold more than one
        // message can carry: it gets an error instead, and the socket stays
        // open for `delete` and `clear` (docs/faults.md).
        match self.with_engine(|e| e.total_bytes()) {
            Ok(total) if total > self.max_sync_bytes => {
                send(ws, &encode_error(&sync_too_large(total).with_id(id)));
                return;
            }
            Ok(_) => {}
            Err(e) => crate::log_error!("instance size: {}", e.message),
        }
        match self.store.inner().inner().sync_message(&instance_id) {
            Ok(sync) => {
                send_js(ws, &sync);
                // MindCache 3 clients (yjs.md); 2.0 clients ignore it.
                self.count_sent(session, 1);
                self.send_step1(ws);
            }
            Err(e) => {
                crate::log_error!("sync failed: {}", e.0);
                send(
                    ws,
                    &encode_error(
                        &ProtocolError::internal("could not read the instance").with_id(id),
                    ),
                );
                return;
            }
        }
        if let Some(id) = id {
            self.count_sent(session, 1);
            send(ws, &encode_ack(&id, now));
        }
    }

    /// Counts frames sent to this socket alone, for its log line.
    fn count_sent(&self, session: &Session, n: u64) {
        self.sessions
            .borrow_mut()
            .sent(session.connection, session.authenticated, n);
    }

    /// Verifies an in-band `auth` credential for this instance.
    async fn verify_in_band(
        &self,
        session: &Session,
        credential: &str,
    ) -> std::result::Result<InBandGrant, SocketRefusal> {
        let instance_id = self.meta.borrow().instance_id.clone();
        let grant = socket_grant(&self.env, credential, &instance_id, session.development).await?;
        Ok(InBandGrant {
            user_id: grant.user_id,
            permission: grant.permission,
            read_only: Some(grant.read_only),
            basis: grant.basis,
        })
    }

    /// Re-evaluates the authenticated sockets a change of access may
    /// concern (protocol.md §8): closed with 4003 when nothing grants access
    /// any more, lowered when less does. Each distinct user and credential
    /// is looked up once. A lookup that fails leaves its sockets as they
    /// are (logged): D1 being down must not disconnect everyone.
    async fn recheck(&self, body: &str) -> Result<Response> {
        let RecheckRequest { affected, gone } = serde_json::from_str(body)
            .map_err(|e| worker::Error::RustError(format!("recheck body: {e}")))?;
        self.rechecks.set(self.rechecks.get() + 1);
        let mut verdicts: HashMap<(String, AccessBasis), Option<Permission>> = HashMap::new();
        let mut result = RecheckResult::default();
        // Every socket: one that authenticated in-band keeps its `pending` tag.
        for ws in self.state.get_websockets() {
            let Ok(Some(mut session)) = self.attachments.read(&ws) else {
                continue;
            };
            if !session.authenticated || !affected.matches(&session.user_id, &session.basis) {
                continue;
            }
            let verdict = if gone {
                None
            } else {
                let looked_up = self
                    .verdict(
                        &mut verdicts,
                        &session.user_id,
                        &session.basis,
                        session.development,
                    )
                    .await;
                match looked_up {
                    Some(v) => v,
                    None => continue,
                }
            };
            match verdict {
                None => {
                    // Refuse anything still in flight before the close lands.
                    session.authenticated = false;
                    self.attachments.write(&ws, &session)?;
                    let _ = ws.close(Some(CLOSE_ACCESS_REVOKED), Some("Access revoked"));
                    result.closed += 1;
                }
                Some(p) if p < session.permission => {
                    session.permission = p;
                    self.attachments.write(&ws, &session)?;
                    result.lowered += 1;
                }
                Some(_) => {}
            }
        }
        // Event streams only read: they end when access does.
        let streams: Vec<(String, AccessBasis, bool)> = self
            .streams
            .borrow()
            .affected(&affected)
            .map(|s| (s.user_id.clone(), s.basis.clone(), s.development))
            .collect();
        let mut revoked = Vec::new();
        for (user_id, basis, development) in streams {
            let verdict = if gone {
                Some(None)
            } else {
                self.verdict(&mut verdicts, &user_id, &basis, development)
                    .await
            };
            if verdict == Some(None) {
                revoked.push((user_id, basis));
            }
        }
        if !revoked.is_empty() {
            result.closed += self.streams.borrow_mut().close_where(
                |s| {
                    revoked
                        .iter()
                        .any(|(u, b)| *u == s.user_id && *b == s.basis)
                },
                CLOSE_ACCESS_REVOKED,
                "Access revoked",
            );
        }
        json_response(&result)
    }

    /// The permission `user_id` with `basis` has on this instance now,
    /// looked up once per recheck; `None` when the lookup failed (logged:
    /// D1 being down must not disconnect everyone).
    async fn verdict(
        &self,
        verdicts: &mut HashMap<(String, AccessBasis), Option<Permission>>,
        user_id: &str,
        basis: &AccessBasis,
        development: bool,
    ) -> Option<Option<Permission>> {
        let key = (user_id.to_string(), basis.clone());
        if let Some(v) = verdicts.get(&key) {
            return Some(*v);
        }
        let instance_id = self.meta.borrow().instance_id.clone();
        match current_permission(&self.env, user_id, basis, &instance_id, development).await {
            Ok(v) => {
                verdicts.insert(key, v);
                Some(v)
            }
            Err(e) => {
                crate::log_error!("recheck of a session failed: {e}");
                None
            }
        }
    }

    /// Every applied change leaves the object through here, once, in the
    /// order the changes were applied (the engine's broadcast frame): it goes
    /// to every authenticated socket. The text is converted to a JS string
    /// once, not once per socket.
    fn publish(&self, text: &str) {
        if self.hooks.active() {
            // Same synchronous turn as the change: both commit together.
            self.hooks
                .on_publish(&self.state, &self.meta.borrow().instance_id, text);
        }
        self.sessions.borrow_mut().broadcast();
        let js = JsValue::from_str(text);
        if self.store.has_doc() {
            // Y sockets get the change's Y updates instead (object_yjs.rs).
            self.publish_both(&js);
        } else {
            // Tagged authenticated at accept: no session to read.
            self.each_socket(|ws, pending| {
                if !pending || matches!(self.attachments.read(ws), Ok(Some(s)) if s.authenticated) {
                    send_js(ws, &js);
                }
            });
        }
        self.streams.borrow_mut().publish(text);
    }

    /// An alarm at the end of a delegate's access, so its socket is closed
    /// then even if it sends nothing.
    async fn schedule_expiry(&self, session: &Session) -> Result<()> {
        match session.basis.expires {
            Some(at) if self.ready.get() => self.schedule_alarm(at.saturating_mul(1000)).await,
            _ => Ok(()),
        }
    }

    async fn schedule_alarm(&self, deadline_ms: i64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        if current.is_none_or(|c| c > deadline_ms) {
            // A little slack so the deadline has passed when the alarm runs.
            let delay = (deadline_ms - now_ms()).max(0) as u64 + 50;
            storage.set_alarm(Duration::from_millis(delay)).await?;
        }
        Ok(())
    }

    fn internal_set(&self, body: &str) -> Result<Response> {
        let Some(req) = parse_body::<SetRequest>(body) else {
            return refusal(&ProtocolError::invalid("malformed internal set request"));
        };
        let attributes = match req.attributes.map(|a| Attributes::from_json(a.get())) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => return refusal(&e),
        };
        let now = now_ms();
        let result =
            self.with_engine(|e| e.set_as(&req.actor, &req.key, req.value, attributes, now));
        self.write_response(result, now)
    }

    fn internal_delete(&self, body: &str) -> Result<Response> {
        let Some(req) = parse_body::<DeleteRequest>(body) else {
            return refusal(&ProtocolError::invalid("malformed internal delete request"));
        };
        let now = now_ms();
        let result = self.with_engine(|e| e.delete_as(&req.actor, &req.key, now));
        self.write_response(result, now)
    }

    fn internal_import(&self, body: &str) -> Result<Response> {
        let Some(req) = parse_body::<ImportRequest>(body) else {
            return refusal(&ProtocolError::invalid("malformed internal import request"));
        };
        let now = now_ms();
        let result = self.with_engine(|e| e.import(&req.actor, req.data.get(), now));
        match result {
            Ok(broadcasts) => {
                broadcasts.iter().for_each(|b| self.publish(b));
                json_response(&WriteResult {
                    changed: !broadcasts.is_empty(),
                    timestamp: now,
                })
            }
            Err(e) => refusal(&e),
        }
    }

    fn write_response(
        &self,
        result: std::result::Result<Option<String>, ProtocolError>,
        now: i64,
    ) -> Result<Response> {
        match result {
            Ok(broadcast) => {
                if let Some(b) = &broadcast {
                    self.publish(b);
                }
                json_response(&WriteResult {
                    changed: broadcast.is_some(),
                    timestamp: now,
                })
            }
            Err(e) => refusal(&e),
        }
    }

    /// Closes every socket (1000, "Instance deleted"), deletes all of the
    /// object's storage and leaves a tombstone (protocol.md §8): instance
    /// ids are never reused, so from now on everything is refused.
    async fn destroy(&self) -> Result<Response> {
        self.deleted.set(true);
        for ws in self.state.get_websockets() {
            let _ = ws.close(Some(1000), Some("Instance deleted"));
        }
        self.streams
            .borrow_mut()
            .close_where(|_| true, 1000, "Instance deleted");
        self.queues.borrow_mut().clear();
        self.hooks.reset();
        self.store.reset();
        let wiped = self.with_engine(|e| e.wipe());
        if let Err(e) = wiped {
            return refusal(&e);
        }
        let storage = self.state.storage();
        let _ = storage.delete_alarm().await;
        storage.delete_all().await?;
        let sql = storage.sql();
        sql.exec(
            &format!("CREATE TABLE IF NOT EXISTS {TOMBSTONE_TABLE} (deleted_at INTEGER NOT NULL)"),
            None,
        )?;
        sql.exec(
            &format!("INSERT INTO {TOMBSTONE_TABLE} (deleted_at) VALUES (?)"),
            Some(vec![SqlStorageValue::Float(now_ms() as f64)]),
        )?;
        json_text(r#"{"destroyed":true}"#.to_string())
    }

    /// A deleted instance: a connect gets a socket closed with 4004, a
    /// repeated destroy succeeds, anything else is `404`.
    fn refuse_deleted(&self, req: &Request, path: &str) -> Result<Response> {
        match path {
            internal::PATH_SYNC => {
                let pair = WebSocketPair::new()?;
                pair.server.accept()?;
                let _ = pair
                    .server
                    .close(Some(CLOSE_INSTANCE_NOT_FOUND), Some("Instance not found"));
                Response::from_websocket(pair.client)
            }
            internal::PATH_DESTROY => json_text(r#"{"destroyed":true}"#.to_string()),
            internal::PATH_RECHECK => json_response(&RecheckResult::default()),
            internal::PATH_STORAGE => json_text(format!(
                r#"{{"tables":["{TOMBSTONE_TABLE}"],"deleted":true}}"#
            )),
            _ => {
                let _ = req;
                Response::error(r#"{"error":"Instance not found"}"#, 404)
            }
        }
    }

    /// What the object holds, for operators: its tables and whether an
    /// alarm is set (it writes nothing to answer).
    async fn storage_report(&self) -> Result<Response> {
        let names: Vec<String> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                None,
            )?
            .to_array::<TableName>()?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let alarm = self.state.storage().get_alarm().await?.is_some();
        json_response(&serde_json::json!({
            "tables": names,
            "alarm": alarm,
            "deleted": false,
        }))
    }
}

fn parse_body<'a, T: serde::Deserialize<'a>>(body: &'a str) -> Option<T> {
    serde_json::from_str(body).ok()
}

fn json_text(body: String) -> Result<Response> {
    let mut resp = Response::ok(body)?;
    resp.headers_mut().set("Content-Type", "application/json")?;
    Ok(resp)
}

fn json_response<T: serde::Serialize>(body: &T) -> Result<Response> {
    Response::from_json(body)
}

/// A refused internal call: 422 with the protocol code, or 500 (logged)
/// for an internal failure.
fn refusal(e: &ProtocolError) -> Result<Response> {
    let status = match e.code {
        ErrorCode::Internal => {
            crate::log_error!("instance error: {}", e.message);
            500
        }
        ErrorCode::PreconditionFailed => 412,
        _ => 422,
    };
    Ok(Response::from_json(&Refusal {
        error: e.message.clone(),
        code: e.code.as_str().to_string(),
    })?
    .with_status(status))
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// A random id for a socket, unique enough within one object.
/// A socket's id within the object, from the CSPRNG (a predictable id
/// would let one socket's queue be confused with another's).
fn connection_id() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    }
    u32::from_le_bytes(bytes)
}

impl Instance {
    /// Sets a socket's kind from its first frame (stored once).
    fn classify(&self, ws: &WebSocket, mut session: Session, kind: SocketKind) -> Session {
        if session.kind.is_unknown() {
            session.kind = kind;
            if let Err(e) = self.attachments.write(ws, &session) {
                crate::log_error!("socket attachment: {e}");
            }
        }
        session
    }
}

fn send(ws: &WebSocket, text: &str) {
    let _ = ws.send_with_str(text);
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's WebSocket, to call `send` with an existing JS string.
    type JsSocket;
    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_value(this: &JsSocket, data: &JsValue) -> std::result::Result<(), JsValue>;
}

fn send_js(ws: &WebSocket, data: &JsValue) {
    let raw: &worker::web_sys::WebSocket = ws.as_ref();
    let _ = raw.unchecked_ref::<JsSocket>().send_value(data);
}
