//! CORS: the same three headers on every response, errors included.

use worker::{Headers, Response};

const ALLOW_ORIGIN: &str = "*";
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Content-Type, Authorization";

/// Adds the CORS headers to a response. Some responses (WebSocket
/// upgrades) have immutable headers; those are returned as they are.
pub fn apply(mut resp: Response) -> Response {
    if resp.status_code() == 101 {
        return resp;
    }
    let headers = resp.headers_mut();
    let _ = headers.set("Access-Control-Allow-Origin", ALLOW_ORIGIN);
    let _ = headers.set("Access-Control-Allow-Methods", ALLOW_METHODS);
    let _ = headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS);
    resp
}

/// `OPTIONS` on any path: `204` with the CORS headers and no body.
pub fn preflight() -> worker::Result<Response> {
    Ok(apply(
        Response::empty()?
            .with_status(204)
            .with_headers(Headers::new()),
    ))
}
