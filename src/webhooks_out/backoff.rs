//! When a failed delivery is tried again (webhooks-out.md): 5 s, 30 s,
//! 2 min, 10 min, 30 min, 1 h, then every 2 h, for up to 24 h after the
//! delivery was queued; then it is `failed`. A development-only scale
//! (`WEBHOOK_BACKOFF_SCALE`, docs/webhooks.md) shrinks every interval and
//! the 24 h window alike, so tests can watch retries happen.

/// The waits after the 1st, 2nd, … failure, in seconds; the last repeats.
const SCHEDULE_SECS: [i64; 7] = [5, 30, 120, 600, 1800, 3600, 7200];
/// How long after it was queued a delivery is still retried.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
/// Consecutive failures after which a webhook is set inactive.
pub const DEACTIVATE_AFTER_FAILURES: i64 = 50;

/// The wait after the `failures`-th consecutive failure of one delivery
/// (1-based), in ms, scaled.
pub fn delay_ms(failures: u32, scale: f64) -> i64 {
    let index = (failures.max(1) as usize - 1).min(SCHEDULE_SECS.len() - 1);
    scaled(SCHEDULE_SECS[index] * 1000, scale)
}

/// What becomes of a delivery that just failed for the `failures`-th
/// time: its next attempt (ms), or `None` when that would be past the
/// retry window (it is then `failed`).
pub fn next_attempt(created_ms: i64, now_ms: i64, failures: u32, scale: f64) -> Option<i64> {
    let next = now_ms + delay_ms(failures, scale);
    (next - created_ms <= scaled(GIVE_UP_AFTER_MS, scale)).then_some(next)
}

fn scaled(ms: i64, scale: f64) -> i64 {
    if scale == 1.0 || !scale.is_finite() || scale <= 0.0 {
        return ms;
    }
    ((ms as f64) * scale).round().max(1.0) as i64
}

/// A scale from the `WEBHOOK_BACKOFF_SCALE` setting: a number in (0, 1];
/// anything else means no scaling.
pub fn parse_scale(setting: Option<&str>) -> f64 {
    setting
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1.0)
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule() {
        let secs: Vec<i64> = (1..=9).map(|n| delay_ms(n, 1.0) / 1000).collect();
        assert_eq!(secs, [5, 30, 120, 600, 1800, 3600, 7200, 7200, 7200]);
        assert_eq!(delay_ms(0, 1.0), 5000);
    }

    #[test]
    fn gives_up_after_a_day() {
        let created = 1_000_000;
        // Follow the schedule from the first attempt until it gives up.
        let mut now = created;
        let mut failures = 0;
        while let Some(next) = next_attempt(created, now, failures + 1, 1.0) {
            failures += 1;
            now = next;
        }
        assert!(now - created <= GIVE_UP_AFTER_MS);
        assert!(now - created > GIVE_UP_AFTER_MS - 7_200_000);
        // 6 steps up to an hour, then every 2 h up to a day.
        assert_eq!(failures, 17);
    }

    #[test]
    fn scale_shrinks_waits_and_window() {
        assert_eq!(delay_ms(1, 0.001), 5);
        assert_eq!(delay_ms(7, 0.001), 7200);
        assert_eq!(next_attempt(0, 86_400, 1, 0.001), None);
        assert_eq!(next_attempt(0, 1_000, 1, 0.001), Some(1_005));
        assert_eq!(parse_scale(Some("0.01")), 0.01);
        assert_eq!(parse_scale(Some("2")), 1.0);
        assert_eq!(parse_scale(Some("0")), 1.0);
        assert_eq!(parse_scale(Some("x")), 1.0);
        assert_eq!(parse_scale(None), 1.0);
    }
}
