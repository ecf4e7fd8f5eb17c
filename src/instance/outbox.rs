//! The instance's webhook outbox (webhooks-out.md, "delivery"): the
//! webhooks the Worker configured, and the deliveries queued for them in
//! the object's own SQLite. Pure: it runs its SQL through [`Sql`], which
//! the object implements over its storage (`outbox_sql`) and the tests
//! over rusqlite; sending is the object's (`hooks`).
//!
//! - `enqueue` runs inside `publish`, in the same synchronous turn as the
//!   change, so the change and its deliveries commit together.
//! - Order per webhook: only the oldest pending delivery of a webhook (its
//!   head) is ever sent, and one at a time; a failed head is retried on
//!   the backoff schedule while the rest wait behind it.
//! - Coalescing: a `key.updated` removes a pending, not in-flight
//!   `key.updated` of the same key and webhook and is appended at the end.
//! - Cap: past `cap` pending deliveries the oldest are `failed` ("queue full").
//! - A webhook with `DEACTIVATE_AFTER_FAILURES` consecutive failed attempts
//!   is set inactive; its pending deliveries are then `failed`.
//!
//! Tables are created only when a configuration with at least one webhook
//! arrives: an instance without webhooks gets none.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::store::{SqlArg, StoreError};
use crate::webhooks_out::backoff::{next_attempt, DEACTIVATE_AFTER_FAILURES};
use crate::webhooks_out::events::{wants, KEY_UPDATED};
use crate::webhooks_out::payload::{body, parse_frame};

/// A value read back from SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Runs one statement with positional `?` arguments; every row it returns.
pub trait Sql {
    fn query(&self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Vec<Val>>, StoreError>;
}

/// Deliveries that may be pending at once in one instance.
pub const DEFAULT_CAP: i64 = 10_000;
/// Finished deliveries kept per webhook for the delivery log.
pub const LOG_KEPT: i64 = 100;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

// --- SQL --------------------------------------------------------------------

pub const HOOKS_TABLE: &str = "webhook_hooks";
pub const CREATE_HOOKS: &str = "CREATE TABLE IF NOT EXISTS webhook_hooks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT NOT NULL,          -- JSON array of event names
  key_prefix TEXT,
  secret TEXT NOT NULL,          -- whsec_…
  active INTEGER NOT NULL,
  failures INTEGER NOT NULL DEFAULT 0  -- consecutive failed attempts
)";
pub const CREATE_DELIVERIES: &str = "CREATE TABLE IF NOT EXISTS webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,              -- msg_…, the webhook-id header
  webhook_id TEXT NOT NULL,
  event TEXT NOT NULL,
  key TEXT,
  body TEXT NOT NULL,            -- emptied once finished
  status TEXT NOT NULL,          -- pending | delivered | failed
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status_code INTEGER,
  last_error TEXT,
  next_attempt_at INTEGER,       -- ms; NULL once finished
  created_at INTEGER NOT NULL    -- ms
)";
pub const CREATE_ORDER_INDEX: &str = "CREATE INDEX IF NOT EXISTS webhook_deliveries_order \
     ON webhook_deliveries(webhook_id, status, seq)";
pub const CREATE_KEY_INDEX: &str = "CREATE INDEX IF NOT EXISTS webhook_deliveries_key \
     ON webhook_deliveries(webhook_id, key) WHERE status = 'pending'";
pub const CREATE_STATUS_INDEX: &str = "CREATE INDEX IF NOT EXISTS webhook_deliveries_status \
     ON webhook_deliveries(status, seq)";
pub const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS webhook_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)";

pub const HAS_HOOKS_TABLE: &str =
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'webhook_hooks'";
pub const SELECT_HOOKS: &str =
    "SELECT id, url, events, key_prefix, secret, active, failures FROM webhook_hooks ORDER BY id";
pub const UPSERT_HOOK: &str = "INSERT INTO webhook_hooks \
     (id, url, events, key_prefix, secret, active, failures) VALUES (?, ?, ?, ?, ?, ?, 0) \
     ON CONFLICT(id) DO UPDATE SET url = excluded.url, events = excluded.events, \
     key_prefix = excluded.key_prefix, secret = excluded.secret, \
     failures = CASE WHEN excluded.active = 1 AND active = 0 THEN 0 ELSE failures END, \
     active = excluded.active";
pub const DELETE_HOOK: &str = "DELETE FROM webhook_hooks WHERE id = ?";
pub const UPDATE_HOOK_STATE: &str =
    "UPDATE webhook_hooks SET failures = ?, active = ? WHERE id = ?";
pub const DELETE_HOOK_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = ?";
/// `?` error, `?` webhook, `?` the seq in flight (or -1), which is left alone.
pub const FAIL_HOOK_PENDING: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     last_error = ?, next_attempt_at = NULL, body = '' \
     WHERE webhook_id = ? AND status = 'pending' AND seq <> ?";
pub const SELECT_VERSION: &str = "SELECT value FROM webhook_meta WHERE name = 'version'";
pub const UPSERT_VERSION: &str = "INSERT INTO webhook_meta (name, value) VALUES ('version', ?) \
     ON CONFLICT(name) DO UPDATE SET value = excluded.value";

/// `?` webhook, `?` key, `?` the seq in flight (or -1).
pub const COALESCE: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND key = ? \
     AND status = 'pending' AND event = 'key.updated' AND seq <> ? RETURNING seq";
pub const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
     (id, webhook_id, event, key, body, status, attempts, next_attempt_at, created_at) \
     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)";
pub const COUNT_PENDING: &str = "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'";
/// `?` how many of the oldest pending deliveries overflow.
pub const OVERFLOW: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     last_error = 'queue full', next_attempt_at = NULL, body = '' WHERE seq IN \
     (SELECT seq FROM webhook_deliveries WHERE status = 'pending' ORDER BY seq LIMIT ?)";
pub const SELECT_HEAD: &str = "SELECT seq, id, body, attempts, next_attempt_at, created_at \
     FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending' ORDER BY seq LIMIT 1";
/// `?` status code or NULL, `?` seq.
pub const MARK_DELIVERED: &str = "UPDATE webhook_deliveries SET status = 'delivered', \
     attempts = attempts + 1, last_status_code = ?, last_error = NULL, \
     next_attempt_at = NULL, body = '' WHERE seq = ? AND status = 'pending'";
/// `?` status code, `?` error, `?` next attempt (ms), `?` seq.
pub const MARK_RETRY: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, \
     last_status_code = ?, last_error = ?, next_attempt_at = ? WHERE seq = ? AND status = 'pending'";
/// `?` status code, `?` error, `?` seq.
pub const MARK_FAILED: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     attempts = attempts + 1, last_status_code = ?, last_error = ?, next_attempt_at = NULL, \
     body = '' WHERE seq = ? AND status = 'pending'";
/// Keeps the newest `LOG_KEPT` finished deliveries of a webhook:
/// `?` webhook, `?` webhook, `?` how many to keep.
pub const PRUNE: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = ? \
     AND status <> 'pending' AND seq < (SELECT seq FROM webhook_deliveries \
     WHERE webhook_id = ? AND status <> 'pending' ORDER BY seq DESC LIMIT 1 OFFSET ?)";
/// `?` webhook, `?` limit: newest first.
pub const SELECT_LOG: &str = "SELECT id, event, status, attempts, last_status_code, last_error, \
     next_attempt_at, created_at FROM webhook_deliveries WHERE webhook_id = ? \
     ORDER BY seq DESC LIMIT ?";

// --- Types ------------------------------------------------------------------

/// One webhook as the Worker configures it (D1 is the authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookConfig {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub key_prefix: Option<String>,
    pub secret: String,
    pub active: bool,
}

/// Every webhook of the instance, replacing what the object had, with a
/// version (ms) so that an older configuration never overwrites a newer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Configuration {
    pub version: i64,
    pub webhooks: Vec<HookConfig>,
}

#[derive(Debug, Clone)]
struct Hook {
    config: HookConfig,
    failures: i64,
}

/// A delivery to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub seq: i64,
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    pub body: String,
    pub attempts: i64,
    pub created_at: i64,
}

/// How an attempt went: a `2xx` is `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What recording an attempt did, for D1 (`last_status`, `is_active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub webhook_id: String,
    pub status_code: Option<u16>,
    /// The webhook reached the failure limit and is now inactive.
    pub deactivated: bool,
}

/// One entry of the delivery log (times in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: String,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
}

pub struct Outbox {
    hooks: RefCell<Vec<Hook>>,
    /// Whether any webhook is active: the one check `publish` makes.
    active: Cell<bool>,
    tables: Cell<bool>,
    /// Pending deliveries, counted once and then kept exact.
    pending: Cell<Option<i64>>,
    /// The delivery being sent per webhook (memory only: after a restart
    /// nothing is in flight, and the head is simply sent again).
    in_flight: RefCell<HashMap<String, i64>>,
    cap: i64,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::with_cap(DEFAULT_CAP)
    }
}

fn err(what: &str) -> StoreError {
    StoreError(format!("webhook outbox: unexpected {what}"))
}

fn first_int(rows: Vec<Vec<Val>>) -> Option<i64> {
    rows.into_iter().next()?.into_iter().next()?.int()
}

impl Outbox {
    pub fn with_cap(cap: i64) -> Self {
        Outbox {
            hooks: RefCell::new(Vec::new()),
            active: Cell::new(false),
            tables: Cell::new(false),
            pending: Cell::new(None),
            in_flight: RefCell::new(HashMap::new()),
            cap,
        }
    }

    /// The object's outbox as stored: nothing (and nothing read beyond one
    /// catalogue lookup) when the instance never had webhooks.
    pub fn load(sql: &impl Sql) -> Result<Self, StoreError> {
        let outbox = Outbox::default();
        if !sql.query(HAS_HOOKS_TABLE, &[])?.is_empty() {
            outbox.tables.set(true);
            outbox.reload(sql)?;
        }
        Ok(outbox)
    }

    /// Whether any webhook is active (changes are queued only then).
    pub fn is_active(&self) -> bool {
        self.active.get()
    }

    /// Forgets everything (the instance was deleted with its storage).
    pub fn reset(&self) {
        self.hooks.borrow_mut().clear();
        self.active.set(false);
        self.tables.set(false);
        self.pending.set(None);
        self.in_flight.borrow_mut().clear();
    }

    fn reload(&self, sql: &impl Sql) -> Result<(), StoreError> {
        let mut hooks = Vec::new();
        for row in sql.query(SELECT_HOOKS, &[])? {
            let mut cols = row.into_iter();
            let mut next = || cols.next().ok_or_else(|| err("hook row"));
            let id = next()?.text().ok_or_else(|| err("hook id"))?;
            let url = next()?.text().ok_or_else(|| err("hook url"))?;
            let events = next()?.text().ok_or_else(|| err("hook events"))?;
            let key_prefix = next()?.text();
            let secret = next()?.text().ok_or_else(|| err("hook secret"))?;
            let active = next()?.int().unwrap_or(0) != 0;
            let failures = next()?.int().unwrap_or(0);
            hooks.push(Hook {
                config: HookConfig {
                    id,
                    url,
                    events: serde_json::from_str(&events).unwrap_or_default(),
                    key_prefix,
                    secret,
                    active,
                },
                failures,
            });
        }
        self.active.set(hooks.iter().any(|h| h.config.active));
        *self.hooks.borrow_mut() = hooks;
        Ok(())
    }

    fn in_flight_seq(&self, webhook_id: &str) -> i64 {
        self.in_flight
            .borrow()
            .get(webhook_id)
            .copied()
            .unwrap_or(-1)
    }

    /// Applies a configuration from the Worker; false when it was older
    /// than the one the object has (or changed nothing: no webhooks, no
    /// tables).
    pub fn configure(&self, sql: &impl Sql, config: &Configuration) -> Result<bool, StoreError> {
        if !self.tables.get() {
            if config.webhooks.is_empty() {
                return Ok(false);
            }
            for create in [
                CREATE_HOOKS,
                CREATE_DELIVERIES,
                CREATE_ORDER_INDEX,
                CREATE_KEY_INDEX,
                CREATE_STATUS_INDEX,
                CREATE_META,
            ] {
                sql.query(create, &[])?;
            }
            self.tables.set(true);
        }
        if first_int(sql.query(SELECT_VERSION, &[])?).is_some_and(|v| v >= config.version) {
            return Ok(false);
        }
        let gone: Vec<String> = self
            .hooks
            .borrow()
            .iter()
            .map(|h| h.config.id.clone())
            .filter(|id| !config.webhooks.iter().any(|w| &w.id == id))
            .collect();
        for id in &gone {
            sql.query(DELETE_HOOK, &[SqlArg::Text(id)])?;
            sql.query(DELETE_HOOK_DELIVERIES, &[SqlArg::Text(id)])?;
        }
        for hook in &config.webhooks {
            let events = serde_json::to_string(&hook.events).unwrap_or_else(|_| "[]".into());
            sql.query(
                UPSERT_HOOK,
                &[
                    SqlArg::Text(&hook.id),
                    SqlArg::Text(&hook.url),
                    SqlArg::Text(&events),
                    hook.key_prefix.as_deref().into(),
                    SqlArg::Text(&hook.secret),
                    hook.active.into(),
                ],
            )?;
            if !hook.active {
                self.fail_pending(sql, &hook.id, "webhook inactive")?;
            }
        }
        sql.query(UPSERT_VERSION, &[SqlArg::Int(config.version)])?;
        self.pending.set(None);
        self.reload(sql)?;
        Ok(true)
    }

    fn fail_pending(&self, sql: &impl Sql, webhook_id: &str, why: &str) -> Result<(), StoreError> {
        let in_flight = self.in_flight_seq(webhook_id);
        sql.query(
            FAIL_HOOK_PENDING,
            &[
                SqlArg::Text(why),
                SqlArg::Text(webhook_id),
                SqlArg::Int(in_flight),
            ],
        )?;
        self.pending.set(None);
        Ok(())
    }

    /// Queues the deliveries of one applied change (its broadcast frame);
    /// how many. `new_id` makes delivery ids.
    pub fn enqueue(
        &self,
        sql: &impl Sql,
        instance_id: &str,
        frame: &str,
        now: i64,
        mut new_id: impl FnMut() -> String,
    ) -> Result<usize, StoreError> {
        if !self.active.get() {
            return Ok(0);
        }
        let Some(change) = parse_frame(frame) else {
            return Ok(0);
        };
        let mut queued = 0;
        for hook in self.hooks.borrow().iter() {
            let h = &hook.config;
            if !h.active
                || !wants(
                    &h.events,
                    h.key_prefix.as_deref(),
                    change.event,
                    change.key.as_deref(),
                )
            {
                continue;
            }
            if let (KEY_UPDATED, Some(key)) = (change.event, change.key.as_deref()) {
                let removed = sql.query(
                    COALESCE,
                    &[
                        SqlArg::Text(&h.id),
                        SqlArg::Text(key),
                        SqlArg::Int(self.in_flight_seq(&h.id)),
                    ],
                )?;
                self.count_pending(sql, -(removed.len() as i64))?;
            }
            let id = new_id();
            sql.query(
                INSERT_DELIVERY,
                &[
                    SqlArg::Text(&id),
                    SqlArg::Text(&h.id),
                    SqlArg::Text(change.event),
                    change.key.as_deref().into(),
                    SqlArg::Text(&body(&id, instance_id, &change)),
                    SqlArg::Int(now),
                    SqlArg::Int(now),
                ],
            )?;
            self.count_pending(sql, 1)?;
            queued += 1;
        }
        let pending = self.count_pending(sql, 0)?;
        if pending > self.cap {
            sql.query(OVERFLOW, &[SqlArg::Int(pending - self.cap)])?;
            self.pending.set(Some(self.cap));
        }
        Ok(queued)
    }

    /// Adjusts (and first, if needed, counts) the pending deliveries.
    fn count_pending(&self, sql: &impl Sql, delta: i64) -> Result<i64, StoreError> {
        let n = match self.pending.get() {
            Some(n) => n + delta,
            // Counting now includes the change just made.
            None => first_int(sql.query(COUNT_PENDING, &[])?).unwrap_or(0),
        };
        self.pending.set(Some(n.max(0)));
        Ok(n.max(0))
    }

    /// The heads of the active webhooks that are due at `now`, each now in
    /// flight until [`Outbox::record`] is called for it.
    pub fn due(&self, sql: &impl Sql, now: i64) -> Result<Vec<Send>, StoreError> {
        let mut out = Vec::new();
        for hook in self.hooks.borrow().iter().filter(|h| h.config.active) {
            let h = &hook.config;
            if self.in_flight.borrow().contains_key(&h.id) {
                continue;
            }
            let Some((head, next)) = self.head(sql, &h.id)? else {
                continue;
            };
            if next > now {
                continue;
            }
            let send = Send {
                webhook_id: h.id.clone(),
                url: h.url.clone(),
                secret: h.secret.clone(),
                ..head
            };
            self.in_flight.borrow_mut().insert(h.id.clone(), send.seq);
            out.push(send);
        }
        Ok(out)
    }

    /// When the next delivery not in flight is due (ms), if any.
    pub fn next_due(&self, sql: &impl Sql) -> Result<Option<i64>, StoreError> {
        let mut next: Option<i64> = None;
        for hook in self.hooks.borrow().iter().filter(|h| h.config.active) {
            if self.in_flight.borrow().contains_key(&hook.config.id) {
                continue;
            }
            if let Some((_, at)) = self.head(sql, &hook.config.id)? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    fn head(&self, sql: &impl Sql, webhook_id: &str) -> Result<Option<(Send, i64)>, StoreError> {
        let Some(row) = sql
            .query(SELECT_HEAD, &[SqlArg::Text(webhook_id)])?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let mut cols = row.into_iter();
        let mut next = || cols.next().ok_or_else(|| err("delivery row"));
        let seq = next()?.int().ok_or_else(|| err("seq"))?;
        let id = next()?.text().ok_or_else(|| err("delivery id"))?;
        let body = next()?.text().unwrap_or_default();
        let attempts = next()?.int().unwrap_or(0);
        let next_at = next()?.int().unwrap_or(0);
        let created_at = next()?.int().unwrap_or(0);
        Ok(Some((
            Send {
                seq,
                id,
                webhook_id: webhook_id.to_string(),
                url: String::new(),
                secret: String::new(),
                body,
                attempts,
                created_at,
            },
            next_at,
        )))
    }

    /// Records how sending `send` went at `now`; `scale` shrinks the
    /// backoff (development only).
    pub fn record(
        &self,
        sql: &impl Sql,
        send: &Send,
        attempt: &Attempt,
        now: i64,
        scale: f64,
    ) -> Result<Recorded, StoreError> {
        {
            let mut in_flight = self.in_flight.borrow_mut();
            if in_flight.get(&send.webhook_id) == Some(&send.seq) {
                in_flight.remove(&send.webhook_id);
            }
        }
        let code = attempt.status_code.map(i64::from);
        let error = attempt.error.as_deref();
        let finished = if attempt.ok() {
            sql.query(MARK_DELIVERED, &[code.into(), SqlArg::Int(send.seq)])?;
            true
        } else {
            let failures = u32::try_from(send.attempts + 1).unwrap_or(u32::MAX);
            match next_attempt(send.created_at, now, failures, scale) {
                Some(at) => {
                    sql.query(
                        MARK_RETRY,
                        &[
                            code.into(),
                            error.into(),
                            SqlArg::Int(at),
                            SqlArg::Int(send.seq),
                        ],
                    )?;
                    false
                }
                None => {
                    sql.query(
                        MARK_FAILED,
                        &[code.into(), error.into(), SqlArg::Int(send.seq)],
                    )?;
                    true
                }
            }
        };
        if finished {
            self.pending.set(None);
            sql.query(
                PRUNE,
                &[
                    SqlArg::Text(&send.webhook_id),
                    SqlArg::Text(&send.webhook_id),
                    SqlArg::Int(LOG_KEPT - 1),
                ],
            )?;
        }
        let mut recorded = Recorded {
            webhook_id: send.webhook_id.clone(),
            status_code: attempt.status_code,
            deactivated: false,
        };
        let state = {
            let mut hooks = self.hooks.borrow_mut();
            let Some(hook) = hooks.iter_mut().find(|h| h.config.id == send.webhook_id) else {
                return Ok(recorded);
            };
            hook.failures = if attempt.ok() { 0 } else { hook.failures + 1 };
            if hook.config.active && hook.failures >= DEACTIVATE_AFTER_FAILURES {
                hook.config.active = false;
                recorded.deactivated = true;
            }
            (hook.failures, hook.config.active)
        };
        sql.query(
            UPDATE_HOOK_STATE,
            &[
                SqlArg::Int(state.0),
                state.1.into(),
                SqlArg::Text(&send.webhook_id),
            ],
        )?;
        if recorded.deactivated {
            self.fail_pending(sql, &send.webhook_id, "webhook deactivated")?;
            self.active
                .set(self.hooks.borrow().iter().any(|h| h.config.active));
        }
        Ok(recorded)
    }

    /// A webhook's delivery log, newest first.
    pub fn log(
        &self,
        sql: &impl Sql,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        if !self.tables.get() {
            return Ok(Vec::new());
        }
        let rows = sql.query(SELECT_LOG, &[SqlArg::Text(webhook_id), SqlArg::Int(limit)])?;
        let seconds = |ms: i64| ms.div_euclid(1000);
        rows.into_iter()
            .map(|row| {
                let mut cols = row.into_iter();
                let mut next = || cols.next().ok_or_else(|| err("log row"));
                Ok(DeliveryView {
                    id: next()?.text().unwrap_or_default(),
                    event: next()?.text().unwrap_or_default(),
                    status: next()?.text().unwrap_or_default(),
                    attempts: next()?.int().unwrap_or(0),
                    last_status_code: next()?.int(),
                    last_error: next()?.text(),
                    next_attempt_at: next()?.int().map(seconds),
                    created_at: seconds(next()?.int().unwrap_or(0)),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::sqlite_store::SqliteStore;
    use rusqlite::types::ValueRef;

    impl Sql for SqliteStore {
        fn query(&self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Vec<Val>>, StoreError> {
            let mut stmt = self
                .conn
                .prepare(sql)
                .map_err(|e| StoreError(format!("{e}: {sql}")))?;
            let n = stmt.column_count();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(|e| StoreError(e.to_string()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| StoreError(e.to_string()))? {
                let mut vals = Vec::with_capacity(n);
                for i in 0..n {
                    vals.push(
                        match row.get_ref(i).map_err(|e| StoreError(e.to_string()))? {
                            ValueRef::Null => Val::Null,
                            ValueRef::Integer(i) => Val::Int(i),
                            ValueRef::Real(f) => Val::Int(f as i64),
                            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(_) => Val::Null,
                        },
                    );
                }
                out.push(vals);
            }
            Ok(out)
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn hook(id: &str) -> HookConfig {
        HookConfig {
            id: id.into(),
            url: format!("https://example.com/{id}"),
            events: vec![
                "key.updated".into(),
                "key.deleted".into(),
                "instance.cleared".into(),
            ],
            key_prefix: None,
            secret: SECRET.into(),
            active: true,
        }
    }

    fn config(version: i64, hooks: Vec<HookConfig>) -> Configuration {
        Configuration {
            version,
            webhooks: hooks,
        }
    }

    fn set(key: &str, value: &str, ts: i64) -> String {
        format!(
            r#"{{"type":"key_updated","key":"{key}","value":"{value}","attributes":{{}},"updatedBy":"u","timestamp":{ts}}}"#
        )
    }

    struct Fixture {
        db: SqliteStore,
        outbox: Outbox,
        ids: Cell<u32>,
    }

    impl Fixture {
        fn new(hooks: Vec<HookConfig>) -> Fixture {
            Fixture::with_cap(hooks, DEFAULT_CAP)
        }

        fn with_cap(hooks: Vec<HookConfig>, cap: i64) -> Fixture {
            let f = Fixture {
                db: SqliteStore::in_memory(),
                outbox: Outbox::with_cap(cap),
                ids: Cell::new(0),
            };
            if !hooks.is_empty() {
                assert!(f.outbox.configure(&f.db, &config(1, hooks)).unwrap());
            }
            f
        }

        fn enqueue(&self, frame: &str, now: i64) -> usize {
            self.outbox
                .enqueue(&self.db, "inst", frame, now, || {
                    self.ids.set(self.ids.get() + 1);
                    format!("msg_{}", self.ids.get())
                })
                .unwrap()
        }

        fn due(&self, now: i64) -> Vec<Send> {
            self.outbox.due(&self.db, now).unwrap()
        }

        fn record(&self, send: &Send, code: Option<u16>, now: i64) -> Recorded {
            let attempt = Attempt {
                status_code: code,
                error: code.is_none().then(|| "connection refused".to_string()),
            };
            self.outbox
                .record(&self.db, send, &attempt, now, 1.0)
                .unwrap()
        }

        fn tables(&self) -> Vec<String> {
            self.db
                .query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                    &[],
                )
                .unwrap()
                .into_iter()
                .filter_map(|r| r.into_iter().next().and_then(Val::text))
                .collect()
        }

        fn log(&self, hook: &str) -> Vec<DeliveryView> {
            self.outbox.log(&self.db, hook, 100).unwrap()
        }
    }

    fn value_of(send: &Send) -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_str(&send.body).unwrap();
        body["data"]["value"].clone()
    }

    #[test]
    fn no_webhooks_no_tables_no_work() {
        let f = Fixture::new(vec![]);
        assert!(!f.outbox.is_active());
        assert!(!f.outbox.configure(&f.db, &config(1, vec![])).unwrap());
        assert_eq!(f.enqueue(&set("a", "1", 1), 1), 0);
        assert!(f.tables().is_empty());
        assert!(Outbox::load(&f.db).unwrap().hooks.borrow().is_empty());
    }

    #[test]
    fn a_change_is_queued_and_sent_in_order() {
        let f = Fixture::new(vec![hook("w1")]);
        assert!(f.outbox.is_active());
        assert_eq!(f.enqueue(&set("a", "1", 10), 10), 1);
        assert_eq!(
            f.enqueue(
                r#"{"type":"key_deleted","key":"b","deletedBy":"u","timestamp":11}"#,
                11
            ),
            1
        );
        let sends = f.due(20);
        assert_eq!(sends.len(), 1, "one at a time per webhook");
        assert_eq!(sends[0].id, "msg_1");
        assert_eq!(sends[0].url, "https://example.com/w1");
        let body: serde_json::Value = serde_json::from_str(&sends[0].body).unwrap();
        assert_eq!(body["id"], "msg_1");
        assert_eq!(body["type"], "key.updated");
        assert_eq!(body["instanceId"], "inst");
        // In flight: nothing more until it is recorded.
        assert!(f.due(20).is_empty());
        assert_eq!(f.outbox.next_due(&f.db).unwrap(), None);
        f.record(&sends[0], Some(200), 21);
        let next = f.due(21);
        assert_eq!(next[0].id, "msg_2");
        f.record(&next[0], Some(204), 22);
        assert!(f.due(1_000_000).is_empty());
        let log = f.log("w1");
        assert_eq!(
            log.iter()
                .map(|d| (d.id.as_str(), d.status.as_str()))
                .collect::<Vec<_>>(),
            [("msg_2", "delivered"), ("msg_1", "delivered")]
        );
        assert_eq!(log[0].last_status_code, Some(204));
        assert_eq!(log[0].attempts, 1);
    }

    #[test]
    fn a_failure_is_retried_on_schedule_and_holds_the_rest() {
        let f = Fixture::new(vec![hook("w1")]);
        f.enqueue(&set("a", "1", 0), 0);
        f.enqueue(&set("b", "2", 0), 0);
        let first = f.due(0).remove(0);
        f.record(&first, Some(500), 1_000);
        // Retried after 5 s; the second waits behind it.
        assert!(f.due(5_999).is_empty());
        assert_eq!(f.outbox.next_due(&f.db).unwrap(), Some(6_000));
        let again = f.due(6_000).remove(0);
        assert_eq!(again.id, first.id);
        assert_eq!(again.attempts, 1);
        f.record(&again, None, 6_000);
        assert_eq!(f.outbox.next_due(&f.db).unwrap(), Some(36_000));
        let third = f.due(36_000).remove(0);
        f.record(&third, Some(200), 36_000);
        let log = f.log("w1");
        assert_eq!(log[1].id, first.id);
        assert_eq!(log[1].attempts, 3);
        assert_eq!(log[1].status, "delivered");
        assert_eq!(f.due(36_000)[0].id, "msg_2");
    }

    #[test]
    fn a_delivery_fails_after_a_day() {
        let f = Fixture::new(vec![hook("w1")]);
        f.enqueue(&set("a", "1", 0), 0);
        let mut now = 0;
        let mut attempts = 0;
        while let Some(send) = f.due(now).pop() {
            f.record(&send, Some(503), now);
            attempts += 1;
            match f.outbox.next_due(&f.db).unwrap() {
                Some(at) => now = at,
                None => break,
            }
        }
        assert_eq!(attempts, 18);
        let log = f.log("w1");
        assert_eq!(log[0].status, "failed");
        assert_eq!(log[0].next_attempt_at, None);
        assert_eq!(log[0].last_status_code, Some(503));
    }

    #[test]
    fn a_hot_key_is_coalesced_but_not_while_in_flight() {
        let f = Fixture::new(vec![hook("w1")]);
        f.enqueue(&set("hot", "0", 0), 0);
        let sending = f.due(0).remove(0);
        for i in 1..=1000 {
            f.enqueue(&set("hot", &i.to_string(), i), i);
            f.enqueue(&set("other", "x", i), i);
        }
        f.record(&sending, Some(200), 2_000);
        assert_eq!(value_of(&sending), "0");
        let mut values = Vec::new();
        let mut keys = Vec::new();
        while let Some(send) = f.due(3_000).pop() {
            let body: serde_json::Value = serde_json::from_str(&send.body).unwrap();
            keys.push(body["data"]["key"].as_str().unwrap().to_string());
            values.push(value_of(&send));
            f.record(&send, Some(200), 3_000);
        }
        // Each key's queued update was replaced by its newest, appended at
        // the end: two deliveries, the latest values.
        assert_eq!(keys, ["hot", "other"]);
        assert_eq!(values[0], "1000");
    }

    #[test]
    fn deletes_are_not_coalesced_and_prefix_and_events_filter() {
        let mut only_deletes = hook("d");
        only_deletes.events = vec!["key.deleted".into()];
        let mut prefixed = hook("p");
        prefixed.key_prefix = Some("user/".into());
        let f = Fixture::new(vec![only_deletes, prefixed]);
        let del = |k: &str, t: i64| {
            format!(r#"{{"type":"key_deleted","key":"{k}","deletedBy":"u","timestamp":{t}}}"#)
        };
        assert_eq!(f.enqueue(&set("user/1", "a", 1), 1), 1);
        assert_eq!(f.enqueue(&set("other", "a", 1), 1), 0);
        assert_eq!(f.enqueue(&del("user/1", 2), 2), 2);
        assert_eq!(f.enqueue(&del("user/1", 3), 3), 2);
        assert_eq!(
            f.enqueue(r#"{"type":"cleared","clearedBy":"u","timestamp":4}"#, 4),
            1,
            "cleared reaches the prefixed webhook; the other wants deletes only"
        );
        assert_eq!(f.log("d").len(), 2);
        assert_eq!(f.log("p").len(), 4);
    }

    #[test]
    fn the_cap_fails_the_oldest() {
        let f = Fixture::with_cap(vec![hook("w1")], 5);
        for i in 0..8 {
            f.enqueue(&set(&format!("k{i}"), "v", i), i);
        }
        let log = f.log("w1");
        let failed: Vec<&str> = log
            .iter()
            .filter(|d| d.status == "failed")
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(failed, ["msg_3", "msg_2", "msg_1"]);
        assert!(log
            .iter()
            .filter(|d| d.status == "failed")
            .all(|d| d.last_error.as_deref() == Some("queue full")));
        assert_eq!(f.due(100)[0].id, "msg_4");
    }

    #[test]
    fn fifty_failures_deactivate() {
        let f = Fixture::new(vec![hook("w1")]);
        for i in 0..3 {
            f.enqueue(&set(&format!("k{i}"), "v", 0), 0);
        }
        let mut now = 0;
        let mut last = None;
        for _ in 0..50 {
            let send = f.due(now).pop().expect("a delivery is due");
            last = Some(f.record(&send, Some(500), now));
            now = f.outbox.next_due(&f.db).unwrap().unwrap_or(now);
        }
        let last = last.unwrap();
        assert!(last.deactivated);
        assert!(!f.outbox.is_active());
        assert!(f.due(i64::MAX).is_empty());
        assert_eq!(f.enqueue(&set("k", "v", now), now), 0);
        assert!(f.log("w1").iter().all(|d| d.status == "failed"));
        // Survives a restart, and the Worker turning it on again resets it.
        let reloaded = Outbox::load(&f.db).unwrap();
        assert!(!reloaded.is_active());
        assert!(reloaded
            .configure(&f.db, &config(2, vec![hook("w1")]))
            .unwrap());
        assert!(reloaded.is_active());
        assert_eq!(reloaded.hooks.borrow()[0].failures, 0);
    }

    #[test]
    fn configuration_versions_deletion_and_inactive_hooks() {
        let f = Fixture::new(vec![hook("w1"), hook("w2")]);
        f.enqueue(&set("a", "1", 0), 0);
        // An older configuration is ignored.
        assert!(!f.outbox.configure(&f.db, &config(0, vec![])).unwrap());
        assert_eq!(f.outbox.hooks.borrow().len(), 2);
        // Deleting w2 drops its deliveries; w1 inactive fails its pending.
        let mut off = hook("w1");
        off.active = false;
        assert!(f.outbox.configure(&f.db, &config(5, vec![off])).unwrap());
        assert!(f.log("w2").is_empty());
        assert_eq!(f.log("w1")[0].status, "failed");
        assert_eq!(
            f.log("w1")[0].last_error.as_deref(),
            Some("webhook inactive")
        );
        assert!(!f.outbox.is_active());
        assert_eq!(f.enqueue(&set("a", "2", 1), 1), 0);
        // After a restart the object knows its webhooks.
        let reloaded = Outbox::load(&f.db).unwrap();
        assert_eq!(reloaded.hooks.borrow()[0].config.id, "w1");
        assert!(!reloaded.configure(&f.db, &config(5, vec![])).unwrap());
    }

    #[test]
    fn restart_resends_what_was_in_flight() {
        let f = Fixture::new(vec![hook("w1")]);
        f.enqueue(&set("a", "1", 0), 0);
        let sent = f.due(0).remove(0);
        let after_restart = Outbox::load(&f.db).unwrap();
        let again = after_restart.due(&f.db, 1).unwrap();
        assert_eq!(again[0].id, sent.id);
    }

    #[test]
    fn the_log_keeps_the_newest_hundred_finished() {
        let f = Fixture::new(vec![hook("w1")]);
        for i in 0..120 {
            f.enqueue(&set(&format!("k{i}"), "v", i), i);
            let send = f.due(i).remove(0);
            f.record(&send, Some(200), i);
        }
        let log = f.outbox.log(&f.db, "w1", 1000).unwrap();
        assert_eq!(log.len(), LOG_KEPT as usize);
        assert_eq!(log[0].id, "msg_120");
    }
}
