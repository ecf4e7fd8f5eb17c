//! OpenAI Chat Completions over `fetch`: one plain call (transform, image
//! analysis) and one streamed call per chat step.

use futures_util::StreamExt;
use serde_json::Value;
use worker::{ByteStream, Env};

use super::net::{within, AbortGuard, Endpoint, Service};
use crate::ai::core::messages::completion_text;
use crate::error::ApiError;

const COMPLETIONS_PATH: &str = "/chat/completions";

pub struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    /// `500 {"error":"OpenAI API key not configured"}` without a key.
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(OpenAi {
            endpoint: Endpoint::from_env(env, Service::OpenAi)?,
        })
    }

    /// A non-streaming completion; returns the answer's text.
    pub async fn complete(&self, body: &Value) -> Result<String, ApiError> {
        let answer = self.endpoint.post_json(COMPLETIONS_PATH, body).await?;
        completion_text(&answer)
            .ok_or_else(|| ApiError::BadGateway("OpenAI returned no answer".into()))
    }

    /// [`OpenAi::complete`] with the tokens in and out the answer's
    /// `usage` reports, if it does.
    pub async fn complete_counted(
        &self,
        body: &Value,
    ) -> Result<(String, Option<(i64, i64)>), ApiError> {
        let answer = self.endpoint.post_json(COMPLETIONS_PATH, body).await?;
        let text = completion_text(&answer)
            .ok_or_else(|| ApiError::BadGateway("OpenAI returned no answer".into()))?;
        let usage = &answer["usage"];
        let tokens = usage["prompt_tokens"]
            .as_i64()
            .zip(usage["completion_tokens"].as_i64());
        Ok((text, tokens))
    }

    /// Starts a streamed completion (`stream: true` in `body`).
    pub async fn stream(&self, body: &Value) -> Result<CompletionStream, ApiError> {
        let (mut resp, guard) = self.endpoint.post_stream(COMPLETIONS_PATH, body).await?;
        Ok(CompletionStream {
            body: resp.stream()?,
            _guard: guard,
            idle: self.endpoint.timeout,
        })
    }
}

/// The body of a streamed completion. Dropping it aborts the request.
pub struct CompletionStream {
    body: ByteStream,
    _guard: AbortGuard,
    /// The longest wait for the next chunk.
    idle: std::time::Duration,
}

impl CompletionStream {
    /// The next bytes, `None` at the end; `504` when the upstream goes
    /// silent for longer than the timeout.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        match within(self.idle, self.body.next()).await {
            None => Err(Service::OpenAi.timed_out()),
            Some(None) => Ok(None),
            Some(Some(Ok(bytes))) => Ok(Some(bytes)),
            Some(Some(Err(e))) => {
                crate::log_error!("OpenAI stream failed: {e}");
                Err(ApiError::BadGateway("OpenAI stream was interrupted".into()))
            }
        }
    }
}
