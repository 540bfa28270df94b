//! DELETE, UPDATE and TRUNCATE as copy-on-write rewrites: every live file holding an affected
//! row is read, rewritten without (or with updated) rows under fresh data keys, and replaced in
//! one commit. Deleted values are gone from the table's live files at once; the old files stay
//! only until vacuum, for time travel.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch, not, prep_null_mask_filter};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::Result as DFResult;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use stratalake_table::action::AddFile;
use stratalake_table::read::{fetch_checked, read_file};
use stratalake_table::write::conform_batch;
use stratalake_table::{Access, Snapshot, Table};

use crate::error::external;

/// What a rewrite does to matching rows.
pub(crate) enum Change {
    /// Remove them.
    Delete,
    /// Set columns (by index) to expressions evaluated on the old row.
    Update(Vec<(usize, Arc<dyn PhysicalExpr>)>),
}

/// The sink that performs a rewrite when the plan executes (never at planning, so EXPLAIN is
/// harmless).
pub(crate) struct RewriteSink {
    pub table: Table,
    pub snapshot: Arc<Snapshot>,
    pub schema: SchemaRef,
    /// Files that may hold matching rows (after partition pruning).
    pub candidates: Vec<AddFile>,
    /// Rows to change; `None` = every row.
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
    pub change: Change,
    pub principal: String,
    pub operation: &'static str,
}

impl fmt::Debug for RewriteSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RewriteSink({} {})", self.operation, self.table.ident())
    }
}

impl DisplayAs for RewriteSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StratalakeRewrite: op={} table={} candidate_files={}",
            self.operation,
            self.table.ident(),
            self.candidates.len()
        )
    }
}

fn matches(predicate: &Option<Arc<dyn PhysicalExpr>>, b: &RecordBatch) -> DFResult<BooleanArray> {
    match predicate {
        None => Ok(BooleanArray::from(vec![true; b.num_rows()])),
        Some(p) => {
            let v = p.evaluate(b)?.into_array(b.num_rows())?;
            let m = v.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "the WHERE clause is not boolean but {}",
                    v.data_type()
                ))
            })?;
            // unknown (null) is not a match
            Ok(if m.null_count() == 0 {
                m.clone()
            } else {
                prep_null_mask_filter(m)
            })
        }
    }
}

impl RewriteSink {
    fn apply(&self, b: RecordBatch, mask: &BooleanArray) -> DFResult<RecordBatch> {
        match &self.change {
            Change::Delete => Ok(filter_record_batch(&b, &not(mask)?)?),
            Change::Update(assign) => {
                let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                for (idx, expr) in assign {
                    let field = self.schema.field(*idx);
                    let new = expr.evaluate(&b)?.into_array(b.num_rows())?;
                    let opts = CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    let new = cast_with_options(&new, field.data_type(), &opts).map_err(|e| {
                        datafusion::error::DataFusionError::Plan(format!(
                            "UPDATE: cannot store the new value of {:?} as {}: {e}",
                            field.name(),
                            field.data_type()
                        ))
                    })?;
                    cols[*idx] = zip(mask, &new, &b.column(*idx))?;
                }
                Ok(RecordBatch::try_new(b.schema(), cols)?)
            }
        }
    }
}

#[async_trait]
impl DataSink for RewriteSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, _data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> DFResult<u64> {
        let ctx = self.table.context();
        let root = self.table.ident().root();
        let table_schema = &self.snapshot.metadata.schema;
        // UPDATE checks the table's constraints on the rows it writes: every rule but freshness
        // (an old row stays old) and UNIQUE, whose key columns it may not assign.
        let mut validator = match &self.change {
            Change::Update(assign) if !self.snapshot.metadata.constraints.is_empty() => {
                use stratalake_table::quality::Constraint;
                for c in &self.snapshot.metadata.constraints {
                    if let Constraint::Unique { name, columns, .. } = c
                        && let Some((i, _)) = assign
                            .iter()
                            .find(|(i, _)| columns.contains(self.schema.field(*i).name()))
                    {
                        return Err(datafusion::error::DataFusionError::Plan(format!(
                            "UPDATE may not set {:?}: it is a key of the UNIQUE constraint {name:?} (delete and insert the row instead)",
                            self.schema.field(*i).name()
                        )));
                    }
                }
                let mut probe = (*self.snapshot).clone();
                probe
                    .metadata
                    .constraints
                    .retain(|c| !matches!(c, Constraint::Unique { .. } | Constraint::Freshness { .. }));
                crate::quality::validator(&self.table, &probe, stratalake_table::quality::OnError::Reject, false)
                    .await
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
            }
            _ => None,
        };
        let mut w = self.table.writer(&self.snapshot).map_err(external)?;
        let target = w.schema().clone();
        let mut removed = Vec::new();
        let mut count = 0u64;
        let result: DFResult<()> = async {
            for f in &self.candidates {
                let store = ctx.tiers.get(&f.tier).map_err(external)?;
                let display = store.path(&format!("{root}/{}", f.path)).to_string();
                let data = fetch_checked(store, &root, f).await.map_err(external)?;
                let batches = read_file(
                    data,
                    &display,
                    self.table.id(),
                    f,
                    table_schema,
                    &ctx.keyring,
                    &Access::All,
                    None,
                )
                .await
                .map_err(external)?;
                let mut out = Vec::with_capacity(batches.len());
                let mut hit = 0usize;
                for b in batches {
                    let mask = matches(&self.predicate, &b)?;
                    let n = mask.true_count();
                    if n == 0 {
                        out.push(b);
                    } else {
                        hit += n;
                        let changed = self.apply(b, &mask)?;
                        let changed = match validator.as_mut() {
                            Some(v) => v
                                .check(changed, self.operation, &|_| "an updated row".to_string())
                                .map_err(external)?,
                            None => changed,
                        };
                        out.push(changed);
                    }
                }
                if hit == 0 {
                    continue; // untouched files stay as they are
                }
                count += hit as u64;
                removed.push(f.clone());
                for b in out.into_iter().filter(|b| b.num_rows() > 0) {
                    let b = conform_batch(&b, table_schema, &target, self.operation, &|r| format!("row {}", r + 1))
                        .map_err(external)?;
                    w.write(b).await.map_err(external)?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            w.abort().await;
            return Err(e);
        }
        let added = w.finish().await.map_err(external)?;
        if removed.is_empty() {
            return Ok(0);
        }
        let params = BTreeMap::from([
            ("rows".to_string(), count.to_string()),
            ("files_rewritten".to_string(), removed.len().to_string()),
        ]);
        self.table
            .commit_rewrite(&self.snapshot, &removed, added, &self.principal, self.operation, params)
            .await
            .map_err(external)?;
        Ok(count)
    }
}
