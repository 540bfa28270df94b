//! Time: the current time in milliseconds since the Unix epoch, the unit of every time the log
//! records, and its RFC 3339 rendering.

use chrono::DateTime;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Render a millisecond timestamp as RFC 3339.
pub fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
