//! The Worker's HTTP edge: thin adapters that parse a request, call the
//! layer below and render its result. Nothing outside this module (and
//! `lib.rs`) depends on it.

pub mod admin;
pub mod ai;
pub mod api_keys;
pub mod body;
pub mod cors;
pub mod delegates;
pub mod groups;
pub mod instances;
pub mod projects;
pub mod routes;
pub mod shares;
pub mod sync;
pub mod webhooks;
pub mod ws_token;

use serde::Serialize;
use worker::{Env, Request, Response};

use crate::ai::core::jobs::JobRequest;
use crate::auth::caller::Caller;
use crate::auth::roles::Principal;
use crate::auth::verify;
use crate::config;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use routes::Route;

/// What a handler answers: a response, or the error that becomes one.
pub type Answer = Result<Response, ApiError>;

/// `/health`: a struct rather than a map, so the fields keep their order.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    environment: &'static str,
}

/// `201` with the created resource.
pub fn created(body: serde_json::Value) -> Answer {
    json(201, &body)
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Answer {
    Ok(Response::from_json(body)?.with_status(status))
}

/// Turns an error into its response; internal details go to the log only.
pub fn error_response(err: &ApiError) -> Response {
    if let ApiError::Internal(detail) = err {
        worker::console_error!("internal error: {detail}");
    }
    let mut resp = Response::ok(err.body())
        .unwrap_or_else(|_| Response::empty().expect("an empty response can always be built"))
        .with_status(err.status());
    let _ = resp.headers_mut().set("Content-Type", "application/json");
    resp
}

pub async fn handle(mut req: Request, env: Env) -> Answer {
    let route = routes::resolve(req.method().as_ref(), &req.path())?;
    let ctx = Ctx::new(&req, env);
    match route {
        Route::Health => json(
            200,
            &Health {
                status: "ok",
                environment: config::environment_name(ctx.development),
            },
        ),
        Route::Sync { instance_id } => sync::handle(&req, &ctx, &instance_id).await,
        Route::AdminDo { object_id } => admin::object_keys(&req, &ctx, &object_id).await,
        Route::AdminDoStorage { object_id } => admin::object_storage(&req, &ctx, &object_id).await,
        Route::ClerkWebhook => webhooks::clerk(&mut req, &ctx).await,
        route => {
            let caller = authenticate(&req, &ctx).await?;
            if caller.is_delegate() {
                if let Some(refusal) = route.delegate_refusal() {
                    return Err(ApiError::Forbidden(refusal.into()));
                }
            }
            api(route, &mut req, &ctx, &caller).await
        }
    }
}

/// Authenticates a request from its `Authorization` header; every
/// authenticated signed-in user then has a `users` row.
async fn authenticate(req: &Request, ctx: &Ctx) -> Result<Caller, ApiError> {
    let header = req.headers().get("Authorization")?;
    let caller = verify::from_header(ctx, header.as_deref()).await?;
    if caller.principal == Principal::User {
        // API keys belong to existing users (foreign key); signed-in users
        // may be new to us.
        let ensure = db::users::stmt::ensure(&caller.user_id, db::now_seconds());
        ensure.run(&ctx.db()?).await?;
    }
    Ok(caller)
}

/// The authenticated `/api/*` routes.
async fn api(route: Route, req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    use shares::Kind;
    match route {
        Route::WsToken => ws_token::create(req, ctx, caller).await,
        Route::ListProjects => projects::list(ctx, caller).await,
        Route::CreateProject => projects::create(req, ctx, caller).await,
        Route::GetProject(id) => projects::get(ctx, caller, &id).await,
        Route::UpdateProject(id) => projects::update(req, ctx, caller, &id).await,
        Route::DeleteProject(id) => projects::delete(ctx, caller, &id).await,
        Route::ListInstances(id) => instances::list(ctx, caller, &id).await,
        Route::CreateInstance(id) => instances::create(req, ctx, caller, &id).await,
        Route::GetInstance(id) => instances::get(ctx, caller, &id).await,
        Route::UpdateInstance(id) => instances::update(req, ctx, caller, &id).await,
        Route::DeleteInstance(id) => instances::delete(ctx, caller, &id).await,
        Route::ListProjectShares(id) => shares::list(ctx, caller, Kind::Project, &id).await,
        Route::CreateProjectShare(id) => shares::create(req, ctx, caller, Kind::Project, &id).await,
        Route::ListInstanceShares(id) => shares::list(ctx, caller, Kind::Instance, &id).await,
        Route::CreateInstanceShare(id) => {
            shares::create(req, ctx, caller, Kind::Instance, &id).await
        }
        Route::DeleteShare(id) => shares::delete(ctx, caller, &id).await,
        Route::ListGroups => groups::list(ctx, caller).await,
        Route::CreateGroup => groups::create(req, ctx, caller).await,
        Route::GetGroup(id) => groups::get(ctx, caller, &id).await,
        Route::DeleteGroup(id) => groups::delete(ctx, caller, &id).await,
        Route::AddGroupMember(id) => groups::add_member(req, ctx, caller, &id).await,
        Route::RemoveGroupMember(id, user) => groups::remove_member(ctx, caller, &id, &user).await,
        Route::ListApiKeys => api_keys::list(ctx, caller).await,
        Route::CreateApiKey => api_keys::create(req, ctx, caller).await,
        Route::DeleteApiKey(id) => api_keys::delete(ctx, caller, &id).await,
        Route::ListDelegates => delegates::list(ctx, caller).await,
        Route::CreateDelegate => delegates::create(req, ctx, caller).await,
        Route::DeleteDelegate(id) => delegates::delete(ctx, caller, &id).await,
        Route::CreateDelegateSecret(id) => delegates::create_secret(req, ctx, caller, &id).await,
        Route::ListDelegateSecrets(id) => delegates::list_secrets(ctx, caller, &id).await,
        Route::RevokeDelegateSecret(id, secret) => {
            delegates::revoke_secret(ctx, caller, &id, &secret).await
        }
        Route::GrantDelegate(id) => delegates::grant(req, ctx, caller, &id).await,
        Route::ListDelegateGrants(id) => delegates::list_grants(ctx, caller, &id).await,
        Route::RevokeDelegateGrant(id, instance) => {
            delegates::revoke_grant(ctx, caller, &id, &instance).await
        }
        Route::Chat => ai::chat(req, ctx, caller).await,
        Route::Transform => ai::job(req, ctx, caller, JobRequest::transform).await,
        Route::GenerateImage => ai::job(req, ctx, caller, JobRequest::generate_image).await,
        Route::AnalyzeImage => ai::job(req, ctx, caller, JobRequest::analyze_image).await,
        Route::Health
        | Route::Sync { .. }
        | Route::AdminDo { .. }
        | Route::AdminDoStorage { .. }
        | Route::ClerkWebhook => Err(ApiError::not_found("Not found")),
    }
}
