//! Rows of the `webhooks` table (webhooks-out.md): the configuration the
//! Worker pushes to each instance's object, and the last result the
//! object reports back.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookRow {
    pub id: String,
    pub instance_id: String,
    pub user_id: String,
    pub url: String,
    /// JSON array of event names.
    pub events: String,
    pub key_prefix: Option<String>,
    pub secret: Option<String>,
    pub is_active: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_triggered_at: Option<i64>,
    pub last_status: Option<i64>,
}

impl WebhookRow {
    pub fn active(&self) -> bool {
        self.is_active != 0
    }

    pub fn event_list(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }
}

// --- SQL --------------------------------------------------------------------

macro_rules! select_webhooks {
    () => {
        "SELECT id, instance_id, user_id, url, events, key_prefix, secret, is_active, created_at,
                updated_at, last_triggered_at, last_status FROM webhooks WHERE "
    };
}

/// `?1` webhook id.
pub const SELECT_WEBHOOK: &str = concat!(select_webhooks!(), "id = ?1");

/// `?1` instance id; oldest first.
pub const SELECT_FOR_INSTANCE: &str = concat!(
    select_webhooks!(),
    "instance_id = ?1 ORDER BY created_at, rowid"
);

/// `?1` id, `?2` instance, `?3` user, `?4` url, `?5` events JSON, `?6` key
/// prefix, `?7` secret, `?8` now, `?9` the most webhooks an instance may
/// have: inserts only below that (one statement, so two concurrent creates
/// cannot both pass a count); returns the id when it inserted.
pub const INSERT_CAPPED: &str =
    "INSERT INTO webhooks (id, instance_id, user_id, url, events, key_prefix, secret, is_active,
                           created_at, updated_at)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8
     WHERE (SELECT COUNT(*) FROM webhooks WHERE instance_id = ?2) < ?9
     RETURNING id";

/// `?1` id, `?2` url, `?3` events JSON, `?4` key prefix, `?5` active, `?6` now.
pub const UPDATE_WEBHOOK: &str = "UPDATE webhooks SET url = ?2, events = ?3, key_prefix = ?4,
     is_active = ?5, updated_at = ?6 WHERE id = ?1";

/// `?1` id; returns the id if it deleted.
pub const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = ?1 RETURNING id";

/// `?1` id, `?2` when (Unix s), `?3` HTTP status or NULL (no answer).
pub const RECORD_RESULT: &str =
    "UPDATE webhooks SET last_triggered_at = ?2, last_status = ?3 WHERE id = ?1";

/// `?1` id, `?2` now: the object gave up on it (too many failures).
pub const DEACTIVATE: &str = "UPDATE webhooks SET is_active = 0, updated_at = ?2 WHERE id = ?1";

stmt_module! {
    fn get(id: &'a str) => SELECT_WEBHOOK;
    fn list_for_instance(instance_id: &'a str) => SELECT_FOR_INSTANCE;
    #[allow(clippy::too_many_arguments)]
    fn insert_capped(
        id: &'a str, instance_id: &'a str, user_id: &'a str, url: &'a str,
        events_json: &'a str, key_prefix: Option<&'a str>, secret: &'a str, now: i64,
        cap: i64,
    ) => INSERT_CAPPED;
    fn update(
        id: &'a str, url: &'a str, events_json: &'a str, key_prefix: Option<&'a str>,
        active: bool, now: i64,
    ) => UPDATE_WEBHOOK;
    fn delete(id: &'a str) => DELETE_WEBHOOK;
    fn record_result(id: &'a str, at: i64, status: Option<i64>) => RECORD_RESULT;
    fn deactivate(id: &'a str, now: i64) => DEACTIVATE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};
    use crate::db::IdRow;

    fn db_with_instance() -> TestDb {
        let db = TestDb::with_users(&["alice"]);
        db.conn
            .execute_batch(&format!(
                "INSERT INTO projects (id, owner_id, name, created_at, updated_at)
                   VALUES ('p', 'alice', 'P', {NOW}, {NOW});
                 INSERT INTO instances (id, project_id, owner_id, name, created_at, updated_at)
                   VALUES ('i', 'p', 'alice', 'I', {NOW}, {NOW});"
            ))
            .unwrap();
        db
    }

    #[test]
    fn insert_stops_at_the_cap() {
        let db = db_with_instance();
        for n in 0..3 {
            let id = format!("w{n}");
            let inserted: Vec<IdRow> = db.all(&stmt::insert_capped(
                &id,
                "i",
                "alice",
                "https://e.com",
                "[]",
                None,
                "whsec_x",
                NOW,
                2,
            ));
            assert_eq!(inserted.len(), usize::from(n < 2), "webhook {n}");
        }
        let rows: Vec<WebhookRow> = db.all(&stmt::list_for_instance("i"));
        assert_eq!(rows.len(), 2);
        assert!(rows[0].active());
        assert_eq!(rows[0].secret.as_deref(), Some("whsec_x"));
    }

    #[test]
    fn update_record_deactivate_delete() {
        let db = db_with_instance();
        db.run(&stmt::insert_capped(
            "w",
            "i",
            "alice",
            "https://e.com",
            "[\"key.updated\"]",
            Some("a/"),
            "s",
            NOW,
            10,
        ));
        db.run(&stmt::update(
            "w",
            "https://f.com",
            "[\"key.deleted\"]",
            None,
            true,
            NOW + 1,
        ));
        db.run(&stmt::record_result("w", NOW + 2, Some(500)));
        let row: WebhookRow = db.first(&stmt::get("w")).unwrap();
        assert_eq!(row.url, "https://f.com");
        assert_eq!(row.event_list(), ["key.deleted"]);
        assert_eq!(row.key_prefix, None);
        assert_eq!(
            (row.last_triggered_at, row.last_status),
            (Some(NOW + 2), Some(500))
        );
        db.run(&stmt::deactivate("w", NOW + 3));
        assert!(!db.first::<WebhookRow>(&stmt::get("w")).unwrap().active());
        assert_eq!(db.all::<IdRow>(&stmt::delete("w")).len(), 1);
        assert!(db.first::<WebhookRow>(&stmt::get("w")).is_none());
    }
}
