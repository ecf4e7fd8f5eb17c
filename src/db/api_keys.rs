//! Rows of the `api_keys` table. Keys are found by the SHA-256 of the
//! presented key (unique index); the key itself is never stored.

use serde::Deserialize;
use worker::D1Database;

use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_prefix: String,
    pub scope_type: String,
    pub scope_id: Option<String>,
    pub permissions: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

// --- SQL --------------------------------------------------------------------

/// `ApiKeyRow`s, up to the `WHERE` keyword.
macro_rules! select_keys {
    () => {
        "SELECT id, user_id, name, key_prefix, scope_type, scope_id, permissions, created_at,
                last_used_at FROM api_keys WHERE "
    };
}

/// `?1` key hash.
pub const SELECT_BY_HASH: &str = concat!(select_keys!(), "key_hash = ?1");

/// `?1` key id (re-evaluating a live session).
pub const SELECT_BY_ID: &str = concat!(select_keys!(), "id = ?1");

/// `?1` key id, `?2` now.
pub const UPDATE_LAST_USED: &str = "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1";

/// `?1` user id; newest first.
pub const SELECT_FOR_USER: &str = concat!(
    select_keys!(),
    "user_id = ?1 ORDER BY created_at DESC, rowid DESC"
);

/// `?1` id … `?8` permissions JSON, `?9` now (`NewKey`).
pub const INSERT_KEY: &str =
    "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, scope_type, scope_id,
                           permissions, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// `?1` key id, `?2` user id (the owner); returns the id if it deleted.
pub const DELETE_OWNED: &str = "DELETE FROM api_keys WHERE id = ?1 AND user_id = ?2 RETURNING id";

new_row! {
    /// A new key (only its hash and prefix are stored).
    NewKey => INSERT_KEY {
        id: &'a str, user_id: &'a str, name: &'a str, key_hash: &'a str, key_prefix: &'a str,
        scope_type: &'a str, scope_id: Option<&'a str>, permissions_json: &'a str,
        created_at: i64,
    }
}

stmt_module! {
    fn find_by_hash(key_hash: &'a str) => SELECT_BY_HASH;
    fn find_by_id(id: &'a str) => SELECT_BY_ID;
    fn touch(id: &'a str, now: i64) => UPDATE_LAST_USED;
    /// Newest first.
    fn list_for_user(user_id: &'a str) => SELECT_FOR_USER;
    /// Returns a row if `user_id` owned the key and it is deleted.
    fn delete_owned(id: &'a str, user_id: &'a str) => DELETE_OWNED;
}

// --- D1 ---------------------------------------------------------------------

/// Records use, at most once a minute per key.
pub async fn touch(db: &D1Database, row: &ApiKeyRow) -> Result<(), ApiError> {
    match super::use_worth_recording(row.last_used_at) {
        Some(now) => stmt::touch(&row.id, now).run(db).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    fn seeded() -> TestDb {
        let db = TestDb::with_users(&["alice", "bob"]);
        db.project("p", "alice");
        db
    }

    #[test]
    fn find_by_hash_returns_the_whole_row() {
        let db = seeded();
        db.api_key("k1", "alice", "project:p");
        db.api_key("k2", "bob", "account");
        let row: ApiKeyRow = db.first(&stmt::find_by_hash("hash-k1")).unwrap();
        assert_eq!(
            (row.id.as_str(), row.user_id.as_str(), row.name.as_str()),
            ("k1", "alice", "k1")
        );
        assert_eq!(
            (row.scope_type.as_str(), row.scope_id.as_deref()),
            ("project", Some("p"))
        );
        assert_eq!(
            (row.key_prefix.as_str(), row.permissions.as_str()),
            ("mc_live_abcd", r#"["read"]"#)
        );
        assert_eq!((row.created_at, row.last_used_at), (NOW, None));
        let row: ApiKeyRow = db.first(&stmt::find_by_hash("hash-k2")).unwrap();
        assert_eq!((row.scope_type.as_str(), row.scope_id), ("account", None));
        assert!(db.returns_nothing(&stmt::find_by_hash("hash-k3")));
        assert!(db.returns_nothing(&stmt::find_by_hash("k1")));
    }

    #[test]
    fn hashes_are_unique_and_owners_must_exist() {
        let db = seeded();
        db.api_key("k1", "alice", "account");
        let clash = NewKey {
            id: "k2",
            user_id: "bob",
            name: "clash",
            key_hash: "hash-k1",
            key_prefix: "mc_live_abcd",
            scope_type: "account",
            scope_id: None,
            permissions_json: "[]",
            created_at: NOW,
        };
        assert!(db.try_rows(&clash.insert()).is_err());
        let orphan = NewKey {
            user_id: "ghost",
            key_hash: "hash-k3",
            ..clash
        };
        assert!(db.try_rows(&orphan.insert()).is_err());
        assert_eq!(db.ids("api_keys"), ["k1"]);
    }

    #[test]
    fn touch_records_last_use() {
        let db = seeded();
        db.api_key("k1", "alice", "account");
        db.api_key("k2", "alice", "account");
        assert_eq!(db.run(&stmt::touch("k1", NOW + 100)), 1);
        let row: ApiKeyRow = db.first(&stmt::find_by_hash("hash-k1")).unwrap();
        assert_eq!(row.last_used_at, Some(NOW + 100));
        let other: ApiKeyRow = db.first(&stmt::find_by_hash("hash-k2")).unwrap();
        assert_eq!(other.last_used_at, None);
    }

    #[test]
    fn list_for_user_newest_first() {
        let db = seeded();
        db.api_key("k1", "alice", "account");
        db.api_key("k2", "bob", "account");
        db.api_key("k3", "alice", "instance:p-main");
        let rows: Vec<ApiKeyRow> = db.all(&stmt::list_for_user("alice"));
        let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["k3", "k1"]);
        assert!(db.returns_nothing(&stmt::list_for_user("nobody")));
    }

    #[test]
    fn delete_owned_only_deletes_the_owners_key() {
        let db = seeded();
        db.api_key("k1", "alice", "account");
        let by_other: Option<serde_json::Value> = db.first(&stmt::delete_owned("k1", "bob"));
        assert_eq!(by_other, None);
        assert_eq!(db.ids("api_keys"), ["k1"]);
        let by_owner: Option<serde_json::Value> = db.first(&stmt::delete_owned("k1", "alice"));
        assert_eq!(by_owner, Some(serde_json::json!({ "id": "k1" })));
        assert_eq!(db.count("api_keys"), 0);
        let again: Option<serde_json::Value> = db.first(&stmt::delete_owned("k1", "alice"));
        assert_eq!(again, None);
    }
}
