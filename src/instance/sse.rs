//! Server-sent events (data-api.md "Live changes without a WebSocket"):
//! how the object's frames are written on an event stream. Pure text.

/// A comment line that keeps proxies and clients from timing the stream out.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";
/// Sent at least this often when nothing else is (the spec asks ≤ 25 s).
pub const KEEP_ALIVE_MS: u64 = 20_000;
/// A stream whose client reads slower than this many events queue up is
/// closed rather than buffered without end.
pub const MAX_QUEUED_EVENTS: f64 = 10_000.0;

/// One event. `data` is JSON; a newline inside it (a value sent
/// pretty-printed) is carried on continuation `data:` lines, which the
/// client joins back with newlines.
pub fn event(name: &str, id: u64, data: &str) -> String {
    let mut out = format!("event: {name}\nid: {id}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The event name of a broadcast frame: its `type` (`key_updated`,
/// `key_deleted`, `cleared`), read from the frame's fixed opening.
pub fn event_name(frame: &str) -> &str {
    frame
        .strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("message")
}

/// The last event before the server ends a stream (revocation, deletion),
/// with the close code and reason a socket would have been given.
pub fn closing(id: u64, code: u16, reason: &str) -> String {
    let data = serde_json::json!({ "code": code, "reason": reason }).to_string();
    event("closed", id, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_name_id_and_every_line_of_data() {
        assert_eq!(
            event("key_updated", 7, r#"{"a":1}"#),
            "event: key_updated\nid: 7\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            event("sync", 1, "{\"v\":\r\n 1}"),
            "event: sync\nid: 1\ndata: {\"v\":\ndata:  1}\n\n"
        );
    }

    #[test]
    fn names_come_from_the_frame_type() {
        assert_eq!(
            event_name(r#"{"type":"key_deleted","key":"k"}"#),
            "key_deleted"
        );
        assert_eq!(event_name("oops"), "message");
        assert!(closing(3, 4003, "Access revoked")
            .contains("data: {\"code\":4003,\"reason\":\"Access revoked\"}"));
    }
}
