//! Sizes (`10GiB`, `500MB`, `4096`) and durations (`90d`, `12h`, `2w`) as written in
//! `stratalake.toml` and on the command line.

use crate::{Error, Result};

/// Parse a byte size: a number with an optional unit `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000)
/// or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); decimals allowed (`1.5TiB`).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = |why: &str| Error::Config(format!("size {s:?}: {why} (e.g. 500GiB, 20MB, 4096)"));
    let n: f64 = num.parse().map_err(|_| bad("expected a number"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "pb" => 1e15,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024f64.powi(2),
        "gib" | "g" => 1024f64.powi(3),
        "tib" | "t" => 1024f64.powi(4),
        "pib" | "p" => 1024f64.powi(5),
        _ => return Err(bad("unknown unit")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad("out of range"));
    }
    Ok(v.round() as u64)
}

/// Parse a duration into milliseconds: a whole number and a unit `w`, `d`, `h`, `m` or `s`.
pub fn parse_duration_ms(s: &str) -> Result<i64> {
    stratalake_table::units::parse_duration_ms(s).map_err(Error::Config)
}

/// Free bytes of the file system holding `dir` (for local tiers without a declared capacity).
pub fn disk_free(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// `1.5 GiB`-style rendering.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("20MB").unwrap(), 20_000_000);
        assert!(parse_size("ten GB").unwrap_err().to_string().contains("ten GB"));
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration_ms("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(parse_duration_ms("2w").unwrap(), 14 * 86_400_000);
        assert!(parse_duration_ms("3y").unwrap_err().to_string().contains("unit"));
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(12), "12 B");
    }
}
