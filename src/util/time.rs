//! Times as abproxy writes and reads them: Unix milliseconds, and RFC 3339 (UTC, whole
//! seconds) in the run book, the results and the page. No clock is read here: callers
//! pass the time in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` in milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Unix ms as RFC 3339, UTC, to the second: `2026-12-02T01:27:20Z`.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// RFC 3339 text as Unix ms; `None` when it is not RFC 3339.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    humantime::parse_rfc3339(text).ok().map(unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_second() {
        let ms = 1_796_175_640_000;
        assert_eq!(rfc3339(ms), "2026-12-02T01:40:40Z");
        assert_eq!(parse_rfc3339("2026-12-02T01:40:40Z"), Some(ms));
        assert_eq!(rfc3339(ms + 999), "2026-12-02T01:40:40Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
