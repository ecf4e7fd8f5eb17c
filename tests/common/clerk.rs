//! A production-mode server whose users sign in with session JWTs the test
//! signs itself, against a JWKS the test serves.

use std::time::Duration;

use serde_json::json;

use super::fake::{FakeResponse, FakeUpstream};
use super::jwt::{now, Key};
use super::server::{shared, ServerOptions, TestServer};

pub struct SignedIn {
    pub server: &'static TestServer,
    key: Key,
    _jwks: FakeUpstream,
}

impl SignedIn {
    /// Starts (once per binary and set of options) a server that trusts
    /// this test's JWKS, on top of `options`.
    pub fn start(options: ServerOptions) -> SignedIn {
        Self::with_slow_jwks(options, Duration::ZERO)
    }

    /// Like [`SignedIn::start`], with a JWKS endpoint that takes `delay` to
    /// answer (so that verifying a JWT takes that long the first time).
    pub fn with_slow_jwks(options: ServerOptions, delay: Duration) -> SignedIn {
        let jwks = FakeUpstream::start();
        let key = Key::generate("kid-test");
        let jwk = key.jwk();
        jwks.on("GET", "/jwks", move |_| {
            // This fake serves nobody else, so blocking its thread is fine.
            std::thread::sleep(delay);
            FakeResponse::json(200, &json!({ "keys": [jwk.clone()] }))
        });
        let server = shared(options.var("CLERK_JWKS_URL", &jwks.url("/jwks")));
        SignedIn {
            server,
            key,
            _jwks: jwks,
        }
    }

    /// A session JWT of `user_id`, valid for ten minutes.
    pub fn jwt(&self, user_id: &str) -> String {
        let claims = json!({"sub": user_id, "exp": now() + 600, "iat": now() - 5});
        self.key.sign(&claims)
    }
}
