//! The limits of protocol.md §6 and the checks that enforce them.

use super::error::{ErrorCode, ProtocolError};

/// Longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest text frame we parse; the runtime itself would accept 32 MiB.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Largest stored value (its JSON text), below the 2 MB SQLite row cap.
pub const MAX_VALUE_BYTES: usize = 1_500_000;
/// Largest serialised `attributes` object. Not in the spec: it keeps value +
/// attributes + key under the Durable Object's 2 MB row cap (1.5 MB + 256 KiB).
pub const MAX_ATTRIBUTES_BYTES: usize = 256 * 1024;
pub const MAX_TAGS: usize = 64;
/// Longest tag, in UTF-8 bytes.
pub const MAX_TAG_BYTES: usize = 128;
pub const MAX_KEYS: u64 = 100_000;
/// Longest extension `id`, in characters of its rendering.
pub const MAX_ID_CHARS: usize = 64;
/// Keys that clients compute themselves and never store.
pub const RESERVED_KEYS: [&str; 2] = ["$date", "$time"];
/// How long an unauthenticated socket may wait before `AUTH_TIMEOUT`.
pub const AUTH_TIMEOUT_MS: i64 = 10_000;

/// Checks a key against §5 and §6; the error says which rule it broke.
pub fn validate_key(key: &str) -> Result<(), ProtocolError> {
    let invalid = |why: String| Err(ProtocolError::new(ErrorCode::InvalidKey, why));
    if key.is_empty() {
        return invalid("\"key\" must not be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid(format!(
            "\"key\" is {} bytes of UTF-8; the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(c) = key.chars().find(|&c| c <= '\u{1f}' || c == '\u{7f}') {
        return invalid(format!(
            "\"key\" contains the control character U+{:04X}; control characters are not allowed",
            u32::from(c)
        ));
    }
    if RESERVED_KEYS.contains(&key) {
        return invalid(format!(
            "\"key\" {key:?} is reserved by clients and cannot be stored"
        ));
    }
    Ok(())
}

/// Refuses a frame before parsing it, so huge frames cost no parse.
pub fn check_frame_size(len: usize) -> Result<(), ProtocolError> {
    if len > MAX_FRAME_BYTES {
        return Err(ProtocolError::too_large(format!(
            "the frame is {len} bytes; a message may be at most {MAX_FRAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `len` is the byte length of the value's JSON text, as it would be stored.
pub fn check_value_size(len: usize) -> Result<(), ProtocolError> {
    if len > MAX_VALUE_BYTES {
        return Err(ProtocolError::too_large(format!(
            "\"value\" is {len} bytes as JSON; a stored value may be at most {MAX_VALUE_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), ProtocolError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn key_length_boundaries() {
        assert_eq!(code(validate_key("")), Some(ErrorCode::InvalidKey));
        assert_eq!(code(validate_key("a")), None);
        assert_eq!(code(validate_key(&"k".repeat(512))), None);
        assert_eq!(
            code(validate_key(&"k".repeat(513))),
            Some(ErrorCode::InvalidKey)
        );
        // 170 three-byte characters are 510 bytes; one more is 513.
        let wide = "€".repeat(170);
        assert_eq!(wide.len(), 510);
        assert_eq!(code(validate_key(&wide)), None);
        assert_eq!(
            code(validate_key(&format!("{wide}€"))),
            Some(ErrorCode::InvalidKey)
        );
    }

    #[test]
    fn control_characters_are_refused() {
        for c in ['\0', '\n', '\t', '\u{1f}', '\u{7f}'] {
            let err = validate_key(&format!("a{c}b")).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidKey);
            assert!(err.message.contains("control character"), "{}", err.message);
        }
        // Just outside the ranges.
        assert_eq!(code(validate_key("a b~")), None);
        assert_eq!(code(validate_key("a\u{80}b")), None);
    }

    #[test]
    fn reserved_keys_are_refused_case_sensitively() {
        assert_eq!(code(validate_key("$date")), Some(ErrorCode::InvalidKey));
        assert_eq!(code(validate_key("$time")), Some(ErrorCode::InvalidKey));
        assert_eq!(code(validate_key("$Date")), None);
        assert_eq!(code(validate_key("$dates")), None);
    }

    #[test]
    fn frame_and_value_boundaries() {
        assert_eq!(code(check_frame_size(MAX_FRAME_BYTES)), None);
        assert_eq!(
            code(check_frame_size(MAX_FRAME_BYTES + 1)),
            Some(ErrorCode::TooLarge)
        );
        assert_eq!(code(check_value_size(1_500_000)), None);
        assert_eq!(code(check_value_size(1_500_001)), Some(ErrorCode::TooLarge));
    }
}
