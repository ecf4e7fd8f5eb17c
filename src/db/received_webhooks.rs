//! Rows of the `received_webhooks` table: the ids of the Clerk webhook
//! deliveries already received, so that a replay is not applied twice.

use worker::D1Database;

use super::{Arg, IdRow, Statement};
use crate::error::ApiError;

// --- SQL --------------------------------------------------------------------

/// `?1` a time: forgets the deliveries received before it.
pub const DELETE_EXPIRED: &str = "DELETE FROM received_webhooks WHERE received_at < ?1";

/// `?1` delivery id, `?2` now: records the delivery; returns its id only if
/// it was not there yet (one statement, so two racing copies of one
/// delivery cannot both get it).
pub const INSERT_IF_NEW: &str = "INSERT INTO received_webhooks (id, received_at) VALUES (?1, ?2)
     ON CONFLICT(id) DO NOTHING
     RETURNING id";

/// `?1` delivery id: forgets one delivery (it could not be applied, so a
/// retry must be).
pub const DELETE_DELIVERY: &str = "DELETE FROM received_webhooks WHERE id = ?1";

stmt_module! {
    /// One batch: the purge of deliveries received before `forget_before`,
    /// then the claim of this one (its returned row says it is new).
    pub fn claim(id: &str, now: i64, forget_before: i64) -> Vec<Statement<'_>> {
        vec![
            Statement::new(DELETE_EXPIRED, [Arg::Int(forget_before)]),
            Statement::new(INSERT_IF_NEW, [Arg::Text(id), Arg::Int(now)]),
        ]
    }

    /// Forgets delivery `id`, so that a retry of it is applied.
    fn release(id: &'a str) => DELETE_DELIVERY;
}

// --- D1 ---------------------------------------------------------------------

/// Records delivery `id` as received at `now`, forgetting those received
/// before `forget_before` on the way. `true` if it is new, `false` if it
/// was received before (a replay).
pub async fn claim(
    db: &D1Database,
    id: &str,
    now: i64,
    forget_before: i64,
) -> Result<bool, ApiError> {
    let batch = stmt::claim(id, now, forget_before);
    let claimed: Vec<IdRow> = super::run_batch_returning(db, &batch, 1).await?;
    Ok(!claimed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    /// Runs the claim batch; whether the delivery was new.
    fn claim(db: &TestDb, id: &str, now: i64, forget_before: i64) -> bool {
        let [purge, insert] = <[Statement; 2]>::try_from(stmt::claim(id, now, forget_before))
            .expect("two statements");
        db.run(&purge);
        db.first::<IdRow>(&insert).is_some_and(|row| row.id == id)
    }

    fn ids(db: &TestDb) -> Vec<String> {
        db.ids("received_webhooks")
    }

    #[test]
    fn a_delivery_is_new_once() {
        let db = TestDb::new();
        assert!(claim(&db, "msg_1", NOW, NOW - 600));
        assert!(!claim(&db, "msg_1", NOW + 1, NOW - 599));
        assert!(claim(&db, "msg_2", NOW + 1, NOW - 599));
        assert_eq!(ids(&db), ["msg_1", "msg_2"]);
        // The replay did not move the first one's time.
        assert_eq!(
            db.column("SELECT CAST(received_at AS TEXT) FROM received_webhooks WHERE id = 'msg_1'"),
            [NOW.to_string()]
        );
    }

    #[test]
    fn old_deliveries_are_forgotten_as_new_ones_arrive() {
        let db = TestDb::new();
        assert!(claim(&db, "old", NOW - 601, NOW - 1201));
        assert!(claim(&db, "edge", NOW - 600, NOW - 1200));
        assert!(claim(&db, "new", NOW, NOW - 600));
        // Received before `forget_before`: gone; at it: kept.
        assert_eq!(ids(&db), ["edge", "new"]);
        // A forgotten id counts as new again.
        assert!(claim(&db, "old", NOW, NOW - 600));
        assert!(!claim(&db, "edge", NOW, NOW - 600));
    }

    #[test]
    fn a_released_delivery_is_new_again() {
        let db = TestDb::new();
        assert!(claim(&db, "msg_1", NOW, NOW - 600));
        assert_eq!(db.run(&stmt::release("msg_1")), 1);
        assert!(claim(&db, "msg_1", NOW, NOW - 600));
        assert_eq!(db.run(&stmt::release("unknown")), 0);
    }

    #[test]
    fn the_claim_is_one_atomic_batch() {
        let db = TestDb::new();
        db.batch(&stmt::claim("msg_1", NOW, NOW - 600));
        db.batch(&stmt::claim("msg_1", NOW, NOW - 600));
        assert_eq!(db.count("received_webhooks"), 1);
    }
}
