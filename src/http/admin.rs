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
use crate::instance::pages::{DocumentJoiner, KeyPage};

/// The `{"keys": {…}}` document, streamed one listing page at a time so
/// that an instance of any size is never held whole (docs/faults.md). The
/// first page is read before answering, so its failure is still an error
/// status; a later page's failure can only cut the body short.
pub async fn object_keys(req: &Request, ctx: &Ctx, object_id: &str) -> Answer {
    let client = object(req, ctx, object_id)?;
    let first = client.key_page(None).await?;
    let body = futures_util::stream::unfold(Pages::First(client, first), next_chunk);
    let mut resp = Response::from_stream(body)?;
    resp.headers_mut().set("Content-Type", "application/json")?;
    Ok(resp)
}

/// Where the streamed document stands.
enum Pages {
    /// The first page, read before answering.
    First(InstanceClient, KeyPage),
    /// The cursor of the page to read and send next.
    After(InstanceClient, String, DocumentJoiner),
    Done,
}

type Chunk = Result<Vec<u8>, worker::Error>;

/// One page's chunk of the document (holding one page at a time).
async fn next_chunk(state: Pages) -> Option<(Chunk, Pages)> {
    let (client, page, mut joiner) = match state {
        Pages::Done => return None,
        Pages::First(client, page) => (client, page, DocumentJoiner::default()),
        Pages::After(client, cursor, joiner) => match client.key_page(Some(&cursor)).await {
            Ok(page) => (client, page, joiner),
            Err(e) => return Some((Err(cut_short(e)), Pages::Done)),
        },
    };
    let (members, cursor) = match page.members() {
        Ok(parts) => parts,
        Err(e) => return Some((Err(cut_short(e)), Pages::Done)),
    };
    let chunk = joiner.chunk(members, cursor.is_none()).into_bytes();
    let next = match cursor {
        Some(cursor) => Pages::After(client, cursor, joiner),
        None => Pages::Done,
    };
    Some((Ok(chunk), next))
}

/// A failure after the status was sent: the body ends in an error.
fn cut_short(e: ApiError) -> worker::Error {
    crate::log_error!("admin keys document cut short: {e}");
    worker::Error::RustError(e.to_string())
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
