//! Which URLs a webhook may point at (webhooks-out.md): `https://` (plain
//! `http://` only in development mode), and never a host that names this
//! machine or a private network, in any spelling. URLs are parsed as
//! `fetch` parses them (WHATWG), so `http://0x7f.1/` or `http://2130706433/`
//! are the loopback address they are, and an IPv4 address written as
//! IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 address.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What a host is, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Public,
    /// This machine: allowed in development mode only.
    Loopback,
    /// A private, link-local, shared or unspecified address: never.
    Private,
}

/// The normalised URL if it may be a webhook target, else why not.
pub fn check(raw: &str, development: bool) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("url is required".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!("url must be at most {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if development => {}
        "http" => return Err("url must use https".into()),
        other => return Err(format!("url must use https, not {other}")),
    }
    let host = url
        .host()
        .ok_or_else(|| "url must name a host".to_string())?;
    match reach(&host) {
        Reach::Public => {}
        Reach::Loopback if development => {}
        Reach::Loopback => {
            return Err("url must not point at localhost or a loopback address".into())
        }
        Reach::Private => return Err("url must not point at a private or reserved address".into()),
    }
    Ok(url.to_string())
}

fn reach(host: &Host<&str>) -> Reach {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Reach::Loopback
            } else {
                Reach::Public
            }
        }
        Host::Ipv4(ip) => reach_v4(*ip),
        Host::Ipv6(ip) => reach_v6(*ip),
    }
}

fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, ..] = ip.octets();
    match (a, b) {
        (127, _) => Reach::Loopback,
        (0, _) | (10, _) => Reach::Private,
        (100, b) if (64..128).contains(&b) => Reach::Private,
        (169, 254) => Reach::Private,
        (172, b) if (16..32).contains(&b) => Reach::Private,
        (192, 168) => Reach::Private,
        _ => Reach::Public,
    }
}

fn reach_v6(ip: Ipv6Addr) -> Reach {
    if ip == Ipv6Addr::LOCALHOST {
        return Reach::Loopback;
    }
    if ip == Ipv6Addr::UNSPECIFIED {
        return Reach::Private;
    }
    let seg = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and the
    // NAT64 well-known prefix (64:ff9b::a.b.c.d) all carry an IPv4 address
    // in their last 32 bits: judge that address.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    let mapped = seg[..5] == [0; 5] && seg[5] == 0xffff;
    let compatible = seg[..6] == [0; 6];
    let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if mapped || compatible || nat64 {
        return reach_v4(embedded);
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => Reach::Private, // fc00::/7 unique local
        s if s & 0xffc0 == 0xfe80 => Reach::Private, // fe80::/10 link-local
        _ => Reach::Public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, development: bool) -> bool {
        check(url, development).is_err()
    }

    #[test]
    fn public_https_is_accepted_and_normalised() {
        assert_eq!(
            check("https://Example.com/hook", false).unwrap(),
            "https://example.com/hook"
        );
        assert_eq!(
            check("https://93.184.216.34:8443/x?y=1", false).unwrap(),
            "https://93.184.216.34:8443/x?y=1"
        );
        assert!(check("https://[2606:4700::1111]/", false).is_ok());
    }

    #[test]
    fn http_only_in_development() {
        assert_eq!(
            check("http://example.com/", false).unwrap_err(),
            "url must use https"
        );
        assert!(check("http://example.com/", true).is_ok());
        assert!(refused("ftp://example.com/", true));
        assert!(refused("not a url", true));
        assert!(refused("", true));
        assert!(refused(
            &format!("https://e.com/{}", "a".repeat(MAX_URL_LEN)),
            true
        ));
    }

    #[test]
    fn loopback_only_in_development() {
        for url in [
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
        ] {
            assert!(refused(url, false), "{url} in production");
            assert!(check(url, true).is_ok(), "{url} in development");
        }
    }

    #[test]
    fn private_ranges_never() {
        for url in [
            "https://0.0.0.0/",
            "https://10.1.2.3/",
            "https://100.64.0.1/",
            "https://100.127.255.255/",
            "https://169.254.169.254/latest/meta-data",
            "https://172.16.0.1/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://[::]/",
            "https://[fc00::1]/",
            "https://[fd12:3456::1]/",
            "https://[fe80::1]/",
            "https://[febf::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::ffff:192.168.0.1]/",
            "https://[::10.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://012.0.0.1/",
        ] {
            assert!(refused(url, false), "{url} in production");
            assert!(refused(url, true), "{url} in development");
        }
    }

    #[test]
    fn neighbours_of_the_ranges_are_public() {
        for url in [
            "https://100.63.255.255/",
            "https://100.128.0.0/",
            "https://172.15.255.255/",
            "https://172.32.0.0/",
            "https://192.169.0.1/",
            "https://169.253.0.1/",
            "https://[fec0::1]/",
            "https://[fbff::1]/",
            "https://notlocalhost.com/",
        ] {
            assert!(check(url, false).is_ok(), "{url}");
        }
    }
}
