//! The AI upstreams over `fetch`.

pub mod fireworks;
pub mod net;
pub mod openai;
