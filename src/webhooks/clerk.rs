//! Clerk's Svix-signed user events, kept in sync with the `users` table.
//! The HTTP adapter hands over the raw body and a header lookup.

use super::svix::{delivery_id, parse_clerk_event, verify, ClerkEvent, DELIVERY_MEMORY_SECS};
use crate::config::setting;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::services::lifecycle::{self, Doomed};

/// Verifies (unless development mode allows unsigned events) and applies
/// one webhook delivery, once: a delivery whose id (`svix-id`) was received
/// in the last ten minutes is a replay, acknowledged without being applied.
/// Without an id (possible only unsigned, in development mode) every
/// delivery is applied.
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
            verify(&header, body, &secret, now).map_err(|e| {
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
    if let ClerkEvent::Ignored { .. } = event {
        return Ok(());
    }
    let db = ctx.db()?;
    let delivery = delivery_id(&header);
    if let Some(id) = &delivery {
        let now = db::now_seconds();
        if !db::received_webhooks::claim(&db, id, now, now - DELIVERY_MEMORY_SECS).await? {
            crate::log_warn!("Clerk webhook {id} was already received; not applied again");
            return Ok(());
        }
    }
    let applied = match event {
        ClerkEvent::UserUpserted(user) => {
            let (email, name) = (user.email.as_deref(), user.name.as_deref());
            let upsert = db::users::stmt::upsert(&user.id, email, name, db::now_seconds());
            upsert.run(&db).await
        }
        ClerkEvent::UserDeleted { id } => {
            crate::services::known_users::forget(&id);
            lifecycle::destroy(ctx, Doomed::User(&id)).await
        }
        ClerkEvent::Ignored { .. } => Ok(()),
    };
    if let (Err(_), Some(id)) = (&applied, &delivery) {
        // Not applied: Svix retries with the same id, and that retry must
        // be applied, not taken for a replay.
        if let Err(e) = db::received_webhooks::stmt::release(id).run(&db).await {
            crate::log_error!("could not forget failed webhook delivery {id}: {e}");
        }
    }
    applied
}
