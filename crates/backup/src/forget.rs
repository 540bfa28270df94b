//! Listing, forgetting and pruning backups.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::manifest::Manifest;
use crate::repo::{Repository, data_path, meta_path, snapshot_path};
use crate::{Error, Result};

/// Which backups `forget` keeps (the newest of each period, like restic's `--keep-*`).
#[derive(Clone, Debug, Default)]
pub struct KeepPolicy {
    /// The newest N backups.
    pub last: usize,
    /// The newest backup of each of the last N days that have one.
    pub daily: usize,
    /// ... of each of the last N ISO weeks.
    pub weekly: usize,
    /// ... of each of the last N months.
    pub monthly: usize,
}

impl KeepPolicy {
    fn is_empty(&self) -> bool {
        self.last == 0 && self.daily == 0 && self.weekly == 0 && self.monthly == 0
    }
}

/// One backup as `list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackupInfo {
    /// Id.
    pub id: String,
    /// When it was taken (milliseconds since the epoch).
    pub created_ms: i64,
    /// Tables with their versions (`ns.t@v`).
    pub tables: Vec<String>,
    /// Data files referenced.
    pub files: u64,
    /// Bytes referenced.
    pub bytes: u64,
    /// Bytes this backup copied.
    pub new_bytes: u64,
    /// `ok`, or why its manifest cannot be opened.
    pub status: String,
}

/// A forget decision.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetEntry {
    /// Backup id.
    pub id: String,
    /// Kept or forgotten.
    pub keep: bool,
    /// Why it is kept (`last`, `daily`, ...).
    pub reasons: Vec<String>,
}

/// What `prune` removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Objects removed.
    pub objects: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Objects still referenced.
    pub kept_objects: u64,
    /// Bytes still referenced.
    pub kept_bytes: u64,
}

impl Repository {
    /// Every backup, oldest first; damaged manifests are listed with the reason.
    pub async fn list(&self) -> Result<Vec<BackupInfo>> {
        Ok(self
            .manifests()
            .await?
            .into_iter()
            .map(|(id, m)| match m {
                Ok(m) => BackupInfo {
                    id,
                    created_ms: m.created_ms,
                    tables: m
                        .tables
                        .iter()
                        .map(|t| format!("{}@{}", t.ident(), t.version))
                        .collect(),
                    files: m.totals.files,
                    bytes: m.totals.bytes,
                    new_bytes: m.totals.new_bytes,
                    status: "ok".into(),
                },
                Err(e) => BackupInfo {
                    id,
                    created_ms: 0,
                    tables: Vec::new(),
                    files: 0,
                    bytes: 0,
                    new_bytes: 0,
                    status: format!("damaged: {e}"),
                },
            })
            .collect())
    }

    /// Forget backups: those named in `ids`, or, with a policy, every backup the policy does not
    /// keep. Only manifests are removed; `prune` then removes the objects no backup needs.
    pub async fn forget(&self, ids: &[String], policy: &KeepPolicy, dry_run: bool) -> Result<Vec<ForgetEntry>> {
        let all = self.manifests().await?;
        let decisions: Vec<ForgetEntry> = if !ids.is_empty() {
            for id in ids {
                if !all.iter().any(|(i, _)| i == id) {
                    return Err(Error::BackupNotFound(id.clone()));
                }
            }
            all.iter()
                .map(|(id, _)| ForgetEntry {
                    id: id.clone(),
                    keep: !ids.contains(id),
                    reasons: if ids.contains(id) {
                        vec![]
                    } else {
                        vec!["not named".into()]
                    },
                })
                .collect()
        } else {
            if policy.is_empty() {
                return Err(Error::Refused(
                    "forget needs backup ids or at least one --keep-* option (it would forget every backup)".into(),
                ));
            }
            let ok: Vec<(String, i64)> = all
                .iter()
                .filter_map(|(id, m)| m.as_ref().ok().map(|m: &Manifest| (id.clone(), m.created_ms)))
                .collect();
            apply_policy(&ok, policy)
        };
        if !dry_run {
            for d in decisions.iter().filter(|d| !d.keep) {
                self.store.delete(&snapshot_path(&d.id)).await?;
                tracing::info!(backup = %d.id, "backup forgotten");
            }
        }
        Ok(decisions)
    }

    /// Remove every object no backup references: data of forgotten backups and leftovers of
    /// stopped ones. Refused while a backup is running. Refuses too when a manifest cannot be
    /// opened (its objects would look unreferenced): verify and forget it first.
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport> {
        let lock = self.lock("prune", true).await?;
        let r = self.prune_locked(dry_run).await;
        lock.release_after(r).await
    }

    async fn prune_locked(&self, dry_run: bool) -> Result<PruneReport> {
        let mut referenced: HashSet<String> = HashSet::new();
        for (id, m) in self.manifests().await? {
            let m = m.map_err(|e| {
                Error::Refused(format!(
                    "backup {id} cannot be opened ({e}); prune would treat its objects as unreferenced: forget it first (`backup forget {id}`)"
                ))
            })?;
            for t in &m.tables {
                referenced.extend(t.commits.iter().map(|c| meta_path(c)));
                referenced.extend(t.files.iter().map(|f| data_path(&f.sha256)));
            }
        }
        let mut report = PruneReport::default();
        let mut doomed = BTreeSet::new();
        for prefix in ["data", "meta"] {
            for (name, meta) in self.store.list(prefix).await? {
                if referenced.contains(&name) {
                    report.kept_objects += 1;
                    report.kept_bytes += meta.size;
                } else {
                    report.objects += 1;
                    report.bytes += meta.size;
                    doomed.insert(name);
                }
            }
        }
        if !dry_run {
            for name in &doomed {
                self.store.delete(name).await?;
            }
            tracing::info!(objects = report.objects, bytes = report.bytes, "pruned");
        }
        Ok(report)
    }
}

fn apply_policy(backups: &[(String, i64)], policy: &KeepPolicy) -> Vec<ForgetEntry> {
    let mut newest_first: Vec<&(String, i64)> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut entries: Vec<ForgetEntry> = newest_first
        .iter()
        .map(|(id, _)| ForgetEntry {
            id: id.clone(),
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let period = |ms: i64, kind: &str| -> String {
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms).unwrap_or_default();
        match kind {
            "daily" => t.format("%Y-%m-%d").to_string(),
            "weekly" => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            _ => t.format("%Y-%m").to_string(),
        }
    };
    for e in entries.iter_mut().take(policy.last) {
        e.keep = true;
        e.reasons.push("last".into());
    }
    for (kind, n) in [
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
    ] {
        let mut seen: Vec<String> = Vec::new();
        for (i, (_, ms)) in newest_first.iter().enumerate() {
            if seen.len() >= n {
                break;
            }
            let p = period(*ms, kind);
            if !seen.contains(&p) {
                seen.push(p);
                entries[i].keep = true;
                entries[i].reasons.push(kind.into());
            }
        }
    }
    entries.reverse();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn policy_keeps_newest_per_period() {
        // Two backups a day for ten days, from 2026-01-01.
        let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let backups: Vec<(String, i64)> = (0..20)
            .map(|i| (format!("b{i:02}"), base + (i / 2) * DAY + (i % 2) * 3_600_000))
            .collect();
        let kept = |p: KeepPolicy| -> Vec<String> {
            apply_policy(&backups, &p)
                .into_iter()
                .filter(|e| e.keep)
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(
            kept(KeepPolicy {
                last: 3,
                ..Default::default()
            }),
            vec!["b17", "b18", "b19"]
        );
        // the later backup of each of the last 3 days
        assert_eq!(
            kept(KeepPolicy {
                daily: 3,
                ..Default::default()
            }),
            vec!["b15", "b17", "b19"]
        );
        assert_eq!(
            kept(KeepPolicy {
                last: 1,
                daily: 2,
                ..Default::default()
            }),
            vec!["b17", "b19"]
        );
        assert_eq!(
            kept(KeepPolicy {
                monthly: 5,
                ..Default::default()
            }),
            vec!["b19"]
        );
        assert!(kept(KeepPolicy::default()).is_empty());
    }
}
