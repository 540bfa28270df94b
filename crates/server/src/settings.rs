//! `SET`, `RESET` and `SHOW` of a connection's PostgreSQL settings, answered by the server.
//!
//! Clients set a few session parameters (`SET application_name`, `SET TimeZone`, `SET
//! extra_float_digits`), and BI tools read them back. Only such harmless settings may change,
//! each kept per connection (never another connection's), and only to values the server
//! honours: it sends text in UTF-8, dates in ISO form and timestamps in UTC. Nothing a client
//! sets reaches the engine: DataFusion's own settings (`datafusion.*`) could change what EXPLAIN
//! shows or how statistics are used, so they are refused; every other name is unknown (42704).

use std::collections::BTreeMap;

use stratalake::datafusion::sql::sqlparser::tokenizer::Token;

/// What a statement asks of the settings.
#[derive(Debug, PartialEq)]
pub(crate) enum Setting {
    /// `SET name TO value` (the value checked and put in its canonical form).
    Set(&'static str, String),
    /// `RESET name`, `SET name TO DEFAULT`.
    Reset(&'static str),
    /// `RESET ALL`.
    ResetAll,
    /// `SHOW name`.
    Show(&'static str),
}

use crate::Refusal;

/// The settings a connection may change: name (lower case), name as shown, default.
const PARAMETERS: [(&str, &str, &str); 8] = [
    ("application_name", "application_name", ""),
    ("search_path", "search_path", stratalake::DEFAULT_NAMESPACE),
    ("client_encoding", "client_encoding", "UTF8"),
    ("datestyle", "DateStyle", "ISO, MDY"),
    ("intervalstyle", "IntervalStyle", "postgres"),
    ("timezone", "TimeZone", "UTC"),
    ("extra_float_digits", "extra_float_digits", "1"),
    ("standard_conforming_strings", "standard_conforming_strings", "on"),
];

/// Read-only settings `SHOW` answers too.
const READ_ONLY: [(&str, &str, &str); 3] = [
    ("server_version", "server_version", crate::auth::SERVER_VERSION),
    ("server_encoding", "server_encoding", "UTF8"),
    ("integer_datetimes", "integer_datetimes", "on"),
];

/// One connection's settings.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    values: std::sync::Mutex<BTreeMap<&'static str, String>>,
}

impl Settings {
    /// A setting's value now.
    pub fn get(&self, name: &'static str) -> String {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.get(name).cloned().unwrap_or_else(|| {
            PARAMETERS
                .iter()
                .chain(READ_ONLY.iter())
                .find(|p| p.0 == name)
                .map(|p| p.2.to_string())
                .unwrap_or_default()
        })
    }

    /// Apply a `SET` or `RESET`.
    pub fn apply(&self, s: &Setting) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        match s {
            Setting::Set(name, value) => {
                values.insert(name, value.clone());
            }
            Setting::Reset(name) => {
                values.remove(name);
            }
            Setting::ResetAll => values.clear(),
            Setting::Show(_) => {}
        }
    }
}

/// The name a setting is shown under (`SHOW`'s column).
pub(crate) fn display_name(name: &str) -> &'static str {
    PARAMETERS
        .iter()
        .chain(READ_ONLY.iter())
        .find(|p| p.0 == name)
        .map_or("setting", |p| p.1)
}

/// Whether `text` is a `SET`, `RESET` or `SHOW` the server answers, and what it asks. `SHOW` of
/// other names (`SHOW ALL`, `SHOW TABLES`) is left to the engine.
pub(crate) fn parse(text: &str) -> Option<Result<Setting, Refusal>> {
    let statements = stratalake::query::split_statements(text).ok()?;
    let tokens: Vec<&Token> = statements
        .first()?
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let word = |t: &Token| match t {
        Token::Word(w) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let first = word(tokens.first()?)?;
    if !matches!(first.as_str(), "set" | "reset" | "show") {
        return None;
    }
    if statements.len() > 1 {
        return Some(Err((
            "0A000",
            format!("{} must be sent as a statement of its own", first.to_ascii_uppercase()),
        )));
    }
    let mut rest = &tokens[1..];
    if first == "set"
        && let Some(w) = rest.first().and_then(|t| word(t))
        && (w == "session" || w == "local")
    {
        rest = &rest[1..];
    }
    // the name: words joined by dots (`datafusion.explain.show_statistics`), or `TIME ZONE`
    let mut name = String::new();
    let mut used = 0;
    for t in rest {
        match t {
            Token::Word(w) if name.is_empty() || name.ends_with('.') => name.push_str(&w.value.to_ascii_lowercase()),
            Token::Period if !name.is_empty() && !name.ends_with('.') => name.push('.'),
            _ => break,
        }
        used += 1;
    }
    rest = &rest[used..];
    if first == "show" && name == "time" && rest.len() == 1 && word(rest[0]).as_deref() == Some("zone") {
        return Some(Ok(Setting::Show("timezone")));
    }
    if first == "set"
        && name == "time"
        && let Some(w) = rest.first().and_then(|t| word(t))
        && w == "zone"
    {
        return Some(set("timezone", &rest[1..]));
    }
    if name.is_empty() {
        return Some(Err((
            "42601",
            format!("{} needs the name of a setting", first.to_ascii_uppercase()),
        )));
    }
    match first.as_str() {
        "show" => {
            let known = PARAMETERS.iter().chain(READ_ONLY.iter()).find(|p| p.0 == name)?;
            if !rest.is_empty() {
                return Some(Err((
                    "42601",
                    format!("SHOW {}: unexpected text after the name", known.1),
                )));
            }
            Some(Ok(Setting::Show(known.0)))
        }
        "reset" if name == "all" && rest.is_empty() => Some(Ok(Setting::ResetAll)),
        "reset" => Some(parameter(&name).and_then(|p| {
            if rest.is_empty() {
                Ok(Setting::Reset(p))
            } else {
                Err(("42601", format!("RESET {name}: unexpected text after the name")))
            }
        })),
        _ => Some(parameter(&name).and_then(|p| {
            match rest.first() {
                Some(Token::Eq) => {}
                Some(t) if word(t).as_deref() == Some("to") => {}
                _ => return Err(("42601", format!("SET {name}: expected TO or = after the name"))),
            }
            set(p, &rest[1..])
        })),
    }
}

/// The settable parameter called `name`, or why it may not be set.
fn parameter(name: &str) -> Result<&'static str, Refusal> {
    if let Some(p) = PARAMETERS.iter().find(|p| p.0 == name) {
        return Ok(p.0);
    }
    let allowed: Vec<&str> = PARAMETERS.iter().map(|p| p.1).collect();
    if name.starts_with("datafusion.") {
        return Err((
            "42501",
            format!(
                "{} is the server's setting: a connection may not change the engine's settings (a connection may set {})",
                crate::auth::printable(name),
                allowed.join(", ")
            ),
        ));
    }
    if READ_ONLY.iter().any(|p| p.0 == name) {
        return Err(("55P02", format!("parameter \"{name}\" cannot be changed")));
    }
    Err((
        "42704",
        format!(
            "unrecognized configuration parameter \"{}\" (a connection may set {})",
            crate::auth::printable(name),
            allowed.join(", ")
        ),
    ))
}

/// `SET p TO value`: the value checked against what the server honours.
fn set(p: &'static str, value: &[&Token]) -> Result<Setting, Refusal> {
    let mut parts = Vec::new();
    for t in value {
        match t {
            Token::Comma => {}
            // the statement's tokens keep strings as written: '' is one quote
            Token::SingleQuotedString(s) => parts.push(s.replace("''", "'")),
            Token::Word(w) => parts.push(w.value.clone()),
            Token::Number(n, _) => parts.push(n.clone()),
            Token::Minus => parts.push("-".into()),
            Token::SemiColon => break,
            _ => return Err(("42601", format!("SET {p}: the value is not a word, number or string"))),
        }
    }
    // `-` belongs to the number after it
    let mut joined: Vec<String> = Vec::new();
    for part in parts {
        match joined.last_mut() {
            Some(last) if last == "-" => last.push_str(&part),
            _ => joined.push(part),
        }
    }
    if joined.is_empty() {
        return Err(("42601", format!("SET {p}: no value given")));
    }
    if joined.len() == 1 && joined[0].eq_ignore_ascii_case("default") {
        return Ok(Setting::Reset(p));
    }
    let one = joined.join(", ");
    let refuse = |why: &str| Err(("22023", format!("invalid value for parameter \"{p}\": {why}")));
    let value = match p {
        "application_name" => {
            if one.chars().any(|c| c.is_control()) {
                return refuse("control characters are not allowed");
            }
            // PostgreSQL keeps the first 63 bytes
            let mut v = String::new();
            for c in one.chars() {
                if v.len() + c.len_utf8() > 63 {
                    break;
                }
                v.push(c);
            }
            v
        }
        // The namespace unqualified names resolve in: the first of the list that names one
        // (`"$user"` and `pg_catalog`, always searched first for the catalog, are skipped).
        "search_path" => {
            let first = joined
                .iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().trim_matches('"'))
                .find(|s| !s.is_empty() && *s != "$user" && *s != "pg_catalog");
            match first {
                None => stratalake::DEFAULT_NAMESPACE.to_string(),
                Some(ns) if stratalake::table::names::validate_ident("namespace", ns).is_ok() => ns.to_string(),
                Some(ns) => {
                    return refuse(&format!(
                        "{} is not a namespace name ([a-z][a-z0-9_]*)",
                        crate::auth::printable(ns)
                    ));
                }
            }
        }
        "client_encoding" => match one.to_ascii_uppercase().as_str() {
            "UTF8" | "UTF-8" | "UNICODE" => "UTF8".into(),
            _ => return refuse("the server sends text in UTF8 only"),
        },
        "datestyle" => {
            let up: Vec<String> = joined.iter().map(|s| s.to_ascii_uppercase()).collect();
            let words: Vec<&str> = up
                .iter()
                .flat_map(|s| s.split([',', ' ']))
                .filter(|s| !s.is_empty())
                .collect();
            if words
                .iter()
                .any(|w| !matches!(*w, "ISO" | "MDY" | "DMY" | "YMD" | "US" | "EURO" | "EUROPEAN"))
            {
                return refuse("the server writes dates in ISO form only (DateStyle ISO)");
            }
            let order = if words.iter().any(|w| matches!(*w, "DMY" | "EURO" | "EUROPEAN")) {
                "DMY"
            } else if words.contains(&"YMD") {
                "YMD"
            } else {
                "MDY"
            };
            format!("ISO, {order}")
        }
        "intervalstyle" => match one.to_ascii_lowercase().as_str() {
            "postgres" => "postgres".into(),
            _ => return refuse("the server writes intervals in the postgres style only"),
        },
        "timezone" => match one.to_ascii_uppercase().as_str() {
            "UTC" | "ETC/UTC" | "GMT" | "ETC/GMT" | "Z" | "ZULU" | "UCT" | "0" | "+00:00" | "00:00" => "UTC".into(),
            _ => {
                return refuse(
                    "the server gives timestamps in UTC only; convert them in the query (AT TIME ZONE) or the client",
                );
            }
        },
        "extra_float_digits" => match one.parse::<i32>() {
            Ok(n) if (-15..=3).contains(&n) => n.to_string(),
            _ => return refuse("an integer from -15 to 3"),
        },
        "standard_conforming_strings" => match one.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => "on".into(),
            _ => return refuse("the server reads strings the standard way only (on)"),
        },
        _ => unreachable!("only settable parameters come here"),
    };
    Ok(Setting::Set(p, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_settings_are_read_and_the_rest_refused_by_name() {
        assert_eq!(
            parse("SET application_name = 'report'"),
            Some(Ok(Setting::Set("application_name", "report".into())))
        );
        assert_eq!(
            parse("set session TimeZone to 'Etc/UTC'"),
            Some(Ok(Setting::Set("timezone", "UTC".into())))
        );
        assert_eq!(
            parse("SET TIME ZONE 'UTC'"),
            Some(Ok(Setting::Set("timezone", "UTC".into())))
        );
        assert_eq!(
            parse("SET application_name = 'ana''s'"),
            Some(Ok(Setting::Set("application_name", "ana's".into())))
        );
        assert_eq!(
            parse("SET extra_float_digits = -2"),
            Some(Ok(Setting::Set("extra_float_digits", "-2".into())))
        );
        assert_eq!(
            parse("SET DateStyle = ISO, DMY"),
            Some(Ok(Setting::Set("datestyle", "ISO, DMY".into())))
        );
        assert_eq!(
            parse("SET client_encoding TO DEFAULT"),
            Some(Ok(Setting::Reset("client_encoding")))
        );
        assert_eq!(parse("RESET ALL"), Some(Ok(Setting::ResetAll)));
        assert_eq!(parse("SHOW TimeZone"), Some(Ok(Setting::Show("timezone"))));
        assert_eq!(parse("SHOW server_version"), Some(Ok(Setting::Show("server_version"))));
        assert_eq!(parse("SHOW TIME ZONE"), Some(Ok(Setting::Show("timezone"))));
        // other SHOWs are the engine's; other statements are not settings
        assert_eq!(parse("SHOW ALL"), None);
        assert_eq!(parse("SELECT 1"), None);
        let code = |sql: &str| parse(sql).unwrap().unwrap_err().0;
        assert_eq!(code("SET datafusion.explain.show_statistics = true"), "42501");
        assert_eq!(code("SET datafusion.execution.target_partitions TO 1"), "42501");
        assert_eq!(code("SET work_mem = '1GB'"), "42704");
        assert_eq!(code("SET search_path = '../x'"), "22023");
        assert_eq!(
            parse("SET search_path TO \"$user\", pg_catalog, gov, public"),
            Some(Ok(Setting::Set("search_path", "gov".into())))
        );
        assert_eq!(code("SET server_version = '1'"), "55P02");
        assert_eq!(code("SET TimeZone = 'Europe/Berlin'"), "22023");
        assert_eq!(code("SET client_encoding = 'LATIN1'"), "22023");
        assert_eq!(code("SET extra_float_digits = 9"), "22023");
        assert_eq!(code("SET application_name"), "42601");
        assert_eq!(code("SET application_name = 'a'; SELECT 1"), "0A000");
        let long = "x".repeat(100);
        assert_eq!(
            parse(&format!("SET application_name = '{long}'")),
            Some(Ok(Setting::Set("application_name", "x".repeat(63))))
        );
    }

    #[test]
    fn settings_are_kept_and_reset() {
        let s = Settings::default();
        assert_eq!(s.get("timezone"), "UTC");
        s.apply(&Setting::Set("application_name", "etl".into()));
        assert_eq!(s.get("application_name"), "etl");
        s.apply(&Setting::Reset("application_name"));
        assert_eq!(s.get("application_name"), "");
        s.apply(&Setting::Set("extra_float_digits", "3".into()));
        s.apply(&Setting::ResetAll);
        assert_eq!(s.get("extra_float_digits"), "1");
    }
}
