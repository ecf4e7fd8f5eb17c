//! Identifier rules shared by every layer.

/// Instance ids: 1–128 characters of `[A-Za-z0-9_-]` (protocol.md §1).
pub fn is_valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
