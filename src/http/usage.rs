//! `GET /api/usage` (webhooks-out.md, "Usage"): the caller's metered calls,
//! with those of its API keys and delegates, grouped. Signed-in users only.

use serde_json::json;
use worker::Request;

use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::Principal;
use crate::ctx::Ctx;
use crate::db;
use crate::db::usage::{stmt, UsageBucket};
use crate::error::ApiError;

/// The default window: the last 30 days.
const DEFAULT_WINDOW_SECS: i64 = 30 * 86_400;

fn seconds(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be Unix seconds (an integer)")))
}

pub async fn get(req: &Request, ctx: &Ctx, caller: &Caller) -> Answer {
    if caller.principal != Principal::User {
        return Err(ApiError::Forbidden(
            "Usage can only be read by a signed-in user, not with an API key".into(),
        ));
    }
    let (mut from, mut to, mut group) = (None, None, "day".to_string());
    for (name, value) in req.url()?.query_pairs() {
        match name.as_ref() {
            "from" => from = Some(seconds("from", &value)?),
            "to" => to = Some(seconds("to", &value)?),
            "groupBy" => group = value.into_owned(),
            _ => {}
        }
    }
    let to = to.unwrap_or_else(db::now_seconds);
    let from = from.unwrap_or(to - DEFAULT_WINDOW_SECS);
    if from > to {
        return Err(ApiError::bad_request("from must not be after to"));
    }
    let statement = match group.as_str() {
        "day" => stmt::by_day(&caller.user_id, from, to),
        "endpoint" => stmt::by_endpoint(&caller.user_id, from, to),
        "instance" => stmt::by_instance(&caller.user_id, from, to),
        _ => {
            return Err(ApiError::bad_request(
                "groupBy must be one of day, endpoint, instance",
            ))
        }
    };
    let usage: Vec<UsageBucket> = statement.all(&ctx.db()?).await?;
    json(200, &json!({ "usage": usage }))
}
