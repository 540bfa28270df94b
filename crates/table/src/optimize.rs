//! Optimize: compact a table's small files, per partition and tier, into files of the target
//! size, optionally sorted by columns. A copy-on-write rewrite in one `OPTIMIZE` commit: the
//! same rows, re-encrypted under fresh data keys; the old files stay until vacuum.
//!
//! A concurrent commit that removed one of the files being compacted (a DELETE, an UPDATE,
//! another optimize) is a conflict: the staged files are deleted and optimize starts again from
//! the new version (up to three times), so no row is lost or resurrected.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::action::{AddFile, PartitionValues};
use crate::read::{fetch_checked, read_file};
use crate::table::{Snapshot, Table};
use crate::{Access, Error, Result};

/// How to optimize.
#[derive(Clone, Debug)]
pub struct OptimizeOptions {
    /// Files are compacted into files of about this many bytes; files at 3/4 of it or more are
    /// left alone (unless sorting).
    pub target_size: u64,
    /// Sort each compacted file by these columns (`(column, descending)`); with a sort, every
    /// file of a partition is rewritten.
    pub sort_by: Vec<(String, bool)>,
    /// Only report what would be compacted.
    pub dry_run: bool,
}

/// What optimize did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OptimizeReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Partitions (per tier) with files compacted.
    pub partitions: u64,
    /// Files replaced.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// Bytes of the files replaced.
    pub bytes_removed: u64,
    /// Bytes of the files written.
    pub bytes_added: u64,
    /// The version committed.
    pub version: Option<u64>,
    /// Attempts (more than one after conflicts with concurrent writers).
    pub attempts: u32,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Groups of files to compact together: (partition, tier) -> bins.
fn bins(snap: &Snapshot, opts: &OptimizeOptions) -> Vec<Vec<AddFile>> {
    let mut groups: BTreeMap<(PartitionValues, String), Vec<&AddFile>> = BTreeMap::new();
    for f in snap.files.values() {
        groups.entry((f.partition.clone(), f.tier.clone())).or_default().push(f);
    }
    let small = opts.target_size.saturating_mul(3) / 4;
    let mut out = Vec::new();
    for (_, mut files) in groups {
        if opts.sort_by.is_empty() {
            files.retain(|f| f.size < small);
        }
        files.sort_by(|a, b| (a.size, &a.path).cmp(&(b.size, &b.path)));
        let mut bin: Vec<AddFile> = Vec::new();
        let mut size = 0u64;
        for f in files {
            if !bin.is_empty() && size + f.size > opts.target_size {
                out.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += f.size;
            bin.push(f.clone());
        }
        if !bin.is_empty() {
            out.push(bin);
        }
    }
    // A lone file gains nothing from being rewritten, unless it is being sorted.
    out.retain(|b| b.len() > 1 || !opts.sort_by.is_empty());
    out
}

fn sort_batch(b: &RecordBatch, sort_by: &[(String, bool)], table: &str) -> Result<RecordBatch> {
    let mut cols = Vec::with_capacity(sort_by.len());
    for (name, desc) in sort_by {
        let idx = b.schema().index_of(name).map_err(|_| Error::InvalidSchema {
            table: table.into(),
            reason: format!("cannot sort by {name:?}: no such column"),
        })?;
        cols.push(SortColumn {
            values: b.column(idx).clone(),
            options: Some(SortOptions {
                descending: *desc,
                nulls_first: !*desc,
            }),
        });
    }
    let idx = lexsort_to_indices(&cols, None)?;
    Ok(take_record_batch(b, &idx)?)
}

/// Compact `table` as `principal`, reporting progress over the input files (operation
/// `optimize`, phase `compacting`).
pub async fn optimize(
    table: &Table,
    opts: &OptimizeOptions,
    principal: &str,
    progress: crate::progress::ProgressFn<'_>,
) -> Result<OptimizeReport> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let snap = table.snapshot().await?;
        for (c, _) in &opts.sort_by {
            if snap.metadata.schema.column(c).is_none() {
                return Err(Error::InvalidSchema {
                    table: table.ident().to_string(),
                    reason: format!("cannot sort by {c:?}: no such column"),
                });
            }
        }
        let bins = bins(&snap, opts);
        let mut report = OptimizeReport {
            dry_run: opts.dry_run,
            partitions: bins.len() as u64,
            files_removed: bins.iter().map(|b| b.len() as u64).sum(),
            rows: bins.iter().flatten().map(|f| f.rows).sum(),
            bytes_removed: bins.iter().flatten().map(|f| f.size).sum(),
            attempts,
            ..Default::default()
        };
        if opts.dry_run || bins.is_empty() {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        match rewrite(table, &snap, &bins, opts, principal, progress).await {
            Ok((version, added)) => {
                report.version = Some(version);
                report.files_added = added.len() as u64;
                report.bytes_added = added.iter().map(|f| f.size).sum();
                report.seconds = started.elapsed().as_secs_f64();
                tracing::info!(table = %table.ident(), version, removed = report.files_removed, added = report.files_added, "optimized");
                return Ok(report);
            }
            Err(Error::Conflict { reason, .. }) if attempts < 3 => {
                tracing::info!(table = %table.ident(), %reason, "optimize raced another commit; starting again");
            }
            Err(e) => return Err(e),
        }
    }
}

async fn rewrite(
    table: &Table,
    snap: &Snapshot,
    bins: &[Vec<AddFile>],
    opts: &OptimizeOptions,
    principal: &str,
    progress: crate::progress::ProgressFn<'_>,
) -> Result<(u64, Vec<AddFile>)> {
    let ctx = table.context();
    let root = table.ident().root();
    let schema = &snap.metadata.schema;
    let total: u64 = bins.iter().map(|b| b.len() as u64).sum();
    let mut done = 0u64;
    let mut added: Vec<AddFile> = Vec::new();
    let mut removed: Vec<AddFile> = Vec::new();
    // One writer per tier: compacted files stay on the tier their inputs were on.
    let mut writers: BTreeMap<String, crate::write::DataWriter> = BTreeMap::new();
    let result: Result<()> = async {
        for bin in bins {
            let tier = bin[0].tier.clone();
            let store = ctx.tiers.get(&tier)?.clone();
            // The reads are collected before they are streamed: a closure left inside the
            // stream's type would keep the whole operation's future from being `Send` (a
            // rustc limitation with higher-ranked closure lifetimes).
            let reads: Vec<_> = bin
                .iter()
                .map(|f| {
                    let (store, root) = (&store, &root);
                    async move {
                        let data = fetch_checked(store, root, f).await?;
                        let display = store.path(&format!("{root}/{}", f.path)).to_string();
                        read_file(data, &display, table.id(), f, schema, &ctx.keyring, &Access::All, None).await
                    }
                })
                .collect();
            let batches: Vec<Vec<RecordBatch>> = futures::stream::iter(reads).buffered(8).try_collect().await?;
            let batches: Vec<RecordBatch> = batches.into_iter().flatten().collect();
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            let expected: u64 = bin.iter().map(|f| f.rows).sum();
            if rows != expected {
                return Err(Error::CorruptData {
                    path: bin[0].path.clone(),
                    reason: format!("read {rows} rows from files the log says hold {expected}; nothing was rewritten"),
                });
            }
            let w = match writers.get_mut(&tier) {
                Some(w) => w,
                None => {
                    let w = table.writer_on(snap, &tier)?;
                    writers.entry(tier.clone()).or_insert(w)
                }
            };
            if opts.sort_by.is_empty() {
                for b in batches {
                    w.write(b).await?;
                }
            } else if let Some(first) = batches.first() {
                let all = concat_batches(&first.schema(), &batches)?;
                w.write(sort_batch(&all, &opts.sort_by, &table.ident().to_string())?)
                    .await?;
            }
            removed.extend(bin.iter().cloned());
            done += bin.len() as u64;
            progress(crate::progress::Progress {
                operation: "optimize",
                phase: "compacting",
                files_done: done,
                files_total: total,
                ..Default::default()
            });
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        for (_, w) in writers {
            w.abort().await;
        }
        return Err(e);
    }
    for (_, w) in writers {
        added.extend(w.finish().await?);
    }
    let rows_out: u64 = added.iter().map(|f| f.rows).sum();
    let rows_in: u64 = removed.iter().map(|f| f.rows).sum();
    if rows_out != rows_in {
        crate::commit::delete_staged(ctx, &root, &added).await;
        return Err(Error::Internal(format!(
            "optimize wrote {rows_out} rows for {rows_in}; nothing was committed"
        )));
    }
    let params = BTreeMap::from([
        ("files_removed".to_string(), removed.len().to_string()),
        ("files_added".to_string(), added.len().to_string()),
        ("rows".to_string(), rows_in.to_string()),
        (
            "sort_by".to_string(),
            opts.sort_by
                .iter()
                .map(|(c, d)| if *d { format!("{c} DESC") } else { c.clone() })
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]);
    let v = table
        .commit_rewrite(snap, &removed, added.clone(), principal, "OPTIMIZE", params)
        .await?;
    Ok((v, added))
}
