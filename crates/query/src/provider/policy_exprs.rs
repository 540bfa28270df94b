//! A table's row filters and masks as DataFusion expressions, planned for one scan: the OR of
//! the row filters that apply to the subject, each mask as an expression over the raw column
//! (with the key of hash masks), bound to the subject and simplified like the query's own
//! conditions. Their text is an administrator's secret: a policy that does not plan is reported
//! to the session by table (and column), its reason only to the log.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchema, Result as DFResult};
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;
use stratalake_table::access::Mask;

use super::LakeTableProvider;
use crate::error::external;

impl LakeTableProvider {
    /// A mask as an expression over the table's raw columns, cast to the column's type; `None`
    /// for a constant NULL.
    pub(super) fn mask_expr(
        &self,
        state: &dyn Session,
        field: &arrow::datatypes::Field,
        mask: &Mask,
        hash_key: Option<&stratalake_crypto::Zeroizing<[u8; 32]>>,
    ) -> DFResult<Option<Expr>> {
        use arrow::datatypes::DataType;
        let col = format!("\"{}\"", field.name().replace('"', "\"\""));
        let text = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let temporal = matches!(
            field.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        );
        let sql = match mask {
            Mask::Null | Mask::Deny => return Ok(None),
            Mask::Bucket { width } if temporal && stratalake_table::access::BUCKET_UNITS.contains(&width.as_str()) => {
                format!("date_trunc('{width}', {col})")
            }
            Mask::Bucket { width } if field.data_type().is_numeric() && width.parse::<f64>().is_ok() => {
                format!("CASE WHEN {col} IS NULL THEN NULL ELSE floor({col} / {width}) * {width} END")
            }
            Mask::Bucket { .. } => return Ok(None),
            Mask::Redact | Mask::Partial { .. } | Mask::Hash if !text => return Ok(None),
            Mask::Hash => {
                let key = hash_key.ok_or_else(|| DataFusionError::Internal("hash mask without its key".into()))?;
                let udf = Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
                    crate::policy::KeyedHash::new(**key),
                ));
                let arg = datafusion::logical_expr::cast(
                    Expr::Column(Column::new_unqualified(field.name())),
                    arrow::datatypes::DataType::Utf8,
                );
                return Ok(Some(datafusion::logical_expr::cast(
                    udf.call(vec![arg]),
                    field.data_type().clone(),
                )));
            }
            Mask::Redact => format!("CASE WHEN {col} IS NULL THEN NULL ELSE '****' END"),
            Mask::Partial { keep_last } => format!(
                // a value no longer than what would be kept is hidden whole
                "CASE WHEN {col} IS NULL THEN NULL WHEN character_length({col}) <= {keep_last} THEN repeat('*', character_length({col})) ELSE concat(repeat('*', character_length({col}) - {keep_last}), right({col}, {keep_last})) END"
            ),
            Mask::Expr { sql } => {
                crate::policy::bind_principal(sql, &self.subject).map_err(|e| DataFusionError::Plan(e.to_string()))?
            }
        };
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let st = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("masks need a DataFusion SessionState".into()))?;
        // as for row filters: the mask's text is not for the session
        let broken = |e: DataFusionError| {
            tracing::warn!(table = %self.table.ident(), column = %field.name(), error = %e, "a mask does not plan");
            DataFusionError::Plan(format!(
                "the mask of {}.{} does not plan; an administrator must fix it (the reason is in the log)",
                self.table.ident(),
                field.name()
            ))
        };
        let e = st.create_logical_expr(&sql, &df_schema).map_err(broken)?;
        let e = datafusion::logical_expr::cast(e, field.data_type().clone());
        Ok(Some(simplify(state, e, df_schema).map_err(broken)?))
    }

    /// The key of hash masks: derived from the lake's least-sensitive master key, the same for
    /// every table (pseudonyms join across tables), never the master key itself.
    pub(super) async fn mask_hash_key(&self) -> DFResult<stratalake_crypto::Zeroizing<[u8; 32]>> {
        let keyring = &self.table.context().keyring;
        let level = keyring.classifications().lowest().to_string();
        let (_, master) = keyring
            .provider()
            .current(&level)
            .await
            .map_err(|e| external(e.into()))?;
        // Not HKDF: pseudonyms already stored depend on this derivation (see the function's docs).
        Ok(stratalake_crypto::legacy_keyed_sha256(
            b"stratalake-mask-hash/v1\n",
            master.expose(),
            b"",
        ))
    }

    /// The OR of the row-filter predicates, bound to the subject and planned against the table.
    pub(super) fn row_policy(&self, state: &dyn Session, preds: &[String]) -> DFResult<Expr> {
        let mut parts = Vec::with_capacity(preds.len());
        for p in preds {
            let bound =
                crate::policy::bind_principal(p, &self.subject).map_err(|e| DataFusionError::Plan(e.to_string()))?;
            parts.push(format!("({bound})"));
        }
        let sql = parts.join(" OR ");
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let st = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("row filters need a DataFusion SessionState".into()))?;
        // The predicate is an administrator's secret and DataFusion's errors quote it: the
        // session is told which table, the log gets the reason.
        let broken = |e: DataFusionError| {
            tracing::warn!(table = %self.table.ident(), error = %e, "a row filter does not plan");
            DataFusionError::Plan(format!(
                "a row filter on {} does not plan against its columns; an administrator must fix it (the reason is in the log)",
                self.table.ident()
            ))
        };
        let e = st.create_logical_expr(&sql, &df_schema).map_err(broken)?;
        simplify(state, e, df_schema).map_err(broken)
    }
}

/// Fold constants and move casts from columns onto literals, as DataFusion's optimizer does for
/// the query's own conditions (policy expressions are planned here, past that optimizer): a
/// comparison of `CAST(l_quantity AS DECIMAL(22,2))` with `CAST(0 AS DECIMAL(22,2))` becomes
/// one of `l_quantity` with `0.00`.
pub(super) fn simplify(state: &dyn Session, e: Expr, schema: DFSchema) -> DFResult<Expr> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let schema = Arc::new(schema);
    let ctx = SimplifyContext::builder()
        .with_schema(schema.clone())
        .with_config_options(Arc::new(state.config_options().clone()))
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .build();
    let simplifier = ExprSimplifier::new(ctx);
    // coerced first: the casts to unwrap are the ones coercion adds
    simplifier.simplify(simplifier.coerce(e, &schema)?)
}
