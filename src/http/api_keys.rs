//! `/api/keys`: API keys, managed only by a signed-in user.

use worker::Request;

use super::body::read_named;
use super::{created, json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::{authorize_api_key_management, Action};
use crate::auth::secrets::{api_key_prefix, generate_api_key, hash_api_key};
use crate::ctx::Ctx;
use crate::db;
use crate::db::api_keys::{stmt, ApiKeyRow, NewKey};
use crate::error::ApiError;
use crate::instance::internal::Affected;
use crate::permission::Permission;
use crate::services::access::{self, denied};
use crate::services::new_id;
use crate::services::revocation;

pub async fn list(ctx: &Ctx, caller: &Caller) -> Answer {
    authorize_api_key_management(&caller.principal).map_err(|d| denied(d, "API key"))?;
    let rows: Vec<ApiKeyRow> = stmt::list_for_user(&caller.user_id).all(&ctx.db()?).await?;
    let keys: Vec<serde_json::Value> = rows
        .iter()
        .map(|k| {
            let permissions: serde_json::Value =
                serde_json::from_str(&k.permissions).unwrap_or_else(|_| serde_json::json!([]));
            serde_json::json!({
                "id": k.id,
                "name": k.name,
                "key_prefix": k.key_prefix,
                "scope_type": k.scope_type,
                "scope_id": k.scope_id,
                "permissions": permissions,
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
            })
        })
        .collect();
    json(200, &serde_json::json!({ "keys": keys }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    authorize_api_key_management(&caller.principal).map_err(|d| denied(d, "API key"))?;
    let (body, name) = read_named(req).await?;
    let scope_type = body.req_str("scopeType", 16)?;
    let scope_id = body.opt_str("scopeId", 128)?;
    let names = body
        .str_list("permissions")?
        .ok_or_else(|| ApiError::bad_request("permissions is required"))?;
    let mut permissions = Vec::new();
    for name in &names {
        let p = Permission::parse_grantable(name).ok_or_else(|| {
            ApiError::bad_request("permissions must contain only read, write and admin")
        })?;
        if !permissions.contains(&p) {
            permissions.push(p);
        }
    }
    if permissions.is_empty() {
        return Err(ApiError::bad_request("permissions must not be empty"));
    }
    permissions.sort();

    // The scope must be something the caller owns or administers.
    let scope_id = match (scope_type, scope_id) {
        ("account", _) => None,
        ("project" | "instance", None) => {
            return Err(ApiError::bad_request(format!(
                "scopeId is required for scopeType {scope_type}"
            )))
        }
        ("project", Some(id)) => Some(
            access::project(ctx, caller, id, Action::ScopeKey)
                .await?
                .row
                .id,
        ),
        ("instance", Some(id)) => Some(
            access::instance(ctx, caller, id, Action::ScopeKey)
                .await?
                .row
                .id,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "scopeType must be account, project or instance",
            ))
        }
    };

    let key = generate_api_key().map_err(|e| ApiError::internal(format!("random key: {e}")))?;
    let id = new_id()?;
    let permission_names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    let permissions_json = serde_json::to_string(&permission_names)?;
    NewKey {
        id: &id,
        user_id: &caller.user_id,
        name: &name,
        key_hash: &hash_api_key(&key),
        key_prefix: api_key_prefix(&key),
        scope_type,
        scope_id: scope_id.as_deref(),
        permissions_json: &permissions_json,
        created_at: db::now_seconds(),
    }
    .insert()
    .run(&ctx.db()?)
    .await?;
    created(serde_json::json!({
            "id": id,
            "name": name,
            "key": key,
            "keyPrefix": api_key_prefix(&key),
            "scopeType": scope_type,
            "scopeId": scope_id,
            "permissions": permission_names,
    }))
}

pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    authorize_api_key_management(&caller.principal).map_err(|d| denied(d, "API key"))?;
    let db = ctx.db()?;
    let reached = db::reach::stmt::used_instances(id).ids(&db).await?;
    if !stmt::delete_owned(id, &caller.user_id).found(&db).await? {
        return Err(ApiError::not_found("API key not found"));
    }
    db::reach::stmt::forget_uses(id).run(&db).await?;
    // The key's open sockets close at once (§8).
    revocation::revoke(ctx, &reached, Affected::ApiKey(id.to_owned())).await;
    json(200, &serde_json::json!({ "success": true }))
}
