//! The bridge between an instance's key rows and its Y document (yjs.md).
//!
//! `Bridged` wraps the object's store: every key write, whatever path it
//! came by (WebSocket, HTTP, AI, import, clone), is mirrored into the Y
//! document and its update appended to the document's storage in the same
//! synchronous turn (so in the same storage transaction) as the row. The
//! updates to send to Y sockets wait in `outgoing` until the object
//! publishes the change. An instance that never had a Y socket has no
//! document: the wrapper then only forwards (one flag test per write).
//!
//! Storage (`ydoc` table): snapshot rows `s:<base64>` (the document's full
//! state split into parts of at most 1.5 MB, so each row stays under the
//! runtime's 2 MB), then update rows `u:<base64>`. Past `COMPACT_ROWS`
//! updates or `COMPACT_BYTES` of them, the whole is rewritten as a fresh
//! snapshot in the write's transaction.

use std::cell::{Cell, RefCell};

use base64::Engine as _;
use serde_json::Value;

use super::store::{Entry, KeyRow, KeyStore, PageRange, StoreError};
use super::yjs::doc::{KeyChange, Row, Unusable, YDoc};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `meta` row saying the instance has a Y document.
pub const META_YJS: &str = "yjs";
const SNAPSHOT_PART_BYTES: usize = 1_500_000;
const COMPACT_ROWS: u32 = 500;
const COMPACT_BYTES: usize = 1_000_000;

pub struct Bridged<S> {
    inner: S,
    /// The instance has a Y document (its `meta` says so).
    enabled: Cell<bool>,
    /// The document, loaded on first need.
    doc: RefCell<Option<YDoc>>,
    /// A client's update is being applied: its rows are not mirrored back.
    from_client: Cell<bool>,
    /// Updates applied and stored, not yet sent to the Y sockets.
    outgoing: RefCell<Vec<Vec<u8>>>,
    log_rows: Cell<u32>,
    log_bytes: Cell<usize>,
    /// Inside `atomically` (a mirrored write then needs no transaction of
    /// its own).
    in_transaction: Cell<bool>,
}

impl<S: KeyStore> Bridged<S> {
    pub fn new(inner: S) -> Self {
        Bridged {
            inner,
            enabled: Cell::new(false),
            doc: RefCell::new(None),
            from_client: Cell::new(false),
            outgoing: RefCell::new(Vec::new()),
            log_rows: Cell::new(0),
            log_bytes: Cell::new(0),
            in_transaction: Cell::new(false),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether the instance has a Y document.
    pub fn has_doc(&self) -> bool {
        self.enabled.get()
    }

    /// Reads the flag from `meta` (when the object sets up).
    pub fn load_flag(&self) -> Result<(), StoreError> {
        self.enabled
            .set(self.inner.meta_get(META_YJS)?.as_deref() == Some("1"));
        Ok(())
    }

    /// Forgets everything in memory (the instance was destroyed).
    pub fn reset(&self) {
        self.enabled.set(false);
        self.forget();
    }

    fn forget(&self) {
        *self.doc.borrow_mut() = None;
        self.outgoing.borrow_mut().clear();
    }

    /// Creates the document from the keys the first time a Y client comes,
    /// in one transaction with the flag.
    pub fn enable(&self) -> Result<(), StoreError> {
        if self.enabled.get() {
            return self.ensure_loaded();
        }
        let entries = self.inner.all()?;
        let values: Vec<Value> = entries
            .iter()
            .map(|e| serde_json::from_str(e.value.get()).unwrap_or(Value::Null))
            .collect();
        let (doc, full) = YDoc::from_rows(
            client_id(),
            entries.iter().zip(&values).map(|(e, v)| Row {
                key: &e.key,
                value: v,
                attributes: &e.attributes,
            }),
        );
        self.inner.atomically(&mut || {
            self.inner.y_replace(&snapshot_rows(&full))?;
            self.inner.meta_set(META_YJS, "1")
        })?;
        self.log_rows.set(0);
        self.log_bytes.set(0);
        *self.doc.borrow_mut() = Some(doc);
        self.enabled.set(true);
        Ok(())
    }

    fn ensure_loaded(&self) -> Result<(), StoreError> {
        if self.doc.borrow().is_some() {
            return Ok(());
        }
        let rows = self.inner.y_rows()?;
        let mut snapshot = Vec::new();
        let mut updates = Vec::new();
        let (mut log_rows, mut log_bytes) = (0, 0);
        for row in &rows {
            let (kind, data) = row.split_at(2.min(row.len()));
            let bytes = B64
                .decode(data)
                .map_err(|e| StoreError(format!("ydoc row: {e}")))?;
            match kind {
                "s:" => snapshot.extend_from_slice(&bytes),
                "u:" => {
                    log_rows += 1;
                    log_bytes += bytes.len();
                    updates.push(bytes);
                }
                _ => return Err(StoreError("ydoc row has no kind".into())),
            }
        }
        updates.insert(0, snapshot);
        let doc = YDoc::load(client_id(), &updates).map_err(StoreError)?;
        self.log_rows.set(log_rows);
        self.log_bytes.set(log_bytes);
        *self.doc.borrow_mut() = Some(doc);
        Ok(())
    }

    /// Runs `f` on the loaded document.
    pub fn with_doc<T>(&self, f: impl FnOnce(&mut YDoc) -> T) -> Result<T, StoreError> {
        self.ensure_loaded()?;
        let mut doc = self.doc.borrow_mut();
        match doc.as_mut() {
            Some(d) => Ok(f(d)),
            None => Err(StoreError("the Y document is not loaded".into())),
        }
    }

    /// Stores an update. Compaction is for the caller, once the document
    /// holds the update too (a snapshot without it would lose it).
    fn store_update(&self, update: &[u8]) -> Result<(), StoreError> {
        self.inner.y_append(&format!("u:{}", B64.encode(update)))?;
        self.log_rows.set(self.log_rows.get() + 1);
        self.log_bytes.set(self.log_bytes.get() + update.len());
        Ok(())
    }

    /// Compacts when the log has grown past its bounds. Runs in the same
    /// synchronous turn as the write, so it commits with it.
    fn maybe_compact(&self) -> Result<(), StoreError> {
        if self.log_rows.get() > COMPACT_ROWS || self.log_bytes.get() > COMPACT_BYTES {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the storage as one snapshot of the document.
    pub fn compact(&self) -> Result<(), StoreError> {
        let full = self.with_doc(|d| d.full_state())?;
        self.inner.y_replace(&snapshot_rows(&full))?;
        self.log_rows.set(0);
        self.log_bytes.set(0);
        Ok(())
    }

    /// The stored rows: (snapshot parts, log updates), for `/admin` and tests.
    pub fn stored_rows(&self) -> Result<(usize, usize), StoreError> {
        if !self.enabled.get() {
            return Ok((0, 0));
        }
        let rows = self.inner.y_rows()?;
        let snapshot = rows.iter().filter(|r| r.starts_with("s:")).count();
        Ok((snapshot, rows.len() - snapshot))
    }

    /// Updates stored since the last call, to send to Y sockets.
    pub fn take_outgoing(&self) -> Vec<Vec<u8>> {
        if !self.enabled.get() {
            return Vec::new();
        }
        std::mem::take(&mut *self.outgoing.borrow_mut())
    }

    /// Tries a client's update on the shadow document.
    pub fn try_update(
        &self,
        update: &[u8],
    ) -> Result<Result<Vec<KeyChange>, Unusable>, StoreError> {
        self.with_doc(|d| d.try_update(update))
    }

    /// Applies the rows of a tried update with `write` (which writes them
    /// through the engine, in one transaction it opens) and stores the
    /// update with them. The rows are not mirrored back into the document:
    /// the update itself is accepted into it once `write` succeeded.
    pub fn apply_client_update<E>(
        &self,
        update: &[u8],
        write: impl FnOnce(&dyn Fn() -> Result<(), StoreError>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.from_client.set(true);
        let store = || self.store_update(update);
        let result = write(&store);
        self.from_client.set(false);
        {
            let mut doc = self.doc.borrow_mut();
            if let Some(d) = doc.as_mut() {
                match result {
                    Ok(()) => d.accept(update),
                    Err(_) => d.refuse(),
                }
            }
        }
        if result.is_ok() {
            if let Err(e) = self.maybe_compact() {
                // The log still holds everything; the next write retries.
                crate::log_error!("y document compaction: {}", e.0);
            }
        }
        result
    }

    /// The tried update was refused before anything was written.
    pub fn refuse(&self) {
        if let Some(d) = self.doc.borrow_mut().as_mut() {
            d.refuse();
        }
    }

    fn mirroring(&self) -> bool {
        self.enabled.get() && !self.from_client.get()
    }

    /// Runs a mirrored write (the row, then its update) as one transaction:
    /// a row never stays without its update, whichever fails.
    fn as_one(&self, mut f: impl FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        if self.in_transaction.get() {
            return f();
        }
        self.atomically(&mut f)
    }

    fn mirror(&self, f: impl FnOnce(&mut YDoc) -> Option<Vec<u8>>) -> Result<(), StoreError> {
        if let Some(update) = self.with_doc(f)? {
            self.store_update(&update)?;
            self.outgoing.borrow_mut().push(update);
            self.maybe_compact()?;
        }
        Ok(())
    }
}

fn snapshot_rows(full: &[u8]) -> Vec<String> {
    full.chunks(SNAPSHOT_PART_BYTES)
        .map(|part| format!("s:{}", B64.encode(part)))
        .collect()
}

/// A fresh Y client id for each document loaded (Y.js ids are 32-bit).
fn client_id() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 1;
    }
    u32::from_le_bytes(bytes).max(1)
}

impl<S: KeyStore> KeyStore for Bridged<S> {
    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.inner.execute(sql)
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.get(key)
    }

    fn put(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        if !self.mirroring() {
            return self.inner.put(row, is_new);
        }
        let value: Value = serde_json::from_str(row.value).unwrap_or(Value::Null);
        self.as_one(|| {
            self.inner.put(row, is_new)?;
            self.mirror(|d| {
                d.write_row(&Row {
                    key: row.key,
                    value: &value,
                    attributes: row.attributes,
                })
            })
        })
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        if !self.mirroring() {
            return self.inner.delete(key);
        }
        let mut existed = false;
        self.as_one(|| {
            existed = self.inner.delete(key)?;
            if existed {
                self.mirror(|d| d.delete_keys(&[key]))?;
            }
            Ok(())
        })?;
        Ok(existed)
    }

    fn clear(&self) -> Result<(), StoreError> {
        if !self.mirroring() {
            return self.inner.clear();
        }
        self.as_one(|| {
            self.inner.clear()?;
            self.mirror(|d| {
                let keys = d.keys();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                d.delete_keys(&keys)
            })
        })
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }

    fn atomically(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let outer = self.in_transaction.replace(true);
        let result = if outer { f() } else { self.inner.atomically(f) };
        self.in_transaction.set(outer);
        if result.is_err() && self.enabled.get() {
            // The document may hold what storage just dropped: reload it.
            self.forget();
        }
        result
    }

    super::store::forward_untouched!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::engine::Engine;
    use crate::instance::sqlite_store::SqliteStore;
    use crate::instance::store::{migrate, InstanceMeta};
    use serde_json::json;
    use serde_json::value::RawValue;

    fn store() -> Bridged<SqliteStore> {
        let s = Bridged::new(SqliteStore::in_memory());
        migrate(&s).unwrap();
        s
    }

    /// A second object on the same storage (a restart).
    fn reopened(s: &Bridged<SqliteStore>) -> Bridged<SqliteStore> {
        let file = tempfile::NamedTempFile::new().unwrap();
        s.inner
            .conn
            .execute("VACUUM INTO ?1", [file.path().to_str().unwrap()])
            .unwrap();
        let again = Bridged::new(SqliteStore::wrap(
            rusqlite::Connection::open(file.path()).unwrap(),
        ));
        again.load_flag().unwrap();
        again
    }

    fn raw(v: Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    #[test]
    fn without_a_document_writes_are_only_forwarded() {
        let s = store();
        let meta = InstanceMeta::default();
        let e = Engine::new(&s, &meta);
        e.set_as("u", "k", &raw(json!(1)), None, 10).unwrap();
        assert!(s.take_outgoing().is_empty());
        assert_eq!(s.stored_rows().unwrap(), (0, 0));
        assert!(s.inner().meta_get(META_YJS).unwrap().is_none());
    }

    #[test]
    fn every_write_path_reaches_the_document_and_its_storage() {
        let s = store();
        let meta = InstanceMeta::default();
        let e = Engine::new(&s, &meta);
        e.set_as("u", "before", &raw(json!("x")), None, 10).unwrap();
        s.enable().unwrap();
        assert_eq!(s.stored_rows().unwrap(), (1, 0));
        e.set_as("u", "k", &raw(json!({"a":1})), None, 11).unwrap();
        // An equal set writes nothing, so sends nothing.
        e.set_as("u", "k", &raw(json!({"a":1})), None, 12).unwrap();
        e.delete_as("u", "before", 13).unwrap();
        assert_eq!(s.take_outgoing().len(), 2);
        assert_eq!(s.stored_rows().unwrap(), (1, 2));
        // A fresh object loads the same document from storage.
        let again = reopened(&s);
        assert!(again.has_doc());
        let (value, _) = again.with_doc(|d| d.entry("k")).unwrap().unwrap();
        assert_eq!(value, json!({"a":1}));
        assert!(again.with_doc(|d| d.entry("before")).unwrap().is_none());
        e.clear_as("u", 14).unwrap();
        assert!(s.with_doc(|d| d.keys()).unwrap().is_empty());
    }

    #[test]
    fn a_long_log_is_compacted_and_still_loads() {
        let s = store();
        let meta = InstanceMeta::default();
        let e = Engine::new(&s, &meta);
        s.enable().unwrap();
        for i in 0..(COMPACT_ROWS as i64 * 2 + 10) {
            e.set_as("u", "k", &raw(json!(i)), None, 100 + i).unwrap();
        }
        let (parts, log) = s.stored_rows().unwrap();
        assert_eq!(parts, 1);
        assert!(log < COMPACT_ROWS as usize, "{log}");
        let again = reopened(&s);
        let (value, _) = again.with_doc(|d| d.entry("k")).unwrap().unwrap();
        assert_eq!(value, json!(COMPACT_ROWS as i64 * 2 + 9));
    }

    #[test]
    fn client_updates_stored_across_compactions_all_survive_a_restart() {
        use yrs::updates::decoder::Decode;
        use yrs::{Map, ReadTxn, Transact, WriteTxn};
        let s = store();
        s.enable().unwrap();
        // A Y client synced from the document.
        let client = yrs::Doc::new();
        let full = s.with_doc(|d| d.full_state()).unwrap();
        client
            .transact_mut()
            .apply_update(yrs::Update::decode_v1(&full).unwrap())
            .unwrap();
        let n = COMPACT_ROWS as i64 * 2 + 7;
        for i in 0..n {
            let update = {
                let mut txn = client.transact_mut();
                let root = txn.get_or_insert_map(crate::instance::yjs::doc::ROOT);
                let mut fill = yrs::MapPrelim::default();
                fill.insert("value".into(), yrs::In::Any(yrs::Any::from(i as f64)));
                root.insert(&mut txn, "k", fill);
                txn.encode_update_v1()
            };
            let changes = s.try_update(&update).unwrap().unwrap();
            assert_eq!(changes.len(), 1);
            s.apply_client_update(&update, |store_it| store_it())
                .unwrap();
        }
        let (parts, log) = s.stored_rows().unwrap();
        assert_eq!(parts, 1);
        assert!(log < COMPACT_ROWS as usize);
        let again = reopened(&s);
        let (value, _) = again.with_doc(|d| d.entry("k")).unwrap().unwrap();
        assert_eq!(value.as_f64(), Some((n - 1) as f64));
        let sv = client.transact().state_vector();
        let server_sv = again.with_doc(|d| d.state_vector()).unwrap();
        assert_eq!(
            yrs::StateVector::decode_v1(&server_sv)
                .unwrap()
                .get(&client.client_id()),
            sv.get(&client.client_id())
        );
    }
}
