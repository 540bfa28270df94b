//! Column statistics for the planner, read from the data files' own (decrypted) footers.
//!
//! The log holds no column statistics (they would reveal values to anyone who can read it), so
//! the planner would otherwise guess the selectivity of every condition and build hash joins on
//! the wrong side. A scan reads the footer of each file it has not seen before (with the keys
//! the scan holds anyway) and keeps the per-column minimum, maximum and null count in a bounded
//! in-process cache keyed by table id and file path (files are immutable). What reaches the
//! planner is decided per scan (see `provider.rs`): only columns the session sees raw, and
//! nothing at all for a table under a row filter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::datatypes::DataType;
use datafusion::common::stats::{ColumnStatistics, Precision};
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::encryption::decrypt::FileDecryptionProperties;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

/// Files whose statistics the cache keeps; past this it starts again empty.
const CACHE_FILES: usize = 200_000;
/// Footers one scan reads for statistics, per tier; a scan over more unseen files plans without them
/// (reading 100 000 footers would cost more than a poor join order).
pub(crate) const MAX_FOOTERS_PER_SCAN: usize = 2_048;
/// Footers read at once.
const CONCURRENCY: usize = 8;

/// Statistics of one file's columns, by the names the file stores them under.
#[derive(Default)]
pub(crate) struct FileStats {
    /// Columns whose statistics were decoded (the reader held their keys).
    decoded: HashSet<String>,
    columns: HashMap<String, ColumnStatistics>,
}

impl FileStats {
    /// A column's (stored name) minimum, maximum (in the table's type `ty`, `None` when
    /// unknown) and exact null count.
    pub(crate) fn bounds(
        &self,
        stored: &str,
        ty: &DataType,
    ) -> (Option<ScalarValue>, Option<ScalarValue>, Option<usize>) {
        let Some(s) = self.columns.get(stored) else {
            return (None, None, None);
        };
        let exact = |p: Precision<ScalarValue>| match p {
            Precision::Exact(v) if !v.is_null() => Some(v),
            _ => None,
        };
        let nulls = match s.null_count {
            Precision::Exact(n) => Some(n),
            _ => None,
        };
        (exact(cast(&s.min_value, ty)), exact(cast(&s.max_value, ty)), nulls)
    }
}

fn cache() -> &'static Mutex<HashMap<String, Arc<FileStats>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<FileStats>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Drop every cached statistic (after a classification was shredded, its values must not stay
/// in memory, even where no session can be given them).
pub fn forget_all() {
    cache().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// One file a scan wants statistics of.
pub(crate) struct Wanted {
    pub key: String,
    pub location: Path,
    pub size: u64,
    pub props: Arc<FileDecryptionProperties>,
    /// Stored names of the columns the planner needs and the scan holds the keys of.
    pub columns: HashSet<String>,
}

/// Statistics of `files` (same order), from the cache or read from their footers; `None` for
/// a file that could not be read (the scan itself reports real damage) or when too many
/// footers would have to be read.
pub(crate) async fn gather(store: &Arc<dyn ObjectStore>, files: Vec<Wanted>) -> Vec<Option<Arc<FileStats>>> {
    let mut out: Vec<Option<Arc<FileStats>>> = Vec::with_capacity(files.len());
    let mut missing = Vec::new();
    {
        let c = cache().lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in files.iter().enumerate() {
            match c.get(&w.key) {
                Some(s) if w.columns.is_subset(&s.decoded) => out.push(Some(s.clone())),
                _ => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
    }
    if missing.is_empty() || missing.len() > MAX_FOOTERS_PER_SCAN {
        return out;
    }
    let fetched: Vec<(usize, Option<FileStats>)> = futures::stream::iter(missing.into_iter().map(|i| {
        let w = &files[i];
        async move { (i, read_footer(store, w).await) }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if c.len() + fetched.len() > CACHE_FILES {
        c.clear();
    }
    for (i, stats) in fetched {
        let Some(mut stats) = stats else { continue };
        // keep what an earlier reader with other keys decoded
        if let Some(old) = c.get(&files[i].key) {
            for (name, s) in &old.columns {
                if !stats.decoded.contains(name) {
                    stats.columns.insert(name.clone(), s.clone());
                }
            }
            stats.decoded.extend(old.decoded.iter().cloned());
        }
        let stats = Arc::new(stats);
        c.insert(files[i].key.clone(), stats.clone());
        out[i] = Some(stats);
    }
    out
}

async fn read_footer(store: &Arc<dyn ObjectStore>, w: &Wanted) -> Option<FileStats> {
    let meta = ObjectMeta {
        location: w.location.clone(),
        last_modified: chrono::Utc::now(),
        size: w.size,
        e_tag: None,
        version: None,
    };
    let metadata = DFParquetMetadata::new(store.as_ref(), &meta)
        .with_decryption_properties(Some(w.props.clone()))
        .fetch_metadata()
        .await
        .map_err(|e| tracing::debug!(file = %w.location, error = %e, "no statistics from the footer"))
        .ok()?;
    // Summarised in the types the file stores (a widened column's old files hold the narrower
    // type; merge_column casts the bounds).
    let fm = metadata.file_metadata();
    let stored = parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata()).ok()?;
    let stored = Arc::new(arrow::datatypes::Schema::new(
        stored
            .fields()
            .iter()
            .filter(|f| w.columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let st = DFParquetMetadata::statistics_from_parquet_metadata(&metadata, &stored).ok()?;
    let rows = fm.num_rows().max(0) as usize;
    // DataFusion counts a row group without a null count as having no NULL: a null count is
    // only trusted when every row group of the (top-level, primitive) column recorded one.
    let counted = |name: &str| {
        let leaves: Vec<usize> = fm
            .schema_descr()
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.path().parts().first().map(String::as_str) == Some(name))
            .map(|(i, _)| i)
            .collect();
        leaves.len() == 1
            && fm.schema_descr().column(leaves[0]).path().parts().len() == 1
            && metadata.row_groups().iter().all(|rg| {
                rg.column(leaves[0])
                    .statistics()
                    .is_some_and(|s| s.null_count_opt().is_some())
            })
    };
    let columns = stored
        .fields()
        .iter()
        .zip(st.column_statistics)
        .map(|(f, mut s)| {
            if !counted(f.name()) {
                s.null_count = Precision::Absent;
            }
            (f.name().clone(), usable(s, rows, f.data_type()))
        })
        .collect();
    Some(FileStats {
        decoded: w.columns.clone(),
        columns,
    })
}

/// What of a file's column statistics the planner may rely on. A NULL bound means "every value
/// is NULL" only when the null count says so (otherwise the statistics were missing or could
/// not be read); float bounds leave out NaN, which `max` ranks highest, so they are inexact.
fn usable(s: ColumnStatistics, rows: usize, ty: &DataType) -> ColumnStatistics {
    let all_null = s.null_count == Precision::Exact(rows);
    let bound = |b: Precision<ScalarValue>| match b.get_value() {
        Some(v) if v.is_null() && !all_null => Precision::Absent,
        _ if ty.is_floating() => b.to_inexact(),
        _ => b,
    };
    ColumnStatistics {
        null_count: s.null_count,
        min_value: bound(s.min_value),
        max_value: bound(s.max_value),
        ..ColumnStatistics::new_unknown()
    }
}

/// A column's statistics over several files: `stored[i]` is the name file `i` stores it under
/// (`None`: the file predates the column), `ty` the table's type for it. Absent unless every
/// file has them.
pub(crate) fn merge_column(
    files: &[Option<Arc<FileStats>>],
    stored: &[Option<&str>],
    ty: &DataType,
) -> ColumnStatistics {
    let mut merged: Option<ColumnStatistics> = None;
    for (f, name) in files.iter().zip(stored) {
        let Some(s) = f.as_ref().zip(*name).and_then(|(f, n)| f.columns.get(n)) else {
            return ColumnStatistics::new_unknown();
        };
        let one = ColumnStatistics {
            null_count: s.null_count,
            min_value: cast(&s.min_value, ty),
            max_value: cast(&s.max_value, ty),
            ..ColumnStatistics::new_unknown()
        };
        merged = Some(match merged {
            None => one,
            Some(m) => ColumnStatistics {
                null_count: m.null_count.add(&one.null_count),
                min_value: extreme(&m.min_value, &one.min_value, true),
                max_value: extreme(&m.max_value, &one.max_value, false),
                ..ColumnStatistics::new_unknown()
            },
        });
    }
    merged.unwrap_or_else(ColumnStatistics::new_unknown)
}

/// A file's bound in the table's type (a widened column: the file holds the narrower type).
fn cast(v: &Precision<ScalarValue>, ty: &DataType) -> Precision<ScalarValue> {
    match v.get_value() {
        Some(s) if s.data_type() == *ty => v.clone(),
        Some(s) => match s.cast_to(ty) {
            Ok(c) if v.is_exact() == Some(true) => Precision::Exact(c),
            Ok(c) => Precision::Inexact(c),
            Err(_) => Precision::Absent,
        },
        None => Precision::Absent,
    }
}

/// The smaller (`min`) or larger bound of two files; a file whose values are all NULL has a
/// NULL bound, which says nothing about the other's.
fn extreme(a: &Precision<ScalarValue>, b: &Precision<ScalarValue>, min: bool) -> Precision<ScalarValue> {
    match (a.get_value(), b.get_value()) {
        (Some(x), _) if x.is_null() => b.clone(),
        (_, Some(y)) if y.is_null() => a.clone(),
        _ if min => a.min(b),
        _ => a.max(b),
    }
}

/// The table statistics a scan reports: `num_rows` and bytes from the log, and the merged
/// column statistics of `columns` (the others unknown).
pub(crate) fn with_columns(mut st: Statistics, columns: Vec<(usize, ColumnStatistics)>) -> Statistics {
    for (i, c) in columns {
        if let Some(slot) = st.column_statistics.get_mut(i) {
            *slot = c;
        }
    }
    st
}
