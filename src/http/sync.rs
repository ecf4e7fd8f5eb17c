//! `GET /sync/:instanceId`: authenticate, then hand the WebSocket upgrade
//! to the instance's Durable Object with the identity established here.

use worker::{Request, Response};

use super::Ctx;
use crate::auth::DEV_USER;
use crate::db;
use crate::error::ApiError;
use crate::instance::client::{Identity, InstanceClient};
use crate::permission::Permission;

pub async fn handle(req: &Request, ctx: &Ctx, instance_id: &str) -> Result<Response, ApiError> {
    let upgrade = req.headers().get("Upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired);
    }
    let identity = if ctx.development {
        Identity::User {
            user_id: DEV_USER.to_string(),
            permission: Permission::Admin,
        }
    } else {
        Identity::Unauthenticated
    };
    let read_only = db::instances::read_only(&db::database(&ctx.env)?, instance_id)
        .await?
        .unwrap_or(false);
    InstanceClient::new(&ctx.env, instance_id, read_only)?
        .connect(req, identity, ctx.development)
        .await
}
