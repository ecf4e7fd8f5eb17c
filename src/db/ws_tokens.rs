//! Rows of the `ws_tokens` table: one-time WebSocket tokens, stored hashed.

use serde::Deserialize;

use super::Statement;
use crate::permission::{AccessBasis, Permission};

#[derive(Debug, Clone, Deserialize)]
pub struct TokenRow {
    pub user_id: String,
    pub instance_id: String,
    pub permission: String,
    pub expires_at: i64,
    #[serde(flatten)]
    pub credential: TokenCredential,
}

/// The credential that obtained a token (protocol.md §8), by its ids: the
/// `api_key_id`, `delegate_id` and `secret_id` columns, which together say
/// what the token's access rests on.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenCredential {
    pub api_key_id: Option<String>,
    pub delegate_id: Option<String>,
    pub secret_id: Option<String>,
}

impl TokenRow {
    pub fn basis(&self) -> AccessBasis {
        let c = &self.credential;
        AccessBasis {
            api_key: c.api_key_id.clone(),
            delegate: c.delegate_id.clone(),
            secret: c.secret_id.clone(),
            expires: None,
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

new_row! {
    /// What a new token grants, and the API key, delegate and secret the
    /// caller authenticated with.
    NewToken => INSERT_TOKEN {
        token_hash: &'a str, user_id: &'a str, instance_id: &'a str, permission: Permission,
        expires_at: i64, created_at: i64,
        api_key_id: Option<&'a str>, delegate_id: Option<&'a str>, secret_id: Option<&'a str>,
    }
}

/// `?1` token hash: what the token grants, leaving it in place (the
/// inspector page checks a token that its socket will then take).
pub const PEEK_TOKEN: &str = "SELECT user_id, instance_id, permission, expires_at, api_key_id,
            delegate_id, secret_id
     FROM ws_tokens WHERE token_hash = ?1";

stmt_module! {
    fn purge_expired(now: i64) => DELETE_EXPIRED;
    /// Takes a token: deletes it and returns what it granted (`TokenRow`),
    /// so a second use finds nothing (one statement, so two racing uses
    /// cannot both win).
    fn take(token_hash: &'a str) => TAKE_TOKEN;
    /// What a token grants, leaving it for its one use.
    fn peek(token_hash: &'a str) => PEEK_TOKEN;

    /// One batch: the purge of expired tokens (opportunistically, here),
    /// then the insert.
    pub fn insert<'a>(token: &NewToken<'a>) -> Vec<Statement<'a>> {
        vec![purge_expired(token.created_at), token.insert()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{new_token, TestDb, NOW};

    /// A read token on `i`, made at `now`.
    fn made(
        hash: &'static str,
        user: &'static str,
        now: i64,
        expires_at: i64,
    ) -> NewToken<'static> {
        NewToken {
            created_at: now,
            expires_at,
            ..new_token(hash, user, "i", "read")
        }
    }

    fn seeded() -> TestDb {
        TestDb::with_users(&["alice"])
    }

    #[test]
    fn a_token_is_taken_once() {
        let db = seeded();
        db.batch(&stmt::insert(&new_token("h1", "alice", "i1", "read")));
        db.batch(&stmt::insert(&new_token("h2", "alice", "i2", "admin")));
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
        assert!(db.returns_nothing(&stmt::take("h1")));
        assert!(db.returns_nothing(&stmt::take("unknown")));
        assert_eq!(db.column("SELECT token_hash FROM ws_tokens"), ["h2"]);
    }

    #[test]
    fn a_peek_leaves_the_token_for_its_one_use() {
        let db = seeded();
        db.batch(&stmt::insert(&new_token("h1", "alice", "i1", "write")));
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
    fn the_credential_comes_back_as_the_basis() {
        let db = seeded();
        db.batch(&stmt::insert(&new_token("user", "alice", "i1", "read")));
        db.batch(&stmt::insert(&NewToken {
            delegate_id: Some("del_1"),
            secret_id: Some("sec_1"),
            ..new_token("delegate", "alice", "i1", "read")
        }));
        let user: TokenRow = db.first(&stmt::take("user")).unwrap();
        assert_eq!(user.basis(), AccessBasis::default());
        let delegate: TokenRow = db.first(&stmt::peek("delegate")).unwrap();
        assert_eq!(
            delegate.basis(),
            AccessBasis {
                delegate: Some("del_1".into()),
                secret: Some("sec_1".into()),
                ..AccessBasis::default()
            }
        );
    }

    #[test]
    fn insert_purges_tokens_expired_before_now() {
        let db = seeded();
        db.batch(&stmt::insert(&made("old", "alice", NOW - 61, NOW - 1)));
        db.batch(&stmt::insert(&made("edge", "alice", NOW - 60, NOW)));
        db.batch(&stmt::insert(&made("new", "alice", NOW, NOW + 60)));
        let mut left = db.column("SELECT token_hash FROM ws_tokens");
        left.sort();
        // Expiring this very second still counts as valid (`take`'s caller
        // refuses only `expires_at < now`).
        assert_eq!(left, ["edge", "new"]);
        // The batch is atomic: a bad insert keeps the expired ones too.
        db.batch(&stmt::insert(&made("old2", "alice", NOW - 61, NOW - 1)));
        assert!(db
            .try_batch(&stmt::insert(&made("x", "ghost", NOW, NOW + 60)))
            .is_err());
        assert_eq!(db.count("ws_tokens"), 3);
    }
}
