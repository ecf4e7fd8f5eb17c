//! Verifying a credential: the one function behind the `Authorization`
//! header of every request, WebSocket upgrades and the in-band `auth`
//! message. Each entry point only recognises the credential's form; the
//! checks against D1 and the JWKS are shared.

use worker::D1Database;

use super::caller::Caller;
use super::clerk;
use super::credentials::{classify_in_band, parse_authorization_header, Credential};
use super::error::AuthError;
use super::roles::{KeyLimits, Principal};
use super::secrets::hash_api_key;
use crate::ctx::Ctx;
use crate::db;

/// The caller behind an `Authorization` header (`None` when absent),
/// with development mode's `dev-user` rules (auth.md).
pub async fn from_header(ctx: &Ctx, header: Option<&str>) -> Result<Caller, AuthError> {
    use super::credentials::CredentialError::{Missing, UnrecognizedBearer};
    let jwt_configured = clerk::is_configured(&ctx.env);
    match parse_authorization_header(header) {
        Err(Missing) if ctx.development => Ok(Caller::dev_user()),
        Err(UnrecognizedBearer) if ctx.development && !jwt_configured => Ok(Caller::dev_user()),
        Err(e) => Err(e.into()),
        Ok(credential) => credential_caller(ctx, credential).await,
    }
}

/// The caller behind the `apiKey` of an in-band `auth` message (a bare
/// credential, no scheme).
pub async fn from_in_band(ctx: &Ctx, api_key: &str) -> Result<Caller, AuthError> {
    credential_caller(ctx, classify_in_band(api_key)?).await
}

/// Verifies a recognised credential.
async fn credential_caller(ctx: &Ctx, credential: Credential) -> Result<Caller, AuthError> {
    match credential {
        Credential::ApiKey(key) => api_key_caller(&ctx.db()?, &key).await,
        Credential::Jwt(_) if ctx.development && !clerk::is_configured(&ctx.env) => {
            Ok(Caller::dev_user())
        }
        Credential::Jwt(token) => Ok(Caller::user(clerk::verify(&ctx.env, &token).await?)),
        Credential::Delegate { .. } => Err(AuthError::UnknownDelegate),
    }
}

/// Looks the key up by its hash; a deleted key (or one of a deleted user)
/// fails at once because the row is gone.
async fn api_key_caller(db: &D1Database, key: &str) -> Result<Caller, AuthError> {
    let row = db::api_keys::find_by_hash(db, &hash_api_key(key))
        .await?
        .ok_or(AuthError::UnknownApiKey)?;
    let limits =
        KeyLimits::from_columns(&row.scope_type, row.scope_id.as_deref(), &row.permissions)
            .ok_or_else(|| {
                worker::console_error!("api key {} has an unreadable scope or permissions", row.id);
                AuthError::UnknownApiKey
            })?;
    db::api_keys::touch(db, &row).await?;
    Ok(Caller {
        user_id: row.user_id.clone(),
        principal: Principal::Key(limits),
        api_key_id: Some(row.id),
    })
}
