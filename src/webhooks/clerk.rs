//! `POST /webhooks/clerk`: Svix-signed user events from Clerk, kept in sync
//! with the `users` table.

use worker::{Request, Response};

use super::svix::{parse_clerk_event, verify, ClerkEvent};
use crate::config::setting;
use crate::db;
use crate::error::ApiError;
use crate::http::body::MAX_BODY_BYTES;
use crate::http::{json, Ctx};
use crate::instance::client::InstanceClient;

pub async fn handle(req: &mut Request, ctx: &Ctx) -> Result<Response, ApiError> {
    let secret = setting(&ctx.env, "CLERK_WEBHOOK_SECRET")
        .or_else(|| setting(&ctx.env, "CLERK_WEBHOOK_SIGNING_SECRET"));
    let body = req.bytes().await?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge("Webhook body too large".into()));
    }
    match secret {
        Some(secret) => {
            let headers = req.headers();
            let lookup = |name: &str| headers.get(name).ok().flatten();
            let now = (worker::Date::now().as_millis() / 1000) as i64;
            verify(lookup, &body, &secret, now).map_err(|e| {
                if e.status() == 500 {
                    worker::console_error!("CLERK_WEBHOOK_SECRET is not a valid whsec_ secret");
                    ApiError::Misconfigured("Webhook secret is misconfigured".into())
                } else {
                    ApiError::Unauthorized(e.to_string())
                }
            })?;
        }
        // Unsigned webhooks only in development mode (auth.md).
        None if ctx.development => {}
        None => {
            worker::console_error!("Clerk webhook received but CLERK_WEBHOOK_SECRET is not set");
            return Err(ApiError::Misconfigured(
                "Webhook secret is not configured".into(),
            ));
        }
    }

    let event = parse_clerk_event(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let db = db::database(&ctx.env)?;
    match event {
        ClerkEvent::UserUpserted(user) => {
            db::users::upsert(&db, &user.id, user.email.as_deref(), user.name.as_deref()).await?
        }
        ClerkEvent::UserDeleted { id } => {
            // Objects first: their storage must go even though the rows
            // that name them are about to disappear.
            for instance_id in db::users::owned_instance_ids(&db, &id).await? {
                InstanceClient::new(&ctx.env, &instance_id, false)?
                    .destroy()
                    .await?;
            }
            db::users::delete_everything(&db, &id).await?;
        }
        ClerkEvent::Ignored { .. } => {}
    }
    json(200, &serde_json::json!({ "received": true }))
}
