//! Clerk's Svix-signed user events, kept in sync with the `users` table.
//! The HTTP adapter hands over the raw body and a header lookup.

use super::svix::{parse_clerk_event, verify, ClerkEvent};
use crate::config::setting;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::services::lifecycle::{self, Doomed};

/// Verifies (unless development mode allows unsigned events) and applies
/// one webhook delivery.
pub async fn receive(
    ctx: &Ctx,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<(), ApiError> {
    let secret = setting(&ctx.env, "CLERK_WEBHOOK_SECRET")
        .or_else(|| setting(&ctx.env, "CLERK_WEBHOOK_SIGNING_SECRET"));
    match secret {
        Some(secret) => {
            let now = (worker::Date::now().as_millis() / 1000) as i64;
            verify(header, body, &secret, now).map_err(|e| {
                if e.status() == 500 {
                    crate::log_error!("CLERK_WEBHOOK_SECRET is not a valid whsec_ secret");
                    ApiError::Misconfigured("Webhook secret is misconfigured".into())
                } else {
                    ApiError::Unauthorized(e.to_string())
                }
            })?;
        }
        // Unsigned webhooks only in development mode (auth.md).
        None if ctx.development => {}
        None => {
            crate::log_error!("Clerk webhook received but CLERK_WEBHOOK_SECRET is not set");
            return Err(ApiError::Misconfigured(
                "Webhook secret is not configured".into(),
            ));
        }
    }

    let event = parse_clerk_event(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match event {
        ClerkEvent::UserUpserted(user) => {
            db::users::upsert(
                &ctx.db()?,
                &user.id,
                user.email.as_deref(),
                user.name.as_deref(),
            )
            .await
        }
        ClerkEvent::UserDeleted { id } => lifecycle::destroy(ctx, Doomed::User(&id)).await,
        ClerkEvent::Ignored { .. } => Ok(()),
    }
}
