//! `/api/groups`, `/api/groups/:id` and group membership.

use worker::Request;

use super::body::{read_named, read_object, MAX_BODY_BYTES};
use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::{authorize_group, authorize_groups, GroupAction};
use crate::ctx::Ctx;
use crate::db;
use crate::db::groups::{stmt, GroupListRow, GroupRow, MemberRow};
use crate::db::users::{stmt as users, UserRow};
use crate::error::ApiError;
use crate::instance::internal::Affected;
use crate::services::access::denied;
use crate::services::new_id;
use crate::services::revocation;

pub async fn list(ctx: &Ctx, caller: &Caller) -> Answer {
    authorize_groups(&caller.principal).map_err(|d| denied(d, "Group"))?;
    let groups: Vec<GroupListRow> = stmt::list_for_user(&caller.user_id).all(&ctx.db()?).await?;
    json(200, &serde_json::json!({ "groups": groups }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    authorize_groups(&caller.principal).map_err(|d| denied(d, "Group"))?;
    let (_, name) = read_named(req).await?;
    let id = new_id()?;
    stmt::create(&id, &name, &caller.user_id, db::now_seconds())
        .run(&ctx.db()?)
        .await?;
    json(201, &serde_json::json!({ "id": id, "name": name }))
}

/// Loads the group and checks `action`; 404 for groups the caller is not in.
async fn group_for(
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    action: GroupAction,
) -> Result<GroupRow, ApiError> {
    let group: GroupRow = stmt::get(id, &caller.user_id)
        .first(&ctx.db()?)
        .await?
        .ok_or_else(|| ApiError::not_found("Group not found"))?;
    let is_owner = group.owner_id == caller.user_id;
    authorize_group(&caller.principal, action, is_owner, group.is_member != 0)
        .map_err(|d| denied(d, "Group"))?;
    Ok(group)
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let group = group_for(ctx, caller, id, GroupAction::View).await?;
    let members: Vec<MemberRow> = stmt::members(&group.id).all(&ctx.db()?).await?;
    json(
        200,
        &serde_json::json!({
            "id": group.id,
            "name": group.name,
            "owner_id": group.owner_id,
            "created_at": group.created_at,
            "members": members,
        }),
    )
}

pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let group = group_for(ctx, caller, id, GroupAction::Delete).await?;
    let db = ctx.db()?;
    let reached = db::reach::stmt::group_instances(&group.id).ids(&db).await?;
    db::run_batch(&db, &stmt::delete(&group.id)).await?;
    // Its shares stop granting at once, on open sockets too (§8).
    revocation::recheck(ctx, &reached, Affected::All).await;
    json(200, &serde_json::json!({ "success": true }))
}

pub async fn add_member(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let group = group_for(ctx, caller, id, GroupAction::AddMember).await?;
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let db = ctx.db()?;
    let user: UserRow = match (body.opt_str("userId", 256)?, body.opt_str("email", 320)?) {
        (Some(uid), _) => users::get(uid).first(&db).await?,
        (None, Some(email)) => users::find_by_email(email).first(&db).await?,
        (None, None) => return Err(ApiError::bad_request("userId or email is required")),
    }
    .ok_or_else(|| ApiError::not_found("User not found"))?;
    stmt::add_member(&group.id, &user.id, db::now_seconds())
        .run(&db)
        .await?;
    json(
        201,
        &serde_json::json!({ "group_id": group.id, "user_id": user.id }),
    )
}

pub async fn remove_member(ctx: &Ctx, caller: &Caller, id: &str, user_id: &str) -> Answer {
    let action = GroupAction::RemoveMember {
        removing_self: user_id == caller.user_id,
    };
    let group = group_for(ctx, caller, id, action).await?;
    let db = ctx.db()?;
    let reached = db::reach::stmt::group_instances(&group.id).ids(&db).await?;
    if !stmt::remove_member(&group.id, user_id).found(&db).await? {
        return Err(ApiError::not_found("Member not found"));
    }
    revocation::recheck(ctx, &reached, Affected::User(user_id.to_owned())).await;
    json(200, &serde_json::json!({ "success": true }))
}
