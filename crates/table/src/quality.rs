//! Data quality: constraints declared on a table and checked on every write, and the quality
//! figures each checked commit records in the log.
//!
//! A [`Validator`] checks batches on their way to the writer. With [`OnError::Reject`] the first
//! violation rejects the whole write, naming the input, the row and the rule; with
//! [`OnError::Quarantine`] good rows go on and bad rows are kept, with the rule they broke, for
//! the caller to write to a quarantine table. SQL `CHECK` predicates need an SQL engine: callers
//! compile them to [`PredicateFn`]s (the query crate does).
//!
//! The constraint and metric types are part of the table's metadata and commits, so they live
//! with the on-disk model ([`crate::model`]) and are re-exported here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::action::AddFile;
pub use crate::model::{Constraint, OnDuplicate, QualityMetrics};
use crate::read::{fetch_checked, read_file};
use crate::table::{Snapshot, Table};
use crate::{Access, Error, Result};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{cast, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::row::{RowConverter, SortField};

/// Evaluates an SQL predicate on a batch: `true` keeps, `false` is a violation, null keeps.
pub type PredicateFn = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync>;

/// What happens to rows that break a rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// The write fails and commits nothing (the default).
    #[default]
    Reject,
    /// Good rows are written; bad ones are returned for a quarantine table.
    Quarantine,
}

enum Compiled {
    NotNull(usize),
    Check(PredicateFn),
    Allowed(usize, HashSet<String>),
    Range(usize, Option<ArrayRef>, Option<ArrayRef>),
    Pattern(usize, regex::Regex),
    Fresh(usize),
    /// Handled by the key index, not per row.
    Unique,
}

/// Checks batches against a table's constraints.
pub struct Validator {
    table: String,
    rules: Vec<(String, Compiled)>,
    unique: Option<(String, Vec<usize>, OnDuplicate)>,
    on_error: OnError,
    now_ms: i64,
    ages: HashMap<usize, i64>,
    converter: Option<RowConverter>,
    /// Keys in the table before this write: key -> file holding it.
    existing: HashMap<Vec<u8>, String>,
    /// Keys written by this write so far (keep first, reject).
    seen: HashSet<Vec<u8>>,
    /// keep last: every good row buffered, the winner per key decided at the end.
    buffered: Vec<RecordBatch>,
    metrics: QualityMetrics,
    quarantine: Vec<RecordBatch>,
    names: Vec<String>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("table", &self.table)
            .field("rules", &self.rules.iter().map(|r| &r.0).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a finished validator hands back.
#[derive(Debug)]
pub struct Checked {
    /// Rows to write at the end (keep last: the winners), in addition to those already passed.
    pub rows: Vec<RecordBatch>,
    /// Files of the table holding rows replaced by this write, and the keys to drop from them.
    pub replace: Vec<(AddFile, HashSet<Vec<u8>>)>,
    /// Bad rows with a `quality_rule` column, for the quarantine table.
    pub quarantine: Vec<RecordBatch>,
    /// Figures for the commit.
    pub metrics: QualityMetrics,
}

fn lit_array(v: &str, ty: &DataType, table: &str, rule: &str) -> Result<ArrayRef> {
    let s: ArrayRef = Arc::new(StringArray::from(vec![v]));
    let a = cast(&s, ty).map_err(|e| Error::InvalidSchema {
        table: table.into(),
        reason: format!("constraint {rule:?}: {v:?} is not a {ty}: {e}"),
    })?;
    if a.is_null(0) {
        return Err(Error::InvalidSchema {
            table: table.into(),
            reason: format!("constraint {rule:?}: {v:?} is not a {ty}"),
        });
    }
    Ok(a)
}

fn to_ms(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => cast(
            &cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        )?,
        other => {
            return Err(Error::Internal(format!("freshness on a {other} column")));
        }
    })
}

impl Validator {
    /// A validator for writes to `table` at `snap`. `checks` are the compiled CHECK predicates by
    /// constraint name. With a UNIQUE constraint and `against_existing`, the key columns of the
    /// live files are read (an index of the keys in the table).
    pub async fn new(
        table: &Table,
        snap: &Snapshot,
        checks: HashMap<String, PredicateFn>,
        on_error: OnError,
        against_existing: bool,
    ) -> Result<Self> {
        let name = table.ident().to_string();
        let schema = &snap.metadata.schema;
        let arrow = schema.arrow_schema();
        let idx = |c: &str, rule: &str| -> Result<usize> {
            let col = schema.column(c).ok_or_else(|| Error::InvalidSchema {
                table: name.clone(),
                reason: format!("constraint {rule:?} names column {c:?}, which the table does not have"),
            })?;
            Ok(arrow.index_of(&col.name)?)
        };
        let mut rules = Vec::new();
        let mut unique = None;
        let mut ages = HashMap::new();
        for c in &snap.metadata.constraints {
            let rule = c.name().to_string();
            let compiled = match c {
                Constraint::NotNull { column, .. } => Compiled::NotNull(idx(column, &rule)?),
                Constraint::Check { .. } => Compiled::Check(
                    checks
                        .get(&rule)
                        .cloned()
                        .ok_or_else(|| Error::Internal(format!("CHECK constraint {rule:?} was not compiled")))?,
                ),
                Constraint::AllowedValues { column, values, .. } => {
                    Compiled::Allowed(idx(column, &rule)?, values.iter().cloned().collect())
                }
                Constraint::Range { column, min, max, .. } => {
                    let i = idx(column, &rule)?;
                    let ty = arrow.field(i).data_type();
                    let lit = |v: &Option<String>| v.as_deref().map(|v| lit_array(v, ty, &name, &rule)).transpose();
                    Compiled::Range(i, lit(min)?, lit(max)?)
                }
                Constraint::Pattern { column, regex, .. } => Compiled::Pattern(
                    idx(column, &rule)?,
                    regex::Regex::new(regex).map_err(|e| Error::InvalidSchema {
                        table: name.clone(),
                        reason: format!("constraint {rule:?}: bad regular expression: {e}"),
                    })?,
                ),
                Constraint::Freshness { column, max_age_ms, .. } => {
                    let i = idx(column, &rule)?;
                    if !matches!(
                        arrow.field(i).data_type(),
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
                    ) {
                        return Err(Error::InvalidSchema {
                            table: name.clone(),
                            reason: format!("constraint {rule:?}: {column:?} is not a date or timestamp column"),
                        });
                    }
                    ages.insert(i, *max_age_ms);
                    Compiled::Fresh(i)
                }
                Constraint::Unique {
                    columns, on_duplicate, ..
                } => {
                    let cols = columns.iter().map(|c| idx(c, &rule)).collect::<Result<Vec<_>>>()?;
                    unique = Some((rule.clone(), cols, *on_duplicate));
                    Compiled::Unique
                }
            };
            rules.push((rule, compiled));
        }
        let converter = match &unique {
            Some((_, cols, _)) => Some(RowConverter::new(
                cols.iter()
                    .map(|i| SortField::new(arrow.field(*i).data_type().clone()))
                    .collect(),
            )?),
            None => None,
        };
        let mut v = Self {
            table: name,
            rules,
            unique,
            on_error,
            now_ms: crate::clock::now_ms(),
            ages,
            converter,
            existing: HashMap::new(),
            seen: HashSet::new(),
            buffered: Vec::new(),
            metrics: QualityMetrics::default(),
            quarantine: Vec::new(),
            names: arrow.fields().iter().map(|f| f.name().clone()).collect(),
        };
        if against_existing && v.unique.is_some() {
            v.index_existing(table, snap).await?;
        }
        Ok(v)
    }

    async fn index_existing(&mut self, table: &Table, snap: &Snapshot) -> Result<()> {
        let (_, cols, _) = self.unique.clone().expect("unique");
        let names: Vec<String> = cols.iter().map(|i| self.names[*i].clone()).collect();
        let ctx = table.context();
        let root = table.ident().root();
        for f in snap.files.values() {
            let store = ctx.tiers.get(&f.tier)?;
            let data = fetch_checked(store, &root, f).await?;
            let batches = read_file(
                data,
                &f.path,
                table.id(),
                f,
                &snap.metadata.schema,
                &ctx.keyring,
                &Access::All,
                Some(&names),
            )
            .await?;
            for b in batches {
                let keys: Vec<ArrayRef> = names
                    .iter()
                    .map(|n| b.column_by_name(n).cloned().expect("projected"))
                    .collect();
                let rows = self.converter.as_ref().expect("unique").convert_columns(&keys)?;
                for r in rows.iter() {
                    self.existing.insert(r.as_ref().to_vec(), f.path.clone());
                }
            }
        }
        Ok(())
    }

    fn violation_mask(&self, compiled: &Compiled, b: &RecordBatch) -> Result<Option<BooleanArray>> {
        let n = b.num_rows();
        Ok(Some(match compiled {
            Compiled::NotNull(i) => {
                let c = b.column(*i);
                BooleanArray::from((0..n).map(|r| c.is_null(r)).collect::<Vec<_>>())
            }
            Compiled::Check(f) => {
                let ok = f(b)?;
                BooleanArray::from((0..n).map(|r| ok.is_valid(r) && !ok.value(r)).collect::<Vec<_>>())
            }
            Compiled::Allowed(i, set) => {
                let s = cast(b.column(*i), &DataType::Utf8)?;
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                BooleanArray::from(
                    (0..n)
                        .map(|r| s.is_valid(r) && !set.contains(s.value(r)))
                        .collect::<Vec<_>>(),
                )
            }
            Compiled::Range(i, min, max) => {
                use arrow::array::Scalar;
                use arrow::compute::kernels::cmp::{gt, lt};
                let c = b.column(*i);
                let mut bad = vec![false; n];
                if let Some(m) = min {
                    let below = lt(c, &Scalar::new(m.clone()))?;
                    for (r, x) in bad.iter_mut().enumerate() {
                        *x |= below.is_valid(r) && below.value(r);
                    }
                }
                if let Some(m) = max {
                    let above = gt(c, &Scalar::new(m.clone()))?;
                    for (r, x) in bad.iter_mut().enumerate() {
                        *x |= above.is_valid(r) && above.value(r);
                    }
                }
                BooleanArray::from(bad)
            }
            Compiled::Pattern(i, re) => {
                let s = cast(b.column(*i), &DataType::Utf8)?;
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                BooleanArray::from(
                    (0..n)
                        .map(|r| s.is_valid(r) && !re.is_match(s.value(r)))
                        .collect::<Vec<_>>(),
                )
            }
            Compiled::Fresh(i) => {
                let ms = to_ms(b.column(*i))?;
                let ms = ms.as_any().downcast_ref::<arrow::array::Int64Array>().expect("int64");
                let oldest = self.now_ms - self.ages[i];
                BooleanArray::from(
                    (0..n)
                        .map(|r| ms.is_valid(r) && ms.value(r) < oldest)
                        .collect::<Vec<_>>(),
                )
            }
            Compiled::Unique => return Ok(None),
        }))
    }

    fn reject_or_keep(
        &mut self,
        b: &RecordBatch,
        rule_of_row: &[Option<String>],
        source: &str,
        row_label: &dyn Fn(usize) -> String,
    ) -> Result<RecordBatch> {
        if self.on_error == OnError::Reject
            && let Some((r, rule)) = rule_of_row
                .iter()
                .enumerate()
                .find_map(|(r, x)| x.as_ref().map(|x| (r, x)))
        {
            return Err(Error::BadData {
                source_name: source.to_string(),
                reason: format!(
                    "{}: breaks constraint {rule:?} of {}; nothing was committed (or write with quarantine to keep the good rows)",
                    row_label(r),
                    self.table
                ),
            });
        }
        let mut bad_rows = Vec::new();
        let mut bad_rules = Vec::new();
        let mut good = Vec::new();
        for (r, x) in rule_of_row.iter().enumerate() {
            match x {
                Some(rule) => {
                    *self.metrics.rejected.entry(rule.clone()).or_default() += 1;
                    bad_rows.push(r as u32);
                    bad_rules.push(rule.clone());
                }
                None => good.push(r as u32),
            }
        }
        if !bad_rows.is_empty() {
            let bad = take_record_batch(b, &UInt32Array::from(bad_rows))?;
            let mut fields: Vec<arrow::datatypes::FieldRef> = bad
                .schema()
                .fields()
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
                .collect();
            fields.push(Arc::new(arrow::datatypes::Field::new(
                "quality_rule",
                DataType::Utf8,
                true,
            )));
            let mut cols = bad.columns().to_vec();
            cols.push(Arc::new(StringArray::from(bad_rules)));
            let q = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)?;
            self.metrics.quarantined += q.num_rows() as u64;
            self.quarantine.push(q);
        }
        Ok(if good.len() == b.num_rows() {
            b.clone()
        } else {
            take_record_batch(b, &UInt32Array::from(good))?
        })
    }

    /// Check a batch (conformed to the table's schema). Returns the rows to write now; with
    /// [`OnError::Reject`], the first violation is an error naming `source`, the row
    /// (`row_label(i)`) and the rule.
    pub fn check(&mut self, b: RecordBatch, source: &str, row_label: &dyn Fn(usize) -> String) -> Result<RecordBatch> {
        self.metrics.rows_in += b.num_rows() as u64;
        if self.rules.is_empty() {
            self.count_written(&b)?;
            return Ok(b);
        }
        let mut rule_of_row: Vec<Option<String>> = vec![None; b.num_rows()];
        for (name, compiled) in &self.rules {
            if let Some(mask) = self.violation_mask(compiled, &b)? {
                for (r, x) in rule_of_row.iter_mut().enumerate() {
                    if x.is_none() && mask.value(r) {
                        *x = Some(name.clone());
                    }
                }
            }
        }
        // Keys: duplicates within the write and against the table.
        if let Some((rule, cols, policy)) = self.unique.clone() {
            let keys: Vec<ArrayRef> = cols.iter().map(|i| b.column(*i).clone()).collect();
            let rows = self.converter.as_ref().expect("unique").convert_columns(&keys)?;
            let mut drop = vec![false; b.num_rows()];
            for (r, key) in rows.iter().enumerate() {
                if rule_of_row[r].is_some() {
                    continue;
                }
                let k = key.as_ref().to_vec();
                let clash = self.seen.contains(&k) || self.existing.contains_key(&k);
                match policy {
                    OnDuplicate::Reject if clash => rule_of_row[r] = Some(rule.clone()),
                    OnDuplicate::KeepFirst if clash => drop[r] = true,
                    _ => {}
                }
                if policy != OnDuplicate::KeepLast {
                    self.seen.insert(k);
                }
            }
            let kept = self.reject_or_keep(&b, &rule_of_row, source, row_label)?;
            // rows dropped as duplicates (keep first) are not violations
            let keep_mask: Vec<bool> = rule_of_row
                .iter()
                .zip(&drop)
                .filter(|(x, _)| x.is_none())
                .map(|(_, d)| !d)
                .collect();
            let dropped = keep_mask.iter().filter(|k| !**k).count();
            self.metrics.duplicates_removed += dropped as u64;
            let kept = if dropped > 0 {
                filter_record_batch(&kept, &BooleanArray::from(keep_mask))?
            } else {
                kept
            };
            if policy == OnDuplicate::KeepLast {
                self.buffered.push(kept);
                return Ok(RecordBatch::new_empty(b.schema()));
            }
            self.count_written(&kept)?;
            return Ok(kept);
        }
        let kept = self.reject_or_keep(&b, &rule_of_row, source, row_label)?;
        self.count_written(&kept)?;
        Ok(kept)
    }

    fn count_written(&mut self, b: &RecordBatch) -> Result<()> {
        self.metrics.rows_written += b.num_rows() as u64;
        for (i, c) in b.columns().iter().enumerate() {
            *self.metrics.nulls.entry(self.names[i].clone()).or_default() += c.null_count() as u64;
        }
        for i in self.ages.keys() {
            let ms = to_ms(b.column(*i))?;
            let ms = ms.as_any().downcast_ref::<arrow::array::Int64Array>().expect("int64");
            if let Some(m) = arrow::compute::max(ms) {
                let e = self.metrics.newest_ms.entry(self.names[*i].clone()).or_insert(m);
                *e = (*e).max(m);
            }
        }
        Ok(())
    }

    /// Finish: with keep last, the winning row of each key (the last one offered) and the table
    /// files holding rows they replace.
    pub fn finish(&mut self, snap: &Snapshot) -> Result<Checked> {
        let mut rows = Vec::new();
        let mut replace: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
        if let Some((_, cols, OnDuplicate::KeepLast)) = self.unique.clone() {
            let conv = self.converter.as_ref().expect("unique");
            // last occurrence of each key, walking backwards
            let mut winners: HashSet<Vec<u8>> = HashSet::new();
            let mut keep: Vec<Vec<bool>> = Vec::new();
            for b in self.buffered.iter().rev() {
                let keys: Vec<ArrayRef> = cols.iter().map(|i| b.column(*i).clone()).collect();
                let conv_rows = conv.convert_columns(&keys)?;
                let mut mask = vec![false; b.num_rows()];
                for r in (0..b.num_rows()).rev() {
                    let k = conv_rows.row(r).as_ref().to_vec();
                    if winners.insert(k.clone()) {
                        mask[r] = true;
                        if let Some(path) = self.existing.get(&k) {
                            replace.entry(path.clone()).or_default().insert(k);
                        }
                    }
                }
                keep.push(mask);
            }
            keep.reverse();
            let buffered = std::mem::take(&mut self.buffered);
            for (b, mask) in buffered.iter().zip(keep) {
                let dropped = mask.iter().filter(|k| !**k).count();
                self.metrics.duplicates_removed += dropped as u64;
                let kept = filter_record_batch(b, &BooleanArray::from(mask))?;
                self.count_written(&kept)?;
                rows.push(kept);
            }
        }
        let mut files = Vec::new();
        for (path, keys) in replace {
            let f = snap
                .files
                .get(&path)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("{path} was indexed but is not live")))?;
            self.metrics.replaced += keys.len() as u64;
            files.push((f, keys));
        }
        Ok(Checked {
            rows,
            replace: files,
            quarantine: std::mem::take(&mut self.quarantine),
            metrics: self.metrics.clone(),
        })
    }

    /// Drop rows whose key is in `keys` from `b` (rewriting a file whose rows were replaced).
    pub fn without_keys(&self, b: &RecordBatch, keys: &HashSet<Vec<u8>>) -> Result<(RecordBatch, usize)> {
        let (_, cols, _) = self.unique.as_ref().expect("unique");
        let arrays: Vec<ArrayRef> = cols.iter().map(|i| b.column(*i).clone()).collect();
        let rows = self.converter.as_ref().expect("unique").convert_columns(&arrays)?;
        let mask: Vec<bool> = rows.iter().map(|r| !keys.contains(r.as_ref())).collect();
        let removed = mask.iter().filter(|m| !**m).count();
        Ok((filter_record_batch(b, &BooleanArray::from(mask))?, removed))
    }
}

/// What a checked write committed.
#[derive(Debug)]
pub struct WriteOutcome {
    /// The version committed.
    pub version: u64,
    /// Files written.
    pub files: Vec<AddFile>,
    /// Quality figures (with a validator).
    pub metrics: Option<QualityMetrics>,
    /// Bad rows for the quarantine table (with [`OnError::Quarantine`]).
    pub quarantine: Vec<RecordBatch>,
}

/// Finish a write whose batches went through `validator` into `w`: write the rows it held back
/// (keep last), rewrite the table's files holding rows they replace, and commit it all at once
/// with the quality figures. A table with a UNIQUE constraint commits exclusively: a concurrent
/// write makes this one fail with a conflict (nothing committed) rather than let duplicates in.
#[allow(clippy::too_many_arguments)]
pub async fn finish_write(
    table: &Table,
    snap: &Snapshot,
    mut w: crate::write::DataWriter,
    validator: Option<Validator>,
    principal: &str,
    mode: crate::table::WriteMode,
    params: BTreeMap<String, String>,
) -> Result<WriteOutcome> {
    let mut removed: Vec<AddFile> = Vec::new();
    let mut checked = None;
    let exclusive = validator.as_ref().is_some_and(|v| v.unique.is_some());
    if let Some(mut v) = validator {
        let r: Result<()> = async {
            let c = v.finish(snap)?;
            let target = w.schema().clone();
            let schema = &snap.metadata.schema;
            for b in c.rows.iter().filter(|b| b.num_rows() > 0) {
                w.write(b.clone()).await?;
            }
            let ctx = table.context();
            let root = table.ident().root();
            for (f, keys) in &c.replace {
                let data = fetch_checked(ctx.tiers.get(&f.tier)?, &root, f).await?;
                for b in read_file(data, &f.path, table.id(), f, schema, &ctx.keyring, &Access::All, None).await? {
                    let (b, _) = v.without_keys(&b, keys)?;
                    if b.num_rows() > 0 {
                        let b =
                            crate::write::conform_batch(&b, schema, &target, "rewrite", &|r| format!("row {}", r + 1))?;
                        w.write(b).await?;
                    }
                }
                removed.push(f.clone());
            }
            checked = Some(c);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            w.abort().await;
            return Err(e);
        }
    }
    let files = w.finish().await?;
    let metrics = checked.as_ref().map(|c| c.metrics.clone());
    let version = table
        .commit_write(
            snap,
            files.clone(),
            &removed,
            principal,
            mode,
            params,
            metrics.clone(),
            exclusive,
            None,
        )
        .await?;
    Ok(WriteOutcome {
        version,
        files,
        metrics,
        quarantine: checked.map(|c| c.quarantine).unwrap_or_default(),
    })
}

/// Writes a principal under row filters or masks on a table may not make: replacing rows it
/// cannot see (overwrites), or writing to a table with a UNIQUE constraint (whose checks and
/// replacements would answer questions about hidden rows). Partition overwrites of a table with
/// a UNIQUE constraint are refused for everyone: the replaced partitions' keys would count.
pub fn check_write_rights(
    subject: &crate::access::Subject,
    table: &crate::TableIdent,
    snap: &Snapshot,
    mode: crate::table::WriteMode,
) -> Result<()> {
    let unique = snap
        .metadata
        .constraints
        .iter()
        .any(|c| matches!(c, Constraint::Unique { .. }));
    if unique && mode == crate::table::WriteMode::OverwritePartitions {
        return Err(Error::BadData {
            source_name: table.to_string(),
            reason: "a table with a UNIQUE constraint cannot be written with overwrite-partitions: append with ON DUPLICATE KEEP LAST, or overwrite the whole table".into(),
        });
    }
    let key = table.to_string();
    let restricted = subject.row_filters.contains_key(&key) || subject.masks.contains_key(&key);
    // Duplicate checks compare with every row of the table: refusals, removed-duplicate counts
    // and replacements would tell a writer about rows or values it may not read. A writer to a
    // UNIQUE table must be able to read all of it.
    if unique && !subject.superuser {
        let reads_all = subject.allows(
            crate::access::Privilege::Select,
            Some(&table.namespace),
            Some(&table.name),
        ) && !restricted
            && snap
                .metadata
                .schema
                .columns
                .iter()
                .all(|c| subject.cleared.contains(&c.classification));
        if !reads_all {
            return Err(Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!(
                    "may not write to {table}: it has a UNIQUE constraint, whose duplicate checks compare with every row, so writers need SELECT on all of it (every column cleared, no row filter or mask)"
                ),
            });
        }
    }
    if restricted && mode != crate::table::WriteMode::Append {
        return Err(Error::PermissionDenied {
            principal: subject.principal.clone(),
            reason: format!(
                "has row filters or masks on {table}, so it may only append to it, and not at all while it has a UNIQUE constraint"
            ),
        });
    }
    Ok(())
}
