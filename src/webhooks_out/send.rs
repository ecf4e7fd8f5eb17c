//! One signed POST of a delivery body, as the object's sender and the test
//! route make it: Standard Webhooks headers, 10 s to answer, no redirects
//! followed (a redirect could lead to an address the URL rules refuse).

use std::time::Duration;

use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

use super::SEND_TIMEOUT_MS;
use crate::ai::upstream::net::{within, AbortGuard};
use crate::instance::outbox::Attempt;
use crate::webhooks::svix::signature;

/// Sends `body` as delivery `id` to `url`, signed with `secret`; how it went.
pub async fn post(url: &str, id: &str, secret: &str, body: &str, now_seconds: i64) -> Attempt {
    match try_post(url, id, secret, body, now_seconds).await {
        Ok(attempt) => attempt,
        Err(e) => Attempt {
            status_code: None,
            error: Some(e),
        },
    }
}

async fn try_post(
    url: &str,
    id: &str,
    secret: &str,
    body: &str,
    now_seconds: i64,
) -> Result<Attempt, String> {
    let sig = signature(secret, id, now_seconds, body.as_bytes())
        .map_err(|e| format!("cannot sign: {e}"))?;
    let headers = Headers::new();
    let set = |name: &str, value: &str| {
        headers
            .set(name, value)
            .map_err(|e| format!("header {name}: {e}"))
    };
    set("content-type", "application/json")?;
    set("user-agent", "MindCache-Webhooks/1")?;
    set("webhook-id", id)?;
    set("webhook-timestamp", &now_seconds.to_string())?;
    set("webhook-signature", &sig)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(url, &init).map_err(|e| format!("bad request: {e}"))?;
    let guard = AbortGuard::new();
    let signal = guard.signal();
    let answer = within(Duration::from_millis(SEND_TIMEOUT_MS), async {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        // Read (and drop) the body so the connection is finished with.
        let _ = resp.bytes().await;
        Ok::<u16, worker::Error>(resp.status_code())
    })
    .await;
    Ok(match answer {
        None => Attempt {
            status_code: None,
            error: Some(format!("no answer within {} s", SEND_TIMEOUT_MS / 1000)),
        },
        Some(Err(e)) => Attempt {
            status_code: None,
            error: Some(format!("request failed: {e}")),
        },
        Some(Ok(status)) => Attempt {
            status_code: Some(status),
            error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
        },
    })
}
