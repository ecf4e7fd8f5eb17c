//! Reading a request body within its size limit, then parsing it as a JSON
//! object (`crate::fields`).

use futures_util::StreamExt;
use worker::Request;

use crate::error::ApiError;
use crate::fields::LimitedBody;
pub use crate::fields::{parse_object, Fields, MAX_AI_BODY_BYTES, MAX_BODY_BYTES};

/// Reads the body as a JSON object of at most `limit` bytes.
pub async fn read_object(req: &mut Request, limit: usize) -> Result<Fields, ApiError> {
    let bytes = read_bytes(req, limit).await?;
    parse_object(&bytes, limit)
}

/// Reads the raw body as a stream, refusing (`413`) one whose declared
/// length is over `limit` before reading anything, and one that turns out
/// longer as soon as it goes over (the rest is not read: the stream is
/// cancelled when dropped).
pub async fn read_bytes(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("Content-Length")?
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = LimitedBody::new(limit, declared)?;
    // No body at all (`stream()` would call that an error).
    if req.inner().body().is_none() {
        return Ok(body.into_bytes());
    }
    let mut chunks = req.stream()?;
    while let Some(chunk) = chunks.next().await {
        body.push(&chunk?)?;
    }
    Ok(body.into_bytes())
}

/// Longest `name` of any resource (projects, instances, groups, keys,
/// delegates): 1–200 characters after trimming.
pub const MAX_NAME: usize = 200;

/// A REST body whose `name` is required.
pub async fn read_named(req: &mut Request) -> Result<(Fields, String), ApiError> {
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let name = body.name("name", MAX_NAME)?;
    Ok((body, name))
}

/// A REST body that may rename its resource.
pub async fn read_renaming(req: &mut Request) -> Result<(Fields, Option<String>), ApiError> {
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let name = body.opt_name("name", MAX_NAME)?;
    Ok((body, name))
}
