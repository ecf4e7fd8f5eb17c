//! Fireworks `flux-kontext-pro`: request bodies and response parsing.
//!
//! The flow is submit → `request_id` → poll `get_result` until a terminal
//! status. Status spellings vary between deployments, so they are matched
//! loosely.

use super::openai_stream::error_message;
use super::template::data_url_base64;
use serde_json::{json, Map, Value};

/// Path (under the Fireworks base URL) of the submit endpoint.
pub const SUBMIT_PATH: &str = "/workflows/accounts/fireworks/models/flux-kontext-pro";
/// Path of the polling endpoint.
pub const RESULT_PATH: &str = "/workflows/accounts/fireworks/models/flux-kontext-pro/get_result";

/// Parameters of one generation. Empty `input_images` means text-to-image;
/// otherwise the images (data URLs) are edited.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub prompt: String,
    pub seed: i64,
    pub aspect_ratio: String,
    pub safety_tolerance: i64,
    pub input_images: Vec<String>,
}

impl ImageRequest {
    /// A request with the endpoint's defaults (seed -1, 1:1, tolerance 2).
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            seed: -1,
            aspect_ratio: "1:1".into(),
            safety_tolerance: 2,
            input_images: Vec::new(),
        }
    }

    /// The submit body: `aspect_ratio` for generation; for editing the image
    /// (one) or images (array) with `prompt_upsampling:false` and the
    /// `safety_tolerance`, and no aspect ratio (the input decides it).
    pub fn submit_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("prompt".into(), json!(self.prompt));
        body.insert("seed".into(), json!(self.seed));
        match self.input_images.as_slice() {
            [] => {
                body.insert("aspect_ratio".into(), json!(self.aspect_ratio));
            }
            images => {
                let input = match images {
                    [one] => json!(one),
                    many => json!(many),
                };
                body.insert("input_image".into(), input);
                body.insert("prompt_upsampling".into(), json!(false));
                body.insert("safety_tolerance".into(), json!(self.safety_tolerance));
            }
        }
        Value::Object(body)
    }
}

/// The body of a poll for `request_id`.
pub fn result_body(request_id: &str) -> Value {
    json!({ "id": request_id })
}

/// The `request_id` of a submit response (a number is accepted as its text).
pub fn parse_submit_response(response: &Value) -> Result<String, String> {
    match response.get("request_id").or_else(|| response.get("id")) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err("image service returned no request_id".into()),
    }
}

/// The generated image as the service returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    /// To be fetched.
    Url(String),
    /// Bare base64 (a data URL's prefix is already removed).
    Base64(String),
}

/// What one poll says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStatus {
    Ready(Sample),
    Pending,
    Moderated,
    Failed(String),
}

/// Interprets a `get_result` response.
pub fn parse_result_response(response: &Value) -> PollStatus {
    let status = response.get("status").and_then(Value::as_str).unwrap_or("");
    // "Request Moderated", "content_moderated", "TASK NOT FOUND", … → one word.
    let norm: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if norm.contains("moderat") {
        return PollStatus::Moderated;
    }
    match norm.as_str() {
        "ready" | "succeeded" | "success" | "completed" | "complete" | "done" | "finished" => {
            match sample(response) {
                Some(s) => PollStatus::Ready(s),
                None => PollStatus::Failed("image service returned no image".into()),
            }
        }
        "error" | "failed" | "failure" | "tasknotfound" | "notfound" | "cancelled" | "canceled" => {
            PollStatus::Failed(failure_message(response, status))
        }
        // A sample without a recognised status is still a result.
        _ => match sample(response) {
            Some(s) if norm.is_empty() => PollStatus::Ready(s),
            _ => PollStatus::Pending,
        },
    }
}

/// `result.sample`, or the looser shapes `result` (a string) and `sample`.
fn sample(response: &Value) -> Option<Sample> {
    let result = response.get("result");
    let raw = result
        .and_then(|r| r.get("sample"))
        .or_else(|| result.filter(|r| r.is_string()))
        .or_else(|| response.get("sample"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())?;
    if raw.starts_with("http://") || raw.starts_with("https://") {
        Some(Sample::Url(raw.to_owned()))
    } else {
        let b64 = data_url_base64(raw).unwrap_or(raw);
        Some(Sample::Base64(b64.to_owned()))
    }
}

fn failure_message(response: &Value, status: &str) -> String {
    let detail = ["details", "error", "message"]
        .iter()
        .filter_map(|f| response.get(*f))
        .find(|v| !v.is_null())
        .map(error_message);
    match detail {
        Some(d) if !d.is_empty() => format!("Image generation failed: {d}"),
        _ => format!("Image generation failed: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_to_image_body() {
        let mut r = ImageRequest::new("a cat");
        r.aspect_ratio = "16:9".into();
        assert_eq!(
            r.submit_body(),
            json!({"prompt":"a cat","seed":-1,"aspect_ratio":"16:9"})
        );
    }

    #[test]
    fn edit_bodies() {
        let mut r = ImageRequest::new("make it blue");
        r.seed = 7;
        r.safety_tolerance = 4;
        r.input_images = vec!["data:image/jpeg;base64,AA".into()];
        assert_eq!(
            r.submit_body(),
            json!({"prompt":"make it blue","seed":7,"input_image":"data:image/jpeg;base64,AA",
                   "prompt_upsampling":false,"safety_tolerance":4})
        );
        r.input_images.push("data:image/png;base64,BB".into());
        assert_eq!(
            r.submit_body()["input_image"],
            json!(["data:image/jpeg;base64,AA", "data:image/png;base64,BB"])
        );
        assert_eq!(result_body("abc"), json!({"id":"abc"}));
    }

    #[test]
    fn submit_response() {
        assert_eq!(
            parse_submit_response(&json!({"request_id":"r1"})),
            Ok("r1".into())
        );
        assert_eq!(
            parse_submit_response(&json!({"request_id":12})),
            Ok("12".into())
        );
        assert!(parse_submit_response(&json!({"request_id":""})).is_err());
        assert!(parse_submit_response(&json!({"detail":"bad"})).is_err());
    }

    #[test]
    fn result_statuses() {
        let p = |v: Value| parse_result_response(&v);
        assert_eq!(
            p(json!({"id":"r","status":"Ready","result":{"sample":"https://cdn/x.jpg"}})),
            PollStatus::Ready(Sample::Url("https://cdn/x.jpg".into()))
        );
        assert_eq!(
            p(json!({"status":"ready","result":{"sample":"QUJD"}})),
            PollStatus::Ready(Sample::Base64("QUJD".into()))
        );
        assert_eq!(
            p(json!({"status":"Ready","result":{"sample":"data:image/png;base64,QUJD"}})),
            PollStatus::Ready(Sample::Base64("QUJD".into()))
        );
        assert_eq!(
            p(json!({"status":"Ready","result":"QUJD"})),
            PollStatus::Ready(Sample::Base64("QUJD".into()))
        );
        assert!(matches!(
            p(json!({"status":"Ready","result":{}})),
            PollStatus::Failed(_)
        ));
        for s in ["Pending", "Queued", "processing", "Running", ""] {
            assert_eq!(
                p(json!({"status":s,"result":null})),
                PollStatus::Pending,
                "{s}"
            );
        }
        assert_eq!(p(json!({})), PollStatus::Pending);
        for s in [
            "Request Moderated",
            "Content Moderated",
            "content_moderated",
        ] {
            assert_eq!(p(json!({"status":s})), PollStatus::Moderated, "{s}");
        }
        assert_eq!(
            p(json!({"status":"Error","details":"GPU fell over"})),
            PollStatus::Failed("Image generation failed: GPU fell over".into())
        );
        assert_eq!(
            p(json!({"status":"Failed","error":{"message":"bad input"}})),
            PollStatus::Failed("Image generation failed: bad input".into())
        );
        assert_eq!(
            p(json!({"status":"Task not found"})),
            PollStatus::Failed("Image generation failed: Task not found".into())
        );
        // No status but a sample: take it.
        assert_eq!(
            p(json!({"sample":"https://x"})),
            PollStatus::Ready(Sample::Url("https://x".into()))
        );
    }
}
