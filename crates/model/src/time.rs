use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};

use crate::ModelError;

/// Nanoseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

pub const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Day number (days since 1970-01-01) that holds `ts`; the partition key's time half.
pub fn day_of(ts: Timestamp) -> i32 {
    ts.div_euclid(NANOS_PER_DAY) as i32
}

/// Parses an RFC 3339 timestamp (any offset, up to nanosecond precision) or an integer
/// count of nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<Timestamp, ModelError> {
    let s = s.trim();
    let err = || ModelError::InvalidTimestamp { value: s.chars().take(80).collect() };
    if !s.is_empty() && s.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) {
        return s.parse::<i64>().map_err(|_| err());
    }
    let dt = DateTime::parse_from_rfc3339(s).map_err(|_| err())?;
    dt.timestamp_nanos_opt().ok_or_else(err)
}

/// Formats `ts` as RFC 3339 in UTC with exactly nine fractional digits, the canonical form
/// of every timestamp logpipe returns.
pub fn format_time(ts: Timestamp) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let nanos = ts.rem_euclid(1_000_000_000) as u32;
    match DateTime::from_timestamp(secs, nanos) {
        Some(dt) => {
            let d: NaiveDateTime = dt.naive_utc();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                nanos
            )
        }
        None => ts.to_string(),
    }
}

/// Parses a duration such as `500ms`, `90s`, `5m`, `1h30m`, `30d` or `2w` into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, ModelError> {
    let err = || ModelError::InvalidDuration { value: s.chars().take(80).collect() };
    let b = s.trim().as_bytes();
    if b.is_empty() {
        return Err(err());
    }
    let mut total: i64 = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: i64 = std::str::from_utf8(&b[start..i]).ok().and_then(|t| t.parse().ok()).ok_or_else(err)?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult: i64 = match &b[ustart..i] {
            b"ns" => 1,
            b"us" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60 * 1_000_000_000,
            b"h" => 3_600 * 1_000_000_000,
            b"d" => NANOS_PER_DAY,
            b"w" => 7 * NANOS_PER_DAY,
            _ => return Err(err()),
        };
        total = n.checked_mul(mult).and_then(|v| total.checked_add(v)).ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_any_offset_and_integers() {
        let utc = parse_time("2025-01-01T13:37:00.124238525Z").unwrap();
        assert_eq!(parse_time("2025-01-01T15:37:00.124238525+02:00").unwrap(), utc);
        assert_eq!(parse_time(&utc.to_string()).unwrap(), utc);
        assert_eq!(format_time(utc), "2025-01-01T13:37:00.124238525Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-13-01T00:00:00Z").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), 300_000_000_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("30d").unwrap(), 30 * NANOS_PER_DAY);
        for bad in ["", "5", "m", "5x", "1h-3m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(NANOS_PER_DAY), 1);
    }
}
