//! Validation of names and encoding of partition values, so that nothing a user types can
//! resolve outside a table's prefix.

use crate::{Error, Result};

/// Longest namespace or table name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest column name, in bytes.
pub const MAX_COLUMN_NAME_LEN: usize = 255;

/// Validate a namespace or table name: `[a-z][a-z0-9_]*`, at most 64 characters. Lower case
/// keeps SQL identifiers unquoted; the restricted alphabet keeps paths safe.
pub fn validate_ident(kind: &'static str, name: &str) -> Result<()> {
    let err = |reason: &str| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(err("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err(&format!("longer than {MAX_NAME_LEN} characters")));
    }
    let mut chars = name.chars();
    let first = chars.next().expect("not empty");
    if !first.is_ascii_lowercase() {
        return Err(err(
            "must start with a lower-case letter (names starting with '_' are reserved)",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(err(&format!(
            "character {c:?} not allowed; use lower-case letters, digits and '_'"
        )));
    }
    Ok(())
}

/// Refuse a new namespace whose name SQL clients read as a system schema: `information_schema`
/// and PostgreSQL's `pg_*` (`pg_catalog` is what psql and JDBC tools describe a lake with).
pub fn refuse_system_schema(name: &str) -> Result<()> {
    if name == "information_schema" || name.starts_with("pg_") {
        return Err(Error::InvalidName {
            kind: "namespace",
            name: name.to_string(),
            reason: "is reserved for the system catalog (information_schema, pg_*)".into(),
        });
    }
    Ok(())
}

/// Validate a column name: 1 to 255 bytes of UTF-8 without control characters.
pub fn validate_column(name: &str) -> Result<()> {
    let err = |reason: &str| Error::InvalidName {
        kind: "column",
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(err("empty"));
    }
    if name.len() > MAX_COLUMN_NAME_LEN {
        return Err(err(&format!("longer than {MAX_COLUMN_NAME_LEN} bytes")));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(err("control characters (including NUL) are not allowed"));
    }
    Ok(())
}

/// Encode one path segment (a partition column name or value): every byte outside
/// `[A-Za-z0-9_-]` becomes `+XX` (hex), so `.`, `..`, `/`, `%` and NUL can never form a path
/// step. `+` is used rather than `%` because object stores escape `%` themselves.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The path segment standing for a null partition value. [`encode_segment`] only ever writes
/// `+` followed by two upper-case hex digits, so no encoded value can equal it.
pub const NULL_SEGMENT: &str = "+null";

/// Longest encoded path segment: object stores and file systems refuse longer names.
pub const MAX_SEGMENT_LEN: usize = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        for ok in ["a", "permits", "x_1", "a_b_c"] {
            validate_ident("table", ok).unwrap();
        }
        for bad in [
            "",
            "_catalog",
            "A",
            "1a",
            "a-b",
            "a.b",
            "..",
            "%2E%2E",
            "/etc",
            "a\0b",
            &"x".repeat(65),
        ] {
            assert!(validate_ident("table", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn columns() {
        validate_column("Issued At").unwrap();
        assert!(validate_column("").is_err());
        assert!(validate_column("a\0").is_err());
        assert!(validate_column(&"x".repeat(256)).is_err());
    }

    #[test]
    fn null_segment_is_unambiguous() {
        for v in ["+null", "null", "__null__", "+NULL", ""] {
            assert_ne!(encode_segment(v), NULL_SEGMENT, "{v}");
        }
    }

    #[test]
    fn segments_cannot_escape() {
        assert_eq!(encode_segment(".."), "+2E+2E");
        assert_eq!(encode_segment("%2E%2E"), "+252E+252E");
        assert_eq!(encode_segment("+2E"), "+2B2E");
        assert_eq!(encode_segment("a/b"), "a+2Fb");
        assert_eq!(encode_segment("a\0"), "a+00");
        assert_eq!(encode_segment("north-1"), "north-1");
        for s in ["..", ".", "/", "a/../b", "\\.."] {
            let e = encode_segment(s);
            assert!(!e.contains('/') && !e.contains('.') && !e.contains('\\'), "{e}");
        }
    }
}
