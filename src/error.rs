//! The one error type of the HTTP surface: every handler returns
//! `Result<_, ApiError>`, and this file alone decides status and body.

use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A write to a read-only instance (data-api.md: `409` with a code).
    #[error("Instance is read-only")]
    ReadOnly,
    /// An `If-Match` / `If-None-Match` that did not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("Expected a WebSocket upgrade")]
    UpgradeRequired,
    /// An upstream service (OpenAI, Fireworks, Clerk) failed; the text is
    /// the upstream's own message, never our headers or secrets.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    /// A failure of ours whose details must not reach the client; the
    /// detail is logged where the response is built.
    #[error("internal: {0}")]
    Internal(String),
    /// A 500 whose message is safe and useful to show (configuration
    /// problems an operator must fix, e.g. "OpenAI API key not configured").
    #[error("{0}")]
    Misconfigured(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError::Internal(msg.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::ReadOnly => 409,
            ApiError::PreconditionFailed(_) => 412,
            ApiError::UpgradeRequired => 426,
            ApiError::BadGateway(_) => 502,
            ApiError::GatewayTimeout(_) => 504,
            ApiError::Internal(_) | ApiError::Misconfigured(_) => 500,
        }
    }

    /// The text a client sees: internal details are replaced by a generic line.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "Internal server error".to_string(),
            other => other.to_string(),
        }
    }

    /// The JSON body `{"error": "..."}` every error response carries, with
    /// a machine-readable `code` where the spec gives one.
    pub fn body(&self) -> String {
        match self {
            ApiError::ReadOnly => {
                json!({ "error": self.public_message(), "code": "READ_ONLY" }).to_string()
            }
            _ => json!({ "error": self.public_message() }).to_string(),
        }
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::Internal(format!("json: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_body() {
        let e = ApiError::internal("D1_ERROR: no such table: users at line 3");
        assert_eq!(e.status(), 500);
        assert_eq!(e.body(), r#"{"error":"Internal server error"}"#);
    }

    #[test]
    fn client_errors_keep_their_message() {
        let e = ApiError::bad_request("name must be 1-200 characters");
        assert_eq!(e.status(), 400);
        assert_eq!(e.body(), r#"{"error":"name must be 1-200 characters"}"#);
        assert_eq!(ApiError::MethodNotAllowed.status(), 405);
        assert_eq!(ApiError::ReadOnly.status(), 409);
        assert_eq!(
            ApiError::ReadOnly.body(),
            r#"{"code":"READ_ONLY","error":"Instance is read-only"}"#
        );
        assert_eq!(ApiError::UpgradeRequired.status(), 426);
        assert_eq!(
            ApiError::Misconfigured("OpenAI API key not configured".into()).body(),
            r#"{"error":"OpenAI API key not configured"}"#
        );
    }
}
