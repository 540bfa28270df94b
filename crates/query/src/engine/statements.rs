//! SQL text as statements: split at top-level semicolons (strings and comments respected),
//! with the line each starts on, whether the text ends one, and what kind of statement it is by
//! its first word (one that only reads, or a query a client may export).

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Error, Result};

/// The words of a statement, upper-cased, in order: comments (nested ones too), strings,
/// numbers and punctuation left out. Empty when the text does not tokenize.
fn words(text: &str) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).with_unescape(false).tokenize() else {
        return Vec::new();
    };
    tokens
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

/// Statements a client sees as a command with a row count (`INSERT 0 3`), not as rows, as in
/// PostgreSQL: their result is one `UInt64` column with the count.
pub const ROW_COUNT_STATEMENTS: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];

/// The first word of a statement, upper-cased (comments, nested or not, and parentheses
/// before it skipped): what kind of statement it is. Empty when the text does not tokenize.
pub fn first_word(text: &str) -> String {
    words(text).into_iter().next().unwrap_or_default()
}

/// Whether a statement starting with `word` only reads.
fn is_read_only(word: &str) -> bool {
    matches!(
        word,
        "SELECT" | "WITH" | "VALUES" | "EXPLAIN" | "SHOW" | "DESCRIBE" | "TABLE"
    )
}

/// Whether the statement `text` only reads: a query, `SHOW`, `DESCRIBE`, or an `EXPLAIN` that
/// does not run a write (`EXPLAIN ANALYZE INSERT …` runs the insert). Anything else, and text
/// that does not tokenize, may write.
pub fn only_reads(text: &str) -> bool {
    let words = words(text);
    let Some(first) = words.first() else { return false };
    if first != "EXPLAIN" {
        return is_read_only(first);
    }
    // EXPLAIN [ANALYZE] [VERBOSE] [FORMAT name] statement
    let mut rest = words[1..].iter().map(String::as_str).peekable();
    let mut analyze = false;
    while let Some(w) = rest.peek().copied() {
        match w {
            "ANALYZE" => analyze = true,
            "VERBOSE" => {}
            "FORMAT" => {
                rest.next();
            }
            _ => break,
        }
        rest.next();
    }
    !analyze || matches!(rest.next(), Some("SELECT" | "WITH" | "VALUES" | "TABLE"))
}

/// Whether `sql` is one query that only reads (`SELECT`, `WITH`, `VALUES`, `TABLE`): what a client
/// may export.
pub fn is_query(sql: &str) -> bool {
    matches!(split_statements(sql).map(|s| s.len()), Ok(1))
        && matches!(first_word(sql).as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_of_a_statement_is_its_first_word_outside_comments() {
        assert_eq!(first_word("  -- note\n (SELECT 1)"), "SELECT");
        // a nested comment hides the SELECT: this is a DROP
        assert_eq!(first_word("/* /* */ SELECT */ DROP TABLE t"), "DROP");
        assert!(!only_reads("/* /* */ SELECT */ INSERT INTO t VALUES (1)"));
        assert!(only_reads("with x as (select 1) select * from x"));
        assert!(only_reads("EXPLAIN INSERT INTO t VALUES (1)"));
        assert!(only_reads("EXPLAIN ANALYZE VERBOSE SELECT 1"));
        assert!(!only_reads("EXPLAIN ANALYZE INSERT INTO t VALUES (1)"));
        assert!(!only_reads("explain analyze format indent delete from t"));
        assert!(!only_reads("GRANT SELECT ON TABLE t TO a"));
        assert!(!only_reads("'unterminated"));
        assert!(!only_reads(""));
    }
}
