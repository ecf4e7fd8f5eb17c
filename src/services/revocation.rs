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
use crate::instance::internal::Affected;

/// Asks every instance in `instance_ids` to re-evaluate the sockets
/// `affected` concerns. An object that cannot be reached is logged and
/// skipped: the D1 change already stops new access, and failing the
/// caller's request would not undo it.
pub async fn recheck(ctx: &Ctx, instance_ids: &[String], affected: Affected) {
    let calls = instance_ids.iter().map(|id| {
        let affected = &affected;
        async move {
            let client = InstanceClient::new(&ctx.env, id)?;
            client.recheck(affected).await
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
        "project" => db::projects::instance_ids(&ctx.db()?, resource_id).await,
        _ => Ok(vec![resource_id.to_owned()]),
    }
}

/// Notes that `caller` is about to open a socket on the instance, when its
/// credential is an API key: deleting the key then reaches that object.
pub async fn note_socket(ctx: &Ctx, caller: &Caller, instance_id: &str) -> Result<(), ApiError> {
    match &caller.basis.api_key {
        Some(key_id) => db::reach::record_key_use(&ctx.db()?, key_id, instance_id).await,
        None => Ok(()),
    }
}
