//! Outbound webhooks (webhooks-out.md): `/api/instances/:id/webhooks` and
//! `/api/webhooks/:id…`. Admin (or owner) of the instance only; delegates
//! are refused before they get here (`Route::delegate_refusal`).

use serde_json::{json, Value};
use worker::Request;

use super::body::{read_object, MAX_BODY_BYTES};
use super::{created, json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::Action;
use crate::ctx::Ctx;
use crate::db;
use crate::db::webhooks::{stmt, WebhookRow};
use crate::db::IdRow;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::services::webhooks::{manageable, push};
use crate::services::{access, new_id};
use crate::webhooks::svix::generate_secret;
use crate::webhooks_out::payload::{delivery_id, test_body};
use crate::webhooks_out::{events, target, MAX_WEBHOOKS_PER_INSTANCE};

/// Longest accepted `keyPrefix`, in characters.
const MAX_PREFIX: usize = 1024;
/// Most entries of one delivery-log page, and the default.
const MAX_LOG: u32 = 100;
const DEFAULT_LOG: u32 = 50;

/// A webhook as responses show it (never its secret).
fn view(row: &WebhookRow) -> Value {
    json!({
        "id": row.id,
        "instance_id": row.instance_id,
        "url": row.url,
        "events": row.event_list(),
        "keyPrefix": row.key_prefix,
        "is_active": row.active(),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_triggered_at": row.last_triggered_at,
        "last_status": row.last_status,
    })
}

fn checked_url(raw: &str, ctx: &Ctx) -> Result<String, ApiError> {
    target::check(raw, ctx.development).map_err(ApiError::BadRequest)
}

/// `keyPrefix`: a string; `null` or `""` means none.
fn key_prefix(body: &crate::fields::Fields) -> Result<Option<String>, ApiError> {
    Ok(body
        .opt_str("keyPrefix", MAX_PREFIX)?
        .filter(|p| !p.is_empty())
        .map(str::to_owned))
}

pub async fn list(ctx: &Ctx, caller: &Caller, instance_id: &str) -> Answer {
    let instance = access::instance(ctx, caller, instance_id, Action::ManageWebhooks).await?;
    let rows: Vec<WebhookRow> = stmt::list_for_instance(&instance.row.id)
        .all(&ctx.db()?)
        .await?;
    let webhooks: Vec<Value> = rows.iter().map(view).collect();
    json(200, &json!({ "webhooks": webhooks }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller, instance_id: &str) -> Answer {
    let instance = access::instance(ctx, caller, instance_id, Action::ManageWebhooks)
        .await?
        .row;
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let url = checked_url(body.req_str("url", target::MAX_URL_LEN)?, ctx)?;
    let events = events::parse(body.value("events")).map_err(ApiError::BadRequest)?;
    let prefix = key_prefix(&body)?;
    let secret =
        generate_secret().map_err(|e| ApiError::internal(format!("webhook secret: {e}")))?;
    let id = new_id()?;
    let events_json = serde_json::to_string(&events)?;
    let database = ctx.db()?;
    let inserted: Vec<IdRow> = stmt::insert_capped(
        &id,
        &instance.id,
        &caller.user_id,
        &url,
        &events_json,
        prefix.as_deref(),
        &secret,
        db::now_seconds(),
        MAX_WEBHOOKS_PER_INSTANCE as i64,
    )
    .all(&database)
    .await?;
    if inserted.is_empty() {
        return Err(ApiError::Conflict(format!(
            "An instance can have at most {MAX_WEBHOOKS_PER_INSTANCE} webhooks"
        )));
    }
    if let Err(e) = push(ctx, &instance.id).await {
        // The object never heard of it: leave no webhook that stays silent.
        stmt::delete(&id).run(&database).await?;
        return Err(e);
    }
    let row: WebhookRow = stmt::get(&id)
        .first(&database)
        .await?
        .ok_or_else(|| ApiError::internal("created webhook not found"))?;
    let mut shown = view(&row);
    shown["secret"] = json!(secret);
    created(shown)
}

pub async fn update(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let (row, _) = manageable(ctx, caller, id).await?;
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let url = match body.opt_str("url", target::MAX_URL_LEN)? {
        Some(raw) => checked_url(raw, ctx)?,
        None => row.url.clone(),
    };
    let events = match body.value("events") {
        Some(v) => events::parse(Some(v)).map_err(ApiError::BadRequest)?,
        None => row.event_list(),
    };
    let prefix = if body.0.contains_key("keyPrefix") {
        key_prefix(&body)?
    } else {
        row.key_prefix.clone()
    };
    let active = body.opt_bool("is_active")?.unwrap_or(row.active());
    let known = ["url", "events", "keyPrefix", "is_active"];
    if !known.iter().any(|k| body.0.contains_key(*k)) {
        return Err(ApiError::bad_request(
            "at least one of url, events, keyPrefix, is_active is required",
        ));
    }
    let database = ctx.db()?;
    stmt::update(
        &row.id,
        &url,
        &serde_json::to_string(&events)?,
        prefix.as_deref(),
        active,
        db::now_seconds(),
    )
    .run(&database)
    .await?;
    push(ctx, &row.instance_id).await?;
    let row: WebhookRow = stmt::get(&row.id)
        .first(&database)
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    json(200, &view(&row))
}

pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let (row, _) = manageable(ctx, caller, id).await?;
    stmt::delete(&row.id).run(&ctx.db()?).await?;
    // The object drops the webhook and its pending deliveries.
    push(ctx, &row.instance_id).await?;
    json(200, &json!({ "success": true }))
}

pub async fn deliveries(req: &Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let (row, _) = manageable(ctx, caller, id).await?;
    let mut limit = DEFAULT_LOG;
    for (name, value) in req.url()?.query_pairs() {
        if name == "limit" {
            limit = value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LOG).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit must be an integer from 1 to {MAX_LOG}"))
                })?;
        }
    }
    let log = InstanceClient::new(&ctx.env, &row.instance_id)?
        .webhook_deliveries(&row.id, limit)
        .await?;
    json(200, &json!({ "deliveries": log }))
}

pub async fn test(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let (row, _) = manageable(ctx, caller, id).await?;
    let secret = row
        .secret
        .as_deref()
        .ok_or_else(|| ApiError::Conflict("This webhook has no signing secret".into()))?;
    // The URL was checked when it was set; check again, in this request's
    // mode, before sending anything.
    let url = checked_url(&row.url, ctx)?;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("random id: {e}")))?;
    let delivery = delivery_id(bytes);
    let now_ms = db::now_millis();
    let body = test_body(&delivery, &row.instance_id, now_ms);
    let attempt =
        crate::webhooks_out::send::post(&url, &delivery, secret, &body, now_ms.div_euclid(1000))
            .await;
    json(
        200,
        &json!({ "status_code": attempt.status_code, "ok": attempt.ok() }),
    )
}
