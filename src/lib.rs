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
#[cfg(feature = "fault-injection")]
mod seed;
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
    if test_build_hooks(&req, &env) {
        return seed::handle(req, &env).await;
    }
    Ok(http::serve(req, env).await)
}

/// Test builds: a panic inside the Worker's request handling on request
/// (development mode); true when the request is a test seed (addressed to
/// this machine: the test servers of either mode are seeded).
#[cfg(feature = "fault-injection")]
fn test_build_hooks(req: &Request, env: &Env) -> bool {
    let header = req.headers().get(panic::PANIC_HEADER).ok().flatten();
    let url = req.url().ok();
    let host = url.as_ref().and_then(|u| u.host_str().map(str::to_string));
    let environment = config::setting(env, "ENVIRONMENT");
    let development = config::is_development(environment.as_deref(), host.as_deref());
    if panic::wants_panic(header.as_deref(), development) {
        panic::injected("the Worker's request handling");
    }
    config::is_loopback(host.as_deref())
        && req.method() == worker::Method::Post
        && url.is_some_and(|u| u.path() == seed::PATH)
}
