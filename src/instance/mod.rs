//! One MindCache instance = one Durable Object (`MindCacheInstance`).
//! The protocol lives in plain Rust (engine, protocol, attributes, store);
//! `object` is the thin platform layer and `client` is how the Worker
//! talks to an object (the internal interface of protocol.md §7).

#[cfg(target_arch = "wasm32")]
mod attachments;
pub mod attributes;
pub mod client;
pub mod data_ops;
pub mod engine;
pub mod error;
#[cfg(target_arch = "wasm32")]
pub mod hooks;
pub mod internal;
pub mod json;
pub mod limits;
pub mod markdown;
pub mod mirror;
#[cfg(target_arch = "wasm32")]
pub mod object;
pub mod outbox;
#[cfg(target_arch = "wasm32")]
pub mod outbox_sql;
pub mod pages;
pub mod protocol;
pub mod sessions;
pub mod size;
#[cfg(target_arch = "wasm32")]
pub mod sql_store;
#[cfg(test)]
mod sqlite_store;
pub mod sse;
pub mod store;
pub mod ybridge;
pub mod yjs;

#[cfg(target_arch = "wasm32")]
pub use object::MindCacheInstance;
