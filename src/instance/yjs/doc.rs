//! The instance's Y document (yjs.md, "The document"): root Y.Map
//! `mindcache`, one nested Y.Map per key with `value` (plain JSON, or a
//! Y.Text for `document` keys) and `attributes` (a plain 3.x object).
//!
//! Two copies are kept: the document itself and a shadow that client
//! updates are tried on first. An update that breaks a rule is refused
//! whole (the shadow is rebuilt from the document); one that passes is
//! then applied to the document too. Every 2.0 write is applied to both.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::{Map as JsonMap, Value};
use yrs::types::{Event, PathSegment, ToJson};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, ClientID, DeepObservable, Doc, In, Map, MapPrelim, MapRef, OffsetKind, Options, Out,
    ReadTxn, StateVector, TextPrelim, Transact, TransactionMut, Update,
};

use super::attrs;
use super::text;
use crate::instance::attributes::{Attributes, KeyType};

/// The root map's name.
pub const ROOT: &str = "mindcache";

/// How many 2.0 writes the shadow may lag behind before it is rebuilt
/// instead of caught up.
const MAX_SHADOW_BEHIND: usize = 256;

/// What a client update did to one key, as 2.0 clients must learn it.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChange {
    Set {
        key: String,
        value: Value,
        /// The 3.x attributes object, or `None` when the entry has none.
        attributes: Option<JsonMap<String, Value>>,
    },
    /// The key is gone (or its entry is not a map, which 2.0 clients
    /// cannot see: refused by the caller).
    Deleted(String),
    /// The root entry is not a map with `value` and `attributes`.
    Malformed(String),
}

/// A key as the bridge writes it: its value and 2.0 attributes.
pub struct Row<'a> {
    pub key: &'a str,
    pub value: &'a Value,
    pub attributes: &'a Attributes,
}

pub struct YDoc {
    doc: Doc,
    shadow: Doc,
    /// 2.0 writes not yet applied to the shadow: they are applied when a
    /// client update is next tried, so a set on an instance whose Y clients
    /// only read pays for one document, not two.
    shadow_behind: Vec<Vec<u8>>,
    /// More than `MAX_SHADOW_BEHIND` were waiting: the shadow is rebuilt
    /// from the document instead.
    shadow_stale: bool,
    /// Keys touched by updates applied to the shadow (its deep observer).
    touched: Rc<RefCell<BTreeSet<String>>>,
}

fn new_doc(client_id: u32) -> Doc {
    Doc::with_options(Options {
        client_id: ClientID::new(u64::from(client_id)),
        // Y.js counts text positions in UTF-16 code units.
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Errors are strings: they come from decoding a client's bytes.
pub type YResult<T> = Result<T, String>;

/// Why a client's update was not tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The bytes are not a Yjs v1 update (`PARSE_ERROR`).
    NotAnUpdate(String),
    /// It writes outside the root map (`INVALID_MESSAGE`): nothing else is
    /// synced, and storage there would escape every limit.
    OutsideTheRoot(String),
}

impl YDoc {
    /// An empty document. `client_id` must differ between the documents an
    /// instance ever creates (a fresh random one each load).
    pub fn new(client_id: u32) -> YDoc {
        let doc = new_doc(client_id);
        let shadow = new_doc(client_id ^ 0x5a5a_5a5a);
        let mut y = YDoc {
            doc,
            shadow,
            shadow_behind: Vec::new(),
            shadow_stale: false,
            touched: Rc::default(),
        };
        y.watch_shadow();
        y
    }

    /// The document of existing keys, built in one transaction; with the
    /// update that holds all of it (the first snapshot).
    pub fn from_rows<'a>(
        client_id: u32,
        rows: impl IntoIterator<Item = Row<'a>>,
    ) -> (YDoc, Vec<u8>) {
        let y = YDoc::new(client_id);
        let root = y.doc.get_or_insert_map(ROOT);
        let update = {
            let mut txn = y.doc.transact_mut();
            for row in rows {
                put(&mut txn, &root, &row);
            }
            txn.encode_update_v1()
        };
        let mut y = y;
        y.lag_shadow(update.clone());
        (y, update)
    }

    /// A document from its stored updates (snapshot first, then the log).
    pub fn load(client_id: u32, updates: &[Vec<u8>]) -> YResult<YDoc> {
        let y = YDoc::new(client_id);
        {
            let mut txn = y.doc.transact_mut();
            for u in updates {
                let update = Update::decode_v1(u).map_err(|e| format!("stored update: {e}"))?;
                txn.apply_update(update)
                    .map_err(|e| format!("stored update: {e}"))?;
            }
        }
        let mut y = y;
        // Built from the document when a client update first needs it.
        y.shadow_stale = true;
        Ok(y)
    }

    fn watch_shadow(&mut self) {
        let touched = Rc::clone(&self.touched);
        let root = self.shadow.get_or_insert_map(ROOT);
        root.observe_deep("bridge", move |txn, events| {
            let mut touched = touched.borrow_mut();
            for event in events.iter() {
                match event.path().front() {
                    Some(PathSegment::Key(k)) => {
                        touched.insert(k.to_string());
                    }
                    Some(PathSegment::Index(_)) => {}
                    None => {
                        if let Event::Map(m) = event {
                            touched.extend(m.keys(txn).keys().map(|k| k.to_string()));
                        }
                    }
                }
            }
        });
    }

    fn apply_to_shadow(&self, update: &[u8]) {
        if let Ok(u) = Update::decode_v1(update) {
            let mut txn = self.shadow.transact_mut();
            if let Err(e) = txn.apply_update(u) {
                crate::log_error!("y shadow: {e}");
            }
        }
    }

    /// Notes a 2.0 write the shadow has not seen yet.
    fn lag_shadow(&mut self, update: Vec<u8>) {
        if self.shadow_stale {
            return;
        }
        if self.shadow_behind.len() >= MAX_SHADOW_BEHIND {
            self.shadow_behind.clear();
            self.shadow_stale = true;
            return;
        }
        self.shadow_behind.push(update);
    }

    /// Brings the shadow level with the document.
    fn catch_up_shadow(&mut self) {
        if self.shadow_stale {
            self.rebuild_shadow();
            return;
        }
        for update in std::mem::take(&mut self.shadow_behind) {
            self.apply_to_shadow(&update);
        }
        self.touched.borrow_mut().clear();
    }

    fn rebuild_shadow(&mut self) {
        self.shadow_behind.clear();
        self.shadow_stale = false;
        let full = self.full_state();
        self.shadow = new_doc(self.doc.client_id().get() as u32 ^ 0x5a5a_5a5a);
        self.touched = Rc::default();
        self.watch_shadow();
        self.apply_to_shadow(&full);
        self.touched.borrow_mut().clear();
    }

    /// The document's state vector (a Step1's payload).
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a peer with state vector `sv` lacks (a Step2's payload).
    pub fn diff(&self, sv: &[u8]) -> YResult<Vec<u8>> {
        let sv = StateVector::decode_v1(sv).map_err(|e| format!("state vector: {e}"))?;
        Ok(self.doc.transact().encode_state_as_update_v1(&sv))
    }

    /// Everything, as one update (a snapshot).
    pub fn full_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Mirrors a 2.0 write; the update to send and store, or `None` when
    /// the document already says the same.
    pub fn write_row(&mut self, row: &Row<'_>) -> Option<Vec<u8>> {
        let root = self.doc.get_or_insert_map(ROOT);
        let update = {
            let mut txn = self.doc.transact_mut();
            if !put(&mut txn, &root, row) {
                return None;
            }
            txn.encode_update_v1()
        };
        self.lag_shadow(update.clone());
        Some(update)
    }

    /// Mirrors deletes (a 2.0 `delete`, or every key for `clear`).
    pub fn delete_keys(&mut self, keys: &[&str]) -> Option<Vec<u8>> {
        let root = self.doc.get_or_insert_map(ROOT);
        let update = {
            let mut txn = self.doc.transact_mut();
            let mut any = false;
            for key in keys {
                any |= root.remove(&mut txn, key).is_some();
            }
            if !any {
                return None;
            }
            txn.encode_update_v1()
        };
        self.lag_shadow(update.clone());
        Some(update)
    }

    /// Every key in the document.
    pub fn keys(&self) -> Vec<String> {
        let root = self.doc.get_or_insert_map(ROOT);
        let txn = self.doc.transact();
        root.keys(&txn).map(str::to_owned).collect()
    }

    /// Tries a client's update on the shadow: what it changes, key by key.
    /// Then call [`YDoc::accept`] or [`YDoc::refuse`].
    pub fn try_update(&mut self, update: &[u8]) -> Result<Vec<KeyChange>, Unusable> {
        let decoded = Update::decode_v1(update)
            .map_err(|e| Unusable::NotAnUpdate(format!("not a Yjs v1 update: {e}")))?;
        self.catch_up_shadow();
        self.touched.borrow_mut().clear();
        let applied = {
            let mut txn = self.shadow.transact_mut();
            txn.apply_update(decoded)
        };
        if let Err(e) = applied {
            self.rebuild_shadow();
            return Err(Unusable::NotAnUpdate(format!(
                "the update cannot be applied: {e}"
            )));
        }
        let stray = {
            let txn = self.shadow.transact();
            let name = txn
                .root_refs()
                .map(|(name, _)| name.to_owned())
                .find(|name| name != ROOT);
            name
        };
        if let Some(name) = stray {
            self.rebuild_shadow();
            return Err(Unusable::OutsideTheRoot(format!(
                "the update writes to the root type {name:?}; only {ROOT:?} is synced"
            )));
        }
        let touched = std::mem::take(&mut *self.touched.borrow_mut());
        let root = self.shadow.get_or_insert_map(ROOT);
        let txn = self.shadow.transact();
        Ok(touched
            .into_iter()
            .map(|key| read_entry(&txn, &root, key))
            .collect())
    }

    /// The tried update passed: the document takes it too.
    pub fn accept(&mut self, update: &[u8]) {
        if let Ok(u) = Update::decode_v1(update) {
            let mut txn = self.doc.transact_mut();
            if let Err(e) = txn.apply_update(u) {
                crate::log_error!("y document: {e}");
            }
        }
    }

    /// The tried update was refused: the shadow forgets it.
    pub fn refuse(&mut self) {
        self.rebuild_shadow();
    }

    /// A key's value and 3.x attributes as the document holds them (tests).
    pub fn entry(&self, key: &str) -> Option<(Value, Value)> {
        let root = self.doc.get_or_insert_map(ROOT);
        let txn = self.doc.transact();
        match read_entry(&txn, &root, key.to_owned()) {
            KeyChange::Set {
                value, attributes, ..
            } => Some((value, attributes.map_or(Value::Null, Value::Object))),
            _ => None,
        }
    }
}

fn to_value(any: &Any) -> Value {
    serde_json::to_value(any).unwrap_or(Value::Null)
}

fn to_any(value: &Value) -> Any {
    Any::from_json(&value.to_string()).unwrap_or(Any::Null)
}

/// Equal as JSON, numbers by value (the document may hold `1` as a float).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Writes one row into the root map; whether anything changed. A new key
/// is inserted filled (one update, never an empty map first).
fn put(txn: &mut TransactionMut, root: &MapRef, row: &Row<'_>) -> bool {
    let v3 = Value::Object(attrs::to_v3(row.attributes));
    let as_text = match (row.attributes.key_type, row.value) {
        (KeyType::Document, Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let existing = match root.get(txn, row.key) {
        Some(Out::YMap(m)) => m,
        _ => {
            let mut fill = MapPrelim::default();
            let value = match as_text {
                Some(s) => In::Text(TextPrelim::new(s).into()),
                None => In::Any(to_any(row.value)),
            };
            fill.insert("value".into(), value);
            fill.insert("attributes".into(), In::Any(to_any(&v3)));
            root.insert(txn, row.key, fill);
            return true;
        }
    };
    let mut changed = false;
    let old_attrs = existing
        .get(txn, "attributes")
        .map(|o| to_value(&o.to_json(txn)));
    if !old_attrs.is_some_and(|old| same(&old, &v3)) {
        existing.insert(txn, "attributes", to_any(&v3));
        changed = true;
    }
    match (as_text, existing.get(txn, "value")) {
        (Some(new), Some(Out::YText(t))) => {
            let old = yrs::GetString::get_string(&t, txn);
            changed |= text::apply_diff(txn, &t, &old, new);
        }
        (Some(new), _) => {
            existing.insert(txn, "value", TextPrelim::new(new));
            changed = true;
        }
        (None, old) => {
            let old = old.map(|o| to_value(&o.to_json(txn)));
            if !old.is_some_and(|old| same(&old, row.value)) {
                existing.insert(txn, "value", to_any(row.value));
                changed = true;
            }
        }
    }
    changed
}

fn read_entry<T: ReadTxn>(txn: &T, root: &MapRef, key: String) -> KeyChange {
    match root.get(txn, &key) {
        None => KeyChange::Deleted(key),
        Some(Out::YMap(m)) => {
            let value = m
                .get(txn, "value")
                .map_or(Value::Null, |o| to_value(&o.to_json(txn)));
            let attributes = match m.get(txn, "attributes").map(|o| to_value(&o.to_json(txn))) {
                Some(Value::Object(o)) => Some(o),
                _ => None,
            };
            KeyChange::Set {
                key,
                value,
                attributes,
            }
        }
        Some(_) => KeyChange::Malformed(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use yrs::{GetString, Text, TextRef, WriteTxn};

    fn attrs(v: Value) -> Attributes {
        Attributes::from_json(&v.to_string()).unwrap()
    }

    /// A Y.js-like client: a document synced from the server's.
    fn client(server: &YDoc, id: u64) -> Doc {
        let c = Doc::with_options(Options {
            client_id: ClientID::new(id),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let sv = c.transact().state_vector().encode_v1();
        apply(&c, &server.diff(&sv).unwrap());
        c
    }

    fn apply(doc: &Doc, update: &[u8]) {
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
    }

    fn text_of(doc: &Doc, key: &str) -> String {
        let root = doc.get_or_insert_map(ROOT);
        let txn = doc.transact();
        match root.get(&txn, key) {
            Some(Out::YMap(m)) => match m.get(&txn, "value") {
                Some(Out::YText(t)) => t.get_string(&txn),
                other => panic!("value is {other:?}"),
            },
            other => panic!("entry is {other:?}"),
        }
    }

    fn text_ref(doc: &Doc, key: &str) -> TextRef {
        let root = doc.get_or_insert_map(ROOT);
        let txn = doc.transact();
        match root.get(&txn, key) {
            Some(Out::YMap(m)) => match m.get(&txn, "value") {
                Some(Out::YText(t)) => t,
                other => panic!("value is {other:?}"),
            },
            other => panic!("entry is {other:?}"),
        }
    }

    fn edit(doc: &Doc, f: impl FnOnce(&mut TransactionMut, &MapRef)) -> Vec<u8> {
        let mut txn = doc.transact_mut();
        let root = txn.get_or_insert_map(ROOT);
        f(&mut txn, &root);
        txn.encode_update_v1()
    }

    #[test]
    fn existing_keys_become_the_document() {
        let a = attrs(json!({"tags":["t"]}));
        let doc_attrs = attrs(json!({"type":"document"}));
        let (y, full) = YDoc::from_rows(
            1,
            [
                Row {
                    key: "n",
                    value: &json!(5),
                    attributes: &a,
                },
                Row {
                    key: "d",
                    value: &json!("hello"),
                    attributes: &doc_attrs,
                },
            ],
        );
        assert!(!full.is_empty());
        let (value, v3) = y.entry("n").unwrap();
        assert_eq!(value, json!(5));
        assert_eq!(v3["contentTags"], json!(["t"]));
        let c = client(&y, 100);
        assert_eq!(text_of(&c, "d"), "hello");
        assert_eq!(y.keys().len(), 2);
    }

    #[test]
    fn a_2_0_write_reaches_a_y_client_and_an_equal_one_sends_nothing() {
        let mut y = YDoc::new(1);
        let c = client(&y, 100);
        let a = attrs(json!({}));
        let update = y
            .write_row(&Row {
                key: "k",
                value: &json!({"x":1}),
                attributes: &a,
            })
            .unwrap();
        apply(&c, &update);
        let root = c.get_or_insert_map(ROOT);
        let json = root.to_json(&c.transact());
        assert_eq!(to_value(&json)["k"]["value"], json!({"x":1}));
        assert!(y
            .write_row(&Row {
                key: "k",
                value: &json!({"x":1.0}),
                attributes: &a
            })
            .is_none());
        assert!(y.delete_keys(&["k"]).is_some());
        assert!(y.delete_keys(&["k"]).is_none());
    }

    #[test]
    fn a_client_update_is_tried_then_accepted() {
        let mut y = YDoc::new(1);
        let c = client(&y, 100);
        let update = edit(&c, |txn, root| {
            let mut fill = MapPrelim::default();
            fill.insert("value".into(), In::Any(Any::from(7.0)));
            fill.insert(
                "attributes".into(),
                In::Any(to_any(&json!({"type":"json","systemTags":["LLMWrite"]}))),
            );
            root.insert(txn, "n", fill);
            root.insert(txn, "junk", "not a map");
        });
        let changes = y.try_update(&update).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes.contains(&KeyChange::Malformed("junk".into())));
        assert!(
            matches!(&changes[1], KeyChange::Set { key, value, .. } if key == "n" && same(value, &json!(7))),
            "{changes:?}"
        );
        // Refused: the document never saw it, and the shadow forgot it.
        y.refuse();
        assert!(y.entry("n").is_none());
        let again = y.try_update(&update).unwrap();
        assert_eq!(again.len(), 2);
        y.accept(&update);
        assert!(same(&y.entry("n").unwrap().0, &json!(7)));
        // Applying it twice changes nothing.
        assert!(y.try_update(&update).unwrap().is_empty());
    }

    #[test]
    fn a_2_0_string_is_diffed_into_the_text_so_concurrent_edits_survive() {
        let doc_attrs = attrs(json!({"type":"document"}));
        let (mut y, _) = YDoc::from_rows(
            1,
            [Row {
                key: "d",
                value: &json!("hello world"),
                attributes: &doc_attrs,
            }],
        );
        let c = client(&y, 100);
        // The Y client appends while a 2.0 client replaces the first word.
        let t = text_ref(&c, "d");
        let by_y = {
            let mut txn = c.transact_mut();
            t.insert(&mut txn, 11, "!");
            txn.encode_update_v1()
        };
        let by_json = y
            .write_row(&Row {
                key: "d",
                value: &json!("HELLO world"),
                attributes: &doc_attrs,
            })
            .unwrap();
        y.try_update(&by_y).unwrap();
        y.accept(&by_y);
        apply(&c, &by_json);
        assert_eq!(text_of(&c, "d"), "HELLO world!");
        assert_eq!(y.entry("d").unwrap().0, json!("HELLO world!"));
        // Non-ASCII offsets are UTF-16 code units.
        y.write_row(&Row {
            key: "d",
            value: &json!("😀 HELLO world!"),
            attributes: &doc_attrs,
        })
        .unwrap();
        assert_eq!(y.entry("d").unwrap().0, json!("😀 HELLO world!"));
    }

    #[test]
    fn updates_outside_the_root_map_are_refused() {
        let mut y = YDoc::new(1);
        let c = client(&y, 100);
        let update = {
            let mut txn = c.transact_mut();
            let elsewhere = txn.get_or_insert_map("elsewhere");
            elsewhere.insert(&mut txn, "k", 1.0);
            txn.encode_update_v1()
        };
        assert!(matches!(
            y.try_update(&update),
            Err(Unusable::OutsideTheRoot(_))
        ));
        assert!(matches!(
            y.try_update(&[1, 2, 3]),
            Err(Unusable::NotAnUpdate(_))
        ));
        // The shadow forgot it: a good update still goes through.
        let good = edit(&c, |txn, root| {
            root.insert(txn, "k", MapPrelim::default());
        });
        assert_eq!(y.try_update(&good).unwrap().len(), 1);
    }

    #[test]
    fn the_shadow_catches_up_with_2_0_writes_however_many() {
        for writes in [3, MAX_SHADOW_BEHIND + 5] {
            let mut y = YDoc::new(1);
            let a = attrs(json!({}));
            for i in 0..writes {
                y.write_row(&Row {
                    key: "k",
                    value: &json!(i),
                    attributes: &a,
                })
                .unwrap();
            }
            // A client synced after them deletes the key: only a shadow
            // that has the 2.0 writes sees the delete.
            let c = client(&y, 100);
            let update = edit(&c, |txn, root| {
                root.remove(txn, "k");
            });
            let changes = y.try_update(&update).unwrap();
            assert_eq!(changes, vec![KeyChange::Deleted("k".into())]);
            y.accept(&update);
            assert!(y.entry("k").is_none());
        }
    }

    #[test]
    fn a_document_loads_from_its_updates() {
        let mut y = YDoc::new(1);
        let a = attrs(json!({}));
        let mut log = vec![y.full_state()];
        for i in 0..50 {
            log.push(
                y.write_row(&Row {
                    key: "k",
                    value: &json!(i),
                    attributes: &a,
                })
                .unwrap(),
            );
        }
        let loaded = YDoc::load(2, &log).unwrap();
        assert_eq!(loaded.entry("k").unwrap().0, json!(49));
        let compacted = YDoc::load(3, &[loaded.full_state()]).unwrap();
        assert_eq!(compacted.entry("k").unwrap().0, json!(49));
        assert!(YDoc::load(4, &[vec![1, 2, 3]]).is_err());
    }
}
