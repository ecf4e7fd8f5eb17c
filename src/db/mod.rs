//! Typed D1 access: every SQL statement the Worker runs against D1 lives
//! under this module, as a named constant with `?N` placeholders (SQL text is
//! only ever assembled at compile time from constants, never from input).
//!
//! Each module pairs its constants with statement builders (`stmt::*`,
//! declared with [`statements!`]) that bind the parameters in order. Callers
//! run those [`Statement`]s on D1 (`stmt::get(..).first(&db)`); the native
//! unit tests run the very same ones on rusqlite with the migrations applied
//! (see `testing`), like the instance store does. A module keeps a D1
//! function only where there is more to do than run one statement.

// Shared SQL fragments. They are macros, not constants, so that every
// statement is a single `&'static str` built with `concat!`. Defined before
// the submodules so that these can use them.

/// The groups whose shares reach user `$user` (a `?N`): the groups it
/// belongs to and the groups it owns (docs/decisions.md).
macro_rules! groups_of_user {
    ($user:literal) => {
        concat!(
            "SELECT group_id FROM group_members WHERE user_id = ",
            $user,
            " UNION SELECT id FROM groups WHERE owner_id = ",
            $user
        )
    };
}

/// A condition on share `s`: it targets user `$user` itself or one of its
/// groups (public shares excluded).
macro_rules! personal_share {
    ($user:literal) => {
        concat!(
            "((s.target_type = 'user' AND s.target_id = ",
            $user,
            ") OR (s.target_type = 'group' AND s.target_id IN (",
            groups_of_user!($user),
            ")))"
        )
    };
}

/// `MAX(level)` (read 1, write 2, admin 3; NULL for none) of the shares on
/// resource `$kind`/`$id` that reach user `$user`: public shares, shares to
/// the user and shares to its groups. `$id` is an SQL expression.
macro_rules! share_level {
    ($kind:literal, $id:literal, $user:literal) => {
        concat!(
            "(SELECT MAX(CASE s.permission WHEN 'admin' THEN 3 WHEN 'write' THEN 2 ",
            "WHEN 'read' THEN 1 END) FROM shares s WHERE s.resource_type = '",
            $kind,
            "' AND s.resource_id = ",
            $id,
            " AND (s.target_type = 'public' OR ",
            personal_share!($user),
            "))"
        )
    };
}

/// A module's `pub mod stmt`: its statement builders ([`statements!`]
/// entries), which see everything of the module.
macro_rules! stmt_module {
    ($($entries:tt)*) => {
        /// The statements with their parameters bound in order.
        pub mod stmt {
            use super::*;

            statements! { $($entries)* }
        }
    };
}

/// Statement builders, one entry each (see [`stmt_module!`]):
///
/// - `fn name(params) => SQL;` binds the parameters in order as `?1..?N`;
/// - `fn name(params) => SQL(exprs);` binds those expressions instead;
/// - `fn name(params) => [SQL, …];` is a batch: each statement, in order,
///   with the same parameters;
/// - any other item (a batch of other builders, a constant) stays as written.
///
/// Each value becomes an [`Arg`] by `From`. Parameters borrow for `'a`, the
/// lifetime of the returned statements.
macro_rules! statements {
    () => {};
    ($(#[$attr:meta])* fn $name:ident($($param:ident: $ty:ty),* $(,)?)
        => [$($sql:ident),+ $(,)?]; $($rest:tt)*) => {
        $(#[$attr])*
        pub fn $name<'a>($($param: $ty),*) -> Vec<$crate::db::Statement<'a>> {
            let args = [$($crate::db::Arg::from($param)),*];
            $crate::db::Statement::each(&[$($sql),+], &args)
        }
        statements!($($rest)*);
    };
    ($(#[$attr:meta])* fn $name:ident($($param:ident: $ty:ty),* $(,)?)
        => $sql:ident($($arg:expr),* $(,)?); $($rest:tt)*) => {
        $(#[$attr])*
        pub fn $name<'a>($($param: $ty),*) -> $crate::db::Statement<'a> {
            $crate::db::Statement::new($sql, [$($crate::db::Arg::from($arg)),*])
        }
        statements!($($rest)*);
    };
    ($(#[$attr:meta])* fn $name:ident($($param:ident: $ty:ty),* $(,)?)
        => $sql:ident; $($rest:tt)*) => {
        statements!($(#[$attr])* fn $name($($param: $ty),*) => $sql($($param),*); $($rest)*);
    };
    // Last, and safe: the arms above give up on an item's `pub` at a plain
    // token, before parsing anything as an entry.
    ($item:item $($rest:tt)*) => {
        $item
        statements!($($rest)*);
    };
}

/// A new row's values and its insert statement, each column named once:
/// `NewX => SQL { field: Type, … }` declares `pub struct NewX<'a>` whose
/// fields (`Copy` values: ids, flags, times) bind, in order, as `?1..?N`
/// of `SQL` (`NewX { … }.insert()`).
macro_rules! new_row {
    ($(#[$attr:meta])* $name:ident => $sql:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$attr])*
        pub struct $name<'a> {
            $(pub $field: $ty),+
        }

        impl<'a> $name<'a> {
            pub fn insert(&self) -> $crate::db::Statement<'a> {
                $crate::db::Statement::new($sql, [$($crate::db::Arg::from(self.$field)),+])
            }
        }
    };
}

pub mod api_keys;
pub mod delegates;
pub mod groups;
pub mod instances;
pub mod projects;
pub mod reach;
pub mod received_webhooks;
pub mod shares;
pub mod usage;
pub mod users;
pub mod webhooks;
pub mod ws_tokens;

#[cfg(test)]
pub mod testing;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

use crate::auth::roles::AccessFacts;
use crate::error::ApiError;
use crate::permission::Permission;

pub fn database(env: &Env) -> Result<D1Database, ApiError> {
    Ok(env.d1("DB")?)
}

/// Unix seconds, the unit of every D1 timestamp.
pub fn now_seconds() -> i64 {
    now_millis() / 1000
}

/// Unix milliseconds (the read-only flag's version).
pub fn now_millis() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// `Some(now)` when a credential last used at `last_used_at` should record
/// this use: at most once a minute, as a write per request would cost more
/// than the information is worth.
pub fn use_worth_recording(last_used_at: Option<i64>) -> Option<i64> {
    let now = now_seconds();
    last_used_at.is_none_or(|t| now - t >= 60).then_some(now)
}

/// Share levels are compared in SQL as numbers: read 1, write 2, admin 3.
pub fn level_to_permission(level: Option<i64>) -> Option<Permission> {
    match level? {
        1 => Some(Permission::Read),
        2 => Some(Permission::Write),
        l if l >= 3 => Some(Permission::Admin),
        _ => None,
    }
}

/// What role resolution needs from a row's share levels: the highest
/// project and instance shares reaching the caller (ignored when `None`).
pub fn share_facts(
    owns_project: bool,
    project_level: Option<i64>,
    instance_level: Option<i64>,
) -> AccessFacts {
    AccessFacts {
        owns_project,
        project_shares: level_to_permission(project_level).into_iter().collect(),
        instance_shares: level_to_permission(instance_level).into_iter().collect(),
    }
}

/// The share-level fragment with the user as `?2`, for `{kind}`/`{id}`.
const SHARE_LEVEL_TEMPLATE: &str = share_level!("{kind}", "{id}", "?2");

/// `MAX(level)` of the shares on one resource that reach user `?2`:
/// public shares, shares to the user, and shares to a group the user
/// belongs to or owns. `{kind}` and `{id}` are SQL expressions (constants).
///
/// The statements of this module embed the same fragment at compile time
/// (`share_level!`); this stays for callers that assemble their own SQL.
pub fn share_level_sql(kind: &str, id: &str) -> String {
    SHARE_LEVEL_TEMPLATE
        .replace("{kind}", kind)
        .replace("{id}", id)
}

/// A row of a `SELECT id …`.
#[derive(Debug, Clone, Deserialize)]
pub struct IdRow {
    pub id: String,
}

/// One bound parameter; the n-th of a statement's list is its `?n`. The
/// object's SQLite binds the same type.
pub use crate::instance::store::SqlArg as Arg;

/// An SQL constant with its parameters in `?1..?N` order: what a D1
/// function runs, and what the native tests run on SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    pub sql: &'static str,
    pub args: Vec<Arg<'a>>,
}

impl<'a> Statement<'a> {
    pub fn new(sql: &'static str, args: impl Into<Vec<Arg<'a>>>) -> Self {
        Statement {
            sql,
            args: args.into(),
        }
    }

    /// One statement per SQL constant, each with the same parameters: a
    /// batch that deletes a row and what hangs on it, in order.
    pub fn each(sqls: &[&'static str], args: &[Arg<'a>]) -> Vec<Self> {
        sqls.iter().map(|&sql| Statement::new(sql, args)).collect()
    }

    pub fn prepare(&self, db: &D1Database) -> Result<D1PreparedStatement, ApiError> {
        let args: Vec<JsValue> = self.args.iter().map(|a| a.to_js()).collect();
        Ok(db.prepare(self.sql).bind(&args)?)
    }

    /// The first row, if any.
    pub async fn first<T: DeserializeOwned>(&self, db: &D1Database) -> Result<Option<T>, ApiError> {
        Ok(self.prepare(db)?.first(None).await?)
    }

    /// The `body` column of its one row: a statement that writes its own
    /// JSON answer (`json_object`, `json_group_array`), so that no row has
    /// to cross into the Worker field by field.
    pub async fn json_body(&self, db: &D1Database) -> Result<String, ApiError> {
        self.prepare(db)?
            .first::<String>(Some("body"))
            .await?
            .ok_or_else(|| ApiError::internal("a JSON statement returned no row"))
    }

    /// Every row.
    pub async fn all<T: DeserializeOwned>(&self, db: &D1Database) -> Result<Vec<T>, ApiError> {
        Ok(self.prepare(db)?.all().await?.results()?)
    }

    /// Runs it for its effect.
    pub async fn run(&self, db: &D1Database) -> Result<(), ApiError> {
        self.prepare(db)?.run().await?;
        Ok(())
    }

    /// Whether it returned a row: for a `… RETURNING` statement, whether it
    /// changed one.
    pub async fn found(&self, db: &D1Database) -> Result<bool, ApiError> {
        Ok(self.first::<serde_json::Value>(db).await?.is_some())
    }

    /// The `id` column of every row.
    pub async fn ids(&self, db: &D1Database) -> Result<Vec<String>, ApiError> {
        let rows: Vec<IdRow> = self.all(db).await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

/// Runs the statements in order as one D1 batch (one transaction: all or
/// nothing).
pub async fn run_batch(db: &D1Database, statements: &[Statement<'_>]) -> Result<(), ApiError> {
    batch(db, statements).await.map(|_| ())
}

async fn batch(
    db: &D1Database,
    statements: &[Statement<'_>],
) -> Result<Vec<worker::D1Result>, ApiError> {
    let prepared = statements
        .iter()
        .map(|s| s.prepare(db))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(db.batch(prepared).await?)
}

/// Runs a batch like [`run_batch`]; the rows statement `index` returned.
pub async fn run_batch_returning<T: DeserializeOwned>(
    db: &D1Database,
    statements: &[Statement<'_>],
    index: usize,
) -> Result<Vec<T>, ApiError> {
    let results = batch(db, statements).await?;
    match results.get(index) {
        Some(result) => Ok(result.results()?),
        None => Err(ApiError::internal(
            "a batch answered fewer results than statements",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestDb;
    use super::*;

    /// Every SQL constant, so each is at least compiled against the schema.
    const ALL_SQL: &[&str] = &[
        api_keys::SELECT_BY_HASH,
        api_keys::SELECT_BY_ID,
        api_keys::UPDATE_LAST_USED,
        api_keys::SELECT_FOR_USER,
        api_keys::INSERT_KEY,
        api_keys::DELETE_OWNED,
        delegates::INSERT_DELEGATE,
        delegates::SELECT_FOR_USER,
        delegates::SELECT_OWNED,
        delegates::DELETE_GRANTS_OF,
        delegates::DELETE_SECRETS_OF,
        delegates::DELETE_DELEGATE,
        delegates::INSERT_SECRET,
        delegates::SELECT_SECRETS,
        delegates::REVOKE_SECRET,
        delegates::SELECT_CREDENTIAL,
        delegates::SELECT_CREDENTIAL_BY_IDS,
        delegates::TOUCH_SECRET,
        delegates::UPSERT_GRANT,
        delegates::SELECT_GRANTS,
        delegates::SELECT_GRANT,
        delegates::DELETE_GRANT,
        delegates::DELETE_USER_GRANTS,
        delegates::DELETE_USER_SECRETS,
        delegates::DELETE_USER_DELEGATES,
        delegates::DELETE_INSTANCE_GRANTS,
        groups::SELECT_FOR_USER,
        groups::INSERT_GROUP,
        groups::SELECT_GROUP,
        groups::SELECT_MEMBERS,
        groups::DELETE_SHARES_TO_GROUP,
        groups::DELETE_GROUP_MEMBERS,
        groups::DELETE_GROUP,
        groups::INSERT_MEMBER,
        groups::DELETE_MEMBER,
        instances::SELECT_INSTANCE,
        instances::SELECT_FOR_PROJECT,
        instances::INSERT_INSTANCE,
        instances::UPDATE_INSTANCE,
        instances::DELETE_INSTANCE_SHARES,
        instances::DELETE_INSTANCE_TOKENS,
        instances::DELETE_INSTANCE_KEYS,
        instances::DELETE_INSTANCE,
        instances::SELECT_READ_ONLY,
        projects::SELECT_PROJECT,
        projects::SELECT_VISIBLE,
        projects::SELECT_VISIBLE_JSON,
        projects::INSERT_PROJECT,
        projects::INSERT_MAIN_INSTANCE,
        projects::UPDATE_PROJECT,
        projects::SELECT_INSTANCE_IDS,
        projects::DELETE_PROJECT_SHARES,
        projects::DELETE_PROJECT_TOKENS,
        projects::DELETE_PROJECT_KEYS,
        projects::DELETE_PROJECT_INSTANCES,
        projects::DELETE_PROJECT,
        reach::RECORD_USE,
        reach::SELECT_USED_INSTANCES,
        reach::DELETE_USES,
        reach::DELETE_USER_USES,
        reach::SELECT_USERS_SHARED_INSTANCES,
        reach::SELECT_GROUP_INSTANCES,
        reach::SELECT_USER_INSTANCES,
        received_webhooks::DELETE_EXPIRED,
        received_webhooks::INSERT_IF_NEW,
        received_webhooks::DELETE_DELIVERY,
        shares::SELECT_FOR_RESOURCE,
        shares::SELECT_SHARE,
        shares::SELECT_EXISTING,
        shares::UPDATE_PERMISSION,
        shares::INSERT_SHARE,
        shares::DELETE_SHARE,
        usage::INSERT_USAGE,
        usage::INSERT_METERED,
        usage::SELECT_BY_DAY,
        usage::SELECT_BY_ENDPOINT,
        usage::SELECT_BY_INSTANCE,
        usage::ADD_TOKENS,
        webhooks::SELECT_WEBHOOK,
        webhooks::SELECT_FOR_INSTANCE,
        webhooks::INSERT_CAPPED,
        webhooks::UPDATE_WEBHOOK,
        webhooks::DELETE_WEBHOOK,
        webhooks::RECORD_RESULT,
        webhooks::DEACTIVATE,
        users::INSERT_IF_MISSING,
        users::SELECT_USER,
        users::SELECT_BY_EMAIL,
        users::UPSERT_USER,
        users::SELECT_OWNED_INSTANCE_IDS,
        users::DELETE_SHARES_ON_OWNED,
        users::DELETE_SHARES_TO_OWNED_GROUPS,
        users::DELETE_SHARES_TO_AND_BY_USER,
        users::DELETE_TOKENS,
        users::DELETE_KEYS,
        users::DELETE_MEMBERSHIPS,
        users::DELETE_OWNED_GROUPS,
        users::DELETE_OWNED_INSTANCES,
        users::DELETE_OWNED_PROJECTS,
        users::DELETE_USER,
        ws_tokens::DELETE_EXPIRED,
        ws_tokens::INSERT_TOKEN,
        ws_tokens::TAKE_TOKEN,
        ws_tokens::PEEK_TOKEN,
    ];

    #[test]
    fn every_statement_compiles_and_uses_each_parameter() {
        let db = TestDb::new();
        for sql in ALL_SQL {
            let stmt = db
                .conn
                .prepare(sql)
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
            for i in 1..=stmt.parameter_count() {
                assert!(stmt.parameter_name(i).is_some(), "?{i} unused in: {sql}");
            }
            assert!(!sql.contains("?1 = ?1"), "placeholder trick in: {sql}");
        }
    }

    /// storage.md: what runs on every request (API key lookup, role
    /// resolution, token use) finds its rows by index, never by a scan.
    #[test]
    fn per_request_statements_use_indexes() {
        let db = TestDb::new();
        for sql in [
            api_keys::SELECT_BY_HASH,
            api_keys::SELECT_BY_ID,
            api_keys::UPDATE_LAST_USED,
            instances::SELECT_INSTANCE,
            instances::SELECT_READ_ONLY,
            projects::SELECT_PROJECT,
            ws_tokens::TAKE_TOKEN,
            received_webhooks::DELETE_EXPIRED,
            received_webhooks::INSERT_IF_NEW,
        ] {
            let plan = db.query_plan(sql);
            assert!(
                plan.iter().all(|line| !line.starts_with("SCAN")),
                "{plan:#?}\n{sql}"
            );
        }
    }

    #[test]
    fn share_level_sql_is_the_fragment_the_statements_embed() {
        assert!(instances::SELECT_INSTANCE.contains(&share_level_sql("project", "i.project_id")));
        assert!(instances::SELECT_INSTANCE.contains(&share_level_sql("instance", "i.id")));
        assert!(projects::SELECT_PROJECT.contains(&share_level_sql("project", "p.id")));
        assert!(!share_level_sql("project", "p.id").contains('{'));
    }

    #[test]
    fn levels_map_to_permissions() {
        assert_eq!(level_to_permission(None), None);
        assert_eq!(level_to_permission(Some(0)), None);
        assert_eq!(level_to_permission(Some(1)), Some(Permission::Read));
        assert_eq!(level_to_permission(Some(2)), Some(Permission::Write));
        assert_eq!(level_to_permission(Some(3)), Some(Permission::Admin));
    }
}
