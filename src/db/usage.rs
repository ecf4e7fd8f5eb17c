//! `usage_logs`: one row per metered API call.

/// `?1` user id, `?2` API key id or NULL, `?3` endpoint, `?4` instance id or
/// NULL, `?5` now.
pub const INSERT_USAGE: &str =
    "INSERT INTO usage_logs (user_id, api_key_id, endpoint, instance_id, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// The statements with their parameters bound in order.
pub mod stmt {
    use super::*;

    statements! {
        fn record(
            user_id: &'a str, api_key_id: Option<&'a str>, endpoint: &'a str,
            instance_id: Option<&'a str>, now: i64,
        ) => INSERT_USAGE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    #[test]
    fn record_appends_a_row() {
        let db = TestDb::new();
        db.run(&stmt::record(
            "alice",
            Some("k1"),
            "/api/ai/x",
            Some("i1"),
            NOW,
        ));
        db.run(&stmt::record("alice", None, "/api/ai/y", None, NOW));
        assert_eq!(
            db.column(
                "SELECT user_id || ',' || COALESCE(api_key_id, '-') || ',' || endpoint || ','
                        || COALESCE(instance_id, '-') || ',' || created_at FROM usage_logs ORDER BY id"
            ),
            [
                format!("alice,k1,/api/ai/x,i1,{NOW}"),
                format!("alice,-,/api/ai/y,-,{NOW}")
            ]
        );
    }
}
