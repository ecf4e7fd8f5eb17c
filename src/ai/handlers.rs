//! `/api/transform`, `/api/generate-image` and `/api/analyze-image` (ai.md),
//! plus what every AI handler shares: reading the body's fields, opening
//! the instance with the right role, looking keys up and writing results
//! through the instance like any other write.
//!
//! Order of checks (ai.md, common rules): the dispatcher authenticated the
//! caller; then the body (`400`), the provider key (`500`), authorization
//! (`404`/`403`), input keys (`404`), and only then the upstream call.

use serde_json::value::to_raw_value;
use serde_json::{json, Map, Value};
use worker::{Request, Response};

use super::fireworks::ImageRequest;
use super::images::Fireworks;
use super::messages::{completion_body, vision_content};
use super::openai::OpenAi;
use super::prompt::value_as_text;
use super::template::{resolve_template, to_data_url, transform_prompt};
use super::tools::WriteIntent;
use crate::auth::caller::Caller;
use crate::db;
use crate::error::ApiError;
use crate::http::access;
use crate::http::body::{read_object, Fields, MAX_AI_BODY_BYTES};
use crate::http::routes::is_valid_instance_id;
use crate::http::{json, Ctx};
use crate::instance::client::InstanceClient;
use crate::instance::limits::validate_key;
use crate::permission::Permission;

/// Longest model name we pass on.
const MAX_MODEL_CHARS: usize = 200;
/// Longest key name a body may carry (keys are at most 512 bytes).
const MAX_KEY_CHARS: usize = 512;

/// An instance's keys as `sync.data`: `{key: {value, attributes, updatedAt}}`.
pub type Keys = Map<String, Value>;

pub async fn transform(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    let (instance_id, output_key) = target(&body)?;
    let template = body.opt_str("template", usize::MAX)?;
    let template_key = key_field(&body, "templateKey")?;
    if template.is_none() && template_key.is_none() {
        return Err(ApiError::bad_request("template or templateKey required"));
    }
    let prompt = body.opt_str("prompt", usize::MAX)?;
    let prompt_key = key_field(&body, "promptKey")?;
    let model = body
        .opt_str("model", MAX_MODEL_CHARS)?
        .unwrap_or("gpt-4o-mini");
    let openai = OpenAi::from_env(&ctx.env)?;
    let client = open_for_write(ctx, caller, &instance_id).await?;
    let keys = client.keys().await?;

    let template = match template_key {
        Some(k) => value_as_text(key_value(&keys, k)?),
        None => template.unwrap_or_default().to_owned(),
    };
    let prompt = text_source(&keys, prompt, prompt_key)?;
    let resolved = resolve_template(&template, |name| {
        keys.get(name)
            .map(|entry| entry.get("value").unwrap_or(&Value::Null))
    });
    let question = transform_prompt(prompt.as_deref(), &resolved);

    record_usage(ctx, caller, "/api/transform", &instance_id).await?;
    let result = openai
        .complete(&completion_body(model, json!(question)))
        .await?;
    let value = json!(result);
    save(
        &client,
        caller,
        &keys,
        &output_key,
        &value,
        "text",
        &["generated"],
        None,
    )
    .await?;
    json(
        200,
        &json!({ "success": true, "outputKey": output_key, "result": result }),
    )
}

pub async fn analyze_image(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    let (instance_id, output_key) = target(&body)?;
    let image_key = key_field(&body, "imageKey")?;
    let image_url = body.opt_str("imageUrl", usize::MAX)?;
    let image_base64 = body.opt_str("imageBase64", usize::MAX)?;
    if image_key.is_none() && image_url.is_none() && image_base64.is_none() {
        return Err(ApiError::bad_request(
            "imageKey, imageUrl or imageBase64 required",
        ));
    }
    if let Some(url) = image_url {
        if !is_image_url(url) {
            return Err(ApiError::bad_request(
                "imageUrl must be an http(s) or data: URL",
            ));
        }
    }
    let prompt = body.opt_str("prompt", usize::MAX)?;
    let prompt_key = key_field(&body, "promptKey")?;
    if prompt.is_none() && prompt_key.is_none() {
        return Err(ApiError::bad_request("prompt or promptKey required"));
    }
    let model = body.opt_str("model", MAX_MODEL_CHARS)?.unwrap_or("gpt-4o");
    let openai = OpenAi::from_env(&ctx.env)?;
    let client = open_for_write(ctx, caller, &instance_id).await?;
    let keys = client.keys().await?;

    // One source is used; a key wins over inline data, a URL over base64.
    let image = match (image_key, image_url, image_base64) {
        (Some(k), _, _) => to_data_url(image_text(&keys, k)?),
        (None, Some(url), _) => url.trim().to_owned(),
        (None, None, Some(b64)) => to_data_url(b64),
        (None, None, None) => return Err(ApiError::internal("image source vanished")),
    };
    let prompt = text_source(&keys, prompt, prompt_key)?.unwrap_or_default();

    record_usage(ctx, caller, "/api/analyze-image", &instance_id).await?;
    let analysis = openai
        .complete(&completion_body(model, vision_content(&prompt, &image)))
        .await?;
    let value = json!(analysis);
    let tags = ["generated", "vision-analysis"];
    save(
        &client,
        caller,
        &keys,
        &output_key,
        &value,
        "text",
        &tags,
        None,
    )
    .await?;
    json(
        200,
        &json!({ "success": true, "outputKey": output_key, "analysis": analysis }),
    )
}

pub async fn generate_image(
    req: &mut Request,
    ctx: &Ctx,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, MAX_AI_BODY_BYTES).await?;
    let (instance_id, output_key) = target(&body)?;
    let prompt = body.opt_str("prompt", usize::MAX)?;
    let prompt_key = key_field(&body, "promptKey")?;
    if prompt.is_none() && prompt_key.is_none() {
        return Err(ApiError::bad_request("prompt or promptKey required"));
    }
    let image_key = key_field(&body, "imageKey")?;
    let image_keys = body.str_list("imageKeys")?.unwrap_or_default();
    let seed = opt_int(&body, "seed")?.unwrap_or(-1);
    let aspect_ratio = body.opt_str("aspectRatio", 16)?.unwrap_or("1:1");
    let safety_tolerance = opt_int(&body, "safetyTolerance")?.unwrap_or(2);
    let fireworks = Fireworks::from_env(&ctx.env)?;
    let client = open_for_write(ctx, caller, &instance_id).await?;
    let keys = client.keys().await?;

    let prompt = text_source(&keys, prompt, prompt_key)?.unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty"));
    }
    let mut request = ImageRequest::new(prompt);
    request.seed = seed;
    request.aspect_ratio = aspect_ratio.to_owned();
    request.safety_tolerance = safety_tolerance;
    for k in image_key
        .into_iter()
        .chain(image_keys.iter().map(String::as_str))
    {
        request
            .input_images
            .push(to_data_url(image_text(&keys, k)?));
    }

    record_usage(ctx, caller, "/api/generate-image", &instance_id).await?;
    let b64 = fireworks.generate(&request).await?;
    let value = json!(format!("data:image/jpeg;base64,{b64}"));
    let tags = ["generated", "fireworks"];
    let content_type = Some("image/jpeg");
    save(
        &client,
        caller,
        &keys,
        &output_key,
        &value,
        "image",
        &tags,
        content_type,
    )
    .await?;
    json(
        200,
        &json!({
            "success": true,
            "outputKey": output_key,
            "message": "Image generated and saved to MindCache",
        }),
    )
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

pub fn valid_instance_id(id: &str) -> Result<String, ApiError> {
    if !is_valid_instance_id(id) {
        return Err(ApiError::bad_request(
            "instanceId is not a valid instance id",
        ));
    }
    Ok(id.to_owned())
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

/// The instance for an AI call that writes: `write` on it, and it must not
/// be read-only (checked before any upstream call, which would be wasted).
pub async fn open_for_write(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<InstanceClient, ApiError> {
    let (role, read_only) = access::instance_data(ctx, caller, instance_id).await?;
    if !role.allows(Permission::Write) {
        return Err(ApiError::Forbidden(
            "Write access to this instance is required".into(),
        ));
    }
    if read_only {
        return Err(ApiError::Forbidden("Instance is read-only".into()));
    }
    InstanceClient::new(&ctx.env, instance_id, read_only)
}

/// The stored value of key `name`, or `404 Key "<name>" not found`.
pub fn key_value<'a>(keys: &'a Keys, name: &str) -> Result<&'a Value, ApiError> {
    keys.get(name)
        .map(|entry| entry.get("value").unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::not_found(format!("Key \"{name}\" not found")))
}

/// A prompt given inline or by key; the key wins when both are given.
fn text_source(
    keys: &Keys,
    inline: Option<&str>,
    key: Option<&str>,
) -> Result<Option<String>, ApiError> {
    match (key, inline) {
        (Some(k), _) => Ok(Some(value_as_text(key_value(keys, k)?))),
        (None, inline) => Ok(inline.map(str::to_owned)),
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

/// Writes a result into `key` as the caller: its existing attributes kept,
/// with `type`, `tags` and `contentType` replaced.
#[allow(clippy::too_many_arguments)]
async fn save(
    client: &InstanceClient,
    caller: &Caller,
    keys: &Keys,
    key: &str,
    value: &Value,
    key_type: &str,
    tags: &[&str],
    content_type: Option<&str>,
) -> Result<(), ApiError> {
    let intent = WriteIntent {
        key: key.to_owned(),
        value: Value::Null,
        key_type: Some(key_type.to_owned()),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
    };
    let existing = keys.get(key).and_then(|e| e.get("attributes"));
    let mut attributes = intent.attributes(existing);
    if let Some(obj) = attributes.as_object_mut() {
        match content_type {
            Some(ct) => obj.insert("contentType".into(), json!(ct)),
            None => obj.remove("contentType"),
        };
    }
    client
        .set(
            &caller.user_id,
            key,
            &to_raw_value(value)?,
            Some(&to_raw_value(&attributes)?),
        )
        .await?;
    Ok(())
}

/// One `usage_logs` row for a call that reaches its upstream.
pub async fn record_usage(
    ctx: &Ctx,
    caller: &Caller,
    endpoint: &str,
    instance_id: &str,
) -> Result<(), ApiError> {
    db::usage::record(
        &db::database(&ctx.env)?,
        &caller.user_id,
        caller.api_key_id.as_deref(),
        endpoint,
        Some(instance_id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::parse_object;

    fn fields(s: &str) -> Fields {
        parse_object(s.as_bytes(), MAX_AI_BODY_BYTES).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> (u16, String) {
        let e = r.expect_err("expected an error");
        (e.status(), e.to_string())
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
        let keys: Keys = serde_json::from_value(json!({
            "t": {"value": "Hello {{n}}", "attributes": {}},
            "n": {"value": 5, "attributes": {}},
            "img": {"value": "AAAA", "attributes": {"type": "image"}},
        }))
        .unwrap();
        assert_eq!(key_value(&keys, "n").unwrap(), &json!(5));
        assert_eq!(
            err(key_value(&keys, "zz")),
            (404, "Key \"zz\" not found".to_string())
        );
        assert_eq!(
            text_source(&keys, Some("inline"), Some("n")).unwrap(),
            Some("5".to_string())
        );
        assert_eq!(
            text_source(&keys, Some("inline"), None).unwrap(),
            Some("inline".to_string())
        );
        assert_eq!(text_source(&keys, None, None).unwrap(), None);
        assert_eq!(image_text(&keys, "img").unwrap(), "AAAA");
        assert_eq!(err(image_text(&keys, "n")).0, 400);
    }
}
