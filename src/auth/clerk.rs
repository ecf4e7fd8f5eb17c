//! Clerk session JWTs: the JWKS is fetched over `fetch` and cached in the
//! isolate's memory for an hour; an unknown `kid` triggers a refetch at most
//! once a minute (key rotation without letting forged `kid`s hammer Clerk).

use std::cell::RefCell;

use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use super::error::AuthError;
use super::jwt::{
    jwks_cache_action, read_header, verify_token, ClaimRules, Jwks, JwksCacheAction, JwtError,
};
use crate::config::setting;

const DEFAULT_CLERK_API_URL: &str = "https://api.clerk.com";

struct Cache {
    /// The JWKS URL the document came from (a config change invalidates it).
    source: String,
    jwks: Option<Jwks>,
    fetched_at: Option<u64>,
    last_attempt: Option<u64>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Where the JWKS comes from, or `None` when JWT verification is not configured.
struct Source {
    url: String,
    bearer: Option<String>,
}

fn source(env: &Env) -> Option<Source> {
    if let Some(url) = setting(env, "CLERK_JWKS_URL") {
        return Some(Source { url, bearer: None });
    }
    let secret = setting(env, "CLERK_SECRET_KEY")?;
    let base = setting(env, "CLERK_API_URL").unwrap_or_else(|| DEFAULT_CLERK_API_URL.into());
    Some(Source {
        url: format!("{}/v1/jwks", base.trim_end_matches('/')),
        bearer: Some(secret),
    })
}

pub fn is_configured(env: &Env) -> bool {
    source(env).is_some()
}

fn now_seconds() -> u64 {
    worker::Date::now().as_millis() / 1000
}

/// Verifies a session JWT and returns the Clerk user id (`sub`).
pub async fn verify(env: &Env, token: &str) -> Result<String, AuthError> {
    let Some(src) = source(env) else {
        crate::log_error!("a JWT was presented but JWT verification is not configured");
        return Err(AuthError::JwtNotConfigured);
    };
    let rules = ClaimRules::from_config(
        setting(env, "CLERK_ISSUER").as_deref(),
        setting(env, "CLERK_AUTHORIZED_PARTIES").as_deref(),
    );
    // Refuse bad algorithms and malformed tokens before any network work.
    let header = read_header(token).map_err(AuthError::Jwt)?;
    let now = now_seconds();

    let action = CACHE.with(|c| {
        let c = c.borrow();
        match c.as_ref().filter(|c| c.source == src.url) {
            None => JwksCacheAction::Refetch,
            Some(c) => {
                let found = c
                    .jwks
                    .as_ref()
                    .is_some_and(|j| j.find(&header.kid).is_some());
                jwks_cache_action(c.fetched_at, c.last_attempt, now, found)
            }
        }
    });
    match action {
        JwksCacheAction::UnknownKey => return Err(AuthError::Jwt(JwtError::UnknownKey)),
        JwksCacheAction::Refetch => refresh(&src, now).await?,
        JwksCacheAction::UseCache => {}
    }
    CACHE.with(|c| {
        let c = c.borrow();
        let jwks = c
            .as_ref()
            .and_then(|c| c.jwks.as_ref())
            .ok_or_else(|| AuthError::Upstream("Could not load the JWKS".into()))?;
        verify_token(token, jwks, &rules, now as i64)
            .map(|v| v.user_id)
            .map_err(AuthError::Jwt)
    })
}

async fn refresh(src: &Source, now: u64) -> Result<(), AuthError> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut().filter(|c| c.source == src.url) {
            Some(cache) => cache.last_attempt = Some(now),
            None => {
                *c = Some(Cache {
                    source: src.url.clone(),
                    jwks: None,
                    fetched_at: None,
                    last_attempt: Some(now),
                })
            }
        }
    });
    let headers = Headers::new();
    if let Some(secret) = &src.bearer {
        headers.set("Authorization", &format!("Bearer {secret}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&src.url, &init)?;
    let mut resp = Fetch::Request(req).send().await.map_err(|e| {
        crate::log_error!("JWKS fetch failed: {e}");
        AuthError::Upstream("Could not fetch the JWKS".into())
    })?;
    if !(200..300).contains(&resp.status_code()) {
        crate::log_error!("JWKS fetch answered {}", resp.status_code());
        return Err(AuthError::Upstream("Could not fetch the JWKS".into()));
    }
    let body = resp.bytes().await?;
    let jwks =
        Jwks::parse(&body).map_err(|_| AuthError::Upstream("Invalid JWKS document".into()))?;
    CACHE.with(|c| {
        if let Some(cache) = c.borrow_mut().as_mut() {
            cache.jwks = Some(jwks);
            cache.fetched_at = Some(now);
        }
    });
    Ok(())
}
