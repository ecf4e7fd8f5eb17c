//! Errors a client message can be refused with (protocol.md §6).

use serde_json::value::RawValue;
use std::fmt;

/// The `code` of an `error` frame. The spellings are part of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ParseError,
    InvalidMessage,
    UnknownType,
    NotAuthenticated,
    NoPermission,
    InvalidKey,
    TooLarge,
    ReadOnly,
    RateLimited,
    Internal,
    /// HTTP only (data-api.md): an `If-Match`/`If-None-Match` did not hold.
    /// Never sent on a socket.
    PreconditionFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::NotAuthenticated => "NOT_AUTHENTICATED",
            ErrorCode::NoPermission => "NO_PERMISSION",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::ReadOnly => "READ_ONLY",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's extension `id`, kept as the exact JSON text it sent (a string
/// or a number) so that `ack`/`error` echo it byte for byte.
#[derive(Debug, Clone)]
pub struct MessageId(Box<RawValue>);

impl MessageId {
    /// Wraps already-validated JSON text; see `protocol::parse_id` for the checks.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Self {
        MessageId(raw)
    }

    /// The JSON text as the client sent it (quotes included for strings).
    pub fn json(&self) -> &str {
        self.0.get()
    }

    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for MessageId {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for MessageId {}

/// A refused client message: what goes into the `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    /// Says what was wrong, naming the field, for the developer reading it.
    pub message: String,
    /// The offending message's `id`, echoed back when it had a valid one.
    pub id: Option<MessageId>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            id: None,
        }
    }

    pub fn with_id(mut self, id: Option<MessageId>) -> Self {
        self.id = id;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// What a binary WebSocket frame earns: the protocol is JSON text only.
    pub fn binary_frame() -> Self {
        Self::new(
            ErrorCode::ParseError,
            "binary frames are not supported; send each message as a JSON text frame",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_on_the_wire() {
        let all = [
            (ErrorCode::ParseError, "PARSE_ERROR"),
            (ErrorCode::InvalidMessage, "INVALID_MESSAGE"),
            (ErrorCode::UnknownType, "UNKNOWN_TYPE"),
            (ErrorCode::NotAuthenticated, "NOT_AUTHENTICATED"),
            (ErrorCode::NoPermission, "NO_PERMISSION"),
            (ErrorCode::InvalidKey, "INVALID_KEY"),
            (ErrorCode::TooLarge, "TOO_LARGE"),
            (ErrorCode::ReadOnly, "READ_ONLY"),
            (ErrorCode::RateLimited, "RATE_LIMITED"),
            (ErrorCode::Internal, "INTERNAL"),
            (ErrorCode::PreconditionFailed, "PRECONDITION_FAILED"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn display_names_code_and_message() {
        let e = ProtocolError::invalid("\"key\" must be a string");
        assert_eq!(e.to_string(), "INVALID_MESSAGE: \"key\" must be a string");
        assert_eq!(e.id, None);
        assert_eq!(ProtocolError::binary_frame().code, ErrorCode::ParseError);
    }
}
