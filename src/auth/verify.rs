//! Verifying a credential: the one function behind the `Authorization`
//! header of every request, WebSocket upgrades and the in-band `auth`
//! message. Each entry point only recognises the credential's form; the
//! checks against D1 and the JWKS are shared. The `*_by_id` functions
//! re-evaluate a live session's credential (protocol.md §8).

use super::caller::Caller;
use super::clerk;
use super::credentials::{classify_in_band, parse_authorization_header, Credential};
use super::error::AuthError;
use super::roles::{DelegateCaps, KeyLimits, Principal};
use super::secrets::{hash_api_key, hash_delegate_secret};
use crate::ctx::Ctx;
use crate::db;
use crate::db::api_keys::ApiKeyRow;
use crate::db::delegates::CredentialRow;
use crate::permission::AccessBasis;

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
        Credential::ApiKey(key) => {
            let db = ctx.db()?;
            let row: ApiKeyRow = db::api_keys::stmt::find_by_hash(&hash_api_key(&key))
                .first(&db)
                .await?
                .ok_or(AuthError::UnknownApiKey)?;
            db::api_keys::touch(&db, &row).await?;
            api_key_caller(row)
        }
        Credential::Jwt(_) if ctx.development && !clerk::is_configured(&ctx.env) => {
            Ok(Caller::dev_user())
        }
        Credential::Jwt(token) => Ok(Caller::user(clerk::verify(&ctx.env, &token).await?)),
        Credential::Delegate { id, secret } => {
            let db = ctx.db()?;
            let row: CredentialRow =
                db::delegates::stmt::credential(&id, &hash_delegate_secret(&secret))
                    .first(&db)
                    .await?
                    .ok_or(AuthError::UnknownDelegate)?;
            let caller = delegate_caller(row.clone(), db::now_seconds())?;
            db::delegates::touch_secret(&db, &row).await?;
            Ok(caller)
        }
    }
}

/// A key acts as its user, within its limits. A deleted key (or one of a
/// deleted user) fails at once because the row is gone.
fn api_key_caller(row: ApiKeyRow) -> Result<Caller, AuthError> {
    let limits =
        KeyLimits::from_columns(&row.scope_type, row.scope_id.as_deref(), &row.permissions)
            .ok_or_else(|| {
                crate::log_error!("api key {} has an unreadable scope or permissions", row.id);
                AuthError::UnknownApiKey
            })?;
    Ok(Caller {
        user_id: row.user_id,
        principal: Principal::Key(limits),
        basis: AccessBasis {
            api_key: Some(row.id),
            ..AccessBasis::default()
        },
    })
}

/// A live secret's delegate acts for its creator, unless it has expired.
fn delegate_caller(row: CredentialRow, now: i64) -> Result<Caller, AuthError> {
    if row.expires_at.is_some_and(|t| t <= now) {
        return Err(AuthError::DelegateExpired);
    }
    Ok(Caller {
        user_id: row.created_by_user_id,
        principal: Principal::Delegate(DelegateCaps {
            can_read: row.can_read != 0,
            can_write: row.can_write != 0,
            can_system: row.can_system != 0,
        }),
        basis: AccessBasis {
            api_key: None,
            delegate: Some(row.delegate_id),
            secret: Some(row.secret_id),
            expires: row.expires_at,
        },
    })
}

/// The caller a live session stands for now, from what its access rests
/// on; `None` when that credential is gone, revoked or expired.
pub async fn from_basis(
    ctx: &Ctx,
    user_id: &str,
    basis: &AccessBasis,
) -> Result<Option<Caller>, AuthError> {
    let db = ctx.db()?;
    if let (Some(delegate), Some(secret)) = (&basis.delegate, &basis.secret) {
        let found = db::delegates::stmt::credential_by_ids(delegate, secret);
        let Some(row) = found.first(&db).await? else {
            return Ok(None);
        };
        return Ok(delegate_caller(row, db::now_seconds()).ok());
    }
    if let Some(key_id) = &basis.api_key {
        let Some(row) = db::api_keys::stmt::find_by_id(key_id).first(&db).await? else {
            return Ok(None);
        };
        return Ok(api_key_caller(row).ok());
    }
    Ok(Some(Caller::user(user_id)))
}
