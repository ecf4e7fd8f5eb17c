//! The Worker's HTTP edge: request context, dispatch and JSON helpers.

pub mod admin;
pub mod cors;
pub mod routes;
pub mod sync;

use serde::Serialize;
use worker::{Env, Request, Response};

use crate::config;
use crate::error::ApiError;
use routes::Route;

/// What every handler needs to know about the request it serves.
pub struct Ctx {
    pub env: Env,
    /// Development mode for *this* request (auth.md: variable + loopback host).
    pub development: bool,
}

impl Ctx {
    pub fn new(req: &Request, env: Env) -> Self {
        let host = req
            .url()
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        let environment = config::setting(&env, "ENVIRONMENT");
        let development = config::is_development(environment.as_deref(), host.as_deref());
        Ctx { env, development }
    }
}

/// `/health`: a struct rather than a map, so the fields keep their order.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    environment: &'static str,
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
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

pub async fn handle(req: Request, env: Env) -> Result<Response, ApiError> {
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
    }
}
