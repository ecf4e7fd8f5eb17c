//! The layer between the HTTP adapters and the parts below (auth, db, the
//! instance client): decisions that need several of them. Nothing here
//! knows about `Request`/`Response`.

pub mod access;
pub mod delegates;
pub mod known_users;
pub mod lifecycle;
pub mod revocation;
pub mod usage;
pub mod webhooks;

use crate::error::ApiError;

/// A fresh UUID v4 for a new row.
pub fn new_id() -> Result<String, ApiError> {
    crate::auth::secrets::generate_uuid_v4()
        .map_err(|e| ApiError::internal(format!("random id: {e}")))
}
