//! Vacuum: delete data files that no version within the retention window needs, and files that
//! no commit references (left by stopped writers) once they are older than the window.

use std::collections::{HashMap, HashSet};

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
    /// Copies left on a tier a file moved away from before the window, deleted.
    pub moved_copies: u64,
    /// Files no commit references, older than the window, deleted.
    pub orphan_files: u64,
    /// Bytes deleted.
    pub bytes: u64,
    /// Unreferenced files kept because they are younger than the window or the lake's staging
    /// grace (a writer may be about to commit them).
    pub kept_recent_orphans: u64,
    /// The oldest version still readable in full afterwards (time travel before it fails).
    pub oldest_readable_version: u64,
    /// Objects deleted, as `tier:path` (path relative to the table root).
    pub paths: Vec<String>,
}

/// Vacuum `table`: keep every file that a version committed at or after `now_ms - retain_ms`
/// (or the latest version) needs; delete files removed before that, copies left on a tier a
/// file moved away from before that, and unreferenced files last modified before it and before
/// the lake's staging grace. Live files are never deleted.
///
/// In-flight writes: a writer's staged files are unreferenced until its commit lands. Vacuum
/// lists the objects first and reads the log after, so a commit that lands before the log is
/// read protects its files; one that lands later was staged less than the staging grace before
/// (a commit refuses older staged files, `Table::commit`), and vacuum keeps every unreferenced
/// object younger than the grace, whatever `retain_ms` is. No retention, however short, turns a
/// write that reports success into a missing file.
pub async fn vacuum(table: &Table, retain_ms: i64, now_ms: i64, dry_run: bool) -> Result<VacuumReport> {
    sweep(table, retain_ms, now_ms, dry_run, false).await
}

/// Delete only the copies a move left behind on the tier a file moved away from, once the
/// move is older than `retain_ms` (what the tier mover runs after its moves).
pub async fn clean_moved_copies(table: &Table, retain_ms: i64, now_ms: i64, dry_run: bool) -> Result<VacuumReport> {
    sweep(table, retain_ms, now_ms, dry_run, true).await
}

async fn sweep(table: &Table, retain_ms: i64, now_ms: i64, dry_run: bool, moved_only: bool) -> Result<VacuumReport> {
    let cutoff = now_ms - retain_ms.max(0);
    // Never below the default: a vacuum configured with a shorter grace than the writers'
    // (another process, another configuration) must not delete what they may still commit.
    let grace = table
        .context()
        .commit
        .staging_grace_ms()
        .max(crate::logstore::CommitPolicy::default().staging_grace_ms());
    let orphan_cutoff = cutoff.min(now_ms - grace);
    let root = table.ident().root();
    // List before reading the log (see above): every object listed that a commit refers to
    // is then seen referenced.
    let mut listed = Vec::new();
    for (tier, store) in table.context().tiers.iter() {
        listed.push((tier, store, store.list(&format!("{root}/data")).await?));
    }
    let snap = table.snapshot().await?;
    let commits: Vec<Commit> = futures::stream::iter((0..=snap.version).map(|v| table.read_commit(v)))
        .buffered(16)
        .try_collect()
        .await?;
    // Per (tier, path): when the file left that tier (removed, or moved elsewhere), and how.
    let mut tier_of: HashMap<&str, &str> = HashMap::new();
    let mut gone: HashMap<(&str, &str), (u64, i64, bool)> = HashMap::new();
    let mut known: HashSet<(&str, &str)> = HashSet::new();
    for c in &commits {
        let at = (c.version, c.info.timestamp_ms);
        for a in &c.actions {
            match a {
                Action::Add(f) => {
                    tier_of.insert(&f.path, &f.tier);
                    known.insert((&f.tier, &f.path));
                    gone.remove(&(f.tier.as_str(), f.path.as_str()));
                }
                Action::Remove(r) => {
                    if let Some(t) = tier_of.remove(r.path.as_str()) {
                        gone.insert((t, &r.path), (at.0, at.1, false));
                    }
                }
                Action::Move(m) => {
                    tier_of.insert(&m.path, &m.to);
                    known.insert((&m.to, &m.path));
                    gone.remove(&(m.to.as_str(), m.path.as_str()));
                    gone.insert((&m.from, &m.path), (at.0, at.1, true));
                }
                Action::Metadata(_) | Action::Rekey(_) => {}
            }
        }
    }
    let mut report = VacuumReport {
        dry_run,
        ..Default::default()
    };
    for (tier, store, objects) in listed {
        for (rel, meta) in objects {
            let Some(path) = rel.strip_prefix(&format!("{root}/")) else {
                continue;
            };
            if snap.files.get(path).is_some_and(|f| &f.tier == tier) {
                continue;
            }
            let delete = match gone.get(&(tier.as_str(), path)) {
                // An object written after its file left this tier is a new copy (a recall or a
                // move back in progress), not the old one: it stays.
                Some((_, left_ms, _)) if meta.last_modified.timestamp_millis() > *left_ms => {
                    report.kept_recent_orphans += 1;
                    false
                }
                Some((version, left_ms, moved)) if *left_ms <= cutoff && (*moved || !moved_only) => {
                    if *moved {
                        report.moved_copies += 1;
                    } else {
                        report.removed_files += 1;
                    }
                    report.oldest_readable_version = report.oldest_readable_version.max(*version);
                    true
                }
                Some(_) => false,
                None if moved_only || known.contains(&(tier.as_str(), path)) => false,
                None if meta.last_modified.timestamp_millis() < orphan_cutoff => {
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
                report.paths.push(format!("{tier}:{path}"));
                if !dry_run {
                    store.delete(&rel).await?;
                }
            }
        }
    }
    report.paths.sort();
    if !dry_run && !report.paths.is_empty() {
        tracing::info!(table = %table.ident(), files = report.paths.len(), bytes = report.bytes, "vacuumed");
    }
    Ok(report)
}
