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
