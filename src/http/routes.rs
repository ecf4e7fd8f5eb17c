//! The route table: one list of (method, path template, route), from
//! which a pure function resolves a request, so that unknown paths (404)
//! and wrong methods on known paths (405) are decided in one place and
//! unit-tested natively. The templates (`/api/projects/:id`) are what the
//! request log names and what the OpenAPI document must describe.

use crate::error::ApiError;
use crate::ids::is_valid_instance_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    OpenApi,
    Inspect { instance_id: String },
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
    ListKeys(String),
    GetKey(String, String),
    PutKey(String, String),
    DeleteKey(String, String),
    Batch(String),
    Events(String),
    Export(String),
    Import(String),
    ListWebhooks(String),
    CreateWebhook(String),
    UpdateWebhook(String),
    DeleteWebhook(String),
    ListWebhookDeliveries(String),
    TestWebhook(String),
    Usage,
}

impl Route {
    /// Why a delegate may not use this route (delegates.md: "Delegates
    /// cannot <verb> <thing>"), or `None` for the instance-data routes it
    /// may use.
    pub fn delegate_refusal(&self) -> Option<&'static str> {
        use Route::*;
        Some(match self {
            Health
            | OpenApi
            | Inspect { .. }
            | Sync { .. }
            | AdminDo { .. }
            | AdminDoStorage { .. }
            | ClerkWebhook
            | WsToken
            | GetInstance(_)
            | Chat
            | Transform
            | GenerateImage
            | AnalyzeImage
            | ListKeys(_)
            | GetKey(..)
            | PutKey(..)
            | DeleteKey(..)
            | Batch(_)
            | Events(_)
            | Export(_)
            | Import(_) => return None,
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
            ListWebhooks(_) | ListWebhookDeliveries(_) => "Delegates cannot read webhooks",
            CreateWebhook(_) | UpdateWebhook(_) | DeleteWebhook(_) | TestWebhook(_) => {
                "Delegates cannot manage webhooks"
            }
            Usage => "Delegates cannot read usage",
        })
    }
}

/// One route: its method, its path template (`:name` marks a parameter,
/// never empty) and how the parameters make the `Route`.
pub struct Entry {
    pub method: &'static str,
    pub template: &'static str,
    build: fn(&[&str]) -> Route,
}

const fn entry(method: &'static str, template: &'static str, build: fn(&[&str]) -> Route) -> Entry {
    Entry {
        method,
        template,
        build,
    }
}

/// The template of `/sync/:instanceId`, whose id is checked before routing.
pub const SYNC_TEMPLATE: &str = "/sync/:instanceId";

/// Every route the Worker serves.
pub static TABLE: &[Entry] = &[
    entry("GET", "/health", |_| Route::Health),
    entry("GET", "/api/openapi.json", |_| Route::OpenApi),
    entry("GET", "/inspect/:instanceId", |p| Route::Inspect {
        instance_id: p[0].into(),
    }),
    entry("GET", SYNC_TEMPLATE, |p| Route::Sync {
        instance_id: p[0].into(),
    }),
    entry("GET", "/admin/do/:objectId", |p| Route::AdminDo {
        object_id: p[0].into(),
    }),
    entry("GET", "/admin/do/:objectId/storage", |p| {
        Route::AdminDoStorage {
            object_id: p[0].into(),
        }
    }),
    entry("POST", "/webhooks/clerk", |_| Route::ClerkWebhook),
    entry("POST", "/api/ws-token", |_| Route::WsToken),
    entry("GET", "/api/projects", |_| Route::ListProjects),
    entry("POST", "/api/projects", |_| Route::CreateProject),
    entry("GET", "/api/projects/:id", |p| {
        Route::GetProject(p[0].into())
    }),
    entry("PUT", "/api/projects/:id", |p| {
        Route::UpdateProject(p[0].into())
    }),
    entry("DELETE", "/api/projects/:id", |p| {
        Route::DeleteProject(p[0].into())
    }),
    entry("GET", "/api/projects/:id/instances", |p| {
        Route::ListInstances(p[0].into())
    }),
    entry("POST", "/api/projects/:id/instances", |p| {
        Route::CreateInstance(p[0].into())
    }),
    entry("GET", "/api/projects/:id/shares", |p| {
        Route::ListProjectShares(p[0].into())
    }),
    entry("POST", "/api/projects/:id/shares", |p| {
        Route::CreateProjectShare(p[0].into())
    }),
    entry("GET", "/api/instances/:id", |p| {
        Route::GetInstance(p[0].into())
    }),
    entry("PATCH", "/api/instances/:id", |p| {
        Route::UpdateInstance(p[0].into())
    }),
    entry("DELETE", "/api/instances/:id", |p| {
        Route::DeleteInstance(p[0].into())
    }),
    entry("GET", "/api/instances/:id/shares", |p| {
        Route::ListInstanceShares(p[0].into())
    }),
    entry("POST", "/api/instances/:id/shares", |p| {
        Route::CreateInstanceShare(p[0].into())
    }),
    entry("DELETE", "/api/shares/:id", |p| {
        Route::DeleteShare(p[0].into())
    }),
    entry("GET", "/api/groups", |_| Route::ListGroups),
    entry("POST", "/api/groups", |_| Route::CreateGroup),
    entry("GET", "/api/groups/:id", |p| Route::GetGroup(p[0].into())),
    entry("DELETE", "/api/groups/:id", |p| {
        Route::DeleteGroup(p[0].into())
    }),
    entry("POST", "/api/groups/:id/members", |p| {
        Route::AddGroupMember(p[0].into())
    }),
    entry("DELETE", "/api/groups/:id/members/:userId", |p| {
        Route::RemoveGroupMember(p[0].into(), p[1].into())
    }),
    entry("GET", "/api/keys", |_| Route::ListApiKeys),
    entry("POST", "/api/keys", |_| Route::CreateApiKey),
    entry("DELETE", "/api/keys/:id", |p| {
        Route::DeleteApiKey(p[0].into())
    }),
    entry("GET", "/api/delegates", |_| Route::ListDelegates),
    entry("POST", "/api/delegates", |_| Route::CreateDelegate),
    entry("DELETE", "/api/delegates/:id", |p| {
        Route::DeleteDelegate(p[0].into())
    }),
    entry("GET", "/api/delegates/:id/secrets", |p| {
        Route::ListDelegateSecrets(p[0].into())
    }),
    entry("POST", "/api/delegates/:id/secrets", |p| {
        Route::CreateDelegateSecret(p[0].into())
    }),
    entry("DELETE", "/api/delegates/:id/secrets/:secretId", |p| {
        Route::RevokeDelegateSecret(p[0].into(), p[1].into())
    }),
    entry("GET", "/api/delegates/:id/grants", |p| {
        Route::ListDelegateGrants(p[0].into())
    }),
    entry("POST", "/api/delegates/:id/grants", |p| {
        Route::GrantDelegate(p[0].into())
    }),
    entry("DELETE", "/api/delegates/:id/grants/:instanceId", |p| {
        Route::RevokeDelegateGrant(p[0].into(), p[1].into())
    }),
    entry("POST", "/api/chat", |_| Route::Chat),
    entry("POST", "/api/transform", |_| Route::Transform),
    entry("POST", "/api/generate-image", |_| Route::GenerateImage),
    entry("POST", "/api/analyze-image", |_| Route::AnalyzeImage),
    entry("GET", "/api/instances/:id/keys", |p| {
        Route::ListKeys(p[0].into())
    }),
    entry("GET", "/api/instances/:id/keys/:key", |p| {
        Route::GetKey(p[0].into(), p[1].into())
    }),
    entry("PUT", "/api/instances/:id/keys/:key", |p| {
        Route::PutKey(p[0].into(), p[1].into())
    }),
    entry("DELETE", "/api/instances/:id/keys/:key", |p| {
        Route::DeleteKey(p[0].into(), p[1].into())
    }),
    entry("POST", "/api/instances/:id/batch", |p| {
        Route::Batch(p[0].into())
    }),
    entry("GET", "/api/instances/:id/events", |p| {
        Route::Events(p[0].into())
    }),
    entry("GET", "/api/instances/:id/export", |p| {
        Route::Export(p[0].into())
    }),
    entry("POST", "/api/instances/:id/import", |p| {
        Route::Import(p[0].into())
    }),
    entry("GET", "/api/instances/:id/webhooks", |p| {
        Route::ListWebhooks(p[0].into())
    }),
    entry("POST", "/api/instances/:id/webhooks", |p| {
        Route::CreateWebhook(p[0].into())
    }),
    entry("PATCH", "/api/webhooks/:id", |p| {
        Route::UpdateWebhook(p[0].into())
    }),
    entry("DELETE", "/api/webhooks/:id", |p| {
        Route::DeleteWebhook(p[0].into())
    }),
    entry("GET", "/api/webhooks/:id/deliveries", |p| {
        Route::ListWebhookDeliveries(p[0].into())
    }),
    entry("POST", "/api/webhooks/:id/test", |p| {
        Route::TestWebhook(p[0].into())
    }),
    entry("GET", "/api/usage", |_| Route::Usage),
];

/// At most this many parameters in a template.
const MAX_PARAMS: usize = 2;

impl Entry {
    /// The parameters when `segments` (the path split at `/`, without the
    /// outer slashes) fit the template.
    fn matches<'p>(&self, segments: &[&'p str]) -> Option<[&'p str; MAX_PARAMS]> {
        let mut params = [""; MAX_PARAMS];
        let mut n = 0;
        let mut parts = self.template.trim_start_matches('/').split('/');
        for segment in segments {
            let part = parts.next()?;
            if part.starts_with(':') {
                if segment.is_empty() || n == MAX_PARAMS {
                    return None;
                }
                params[n] = segment;
                n += 1;
            } else if part != *segment {
                return None;
            }
        }
        parts.next().is_none().then_some(params)
    }
}

/// What routing made of a request: the template of the path it matched
/// (also when the method was wrong) and the route or the refusal.
pub struct Lookup {
    pub template: Option<&'static str>,
    pub route: Result<Route, ApiError>,
}

pub fn lookup(method: &str, path: &str) -> Lookup {
    // `/sync/<anything>`: the id is validated before anything else, even
    // when it contains slashes, so clients get a precise 400.
    if path == "/sync" || path.starts_with("/sync/") {
        let id = path.strip_prefix("/sync/").unwrap_or_default();
        let route = if !is_valid_instance_id(id) {
            Err(ApiError::bad_request("Invalid instance id"))
        } else if method != "GET" {
            Err(ApiError::MethodNotAllowed)
        } else {
            Ok(Route::Sync {
                instance_id: id.to_string(),
            })
        };
        return Lookup {
            template: Some(SYNC_TEMPLATE),
            route,
        };
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut template = None;
    for entry in TABLE {
        if let Some(params) = entry.matches(&segments) {
            template = Some(entry.template);
            if entry.method == method {
                return Lookup {
                    template,
                    route: Ok((entry.build)(&params)),
                };
            }
        }
    }
    let refusal = match template {
        Some(_) => ApiError::MethodNotAllowed,
        None => ApiError::not_found("Not found"),
    };
    Lookup {
        template,
        route: Err(refusal),
    }
}

pub fn resolve(method: &str, path: &str) -> Result<Route, ApiError> {
    lookup(method, path).route
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
    fn webhook_and_usage_routes_are_refused_to_delegates() {
        assert_eq!(
            resolve("GET", "/api/instances/i/webhooks").ok(),
            Some(Route::ListWebhooks("i".into()))
        );
        assert_eq!(
            resolve("POST", "/api/webhooks/w/test").ok(),
            Some(Route::TestWebhook("w".into()))
        );
        assert_eq!(status("PUT", "/api/webhooks/w"), 405);
        for (method, path) in [
            ("GET", "/api/instances/i/webhooks"),
            ("POST", "/api/instances/i/webhooks"),
            ("PATCH", "/api/webhooks/w"),
            ("DELETE", "/api/webhooks/w"),
            ("GET", "/api/webhooks/w/deliveries"),
            ("POST", "/api/webhooks/w/test"),
            ("GET", "/api/usage"),
        ] {
            let route = resolve(method, path).unwrap();
            assert!(route.delegate_refusal().is_some(), "{method} {path}");
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
    fn lookup_names_the_template_also_for_a_wrong_method() {
        let found = lookup("GET", "/api/projects/p1/instances");
        assert_eq!(found.template, Some("/api/projects/:id/instances"));
        assert_eq!(found.route.ok(), Some(Route::ListInstances("p1".into())));
        let wrong = lookup("PATCH", "/api/projects/p1");
        assert_eq!(wrong.template, Some("/api/projects/:id"));
        assert_eq!(wrong.route.unwrap_err().status(), 405);
        let unknown = lookup("GET", "/api/projects/p1/nope");
        assert_eq!(unknown.template, None);
        assert_eq!(lookup("GET", "/sync/a.b").template, Some(SYNC_TEMPLATE));
        assert_eq!(
            lookup("GET", "/api/openapi.json").route.ok(),
            Some(Route::OpenApi)
        );
        assert_eq!(
            lookup("GET", "/inspect/i-1").route.ok(),
            Some(Route::Inspect {
                instance_id: "i-1".into()
            })
        );
    }

    #[test]
    fn parameters_are_never_empty() {
        assert_eq!(status("GET", "/api/projects//instances"), 404);
        assert_eq!(status("DELETE", "/api/groups//members/u"), 404);
        assert_eq!(status("GET", "/admin/do/"), 404);
        // Outer slashes do not matter.
        assert_eq!(status("GET", "/api/projects/"), 200);
    }

    #[test]
    fn every_route_of_the_table_resolves_to_itself() {
        for entry in TABLE {
            let path = entry
                .template
                .split('/')
                .map(|part| if part.starts_with(':') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            let found = lookup(entry.method, &path);
            assert_eq!(found.template, Some(entry.template), "{path}");
            assert!(found.route.is_ok(), "{} {path}", entry.method);
        }
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
