//! Random secrets (API keys, WebSocket tokens, ids), their hashes and
//! constant-time comparison. Only hashes of secrets are ever stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Prefix of every key `POST /api/keys` issues.
pub const API_KEY_LIVE_PREFIX: &str = "mc_live_";
/// Prefix of test keys; accepted when presented, never issued here.
pub const API_KEY_TEST_PREFIX: &str = "mc_test_";
/// Number of random characters after the prefix.
pub const API_KEY_RANDOM_LEN: usize = 32;
/// Length of the stored, displayable `key_prefix`.
pub const API_KEY_DISPLAY_PREFIX_LEN: usize = 12;
/// Bytes of entropy in a WebSocket token (256 bits, above the 128 required).
pub const WS_TOKEN_BYTES: usize = 32;

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Largest multiple of 62 that fits in a byte: bytes at or above it are
/// rejected so that `byte % 62` is uniform.
const ALNUM_ACCEPT_BELOW: u8 = 248;

/// Fills `buf` from the platform CSPRNG (`crypto.getRandomValues` on Workers).
fn os_fill(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}

/// `len` characters of `[A-Za-z0-9]`, uniformly distributed, drawn from `fill`.
fn random_alphanumeric<E>(
    len: usize,
    fill: &mut impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(len);
    // Draw a little more than needed so one batch almost always suffices.
    let mut buf = [0u8; 48];
    while out.len() < len {
        fill(&mut buf)?;
        for &b in &buf {
            if b < ALNUM_ACCEPT_BELOW {
                out.push(char::from(ALPHANUMERIC[usize::from(b % 62)]));
                if out.len() == len {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A new API key: `mc_live_` followed by 32 random alphanumerics.
pub fn generate_api_key() -> Result<String, getrandom::Error> {
    generate_api_key_with(&mut os_fill)
}

fn generate_api_key_with<E>(
    fill: &mut impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<String, E> {
    let random = random_alphanumeric(API_KEY_RANDOM_LEN, fill)?;
    Ok(format!("{API_KEY_LIVE_PREFIX}{random}"))
}

/// Whether `s` has the shape of an API key (either prefix, exactly 32
/// alphanumerics). Says nothing about whether the key exists.
pub fn is_api_key_format(s: &str) -> bool {
    let rest = s
        .strip_prefix(API_KEY_LIVE_PREFIX)
        .or_else(|| s.strip_prefix(API_KEY_TEST_PREFIX));
    match rest {
        Some(r) => r.len() == API_KEY_RANDOM_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()),
        None => false,
    }
}

/// Whether `s` starts like an API key, even if the rest is malformed.
pub fn has_api_key_prefix(s: &str) -> bool {
    s.starts_with(API_KEY_LIVE_PREFIX) || s.starts_with(API_KEY_TEST_PREFIX)
}

/// Lowercase hex SHA-256 of `secret`: the `key_hash` / `token_hash` column.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The value stored in `api_keys.key_hash` for `key`.
pub fn hash_api_key(key: &str) -> String {
    sha256_hex(key)
}

/// The first 12 characters of a key (`mc_live_` + 4), stored so users can
/// recognise their keys. Shorter input is returned whole.
pub fn api_key_prefix(key: &str) -> &str {
    match key.char_indices().nth(API_KEY_DISPLAY_PREFIX_LEN) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// A one-time WebSocket token: 256 random bits as URL-safe base64 (43
/// characters, no padding), so it can sit in a query string unescaped.
pub fn generate_ws_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; WS_TOKEN_BYTES];
    os_fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The value stored in `ws_tokens.token_hash` for `token`.
pub fn hash_ws_token(token: &str) -> String {
    sha256_hex(token)
}

/// A delegate id: `del_` + 32 lowercase hex (128 random bits).
pub fn generate_delegate_id() -> Result<String, getrandom::Error> {
    random_hex_id("del_")
}

/// A delegate secret's id: `sec_` + 32 lowercase hex.
pub fn generate_secret_id() -> Result<String, getrandom::Error> {
    random_hex_id("sec_")
}

fn random_hex_id(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    os_fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// A delegate secret: `sec_` + 32 characters of `[A-Za-z0-9]`, shown once.
pub fn generate_delegate_secret() -> Result<String, getrandom::Error> {
    Ok(format!(
        "sec_{}",
        random_alphanumeric(API_KEY_RANDOM_LEN, &mut os_fill)?
    ))
}

/// The value stored in `delegate_secrets.secret_hash` for `secret`.
pub fn hash_delegate_secret(secret: &str) -> String {
    sha256_hex(secret)
}

/// Compares two byte strings in time that depends only on their lengths,
/// so a mismatch position cannot be learnt by timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// Compares two secrets without revealing their lengths or contents through
/// timing: both are hashed first, then compared in constant time. Use for
/// `X-Admin-Token` against `ADMIN_TOKEN`.
pub fn secrets_equal(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    constant_time_eq(&a, &b)
}

/// A random (version 4) UUID, lowercase `8-4-4-4-12`.
pub fn generate_uuid_v4() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    os_fill(&mut bytes)?;
    Ok(format_uuid_v4(bytes))
}

fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn api_key_shape() {
        let key = generate_api_key().expect("rng");
        assert_eq!(key.len(), 8 + 32);
        assert!(key.starts_with("mc_live_"));
        assert!(is_api_key_format(&key));
        assert_eq!(api_key_prefix(&key).len(), 12);
        assert!(key.starts_with(api_key_prefix(&key)));
        let other = generate_api_key().expect("rng");
        assert_ne!(key, other);
    }

    #[test]
    fn rejection_sampling_skips_biased_bytes() {
        // 248..=255 must be skipped; 0 → 'A', 61 → '9', 62 → 'A' again.
        let script: Vec<u8> = [255u8, 248, 0, 61, 62, 250]
            .into_iter()
            .cycle()
            .take(48 * 20)
            .collect();
        let mut pos = 0;
        let mut fill = |buf: &mut [u8]| -> Result<(), ()> {
            for b in buf.iter_mut() {
                *b = script[pos % script.len()];
                pos += 1;
            }
            Ok(())
        };
        let s = random_alphanumeric(6, &mut fill).expect("scripted");
        assert_eq!(s, "A9AA9A");
    }

    #[test]
    fn rejection_sampling_refills_when_a_batch_is_all_rejected() {
        let mut calls = 0;
        let mut fill = |buf: &mut [u8]| -> Result<(), ()> {
            calls += 1;
            let v = if calls == 1 { 255 } else { 1 };
            buf.fill(v);
            Ok(())
        };
        let key = generate_api_key_with(&mut fill).expect("scripted");
        assert_eq!(key, format!("mc_live_{}", "B".repeat(32)));
        assert_eq!(calls, 2);
    }

    #[test]
    fn rng_errors_propagate() {
        let mut fill = |_: &mut [u8]| -> Result<(), &'static str> { Err("no entropy") };
        assert_eq!(generate_api_key_with(&mut fill), Err("no entropy"));
    }

    #[test]
    fn api_key_format_checks() {
        let body = "a".repeat(32);
        assert!(is_api_key_format(&format!("mc_live_{body}")));
        assert!(is_api_key_format(&format!("mc_test_{body}")));
        assert!(!is_api_key_format(&format!("mc_live_{}", "a".repeat(31))));
        assert!(!is_api_key_format(&format!("mc_live_{}", "a".repeat(33))));
        assert!(!is_api_key_format(&format!("mc_live_{}-", "a".repeat(31))));
        assert!(!is_api_key_format(&format!("mc_prod_{body}")));
        assert!(!is_api_key_format(&format!("mc_live_{}é", "a".repeat(30))));
        assert!(has_api_key_prefix("mc_test_x"));
    }

    #[test]
    fn prefix_of_short_or_non_ascii_input_does_not_panic() {
        assert_eq!(api_key_prefix("mc_"), "mc_");
        assert_eq!(api_key_prefix("ééééééééééééééé"), "éééééééééééé");
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash_api_key("abc"), hash_ws_token("abc"));
    }

    #[test]
    fn ws_tokens_are_url_safe_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..100 {
            let t = generate_ws_token().expect("rng");
            assert_eq!(t.len(), 43);
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(seen.insert(t));
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
        assert!(secrets_equal("token", "token"));
        assert!(!secrets_equal("token", "token2"));
        assert!(!secrets_equal("", "token"));
    }

    #[test]
    fn uuid_v4_format() {
        assert_eq!(
            format_uuid_v4([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(
            format_uuid_v4([0; 16]),
            "00000000-0000-4000-8000-000000000000"
        );
        let id = generate_uuid_v4().expect("rng");
        let parts: Vec<&str> = id.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(id
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(id, generate_uuid_v4().expect("rng"));
    }
}
