//! Shared integration-test harness: the real server, the seeded world in
//! its D1, clients, and local fakes of the services it calls.
#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod clerk;
pub mod fake;
pub mod jwt;
pub mod node;
pub mod openapi;
pub mod scripted;
pub mod server;
pub mod sse;
pub mod world;
pub mod ws;
pub mod yclient;

/// A name no other call in this test process gets: `{prefix}-{nanos}-{n}`.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}
