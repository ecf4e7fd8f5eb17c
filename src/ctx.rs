//! What every layer may know about the request being served: the Worker's
//! environment and whether development mode applies to it. Ground floor:
//! anything above may take a `Ctx` without depending on the HTTP layer.

use worker::{D1Database, Env, Request};

use crate::config;
use crate::error::ApiError;

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

    /// A context for work that is never in development mode (the in-band
    /// `auth` of a socket opened in production mode).
    pub fn production(env: &Env) -> Self {
        Ctx {
            env: env.clone(),
            development: false,
        }
    }

    pub fn db(&self) -> Result<D1Database, ApiError> {
        crate::db::database(&self.env)
    }
}
