//! Rows of the `projects` table, with the facts role resolution needs.

use serde::Deserialize;
use worker::D1Database;

use super::{run_batch_returning, share_facts, IdRow, Statement};
use crate::auth::roles::AccessFacts;
use crate::error::ApiError;
use crate::permission::Permission;

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Highest project share reaching the caller (1 read … 3 admin).
    pub project_level: Option<i64>,
    /// 1 when the caller reaches some instance of the project by a share.
    pub via_instance: i64,
}

impl ProjectRow {
    pub fn facts(&self, user_id: &str) -> AccessFacts {
        share_facts(self.owner_id == user_id, self.project_level, None)
    }

    /// The caller's role on the project. A caller reaching the project only
    /// through instance shares sees it as `read` (it can list just those
    /// instances; see docs/decisions.md).
    pub fn role(&self, user_id: &str) -> Option<Permission> {
        crate::auth::roles::project_role(&self.facts(user_id))
            .or((self.via_instance != 0).then_some(Permission::Read))
    }
}

// --- SQL --------------------------------------------------------------------

/// `ProjectRow` for the caller `$user` (a `?N`), up to the `WHERE` keyword.
macro_rules! select_project_rows {
    ($user:literal) => {
        concat!(
            "SELECT p.id, p.owner_id, p.name, p.description, p.created_at, p.updated_at, ",
            share_level!("project", "p.id", $user),
            " AS project_level, EXISTS (SELECT 1 FROM instances i WHERE i.project_id = p.id AND ",
            share_level!("instance", "i.id", $user),
            " IS NOT NULL) AS via_instance FROM projects p WHERE "
        )
    };
}

/// `?1` project id, `?2` caller.
pub const SELECT_PROJECT: &str = concat!(select_project_rows!("?2"), "p.id = ?1");

/// The condition of the projects of others that caller `?1` reaches by a
/// user or group share on the project or one of its instances (not by
/// public shares), on `projects p`.
macro_rules! shared_with_caller {
    () => {
        concat!(
            "p.owner_id <> ?1 AND p.id IN (",
            "SELECT s.resource_id FROM shares s WHERE s.resource_type = 'project' AND ",
            personal_share!("?1"),
            " UNION SELECT i.project_id FROM shares s JOIN instances i ON i.id = s.resource_id",
            " WHERE s.resource_type = 'instance' AND ",
            personal_share!("?1"),
            ")"
        )
    };
}

/// The order of every project list: newest `updated_at` first.
macro_rules! newest_first {
    () => {
        " ORDER BY updated_at DESC, created_at DESC"
    };
}

/// `?1` caller: the projects it owns or reaches by a user or group share on
/// the project or one of its instances (not by public shares), newest
/// `updated_at` first. Two arms: the caller's own projects, read from the
/// covering index `idx_projects_owner_listing` alone, in its order (an
/// owner's role needs no share facts, so none are looked up: those rows
/// carry `project_level` NULL and `via_instance` 0); then the projects of
/// others it reaches by a share, found from its shares.
pub const SELECT_VISIBLE: &str = concat!(
    "SELECT p.id, p.owner_id, p.name, p.description, p.created_at, p.updated_at, ",
    "NULL AS project_level, 0 AS via_instance FROM projects p WHERE p.owner_id = ?1",
    " UNION ALL ",
    select_project_rows!("?1"),
    shared_with_caller!(),
    newest_first!()
);

/// [`SELECT_VISIBLE`] as the whole `GET /api/projects` body, one JSON text
/// in the column `body`, for a caller whose role on each project is its
/// user's (`Principal::acts_as_user`): SQLite writes the list, so no row
/// crosses into the Worker (docs/performance.md). The role is
/// `ProjectRow::role` in SQL: owner; else the highest project share (3
/// admin, 2 write, 1 read); else `read` through an instance share; rows
/// without one are left out, as the row path's `filter_map` does. The
/// subquery's `ORDER BY` gives the array's order: SQLite does not flatten an
/// ordered subquery into an aggregate, and feeds it the rows in that order
/// (an `ORDER BY` inside `json_group_array` needs SQLite 3.44, which D1 is
/// not documented to have). A native test checks both paths give the same
/// list.
pub const SELECT_VISIBLE_JSON: &str = concat!(
    "SELECT json_object('projects', json_group_array(json_object(",
    "'id', id, 'name', name, 'description', description, ",
    "'created_at', created_at, 'updated_at', updated_at, 'role', role))) AS body FROM (",
    "SELECT p.id, p.name, p.description, p.created_at, p.updated_at, 'owner' AS role ",
    "FROM projects p WHERE p.owner_id = ?1",
    " UNION ALL ",
    "SELECT p.id, p.name, p.description, p.created_at, p.updated_at, CASE ",
    share_level!("project", "p.id", "?1"),
    " WHEN 3 THEN 'admin' WHEN 2 THEN 'write' WHEN 1 THEN 'read' ELSE CASE WHEN ",
    "EXISTS (SELECT 1 FROM instances i WHERE i.project_id = p.id AND ",
    share_level!("instance", "i.id", "?1"),
    " IS NOT NULL) THEN 'read' END END AS role FROM projects p WHERE ",
    shared_with_caller!(),
    newest_first!(),
    ") WHERE role IS NOT NULL"
);

/// Project creation, in batch order. `?1` project id, `?2` owner id,
/// `?3` name, `?4` description or NULL, `?5` now.
pub const INSERT_PROJECT: &str =
    "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?5)";
/// `?1` instance id, `?2` project id, `?3` owner id, `?4` now.
pub const INSERT_MAIN_INSTANCE: &str =
    "INSERT INTO instances (id, project_id, owner_id, name, is_readonly, created_at, updated_at)
     VALUES (?1, ?2, ?3, 'main', 0, ?4, ?4)";

/// `?1` project id, `?2` new name or NULL, `?3` 1 to keep the description
/// (else it becomes `?4`, NULL clearing it), `?5` now.
pub const UPDATE_PROJECT: &str = "UPDATE projects SET name = COALESCE(?2, name),
        description = CASE WHEN ?3 THEN description ELSE ?4 END,
        updated_at = ?5
  WHERE id = ?1";

/// `$column` names an instance of project `?1`.
macro_rules! instance_of_project {
    ($column:literal) => {
        concat!(
            $column,
            " IN (SELECT id FROM instances WHERE project_id = ?1)"
        )
    };
}

/// A condition on a row's `$type`/`$id` columns (a resource or a key
/// scope): they name project `?1` or one of its instances.
macro_rules! project_or_its_instances {
    ($type:literal, $id:literal) => {
        concat!(
            "(",
            $type,
            " = 'project' AND ",
            $id,
            " = ?1) OR (",
            $type,
            " = 'instance' AND ",
            instance_of_project!($id),
            ")"
        )
    };
}

/// `?1` project id.
pub const SELECT_INSTANCE_IDS: &str = "SELECT id FROM instances WHERE project_id = ?1";

/// Project deletion, in batch order; each takes `?1` project id.
pub const DELETE_PROJECT_SHARES: &str = concat!(
    "DELETE FROM shares WHERE ",
    project_or_its_instances!("resource_type", "resource_id")
);
pub const DELETE_PROJECT_TOKENS: &str = concat!(
    "DELETE FROM ws_tokens WHERE ",
    instance_of_project!("instance_id")
);
pub const DELETE_PROJECT_KEYS: &str = concat!(
    "DELETE FROM api_keys WHERE ",
    project_or_its_instances!("scope_type", "scope_id")
);
/// Returns the ids it deleted: an instance created while the project was
/// being deleted is among them, so its object can be destroyed too.
pub const DELETE_PROJECT_INSTANCES: &str =
    "DELETE FROM instances WHERE project_id = ?1 RETURNING id";
pub const DELETE_PROJECT: &str = "DELETE FROM projects WHERE id = ?1";

stmt_module! {
    /// One project with the caller's (`user_id`) share facts.
    fn get(project_id: &'a str, user_id: &'a str) => SELECT_PROJECT;
    /// Projects the caller owns or reaches by a user or group share (on
    /// the project or one of its instances), newest `updated_at` first.
    /// Public shares do not list a project in everyone's list; it stays
    /// reachable by id.
    fn list_visible(user_id: &'a str) => SELECT_VISIBLE;
    /// `list_visible` as the response body (`{"projects": [...]}`) with the
    /// user's roles.
    fn list_visible_json(user_id: &'a str) => SELECT_VISIBLE_JSON;
    /// `description`: `None` keeps it, `Some(None)` clears it.
    fn update(
        project_id: &'a str, name: Option<&'a str>, description: Option<Option<&'a str>>,
        now: i64,
    ) => UPDATE_PROJECT(project_id, name, description.is_none(), description.flatten(), now);
    /// Ids of the project's instances (to destroy their objects).
    fn instance_ids(project_id: &'a str) => SELECT_INSTANCE_IDS;
    fn insert_project(
        project_id: &'a str, owner_id: &'a str, name: &'a str, description: Option<&'a str>,
        now: i64,
    ) => INSERT_PROJECT;
    fn insert_main_instance(
        instance_id: &'a str, project_id: &'a str, owner_id: &'a str, now: i64,
    ) => INSERT_MAIN_INSTANCE;
    /// One batch: the project, its instances, every share on either, tokens
    /// and keys scoped to them. `DELETE_PROJECT_INSTANCES` (at
    /// [`DELETED_INSTANCES`]) returns the ids of the instances it deleted.
    fn delete(project_id: &'a str) => [
        DELETE_PROJECT_SHARES, DELETE_PROJECT_TOKENS, DELETE_PROJECT_KEYS,
        DELETE_PROJECT_INSTANCES, DELETE_PROJECT,
    ];

    /// One batch: the project and its `main` instance.
    pub fn create<'a>(
        project_id: &'a str,
        instance_id: &'a str,
        owner_id: &'a str,
        name: &'a str,
        description: Option<&'a str>,
        now: i64,
    ) -> Vec<Statement<'a>> {
        vec![
            insert_project(project_id, owner_id, name, description, now),
            insert_main_instance(instance_id, project_id, owner_id, now),
        ]
    }

    /// Where `delete` has `DELETE_PROJECT_INSTANCES`.
    pub const DELETED_INSTANCES: usize = 3;
}

// --- D1 ---------------------------------------------------------------------

/// Deletes the project's rows in one batch; the ids of the instances whose
/// rows it deleted (an instance created while the project was being deleted
/// is among them).
pub async fn delete(db: &D1Database, project_id: &str) -> Result<Vec<String>, ApiError> {
    let rows: Vec<IdRow> =
        run_batch_returning(db, &stmt::delete(project_id), stmt::DELETED_INSTANCES).await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};
    use crate::db::IdRow;
    use crate::permission::Permission::{Admin, Owner, Read, Write};

    fn role(db: &TestDb, project: &str, user: &str) -> Option<Permission> {
        let row: ProjectRow = db.first(&stmt::get(project, user))?;
        row.role(user)
    }

    fn visible(db: &TestDb, user: &str) -> Vec<(String, Option<Permission>)> {
        db.all::<ProjectRow>(&stmt::list_visible(user))
            .into_iter()
            .map(|r| {
                let role = r.role(user);
                (r.id, role)
            })
            .collect()
    }

    /// The list body as SQLite writes it (`list_visible_json`).
    fn visible_json(db: &TestDb, user: &str) -> serde_json::Value {
        #[derive(Deserialize)]
        struct Body {
            body: String,
        }
        let row: Body = db.first(&stmt::list_visible_json(user)).unwrap();
        serde_json::from_str(&row.body).unwrap()
    }

    /// The list body built from the rows (`list_visible` and
    /// `ProjectRow::role`), as the HTTP layer does for any caller.
    fn visible_from_rows(db: &TestDb, user: &str) -> serde_json::Value {
        let projects: Vec<_> = db
            .all::<ProjectRow>(&stmt::list_visible(user))
            .into_iter()
            .filter_map(|r| {
                let role = r.role(user)?;
                Some(serde_json::json!({
                    "id": r.id, "name": r.name, "description": r.description,
                    "created_at": r.created_at, "updated_at": r.updated_at,
                    "role": role.as_str(),
                }))
            })
            .collect();
        serde_json::json!({ "projects": projects })
    }

    fn seeded() -> TestDb {
        TestDb::with_users(&["alice", "bob", "carol", "dave", "erin", "frank"])
    }

    #[test]
    fn role_resolution() {
        let db = seeded();
        db.project("p", "alice");
        db.instance("x", "p", "alice");
        db.share("s1", "project:p", "user:bob", "admin", "alice");
        db.share("s2", "instance:x", "user:carol", "admin", "alice");
        db.group("g", "erin", &["dave"]);
        db.share("s3", "project:p", "group:g", "write", "alice");

        let cases = [
            ("alice", Some(Owner)),
            ("bob", Some(Admin)),  // project share
            ("carol", Some(Read)), // only an instance share: sees the project as read
            ("dave", Some(Write)), // group member
            ("erin", Some(Write)), // group owner
            ("frank", None),
        ];
        for (user, expected) in cases {
            assert_eq!(role(&db, "p", user), expected, "{user}");
        }
        let carol: ProjectRow = db.first(&stmt::get("p", "carol")).unwrap();
        assert_eq!((carol.project_level, carol.via_instance), (None, 1));
        let dave: ProjectRow = db.first(&stmt::get("p", "dave")).unwrap();
        assert_eq!((dave.project_level, dave.via_instance), (Some(2), 0));
        assert!(db.returns_nothing(&stmt::get("nope", "alice")));
    }

    #[test]
    fn public_shares_reach_by_id_but_do_not_list() {
        let db = seeded();
        db.project("p", "alice");
        db.project("q", "alice");
        db.share("pub-p", "project:p", "public", "read", "alice");
        db.share("pub-q", "instance:q-main", "public", "write", "alice");
        assert_eq!(role(&db, "p", "frank"), Some(Read));
        assert_eq!(role(&db, "q", "frank"), Some(Read)); // via a public instance
        assert_eq!(role(&db, "p", "ghost"), Some(Read)); // no users row needed
        assert!(visible(&db, "frank").is_empty());
    }

    #[test]
    fn list_visible_owned_and_shared_newest_update_first() {
        let db = seeded();
        db.group("g", "alice", &["bob"]);
        db.group("h", "bob", &[]);
        // Each project with the share through which it reaches (or not) bob.
        db.project("own", "bob");
        db.project("by-user", "alice");
        db.share("s1", "project:by-user", "user:bob", "write", "alice");
        db.project("by-group", "alice");
        db.share("s2", "project:by-group", "group:g", "read", "alice");
        db.project("by-owned-group", "carol");
        db.share("s3", "project:by-owned-group", "group:h", "admin", "carol");
        db.project("by-instance", "alice");
        db.share(
            "s4",
            "instance:by-instance-main",
            "user:bob",
            "read",
            "alice",
        );
        db.project("by-group-instance", "carol");
        db.share(
            "s5",
            "instance:by-group-instance-main",
            "group:g",
            "write",
            "carol",
        );
        db.project("unrelated", "alice");
        db.share("s7", "project:unrelated", "public", "admin", "alice");
        db.project("other-user", "alice");
        db.share("s6", "project:other-user", "user:carol", "admin", "alice");

        let expected = [
            ("by-group", Some(Read)),
            ("own", Some(Owner)),
            ("by-instance", Some(Read)),
            ("by-owned-group", Some(Admin)),
            ("by-user", Some(Write)),
            ("by-group-instance", Some(Read)),
        ];
        // Distinct update times give that order.
        for (i, (id, _)) in expected.iter().rev().enumerate() {
            db.run(&stmt::update(id, None, None, NOW + 10 + i as i64));
        }
        let expected: Vec<_> = expected
            .iter()
            .map(|(id, r)| (id.to_string(), *r))
            .collect();
        assert_eq!(visible(&db, "bob"), expected);
        assert!(visible(&db, "frank").is_empty());
        assert_eq!(visible(&db, "carol").len(), 3); // two owned, one shared

        // SQLite's own JSON of the list says the same, in the same order
        // (bob's is `expected` above), for every user, and an empty list
        // for one who sees nothing.
        for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            assert_eq!(
                visible_json(&db, user),
                visible_from_rows(&db, user),
                "{user}"
            );
        }
        assert_eq!(
            visible_json(&db, "frank"),
            serde_json::json!({ "projects": [] })
        );
    }

    #[test]
    fn the_json_list_keeps_text_and_nulls_as_they_are() {
        let db = seeded();
        let name = "quote \" back\\slash\nnewline \u{1} ctl é ✓ </script>";
        db.run(&stmt::insert_project("p", "alice", name, None, NOW));
        db.run(&stmt::insert_project(
            "q",
            "alice",
            "q",
            Some("d\"esc"),
            NOW + 1,
        ));
        let list = visible_json(&db, "alice");
        assert_eq!(list, visible_from_rows(&db, "alice"));
        assert_eq!(list["projects"][1]["name"], name);
        assert_eq!(list["projects"][1]["description"], serde_json::Value::Null);
        assert_eq!(list["projects"][0]["created_at"], NOW + 1);
    }

    #[test]
    fn many_projects_keep_their_order_in_the_json_list() {
        let db = seeded();
        // Updates out of creation order, some ties broken by created_at.
        for i in 0..60i64 {
            let id = format!("p{i:02}");
            db.run(&stmt::insert_project(&id, "alice", &id, None, NOW + i));
            db.run(&stmt::update(&id, None, None, NOW + (i * 37) % 50));
        }
        db.group("g", "bob", &["alice"]);
        for i in 0..20i64 {
            let id = format!("b{i:02}");
            db.run(&stmt::insert_project(&id, "bob", &id, None, NOW + i));
            db.run(&stmt::update(&id, None, None, NOW + (i * 13) % 30));
            db.share(
                &format!("s{i}"),
                &format!("project:{id}"),
                "group:g",
                "read",
                "bob",
            );
        }
        let list = visible_json(&db, "alice");
        assert_eq!(list["projects"].as_array().unwrap().len(), 80);
        let keys: Vec<(i64, i64)> = list["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["updated_at"].as_i64().unwrap(),
                    p["created_at"].as_i64().unwrap(),
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(keys, sorted);
    }

    #[test]
    fn own_projects_are_listed_from_the_covering_index_alone() {
        let db = seeded();
        let plan = db.query_plan(SELECT_VISIBLE);
        // The owner's arm is one index search, in the index's order (no
        // sort of its own), merged with the shared projects' arm.
        let owned = "SEARCH p USING COVERING INDEX idx_projects_owner_listing (owner_id=?)";
        assert_eq!(
            plan[..4],
            ["MERGE (UNION ALL)", "LEFT", owned, "RIGHT"],
            "{plan:#?}"
        );
        // Nothing is scanned, in either arm.
        assert!(plan.iter().all(|l| !l.starts_with("SCAN")), "{plan:#?}");

        // The same for the JSON list: its owner's arm too is the index
        // alone, and only the aggregate reads the ordered subquery.
        let plan = db.query_plan(SELECT_VISIBLE_JSON);
        assert!(plan.iter().any(|l| l.ends_with(owned)), "{plan:#?}");
        assert!(
            plan.iter()
                .all(|l| !l.starts_with("SCAN") || l.starts_with("SCAN (subquery")),
            "{plan:#?}"
        );
    }

    #[test]
    fn create_makes_the_project_and_its_main_instance_atomically() {
        let db = seeded();
        db.batch(&stmt::create("p", "p-main", "alice", "P", Some("d"), NOW));
        let row: ProjectRow = db.first(&stmt::get("p", "alice")).unwrap();
        assert_eq!(
            (
                row.name.as_str(),
                row.description.as_deref(),
                row.created_at,
                row.updated_at
            ),
            ("P", Some("d"), NOW, NOW)
        );
        let ids: Vec<IdRow> = db.all(&stmt::instance_ids("p"));
        assert_eq!(
            ids.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["p-main"]
        );
        assert_eq!(db.column("SELECT name FROM instances"), ["main"]);

        // A failing second statement (instance id taken) rolls back the first.
        assert!(db
            .try_batch(&stmt::create("p2", "p-main", "alice", "P2", None, NOW))
            .is_err());
        assert_eq!(db.ids("projects"), ["p"]);
        // The owner must exist (foreign key).
        assert!(db
            .try_batch(&stmt::create("p3", "p3-main", "ghost", "P3", None, NOW))
            .is_err());
        assert_eq!(db.ids("projects"), ["p"]);
    }

    #[test]
    fn update_keeps_sets_or_clears_the_description() {
        let db = seeded();
        db.batch(&stmt::create("p", "p-main", "alice", "P", Some("d"), NOW));
        let get = || db.first::<ProjectRow>(&stmt::get("p", "alice")).unwrap();

        db.run(&stmt::update("p", Some("P2"), None, NOW + 1));
        let row = get();
        assert_eq!(
            (row.name.as_str(), row.description.as_deref()),
            ("P2", Some("d"))
        );
        assert_eq!(row.updated_at, NOW + 1);

        db.run(&stmt::update("p", None, Some(Some("e")), NOW + 2));
        let row = get();
        assert_eq!(
            (row.name.as_str(), row.description.as_deref()),
            ("P2", Some("e"))
        );

        db.run(&stmt::update("p", None, Some(None), NOW + 3));
        let row = get();
        assert_eq!(
            (row.description.as_deref(), row.updated_at),
            (None, NOW + 3)
        );
    }

    #[test]
    fn delete_removes_instances_shares_tokens_and_scoped_keys() {
        let db = seeded();
        db.project("p", "alice");
        db.instance("x", "p", "alice");
        db.project("q", "alice");
        db.clone_of("c", "q", "alice", "x");
        db.group("g", "alice", &[]);
        // Go with p: on p and its instances, shares of every target kind.
        db.share("on-p", "project:p", "user:bob", "read", "alice");
        db.dependents_of("x");
        db.share("on-x-group", "instance:x", "group:g", "read", "alice");
        db.share("on-main", "instance:p-main", "public", "read", "alice");
        db.api_key("k-p", "bob", "project:p");
        db.api_key("k-x-alice", "alice", "instance:x");
        // Stay: on q (whose clone of x only loses its parent), the account.
        db.share("on-q", "project:q", "user:bob", "read", "alice");
        db.dependents_of("q-main");
        db.api_key("k-q", "bob", "project:q");
        db.api_key("k-acct", "bob", "account");

        let ids: Vec<IdRow> = db.all(&stmt::instance_ids("p"));
        let mut ids: Vec<String> = ids.into_iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, ["p-main", "x"]);

        let batch = stmt::delete("p");
        assert_eq!(batch[stmt::DELETED_INSTANCES].sql, DELETE_PROJECT_INSTANCES);
        db.batch(&batch);

        assert_eq!(db.ids("projects"), ["q"]);
        assert_eq!(db.ids("instances"), ["c", "q-main"]);
        assert_eq!(db.ids("shares"), ["on-q", "on-q-main"]);
        assert_eq!(db.column("SELECT token_hash FROM ws_tokens"), ["t-q-main"]);
        assert_eq!(db.ids("api_keys"), ["k-acct", "k-q", "k-q-main"]);
        assert_eq!(db.ids("webhooks"), ["w-q-main"]);
        assert_eq!(db.ids("groups"), ["g"]);
        assert_eq!(
            db.column("SELECT COALESCE(parent_instance_id, '-') FROM instances WHERE id = 'c'"),
            ["-"]
        );
        assert!(db.returns_nothing(&stmt::instance_ids("p")));
        db.batch(&stmt::delete("p")); // replay is harmless
        assert_eq!(db.ids("projects"), ["q"]);
    }
}
