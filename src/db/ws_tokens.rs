//! Rows of the `ws_tokens` table: one-time WebSocket tokens, stored hashed.

use serde::Deserialize;
use worker::D1Database;

use super::{now_seconds, run_batch, Arg, Statement};
use crate::error::ApiError;
use crate::permission::AccessBasis;

#[derive(Debug, Clone, Deserialize)]
pub struct TokenRow {
    pub user_id: String,
    pub instance_id: String,
    pub permission: String,
    pub expires_at: i64,
    /// The credential that obtained the token (protocol.md §8).
    pub api_key_id: Option<String>,
    pub delegate_id: Option<String>,
    pub secret_id: Option<String>,
}

impl TokenRow {
    pub fn basis(&self) -> AccessBasis {
        AccessBasis {
            api_key: self.api_key_id.clone(),
            delegate: self.delegate_id.clone(),
            secret: self.secret_id.clone(),
        }
    }
}

// --- SQL --------------------------------------------------------------------

/// `?1` now: purges tokens that expired before it.
pub const DELETE_EXPIRED: &str = "DELETE FROM ws_tokens WHERE expires_at < ?1";

/// `?1` token hash, `?2` user id, `?3` instance id, `?4` permission,
/// `?5` expires at, `?6` now, `?7`–`?9` the API key, delegate and secret
/// the caller authenticated with.
pub const INSERT_TOKEN: &str =
    "INSERT INTO ws_tokens (token_hash, user_id, instance_id, permission, expires_at, created_at,
                            api_key_id, delegate_id, secret_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// `?1` token hash: deletes the token, returning what it granted.
pub const TAKE_TOKEN: &str = "DELETE FROM ws_tokens WHERE token_hash = ?1
     RETURNING user_id, instance_id, permission, expires_at, api_key_id, delegate_id, secret_id";

/// `?1` token hash: what the token grants, leaving it in place (the
/// inspector page checks a token that its socket will then take).
pub const PEEK_TOKEN: &str = "SELECT user_id, instance_id, permission, expires_at, api_key_id,
            delegate_id, secret_id
     FROM ws_tokens WHERE token_hash = ?1";

/// The statements with their parameters bound in order.
pub mod stmt {
    use super::*;

    /// One batch: the purge, then the insert.
    pub fn insert<'a>(
        token_hash: &'a str,
        user_id: &'a str,
        instance_id: &'a str,
        permission: &'a str,
        expires_at: i64,
        now: i64,
        basis: &'a AccessBasis,
    ) -> Vec<Statement<'a>> {
        vec![
            Statement::new(DELETE_EXPIRED, [Arg::Int(now)]),
            Statement::new(
                INSERT_TOKEN,
                [
                    Arg::Text(token_hash),
                    Arg::Text(user_id),
                    Arg::Text(instance_id),
                    Arg::Text(permission),
                    Arg::Int(expires_at),
                    Arg::Int(now),
                    Arg::opt_text(basis.api_key.as_deref()),
                    Arg::opt_text(basis.delegate.as_deref()),
                    Arg::opt_text(basis.secret.as_deref()),
                ],
            ),
        ]
    }

    pub fn take(token_hash: &str) -> Statement<'_> {
        Statement::new(TAKE_TOKEN, [Arg::Text(token_hash)])
    }

    pub fn peek(token_hash: &str) -> Statement<'_> {
        Statement::new(PEEK_TOKEN, [Arg::Text(token_hash)])
    }
}

// --- D1 ---------------------------------------------------------------------

/// Stores a token and purges expired ones (opportunistically, here).
pub async fn insert(
    db: &D1Database,
    token_hash: &str,
    user_id: &str,
    instance_id: &str,
    permission: &str,
    expires_at: i64,
    basis: &AccessBasis,
) -> Result<(), ApiError> {
    let batch = stmt::insert(
        token_hash,
        user_id,
        instance_id,
        permission,
        expires_at,
        now_seconds(),
        basis,
    );
    run_batch(db, &batch).await
}

/// Takes a token: deletes it and returns what it granted, so a second use
/// finds nothing (one statement, so two racing uses cannot both win).
pub async fn take(db: &D1Database, token_hash: &str) -> Result<Option<TokenRow>, ApiError> {
    stmt::take(token_hash).first(db).await
}

/// What a token grants, without using it up.
pub async fn peek(db: &D1Database, token_hash: &str) -> Result<Option<TokenRow>, ApiError> {
    stmt::peek(token_hash).first(db).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    fn seeded() -> TestDb {
        let db = TestDb::new();
        db.user("alice");
        db
    }

    #[test]
    fn a_token_is_taken_once() {
        let db = seeded();
        db.batch(&stmt::insert(
            "h1",
            "alice",
            "i1",
            "read",
            NOW + 60,
            NOW,
            &AccessBasis::default(),
        ));
        db.batch(&stmt::insert(
            "h2",
            "alice",
            "i2",
            "admin",
            NOW + 60,
            NOW,
            &AccessBasis::default(),
        ));
        let row: TokenRow = db.first(&stmt::take("h1")).unwrap();
        assert_eq!(
            (
                row.user_id.as_str(),
                row.instance_id.as_str(),
                row.permission.as_str()
            ),
            ("alice", "i1", "read")
        );
        assert_eq!(row.expires_at, NOW + 60);
        assert!(db.first::<TokenRow>(&stmt::take("h1")).is_none());
        assert!(db.first::<TokenRow>(&stmt::take("unknown")).is_none());
        assert_eq!(db.column("SELECT token_hash FROM ws_tokens"), ["h2"]);
    }

    #[test]
    fn a_peek_leaves_the_token_for_its_one_use() {
        let db = seeded();
        db.batch(&stmt::insert(
            "h1",
            "alice",
            "i1",
            "write",
            NOW + 60,
            NOW,
            &AccessBasis::default(),
        ));
        let seen: TokenRow = db.first(&stmt::peek("h1")).unwrap();
        assert_eq!(
            (seen.instance_id.as_str(), seen.permission.as_str()),
            ("i1", "write")
        );
        assert!(db.first::<TokenRow>(&stmt::peek("unknown")).is_none());
        assert!(db.first::<TokenRow>(&stmt::take("h1")).is_some());
        assert!(db.first::<TokenRow>(&stmt::peek("h1")).is_none());
    }

    #[test]
    fn insert_purges_tokens_expired_before_now() {
        let db = seeded();
        db.batch(&stmt::insert(
            "old",
            "alice",
            "i",
            "read",
            NOW - 1,
            NOW - 61,
            &AccessBasis::default(),
        ));
        db.batch(&stmt::insert(
            "edge",
            "alice",
            "i",
            "read",
            NOW,
            NOW - 60,
            &AccessBasis::default(),
        ));
        db.batch(&stmt::insert(
            "new",
            "alice",
            "i",
            "read",
            NOW + 60,
            NOW,
            &AccessBasis::default(),
        ));
        let mut left = db.column("SELECT token_hash FROM ws_tokens");
        left.sort();
        // Expiring this very second still counts as valid (`take`'s caller
        // refuses only `expires_at < now`).
        assert_eq!(left, ["edge", "new"]);
        // The batch is atomic: a bad insert keeps the expired ones too.
        db.batch(&stmt::insert(
            "old2",
            "alice",
            "i",
            "read",
            NOW - 1,
            NOW - 61,
            &AccessBasis::default(),
        ));
        assert!(db
            .try_batch(&stmt::insert(
                "x",
                "ghost",
                "i",
                "read",
                NOW + 60,
                NOW,
                &AccessBasis::default()
            ))
            .is_err());
        assert_eq!(db.count("ws_tokens"), 3);
    }
}
