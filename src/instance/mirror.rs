//! An in-memory mirror of an instance's keys in front of any `KeyStore`.
//!
//! Every `set` reads the stored entry (for the no-op rule and to keep
//! attributes). A Durable Object SQL call has a fixed cost of tens of
//! microseconds, as much as the write itself, so with the mirror that read
//! is a hash lookup instead. The store stays the source of truth: every
//! write goes to it first and only then to the mirror, so a failed write
//! leaves both unchanged. Instances whose keys outgrow the memory budget
//! run without the mirror.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::store::{Entry, KeyRow, KeyStore, PageRange, StoreError};

/// Memory the mirror may hold (bytes of keys, values and attributes).
/// Several objects can share one isolate (128 MB), so this stays modest.
pub const DEFAULT_BUDGET: usize = 8 * 1024 * 1024;

pub struct Mirrored<S> {
    inner: S,
    budget: usize,
    state: RefCell<State>,
    bytes: Cell<usize>,
}

enum State {
    /// Not loaded yet: the first read loads every key.
    Cold,
    Loaded(HashMap<String, Entry>),
    /// Larger than the budget: every call goes to the store.
    Bypassed,
}

fn size_of(entry: &Entry) -> usize {
    // Attributes are small next to values; a flat allowance keeps this cheap.
    entry.key.len() + entry.value.get().len() + 256
}

fn entry_of(row: &KeyRow<'_>) -> Result<Entry, StoreError> {
    let value = RawValue::from_string(row.value.to_owned())
        .map_err(|e| StoreError(format!("value of {:?} is not JSON: {e}", row.key)))?;
    Ok(Entry {
        key: row.key.to_owned(),
        value,
        attributes: row.attributes.clone(),
        updated_at: row.updated_at,
    })
}

impl<S: KeyStore> Mirrored<S> {
    pub fn new(inner: S) -> Self {
        Self::with_budget(inner, DEFAULT_BUDGET)
    }

    pub fn with_budget(inner: S, budget: usize) -> Self {
        Mirrored {
            inner,
            budget,
            state: RefCell::new(State::Cold),
            bytes: Cell::new(0),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Loads every key on first use; afterwards a no-op.
    fn ensure_loaded(&self) -> Result<(), StoreError> {
        if !matches!(*self.state.borrow(), State::Cold) {
            return Ok(());
        }
        let mut map = HashMap::new();
        let mut bytes = 0usize;
        for entry in self.inner.all()? {
            bytes += size_of(&entry);
            if bytes > self.budget {
                *self.state.borrow_mut() = State::Bypassed;
                return Ok(());
            }
            map.insert(entry.key.clone(), entry);
        }
        self.bytes.set(bytes);
        *self.state.borrow_mut() = State::Loaded(map);
        Ok(())
    }

    /// Records a written entry, giving up the mirror when over budget.
    fn remember(&self, entry: Entry) {
        let mut state = self.state.borrow_mut();
        let State::Loaded(map) = &mut *state else {
            return;
        };
        let added = size_of(&entry);
        let removed = map
            .insert(entry.key.clone(), entry)
            .map_or(0, |e| size_of(&e));
        let bytes = self.bytes.get() + added - removed;
        if bytes > self.budget {
            *state = State::Bypassed;
        } else {
            self.bytes.set(bytes);
        }
    }

    pub fn is_mirrored(&self) -> bool {
        matches!(*self.state.borrow(), State::Loaded(_))
    }
}

impl<S: KeyStore> KeyStore for Mirrored<S> {
    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        // Arbitrary SQL may change keys behind our back: start over.
        self.inner.execute(sql)?;
        *self.state.borrow_mut() = State::Cold;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.ensure_loaded()?;
        match &*self.state.borrow() {
            State::Loaded(map) => Ok(map.get(key).cloned()),
            _ => self.inner.get(key),
        }
    }

    fn put(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        self.inner.put(row, is_new)?;
        self.remember(entry_of(&row)?);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self.inner.delete(key)?;
        if let State::Loaded(map) = &mut *self.state.borrow_mut() {
            if let Some(e) = map.remove(key) {
                self.bytes.set(self.bytes.get().saturating_sub(size_of(&e)));
            }
        }
        Ok(existed)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear()?;
        *self.state.borrow_mut() = State::Loaded(HashMap::new());
        self.bytes.set(0);
        Ok(())
    }

    fn count(&self) -> Result<u64, StoreError> {
        match &*self.state.borrow() {
            State::Loaded(map) => Ok(map.len() as u64),
            _ => self.inner.count(),
        }
    }

    /// A rolled-back transaction leaves the mirror behind the store: it is
    /// dropped and loaded again on the next read.
    fn atomically(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let result = self.inner.atomically(f);
        if result.is_err() {
            *self.state.borrow_mut() = State::Cold;
            self.bytes.set(0);
        }
        result
    }

    super::store::forward_untouched!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::attributes::Attributes;
    use crate::instance::sqlite_store::SqliteStore;
    use crate::instance::store::migrate;

    fn store(budget: usize) -> Mirrored<SqliteStore> {
        let s = Mirrored::with_budget(SqliteStore::in_memory(), budget);
        migrate(&s).unwrap();
        s
    }

    fn put(s: &impl KeyStore, key: &str, value: &str, insert: bool) {
        let attributes = Attributes::default();
        let row = KeyRow {
            key,
            value,
            attributes: &attributes,
            updated_at: 7,
        };
        if insert {
            s.insert(row).unwrap()
        } else {
            s.update(row).unwrap()
        }
    }

    #[test]
    fn reads_come_from_memory_and_match_the_store() {
        let s = store(DEFAULT_BUDGET);
        put(&s, "a", "1", true);
        assert!(s.get("missing").unwrap().is_none());
        assert!(s.is_mirrored());
        put(&s, "b", r#"{"x":[1]}"#, true);
        put(&s, "a", "2", false);
        assert_eq!(s.get("a").unwrap().unwrap().value.get(), "2");
        assert_eq!(s.inner().get("a").unwrap().unwrap().value.get(), "2");
        assert_eq!(s.count().unwrap(), 2);
        assert!(s.delete("a").unwrap());
        assert!(!s.delete("a").unwrap());
        assert!(s.get("a").unwrap().is_none());
        assert_eq!(s.count().unwrap(), 1);
        s.clear().unwrap();
        assert!(s.get("b").unwrap().is_none());
        assert_eq!(s.inner().count().unwrap(), 0);
    }

    #[test]
    fn keys_written_before_the_first_read_are_loaded() {
        let inner = SqliteStore::in_memory();
        migrate(&inner).unwrap();
        put(&inner, "old", "\"x\"", true);
        let s = Mirrored::new(inner);
        assert_eq!(s.get("old").unwrap().unwrap().value.get(), "\"x\"");
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn over_budget_falls_back_to_the_store() {
        let s = store(600);
        put(&s, "a", "1", true);
        assert!(s.get("a").unwrap().is_some());
        assert!(s.is_mirrored());
        put(&s, "big", &format!("\"{}\"", "y".repeat(400)), true);
        assert!(!s.is_mirrored());
        assert_eq!(s.get("big").unwrap().unwrap().value.get().len(), 402);
        assert_eq!(s.get("a").unwrap().unwrap().value.get(), "1");
        assert_eq!(s.count().unwrap(), 2);
    }

    #[test]
    fn a_failed_write_changes_neither() {
        let s = store(DEFAULT_BUDGET);
        put(&s, "a", "1", true);
        assert!(s.get("a").unwrap().is_some());
        s.inner().fail_writes.set(true);
        let attributes = Attributes::default();
        let row = KeyRow {
            key: "a",
            value: "2",
            attributes: &attributes,
            updated_at: 9,
        };
        assert!(s.update(row).is_err());
        assert_eq!(s.get("a").unwrap().unwrap().value.get(), "1");
    }
}
