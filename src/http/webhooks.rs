//! `POST /webhooks/clerk`: the body (within the REST limit) and the Svix
//! headers go to `webhooks::clerk`.

use worker::Request;

use super::body::{read_bytes, MAX_BODY_BYTES};
use super::{json, Answer};
use crate::ctx::Ctx;

pub async fn clerk(req: &mut Request, ctx: &Ctx) -> Answer {
    let body = read_bytes(req, MAX_BODY_BYTES).await?;
    let headers = req.headers();
    crate::webhooks::clerk::receive(ctx, |name| headers.get(name).ok().flatten(), &body).await?;
    json(200, &serde_json::json!({ "received": true }))
}
