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

/// The keyed-hash mask as a scalar function. The key lives only inside; `Debug` and the plan
/// show its name, never the key.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct KeyedHash {
    key: [u8; 32],
    signature: datafusion::logical_expr::Signature,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(<redacted>)")
    }
}

impl KeyedHash {
    /// A hash keyed by `key` (derive it; never pass a master key itself).
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            signature: datafusion::logical_expr::Signature::exact(
                vec![arrow::datatypes::DataType::Utf8],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }

    /// HMAC-SHA-256 of `msg`, first 16 bytes in hex.
    fn mac(&self, msg: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, b) in self.key.iter().enumerate() {
            ipad[i] ^= b;
            opad[i] ^= b;
        }
        let inner = Sha256::new().chain_update(ipad).chain_update(msg).finalize();
        let outer = Sha256::new().chain_update(opad).chain_update(inner).finalize();
        outer[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for KeyedHash {
    fn name(&self) -> &str {
        "stratalake_keyed_hash"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _args: &[arrow::datatypes::DataType],
    ) -> datafusion::common::Result<arrow::datatypes::DataType> {
        Ok(arrow::datatypes::DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use arrow::array::{Array, StringArray};
        let arr = args.args[0].clone().into_array(args.number_rows)?;
        let arr = arrow::compute::cast(&arr, &arrow::datatypes::DataType::Utf8)?;
        let s = arr.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        let out: StringArray = (0..s.len())
            .map(|i| s.is_valid(i).then(|| self.mac(s.value(i).as_bytes())))
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(std::sync::Arc::new(out)))
    }
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
        row_filter_names: Default::default(),
        masks: Default::default(),
        level_masks: Default::default(),
        shredded: Default::default(),
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
    let text = matches!(
        field.data_type(),
        arrow::datatypes::DataType::Utf8 | arrow::datatypes::DataType::LargeUtf8 | arrow::datatypes::DataType::Utf8View
    );
    if *mask == stratalake_table::access::Mask::Hash && !text {
        return Err(Error::Sql(format!(
            "a hash mask needs a text column; {column:?} is {}",
            field.data_type()
        )));
    }
    if let stratalake_table::access::Mask::Bucket { width } = mask {
        use arrow::datatypes::DataType;
        let temporal = matches!(
            field.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        );
        let unit = stratalake_table::access::BUCKET_UNITS.contains(&width.as_str());
        if !(temporal && unit || field.data_type().is_numeric() && !unit) {
            return Err(Error::Sql(format!(
                "BUCKET({width}) does not fit column {column:?} of type {}: numbers take a width, dates and timestamps a unit (day, week, month, quarter, year)",
                field.data_type()
            )));
        }
    }
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
            row_filter_names: BTreeMap::new(),
            masks: BTreeMap::new(),
            level_masks: BTreeMap::new(),
            shredded: Default::default(),
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
