//! SQL text as statements: split at top-level semicolons (strings and comments respected),
//! with the line each starts on, whether the text ends one, and what kind of statement it is by
//! its first word (one that only reads, or a query a client may export).

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Error, Result};

/// The first word of a statement, upper-cased (after leading comments and parentheses).
pub(super) fn tokens_first_word(text: &str) -> String {
    let mut t = text.trim_start();
    loop {
        if let Some(rest) = t.strip_prefix("--") {
            t = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = t.strip_prefix("/*") {
            t = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = t.strip_prefix('(') {
            t = rest.trim_start();
        } else {
            break;
        }
    }
    t.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Whether a statement starting with `word` only reads.
pub(super) fn is_read_only(word: &str) -> bool {
    matches!(
        word,
        "SELECT" | "WITH" | "VALUES" | "EXPLAIN" | "SHOW" | "DESCRIBE" | "TABLE"
    )
}

/// Whether `sql` is one query that only reads (`SELECT`, `WITH`, `VALUES`, `TABLE`): what a client
/// may export.
pub fn is_query(sql: &str) -> bool {
    matches!(split_statements(sql).map(|s| s.len()), Ok(1))
        && matches!(tokens_first_word(sql).as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
}

/// The statements of `sql` (split at top-level semicolons, strings and comments respected) with
/// the line (from 1) each starts on.
pub fn statements_with_lines(sql: &str) -> Result<Vec<(u64, Vec<Token>)>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let mut out = Vec::new();
    let mut cur: Vec<Token> = Vec::new();
    let mut first_line: Option<u64> = None;
    for t in tokens {
        if t.token == Token::SemiColon {
            out.push((first_line.take().unwrap_or(1), std::mem::take(&mut cur)));
            continue;
        }
        if first_line.is_none() && !matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            first_line = Some(t.span.start.line);
        }
        cur.push(t.token);
    }
    out.push((first_line.unwrap_or(1), cur));
    out.retain(|(_, s)| s.iter().any(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)));
    if out.is_empty() {
        return Err(Error::Sql("no statement given".into()));
    }
    Ok(out)
}

/// Whether `sql` ends a statement: it tokenizes (no string or comment left open) and its last
/// token other than whitespace and comments is `;` (what a shell waits for before running).
pub fn is_complete(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).with_unescape(false).tokenize() else {
        return false;
    };
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .is_some_and(|t| *t == Token::SemiColon)
}

/// Split `sql` into its statements (`;` inside strings and comments does not end one).
pub fn split_statements(sql: &str) -> Result<Vec<Vec<Token>>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        // keep escapes as written ('O''Brien'): the text is re-assembled from these tokens
        .with_unescape(false)
        .tokenize()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in tokens {
        if t == Token::SemiColon {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(t);
        }
    }
    out.push(cur);
    out.retain(|s| s.iter().any(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)));
    if out.is_empty() {
        return Err(Error::Sql("no statement given".into()));
    }
    Ok(out)
}
