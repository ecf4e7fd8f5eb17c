//! `/api/delegates…` (delegates.md): parse, call `services::delegates`,
//! render the shapes the dashboard reads.

use serde::Serialize;
use serde_json::{json, Value};
use worker::Request;

use super::body::{read_bytes, read_named, read_object, MAX_BODY_BYTES};
use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::DelegateCaps;
use crate::ctx::Ctx;
use crate::db::delegates::{stmt, DelegateRow, GrantRow, SecretRow};
use crate::error::ApiError;
use crate::fields::{parse_object, Fields};
use crate::permission::Permission;
use crate::services::delegates;

const SECRET_WARNING: &str =
    "Store this secret now: it is shown only once and cannot be recovered.";

/// A delegate as listed; the capability flags as JSON booleans.
#[derive(Serialize)]
struct DelegateView<'a> {
    delegate_id: &'a str,
    name: &'a str,
    can_read: bool,
    can_write: bool,
    can_system: bool,
    created_at: i64,
    expires_at: Option<i64>,
}

impl<'a> DelegateView<'a> {
    fn of(row: &'a DelegateRow) -> Self {
        DelegateView {
            delegate_id: &row.delegate_id,
            name: &row.name,
            can_read: row.can_read != 0,
            can_write: row.can_write != 0,
            can_system: row.can_system != 0,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> Answer {
    let rows = delegates::list(ctx, caller).await?;
    let views: Vec<DelegateView> = rows.iter().map(DelegateView::of).collect();
    json(200, &json!({ "delegates": views }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    let (body, name) = read_named(req).await?;
    let (caps, sent_caps) = capabilities(&body)?;
    let (expires_at, sent_expiry) = expiry(&body, crate::db::now_seconds())?;
    let row = delegates::create(ctx, caller, &name, caps, expires_at).await?;
    let mut view = serde_json::to_value(DelegateView::of(&row))?;
    if let Some(obj) = view.as_object_mut() {
        obj.insert("keyPermissions".into(), sent_caps);
        obj.insert("expiresAt".into(), sent_expiry);
    }
    json(201, &view)
}

/// `keyPermissions`: an object of booleans; a missing flag is `false`.
fn capabilities(body: &Fields) -> Result<(DelegateCaps, Value), ApiError> {
    let sent = match body.value("keyPermissions") {
        Some(Value::Object(map)) => map,
        None => return Err(ApiError::bad_request("keyPermissions is required")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "keyPermissions must be an object of can_read, can_write and can_system",
            ))
        }
    };
    let flag = |name: &str| match sent.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(format!(
            "keyPermissions.{name} must be a boolean"
        ))),
    };
    let caps = DelegateCaps {
        can_read: flag("can_read")?,
        can_write: flag("can_write")?,
        can_system: flag("can_system")?,
    };
    Ok((caps, Value::Object(sent.clone())))
}

/// `expiresAt`: absent or null for none; else a future ISO-8601 date-time.
fn expiry(body: &Fields, now: i64) -> Result<(Option<i64>, Value), ApiError> {
    match body.value("expiresAt") {
        None | Some(Value::Null) => Ok((None, Value::Null)),
        Some(Value::String(text)) => {
            let at = crate::time::parse_datetime(text)
                .ok_or_else(|| ApiError::bad_request("expiresAt must be an ISO-8601 date-time"))?;
            if at <= now {
                return Err(ApiError::bad_request("expiresAt must be in the future"));
            }
            Ok((Some(at), Value::String(text.clone())))
        }
        Some(_) => Err(ApiError::bad_request(
            "expiresAt must be an ISO-8601 date-time string",
        )),
    }
}

pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    delegates::delete(ctx, caller, id).await?;
    json(200, &json!({ "success": true }))
}

pub async fn create_secret(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    // The body may be empty: a name is optional.
    let bytes = read_bytes(req, MAX_BODY_BYTES).await?;
    let name = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body = parse_object(&bytes, MAX_BODY_BYTES)?;
        body.opt_name("name", super::body::MAX_NAME)?
    };
    let (secret_id, secret) = delegates::create_secret(ctx, caller, id, name.as_deref()).await?;
    json(
        201,
        &json!({
            "secret_id": secret_id,
            "delegate_id": id,
            "delegateSecret": secret,
            "name": name,
            "warning": SECRET_WARNING,
        }),
    )
}

pub async fn list_secrets(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let delegate = delegates::owned(ctx, caller, id).await?;
    let rows: Vec<SecretRow> = stmt::secrets(&delegate.delegate_id).all(&ctx.db()?).await?;
    let secrets: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "secret_id": s.secret_id,
                "name": s.name,
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "revoked_at": s.revoked_at,
            })
        })
        .collect();
    json(200, &json!({ "secrets": secrets }))
}

pub async fn revoke_secret(ctx: &Ctx, caller: &Caller, id: &str, secret_id: &str) -> Answer {
    delegates::revoke_secret(ctx, caller, id, secret_id).await?;
    json(200, &json!({ "success": true }))
}

pub async fn grant(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let instance_id = body.req_str("instanceId", 128)?;
    let permission = body.req_str("permission", 16)?;
    // `system` is the dashboard's old word for `admin`.
    let permission = match permission {
        "system" => Some(Permission::Admin),
        other => Permission::parse_grantable(other),
    }
    .ok_or_else(|| ApiError::bad_request("permission must be read, write, admin or system"))?;
    delegates::grant(ctx, caller, id, instance_id, permission).await?;
    json(200, &json!({ "success": true }))
}

pub async fn list_grants(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let delegate = delegates::owned(ctx, caller, id).await?;
    let rows: Vec<GrantRow> = stmt::grants(&delegate.delegate_id).all(&ctx.db()?).await?;
    let namespace = ctx.env.durable_object("MINDCACHE_INSTANCE")?;
    let mut grants = Vec::with_capacity(rows.len());
    for g in &rows {
        let do_id = namespace.id_from_name(&g.instance_id)?.to_string();
        grants.push(json!({
            "do_id": do_id,
            "instance_id": g.instance_id,
            "permission": g.permission,
            "granted_at": g.granted_at,
            "expires_at": g.expires_at,
        }));
    }
    json(200, &json!({ "grants": grants }))
}

pub async fn revoke_grant(ctx: &Ctx, caller: &Caller, id: &str, instance_id: &str) -> Answer {
    delegates::revoke_grant(ctx, caller, id, instance_id).await?;
    json(200, &json!({ "success": true }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::parse_object;

    fn fields(s: &str) -> Fields {
        parse_object(s.as_bytes(), MAX_BODY_BYTES).unwrap()
    }

    #[test]
    fn capabilities_are_booleans_named_in_errors() {
        let (caps, sent) = capabilities(&fields(
            r#"{"keyPermissions":{"can_read":true,"can_write":false}}"#,
        ))
        .unwrap();
        assert!(caps.can_read && !caps.can_write && !caps.can_system);
        assert_eq!(sent, json!({"can_read": true, "can_write": false}));
        let e = capabilities(&fields(r#"{"keyPermissions":{"can_write":"yes"}}"#)).unwrap_err();
        assert_eq!(e.to_string(), "keyPermissions.can_write must be a boolean");
        let e = capabilities(&fields(r#"{}"#)).unwrap_err();
        assert_eq!(e.to_string(), "keyPermissions is required");
    }

    #[test]
    fn expiry_must_be_a_future_date_time() {
        let now = 1_800_000_000;
        assert_eq!(expiry(&fields("{}"), now).unwrap(), (None, Value::Null));
        let (at, sent) = expiry(&fields(r#"{"expiresAt":"2027-12-02T15:54"}"#), now).unwrap();
        assert_eq!(at, Some(1_827_762_840));
        assert_eq!(sent, json!("2027-12-02T15:54"));
        let past = expiry(&fields(r#"{"expiresAt":"2020-01-01T00:00"}"#), now).unwrap_err();
        assert_eq!(past.to_string(), "expiresAt must be in the future");
        let bad = expiry(&fields(r#"{"expiresAt":"soon"}"#), now).unwrap_err();
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.to_string(), "expiresAt must be an ISO-8601 date-time");
    }
}
