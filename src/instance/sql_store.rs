//! The `KeyStore` of the deployed object, over the Durable Object's SQLite
//! (`state.storage().sql()`). It runs the same SQL constants as the native
//! test store. Create one per object and keep it in the object: it caches the
//! key count, so all key writes must go through it.
#![cfg(target_arch = "wasm32")]

use super::store::{
    join_data_entries, put_sql, read_entry, take_page, Column, Entry, KeyCount, KeyRow, KeyStore,
    PageRange, SqlArg, StoreError, COUNT_KEYS, CREATE_YDOC, DELETE_ALL_KEYS, DELETE_KEY,
    DELETE_YDOC, INSERT_YDOC, SELECT_ALL_KEYS, SELECT_DATA_ENTRIES, SELECT_KEY, SELECT_META,
    SELECT_PAGE, SELECT_YDOC, UPSERT_META,
};
use worker::js_sys;
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{SqlCursor, SqlStorage, SqlStorageValue};

#[wasm_bindgen]
extern "C" {
    /// The runtime's `SqlStorage` and cursor, for the one query whose result
    /// is better left in JavaScript (the `sync` message).
    type JsSqlStorage;
    #[wasm_bindgen(method, catch, js_name = exec)]
    fn exec_no_args(this: &JsSqlStorage, query: &str) -> Result<JsSqlCursor, JsValue>;
    type JsSqlCursor;
    #[wasm_bindgen(method, catch)]
    fn raw(this: &JsSqlCursor) -> Result<js_sys::Iterator, JsValue>;

    /// The object's `DurableObjectStorage`, for `transactionSync`, which
    /// workers-rs does not wrap. The callback runs before the call returns
    /// (a stack closure); its `Err` is thrown, which rolls the transaction back.
    pub type JsStorage;
    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(
        this: &JsStorage,
        f: &mut dyn FnMut() -> Result<(), JsValue>,
    ) -> Result<JsValue, JsValue>;
}

pub struct SqlStore {
    sql: SqlStorage,
    storage: JsValue,
    count: KeyCount,
}

impl SqlStore {
    /// `storage` is the object's `DurableObjectStorage` (for transactions).
    pub fn new(sql: SqlStorage, storage: JsValue) -> Self {
        SqlStore {
            sql,
            storage,
            count: KeyCount::default(),
        }
    }

    /// Binds straight to JS values: a `SqlStorageValue::String` would copy the
    /// value once more on its way to JS.
    fn run(&self, query: &str, args: &[SqlArg<'_>]) -> Result<SqlCursor, StoreError> {
        let js: Vec<JsValue> = args.iter().map(|a| a.to_js()).collect();
        self.sql.exec_raw(query, js).map_err(err)
    }

    /// Every row of a query, as positional values.
    fn rows(
        &self,
        query: &str,
        args: &[SqlArg<'_>],
    ) -> Result<Vec<Vec<SqlStorageValue>>, StoreError> {
        self.run(query, args)?
            .raw()
            .map(|r| r.map_err(err))
            .collect()
    }

    /// The whole `sync` message as a JavaScript string: SQLite renders each
    /// key (`SELECT_DATA_ENTRIES`) and JavaScript joins them, so megabytes of
    /// state are not copied into wasm and back on every connect.
    pub fn sync_message(&self, instance_id: &str) -> Result<JsValue, StoreError> {
        let sql: &JsSqlStorage = self.sql.as_ref().unchecked_ref();
        let rows = sql
            .exec_no_args(SELECT_DATA_ENTRIES)
            .and_then(|cursor| cursor.raw())
            .map_err(|e| err(e.into()))?;
        let rows = js_sys::Array::from(&rows);
        // Each row is a one-element array, whose string form is the element.
        let data = rows.join(",");
        let tail = format!(
            r#"}},"instanceId":{}}}"#,
            serde_json::to_string(instance_id).unwrap_or_else(|_| "\"\"".into())
        );
        Ok(js_sys::JsString::from(r#"{"type":"sync","data":{"#)
            .concat(&data)
            .concat(&JsValue::from_str(&tail))
            .into())
    }

    /// Inserts (`is_new`) or updates a key row, keeping the count.
    fn write(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        let tags = row.attributes.tags_json();
        let extra = row.attributes.extra_json();
        self.run(put_sql(is_new), &row.write_args(&tags, extra.as_deref()))?;
        self.count.put(is_new);
        Ok(())
    }
}

/// Storage failures are logged here, where their detail is known; what a
/// client sees is a generic line (protocol.md §6: no internal text).
fn err(e: worker::Error) -> StoreError {
    crate::log_error!("instance storage: {e}");
    StoreError(e.to_string())
}

/// A value as `read_entry` takes it. JS numbers outside 2^53 arrive as
/// floats; keep what precision there is.
fn column(v: SqlStorageValue, column: &str) -> Result<Column, StoreError> {
    match v {
        SqlStorageValue::Null => Ok(Column::Null),
        SqlStorageValue::String(s) => Ok(Column::Text(s)),
        SqlStorageValue::Integer(i) => Ok(Column::Int(i)),
        SqlStorageValue::Boolean(b) => Ok(Column::Int(i64::from(b))),
        SqlStorageValue::Float(f) if f.is_finite() => Ok(Column::Int(f as i64)),
        other => Err(StoreError(format!("column {column}: unexpected {other:?}"))),
    }
}

/// Converts one `SELECT_KEY`-ordered row.
fn entry(row: Vec<SqlStorageValue>) -> Result<Entry, StoreError> {
    let mut cols = row.into_iter();
    read_entry(|name| match cols.next() {
        Some(v) => column(v, name),
        None => Err(StoreError(format!("row has no column {name}"))),
    })
}

impl KeyStore for SqlStore {
    fn execute(&self, query: &str) -> Result<(), StoreError> {
        self.run(query, &[]).map(|_| ())
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.rows(SELECT_KEY, &[SqlArg::Text(key)])?
            .into_iter()
            .next()
            .map(entry)
            .transpose()
    }

    fn put(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        self.write(row, is_new)
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let existed = !self.rows(DELETE_KEY, &[SqlArg::Text(key)])?.is_empty();
        if existed {
            self.count.deleted();
        }
        Ok(existed)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.run(DELETE_ALL_KEYS, &[])?;
        self.count.cleared();
        Ok(())
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.count.get_or_count(|| {
            let first = self.rows(COUNT_KEYS, &[])?.into_iter().next();
            let n = match first.and_then(|r| r.into_iter().next()) {
                Some(v) => column(v, "COUNT(*)")?.int("COUNT(*)")?,
                None => 0,
            };
            Ok(n.max(0) as u64)
        })
    }

    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        self.run(SELECT_ALL_KEYS, &[])?
            .raw()
            .map(|r| r.map_err(err).and_then(entry))
            .collect()
    }

    fn data_json(&self) -> Result<String, StoreError> {
        let fragments = self
            .run(SELECT_DATA_ENTRIES, &[])?
            .raw()
            .map(|row| match row.map_err(err)?.into_iter().next() {
                Some(SqlStorageValue::String(s)) => Ok(s),
                _ => Err(StoreError("sync entry is not text".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(join_data_entries(fragments))
    }

    fn page(&self, range: &PageRange<'_>) -> Result<(Vec<(String, String)>, bool), StoreError> {
        // The cursor is read lazily, so a page stops reading at its budget.
        let rows = self.run(SELECT_PAGE, &range.args())?.raw().map(|row| {
            let mut cols = row.map_err(err)?.into_iter();
            match (cols.next(), cols.next()) {
                (Some(SqlStorageValue::String(name)), Some(SqlStorageValue::String(entry))) => {
                    Ok((name, entry))
                }
                _ => Err(StoreError("listing row is not (text, text)".into())),
            }
        });
        take_page(rows, range)
    }

    fn atomically(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let storage: &JsStorage = self.storage.unchecked_ref();
        let mut failure = None;
        let mut body = || {
            f().map_err(|e| {
                failure = Some(e);
                JsValue::from_str("rolled back")
            })
        };
        match storage.transaction_sync(&mut body) {
            Ok(_) => Ok(()),
            Err(thrown) => {
                self.count.forget();
                Err(failure.unwrap_or_else(|| err(worker::Error::JsError(format!("{thrown:?}")))))
            }
        }
    }

    fn meta_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self
            .rows(SELECT_META, &[SqlArg::Text(name)])?
            .into_iter()
            .next()
        {
            None => Ok(None),
            Some(row) => match row.into_iter().next() {
                Some(v) => column(v, "meta.value")?.opt_text("meta.value"),
                None => Ok(None),
            },
        }
    }

    fn meta_set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.run(UPSERT_META, &[SqlArg::Text(name), SqlArg::Text(value)])
            .map(|_| ())
    }

    fn y_rows(&self) -> Result<Vec<String>, StoreError> {
        self.rows(SELECT_YDOC, &[])?
            .into_iter()
            .map(|row| match row.into_iter().next() {
                Some(SqlStorageValue::String(s)) => Ok(s),
                _ => Err(StoreError("ydoc row is not text".into())),
            })
            .collect()
    }

    fn y_append(&self, row: &str) -> Result<(), StoreError> {
        self.run(INSERT_YDOC, &[SqlArg::Text(row)]).map(|_| ())
    }

    fn y_replace(&self, rows: &[String]) -> Result<(), StoreError> {
        self.run(CREATE_YDOC, &[])?;
        self.run(DELETE_YDOC, &[])?;
        for row in rows {
            self.y_append(row)?;
        }
        Ok(())
    }
}
