//! `GET /admin/do/:objectId`: an instance's keys by Durable Object id, and
//! `GET /admin/do/:objectId/storage`: what the object stores at all (its
//! tables, whether an alarm is set, whether it is a deleted instance's
//! tombstone), for operators holding `ADMIN_TOKEN`.

use worker::{Request, Response};

use super::Answer;
use crate::auth::secrets::secrets_equal;
use crate::config;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;

pub async fn object_keys(req: &Request, ctx: &Ctx, object_id: &str) -> Answer {
    let doc = object(req, ctx, object_id)?.keys_document().await?;
    let mut resp = Response::ok(doc)?;
    resp.headers_mut().set("Content-Type", "application/json")?;
    Ok(resp)
}

pub async fn object_storage(req: &Request, ctx: &Ctx, object_id: &str) -> Answer {
    let report = object(req, ctx, object_id)?.storage_report().await?;
    super::json(200, &report)
}

/// The object, once the caller proved it holds the admin token.
fn object(req: &Request, ctx: &Ctx, object_id: &str) -> Result<InstanceClient, ApiError> {
    // Without a configured token the route does not exist.
    let Some(expected) = config::setting(&ctx.env, "ADMIN_TOKEN") else {
        return Err(ApiError::not_found("Not found"));
    };
    let presented = req.headers().get("X-Admin-Token")?.unwrap_or_default();
    if !secrets_equal(&presented, &expected) {
        return Err(ApiError::Unauthorized("Invalid admin token".into()));
    }
    if !is_object_id(object_id) {
        return Err(ApiError::bad_request(
            "objectId must be a Durable Object id of 64 hexadecimal characters",
        ));
    }
    // 64 hex characters that are no id of this namespace (ids carry a
    // checksum) are the caller's mistake, not ours.
    InstanceClient::from_object_id(&ctx.env, object_id)
        .map_err(|_| ApiError::bad_request("objectId is not a Durable Object id of this namespace"))
}

fn is_object_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_64_hex() {
        assert!(is_object_id(&"a1".repeat(32)));
        assert!(!is_object_id(&"a1".repeat(31)));
        assert!(!is_object_id(&"zz".repeat(32)));
    }
}
