//! Who is calling, once a credential has been verified.

use super::roles::Principal;
use super::DEV_USER;

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    /// A signed-in user, or an API key with its scope and permissions.
    pub principal: Principal,
    pub api_key_id: Option<String>,
}

impl Caller {
    pub fn user(user_id: impl Into<String>) -> Caller {
        Caller {
            user_id: user_id.into(),
            principal: Principal::User,
            api_key_id: None,
        }
    }

    pub fn dev_user() -> Caller {
        Caller::user(DEV_USER)
    }

    pub fn is_dev_user(&self) -> bool {
        self.user_id == DEV_USER && self.principal == Principal::User
    }
}
