//! Destroying instances: the one path used by project deletion, instance
//! deletion and Clerk's `user.deleted`. Objects go first (sockets closed,
//! storage emptied) because once the rows are gone nothing names them.

use futures_util::future::join_all;

use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::instance::internal::Affected;
use crate::services::revocation;

/// What is being removed, and so which rows go after the objects.
pub enum Doomed<'a> {
    Instance(&'a str),
    Project(&'a str),
    /// A user and everything it owns.
    User(&'a str),
}

/// Destroys every instance object under `doomed`, then deletes the rows.
pub async fn destroy(ctx: &Ctx, doomed: Doomed<'_>) -> Result<(), ApiError> {
    let db = ctx.db()?;
    let instance_ids = match doomed {
        Doomed::Instance(id) => vec![id.to_owned()],
        Doomed::Project(id) => db::projects::stmt::instance_ids(id).ids(&db).await?,
        Doomed::User(id) => db::users::stmt::owned_instance_ids(id).ids(&db).await?,
    };
    // Concurrently: a project or a user may have many instances.
    let destroys = instance_ids.iter().map(|id| destroy_object(ctx, id));
    for outcome in join_all(destroys).await {
        outcome?;
    }
    match doomed {
        Doomed::Instance(id) => {
            let grants = db::delegates::stmt::delete_instance_grants(id);
            grants.run(&db).await?;
            db::run_batch(&db, &db::instances::stmt::delete(id)).await
        }
        // Grants on the project's instances go with them (foreign keys). An
        // instance created (or cloned) while this ran is destroyed too.
        Doomed::Project(id) => {
            let deleted = db::projects::delete(&db, id).await?;
            let late: Vec<&String> = deleted
                .iter()
                .filter(|i| !instance_ids.contains(i))
                .collect();
            for outcome in join_all(late.into_iter().map(|i| destroy_object(ctx, i))).await {
                outcome?;
            }
            Ok(())
        }
        Doomed::User(id) => {
            // The user (directly, through its keys or its delegates) may
            // hold sockets on instances others own.
            let reached = db::reach::stmt::user_instances(id).ids(&db).await?;
            // Shares the user made, and shares to its groups, go too: the
            // users they reached are re-evaluated.
            let shared = db::reach::stmt::users_shared_instances(id).ids(&db).await?;
            db::reach::stmt::forget_user_uses(id).run(&db).await?;
            db::run_batch(&db, &db::delegates::stmt::delete_for_user(id)).await?;
            db::run_batch(&db, &db::users::stmt::delete_everything(id)).await?;
            revocation::revoke(ctx, &reached, Affected::User(id.to_owned())).await;
            revocation::recheck(ctx, &shared, Affected::All).await;
            Ok(())
        }
    }
}

async fn destroy_object(ctx: &Ctx, instance_id: &str) -> Result<(), ApiError> {
    InstanceClient::new(&ctx.env, instance_id)?.destroy().await
}
