//! The DataFusion table provider over a Stratalake table snapshot.
//!
//! `scan` prunes files by partition values from the log, groups the remaining files by tier,
//! and builds one Parquet scan per tier whose decryption properties come, per file, from the
//! wrapped keys in the log (through an
//! [`EncryptionFactory`](datafusion::execution::parquet_encryption::EncryptionFactory) that owns
//! only this scan's keys). The AAD prefix is supplied from the log, so a file moved or swapped
//! fails to decrypt.
//!
//! This module holds [`LakeTableProvider`] itself (what one subject sees of the snapshot) and
//! its `TableProvider` impl, whose `scan` plans the read: the policies that apply, which columns
//! are read, and how the Parquet scans, the row filter and the masks fit together. Its parts live
//! in submodules, each adding an `impl LakeTableProvider` block:
//!
//! * `prune`: partition pruning of the snapshot's files by the log's partition values;
//! * `files`: a tier's files as `PartitionedFile`s with their keys and statistics, the residual
//!   proof of the row filter, and the Parquet scan over a group of files;
//! * `keys`: `ScanKeys`, the per-scan `EncryptionFactory` that hands each file its keys;
//! * `policy_exprs`: row filters and masks planned as DataFusion expressions;
//! * `write`: `INSERT` (the `LakeSink`) and the planning of `DELETE`, `UPDATE` and `TRUNCATE`.

mod files;
mod keys;
mod policy_exprs;
mod prune;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ScalarValue};
use datafusion::common::{DFSchema, Result as DFResult};
use datafusion::datasource::TableType;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column as PhysColumn, Literal};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::union::UnionExec;
use stratalake_table::access::{Mask, Subject};
use stratalake_table::action::AddFile;
use stratalake_table::{Access, Snapshot, Table};

use crate::error::external;
use crate::scan_policy::{self, Rows, ScanPolicy, ScanTable};
use files::{FileColumns, ScanParts, TierFiles};
use policy_exprs::simplify;
use stratalake_table::access::Operation;

/// URL under which a tier's object store is registered with DataFusion.
pub fn tier_url(tier: &str) -> ObjectStoreUrl {
    ObjectStoreUrl::parse(format!("stratalake-{}://lake/", tier.replace('_', "-"))).expect("valid tier URL")
}

/// A table at one snapshot, read with the keys `access` allows.
pub struct LakeTableProvider {
    table: Table,
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
    access: Access,
    subject: Subject,
    /// Columns the subject is not cleared for: returned as NULL, never decrypted.
    hidden: HashSet<String>,
    writable: bool,
    /// For an earlier version: each of its columns' current definition (by its old name).
    lineage: HashMap<String, stratalake_table::schema::ColumnDef>,
    /// Where scans note the policies they applied (for the statement's audit record).
    applied: Arc<std::sync::Mutex<Vec<String>>>,
}

impl fmt::Debug for LakeTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeTableProvider")
            .field("table", &self.table.ident().to_string())
            .field("version", &self.snapshot.version)
            .finish()
    }
}

impl LakeTableProvider {
    /// A provider over `snapshot` of `table` for `subject`, decrypting only what `access`
    /// allows. `writable` is false for time-travel snapshots.
    /// A provider over `snapshot`. For a snapshot of an earlier version (time travel), pass the
    /// table's current schema as `current`: today's classifications and masks govern reads of
    /// yesterday's data (each old column is followed to its current name through renames), so
    /// reclassifying or masking a column also covers its history.
    pub fn new(
        table: Table,
        snapshot: Snapshot,
        access: Access,
        subject: Subject,
        writable: bool,
        current: Option<&stratalake_table::TableSchema>,
    ) -> Self {
        let ident = table.ident();
        let table_admin = subject.may(&Operation::AdministerTable(ident));
        let lineage: HashMap<String, stratalake_table::schema::ColumnDef> = match current {
            None => HashMap::new(),
            Some(cur) => snapshot
                .metadata
                .schema
                .columns
                .iter()
                .filter_map(|c| {
                    cur.columns
                        .iter()
                        .find(|n| n.name == c.name || n.aliases.contains(&c.name))
                        .map(|n| (c.name.clone(), n.clone()))
                })
                .collect(),
        };
        let hidden: HashSet<String> = snapshot
            .metadata
            .schema
            .columns
            .iter()
            .filter(|c| {
                !access.allows(&c.classification)
                    || lineage.get(&c.name).is_some_and(|n| !access.allows(&n.classification))
                    // a column dropped since has no policies left to apply: only the table's
                    // administrators read its history
                    || (current.is_some() && !lineage.contains_key(&c.name) && !table_admin)
            })
            .map(|c| c.name.clone())
            .collect();
        // Hidden columns read as NULL, so they are nullable in what this subject sees.
        let full = snapshot.metadata.schema.arrow_schema();
        let schema = Arc::new(arrow::datatypes::Schema::new(
            full.fields()
                .iter()
                .map(|f| {
                    if hidden.contains(f.name()) {
                        Arc::new(f.as_ref().clone().with_nullable(true))
                    } else {
                        f.clone()
                    }
                })
                .collect::<Vec<_>>(),
        ));
        Self {
            table,
            snapshot: Arc::new(snapshot),
            schema,
            access,
            subject,
            hidden,
            writable,
            lineage,
            applied: Default::default(),
        }
    }

    /// Note the policies each scan applies in `applied` (the statement's audit record).
    pub fn recording_policies(mut self, applied: Arc<std::sync::Mutex<Vec<String>>>) -> Self {
        self.applied = applied;
        self
    }

    /// The snapshot read.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let ident = self.table.ident();
        self.subject.check(&Operation::ReadRows(ident)).map_err(external)?;
        // The columns this query touches: asked for, or in its conditions.
        let mut touched: Vec<String> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect())
            .iter()
            .map(|i| self.schema.field(*i).name().clone())
            .collect();
        touched.extend(
            filters
                .iter()
                .flat_map(|f| f.column_refs().into_iter().map(|c| c.name.clone())),
        );
        let table = ScanTable {
            ident,
            columns: &self.snapshot.metadata.schema.columns,
            lineage: &self.lineage,
            current: self.writable,
            classifications: self.table.context().keyring.classifications(),
        };
        // What applies goes to the statement's audit record (names and kinds, never
        // predicates), a refusal's too.
        let mut applied = Vec::new();
        let resolved = scan_policy::resolve(
            &self.subject,
            &self.access,
            &table,
            &self.hidden,
            &touched,
            &mut applied,
        );
        self.applied.lock().unwrap_or_else(|e| e.into_inner()).extend(applied);
        let ScanPolicy { masks, rows } = resolved.map_err(external)?;
        // Only filters over visible columns may steer which files are read.
        let visible_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                f.column_refs()
                    .iter()
                    .all(|c| !self.hidden.contains(&c.name) && !masks.contains_key(&c.name))
            })
            .cloned()
            .collect();
        // Row filters that apply to this subject: None = every row.
        let policy = match &rows {
            Rows::All => None,
            Rows::Nothing => {
                let s = match projection {
                    Some(p) => Arc::new(self.schema.project(p)?),
                    None => self.schema.clone(),
                };
                return Ok(Arc::new(EmptyExec::new(s)));
            }
            Rows::Matching(preds) => Some(self.row_policy(state, preds)?),
        };
        let files = self.prune(state, &visible_filters)?;
        if files.is_empty() {
            let s = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(s)));
        }
        let ctx = self.table.context();
        ctx.reads.record(self.table.id(), files.iter().copied());
        // Time travel: a file moved to another tier since is read where it is now (same path,
        // same bytes), since the old copy goes once the move retention has passed.
        let now_on: HashMap<String, String> = if self.writable {
            HashMap::new()
        } else {
            let latest = self.table.snapshot().await.map_err(external)?;
            latest.files.into_iter().map(|(p, f)| (p, f.tier)).collect()
        };
        let mut by_tier: BTreeMap<&str, Vec<&AddFile>> = BTreeMap::new();
        for f in files {
            let tier = now_on.get(&f.path).unwrap_or(&f.tier);
            by_tier.entry(tier.as_str()).or_default().push(f);
        }
        let mut withheld = false;
        let mut per_tier = Vec::new();
        let wanted: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        // Masks of the columns asked for, planned against the table (they compute from raw values).
        let hash_key = if masks.values().any(|m| *m == Mask::Hash) {
            Some(self.mask_hash_key().await?)
        } else {
            None
        };
        let mut mask_exprs: HashMap<usize, Option<Expr>> = HashMap::new();
        for i in &wanted {
            let field = self.schema.field(*i);
            if let Some(m) = masks.get(field.name()) {
                mask_exprs.insert(*i, self.mask_expr(state, field, m, hash_key.as_ref())?);
            }
        }
        let policy_cols: HashSet<String> = policy
            .iter()
            .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
            .collect();
        let mask_cols: HashSet<String> = mask_exprs
            .values()
            .flatten()
            .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
            .collect();
        let filter_cols: HashSet<String> = policy_cols.union(&mask_cols).cloned().collect();
        // Read what the subject may see, plus what the row filter needs (evaluated inside the
        // scan on raw values; those columns still leave the scan as NULL if hidden).
        let read: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| {
                let name = self.schema.field(*i).name();
                (wanted.contains(i) && !self.hidden.contains(name)) || filter_cols.contains(name)
            })
            .collect();
        // A session cleared for every column gets every key (nothing is withheld from it), which
        // keeps the Parquet page index usable; otherwise only the keys of what is read.
        let needed: HashSet<&str> = if self.hidden.is_empty() {
            self.schema.fields().iter().map(|f| f.name().as_str()).collect()
        } else {
            read.iter().map(|i| self.schema.field(*i).name().as_str()).collect()
        };
        // Files whose statistics prove the row filter true for every row (no NULLs in its
        // columns, and no row can satisfy its negation) are read without it, and without the
        // columns only it needs: Iceberg's residual evaluation. The others are filtered.
        let out: Vec<usize> = read
            .iter()
            .copied()
            .filter(|i| {
                let name = self.schema.field(*i).name();
                // kept unless only the row filter needs it
                !policy_cols.contains(name)
                    || mask_cols.contains(name)
                    || (wanted.contains(i) && !self.hidden.contains(name))
            })
            .collect();
        let residual = match &policy {
            Some(p) if state.config_options().execution.collect_statistics => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                simplify(state, !p.clone(), df_schema.clone())
                    .and_then(|n| state.create_physical_expr(n, &df_schema))
                    .ok()
                    // only comparisons of columns with literals and their combinations: the
                    // pruning rewrite of arithmetic (e.g. `-x` at the integer minimum) or casts
                    // need not agree with evaluating them row by row
                    .filter(crate::policy_exec::cannot_fail)
                    .and_then(|n| {
                        PruningPredicateBuilder::new()
                            .with_file_schema(self.schema.clone())
                            .build(n)
                    })
            }
            _ => None,
        };
        let policy_idx: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| policy_cols.contains(self.schema.field(*i).name()))
            .collect();
        // Column statistics for the planner (from the files' footers): only for columns the
        // session sees raw, and none under a row filter (they would describe rows it may not
        // see; min/max could even answer a query from them).
        let stat_cols: Vec<usize> = if policy.is_none() && state.config_options().execution.collect_statistics {
            read.iter()
                .copied()
                .filter(|i| {
                    let name = self.schema.field(*i).name();
                    wanted.contains(i) && !self.hidden.contains(name) && !masks.contains_key(name)
                })
                .collect()
        } else {
            Vec::new()
        };
        // Footer statistics each file is probed for: the planner's columns, or the row filter's
        // (for the residual proof).
        let probe_cols: &[usize] = if policy.is_none() {
            &stat_cols
        } else if residual.is_some() {
            &policy_idx
        } else {
            &[]
        };
        let reads = FileColumns {
            policy: policy.as_ref(),
            needed: &needed,
            filter_cols: &filter_cols,
            probe_cols,
            stat_cols: &stat_cols,
            policy_idx: &policy_idx,
            residual: residual.as_deref(),
        };
        for (tier, files) in by_tier {
            let t = self.tier_files(state, tier, files, &reads).await?;
            withheld |= t.withheld;
            per_tier.push(t);
        }
        // The query's own conditions on columns the session sees raw let Parquet skip row groups
        // and pages by their statistics (rows are still filtered above the scan).
        let pruning = match conjunction(
            visible_filters
                .iter()
                .cloned()
                .map(unqualify)
                .collect::<DFResult<Vec<_>>>()?,
        ) {
            Some(e) => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                state.create_physical_expr(e, &df_schema).ok()
            }
            None => None,
        };
        // Per tier: the files the row filter must check, and those proven to pass whole.
        let mut checked: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut passed: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        for TierFiles {
            url,
            keys,
            files: pfiles,
            proven,
            sizes,
            stats,
            ..
        } in per_tier
        {
            let keys = Arc::new(keys);
            let (mut to_check, mut to_pass) = (Vec::new(), Vec::new());
            let (mut check_bytes, mut pass_bytes) = (0usize, 0usize);
            for ((pf, ok), size) in pfiles.into_iter().zip(proven).zip(sizes) {
                if ok {
                    to_pass.push(pf);
                    pass_bytes += size as usize;
                } else {
                    to_check.push(pf);
                    check_bytes += size as usize;
                }
            }
            for (group, bytes, filtered) in [(to_check, check_bytes, true), (to_pass, pass_bytes, false)] {
                if group.is_empty() {
                    continue;
                }
                let mut st = stats.clone();
                if policy.is_some()
                    && let Some(st) = st.as_mut()
                {
                    st.total_byte_size = Precision::Inexact(bytes);
                }
                let filtered = filtered && policy.is_some();
                let scan = self.parquet_scan(ScanParts {
                    url: url.clone(),
                    keys: keys.clone(),
                    files: group,
                    stats: st,
                    page_index: !withheld,
                    pruning: pruning.clone(),
                    columns: if filtered { read.clone() } else { out.clone() },
                    // a row filter runs above the scan: a limit below it would drop visible rows
                    limit: if filtered { None } else { limit },
                })?;
                if filtered {
                    checked.push(scan);
                } else {
                    passed.push(scan);
                }
            }
        }
        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !checked.is_empty() {
            let mut plan = UnionExec::try_new(checked)?;
            if let Some(expr) = policy {
                let read_schema = DFSchema::try_from(self.schema.project(&read)?)?;
                // each conjunct guarded on its own, so the ones that cannot fail still prune
                let predicate = datafusion::physical_expr::conjunction(
                    datafusion::physical_expr::split_conjunction(&state.create_physical_expr(expr, &read_schema)?)
                        .into_iter()
                        .map(|p| crate::policy_exec::Guarded::wrap(p.clone())),
                );
                plan = Arc::new(crate::policy_exec::PolicyFilterExec::try_new(predicate, plan)?);
                if out != read {
                    // the columns only the filter needed go (passed-whole files never read them)
                    let keep = out
                        .iter()
                        .map(|i| {
                            let pos = read.iter().position(|r| r == i).expect("out is part of read");
                            let name = self.schema.field(*i).name();
                            ProjectionExpr::new(Arc::new(PhysColumn::new(name, pos)), name.clone())
                        })
                        .collect::<Vec<_>>();
                    plan = Arc::new(ProjectionExec::try_new(keep, plan)?);
                }
            }
            parts.push(plan);
        }
        parts.extend(passed);
        let union = UnionExec::try_new(parts)?;
        let read = out;
        if read == wanted
            && mask_exprs.is_empty()
            && wanted
                .iter()
                .all(|i| !self.hidden.contains(self.schema.field(*i).name()))
        {
            return Ok(union);
        }
        let read_schema = DFSchema::try_from(self.schema.project(&read)?)?;
        // Put NULLs where hidden columns were asked for; nothing of them was read.
        let mut exprs = Vec::with_capacity(wanted.len());
        for i in &wanted {
            let field = self.schema.field(*i);
            let expr: Arc<dyn PhysicalExpr> = match (mask_exprs.get(i), read.iter().position(|r| r == i)) {
                (Some(Some(m)), _) => {
                    crate::policy_exec::Guarded::wrap(state.create_physical_expr(m.clone(), &read_schema)?)
                }
                (Some(None), _) => Arc::new(Literal::new(ScalarValue::try_from(field.data_type())?)),
                (None, Some(pos)) if !self.hidden.contains(field.name()) => {
                    Arc::new(PhysColumn::new(field.name(), pos))
                }
                _ => Arc::new(Literal::new(ScalarValue::try_from(field.data_type())?)),
            };
            exprs.push(ProjectionExpr::new(expr, field.name().clone()));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, union)?))
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.rewrite(state, filters, None, "DELETE").await
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.rewrite(state, filters, Some(assignments), "UPDATE").await
    }

    async fn truncate(&self, state: &dyn Session) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.rewrite(state, vec![], None, "TRUNCATE").await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.insert(input, insert_op)
    }
}

/// Column references without a table qualifier, to plan against the table's own schema.
fn unqualify(e: Expr) -> DFResult<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform_up(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}
