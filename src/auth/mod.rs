//! Identity and access: recognising credentials, verifying Clerk JWTs,
//! secrets (API keys, WebSocket tokens) and role resolution. Everything here
//! is platform-free; handlers load the facts from D1 and call in.

pub mod credentials;
pub mod jwt;
pub mod roles;
pub mod secrets;
pub mod socket;

/// The user every development-mode request acts as (auth.md).
pub const DEV_USER: &str = "dev-user";
pub mod caller;
pub mod clerk;
