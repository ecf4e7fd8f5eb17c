//! Storage of an instance's keys: the `KeyStore` contract, the SQL every
//! implementation runs, and the versioned schema migration.

use super::attributes::{Attributes, KeyType};
use serde_json::value::RawValue;
use std::cell::Cell;
use wasm_bindgen::JsValue;

use crate::permission::Permission;

/// One stored key, as `sync.data` describes it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Box<RawValue>,
    pub attributes: Attributes,
    pub updated_at: i64,
}

/// A key about to be written; `value` is JSON text already checked by the caller.
#[derive(Debug, Clone, Copy)]
pub struct KeyRow<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub attributes: &'a Attributes,
    pub updated_at: i64,
}

/// A storage failure. It becomes an `INTERNAL` error for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// The instance's storage, synchronous like the Durable Object's SqlStorage.
///
/// Writes are split into `insert` and `update` rather than one upsert: the
/// engine always reads the row first, and knowing that a write adds a key lets
/// a store keep the key count in memory (see `KeyCount`) instead of running
/// `COUNT(*)`, which reads — and is billed for — every row.
pub trait KeyStore {
    /// Runs a parameterless statement (schema changes and probes).
    fn execute(&self, sql: &str) -> Result<(), StoreError>;
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Adds a key that `get` just reported missing (`is_new`), or replaces
    /// one it reported present.
    fn put(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError>;
    fn insert(&self, row: KeyRow<'_>) -> Result<(), StoreError> {
        self.put(row, true)
    }
    fn update(&self, row: KeyRow<'_>) -> Result<(), StoreError> {
        self.put(row, false)
    }
    /// Whether the key existed.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;
    fn clear(&self) -> Result<(), StoreError>;
    fn count(&self) -> Result<u64, StoreError>;
    /// Every key, ordered by name.
    fn all(&self) -> Result<Vec<Entry>, StoreError>;
    /// Every key as the `sync.data` JSON object (see `SELECT_DATA_ENTRIES`).
    fn data_json(&self) -> Result<String, StoreError>;
    /// One page of a listing (`SELECT_PAGE`): `(name, data fragment)` rows,
    /// at most `range.limit` of them and, past the first, no more than
    /// `range.budget` bytes; `true` when more rows remain after them.
    fn page(&self, range: &PageRange<'_>) -> Result<(Vec<(String, String)>, bool), StoreError>;
    /// Runs `f` as one transaction: when it fails, nothing it wrote stays.
    /// Stores without transactions (none today) just run it.
    fn atomically(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        f()
    }
    fn meta_get(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn meta_set(&self, name: &str, value: &str) -> Result<(), StoreError>;
    /// The Y document's stored rows in order (`SELECT_YDOC`; ybridge.rs).
    fn y_rows(&self) -> Result<Vec<String>, StoreError>;
    /// Appends one row to the Y document's storage.
    fn y_append(&self, row: &str) -> Result<(), StoreError>;
    /// Replaces all of the Y document's rows (compaction, first snapshot).
    fn y_replace(&self, rows: &[String]) -> Result<(), StoreError>;
}

/// The `KeyStore` methods a wrapper store (`Mirrored`, `Bridged`) passes
/// to `self.inner` untouched: whole-instance reads, the `meta` rows and the
/// Y document's rows.
macro_rules! forward_untouched {
    () => {
        fn all(&self) -> Result<Vec<Entry>, StoreError> {
            self.inner.all()
        }

        fn data_json(&self) -> Result<String, StoreError> {
            self.inner.data_json()
        }

        fn page(&self, range: &PageRange<'_>) -> Result<(Vec<(String, String)>, bool), StoreError> {
            self.inner.page(range)
        }

        fn meta_get(&self, name: &str) -> Result<Option<String>, StoreError> {
            self.inner.meta_get(name)
        }

        fn meta_set(&self, name: &str, value: &str) -> Result<(), StoreError> {
            self.inner.meta_set(name, value)
        }

        fn y_rows(&self) -> Result<Vec<String>, StoreError> {
            self.inner.y_rows()
        }

        fn y_append(&self, row: &str) -> Result<(), StoreError> {
            self.inner.y_append(row)
        }

        fn y_replace(&self, rows: &[String]) -> Result<(), StoreError> {
            self.inner.y_replace(rows)
        }
    };
}
pub(crate) use forward_untouched;

// --- SQL --------------------------------------------------------------------
// Every statement is a constant with `?` placeholders; nothing is built from input.

/// The `keys` table exactly as storage.md gives it.
pub const CREATE_KEYS: &str = "CREATE TABLE IF NOT EXISTS keys (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,        -- JSON-encoded value
  type TEXT NOT NULL,         -- text | json | image | file | markdown
  content_type TEXT,
  readonly INTEGER NOT NULL DEFAULT 0,
  visible INTEGER NOT NULL DEFAULT 1,
  hardcoded INTEGER NOT NULL DEFAULT 0,
  template INTEGER NOT NULL DEFAULT 0,
  tags TEXT,                  -- JSON array
  extra TEXT,                 -- JSON object: attribute fields the server does not model
  updated_at INTEGER NOT NULL -- ms
)";

/// Schema version, instance id and read-only flag, one row each.
pub const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Column order of every `SELECT` below, which `read_entry` reads in.
pub const SELECT_KEY: &str = "SELECT name, value, type, content_type, readonly, visible, \
     hardcoded, template, tags, extra, updated_at FROM keys WHERE name = ?";
pub const SELECT_ALL_KEYS: &str = "SELECT name, value, type, content_type, readonly, visible, \
     hardcoded, template, tags, extra, updated_at FROM keys ORDER BY name";

/// Every key as one `"<name>":{"value":…,"attributes":{…},"updatedAt":…}`
/// fragment of the `sync.data` map, assembled by SQLite: a 2,000-key sync
/// then crosses from SQLite to us as 2,000 strings instead of 22,000 cells.
/// It mirrors `protocol::encode_data` (same fields, defaults and order; the
/// unit tests compare the two), with the same tolerance of odd legacy rows.
/// One fragment per row, not one string: a Durable Object's SQLite caps a
/// single string at 2 MB.
/// The SQL expression of one `SELECT_DATA_ENTRIES` fragment (a macro so
/// that the listing below can use the very same text).
macro_rules! data_entry_sql {
    () => {
        "json_quote(name) || ':{\"value\":' \
     || (CASE WHEN json_valid(value) THEN value ELSE json_quote(value) END) \
     || ',\"attributes\":{\"type\":' || json_quote(CASE WHEN type IN \
        ('text', 'json', 'image', 'file', 'markdown', 'document') THEN type ELSE 'text' END) \
     || ',\"readonly\":' || (CASE WHEN readonly THEN 'true' ELSE 'false' END) \
     || ',\"visible\":' || (CASE WHEN visible THEN 'true' ELSE 'false' END) \
     || ',\"hardcoded\":' || (CASE WHEN hardcoded THEN 'true' ELSE 'false' END) \
     || ',\"template\":' || (CASE WHEN template THEN 'true' ELSE 'false' END) \
     || ',\"tags\":' || (CASE WHEN json_valid(tags) AND json_type(tags) = 'array' \
        THEN json(tags) ELSE '[]' END) \
     || (CASE WHEN content_type IS NOT NULL \
        THEN ',\"contentType\":' || json_quote(content_type) ELSE '' END) \
     || (CASE WHEN json_valid(extra) AND json_type(extra) = 'object' AND json(extra) <> '{}' \
        THEN ',' || substr(json(extra), 2, length(json(extra)) - 2) ELSE '' END) \
     || '},\"updatedAt\":' || updated_at || '}'"
    };
}

pub const SELECT_DATA_ENTRIES: &str =
    concat!("SELECT ", data_entry_sql!(), " FROM keys ORDER BY name");

/// One page of a listing (data-api.md): the name and its data fragment, in
/// key order, from `?1` (inclusive) and after `?2` (exclusive) to below `?3`,
/// only keys whose content tags hold `?4` when it is not NULL. The range is
/// an index search: 100,000 keys are never all read for one page.
pub const SELECT_PAGE: &str = concat!(
    "SELECT name, ",
    data_entry_sql!(),
    " FROM keys WHERE name >= ?1 AND name > ?2 AND name < ?3 \
     AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(tags) \
     AND json_type(tags) = 'array' THEN tags ELSE '[]' END) AS t WHERE t.value = ?4)) \
     ORDER BY name"
);

/// The instance's total size (size.rs): the bytes of every key's sync
/// fragment, summed inside SQLite so nothing crosses but the number.
pub const SUM_DATA_BYTES: &str = concat!(
    "SELECT COALESCE(SUM(length(CAST(",
    data_entry_sql!(),
    " AS BLOB))), 0) AS n FROM keys"
);

/// The bounds of one listing page, bound to `SELECT_PAGE` in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange<'a> {
    pub from: &'a str,
    pub after: &'a str,
    pub below: &'a str,
    pub tag: Option<&'a str>,
    pub limit: usize,
    pub budget: usize,
}

impl PageRange<'_> {
    pub fn args(&self) -> [SqlArg<'_>; 4] {
        [
            SqlArg::Text(self.from),
            SqlArg::Text(self.after),
            SqlArg::Text(self.below),
            self.tag.map_or(SqlArg::Null, SqlArg::Text),
        ]
    }
}

/// Collects page rows from any row iterator: stops at `limit` rows or once
/// past `budget` bytes, and reports whether another row was there.
pub fn take_page<E>(
    rows: impl Iterator<Item = Result<(String, String), E>>,
    range: &PageRange<'_>,
) -> Result<(Vec<(String, String)>, bool), E> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        let row = row?;
        if out.len() >= range.limit || (!out.is_empty() && bytes >= range.budget) {
            return Ok((out, true));
        }
        bytes += row.0.len() + row.1.len();
        out.push(row);
    }
    Ok((out, false))
}

/// Joins `SELECT_DATA_ENTRIES` fragments into the `sync.data` object.
pub fn join_data_entries(fragments: impl IntoIterator<Item = String>) -> String {
    let mut out = String::from("{");
    for (i, fragment) in fragments.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&fragment);
    }
    out.push('}');
    out
}

/// `INSERT_KEY` and `UPDATE_KEY` take the same arguments (`write_args`), name last.
pub const INSERT_KEY: &str = "INSERT INTO keys (value, type, content_type, readonly, visible, \
     hardcoded, template, tags, extra, updated_at, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub const UPDATE_KEY: &str = "UPDATE keys SET value = ?, type = ?, content_type = ?, \
     readonly = ?, visible = ?, hardcoded = ?, template = ?, tags = ?, extra = ?, \
     updated_at = ? WHERE name = ?";
/// `RETURNING` tells whether a row existed without relying on change counters.
pub const DELETE_KEY: &str = "DELETE FROM keys WHERE name = ? RETURNING name";
pub const DELETE_ALL_KEYS: &str = "DELETE FROM keys";
pub const COUNT_KEYS: &str = "SELECT COUNT(*) FROM keys";

/// The Y document of an instance that has had a MindCache 3 client
/// (yjs.md): snapshot parts, then the update log, each row base64 with a
/// prefix saying which (ybridge.rs). Created only then.
pub const CREATE_YDOC: &str =
    "CREATE TABLE IF NOT EXISTS ydoc (seq INTEGER PRIMARY KEY, data TEXT NOT NULL)";
pub const SELECT_YDOC: &str = "SELECT data FROM ydoc ORDER BY seq";
pub const INSERT_YDOC: &str = "INSERT INTO ydoc (data) VALUES (?)";
pub const DELETE_YDOC: &str = "DELETE FROM ydoc";

pub const SELECT_META: &str = "SELECT value FROM meta WHERE name = ?";
pub const UPSERT_META: &str = "INSERT INTO meta (name, value) VALUES (?, ?) \
     ON CONFLICT(name) DO UPDATE SET value = excluded.value";

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_INSTANCE_ID: &str = "instance_id";
pub const META_READ_ONLY: &str = "read_only";
/// The version of that flag (`instances.readonly_version` in D1).
pub const META_READ_ONLY_VERSION: &str = "read_only_version";

/// A bound SQL argument, borrowed so the (possibly 1.5 MB) value is copied
/// only once, into the engine's own parameter type. D1 statements
/// (`crate::db`) bind the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlArg<'a> {
    Text(&'a str),
    Int(i64),
    Null,
}

impl<'a> From<&'a str> for SqlArg<'a> {
    fn from(s: &'a str) -> Self {
        SqlArg::Text(s)
    }
}

impl From<i64> for SqlArg<'_> {
    fn from(i: i64) -> Self {
        SqlArg::Int(i)
    }
}

/// Flags are 0/1 integer columns.
impl From<bool> for SqlArg<'_> {
    fn from(b: bool) -> Self {
        SqlArg::Int(i64::from(b))
    }
}

impl From<Permission> for SqlArg<'_> {
    fn from(p: Permission) -> Self {
        SqlArg::Text(p.as_str())
    }
}

/// `None` binds NULL.
impl<'a, T: Into<SqlArg<'a>>> From<Option<T>> for SqlArg<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlArg::Null, Into::into)
    }
}

impl SqlArg<'_> {
    /// The value as bound through JavaScript (D1 and the object's SQL API).
    pub fn to_js(self) -> JsValue {
        match self {
            SqlArg::Text(s) => JsValue::from_str(s),
            // Timestamps, flags and levels are far inside 2^53.
            SqlArg::Int(i) => JsValue::from_f64(i as f64),
            SqlArg::Null => JsValue::NULL,
        }
    }
}

impl KeyRow<'_> {
    /// Arguments for `INSERT_KEY` / `UPDATE_KEY`, in placeholder order.
    /// `tags`/`extra` are the only owned parts, so they are passed in.
    pub fn write_args<'a>(&'a self, tags: &'a str, extra: Option<&'a str>) -> [SqlArg<'a>; 11] {
        let a = self.attributes;
        let flag = |b: bool| SqlArg::Int(i64::from(b));
        [
            SqlArg::Text(self.value),
            SqlArg::Text(a.key_type.as_str()),
            a.content_type.as_deref().map_or(SqlArg::Null, SqlArg::Text),
            flag(a.readonly),
            flag(a.visible),
            flag(a.hardcoded),
            flag(a.template),
            SqlArg::Text(tags),
            extra.map_or(SqlArg::Null, SqlArg::Text),
            SqlArg::Int(self.updated_at),
            SqlArg::Text(self.key),
        ]
    }
}

/// A column's value as a backend hands it to `read_entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Null,
    Int(i64),
    Text(String),
}

impl Column {
    pub fn text(self, column: &str) -> Result<String, StoreError> {
        match self {
            Column::Text(s) => Ok(s),
            other => Err(StoreError(format!(
                "column {column}: expected text, got {other:?}"
            ))),
        }
    }

    pub fn opt_text(self, column: &str) -> Result<Option<String>, StoreError> {
        match self {
            Column::Null => Ok(None),
            other => other.text(column).map(Some),
        }
    }

    pub fn int(self, column: &str) -> Result<i64, StoreError> {
        match self {
            Column::Int(i) => Ok(i),
            other => Err(StoreError(format!(
                "column {column}: expected integer, got {other:?}"
            ))),
        }
    }
}

/// Reads one `keys` row in `SELECT_KEY` column order: `next` yields each
/// column's value in turn (its name is for errors). Both stores read through
/// this, so the column order is known here only.
pub fn read_entry(
    mut next: impl FnMut(&str) -> Result<Column, StoreError>,
) -> Result<Entry, StoreError> {
    let name = next("name")?.text("name")?;
    let value = next("value")?.text("value")?;
    let key_type = next("type")?.text("type")?;
    let content_type = next("content_type")?.opt_text("content_type")?;
    let mut flag = |column: &str| Ok::<_, StoreError>(next(column)?.int(column)? != 0);
    let mut attributes = Attributes {
        // Rows written before a type existed must still load: fall back to text.
        key_type: KeyType::parse(&key_type).unwrap_or_default(),
        readonly: flag("readonly")?,
        visible: flag("visible")?,
        hardcoded: flag("hardcoded")?,
        template: flag("template")?,
        tags: Vec::new(),
        content_type,
        extra: Vec::new(),
    };
    let tags = next("tags")?.opt_text("tags")?;
    let extra = next("extra")?.opt_text("extra")?;
    let updated_at = next("updated_at")?.int("updated_at")?;
    let bad = |e: String| StoreError(format!("key {name:?}: {e}"));
    attributes.set_tags_json(tags.as_deref()).map_err(bad)?;
    attributes.set_extra_json(extra.as_deref()).map_err(bad)?;
    // A row that is not JSON (only possible from outside this code) is
    // served as a JSON string rather than failing every sync of the instance.
    let value = match serde_json::from_str::<&RawValue>(&value) {
        Ok(raw) => raw.to_owned(),
        Err(_) => serde_json::to_string(&value)
            .ok()
            .and_then(|quoted| RawValue::from_string(quoted).ok())
            .ok_or_else(|| bad("value is not JSON".to_owned()))?,
    };
    Ok(Entry {
        key: name,
        value,
        attributes,
        updated_at,
    })
}

/// The key count, cached between calls of one object lifetime. `None` until
/// first counted; every write through the store keeps it exact afterwards.
#[derive(Debug, Default)]
pub struct KeyCount(Cell<Option<u64>>);

/// The statement a `put` runs.
pub fn put_sql(is_new: bool) -> &'static str {
    if is_new {
        INSERT_KEY
    } else {
        UPDATE_KEY
    }
}

impl KeyCount {
    pub fn get_or_count(
        &self,
        count: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        if let Some(n) = self.0.get() {
            return Ok(n);
        }
        let n = count()?;
        self.0.set(Some(n));
        Ok(n)
    }

    /// After a `put`: a new key counts one more.
    pub fn put(&self, is_new: bool) {
        if is_new {
            self.inserted();
        }
    }

    pub fn inserted(&self) {
        self.0.set(self.0.get().map(|n| n + 1));
    }

    pub fn deleted(&self) {
        self.0.set(self.0.get().map(|n| n.saturating_sub(1)));
    }

    pub fn cleared(&self) {
        self.0.set(Some(0));
    }

    /// After a rolled-back transaction: count again when next asked.
    pub fn forget(&self) {
        self.0.set(None);
    }
}

// --- Schema -----------------------------------------------------------------

/// One step of a schema version.
#[derive(Debug, Clone, Copy)]
pub enum SchemaStep {
    Execute(&'static str),
    /// Runs `add` only when `probe` fails, i.e. when the column is missing.
    AddColumnIfMissing {
        probe: &'static str,
        add: &'static str,
    },
}

/// Schema versions in order; version N is `MIGRATIONS[N - 1]`. Append only:
/// a released step is never edited, because objects already ran it.
pub const MIGRATIONS: &[&[SchemaStep]] = &[
    // v1: the keys table. Objects created from the seed's table (before
    // attribute extras existed) already have `keys` without `extra`.
    &[
        SchemaStep::Execute(CREATE_KEYS),
        SchemaStep::AddColumnIfMissing {
            probe: "SELECT extra FROM keys LIMIT 0",
            add: "ALTER TABLE keys ADD COLUMN extra TEXT",
        },
    ],
];

pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the object's schema to `SCHEMA_VERSION`, recording each version as
/// it completes. Run it when the object is constructed, before any message.
/// Returns the version the object is now at; an object already at a newer
/// version (a rollback) is left alone, since steps are additive.
pub fn migrate<S: KeyStore + ?Sized>(store: &S) -> Result<u32, StoreError> {
    store.execute(CREATE_META)?;
    let current = match store.meta_get(META_SCHEMA_VERSION)? {
        None => 0,
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| StoreError(format!("schema version {v:?} is not a number")))?,
    };
    for (done, steps) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for step in steps.iter() {
            match *step {
                SchemaStep::Execute(sql) => store.execute(sql)?,
                SchemaStep::AddColumnIfMissing { probe, add } => {
                    if store.execute(probe).is_err() {
                        store.execute(add)?;
                    }
                }
            }
        }
        store.meta_set(META_SCHEMA_VERSION, &(done + 1).to_string())?;
    }
    Ok(current.max(SCHEMA_VERSION))
}

/// What the Worker tells the object about its instance, kept in `meta` so
/// messages need no D1 round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceMeta {
    pub instance_id: String,
    pub read_only: bool,
    /// The D1 version of `read_only`: only a newer one replaces it.
    pub read_only_version: i64,
}

impl InstanceMeta {
    /// Takes `flag` if it is newer than the one held (protocol.md §8).
    pub fn apply(&mut self, flag: crate::instance::internal::ReadOnlyFlag) {
        if flag.version > self.read_only_version {
            self.read_only = flag.read_only;
            self.read_only_version = flag.version;
        }
    }
}

/// `None` until the Worker has told this object which instance it is.
pub fn load_meta<S: KeyStore + ?Sized>(store: &S) -> Result<Option<InstanceMeta>, StoreError> {
    let Some(instance_id) = store.meta_get(META_INSTANCE_ID)? else {
        return Ok(None);
    };
    let read_only = store.meta_get(META_READ_ONLY)?.as_deref() == Some("1");
    let read_only_version = store
        .meta_get(META_READ_ONLY_VERSION)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Some(InstanceMeta {
        instance_id,
        read_only,
        read_only_version,
    }))
}

pub fn save_meta<S: KeyStore + ?Sized>(store: &S, meta: &InstanceMeta) -> Result<(), StoreError> {
    store.meta_set(META_INSTANCE_ID, &meta.instance_id)?;
    store.meta_set(META_READ_ONLY, if meta.read_only { "1" } else { "0" })?;
    store.meta_set(META_READ_ONLY_VERSION, &meta.read_only_version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::sqlite_store::SqliteStore;

    fn store() -> SqliteStore {
        let s = SqliteStore::in_memory();
        migrate(&s).unwrap();
        s
    }

    fn attrs(json: &str) -> Attributes {
        Attributes::from_json(json).unwrap()
    }

    #[test]
    fn sql_built_data_map_equals_the_rust_encoder() {
        let s = store();
        assert_eq!(s.data_json().unwrap(), "{}");
        let rows = [
            ("plain", r#""text""#, "{}"),
            (
                "obj \"quoted\" é",
                r#"{"a": [1, 2.5, null], "b": {"c": "d"}}"#,
                r#"{"type":"json","tags":["x","y\"z"]}"#,
            ),
            (
                "flags",
                "null",
                r#"{"readonly":true,"visible":false,"hardcoded":true,"template":true,"contentType":"image/png"}"#,
            ),
            (
                "extras",
                "42",
                r#"{"contentTags":["c"],"systemTags":[],"n":null,"deep":{"k":[{}]}}"#,
            ),
        ];
        for (i, (key, value, a)) in rows.iter().enumerate() {
            let attributes = attrs(a);
            s.insert(KeyRow {
                key,
                value,
                attributes: &attributes,
                updated_at: 1_700_000_000_000 + i as i64,
            })
            .unwrap();
        }
        let from_sql: serde_json::Value = serde_json::from_str(&s.data_json().unwrap()).unwrap();
        let from_rust: serde_json::Value =
            serde_json::from_str(&crate::instance::protocol::encode_data(&s.all().unwrap()))
                .unwrap();
        assert_eq!(from_sql, from_rust);
        assert_eq!(
            from_sql["extras"]["attributes"]["n"],
            serde_json::Value::Null
        );
        assert!(from_sql["extras"]["attributes"].get("n").is_some());
    }

    #[test]
    fn sql_built_data_map_tolerates_legacy_rows() {
        let s = store();
        s.execute(
            "INSERT INTO keys (name, value, type, readonly, visible, hardcoded, template, tags, extra, updated_at)
             VALUES ('old', 'not json', 'video', 0, 1, 0, 0, NULL, '{}', 5)",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.data_json().unwrap()).unwrap();
        assert_eq!(v["old"]["value"], "not json");
        assert_eq!(v["old"]["attributes"]["type"], "text");
        assert_eq!(v["old"]["attributes"]["tags"], serde_json::json!([]));
        assert_eq!(v["old"]["updatedAt"], 5);
    }

    fn put(s: &SqliteStore, key: &str, value: &str, a: &Attributes, at: i64) {
        let row = KeyRow {
            key,
            value,
            attributes: a,
            updated_at: at,
        };
        if s.get(key).unwrap().is_some() {
            s.update(row).unwrap();
        } else {
            s.insert(row).unwrap();
        }
    }

    fn sql_count(s: &SqliteStore) -> u64 {
        s.conn
            .query_row(COUNT_KEYS, [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    #[test]
    fn migrate_creates_the_schema_and_is_idempotent() {
        let s = SqliteStore::in_memory();
        assert_eq!(migrate(&s).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            s.meta_get(META_SCHEMA_VERSION).unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(migrate(&s).unwrap(), SCHEMA_VERSION);
        let cols: Vec<String> = s
            .conn
            .prepare("SELECT name FROM pragma_table_info('keys')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            cols,
            [
                "name",
                "value",
                "type",
                "content_type",
                "readonly",
                "visible",
                "hardcoded",
                "template",
                "tags",
                "extra",
                "updated_at"
            ]
        );
    }

    #[test]
    fn migrate_upgrades_a_seed_table_in_place() {
        let s = SqliteStore::in_memory();
        s.execute(
            "CREATE TABLE keys (name TEXT PRIMARY KEY, value TEXT NOT NULL, type TEXT NOT NULL,
             content_type TEXT, readonly INTEGER NOT NULL DEFAULT 0,
             visible INTEGER NOT NULL DEFAULT 1, hardcoded INTEGER NOT NULL DEFAULT 0,
             template INTEGER NOT NULL DEFAULT 0, tags TEXT, updated_at INTEGER NOT NULL)",
        )
        .unwrap();
        s.execute(
            "INSERT INTO keys (name, value, type, readonly, tags, updated_at)
             VALUES ('old', '{\"a\":1}', 'json', 1, '[\"t\"]', 5)",
        )
        .unwrap();
        assert_eq!(migrate(&s).unwrap(), 1);
        let e = s.get("old").unwrap().unwrap();
        assert_eq!(e.value.get(), r#"{"a":1}"#);
        assert_eq!(e.attributes.key_type, KeyType::Json);
        assert!(e.attributes.readonly && e.attributes.visible);
        assert_eq!(e.attributes.tags, ["t"]);
        assert_eq!(e.updated_at, 5);
        // The new column works.
        put(&s, "new", "1", &attrs(r#"{"systemTags":["x"]}"#), 6);
        assert_eq!(s.get("new").unwrap().unwrap().attributes.extra.len(), 1);
    }

    #[test]
    fn migrate_leaves_a_newer_schema_alone_and_rejects_garbage() {
        let s = SqliteStore::in_memory();
        s.execute(CREATE_META).unwrap();
        s.meta_set(META_SCHEMA_VERSION, "99").unwrap();
        assert_eq!(migrate(&s).unwrap(), 99);
        assert!(s.get("k").is_err(), "no keys table was created");
        s.meta_set(META_SCHEMA_VERSION, "v2").unwrap();
        assert!(migrate(&s).is_err());
    }

    #[test]
    fn crud_round_trip() {
        let s = store();
        assert!(s.get("a").unwrap().is_none());
        assert_eq!(s.count().unwrap(), 0);
        let a = attrs(
            r#"{"type":"image","contentType":"image/png","tags":["x"],"readonly":true,
               "visible":false,"hardcoded":true,"template":true,"contentTags":{"k":[1, 2]}}"#,
        );
        put(&s, "b", "[1, 2]", &a, 10);
        put(&s, "a", "null", &Attributes::default(), 11);
        let b = s.get("b").unwrap().unwrap();
        assert_eq!(b.key, "b");
        assert_eq!(b.value.get(), "[1, 2]");
        assert_eq!(b.attributes, a);
        assert_eq!(b.attributes.to_json(), a.to_json());
        assert_eq!(b.updated_at, 10);
        let all = s.all().unwrap();
        let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(all[0].value.get(), "null");
        assert_eq!(all[0].attributes, Attributes::default());
        // Update replaces every column, extras and content type included.
        put(&s, "b", "\"s\"", &Attributes::default(), 12);
        let b = s.get("b").unwrap().unwrap();
        assert_eq!(b.value.get(), "\"s\"");
        assert_eq!(b.attributes, Attributes::default());
        assert_eq!(b.updated_at, 12);
        assert_eq!(s.count().unwrap(), 2);
        assert!(s.delete("b").unwrap());
        assert!(!s.delete("b").unwrap());
        assert_eq!(s.count().unwrap(), 1);
        s.clear().unwrap();
        assert!(s.all().unwrap().is_empty());
        assert_eq!(s.count().unwrap(), 0);
    }

    #[test]
    fn insert_of_an_existing_key_and_update_of_a_missing_key_fail() {
        let s = store();
        let d = Attributes::default();
        let row = |key| KeyRow {
            key,
            value: "1",
            attributes: &d,
            updated_at: 1,
        };
        s.insert(row("k")).unwrap();
        assert!(s.insert(row("k")).is_err());
        assert!(s.update(row("missing")).is_err());
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn cached_count_stays_exact() {
        let s = store();
        let d = Attributes::default();
        for i in 0..5 {
            put(&s, &format!("k{i}"), "1", &d, 1);
            assert_eq!(s.count().unwrap(), sql_count(&s));
        }
        put(&s, "k1", "2", &d, 2);
        assert_eq!(s.count().unwrap(), 5);
        s.delete("k0").unwrap();
        s.delete("nope").unwrap();
        assert_eq!(s.count().unwrap(), sql_count(&s));
        s.clear().unwrap();
        assert_eq!(s.count().unwrap(), 0);
        put(&s, "z", "1", &d, 3);
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(sql_count(&s), 1);
    }

    #[test]
    fn count_is_read_from_sql_when_first_asked() {
        let s = store();
        s.execute("INSERT INTO keys (name, value, type, updated_at) VALUES ('a', '1', 'text', 1), ('b', '2', 'text', 1)")
            .unwrap();
        assert_eq!(s.count().unwrap(), 2);
    }

    #[test]
    fn meta_round_trip() {
        let s = store();
        assert_eq!(load_meta(&s).unwrap(), None);
        let m = InstanceMeta {
            instance_id: "inst-1".into(),
            read_only: true,
            read_only_version: 42,
        };
        save_meta(&s, &m).unwrap();
        assert_eq!(load_meta(&s).unwrap(), Some(m));
        save_meta(
            &s,
            &InstanceMeta {
                instance_id: "inst-1".into(),
                read_only: false,
                read_only_version: 43,
            },
        )
        .unwrap();
        let loaded = load_meta(&s).unwrap().unwrap();
        assert_eq!((loaded.read_only, loaded.read_only_version), (false, 43));
    }

    #[test]
    fn odd_stored_rows_still_load() {
        let s = store();
        s.execute(
            "INSERT INTO keys (name, value, type, tags, extra, updated_at)
             VALUES ('legacy', 'plain words', 'video', NULL, NULL, 1)",
        )
        .unwrap();
        let e = s.get("legacy").unwrap().unwrap();
        assert_eq!(e.value.get(), "\"plain words\"");
        assert_eq!(e.attributes, Attributes::default());
        s.execute("UPDATE keys SET tags = 'nope' WHERE name = 'legacy'")
            .unwrap();
        assert!(s.get("legacy").is_err());
    }

    #[test]
    fn write_args_follow_the_placeholders() {
        let a = attrs(r#"{"type":"file","contentType":"a/b","readonly":true}"#);
        let row = KeyRow {
            key: "k",
            value: "1",
            attributes: &a,
            updated_at: 7,
        };
        let args = row.write_args("[]", None);
        assert_eq!(
            args,
            [
                SqlArg::Text("1"),
                SqlArg::Text("file"),
                SqlArg::Text("a/b"),
                SqlArg::Int(1),
                SqlArg::Int(1),
                SqlArg::Int(0),
                SqlArg::Int(0),
                SqlArg::Text("[]"),
                SqlArg::Null,
                SqlArg::Int(7),
                SqlArg::Text("k"),
            ]
        );
        assert_eq!(INSERT_KEY.matches('?').count(), args.len());
        assert_eq!(UPDATE_KEY.matches('?').count(), args.len());
    }
}
