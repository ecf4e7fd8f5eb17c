//! AI endpoints (`/api/chat`, `/api/transform`, `/api/generate-image`,
//! `/api/analyze-image`). The modules below are the platform-free core: plain
//! data in, plain data out, unit-tested natively; the handlers only move bytes
//! between them, `fetch` and the instance. The platform layer: `net`
//! (settings, timeouts, aborts), `openai` and `images` (the two upstream
//! clients), `handlers` (transform, images) and `chat` (the streamed chat).

pub mod chat;
pub mod fireworks;
pub mod handlers;
pub mod images;
pub mod messages;
pub mod net;
pub mod openai;
pub mod openai_stream;
pub mod prompt;
pub mod sse;
pub mod template;
pub mod tools;
pub mod ui_stream;
