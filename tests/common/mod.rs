//! Shared integration-test harness: the real server and local fakes.
#![allow(dead_code)]

pub mod api;
pub mod fake;
pub mod server;
pub mod ws;
