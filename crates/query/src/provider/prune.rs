//! Partition pruning: which of a snapshot's files can hold rows matching a scan's filters,
//! judged from the partition values the log records for each file (no file is opened).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use arrow::compute::cast;
use chrono::{Datelike, NaiveDate};
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, Result as DFResult, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use stratalake_table::Transform;
use stratalake_table::action::AddFile;

use super::LakeTableProvider;

impl LakeTableProvider {
    /// Files whose partition values can satisfy the filters. Each file's partition values give
    /// a range for their source column (a single value for identity fields, the day, month or
    /// year for transforms) that DataFusion's pruning predicate evaluates the filters against.
    pub(super) fn prune(&self, state: &dyn Session, filters: &[Expr]) -> DFResult<Vec<&AddFile>> {
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
pub(super) struct PartitionRanges {
    pub(super) ranges: HashMap<String, (ArrayRef, ArrayRef, ArrayRef)>,
    pub(super) rows: Vec<u64>,
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
