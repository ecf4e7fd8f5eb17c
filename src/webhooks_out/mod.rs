//! Outbound webhooks (webhooks-out.md), the pure parts: which URLs may be
//! targets, the events, the retry schedule, and the delivery bodies built
//! from the instance's broadcast frames. The queue lives in the instance's
//! object (`instance::outbox`); signing is `webhooks::svix::signature`.

pub mod backoff;
pub mod events;
pub mod payload;
pub mod send;
pub mod target;

/// At most this many webhooks per instance.
pub const MAX_WEBHOOKS_PER_INSTANCE: usize = 10;
/// A `2xx` within this long is a success; anything slower a failure.
pub const SEND_TIMEOUT_MS: u64 = 10_000;
