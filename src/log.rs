//! Structured logs: every line the server writes is one JSON object, so
//! operators can search and aggregate them (Workers Logs, `wrangler tail`,
//! any log drain). Three kinds, told apart by `event`:
//!
//! - `request`: one per HTTP request (`ts`, `requestId`, `method`, `route`
//!   template, `status`, `durationMs`, and who called: `userId`, plus
//!   `keyId` or `delegateId` when an API key or a delegate was used);
//! - `websocket`: one per WebSocket session end (`instanceId`,
//!   `durationMs`, `framesIn`, `framesOut`, `closeCode`, who);
//! - `error` / `warn`: what went wrong inside, with the detail a response
//!   hides (and the `requestId` when the line belongs to a request).
//!
//! Lines carry ids only, never a credential: no header, no query string, no
//! path (the route *template* stands for it), no body. Building a line is
//! pure and unit-tested here; only [`emit`] touches the runtime.

use serde::Serialize;

use crate::permission::AccessBasis;

/// Who a line is about: ids, never a key, token or secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Who {
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(rename = "keyId", skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(rename = "delegateId", skip_serializing_if = "Option::is_none")]
    pub delegate_id: Option<String>,
}

impl Who {
    /// A user, and the API key or delegate it acted through.
    pub fn of(user_id: &str, basis: &AccessBasis) -> Who {
        Who {
            user_id: (!user_id.is_empty()).then(|| user_id.to_string()),
            key_id: basis.api_key.clone(),
            delegate_id: basis.delegate.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    // The numbers index the console methods of `emit`.
    Info = 0,
    Warn = 1,
    Error = 2,
}

/// What every line opens with: when, how bad, and which kind (`event`).
#[derive(Debug, Serialize)]
pub struct Head {
    pub ts: String,
    pub level: Level,
    pub event: &'static str,
}

impl Head {
    pub fn new(now_ms: i64, level: Level, event: &'static str) -> Head {
        Head {
            ts: crate::time::format_ms(now_ms),
            level,
            event,
        }
    }
}

/// One HTTP request, written when its response is ready.
#[derive(Debug, Serialize)]
pub struct RequestLine<'a> {
    #[serde(flatten)]
    pub head: Head,
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    pub method: &'a str,
    /// The route template (`/api/projects/:id`); null for an unknown path.
    pub route: Option<&'a str>,
    pub status: u16,
    #[serde(rename = "durationMs")]
    pub duration_ms: i64,
    #[serde(flatten)]
    pub who: &'a Who,
}

impl<'a> RequestLine<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now_ms: i64,
        started_ms: i64,
        request_id: &'a str,
        method: &'a str,
        route: Option<&'a str>,
        status: u16,
        who: &'a Who,
    ) -> Self {
        // A 5xx is ours to look at; the error line says why.
        let level = if status >= 500 {
            Level::Error
        } else {
            Level::Info
        };
        RequestLine {
            head: Head::new(now_ms, level, "request"),
            request_id,
            method,
            route,
            status,
            duration_ms: (now_ms - started_ms).max(0),
            who,
        }
    }
}

/// One WebSocket session, written when it ends.
#[derive(Debug, Serialize)]
pub struct SessionLine<'a> {
    #[serde(flatten)]
    pub head: Head,
    #[serde(rename = "instanceId")]
    pub instance_id: &'a str,
    #[serde(rename = "durationMs")]
    pub duration_ms: i64,
    #[serde(rename = "framesIn")]
    pub frames_in: u64,
    #[serde(rename = "framesOut")]
    pub frames_out: u64,
    #[serde(rename = "closeCode")]
    pub close_code: u16,
    /// The object hibernated during the session: the frame counts cover
    /// only the time since it last woke (the duration is whole).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    #[serde(flatten)]
    pub who: Who,
}

/// Something that went wrong inside, with its detail.
#[derive(Debug, Serialize)]
pub struct ProblemLine<'a> {
    #[serde(flatten)]
    pub head: Head,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    pub message: &'a str,
}

impl<'a> ProblemLine<'a> {
    pub fn new(now_ms: i64, level: Level, message: &'a str) -> Self {
        let event = if level == Level::Warn {
            "warn"
        } else {
            "error"
        };
        ProblemLine {
            head: Head::new(now_ms, level, event),
            request_id: None,
            route: None,
            message,
        }
    }
}

/// The line as JSON text (a line never fails to serialise: it holds only
/// strings and numbers).
pub fn to_line<T: Serialize>(line: &T) -> String {
    serde_json::to_string(line).unwrap_or_else(|_| r#"{"event":"unloggable"}"#.to_string())
}

/// The id a request is known by: Cloudflare's `cf-ray` when it looks like
/// one (so our lines join Cloudflare's own logs), else `fallback` (random).
pub fn request_id(cf_ray: Option<&str>, fallback: impl FnOnce() -> String) -> String {
    match cf_ray {
        Some(ray)
            if !ray.is_empty()
                && ray.len() <= 64
                && ray
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            ray.to_string()
        }
        _ => fallback(),
    }
}

/// Writes a line: `console.log` for information, `console.warn` and
/// `console.error` for problems (natively, to stderr).
pub fn emit(level: Level, line: &str) {
    #[cfg(target_arch = "wasm32")]
    console::write_soon(level as u8, line);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = level;
        eprintln!("{line}");
    }
}

/// The console call, made from a microtask queued by the current call: the
/// same line, in the same order, within the same request, but from a
/// one-frame JavaScript stack. Under `wrangler dev` an inspector is always
/// attached, so every console call captures and ships its caller's stack
/// to wrangler; from deep inside wasm that stack is some thirty frames, and
/// the call cost twice the floor's (docs/performance.md). Deployed, no
/// stack is captured and this costs one microtask.
#[cfg(target_arch = "wasm32")]
mod console {
    use wasm_bindgen::prelude::wasm_bindgen;

    #[wasm_bindgen(inline_js = "
        const METHODS = ['log', 'warn', 'error'];
        export function write_soon(level, line) {
            queueMicrotask(() => console[METHODS[level]](line));
        }")]
    extern "C" {
        /// `level`: a [`super::Level`] as its index in `METHODS`.
        pub fn write_soon(level: u8, line: &str);
    }
}

/// The runtime's clock in milliseconds.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        worker::Date::now().as_millis() as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Logs a problem that belongs to no particular request.
pub fn problem(level: Level, message: &str) {
    emit(level, &to_line(&ProblemLine::new(now_ms(), level, message)));
}

/// `log_error!("…{}", x)`: an `error` line with the formatted message.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => {
        $crate::log::problem($crate::log::Level::Error, &format!($($arg)*))
    };
}

/// `log_warn!("…{}", x)`: a `warn` line with the formatted message.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => {
        $crate::log::problem($crate::log::Level::Warn, &format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(line: String) -> Value {
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn a_request_line_names_the_route_and_the_caller_by_id() {
        let who = Who::of(
            "user_1",
            &AccessBasis {
                api_key: Some("key_9".into()),
                ..AccessBasis::default()
            },
        );
        let line = RequestLine::new(
            1_827_762_840_250,
            1_827_762_840_000,
            "8f1c2d3e4a5b6c7d-LHR",
            "GET",
            Some("/api/projects/:id"),
            200,
            &who,
        );
        assert_eq!(
            parsed(to_line(&line)),
            json!({
                "ts": "2027-12-02T15:54:00.250Z",
                "level": "info",
                "event": "request",
                "requestId": "8f1c2d3e4a5b6c7d-LHR",
                "method": "GET",
                "route": "/api/projects/:id",
                "status": 200,
                "durationMs": 250,
                "userId": "user_1",
                "keyId": "key_9",
            })
        );
    }

    #[test]
    fn anonymous_requests_and_server_errors() {
        let who = Who::default();
        let line = parsed(to_line(&RequestLine::new(
            10, 20, "r", "GET", None, 503, &who,
        )));
        assert_eq!(line["route"], Value::Null);
        assert_eq!(line["durationMs"], 0);
        assert_eq!(line["level"], "error");
        assert!(line.get("userId").is_none());
    }

    #[test]
    fn a_delegate_is_named_by_its_id_not_its_secret() {
        let who = Who::of(
            "u",
            &AccessBasis {
                delegate: Some("del_1".into()),
                secret: Some("sec_id".into()),
                ..AccessBasis::default()
            },
        );
        let line = parsed(to_line(&SessionLine {
            head: Head::new(0, Level::Info, "websocket"),
            instance_id: "i-1",
            duration_ms: 1200,
            frames_in: 3,
            frames_out: 5,
            close_code: 1000,
            partial: false,
            who,
        }));
        assert_eq!(line["delegateId"], "del_1");
        assert_eq!(line["framesOut"], 5);
        assert!(line.get("partial").is_none());
        assert!(!line.to_string().contains("sec_id"));
    }

    #[test]
    fn request_ids_come_from_cf_ray_when_it_is_sane() {
        let random = || "generated".to_string();
        assert_eq!(
            request_id(Some("8f1c2d3e4a5b6c7d-LHR"), random),
            "8f1c2d3e4a5b6c7d-LHR"
        );
        assert_eq!(request_id(None, random), "generated");
        assert_eq!(request_id(Some(""), random), "generated");
        assert_eq!(request_id(Some("a\"b"), random), "generated");
        assert_eq!(request_id(Some(&"a".repeat(65)), random), "generated");
    }

    #[test]
    fn problems_carry_their_detail() {
        let mut line = ProblemLine::new(0, Level::Error, "D1_ERROR: no such table");
        line.request_id = Some("r1");
        let v = parsed(to_line(&line));
        assert_eq!(v["event"], "error");
        assert_eq!(v["message"], "D1_ERROR: no such table");
        assert_eq!(v["requestId"], "r1");
        let warn = parsed(to_line(&ProblemLine::new(0, Level::Warn, "slow")));
        assert_eq!(warn["event"], "warn");
        assert!(warn.get("requestId").is_none());
    }
}
