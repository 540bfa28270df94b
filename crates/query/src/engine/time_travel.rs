//! Time travel in SQL: `name VERSION AS OF n`, `name TIMESTAMP AS OF '...'` and `name FOR
//! SYSTEM_TIME AS OF '...'` found in a statement's tokens and replaced by temporary tables of the
//! `__asof` schema, and the parsing of [`AsOf`] values.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Whitespace, Word};

use super::CATALOG_NAME;
use crate::catalog::AsOf;
use crate::{Error, Result};

/// Schema of the temporary tables that stand for tables read as of a version or time.
pub(super) const ASOF_SCHEMA: &str = "__asof";

fn is_kw(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

fn word(value: &str) -> Token {
    Token::Word(Word {
        value: value.to_string(),
        quote_style: None,
        keyword: Keyword::NoKeyword,
    })
}

/// Find `name VERSION AS OF n`, `name TIMESTAMP AS OF 'ts'` and `name FOR SYSTEM_TIME AS OF 'ts'`,
/// replace each with a temporary table name (aliased to the original name), and return them.
#[allow(clippy::type_complexity)]
pub(super) fn rewrite_time_travel(tokens: Vec<Token>) -> Result<(Vec<Token>, Vec<(String, Vec<String>, AsOf)>)> {
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let mut travels = Vec::new();
    let mut replace: Vec<(usize, usize, Vec<Token>)> = Vec::new(); // token range [a, b) -> new tokens
    let mut k = 0;
    while k < sig.len() {
        let t = &tokens[sig[k]];
        let clause_len = if (is_kw(t, Keyword::VERSION) || is_kw(t, Keyword::TIMESTAMP))
            && sig.get(k + 2).is_some_and(|i| is_kw(&tokens[*i], Keyword::OF))
            && sig.get(k + 1).is_some_and(|i| is_kw(&tokens[*i], Keyword::AS))
        {
            3
        } else if is_kw(t, Keyword::FOR)
            && sig.get(k + 1).is_some_and(|i| is_kw(&tokens[*i], Keyword::SYSTEM_TIME))
            && sig.get(k + 2).is_some_and(|i| is_kw(&tokens[*i], Keyword::AS))
            && sig.get(k + 3).is_some_and(|i| is_kw(&tokens[*i], Keyword::OF))
        {
            4
        } else {
            0
        };
        // The clause must follow a table name: Word (. Word)*
        let follows_name = k > 0 && matches!(tokens[sig[k - 1]], Token::Word(_));
        if clause_len == 0 || !follows_name {
            k += 1;
            continue;
        }
        // Walk back over the name.
        let mut start = k - 1;
        while start >= 2 && tokens[sig[start - 1]] == Token::Period && matches!(tokens[sig[start - 2]], Token::Word(_))
        {
            start -= 2;
        }
        let parts: Vec<String> = (start..k)
            .step_by(2)
            .map(|j| match &tokens[sig[j]] {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_lowercase(),
                Token::Word(w) => w.value.clone(),
                _ => unreachable!("checked above"),
            })
            .collect();
        if start > 0
            && [Keyword::INTO, Keyword::UPDATE, Keyword::TABLE]
                .iter()
                .any(|kw| is_kw(&tokens[sig[start - 1]], *kw))
        {
            return Err(Error::Sql(format!(
                "cannot write to {} as of an earlier version: time travel is read-only",
                parts.join(".")
            )));
        }
        let lit_idx = k + clause_len;
        let lit = sig
            .get(lit_idx)
            .map(|i| tokens[*i].clone())
            .ok_or_else(|| Error::Sql("AS OF needs a value".into()))?;
        let as_of = match (&lit, is_kw(t, Keyword::VERSION)) {
            (Token::Number(n, _), true) => {
                AsOf::Version(n.parse().map_err(|_| Error::Sql(format!("bad version {n}")))?)
            }
            (Token::SingleQuotedString(s), false) => AsOf::parse_timestamp(s).map_err(Error::Sql)?,
            (other, true) => {
                return Err(Error::Sql(format!(
                    "VERSION AS OF needs a version number, found {other}"
                )));
            }
            (other, false) => {
                return Err(Error::Sql(format!(
                    "TIMESTAMP AS OF needs a quoted timestamp, found {other}"
                )));
            }
        };
        let temp = format!("t{}", travels.len());
        let mut new = vec![
            word(CATALOG_NAME),
            Token::Period,
            word(ASOF_SCHEMA),
            Token::Period,
            word(&temp),
        ];
        // Keep the original name usable as a qualifier unless an alias follows.
        let next = sig.get(lit_idx + 1).map(|i| &tokens[*i]);
        let has_alias =
            matches!(next, Some(Token::Word(w)) if w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword);
        if !has_alias {
            new.push(Token::Whitespace(Whitespace::Space));
            new.push(word("AS"));
            new.push(Token::Whitespace(Whitespace::Space));
            new.push(Token::Word(Word {
                value: parts.last().cloned().unwrap_or_default(),
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }));
        }
        replace.push((sig[start], sig[lit_idx] + 1, new));
        travels.push((temp, parts, as_of));
        k = lit_idx + 1;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    for (a, b, new) in replace {
        out.extend_from_slice(&tokens[i..a]);
        out.extend(new);
        i = b;
    }
    out.extend_from_slice(&tokens[i..]);
    Ok((out, travels))
}

impl AsOf {
    /// Parse a version number or a timestamp (`2026-11-25T10:00:00Z`, `2026-11-25 10:00:00`
    /// taken as UTC, or a date `2026-11-25` meaning its midnight UTC).
    pub fn parse(s: &str) -> std::result::Result<AsOf, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(AsOf::Version).map_err(|_| format!("bad version {s:?}"));
        }
        Self::parse_timestamp(s)
    }

    /// Parse a timestamp only (see [`AsOf::parse`]).
    pub fn parse_timestamp(s: &str) -> std::result::Result<AsOf, String> {
        let s = s.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(AsOf::Timestamp(t.timestamp_millis()));
        }
        for f in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                return Ok(AsOf::Timestamp(t.and_utc().timestamp_millis()));
            }
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(AsOf::Timestamp(
                d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis(),
            ));
        }
        Err(format!(
            "{s:?} is neither a version number nor a timestamp like 2026-11-25T10:00:00Z"
        ))
    }
}
