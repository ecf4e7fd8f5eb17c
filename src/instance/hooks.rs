//! The object's side of outbound webhooks (docs/webhooks.md): the outbox
//! over the object's SQLite, queued from `publish` in the same synchronous
//! turn as the change, and sent from the alarm. Platform glue only; the
//! rules are in `outbox` and `webhooks_out`.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::time::Duration;

use worker::{Env, Response, Result, SqlStorage, State};

use super::outbox::{Configuration, Outbox, Recorded, Send};
use super::outbox_sql::OutboxSql;
use crate::db;
use crate::webhooks_out::backoff::parse_scale;
use crate::webhooks_out::payload::delivery_id;
use crate::webhooks_out::send::post;

/// How long one alarm keeps sending before it hands over to the next.
const ALARM_BUDGET_MS: i64 = 20_000;

pub struct Hooks {
    sql: OutboxSql,
    outbox: Outbox,
    /// The backoff scale: 1 except in development with `WEBHOOK_BACKOFF_SCALE`.
    scale: f64,
    /// An alarm this object asked for at or before this time (ms) and that
    /// has not run yet: further changes need not ask again.
    alarm_at: Cell<Option<i64>>,
}

impl Hooks {
    /// The outbox as stored (`existing`: the object has storage at all).
    pub fn new(sql: SqlStorage, env: &Env, existing: bool) -> Self {
        let sql = OutboxSql(sql);
        let outbox = if existing {
            Outbox::load(&sql).unwrap_or_else(|e| {
                crate::log_error!("webhook outbox could not be loaded: {e}");
                Outbox::default()
            })
        } else {
            Outbox::default()
        };
        let development =
            crate::config::setting(env, "ENVIRONMENT").as_deref() == Some("development");
        let scale = if development {
            parse_scale(crate::config::setting(env, "WEBHOOK_BACKOFF_SCALE").as_deref())
        } else {
            1.0
        };
        Hooks {
            sql,
            outbox,
            scale,
            alarm_at: Cell::new(None),
        }
    }

    /// The one check `publish` makes: whether any webhook is active.
    #[inline]
    pub fn active(&self) -> bool {
        self.outbox.is_active()
    }

    /// Queues the deliveries of a change (its broadcast frame), in the
    /// caller's synchronous turn, and makes sure an alarm will send them.
    pub fn on_publish(&self, state: &State, instance_id: &str, frame: &str) {
        let now = now_ms();
        match self
            .outbox
            .enqueue(&self.sql, instance_id, frame, now, new_delivery_id)
        {
            Ok(0) => {}
            Ok(_) => self.wake(state, now),
            Err(e) => crate::log_error!("webhook deliveries could not be queued: {e}"),
        }
    }

    /// Asks for an alarm at `at` unless one at or before it is known.
    pub fn wake(&self, state: &State, at: i64) {
        if self.alarm_at.get().is_some_and(|t| t <= at) {
            return;
        }
        self.alarm_at.set(Some(at));
        let storage = state.storage();
        worker::wasm_bindgen_futures::spawn_local(async move {
            let current = storage.get_alarm().await.ok().flatten();
            if current.is_none_or(|c| c > at) {
                let delay = (at - now_ms()).max(0);
                if let Err(e) = storage.set_alarm(Duration::from_millis(delay as u64)).await {
                    crate::log_error!("webhook alarm could not be set: {e}");
                }
            }
        });
    }

    /// The Worker's configuration; `{"applied":bool}`.
    pub fn configure(&self, state: &State, body: &str) -> Result<Response> {
        let config: Configuration = serde_json::from_str(body)
            .map_err(|e| worker::Error::RustError(format!("webhook configuration: {e}")))?;
        let applied = self
            .outbox
            .configure(&self.sql, &config)
            .map_err(|e| worker::Error::RustError(e.0))?;
        if applied && self.active() {
            // Deliveries may be waiting (a webhook switched back on).
            self.wake(state, now_ms());
        }
        Response::from_json(&serde_json::json!({ "applied": applied }))
    }

    /// A webhook's delivery log (`?webhook=&limit=`).
    pub fn log(&self, url: &worker::Url) -> Result<Response> {
        let mut webhook = String::new();
        let mut limit = 50;
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "webhook" => webhook = value.into_owned(),
                "limit" => limit = value.parse().unwrap_or(50),
                _ => {}
            }
        }
        let log = self
            .outbox
            .log(&self.sql, &webhook, limit)
            .map_err(|e| worker::Error::RustError(e.0))?;
        Response::from_json(&log)
    }

    /// The instance was deleted with all its storage.
    pub fn reset(&self) {
        self.outbox.reset();
        self.alarm_at.set(None);
    }

    /// The alarm's part: sends what is due, in order per webhook, for up to
    /// `ALARM_BUDGET_MS`; returns when the next delivery is due.
    pub async fn deliver(&self, env: &Env) -> Option<i64> {
        self.alarm_at.set(None);
        if !self.active() {
            return None;
        }
        let started = now_ms();
        loop {
            let sends = match self.outbox.due(&self.sql, now_ms()) {
                Ok(sends) => sends,
                Err(e) => {
                    crate::log_error!("webhook outbox: {e}");
                    break;
                }
            };
            if sends.is_empty() {
                break;
            }
            let attempts = futures_util::future::join_all(sends.iter().map(send_one)).await;
            let now = now_ms();
            let mut results = Vec::with_capacity(sends.len());
            for (send, attempt) in sends.iter().zip(attempts) {
                match self
                    .outbox
                    .record(&self.sql, send, &attempt, now, self.scale)
                {
                    Ok(recorded) => results.push(recorded),
                    Err(e) => crate::log_error!("webhook delivery result not stored: {e}"),
                }
            }
            report(env, &results, now).await;
            if now - started > ALARM_BUDGET_MS {
                return Some(now);
            }
        }
        match self.outbox.next_due(&self.sql) {
            Ok(next) => next,
            Err(e) => {
                crate::log_error!("webhook outbox: {e}");
                None
            }
        }
    }
}

async fn send_one(send: &Send) -> super::outbox::Attempt {
    post(
        &send.url,
        &send.id,
        &send.secret,
        &send.body,
        now_ms().div_euclid(1000),
    )
    .await
}

/// Tells D1 what the attempts answered (`last_triggered_at`,
/// `last_status`) and which webhooks were given up on. Failures are
/// logged: D1 being unreachable must not stop deliveries.
async fn report(env: &Env, results: &[Recorded], now_ms: i64) {
    let Ok(database) = db::database(env) else {
        crate::log_error!("webhook results: D1 is not bound");
        return;
    };
    let now = now_ms.div_euclid(1000);
    for r in results {
        let status = r.status_code.map(i64::from);
        let mut statements = vec![db::webhooks::stmt::record_result(
            &r.webhook_id,
            now,
            status,
        )];
        if r.deactivated {
            statements.push(db::webhooks::stmt::deactivate(&r.webhook_id, now));
            crate::log_warn!(
                "webhook {} deactivated after repeated failures",
                r.webhook_id
            );
        }
        if let Err(e) = db::run_batch(&database, &statements).await {
            crate::log_error!("webhook result not written to D1: {e}");
        }
    }
}

fn new_delivery_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let t = now_ms().to_le_bytes();
        bytes[..8].copy_from_slice(&t);
        bytes[8..].copy_from_slice(&((worker::js_sys::Math::random() * 1e15) as u64).to_le_bytes());
    }
    delivery_id(bytes)
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}
