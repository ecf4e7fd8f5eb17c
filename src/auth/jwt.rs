//! Clerk session JWTs: JWKS parsing, RS256 signature verification and the
//! claim checks of auth.md, all over plain data and an explicit `now`.
//! Fetching and caching the JWKS document is the caller's job; the caching
//! rule itself is [`jwks_cache_action`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 5;
/// How long a fetched JWKS is trusted.
pub const JWKS_TTL_SECS: u64 = 3600;
/// Least time between two fetches triggered by an unknown `kid`.
pub const JWKS_REFETCH_MIN_INTERVAL_SECS: u64 = 60;

/// Why a token (or a JWKS document) was refused. The `Display` text is the
/// 401 message and names the failed check; it never echoes token contents
/// beyond the algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("Malformed token")]
    Malformed,
    #[error("Unsupported token algorithm '{0}': only RS256 is accepted")]
    UnsupportedAlgorithm(String),
    #[error("Token header has no key id (kid)")]
    MissingKeyId,
    #[error("Unknown signing key")]
    UnknownKey,
    #[error("Signing key is invalid")]
    InvalidKey,
    #[error("Invalid token signature")]
    BadSignature,
    #[error("Invalid token type: expected JWT")]
    InvalidType,
    #[error("Token has no expiry (exp)")]
    MissingExpiry,
    #[error("Token claim '{0}' is not a number")]
    InvalidNumericClaim(&'static str),
    #[error("Token expired")]
    Expired,
    #[error("Token not yet valid (nbf)")]
    NotYetValid,
    #[error("Token issued in the future (iat)")]
    IssuedInFuture,
    #[error("Token has no subject (sub)")]
    MissingSubject,
    #[error("Invalid token issuer")]
    InvalidIssuer,
    #[error("Token has no authorized party (azp)")]
    MissingAuthorizedParty,
    #[error("Token authorized party (azp) is not allowed")]
    UnauthorizedParty,
    #[error("Session is pending")]
    PendingSession,
    /// The JWKS document itself is unusable (an upstream fault, not the
    /// caller's: map to 502).
    #[error("Invalid JWKS document")]
    InvalidJwks,
}

/// One RSA signing key from a JWKS document (base64url `n` and `e`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaJwk {
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// The usable keys of a JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<RsaJwk>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

impl Jwks {
    /// Parses a JWKS document. Keys that cannot verify RS256 (another `kty`,
    /// `use` other than `sig`, `alg` other than RS256, no `kid`) are skipped
    /// rather than failing the whole document; only a document that is not
    /// `{"keys":[…]}` is an error.
    pub fn parse(json: &[u8]) -> Result<Jwks, JwtError> {
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| JwtError::InvalidJwks)?;
        let keys = raw.keys.iter().filter_map(rsa_jwk).collect();
        Ok(Jwks { keys })
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&RsaJwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn rsa_jwk(v: &Value) -> Option<RsaJwk> {
    let field = |name: &str| v.get(name).and_then(Value::as_str);
    if field("kty") != Some("RSA") {
        return None;
    }
    if field("use").is_some_and(|u| u != "sig") || field("alg").is_some_and(|a| a != "RS256") {
        return None;
    }
    Some(RsaJwk {
        kid: field("kid").filter(|k| !k.is_empty())?.to_owned(),
        n: field("n")?.to_owned(),
        e: field("e")?.to_owned(),
    })
}

/// What the token header says, read before the signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub kid: String,
    pub typ: Option<String>,
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    signing_input: &'a str,
}

fn split_token(token: &str) -> Result<Parts<'_>, JwtError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
    // An empty signature is let through here so that an unsecured
    // (`alg: none`) token is refused for its algorithm, by name.
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(JwtError::Malformed);
    }
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn decode_json_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Reads the header: `alg` must be RS256 (checked here, before any key is
/// looked up, so `none` and HMAC tokens never reach a verifier) and `kid`
/// must be present so a key can be picked.
pub fn read_header(token: &str) -> Result<TokenHeader, JwtError> {
    let parts = split_token(token)?;
    let header = decode_json_object(parts.header)?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => return Err(JwtError::UnsupportedAlgorithm(alg.clone())),
        _ => return Err(JwtError::Malformed),
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(Value::String(_)) | None => return Err(JwtError::MissingKeyId),
        Some(_) => return Err(JwtError::Malformed),
    };
    let typ = match header.get("typ") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(JwtError::InvalidType),
    };
    Ok(TokenHeader { kid, typ })
}

/// Verifies the RS256 signature of `token` with `key` and returns the
/// decoded claims. No claim is checked here.
pub fn verify_signature(token: &str, key: &RsaJwk) -> Result<Map<String, Value>, JwtError> {
    let parts = split_token(token)?;
    let verifier = VerifyingKey::<Sha256>::new(public_key(key)?);
    // An undecodable signature segment is a bad signature, not a bad key.
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or(JwtError::BadSignature)?;
    verifier
        .verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;
    decode_json_object(parts.payload)
}

/// The RSA public key of a JWK: base64url big-endian modulus and exponent,
/// within the sizes the `rsa` crate accepts (up to 4096 bits).
fn public_key(key: &RsaJwk) -> Result<RsaPublicKey, JwtError> {
    let number = |b64: &str| {
        URL_SAFE_NO_PAD
            .decode(b64)
            .map(|bytes| BigUint::from_bytes_be(&bytes))
            .map_err(|_| JwtError::InvalidKey)
    };
    RsaPublicKey::new(number(&key.n)?, number(&key.e)?).map_err(|_| JwtError::InvalidKey)
}

/// The `typ` header check: absent, or `JWT` (media type names are
/// case-insensitive, RFC 7515 §4.1.9).
pub fn check_type(typ: Option<&str>) -> Result<(), JwtError> {
    match typ {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("JWT") => Ok(()),
        Some(_) => Err(JwtError::InvalidType),
    }
}

/// Which optional claim checks are configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// `CLERK_ISSUER`: `iss` must equal it.
    pub issuer: Option<String>,
    /// `CLERK_AUTHORIZED_PARTIES`: when non-empty, `azp` must be one of them.
    pub authorized_parties: Vec<String>,
}

impl ClaimRules {
    /// From the two variables; blank values count as unset.
    pub fn from_config(issuer: Option<&str>, authorized_parties: Option<&str>) -> ClaimRules {
        ClaimRules {
            issuer: issuer
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            authorized_parties: authorized_parties
                .map(parse_authorized_parties)
                .unwrap_or_default(),
        }
    }
}

/// Splits `CLERK_AUTHORIZED_PARTIES` on commas, trimming, dropping blanks.
pub fn parse_authorized_parties(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A NumericDate claim as whole seconds (fractions are floored, RFC 7519
/// allows them); `Ok(None)` when absent.
fn numeric_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                // Saturating float → int conversion; out-of-range values end up
                // at i64::MIN/MAX, which the comparisons treat correctly.
                Ok(Some(f.floor() as i64))
            } else {
                Err(JwtError::InvalidNumericClaim(name))
            }
        }
        Some(_) => Err(JwtError::InvalidNumericClaim(name)),
    }
}

/// The claim checks of auth.md over decoded claims, in order; returns the
/// user id (`sub`). `now` is Unix seconds.
pub fn check_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now: i64,
) -> Result<String, JwtError> {
    let exp = numeric_claim(claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
    if exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(JwtError::Expired);
    }
    let latest_start = now.saturating_add(LEEWAY_SECS);
    if numeric_claim(claims, "nbf")?.is_some_and(|nbf| nbf > latest_start) {
        return Err(JwtError::NotYetValid);
    }
    if numeric_claim(claims, "iat")?.is_some_and(|iat| iat > latest_start) {
        return Err(JwtError::IssuedInFuture);
    }
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(JwtError::MissingSubject),
    };
    if let Some(issuer) = &rules.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(JwtError::InvalidIssuer);
        }
    }
    if !rules.authorized_parties.is_empty() {
        let azp = match claims.get("azp") {
            Some(Value::String(a)) if !a.is_empty() => a,
            _ => return Err(JwtError::MissingAuthorizedParty),
        };
        if !rules.authorized_parties.iter().any(|p| p == azp) {
            return Err(JwtError::UnauthorizedParty);
        }
    }
    if claims.get("sts").and_then(Value::as_str) == Some("pending") {
        return Err(JwtError::PendingSession);
    }
    Ok(sub)
}

/// A verified session.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `sub`: the Clerk user id.
    pub user_id: String,
    pub claims: Map<String, Value>,
}

/// The whole verification: header, key by `kid` ([`JwtError::UnknownKey`]
/// tells the caller to consult [`jwks_cache_action`] and maybe retry with a
/// fresh JWKS), signature, then `typ` and the claims.
pub fn verify_token(
    token: &str,
    jwks: &Jwks,
    rules: &ClaimRules,
    now: i64,
) -> Result<VerifiedToken, JwtError> {
    let header = read_header(token)?;
    let key = jwks.find(&header.kid).ok_or(JwtError::UnknownKey)?;
    let claims = verify_signature(token, key)?;
    check_type(header.typ.as_deref())?;
    let user_id = check_claims(&claims, rules, now)?;
    Ok(VerifiedToken { user_id, claims })
}

/// What to do with the in-memory JWKS for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksCacheAction {
    /// The cached document is fresh and has the key.
    UseCache,
    /// Fetch the document (then verify against the new one).
    Refetch,
    /// The key is unknown and a fetch happened under a minute ago: refuse
    /// with [`JwtError::UnknownKey`] without fetching, so forged `kid`s cannot
    /// make us hammer Clerk.
    UnknownKey,
}

/// The caching rule: trust a fetch for an hour; on an unknown `kid`, fetch
/// again at most once a minute. `cached_at` is when the cached document was
/// fetched (`None`: nothing cached); `last_fetch_at` is the last fetch
/// attempt of any kind, successful or not; times are Unix seconds.
pub fn jwks_cache_action(
    cached_at: Option<u64>,
    last_fetch_at: Option<u64>,
    now: u64,
    kid_found: bool,
) -> JwksCacheAction {
    let Some(cached_at) = cached_at else {
        return JwksCacheAction::Refetch;
    };
    if now.saturating_sub(cached_at) >= JWKS_TTL_SECS {
        return JwksCacheAction::Refetch;
    }
    if kid_found {
        return JwksCacheAction::UseCache;
    }
    let last = last_fetch_at.map_or(cached_at, |t| t.max(cached_at));
    if now.saturating_sub(last) >= JWKS_REFETCH_MIN_INTERVAL_SECS {
        JwksCacheAction::Refetch
    } else {
        JwksCacheAction::UnknownKey
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use rsa::RsaPrivateKey;
    use serde_json::json;

    // Throwaway 2048-bit keys made with `openssl genrsa -traditional 2048`
    // for these tests only.
    const KEY_A: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAuO78xeERMeeMcZ+QU8swBe/mV57NOKYz+6TR0xt+XCn4vEUL
XSXh7wTA4bWzrDNi/aetFfZYd1QOa8No3IVLLacpk3Xk98/RBhKBut0OHtmS32rl
RNETJqkKvjtkrdZ8PcjB23VSiiSB5R8oIIquxkIoQJsqhe4NMLPw4plOvDhud+US
8Fn2/8VYKylhZn7xesV0COV8VL4YDqjEblr2RbA3jzc5HcCnvVvTQ03vgYbiOz+q
MHeG+4dAal3asyUxf9t/ckA/W+X0G9Ct8+5eb7kDCepF50j6g763TlJeXn87Yks0
0z82UIBIQBF/WXay+dGUGt1tABymJkep/aICEQIDAQABAoIBAAEk7Wh2B4q1AY/0
akqyb6YhwV2abG+ky56Lewbg3SvJ0LGtha/6W4cEkwLygl2W5c5m+rGvmAWI/hvZ
li0DIB90sNOqP5Pu876jX60d0AgN1ZRPT4LY/lLXaesaZ/mRYaxqMRTgCXY0Wp9l
zXRCF2m/oAsiSqWQfwFlo6BrTWrptcWwYgv8z76TxEHYYcjHNie4SDJIQa1J8d5d
X4Cry3RV8vxTJSxGkm1C4NZFhLs/zlmr7fZfz8yQIQIC5UulifZSDUgYIWTkkdrS
9/ZoJ6Q0T0seajp+RXUu2TQoWVgaHbwOOadaDoUKYdWCS17kvP2RvPWVTFYVbn3F
EzfldZ8CgYEA7ASDOI4ioUQJZCrjyo76/XPhHgOluP3dCgk3QQNAcnUyRHrJOWfE
Enq9/ZzEfqDl3JBglmAA5FsOhce2Cxi7B/7AQqI9kR7u6fCRTidkyLbaDf6oE9CE
WCOZ1QlOGs70ftv6m8FLnX74kcBg+Jojl5IQlBS/fveM2WyPRfj45DsCgYEAyJdE
+qmlCbrHvLCjQiTazT582j3IJ1/014hKI77hne6KX35oolNYoLqwtk4+T+E8lFwY
cV+ZkGXN6ZSDADAkVSdzPfughI5tkkkH8+wHgKlvNw/cpk9FdFFuMDvUSFOXd0lq
+zERqm8bNIQHF9UJUN+PbGhwrvnfTHDC0J+JiiMCgYB3Y9D9Suk5qrEVepzAWpOc
ooG+LRon+kNWUFMjEAIJ5D8JZRNldpg4wN5a7HJ5m+qrKF2zs9y/p1AxXFU6R8hU
wwl+q5N5VayFqqvWXRcecWDcs3VSkKhh7aBjo9FevlHv2ldrctxNT21uTWLAXzih
88FvJw+3qoIVelT/kHJXAQKBgDJ4rWiMyvP5xUwa/dkkwNEnye534SbXJBofNthr
rQU6AiMpAVbmtcQrdU9JvLAIsl96FMRiE5ebpgYB0jx34Ix0krCj4a240KUgLxoW
54ReHZezLAfEpmswGhOU2kMglVn0ZTCzFgjWT/gUyFwcxG1O8x2J4eCFCsSHEt2/
ZrIVAoGBAOhfEc48kBH5GArtXF6GvqDPPltJi6ARg6Dxza4iXYxE7OSXkNSQYMLQ
P3gIDxxYrbJrtU/5L365Ockc81+qWV8Q/lOxZk0mdOxTOz0OZFk4t4HoM6FDtGIK
7mt5+CKKUoPzV/SIE4PfsSmmidm+mo6BTzwmOBzwmpPoNorMsvId
-----END RSA PRIVATE KEY-----";
    const KEY_B: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAmNbZOx4/F8GheRohrXysofTIDsn2Z375ALTC4HfIFwzTC8Nh
y3/LMRBXmxQ6+0phI7JscFm3yw6guLy19oBvTXpvCN7H5qYwNiFVnIcpverM1c8W
pXXJXRMIOSMhKxtET+koehcp6gO5pPbp2Nb6QQowjNZ5Poq9K+X2PgiFijk3my+W
Z/1QAl+hrL+ZLOy/+ZJoqcyyrrRxDZoHecTtxOmX5XQuISjMI2Ac8mkUqOj5M+aZ
PVGrdeFt5Q4gl0w6m09V05bU1BU8/Je59jzK0pEbH7FzwOHeJEyWRoHSUC17EYvK
3vmId9nqDSBN1IwK1EqyU1nfytN2dLXpJSobJwIDAQABAoIBAAFGVtgJqEYAhdre
4Xug0e9jIgBu1Tp6aiKouruo3igYboBsvm29joMOx0AqD8n9p8Dt8Dp8v9KH7vID
R3BkpskA1UL2uJs5YOitaddtkIuTz6RiUFnTmUIrZ0+Y+ZGTQjPRDXffytBYnS3n
nK3mpev0WiGR5tV3YL4AHlhyXam92KTL0QacIFA+IUVVZ0sL2Nf1v92gDFl/o/3T
zh6HD/QlAOtmAU+usLCTd3MloR/YX3z0FO5zLSOJCDWZ4rslGjhqZOyPR5bO0lrF
XLoj4Qp3ecQO4wqR2HcejF146r2tyyWy9MH/kl+pvRfWB3yGK8cF6QDa9qHSB/Dd
LJB66PkCgYEAx+9jCTWLu5gNHxsHB+8Ub8DHc+wB6XQ4A8wRyuKlWIhERYqTZf6B
ZBt2j2CHytQajt22NRxpTJTpmfhpvLqNyCkVN5BnKwHh/NR6DefXy2eDK3gc4qb+
VPsotQ3gx4VkV14xam43JrXmzkOpp7Ed7RhpDu7rcojE2+KRcorXQekCgYEAw7Kf
Nn7TQeHNOLWZ2GKw5cCG5rdsQrToSiAnlxI5eIEoJSw/Ma82+LkO2qG7pAnNoxY4
tuwn5w1ycBDjGUuY3oKO+BZ3A+GtUtp/cRrUT3SpNwbcwgk1ceu8Fw6WYnXOcjll
eEKS9YWaF2cz1Vyq5Gs54XhKgtzW/XdObuIhuo8CgYEAoLfUerCqdNBTq++EBWKw
oOzs6EiNeObNqG/A1cC/fZ18lBJDTrf5t0lEUxkbz3YVK0cakzMVilQiPH0uMmIc
Wwx7W8EezbmjuiPrQYZfN8kr7iONxLzMse97158iVADsmjbDrnSOrPWIZcKKfJyq
G8+FlFWGuvkqlj9ZACSPyRECgYEAuVtkRf+WJV60PLR1RWkk2Fik7b5qAjzLj/oo
xYRzftoGpj7klDC7RpYxpY9u5Q6MAZ64lTnVCZnI/LBiCcF6x7atp/nPPJPy0Pk3
oG+jDKcY54/OZNLIFmELxGMCubuPkM0geOnFvFuQ+f28MKkXDEcriY2gNZbq4ySv
24LAI60CgYBNsNVCyz14U+mKS26H1xsUG3oCWDT9ec/2XkPm/yHnaoeF9Ci1iiuV
XyfQCDYa5lfCJ6tpNgaK902JIrqOAB7iRvrGf2eDMeXK0doAaWfBaHOmDM4P/2uj
BaFH9VaPvQrmcI8mUyDkuVDEladCOaikiJ8veXFhYzY+oxh0dH9G3A==
-----END RSA PRIVATE KEY-----";

    const NOW: i64 = 1_700_000_000;

    fn jwk(kid: &str, pem: &str) -> RsaJwk {
        let key = RsaPrivateKey::from_pkcs1_pem(pem).expect("test key");
        RsaJwk {
            kid: kid.into(),
            n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }
    }

    fn jwks() -> Jwks {
        Jwks {
            keys: vec![jwk("kid-a", KEY_A)],
        }
    }

    fn sign_with(header: &Header, claims: &Value, pem: &str) -> String {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key");
        jsonwebtoken::encode(header, claims, &key).expect("sign")
    }

    fn rs256_header(kid: &str) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        h
    }

    fn good_claims() -> Value {
        json!({
            "sub": "user_123",
            "iss": "https://clerk.example.test",
            "azp": "https://app.example.test",
            "exp": NOW + 60,
            "nbf": NOW - 10,
            "iat": NOW - 10,
            "sts": "active",
        })
    }

    fn rules() -> ClaimRules {
        ClaimRules::from_config(
            Some("https://clerk.example.test"),
            Some("https://app.example.test, http://localhost:3000"),
        )
    }

    /// `token` verified against the test keys and rules at `NOW`.
    fn verify(token: &str) -> Result<VerifiedToken, JwtError> {
        verify_token(token, &jwks(), &rules(), NOW)
    }

    fn sign(claims: &Value) -> String {
        sign_with(&rs256_header("kid-a"), claims, KEY_A)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut c = good_claims();
        c[field] = value;
        c
    }

    fn without(field: &str) -> Value {
        let mut c = good_claims();
        if let Some(o) = c.as_object_mut() {
            o.remove(field);
        }
        c
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn accepts_a_good_token() {
        let t = sign(&good_claims());
        let v = verify(&t).expect("valid");
        assert_eq!(v.user_id, "user_123");
        assert_eq!(v.claims["sts"], "active");
        // No optional rules configured: iss/azp are not looked at.
        let t = sign(&with("iss", json!("someone else")));
        assert!(verify_token(&t, &jwks(), &ClaimRules::default(), NOW).is_ok());
    }

    #[test]
    fn claim_cases() {
        use JwtError::*;
        let cases: Vec<(&str, Value, Result<(), JwtError>)> = vec![
            ("exp missing", without("exp"), Err(MissingExpiry)),
            (
                "exp a string",
                with("exp", json!("soon")),
                Err(InvalidNumericClaim("exp")),
            ),
            ("exp long past", with("exp", json!(NOW - 100)), Err(Expired)),
            (
                "exp just past leeway",
                with("exp", json!(NOW - 5)),
                Err(Expired),
            ),
            ("exp within leeway", with("exp", json!(NOW - 4)), Ok(())),
            (
                "exp fractional",
                with("exp", json!(NOW as f64 + 0.5)),
                Ok(()),
            ),
            ("nbf future", with("nbf", json!(NOW + 6)), Err(NotYetValid)),
            ("nbf within leeway", with("nbf", json!(NOW + 5)), Ok(())),
            ("nbf absent", without("nbf"), Ok(())),
            (
                "nbf bad type",
                with("nbf", json!(true)),
                Err(InvalidNumericClaim("nbf")),
            ),
            (
                "iat future",
                with("iat", json!(NOW + 6)),
                Err(IssuedInFuture),
            ),
            ("iat within leeway", with("iat", json!(NOW + 5)), Ok(())),
            ("iat absent", without("iat"), Ok(())),
            ("sub missing", without("sub"), Err(MissingSubject)),
            ("sub empty", with("sub", json!("")), Err(MissingSubject)),
            ("sub number", with("sub", json!(42)), Err(MissingSubject)),
            (
                "iss wrong",
                with("iss", json!("https://evil.test")),
                Err(InvalidIssuer),
            ),
            ("iss missing", without("iss"), Err(InvalidIssuer)),
            ("azp missing", without("azp"), Err(MissingAuthorizedParty)),
            (
                "azp wrong",
                with("azp", json!("https://evil.test")),
                Err(UnauthorizedParty),
            ),
            (
                "azp second",
                with("azp", json!("http://localhost:3000")),
                Ok(()),
            ),
            (
                "sts pending",
                with("sts", json!("pending")),
                Err(PendingSession),
            ),
            ("sts absent", without("sts"), Ok(())),
        ];
        for (name, claims, want) in cases {
            let t = sign(&claims);
            let got = verify(&t).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn signature_is_checked_before_claims() {
        // Expired *and* signed by the wrong key: the signature error wins.
        let t = sign_with(
            &rs256_header("kid-a"),
            &with("exp", json!(NOW - 100)),
            KEY_B,
        );
        assert_eq!(verify(&t), Err(JwtError::BadSignature));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = sign(&good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&with("sub", json!("user_admin"))),
            parts[2]
        );
        assert_eq!(verify(&forged), Err(JwtError::BadSignature));
        let garbage_sig = format!("{}.{}.!!!", parts[0], parts[1]);
        assert_eq!(verify(&garbage_sig), Err(JwtError::BadSignature));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let payload = b64(&good_claims());
        let none = format!("{}.{payload}.", b64(&json!({"alg":"none","kid":"kid-a"})));
        assert_eq!(
            verify(&none),
            Err(JwtError::UnsupportedAlgorithm("none".into()))
        );
        let none = format!("{}.{payload}.x", b64(&json!({"alg":"none","kid":"kid-a"})));
        assert_eq!(
            verify(&none),
            Err(JwtError::UnsupportedAlgorithm("none".into()))
        );

        // HS256 signed with the public modulus as secret: the classic
        // key-confusion attack.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("kid-a".into());
        let secret = jwks().keys[0].n.clone();
        let hs = jsonwebtoken::encode(
            &h,
            &good_claims(),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign");
        let err = verify(&hs).expect_err("refused");
        assert_eq!(err, JwtError::UnsupportedAlgorithm("HS256".into()));
        assert_eq!(
            err.to_string(),
            "Unsupported token algorithm 'HS256': only RS256 is accepted"
        );

        let mut h = Header::new(Algorithm::RS512);
        h.kid = Some("kid-a".into());
        let rs512 = sign_with(&h, &good_claims(), KEY_A);
        assert_eq!(
            verify(&rs512),
            Err(JwtError::UnsupportedAlgorithm("RS512".into()))
        );

        let no_alg = format!("{}.{payload}.x", b64(&json!({"kid":"kid-a"})));
        assert_eq!(verify(&no_alg), Err(JwtError::Malformed));
    }

    #[test]
    fn header_checks() {
        let claims = good_claims();
        let t = sign_with(&rs256_header("kid-zzz"), &claims, KEY_A);
        assert_eq!(verify(&t), Err(JwtError::UnknownKey));

        let t = sign_with(&Header::new(Algorithm::RS256), &claims, KEY_A);
        assert_eq!(verify(&t), Err(JwtError::MissingKeyId));

        let mut h = rs256_header("kid-a");
        h.typ = Some("at+jwt".into());
        let t = sign_with(&h, &claims, KEY_A);
        assert_eq!(verify(&t), Err(JwtError::InvalidType));

        let mut h = rs256_header("kid-a");
        h.typ = None;
        let t = sign_with(&h, &claims, KEY_A);
        assert!(verify(&t).is_ok());

        let mut h = rs256_header("kid-a");
        h.typ = Some("jwt".into());
        let t = sign_with(&h, &claims, KEY_A);
        assert!(verify(&t).is_ok());

        let header = read_header(&sign(&claims)).expect("header");
        assert_eq!(header.kid, "kid-a");
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn malformed_tokens() {
        for t in ["", "a", "a.b", "a.b.c.d", "..", "!!.e30.x", "e30.e30.x"] {
            assert!(verify(t).is_err(), "{t:?}");
        }
        // A valid signature over a payload that is not JSON.
        let input = format!(
            "{}.{}",
            b64(&json!({"alg":"RS256","kid":"kid-a"})),
            "bm90IGpzb24"
        );
        let key = EncodingKey::from_rsa_pem(KEY_A.as_bytes()).expect("test key");
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).expect("sign");
        assert_eq!(verify(&format!("{input}.{sig}")), Err(JwtError::Malformed));
    }

    #[test]
    fn key_rotation_picks_by_kid() {
        let set = Jwks {
            keys: vec![jwk("kid-a", KEY_A), jwk("kid-b", KEY_B)],
        };
        let t = sign_with(&rs256_header("kid-b"), &good_claims(), KEY_B);
        assert!(verify_token(&t, &set, &rules(), NOW).is_ok());
        // Right key material but advertised under the other kid.
        let t = sign_with(&rs256_header("kid-a"), &good_claims(), KEY_B);
        assert_eq!(
            verify_token(&t, &set, &rules(), NOW),
            Err(JwtError::BadSignature)
        );
        // A JWKS entry whose modulus is garbage.
        let broken = Jwks {
            keys: vec![RsaJwk {
                kid: "kid-a".into(),
                n: "***".into(),
                e: "AQAB".into(),
            }],
        };
        assert_eq!(
            verify_token(&sign(&good_claims()), &broken, &rules(), NOW),
            Err(JwtError::InvalidKey)
        );
    }

    #[test]
    fn jwks_parsing() {
        let a = jwk("kid-a", KEY_A);
        let doc = json!({"keys": [
            {"kty":"RSA","kid":"kid-a","use":"sig","alg":"RS256","n":a.n,"e":a.e},
            {"kty":"RSA","kid":"enc","use":"enc","n":a.n,"e":a.e},
            {"kty":"RSA","kid":"ps","alg":"PS256","n":a.n,"e":a.e},
            {"kty":"RSA","n":a.n,"e":a.e},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"x","y":"y"},
            {"kty":"RSA","kid":"no-e","n":a.n},
            {"kty":"RSA","kid":"bare","n":a.n,"e":a.e},
        ]});
        let set = Jwks::parse(doc.to_string().as_bytes()).expect("parse");
        let kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["kid-a", "bare"]);
        assert_eq!(set.find("kid-a"), Some(&a));
        assert_eq!(set.find("nope"), None);
        assert_eq!(Jwks::parse(b"{}"), Err(JwtError::InvalidJwks));
        assert_eq!(Jwks::parse(b"<html>"), Err(JwtError::InvalidJwks));
        assert_eq!(Jwks::parse(br#"{"keys":[]}"#), Ok(Jwks::default()));
    }

    #[test]
    fn config_parsing() {
        let r = ClaimRules::from_config(Some("  "), Some(" a , ,b,"));
        assert_eq!(r.issuer, None);
        assert_eq!(r.authorized_parties, ["a", "b"]);
        assert_eq!(
            ClaimRules::from_config(None, Some(" , ")),
            ClaimRules::default()
        );
    }

    #[test]
    fn jwks_cache_table() {
        use JwksCacheAction::*;
        let t0 = 1_000_000u64;
        // (cached_at, last_fetch_at, now, kid_found, action)
        let cases = [
            (None, None, t0, true, Refetch),
            (None, Some(t0), t0 + 1, false, Refetch),
            (Some(t0), Some(t0), t0 + 10, true, UseCache),
            (Some(t0), Some(t0), t0 + 3599, true, UseCache),
            (Some(t0), Some(t0), t0 + 3600, true, Refetch),
            (Some(t0), Some(t0), t0 + 3600, false, Refetch),
            (Some(t0), Some(t0), t0 + 30, false, UnknownKey),
            (Some(t0), Some(t0), t0 + 60, false, Refetch),
            (Some(t0), None, t0 + 59, false, UnknownKey),
            (Some(t0), None, t0 + 61, false, Refetch),
            // A recent (perhaps failed) refetch still counts.
            (Some(t0), Some(t0 + 100), t0 + 130, false, UnknownKey),
            (Some(t0), Some(t0 + 100), t0 + 160, false, Refetch),
            // Clock going backwards does not underflow.
            (Some(t0), Some(t0), t0 - 10, true, UseCache),
        ];
        for (i, (cached, last, now, found, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                jwks_cache_action(cached, last, now, found),
                want,
                "case {i}"
            );
        }
    }
}
