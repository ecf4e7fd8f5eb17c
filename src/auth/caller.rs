//! Who is calling, once a credential has been verified.

use super::roles::Principal;
use super::DEV_USER;
use crate::permission::AccessBasis;

#[derive(Debug, Clone)]
pub struct Caller {
    /// The user acted for (a delegate's creator, an API key's owner).
    pub user_id: String,
    /// A signed-in user, an API key with its limits, or a delegate.
    pub principal: Principal,
    /// The API key or delegate secret the caller authenticated with.
    pub basis: AccessBasis,
}

impl Caller {
    pub fn user(user_id: impl Into<String>) -> Caller {
        Caller {
            user_id: user_id.into(),
            principal: Principal::User,
            basis: AccessBasis::default(),
        }
    }

    pub fn dev_user() -> Caller {
        Caller::user(DEV_USER)
    }

    pub fn is_delegate(&self) -> bool {
        matches!(self.principal, Principal::Delegate(_))
    }

    pub fn is_dev_user(&self) -> bool {
        self.user_id == DEV_USER && self.principal == Principal::User
    }
}
