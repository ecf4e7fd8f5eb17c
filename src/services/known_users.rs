//! Which signed-in users this isolate has recently made sure have a
//! `users` row. Every authenticated request of a signed-in user used to run
//! `INSERT OR IGNORE INTO users` first — a second D1 round trip on every
//! call, `GET /api/projects` included (issue 13). Once done, it is skipped
//! for `TTL_SECONDS` in this isolate. A user deleted meanwhile (Clerk
//! `user.deleted`) is forgotten here at once when the deletion ran in this
//! isolate; elsewhere the entry lapses within the TTL.

use std::cell::RefCell;
use std::collections::HashMap;

pub const TTL_SECONDS: i64 = 60;
/// Bounds the memory: past it the map starts over.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct KnownUsers {
    ensured_at: HashMap<String, i64>,
}

impl KnownUsers {
    /// Whether the row must be ensured now (then it counts as done).
    pub fn needs_ensure(&mut self, user_id: &str, now: i64) -> bool {
        if let Some(at) = self.ensured_at.get(user_id) {
            if now - at < TTL_SECONDS && now >= *at {
                return false;
            }
        }
        if self.ensured_at.len() >= MAX_ENTRIES {
            self.ensured_at.clear();
        }
        self.ensured_at.insert(user_id.to_owned(), now);
        true
    }

    /// The ensure failed or the user was deleted: ask D1 next time.
    pub fn forget(&mut self, user_id: &str) {
        self.ensured_at.remove(user_id);
    }
}

thread_local! {
    static KNOWN: RefCell<KnownUsers> = RefCell::new(KnownUsers::default());
}

/// [`KnownUsers::needs_ensure`] on this isolate's record.
pub fn needs_ensure(user_id: &str, now: i64) -> bool {
    KNOWN.with(|k| k.borrow_mut().needs_ensure(user_id, now))
}

/// [`KnownUsers::forget`] on this isolate's record.
pub fn forget(user_id: &str) {
    KNOWN.with(|k| k.borrow_mut().forget(user_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_ensured_once_per_ttl() {
        let mut k = KnownUsers::default();
        assert!(k.needs_ensure("a", 100));
        assert!(!k.needs_ensure("a", 100 + TTL_SECONDS - 1));
        assert!(k.needs_ensure("b", 101));
        assert!(k.needs_ensure("a", 100 + TTL_SECONDS));
        k.forget("b");
        assert!(k.needs_ensure("b", 102));
        // A clock that went back does not extend the window.
        assert!(k.needs_ensure("a", 50));
    }

    #[test]
    fn the_record_is_bounded() {
        let mut k = KnownUsers::default();
        for i in 0..(MAX_ENTRIES + 5) {
            assert!(k.needs_ensure(&i.to_string(), 1));
        }
        assert!(k.ensured_at.len() <= MAX_ENTRIES);
    }
}
