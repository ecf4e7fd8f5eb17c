//! The route table: a pure function from (method, path) to a `Route`, so
//! that unknown paths (404) and wrong methods on known paths (405) are
//! decided in one place and unit-tested natively.

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Sync { instance_id: String },
    AdminDo { object_id: String },
}

/// Instance ids: 1–128 characters of `[A-Za-z0-9_-]` (protocol.md §1).
pub fn is_valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    match segments.as_slice() {
        ["health"] => only(method, "GET", Route::Health),
        ["sync"] => Err(ApiError::bad_request("Invalid instance id")),
        ["admin", "do", object_id] => only(
            method,
            "GET",
            Route::AdminDo {
                object_id: (*object_id).to_string(),
            },
        ),
        _ => Err(ApiError::not_found("Not found")),
    }
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
