//! Incremental parser for server-sent events as OpenAI streams them.
//!
//! Bytes arrive in arbitrary chunks, so a line, a `\r\n` pair or a UTF-8
//! character may be split between two chunks; the parser buffers until a line
//! is complete and only then decodes it.

/// One complete event from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The event's `data` (several `data:` lines joined with `\n`).
    Data(String),
    /// The `[DONE]` sentinel that ends an OpenAI stream.
    Done,
}

/// Line-oriented SSE decoder (WHATWG event-stream rules, `data` field only).
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being received (no terminator yet).
    line: Vec<u8>,
    /// Data lines of the event being received.
    data: String,
    has_data: bool,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to it.
    after_cr: bool,
    /// Whether the first line was seen (a BOM may only precede it).
    started: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes a chunk and returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    start = i + 1;
                    continue;
                }
            }
            if b == b'\n' || b == b'\r' {
                self.line.extend_from_slice(&chunk[start..i]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, &mut out);
                self.after_cr = b == b'\r';
                start = i + 1;
            }
        }
        self.line.extend_from_slice(&chunk[start..]);
        out
    }

    /// Ends the stream. The standard drops an event that lacks its final blank
    /// line; we deliver it instead, since a truncated last event from a
    /// proxy or fake is still meaningful (typically `[DONE]`).
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
        }
        self.process_line(b"", &mut out);
        out
    }

    fn process_line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        // Lossy decoding: a stray invalid byte must not kill the whole stream.
        let decoded = String::from_utf8_lossy(raw);
        let mut line: &str = &decoded;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                let data = std::mem::take(&mut self.data);
                self.has_data = false;
                out.push(if data.trim() == "[DONE]" {
                    SseEvent::Done
                } else {
                    SseEvent::Data(data)
                });
            }
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        // `event`, `id` and `retry` carry nothing OpenAI relies on.
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.feed(c));
        }
        out.extend(p.finish());
        out
    }

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(s.to_owned())
    }

    const RECORDED: &[u8] = b": keep-alive\r\n\r\ndata: {\"a\":\"h\xc3\xa9llo \xe2\x82\xac\"}\r\n\r\ndata: {\"b\":1}\n\nevent: x\nid: 7\ndata: line1\ndata:line2\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            data("{\"a\":\"héllo €\"}"),
            data("{\"b\":1}"),
            data("line1\nline2"),
            SseEvent::Done,
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(feed_all(&[RECORDED]), expected());
    }

    #[test]
    fn every_split_point() {
        for i in 0..=RECORDED.len() {
            let (a, b) = RECORDED.split_at(i);
            assert_eq!(feed_all(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn every_two_split_points() {
        for i in 0..=RECORDED.len() {
            for j in i..=RECORDED.len() {
                let chunks = [&RECORDED[..i], &RECORDED[i..j], &RECORDED[j..]];
                assert_eq!(feed_all(&chunks), expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let chunks: Vec<&[u8]> = RECORDED.chunks(1).collect();
        assert_eq!(feed_all(&chunks), expected());
    }

    /// Chunkings that each exercise one edge of the line grammar.
    #[test]
    fn line_endings_splits_and_comments() {
        let cases: [(&[&[u8]], Vec<SseEvent>); 4] = [
            // "€" is E2 82 AC; split inside it.
            (&[b"data: \xe2\x82", b"\xac\n\n"], vec![data("€")]),
            // Bare CR line endings, after a byte-order mark.
            (
                &[b"\xef\xbb\xbfdata: a\r\rdata: b\r", b"\r"],
                vec![data("a"), data("b")],
            ),
            // A CRLF split between chunks is one terminator: were the \n a
            // second one, "a" and "b" would be two events.
            (&[b"data: a\r", b"\ndata: b\r\n\r\n"], vec![data("a\nb")]),
            // Comments, and data fields with no value.
            (
                &[b":ping\n\n:another\ndata\n\ndata:\n\n"],
                vec![data(""), data("")],
            ),
        ];
        for (chunks, events) in cases {
            assert_eq!(feed_all(chunks), events, "{chunks:?}");
        }
    }

    #[test]
    fn unterminated_last_event_is_delivered() {
        assert_eq!(feed_all(&[b"data: [DONE]"]), vec![SseEvent::Done]);
        assert_eq!(feed_all(&[b"data: x\n"]), vec![data("x")]);
        assert!(feed_all(&[b""]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(feed_all(&[b"data: a\xffb\n\n"]), vec![data("a\u{fffd}b")]);
    }
}
