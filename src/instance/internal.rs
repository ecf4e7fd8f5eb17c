//! The Worker → object interface (protocol.md §7): header names and bodies
//! shared by both sides. Objects are reachable only through the Worker's
//! binding, and the Worker strips every `x-mc-internal-*` header a client
//! sends, so these headers are trusted inside the object.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Prefix of every internal header; anything a client sends with it is removed.
pub const HEADER_PREFIX: &str = "x-mc-internal-";
/// The instance id (as in the URL), so the object knows who it is.
pub const HEADER_INSTANCE_ID: &str = "x-mc-internal-instance-id";
/// `1` when the instance is read-only (from D1), else `0`.
pub const HEADER_READ_ONLY: &str = "x-mc-internal-read-only";
/// The version of that flag (`instances.readonly_version`): the object keeps
/// the flag of the highest version it has seen (protocol.md §8).
pub const HEADER_READ_ONLY_VERSION: &str = "x-mc-internal-read-only-version";
/// The authenticated user of a WebSocket; absent for an unauthenticated one.
pub const HEADER_USER_ID: &str = "x-mc-internal-user-id";
/// `read`, `write` or `admin` for the user above.
pub const HEADER_PERMISSION: &str = "x-mc-internal-permission";
/// What the socket's access rests on (`AccessBasis` as JSON), when it is
/// an API key or a delegate secret.
pub const HEADER_BASIS: &str = "x-mc-internal-basis";
/// `1` when the connection was made in development mode.
pub const HEADER_DEVELOPMENT: &str = "x-mc-internal-development";
/// Who a data-API write acts for (`updatedBy` of its broadcasts).
pub const HEADER_ACTOR: &str = "x-mc-internal-actor";
/// The client's `If-Match` / `If-None-Match`, compared inside the object.
pub const HEADER_IF_MATCH: &str = "x-mc-internal-if-match";
pub const HEADER_IF_NONE_MATCH: &str = "x-mc-internal-if-none-match";
/// The version (`updatedAt`) of the key a data-API call read or wrote.
pub const HEADER_VERSION: &str = "x-mc-internal-version";

/// Paths of the object's internal routes.
pub const PATH_SYNC: &str = "/sync";
pub const PATH_KEYS: &str = "/internal/keys";
pub const PATH_SET: &str = "/internal/set";
pub const PATH_DELETE: &str = "/internal/delete";
pub const PATH_IMPORT: &str = "/internal/import";
pub const PATH_DESTROY: &str = "/internal/destroy";
pub const PATH_CONFIGURE: &str = "/internal/configure";
pub const PATH_RECHECK: &str = "/internal/recheck";
pub const PATH_STORAGE: &str = "/internal/storage";
/// The data API (data-api.md); parameters travel in the query.
/// `GET ?prefix&tag&limit&after`: one page of keys.
pub const PATH_DATA_LIST: &str = "/internal/data/list";
/// `GET`, `PUT` or `DELETE` of `?key=`.
pub const PATH_DATA_KEY: &str = "/internal/data/key";
pub const PATH_DATA_BATCH: &str = "/internal/data/batch";
/// `POST ?mode=merge|replace` with an export document.
pub const PATH_DATA_IMPORT: &str = "/internal/data/import";
/// `GET ?format=json|markdown&title=`.
pub const PATH_DATA_EXPORT: &str = "/internal/data/export";
/// `GET`: a server-sent event stream, identity in the headers as for `/sync`.
pub const PATH_EVENTS: &str = "/internal/events";
/// POST: the instance's webhooks (`outbox::Configuration`), replacing what
/// the object had.
pub const PATH_WEBHOOKS: &str = "/internal/webhooks";
/// GET `?webhook=<id>&limit=<n>`: a webhook's delivery log.
pub const PATH_WEBHOOK_LOG: &str = "/internal/webhooks/deliveries";

/// Which sockets a change of credentials or access may affect
/// (protocol.md §8): the object re-evaluates those against D1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Affected {
    /// Every socket (a share or group changed).
    All,
    /// Sockets acting for this user.
    User(String),
    /// Sockets opened with this API key.
    ApiKey(String),
    /// Sockets opened with any secret of this delegate.
    Delegate(String),
    /// Sockets opened with this delegate secret.
    Secret(String),
}

impl Affected {
    pub fn matches(&self, user_id: &str, basis: &crate::permission::AccessBasis) -> bool {
        match self {
            Affected::All => true,
            Affected::User(u) => u == user_id,
            Affected::ApiKey(k) => basis.api_key.as_deref() == Some(k),
            Affected::Delegate(d) => basis.delegate.as_deref() == Some(d),
            Affected::Secret(s) => basis.secret.as_deref() == Some(s),
        }
    }
}

/// The body of a recheck: which sockets, and whether their access is gone
/// for certain (the credential they rest on was deleted or revoked: close
/// them without asking D1) or must be re-evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecheckRequest {
    pub affected: Affected,
    #[serde(default)]
    pub gone: bool,
}

/// What a recheck did: sockets closed and sockets lowered.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RecheckResult {
    pub closed: u32,
    pub lowered: u32,
}

/// The read-only flag as D1 had it, with its version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOnlyFlag {
    /// D1 stores 0/1; JSON booleans are accepted too.
    #[serde(deserialize_with = "flag_from_int_or_bool")]
    pub read_only: bool,
    pub version: i64,
}

impl ReadOnlyFlag {
    /// Whether `self` may replace `current`: only a newer version does.
    pub fn supersedes(&self, current: &ReadOnlyFlag) -> bool {
        self.version > current.version
    }
}

fn flag_from_int_or_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0) != 0.0),
        other => Err(serde::de::Error::custom(format!("not a flag: {other}"))),
    }
}

/// Set a key on behalf of `actor` (a user id, or `system`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SetRequest<'a> {
    pub actor: String,
    pub key: String,
    #[serde(borrow)]
    pub value: &'a RawValue,
    /// `None` keeps the key's attributes (defaults for a new key).
    #[serde(default, borrow)]
    pub attributes: Option<&'a RawValue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub actor: String,
    pub key: String,
}

/// Copy every key of `data` (a `sync.data` map) into this instance.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImportRequest<'a> {
    pub actor: String,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// The answer to a write: whether anything changed, and the server time.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteResult {
    pub changed: bool,
    pub timestamp: i64,
}

/// A refusal from the object: the protocol error code and its message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    pub code: String,
}
