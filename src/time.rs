//! ThreadFix's status-message time format (SPEC §5), computed from epoch milliseconds.
//!
//! ThreadFix formats with Java `SimpleDateFormat("dd-MM-yy:HH:mm:SS Z")`, where `SS` is the
//! millisecond field padded to at least two digits. We always format in UTC (`+0000`).

use std::fmt;

/// Formats `ms` (milliseconds since the Unix epoch) as ThreadFix did, in UTC.
///
/// ```
/// use scan_queue::ThreadfixTime;
/// // 28 Sep 2016, 20:25:00.893 UTC
/// assert_eq!(ThreadfixTime(1_475_094_300_893).to_string(), "28-09-16:20:25:893 +0000");
/// assert_eq!(ThreadfixTime(5).to_string(), "01-01-70:00:00:05 +0000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadfixTime(pub u64);

impl fmt::Display for ThreadfixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let minute = (secs / 60) % 60;
        let hour = (secs / 3600) % 24;
        let days = secs / 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{day:02}-{month:02}-{:02}:{hour:02}:{minute:02}:{ms:02} +0000",
            year % 100
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`, for non-negative day counts only (all we need), in
/// unsigned arithmetic so that any `u64` millisecond count formats without overflow.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, the start of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(17_072), (2016, 9, 28));
        assert_eq!(
            ThreadfixTime(1_475_098_826_957).to_string(),
            "28-09-16:21:40:957 +0000"
        );
        assert_eq!(
            ThreadfixTime(1_735_689_599_999).to_string(),
            "31-12-24:23:59:999 +0000"
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let s = ThreadfixTime(u64::MAX).to_string();
        assert!(s.ends_with(" +0000"), "{s}");
        assert_eq!(ThreadfixTime(0).to_string(), "01-01-70:00:00:00 +0000");
    }
}
