//! The HTTP data API (data-api.md): keys, batches, export/import and event
//! streams. Each handler checks the caller's role on the instance, then
//! hands the request to the instance's object, which validates, applies and
//! broadcasts exactly as for a WebSocket write.

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use worker::{Headers, Method, Request, Response, ResponseBody};

use super::body::read_bytes;
use super::sync::{token_identity, user_identity};
use super::{Answer, Trace};
use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::fields::Query;
use crate::instance::client::{DataCall, InstanceClient};
use crate::instance::data_ops::{decode_cursor, etag, MAX_PAGE_KEYS};
use crate::instance::internal;
use crate::instance::limits::MAX_KEY_BYTES;
use crate::permission::Permission;
use crate::services::access::{self, DataAccess};
use crate::services::usage;

/// Body limits (data-api.md).
pub const MAX_PUT_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

/// The caller's access to the instance, refused unless it reaches `needed`:
/// an instance the caller cannot see is `404`, too low a role `403`.
async fn require(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
    needed: Permission,
) -> Result<(DataAccess, InstanceClient), ApiError> {
    let access = access::instance_data(ctx, caller, instance_id).await?;
    if !access.role.allows(needed) {
        return Err(ApiError::Forbidden(format!(
            "This needs {} permission on the instance; you have {}",
            needed.as_str(),
            access.role.for_session().as_str()
        )));
    }
    let client = InstanceClient::with_read_only(&ctx.env, instance_id, Some(access.flag))?;
    Ok((access, client))
}

/// One `usage_logs` row per data-API write (webhooks-out.md "Usage"),
/// written after the write succeeded. The write is acknowledged whatever
/// happens here, so a failure to meter is logged, not answered.
async fn meter(
    ctx: &Ctx,
    caller: &Caller,
    endpoint: &str,
    instance_id: &str,
    answer: Answer,
) -> Answer {
    if answer.is_ok() {
        let call = usage::Call {
            endpoint,
            instance_id: Some(instance_id),
            model: None,
            tokens_in: None,
            tokens_out: None,
        };
        if let Err(e) = usage::record(ctx, caller, call).await {
            crate::log_warn!("usage of {endpoint} not recorded: {e}");
        }
    }
    answer
}

const KEY_ENDPOINT: &str = "/api/instances/:id/keys/:key";

/// A key from the URL: percent-decoded UTF-8.
fn key_from_path(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| ApiError::bad_request("The key in the URL is not percent-encoded UTF-8"))
}

/// A body read within `limit`, as text.
async fn text_body(req: &mut Request, limit: usize) -> Result<String, ApiError> {
    String::from_utf8(read_bytes(req, limit).await?)
        .map_err(|_| ApiError::bad_request("The body is not UTF-8 JSON"))
}

fn header(req: &Request, name: &str) -> Result<Option<String>, ApiError> {
    Ok(req.headers().get(name)?)
}

/// The object's JSON answer, passed on.
async fn relay_json(mut resp: Response) -> Answer {
    let body = resp.text().await?;
    let mut out = Response::ok(body)?;
    out.headers_mut().set("Content-Type", "application/json")?;
    Ok(out)
}

/// The object's answer, with `ETag` from the version it reported.
async fn relay_versioned(resp: Response) -> Answer {
    let version = resp.headers().get(internal::HEADER_VERSION)?;
    let mut out = relay_json(resp).await?;
    if let Some(version) = version.and_then(|v| v.parse::<i64>().ok()) {
        out.headers_mut().set("ETag", &etag(version))?;
    }
    Ok(out)
}

/// The object's streamed answer under new headers (a fetched response's
/// own headers cannot be changed).
fn relay_stream(resp: &Response, headers: Headers) -> Answer {
    let body = match resp.body() {
        ResponseBody::Stream(stream) => ResponseBody::Stream(stream.clone()),
        other => other.clone(),
    };
    Ok(Response::from_body(body)?.with_headers(headers))
}

/// `GET /api/instances/:id/keys`
pub async fn list(req: &Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let query = Query::of(&req.url()?);
    let limit = match query.get("limit") {
        None => MAX_PAGE_KEYS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_KEYS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be an integer from 1 to {MAX_PAGE_KEYS}"
                ))
            })?,
    };
    let limit = limit.to_string();
    if let Some(cursor) = query.get("cursor") {
        decode_cursor(cursor)
            .ok_or_else(|| ApiError::bad_request("cursor is not one this server handed out"))?;
    }
    if query.get("prefix").is_some_and(|p| p.len() > MAX_KEY_BYTES) {
        return Err(ApiError::bad_request(format!(
            "prefix is longer than a key may be ({MAX_KEY_BYTES} bytes)"
        )));
    }
    let (_, client) = require(ctx, caller, id, Permission::Read).await?;
    let mut call = DataCall::new(Method::Get, internal::PATH_DATA_LIST);
    call.query.push(("limit", &limit));
    for (name, inner) in [("prefix", "prefix"), ("tag", "tag"), ("cursor", "after")] {
        if let Some(value) = query.get(name) {
            call.query.push((inner, value));
        }
    }
    relay_json(client.data(call).await?).await
}

/// `GET /api/instances/:id/keys/:key`
pub async fn get_key(ctx: &Ctx, caller: &Caller, id: &str, raw_key: &str) -> Answer {
    let key = key_from_path(raw_key)?;
    let (_, client) = require(ctx, caller, id, Permission::Read).await?;
    let mut call = DataCall::new(Method::Get, internal::PATH_DATA_KEY);
    call.query.push(("key", &key));
    let resp = client.data(call).await?;
    if resp.headers().get(internal::HEADER_VERSION)?.is_none() {
        return Err(ApiError::not_found("Key not found"));
    }
    relay_versioned(resp).await
}

/// `PUT` (body `{"value", "attributes"?}`) or `DELETE` of
/// `/api/instances/:id/keys/:key`, under the client's `If-Match` /
/// `If-None-Match`.
pub async fn write_key(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    raw_key: &str,
) -> Answer {
    let key = key_from_path(raw_key)?;
    let method = req.method();
    let body = match method {
        Method::Put => Some(text_body(req, MAX_PUT_BYTES).await?),
        _ => None,
    };
    let (if_match, if_none_match) = (header(req, "If-Match")?, header(req, "If-None-Match")?);
    let (_, client) = require(ctx, caller, id, Permission::Write).await?;
    let mut call = DataCall::new(method, internal::PATH_DATA_KEY);
    call.query.push(("key", &key));
    call.actor = Some(&caller.user_id);
    call.if_match = if_match.as_deref();
    call.if_none_match = if_none_match.as_deref();
    call.body = body;
    let answer = relay_versioned(client.data(call).await?).await;
    meter(ctx, caller, KEY_ENDPOINT, id, answer).await
}

/// `POST /api/instances/:id/batch`
pub async fn batch(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let body = text_body(req, MAX_BATCH_BYTES).await?;
    let (_, client) = require(ctx, caller, id, Permission::Write).await?;
    let mut call = DataCall::new(Method::Post, internal::PATH_DATA_BATCH);
    call.actor = Some(&caller.user_id);
    call.body = Some(body);
    let answer = relay_json(client.data(call).await?).await;
    meter(ctx, caller, "/api/instances/:id/batch", id, answer).await
}

/// `POST /api/instances/:id/import?mode=merge|replace`
pub async fn import(req: &mut Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let query = Query::of(&req.url()?);
    let mode = match query.get("mode") {
        None | Some("merge") => "merge",
        Some("replace") => "replace",
        Some(_) => return Err(ApiError::bad_request("mode must be merge or replace")),
    };
    let body = text_body(req, MAX_IMPORT_BYTES).await?;
    let (_, client) = require(ctx, caller, id, Permission::Admin).await?;
    let mut call = DataCall::new(Method::Post, internal::PATH_DATA_IMPORT);
    call.query.push(("mode", mode));
    call.actor = Some(&caller.user_id);
    call.body = Some(body);
    let answer = relay_json(client.data(call).await?).await;
    meter(ctx, caller, "/api/instances/:id/import", id, answer).await
}

/// `GET /api/instances/:id/export?format=json|markdown`
pub async fn export(req: &Request, ctx: &Ctx, caller: &Caller, id: &str) -> Answer {
    let query = Query::of(&req.url()?);
    let (format, extension, content_type) = match query.get("format") {
        None | Some("json") => ("json", "json", "application/json"),
        Some("markdown") => ("markdown", "md", "text/markdown; charset=utf-8"),
        Some(_) => return Err(ApiError::bad_request("format must be json or markdown")),
    };
    let (access, client) = require(ctx, caller, id, Permission::Read).await?;
    let mut call = DataCall::new(Method::Get, internal::PATH_DATA_EXPORT);
    call.query.push(("format", format));
    call.query.push(("title", &access.name));
    let resp = client.data(call).await?;
    let headers = Headers::new();
    headers.set("Content-Type", content_type)?;
    headers.set(
        "Content-Disposition",
        &attachment(&format!("{}.{extension}", access.name)),
    )?;
    relay_stream(&resp, headers)
}

/// `attachment; filename="…"`, with an RFC 6266 `filename*` added when
/// the name is not plain printable ASCII.
fn attachment(filename: &str) -> String {
    let plain = filename
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\');
    if plain {
        return format!("attachment; filename=\"{filename}\"");
    }
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(filename, NON_ALPHANUMERIC);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/instances/:id/events`: a server-sent event stream held by the
/// instance's object. Authenticated like `/sync` (a one-time `?token=`, for
/// `EventSource`, or the `Authorization` header).
pub async fn events(req: &Request, ctx: &Ctx, id: &str, trace: &mut Trace) -> Answer {
    let token = Query::of(&req.url()?).get("token").map(str::to_string);
    let (identity, flag) = match token {
        Some(token) => token_identity(ctx, &token, id).await?,
        None => {
            let caller = super::authenticate(req, ctx).await?;
            trace.caller(&caller);
            let access = access::instance_data(ctx, &caller, id).await?;
            user_identity(ctx, caller, access, id).await?
        }
    };
    trace.identity(&identity);
    let client = InstanceClient::with_read_only(&ctx.env, id, flag)?;
    let resp = client.events(identity, ctx.development).await?;
    let headers = Headers::new();
    headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
    headers.set("Cache-Control", "no-cache, no-transform")?;
    relay_stream(&resp, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded() {
        assert_eq!(key_from_path("a%2Fb%20%C3%A9").unwrap(), "a/b é");
        assert!(key_from_path("%FF").is_err());
    }

    #[test]
    fn attachments_name_the_file_safely() {
        assert_eq!(
            attachment("Notes.json"),
            "attachment; filename=\"Notes.json\""
        );
        assert_eq!(
            attachment("Ré \"x\".md"),
            "attachment; filename=\"R_ _x_.md\"; filename*=UTF-8''R%C3%A9%20%22x%22%2Emd"
        );
    }
}
