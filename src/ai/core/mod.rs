//! The platform-free part of the AI routes (no `worker` calls).

pub mod fireworks_wire;
pub mod jobs;
pub mod messages;
pub mod openai_stream;
pub mod prompt;
pub mod sse;
pub mod template;
pub mod tools;
pub mod ui_stream;
