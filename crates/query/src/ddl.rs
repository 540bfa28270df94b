//! Stratalake's own DDL, parsed before DataFusion sees the statement:
//!
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] [ns.]name (
//!     col TYPE [NOT NULL] [CLASSIFICATION level], ...
//! ) [PARTITIONED BY (col | day(col) | month(col) | year(col), ...)]
//! CREATE NAMESPACE|SCHEMA [IF NOT EXISTS] name
//! DROP TABLE [IF EXISTS] [ns.]name
//! DROP NAMESPACE|SCHEMA [IF EXISTS] name
//! ALTER TABLE [ns.]name ADD CONSTRAINT ... | DROP CONSTRAINT name   (see crate::quality)
//! ```

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use stratalake_table::PartitionField;

use crate::{Error, Result};

/// A column as written in CREATE TABLE; the type is SQL text, resolved by DataFusion later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Name.
    pub name: String,
    /// SQL type text.
    pub sql_type: String,
    /// NOT NULL given.
    pub not_null: bool,
    /// CLASSIFICATION given.
    pub classification: Option<String>,
}

/// A parsed DDL statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ddl {
    /// `GRANT priv ON what TO grantee` / `REVOKE priv ON what FROM grantee`.
    Grant {
        /// select, insert, admin.
        privilege: String,
        /// `lake`, `namespace` or `table`.
        on_kind: String,
        /// Its name (none for the lake).
        on_name: Option<String>,
        /// Principal or role.
        grantee: String,
        /// GRANT (true) or REVOKE (false).
        give: bool,
    },
    /// `CREATE PRINCIPAL name [SERVICE] [WITH (key = 'value', ...)]`.
    CreatePrincipal {
        /// Name.
        name: String,
        /// A service identity.
        service: bool,
        /// Attributes.
        attributes: Vec<(String, String)>,
    },
    /// `CREATE ROLE name [CLEARANCE level]`.
    CreateRole {
        /// Name.
        name: String,
        /// Clearance.
        clearance: Option<String>,
    },
    /// `DROP PRINCIPAL name` / `DROP ROLE name`.
    DropPrincipalOrRole {
        /// Name.
        name: String,
        /// A role (true) or a principal.
        role: bool,
    },
    /// `CREATE ROW FILTER name ON table FOR grantee WHERE predicate`.
    CreateRowFilter {
        /// Policy name.
        name: String,
        /// Table name parts.
        table: Vec<String>,
        /// Principal or role.
        grantee: String,
        /// SQL predicate.
        predicate: String,
    },
    /// `CREATE MASK ON table (column) FOR grantee AS {NULL | REDACT | HASH | PARTIAL(n) | BUCKET(w) | DENY | EXPR sql}`.
    CreateMask {
        /// Table name parts.
        table: Vec<String>,
        /// Column.
        column: String,
        /// Principal or role.
        grantee: String,
        /// Mask spec as `Mask::parse` reads it.
        mask: String,
    },
    /// `DROP ROW FILTER name ON table`.
    DropRowFilter {
        /// Policy name.
        name: String,
        /// Table name parts.
        table: Vec<String>,
    },
    /// `DROP MASK ON table (column) FOR grantee`.
    DropMask {
        /// Table name parts.
        table: Vec<String>,
        /// Column.
        column: String,
        /// Principal or role.
        grantee: String,
    },
    /// `CREATE MASK FOR CLASSIFICATION level AS spec` (spec `NONE` removes it).
    SetLevelMask {
        /// Level.
        level: String,
        /// Mask spec as `Mask::parse` reads it, or `none`.
        mask: String,
    },
    /// `GRANT ROLE r TO member` / `REVOKE ROLE r FROM member`.
    Membership {
        /// The role.
        role: String,
        /// The principal or role.
        member: String,
        /// GRANT (true) or REVOKE (false).
        give: bool,
    },
    /// CREATE TABLE.
    CreateTable {
        /// Name parts (`[ns, table]` or `[table]`).
        name: Vec<String>,
        /// IF NOT EXISTS.
        if_not_exists: bool,
        /// Columns.
        columns: Vec<ColumnSpec>,
        /// Partitioning.
        partition_by: Vec<PartitionField>,
    },
    /// CREATE NAMESPACE.
    CreateNamespace {
        /// Name.
        name: String,
        /// IF NOT EXISTS.
        if_not_exists: bool,
    },
    /// DROP TABLE.
    DropTable {
        /// Name parts.
        name: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// DROP NAMESPACE.
    DropNamespace {
        /// Name.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `ALTER TABLE ... ADD|DROP CONSTRAINT` (see [`crate::quality`]).
    Constraint(crate::quality::AlterTable),
}

fn word_is(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none())
}

/// If `tokens` (without whitespace) start a Stratalake DDL statement, parse it.
pub fn parse(tokens: &[Token]) -> Result<Option<Ddl>> {
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(3)
        .collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|t| word_is(t, w));
    let ns_word = |i: usize| is(i, "namespace") || is(i, "schema");
    if is(0, "grant") || is(0, "revoke") {
        return parse_grant(tokens).map(Some);
    }
    if is(0, "alter") && is(1, "table") {
        return Ok(crate::quality::parse_alter(tokens)?.map(Ddl::Constraint));
    }
    if (is(0, "create") && (is(1, "principal") || is(1, "user") || is(1, "role") || is(1, "row") || is(1, "mask")))
        || (is(0, "drop") && (is(1, "principal") || is(1, "user") || is(1, "role") || is(1, "row") || is(1, "mask")))
    {
        return parse_access(tokens).map(Some);
    }
    if !((is(0, "create") && (is(1, "table") || ns_word(1))) || (is(0, "drop") && (is(1, "table") || ns_word(1)))) {
        return Ok(None);
    }
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).with_tokens(tokens.to_vec());
    let create = p.parse_keyword(Keyword::CREATE);
    if !create {
        p.expect_keyword(Keyword::DROP)?;
    }
    let is_table = p.parse_keyword(Keyword::TABLE);
    if !is_table {
        // NAMESPACE is not a SQL keyword: take the word.
        p.next_token();
    }
    let ddl = if create {
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name: Vec<String> = p
            .parse_object_name(false)?
            .0
            .iter()
            .map(|i| i.to_string().trim_matches('"').to_string())
            .collect();
        if !is_table {
            end(&mut p)?;
            let [name] =
                <[String; 1]>::try_from(name).map_err(|_| Error::Sql("a namespace name has one part".into()))?;
            return Ok(Some(Ddl::CreateNamespace { name, if_not_exists }));
        }
        if p.parse_keyword(Keyword::AS) {
            return Err(Error::Unsupported(
                "CREATE TABLE ... AS SELECT: create the table with its columns, then INSERT INTO ... SELECT".into(),
            ));
        }
        p.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        loop {
            let col = p.parse_identifier()?.value;
            let ty = p.parse_data_type()?;
            let mut spec = ColumnSpec {
                name: col,
                sql_type: ty.to_string(),
                not_null: false,
                classification: None,
            };
            loop {
                let t = p.peek_token().token;
                if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                    spec.not_null = true;
                } else if p.parse_keyword(Keyword::NULL) {
                    spec.not_null = false;
                } else if word_is(&t, "classification") || word_is(&t, "classified") {
                    p.next_token();
                    let _ = p.parse_keyword(Keyword::AS);
                    let level = match p.next_token().token {
                        Token::Word(w) => w.value.to_lowercase(),
                        Token::SingleQuotedString(s) => s.to_lowercase(),
                        other => return Err(Error::Sql(format!("CLASSIFICATION needs a level name, found {other}"))),
                    };
                    spec.classification = Some(level);
                } else if matches!(t, Token::Comma | Token::RParen) {
                    break;
                } else {
                    return Err(Error::Sql(format!(
                        "column {:?}: unexpected {t}; column options are NOT NULL, NULL and CLASSIFICATION <level>",
                        spec.name
                    )));
                }
            }
            columns.push(spec);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)?;
            break;
        }
        let mut partition_by = Vec::new();
        let t = p.peek_token().token;
        if word_is(&t, "partitioned") || matches!(&t, Token::Word(w) if w.keyword == Keyword::PARTITION) {
            p.next_token();
            p.expect_keyword(Keyword::BY)?;
            p.expect_token(&Token::LParen)?;
            loop {
                let first = p.parse_identifier()?.value;
                let spec = if p.consume_token(&Token::LParen) {
                    let col = p.parse_identifier()?.value;
                    p.expect_token(&Token::RParen)?;
                    format!("{first}({col})")
                } else {
                    first
                };
                partition_by.push(PartitionField::parse(&spec)?);
                if p.consume_token(&Token::Comma) {
                    continue;
                }
                p.expect_token(&Token::RParen)?;
                break;
            }
        }
        end(&mut p)?;
        Ddl::CreateTable {
            name,
            if_not_exists,
            columns,
            partition_by,
        }
    } else {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name: Vec<String> = p
            .parse_object_name(false)?
            .0
            .iter()
            .map(|i| i.to_string().trim_matches('"').to_string())
            .collect();
        end(&mut p)?;
        if is_table {
            Ddl::DropTable { name, if_exists }
        } else {
            let [name] =
                <[String; 1]>::try_from(name).map_err(|_| Error::Sql("a namespace name has one part".into()))?;
            Ddl::DropNamespace { name, if_exists }
        }
    };
    Ok(Some(ddl))
}

/// The text of `tokens` after the first `n` significant tokens (for trailing SQL).
fn rest_text(tokens: &[Token], n: usize) -> String {
    let mut seen = 0;
    let mut out = String::new();
    for t in tokens {
        if seen >= n {
            if !matches!(t, Token::EOF | Token::SemiColon) {
                out.push_str(&t.to_string());
            }
            continue;
        }
        if !matches!(t, Token::Whitespace(_)) {
            seen += 1;
        }
    }
    out.trim().to_string()
}

/// Principals, roles, row filters and masks in SQL.
fn parse_access(tokens: &[Token]) -> Result<Ddl> {
    let sig: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF | Token::SemiColon))
        .collect();
    let text = |t: &Token| match t {
        Token::Word(w) => w.value.clone(),
        Token::SingleQuotedString(s) => s.clone(),
        other => other.to_string(),
    };
    let lw = |i: usize| sig.get(i).map(|t| text(t).to_lowercase()).unwrap_or_default();
    let need = |i: usize, what: &str| -> Result<String> {
        sig.get(i)
            .map(|t| text(t))
            .ok_or_else(|| Error::Sql(format!("expected {what}")))
    };
    let create = lw(0) == "create";
    // a dotted table name from position i: its parts and the position after it
    let table_at = |mut i: usize| -> Result<(Vec<String>, usize)> {
        let mut table = vec![need(i, "a table")?.to_lowercase()];
        while sig.get(i + 1) == Some(&&Token::Period) {
            table.push(need(i + 2, "a table")?.to_lowercase());
            i += 2;
        }
        Ok((table, i + 1))
    };
    match (create, lw(1).as_str()) {
        (false, "row") => {
            // DROP ROW FILTER name ON t
            if lw(2) != "filter" || lw(4) != "on" {
                return Err(Error::Sql("expected DROP ROW FILTER name ON table".into()));
            }
            let (table, end) = table_at(5)?;
            if sig.len() != end {
                return Err(Error::Sql(
                    "expected DROP ROW FILTER name ON table, and nothing after".into(),
                ));
            }
            Ok(Ddl::DropRowFilter {
                name: need(3, "a row filter name")?.to_lowercase(),
                table,
            })
        }
        (false, "mask") => {
            // DROP MASK ON t (col) FOR g
            if lw(2) != "on" {
                return Err(Error::Sql(
                    "expected DROP MASK ON table (column) FOR grantee (a classification policy goes with CREATE MASK FOR CLASSIFICATION level AS NONE)".into(),
                ));
            }
            let (table, i) = table_at(3)?;
            if sig.get(i) != Some(&&Token::LParen)
                || sig.get(i + 2) != Some(&&Token::RParen)
                || lw(i + 3) != "for"
                || sig.len() != i + 5
            {
                return Err(Error::Sql("expected DROP MASK ON table (column) FOR grantee".into()));
            }
            Ok(Ddl::DropMask {
                table,
                column: need(i + 1, "a column")?,
                grantee: need(i + 4, "a grantee")?.to_lowercase(),
            })
        }
        (false, k @ ("principal" | "user" | "role")) => Ok(Ddl::DropPrincipalOrRole {
            name: need(2, "a name")?.to_lowercase(),
            role: k == "role",
        }),
        (true, "principal" | "user") => {
            let name = need(2, "a principal name")?.to_lowercase();
            let mut i = 3;
            let service = lw(i) == "service";
            if service {
                i += 1;
            }
            let mut attributes = Vec::new();
            if lw(i) == "with" {
                i += 1;
                if sig.get(i) != Some(&&Token::LParen) {
                    return Err(Error::Sql("expected WITH (key = 'value', ...)".into()));
                }
                i += 1;
                loop {
                    let k = need(i, "an attribute name")?.to_lowercase();
                    if sig.get(i + 1) != Some(&&Token::Eq) {
                        return Err(Error::Sql(format!("attribute {k}: expected = 'value'")));
                    }
                    let v = need(i + 2, "an attribute value")?;
                    attributes.push((k, v));
                    i += 3;
                    match sig.get(i) {
                        Some(Token::Comma) => i += 1,
                        Some(Token::RParen) => {
                            i += 1;
                            break;
                        }
                        _ => return Err(Error::Sql("expected , or ) in WITH (...)".into())),
                    }
                }
            }
            if i < sig.len() {
                return Err(Error::Sql(format!("unexpected {} in CREATE PRINCIPAL", text(sig[i]))));
            }
            Ok(Ddl::CreatePrincipal {
                name,
                service,
                attributes,
            })
        }
        (true, "role") => {
            let name = need(2, "a role name")?.to_lowercase();
            let clearance = match lw(3).as_str() {
                "" => None,
                "clearance" => Some(need(4, "a classification level")?.to_lowercase()),
                other => {
                    return Err(Error::Sql(format!(
                        "unexpected {other} in CREATE ROLE (use CLEARANCE level)"
                    )));
                }
            };
            Ok(Ddl::CreateRole { name, clearance })
        }
        (true, "row") => {
            // CREATE ROW FILTER name ON t FOR g WHERE ...
            if lw(2) != "filter" || lw(4) != "on" {
                return Err(Error::Sql(
                    "expected CREATE ROW FILTER name ON table FOR grantee WHERE condition".into(),
                ));
            }
            let name = need(3, "a policy name")?.to_lowercase();
            let mut i = 5;
            let mut table = vec![need(i, "a table")?];
            while sig.get(i + 1) == Some(&&Token::Period) {
                table.push(need(i + 2, "a table")?);
                i += 2;
            }
            if lw(i + 1) != "for" || lw(i + 3) != "where" {
                return Err(Error::Sql("expected ... FOR grantee WHERE condition".into()));
            }
            let grantee = need(i + 2, "a grantee")?.to_lowercase();
            let predicate = rest_text(tokens, i + 4);
            Ok(Ddl::CreateRowFilter {
                name,
                table: table.into_iter().map(|t| t.to_lowercase()).collect(),
                grantee,
                predicate,
            })
        }
        (true, "mask") if lw(2) == "for" && lw(3) == "classification" => {
            if lw(5) != "as" {
                return Err(Error::Sql(
                    "expected CREATE MASK FOR CLASSIFICATION level AS mask".into(),
                ));
            }
            let level = need(4, "a classification level")?.to_lowercase();
            let mask = match lw(6).as_str() {
                "partial" => format!("partial:{}", need(8, "a number")?),
                "bucket" => format!("bucket:{}", need(8, "a width")?),
                "expr" => {
                    return Err(Error::Sql(
                        "a classification mask cannot be an expression (it applies to every table): use NULL, REDACT, HASH or PARTIAL(n)".into(),
                    ));
                }
                "" => {
                    return Err(Error::Sql(
                        "expected a mask: NULL, REDACT, HASH, PARTIAL(n) or NONE".into(),
                    ));
                }
                other => other.to_string(),
            };
            Ok(Ddl::SetLevelMask { level, mask })
        }
        (true, "mask") => {
            // CREATE MASK ON t (col) FOR g AS spec
            if lw(2) != "on" {
                return Err(Error::Sql(
                    "expected CREATE MASK ON table (column) FOR grantee AS mask".into(),
                ));
            }
            let mut i = 3;
            let mut table = vec![need(i, "a table")?];
            while sig.get(i + 1) == Some(&&Token::Period) {
                table.push(need(i + 2, "a table")?);
                i += 2;
            }
            if sig.get(i + 1) != Some(&&Token::LParen) || sig.get(i + 3) != Some(&&Token::RParen) {
                return Err(Error::Sql("expected (column) after the table".into()));
            }
            let column = need(i + 2, "a column")?;
            if lw(i + 4) != "for" || lw(i + 6) != "as" {
                return Err(Error::Sql("expected ... FOR grantee AS mask".into()));
            }
            let grantee = need(i + 5, "a grantee")?.to_lowercase();
            let spec_start = i + 7;
            let mask = match lw(spec_start).as_str() {
                "null" => "null".to_string(),
                "redact" => "redact".to_string(),
                "hash" => "hash".to_string(),
                "partial" => {
                    if sig.get(spec_start + 1) != Some(&&Token::LParen)
                        || sig.get(spec_start + 3) != Some(&&Token::RParen)
                    {
                        return Err(Error::Sql("expected PARTIAL(n)".into()));
                    }
                    format!("partial:{}", need(spec_start + 2, "a number")?)
                }
                "bucket" => {
                    if sig.get(spec_start + 1) != Some(&&Token::LParen)
                        || sig.get(spec_start + 3) != Some(&&Token::RParen)
                    {
                        return Err(Error::Sql(
                            "expected BUCKET(width): a number, or day, week, month, quarter or year".into(),
                        ));
                    }
                    format!("bucket:{}", need(spec_start + 2, "a width")?)
                }
                "deny" => "deny".to_string(),
                "expr" => format!("expr:{}", rest_text(tokens, spec_start + 1)),
                other => {
                    return Err(Error::Sql(format!(
                        "unknown mask {other}: use NULL, REDACT, HASH, PARTIAL(n), BUCKET(width), DENY or EXPR sql"
                    )));
                }
            };
            Ok(Ddl::CreateMask {
                table: table.into_iter().map(|t| t.to_lowercase()).collect(),
                column,
                grantee,
                mask,
            })
        }
        _ => Err(Error::Sql("unknown statement".into())),
    }
}

/// `GRANT {SELECT|INSERT|ADMIN|ALL [PRIVILEGES]} ON {LAKE | NAMESPACE n | SCHEMA n | [TABLE] t}
/// TO [ROLE|USER|PRINCIPAL] g`, `GRANT ROLE r TO m`, and the REVOKE ... FROM forms.
fn parse_grant(tokens: &[Token]) -> Result<Ddl> {
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF | Token::SemiColon))
        .map(|t| match t {
            Token::Word(w) => w.value.clone(),
            other => other.to_string(),
        })
        .collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let give = lower[0] == "grant";
    let link = if give { "to" } else { "from" };
    let usage = || {
        Error::Sql(format!(
            "expected {} {{SELECT|INSERT|ADMIN}} ON {{LAKE|NAMESPACE n|TABLE t}} {} grantee, or {} ROLE r {} member",
            lower[0].to_uppercase(),
            link.to_uppercase(),
            lower[0].to_uppercase(),
            link.to_uppercase()
        ))
    };
    let name_after = |i: usize| -> Option<String> {
        // a possibly dotted name: w (. w)*
        let mut out = words.get(i)?.clone();
        let mut j = i + 1;
        while words.get(j).map(|w| w.as_str()) == Some(".") {
            out.push('.');
            out.push_str(words.get(j + 1)?);
            j += 2;
        }
        Some(out)
    };
    let skip_kind = |i: usize| {
        if matches!(lower.get(i).map(|s| s.as_str()), Some("role" | "user" | "principal")) {
            i + 1
        } else {
            i
        }
    };
    if lower.get(1).map(|s| s.as_str()) == Some("role") {
        let role = words.get(2).cloned().ok_or_else(usage)?;
        if lower.get(3).map(|s| s.as_str()) != Some(link) {
            return Err(usage());
        }
        let member = words.get(skip_kind(4)).cloned().ok_or_else(usage)?;
        return Ok(Ddl::Membership {
            role: role.to_lowercase(),
            member: member.to_lowercase(),
            give,
        });
    }
    let mut i = 1;
    let privilege = match lower.get(i).map(|s| s.as_str()) {
        Some("all") => {
            i += 1;
            if lower.get(i).map(|s| s.as_str()) == Some("privileges") {
                i += 1;
            }
            "admin".to_string()
        }
        Some(p @ ("select" | "insert" | "admin")) => {
            i += 1;
            p.to_string()
        }
        _ => return Err(usage()),
    };
    if lower.get(i).map(|s| s.as_str()) != Some("on") {
        return Err(usage());
    }
    i += 1;
    let (on_kind, on_name) = match lower.get(i).map(|s| s.as_str()) {
        Some("lake") => {
            i += 1;
            ("lake".to_string(), None)
        }
        Some("namespace" | "schema") => {
            let n = words.get(i + 1).cloned().ok_or_else(usage)?;
            i += 2;
            ("namespace".to_string(), Some(n.to_lowercase()))
        }
        Some(_) => {
            if lower[i] == "table" {
                i += 1;
            }
            let n = name_after(i).ok_or_else(usage)?;
            i += 1 + 2 * n.matches('.').count();
            ("table".to_string(), Some(n.to_lowercase()))
        }
        None => return Err(usage()),
    };
    if lower.get(i).map(|s| s.as_str()) != Some(link) {
        return Err(usage());
    }
    let g = skip_kind(i + 1);
    let grantee = words.get(g).cloned().ok_or_else(usage)?;
    if words.len() > g + 1 {
        return Err(Error::Sql(format!("unexpected {} after the grantee", words[g + 1])));
    }
    Ok(Ddl::Grant {
        privilege,
        on_kind,
        on_name,
        grantee: grantee.to_lowercase(),
        give,
    })
}

fn end(p: &mut Parser<'_>) -> Result<()> {
    let _ = p.consume_token(&Token::SemiColon);
    match p.peek_token().token {
        Token::EOF => Ok(()),
        t => Err(Error::Sql(format!("unexpected {t} after the statement"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn p(sql: &str) -> Result<Option<Ddl>> {
        let toks = Tokenizer::new(&GenericDialect {}, sql).tokenize().unwrap();
        parse(&toks)
    }

    #[test]
    fn create_table() {
        let d = p("CREATE TABLE IF NOT EXISTS gov.permits (id BIGINT NOT NULL CLASSIFICATION public, owner VARCHAR CLASSIFICATION 'confidential', fee DECIMAL(10,2), issued TIMESTAMP) PARTITIONED BY (region, day(issued))")
            .unwrap()
            .unwrap();
        let Ddl::CreateTable {
            name,
            if_not_exists,
            columns,
            partition_by,
        } = d
        else {
            panic!()
        };
        assert_eq!(name, vec!["gov", "permits"]);
        assert!(if_not_exists);
        assert_eq!(columns.len(), 4);
        assert!(columns[0].not_null);
        assert_eq!(columns[1].classification.as_deref(), Some("confidential"));
        assert_eq!(columns[2].sql_type, "DECIMAL(10,2)");
        assert_eq!(partition_by.len(), 2);
        assert!(p("SELECT 1").unwrap().is_none());
        assert!(p("CREATE TABLE t (a INT PRIMARY KEY)").is_err());
        assert!(p("CREATE TABLE t (a INT) extra").is_err());
        assert_eq!(
            p("DROP SCHEMA IF EXISTS x").unwrap(),
            Some(Ddl::DropNamespace {
                name: "x".into(),
                if_exists: true
            })
        );
        assert_eq!(
            p("create namespace gov").unwrap(),
            Some(Ddl::CreateNamespace {
                name: "gov".into(),
                if_not_exists: false
            })
        );
    }
}
