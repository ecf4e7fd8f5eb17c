//! Which instances a change of access may touch (protocol.md §8): the
//! objects the Worker asks to re-evaluate their sockets after a key, a
//! group or a user is deleted or loses a share. Each query returns instance
//! ids only.

// --- SQL --------------------------------------------------------------------

/// `?1` API key or delegate id, `?2` instance id, `?3` now: the credential
/// opened a socket there.
pub const RECORD_USE: &str =
    "INSERT INTO credential_instances (credential_id, instance_id, first_used_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (credential_id, instance_id) DO NOTHING";

/// `?1` API key or delegate id: the instances it opened sockets on.
pub const SELECT_USED_INSTANCES: &str =
    "SELECT instance_id AS id FROM credential_instances WHERE credential_id = ?1";

/// `?1` API key or delegate id: forgets where it was used (it is gone).
pub const DELETE_USES: &str = "DELETE FROM credential_instances WHERE credential_id = ?1";

/// `?1` user id: forgets where the user's keys and delegates were used
/// (the user is being deleted).
pub const DELETE_USER_USES: &str = "DELETE FROM credential_instances WHERE credential_id = ?1
      OR credential_id IN (SELECT id FROM api_keys WHERE user_id = ?1
                           UNION SELECT delegate_id FROM delegates WHERE created_by_user_id = ?1)";

/// `?1` user id: the instances reached by shares the user made (on others'
/// resources too) and by shares to the groups it owns: deleting the user
/// deletes those shares, so other users' sockets there are re-evaluated.
pub const SELECT_USERS_SHARED_INSTANCES: &str =
    "SELECT s.resource_id AS id FROM shares s WHERE s.resource_type = 'instance'
        AND (s.created_by = ?1 OR (s.target_type = 'group'
             AND s.target_id IN (SELECT id FROM groups WHERE owner_id = ?1)))
     UNION
     SELECT i.id FROM shares s JOIN instances i ON i.project_id = s.resource_id
      WHERE s.resource_type = 'project'
        AND (s.created_by = ?1 OR (s.target_type = 'group'
             AND s.target_id IN (SELECT id FROM groups WHERE owner_id = ?1)))";

/// `?1` group id: the instances its shares reach (instance shares, and every
/// instance of a shared project).
pub const SELECT_GROUP_INSTANCES: &str = "SELECT s.resource_id AS id FROM shares s
      WHERE s.target_type = 'group' AND s.target_id = ?1 AND s.resource_type = 'instance'
     UNION
     SELECT i.id FROM shares s JOIN instances i ON i.project_id = s.resource_id
      WHERE s.target_type = 'group' AND s.target_id = ?1 AND s.resource_type = 'project'";

/// `?1` user id: instances shared with the user itself or a group it is in
/// or owns, and instances its API keys opened sockets on.
pub const SELECT_USER_INSTANCES: &str = concat!(
    "SELECT s.resource_id AS id FROM shares s WHERE s.resource_type = 'instance' AND ",
    personal_share!("?1"),
    " UNION SELECT i.id FROM shares s JOIN instances i ON i.project_id = s.resource_id",
    " WHERE s.resource_type = 'project' AND ",
    personal_share!("?1"),
    " UNION SELECT instance_id FROM credential_instances WHERE credential_id = ?1",
    " UNION SELECT u.instance_id FROM credential_instances u JOIN api_keys k ON k.id = u.credential_id",
    " WHERE k.user_id = ?1",
    " UNION SELECT u.instance_id FROM credential_instances u",
    " JOIN delegates d ON d.delegate_id = u.credential_id WHERE d.created_by_user_id = ?1"
);

// The queries return `IdRow`s (`Statement::ids`).
stmt_module! {
    /// An API key or delegate opened a socket on an instance (recorded
    /// once per pair).
    fn record_use(credential: &'a str, instance_id: &'a str, now: i64) => RECORD_USE;
    /// The instances an API key or delegate opened sockets on.
    fn used_instances(credential: &'a str) => SELECT_USED_INSTANCES;
    /// Forgets where a deleted credential was used.
    fn forget_uses(credential: &'a str) => DELETE_USES;
    /// Forgets where the keys and delegates of a user being deleted were used.
    fn forget_user_uses(user_id: &'a str) => DELETE_USER_USES;
    fn group_instances(group_id: &'a str) => SELECT_GROUP_INSTANCES;
    fn user_instances(user_id: &'a str) => SELECT_USER_INSTANCES;
    /// What deleting a user takes from others (shares it made, shares
    /// to its groups).
    fn users_shared_instances(user_id: &'a str) => SELECT_USERS_SHARED_INSTANCES;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};
    use crate::db::{IdRow, Statement};

    fn ids_of(db: &TestDb, st: &Statement<'_>) -> Vec<String> {
        let mut ids: Vec<String> = db.all::<IdRow>(st).into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    }

    /// alice owns project p (p-main, p-2) and q (q-main); bob is in group g
    /// (owned by carol) and has a share of his own.
    fn world() -> TestDb {
        let db = TestDb::with_users(&["alice", "bob", "carol"]);
        db.project("p", "alice"); // with its instance p-main
        db.instance("p-2", "p", "alice");
        db.project("q", "alice"); // with q-main
        db.group("g", "carol", &["bob"]);
        db
    }

    #[test]
    fn a_groups_reach_covers_instance_and_project_shares() {
        let db = world();
        db.share("s1", "project:p", "group:g", "read", "alice");
        db.share("s2", "instance:q-main", "group:g", "write", "alice");
        db.share("s3", "instance:q-main", "user:bob", "write", "alice");
        assert_eq!(
            ids_of(&db, &stmt::group_instances("g")),
            ["p-2", "p-main", "q-main"]
        );
        assert!(ids_of(&db, &stmt::group_instances("other")).is_empty());
    }

    #[test]
    fn a_users_reach_covers_its_shares_groups_and_keys() {
        let db = world();
        let reach = |user| ids_of(&db, &stmt::user_instances(user));
        let used = |id| ids_of(&db, &stmt::used_instances(id));
        let shared = |user| ids_of(&db, &stmt::users_shared_instances(user));
        db.share("s1", "project:p", "group:g", "read", "alice");
        assert_eq!(reach("bob"), ["p-2", "p-main"]);
        db.share("s2", "instance:q-main", "user:bob", "write", "alice");
        assert_eq!(reach("bob"), ["p-2", "p-main", "q-main"]);
        // The group's owner is reached through it too; public shares are not
        // anyone's in particular.
        assert_eq!(reach("carol"), ["p-2", "p-main"]);
        db.share("pub", "instance:q-main", "public", "read", "alice");
        assert!(reach("alice").is_empty());
        // A key of alice's that connected to a public instance of someone else.
        db.api_key("k1", "alice", "account");
        db.run(&stmt::record_use("k1", "q-main", NOW));
        db.run(&stmt::record_use("k1", "q-main", NOW + 1));
        assert_eq!(used("k1"), ["q-main"]);
        assert_eq!(reach("alice"), ["q-main"]);
        // And a delegate of bob's that connected to p-2.
        db.conn
            .execute(
                "INSERT INTO delegates (delegate_id, created_by_user_id, name, created_at) VALUES ('del_b', 'bob', 'd', 0)",
                [],
            )
            .unwrap();
        db.run(&stmt::record_use("del_b", "p-2", NOW));
        assert_eq!(reach("bob"), ["p-2", "p-main", "q-main"]);
        db.run(&stmt::forget_uses("k1"));
        assert!(used("k1").is_empty());
        // Alice's own socket on a public instance, as a signed-in user.
        db.run(&stmt::record_use("alice", "p-2", NOW));
        assert_eq!(reach("alice"), ["p-2"]);
        // What deleting alice takes from others: the shares she made.
        assert_eq!(shared("alice"), ["p-2", "p-main", "q-main"]);
        // And what deleting carol takes: the shares to the group she owns.
        assert_eq!(shared("carol"), ["p-2", "p-main"]);
        db.run(&stmt::forget_user_uses("bob"));
        assert!(used("del_b").is_empty());
    }
}
