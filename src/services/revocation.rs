//! Telling instances that access changed (protocol.md §8). After D1 has
//! been updated, each object that may hold an affected socket is asked to
//! re-evaluate it; the request returns once the objects have closed or
//! lowered those sockets, so a revocation is in force when its `200` leaves.
//! The calls to several objects run concurrently.

use futures_util::future::join_all;

use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::instance::internal::{Affected, RecheckRequest};

/// Asks every instance in `instance_ids` to re-evaluate the sockets
/// `affected` concerns against D1 (a share or group changed: some may keep
/// access, some be lowered).
pub async fn recheck(ctx: &Ctx, instance_ids: &[String], affected: Affected) {
    notify(
        ctx,
        instance_ids,
        RecheckRequest {
            affected,
            gone: false,
        },
    )
    .await;
}

/// Tells every instance in `instance_ids` that the sockets `affected`
/// concerns have lost their access for certain (their credential or user
/// was deleted or revoked): they are closed without a D1 lookup each.
pub async fn revoke(ctx: &Ctx, instance_ids: &[String], affected: Affected) {
    notify(
        ctx,
        instance_ids,
        RecheckRequest {
            affected,
            gone: true,
        },
    )
    .await;
}

/// An object that cannot be reached is logged and skipped: the D1 change
/// already stops new access, and failing the caller's request would not
/// undo it.
async fn notify(ctx: &Ctx, instance_ids: &[String], request: RecheckRequest) {
    let calls = instance_ids.iter().map(|id| {
        let request = &request;
        async move {
            let client = InstanceClient::new(&ctx.env, id)?;
            client.recheck(request).await
        }
    });
    for (id, outcome) in instance_ids.iter().zip(join_all(calls).await) {
        if let Err(e) = outcome {
            let e: ApiError = e;
            crate::log_error!("revocation did not reach instance {id}: {e}");
        }
    }
}

/// The instances a share on `resource_type`/`resource_id` reaches: the
/// instance itself, or every instance of the project.
pub async fn instances_under(
    ctx: &Ctx,
    resource_type: &str,
    resource_id: &str,
) -> Result<Vec<String>, ApiError> {
    match resource_type {
        "project" => {
            let ids = db::projects::stmt::instance_ids(resource_id);
            ids.ids(&ctx.db()?).await
        }
        _ => Ok(vec![resource_id.to_owned()]),
    }
}

/// Notes that `caller` is about to open a socket on the instance (by the
/// API key, delegate or user it acts as): revoking that credential, or
/// deleting the user, then reaches this object, and only the objects used.
pub async fn note_socket(ctx: &Ctx, caller: &Caller, instance_id: &str) -> Result<(), ApiError> {
    if ctx.development && caller.is_dev_user() {
        return Ok(());
    }
    let credential = caller
        .basis
        .api_key
        .as_ref()
        .or(caller.basis.delegate.as_ref())
        .unwrap_or(&caller.user_id);
    let record = db::reach::stmt::record_use(credential, instance_id, db::now_seconds());
    record.run(&ctx.db()?).await
}
