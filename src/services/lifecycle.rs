//! Destroying instances: the one path used by project deletion, instance
//! deletion and Clerk's `user.deleted`. Objects go first (sockets closed,
//! storage emptied) because once the rows are gone nothing names them.

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
        Doomed::Project(id) => db::projects::instance_ids(&db, id).await?,
        Doomed::User(id) => db::users::owned_instance_ids(&db, id).await?,
    };
    for instance_id in &instance_ids {
        InstanceClient::new(&ctx.env, instance_id)?
            .destroy()
            .await?;
    }
    match doomed {
        Doomed::Instance(id) => {
            db::delegates::delete_instance_grants(&db, id).await?;
            db::instances::delete(&db, id).await
        }
        // Grants on the project's instances go with them (foreign keys).
        Doomed::Project(id) => db::projects::delete(&db, id).await,
        Doomed::User(id) => {
            // The user (directly, through its keys or its delegates) may
            // hold sockets on instances others own.
            let mut reached = db::reach::user_instances(&db, id).await?;
            for delegate in db::delegates::list_for_user(&db, id).await? {
                for grant in db::delegates::grants(&db, &delegate.delegate_id).await? {
                    if !reached.contains(&grant.instance_id) {
                        reached.push(grant.instance_id);
                    }
                }
            }
            db::delegates::delete_for_user(&db, id).await?;
            db::users::delete_everything(&db, id).await?;
            revocation::recheck(ctx, &reached, Affected::User(id.to_owned())).await;
            Ok(())
        }
    }
}
