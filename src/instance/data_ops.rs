//! The operations of the HTTP data API (data-api.md) over the engine:
//! listing by page, reading one key, conditional writes, atomic batches and
//! the export/import documents. They share the WebSocket path's checks,
//! no-op rule, read-only refusal and broadcasts (`Engine::write_checked`);
//! like the rest of the engine they are pure and tested natively.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::attributes::Attributes;
use super::engine::{
    check_set, internal, named, parse_dump, too_many_keys, DumpItem, Engine, Written,
};
use super::error::{ErrorCode, ProtocolError};
use super::json::RawObject;
use super::limits::{validate_key, MAX_KEY_BYTES};
use super::protocol::{encode_cleared, encode_key_deleted};
use super::store::{join_data_entries, Entry, KeyStore, PageRange};

/// At most this many operations in one batch.
pub const MAX_BATCH_OPERATIONS: usize = 1_000;
/// Default and largest `limit` of a listing.
pub const MAX_PAGE_KEYS: usize = 1_000;
/// A page stops early once its entries pass this many bytes (it always
/// holds at least one key), so a page of large values stays sendable.
pub const PAGE_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// A key's version as an HTTP entity tag: its `updatedAt`, quoted.
pub fn etag(updated_at: i64) -> String {
    format!("\"{updated_at}\"")
}

/// The entity tags of an `If-Match` or `If-None-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    Any,
    /// Opaque tags as sent (weak `W/` prefixes dropped).
    List(Vec<String>),
}

impl Tags {
    fn parse(header: &str) -> Tags {
        if header.trim() == "*" {
            return Tags::Any;
        }
        Tags::List(
            header
                .split(',')
                .map(|t| t.trim().trim_start_matches("W/").to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        )
    }

    fn matches(&self, current: Option<i64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            (Tags::List(tags), Some(at)) => tags.contains(&etag(at)),
        }
    }
}

/// The preconditions of a conditional write, checked inside the object
/// against the stored key, so two writers racing on one key cannot both win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

impl Conditions {
    pub fn parse(if_match: Option<&str>, if_none_match: Option<&str>) -> Conditions {
        Conditions {
            if_match: if_match.map(Tags::parse),
            if_none_match: if_none_match.map(Tags::parse),
        }
    }

    /// Refuses (`PRECONDITION_FAILED`) unless the key, at `current`
    /// (`None`: missing), satisfies every header given.
    fn check(&self, key: &str, current: Option<i64>) -> Result<(), ProtocolError> {
        if let Some(tags) = &self.if_match {
            if !tags.matches(current) {
                let why = match current {
                    None => "does not exist".to_string(),
                    Some(at) => format!("is at version {}", etag(at)),
                };
                return Err(precondition(format!(
                    "If-Match failed: key {key:?} {why}; nothing was written"
                )));
            }
        }
        if let Some(tags) = &self.if_none_match {
            if tags.matches(current) {
                return Err(precondition(format!(
                    "If-None-Match failed: key {key:?} already exists at that version; nothing was written"
                )));
            }
        }
        Ok(())
    }
}

fn precondition(message: String) -> ProtocolError {
    ProtocolError::new(ErrorCode::PreconditionFailed, message)
}

/// A listing request, its cursor already decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub prefix: String,
    pub tag: Option<String>,
    pub limit: usize,
    /// The last key of the previous page.
    pub after: Option<String>,
}

/// The cursor a page hands out: the last key it holds, base64url-encoded
/// so that it is opaque and URL-safe.
pub fn encode_cursor(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

/// The smallest string above every string that starts with `prefix`: the
/// prefix with its last character raised by one (dropping characters that
/// cannot be raised). `None` when no string is above them all.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Above every valid key (at most `MAX_KEY_BYTES` bytes, so at most
/// `MAX_KEY_BYTES / 4` characters of the highest code point).
pub(super) fn above_all_keys() -> String {
    std::iter::repeat_n(char::MAX, MAX_KEY_BYTES / 4 + 1).collect()
}

/// `{"name": …, "value": …, "attributes": …, "updatedAt": …}` plus
/// `changed` for a write's answer.
#[derive(Serialize)]
struct KeyBody<'a> {
    name: &'a str,
    value: &'a RawValue,
    attributes: &'a Attributes,
    #[serde(rename = "updatedAt")]
    updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
}

fn key_body(entry: &Entry, changed: Option<bool>) -> String {
    serde_json::to_string(&KeyBody {
        name: &entry.key,
        value: &entry.value,
        attributes: &entry.attributes,
        updated_at: entry.updated_at,
        changed,
    })
    .unwrap_or_else(|_| "{}".into())
}

/// What a `PUT` did: the answer's body, the key's version after it and the
/// broadcast when something changed.
#[derive(Debug)]
pub struct PutOutcome {
    pub body: String,
    pub updated_at: i64,
    pub broadcast: Option<String>,
}

/// `{"applied": n, "changed": m}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    pub applied: usize,
    pub changed: usize,
}

/// `{"imported": n, "deleted": m}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    pub imported: usize,
    pub deleted: usize,
}

/// How an import treats keys the document lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Keep them.
    Merge,
    /// Delete them: the instance ends up holding exactly the document.
    Replace,
}

/// The export document's fixed fields.
pub const EXPORT_FORMAT: &str = "mindcache-export";
pub const EXPORT_VERSION: u64 = 1;

impl<S: KeyStore + ?Sized> Engine<'_, S> {
    /// One page of keys in key order as `{"keys": {…}, "cursor": …}`.
    pub fn list(&self, query: &ListQuery) -> Result<String, ProtocolError> {
        let below = prefix_end(&query.prefix).unwrap_or_else(above_all_keys);
        let range = PageRange {
            from: &query.prefix,
            after: query.after.as_deref().unwrap_or(""),
            below: &below,
            tag: query.tag.as_deref(),
            limit: query.limit.clamp(1, MAX_PAGE_KEYS),
            budget: self.page_budget,
        };
        let (rows, more) = self.store.page(&range).map_err(internal)?;
        let cursor = match rows.last() {
            Some((last, _)) if more => serde_json::to_string(&encode_cursor(last))?,
            _ => "null".to_string(),
        };
        let keys = join_data_entries(rows.into_iter().map(|(_, fragment)| fragment));
        Ok(format!(r#"{{"keys":{keys},"cursor":{cursor}}}"#))
    }

    /// One key as `{"name", "value", "attributes", "updatedAt"}` with its
    /// version, or `None` when it does not exist.
    pub fn read_key(&self, key: &str) -> Result<Option<(String, i64)>, ProtocolError> {
        validate_key(key)?;
        Ok(self
            .get(key)?
            .map(|entry| (key_body(&entry, None), entry.updated_at)))
    }

    /// `PUT` of a key: `body` is `{"value": …, "attributes"?: {…}}`.
    pub fn put_key(
        &self,
        actor: &str,
        key: &str,
        body: &str,
        conditions: &Conditions,
        now_ms: i64,
    ) -> Result<PutOutcome, ProtocolError> {
        let (value, attributes) = parse_put(body)?;
        self.writable()?;
        check_set(key, &value, attributes.as_ref())?;
        let existing = self.store.get(key).map_err(internal)?;
        conditions.check(key, existing.as_ref().map(|e| e.updated_at))?;
        let unchanged = existing.clone();
        match self.write_checked(actor, key, &value, attributes, existing, now_ms)? {
            Some(Written {
                attributes,
                updated_at,
                broadcast,
            }) => {
                let entry = Entry {
                    key: key.to_string(),
                    value,
                    attributes,
                    updated_at,
                };
                Ok(PutOutcome {
                    body: key_body(&entry, Some(true)),
                    updated_at,
                    broadcast: Some(broadcast),
                })
            }
            None => {
                // A no-op: the key exists (a new key always changes).
                let entry = unchanged.ok_or_else(|| ProtocolError::internal("no-op on no key"))?;
                Ok(PutOutcome {
                    body: key_body(&entry, Some(false)),
                    updated_at: entry.updated_at,
                    broadcast: None,
                })
            }
        }
    }

    /// `DELETE` of a key, under `conditions`; `None` broadcast when it did
    /// not exist.
    pub fn delete_key(
        &self,
        actor: &str,
        key: &str,
        conditions: &Conditions,
        now_ms: i64,
    ) -> Result<Option<String>, ProtocolError> {
        self.writable()?;
        validate_key(key)?;
        let existing = self.store.get(key).map_err(internal)?;
        conditions.check(key, existing.as_ref().map(|e| e.updated_at))?;
        if existing.is_none() {
            return Ok(None);
        }
        self.delete_as(actor, key, now_ms)
    }

    /// An atomic batch (`{"set"?: {…}, "delete"?: […]}`): every operation
    /// is checked before any is applied; all are applied in one transaction;
    /// the broadcasts are in the body's order, sets first.
    pub fn batch(
        &self,
        actor: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<(BatchResult, Vec<String>), ProtocolError> {
        let (sets, deletes) = parse_batch(body)?;
        self.writable()?;
        let applied = sets.len() + deletes.len();
        if applied > MAX_BATCH_OPERATIONS {
            return Err(ProtocolError::too_large(format!(
                "a batch holds at most {MAX_BATCH_OPERATIONS} operations; this one has {applied}"
            )));
        }
        self.check_items(&sets)?;
        for key in &deletes {
            validate_key(key).map_err(|e| named("delete", key, e))?;
        }
        let mut broadcasts = Vec::new();
        self.atomically(|| {
            broadcasts.clear();
            self.write_items(actor, &sets, now_ms, &mut broadcasts)?;
            for key in &deletes {
                if self.remove(key)? {
                    broadcasts.push(encode_key_deleted(key, actor, now_ms));
                }
            }
            Ok(())
        })?;
        let changed = broadcasts.len();
        Ok((BatchResult { applied, changed }, broadcasts))
    }

    /// Imports an export document (`mode` decides what happens to keys it
    /// lacks); validated in full, then applied in one transaction. Replace
    /// broadcasts `cleared` first, then each key.
    pub fn import_document(
        &self,
        actor: &str,
        document: &str,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<(ImportResult, Vec<String>), ProtocolError> {
        let items = dedupe(parse_document(document)?);
        self.writable()?;
        let imported = items.len();
        if mode == ImportMode::Merge {
            let broadcasts = self.merge(actor, items, now_ms)?;
            let result = ImportResult {
                imported,
                deleted: 0,
            };
            return Ok((result, broadcasts));
        }
        for (key, value, attributes) in &items {
            check_set(key, value, attributes.as_ref()).map_err(|e| named("import", key, e))?;
        }
        if imported as u64 > self.max_keys {
            return Err(too_many_keys(self.max_keys));
        }
        let mut kept = 0usize;
        for (key, _, _) in &items {
            if self.store.get(key).map_err(internal)?.is_some() {
                kept += 1;
            }
        }
        let deleted = (self.store.count().map_err(internal)? as usize).saturating_sub(kept);
        let mut broadcasts = Vec::new();
        self.atomically(|| {
            broadcasts.clear();
            self.clear_store()?;
            broadcasts.push(encode_cleared(actor, now_ms));
            for (key, value, attributes) in &items {
                let written =
                    self.write_checked(actor, key, value, attributes.clone(), None, now_ms)?;
                broadcasts.extend(written.map(|w| w.broadcast));
            }
            Ok(())
        })?;
        Ok((ImportResult { imported, deleted }, broadcasts))
    }

    /// The JSON export document (lossless: values and attributes as stored).
    pub fn export_json(&self, now_ms: i64) -> Result<String, ProtocolError> {
        let data = self.data_json()?;
        let instance_id = serde_json::to_string(&self.meta.instance_id)?;
        Ok(format!(
            r#"{{"format":"{EXPORT_FORMAT}","version":{EXPORT_VERSION},"instanceId":{instance_id},"exportedAt":{now_ms},"keys":{data}}}"#
        ))
    }

    /// The readable markdown export.
    pub fn export_markdown(&self, title: &str) -> Result<String, ProtocolError> {
        Ok(super::markdown::render(title, &self.entries()?))
    }
}

impl From<serde_json::Error> for ProtocolError {
    fn from(e: serde_json::Error) -> Self {
        ProtocolError::internal(format!("json: {e}"))
    }
}

/// Later duplicates of a key win, as they would applied one by one.
fn dedupe(items: Vec<DumpItem>) -> Vec<DumpItem> {
    let mut seen = std::collections::HashMap::new();
    let mut out: Vec<DumpItem> = Vec::with_capacity(items.len());
    for item in items {
        match seen.get(&item.0) {
            Some(&at) => out[at] = item,
            None => {
                seen.insert(item.0.clone(), out.len());
                out.push(item);
            }
        }
    }
    out
}

fn parse_put(body: &str) -> Result<(Box<RawValue>, Option<Attributes>), ProtocolError> {
    let object = RawObject::parse(body).ok_or_else(|| {
        ProtocolError::invalid(r#"the body must be a JSON object {"value": …, "attributes"?: {…}}"#)
    })?;
    let mut value = None;
    let mut attributes = None;
    for (name, raw) in object.0 {
        match name.as_str() {
            "value" => value = Some(raw),
            // `null` counts as missing, as in a WebSocket `set` (protocol.md §3).
            "attributes" if raw.get() == "null" => attributes = None,
            "attributes" => attributes = Some(Attributes::from_json(raw.get())?),
            other => {
                return Err(ProtocolError::invalid(format!(
                    "unknown field {other:?}: the body takes \"value\" and optional \"attributes\""
                )))
            }
        }
    }
    let value = value.ok_or_else(|| ProtocolError::invalid("the body has no \"value\""))?;
    Ok((value, attributes))
}

type BatchOps = (Vec<DumpItem>, Vec<String>);

fn parse_batch(body: &str) -> Result<BatchOps, ProtocolError> {
    let object = RawObject::parse(body).ok_or_else(|| {
        ProtocolError::invalid(r#"the body must be a JSON object {"set"?: {…}, "delete"?: […]}"#)
    })?;
    let mut sets = Vec::new();
    let mut deletes = Vec::new();
    for (name, raw) in object.0 {
        match name.as_str() {
            "set" => {
                sets = parse_dump(raw.get()).map_err(|e| ProtocolError {
                    message: format!("\"set\": {}", e.message),
                    ..e
                })?
            }
            "delete" => {
                deletes = serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                    ProtocolError::invalid("\"delete\" must be an array of key names")
                })?
            }
            other => {
                return Err(ProtocolError::invalid(format!(
                    "unknown field {other:?}: a batch takes \"set\" and \"delete\""
                )))
            }
        }
    }
    Ok((sets, deletes))
}

/// `{"format": "mindcache-export", "version": 1, "keys": {…}, …}`.
fn parse_document(document: &str) -> Result<Vec<DumpItem>, ProtocolError> {
    #[derive(Deserialize)]
    struct Document<'a> {
        format: Option<String>,
        version: Option<serde_json::Value>,
        #[serde(borrow)]
        keys: Option<&'a RawValue>,
    }
    let doc: Document<'_> = serde_json::from_str(document).map_err(|_| {
        ProtocolError::invalid("the body must be a MindCache export document (a JSON object)")
    })?;
    if doc.format.as_deref() != Some(EXPORT_FORMAT) {
        return Err(ProtocolError::invalid(format!(
            "\"format\" must be \"{EXPORT_FORMAT}\""
        )));
    }
    if doc.version.as_ref().and_then(|v| v.as_u64()) != Some(EXPORT_VERSION) {
        return Err(ProtocolError::invalid(format!(
            "\"version\" must be {EXPORT_VERSION}"
        )));
    }
    let keys = doc
        .keys
        .ok_or_else(|| ProtocolError::invalid("the document has no \"keys\""))?;
    parse_dump(keys.get()).map_err(|e| ProtocolError {
        message: format!("\"keys\": {}", e.message),
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::sqlite_store::SqliteStore;
    use crate::instance::store::{migrate, InstanceMeta};
    use serde_json::{json, Value};

    fn store() -> SqliteStore {
        let s = SqliteStore::in_memory();
        migrate(&s).unwrap();
        s
    }

    fn meta() -> InstanceMeta {
        InstanceMeta {
            instance_id: "inst".into(),
            ..Default::default()
        }
    }

    fn put(e: &Engine<'_, SqliteStore>, key: &str, body: Value, now: i64) -> Value {
        let out = e
            .put_key("u", key, &body.to_string(), &Conditions::default(), now)
            .unwrap();
        serde_json::from_str(&out.body).unwrap()
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn put_answers_the_entry_and_whether_it_changed() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        let first = put(&e, "a", json!({"value": {"x": 1}}), 100);
        assert_eq!(first["name"], "a");
        assert_eq!(first["value"], json!({"x": 1}));
        assert_eq!(first["attributes"]["type"], "text");
        assert_eq!(first["updatedAt"], 100);
        assert_eq!(first["changed"], true);
        let again = put(&e, "a", json!({"value": {"x": 1}}), 200);
        assert_eq!(again["changed"], false);
        assert_eq!(again["updatedAt"], 100);
        // `attributes: null` keeps the stored ones, as a WebSocket set does.
        put(
            &e,
            "a",
            json!({"value": 1, "attributes": {"type": "json"}}),
            300,
        );
        let kept = put(&e, "a", json!({"value": 2, "attributes": null}), 400);
        assert_eq!(kept["attributes"]["type"], "json");
    }

    #[test]
    fn versions_move_forward_even_within_one_millisecond() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        put(&e, "a", json!({"value": 1}), 100);
        let second = put(&e, "a", json!({"value": 2}), 100);
        assert_eq!(second["updatedAt"], 101);
        // So a writer holding the old version loses.
        let stale = Conditions::parse(Some("\"100\""), None);
        let err = e
            .put_key("u", "a", r#"{"value":3}"#, &stale, 100)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PreconditionFailed);
        assert_eq!(e.get("a").unwrap().unwrap().value.get(), "2");
    }

    #[test]
    fn conditions_follow_if_match_and_if_none_match() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        let create_only = Conditions::parse(None, Some("*"));
        assert!(e
            .put_key("u", "k", r#"{"value":1}"#, &create_only, 5)
            .is_ok());
        let err = e
            .put_key("u", "k", r#"{"value":2}"#, &create_only, 6)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PreconditionFailed);
        let exists = Conditions::parse(Some("*"), None);
        assert!(e.put_key("u", "new", r#"{"value":1}"#, &exists, 7).is_err());
        assert!(e.get("new").unwrap().is_none());
        let fresh = Conditions::parse(Some("W/\"1\", \"5\""), None);
        assert!(e.put_key("u", "k", r#"{"value":2}"#, &fresh, 8).is_ok());
        assert_eq!(e.get("k").unwrap().unwrap().value.get(), "2");
        let stale = Conditions::parse(Some("\"5\""), None);
        assert!(e.delete_key("u", "k", &stale, 9).is_err());
        assert!(e.get("k").unwrap().is_some());
        let current = Conditions::parse(Some("\"8\""), None);
        assert!(e.delete_key("u", "k", &current, 9).unwrap().is_some());
        assert!(e
            .delete_key("u", "k", &Conditions::default(), 9)
            .unwrap()
            .is_none());
    }

    #[test]
    fn put_bodies_are_checked() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        let none = Conditions::default();
        for (body, code) in [
            ("[]", ErrorCode::InvalidMessage),
            ("{}", ErrorCode::InvalidMessage),
            (r#"{"value":1,"extra":2}"#, ErrorCode::InvalidMessage),
            (
                r#"{"value":1,"attributes":{"type":"nope"}}"#,
                ErrorCode::InvalidMessage,
            ),
        ] {
            let err = e.put_key("u", "k", body, &none, 1).unwrap_err();
            assert_eq!(err.code, code, "{body}");
        }
        let err = e
            .put_key("u", "$date", r#"{"value":1}"#, &none, 1)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidKey);
        assert_eq!(s.count().unwrap(), 0);
    }

    #[test]
    fn a_batch_applies_all_or_nothing_in_order() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        put(&e, "gone", json!({"value": 0}), 1);
        let bad = json!({"set": {"a": {"value": 1}, "$time": {"value": 2}}, "delete": ["gone"]});
        let err = e.batch("u", &bad.to_string(), 2).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidKey);
        assert!(err.message.contains("set \"$time\""), "{}", err.message);
        assert!(e.get("a").unwrap().is_none());
        assert!(e.get("gone").unwrap().is_some());

        let good = r#"{"set":{"b":{"value":1},"a":{"value":2},"gone":{"value":0}},"delete":["gone","never"]}"#;
        let (result, broadcasts) = e.batch("u", good, 3).unwrap();
        assert_eq!(
            result,
            BatchResult {
                applied: 5,
                changed: 3
            }
        );
        let order: Vec<(String, String)> = broadcasts
            .iter()
            .map(|b| {
                let v = parse(b);
                (
                    v["type"].as_str().unwrap().into(),
                    v["key"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("key_updated".into(), "b".into()),
                ("key_updated".into(), "a".into()),
                ("key_deleted".into(), "gone".into())
            ]
        );
    }

    #[test]
    fn a_batch_over_the_operation_limit_is_refused_whole() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        let deletes: Vec<String> = (0..=MAX_BATCH_OPERATIONS)
            .map(|i| format!("k{i}"))
            .collect();
        let body = json!({"set": {"x": {"value": 1}}, "delete": deletes});
        let err = e.batch("u", &body.to_string(), 1).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(e.get("x").unwrap().is_none());
    }

    #[test]
    fn a_storage_failure_mid_batch_rolls_everything_back() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        put(&e, "a", json!({"value": 1}), 1);
        // The second set fails after the first was written.
        let body = r#"{"set":{"a":{"value":2},"b":{"value":3}}}"#;
        s.fail_after.set(Some(1));
        let err = e.batch("u", body, 2).unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
        s.fail_after.set(None);
        assert_eq!(e.get("a").unwrap().unwrap().value.get(), "1");
        assert!(e.get("b").unwrap().is_none());
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn listing_pages_by_prefix_tag_and_cursor() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        for name in ["a/1", "a/2", "a/3", "a0", "b", "é"] {
            put(&e, name, json!({"value": name}), 1);
        }
        put(
            &e,
            "a/2",
            json!({"value": 2, "attributes": {"tags": ["hot"]}}),
            2,
        );
        let page = |q: ListQuery| parse(&e.list(&q).unwrap());
        let first = page(ListQuery {
            prefix: "a/".into(),
            limit: 2,
            ..Default::default()
        });
        let names: Vec<&String> = first["keys"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["a/1", "a/2"]);
        let cursor = decode_cursor(first["cursor"].as_str().unwrap()).unwrap();
        let second = page(ListQuery {
            prefix: "a/".into(),
            limit: 2,
            after: Some(cursor),
            ..Default::default()
        });
        let names: Vec<&String> = second["keys"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["a/3"]);
        assert_eq!(second["cursor"], Value::Null);
        let tagged = page(ListQuery {
            tag: Some("hot".into()),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(tagged["keys"].as_object().unwrap().len(), 1);
        assert_eq!(tagged["keys"]["a/2"]["value"], 2);
        let all = page(ListQuery {
            limit: 1000,
            ..Default::default()
        });
        let names: Vec<&String> = all["keys"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["a/1", "a/2", "a/3", "a0", "b", "é"]);
    }

    #[test]
    fn prefix_ends_are_the_next_string_up() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
        assert!(above_all_keys().len() > MAX_KEY_BYTES);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        assert_eq!(
            decode_cursor(&encode_cursor("a/é b")).as_deref(),
            Some("a/é b")
        );
        assert_eq!(decode_cursor("%%%"), None);
    }

    #[test]
    fn export_then_replace_import_gives_the_same_keys() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        put(
            &e,
            "doc",
            json!({"value": "# hi\n", "attributes": {"type": "markdown", "tags": ["x"], "contentTags": ["y"]}}),
            1,
        );
        e.put_key(
            "u",
            "raw",
            r#"{"value":{ "spaced" : [1, 2.50] }}"#,
            &Conditions::default(),
            2,
        )
        .unwrap();
        let exported = e.export_json(10).unwrap();
        let doc = parse(&exported);
        assert_eq!(doc["format"], EXPORT_FORMAT);
        assert_eq!(doc["instanceId"], "inst");

        let (s2, m2) = (store(), meta());
        let e2 = Engine::new(&s2, &m2);
        put(&e2, "other", json!({"value": 1}), 1);
        let (result, broadcasts) = e2
            .import_document("u", &exported, ImportMode::Replace, 50)
            .unwrap();
        assert_eq!(
            result,
            ImportResult {
                imported: 2,
                deleted: 1
            }
        );
        assert_eq!(parse(&broadcasts[0])["type"], "cleared");
        assert_eq!(broadcasts.len(), 3);
        let again = e2.export_json(60).unwrap();
        // Byte for byte, but for updatedAt (the import time).
        let strip = |text: &str| {
            text.replace("\"updatedAt\":1", "")
                .replace("\"updatedAt\":2", "")
                .replace("\"updatedAt\":50", "")
        };
        let keys = |text: &str| {
            let start = text.find("\"keys\":").unwrap();
            strip(&text[start..])
        };
        assert_eq!(keys(&exported), keys(&again));
        assert!(again.contains(r#"{ "spaced" : [1, 2.50] }"#));
    }

    #[test]
    fn merge_import_keeps_other_keys_and_refuses_bad_documents() {
        let (s, m) = (store(), meta());
        let e = Engine::new(&s, &m);
        put(&e, "keep", json!({"value": 1}), 1);
        let doc = json!({"format": EXPORT_FORMAT, "version": 1, "keys": {"new": {"value": 2}}});
        let (result, _) = e
            .import_document("u", &doc.to_string(), ImportMode::Merge, 5)
            .unwrap();
        assert_eq!(
            result,
            ImportResult {
                imported: 1,
                deleted: 0
            }
        );
        assert!(e.get("keep").unwrap().is_some());
        for bad in [
            json!({"format": "other", "version": 1, "keys": {}}),
            json!({"format": EXPORT_FORMAT, "version": 2, "keys": {}}),
            json!({"format": EXPORT_FORMAT, "version": 1}),
            json!({"format": EXPORT_FORMAT, "version": 1, "keys": {"ok": {"value": 1}, "bad": {}}}),
        ] {
            let err = e
                .import_document("u", &bad.to_string(), ImportMode::Replace, 6)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidMessage, "{bad}");
        }
        assert!(e.get("ok").unwrap().is_none());
        assert_eq!(s.count().unwrap(), 2);
    }

    #[test]
    fn read_only_instances_refuse_every_write() {
        let s = store();
        let m = InstanceMeta {
            read_only: true,
            ..meta()
        };
        let e = Engine::new(&s, &m);
        let none = Conditions::default();
        let codes = [
            e.put_key("u", "k", r#"{"value":1}"#, &none, 1)
                .unwrap_err()
                .code,
            e.delete_key("u", "k", &none, 1).unwrap_err().code,
            e.batch("u", r#"{"delete":["k"]}"#, 1).unwrap_err().code,
            e.import_document(
                "u",
                r#"{"format":"mindcache-export","version":1,"keys":{}}"#,
                ImportMode::Replace,
                1,
            )
            .unwrap_err()
            .code,
        ];
        assert!(codes.iter().all(|c| *c == ErrorCode::ReadOnly), "{codes:?}");
    }
}
