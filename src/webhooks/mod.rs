//! Inbound webhooks: Clerk user events, signed with Svix.

pub mod clerk;
pub mod svix;
