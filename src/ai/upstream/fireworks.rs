//! Fireworks `flux-kontext-pro` over `fetch`: submit, poll about once a
//! second until a result or the deadline, then fetch the sample if it is a
//! URL. Returns the image as bare base64.

use std::time::Duration;

use base64::Engine;
use worker::{Date, Delay, Env, Method, Request, RequestInit};

use super::net::{exchange_bytes, image_timeout, Endpoint, Service};
use crate::ai::core::fireworks_wire::{
    parse_result_response, parse_submit_response, result_body, ImageRequest, PollStatus, Sample,
    RESULT_PATH, SUBMIT_PATH,
};
use crate::error::ApiError;

const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct Fireworks {
    endpoint: Endpoint,
    /// How long the result may take, submit included.
    deadline: Duration,
}

impl Fireworks {
    /// `500 {"error":"Fireworks API key not configured"}` without a key.
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Fireworks {
            endpoint: Endpoint::from_env(env, Service::Fireworks)?,
            deadline: image_timeout(env),
        })
    }

    /// Generates (or edits) an image; the result as bare base64.
    pub async fn generate(&self, request: &ImageRequest) -> Result<String, ApiError> {
        let started = now_ms();
        let deadline_ms = started + self.deadline.as_millis() as f64;
        let submitted = self
            .endpoint
            .post_json(SUBMIT_PATH, &request.submit_body())
            .await?;
        let id = parse_submit_response(&submitted).map_err(ApiError::BadGateway)?;
        loop {
            let left = deadline_ms - now_ms();
            if left <= 0.0 {
                return Err(timed_out());
            }
            Delay::from(POLL_INTERVAL.min(Duration::from_millis(left as u64))).await;
            if now_ms() >= deadline_ms {
                return Err(timed_out());
            }
            let answer = self
                .endpoint
                .post_json(RESULT_PATH, &result_body(&id))
                .await?;
            match parse_result_response(&answer) {
                PollStatus::Pending => continue,
                PollStatus::Moderated => {
                    return Err(ApiError::bad_request(
                        "Request blocked by content moderation",
                    ))
                }
                PollStatus::Failed(message) => return Err(ApiError::BadGateway(message)),
                PollStatus::Ready(Sample::Base64(b64)) => return Ok(b64),
                PollStatus::Ready(Sample::Url(url)) => return self.download(&url).await,
            }
        }
    }

    /// Fetches a result URL. No credentials go with it: it is a signed URL
    /// on a host we do not control.
    async fn download(&self, url: &str) -> Result<String, ApiError> {
        let mut init = RequestInit::new();
        init.with_method(Method::Get);
        let req = Request::new_with_init(url, &init)
            .map_err(|_| ApiError::BadGateway("Fireworks returned an invalid image URL".into()))?;
        let (status, bytes) =
            exchange_bytes(Service::Fireworks, req, self.endpoint.timeout).await?;
        if !(200..300).contains(&status) || bytes.is_empty() {
            crate::log_warn!("image download answered HTTP {status}");
            return Err(ApiError::BadGateway(
                "Could not download the generated image".into(),
            ));
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

fn timed_out() -> ApiError {
    ApiError::GatewayTimeout("Image generation timed out".into())
}
