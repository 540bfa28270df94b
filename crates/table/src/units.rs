//! Durations as written in configuration, SQL and on the command line: `90d`, `12h`, `2w`.

/// Parse a duration into milliseconds: a whole number and a unit `w`, `d`, `h`, `m` or `s`. The
/// error says what was wrong, quoting the input.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let bad = |why: &str| format!("duration {s:?}: {why} (e.g. 90d, 12h, 2w)");
    let n: i64 = num.parse().map_err(|_| bad("expected a whole number and a unit"))?;
    let unit_ms: i64 = match unit {
        "w" => 7 * 86_400_000,
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return Err(bad("the unit must be w, d, h, m or s")),
    };
    n.checked_mul(unit_ms).ok_or_else(|| bad("too long"))
}
