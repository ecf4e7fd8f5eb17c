//! MindCache server: a Cloudflare Worker that fronts one Durable Object per
//! MindCache instance, with accounts in D1. This file is the entry point:
//! CORS and the error → response mapping wrap every request here.

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
pub mod permission;
pub mod services;
pub mod time;
pub mod webhooks;

#[cfg(target_arch = "wasm32")]
pub use instance::MindCacheInstance;

use worker::{event, Context, Env, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Options {
        return http::cors::preflight();
    }
    let resp = match http::handle(req, env).await {
        Ok(resp) => resp,
        Err(err) => http::error_response(&err),
    };
    Ok(http::cors::apply(resp))
}
