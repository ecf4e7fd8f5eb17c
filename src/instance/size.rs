//! The total size of an instance (docs/faults.md): every key counts the
//! bytes of its fragment of the `sync.data` map — key, serialised value,
//! serialised attributes and `updatedAt` — so the total is what a `sync`
//! carries, give or take a comma per key and the ~60 bytes around the map.
//! The cap keeps one `sync` within what the runtime sends (32 MiB per
//! WebSocket message) and what an isolate holds comfortably (128 MB).

use std::cell::Cell;
use std::io;

use serde::Serialize;

use super::attributes::Attributes;
use super::error::ProtocolError;
use super::store::{Entry, StoreError};

/// Largest total an instance may grow to by a write: 16 MiB.
pub const MAX_INSTANCE_BYTES: u64 = 16 * 1024 * 1024;

/// Largest `sync` the object tries to send. The runtime refuses a message
/// over 32 MiB; an instance above this (only one created before the cap)
/// gets a `TOO_LARGE` error instead of its `sync`.
pub const MAX_SYNC_BYTES: u64 = 30 * 1024 * 1024;

/// Counts the bytes serde_json writes, without keeping them.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn json_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut counter = Counter(0);
    // Serialising attributes or a string into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

fn digits(n: i64) -> u64 {
    let sign = u64::from(n < 0);
    let mut n = n.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    sign + d
}

/// Bytes of `"<key>":{"value":<value>,"attributes":{…},"updatedAt":<t>}`,
/// exactly as the sync renders it (`value` is the stored JSON text).
pub fn fragment_len(key: &str, value: &str, attributes: &Attributes, updated_at: i64) -> u64 {
    const FIXED: u64 =
        (r#":{"value":"#.len() + r#","attributes":"#.len() + r#","updatedAt":"#.len() + "}".len())
            as u64;
    json_len(key) + value.len() as u64 + json_len(attributes) + digits(updated_at) + FIXED
}

pub fn entry_len(entry: &Entry) -> u64 {
    fragment_len(
        &entry.key,
        entry.value.get(),
        &entry.attributes,
        entry.updated_at,
    )
}

/// The refusal of a write that would take the instance over the cap.
pub fn too_large(total: u64, after: u64, max: u64) -> ProtocolError {
    ProtocolError::too_large(format!(
        "this instance holds {total} bytes of keys, values and attributes; the write would bring it to {after}, over the limit of {max} bytes ({} MiB) per instance: delete keys or clear the instance first",
        max / (1024 * 1024)
    ))
}

/// The refusal a client gets instead of a `sync` that cannot be sent.
pub fn sync_too_large(total: u64) -> ProtocolError {
    ProtocolError::too_large(format!(
        "this instance holds {total} bytes, more than one sync can carry ({MAX_SYNC_BYTES} bytes); it was filled before the limit of {MAX_INSTANCE_BYTES} bytes per instance existed. The socket stays open: delete keys or clear the instance, then reconnect"
    ))
}

/// The instance's total, kept between calls of one object lifetime like
/// `KeyCount`: computed once (by `count`, or by paging through the keys),
/// then kept exact by every write through the engine.
#[derive(Default)]
pub struct InstanceSize {
    known: Cell<Option<u64>>,
    /// A cheaper way to compute the total than paging (the object's SQL).
    count: Option<Box<dyn Fn() -> Result<u64, StoreError>>>,
}

impl InstanceSize {
    pub fn with_counter(count: Box<dyn Fn() -> Result<u64, StoreError>>) -> Self {
        InstanceSize {
            known: Cell::new(None),
            count: Some(count),
        }
    }

    pub fn known(&self) -> Option<u64> {
        self.known.get()
    }

    /// The total, computed with the counter when unknown; `None` when there
    /// is no counter (the caller pages).
    pub fn get_or_count(&self) -> Option<Result<u64, StoreError>> {
        if let Some(n) = self.known.get() {
            return Some(Ok(n));
        }
        let counted = self.count.as_ref()?();
        if let Ok(n) = counted {
            self.known.set(Some(n));
        }
        Some(counted)
    }

    pub fn set(&self, n: u64) {
        self.known.set(Some(n));
    }

    /// After a rolled-back transaction: count again when next asked.
    pub fn forget(&self) {
        self.known.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::protocol::encode_data;
    use serde_json::value::RawValue;

    #[test]
    fn fragment_len_is_the_sync_fragment() {
        let attributes = Attributes {
            tags: vec!["a\"b".into(), "é".into()],
            ..Default::default()
        };
        for (key, value, at) in [
            ("k", "1", 0),
            ("ké\"y\n", r#"{"x":[1,2,"é"]}"#, 1_700_000_000_123),
            ("neg", "null", -5),
        ] {
            let entry = Entry {
                key: key.into(),
                value: RawValue::from_string(value.into()).unwrap(),
                attributes: attributes.clone(),
                updated_at: at,
            };
            // `{` + fragment + `}`.
            let map = encode_data(std::slice::from_ref(&entry));
            assert_eq!(entry_len(&entry), map.len() as u64 - 2, "{map}");
        }
    }

    #[test]
    fn the_total_is_counted_once_then_kept() {
        let calls = std::rc::Rc::new(Cell::new(0));
        let seen = calls.clone();
        let size = InstanceSize::with_counter(Box::new(move || {
            seen.set(seen.get() + 1);
            Ok(42)
        }));
        assert_eq!(size.get_or_count().unwrap().unwrap(), 42);
        assert_eq!(size.get_or_count().unwrap().unwrap(), 42);
        assert_eq!(calls.get(), 1);
        size.set(7);
        assert_eq!(size.known(), Some(7));
        size.forget();
        assert_eq!(size.get_or_count().unwrap().unwrap(), 42);
        assert!(InstanceSize::default().get_or_count().is_none());
    }

    mod cap {
        use crate::instance::data_ops::{Conditions, ImportMode};
        use crate::instance::engine::Engine;
        use crate::instance::error::ErrorCode;
        use crate::instance::size::InstanceSize;
        use crate::instance::sqlite_store::SqliteStore;
        use crate::instance::store::{migrate, InstanceMeta, KeyStore};
        use serde_json::json;
        use serde_json::value::RawValue;

        const CAP: u64 = 400;
        const NOW: i64 = 1_700_000_000_000;

        struct World {
            store: SqliteStore,
            meta: InstanceMeta,
            size: InstanceSize,
        }

        impl World {
            fn new() -> World {
                let store = SqliteStore::in_memory();
                migrate(&store).unwrap();
                let meta = InstanceMeta {
                    instance_id: "i".into(),
                    ..Default::default()
                };
                World {
                    store,
                    meta,
                    size: InstanceSize::default(),
                }
            }

            fn engine(&self) -> Engine<'_, SqliteStore> {
                Engine::new(&self.store, &self.meta)
                    .with_size(&self.size)
                    .with_max_bytes(CAP)
            }

            /// The kept total must equal a fresh count from the store.
            fn total(&self) -> u64 {
                let kept = self.engine().total_bytes().unwrap();
                let fresh = Engine::new(&self.store, &self.meta).total_bytes().unwrap();
                assert_eq!(kept, fresh);
                kept
            }

            fn keys(&self) -> u64 {
                self.store.count().unwrap()
            }
        }

        fn text(n: usize) -> Box<RawValue> {
            RawValue::from_string(format!("\"{}\"", "x".repeat(n))).unwrap()
        }

        fn too_large<T: std::fmt::Debug>(r: Result<T, crate::instance::error::ProtocolError>) {
            let e = r.unwrap_err();
            assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}");
            assert!(e.message.contains("per instance"), "{}", e.message);
        }

        #[test]
        fn every_write_path_is_capped_and_writes_nothing_when_refused() {
            let w = World::new();
            let e = w.engine();
            e.set_as("u", "a", &text(150), None, NOW).unwrap();
            let base = w.total();
            assert!(base > 150 && base < CAP);
            // WebSocket set (and the AI's and the Worker's internal set).
            too_large(e.set_as("u", "b", &text(300), None, NOW));
            // Growing an existing key counts only the growth.
            too_large(e.set_as("u", "a", &text(380), None, NOW));
            // HTTP PUT.
            let body = json!({"value": "y".repeat(300)}).to_string();
            too_large(e.put_key("u", "b", &body, &Conditions::default(), NOW));
            // Batch: atomic, so the small first set is rolled back too.
            let batch = json!({"set": {"s": {"value": 1}, "big": {"value": "z".repeat(300)}}});
            too_large(e.batch("u", &batch.to_string(), NOW));
            // Clone (import of another instance's dump).
            let dump = json!({"c1": {"value": "q".repeat(120)}, "c2": {"value": "q".repeat(120)}});
            too_large(e.import("u", &dump.to_string(), NOW));
            // Import, merge and replace.
            let doc = |keys: serde_json::Value| {
                json!({"format": "mindcache-export", "version": 1, "keys": keys}).to_string()
            };
            too_large(e.import_document("u", &doc(dump.clone()), ImportMode::Merge, NOW));
            let huge = json!({"h": {"value": "h".repeat(500)}});
            too_large(e.import_document("u", &doc(huge), ImportMode::Replace, NOW));
            assert_eq!(w.keys(), 1);
            assert_eq!(w.total(), base);
            // Within the cap everything still works, and the total follows.
            e.delete_as("u", "a", NOW).unwrap();
            assert_eq!(w.total(), 0);
            e.set_as("u", "small", &text(10), None, NOW).unwrap();
            assert!(w.total() < base);
            let replace = json!({"r": {"value": "r".repeat(200)}});
            e.import_document("u", &doc(replace), ImportMode::Replace, NOW)
                .unwrap();
            assert_eq!(w.keys(), 1);
            w.total();
        }

        #[test]
        fn an_instance_over_the_cap_can_shrink_and_be_cleared() {
            let w = World::new();
            // Filled before the cap existed (no cap on this engine).
            let open = Engine::new(&w.store, &w.meta).with_size(&w.size);
            for k in ["a", "b", "c"] {
                open.set_as("u", k, &text(300), None, NOW).unwrap();
            }
            let e = w.engine();
            assert!(w.total() > CAP);
            too_large(e.set_as("u", "d", &text(1), None, NOW));
            // Shrinking and deleting are allowed while over the cap.
            e.set_as("u", "a", &text(1), None, NOW).unwrap();
            e.delete_as("u", "b", NOW).unwrap();
            let batch = json!({"delete": ["c"]});
            e.batch("u", &batch.to_string(), NOW).unwrap();
            assert!(w.total() < CAP);
            e.set_as("u", "d", &text(1), None, NOW).unwrap();
            e.clear_as("u", NOW).unwrap();
            assert_eq!(w.total(), 0);
        }

        #[test]
        fn a_failed_transaction_forgets_the_total() {
            let w = World::new();
            let e = w.engine();
            e.set_as("u", "a", &text(10), None, NOW).unwrap();
            let before = w.total();
            w.store.fail_writes.set(true);
            let batch = json!({"set": {"b": {"value": 1}}});
            assert!(e.batch("u", &batch.to_string(), NOW).is_err());
            w.store.fail_writes.set(false);
            assert_eq!(w.size.known(), None);
            assert_eq!(w.total(), before);
        }
    }
}
