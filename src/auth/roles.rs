//! Who may do what: role resolution from facts already loaded from D1, then
//! narrowing by an API key (or delegate), then the per-action rules of
//! rest-api.md. Pure functions, so every rule is covered by table tests.

use crate::permission::Permission;

/// Ownership and the shares that reach the caller (its user shares, shares
/// to groups it is in, public shares), as loaded from D1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessFacts {
    /// The caller owns the project (of the instance, for instance roles).
    pub owns_project: bool,
    /// Permissions of the project's shares that reach the caller.
    pub project_shares: Vec<Permission>,
    /// Permissions of the instance's shares that reach the caller (ignored
    /// for project roles).
    pub instance_shares: Vec<Permission>,
}

/// Highest share, capped at `Admin`: `Owner` is never granted, so a share
/// row claiming it must not make anyone an owner.
fn highest_share<'a>(shares: impl IntoIterator<Item = &'a Permission>) -> Option<Permission> {
    shares
        .into_iter()
        .copied()
        .max()
        .map(|p| p.min(Permission::Admin))
}

/// The caller's role on a project; `None` when nothing reaches it.
pub fn project_role(facts: &AccessFacts) -> Option<Permission> {
    if facts.owns_project {
        return Some(Permission::Owner);
    }
    highest_share(&facts.project_shares)
}

/// The caller's role on an instance: owner of its project, else the highest
/// of the project's and the instance's shares.
pub fn instance_role(facts: &AccessFacts) -> Option<Permission> {
    if facts.owns_project {
        return Some(Permission::Owner);
    }
    highest_share(facts.project_shares.iter().chain(&facts.instance_shares))
}

/// What an API key (or delegate) is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// Everything its user can reach.
    Account,
    /// That project and its instances.
    Project(String),
    /// That instance only.
    Instance(String),
}

impl KeyScope {
    /// From the `scope_type` / `scope_id` columns; `None` for a corrupt row
    /// (unknown type, or a missing/extra id), which must not authenticate.
    pub fn from_columns(scope_type: &str, scope_id: Option<&str>) -> Option<KeyScope> {
        let id = scope_id.filter(|s| !s.is_empty());
        match (scope_type, id) {
            ("account", None) => Some(KeyScope::Account),
            ("project", Some(id)) => Some(KeyScope::Project(id.to_owned())),
            ("instance", Some(id)) => Some(KeyScope::Instance(id.to_owned())),
            _ => None,
        }
    }

    pub fn type_str(&self) -> &'static str {
        match self {
            KeyScope::Account => "account",
            KeyScope::Project(_) => "project",
            KeyScope::Instance(_) => "instance",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            KeyScope::Account => None,
            KeyScope::Project(id) | KeyScope::Instance(id) => Some(id),
        }
    }

    /// Whether `resource` lies inside this scope.
    pub fn covers(&self, resource: Resource<'_>) -> bool {
        match (self, resource) {
            (KeyScope::Account, _) => true,
            (KeyScope::Project(p), Resource::Project { id }) => p == id,
            (KeyScope::Project(p), Resource::Instance { project_id, .. }) => p == project_id,
            // An instance key sees no project, not even its instance's.
            (KeyScope::Instance(_), Resource::Project { .. }) => false,
            (KeyScope::Instance(i), Resource::Instance { id, .. }) => i == id,
        }
    }
}

/// The limits of an API key or delegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimits {
    pub scope: KeyScope,
    /// The key's `permissions`; the highest of them caps the role.
    pub permissions: Vec<Permission>,
}

impl KeyLimits {
    /// From an `api_keys` row. `permissions_json` is the stored JSON array.
    /// `None` for a corrupt row: an unknown or `owner` entry, or no entry,
    /// since guessing could widen what the key allows.
    pub fn from_columns(
        scope_type: &str,
        scope_id: Option<&str>,
        permissions_json: &str,
    ) -> Option<KeyLimits> {
        let scope = KeyScope::from_columns(scope_type, scope_id)?;
        let names: Vec<String> = serde_json::from_str(permissions_json).ok()?;
        let permissions = names
            .iter()
            .map(|n| Permission::parse_grantable(n))
            .collect::<Option<Vec<_>>>()?;
        if permissions.is_empty() {
            return None;
        }
        Some(KeyLimits { scope, permissions })
    }

    /// The highest permission of the key (never above `Admin`).
    pub fn cap(&self) -> Option<Permission> {
        highest_share(&self.permissions)
    }

    /// An `account`-scoped key with `admin` acts as its user for everything
    /// except managing API keys (auth.md).
    pub fn acts_as_user(&self) -> bool {
        self.scope == KeyScope::Account && self.cap() == Some(Permission::Admin)
    }
}

/// A delegate's own capabilities (delegates.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelegateCaps {
    pub can_read: bool,
    pub can_write: bool,
    pub can_system: bool,
}

impl DelegateCaps {
    /// The highest role the capabilities allow: `can_system` → admin, else
    /// `can_write` → write, else `can_read` → read, none → nothing.
    pub fn cap(self) -> Option<Permission> {
        if self.can_system {
            Some(Permission::Admin)
        } else if self.can_write {
            Some(Permission::Write)
        } else if self.can_read {
            Some(Permission::Read)
        } else {
            None
        }
    }
}

/// A delegate's role on an instance: the lowest of its grant there, its
/// capabilities and its creator's role there **now**; `None` (the instance
/// does not exist for it) when any of the three is missing.
pub fn delegate_role(
    grant: Option<Permission>,
    caps: DelegateCaps,
    creator_role: Option<Permission>,
) -> Option<Permission> {
    let grant = grant?.min(Permission::Admin);
    Some(grant.min(caps.cap()?).min(creator_role?))
}

/// Who is acting, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in user: a Clerk JWT, or `dev-user` in development mode.
    User,
    /// An API key, acting for its user.
    Key(KeyLimits),
    /// A delegate, acting for its creator on the instances granted to it
    /// (its role comes from [`delegate_role`], never from [`effective_role`]).
    Delegate(DelegateCaps),
}

impl Principal {
    /// Whether this principal has its user's full powers (shares, groups,
    /// project deletion), which narrower keys lack.
    pub fn acts_as_user(&self) -> bool {
        match self {
            Principal::User => true,
            Principal::Key(k) => k.acts_as_user(),
            Principal::Delegate(_) => false,
        }
    }
}

/// A resource a role is resolved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Project { id: &'a str },
    Instance { id: &'a str, project_id: &'a str },
}

/// The role a principal acts with on `resource`, given its user's role
/// there. `None` means the resource must look nonexistent (404).
pub fn effective_role(
    principal: &Principal,
    resource: Resource<'_>,
    user_role: Option<Permission>,
) -> Option<Permission> {
    let role = user_role?;
    match principal {
        Principal::User => Some(role),
        Principal::Key(key) => {
            if !key.scope.covers(resource) {
                return None;
            }
            if key.acts_as_user() {
                // Keeps `Owner`, so such a key may also delete projects.
                return Some(role);
            }
            // The cap is at most `Admin`, so an owner is narrowed to admin.
            key.cap().map(|cap| role.min(cap))
        }
        // A delegate's role needs its grant: see `delegate_role`.
        Principal::Delegate(_) => None,
    }
}

/// Why a request is refused; `status()` gives the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No role at all: do not reveal that the resource exists.
    #[error("Not found")]
    NotFound,
    /// A role, but too low for this action.
    #[error("This requires the {} role", needed.as_str())]
    InsufficientRole { needed: Permission },
    /// A key scoped below the account, or without `admin`.
    #[error("This API key cannot manage shares or groups, or create or delete projects; use an account-scoped key with admin")]
    KeyTooNarrow,
    /// API keys are managed only by a signed-in user.
    #[error("API keys can only be managed by a signed-in user, not with an API key")]
    SignInRequired,
    /// Delegates are managed only by a signed-in user.
    #[error("Delegates can only be managed by a signed-in user, not with an API key")]
    DelegatesNeedSignIn,
    /// A share or token above the granter's own role.
    #[error("Cannot grant a permission above your own role")]
    AboveOwnRole,
    /// Group actions reserved to the group's owner.
    #[error("Only the group owner can do this")]
    NotGroupOwner,
}

impl Denied {
    pub fn status(self) -> u16 {
        match self {
            Denied::NotFound => 404,
            _ => 403,
        }
    }
}

/// Actions on a project or instance (rest-api.md "who" columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GET a project/instance, list instances, read keys, clone from it,
    /// ask for a ws-token, AI `use` mode.
    View,
    /// `set` / `delete` keys, AI routes that write.
    WriteData,
    /// `clear` an instance.
    ClearData,
    /// PUT project, PATCH instance.
    Update,
    /// POST instances (on the project).
    CreateInstance,
    DeleteInstance,
    DeleteProject,
    /// List, create or delete shares of the resource.
    ManageShares,
    /// Create an API key scoped to the resource (a signed-in user only).
    ScopeKey,
    /// Grant the instance to a delegate (a signed-in user only).
    GrantDelegate,
    /// List, create, change, delete or test the instance's webhooks.
    ManageWebhooks,
}

impl Action {
    /// The least role that allows the action.
    pub fn required(self) -> Permission {
        match self {
            Action::View => Permission::Read,
            Action::WriteData => Permission::Write,
            Action::ClearData
            | Action::Update
            | Action::CreateInstance
            | Action::DeleteInstance
            | Action::ManageShares
            | Action::ScopeKey
            | Action::GrantDelegate
            | Action::ManageWebhooks => Permission::Admin,
            Action::DeleteProject => Permission::Owner,
        }
    }

    /// Actions that only a principal with its user's full powers may take.
    fn needs_full_powers(self) -> bool {
        matches!(self, Action::DeleteProject | Action::ManageShares)
    }
}

/// Whether `principal`, acting with `role` (from [`effective_role`]), may
/// take `action`. 404 comes before 403 so nothing is revealed.
pub fn authorize(
    principal: &Principal,
    action: Action,
    role: Option<Permission>,
) -> Result<(), Denied> {
    let role = role.ok_or(Denied::NotFound)?;
    if action.needs_full_powers() && !principal.acts_as_user() {
        return Err(Denied::KeyTooNarrow);
    }
    let needed = action.required();
    if role.allows(needed) {
        Ok(())
    } else {
        Err(Denied::InsufficientRole { needed })
    }
}

/// Creating a project (the caller becomes its owner).
pub fn authorize_create_project(principal: &Principal) -> Result<(), Denied> {
    if principal.acts_as_user() {
        Ok(())
    } else {
        Err(Denied::KeyTooNarrow)
    }
}

/// A share's permission may not exceed the granter's own role (`role` is
/// the effective role on the shared resource). An owner may grant `admin`.
pub fn check_grant(role: Permission, requested: Permission) -> Result<(), Denied> {
    if requested > role || requested == Permission::Owner {
        Err(Denied::AboveOwnRole)
    } else {
        Ok(())
    }
}

/// The permission a WebSocket token is issued with: the caller's role
/// (owner → admin) by default; a request for more is refused (403).
pub fn ws_token_permission(
    role: Option<Permission>,
    requested: Option<Permission>,
) -> Result<Permission, Denied> {
    let ceiling = role.ok_or(Denied::NotFound)?.for_session();
    match requested {
        None => Ok(ceiling),
        Some(p) if p <= ceiling => Ok(p),
        Some(_) => Err(Denied::AboveOwnRole),
    }
}

/// Listing, creating or deleting API keys or delegates: signed-in users
/// only (delegates never reach these routes: `Route::delegate_refusal`).
pub fn authorize_api_key_management(principal: &Principal) -> Result<(), Denied> {
    match principal {
        Principal::User => Ok(()),
        Principal::Key(_) | Principal::Delegate(_) => Err(Denied::SignInRequired),
    }
}

/// Managing delegates: signed-in users only.
pub fn authorize_delegate_management(principal: &Principal) -> Result<(), Denied> {
    match principal {
        Principal::User => Ok(()),
        Principal::Key(_) | Principal::Delegate(_) => Err(Denied::DelegatesNeedSignIn),
    }
}

/// Actions on one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    View,
    Delete,
    AddMember,
    /// `removing_self`: the member named in the path is the caller.
    RemoveMember {
        removing_self: bool,
    },
}

/// Listing or creating groups. Groups are account-level, so narrower keys
/// (outside their scope) and non-admin keys may not touch them.
pub fn authorize_groups(principal: &Principal) -> Result<(), Denied> {
    if principal.acts_as_user() {
        Ok(())
    } else {
        Err(Denied::KeyTooNarrow)
    }
}

/// An action on one group by a caller that owns it and/or is a member.
pub fn authorize_group(
    principal: &Principal,
    action: GroupAction,
    is_owner: bool,
    is_member: bool,
) -> Result<(), Denied> {
    authorize_groups(principal)?;
    if !is_owner && !is_member {
        return Err(Denied::NotFound);
    }
    let allowed = match action {
        GroupAction::View => true,
        GroupAction::Delete | GroupAction::AddMember => is_owner,
        GroupAction::RemoveMember { removing_self } => is_owner || removing_self,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::NotGroupOwner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Admin, Owner, Read, Write};

    fn facts(owns: bool, project: &[Permission], instance: &[Permission]) -> AccessFacts {
        AccessFacts {
            owns_project: owns,
            project_shares: project.to_vec(),
            instance_shares: instance.to_vec(),
        }
    }

    #[test]
    fn role_resolution_table() {
        // (owns, project shares, instance shares, project role, instance role)
        type Case = (
            bool,
            &'static [Permission],
            &'static [Permission],
            Option<Permission>,
            Option<Permission>,
        );
        let cases: &[Case] = &[
            (false, &[], &[], None, None),
            (true, &[], &[], Some(Owner), Some(Owner)),
            (true, &[Read], &[Read], Some(Owner), Some(Owner)),
            (false, &[Read], &[], Some(Read), Some(Read)),
            (false, &[Read, Admin, Write], &[], Some(Admin), Some(Admin)),
            (false, &[], &[Write], None, Some(Write)),
            (false, &[Read], &[Write], Some(Read), Some(Write)),
            (false, &[Admin], &[Read], Some(Admin), Some(Admin)),
            // A corrupt "owner" share never makes an owner.
            (false, &[Owner], &[], Some(Admin), Some(Admin)),
        ];
        for (i, &(owns, p, inst, want_p, want_i)) in cases.iter().enumerate() {
            let f = facts(owns, p, inst);
            assert_eq!(project_role(&f), want_p, "case {i} project");
            assert_eq!(instance_role(&f), want_i, "case {i} instance");
        }
    }

    fn key(scope: KeyScope, perms: &[Permission]) -> Principal {
        Principal::Key(KeyLimits {
            scope,
            permissions: perms.to_vec(),
        })
    }

    const PROJ: Resource<'static> = Resource::Project { id: "p1" };
    const INST: Resource<'static> = Resource::Instance {
        id: "i1",
        project_id: "p1",
    };
    const OTHER_INST: Resource<'static> = Resource::Instance {
        id: "i2",
        project_id: "p2",
    };
    const SIBLING_INST: Resource<'static> = Resource::Instance {
        id: "i3",
        project_id: "p1",
    };

    #[test]
    fn narrowing_table() {
        let acct = |p: &[Permission]| key(KeyScope::Account, p);
        let proj = |p: &[Permission]| key(KeyScope::Project("p1".into()), p);
        let inst = |p: &[Permission]| key(KeyScope::Instance("i1".into()), p);
        // (principal, resource, user role, effective role)
        let cases: Vec<(Principal, Resource, Option<Permission>, Option<Permission>)> = vec![
            (Principal::User, PROJ, Some(Owner), Some(Owner)),
            (Principal::User, INST, None, None),
            // Account-scoped admin key acts as the user, owner included.
            (acct(&[Read, Admin]), PROJ, Some(Owner), Some(Owner)),
            (acct(&[Admin]), OTHER_INST, Some(Write), Some(Write)),
            (acct(&[Admin]), INST, None, None),
            // Other account keys are capped by their highest permission.
            (acct(&[Read, Write]), PROJ, Some(Owner), Some(Write)),
            (acct(&[Read]), INST, Some(Admin), Some(Read)),
            (acct(&[Write]), INST, Some(Read), Some(Read)),
            // Project scope: the project and its instances only.
            (proj(&[Admin]), PROJ, Some(Owner), Some(Admin)),
            (proj(&[Admin]), INST, Some(Owner), Some(Admin)),
            (proj(&[Admin]), SIBLING_INST, Some(Owner), Some(Admin)),
            (proj(&[Write]), OTHER_INST, Some(Owner), None),
            (
                proj(&[Write]),
                Resource::Project { id: "p2" },
                Some(Owner),
                None,
            ),
            (proj(&[Read]), INST, Some(Write), Some(Read)),
            // Instance scope: that instance only, never a project.
            (inst(&[Write]), INST, Some(Owner), Some(Write)),
            (inst(&[Admin]), INST, Some(Owner), Some(Admin)),
            (inst(&[Admin]), SIBLING_INST, Some(Owner), None),
            (inst(&[Admin]), PROJ, Some(Owner), None),
            // A key never widens its user's role.
            (inst(&[Admin]), INST, Some(Read), Some(Read)),
            (inst(&[Admin]), INST, None, None),
            // A key without permissions allows nothing.
            (acct(&[]), PROJ, Some(Owner), None),
        ];
        for (i, (principal, res, user_role, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                effective_role(&principal, res, user_role),
                want,
                "case {i}: {principal:?} on {res:?}"
            );
        }
    }

    #[test]
    fn authorization_table() {
        use Action::*;
        let user = Principal::User;
        let acct_admin = key(KeyScope::Account, &[Admin]);
        let acct_write = key(KeyScope::Account, &[Write]);
        let proj_admin = key(KeyScope::Project("p1".into()), &[Admin]);
        let nf = Err(Denied::NotFound);
        let narrow = Err(Denied::KeyTooNarrow);
        let need = |p| Err(Denied::InsufficientRole { needed: p });
        // (principal, action, effective role, outcome)
        type Case<'a> = (
            &'a Principal,
            Action,
            Option<Permission>,
            Result<(), Denied>,
        );
        // A user may take an action from the least role it needs; one
        // below it is refused with that role named.
        for (action, least, below) in [
            (WriteData, Write, Read),
            (ClearData, Admin, Write),
            (CreateInstance, Admin, Write),
            (DeleteProject, Owner, Admin),
            (ManageShares, Admin, Write),
        ] {
            assert_eq!(authorize(&user, action, Some(below)), need(least));
            assert_eq!(authorize(&user, action, Some(least)), Ok(()), "{action:?}");
        }
        let cases: Vec<Case> = vec![
            (&user, View, None, nf),
            (&user, View, Some(Read), Ok(())),
            (&user, ClearData, Some(Owner), Ok(())),
            (&user, Update, Some(Admin), Ok(())),
            (&user, DeleteInstance, Some(Admin), Ok(())),
            (&acct_admin, DeleteProject, Some(Owner), Ok(())),
            (&acct_admin, ManageShares, Some(Admin), Ok(())),
            (&acct_admin, ManageShares, None, nf),
            (&acct_write, ManageShares, Some(Write), narrow),
            (&acct_write, WriteData, Some(Write), Ok(())),
            (&proj_admin, ManageShares, Some(Admin), narrow),
            (&proj_admin, DeleteProject, Some(Admin), narrow),
            (&proj_admin, DeleteInstance, Some(Admin), Ok(())),
            (&proj_admin, Update, Some(Admin), Ok(())),
            (&proj_admin, ManageShares, None, nf),
        ];
        for (i, (principal, action, role, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                authorize(principal, action, role),
                want,
                "case {i}: {principal:?} {action:?} as {role:?}"
            );
        }
    }

    #[test]
    fn end_to_end_owner_with_project_key_cannot_delete_project() {
        let principal = key(KeyScope::Project("p1".into()), &[Read, Write, Admin]);
        let role = effective_role(&principal, PROJ, project_role(&facts(true, &[], &[])));
        assert_eq!(role, Some(Admin));
        assert_eq!(
            authorize(&principal, Action::DeleteProject, role),
            Err(Denied::KeyTooNarrow)
        );
        assert_eq!(authorize(&principal, Action::Update, role), Ok(()));
    }

    #[test]
    fn grants_table() {
        let cases = [
            (Owner, Admin, true),
            (Admin, Admin, true),
            (Admin, Read, true),
            (Write, Write, true),
            (Write, Admin, false),
            (Read, Write, false),
            (Owner, Owner, false),
        ];
        for (role, requested, ok) in cases {
            assert_eq!(
                check_grant(role, requested).is_ok(),
                ok,
                "{role:?} granting {requested:?}"
            );
        }
    }

    #[test]
    fn ws_token_table() {
        let cases = [
            (None, None, Err(Denied::NotFound)),
            (None, Some(Read), Err(Denied::NotFound)),
            (Some(Owner), None, Ok(Admin)),
            (Some(Owner), Some(Admin), Ok(Admin)),
            (Some(Owner), Some(Owner), Err(Denied::AboveOwnRole)),
            (Some(Write), None, Ok(Write)),
            (Some(Write), Some(Read), Ok(Read)),
            (Some(Write), Some(Admin), Err(Denied::AboveOwnRole)),
            (Some(Read), Some(Read), Ok(Read)),
        ];
        for (role, requested, want) in cases {
            assert_eq!(
                ws_token_permission(role, requested),
                want,
                "{role:?} {requested:?}"
            );
        }
    }

    #[test]
    fn delegate_role_is_the_lowest_of_grant_capabilities_and_creator() {
        let caps = |r: bool, w: bool, s: bool| DelegateCaps {
            can_read: r,
            can_write: w,
            can_system: s,
        };
        let all = caps(true, true, true);
        let (read, read_write) = (caps(true, false, false), caps(true, true, false));
        let (write, system, none) = (
            caps(false, true, false),
            caps(false, false, true),
            caps(false, false, false),
        );
        let cases = [
            // (grant, capabilities, creator's role now) → role
            (Some(Admin), all, Some(Owner), Some(Admin)),
            (Some(Write), all, Some(Owner), Some(Write)),
            (Some(Admin), read, Some(Owner), Some(Read)),
            (Some(Admin), read_write, Some(Admin), Some(Write)),
            (Some(Admin), write, Some(Admin), Some(Write)),
            (Some(Admin), system, Some(Write), Some(Write)),
            (Some(Write), all, Some(Read), Some(Read)),
            // No grant, no capability, or a creator without access: nothing.
            (None, all, Some(Owner), None),
            (Some(Admin), none, Some(Owner), None),
            (Some(Admin), all, None, None),
            // A corrupt grant row claiming owner stays admin at most.
            (Some(Owner), all, Some(Owner), Some(Admin)),
        ];
        for (grant, c, creator, expected) in cases {
            assert_eq!(
                delegate_role(grant, c, creator),
                expected,
                "grant {grant:?}, caps {c:?}, creator {creator:?}"
            );
        }
        let d = Principal::Delegate(all);
        assert!(!d.acts_as_user());
        let project = Resource::Project { id: "p" };
        assert_eq!(effective_role(&d, project, Some(Owner)), None);
        assert_eq!(
            authorize_delegate_management(&d),
            Err(Denied::DelegatesNeedSignIn)
        );
        assert_eq!(authorize_delegate_management(&Principal::User), Ok(()));
        assert_eq!(
            authorize_delegate_management(&key(KeyScope::Account, &[Admin])),
            Err(Denied::DelegatesNeedSignIn)
        );
    }

    #[test]
    fn api_key_management_and_scope() {
        assert_eq!(authorize_api_key_management(&Principal::User), Ok(()));
        let k = key(KeyScope::Account, &[Admin]);
        assert_eq!(
            authorize_api_key_management(&k),
            Err(Denied::SignInRequired)
        );
        let user = Principal::User;
        assert_eq!(authorize(&user, Action::ScopeKey, Some(Owner)), Ok(()));
        assert_eq!(authorize(&user, Action::ScopeKey, Some(Admin)), Ok(()));
        assert_eq!(
            authorize(&user, Action::ScopeKey, Some(Write)),
            Err(Denied::InsufficientRole { needed: Admin })
        );
        assert_eq!(
            authorize(&user, Action::ScopeKey, None),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn project_creation_and_groups() {
        let acct_admin = key(KeyScope::Account, &[Admin]);
        let acct_write = key(KeyScope::Account, &[Write]);
        let inst_admin = key(KeyScope::Instance("i1".into()), &[Admin]);
        assert_eq!(authorize_create_project(&Principal::User), Ok(()));
        assert_eq!(authorize_create_project(&acct_admin), Ok(()));
        assert_eq!(
            authorize_create_project(&acct_write),
            Err(Denied::KeyTooNarrow)
        );
        assert_eq!(authorize_groups(&inst_admin), Err(Denied::KeyTooNarrow));
        assert_eq!(authorize_groups(&acct_admin), Ok(()));

        use GroupAction::*;
        let u = Principal::User;
        // (action, is_owner, is_member, outcome)
        let cases = [
            (View, false, false, Err(Denied::NotFound)),
            (View, false, true, Ok(())),
            (View, true, false, Ok(())),
            (Delete, false, true, Err(Denied::NotGroupOwner)),
            (Delete, true, false, Ok(())),
            (AddMember, false, true, Err(Denied::NotGroupOwner)),
            (AddMember, true, false, Ok(())),
            (
                RemoveMember {
                    removing_self: true,
                },
                false,
                true,
                Ok(()),
            ),
            (
                RemoveMember {
                    removing_self: false,
                },
                false,
                true,
                Err(Denied::NotGroupOwner),
            ),
            (
                RemoveMember {
                    removing_self: false,
                },
                true,
                false,
                Ok(()),
            ),
        ];
        for (action, owner, member, want) in cases {
            assert_eq!(
                authorize_group(&u, action, owner, member),
                want,
                "{action:?} owner={owner} member={member}"
            );
        }
        assert_eq!(
            authorize_group(&acct_write, View, true, false),
            Err(Denied::KeyTooNarrow)
        );
    }

    #[test]
    fn key_rows() {
        let k = KeyLimits::from_columns("project", Some("p1"), r#"["read","write"]"#);
        assert_eq!(
            k,
            Some(KeyLimits {
                scope: KeyScope::Project("p1".into()),
                permissions: vec![Read, Write]
            })
        );
        let k = KeyLimits::from_columns("account", None, r#"["admin"]"#).expect("valid");
        assert!(k.acts_as_user());
        assert_eq!(k.scope.type_str(), "account");
        assert_eq!(k.scope.id(), None);
        for (t, id, perms) in [
            ("account", Some("x"), r#"["read"]"#),
            ("project", None, r#"["read"]"#),
            ("instance", Some(""), r#"["read"]"#),
            ("org", Some("x"), r#"["read"]"#),
            ("account", None, r#"[]"#),
            ("account", None, r#"["owner"]"#),
            ("account", None, r#"["read","sudo"]"#),
            ("account", None, "not json"),
        ] {
            assert_eq!(
                KeyLimits::from_columns(t, id, perms),
                None,
                "{t} {id:?} {perms}"
            );
        }
    }

    #[test]
    fn denial_statuses() {
        assert_eq!(Denied::NotFound.status(), 404);
        assert_eq!(Denied::KeyTooNarrow.status(), 403);
        assert_eq!(
            Denied::InsufficientRole { needed: Admin }.to_string(),
            "This requires the admin role"
        );
    }
}
