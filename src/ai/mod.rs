//! AI endpoints (`/api/chat`, `/api/transform`, `/api/generate-image`,
//! `/api/analyze-image`).
//!
//! - `core/`: platform-free: typed requests and plans (`jobs`), the upstream
//!   wire formats (`openai_stream`, `sse`, `fireworks_wire`, `messages`), the
//!   UI message stream encoder, prompts, templates and tools. Plain data in,
//!   plain data out, unit-tested natively.
//! - `upstream/`: the clients over `fetch` (`net` for settings, timeouts and
//!   aborts; `openai`; `fireworks`).
//! - `run` (the write jobs) and `chat` (the streamed chat) put the two
//!   together with access checks and the instance.

pub mod chat;
pub mod core;
pub mod run;
pub mod upstream;
