//! Vacuum: delete data files that no version within the retention window needs, and files that
//! no commit references (left by stopped writers) once they are older than the window.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::Result;
use crate::action::{Action, Commit};
use crate::table::Table;

/// What a vacuum deleted (or, in a dry run, would delete).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VacuumReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Files removed from the table before the window, deleted.
    pub removed_files: u64,
    /// Files no commit references, older than the window, deleted.
    pub orphan_files: u64,
    /// Bytes deleted.
    pub bytes: u64,
    /// Unreferenced files kept because they are younger than the window (a writer may be about
    /// to commit them).
    pub kept_recent_orphans: u64,
    /// The oldest version still readable in full afterwards (time travel before it fails).
    pub oldest_readable_version: u64,
    /// Paths deleted, relative to the table root.
    pub paths: Vec<String>,
}

/// Vacuum `table`: keep every file that a version committed at or after `now_ms - retain_ms`
/// (or the latest version) needs; delete files removed before that, and unreferenced files
/// last modified before it. Live files are never deleted.
pub async fn vacuum(table: &Table, retain_ms: i64, now_ms: i64, dry_run: bool) -> Result<VacuumReport> {
    let cutoff = now_ms - retain_ms.max(0);
    let snap = table.snapshot().await?;
    let commits: Vec<Commit> = futures::stream::iter((0..=snap.version).map(|v| table.read_commit(v)))
        .buffered(16)
        .try_collect()
        .await?;
    // path -> (removed at version, removed at time)
    let mut life: HashMap<String, Option<(u64, i64)>> = HashMap::new();
    for c in &commits {
        for a in &c.actions {
            match a {
                Action::Add(f) => {
                    life.insert(f.path.clone(), None);
                }
                Action::Remove(r) => {
                    life.insert(r.path.clone(), Some((c.version, c.info.timestamp_ms)));
                }
                Action::Metadata(_) | Action::Rekey(_) => {}
            }
        }
    }
    let root = table.ident().root();
    let mut report = VacuumReport {
        dry_run,
        ..Default::default()
    };
    for (_, store) in table.context().tiers.iter() {
        for (rel, meta) in store.list(&format!("{root}/data")).await? {
            let Some(path) = rel.strip_prefix(&format!("{root}/")) else {
                continue;
            };
            if snap.files.contains_key(path) {
                continue;
            }
            let delete = match life.get(path) {
                Some(Some((version, removed_ms))) if *removed_ms < cutoff => {
                    report.removed_files += 1;
                    report.oldest_readable_version = report.oldest_readable_version.max(*version);
                    true
                }
                Some(_) => false,
                None if meta.last_modified.timestamp_millis() < cutoff => {
                    report.orphan_files += 1;
                    true
                }
                None => {
                    report.kept_recent_orphans += 1;
                    false
                }
            };
            if delete {
                report.bytes += meta.size;
                report.paths.push(path.to_string());
                if !dry_run {
                    store.delete(&rel).await?;
                }
            }
        }
    }
    report.paths.sort();
    if !dry_run {
        tracing::info!(table = %table.ident(), files = report.paths.len(), bytes = report.bytes, "vacuumed");
    }
    Ok(report)
}
