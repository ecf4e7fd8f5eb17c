//! Access levels shared by the protocol, the REST API and the auth code.

use serde::{Deserialize, Serialize};

/// What a session, share, token or key allows, lowest first.
/// `Owner` only ever results from owning a project; it is never granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
    Owner,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::Owner => "owner",
        }
    }

    /// Parses a grantable permission (`read`, `write`, `admin`); `owner` is not grantable.
    pub fn parse_grantable(s: &str) -> Option<Permission> {
        match s {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            "admin" => Some(Permission::Admin),
            _ => None,
        }
    }

    /// The permission a WebSocket session reports: an owner acts as `admin`.
    pub fn for_session(self) -> Permission {
        if self == Permission::Owner {
            Permission::Admin
        } else {
            self
        }
    }

    pub fn allows(self, needed: Permission) -> bool {
        self >= needed
    }
}

/// What a session's access rests on besides its user (protocol.md §8): the
/// API key or the delegate secret it authenticated with. When one of them is
/// deleted or revoked, the sockets that name it are re-evaluated. A user's
/// own access (shares, groups) is re-evaluated through the user id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessBasis {
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<String>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When a delegate's access ends by itself (Unix seconds): its sockets
    /// are closed then, like revoked ones.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

impl AccessBasis {
    pub fn is_user(&self) -> bool {
        self.api_key.is_none() && self.delegate.is_none()
    }

    /// Whether the access has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires
            .is_some_and(|s| now_ms >= s.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_parsing() {
        assert!(Permission::Read < Permission::Write);
        assert!(Permission::Admin < Permission::Owner);
        assert_eq!(
            Permission::parse_grantable("write"),
            Some(Permission::Write)
        );
        assert_eq!(Permission::parse_grantable("owner"), None);
        assert_eq!(Permission::Owner.for_session(), Permission::Admin);
        assert!(Permission::Admin.allows(Permission::Write));
        assert!(!Permission::Read.allows(Permission::Write));
    }
}
