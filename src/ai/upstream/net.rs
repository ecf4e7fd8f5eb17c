//! The platform edge of the AI clients: settings, timeouts raced against
//! `fetch`, aborting what is no longer wanted, and the mapping of upstream
//! failures to `502`/`504`. Only the setting parsers are pure.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;
use worker::{AbortController, AbortSignal, Delay, Env, Fetch, Headers, Method, Request};
use worker::{RequestInit, Response};

use crate::ai::core::openai_stream::http_error_message;
use crate::config::setting;
use crate::error::ApiError;

/// Limit of one upstream HTTP exchange (headers and body; for a stream, the
/// wait for the headers and then for each chunk).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an image may take to be ready (ai.md: up to 60 s).
pub const DEFAULT_IMAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for either setting, so a typo cannot hold a request forever.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Which service a call goes to; names it in the errors we return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    OpenAi,
    Fireworks,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::OpenAi => "OpenAI",
            Service::Fireworks => "Fireworks",
        }
    }

    fn settings(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Service::OpenAi => (
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "https://api.openai.com/v1",
            ),
            Service::Fireworks => (
                "FIREWORKS_API_KEY",
                "FIREWORKS_BASE_URL",
                "https://api.fireworks.ai/inference/v1",
            ),
        }
    }

    pub fn timed_out(self) -> ApiError {
        ApiError::GatewayTimeout(format!("{} request timed out", self.name()))
    }
}

/// Where and how to reach one service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub service: Service,
    base: String,
    key: String,
    pub timeout: Duration,
}

impl Endpoint {
    /// The service's settings; a missing key is the `500` ai.md asks for.
    pub fn from_env(env: &Env, service: Service) -> Result<Self, ApiError> {
        let (key_name, base_name, default_base) = service.settings();
        let key = setting(env, key_name).ok_or_else(|| {
            ApiError::Misconfigured(format!("{} API key not configured", service.name()))
        })?;
        let base = setting(env, base_name).unwrap_or_else(|| default_base.to_owned());
        Ok(Endpoint {
            service,
            base: base_url(&base),
            key: key.trim().to_owned(),
            timeout: seconds_setting(
                setting(env, "AI_REQUEST_TIMEOUT_SECONDS").as_deref(),
                DEFAULT_REQUEST_TIMEOUT,
            ),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `POST` of `body` as JSON with our bearer key.
    fn post_request(&self, path: &str, body: &Value) -> Result<Request, ApiError> {
        let headers = Headers::new();
        headers.set("Content-Type", "application/json")?;
        headers.set("Authorization", &format!("Bearer {}", self.key))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.to_string().into()));
        Ok(Request::new_with_init(&self.url(path), &init)?)
    }

    /// Posts `body` and returns the JSON answer; non-2xx → `502` with the
    /// upstream's message, no answer in time → `504`.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let req = self.post_request(path, body)?;
        let (status, text) = exchange(self.service, req, self.timeout).await?;
        if !(200..300).contains(&status) {
            return Err(self.http_error(status, &text));
        }
        serde_json::from_str(&text).map_err(|_| {
            ApiError::BadGateway(format!(
                "{} returned an invalid response",
                self.service.name()
            ))
        })
    }

    /// Posts `body` and returns the response once its headers are in, for a
    /// streamed answer. The guard aborts the request when dropped.
    pub async fn post_stream(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(Response, AbortGuard), ApiError> {
        let req = self.post_request(path, body)?;
        let guard = AbortGuard::new();
        let signal = guard.signal();
        let sent = within(self.timeout, async {
            Fetch::Request(req).send_with_signal(&signal).await
        })
        .await;
        let mut resp = match sent {
            None => return Err(self.service.timed_out()),
            Some(Err(e)) => return Err(unreachable(self.service, &e)),
            Some(Ok(resp)) => resp,
        };
        let status = resp.status_code();
        if !(200..300).contains(&status) {
            let text = within(self.timeout, resp.text()).await;
            let text = text.and_then(Result::ok).unwrap_or_default();
            return Err(self.http_error(status, &text));
        }
        Ok((resp, guard))
    }

    fn http_error(&self, status: u16, body: &str) -> ApiError {
        crate::log_warn!("{} answered HTTP {status}", self.service.name());
        ApiError::BadGateway(http_error_message(status, body))
    }
}

/// Sends `req` and reads the whole body within `limit`, aborting the
/// request when the time is up.
pub async fn exchange(
    service: Service,
    req: Request,
    limit: Duration,
) -> Result<(u16, String), ApiError> {
    let (status, bytes) = exchange_bytes(service, req, limit).await?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// [`exchange`] for a binary body (a generated image).
pub async fn exchange_bytes(
    service: Service,
    req: Request,
    limit: Duration,
) -> Result<(u16, Vec<u8>), ApiError> {
    let guard = AbortGuard::new();
    let signal = guard.signal();
    let outcome = within(limit, async {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let bytes = resp.bytes().await?;
        Ok::<_, worker::Error>((resp.status_code(), bytes))
    })
    .await;
    match outcome {
        None => Err(service.timed_out()),
        Some(Err(e)) => Err(unreachable(service, &e)),
        Some(Ok(answer)) => Ok(answer),
    }
}

/// A network failure: the detail goes to the log, not to the client.
fn unreachable(service: Service, e: &worker::Error) -> ApiError {
    crate::log_error!("{} request failed: {e}", service.name());
    ApiError::BadGateway(format!("Could not reach {}", service.name()))
}

/// Runs `fut` for at most `limit`; `None` when the time ran out first (the
/// future is then dropped).
pub async fn within<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut delay = pin!(Delay::from(limit));
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if delay.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Aborts its request when dropped: on a timeout, an error, or when the
/// client of a chat stream went away and the whole run was dropped.
pub struct AbortGuard(Option<AbortController>);

impl AbortGuard {
    pub fn new() -> Self {
        AbortGuard(Some(AbortController::default()))
    }

    pub fn signal(&self) -> AbortSignal {
        match &self.0 {
            Some(c) => c.signal(),
            None => AbortSignal::abort(),
        }
    }
}

impl Default for AbortGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        // Aborting a request that already completed does nothing.
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

/// A base URL without its trailing slashes, so paths can be appended.
pub fn base_url(raw: &str) -> String {
    raw.trim().trim_end_matches('/').to_owned()
}

/// A duration setting in seconds (fractions allowed); unset, unparsable or
/// non-positive → `default`; capped at ten minutes.
pub fn seconds_setting(raw: Option<&str>, default: Duration) -> Duration {
    raw.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s).min(MAX_TIMEOUT))
        .unwrap_or(default)
}

/// The image timeout setting (`IMAGE_RESULT_TIMEOUT_SECONDS`).
pub fn image_timeout(env: &Env) -> Duration {
    seconds_setting(
        setting(env, "IMAGE_RESULT_TIMEOUT_SECONDS").as_deref(),
        DEFAULT_IMAGE_TIMEOUT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        let d = Duration::from_secs(7);
        assert_eq!(seconds_setting(None, d), d);
        assert_eq!(seconds_setting(Some("x"), d), d);
        assert_eq!(seconds_setting(Some("0"), d), d);
        assert_eq!(seconds_setting(Some("-3"), d), d);
        assert_eq!(seconds_setting(Some("NaN"), d), d);
        assert_eq!(
            seconds_setting(Some(" 2.5 "), d),
            Duration::from_millis(2500)
        );
        assert_eq!(seconds_setting(Some("99999"), d), MAX_TIMEOUT);
        assert_eq!(base_url(" http://x/v1/ "), "http://x/v1");
        assert_eq!(base_url("http://x/v1"), "http://x/v1");
    }
}
