//! The server under test: where it is and how to authenticate.

use std::net::IpAddr;

use reqwest::Url;

#[derive(Debug, Clone)]
pub struct Target {
    /// `http(s)://host[:port][/prefix]` without a trailing slash.
    pub http_base: String,
    /// The same origin with `ws`/`wss`.
    pub ws_base: String,
    /// The `Authorization` header value, if any.
    pub auth: Option<String>,
}

/// Whether a URL host is this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

impl Target {
    pub fn parse(raw: &str, token: Option<&str>, allow_remote: bool) -> Result<Target, String> {
        let url = Url::parse(raw).map_err(|e| format!("--url {raw}: {e}"))?;
        let ws_scheme = match url.scheme() {
            "http" => "ws",
            "https" => "wss",
            other => return Err(format!("--url must be http:// or https://, not {other}://")),
        };
        if !is_loopback(&url) && !allow_remote {
            return Err(format!(
                "--url {raw} is not a loopback address (localhost, 127.0.0.0/8, ::1); \
                 pass --allow-remote to benchmark a deployment"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("--url must not have a query or fragment".to_string());
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(h) => h.to_string(),
            None => return Err(format!("--url {raw} has no host")),
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        let auth = match token {
            Some(t) if t.trim().is_empty() => return Err("empty --token".to_string()),
            Some(t) => Some(format!("Bearer {}", t.trim())),
            None => None,
        };
        Ok(Target {
            http_base: format!("{}://{host}{port}{path}", url.scheme()),
            ws_base: format!("{ws_scheme}://{host}{port}{path}"),
            auth,
        })
    }

    pub fn sync_url(&self, instance: &str) -> String {
        format!("{}/sync/{instance}", self.ws_base)
    }

    pub fn http(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        for ok in [
            "http://localhost:8788",
            "http://127.0.0.1:8788/",
            "http://127.9.9.9",
            "http://[::1]:8788",
            "http://LOCALHOST",
        ] {
            assert!(Target::parse(ok, None, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1:8788",
            "http://192.168.1.2",
            "https://mindcache.example.workers.dev",
            "http://[::2]",
            "http://localhost.example.com",
        ] {
            assert!(Target::parse(bad, None, false).is_err(), "{bad}");
        }
        assert!(Target::parse("https://example.com", Some("t"), true).is_ok());
        assert!(Target::parse("ftp://localhost", None, false).is_err());
    }

    #[test]
    fn builds_urls_and_auth() {
        let t = Target::parse("https://example.com/base/", Some("abc"), true).unwrap();
        assert_eq!(t.sync_url("i1"), "wss://example.com/base/sync/i1");
        assert_eq!(t.http("/health"), "https://example.com/base/health");
        assert_eq!(t.auth.as_deref(), Some("Bearer abc"));
        let t = Target::parse("http://[::1]:9/", None, false).unwrap();
        assert_eq!(t.sync_url("x"), "ws://[::1]:9/sync/x");
        assert_eq!(t.auth, None);
    }
}
