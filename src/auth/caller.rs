//! Who is calling: the `Authorization` header (or its absence, in
//! development mode) turned into a user id and what its credential allows.

use worker::{D1Database, Request};

use super::credentials::{parse_authorization_header, Credential, CredentialError};
use super::roles::{KeyLimits, Principal};
use super::secrets::hash_api_key;
use super::{clerk, DEV_USER};
use crate::db;
use crate::error::ApiError;
use crate::http::Ctx;

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    /// A signed-in user, or an API key with its scope and permissions.
    pub principal: Principal,
    pub api_key_id: Option<String>,
}

impl Caller {
    fn user(user_id: impl Into<String>) -> Caller {
        Caller {
            user_id: user_id.into(),
            principal: Principal::User,
            api_key_id: None,
        }
    }

    pub fn is_dev_user(&self) -> bool {
        self.user_id == DEV_USER && self.principal == Principal::User
    }
}

/// Authenticates a request from its `Authorization` header; every
/// authenticated caller then has a `users` row.
pub async fn authenticate(req: &Request, ctx: &Ctx) -> Result<Caller, ApiError> {
    let header = req.headers().get("Authorization")?;
    let caller = identify(header.as_deref(), ctx).await?;
    if caller.principal == Principal::User {
        // API keys belong to existing users (foreign key); signed-in users
        // may be new to us.
        db::users::ensure(&db::database(&ctx.env)?, &caller.user_id).await?;
    }
    Ok(caller)
}

/// Verifies a credential without the `users` bookkeeping (also used for
/// WebSocket upgrades and in-band `auth`).
pub async fn identify(header: Option<&str>, ctx: &Ctx) -> Result<Caller, ApiError> {
    let jwt_configured = clerk::is_configured(&ctx.env);
    match parse_authorization_header(header) {
        Err(CredentialError::Missing) if ctx.development => Ok(Caller::user(DEV_USER)),
        Err(CredentialError::UnrecognizedBearer) if ctx.development && !jwt_configured => {
            Ok(Caller::user(DEV_USER))
        }
        Err(e) => Err(ApiError::Unauthorized(e.to_string())),
        Ok(Credential::ApiKey(key)) => api_key_caller(&db::database(&ctx.env)?, &key).await,
        Ok(Credential::Jwt(_)) if ctx.development && !jwt_configured => Ok(Caller::user(DEV_USER)),
        Ok(Credential::Jwt(token)) => Ok(Caller::user(clerk::verify(&ctx.env, &token).await?)),
        Ok(Credential::Delegate { .. }) => Err(ApiError::Unauthorized(
            "Delegate credentials are not supported by this server".into(),
        )),
    }
}

/// Looks the key up by its hash; a deleted key (or one of a deleted user)
/// fails at once because the row is gone.
pub async fn api_key_caller(db: &D1Database, key: &str) -> Result<Caller, ApiError> {
    let row = db::api_keys::find_by_hash(db, &hash_api_key(key))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("Invalid API key".into()))?;
    let limits =
        KeyLimits::from_columns(&row.scope_type, row.scope_id.as_deref(), &row.permissions)
            .ok_or_else(|| {
                worker::console_error!("api key {} has an unreadable scope or permissions", row.id);
                ApiError::Unauthorized("Invalid API key".into())
            })?;
    db::api_keys::touch(db, &row).await?;
    Ok(Caller {
        user_id: row.user_id.clone(),
        principal: Principal::Key(limits),
        api_key_id: Some(row.id),
    })
}
