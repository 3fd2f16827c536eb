//! Time as the ledger stores it: UTC, RFC 3339 with milliseconds and a `Z`
//! (`2026-11-25T10:05:03.120Z`), the same text SQLite's
//! `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` produces, so that text order is time order.

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time.
pub type Timestamp = DateTime<Utc>;

/// The current time.
pub fn now() -> Timestamp {
    Utc::now()
}

/// Formats a time as the ledger stores it.
pub fn format(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats a time that may be absent.
pub fn format_opt(t: Option<Timestamp>) -> Option<String> {
    t.map(format)
}

/// Serialises a time that may be absent as the ledger's text (for `#[serde(serialize_with)]`).
pub fn serialize_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&format(*t)),
        None => s.serialize_none(),
    }
}

/// Parses RFC 3339 with any offset (or SQLite's `YYYY-MM-DD HH:MM:SS`) into UTC.
pub fn parse(text: &str) -> Option<Timestamp> {
    if let Some(t) = parse_ledger(text) {
        return Some(t);
    }
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// The ledger's own form, `2026-11-25T10:05:03.120Z` (24 bytes), read directly: every row a
/// claim or a record reads has several, and the general RFC 3339 parser costs ten times as
/// much. Anything else is left to [`parse`]'s general path.
fn parse_ledger(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
        num(20, 23)?,
    )?;
    Some(date.and_time(time).and_utc())
}

/// Adds a std duration, saturating far in the future.
pub fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Subtracts a std duration, saturating far in the past.
pub fn sub(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_matches_sqlite_strftime_and_round_trips() {
        let t = parse("2026-11-25T12:05:03.12+02:00").unwrap();
        assert_eq!(format(t), "2026-11-25T10:05:03.120Z");
        assert_eq!(parse(&format(t)), Some(t));
        assert_eq!(
            format(parse("2026-01-02 03:04:05").unwrap()),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(parse("yesterday"), None);
        // The ledger's own form takes the short path, and gives what the general one gives.
        let own = "2026-11-25T10:05:03.120Z";
        assert_eq!(
            parse_ledger(own),
            DateTime::parse_from_rfc3339(own).ok().map(|t| t.to_utc())
        );
        assert_eq!(parse_ledger("2026-02-30T10:05:03.120Z"), None);
        assert_eq!(parse("2026-02-30T10:05:03.120Z"), None);
        assert_eq!(parse_ledger("2026-11-25T24:05:03.120Z"), None);
        assert_eq!(parse_ledger("2026-11-25T10:05:03.1x0Z"), None);
        assert_eq!(parse_ledger("+026-11-25T10:05:03.120Z"), None);
    }
}
