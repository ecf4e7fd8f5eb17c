//! Clerk webhooks: Svix (Standard Webhooks) signature verification and the
//! Clerk user-event payloads. Pure functions over headers, raw body bytes and
//! an explicit `now`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::auth::secrets::constant_time_eq;

/// Largest accepted distance between `svix-timestamp` and now, either way.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// How long a received delivery's id is remembered, so that a replay of it
/// is recognised. A delivery accepted at time `r` is signed with a
/// timestamp of at most `r + 5 min`, so a copy of it passes the timestamp
/// check until `r + 10 min` at the latest: twice the tolerance covers every
/// replay that the signature check would let through.
pub const DELIVERY_MEMORY_SECS: i64 = 2 * TIMESTAMP_TOLERANCE_SECS;

/// Why a webhook request was refused. `InvalidSecret` is a server
/// misconfiguration (500); every other variant is the sender's (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SvixError {
    #[error("Missing webhook header {0}")]
    MissingHeader(&'static str),
    #[error("Invalid webhook timestamp")]
    InvalidTimestamp,
    #[error("Webhook timestamp too far from now")]
    TimestampOutOfRange,
    #[error("No matching webhook signature")]
    NoMatchingSignature,
    #[error("Webhook signing secret is not valid base64")]
    InvalidSecret,
}

impl SvixError {
    pub fn status(self) -> u16 {
        match self {
            SvixError::InvalidSecret => 500,
            _ => 401,
        }
    }
}

/// One header by its `svix-*` name, else its Standard Webhooks name.
fn header_value(
    lookup: &impl Fn(&str) -> Option<String>,
    svix: &'static str,
    standard: &'static str,
) -> Result<String, SvixError> {
    lookup(svix)
        .or_else(|| lookup(standard))
        .ok_or(SvixError::MissingHeader(svix))
}

/// The delivery's id (`svix-id`, else `webhook-id`), exactly as signed, when
/// the sender gave a non-empty one. Retries of one message share it.
pub fn delivery_id(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    header_value(&lookup, "svix-id", "webhook-id")
        .ok()
        .filter(|id| !id.is_empty())
}

/// The HMAC key: base64 of the secret after its optional `whsec_` prefix.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SvixError> {
    let b64 = secret.trim();
    let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
    STANDARD.decode(b64).map_err(|_| SvixError::InvalidSecret)
}

/// HMAC-SHA256 over `id.timestamp.body`.
fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Result<[u8; 32], SvixError> {
    // HMAC accepts keys of any length; the error arm is only for the type.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| SvixError::InvalidSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac.finalize().into_bytes().into())
}

/// The `webhook-signature` header value (`v1,<base64>`) for a delivery: the
/// same HMAC that [`verify`] compares against, so what this server sends
/// verifies with Svix's and Standard Webhooks' libraries exactly as Clerk's
/// deliveries verify here. `timestamp` is Unix seconds.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SvixError> {
    let key = decode_secret(secret)?;
    let mac = sign(&key, id, &timestamp.to_string(), body)?;
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

/// A new signing secret: `whsec_` and the base64 of 32 CSPRNG bytes.
pub fn generate_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// Verifies a webhook. `lookup` returns a request header by (lowercase)
/// name and should match case-insensitively, as HTTP headers do; `now` is
/// Unix seconds.
pub fn verify(
    lookup: impl Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), SvixError> {
    let id = header_value(&lookup, "svix-id", "webhook-id")?;
    let timestamp = header_value(&lookup, "svix-timestamp", "webhook-timestamp")?;
    let signatures = header_value(&lookup, "svix-signature", "webhook-signature")?;
    let key = decode_secret(secret)?;

    let timestamp = timestamp.trim();
    // Digits only: `i64::from_str` would also take a sign.
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SvixError::InvalidTimestamp);
    }
    let ts: i64 = timestamp.parse().map_err(|_| SvixError::InvalidTimestamp)?;
    if now.abs_diff(ts) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
        return Err(SvixError::TimestampOutOfRange);
    }

    let expected = sign(&key, &id, timestamp, body)?;
    let mut matched = false;
    for entry in signatures.split_ascii_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        if let Ok(sig) = STANDARD.decode(sig) {
            // No early exit, so timing does not tell which entry matched.
            matched |= constant_time_eq(&sig, &expected);
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SvixError::NoMatchingSignature)
    }
}

/// A Clerk user as the `users` table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClerkUser {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// What a Clerk webhook asks us to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClerkEvent {
    /// `user.created` / `user.updated`: upsert.
    UserUpserted(ClerkUser),
    /// `user.deleted`: remove the user and everything it owns.
    UserDeleted { id: String },
    /// Any other event type: acknowledge and do nothing.
    Ignored { event_type: String },
}

/// A payload that cannot be understood (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClerkPayloadError {
    #[error("Webhook body is not valid JSON")]
    NotJson,
    #[error("Webhook body has no string field 'type'")]
    MissingType,
    #[error("Webhook body has no object field 'data'")]
    MissingData,
    #[error("Webhook 'data.id' is missing or not a non-empty string")]
    MissingUserId,
}

/// Parses a Clerk event envelope `{"type", "data", …}`.
pub fn parse_clerk_event(body: &[u8]) -> Result<ClerkEvent, ClerkPayloadError> {
    let envelope: Value = serde_json::from_slice(body).map_err(|_| ClerkPayloadError::NotJson)?;
    let event_type = envelope
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ClerkPayloadError::MissingType)?;
    match event_type {
        "user.created" | "user.updated" => {
            let data = user_data(&envelope)?;
            Ok(ClerkEvent::UserUpserted(ClerkUser {
                id: user_id(data)?,
                email: primary_email(data),
                name: full_name(data),
            }))
        }
        "user.deleted" => Ok(ClerkEvent::UserDeleted {
            id: user_id(user_data(&envelope)?)?,
        }),
        other => Ok(ClerkEvent::Ignored {
            event_type: other.to_owned(),
        }),
    }
}

fn user_data(envelope: &Value) -> Result<&Value, ClerkPayloadError> {
    envelope
        .get("data")
        .filter(|d| d.is_object())
        .ok_or(ClerkPayloadError::MissingData)
}

fn user_id(data: &Value) -> Result<String, ClerkPayloadError> {
    data.get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or(ClerkPayloadError::MissingUserId)
}

/// The address whose id is `primary_email_address_id`, else the first one.
fn primary_email(data: &Value) -> Option<String> {
    let addresses: Vec<(Option<&str>, &str)> = data
        .get("email_addresses")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|a| {
            let email = a.get("email_address").and_then(Value::as_str)?;
            Some((a.get("id").and_then(Value::as_str), email))
        })
        .collect();
    let primary = data.get("primary_email_address_id").and_then(Value::as_str);
    addresses
        .iter()
        .find(|(id, _)| primary.is_some() && *id == primary)
        .or_else(|| addresses.first())
        .map(|(_, email)| (*email).to_owned())
}

/// First and last name joined by a space; `None` when both are empty.
fn full_name(data: &Value) -> Option<String> {
    let part = |field: &str| {
        data.get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match (part("first_name"), part("last_name")) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn signature_is_what_verify_accepts() {
        assert_eq!(signature(SECRET, ID, TS, BODY).unwrap(), SIG);
        let secret = generate_secret().unwrap();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(decode_secret(&secret).unwrap().len(), 32);
        let sig = signature(&secret, "msg_1", TS, b"{}").unwrap();
        let lookup = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", sig),
        ]);
        assert_eq!(verify(lookup, b"{}", &secret, TS), Ok(()));
    }

    // The known-good vector from auth.md (Svix's own test suite).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        move |name: &str| map.get(&name.to_ascii_lowercase()).cloned()
    }

    fn svix_headers(sig: &str) -> impl Fn(&str) -> Option<String> {
        headers(&[
            ("svix-id", ID.into()),
            ("svix-timestamp", TS.to_string()),
            ("svix-signature", sig.into()),
        ])
    }

    #[test]
    fn delivery_ids() {
        assert_eq!(delivery_id(svix_headers(SIG)), Some(ID.to_string()));
        let standard = headers(&[("webhook-id", "msg_std".into())]);
        assert_eq!(delivery_id(standard), Some("msg_std".to_string()));
        let both = headers(&[("webhook-id", "b".into()), ("Svix-Id", "a".into())]);
        assert_eq!(delivery_id(both), Some("a".to_string()));
        assert_eq!(delivery_id(headers(&[])), None);
        assert_eq!(delivery_id(headers(&[("svix-id", String::new())])), None);
        assert_eq!(DELIVERY_MEMORY_SECS, 600);
    }

    #[test]
    fn known_good_vector() {
        assert_eq!(verify(svix_headers(SIG), BODY, SECRET, TS), Ok(()));
        // The secret without its prefix works too.
        let bare = SECRET.trim_start_matches("whsec_");
        assert_eq!(verify(svix_headers(SIG), BODY, bare, TS), Ok(()));
    }

    #[test]
    fn signature_list_cases() {
        let wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let cases = [
            (format!("v1a,abc {SIG}"), Ok(())),
            (format!("{wrong} {SIG}"), Ok(())),
            (format!("{SIG}  v2,xyz"), Ok(())),
            (format!("v1,!!notbase64 {SIG}"), Ok(())),
            (wrong.to_string(), Err(SvixError::NoMatchingSignature)),
            (
                SIG.replace("v1,", "v2,"),
                Err(SvixError::NoMatchingSignature),
            ),
            (
                SIG.trim_start_matches("v1,").to_string(),
                Err(SvixError::NoMatchingSignature),
            ),
            (String::new(), Err(SvixError::NoMatchingSignature)),
            // A truncated signature must not match as a prefix.
            (
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd".to_string(),
                Err(SvixError::NoMatchingSignature),
            ),
        ];
        for (sig, want) in cases {
            assert_eq!(
                verify(svix_headers(&sig), BODY, SECRET, TS),
                want,
                "{sig:?}"
            );
        }
    }

    #[test]
    fn body_and_id_are_signed() {
        let tampered = br#"{"email":"evil@example.com","username":"test_user"}"#;
        assert_eq!(
            verify(svix_headers(SIG), tampered, SECRET, TS),
            Err(SvixError::NoMatchingSignature)
        );
        let h = headers(&[
            ("svix-id", "msg_other".into()),
            ("svix-timestamp", TS.to_string()),
            ("svix-signature", SIG.into()),
        ]);
        assert_eq!(
            verify(h, BODY, SECRET, TS),
            Err(SvixError::NoMatchingSignature)
        );
        assert_eq!(
            verify(
                svix_headers(SIG),
                BODY,
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAA",
                TS
            ),
            Err(SvixError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamp_cases() {
        let cases = [
            (TS + 300, Ok(())),
            (TS - 300, Ok(())),
            (TS + 301, Err(SvixError::TimestampOutOfRange)),
            (TS - 301, Err(SvixError::TimestampOutOfRange)),
            (0, Err(SvixError::TimestampOutOfRange)),
        ];
        for (now, want) in cases {
            assert_eq!(
                verify(svix_headers(SIG), BODY, SECRET, now),
                want,
                "now {now}"
            );
        }
        for ts in [
            "",
            "abc",
            "1649367553.0",
            "-1649367553",
            "+1649367553",
            "99999999999999999999",
        ] {
            let h = headers(&[
                ("svix-id", ID.into()),
                ("svix-timestamp", ts.into()),
                ("svix-signature", SIG.into()),
            ]);
            assert_eq!(
                verify(h, BODY, SECRET, TS),
                Err(SvixError::InvalidTimestamp),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn standard_webhooks_header_names() {
        let h = headers(&[
            ("Webhook-Id", ID.into()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", SIG.into()),
        ]);
        assert_eq!(verify(h, BODY, SECRET, TS), Ok(()));
        // Mixed spellings fall back per header.
        let h = headers(&[
            ("svix-id", ID.into()),
            ("webhook-timestamp", TS.to_string()),
            ("svix-signature", SIG.into()),
        ]);
        assert_eq!(verify(h, BODY, SECRET, TS), Ok(()));
    }

    #[test]
    fn missing_headers_and_bad_secret() {
        let h = headers(&[("svix-id", ID.into()), ("svix-timestamp", TS.to_string())]);
        let err = verify(h, BODY, SECRET, TS).expect_err("missing");
        assert_eq!(err, SvixError::MissingHeader("svix-signature"));
        assert_eq!(err.status(), 401);
        let h = headers(&[]);
        assert_eq!(
            verify(h, BODY, SECRET, TS),
            Err(SvixError::MissingHeader("svix-id"))
        );
        let err = verify(svix_headers(SIG), BODY, "whsec_not base64!", TS).expect_err("secret");
        assert_eq!(err, SvixError::InvalidSecret);
        assert_eq!(err.status(), 500);
    }

    fn user_event(kind: &str, data: Value) -> Vec<u8> {
        serde_json::json!({"type": kind, "object": "event", "timestamp": 1, "data": data})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn clerk_user_events() {
        use serde_json::json;
        let data = json!({
            "id": "user_1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "primary_email_address_id": "idn_2",
            "email_addresses": [
                {"id": "idn_1", "email_address": "old@example.com"},
                {"id": "idn_2", "email_address": "ada@example.com"}
            ]
        });
        assert_eq!(
            parse_clerk_event(&user_event("user.created", data)),
            Ok(ClerkEvent::UserUpserted(ClerkUser {
                id: "user_1".into(),
                email: Some("ada@example.com".into()),
                name: Some("Ada Lovelace".into()),
            }))
        );

        // (data, email, name)
        let cases = [
            (
                json!({"id":"u","first_name":null,"last_name":"Hopper","primary_email_address_id":"nope",
                       "email_addresses":[{"id":"a","email_address":"g@h.test"}]}),
                Some("g@h.test"),
                Some("Hopper"),
            ),
            (
                json!({"id":"u","first_name":"Grace","primary_email_address_id":null,"email_addresses":[]}),
                None,
                Some("Grace"),
            ),
            (
                json!({"id":"u","first_name":"","last_name":null}),
                None,
                None,
            ),
            (
                json!({"id":"u","first_name":"  ","last_name":" "}),
                None,
                None,
            ),
        ];
        for (data, email, name) in cases {
            let got = parse_clerk_event(&user_event("user.updated", data.clone()));
            assert_eq!(
                got,
                Ok(ClerkEvent::UserUpserted(ClerkUser {
                    id: "u".into(),
                    email: email.map(str::to_owned),
                    name: name.map(str::to_owned),
                })),
                "{data}"
            );
        }

        assert_eq!(
            parse_clerk_event(&user_event(
                "user.deleted",
                json!({"id":"user_1","object":"user","deleted":true})
            )),
            Ok(ClerkEvent::UserDeleted {
                id: "user_1".into()
            })
        );
        assert_eq!(
            parse_clerk_event(&user_event("session.created", json!(null))),
            Ok(ClerkEvent::Ignored {
                event_type: "session.created".into()
            })
        );
    }

    #[test]
    fn malformed_clerk_payloads() {
        use serde_json::json;
        let cases: Vec<(Vec<u8>, ClerkPayloadError)> = vec![
            (b"not json".to_vec(), ClerkPayloadError::NotJson),
            (b"".to_vec(), ClerkPayloadError::NotJson),
            (b"[]".to_vec(), ClerkPayloadError::MissingType),
            (br#"{"type":5}"#.to_vec(), ClerkPayloadError::MissingType),
            (
                br#"{"type":"user.created"}"#.to_vec(),
                ClerkPayloadError::MissingData,
            ),
            (
                user_event("user.updated", json!("x")),
                ClerkPayloadError::MissingData,
            ),
            (
                user_event("user.created", json!({})),
                ClerkPayloadError::MissingUserId,
            ),
            (
                user_event("user.deleted", json!({"id": ""})),
                ClerkPayloadError::MissingUserId,
            ),
            (
                user_event("user.deleted", json!({"id": 7})),
                ClerkPayloadError::MissingUserId,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_clerk_event(&body),
                Err(want.clone()),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
