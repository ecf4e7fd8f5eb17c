//! Verifying the credential of an in-band `auth` message (protocol.md §3)
//! from inside an instance's Durable Object: the same checks as the
//! `Authorization` header, then the caller's role on this instance.

use worker::Env;

use super::caller::identify;
use crate::error::ApiError;
use crate::http::{access, Ctx};
use crate::instance::protocol::AuthErrorCode;
use crate::permission::Permission;

/// Verifies `credential` for `instance_id`; on success the user id, the
/// permission the session gets, and the instance's read-only flag when D1
/// knows the instance.
pub async fn verify_in_band(
    env: &Env,
    credential: &str,
    instance_id: &str,
) -> Result<(String, Permission, Option<bool>), (AuthErrorCode, String)> {
    // In-band auth happens only on sockets opened in production mode.
    let ctx = Ctx {
        env: env.clone(),
        development: false,
    };
    let header = if credential.contains(':') && !credential.starts_with("mc_") {
        format!("ApiKey {credential}")
    } else {
        format!("Bearer {credential}")
    };
    let caller = identify(Some(&header), &ctx).await.map_err(|e| match e {
        ApiError::Unauthorized(msg) if msg.contains("expired") => (AuthErrorCode::Expired, msg),
        ApiError::Unauthorized(msg) => (AuthErrorCode::InvalidKey, msg),
        other => {
            worker::console_error!("in-band auth failed: {other}");
            (
                AuthErrorCode::InvalidKey,
                "The credential could not be verified".to_string(),
            )
        }
    })?;
    let (role, read_only) = access::instance_data(&ctx, &caller, instance_id)
        .await
        .map_err(|_| {
            (
                AuthErrorCode::NoAccess,
                "Instance not found or access denied".to_string(),
            )
        })?;
    Ok((caller.user_id, role.for_session(), Some(read_only)))
}
