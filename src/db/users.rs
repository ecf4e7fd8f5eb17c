//! Rows of the `users` table.

use serde::Deserialize;
use worker::D1Database;

use super::{now_seconds, run_batch, Arg, IdRow, Statement};
use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

// --- SQL --------------------------------------------------------------------

/// `?1` user id, `?2` now; an existing row is left alone.
pub const INSERT_IF_MISSING: &str =
    "INSERT INTO users (id, clerk_id, created_at) VALUES (?1, ?1, ?2)
     ON CONFLICT(id) DO NOTHING";

/// `?1` user id.
pub const SELECT_USER: &str = "SELECT id, email, name FROM users WHERE id = ?1";

/// `?1` email, compared case-insensitively.
pub const SELECT_BY_EMAIL: &str =
    "SELECT id, email, name FROM users WHERE email = ?1 COLLATE NOCASE LIMIT 1";

/// `?1` user id, `?2` email, `?3` name, `?4` now; a replay updates email and
/// name only.
pub const UPSERT_USER: &str =
    "INSERT INTO users (id, clerk_id, email, name, created_at) VALUES (?1, ?1, ?2, ?3, ?4)
     ON CONFLICT(id) DO UPDATE SET email = excluded.email, name = excluded.name";

/// Every instance in the projects of user `?1`.
macro_rules! owned_instances {
    () => {
        "SELECT i.id FROM instances i JOIN projects p ON p.id = i.project_id WHERE p.owner_id = ?1"
    };
}

/// `?1` user id.
pub const SELECT_OWNED_INSTANCE_IDS: &str = owned_instances!();

/// User deletion, in batch order; each takes `?1` user id.
pub const DELETE_SHARES_ON_OWNED: &str = concat!(
    "DELETE FROM shares WHERE (resource_type = 'instance' AND resource_id IN (",
    owned_instances!(),
    ")) OR (resource_type = 'project' AND resource_id IN ",
    "(SELECT id FROM projects WHERE owner_id = ?1))"
);
pub const DELETE_SHARES_TO_OWNED_GROUPS: &str =
    "DELETE FROM shares WHERE target_type = 'group' AND target_id IN
    (SELECT id FROM groups WHERE owner_id = ?1)";
pub const DELETE_SHARES_TO_AND_BY_USER: &str =
    "DELETE FROM shares WHERE (target_type = 'user' AND target_id = ?1) OR created_by = ?1";
pub const DELETE_TOKENS: &str = concat!(
    "DELETE FROM ws_tokens WHERE user_id = ?1 OR instance_id IN (",
    owned_instances!(),
    ")"
);
pub const DELETE_KEYS: &str = concat!(
    "DELETE FROM api_keys WHERE user_id = ?1 OR (scope_type = 'instance' AND scope_id IN (",
    owned_instances!(),
    ")) OR (scope_type = 'project' AND scope_id IN ",
    "(SELECT id FROM projects WHERE owner_id = ?1))"
);
pub const DELETE_MEMBERSHIPS: &str = "DELETE FROM group_members WHERE user_id = ?1 OR group_id IN
    (SELECT id FROM groups WHERE owner_id = ?1)";
pub const DELETE_OWNED_GROUPS: &str = "DELETE FROM groups WHERE owner_id = ?1";
pub const DELETE_OWNED_INSTANCES: &str = concat!(
    "DELETE FROM instances WHERE id IN (",
    owned_instances!(),
    ")"
);
pub const DELETE_OWNED_PROJECTS: &str = "DELETE FROM projects WHERE owner_id = ?1";
pub const DELETE_USER: &str = "DELETE FROM users WHERE id = ?1";

/// The statements with their parameters bound in order.
pub mod stmt {
    use super::*;

    pub fn ensure(user_id: &str, now: i64) -> Statement<'_> {
        Statement::new(INSERT_IF_MISSING, [Arg::Text(user_id), Arg::Int(now)])
    }

    pub fn get(user_id: &str) -> Statement<'_> {
        Statement::new(SELECT_USER, [Arg::Text(user_id)])
    }

    pub fn find_by_email(email: &str) -> Statement<'_> {
        Statement::new(SELECT_BY_EMAIL, [Arg::Text(email)])
    }

    pub fn upsert<'a>(
        user_id: &'a str,
        email: Option<&'a str>,
        name: Option<&'a str>,
        now: i64,
    ) -> Statement<'a> {
        Statement::new(
            UPSERT_USER,
            [
                Arg::Text(user_id),
                Arg::opt_text(email),
                Arg::opt_text(name),
                Arg::Int(now),
            ],
        )
    }

    pub fn owned_instance_ids(user_id: &str) -> Statement<'_> {
        Statement::new(SELECT_OWNED_INSTANCE_IDS, [Arg::Text(user_id)])
    }

    /// One batch.
    pub fn delete_everything(user_id: &str) -> Vec<Statement<'_>> {
        [
            DELETE_SHARES_ON_OWNED,
            DELETE_SHARES_TO_OWNED_GROUPS,
            DELETE_SHARES_TO_AND_BY_USER,
            DELETE_TOKENS,
            DELETE_KEYS,
            DELETE_MEMBERSHIPS,
            DELETE_OWNED_GROUPS,
            DELETE_OWNED_INSTANCES,
            DELETE_OWNED_PROJECTS,
            DELETE_USER,
        ]
        .into_iter()
        .map(|sql| Statement::new(sql, [Arg::Text(user_id)]))
        .collect()
    }
}

// --- D1 ---------------------------------------------------------------------

/// Makes sure the caller has a row (every authenticated `/api/*` request).
pub async fn ensure(db: &D1Database, user_id: &str) -> Result<(), ApiError> {
    stmt::ensure(user_id, now_seconds()).run(db).await
}

pub async fn get(db: &D1Database, user_id: &str) -> Result<Option<UserRow>, ApiError> {
    stmt::get(user_id).first(db).await
}

pub async fn find_by_email(db: &D1Database, email: &str) -> Result<Option<UserRow>, ApiError> {
    stmt::find_by_email(email).first(db).await
}

/// Creates or updates a user from Clerk (webhook); replays are harmless.
pub async fn upsert(
    db: &D1Database,
    user_id: &str,
    email: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    stmt::upsert(user_id, email, name, now_seconds())
        .run(db)
        .await
}

/// Every instance in projects the user owns.
pub async fn owned_instance_ids(db: &D1Database, user_id: &str) -> Result<Vec<String>, ApiError> {
    let rows: Vec<IdRow> = stmt::owned_instance_ids(user_id).all(db).await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Removes the user and everything it owns or was given: its projects and
/// their instances, every share on those, its groups and the shares to
/// them, shares to the user, its keys, tokens and memberships. One batch,
/// so a failure leaves nothing half-deleted; replaying it is harmless.
pub async fn delete_everything(db: &D1Database, user_id: &str) -> Result<(), ApiError> {
    run_batch(db, &stmt::delete_everything(user_id)).await
}
