//! The route table: a pure function from (method, path) to a `Route`, so
//! that unknown paths (404) and wrong methods on known paths (405) are
//! decided in one place and unit-tested natively.

use crate::error::ApiError;
use crate::ids::is_valid_instance_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Sync { instance_id: String },
    AdminDo { object_id: String },
    AdminDoStorage { object_id: String },
    ClerkWebhook,
    WsToken,
    ListProjects,
    CreateProject,
    GetProject(String),
    UpdateProject(String),
    DeleteProject(String),
    ListInstances(String),
    CreateInstance(String),
    GetInstance(String),
    UpdateInstance(String),
    DeleteInstance(String),
    ListProjectShares(String),
    CreateProjectShare(String),
    ListInstanceShares(String),
    CreateInstanceShare(String),
    DeleteShare(String),
    ListGroups,
    CreateGroup,
    GetGroup(String),
    DeleteGroup(String),
    AddGroupMember(String),
    RemoveGroupMember(String, String),
    ListApiKeys,
    CreateApiKey,
    DeleteApiKey(String),
    ListDelegates,
    CreateDelegate,
    DeleteDelegate(String),
    CreateDelegateSecret(String),
    ListDelegateSecrets(String),
    RevokeDelegateSecret(String, String),
    GrantDelegate(String),
    ListDelegateGrants(String),
    RevokeDelegateGrant(String, String),
    Chat,
    Transform,
    GenerateImage,
    AnalyzeImage,
}

impl Route {
    /// Why a delegate may not use this route (delegates.md: "Delegates
    /// cannot <verb> <thing>"), or `None` for the instance-data routes it
    /// may use.
    pub fn delegate_refusal(&self) -> Option<&'static str> {
        use Route::*;
        Some(match self {
            Health
            | Sync { .. }
            | AdminDo { .. }
            | AdminDoStorage { .. }
            | ClerkWebhook
            | WsToken
            | GetInstance(_)
            | Chat
            | Transform
            | GenerateImage
            | AnalyzeImage => return None,
            ListProjects => "Delegates cannot list projects",
            CreateProject => "Delegates cannot create projects",
            GetProject(_) => "Delegates cannot read projects",
            UpdateProject(_) => "Delegates cannot update projects",
            DeleteProject(_) => "Delegates cannot delete projects",
            ListInstances(_) => "Delegates cannot list instances",
            CreateInstance(_) => "Delegates cannot create instances",
            UpdateInstance(_) => "Delegates cannot update instances",
            DeleteInstance(_) => "Delegates cannot delete instances",
            ListProjectShares(_) | ListInstanceShares(_) => "Delegates cannot list shares",
            CreateProjectShare(_) | CreateInstanceShare(_) => "Delegates cannot create shares",
            DeleteShare(_) => "Delegates cannot delete shares",
            ListGroups => "Delegates cannot list groups",
            CreateGroup => "Delegates cannot create groups",
            GetGroup(_) => "Delegates cannot read groups",
            DeleteGroup(_) => "Delegates cannot delete groups",
            AddGroupMember(_) => "Delegates cannot add group members",
            RemoveGroupMember(..) => "Delegates cannot remove group members",
            ListApiKeys => "Delegates cannot list API keys",
            CreateApiKey => "Delegates cannot create API keys",
            DeleteApiKey(_) => "Delegates cannot delete API keys",
            ListDelegates => "Delegates cannot list delegates",
            CreateDelegate => "Delegates cannot create delegates",
            DeleteDelegate(_) => "Delegates cannot delete delegates",
            CreateDelegateSecret(_) => "Delegates cannot create delegate secrets",
            ListDelegateSecrets(_) => "Delegates cannot list delegate secrets",
            RevokeDelegateSecret(..) => "Delegates cannot revoke delegate secrets",
            GrantDelegate(_) => "Delegates cannot grant instances to delegates",
            ListDelegateGrants(_) => "Delegates cannot list delegate grants",
            RevokeDelegateGrant(..) => "Delegates cannot revoke delegate grants",
        })
    }
}

pub fn resolve(method: &str, path: &str) -> Result<Route, ApiError> {
    // `/sync/<anything>`: the id is validated before anything else, even
    // when it contains slashes, so clients get a precise 400.
    if let Some(id) = path.strip_prefix("/sync/") {
        if !is_valid_instance_id(id) {
            return Err(ApiError::bad_request("Invalid instance id"));
        }
        return only(
            method,
            "GET",
            Route::Sync {
                instance_id: id.to_string(),
            },
        );
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let s = |i: usize| segments[i].to_string();
    let by_method: Vec<(&str, Route)> = match segments.as_slice() {
        ["health"] => vec![("GET", Route::Health)],
        ["sync"] => return Err(ApiError::bad_request("Invalid instance id")),
        ["admin", "do", _] => vec![("GET", Route::AdminDo { object_id: s(2) })],
        ["admin", "do", _, "storage"] => {
            vec![("GET", Route::AdminDoStorage { object_id: s(2) })]
        }
        ["webhooks", "clerk"] => vec![("POST", Route::ClerkWebhook)],
        ["api", "ws-token"] => vec![("POST", Route::WsToken)],
        ["api", "projects"] => vec![("GET", Route::ListProjects), ("POST", Route::CreateProject)],
        ["api", "projects", id] if !id.is_empty() => vec![
            ("GET", Route::GetProject(s(2))),
            ("PUT", Route::UpdateProject(s(2))),
            ("DELETE", Route::DeleteProject(s(2))),
        ],
        ["api", "projects", _, "instances"] => vec![
            ("GET", Route::ListInstances(s(2))),
            ("POST", Route::CreateInstance(s(2))),
        ],
        ["api", "projects", _, "shares"] => vec![
            ("GET", Route::ListProjectShares(s(2))),
            ("POST", Route::CreateProjectShare(s(2))),
        ],
        ["api", "instances", id] if !id.is_empty() => vec![
            ("GET", Route::GetInstance(s(2))),
            ("PATCH", Route::UpdateInstance(s(2))),
            ("DELETE", Route::DeleteInstance(s(2))),
        ],
        ["api", "instances", _, "shares"] => vec![
            ("GET", Route::ListInstanceShares(s(2))),
            ("POST", Route::CreateInstanceShare(s(2))),
        ],
        ["api", "shares", id] if !id.is_empty() => vec![("DELETE", Route::DeleteShare(s(2)))],
        ["api", "groups"] => vec![("GET", Route::ListGroups), ("POST", Route::CreateGroup)],
        ["api", "groups", id] if !id.is_empty() => vec![
            ("GET", Route::GetGroup(s(2))),
            ("DELETE", Route::DeleteGroup(s(2))),
        ],
        ["api", "groups", _, "members"] => vec![("POST", Route::AddGroupMember(s(2)))],
        ["api", "groups", _, "members", _] => {
            vec![("DELETE", Route::RemoveGroupMember(s(2), s(4)))]
        }
        ["api", "keys"] => vec![("GET", Route::ListApiKeys), ("POST", Route::CreateApiKey)],
        ["api", "keys", id] if !id.is_empty() => vec![("DELETE", Route::DeleteApiKey(s(2)))],
        ["api", "delegates"] => vec![
            ("GET", Route::ListDelegates),
            ("POST", Route::CreateDelegate),
        ],
        ["api", "delegates", id] if !id.is_empty() => {
            vec![("DELETE", Route::DeleteDelegate(s(2)))]
        }
        ["api", "delegates", id, "secrets"] if !id.is_empty() => vec![
            ("GET", Route::ListDelegateSecrets(s(2))),
            ("POST", Route::CreateDelegateSecret(s(2))),
        ],
        ["api", "delegates", id, "secrets", sec] if !id.is_empty() && !sec.is_empty() => {
            vec![("DELETE", Route::RevokeDelegateSecret(s(2), s(4)))]
        }
        ["api", "delegates", id, "grants"] if !id.is_empty() => vec![
            ("GET", Route::ListDelegateGrants(s(2))),
            ("POST", Route::GrantDelegate(s(2))),
        ],
        ["api", "delegates", id, "grants", inst] if !id.is_empty() && !inst.is_empty() => {
            vec![("DELETE", Route::RevokeDelegateGrant(s(2), s(4)))]
        }
        ["api", "chat"] => vec![("POST", Route::Chat)],
        ["api", "transform"] => vec![("POST", Route::Transform)],
        ["api", "generate-image"] => vec![("POST", Route::GenerateImage)],
        ["api", "analyze-image"] => vec![("POST", Route::AnalyzeImage)],
        _ => return Err(ApiError::not_found("Not found")),
    };
    by_method
        .into_iter()
        .find(|(m, _)| *m == method)
        .map(|(_, route)| route)
        .ok_or(ApiError::MethodNotAllowed)
}

fn only(method: &str, allowed: &str, route: Route) -> Result<Route, ApiError> {
    if method == allowed {
        Ok(route)
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, path: &str) -> u16 {
        match resolve(method, path) {
            Ok(_) => 200,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn known_routes() {
        assert_eq!(resolve("GET", "/health").ok(), Some(Route::Health));
        assert_eq!(
            resolve("GET", "/sync/abc-DEF_123").ok(),
            Some(Route::Sync {
                instance_id: "abc-DEF_123".into()
            })
        );
    }

    #[test]
    fn rest_routes() {
        assert_eq!(
            resolve("PUT", "/api/projects/p1").ok(),
            Some(Route::UpdateProject("p1".into()))
        );
        assert_eq!(
            resolve("DELETE", "/api/groups/g/members/u").ok(),
            Some(Route::RemoveGroupMember("g".into(), "u".into()))
        );
        assert_eq!(resolve("POST", "/api/chat").ok(), Some(Route::Chat));
        assert_eq!(status("PATCH", "/api/projects/p1"), 405);
        assert_eq!(status("PUT", "/api/instances/i1"), 405);
        assert_eq!(status("GET", "/api/projects/p1/nope"), 404);
        assert_eq!(status("GET", "/api/chat"), 405);
    }

    #[test]
    fn delegate_routes_and_what_delegates_may_use() {
        assert_eq!(
            resolve("DELETE", "/api/delegates/del_1/grants/i-1").ok(),
            Some(Route::RevokeDelegateGrant("del_1".into(), "i-1".into()))
        );
        assert_eq!(
            resolve("POST", "/api/delegates/del_1/secrets").ok(),
            Some(Route::CreateDelegateSecret("del_1".into()))
        );
        assert_eq!(status("PUT", "/api/delegates/del_1"), 405);
        assert_eq!(status("GET", "/api/delegates/del_1/nope"), 404);
        for (method, path) in [
            ("POST", "/api/ws-token"),
            ("GET", "/api/instances/i"),
            ("POST", "/api/chat"),
            ("POST", "/api/transform"),
        ] {
            let route = resolve(method, path).unwrap();
            assert_eq!(route.delegate_refusal(), None, "{method} {path}");
        }
        for (method, path, message) in [
            (
                "POST",
                "/api/delegates",
                "Delegates cannot create delegates",
            ),
            ("GET", "/api/projects/p", "Delegates cannot read projects"),
            (
                "PATCH",
                "/api/instances/i",
                "Delegates cannot update instances",
            ),
            ("GET", "/api/keys", "Delegates cannot list API keys"),
            ("DELETE", "/api/shares/s", "Delegates cannot delete shares"),
        ] {
            let route = resolve(method, path).unwrap();
            assert_eq!(route.delegate_refusal(), Some(message), "{method} {path}");
        }
    }

    #[test]
    fn unknown_and_wrong_method() {
        assert_eq!(status("GET", "/nope"), 404);
        assert_eq!(status("GET", "/"), 404);
        assert_eq!(status("POST", "/health"), 405);
        assert_eq!(status("DELETE", "/sync/abc"), 405);
    }

    #[test]
    fn instance_ids_are_checked_first() {
        assert_eq!(status("GET", "/sync/"), 400);
        assert_eq!(status("GET", "/sync"), 400);
        assert_eq!(status("GET", "/sync/a.b"), 400);
        assert_eq!(status("GET", "/sync/a/b"), 400);
        assert_eq!(status("POST", "/sync/a%20b"), 400);
        assert_eq!(status("GET", &format!("/sync/{}", "a".repeat(128))), 200);
        assert_eq!(status("GET", &format!("/sync/{}", "a".repeat(129))), 400);
    }
}
