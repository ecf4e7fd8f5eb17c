//! `/api/projects/:id/instances` and `/api/instances/:id`.

use serde::Serialize;
use worker::Request;

use super::body::{read_named, read_renaming};
use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::Action;
use crate::ctx::Ctx;
use crate::db;
use crate::db::instances::{stmt, InstanceRow};
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::services::access;
use crate::services::lifecycle::{self, Doomed};
use crate::services::new_id;

/// `is_readonly` is always a JSON boolean (docs/decisions.md).
#[derive(Serialize)]
struct InstanceView<'a> {
    id: &'a str,
    project_id: &'a str,
    name: &'a str,
    is_readonly: bool,
    created_at: i64,
    updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

impl<'a> InstanceView<'a> {
    fn of(row: &'a InstanceRow) -> Self {
        InstanceView {
            id: &row.id,
            project_id: &row.project_id,
            name: &row.name,
            is_readonly: row.read_only(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            role: None,
        }
    }
}

pub async fn list(ctx: &Ctx, caller: &Caller, project_id: &str) -> Answer {
    let project = access::project(ctx, caller, project_id, Action::View).await?;
    let rows: Vec<InstanceRow> = stmt::list_for_project(&project.row.id, &caller.user_id)
        .all(&ctx.db()?)
        .await?;
    // A caller reaching the project only through instance shares sees just
    // those instances: the per-instance role decides for every row.
    let instances: Vec<InstanceView> = rows
        .iter()
        .filter(|row| access::instance_role(ctx, caller, row).is_some())
        .map(InstanceView::of)
        .collect();
    json(200, &serde_json::json!({ "instances": instances }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller, project_id: &str) -> Answer {
    let project = access::project(ctx, caller, project_id, Action::CreateInstance)
        .await?
        .row;
    let (body, name) = read_named(req).await?;
    let clone_from = body.opt_str("cloneFrom", 128)?;

    let source = match clone_from {
        Some(source_id) => Some(
            access::instance(ctx, caller, source_id, Action::View)
                .await
                .map_err(|_| ApiError::not_found("cloneFrom instance not found"))?
                .row,
        ),
        None => None,
    };

    let id = new_id()?;
    let db = ctx.db()?;
    stmt::create(
        &id,
        &project.id,
        &project.owner_id,
        &name,
        source.as_ref().map(|s| s.id.as_str()),
        db::now_seconds(),
    )
    .run(&db)
    .await?;
    if let Some(source) = source {
        if let Err(e) = copy_keys(ctx, caller, &source.id, &id).await {
            // Leave nothing of a half-made instance behind: its row and
            // whatever reached its object (which keeps a tombstone).
            lifecycle::destroy(ctx, Doomed::Instance(&id)).await?;
            return Err(e);
        }
    }
    json(201, &serde_json::json!({ "id": id, "name": name }))
}

/// Copies every key of `source` into the new instance `target`.
async fn copy_keys(ctx: &Ctx, caller: &Caller, source: &str, target: &str) -> Result<(), ApiError> {
    let dump = InstanceClient::new(&ctx.env, source)?
        .keys_document()
        .await?;
    let doc: KeysDocument = serde_json::from_str(&dump)?;
    InstanceClient::new(&ctx.env, target)?
        .import(&caller.user_id, doc.keys)
        .await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct KeysDocument<'a> {
    #[serde(borrow)]
    keys: &'a serde_json::value::RawValue,
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let instance = access::instance(ctx, caller, id, Action::View).await?;
    let view = InstanceView {
        role: Some(instance.role.as_str()),
        ..InstanceView::of(&instance.row)
    };
    json(200, &view)
}

pub async fn update(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let row = access::instance(ctx, caller, id, Action::Update).await?.row;
    let (body, name) = read_renaming(req).await?;
    let read_only = body.opt_bool("is_readonly")?;
    if name.is_none() && read_only.is_none() {
        return Err(ApiError::bad_request("name or is_readonly is required"));
    }
    let db = ctx.db()?;
    let now = db::now_seconds();
    stmt::update(&row.id, name.as_deref(), read_only, now, db::now_millis())
        .run(&db)
        .await?;
    let row = access::instance(ctx, caller, id, Action::View).await?.row;
    if read_only.is_some() {
        // Tell the object now, so writes are refused from the next message
        // on; the flag's new version makes it win over any older read.
        InstanceClient::with_read_only(&ctx.env, &row.id, Some(row.read_only_flag()))?
            .configure()
            .await?;
    }
    json(200, &InstanceView::of(&row))
}

pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let row = access::instance(ctx, caller, id, Action::DeleteInstance)
        .await?
        .row;
    lifecycle::destroy(ctx, Doomed::Instance(&row.id)).await?;
    json(200, &serde_json::json!({ "success": true }))
}
