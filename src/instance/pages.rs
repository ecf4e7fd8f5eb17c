//! Every key of an instance, read one listing page at a time
//! (`/internal/data/list`, which stops a page at `PAGE_BUDGET_BYTES`), so
//! an instance of up to the size cap, or an old one above it, never sits in
//! the Worker's memory as one string or one JSON value (docs/faults.md).
//! Pages are separate requests: a write landing between two of them may or
//! may not show, unlike a `sync`, which is one snapshot.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use worker::Method;

use super::client::{DataCall, InstanceClient};
use super::internal;
use crate::error::ApiError;

/// One page as the object sent it: `{"keys": {…}, "cursor": …}`.
pub struct KeyPage {
    text: String,
}

/// A page read for its text: the `keys` object as it stands.
#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    keys: &'a RawValue,
    cursor: Option<String>,
}

/// A page read for its entries, in key order (SQLite's binary order of
/// names is `String`'s).
#[derive(Deserialize)]
struct EntryPage<'a> {
    #[serde(borrow)]
    keys: BTreeMap<String, &'a RawValue>,
    cursor: Option<String>,
}

impl KeyPage {
    pub fn from_text(text: String) -> Self {
        KeyPage { text }
    }

    /// The page's entries as they stand inside its `keys` object (without
    /// the braces, ready to be joined to other pages' by a comma), and the
    /// cursor of the next page (`None` on the last).
    pub fn members(&self) -> Result<(&str, Option<String>), ApiError> {
        let page: RawPage<'_> = serde_json::from_str(&self.text)?;
        let members = page
            .keys
            .get()
            .strip_prefix('{')
            .and_then(|k| k.strip_suffix('}'))
            .map(str::trim)
            .ok_or_else(|| ApiError::internal("a key page's \"keys\" is not an object"))?;
        Ok((members, page.cursor))
    }

    /// Each key with its stored entry (`{"value", "attributes",
    /// "updatedAt"}`), and the cursor of the next page.
    fn entries(&self) -> Result<EntryPage<'_>, ApiError> {
        Ok(serde_json::from_str(&self.text)?)
    }
}

impl InstanceClient {
    /// The page of every key that follows `cursor` (`None`: the first).
    pub async fn key_page(&self, cursor: Option<&str>) -> Result<KeyPage, ApiError> {
        let mut call = DataCall::new(Method::Get, internal::PATH_DATA_LIST);
        let limit = super::data_ops::MAX_PAGE_KEYS.to_string();
        call.query.push(("limit", &limit));
        if let Some(cursor) = cursor {
            call.query.push(("after", cursor));
        }
        let mut resp = self.data(call).await?;
        Ok(KeyPage::from_text(resp.text().await?))
    }

    /// Calls `visit` with every key and its stored entry, page by page: at
    /// most one page is held at a time (plus what `visit` keeps).
    pub async fn for_each_key(
        &self,
        mut visit: impl FnMut(String, &RawValue) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut cursor = None;
        loop {
            let text = self.key_page(cursor.as_deref()).await?;
            let page = text.entries()?;
            for (key, entry) in page.keys {
                visit(key, entry)?;
            }
            cursor = page.cursor;
            if cursor.is_none() {
                return Ok(());
            }
        }
    }
}

/// A stored entry's value and attributes (`null` when absent).
#[derive(Deserialize)]
pub struct StoredEntry {
    #[serde(default)]
    pub value: serde_json::Value,
    #[serde(default)]
    pub attributes: serde_json::Value,
}

/// Joins pages into the one `{"keys": {…}}` document (the same bytes as
/// `{"keys": <sync.data>}`), one chunk per page, so it can be streamed.
#[derive(Default)]
pub struct DocumentJoiner {
    started: bool,
    any: bool,
}

impl DocumentJoiner {
    /// The chunk for a page's `members`; `last` closes the document.
    pub fn chunk(&mut self, members: &str, last: bool) -> String {
        let mut out = String::with_capacity(members.len() + 12);
        if !self.started {
            out.push_str(r#"{"keys":{"#);
            self.started = true;
        }
        if !members.is_empty() {
            if self.any {
                out.push(',');
            }
            out.push_str(members);
            self.any = true;
        }
        if last {
            out.push_str("}}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &str, cursor: &str) -> KeyPage {
        KeyPage::from_text(format!(r#"{{"keys":{keys},"cursor":{cursor}}}"#))
    }

    #[test]
    fn pages_join_into_the_one_document() {
        let pages = [
            page(r#"{"a":{"value":1}}"#, r#""YQ""#),
            page("{}", r#""YQ""#),
            page(r#"{"b":{"value":"}"},"c":{"value":[]}}"#, "null"),
        ];
        let mut joiner = DocumentJoiner::default();
        let mut doc = String::new();
        for p in &pages {
            let (members, cursor) = p.members().unwrap();
            doc.push_str(&joiner.chunk(members, cursor.is_none()));
        }
        assert_eq!(
            doc,
            r#"{"keys":{"a":{"value":1},"b":{"value":"}"},"c":{"value":[]}}}"#
        );
        let one = page("{}", "null");
        let mut joiner = DocumentJoiner::default();
        assert_eq!(
            joiner.chunk(one.members().unwrap().0, true),
            r#"{"keys":{}}"#
        );
    }

    #[test]
    fn a_page_gives_its_cursor_and_entries_in_key_order() {
        let p = page(r#"{"b":{"value":2},"a\"":{"value":1}}"#, r#""Yg""#);
        let entries = p.entries().unwrap();
        assert_eq!(entries.cursor.as_deref(), Some("Yg"));
        let names: Vec<&String> = entries.keys.keys().collect();
        assert_eq!(names, ["a\"", "b"]);
        assert_eq!(entries.keys["b"].get(), r#"{"value":2}"#);
        assert_eq!(page("{}", "null").members().unwrap(), ("", None));
    }
}
