//! The outbox's [`Sql`] over the Durable Object's SQLite: the same SQL
//! constants the native tests run on rusqlite.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::JsValue;
use worker::{SqlStorage, SqlStorageValue};

use super::outbox::{Sql, Val};
use super::store::{SqlArg, StoreError};

pub struct OutboxSql(pub SqlStorage);

impl Sql for OutboxSql {
    fn query(&self, sql: &str, args: &[SqlArg<'_>]) -> Result<Vec<Vec<Val>>, StoreError> {
        let js: Vec<JsValue> = args.iter().map(|a| a.to_js()).collect();
        let cursor = self.0.exec_raw(sql, js).map_err(err)?;
        cursor
            .raw()
            .map(|row| {
                row.map_err(err).map(|cols| {
                    cols.into_iter()
                        .map(|v| match v {
                            SqlStorageValue::Null => Val::Null,
                            SqlStorageValue::Integer(i) => Val::Int(i),
                            SqlStorageValue::Float(f) => Val::Int(f as i64),
                            SqlStorageValue::Boolean(b) => Val::Int(i64::from(b)),
                            SqlStorageValue::String(s) => Val::Text(s),
                            SqlStorageValue::Blob(_) => Val::Null,
                        })
                        .collect()
                })
            })
            .collect()
    }
}

fn err(e: worker::Error) -> StoreError {
    crate::log_error!("webhook outbox storage: {e}");
    StoreError(e.to_string())
}
