//! `usage_logs`: one row per metered API call.

/// `?1` user id, `?2` API key id or NULL, `?3` endpoint, `?4` instance id or
/// NULL, `?5` now.
pub const INSERT_USAGE: &str =
    "INSERT INTO usage_logs (user_id, api_key_id, endpoint, instance_id, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// A metered call with what the upstream reported: `?1` user id (the user
/// acted for), `?2` API key id, `?3` delegate id, `?4` endpoint, `?5`
/// instance id, `?6` model, `?7` tokens in, `?8` tokens out (NULL where
/// unknown), `?9` now. Returns the row id, so tokens reported later (a
/// streamed chat) can be added to it.
pub const INSERT_METERED: &str =
    "INSERT INTO usage_logs (user_id, api_key_id, delegate_id, endpoint, instance_id, model,
                             tokens_in, tokens_out, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id";

/// `?1` row id, `?2` tokens in, `?3` tokens out, added to what it has.
pub const ADD_TOKENS: &str = "UPDATE usage_logs SET tokens_in = COALESCE(tokens_in, 0) + ?2,
     tokens_out = COALESCE(tokens_out, 0) + ?3 WHERE id = ?1";

/// One usage bucket per row: `?1` user, `?2` from, `?3` to (Unix s, both
/// included). Calls of the user's API keys and delegates carry its id.
macro_rules! usage_by {
    ($bucket:literal) => {
        concat!(
            "SELECT ",
            $bucket,
            " AS bucket, COUNT(*) AS count, COALESCE(SUM(tokens_in), 0) AS tokens_in,
                    COALESCE(SUM(tokens_out), 0) AS tokens_out
             FROM usage_logs WHERE user_id = ?1 AND created_at >= ?2 AND created_at <= ?3
             GROUP BY bucket ORDER BY bucket"
        )
    };
}

/// Buckets are UTC days (`YYYY-MM-DD`).
pub const SELECT_BY_DAY: &str = usage_by!("date(created_at, 'unixepoch')");
pub const SELECT_BY_ENDPOINT: &str = usage_by!("endpoint");
/// Calls without an instance are one bucket, `null`.
pub const SELECT_BY_INSTANCE: &str = usage_by!("instance_id");

/// One row of a usage query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct UsageBucket {
    pub bucket: Option<String>,
    pub count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

stmt_module! {
    #[allow(clippy::too_many_arguments)]
    fn metered(
        user_id: &'a str, api_key_id: Option<&'a str>, delegate_id: Option<&'a str>,
        endpoint: &'a str, instance_id: Option<&'a str>, model: Option<&'a str>,
        tokens_in: Option<i64>, tokens_out: Option<i64>, now: i64,
    ) => INSERT_METERED;
    fn add_tokens(id: i64, tokens_in: i64, tokens_out: i64) => ADD_TOKENS;
    fn by_day(user_id: &'a str, from: i64, to: i64) => SELECT_BY_DAY;
    fn by_endpoint(user_id: &'a str, from: i64, to: i64) => SELECT_BY_ENDPOINT;
    fn by_instance(user_id: &'a str, from: i64, to: i64) => SELECT_BY_INSTANCE;
    fn record(
        user_id: &'a str, api_key_id: Option<&'a str>, endpoint: &'a str,
        instance_id: Option<&'a str>, now: i64,
    ) => INSERT_USAGE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    #[derive(serde::Deserialize)]
    struct Id {
        id: i64,
    }

    #[test]
    fn metered_rows_group_by_day_endpoint_and_instance() {
        let db = TestDb::new();
        let day = 86_400;
        let a: Id = db
            .first(&stmt::metered(
                "u",
                None,
                None,
                "/api/chat",
                Some("i1"),
                Some("gpt"),
                None,
                None,
                NOW,
            ))
            .unwrap();
        db.run(&stmt::add_tokens(a.id, 10, 5));
        db.run(&stmt::add_tokens(a.id, 1, 1));
        db.run(&stmt::metered(
            "u",
            Some("k"),
            None,
            "/api/transform",
            Some("i1"),
            Some("gpt"),
            Some(3),
            Some(4),
            NOW,
        ));
        db.run(&stmt::metered(
            "u",
            None,
            Some("del_1"),
            "/api/chat",
            None,
            None,
            None,
            None,
            NOW + day,
        ));
        db.run(&stmt::metered(
            "other",
            None,
            None,
            "/api/chat",
            None,
            None,
            Some(100),
            Some(100),
            NOW,
        ));
        let by_endpoint: Vec<UsageBucket> = db.all(&stmt::by_endpoint("u", 0, NOW + day));
        assert_eq!(
            by_endpoint,
            [
                UsageBucket {
                    bucket: Some("/api/chat".into()),
                    count: 2,
                    tokens_in: 11,
                    tokens_out: 6
                },
                UsageBucket {
                    bucket: Some("/api/transform".into()),
                    count: 1,
                    tokens_in: 3,
                    tokens_out: 4
                },
            ]
        );
        let by_day: Vec<UsageBucket> = db.all(&stmt::by_day("u", 0, NOW + day));
        assert_eq!(by_day.len(), 2);
        assert_eq!(by_day[0].bucket.as_deref(), Some("2023-11-14"));
        assert_eq!(by_day[0].count, 2);
        let by_instance: Vec<UsageBucket> = db.all(&stmt::by_instance("u", NOW, NOW));
        assert_eq!(by_instance.len(), 1);
        assert_eq!(by_instance[0].bucket.as_deref(), Some("i1"));
    }

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
