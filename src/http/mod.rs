//! The Worker's HTTP edge: thin adapters that parse a request, call the
//! layer below and render its result. Nothing outside this module (and
//! `lib.rs`) depends on it.

pub mod admin;
pub mod ai;
pub mod api_keys;
pub mod body;
pub mod cors;
pub mod data;
pub mod delegates;
pub mod groups;
pub mod inspect;
pub mod instances;
pub mod openapi;
pub mod projects;
pub mod routes;
pub mod shares;
pub mod sync;
pub mod usage;
pub mod webhooks;
pub mod webhooks_out;
pub mod ws_token;

use serde::Serialize;
use worker::{Env, Method, Request, Response, ResponseBuilder};

use crate::ai::core::jobs::JobRequest;
use crate::auth::caller::Caller;
use crate::auth::roles::Principal;
use crate::auth::verify;
use crate::config;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::instance::client::Identity;
use crate::log::{self, Level, ProblemLine, RequestLine, Who};
use routes::Route;

/// What a handler answers: a response, or the error that becomes one.
pub type Answer = Result<Response, ApiError>;

/// What the request log needs to know of a request being served: its id,
/// the route template it matched and who turned out to be calling.
pub struct Trace {
    pub request_id: String,
    pub template: Option<&'static str>,
    pub who: Who,
}

impl Trace {
    /// Remembers the caller (ids only) for the request's log line.
    pub fn caller(&mut self, caller: &Caller) {
        self.who = Who::of(&caller.user_id, &caller.basis);
    }

    /// Remembers whom a socket or an event stream is for, however it
    /// authenticated (a token, a header, development's `dev-user`).
    pub fn identity(&mut self, identity: &Identity) {
        if let Identity::User { user_id, basis, .. } = identity {
            self.who = Who::of(user_id, basis);
        }
    }
}

/// Serves one request: routing, CORS, the `x-request-id` header and the
/// request's log line (docs/operations.md).
pub async fn serve(req: Request, env: Env) -> Response {
    let started = log::now_ms();
    let ray = req.headers().get("cf-ray").ok().flatten();
    let mut trace = Trace {
        request_id: log::request_id(ray.as_deref(), random_request_id),
        template: None,
        who: Who::default(),
    };
    let method = req.method();
    let found = routes::lookup(method.as_ref(), &req.path());
    trace.template = found.template;
    let result = if method == Method::Options {
        cors::preflight()
    } else {
        match found.route {
            Ok(route) => handle(route, req, env, &mut trace).await,
            Err(e) => Err(e),
        }
    };
    let resp = result.unwrap_or_else(|err| error_response(&err, &trace));
    let resp = cors::finish(resp, &trace.request_id);
    let line = RequestLine::new(
        log::now_ms(),
        started,
        &trace.request_id,
        method.as_ref(),
        trace.template,
        resp.status_code(),
        &trace.who,
    );
    log::emit(line.head.level, &log::to_line(&line));
    resp
}

/// 16 hex characters from the CSPRNG (a request without `cf-ray`, as under
/// `wrangler dev`).
fn random_request_id() -> String {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        Err(_) => format!("{:016x}", log::now_ms()),
    }
}

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

/// A JSON answer that is already text (SQLite wrote it).
pub fn json_text(status: u16, body: String) -> Answer {
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_header("Content-Type", "application/json")?
        .fixed(body.into_bytes()))
}

/// Turns an error into its response; internal details go to the log only
/// (an `error` line with the request's id), upstream failures to a `warn`.
pub fn error_response(err: &ApiError, trace: &Trace) -> Response {
    let problem = match err {
        ApiError::Internal(detail) => Some((Level::Error, detail.as_str())),
        ApiError::Misconfigured(message) => Some((Level::Error, message.as_str())),
        ApiError::BadGateway(message) | ApiError::GatewayTimeout(message) => {
            Some((Level::Warn, message.as_str()))
        }
        _ => None,
    };
    if let Some((level, message)) = problem {
        let mut line = ProblemLine::new(log::now_ms(), level, message);
        line.request_id = Some(&trace.request_id);
        line.route = trace.template;
        log::emit(level, &log::to_line(&line));
    }
    let mut resp = Response::ok(err.body())
        .unwrap_or_else(|_| Response::empty().expect("an empty response can always be built"))
        .with_status(err.status());
    let _ = resp.headers_mut().set("Content-Type", "application/json");
    resp
}

async fn handle(route: Route, mut req: Request, env: Env, trace: &mut Trace) -> Answer {
    let ctx = Ctx::new(&req, env);
    match route {
        Route::Health => json(
            200,
            &Health {
                status: "ok",
                environment: config::environment_name(ctx.development),
            },
        ),
        Route::OpenApi => openapi::document(),
        Route::Inspect { instance_id } => inspect::page(&req, &ctx, &instance_id).await,
        Route::Sync { instance_id } => sync::handle(&req, &ctx, &instance_id, trace).await,
        Route::AdminDo { object_id } => admin::object_keys(&req, &ctx, &object_id).await,
        Route::AdminDoStorage { object_id } => admin::object_storage(&req, &ctx, &object_id).await,
        Route::ClerkWebhook => webhooks::clerk(&mut req, &ctx).await,
        Route::Events(id) => data::events(&req, &ctx, &id, trace).await,
        route => {
            let caller = authenticate(&req, &ctx).await?;
            trace.caller(&caller);
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
pub(crate) async fn authenticate(req: &Request, ctx: &Ctx) -> Result<Caller, ApiError> {
    let header = req.headers().get("Authorization")?;
    let caller = verify::from_header(ctx, header.as_deref()).await?;
    if caller.principal == Principal::User {
        // API keys belong to existing users (foreign key); signed-in users
        // may be new to us.
        // Once a minute per user and isolate (services/known_users.rs).
        let now = db::now_seconds();
        if crate::services::known_users::needs_ensure(&caller.user_id, now) {
            let ensured = db::users::stmt::ensure(&caller.user_id, now)
                .run(&ctx.db()?)
                .await;
            if ensured.is_err() {
                crate::services::known_users::forget(&caller.user_id);
            }
            ensured?;
        }
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
        Route::ListKeys(id) => data::list(req, ctx, caller, &id).await,
        Route::GetKey(id, key) => data::get_key(ctx, caller, &id, &key).await,
        Route::PutKey(id, key) | Route::DeleteKey(id, key) => {
            data::write_key(req, ctx, caller, &id, &key).await
        }
        Route::Batch(id) => data::batch(req, ctx, caller, &id).await,
        Route::Export(id) => data::export(req, ctx, caller, &id).await,
        Route::Import(id) => data::import(req, ctx, caller, &id).await,
        Route::ListWebhooks(id) => webhooks_out::list(ctx, caller, &id).await,
        Route::CreateWebhook(id) => webhooks_out::create(req, ctx, caller, &id).await,
        Route::UpdateWebhook(id) => webhooks_out::update(req, ctx, caller, &id).await,
        Route::DeleteWebhook(id) => webhooks_out::delete(ctx, caller, &id).await,
        Route::ListWebhookDeliveries(id) => webhooks_out::deliveries(req, ctx, caller, &id).await,
        Route::TestWebhook(id) => webhooks_out::test(ctx, caller, &id).await,
        Route::Usage => usage::get(req, ctx, caller).await,
        Route::Health
        | Route::OpenApi
        | Route::Inspect { .. }
        | Route::Sync { .. }
        | Route::AdminDo { .. }
        | Route::AdminDoStorage { .. }
        | Route::Events(_)
        | Route::ClerkWebhook => Err(ApiError::not_found("Not found")),
    }
}
