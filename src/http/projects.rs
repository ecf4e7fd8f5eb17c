//! `/api/projects` and `/api/projects/:id`.

use serde::Serialize;
use worker::Request;

use super::body::{read_named, read_renaming};
use super::{created, json, json_text, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::{authorize_create_project, effective_role, Action, Resource};
use crate::ctx::Ctx;
use crate::db;
use crate::db::projects::{stmt, ProjectRow};
use crate::error::ApiError;
use crate::permission::Permission;
use crate::services::access::{self, denied};
use crate::services::lifecycle::{self, Doomed};
use crate::services::new_id;

const MAX_DESCRIPTION: usize = 2000;

#[derive(Serialize)]
struct ProjectView<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    created_at: i64,
    updated_at: i64,
    role: &'static str,
}

impl<'a> ProjectView<'a> {
    fn of(row: &'a ProjectRow, role: Permission) -> Self {
        ProjectView {
            id: &row.id,
            name: &row.name,
            description: row.description.as_deref(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            role: role.as_str(),
        }
    }
}

/// The body of `GET /api/projects`.
#[derive(Serialize)]
struct ProjectList<'a> {
    projects: Vec<ProjectView<'a>>,
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> Answer {
    let db = ctx.db()?;
    if caller.principal.acts_as_user() {
        // Roles are the user's own: SQLite writes the whole answer.
        let body = stmt::list_visible_json(&caller.user_id)
            .json_body(&db)
            .await?;
        return json_text(200, body);
    }
    let rows: Vec<ProjectRow> = stmt::list_visible(&caller.user_id).all(&db).await?;
    let projects: Vec<ProjectView> = rows
        .iter()
        .filter_map(|row| {
            let role = effective_role(
                &caller.principal,
                Resource::Project { id: &row.id },
                row.role(&caller.user_id),
            )?;
            Some(ProjectView::of(row, role))
        })
        .collect();
    json(200, &ProjectList { projects })
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    authorize_create_project(&caller.principal).map_err(|d| denied(d, "Project"))?;
    let (body, name) = read_named(req).await?;
    let description = body.opt_str("description", MAX_DESCRIPTION)?;
    let id = new_id()?;
    let instance_id = new_id()?;
    let now = db::now_seconds();
    let batch = stmt::create(&id, &instance_id, &caller.user_id, &name, description, now);
    db::run_batch(&ctx.db()?, &batch).await?;
    created(serde_json::json!({
            "id": id,
            "name": name,
            "description": description,
            "defaultInstanceId": instance_id,
            "created_at": now,
            "updated_at": now,
    }))
}

pub async fn get(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let project = access::project(ctx, caller, id, Action::View).await?;
    json(200, &ProjectView::of(&project.row, project.role))
}

pub async fn update(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let project = access::project(ctx, caller, id, Action::Update).await?;
    let (body, name) = read_renaming(req).await?;
    // `description: null` clears it; a missing field leaves it as it is.
    let description = if body.0.contains_key("description") {
        Some(body.opt_str("description", MAX_DESCRIPTION)?)
    } else {
        None
    };
    if name.is_none() && description.is_none() {
        return Err(ApiError::bad_request("name or description is required"));
    }
    stmt::update(
        &project.row.id,
        name.as_deref(),
        description,
        db::now_seconds(),
    )
    .run(&ctx.db()?)
    .await?;
    json(200, &serde_json::json!({ "success": true }))
}

/// Deletes the project with its instances (objects first, then rows).
pub async fn delete(ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let project = access::project(ctx, caller, id, Action::DeleteProject).await?;
    lifecycle::destroy(ctx, Doomed::Project(&project.row.id)).await?;
    json(200, &serde_json::json!({ "success": true }))
}
