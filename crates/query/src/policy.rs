//! Row-filter predicates: the session's principal substituted in, then planned by DataFusion.

use datafusion::logical_expr::ExprSchemable;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use stratalake_crypto::zeroize::Zeroize as _;
use stratalake_crypto::{DerivedKey, hex, hmac_sha256};
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
/// show its name, never the key. Equality compares keys in constant time; the hash (which
/// DataFusion feeds to ordinary hashers) leaves the key out.
#[derive(PartialEq, Eq)]
pub(crate) struct KeyedHash {
    key: DerivedKey,
    signature: datafusion::logical_expr::Signature,
}

impl std::hash::Hash for KeyedHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(<redacted>)")
    }
}

impl KeyedHash {
    /// A hash keyed by `key` (derive it; never pass a master key itself). The key is held as a
    /// [`DerivedKey`] (zeroed on drop) and this function's copy of the array is zeroed; arrays are
    /// `Copy`, so the caller's own copy is the caller's to zero.
    pub(crate) fn new(mut key: [u8; 32]) -> Self {
        let k = DerivedKey::from_bytes(&key).expect("32 bytes make a key");
        key.zeroize();
        Self {
            key: k,
            signature: datafusion::logical_expr::Signature::exact(
                vec![arrow::datatypes::DataType::Utf8],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }

    /// HMAC-SHA-256 of `msg`, first 16 bytes in hex.
    fn mac(&self, msg: &[u8]) -> String {
        hex::encode(&hmac_sha256(self.key.expose(), msg)[..16])
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

    /// Hash masks are pseudonyms users store and join on: the output is pinned byte for byte.
    /// These values were produced by the hand-written HMAC this crate had before it used
    /// `stratalake_crypto::hmac_sha256` (and agree with Python's `hmac`), so they must never
    /// change.
    #[test]
    fn keyed_hash_output_is_pinned() {
        let counting: [u8; 32] = std::array::from_fn(|i| i as u8);
        let falling: [u8; 32] = std::array::from_fn(|i| 0xff - i as u8);
        let cases: [([u8; 32], &str, &str); 3] = [
            (counting, "alice@example.com", "a59fc578d4cb46faab1d6eb348e7c74b"),
            (falling, "", "929c9d7d5515d3356812dca1e7177dc9"),
            (
                [0xa5; 32],
                "Zo\u{eb} \u{6771}\u{4eac}",
                "b0544ed10df6c1b31c3c8012fe1276df",
            ),
        ];
        for (key, msg, expected) in cases {
            assert_eq!(KeyedHash::new(key).mac(msg.as_bytes()), expected, "{msg:?}");
        }
    }

    /// From master key to pseudonym, as `LakeTableProvider::mask_hash_key` derives the key
    /// (`SHA-256("stratalake-mask-hash/v1\n" ‖ master)`). Expected values computed by the code of
    /// the previous release (its `mask_hash_key` and hand-written HMAC, run verbatim), and
    /// checked with Python's `hashlib`/`hmac`.
    #[test]
    fn pseudonyms_from_a_master_key_are_pinned() {
        let master = stratalake_crypto::MasterKey::from_bytes(&std::array::from_fn::<u8, 32, _>(|i| i as u8)).unwrap();
        let key = stratalake_crypto::legacy_keyed_sha256(b"stratalake-mask-hash/v1\n", master.expose(), b"");
        assert_eq!(
            hex::encode(*key),
            "1d1fedde6b8e19d82d9cf597bb89a099ec5ae49ca5e7607a594bfeb0f2779118"
        );
        let mask = KeyedHash::new(*key);
        for (msg, expected) in [
            ("alice@example.com", "a89ef66b53665fe5181f563d613d9df9"),
            ("", "26ae57f5ff180081d8860d13453e91bf"),
            ("Zo\u{eb} \u{6771}\u{4eac}", "727e4b4df51be0cf2cc9389d0e21fa3b"),
        ] {
            assert_eq!(mask.mac(msg.as_bytes()), expected, "{msg:?}");
        }
        assert_eq!(format!("{mask:?}"), "KeyedHash(<redacted>)");
        assert!(mask == KeyedHash::new(*key), "equal keys, equal functions");
        assert!(mask != KeyedHash::new([0u8; 32]));
    }
}
