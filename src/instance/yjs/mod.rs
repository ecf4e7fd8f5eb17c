//! MindCache 3 clients (yjs.md): the Y document an instance keeps once a
//! Y.js client has connected, and its bridge to the 2.0 key rows. All of it
//! is pure (no runtime types) and unit-tested natively; the object's glue
//! is `ybridge.rs` (persistence and the hook on every key write) and
//! `object.rs` (binary frames).

pub mod attrs;
pub mod doc;
pub mod text;
pub mod wire;
