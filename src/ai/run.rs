//! The one run behind `/api/transform`, `/api/generate-image` and
//! `/api/analyze-image`: provider key (500) → access (404/403) → the
//! instance's keys it reads (paged) → the pure plan (404/400 for input keys) → a usage row →
//! the upstream call → the result written through the instance like any
//! other write. Checks that cost nothing come before the upstream call,
//! which would be wasted.

use serde_json::value::to_raw_value;
use serde_json::{json, Value};

use std::collections::BTreeSet;

use super::core::jobs::{Call, Job, JobRequest, Keys, OutputKind, Provider};
use super::core::tools::WriteIntent;
use super::upstream::fireworks::Fireworks;
use super::upstream::openai::OpenAi;
use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::permission::Permission;
use crate::services::{access, usage};

enum Upstream {
    OpenAi(OpenAi),
    Fireworks(Fireworks),
}

impl Upstream {
    fn for_provider(ctx: &Ctx, provider: Provider) -> Result<Self, ApiError> {
        Ok(match provider {
            Provider::OpenAi => Upstream::OpenAi(OpenAi::from_env(&ctx.env)?),
            Provider::Fireworks => Upstream::Fireworks(Fireworks::from_env(&ctx.env)?),
        })
    }

    /// The result's text: the completion, or the image as bare base64; with
    /// the tokens in and out the upstream reported, if it did.
    async fn call(&self, call: &Call) -> Result<(String, Option<(i64, i64)>), ApiError> {
        match (self, call) {
            (Upstream::OpenAi(openai), Call::Completion(body)) => {
                openai.complete_counted(body).await
            }
            (Upstream::Fireworks(fireworks), Call::Image(request)) => {
                Ok((fireworks.generate(request).await?, None))
            }
            _ => Err(ApiError::internal(
                "a plan's call does not fit its provider",
            )),
        }
    }
}

/// Runs a write job; returns the route's `200` body.
pub async fn run(ctx: &Ctx, caller: &Caller, request: JobRequest) -> Result<Value, ApiError> {
    let JobRequest {
        instance_id,
        output_key,
        job,
    } = request;
    let upstream = Upstream::for_provider(ctx, job.provider())?;
    let client = open_for_write(ctx, caller, &instance_id).await?;
    let keys = read_inputs(&client, &job, &output_key).await?;
    let call = job.plan(&keys)?;
    let model = match &call {
        Call::Completion(body) => body.get("model").and_then(Value::as_str),
        Call::Image(_) => None,
    };
    let usage_row = record_usage(ctx, caller, job.endpoint(), &instance_id, model).await?;
    let (result, tokens) = upstream.call(&call).await?;
    if let Some((tokens_in, tokens_out)) = tokens {
        if let Err(e) = usage::add_tokens(ctx, usage_row, tokens_in, tokens_out).await {
            crate::log_error!("usage tokens not recorded: {e}");
        }
    }
    access::still_may_write(ctx, caller, &instance_id).await?;
    let value = job.stored_value(&result);
    save(&client, caller, &keys, &output_key, &value, job.output()).await?;
    Ok(job.response(&output_key, result))
}

/// The keys the job reads and the output key (its attributes are kept),
/// paged through so a large instance is never held whole: one pass, and a
/// second only when a template read from a key names keys not yet read.
async fn read_inputs(
    client: &InstanceClient,
    job: &Job,
    output_key: &str,
) -> Result<Keys, ApiError> {
    let mut keys = Keys::new();
    let mut wanted = job.inputs(&keys);
    wanted.insert(output_key.to_owned());
    read_named(client, &wanted, &mut keys).await?;
    let more: BTreeSet<String> = job.inputs(&keys).difference(&wanted).cloned().collect();
    if !more.is_empty() {
        read_named(client, &more, &mut keys).await?;
    }
    Ok(keys)
}

async fn read_named(
    client: &InstanceClient,
    names: &BTreeSet<String>,
    into: &mut Keys,
) -> Result<(), ApiError> {
    client
        .for_each_key(|key, entry| {
            if names.contains(&key) {
                into.insert(key, serde_json::from_str(entry.get())?);
            }
            Ok(())
        })
        .await
}

/// The instance for an AI call that writes: `write` on it, and it must not
/// be read-only.
async fn open_for_write(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<InstanceClient, ApiError> {
    let access = access::instance_data(ctx, caller, instance_id).await?;
    if !access.role.allows(Permission::Write) {
        return Err(ApiError::Forbidden(
            "Write access to this instance is required".into(),
        ));
    }
    if access.read_only() {
        return Err(ApiError::Forbidden("Instance is read-only".into()));
    }
    InstanceClient::with_read_only(&ctx.env, instance_id, Some(access.flag))
}

/// Writes a result into `key` as the caller: its existing attributes kept,
/// with `type`, `tags` and `contentType` replaced.
async fn save(
    client: &InstanceClient,
    caller: &Caller,
    keys: &Keys,
    key: &str,
    value: &Value,
    output: OutputKind,
) -> Result<(), ApiError> {
    let intent = WriteIntent {
        key: key.to_owned(),
        value: Value::Null,
        key_type: Some(output.key_type.to_owned()),
        tags: Some(output.tags.iter().map(|t| t.to_string()).collect()),
    };
    let existing = keys.get(key).and_then(|e| e.get("attributes"));
    let mut attributes = intent.attributes(existing);
    if let Some(obj) = attributes.as_object_mut() {
        match output.content_type {
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

/// One `usage_logs` row for a call that reaches its upstream; its id.
pub async fn record_usage(
    ctx: &Ctx,
    caller: &Caller,
    endpoint: &str,
    instance_id: &str,
    model: Option<&str>,
) -> Result<i64, ApiError> {
    let call = usage::Call {
        endpoint,
        instance_id: Some(instance_id),
        model,
        ..usage::Call::default()
    };
    usage::record(ctx, caller, call).await
}
