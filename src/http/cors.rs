//! CORS: the same headers on every response, errors included, and the
//! request's id as `x-request-id`.

use worker::{Headers, Response};

const ALLOW_ORIGIN: &str = "*";
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Content-Type, Authorization, If-Match, If-None-Match, Last-Event-ID";
/// rest-api.md: what a browser client may read of a response.
const EXPOSE_HEADERS: &str = "ETag, Content-Disposition, X-Request-Id";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Adds the CORS headers and `x-request-id` to a response. A WebSocket
/// upgrade's headers are immutable: it gets a fresh copy of them with the
/// request id (and no CORS, which does not apply to upgrades).
pub fn finish(mut resp: Response, request_id: &str) -> Response {
    if resp.status_code() == 101 {
        let headers = Headers::new();
        for (name, value) in resp.headers().entries() {
            let _ = headers.set(&name, &value);
        }
        let _ = headers.set(REQUEST_ID_HEADER, request_id);
        return resp.with_headers(headers);
    }
    let headers = resp.headers_mut();
    let _ = headers.set("Access-Control-Allow-Origin", ALLOW_ORIGIN);
    let _ = headers.set("Access-Control-Allow-Methods", ALLOW_METHODS);
    let _ = headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS);
    let _ = headers.set("Access-Control-Expose-Headers", EXPOSE_HEADERS);
    let _ = headers.set(REQUEST_ID_HEADER, request_id);
    resp
}

/// `OPTIONS` on any path: `204` with no body (`finish` adds the headers).
pub fn preflight() -> Result<Response, crate::error::ApiError> {
    Ok(Response::empty()?
        .with_status(204)
        .with_headers(Headers::new()))
}
