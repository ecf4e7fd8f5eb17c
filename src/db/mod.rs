//! Typed D1 access: every SQL statement the Worker runs against D1 lives
//! under this module, as a prepared statement with bound parameters.

pub mod instances;

use worker::{D1Database, Env};

use crate::error::ApiError;

pub fn database(env: &Env) -> Result<D1Database, ApiError> {
    Ok(env.d1("DB")?)
}
