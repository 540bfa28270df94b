//! A scan's files: for each tier, the snapshot's files as DataFusion [`PartitionedFile`]s, each
//! with the least keys it needs unwrapped (into the scan's [`ScanKeys`]), the log's row counts
//! and sizes and the footers' column statistics, and which files the row filter is proven to
//! keep whole; then one Parquet scan over a group of them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Result as DFResult, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::ExecutionPlan;
use stratalake_table::Access;
use stratalake_table::action::AddFile;

use super::keys::ScanKeys;
use super::prune::PartitionRanges;
use super::{LakeTableProvider, tier_url};
use crate::error::external;

/// What a scan reads of every file, whichever tier holds it.
pub(super) struct FileColumns<'a> {
    /// The row filter that applies to the subject (`None`: every row).
    pub(super) policy: Option<&'a Expr>,
    /// Columns whose keys the scan needs (by their current names).
    pub(super) needed: &'a HashSet<&'a str>,
    /// Columns the row filter and masks compute from (raw values).
    pub(super) filter_cols: &'a HashSet<String>,
    /// Columns (indices into the table's schema) each file's footer statistics are probed for.
    pub(super) probe_cols: &'a [usize],
    /// Columns whose statistics go to the planner.
    pub(super) stat_cols: &'a [usize],
    /// The row filter's columns, for the residual proof.
    pub(super) policy_idx: &'a [usize],
    /// The pruning predicate of the row filter's negation, for the residual proof.
    pub(super) residual: Option<&'a PruningPredicate>,
}

/// One tier's files of a scan.
pub(super) struct TierFiles {
    /// Where the tier's store is registered with DataFusion.
    pub(super) url: ObjectStoreUrl,
    /// The files' decryption properties.
    pub(super) keys: ScanKeys,
    /// The files.
    pub(super) files: Vec<PartitionedFile>,
    /// Per file: whether its statistics prove the row filter true for every row.
    pub(super) proven: Vec<bool>,
    /// Per file: its size in bytes, from the log.
    pub(super) sizes: Vec<u64>,
    /// Statistics of the files together, for the planner.
    pub(super) stats: Option<Statistics>,
    /// Whether any file had a column's key withheld (the page index is unusable then).
    pub(super) withheld: bool,
}

/// One Parquet scan over files of one tier.
pub(super) struct ScanParts {
    pub(super) url: ObjectStoreUrl,
    pub(super) keys: Arc<ScanKeys>,
    pub(super) files: Vec<PartitionedFile>,
    pub(super) stats: Option<Statistics>,
    pub(super) page_index: bool,
    pub(super) pruning: Option<Arc<dyn PhysicalExpr>>,
    pub(super) columns: Vec<usize>,
    pub(super) limit: Option<usize>,
}

impl LakeTableProvider {
    /// The files of one tier: the tier's store registered with DataFusion, and for each file
    /// its location, the keys of what the scan reads, and the statistics the scan uses.
    pub(super) async fn tier_files(
        &self,
        state: &dyn Session,
        tier: &str,
        files: Vec<&AddFile>,
        reads: &FileColumns<'_>,
    ) -> DFResult<TierFiles> {
        let FileColumns {
            policy,
            needed,
            filter_cols,
            probe_cols,
            stat_cols,
            policy_idx,
            residual,
        } = *reads;
        let ctx = self.table.context();
        let root = self.table.ident().root();
        let keyring = &ctx.keyring;
        let mut withheld = false;
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
            match self.prove(residual, policy_idx, &found, &stored_names, &files) {
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
        Ok(TierFiles {
            url,
            keys,
            files: pfiles,
            proven,
            sizes,
            stats,
            withheld,
        })
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

    pub(super) fn parquet_scan(&self, p: ScanParts) -> DFResult<Arc<dyn ExecutionPlan>> {
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
}
