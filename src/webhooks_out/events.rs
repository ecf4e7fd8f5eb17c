//! The events a webhook may subscribe to.

use serde_json::Value;

pub const KEY_UPDATED: &str = "key.updated";
pub const KEY_DELETED: &str = "key.deleted";
pub const INSTANCE_CLEARED: &str = "instance.cleared";
/// Sent by the test route only.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// Every subscribable event, in the order responses list them.
pub const ALL: [&str; 3] = [KEY_UPDATED, KEY_DELETED, INSTANCE_CLEARED];

/// The `events` of a request: absent means all three; otherwise a
/// non-empty array of known names (duplicates dropped, order of `ALL`).
pub fn parse(value: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(ALL.iter().map(|e| e.to_string()).collect());
    };
    let items = value
        .as_array()
        .ok_or_else(|| "events must be an array of event names".to_string())?;
    let mut chosen = [false; ALL.len()];
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| "events must be an array of event names".to_string())?;
        let index = ALL.iter().position(|e| *e == name).ok_or_else(|| {
            format!(
                "events: unknown event {name:?} (allowed: {})",
                ALL.join(", ")
            )
        })?;
        chosen[index] = true;
    }
    let events: Vec<String> = ALL
        .iter()
        .zip(chosen)
        .filter(|(_, on)| *on)
        .map(|(e, _)| e.to_string())
        .collect();
    if events.is_empty() {
        return Err("events must not be empty".into());
    }
    Ok(events)
}

/// Whether a webhook with `events` and `key_prefix` wants this change.
/// `instance.cleared` reaches every webhook subscribed to it, whatever its
/// prefix.
pub fn wants(events: &[String], key_prefix: Option<&str>, event: &str, key: Option<&str>) -> bool {
    if !events.iter().any(|e| e == event) {
        return false;
    }
    match (key_prefix, key) {
        (Some(prefix), Some(key)) => key.starts_with(prefix),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_is_all_three() {
        assert_eq!(parse(None).unwrap(), ALL);
    }

    #[test]
    fn names_are_checked_and_deduplicated() {
        assert_eq!(
            parse(Some(&json!(["key.deleted", "key.updated", "key.deleted"]))).unwrap(),
            ["key.updated", "key.deleted"]
        );
        assert_eq!(
            parse(Some(&json!([]))).unwrap_err(),
            "events must not be empty"
        );
        assert!(parse(Some(&json!(["key.created"])))
            .unwrap_err()
            .contains("\"key.created\""));
        assert!(parse(Some(&json!("key.updated"))).is_err());
        assert!(parse(Some(&json!([1]))).is_err());
    }

    #[test]
    fn prefix_filters_keys_but_not_clears() {
        let all: Vec<String> = ALL.iter().map(|e| e.to_string()).collect();
        assert!(wants(&all, Some("user/"), KEY_UPDATED, Some("user/1")));
        assert!(!wants(&all, Some("user/"), KEY_UPDATED, Some("other")));
        assert!(!wants(&all, Some("user/"), KEY_DELETED, Some("other")));
        assert!(wants(&all, Some("user/"), INSTANCE_CLEARED, None));
        let only = vec![KEY_DELETED.to_string()];
        assert!(!wants(&only, None, KEY_UPDATED, Some("a")));
        assert!(wants(&only, None, KEY_DELETED, Some("a")));
    }
}
