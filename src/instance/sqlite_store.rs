//! A `KeyStore` over an in-process SQLite (rusqlite, tests only) that runs the
//! very SQL constants the Durable Object runs, so the SQL is tested natively.

use super::store::{
    join_data_entries, put_sql, read_entry, take_page, Column, Entry, KeyCount, KeyRow, KeyStore,
    PageRange, SqlArg, StoreError, COUNT_KEYS, CREATE_YDOC, DELETE_ALL_KEYS, DELETE_KEY,
    DELETE_YDOC, INSERT_YDOC, SELECT_ALL_KEYS, SELECT_DATA_ENTRIES, SELECT_KEY, SELECT_META,
    SELECT_PAGE, SELECT_YDOC, UPSERT_META,
};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use std::cell::Cell;

pub struct SqliteStore {
    pub conn: Connection,
    count: KeyCount,
    /// Makes every write fail, to reach the engine's INTERNAL path.
    pub fail_writes: Cell<bool>,
    /// Lets this many more writes succeed, then fails the rest.
    pub fail_after: Cell<Option<u32>>,
}

impl SqliteStore {
    pub fn in_memory() -> Self {
        SqliteStore::wrap(Connection::open_in_memory().expect("in-memory SQLite"))
    }

    pub fn wrap(conn: Connection) -> Self {
        SqliteStore {
            conn,
            count: KeyCount::default(),
            fail_writes: Cell::new(false),
            fail_after: Cell::new(None),
        }
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.fail_writes.get() || self.fail_after.get() == Some(0) {
            return Err(StoreError("injected write failure".into()));
        }
        self.fail_after.set(self.fail_after.get().map(|n| n - 1));
        Ok(())
    }

    /// Inserts (`is_new`) or updates a key row, keeping the count.
    fn write(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        self.check_writable()?;
        let tags = row.attributes.tags_json();
        let extra = row.attributes.extra_json();
        let args = row.write_args(&tags, extra.as_deref());
        let changed = self
            .conn
            .execute(put_sql(is_new), rusqlite::params_from_iter(args.iter()))
            .map_err(err)?;
        if changed != 1 {
            return Err(StoreError(format!(
                "expected one row written, got {changed}"
            )));
        }
        self.count.put(is_new);
        Ok(())
    }
}

impl ToSql for SqlArg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            SqlArg::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlArg::Int(i) => ValueRef::Integer(i),
            SqlArg::Null => ValueRef::Null,
        }))
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

/// A `SELECT_KEY`-ordered row as an entry; the outer error is SQLite's.
fn entry(r: &Row<'_>) -> rusqlite::Result<Result<Entry, StoreError>> {
    let mut index = 0;
    Ok(read_entry(|column| {
        let value = match r.get_ref(index).map_err(err)? {
            ValueRef::Null => Column::Null,
            ValueRef::Integer(i) => Column::Int(i),
            ValueRef::Text(t) => Column::Text(String::from_utf8_lossy(t).into_owned()),
            other => {
                return Err(StoreError(format!(
                    "column {column}: unexpected {:?}",
                    other.data_type()
                )))
            }
        };
        index += 1;
        Ok(value)
    }))
}

impl KeyStore for SqliteStore {
    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        // execute_batch also accepts the SELECT probes, discarding their rows.
        self.conn.execute_batch(sql).map_err(err)
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.conn
            .query_row(SELECT_KEY, [key], entry)
            .optional()
            .map_err(err)?
            .transpose()
    }

    fn put(&self, row: KeyRow<'_>, is_new: bool) -> Result<(), StoreError> {
        self.write(row, is_new)
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.check_writable()?;
        let existed = self
            .conn
            .query_row(DELETE_KEY, [key], |_| Ok(()))
            .optional()
            .map_err(err)?
            .is_some();
        if existed {
            self.count.deleted();
        }
        Ok(existed)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        self.conn.execute(DELETE_ALL_KEYS, []).map_err(err)?;
        self.count.cleared();
        Ok(())
    }

    fn count(&self) -> Result<u64, StoreError> {
        self.count.get_or_count(|| {
            let n: i64 = self
                .conn
                .query_row(COUNT_KEYS, [], |r| r.get(0))
                .map_err(err)?;
            Ok(n.max(0) as u64)
        })
    }

    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self.conn.prepare(SELECT_ALL_KEYS).map_err(err)?;
        let rows = stmt.query_map([], entry).map_err(err)?;
        rows.map(|r| r.map_err(err)?).collect()
    }

    fn data_json(&self) -> Result<String, StoreError> {
        let mut stmt = self.conn.prepare(SELECT_DATA_ENTRIES).map_err(err)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
        let fragments = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
        Ok(join_data_entries(fragments))
    }

    fn page(&self, range: &PageRange<'_>) -> Result<(Vec<(String, String)>, bool), StoreError> {
        let mut stmt = self.conn.prepare(SELECT_PAGE).map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(range.args().iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(err)?;
        take_page(rows.map(|r| r.map_err(err)), range)
    }

    /// A savepoint, so it nests inside any transaction a test holds open.
    fn atomically(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.conn
            .execute_batch("SAVEPOINT atomically")
            .map_err(err)?;
        match f() {
            Ok(()) => self.conn.execute_batch("RELEASE atomically").map_err(err),
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO atomically; RELEASE atomically")
                    .map_err(err)?;
                self.count.forget();
                Err(e)
            }
        }
    }

    fn meta_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(SELECT_META, [name], |r| r.get(0))
            .optional()
            .map_err(err)
    }

    fn meta_set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(UPSERT_META, [name, value])
            .map(|_| ())
            .map_err(err)
    }

    fn y_rows(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(SELECT_YDOC).map_err(err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err);
        rows
    }

    fn y_append(&self, row: &str) -> Result<(), StoreError> {
        self.conn
            .execute(INSERT_YDOC, [row])
            .map(|_| ())
            .map_err(err)
    }

    fn y_replace(&self, rows: &[String]) -> Result<(), StoreError> {
        self.conn.execute_batch(CREATE_YDOC).map_err(err)?;
        self.conn.execute(DELETE_YDOC, []).map_err(err)?;
        for row in rows {
            self.y_append(row)?;
        }
        Ok(())
    }
}
