//! Why a credential was not accepted: one type produced by every credential
//! check, mapped once to an HTTP response (`From<AuthError> for ApiError`)
//! and once to a WebSocket `auth_error` code (`AuthError::ws_code`).

use super::credentials::CredentialError;
use super::jwt::JwtError;
use crate::error::ApiError;
use crate::instance::protocol::AuthErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one of no recognisable form.
    #[error("{0}")]
    Malformed(CredentialError),
    /// A well-formed API key that matches no key.
    #[error("Invalid API key")]
    UnknownApiKey,
    /// A JWT refused by a check (signature, expiry, claims).
    #[error("{0}")]
    Jwt(JwtError),
    /// A JWT was presented but neither JWKS source is configured.
    #[error("JWT verification is not configured")]
    JwtNotConfigured,
    /// A delegate credential (`id:secret`) that matches no live secret.
    #[error("Invalid delegate credential")]
    UnknownDelegate,
    /// The delegate exists but its `expires_at` has passed.
    #[error("Delegate expired")]
    DelegateExpired,
    /// A service we depend on (the JWKS endpoint) failed; the text is ours.
    #[error("{0}")]
    Upstream(String),
    /// Our own failure (D1); the detail is logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl AuthError {
    /// The `auth_error` code an in-band `auth` gets for this refusal.
    pub fn ws_code(&self) -> AuthErrorCode {
        match self {
            AuthError::Jwt(JwtError::Expired) | AuthError::DelegateExpired => {
                AuthErrorCode::Expired
            }
            _ => AuthErrorCode::InvalidKey,
        }
    }

    /// The text an in-band `auth_error` carries: the same words as the 401,
    /// and a generic line for failures that are not the caller's.
    pub fn ws_message(&self) -> String {
        match self {
            AuthError::Internal(_) | AuthError::Upstream(_) | AuthError::JwtNotConfigured => {
                "The credential could not be verified".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<CredentialError> for AuthError {
    fn from(e: CredentialError) -> Self {
        AuthError::Malformed(e)
    }
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<worker::Error> for AuthError {
    fn from(e: worker::Error) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Jwt(JwtError::InvalidJwks) => ApiError::BadGateway(e.to_string()),
            AuthError::Upstream(msg) => ApiError::BadGateway(msg),
            AuthError::JwtNotConfigured => ApiError::Misconfigured(e.to_string()),
            AuthError::Internal(detail) => ApiError::Internal(detail),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        let cases = [
            (AuthError::Malformed(CredentialError::Missing), 401),
            (AuthError::UnknownApiKey, 401),
            (AuthError::Jwt(JwtError::Expired), 401),
            (AuthError::Jwt(JwtError::InvalidJwks), 502),
            (AuthError::JwtNotConfigured, 500),
            (AuthError::UnknownDelegate, 401),
            (AuthError::DelegateExpired, 401),
            (AuthError::Upstream("Could not fetch the JWKS".into()), 502),
            (AuthError::Internal("D1 down".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e.clone()).status(), status, "{e:?}");
        }
        assert_eq!(
            ApiError::from(AuthError::Malformed(CredentialError::Missing)).body(),
            r#"{"error":"Authorization required"}"#
        );
        assert_eq!(
            ApiError::from(AuthError::Internal("D1 down".into())).body(),
            r#"{"error":"Internal server error"}"#
        );
    }

    #[test]
    fn websocket_codes() {
        assert_eq!(
            AuthError::Jwt(JwtError::Expired).ws_code(),
            AuthErrorCode::Expired
        );
        assert_eq!(AuthError::DelegateExpired.ws_code(), AuthErrorCode::Expired);
        assert_eq!(
            AuthError::UnknownApiKey.ws_code(),
            AuthErrorCode::InvalidKey
        );
        assert_eq!(
            AuthError::Jwt(JwtError::BadSignature).ws_code(),
            AuthErrorCode::InvalidKey
        );
        assert_eq!(AuthError::UnknownApiKey.ws_message(), "Invalid API key");
        assert_eq!(
            AuthError::Internal("D1: no such table".into()).ws_message(),
            "The credential could not be verified"
        );
    }
}
