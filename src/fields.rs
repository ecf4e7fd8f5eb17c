//! Request bodies as JSON objects with typed accessors whose errors name the
//! field (400) and a size limit (413). Pure: the HTTP layer reads the bytes,
//! everything above parses them here.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Body limit of the REST routes; the AI routes allow more.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_AI_BODY_BYTES: usize = 8 * 1024 * 1024;

pub fn parse_object(bytes: &[u8], limit: usize) -> Result<Fields, ApiError> {
    if bytes.len() > limit {
        return Err(too_large(limit));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON body: {e}"))),
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "Request body too large (limit {} MiB)",
        limit / (1024 * 1024)
    ))
}

/// A request body taken in as it arrives, chunk by chunk, and refused as
/// soon as it goes over its limit: a body without a `Content-Length` (sent
/// chunked) is never held whole before its size is known.
#[derive(Debug)]
pub struct LimitedBody {
    bytes: Vec<u8>,
    limit: usize,
}

impl LimitedBody {
    /// An empty body; `413` at once when the declared length is over the
    /// limit. A declared length only reserves room (at most the limit); the
    /// bytes that arrive are what count.
    pub fn new(limit: usize, declared: Option<usize>) -> Result<Self, ApiError> {
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        Ok(LimitedBody {
            bytes: Vec::with_capacity(declared.unwrap_or(0)),
            limit,
        })
    }

    /// Appends a chunk, or `413` if the body would go over the limit (the
    /// chunk is then not kept).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        if chunk.len() > self.limit - self.bytes.len() {
            return Err(too_large(self.limit));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A request body's fields, with typed accessors whose errors name the field.
#[derive(Debug)]
pub struct Fields(pub Map<String, Value>);

impl Fields {
    fn present(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.present(name).is_some()
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.present(name)
    }

    /// An optional string; `max_chars` bounds its length in characters.
    pub fn opt_str(&self, name: &str, max_chars: usize) -> Result<Option<&str>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Some(s)),
            Some(Value::String(_)) => Err(ApiError::bad_request(format!(
                "{name} must be at most {max_chars} characters"
            ))),
            Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
        }
    }

    /// Like [`opt_str`](Self::opt_str), but required.
    pub fn req_str(&self, name: &str, max_chars: usize) -> Result<&str, ApiError> {
        self.opt_str(name, max_chars)?
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    }

    /// A required non-blank string of 1..=`max_chars` characters.
    pub fn name(&self, name: &str, max_chars: usize) -> Result<String, ApiError> {
        match self.opt_name(name, max_chars)? {
            Some(s) => Ok(s),
            None => Err(ApiError::bad_request(format!("{name} is required"))),
        }
    }

    /// An optional name: when present, 1..=`max_chars` characters, trimmed.
    pub fn opt_name(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        let Some(s) = self.opt_str(name, usize::MAX)? else {
            return Ok(None);
        };
        let trimmed = s.trim();
        let n = trimmed.chars().count();
        if n == 0 || n > max_chars {
            return Err(ApiError::bad_request(format!(
                "{name} must be 1-{max_chars} characters"
            )));
        }
        Ok(Some(trimmed.to_string()))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // Accept the 0/1 spelling D1 rows use.
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
            Some(_) => Err(ApiError::bad_request(format!("{name} must be a boolean"))),
        }
    }

    pub fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::bad_request(format!("{name} must be an array of strings"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "{name} must be an array of strings"
            ))),
        }
    }
}

/// A URL's query parameters, percent-decoded, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of(url: &url::Url) -> Query {
        Query(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        parse_object(json.as_bytes(), MAX_BODY_BYTES).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(r: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let e = r.expect_err("expected an error");
        (e.status(), e.to_string())
    }

    #[test]
    fn bodies_must_be_json_objects_within_the_limit() {
        assert_eq!(err(parse_object(b"{nope", 100)).0, 400);
        assert_eq!(err(parse_object(b"[1]", 100)).0, 400);
        assert_eq!(err(parse_object(b"", 100)).0, 400);
        assert_eq!(err(parse_object(&[b' '; 101], 100)).0, 413);
    }

    #[test]
    fn bodies_are_limited_while_they_arrive() {
        assert_eq!(err(LimitedBody::new(10, Some(11))).0, 413);
        let mut body = LimitedBody::new(10, None).unwrap();
        body.push(b"12345").unwrap();
        body.push(b"").unwrap();
        body.push(b"67890").unwrap();
        assert_eq!(err(body.push(b"x")).0, 413);
        assert_eq!(body.into_bytes(), b"1234567890");
        // A declared length that lies low does not let more in.
        let mut body = LimitedBody::new(MAX_BODY_BYTES, Some(3)).unwrap();
        body.push(&vec![b'a'; MAX_BODY_BYTES]).unwrap();
        assert_eq!(
            err(body.push(b"b")),
            (413, "Request body too large (limit 1 MiB)".into())
        );
        // One chunk over the limit on its own is refused whole.
        let mut body = LimitedBody::new(4, Some(4)).unwrap();
        assert_eq!(err(body.push(b"12345")).0, 413);
        assert!(body.into_bytes().is_empty());
    }

    #[test]
    fn names_are_checked_and_named() {
        let f = fields(r#"{"name":"  Notes  ","blank":"   ","n":3,"long":"abcdef"}"#);
        assert_eq!(f.name("name", 200).unwrap(), "Notes");
        assert_eq!(
            err(f.name("missing", 200)),
            (400, "missing is required".into())
        );
        assert_eq!(
            err(f.name("blank", 200)).1,
            "blank must be 1-200 characters"
        );
        assert_eq!(err(f.name("n", 200)).1, "n must be a string");
        assert_eq!(err(f.name("long", 5)).1, "long must be 1-5 characters");
    }

    #[test]
    fn optional_fields() {
        let f = fields(r#"{"a":true,"b":1,"c":"x","d":null,"l":["r","w"],"bad":[1]}"#);
        assert_eq!(f.opt_bool("a").unwrap(), Some(true));
        assert_eq!(f.opt_bool("b").unwrap(), Some(true));
        assert_eq!(err(f.opt_bool("c")).1, "c must be a boolean");
        assert_eq!(f.opt_bool("d").unwrap(), None);
        assert_eq!(f.str_list("l").unwrap(), Some(vec!["r".into(), "w".into()]));
        assert_eq!(err(f.str_list("bad")).1, "bad must be an array of strings");
        assert_eq!(f.opt_str("c", 1).unwrap(), Some("x"));
        assert_eq!(err(f.opt_str("c", 0)).1, "c must be at most 0 characters");
        assert_eq!(f.req_str("c", 1).unwrap(), "x");
        assert_eq!(err(f.req_str("d", 1)).1, "d is required");
        assert_eq!(err(f.req_str("c", 0)).1, "c must be at most 0 characters");
    }
}
