//! MindCache server: a Cloudflare Worker that fronts one Durable Object per
//! MindCache instance, with accounts in D1. This file is the entry point;
//! `http::serve` wraps every request in CORS, the error → response mapping,
//! the request id and the request's log line.

pub mod ai;
pub mod auth;
pub mod config;
pub mod ctx;
pub mod db;
pub mod error;
pub mod fields;
pub mod http;
pub mod ids;
pub mod instance;
pub mod log;
pub mod panic;
pub mod permission;
pub mod services;
pub mod time;
pub mod webhooks;
pub mod webhooks_out;

#[cfg(target_arch = "wasm32")]
pub use instance::MindCacheInstance;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    #[cfg(feature = "fault-injection")]
    fault_injection(&req, &env);
    Ok(http::serve(req, env).await)
}

/// A panic inside the Worker's request handling, on request (test builds).
#[cfg(feature = "fault-injection")]
fn fault_injection(req: &Request, env: &Env) {
    let header = req.headers().get(panic::PANIC_HEADER).ok().flatten();
    let host = req
        .url()
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let environment = config::setting(env, "ENVIRONMENT");
    let development = config::is_development(environment.as_deref(), host.as_deref());
    if panic::wants_panic(header.as_deref(), development) {
        panic::injected("the Worker's request handling");
    }
}
