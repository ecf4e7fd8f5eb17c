//! The AI routes as typed requests and pure plans. Parsing a body gives a
//! request (`400` naming the field); planning it against the instance's keys
//! gives the upstream call to make (`404` for a missing input key, `400` for
//! one that cannot serve). `ai::run` performs a plan; everything here is
//! plain data, unit-tested natively.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::fireworks_wire::ImageRequest;
use super::messages::{completion_body, vision_content};
use super::prompt::value_as_text;
use super::template::{
    placeholders, resolve_template, to_data_url, transform_prompt, MAX_RESOLVED_TEMPLATE_BYTES,
};
use super::tools::Mode;
use crate::error::ApiError;
use crate::fields::Fields;
use crate::ids::is_valid_instance_id;
use crate::instance::limits::validate_key;

/// Longest model name we pass on.
const MAX_MODEL_CHARS: usize = 200;
/// Longest key name a body may carry (keys are at most 512 bytes).
const MAX_KEY_CHARS: usize = 512;
pub const DEFAULT_MAX_STEPS: u32 = 8;
pub const MAX_STEPS_LIMIT: u32 = 20;
/// Most source images one generation takes, `imageKey` and `imageKeys`
/// together: FLUX.1 Kontext [pro] takes at most four reference images
/// (`input_image` to `input_image_4` in Black Forest Labs' API).
pub const MAX_INPUT_IMAGES: usize = 4;

/// An instance's keys as `sync.data`: `{key: {value, attributes, updatedAt}}`.
pub type Keys = Map<String, Value>;

/// Text given inline or by key (a key wins when both are given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Inline(String),
    Key(String),
}

/// Where an image to analyse comes from (a key, else a URL, else base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Key(String),
    Url(String),
    Base64(String),
}

/// One of the three AI routes that write a result into a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Transform {
        template: Source,
        prompt: Option<Source>,
        model: String,
    },
    Analyze {
        image: ImageSource,
        prompt: Source,
        model: String,
    },
    Generate {
        prompt: Source,
        /// `imageKey` first, then `imageKeys`.
        image_keys: Vec<String>,
        seed: i64,
        aspect_ratio: String,
        safety_tolerance: i64,
    },
}

/// A parsed write job: where its result goes and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub instance_id: String,
    pub output_key: String,
    pub job: Job,
}

/// The upstream a job needs (its key is checked before access, ai.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Fireworks,
}

/// The upstream call a plan makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A Chat Completions body; the answer's text is the result.
    Completion(Value),
    /// An image generation; the bare base64 image is the result.
    Image(ImageRequest),
}

/// How a result is stored: the key's attributes are kept, with these
/// replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputKind {
    pub key_type: &'static str,
    pub tags: &'static [&'static str],
    pub content_type: Option<&'static str>,
}

impl JobRequest {
    pub fn transform(body: &Fields) -> Result<Self, ApiError> {
        let (instance_id, output_key) = target(body)?;
        let template = body.opt_str("template", usize::MAX)?;
        let template_key = key_field(body, "templateKey")?;
        let template = source(template, template_key)
            .ok_or_else(|| ApiError::bad_request("template or templateKey required"))?;
        let prompt = source(
            body.opt_str("prompt", usize::MAX)?,
            key_field(body, "promptKey")?,
        );
        let model = model(body, "gpt-4o-mini")?;
        Ok(JobRequest {
            instance_id,
            output_key,
            job: Job::Transform {
                template,
                prompt,
                model,
            },
        })
    }

    pub fn analyze_image(body: &Fields) -> Result<Self, ApiError> {
        let (instance_id, output_key) = target(body)?;
        let image_key = key_field(body, "imageKey")?;
        let image_url = body.opt_str("imageUrl", usize::MAX)?;
        let image_base64 = body.opt_str("imageBase64", usize::MAX)?;
        if let Some(url) = image_url {
            if !is_image_url(url) {
                return Err(ApiError::bad_request(
                    "imageUrl must be an http(s) or data: URL",
                ));
            }
        }
        let image = match (image_key, image_url, image_base64) {
            (Some(k), _, _) => ImageSource::Key(k.to_owned()),
            (None, Some(url), _) => ImageSource::Url(url.trim().to_owned()),
            (None, None, Some(b64)) => ImageSource::Base64(b64.to_owned()),
            (None, None, None) => {
                return Err(ApiError::bad_request(
                    "imageKey, imageUrl or imageBase64 required",
                ))
            }
        };
        let prompt = required_prompt(body)?;
        let model = model(body, "gpt-4o")?;
        Ok(JobRequest {
            instance_id,
            output_key,
            job: Job::Analyze {
                image,
                prompt,
                model,
            },
        })
    }

    pub fn generate_image(body: &Fields) -> Result<Self, ApiError> {
        let (instance_id, output_key) = target(body)?;
        let prompt = required_prompt(body)?;
        let mut image_keys: Vec<String> = key_field(body, "imageKey")?
            .map(str::to_owned)
            .into_iter()
            .collect();
        // Counted before the list is copied, however long it is.
        let listed = body
            .value("imageKeys")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if image_keys.len() + listed > MAX_INPUT_IMAGES {
            return Err(ApiError::bad_request(format!(
                "imageKeys must name at most {MAX_INPUT_IMAGES} images (imageKey included)"
            )));
        }
        image_keys.extend(body.str_list("imageKeys")?.unwrap_or_default());
        Ok(JobRequest {
            instance_id,
            output_key,
            job: Job::Generate {
                prompt,
                image_keys,
                seed: opt_int(body, "seed")?.unwrap_or(-1),
                aspect_ratio: body.opt_str("aspectRatio", 16)?.unwrap_or("1:1").to_owned(),
                safety_tolerance: opt_int(body, "safetyTolerance")?.unwrap_or(2),
            },
        })
    }
}

impl Job {
    pub fn provider(&self) -> Provider {
        match self {
            Job::Transform { .. } | Job::Analyze { .. } => Provider::OpenAi,
            Job::Generate { .. } => Provider::Fireworks,
        }
    }

    /// The route, as recorded in `usage_logs.endpoint`.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Job::Transform { .. } => "/api/transform",
            Job::Analyze { .. } => "/api/analyze-image",
            Job::Generate { .. } => "/api/generate-image",
        }
    }

    /// The keys `plan` reads, as far as `keys` (what was read so far)
    /// tells: the input keys, and the placeholders of the template once
    /// its text is known (inline, or its key read). Reading these, then
    /// again any new ones, gives `plan` all it needs.
    pub fn inputs(&self, keys: &Keys) -> BTreeSet<String> {
        let named = |source: &Source| match source {
            Source::Key(k) => Some(k.clone()),
            Source::Inline(_) => None,
        };
        let mut out = BTreeSet::new();
        match self {
            Job::Transform {
                template, prompt, ..
            } => {
                out.extend(named(template));
                out.extend(prompt.as_ref().and_then(named));
                let text = match template {
                    Source::Inline(text) => Some(text.clone()),
                    Source::Key(k) => key_value(keys, k).ok().map(value_as_text),
                };
                out.extend(text.iter().flat_map(|t| placeholders(t)));
            }
            Job::Analyze { image, prompt, .. } => {
                if let ImageSource::Key(k) = image {
                    out.insert(k.clone());
                }
                out.extend(named(prompt));
            }
            Job::Generate {
                prompt, image_keys, ..
            } => {
                out.extend(named(prompt));
                out.extend(image_keys.iter().cloned());
            }
        }
        out
    }

    /// The upstream call, with every input key resolved.
    pub fn plan(&self, keys: &Keys) -> Result<Call, ApiError> {
        match self {
            Job::Transform {
                template,
                prompt,
                model,
            } => {
                let template = text(keys, template)?;
                let prompt = prompt.as_ref().map(|p| text(keys, p)).transpose()?;
                let resolved = resolve_template(&template, MAX_RESOLVED_TEMPLATE_BYTES, |name| {
                    keys.get(name)
                        .map(|entry| entry.get("value").unwrap_or(&Value::Null))
                })
                .map_err(|e| ApiError::PayloadTooLarge(e.to_string()))?;
                let question = transform_prompt(prompt.as_deref(), &resolved);
                Ok(Call::Completion(completion_body(model, json!(question))))
            }
            Job::Analyze {
                image,
                prompt,
                model,
            } => {
                let image = match image {
                    ImageSource::Key(k) => to_data_url(image_text(keys, k)?),
                    ImageSource::Url(url) => url.clone(),
                    ImageSource::Base64(b64) => to_data_url(b64),
                };
                let prompt = text(keys, prompt)?;
                let content = vision_content(&prompt, &image);
                Ok(Call::Completion(completion_body(model, content)))
            }
            Job::Generate {
                prompt,
                image_keys,
                seed,
                aspect_ratio,
                safety_tolerance,
            } => {
                let prompt = text(keys, prompt)?;
                if prompt.trim().is_empty() {
                    return Err(ApiError::bad_request("prompt must not be empty"));
                }
                let mut request = ImageRequest::new(prompt);
                request.seed = *seed;
                request.aspect_ratio = aspect_ratio.clone();
                request.safety_tolerance = *safety_tolerance;
                for k in image_keys {
                    request.input_images.push(to_data_url(image_text(keys, k)?));
                }
                Ok(Call::Image(request))
            }
        }
    }

    pub fn output(&self) -> OutputKind {
        match self {
            Job::Transform { .. } => OutputKind {
                key_type: "text",
                tags: &["generated"],
                content_type: None,
            },
            Job::Analyze { .. } => OutputKind {
                key_type: "text",
                tags: &["generated", "vision-analysis"],
                content_type: None,
            },
            Job::Generate { .. } => OutputKind {
                key_type: "image",
                tags: &["generated", "fireworks"],
                content_type: Some("image/jpeg"),
            },
        }
    }

    /// The value stored for the upstream's result.
    pub fn stored_value(&self, result: &str) -> Value {
        match self {
            Job::Generate { .. } => json!(format!("data:image/jpeg;base64,{result}")),
            _ => json!(result),
        }
    }

    /// The route's `200` body.
    pub fn response(&self, output_key: &str, result: String) -> Value {
        match self {
            Job::Transform { .. } => {
                json!({ "success": true, "outputKey": output_key, "result": result })
            }
            Job::Analyze { .. } => {
                json!({ "success": true, "outputKey": output_key, "analysis": result })
            }
            Job::Generate { .. } => json!({
                "success": true,
                "outputKey": output_key,
                "message": "Image generated and saved to MindCache",
            }),
        }
    }
}

/// A parsed `/api/chat` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub instance_id: String,
    pub messages: Vec<Value>,
    pub mode: Mode,
    pub model: String,
    pub max_steps: u32,
}

impl ChatRequest {
    pub fn parse(body: &Fields) -> Result<Self, ApiError> {
        let instance_id = body.opt_str("instanceId", 128)?;
        let messages = match body.value("messages") {
            None => None,
            Some(Value::Array(m)) => Some(m.clone()),
            Some(_) => return Err(ApiError::bad_request("messages must be an array")),
        };
        let (Some(instance_id), Some(messages)) = (instance_id, messages) else {
            return Err(ApiError::bad_request("instanceId and messages required"));
        };
        let instance_id = valid_instance_id(instance_id)?;
        let mode = match body.opt_str("mode", 16)? {
            None | Some("use") => Mode::Use,
            Some("edit") => Mode::Edit,
            Some(_) => return Err(ApiError::bad_request("mode must be \"edit\" or \"use\"")),
        };
        Ok(ChatRequest {
            instance_id,
            messages,
            mode,
            model: body.opt_str("model", 200)?.unwrap_or("gpt-4o").to_owned(),
            max_steps: max_steps(body.value("maxSteps"))?,
        })
    }
}

/// `maxSteps`: an integer ≥ 1, capped at 20; 8 when absent.
fn max_steps(value: Option<&Value>) -> Result<u32, ApiError> {
    match value {
        None => Ok(DEFAULT_MAX_STEPS),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(n.min(u64::from(MAX_STEPS_LIMIT)) as u32),
            _ => Err(ApiError::bad_request(
                "maxSteps must be an integer of at least 1",
            )),
        },
    }
}

/// `instanceId` and `outputKey`, both required and valid.
fn target(body: &Fields) -> Result<(String, String), ApiError> {
    let instance_id = body.opt_str("instanceId", 128)?;
    let output_key = body.opt_str("outputKey", MAX_KEY_CHARS)?;
    let (Some(instance_id), Some(output_key)) = (instance_id, output_key) else {
        return Err(ApiError::bad_request("instanceId and outputKey required"));
    };
    let instance_id = valid_instance_id(instance_id)?;
    validate_key(output_key).map_err(|e| {
        ApiError::bad_request(format!("outputKey is not a valid key: {}", e.message))
    })?;
    Ok((instance_id, output_key.to_owned()))
}

fn valid_instance_id(id: &str) -> Result<String, ApiError> {
    if !is_valid_instance_id(id) {
        return Err(ApiError::bad_request(
            "instanceId is not a valid instance id",
        ));
    }
    Ok(id.to_owned())
}

/// A text given inline or by key; the key wins.
fn source(inline: Option<&str>, key: Option<&str>) -> Option<Source> {
    match (key, inline) {
        (Some(k), _) => Some(Source::Key(k.to_owned())),
        (None, Some(text)) => Some(Source::Inline(text.to_owned())),
        (None, None) => None,
    }
}

/// `prompt` or `promptKey`, one of them required.
fn required_prompt(body: &Fields) -> Result<Source, ApiError> {
    let inline = body.opt_str("prompt", usize::MAX)?;
    source(inline, key_field(body, "promptKey")?)
        .ok_or_else(|| ApiError::bad_request("prompt or promptKey required"))
}

/// The `model` field, `default` when absent.
fn model(body: &Fields, default: &str) -> Result<String, ApiError> {
    Ok(body
        .opt_str("model", MAX_MODEL_CHARS)?
        .unwrap_or(default)
        .to_owned())
}

/// An optional key name (`templateKey`, `promptKey`, `imageKey`).
fn key_field<'a>(body: &'a Fields, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.opt_str(name, MAX_KEY_CHARS)? {
        Some("") => Err(ApiError::bad_request(format!("{name} must not be empty"))),
        other => Ok(other),
    }
}

/// An optional integer field.
fn opt_int(body: &Fields, name: &str) -> Result<Option<i64>, ApiError> {
    match body.value(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be an integer"))),
    }
}

fn is_image_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["http://", "https://", "data:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// The stored value of key `name`, or `404 Key "<name>" not found`.
pub fn key_value<'a>(keys: &'a Keys, name: &str) -> Result<&'a Value, ApiError> {
    keys.get(name)
        .map(|entry| entry.get("value").unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::not_found(format!("Key \"{name}\" not found")))
}

fn text(keys: &Keys, source: &Source) -> Result<String, ApiError> {
    match source {
        Source::Key(k) => Ok(value_as_text(key_value(keys, k)?)),
        Source::Inline(text) => Ok(text.clone()),
    }
}

/// An image key's value: a data URL, a web URL or bare base64 (a string).
fn image_text<'a>(keys: &'a Keys, name: &str) -> Result<&'a str, ApiError> {
    match key_value(keys, name)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::bad_request(format!(
            "Key \"{name}\" does not hold an image"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{parse_object, MAX_AI_BODY_BYTES};

    fn fields(s: &str) -> Fields {
        parse_object(s.as_bytes(), MAX_AI_BODY_BYTES).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> (u16, String) {
        let e = r.expect_err("expected an error");
        (e.status(), e.to_string())
    }

    fn keys() -> Keys {
        serde_json::from_value(json!({
            "t": {"value": "Hello {{n}}", "attributes": {}},
            "n": {"value": 5, "attributes": {}},
            "img": {"value": "AAAA", "attributes": {"type": "image"}},
            "p": {"value": "a cat", "attributes": {}},
            "blank": {"value": "  ", "attributes": {}},
        }))
        .unwrap()
    }

    #[test]
    fn target_fields() {
        let ok = target(&fields(r#"{"instanceId":"i-1","outputKey":"out"}"#)).unwrap();
        assert_eq!(ok, ("i-1".to_string(), "out".to_string()));
        let missing = (400, "instanceId and outputKey required".to_string());
        assert_eq!(err(target(&fields(r#"{"instanceId":"i"}"#))), missing);
        assert_eq!(err(target(&fields(r#"{"outputKey":"o"}"#))), missing);
        assert_eq!(
            err(target(&fields(r#"{"instanceId":5,"outputKey":"o"}"#))).1,
            "instanceId must be a string"
        );
        assert_eq!(
            err(target(&fields(r#"{"instanceId":"a/b","outputKey":"o"}"#))).1,
            "instanceId is not a valid instance id"
        );
        assert!(
            err(target(&fields(r#"{"instanceId":"a","outputKey":"$date"}"#)))
                .1
                .starts_with("outputKey is not a valid key")
        );
    }

    #[test]
    fn small_fields() {
        let f = fields(r#"{"seed":3,"bad":1.5,"s":"x","e":""}"#);
        assert_eq!(opt_int(&f, "seed").unwrap(), Some(3));
        assert_eq!(opt_int(&f, "none").unwrap(), None);
        assert_eq!(err(opt_int(&f, "bad")).1, "bad must be an integer");
        assert_eq!(err(opt_int(&f, "s")).1, "s must be an integer");
        assert_eq!(err(key_field(&f, "e")).1, "e must not be empty");
        assert!(is_image_url("https://x/y.png"));
        assert!(is_image_url("DATA:image/png;base64,AA"));
        assert!(!is_image_url("AAAA"));
    }

    #[test]
    fn keys_and_sources() {
        let keys = keys();
        assert_eq!(key_value(&keys, "n").unwrap(), &json!(5));
        assert_eq!(
            err(key_value(&keys, "zz")),
            (404, "Key \"zz\" not found".to_string())
        );
        assert_eq!(
            source(Some("inline"), Some("n")),
            Some(Source::Key("n".into()))
        );
        assert_eq!(text(&keys, &Source::Key("n".into())).unwrap(), "5");
        assert_eq!(
            source(Some("inline"), None),
            Some(Source::Inline("inline".into()))
        );
        assert_eq!(source(None, None), None);
        assert_eq!(image_text(&keys, "img").unwrap(), "AAAA");
        assert_eq!(err(image_text(&keys, "n")).0, 400);
    }

    #[test]
    fn parse_refusals_name_the_field() {
        let t = |s: &str| err(JobRequest::transform(&fields(s)));
        assert_eq!(
            t(r#"{"instanceId":"i","outputKey":"o"}"#).1,
            "template or templateKey required"
        );
        let a = |s: &str| err(JobRequest::analyze_image(&fields(s)));
        assert_eq!(
            a(r#"{"instanceId":"i","outputKey":"o","prompt":"p"}"#).1,
            "imageKey, imageUrl or imageBase64 required"
        );
        assert_eq!(
            a(r#"{"instanceId":"i","outputKey":"o","imageKey":"k","imageUrl":"ftp://x"}"#).1,
            "imageUrl must be an http(s) or data: URL"
        );
        assert_eq!(
            a(r#"{"instanceId":"i","outputKey":"o","imageKey":"k"}"#).1,
            "prompt or promptKey required"
        );
        let g = |s: &str| err(JobRequest::generate_image(&fields(s)));
        assert_eq!(
            g(r#"{"instanceId":"i","outputKey":"o"}"#).1,
            "prompt or promptKey required"
        );
        assert_eq!(
            g(r#"{"instanceId":"i","outputKey":"o","prompt":"p","seed":"x"}"#).1,
            "seed must be an integer"
        );
    }

    #[test]
    fn transform_plan_resolves_keys_into_one_question() {
        let req = JobRequest::transform(&fields(
            r#"{"instanceId":"i","outputKey":"o","templateKey":"t","template":"ignored","prompt":"Shout"}"#,
        ))
        .unwrap();
        assert_eq!(req.job.provider(), Provider::OpenAi);
        assert_eq!(req.job.endpoint(), "/api/transform");
        let Call::Completion(body) = req.job.plan(&keys()).unwrap() else {
            panic!("expected a completion");
        };
        assert_eq!(body["model"], "gpt-4o-mini");
        let question = body["messages"][0]["content"].as_str().unwrap();
        assert!(question.contains("Hello 5"), "{question}");
        assert!(question.contains("Shout"), "{question}");
        assert_eq!(
            req.job.response("o", "HI".into()),
            json!({"success": true, "outputKey": "o", "result": "HI"})
        );
        let missing = JobRequest::transform(&fields(
            r#"{"instanceId":"i","outputKey":"o","templateKey":"nope"}"#,
        ))
        .unwrap();
        assert_eq!(err(missing.job.plan(&keys())).0, 404);
    }

    #[test]
    fn inputs_are_all_a_plan_reads() {
        let only = |names: &BTreeSet<String>| -> Keys {
            let all = keys();
            all.into_iter().filter(|(k, _)| names.contains(k)).collect()
        };
        for body in [
            r#"{"instanceId":"i","outputKey":"o","templateKey":"t","promptKey":"p"}"#,
            r#"{"instanceId":"i","outputKey":"o","template":"{{p}} {{n}} {{nope}}"}"#,
        ] {
            let job = JobRequest::transform(&fields(body)).unwrap().job;
            // First what is known before reading; then the template's names.
            let first = job.inputs(&Keys::new());
            let second = job.inputs(&only(&first));
            assert!(second.is_superset(&first), "{body}");
            assert_eq!(
                job.plan(&only(&second)).unwrap(),
                job.plan(&keys()).unwrap(),
                "{body}"
            );
        }
        let by_key = JobRequest::transform(&fields(
            r#"{"instanceId":"i","outputKey":"o","templateKey":"t"}"#,
        ))
        .unwrap()
        .job;
        assert_eq!(by_key.inputs(&Keys::new()), BTreeSet::from(["t".into()]));
        assert_eq!(
            by_key.inputs(&keys()),
            BTreeSet::from(["t".into(), "n".into()])
        );
        let generate = JobRequest::generate_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","promptKey":"p","imageKeys":["img"]}"#,
        ))
        .unwrap()
        .job;
        assert_eq!(
            generate.inputs(&Keys::new()),
            BTreeSet::from(["p".into(), "img".into()])
        );
    }

    #[test]
    fn analyze_plan_picks_the_image_source() {
        let req = JobRequest::analyze_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","imageKey":"img","imageUrl":"https://x/y","promptKey":"p"}"#,
        ))
        .unwrap();
        let Call::Completion(body) = req.job.plan(&keys()).unwrap() else {
            panic!("expected a completion");
        };
        let content = &body["messages"][0]["content"];
        assert_eq!(content[0]["text"], "a cat");
        assert_eq!(
            content[1]["image_url"]["url"],
            "data:image/jpeg;base64,AAAA"
        );
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(req.job.output().tags, &["generated", "vision-analysis"]);
        let by_url = JobRequest::analyze_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","imageUrl":" https://x/y ","prompt":"q"}"#,
        ))
        .unwrap();
        let Call::Completion(body) = by_url.job.plan(&keys()).unwrap() else {
            panic!("expected a completion");
        };
        assert_eq!(
            body["messages"][0]["content"][1]["image_url"]["url"],
            "https://x/y"
        );
    }

    #[test]
    fn generate_plan_collects_input_images_and_refuses_empty_prompts() {
        let req = JobRequest::generate_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","promptKey":"p","imageKey":"img","imageKeys":["img"],"seed":7}"#,
        ))
        .unwrap();
        assert_eq!(req.job.provider(), Provider::Fireworks);
        let Call::Image(image) = req.job.plan(&keys()).unwrap() else {
            panic!("expected an image call");
        };
        assert_eq!(image.prompt, "a cat");
        assert_eq!(image.seed, 7);
        assert_eq!(image.input_images.len(), 2);
        assert_eq!(
            req.job.stored_value("QUJD"),
            json!("data:image/jpeg;base64,QUJD")
        );
        assert_eq!(req.job.output().content_type, Some("image/jpeg"));

        let blank = JobRequest::generate_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","promptKey":"blank"}"#,
        ))
        .unwrap();
        assert_eq!(
            err(blank.job.plan(&keys())),
            (400, "prompt must not be empty".to_string())
        );
        let not_image = JobRequest::generate_image(&fields(
            r#"{"instanceId":"i","outputKey":"o","prompt":"x","imageKeys":["n"]}"#,
        ))
        .unwrap();
        assert_eq!(err(not_image.job.plan(&keys())).0, 400);
    }

    #[test]
    fn generate_takes_at_most_four_input_images() {
        let body = |image_key: &str, n: usize| {
            let list = vec!["img"; n];
            let mut b = json!({"instanceId":"i","outputKey":"o","prompt":"p","imageKeys": list});
            if !image_key.is_empty() {
                b["imageKey"] = json!(image_key);
            }
            fields(&b.to_string())
        };
        let refusal = (
            400,
            "imageKeys must name at most 4 images (imageKey included)".to_string(),
        );
        for (image_key, n) in [("", 4), ("img", 3)] {
            let req = JobRequest::generate_image(&body(image_key, n)).unwrap();
            let Call::Image(image) = req.job.plan(&keys()).unwrap() else {
                panic!("expected an image call");
            };
            assert_eq!(image.input_images.len(), 4);
        }
        assert_eq!(err(JobRequest::generate_image(&body("", 5))), refusal);
        assert_eq!(err(JobRequest::generate_image(&body("img", 4))), refusal);
        // The same key a hundred thousand times is refused before any copy.
        assert_eq!(err(JobRequest::generate_image(&body("", 100_000))), refusal);
        // A list of the wrong type still says so.
        let wrong = fields(r#"{"instanceId":"i","outputKey":"o","prompt":"p","imageKeys":[1]}"#);
        assert_eq!(
            err(JobRequest::generate_image(&wrong)).1,
            "imageKeys must be an array of strings"
        );
    }

    #[test]
    fn transform_plan_refuses_an_expansion_over_the_cap() {
        let mut keys = keys();
        keys.insert(
            "big".into(),
            json!({"value": "x".repeat(100_000), "attributes": {}}),
        );
        let plan = |template: String| {
            let b = json!({"instanceId":"i","outputKey":"o","template": template});
            JobRequest::transform(&fields(&b.to_string()))
                .unwrap()
                .job
                .plan(&keys)
        };
        // Ten copies (1,000,000 bytes) fit in 1 MiB; eleven do not.
        assert!(plan("{{big}}".repeat(10)).is_ok());
        assert_eq!(
            err(plan("{{big}}".repeat(11))),
            (
                413,
                "Template too large: with its placeholders filled in it exceeds 1 MiB".to_string()
            )
        );
        // A thousand copies (100 MB if expanded) are refused the same way.
        assert_eq!(err(plan("{{big}}".repeat(1000))).0, 413);
    }

    #[test]
    fn step_limits() {
        assert_eq!(max_steps(None).unwrap(), 8);
        assert_eq!(max_steps(Some(&json!(3))).unwrap(), 3);
        assert_eq!(max_steps(Some(&json!(50))).unwrap(), 20);
        for bad in [json!(0), json!(-1), json!(2.5), json!("3")] {
            assert_eq!(max_steps(Some(&bad)).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn chat_requests() {
        let ok = ChatRequest::parse(&fields(
            r#"{"instanceId":"i","messages":[],"mode":"edit","maxSteps":50}"#,
        ))
        .unwrap();
        assert_eq!(ok.mode, Mode::Edit);
        assert_eq!(ok.max_steps, MAX_STEPS_LIMIT);
        assert_eq!(ok.model, "gpt-4o");
        let e = |s: &str| err(ChatRequest::parse(&fields(s))).1;
        assert_eq!(
            e(r#"{"instanceId":"i"}"#),
            "instanceId and messages required"
        );
        assert_eq!(
            e(r#"{"instanceId":"i","messages":{}}"#),
            "messages must be an array"
        );
        assert_eq!(
            e(r#"{"instanceId":"i","messages":[],"mode":"x"}"#),
            "mode must be \"edit\" or \"use\""
        );
        assert_eq!(
            e(r#"{"instanceId":"i","messages":[],"maxSteps":0}"#),
            "maxSteps must be an integer of at least 1"
        );
    }
}
