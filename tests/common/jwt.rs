//! Clerk as the tests play it: RSA keys the test generates, the JWKS that
//! serves them and session JWTs signed with them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

pub struct Key {
    pub kid: String,
    private: RsaPrivateKey,
}

impl Key {
    pub fn generate(kid: &str) -> Key {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa key");
        Key {
            kid: kid.to_string(),
            private,
        }
    }

    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(self.private.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.private.e().to_bytes_be()),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signs with this key but names `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let der = self.private.to_pkcs1_der().expect("der");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes()))
            .expect("sign")
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
