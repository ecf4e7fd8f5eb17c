//! Typed D1 access: every SQL statement the Worker runs against D1 lives
//! under this module, as a prepared statement with bound parameters (SQL
//! text is only ever assembled from constants, never from input).

pub mod api_keys;
pub mod groups;
pub mod instances;
pub mod projects;
pub mod shares;
pub mod usage;
pub mod users;
pub mod ws_tokens;

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Env};

use crate::error::ApiError;
use crate::permission::Permission;

pub fn database(env: &Env) -> Result<D1Database, ApiError> {
    Ok(env.d1("DB")?)
}

/// Unix seconds, the unit of every D1 timestamp.
pub fn now_seconds() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

pub fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

pub fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

pub fn int(i: i64) -> JsValue {
    JsValue::from_f64(i as f64)
}

/// Share levels are compared in SQL as numbers: read 1, write 2, admin 3.
pub fn level_to_permission(level: Option<i64>) -> Option<Permission> {
    match level? {
        1 => Some(Permission::Read),
        2 => Some(Permission::Write),
        l if l >= 3 => Some(Permission::Admin),
        _ => None,
    }
}

/// `MAX(level)` of the shares on one resource that reach user `?2`:
/// public shares, shares to the user, and shares to a group the user
/// belongs to or owns. `{kind}` and `{id}` are SQL expressions (constants).
pub fn share_level_sql(kind: &str, id: &str) -> String {
    format!(
        "(SELECT MAX(CASE s.permission WHEN 'admin' THEN 3 WHEN 'write' THEN 2 WHEN 'read' THEN 1 END)
           FROM shares s
          WHERE s.resource_type = '{kind}' AND s.resource_id = {id}
            AND (s.target_type = 'public'
                 OR (s.target_type = 'user' AND s.target_id = ?2)
                 OR (s.target_type = 'group' AND s.target_id IN
                       (SELECT group_id FROM group_members WHERE user_id = ?2
                        UNION SELECT id FROM groups WHERE owner_id = ?2))))"
    )
}
