//! The AI routes: read the body (8 MiB), parse it into a typed request,
//! hand it to `ai::run` or `ai::chat`.

use worker::{Request, Response};

use super::body::{read_object, MAX_AI_BODY_BYTES};
use super::json;
use crate::ai::core::jobs::{ChatRequest, JobRequest};
use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::fields::Fields;

pub async fn chat(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Result<Response, ApiError> {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    crate::ai::chat::start(ctx, caller, ChatRequest::parse(&body)?).await
}

pub async fn transform(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    job(req, ctx, caller, JobRequest::transform).await
}

pub async fn generate_image(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    job(req, ctx, caller, JobRequest::generate_image).await
}

pub async fn analyze_image(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    job(req, ctx, caller, JobRequest::analyze_image).await
}

async fn job(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
    parse: fn(&Fields) -> Result<JobRequest, ApiError>,
) -> Result<Response, ApiError> {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    let result = crate::ai::run::run(ctx, caller, parse(&body)?).await?;
    json(200, &result)
}
