//! Recognising which kind of credential a caller presented, before any of it
//! is checked against D1 or a JWKS.

use std::fmt;

use crate::auth::secrets::{api_key_prefix, has_api_key_prefix, is_api_key_format};

/// A credential whose shape has been recognised but not yet verified.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `mc_live_…` / `mc_test_…`; verified by hashing and looking up `key_hash`.
    ApiKey(String),
    /// A compact JWS `a.b.c`; verified against Clerk's JWKS.
    Jwt(String),
    /// `<delegateId>:<secret>`.
    Delegate { id: String, secret: String },
}

// Hand-written so that a credential accidentally logged with `{:?}` does not
// leak the secret part.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ApiKey(k) => write!(f, "ApiKey({}…)", api_key_prefix(k)),
            Credential::Jwt(_) => f.write_str("Jwt(…)"),
            Credential::Delegate { id, .. } => write!(f, "Delegate({id}:…)"),
        }
    }
}

/// Why a credential could not even be recognised. The `Display` text is the
/// exact `error` message of the 401 response (auth.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No `Authorization` header at all.
    #[error("Authorization required")]
    Missing,
    /// A header that is not one of the accepted forms.
    #[error("Invalid authorization header")]
    InvalidHeader,
    /// `Bearer <token>` where the token is neither an API key nor a JWT.
    /// Separate from `InvalidHeader` only because development mode, with JWT
    /// verification unconfigured, lets such a token act as `dev-user`.
    #[error("Invalid authorization header")]
    UnrecognizedBearer,
    /// `ApiKey <value>` whose value is not `<delegateId>:<secret>` with
    /// exactly one colon and both parts non-empty (delegates.md).
    #[error("Invalid delegate credential")]
    InvalidDelegate,
    /// An in-band `auth` message whose `apiKey` has no recognisable form.
    #[error("Invalid credential: expected an API key, a delegate credential or a session JWT")]
    UnrecognizedInBand,
}

/// Parses the `Authorization` header (`None` when absent).
///
/// The scheme is matched case-insensitively (RFC 9110); the credential itself
/// must be a single token without whitespace.
pub fn parse_authorization_header(header: Option<&str>) -> Result<Credential, CredentialError> {
    let header = match header {
        Some(h) if !h.trim().is_empty() => h.trim(),
        _ => return Err(CredentialError::Missing),
    };
    let (scheme, rest) = header
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(CredentialError::InvalidHeader)?;
    let value = rest.trim_start();
    if value.is_empty() || value.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(CredentialError::InvalidHeader);
    }
    if scheme.eq_ignore_ascii_case("Bearer") {
        parse_bearer(value)
    } else if scheme.eq_ignore_ascii_case("ApiKey") {
        parse_delegate(value).ok_or(CredentialError::InvalidDelegate)
    } else {
        Err(CredentialError::InvalidHeader)
    }
}

fn parse_bearer(token: &str) -> Result<Credential, CredentialError> {
    key_or_jwt(token, CredentialError::InvalidHeader)
        .unwrap_or(Err(CredentialError::UnrecognizedBearer))
}

/// An API key or a JWT; `Some(Err(mistyped))` for what has the API-key
/// prefix without its form: an API-key attempt, refused (even in development
/// mode, instead of silently acting as `dev-user`). `None` for anything else.
fn key_or_jwt(
    value: &str,
    mistyped: CredentialError,
) -> Option<Result<Credential, CredentialError>> {
    if is_api_key_format(value) {
        Some(Ok(Credential::ApiKey(value.to_owned())))
    } else if has_api_key_prefix(value) {
        Some(Err(mistyped))
    } else if is_jwt_format(value) {
        Some(Ok(Credential::Jwt(value.to_owned())))
    } else {
        None
    }
}

/// `<id>:<secret>`: exactly one colon, both parts non-empty.
fn parse_delegate(value: &str) -> Option<Credential> {
    let (id, secret) = value.split_once(':')?;
    if id.is_empty() || secret.is_empty() || secret.contains(':') {
        return None;
    }
    Some(Credential::Delegate {
        id: id.to_owned(),
        secret: secret.to_owned(),
    })
}

/// Three non-empty base64url segments separated by dots (compact JWS).
pub fn is_jwt_format(token: &str) -> bool {
    let mut segments = 0;
    for (i, part) in token.split('.').enumerate() {
        segments += 1;
        // An empty signature is still a JWT (an unsecured `alg: none` one),
        // so that it is refused for its algorithm, with that reason.
        if (part.is_empty() && i < 2)
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// Classifies the `apiKey` field of an in-band `auth` message, which carries
/// the bare credential (no scheme): an API key, a JWT, or `id:secret`.
pub fn classify_in_band(api_key: &str) -> Result<Credential, CredentialError> {
    let value = api_key.trim();
    let unrecognized = CredentialError::UnrecognizedInBand;
    match key_or_jwt(value, unrecognized) {
        Some(credential) => credential,
        None if value.contains(char::is_whitespace) => Err(unrecognized),
        None => parse_delegate(value).ok_or(unrecognized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mc_live_abcdefghijklmnopqrstuvwxyzABCDEF";
    const TEST_KEY: &str = "mc_test_0123456789abcdefghijklmnopqrstuv";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln-_x";

    fn parse(h: &str) -> Result<Credential, CredentialError> {
        parse_authorization_header(Some(h))
    }

    #[test]
    fn accepted_headers() {
        let delegate = |id: &str, secret: &str| Credential::Delegate {
            id: id.into(),
            secret: secret.into(),
        };
        let cases = [
            (format!("Bearer {KEY}"), Credential::ApiKey(KEY.into())),
            (
                format!("bearer  {TEST_KEY}"),
                Credential::ApiKey(TEST_KEY.into()),
            ),
            (format!("Bearer {JWT}"), Credential::Jwt(JWT.into())),
            ("ApiKey del_1:s3cret".into(), delegate("del_1", "s3cret")),
            ("apikey a:b".into(), delegate("a", "b")),
        ];
        for (header, expected) in cases {
            assert_eq!(parse(&header), Ok(expected), "header {header:?}");
        }
    }

    #[test]
    fn refused_headers() {
        use CredentialError::*;
        let refused: [(CredentialError, &[&str]); 3] = [
            (
                InvalidDelegate,
                &[
                    "ApiKey del_1:s3cr:et",
                    "ApiKey :secret",
                    "ApiKey id:",
                    "ApiKey nocolon",
                ],
            ),
            (
                UnrecognizedBearer,
                &[
                    "Bearer a.b",
                    "Bearer a.b.c.d",
                    "Bearer a..c",
                    "Bearer a.b+.c",
                    "Bearer just-a-token",
                ],
            ),
            (
                InvalidHeader,
                &[
                    "Bearer",
                    "Bearer ",
                    "Basic dXNlcjpwYXNz",
                    "Bearer mc_live_short",
                    "Bearer a.b.c extra",
                    KEY,
                ],
            ),
        ];
        for (error, headers) in refused {
            for header in headers {
                assert_eq!(parse(header), Err(error), "header {header:?}");
            }
        }
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            parse_authorization_header(None),
            Err(CredentialError::Missing)
        );
        assert_eq!(parse("   "), Err(CredentialError::Missing));
    }

    #[test]
    fn messages_match_the_spec() {
        assert_eq!(
            CredentialError::Missing.to_string(),
            "Authorization required"
        );
        assert_eq!(
            CredentialError::InvalidHeader.to_string(),
            "Invalid authorization header"
        );
        assert_eq!(
            CredentialError::UnrecognizedBearer.to_string(),
            "Invalid authorization header"
        );
    }

    #[test]
    fn in_band_cases() {
        assert_eq!(classify_in_band(KEY), Ok(Credential::ApiKey(KEY.into())));
        assert_eq!(classify_in_band(JWT), Ok(Credential::Jwt(JWT.into())));
        assert_eq!(
            classify_in_band("d1:secret"),
            Ok(Credential::Delegate {
                id: "d1".into(),
                secret: "secret".into()
            })
        );
        for bad in ["", "plain", "mc_live_short", "a b:c", ":x", "x:"] {
            assert_eq!(
                classify_in_band(bad),
                Err(CredentialError::UnrecognizedInBand),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_leak_secrets() {
        let shown = format!("{:?}", Credential::ApiKey(KEY.into()));
        assert_eq!(shown, "ApiKey(mc_live_abcd…)");
        let shown = format!(
            "{:?}",
            Credential::Delegate {
                id: "d".into(),
                secret: "hunter2".into()
            }
        );
        assert!(!shown.contains("hunter2"));
        assert!(!format!("{:?}", Credential::Jwt(JWT.into())).contains("eyJ"));
    }
}
