//! Verifying the credential of an in-band `auth` message (protocol.md §3)
//! from inside an instance's Durable Object.

use worker::Env;

use crate::instance::protocol::AuthErrorCode;
use crate::permission::Permission;

/// Verifies `credential` for `instance_id`; on success the user id and the
/// permission the session gets.
pub async fn verify_in_band(
    _env: &Env,
    _credential: &str,
    _instance_id: &str,
) -> Result<(String, Permission), (AuthErrorCode, String)> {
    Err((
        AuthErrorCode::InvalidKey,
        "credential not recognised".to_string(),
    ))
}
