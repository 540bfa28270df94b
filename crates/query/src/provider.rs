//! The DataFusion table provider over a Stratalake table snapshot.
//!
//! `scan` prunes files by partition values from the log, groups the remaining files by tier,
//! and builds one Parquet scan per tier whose decryption properties come, per file, from the
//! wrapped keys in the log (through an [`EncryptionFactory`] that owns only this scan's keys).
//! The AAD prefix is supplied from the log, so a file moved or swapped fails to decrypt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ScalarValue, Statistics};
use datafusion::common::{DFSchema, Result as DFResult};
use datafusion::config::{EncryptionFactoryOptions, TableParquetOptions};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::encryption::decrypt::FileDecryptionProperties;
use datafusion::parquet::encryption::encrypt::FileEncryptionProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column as PhysColumn, Literal};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use object_store::path::Path;
use stratalake_table::access::{Mask, Subject};
use stratalake_table::action::AddFile;
use stratalake_table::write::conform_batch;
use stratalake_table::{Access, Snapshot, Table, Transform, WriteMode};

use crate::error::external;
use crate::scan_policy::{self, Rows, ScanPolicy, ScanTable};
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

    /// Files whose partition values can satisfy the filters. Each file's partition values give
    /// a range for their source column (a single value for identity fields, the day, month or
    /// year for transforms) that DataFusion's pruning predicate evaluates the filters against.
    fn prune(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<&AddFile>> {
        let files: Vec<&AddFile> = self.snapshot.files.values().collect();
        let schema = &self.snapshot.metadata.schema;
        if schema.partition_by.is_empty() || files.is_empty() || filters.is_empty() {
            return Ok(files);
        }
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(files);
        };
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let Ok(phys) = state.create_physical_expr(predicate, &df_schema) else {
            return Ok(files); // not expressible for pruning: read everything, filter above
        };
        let Some(pruning) = PruningPredicateBuilder::new()
            .with_file_schema(self.schema.clone())
            .build(phys)
        else {
            return Ok(files); // nothing to prune with
        };
        let mut ranges: HashMap<String, (ArrayRef, ArrayRef, ArrayRef)> = HashMap::new();
        for p in &schema.partition_by {
            let col = schema.column(&p.column).expect("validated");
            if ranges.contains_key(&col.name) {
                continue; // the first field of a column bounds it
            }
            let mut lo: Vec<Option<String>> = Vec::with_capacity(files.len());
            let mut hi: Vec<Option<String>> = Vec::with_capacity(files.len());
            let mut nulls: Vec<u64> = Vec::with_capacity(files.len());
            for f in &files {
                let v = f.partition.get(&p.name()).cloned().flatten();
                nulls.push(if v.is_none() { f.rows } else { 0 });
                match v.as_deref().and_then(|v| period(p.transform, v, &col.data_type)) {
                    Some((a, b)) => {
                        lo.push(Some(a));
                        hi.push(Some(b));
                    }
                    None if p.transform == Transform::Identity => {
                        lo.push(v.clone());
                        hi.push(v);
                    }
                    None => {
                        lo.push(None);
                        hi.push(None);
                    }
                }
            }
            let as_type = |v: Vec<Option<String>>| -> DFResult<ArrayRef> {
                let strings: ArrayRef = Arc::new(StringArray::from(v));
                Ok(cast(&strings, &col.data_type)?)
            };
            ranges.insert(
                col.name.clone(),
                (as_type(lo)?, as_type(hi)?, Arc::new(UInt64Array::from(nulls))),
            );
        }
        let stats = PartitionRanges {
            ranges,
            rows: files.iter().map(|f| f.rows).collect(),
        };
        let keep = pruning.prune(&stats)?;
        Ok(files
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(f, _)| f)
            .collect())
    }
}

/// The first and last value (as text the column type parses) of a day, month or year.
fn period(t: Transform, v: &str, ty: &arrow::datatypes::DataType) -> Option<(String, String)> {
    let (start, end) = match t {
        Transform::Identity => return None,
        Transform::Day => {
            let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
            (d, d.succ_opt()?)
        }
        Transform::Month => {
            let d = NaiveDate::parse_from_str(&format!("{v}-01"), "%Y-%m-%d").ok()?;
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)?
            };
            (d, next)
        }
        Transform::Year => {
            let y: i32 = v.parse().ok()?;
            (NaiveDate::from_ymd_opt(y, 1, 1)?, NaiveDate::from_ymd_opt(y + 1, 1, 1)?)
        }
    };
    if matches!(
        ty,
        arrow::datatypes::DataType::Date32 | arrow::datatypes::DataType::Date64
    ) {
        return Some((
            start.format("%Y-%m-%d").to_string(),
            end.pred_opt()?.format("%Y-%m-%d").to_string(),
        ));
    }
    // Timestamps: partition periods are UTC.
    let last = end.and_hms_opt(0, 0, 0)? - chrono::Duration::nanoseconds(1);
    Some((
        format!("{}T00:00:00Z", start.format("%Y-%m-%d")),
        format!("{}Z", last.format("%Y-%m-%dT%H:%M:%S%.9f")),
    ))
}

/// Per-file ranges of partition source columns, for DataFusion's pruning predicate.
struct PartitionRanges {
    ranges: HashMap<String, (ArrayRef, ArrayRef, ArrayRef)>,
    rows: Vec<u64>,
}

impl PruningStatistics for PartitionRanges {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.ranges.get(&column.name).map(|r| r.0.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.ranges.get(&column.name).map(|r| r.1.clone())
    }

    fn num_containers(&self) -> usize {
        self.rows.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.ranges.get(&column.name).map(|r| r.2.clone())
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from(self.rows.clone())))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// One Parquet scan over files of one tier.
struct ScanParts {
    url: ObjectStoreUrl,
    keys: Arc<ScanKeys>,
    files: Vec<PartitionedFile>,
    stats: Option<Statistics>,
    page_index: bool,
    pruning: Option<Arc<dyn PhysicalExpr>>,
    columns: Vec<usize>,
    limit: Option<usize>,
}

impl LakeTableProvider {
    fn parquet_scan(&self, p: ScanParts) -> DFResult<Arc<dyn ExecutionPlan>> {
        let mut opts = TableParquetOptions::default();
        opts.global.enable_page_index = p.page_index;
        opts.global.pushdown_filters = false;
        let mut source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(opts)
            .with_encryption_factory(p.keys);
        if let Some(e) = p.pruning {
            source = source.with_predicate(e);
        }
        // One group: DataFusion's file-scan repartitioning then splits it into even byte
        // ranges over the target partitions (uneven files made uneven partitions otherwise).
        // Largest file first: the order decides how DataFusion's even byte split falls on the
        // files, and file names (UUIDs) made it random. Measured with TPC-H SF 1 on 2 cores:
        // smallest-first made every lineitem scan about 30% slower (docs/benchmarks.md).
        let mut files = p.files;
        files.sort_by(|a, b| {
            b.object_meta
                .size
                .cmp(&a.object_meta.size)
                .then_with(|| a.object_meta.location.cmp(&b.object_meta.location))
        });
        let mut builder = FileScanConfigBuilder::new(p.url, Arc::new(source));
        if let Some(e) = crate::evolution::Evolved::of(&self.snapshot.metadata.schema)? {
            builder = builder.with_expr_adapter(Some(Arc::new(e)));
        }
        if let Some(st) = p.stats {
            builder = builder.with_statistics(st);
        }
        let conf = builder
            .with_file_groups(vec![FileGroup::new(files)])
            .with_projection_indices(Some(p.columns))?
            .with_limit(p.limit)
            .build();
        Ok(DataSourceExec::from_data_source(conf))
    }

    /// Which files the row filter is proven to keep whole: no NULL in any of its columns, and
    /// `residual` (the pruning predicate of the filter's negation) rules out every row.
    fn prove(
        &self,
        residual: &datafusion::physical_optimizer::pruning::PruningPredicate,
        policy_idx: &[usize],
        found: &[Option<Arc<crate::stats::FileStats>>],
        stored_names: &[Vec<Option<String>>],
        files: &[&AddFile],
    ) -> DFResult<Vec<bool>> {
        let mut ranges = HashMap::new();
        let mut no_nulls = vec![true; files.len()];
        for (k, i) in policy_idx.iter().enumerate() {
            let field = self.schema.field(*i);
            let ty = field.data_type();
            let (mut lo, mut hi, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
            for (j, st) in found.iter().enumerate() {
                let (min, max, n) = match (st, stored_names[j][k].as_deref()) {
                    (Some(st), Some(name)) => st.bounds(name, ty),
                    _ => (None, None, None),
                };
                no_nulls[j] &= n == Some(0);
                let null = ScalarValue::try_from(ty)?;
                lo.push(min.unwrap_or_else(|| null.clone()));
                hi.push(max.unwrap_or(null));
                nulls.push(n.map(|n| n as u64));
            }
            ranges.insert(
                field.name().clone(),
                (
                    ScalarValue::iter_to_array(lo)?,
                    ScalarValue::iter_to_array(hi)?,
                    Arc::new(UInt64Array::from(nulls)) as ArrayRef,
                ),
            );
        }
        let bounds = PartitionRanges {
            ranges,
            rows: files.iter().map(|f| f.rows).collect(),
        };
        // pruned = no row can fail the filter
        let keep = residual.prune(&bounds)?;
        Ok(keep.iter().zip(no_nulls).map(|(k, n)| !k && n).collect())
    }

    /// A mask as an expression over the table's raw columns, cast to the column's type; `None`
    /// for a constant NULL.
    fn mask_expr(
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
    async fn mask_hash_key(&self) -> DFResult<stratalake_crypto::Zeroizing<[u8; 32]>> {
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
    fn row_policy(&self, state: &dyn Session, preds: &[String]) -> DFResult<Expr> {
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

    /// Plan a copy-on-write DELETE (no assignments), UPDATE or TRUNCATE; the work happens when
    /// the plan runs.
    async fn rewrite(
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

/// Column references without a table qualifier, to plan against the table's own schema.
/// Fold constants and move casts from columns onto literals, as DataFusion's optimizer does for
/// the query's own conditions (policy expressions are planned here, past that optimizer): a
/// comparison of `CAST(l_quantity AS DECIMAL(22,2))` with `CAST(0 AS DECIMAL(22,2))` becomes
/// one of `l_quantity` with `0.00`.
fn simplify(state: &dyn Session, e: Expr, schema: DFSchema) -> DFResult<Expr> {
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

fn unqualify(e: Expr) -> DFResult<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform_up(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Decryption properties for the files of one scan, keyed by object path.
#[derive(Default)]
struct ScanKeys {
    files: HashMap<String, Arc<FileDecryptionProperties>>,
}

impl fmt::Debug for ScanKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScanKeys({} files, <redacted>)", self.files.len())
    }
}

#[async_trait]
impl EncryptionFactory for ScanKeys {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &SchemaRef,
        file_path: &Path,
    ) -> DFResult<Option<Arc<FileEncryptionProperties>>> {
        Err(datafusion::error::DataFusionError::Plan(format!(
            "scan keys cannot write {file_path}"
        )))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &Path,
    ) -> DFResult<Option<Arc<FileDecryptionProperties>>> {
        match self.files.get(file_path.as_ref()) {
            Some(p) => Ok(Some(p.clone())),
            None => Err(datafusion::error::DataFusionError::Execution(format!(
                "no keys for {file_path}: it is not a live file of the scanned snapshot"
            ))),
        }
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
        let root = self.table.ident().root();
        let keyring = &ctx.keyring;
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
        for (tier, files) in by_tier {
            let store = ctx.tiers.get(tier).map_err(external)?;
            let url = tier_url(tier);
            state
                .runtime_env()
                .register_object_store(url.as_ref(), store.read_store().clone());
            let mut keys = ScanKeys::default();
            let mut pfiles = Vec::with_capacity(files.len());
            // Row counts and sizes from the log let the planner order joins. Under a row filter
            // the row count is withheld (it would count rows the session may not see); the bytes
            // stored are kept, an upper bound of what the scan reads, so joins still put the
            // smaller side first.
            let mut wanted_stats = Vec::new();
            let mut stored_names: Vec<Vec<Option<String>>> = Vec::new();
            let stats = {
                let mut st = Statistics::new_unknown(&self.schema);
                if policy.is_none() {
                    st.num_rows = Precision::Exact(files.iter().map(|f| f.rows as usize).sum());
                }
                st.total_byte_size = Precision::Inexact(files.iter().map(|f| f.size as usize).sum());
                Some(st)
            };
            let table_schema = &self.snapshot.metadata.schema;
            for f in files.iter().copied() {
                let loc = store.path(&format!("{root}/{}", f.path));
                // A read cache between the scan and the store keeps only copies matching these.
                if store.has_read_store() {
                    store.expected().expect(&loc, f.size, f.crc32);
                }
                // The file holds columns under the names they had when it was written.
                let physical = f.physical_columns();
                let phys = |names: &mut dyn Iterator<Item = &str>| -> HashSet<String> {
                    names
                        .filter_map(|n| table_schema.column(n))
                        .filter_map(|c| stratalake_table::TableSchema::physical_name(c, &physical))
                        .map(String::from)
                        .collect()
                };
                let needed_f = phys(&mut needed.iter().copied());
                let filter_f = phys(&mut filter_cols.iter().map(String::as_str));
                // Least key: only the classifications of columns this scan reads (and the
                // reader may decrypt) are unwrapped; `count(*)` needs just the footer key.
                let levels = f
                    .keys
                    .groups
                    .iter()
                    .filter(|g| self.access.allows(&g.classification) || g.columns.iter().any(|c| filter_f.contains(c)))
                    .filter(|g| g.columns.iter().any(|c| needed_f.contains(c)))
                    .map(|g| g.classification.clone())
                    .collect();
                let file_schema = table_schema.file_arrow_schema(&physical);
                let needed_refs: HashSet<&str> = needed_f.iter().map(String::as_str).collect();
                let (props, hidden) = keyring
                    .open_file_for(
                        self.table.id(),
                        f,
                        &file_schema,
                        &Access::Levels(levels),
                        Some(&needed_refs),
                    )
                    .await
                    .map_err(external)?;
                // any column without its key (not cleared, or not read) needs the page index off
                withheld |= !hidden.is_empty() || needed.len() < self.schema.fields().len();
                if !probe_cols.is_empty() {
                    let stored: Vec<Option<String>> = probe_cols
                        .iter()
                        .map(|i| {
                            table_schema
                                .column(self.schema.field(*i).name())
                                .and_then(|c| stratalake_table::TableSchema::physical_name(c, &physical))
                                .filter(|n| needed_f.contains(*n))
                                .map(String::from)
                        })
                        .collect();
                    wanted_stats.push(crate::stats::Wanted {
                        key: format!("{}/{}", self.table.id(), f.path),
                        location: loc.clone(),
                        size: f.size,
                        props: props.clone(),
                        columns: stored.iter().flatten().cloned().collect(),
                    });
                    stored_names.push(stored);
                }
                keys.files.insert(loc.to_string(), props);
                pfiles.push(PartitionedFile::new(loc.to_string(), f.size));
            }
            let mut proven = vec![false; pfiles.len()];
            if let (Some(residual), false) = (&residual, stored_names.is_empty()) {
                let found = crate::stats::gather(store.read_store(), std::mem::take(&mut wanted_stats)).await;
                // only a speed-up: if anything goes wrong, every file is filtered
                match self.prove(residual, &policy_idx, &found, &stored_names, &files) {
                    Ok(p) => proven = p,
                    Err(e) => tracing::debug!(error = %e, "row filter not proven by statistics"),
                }
            }
            let stats = if stat_cols.is_empty() || policy.is_some() {
                stats
            } else {
                let files = crate::stats::gather(store.read_store(), wanted_stats).await;
                let columns = stat_cols
                    .iter()
                    .enumerate()
                    .map(|(k, i)| {
                        let stored: Vec<Option<&str>> = stored_names.iter().map(|s| s[k].as_deref()).collect();
                        (
                            *i,
                            crate::stats::merge_column(&files, &stored, self.schema.field(*i).data_type()),
                        )
                    })
                    .collect();
                stats.map(|st| crate::stats::with_columns(st, columns))
            };
            let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
            per_tier.push((url, keys, pfiles, proven, sizes, stats));
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
        for (url, keys, pfiles, proven, sizes, stats) in per_tier {
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
