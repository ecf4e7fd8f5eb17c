//! Reading ISO-8601 date-times into Unix seconds and writing Unix
//! milliseconds as ISO-8601 (the logs' `ts`), without a date library (the
//! wasm stays small). A value without a zone is UTC: the dashboard
//! sends `datetime-local` values such as `2027-12-02T15:54` (delegates.md).

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) and `HH:MM`,
/// `HH:MM:SS` or `HH:MM:SS.fraction`, optionally followed by `Z` or an
/// offset (`+HH:MM`, `+HHMM`, `+HH`). Returns Unix seconds (the fraction is
/// dropped), or `None` for anything else or an impossible date.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    // Every accepted form is ASCII; checking first keeps byte slicing on
    // character boundaries.
    if !s.is_ascii() {
        return None;
    }
    let (date, rest) = (s.get(..10)?, &s[10..]);
    let days = parse_date(date)?;
    let mut seconds = days * 86_400;
    if rest.is_empty() {
        return Some(seconds);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))?;
    let (time, zone) = split_zone(rest);
    seconds += parse_time(time)?;
    Some(seconds - parse_offset(zone)?)
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[..4])?, digits(&s[5..7])?, digits(&s[8..])?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's civil-from-days: (year, month, day) of a day count.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (what `parse_datetime` reads
/// back to the same second).
pub fn format_utc(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The time part and the zone part (empty when there is none).
fn split_zone(s: &str) -> (&str, &str) {
    match s.find(['Z', 'z', '+', '-']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Seconds into the day of `HH:MM[:SS[.fraction]]`.
fn parse_time(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, ':');
    let h = digits(parts.next().filter(|p| p.len() == 2)?)?;
    let m = digits(parts.next().filter(|p| p.len() == 2)?)?;
    let sec = match parts.next() {
        None => 0,
        Some(p) => {
            let whole = match p.split_once('.') {
                Some((w, frac)) => {
                    digits(frac)?;
                    w
                }
                None => p,
            };
            if whole.len() != 2 {
                return None;
            }
            digits(whole)?
        }
    };
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec)
}

/// The zone's offset east of UTC, in seconds.
fn parse_offset(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let (sign, rest) = match zone.as_bytes()[0] {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let (h, m) = match rest.len() {
        2 => (digits(rest)?, 0),
        4 => (digits(&rest[..2])?, digits(&rest[2..])?),
        5 if rest.as_bytes()[2] == b':' => (digits(&rest[..2])?, digits(&rest[3..])?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("1970-01-01", 0),
            ("1970-01-01T00:00:00Z", 0),
            ("2027-12-02T15:54", 1_827_762_840),
            ("2027-12-02T15:54:00Z", 1_827_762_840),
            ("2027-12-02T15:54:00.123Z", 1_827_762_840),
            ("2027-12-02 15:54:00", 1_827_762_840),
            ("2027-12-02T17:54:00+02:00", 1_827_762_840),
            ("2027-12-02T13:54:00-0200", 1_827_762_840),
            ("2027-12-02T16:54+01", 1_827_762_840),
            ("2000-02-29T00:00:00Z", 951_782_400),
            (" 2027-12-02T15:54 ", 1_827_762_840),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_datetime(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn milliseconds_as_iso_8601() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_827_762_840_123), "2027-12-02T15:54:00.123Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        for text in ["2024-12-31T23:59:59Z", "2100-03-01T00:00:00Z"] {
            let ms = parse_datetime(text).unwrap() * 1000;
            assert_eq!(format_ms(ms), text.replace('Z', ".000Z"));
        }
    }

    #[test]
    fn formatting_reads_back() {
        for t in [0, 951_782_400, 1_827_762_840, 4_099_910_040, 1_796_239_129] {
            assert_eq!(parse_datetime(&format_utc(t)), Some(t), "{t}");
        }
        assert_eq!(format_utc(1_827_762_840), "2027-12-02T15:54:00Z");
    }

    #[test]
    fn refused_forms() {
        for text in [
            "",
            "tomorrow",
            "2027-13-01",
            "2027-02-29",
            "2027-12-32T00:00",
            "2027-12-02T24:00",
            "2027-12-02T15:60",
            "2027-12-02T15",
            "2027-12-02T15:54:5",
            "2027-12-02T15:54+2",
            "2027-12-02X15:54",
            "2027/12/02",
            "1733154840",
            "2027-12-02T15:54+aéb",
            "2027-12-02T15:54+é",
            "2027-12-0é",
        ] {
            assert_eq!(parse_datetime(text), None, "{text:?}");
        }
    }
}
