//! The write path of SQL: `INSERT` as a [`DataSink`] that writes the rows as encrypted files and
//! commits them (after the table's constraints are checked), and the planning of `DELETE`,
//! `UPDATE` and `TRUNCATE` as copy-on-write rewrites run by [`crate::dml::RewriteSink`]. Both do
//! their work when the plan executes (so `EXPLAIN` changes nothing); time-travel providers refuse
//! them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result as DFResult};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use stratalake_table::access::Operation;
use stratalake_table::action::AddFile;
use stratalake_table::write::conform_batch;
use stratalake_table::{Snapshot, Table, WriteMode};

use super::{LakeTableProvider, unqualify};
use crate::error::external;

impl LakeTableProvider {
    /// Plan an `INSERT` of `input`'s rows (appended, or replacing the table's rows for an
    /// overwrite); they are written and committed when the plan runs.
    pub(super) fn insert(
        &self,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if !self.writable {
            return Err(datafusion::error::DataFusionError::Plan(format!(
                "cannot write to {} as of an earlier version",
                self.table.ident()
            )));
        }
        let ident = self.table.ident();
        self.subject.check(&Operation::WriteRows(ident)).map_err(external)?;
        let mode = match insert_op {
            InsertOp::Append => WriteMode::Append,
            InsertOp::Overwrite => WriteMode::Overwrite,
            InsertOp::Replace => {
                return Err(datafusion::error::DataFusionError::NotImplemented(
                    "REPLACE INTO is not supported".into(),
                ));
            }
        };
        stratalake_table::quality::check_write_rights(&self.subject, ident, &self.snapshot, mode).map_err(external)?;
        let sink = LakeSink {
            table: self.table.clone(),
            snapshot: self.snapshot.clone(),
            schema: self.schema.clone(),
            mode,
            principal: self.subject.principal.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    /// Plan a copy-on-write DELETE (no assignments), UPDATE or TRUNCATE; the work happens when
    /// the plan runs.
    pub(super) async fn rewrite(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
        assignments: Option<Vec<(String, Expr)>>,
        operation: &'static str,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if !self.writable {
            return Err(datafusion::error::DataFusionError::Plan(format!(
                "cannot change {} as of an earlier version: time travel is read-only",
                self.table.ident()
            )));
        }
        let ident = self.table.ident();
        self.subject.check(&Operation::WriteRows(ident)).map_err(external)?;
        if self.subject.row_filters.contains_key(&ident.to_string())
            || self.subject.masks.contains_key(&ident.to_string())
        {
            return Err(external(stratalake_table::Error::PermissionDenied {
                principal: self.subject.principal.clone(),
                reason: format!("has row filters or masks on {ident}, so it may not {operation} it"),
            }));
        }
        if !self.hidden.is_empty() {
            // A rewrite reads every column of the rows it touches, and its row count answers
            // questions about them: only subjects cleared for the whole table may run one.
            return Err(external(stratalake_table::Error::PermissionDenied {
                principal: self.subject.principal.clone(),
                reason: format!("is not cleared for every column of {ident}, which {operation} needs"),
            }));
        }
        let filters: Vec<Expr> = filters.into_iter().map(unqualify).collect::<DFResult<_>>()?;
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(e) => Some(state.create_physical_expr(e, &df_schema)?),
            None => None,
        };
        let change = match assignments {
            None => crate::dml::Change::Delete,
            Some(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (col, expr) in a {
                    let idx = self.schema.index_of(&col)?;
                    // identity assignments (SET c = c) are what DataFusion passes for untouched columns
                    if matches!(&expr, Expr::Column(c) if c.name == col) {
                        continue;
                    }
                    out.push((idx, state.create_physical_expr(unqualify(expr)?, &df_schema)?));
                }
                crate::dml::Change::Update(out)
            }
        };
        let candidates: Vec<AddFile> = self.prune(state, &filters)?.into_iter().cloned().collect();
        let sink = crate::dml::RewriteSink {
            table: self.table.clone(),
            snapshot: self.snapshot.clone(),
            schema: self.schema.clone(),
            candidates,
            predicate,
            change,
            principal: self.subject.principal.clone(),
            operation,
        };
        let input = Arc::new(EmptyExec::new(self.schema.clone()));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes an INSERT's rows as encrypted files and commits them.
struct LakeSink {
    table: Table,
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
    mode: WriteMode,
    principal: String,
}

impl fmt::Debug for LakeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeSink({})", self.table.ident())
    }
}

impl DisplayAs for LakeSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StratalakeSink: table={} mode={}",
            self.table.ident(),
            self.mode.operation()
        )
    }
}

#[async_trait]
impl DataSink for LakeSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> DFResult<u64> {
        // Constraints: every row is checked; a violation rejects the INSERT whole.
        let against_existing = self.mode != WriteMode::Overwrite;
        let mut validator = crate::quality::validator(
            &self.table,
            &self.snapshot,
            stratalake_table::quality::OnError::Reject,
            against_existing,
        )
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut w = self.table.writer(&self.snapshot).map_err(external)?;
        let target = w.schema().clone();
        let schema = &self.snapshot.metadata.schema;
        let mut offered = 0u64;
        let mut rows = 0u64;
        while let Some(b) = data.next().await {
            let r = async {
                let b = b?;
                let base = offered;
                let b = conform_batch(&b, schema, &target, "INSERT", &|r| format!("row {}", base + r + 1))
                    .map_err(external)?;
                offered += b.num_rows() as u64;
                let b = match validator.as_mut() {
                    Some(v) => v
                        .check(b, "INSERT", &|r| format!("row {}", base + r as u64 + 1))
                        .map_err(external)?,
                    None => b,
                };
                rows += b.num_rows() as u64;
                w.write(b).await.map_err(external)
            }
            .await;
            if let Err(e) = r {
                w.abort().await;
                return Err(e);
            }
        }
        let mut params = BTreeMap::new();
        params.insert("source".into(), "SQL INSERT".into());
        let out = stratalake_table::quality::finish_write(
            &self.table,
            &self.snapshot,
            w,
            validator,
            &self.principal,
            self.mode,
            params,
        )
        .await
        .map_err(external)?;
        Ok(out.metrics.map_or(rows, |m| m.rows_written))
    }
}
