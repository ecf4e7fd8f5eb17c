//! Identity: recognising credentials, verifying them (Clerk JWTs, API keys,
//! delegates), secrets and role resolution. `credentials`, `jwt`, `roles`,
//! `secrets` and `error` are pure; `clerk` (JWKS fetch) and `verify` (D1
//! lookups) are the platform edge.

pub mod caller;
pub mod clerk;
pub mod credentials;
pub mod error;
pub mod jwt;
pub mod roles;
pub mod secrets;
pub mod verify;

pub use error::AuthError;

/// The user every development-mode request acts as (auth.md).
pub const DEV_USER: &str = "dev-user";
