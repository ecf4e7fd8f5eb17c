//! Who may do what to which resource: loaders that fetch a row together with
//! the caller's role on it and check the action in one step, so a handler
//! holds an [`Authorized`] row or an error, never a role it forgot to check.
//! A resource the caller cannot see is a 404; a visible one it may not act
//! on is a 403.

use crate::auth::caller::Caller;
use crate::auth::error::AuthError;
use crate::auth::roles::{
    self, authorize, delegate_role, effective_role, Action, Denied, Principal, Resource,
};
use crate::auth::verify;
use crate::ctx::Ctx;
use crate::db;
use crate::db::instances::InstanceRow;
use crate::db::projects::ProjectRow;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::instance::internal::ReadOnlyFlag;
use crate::instance::protocol::AuthErrorCode;
use crate::permission::{AccessBasis, Permission};

/// A row the caller was proved to see, with its role there (never absent).
#[derive(Debug)]
pub struct Authorized<T> {
    pub row: T,
    pub role: Permission,
}

impl<T> Authorized<T> {
    /// Checks a further action on the same resource (`what` names it in a 404).
    pub fn require(self, caller: &Caller, action: Action, what: &str) -> Result<Self, ApiError> {
        authorize(&caller.principal, action, Some(self.role)).map_err(|d| denied(d, what))?;
        Ok(self)
    }
}

/// Maps a refusal from the role rules to its response.
pub fn denied(d: Denied, what: &str) -> ApiError {
    match d {
        Denied::NotFound => ApiError::not_found(format!("{what} not found")),
        other => ApiError::Forbidden(other.to_string()),
    }
}

/// The project `project_id` if the caller may take `action` on it.
pub async fn project(
    ctx: &Ctx,
    caller: &Caller,
    project_id: &str,
    action: Action,
) -> Result<Authorized<ProjectRow>, ApiError> {
    let not_found = || ApiError::not_found("Project not found");
    let row: ProjectRow = db::projects::stmt::get(project_id, &caller.user_id)
        .first(&ctx.db()?)
        .await?
        .ok_or_else(not_found)?;
    let role = effective_role(
        &caller.principal,
        Resource::Project { id: &row.id },
        row.role(&caller.user_id),
    )
    .ok_or_else(not_found)?;
    Authorized { row, role }.require(caller, action, "Project")
}

/// The caller's role on an instance row, for callers that are not
/// delegates (listings). In development mode `dev-user` is at least
/// `admin` on every instance (rest-api.md, Roles).
pub fn instance_role(ctx: &Ctx, caller: &Caller, row: &InstanceRow) -> Option<Permission> {
    let user_role = user_instance_role(ctx, &caller.user_id, row);
    effective_role(
        &caller.principal,
        Resource::Instance {
            id: &row.id,
            project_id: &row.project_id,
        },
        user_role,
    )
}

/// The role user `user_id` itself has on the instance.
fn user_instance_role(ctx: &Ctx, user_id: &str, row: &InstanceRow) -> Option<Permission> {
    let role = roles::instance_role(&row.facts(user_id));
    if ctx.development && user_id == crate::auth::DEV_USER {
        return Some(role.map_or(Permission::Admin, |r| r.max(Permission::Admin)));
    }
    role
}

/// The caller's role on an instance row, delegates included (their grant
/// is one more D1 lookup). `row` was loaded with the caller's user id.
async fn caller_instance_role(
    ctx: &Ctx,
    caller: &Caller,
    row: &InstanceRow,
) -> Result<Option<Permission>, ApiError> {
    let Principal::Delegate(caps) = &caller.principal else {
        return Ok(instance_role(ctx, caller, row));
    };
    let Some(delegate_id) = caller.basis.delegate.as_deref() else {
        return Ok(None);
    };
    let grant = db::delegates::grant(&ctx.db()?, delegate_id, &row.id).await?;
    let creator_role = user_instance_role(ctx, &caller.user_id, row);
    Ok(delegate_role(grant, *caps, creator_role))
}

/// The instance with the caller's share facts, if it exists.
async fn instance_row(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<Option<InstanceRow>, ApiError> {
    let row = db::instances::stmt::get(instance_id, &caller.user_id);
    row.first(&ctx.db()?).await
}

/// The instance `instance_id` if the caller may take `action` on it.
pub async fn instance(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
    action: Action,
) -> Result<Authorized<InstanceRow>, ApiError> {
    let not_found = || ApiError::not_found("Instance not found");
    let row = instance_row(ctx, caller, instance_id)
        .await?
        .ok_or_else(not_found)?;
    let role = caller_instance_role(ctx, caller, &row)
        .await?
        .ok_or_else(not_found)?;
    Authorized { row, role }.require(caller, action, "Instance")
}

/// What a caller may do with an instance's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataAccess {
    pub role: Permission,
    /// The instance's name (its id for an id D1 does not know).
    pub name: String,
    /// The instance's `is_readonly` as D1 has it, with its version (false
    /// for an id D1 does not know, which only development mode's
    /// `dev-user` may use).
    pub flag: ReadOnlyFlag,
}

impl DataAccess {
    pub fn read_only(&self) -> bool {
        self.flag.read_only
    }
}

/// Access to an instance's data (WebSocket, ws-token, AI): like
/// [`instance`], but in development mode `dev-user` may use any instance
/// id, registered or not.
pub async fn instance_data(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<DataAccess, ApiError> {
    let refused = || ApiError::not_found("Instance not found or access denied");
    match instance_row(ctx, caller, instance_id).await? {
        Some(row) => Ok(DataAccess {
            role: caller_instance_role(ctx, caller, &row)
                .await?
                .ok_or_else(refused)?,
            flag: row.read_only_flag(),
            name: row.name,
        }),
        // A deleted id stays deleted, development mode or not (§8).
        None if ctx.development && caller.is_dev_user() => {
            let client = InstanceClient::new(&ctx.env, instance_id)?;
            if client.is_deleted().await? {
                return Err(refused());
            }
            Ok(DataAccess {
                role: Permission::Admin,
                flag: ReadOnlyFlag::default(),
                name: instance_id.to_string(),
            })
        }
        None => Err(refused()),
    }
}

/// What an in-band `auth` proved: who the socket acts as and how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGrant {
    pub user_id: String,
    pub permission: Permission,
    pub read_only: ReadOnlyFlag,
    pub basis: AccessBasis,
}

/// Why an in-band `auth` was refused: the `auth_error` code and text.
pub type SocketRefusal = (AuthErrorCode, String);

/// Verifies the credential of an in-band `auth` (protocol.md §3) for
/// `instance_id`. In development mode API keys, delegates and (when
/// configured) JWTs are verified as in production, and anything else acts
/// as `dev-user`.
pub async fn socket_grant(
    env: &worker::Env,
    credential: &str,
    instance_id: &str,
    development: bool,
) -> Result<SocketGrant, SocketRefusal> {
    let ctx = Ctx {
        env: env.clone(),
        development,
    };
    let caller = match verify::from_in_band(&ctx, credential).await {
        Ok(caller) => caller,
        Err(AuthError::Malformed(_)) if development => Caller::dev_user(),
        Err(e) => {
            if let AuthError::Internal(detail) | AuthError::Upstream(detail) = &e {
                crate::log_error!("in-band auth failed: {detail}");
            }
            return Err((e.ws_code(), e.ws_message()));
        }
    };
    let access = instance_data(&ctx, &caller, instance_id)
        .await
        .map_err(|_| no_access())?;
    // Unrecorded, the socket would be out of its credential's revocation.
    if let Err(e) = super::revocation::note_socket(&ctx, &caller, instance_id).await {
        crate::log_error!("in-band auth: could not record the credential's use: {e}");
        let e = AuthError::Internal(e.to_string());
        return Err((e.ws_code(), e.ws_message()));
    }
    Ok(SocketGrant {
        user_id: caller.user_id,
        permission: access.role.for_session(),
        read_only: access.flag,
        basis: caller.basis,
    })
}

fn no_access() -> SocketRefusal {
    (
        AuthErrorCode::NoAccess,
        "Instance not found or access denied".to_string(),
    )
}

/// The permission a live session has on `instance_id` now (protocol.md §8),
/// from its user and what its access rests on; `None` when nothing grants
/// access any more.
pub async fn current_permission(
    env: &worker::Env,
    user_id: &str,
    basis: &AccessBasis,
    instance_id: &str,
    development: bool,
) -> Result<Option<Permission>, ApiError> {
    let ctx = Ctx {
        env: env.clone(),
        development,
    };
    let Some(caller) = verify::from_basis(&ctx, user_id, basis).await? else {
        return Ok(None);
    };
    match instance_data(&ctx, &caller, instance_id).await {
        Ok(access) => Ok(Some(access.role.for_session())),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Re-verifies, right before a write that follows a long upstream call,
/// that the caller may still write there: its credential still exists and
/// its role is still at least `write` (protocol.md §8: a running AI request
/// stops writing once its access is revoked).
pub async fn still_may_write(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<(), ApiError> {
    let now = current_permission(
        &ctx.env,
        &caller.user_id,
        &caller.basis,
        instance_id,
        ctx.development,
    )
    .await?;
    match now {
        Some(p) if p.allows(Permission::Write) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "Write access to this instance was revoked".into(),
        )),
    }
}
