//! Reading a request body within its size limit, then parsing it as a JSON
//! object (`crate::fields`).

use worker::Request;

use crate::error::ApiError;
pub use crate::fields::{parse_object, Fields, MAX_AI_BODY_BYTES, MAX_BODY_BYTES};

/// Reads the body as a JSON object of at most `limit` bytes.
pub async fn read_object(req: &mut Request, limit: usize) -> Result<Fields, ApiError> {
    let bytes = read_bytes(req, limit).await?;
    parse_object(&bytes, limit)
}

/// Reads the raw body, refusing one whose declared length is over `limit`.
pub async fn read_bytes(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("Content-Length")?
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(crate::fields::too_large(limit));
    }
    let bytes = req.bytes().await?;
    if bytes.len() > limit {
        return Err(crate::fields::too_large(limit));
    }
    Ok(bytes)
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
