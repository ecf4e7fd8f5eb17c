//! The AI routes: read the body (8 MiB), parse it into a typed request,
//! hand it to `ai::run` or `ai::chat`.

use worker::Request;

use super::body::{read_object, MAX_AI_BODY_BYTES};
use super::{json, Answer};
use crate::ai::core::jobs::{ChatRequest, JobRequest};
use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::fields::Fields;

pub async fn chat(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    crate::ai::chat::start(ctx, caller, ChatRequest::parse(&body)?).await
}

/// One of the three write jobs, parsed by `parse` (e.g. `JobRequest::transform`).
pub async fn job(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
    parse: fn(&Fields) -> Result<JobRequest, ApiError>,
) -> Answer {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    let result = crate::ai::run::run(ctx, caller, parse(&body)?).await?;
    json(200, &result)
}
