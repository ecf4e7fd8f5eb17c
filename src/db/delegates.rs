//! Rows of `delegates`, `delegate_secrets` and `delegate_grants`
//! (delegates.md). Secrets are found by the SHA-256 of the presented secret;
//! the secret itself is never stored.

use serde::Deserialize;
use worker::D1Database;

use crate::error::ApiError;
use crate::permission::Permission;

#[derive(Debug, Clone, Deserialize)]
pub struct DelegateRow {
    pub delegate_id: String,
    pub created_by_user_id: String,
    pub name: String,
    pub can_read: i64,
    pub can_write: i64,
    pub can_system: i64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecretRow {
    pub secret_id: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GrantRow {
    pub instance_id: String,
    pub permission: String,
    pub granted_at: i64,
    pub expires_at: Option<i64>,
}

/// A live (unrevoked) secret with its delegate: what a credential proves.
#[derive(Debug, Clone, Deserialize)]
pub struct CredentialRow {
    pub delegate_id: String,
    pub created_by_user_id: String,
    pub can_read: i64,
    pub can_write: i64,
    pub can_system: i64,
    pub expires_at: Option<i64>,
    pub secret_id: String,
    pub last_used_at: Option<i64>,
}

// --- SQL --------------------------------------------------------------------

macro_rules! delegate_columns {
    () => {
        "delegate_id, created_by_user_id, name, can_read, can_write, can_system, created_at, expires_at"
    };
}

/// `CredentialRow`s of delegate `?1`'s live secret that `$secret` picks.
macro_rules! live_credential {
    ($secret:literal) => {
        concat!(
            "SELECT d.delegate_id, d.created_by_user_id, d.can_read, d.can_write, d.can_system,
                    d.expires_at, s.secret_id, s.last_used_at
               FROM delegate_secrets s JOIN delegates d ON d.delegate_id = s.delegate_id
              WHERE ",
            $secret,
            " AND s.delegate_id = ?1 AND s.revoked_at IS NULL"
        )
    };
}

/// `?1` id, `?2` creator, `?3` name, `?4`–`?6` capabilities, `?7` now, `?8` expiry.
pub const INSERT_DELEGATE: &str = concat!(
    "INSERT INTO delegates (",
    delegate_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
);

/// `DelegateRow`s where `$condition` holds.
macro_rules! select_delegates {
    ($condition:literal) => {
        concat!(
            "SELECT ",
            delegate_columns!(),
            " FROM delegates WHERE ",
            $condition
        )
    };
}

/// `?1` creator; newest first.
pub const SELECT_FOR_USER: &str =
    select_delegates!("created_by_user_id = ?1 ORDER BY created_at DESC, rowid DESC");

/// `?1` delegate id, `?2` creator: the delegate if that user created it.
pub const SELECT_OWNED: &str = select_delegates!("delegate_id = ?1 AND created_by_user_id = ?2");

/// `?1` delegate id (the three deletes run as one batch).
pub const DELETE_GRANTS_OF: &str = "DELETE FROM delegate_grants WHERE delegate_id = ?1";
pub const DELETE_SECRETS_OF: &str = "DELETE FROM delegate_secrets WHERE delegate_id = ?1";
pub const DELETE_DELEGATE: &str = "DELETE FROM delegates WHERE delegate_id = ?1";

/// `?1` secret id, `?2` delegate id, `?3` hash, `?4` name, `?5` now
/// (`NewSecret`).
pub const INSERT_SECRET: &str =
    "INSERT INTO delegate_secrets (secret_id, delegate_id, secret_hash, name, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// `?1` delegate id; newest first.
pub const SELECT_SECRETS: &str =
    "SELECT secret_id, name, created_at, last_used_at, revoked_at FROM delegate_secrets
      WHERE delegate_id = ?1 ORDER BY created_at DESC, rowid DESC";

/// `?1` secret id, `?2` delegate id, `?3` now; a second revocation keeps
/// the first time.
pub const REVOKE_SECRET: &str = "UPDATE delegate_secrets SET revoked_at = COALESCE(revoked_at, ?3)
      WHERE secret_id = ?1 AND delegate_id = ?2 RETURNING secret_id AS id";

/// `?1` delegate id, `?2` secret hash.
pub const SELECT_CREDENTIAL: &str = live_credential!("s.secret_hash = ?2");

/// `?1` delegate id, `?2` secret id (re-evaluating a live session).
pub const SELECT_CREDENTIAL_BY_IDS: &str = live_credential!("s.secret_id = ?2");

/// `?1` secret id, `?2` now.
pub const TOUCH_SECRET: &str = "UPDATE delegate_secrets SET last_used_at = ?2 WHERE secret_id = ?1";

/// `?1` delegate, `?2` instance, `?3` permission, `?4` granter, `?5` now.
/// Granting again replaces the permission.
pub const UPSERT_GRANT: &str =
    "INSERT INTO delegate_grants (delegate_id, instance_id, permission, granted_by_user_id, granted_at)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (delegate_id, instance_id) DO UPDATE SET
       permission = excluded.permission,
       granted_by_user_id = excluded.granted_by_user_id,
       granted_at = excluded.granted_at";

/// `?1` delegate id; newest first.
pub const SELECT_GRANTS: &str =
    "SELECT instance_id, permission, granted_at, expires_at FROM delegate_grants
      WHERE delegate_id = ?1 ORDER BY granted_at DESC, rowid DESC";

/// `?1` delegate, `?2` instance, `?3` now: the grant's permission if live.
pub const SELECT_GRANT: &str =
    "SELECT instance_id, permission, granted_at, expires_at FROM delegate_grants
      WHERE delegate_id = ?1 AND instance_id = ?2 AND (expires_at IS NULL OR expires_at > ?3)";

/// `?1` delegate, `?2` instance.
pub const DELETE_GRANT: &str = "DELETE FROM delegate_grants
      WHERE delegate_id = ?1 AND instance_id = ?2 RETURNING instance_id AS id";

/// `?1` user id: every delegate the user created, with its secrets and
/// grants (one batch, run before the user's other rows go).
pub const DELETE_USER_GRANTS: &str = "DELETE FROM delegate_grants WHERE delegate_id IN
      (SELECT delegate_id FROM delegates WHERE created_by_user_id = ?1)";
pub const DELETE_USER_SECRETS: &str = "DELETE FROM delegate_secrets WHERE delegate_id IN
      (SELECT delegate_id FROM delegates WHERE created_by_user_id = ?1)";
pub const DELETE_USER_DELEGATES: &str = "DELETE FROM delegates WHERE created_by_user_id = ?1";

/// `?1` instance id: the grants on an instance about to be deleted.
pub const DELETE_INSTANCE_GRANTS: &str = "DELETE FROM delegate_grants WHERE instance_id = ?1";

new_row! {
    /// A new delegate.
    NewDelegate => INSERT_DELEGATE {
        delegate_id: &'a str, created_by_user_id: &'a str, name: &'a str,
        can_read: bool, can_write: bool, can_system: bool,
        created_at: i64, expires_at: Option<i64>,
    }
}

new_row! {
    /// A new secret of a delegate (only its hash is stored).
    NewSecret => INSERT_SECRET {
        secret_id: &'a str, delegate_id: &'a str, secret_hash: &'a str, name: Option<&'a str>,
        created_at: i64,
    }
}

stmt_module! {
    /// Newest first.
    fn list_for_user(user_id: &'a str) => SELECT_FOR_USER;
    /// The delegate if `user_id` created it (else it does not exist for them).
    fn owned(delegate_id: &'a str, user_id: &'a str) => SELECT_OWNED;
    fn secrets(delegate_id: &'a str) => SELECT_SECRETS;
    /// Returns a row if the delegate has such a secret.
    fn revoke_secret(secret_id: &'a str, delegate_id: &'a str, now: i64) => REVOKE_SECRET;
    fn credential(delegate_id: &'a str, hash: &'a str) => SELECT_CREDENTIAL;
    fn credential_by_ids(delegate_id: &'a str, secret_id: &'a str) => SELECT_CREDENTIAL_BY_IDS;
    fn touch_secret(secret_id: &'a str, now: i64) => TOUCH_SECRET;
    fn upsert_grant(
        delegate_id: &'a str, instance_id: &'a str, permission: Permission, granted_by: &'a str,
        now: i64,
    ) => UPSERT_GRANT;
    fn grants(delegate_id: &'a str) => SELECT_GRANTS;
    fn grant(delegate_id: &'a str, instance_id: &'a str, now: i64) => SELECT_GRANT;
    /// Returns a row if there was such a grant.
    fn delete_grant(delegate_id: &'a str, instance_id: &'a str) => DELETE_GRANT;
    /// The grants on an instance (instance deletion).
    fn delete_instance_grants(instance_id: &'a str) => DELETE_INSTANCE_GRANTS;
    /// One batch: a delegate with its secrets and grants.
    fn delete(delegate_id: &'a str) => [
        DELETE_GRANTS_OF, DELETE_SECRETS_OF, DELETE_DELEGATE,
    ];
    /// One batch: every delegate `user_id` created (account deletion).
    fn delete_for_user(user_id: &'a str) => [
        DELETE_USER_GRANTS, DELETE_USER_SECRETS, DELETE_USER_DELEGATES,
    ];
}

// --- D1 ---------------------------------------------------------------------

/// Records use of a secret, at most once a minute.
pub async fn touch_secret(db: &D1Database, row: &CredentialRow) -> Result<(), ApiError> {
    match super::use_worth_recording(row.last_used_at) {
        Some(now) => stmt::touch_secret(&row.secret_id, now).run(db).await,
        None => Ok(()),
    }
}

/// The live grant's permission on the instance, if any.
pub async fn grant(
    db: &D1Database,
    delegate_id: &str,
    instance_id: &str,
) -> Result<Option<Permission>, ApiError> {
    let row: Option<GrantRow> = stmt::grant(delegate_id, instance_id, super::now_seconds())
        .first(db)
        .await?;
    Ok(row.and_then(|g| Permission::parse_grantable(&g.permission)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};
    use crate::permission::Permission::{Read, Write};

    /// u1 (project p1 with instances i1, i2), u2, and `delegates` as
    /// `(id, creator)`, made at `NOW` and never expiring.
    fn world(delegates: &[(&str, &str)]) -> TestDb {
        let db = TestDb::with_users(&["u1", "u2"]);
        db.project("p1", "u1");
        db.instance("i1", "p1", "u1");
        db.instance("i2", "p1", "u1");
        for (id, creator) in delegates {
            delegate(&db, id, creator, NOW, None);
        }
        db
    }

    fn delegate(db: &TestDb, id: &str, user: &str, at: i64, expires: Option<i64>) {
        let row = NewDelegate {
            delegate_id: id,
            created_by_user_id: user,
            name: "agent",
            can_read: true,
            can_write: true,
            can_system: false,
            created_at: at,
            expires_at: expires,
        };
        db.run(&row.insert());
    }

    /// Secret `id` of `delegate` with hash `hash`, made at `at`.
    fn secret(db: &TestDb, id: &str, delegate: &str, hash: &str, name: Option<&str>, at: i64) {
        let row = NewSecret {
            secret_id: id,
            delegate_id: delegate,
            secret_hash: hash,
            name,
            created_at: at,
        };
        db.run(&row.insert());
    }

    #[test]
    fn delegates_are_listed_newest_first_and_only_for_their_creator() {
        let db = world(&[]);
        delegate(&db, "del_a", "u1", NOW - 10, None);
        delegate(&db, "del_b", "u1", NOW, Some(NOW + 100));
        delegate(&db, "del_c", "u2", NOW, None);
        let rows: Vec<DelegateRow> = db.all(&stmt::list_for_user("u1"));
        let ids: Vec<_> = rows.iter().map(|r| r.delegate_id.as_str()).collect();
        assert_eq!(ids, ["del_b", "del_a"]);
        assert_eq!(rows[0].expires_at, Some(NOW + 100));
        assert_eq!(
            (rows[0].can_read, rows[0].can_write, rows[0].can_system),
            (1, 1, 0)
        );
        assert!(db.returns_nothing(&stmt::owned("del_c", "u1")));
        assert!(db
            .first::<DelegateRow>(&stmt::owned("del_c", "u2"))
            .is_some());
    }

    #[test]
    fn credentials_match_live_secrets_only() {
        let db = world(&[("del_a", "u1"), ("del_b", "u1")]);
        secret(&db, "sec_1", "del_a", "h1", Some("ci"), NOW);
        secret(&db, "sec_2", "del_a", "h2", None, NOW + 1);
        let found: CredentialRow = db.first(&stmt::credential("del_a", "h1")).unwrap();
        assert_eq!(found.secret_id, "sec_1");
        assert_eq!(found.created_by_user_id, "u1");
        // The hash of another delegate's secret does not authenticate.
        assert!(db.returns_nothing(&stmt::credential("del_b", "h1")));
        assert!(db
            .first::<CredentialRow>(&stmt::credential_by_ids("del_a", "sec_2"))
            .is_some());

        let revoked: Option<crate::db::IdRow> =
            db.first(&stmt::revoke_secret("sec_1", "del_a", NOW + 5));
        assert!(revoked.is_some());
        assert!(db.returns_nothing(&stmt::credential("del_a", "h1")));
        assert!(db.returns_nothing(&stmt::credential_by_ids("del_a", "sec_1")));
        // Revoking again keeps the first time; another delegate's secret is not found.
        db.first::<crate::db::IdRow>(&stmt::revoke_secret("sec_1", "del_a", NOW + 50));
        let secrets: Vec<SecretRow> = db.all(&stmt::secrets("del_a"));
        assert_eq!(secrets[0].secret_id, "sec_2");
        assert_eq!(secrets[1].revoked_at, Some(NOW + 5));
        assert!(db.returns_nothing(&stmt::revoke_secret("sec_2", "del_b", NOW)));

        db.run(&stmt::touch_secret("sec_2", NOW + 9));
        let row: CredentialRow = db.first(&stmt::credential("del_a", "h2")).unwrap();
        assert_eq!(row.last_used_at, Some(NOW + 9));
    }

    #[test]
    fn grants_replace_expire_and_delete() {
        let db = world(&[("del_a", "u1")]);
        db.run(&stmt::upsert_grant("del_a", "i1", Write, "u1", NOW));
        db.run(&stmt::upsert_grant("del_a", "i2", Read, "u1", NOW + 1));
        db.run(&stmt::upsert_grant("del_a", "i1", Read, "u1", NOW + 2));
        let grants: Vec<GrantRow> = db.all(&stmt::grants("del_a"));
        let listed: Vec<_> = grants
            .iter()
            .map(|g| (g.instance_id.as_str(), g.permission.as_str()))
            .collect();
        assert_eq!(listed, [("i1", "read"), ("i2", "read")]);
        assert!(db
            .first::<GrantRow>(&stmt::grant("del_a", "i1", NOW))
            .is_some());
        db.conn
            .execute_batch("UPDATE delegate_grants SET expires_at = 5 WHERE instance_id = 'i2'")
            .unwrap();
        assert!(db.returns_nothing(&stmt::grant("del_a", "i2", NOW)));

        let gone: Option<crate::db::IdRow> = db.first(&stmt::delete_grant("del_a", "i1"));
        assert!(gone.is_some());
        assert!(db.returns_nothing(&stmt::delete_grant("del_a", "i1")));
        // A grant on a missing instance is refused by the foreign key.
        assert!(db
            .try_rows(&stmt::upsert_grant("del_a", "nope", Read, "u1", NOW))
            .is_err());
    }

    #[test]
    fn deletions_take_secrets_and_grants_with_them() {
        let db = world(&[("del_a", "u1"), ("del_b", "u1"), ("del_c", "u2")]);
        for d in ["del_a", "del_b", "del_c"] {
            secret(&db, &format!("sec_{d}"), d, &format!("h_{d}"), None, NOW);
            db.run(&stmt::upsert_grant(d, "i1", Read, "u1", NOW));
        }
        db.batch(&stmt::delete("del_a"));
        assert_eq!(
            db.column("SELECT delegate_id FROM delegates ORDER BY delegate_id"),
            ["del_b", "del_c"]
        );
        assert_eq!(db.count("delegate_secrets"), 2);
        assert_eq!(db.count("delegate_grants"), 2);

        db.run(&stmt::delete_instance_grants("i1"));
        assert_eq!(db.count("delegate_grants"), 0);

        db.batch(&stmt::delete_for_user("u1"));
        assert_eq!(
            db.column("SELECT delegate_id FROM delegates ORDER BY delegate_id"),
            ["del_c"]
        );
        assert_eq!(db.count("delegate_secrets"), 1);
    }

    #[test]
    fn the_foreign_keys_cascade() {
        let db = world(&[("del_a", "u1")]);
        secret(&db, "sec_1", "del_a", "h1", None, NOW);
        db.run(&stmt::upsert_grant("del_a", "i1", Read, "u1", NOW));
        db.conn
            .execute_batch("DELETE FROM instances WHERE id = 'i1'")
            .unwrap();
        assert_eq!(db.count("delegate_grants"), 0);
        db.conn
            .execute_batch("DELETE FROM users WHERE id = 'u1'")
            .unwrap();
        assert_eq!(db.count("delegates"), 0);
        assert_eq!(db.count("delegate_secrets"), 0);
    }
}
