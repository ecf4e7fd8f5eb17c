//! The stdout table, the JSON document helpers, and the comparison of two
//! result files.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::ctx::Headline;

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (the usual era-based conversion).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (
        y,
        m,
        day,
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis(),
    )
}

/// `2025-01-31T12:34:56.789Z`
pub fn iso(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `20250131-123456` (for file names).
pub fn stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The headline block of the JSON: `"latency.p50": {value, unit, better, ok}`.
pub fn headline_json(items: &[(Headline, bool)]) -> Value {
    let mut m = Map::new();
    for (h, ok) in items {
        m.insert(
            h.key.clone(),
            json!({"value": crate::stats::r3(h.value), "unit": h.unit, "better": h.better.as_str(), "ok": ok}),
        );
    }
    Value::Object(m)
}

/// The stdout table of one run.
pub fn table(doc: &Value, order: &[&str]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<11} {:<32} {:>12}  {:<6} status",
        "scenario", "figure", "value", "unit"
    );
    let _ = writeln!(s, "{}", "-".repeat(72));
    let headline = doc["headline"].as_object().cloned().unwrap_or_default();
    for name in order {
        let sc = &doc["scenarios"][*name];
        if sc.is_null() {
            continue;
        }
        let ok = sc["ok"].as_bool().unwrap_or(false);
        let warned = sc["warnings"].as_array().is_some_and(|w| !w.is_empty());
        let status = match (ok, warned) {
            (true, false) => "ok",
            (true, true) => "ok*",
            _ => "FAILED",
        };
        let prefix = format!("{name}.");
        let mut any = false;
        for (k, h) in &headline {
            let Some(fig) = k.strip_prefix(&prefix) else {
                continue;
            };
            any = true;
            let _ = writeln!(
                s,
                "{:<11} {:<32} {:>12}  {:<6} {}",
                name,
                fig,
                h["value"].as_f64().map(fmt_num).unwrap_or_default(),
                h["unit"].as_str().unwrap_or(""),
                status
            );
        }
        if !any {
            let _ = writeln!(
                s,
                "{:<11} {:<32} {:>12}  {:<6} {}",
                name, "-", "-", "", status
            );
        }
    }
    let mut notes = String::new();
    for name in order {
        let sc = &doc["scenarios"][*name];
        if let Some(e) = sc["error"].as_str() {
            let _ = writeln!(notes, "  {name}: FAILED: {e}");
        }
        for w in sc["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(notes, "  {name}: warning: {}", w.as_str().unwrap_or(""));
        }
        for e in sc["serverErrorSamples"]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
        {
            let _ = writeln!(
                notes,
                "  {name}: server error: {}",
                e.as_str().unwrap_or("")
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n{notes}");
    }
    s
}

/// Side-by-side headline figures of two result documents, with the ratio
/// new / base. Returns (text table, JSON).
pub fn compare(base: &Value, new: &Value, labels: (&str, &str)) -> (String, Value) {
    let empty = Map::new();
    let bh = base["headline"].as_object().unwrap_or(&empty);
    let nh = new["headline"].as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = bh.keys().collect();
    for k in nh.keys() {
        if !bh.contains_key(k) {
            keys.push(k);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<44} {:>12} {:>12} {:>8}  {:<6} better",
        "figure",
        labels.0,
        labels.1,
        format!("{}/{}", labels.1, labels.0),
        "unit"
    );
    let _ = writeln!(s, "{}", "-".repeat(96));
    let mut rows = Vec::new();
    for k in keys {
        let b = bh.get(k).and_then(|h| h["value"].as_f64());
        let n = nh.get(k).and_then(|h| h["value"].as_f64());
        let h = nh
            .get(k)
            .or_else(|| bh.get(k))
            .cloned()
            .unwrap_or(Value::Null);
        let unit = h["unit"].as_str().unwrap_or("");
        let better = h["better"].as_str().unwrap_or("info");
        let ratio = match (b, n) {
            (Some(b), Some(n)) if b != 0.0 => Some(n / b),
            _ => None,
        };
        let verdict = match (ratio, better) {
            (Some(r), "lower") if r > 1.10 => "worse",
            (Some(r), "lower") if r < 0.90 => "better",
            (Some(r), "higher") if r < 0.90 => "worse",
            (Some(r), "higher") if r > 1.10 => "better",
            (Some(_), "lower" | "higher") => "~same",
            _ => "",
        };
        let show = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<44} {:>12} {:>12} {:>8}  {:<6} {} {}",
            k,
            show(b),
            show(n),
            ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into()),
            unit,
            better,
            verdict
        );
        rows.push(json!({"figure": k, labels.0: b, labels.1: n, "ratio": ratio.map(crate::stats::r3), "unit": unit, "better": better, "verdict": verdict}));
    }
    let status = |d: &Value| -> Value {
        let mut m = Map::new();
        for (k, v) in d["scenarios"].as_object().into_iter().flatten() {
            m.insert(
                k.clone(),
                json!({"ok": v["ok"], "error": v["error"], "warnings": v["warnings"]}),
            );
        }
        Value::Object(m)
    };
    for (label, d) in [(labels.0, base), (labels.1, new)] {
        for k in d["scenariosSkipped"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "{label}: {} not run (--skip)", k.as_str().unwrap_or("?"));
        }
        for (k, v) in d["scenarios"].as_object().into_iter().flatten() {
            if v["ok"] != json!(true) {
                let _ = writeln!(
                    s,
                    "{label}: {k} FAILED: {}",
                    v["error"].as_str().unwrap_or("?")
                );
            }
        }
    }
    let doc = json!({
        "base": {"label": labels.0, "runId": base["runId"], "date": base["date"], "url": base["url"], "scenarios": status(base)},
        "new": {"label": labels.1, "runId": new["runId"], "date": new["date"], "url": new["url"], "scenarios": status(new)},
        "ratio": format!("{} / {}", labels.1, labels.0),
        "rows": rows,
    });
    (s, doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(iso(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(iso(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // 2025-12-31 23:59:59
        assert_eq!(stamp(t), "20251231-235959");
    }

    #[test]
    fn compares_headlines() {
        let base = json!({"headline": {"a.p50": {"value": 2.0, "unit": "ms", "better": "lower"}}, "scenarios": {}});
        let new = json!({"headline": {"a.p50": {"value": 3.0, "unit": "ms", "better": "lower"}}, "scenarios": {}});
        let (text, doc) = compare(&base, &new, ("floor", "ours"));
        assert!(text.contains("1.50"));
        assert_eq!(doc["rows"][0]["verdict"], "worse");
    }
}
