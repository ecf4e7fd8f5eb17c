//! Settings read from the Worker's environment, and the development-mode
//! rule of auth.md, kept pure so it is unit-tested natively.

/// Hosts on which development mode may apply (auth.md, "Safety net").
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Development mode applies only when `ENVIRONMENT` is exactly
/// `development` *and* the request was addressed to a loopback host, so a
/// deployment that forgot `--env production` still behaves as production.
pub fn is_development(environment: Option<&str>, request_host: Option<&str>) -> bool {
    environment == Some("development") && is_loopback(request_host)
}

/// Whether the request was addressed to this machine itself.
pub fn is_loopback(request_host: Option<&str>) -> bool {
    request_host.is_some_and(|h| LOOPBACK_HOSTS.iter().any(|l| h.eq_ignore_ascii_case(l)))
}

/// What `/health` reports for the effective mode of this request.
pub fn environment_name(development: bool) -> &'static str {
    if development {
        "development"
    } else {
        "production"
    }
}

/// Reads a var or secret, treating an empty value as unset. Each name is
/// read from the environment once per isolate: a new value is a new
/// deployment, hence a new isolate, and every request asks for some
/// (`ENVIRONMENT`, whether Clerk is configured), each lookup a few calls
/// into JavaScript, a failed one an error built and dropped.
pub fn setting(env: &worker::Env, name: &str) -> Option<String> {
    thread_local! {
        static READ: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> =
            Default::default();
    }
    if let Some(known) = READ.with(|read| read.borrow().get(name).cloned()) {
        return known;
    }
    let value = env
        .var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.trim().is_empty());
    READ.with(|read| read.borrow_mut().insert(name.to_string(), value.clone()));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_needs_the_variable_and_a_loopback_host() {
        assert!(is_development(Some("development"), Some("localhost")));
        assert!(is_development(Some("development"), Some("127.0.0.1")));
        assert!(is_development(Some("development"), Some("[::1]")));
        assert!(is_development(Some("development"), Some("LOCALHOST")));
    }

    #[test]
    fn anything_else_is_production() {
        assert!(!is_development(
            Some("development"),
            Some("mindcache.example.com")
        ));
        assert!(!is_development(Some("development"), Some("127.0.0.2")));
        assert!(!is_development(
            Some("development"),
            Some("localhost.evil.com")
        ));
        assert!(!is_development(Some("development"), None));
        assert!(!is_development(Some("production"), Some("localhost")));
        assert!(!is_development(Some("Development"), Some("localhost")));
        assert!(!is_development(Some(""), Some("localhost")));
        assert!(!is_development(None, Some("localhost")));
    }

    #[test]
    fn health_names_the_mode() {
        assert_eq!(environment_name(true), "development");
        assert_eq!(environment_name(false), "production");
    }
}
