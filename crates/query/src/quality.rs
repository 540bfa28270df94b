//! Data quality in SQL: `ALTER TABLE ... ADD|DROP CONSTRAINT`, CHECK predicates compiled with
//! DataFusion, and validators for writes.
//!
//! ```sql
//! ALTER TABLE t ADD CONSTRAINT name NOT NULL (col)
//! ALTER TABLE t ADD CONSTRAINT name CHECK (predicate)
//! ALTER TABLE t ADD CONSTRAINT name UNIQUE (col, ...) [ON DUPLICATE REJECT | KEEP FIRST | KEEP LAST]
//! ALTER TABLE t ADD CONSTRAINT name ALLOWED col IN ('a', 'b', ...)
//! ALTER TABLE t ADD CONSTRAINT name RANGE col BETWEEN {lit | NULL} AND {lit | NULL}
//! ALTER TABLE t ADD CONSTRAINT name PATTERN col MATCHES 'regex'
//! ALTER TABLE t ADD CONSTRAINT name FRESHNESS col WITHIN '7d'
//! ALTER TABLE t DROP CONSTRAINT name
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::BooleanArray;
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use stratalake_table::quality::{Constraint, OnDuplicate, OnError, PredicateFn, Validator};
use stratalake_table::{Snapshot, Table};

use crate::{Error, Result};

/// Compile a CHECK predicate against `schema` into a function of a batch.
pub fn compile_check(schema: &arrow::datatypes::SchemaRef, name: &str, predicate: &str) -> Result<PredicateFn> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let ctx = SessionContext::new();
    let expr = ctx.parse_sql_expr(predicate, &df_schema).map_err(|e| {
        Error::Sql(format!(
            "CHECK constraint {name:?} does not plan against the table: {e}"
        ))
    })?;
    if !expr
        .get_type(&df_schema)
        .is_ok_and(|t| t == arrow::datatypes::DataType::Boolean)
    {
        return Err(Error::Sql(format!(
            "CHECK constraint {name:?} is not a boolean condition"
        )));
    }
    let phys: Arc<dyn PhysicalExpr> = ctx.create_physical_expr(expr, &df_schema)?;
    let name = name.to_string();
    Ok(Arc::new(move |b: &arrow::array::RecordBatch| {
        let v = phys
            .evaluate(b)
            .and_then(|v| v.into_array(b.num_rows()))
            .map_err(|e| stratalake_table::Error::Internal(format!("CHECK {name:?}: {e}")))?;
        v.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| stratalake_table::Error::Internal(format!("CHECK {name:?} is not boolean")))
    }))
}

/// A validator for writes to `table` at `snap`, or `None` when the table has no constraints.
pub async fn validator(
    table: &Table,
    snap: &Snapshot,
    on_error: OnError,
    against_existing: bool,
) -> Result<Option<Validator>> {
    if snap.metadata.constraints.is_empty() {
        return Ok(None);
    }
    let arrow = snap.metadata.schema.arrow_schema();
    let mut checks = HashMap::new();
    for c in &snap.metadata.constraints {
        if let Constraint::Check { name, predicate } = c {
            checks.insert(name.clone(), compile_check(&arrow, name, predicate)?);
        }
    }
    Ok(Some(
        Validator::new(table, snap, checks, on_error, against_existing).await?,
    ))
}

/// Add a constraint: checked against the schema, then against every row already in the table
/// (a table that breaks it is refused, naming the rule); a metadata-only commit.
pub async fn add_constraint(table: &Table, c: Constraint, principal: &str) -> Result<u64> {
    let snap = table.snapshot().await?;
    if snap.metadata.constraints.iter().any(|x| x.name() == c.name()) {
        return Err(Error::Sql(format!(
            "table {} already has a constraint named {:?}",
            table.ident(),
            c.name()
        )));
    }
    stratalake_table::names::validate_ident("constraint", c.name())?;
    let c = c.normalized(&snap.metadata.schema, &table.ident().to_string())?;
    // Check the existing rows: a validator over the table with this constraint alone.
    let mut probe = snap.clone();
    probe.metadata.constraints = vec![c.clone()];
    if !matches!(c, Constraint::Freshness { .. }) {
        let mut v = validator(table, &probe, OnError::Reject, false)
            .await?
            .expect("one constraint");
        let ctx = table.context();
        let root = table.ident().root();
        for f in snap.files.values() {
            let data = stratalake_table::read::fetch_checked(ctx.tiers.get(&f.tier)?, &root, f).await?;
            let batches = stratalake_table::read::read_file(
                data,
                &f.path,
                table.id(),
                f,
                &snap.metadata.schema,
                &ctx.keyring,
                &stratalake_table::Access::All,
                None,
            )
            .await?;
            for b in batches {
                v.check(b, &format!("table {}", table.ident()), &|_| {
                    "a row already in the table".into()
                })
                .map_err(|e| Error::Sql(format!("cannot add constraint {:?}: {e}", c.name())))?;
            }
        }
        if let Constraint::Unique {
            on_duplicate: OnDuplicate::KeepLast,
            ..
        } = &c
        {
            // keep last buffers: duplicates among existing rows show up as dropped rows
            let checked = v.finish(&snap)?;
            if checked.metrics.duplicates_removed > 0 {
                return Err(Error::Sql(format!(
                    "cannot add constraint {:?}: the table already holds {} duplicate row(s) of that key",
                    c.name(),
                    checked.metrics.duplicates_removed
                )));
            }
        }
    } else {
        validator(table, &probe, OnError::Reject, false).await?;
    }
    let params = std::collections::BTreeMap::from([
        ("constraint".to_string(), c.name().to_string()),
        ("rule".to_string(), c.describe()),
    ]);
    Ok(table
        .update_metadata("ADD CONSTRAINT", params, principal, |m| {
            m.constraints.push(c);
            Ok(())
        })
        .await?)
}

/// Drop a constraint by name.
pub async fn drop_constraint(table: &Table, name: &str, principal: &str) -> Result<u64> {
    let snap = table.snapshot().await?;
    if !snap.metadata.constraints.iter().any(|x| x.name() == name) {
        return Err(Error::Sql(format!(
            "table {} has no constraint named {name:?}",
            table.ident()
        )));
    }
    let params = std::collections::BTreeMap::from([("constraint".to_string(), name.to_string())]);
    Ok(table
        .update_metadata("DROP CONSTRAINT", params, principal, |m| {
            m.constraints.retain(|c| c.name() != name);
            Ok(())
        })
        .await?)
}

/// A parsed `ALTER TABLE`: constraints and column changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterTable {
    /// `ADD COLUMN name type [NOT NULL] [DEFAULT literal] [CLASSIFICATION level]`.
    AddColumn {
        /// Table name parts.
        table: Vec<String>,
        /// The column (type as SQL text).
        column: crate::ddl::ColumnSpec,
        /// DEFAULT literal text.
        default: Option<String>,
    },
    /// `RENAME COLUMN a TO b`.
    RenameColumn {
        /// Table name parts.
        table: Vec<String>,
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// `ALTER COLUMN c [SET DATA] TYPE t`.
    AlterType {
        /// Table name parts.
        table: Vec<String>,
        /// Column.
        column: String,
        /// SQL type text.
        sql_type: String,
    },
    /// `DROP COLUMN c`.
    DropColumn {
        /// Table name parts.
        table: Vec<String>,
        /// Column.
        column: String,
    },
    /// Add.
    Add {
        /// Table name parts.
        table: Vec<String>,
        /// The constraint.
        constraint: Constraint,
    },
    /// Drop.
    Drop {
        /// Table name parts.
        table: Vec<String>,
        /// Its name.
        name: String,
    },
}

fn word(p: &mut Parser<'_>, w: &str) -> bool {
    match p.peek_token().token {
        Token::Word(x) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none() => {
            p.next_token();
            true
        }
        _ => false,
    }
}

fn string(p: &mut Parser<'_>, what: &str) -> Result<String> {
    match p.next_token().token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(Error::Sql(format!("{what}: expected a quoted string, found {other}"))),
    }
}

/// A literal's value as text (`'abc'` → `abc`, `-1.5`, `true`); `None` for NULL.
fn literal_value(p: &mut Parser<'_>) -> Result<Option<String>> {
    match p.peek_token().token {
        Token::Word(w) if w.keyword == Keyword::TRUE || w.keyword == Keyword::FALSE => {
            p.next_token();
            Ok(Some(w.value.to_lowercase()))
        }
        _ => literal(p),
    }
}

fn literal(p: &mut Parser<'_>) -> Result<Option<String>> {
    match p.next_token().token {
        Token::Word(w) if w.keyword == Keyword::NULL => Ok(None),
        Token::SingleQuotedString(s) => Ok(Some(s)),
        Token::Number(n, _) => Ok(Some(n)),
        Token::Minus => match p.next_token().token {
            Token::Number(n, _) => Ok(Some(format!("-{n}"))),
            other => Err(Error::Sql(format!("RANGE: expected a number after '-', found {other}"))),
        },
        other => Err(Error::Sql(format!("RANGE: expected a literal or NULL, found {other}"))),
    }
}

/// Parse `ALTER TABLE ... ADD|DROP CONSTRAINT ...` if `tokens` hold one.
pub fn parse_alter(tokens: &[Token]) -> Result<Option<AlterTable>> {
    let sig: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let is = |i: usize, w: &str| matches!(sig.get(i), Some(Token::Word(x)) if x.value.eq_ignore_ascii_case(w));
    if !(is(0, "alter") && is(1, "table")) {
        return Ok(None);
    }
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).with_tokens(tokens.to_vec());
    p.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])?;
    let table: Vec<String> = p
        .parse_object_name(false)?
        .0
        .iter()
        .map(|i| i.to_string().trim_matches('"').to_string())
        .collect();
    if p.parse_keywords(&[Keyword::DROP, Keyword::CONSTRAINT]) {
        let name = p.parse_identifier()?.value;
        end(&mut p)?;
        return Ok(Some(AlterTable::Drop { table, name }));
    }
    if p.parse_keywords(&[Keyword::DROP, Keyword::COLUMN]) {
        let column = p.parse_identifier()?.value;
        end(&mut p)?;
        return Ok(Some(AlterTable::DropColumn { table, column }));
    }
    if p.parse_keywords(&[Keyword::RENAME, Keyword::COLUMN]) {
        let from = p.parse_identifier()?.value;
        p.expect_keyword(Keyword::TO)?;
        let to = p.parse_identifier()?.value;
        end(&mut p)?;
        return Ok(Some(AlterTable::RenameColumn { table, from, to }));
    }
    if p.parse_keywords(&[Keyword::ALTER, Keyword::COLUMN]) {
        let column = p.parse_identifier()?.value;
        let _ = p.parse_keywords(&[Keyword::SET, Keyword::DATA]);
        p.expect_keyword(Keyword::TYPE)?;
        let sql_type = p.parse_data_type()?.to_string();
        end(&mut p)?;
        return Ok(Some(AlterTable::AlterType {
            table,
            column,
            sql_type,
        }));
    }
    if p.parse_keywords(&[Keyword::ADD, Keyword::COLUMN]) {
        let name = p.parse_identifier()?.value;
        let sql_type = p.parse_data_type()?.to_string();
        let mut column = crate::ddl::ColumnSpec {
            name,
            sql_type,
            not_null: false,
            classification: None,
        };
        let mut default = None;
        loop {
            if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                column.not_null = true;
            } else if p.parse_keyword(Keyword::NULL) {
                column.not_null = false;
            } else if p.parse_keyword(Keyword::DEFAULT) {
                default = literal_value(&mut p)?;
            } else if word(&mut p, "classification") || word(&mut p, "classified") {
                let _ = p.parse_keyword(Keyword::AS);
                column.classification = Some(match p.next_token().token {
                    Token::Word(w) => w.value.to_lowercase(),
                    Token::SingleQuotedString(s) => s.to_lowercase(),
                    other => return Err(Error::Sql(format!("CLASSIFICATION needs a level name, found {other}"))),
                });
            } else {
                break;
            }
        }
        end(&mut p)?;
        return Ok(Some(AlterTable::AddColumn { table, column, default }));
    }
    if !p.parse_keywords(&[Keyword::ADD, Keyword::CONSTRAINT]) {
        return Err(Error::Unsupported(
            "ALTER TABLE supports ADD COLUMN, RENAME COLUMN, ALTER COLUMN ... TYPE, DROP COLUMN, ADD CONSTRAINT and DROP CONSTRAINT".into(),
        ));
    }
    let name = p.parse_identifier()?.value.to_lowercase();
    let constraint = if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
        p.expect_token(&Token::LParen)?;
        let column = p.parse_identifier()?.value;
        p.expect_token(&Token::RParen)?;
        Constraint::NotNull { name, column }
    } else if p.parse_keyword(Keyword::CHECK) {
        // the predicate's text as written, between the outer parentheses
        p.expect_token(&Token::LParen)?;
        let start = p.index();
        let mut depth = 1;
        loop {
            match p.next_token().token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::EOF => return Err(Error::Sql("CHECK: unbalanced parentheses".into())),
                _ => {}
            }
        }
        let predicate: String = tokens[start..p.index() - 1].iter().map(|t| t.to_string()).collect();
        let predicate = predicate.trim().to_string();
        Constraint::Check { name, predicate }
    } else if p.parse_keyword(Keyword::UNIQUE) || p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        p.expect_token(&Token::LParen)?;
        let mut columns = vec![p.parse_identifier()?.value];
        while p.consume_token(&Token::Comma) {
            columns.push(p.parse_identifier()?.value);
        }
        p.expect_token(&Token::RParen)?;
        let mut on_duplicate = OnDuplicate::Reject;
        if p.parse_keyword(Keyword::ON) {
            if !word(&mut p, "duplicate") {
                return Err(Error::Sql("UNIQUE: expected ON DUPLICATE".into()));
            }
            on_duplicate = if word(&mut p, "reject") {
                OnDuplicate::Reject
            } else if word(&mut p, "keep") {
                if p.parse_keyword(Keyword::FIRST) {
                    OnDuplicate::KeepFirst
                } else if p.parse_keyword(Keyword::LAST) {
                    OnDuplicate::KeepLast
                } else {
                    return Err(Error::Sql("UNIQUE: expected KEEP FIRST or KEEP LAST".into()));
                }
            } else {
                return Err(Error::Sql(
                    "UNIQUE: ON DUPLICATE takes REJECT, KEEP FIRST or KEEP LAST".into(),
                ));
            };
        }
        Constraint::Unique {
            name,
            columns,
            on_duplicate,
        }
    } else if word(&mut p, "allowed") {
        let column = p.parse_identifier()?.value;
        p.expect_keyword(Keyword::IN)?;
        p.expect_token(&Token::LParen)?;
        let mut values = vec![string(&mut p, "ALLOWED")?];
        while p.consume_token(&Token::Comma) {
            values.push(string(&mut p, "ALLOWED")?);
        }
        p.expect_token(&Token::RParen)?;
        Constraint::AllowedValues { name, column, values }
    } else if word(&mut p, "range") {
        let column = p.parse_identifier()?.value;
        p.expect_keyword(Keyword::BETWEEN)?;
        let min = literal(&mut p)?;
        p.expect_keyword(Keyword::AND)?;
        let max = literal(&mut p)?;
        if min.is_none() && max.is_none() {
            return Err(Error::Sql("RANGE: give at least one bound".into()));
        }
        Constraint::Range { name, column, min, max }
    } else if word(&mut p, "pattern") {
        let column = p.parse_identifier()?.value;
        if !word(&mut p, "matches") {
            return Err(Error::Sql("PATTERN: expected MATCHES 'regex'".into()));
        }
        let regex = string(&mut p, "PATTERN")?;
        Constraint::Pattern { name, column, regex }
    } else if word(&mut p, "freshness") {
        let column = p.parse_identifier()?.value;
        if !word(&mut p, "within") {
            return Err(Error::Sql("FRESHNESS: expected WITHIN '<duration>'".into()));
        }
        let d = string(&mut p, "FRESHNESS")?;
        let max_age_ms = stratalake_table::units::parse_duration_ms(&d).map_err(Error::Sql)?;
        Constraint::Freshness {
            name,
            column,
            max_age_ms,
        }
    } else {
        return Err(Error::Sql(
            "ADD CONSTRAINT name takes NOT NULL (col), CHECK (predicate), UNIQUE (cols) [ON DUPLICATE ...], ALLOWED col IN (...), RANGE col BETWEEN a AND b, PATTERN col MATCHES 're' or FRESHNESS col WITHIN '7d'".into(),
        ));
    };
    end(&mut p)?;
    Ok(Some(AlterTable::Add { table, constraint }))
}

fn end(p: &mut Parser<'_>) -> Result<()> {
    let _ = p.consume_token(&Token::SemiColon);
    match p.peek_token().token {
        Token::EOF => Ok(()),
        t => Err(Error::Sql(format!("unexpected {t} at the end of the statement"))),
    }
}
