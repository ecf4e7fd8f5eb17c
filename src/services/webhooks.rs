//! Webhook management (webhooks-out.md): D1 holds each webhook; after every
//! change the Worker gives the instance's object the whole list again,
//! with a version (ms), so the object's copy converges on D1's whatever
//! order two pushes arrive in.

use crate::auth::caller::Caller;
use crate::auth::roles::Action;
use crate::ctx::Ctx;
use crate::db;
use crate::db::instances::InstanceRow;
use crate::db::webhooks::{stmt, WebhookRow};
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::instance::outbox::{Configuration, HookConfig};
use crate::services::access::{self, Authorized};

/// A webhook the caller may manage (admin on its instance), or `404
/// Webhook not found` when it does not exist or the caller cannot see its
/// instance, `403` when it sees the instance without being its admin.
pub async fn manageable(
    ctx: &Ctx,
    caller: &Caller,
    webhook_id: &str,
) -> Result<(WebhookRow, Authorized<InstanceRow>), ApiError> {
    let not_found = || ApiError::not_found("Webhook not found");
    let row: WebhookRow = stmt::get(webhook_id)
        .first(&ctx.db()?)
        .await?
        .ok_or_else(not_found)?;
    let instance = access::instance(ctx, caller, &row.instance_id, Action::ManageWebhooks)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => not_found(),
            other => other,
        })?;
    Ok((row, instance))
}

/// The object's view of D1's webhooks of an instance.
pub fn configuration(rows: &[WebhookRow], version: i64) -> Configuration {
    Configuration {
        version,
        webhooks: rows
            .iter()
            .map(|row| HookConfig {
                id: row.id.clone(),
                url: row.url.clone(),
                events: row.event_list(),
                key_prefix: row.key_prefix.clone(),
                secret: row.secret.clone().unwrap_or_default(),
                // A row without a secret (none was ever made by this
                // server) cannot be signed for: it stays silent.
                active: row.active() && row.secret.is_some(),
            })
            .collect(),
    }
}

/// Gives the instance's object its webhooks as D1 has them now. The
/// version is taken before D1 is read, so a push that read older rows
/// always carries an older version.
pub async fn push(ctx: &Ctx, instance_id: &str) -> Result<(), ApiError> {
    let version = db::now_millis();
    let rows: Vec<WebhookRow> = stmt::list_for_instance(instance_id).all(&ctx.db()?).await?;
    InstanceClient::new(&ctx.env, instance_id)?
        .configure_webhooks(&configuration(&rows, version))
        .await
}
