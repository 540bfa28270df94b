//! Row-filter predicates: the session's principal substituted in, then planned by DataFusion.

use datafusion::logical_expr::ExprSchemable;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use stratalake_table::access::Subject;

use crate::{Error, Result};

/// A string literal token. Tokens print their text as is, so quotes are doubled here.
fn quote(s: &str) -> Token {
    Token::SingleQuotedString(s.replace('\'', "''"))
}

/// Replace `current_principal()` and `current_principal_attribute('key')` with literals of the
/// subject (a missing attribute is NULL, which matches no row).
pub(crate) fn bind_principal(predicate: &str, subject: &Subject) -> Result<String> {
    let tokens = Tokenizer::new(&GenericDialect {}, predicate)
        // keep the predicate's own escapes as written: the text is re-assembled from these tokens
        .with_unescape(false)
        .tokenize()
        .map_err(|e| Error::Sql(format!("row filter {predicate:?}: {e}")))?;
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let word = |k: usize, w: &str| {
        sig.get(k)
            .is_some_and(|i| matches!(&tokens[*i], Token::Word(x) if x.value.eq_ignore_ascii_case(w)))
    };
    let tok = |k: usize| sig.get(k).map(|i| &tokens[*i]);
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0; // index into tokens
    let mut k = 0; // index into sig
    while i < tokens.len() {
        if sig.get(k) != Some(&i) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        if word(k, "current_principal") && tok(k + 1) == Some(&Token::LParen) && tok(k + 2) == Some(&Token::RParen) {
            out.push(quote(&subject.principal));
            i = sig[k + 2] + 1;
            k += 3;
            continue;
        }
        if word(k, "current_principal_attribute")
            && tok(k + 1) == Some(&Token::LParen)
            && tok(k + 3) == Some(&Token::RParen)
        {
            let Some(Token::SingleQuotedString(key)) = tok(k + 2) else {
                return Err(Error::Sql(
                    "current_principal_attribute takes a quoted attribute name".into(),
                ));
            };
            match subject.attributes.get(key) {
                Some(v) => out.push(quote(v)),
                None => out.push(Token::make_keyword("NULL")),
            }
            i = sig[k + 3] + 1;
            k += 4;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
        k += 1;
    }
    Ok(out.iter().map(|t| t.to_string()).collect())
}

/// An anonymous principal without attributes, for checking policies when they are created.
fn probe_subject() -> Subject {
    Subject {
        principal: "probe".into(),
        roles: Default::default(),
        attributes: Default::default(),
        grants: vec![],
        cleared: Default::default(),
        superuser: false,
        row_filters: Default::default(),
        masks: Default::default(),
    }
}

/// Check that a row-filter predicate plans against the table's columns (with an anonymous
/// principal bound in), so that a broken policy is refused when it is created, not at every read.
pub fn check_row_filter(schema: &arrow::datatypes::SchemaRef, predicate: &str) -> Result<()> {
    let probe = probe_subject();
    let bound = bind_principal(predicate, &probe)?;
    let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
    let expr = datafusion::prelude::SessionContext::new()
        .parse_sql_expr(&bound, &df_schema)
        .map_err(|e| Error::Sql(format!("row filter does not plan against the table: {e}")))?;
    if !expr
        .get_type(&df_schema)
        .is_ok_and(|t| t == arrow::datatypes::DataType::Boolean)
    {
        return Err(Error::Sql("a row filter must be a boolean condition".into()));
    }
    Ok(())
}

/// Check that a mask fits a column: the column exists, and an expression mask plans against the
/// table and casts to the column's type.
pub fn check_mask(
    schema: &arrow::datatypes::SchemaRef,
    column: &str,
    mask: &stratalake_table::access::Mask,
) -> Result<()> {
    let field = schema
        .field_with_name(column)
        .map_err(|_| Error::Sql(format!("no column {column:?} to mask")))?;
    if let stratalake_table::access::Mask::Expr { sql } = mask {
        let probe = probe_subject();
        let bound = bind_principal(sql, &probe)?;
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
        let expr = datafusion::prelude::SessionContext::new()
            .parse_sql_expr(&bound, &df_schema)
            .map_err(|e| Error::Sql(format!("mask expression does not plan against the table: {e}")))?;
        let t = expr.get_type(&df_schema)?;
        if !arrow::compute::can_cast_types(&t, field.data_type()) {
            return Err(Error::Sql(format!(
                "a mask of type {t} cannot stand for column {column:?} of type {}",
                field.data_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn binds_principal_and_attributes() {
        let s = Subject {
            principal: "ana".into(),
            roles: BTreeSet::new(),
            attributes: BTreeMap::from([("region".to_string(), "no'rth".to_string())]),
            grants: vec![],
            cleared: BTreeSet::new(),
            superuser: false,
            row_filters: BTreeMap::new(),
            masks: BTreeMap::new(),
        };
        assert_eq!(
            bind_principal(
                "region = current_principal_attribute('region') OR owner = current_principal()",
                &s
            )
            .unwrap(),
            "region = 'no''rth' OR owner = 'ana'"
        );
        assert_eq!(
            bind_principal("dept = current_principal_attribute('dept')", &s).unwrap(),
            "dept = NULL"
        );
        assert!(bind_principal("current_principal_attribute(region) = 1", &s).is_err());
    }
}
