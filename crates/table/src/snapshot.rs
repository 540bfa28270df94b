//! Snapshots: the state of a table at one version, rebuilt from its log (the newest readable
//! checkpoint plus the commits after it, or every commit from version 0), the table's history,
//! and the checkpoints written every `checkpoint_interval` commits.
//!
//! [`Snapshot`] is the state itself (also rebuilt from commits held elsewhere, as a backup holds
//! them: [`Snapshot::replay`]). Reading a table's log is `TableLog`'s job, a borrowed view of a
//! table that [`crate::table::Table`]'s snapshot and history methods and the commit
//! ([`crate::commit`]) go through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::{Action, AddFile, Commit, CommitCounts, Metadata};
use crate::context::StorageContext;
use crate::log;
use crate::model::TableIdent;
use crate::store::Store;
use crate::{Error, Result};

/// The state of a table at one version: metadata and live files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version.
    pub version: u64,
    /// Time of the commit that made this version.
    pub timestamp_ms: i64,
    /// Metadata in force.
    pub metadata: Metadata,
    /// Live files by path.
    pub files: BTreeMap<String, AddFile>,
}

impl Snapshot {
    /// Total live rows.
    pub fn rows(&self) -> u64 {
        self.files.values().map(|f| f.rows).sum()
    }

    /// Total live bytes.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    fn apply(&mut self, c: &Commit, path: &str) -> Result<()> {
        if c.version != self.version + 1 {
            return Err(Error::CorruptLog {
                path: path.into(),
                reason: format!("holds version {}, expected {}", c.version, self.version + 1),
            });
        }
        self.apply_actions(c, path)
    }

    fn apply_actions(&mut self, c: &Commit, path: &str) -> Result<()> {
        for a in &c.actions {
            match a {
                Action::Metadata(m) => {
                    if m.table_id != self.metadata.table_id {
                        return Err(Error::CorruptLog {
                            path: path.into(),
                            reason: "metadata of another table".into(),
                        });
                    }
                    self.metadata = m.clone();
                }
                Action::Add(f) => {
                    self.files.insert(f.path.clone(), f.clone());
                }
                Action::Remove(r) => {
                    self.files.remove(&r.path);
                }
                Action::Rekey(r) => match self.files.get_mut(&r.path) {
                    Some(f) => f.keys = r.keys.clone(),
                    None => {
                        return Err(Error::CorruptLog {
                            path: path.into(),
                            reason: format!("re-keys {}, which is not live", r.path),
                        });
                    }
                },
                Action::Move(m) => match self.files.get_mut(&m.path) {
                    Some(f) if f.tier == m.from => f.tier = m.to.clone(),
                    Some(f) => {
                        return Err(Error::CorruptLog {
                            path: path.into(),
                            reason: format!("moves {} from tier {}, but it is on tier {}", m.path, m.from, f.tier),
                        });
                    }
                    None => {
                        return Err(Error::CorruptLog {
                            path: path.into(),
                            reason: format!("moves {}, which is not live", m.path),
                        });
                    }
                },
            }
        }
        self.version = c.version;
        self.timestamp_ms = c.info.timestamp_ms;
        Ok(())
    }

    /// The snapshot after `commits`, which must be versions `0..=n` in order (as a backup holds
    /// them). `source` names where they came from in errors.
    pub fn replay(commits: &[Commit], source: &str) -> Result<Self> {
        let (first, rest) = commits.split_first().ok_or_else(|| Error::CorruptLog {
            path: source.into(),
            reason: "no commits".into(),
        })?;
        let mut s = Self::from_first(first, source)?;
        for c in rest {
            s.apply(c, source)?;
        }
        Ok(s)
    }

    fn from_first(c: &Commit, path: &str) -> Result<Self> {
        if c.version != 0 {
            return Err(Error::CorruptLog {
                path: path.into(),
                reason: format!("holds version {}, expected 0", c.version),
            });
        }
        let meta = c
            .actions
            .iter()
            .find_map(|a| {
                if let Action::Metadata(m) = a {
                    Some(m.clone())
                } else {
                    None
                }
            })
            .ok_or_else(|| Error::CorruptLog {
                path: path.into(),
                reason: "version 0 has no metadata".into(),
            })?;
        let mut s = Snapshot {
            version: 0,
            timestamp_ms: c.info.timestamp_ms,
            metadata: meta,
            files: BTreeMap::new(),
        };
        s.apply_actions(c, path)?;
        Ok(s)
    }
}

#[derive(Serialize, Deserialize)]
struct LastCheckpoint {
    version: u64,
}

/// One line of a table's history.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    /// Version.
    pub version: u64,
    /// Commit time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Operation.
    pub operation: String,
    /// Principal.
    pub principal: String,
    /// Counts.
    #[serde(flatten)]
    pub counts: CommitCounts,
    /// Parameters.
    pub parameters: BTreeMap<String, String>,
}

/// A table's log on the metadata tier, read as commits, snapshots and history: what
/// [`crate::table::Table`] and its commits need of a table, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableLog<'a> {
    /// The lake context.
    pub(crate) ctx: &'a StorageContext,
    /// The table.
    pub(crate) ident: &'a TableIdent,
    /// The table's id: a log (or checkpoint) of another table under the same name is refused.
    pub(crate) table_id: &'a str,
}

impl TableLog<'_> {
    /// The metadata tier's store, which holds the log.
    pub(crate) fn meta_store(&self) -> &Store {
        self.ctx.tiers.metadata()
    }

    /// The log directory relative to the metadata tier's root.
    pub(crate) fn log_dir(&self) -> String {
        format!("{}/_log", self.ident.root())
    }

    /// The commit that made version `v`, checked to hold that version.
    pub(crate) async fn read_commit(&self, v: u64) -> Result<Commit> {
        let c: Commit = log::read(self.meta_store(), &self.log_dir(), v).await?;
        if c.version != v {
            return Err(Error::CorruptLog {
                path: log::commit_path(&self.log_dir(), v),
                reason: format!("holds version {}", c.version),
            });
        }
        Ok(c)
    }

    async fn read_checkpoint(&self, v: u64) -> Result<Snapshot> {
        let path = log::checkpoint_path(&self.log_dir(), v);
        let data = self.meta_store().get(&path).await?;
        let s: Snapshot = log::decode(&path, &data)?;
        if s.version != v || s.metadata.table_id != self.table_id {
            return Err(Error::CorruptLog {
                path,
                reason: "checkpoint of another version or table".into(),
            });
        }
        Ok(s)
    }

    async fn replay(&self, mut snap: Option<Snapshot>, versions: &[u64]) -> Result<Snapshot> {
        use futures::StreamExt;
        let commits: Vec<Result<Commit>> = futures::stream::iter(versions.iter().copied().map(|v| self.read_commit(v)))
            .buffered(16)
            .collect()
            .await;
        for (v, c) in versions.iter().zip(commits) {
            let c = c?;
            let path = log::commit_path(&self.log_dir(), *v);
            match &mut snap {
                None => snap = Some(Snapshot::from_first(&c, &path)?),
                Some(s) => s.apply(&c, &path)?,
            }
        }
        let snap = snap.ok_or_else(|| Error::CorruptLog {
            path: self.log_dir(),
            reason: "the log is empty".into(),
        })?;
        if snap.metadata.table_id != self.table_id {
            // The name now belongs to another table: never read or commit across that.
            return Err(Error::TableNotFound(format!(
                "{} (dropped and created again since it was opened)",
                self.ident
            )));
        }
        Ok(snap)
    }

    pub(crate) fn check_contiguous(&self, from: u64, versions: &[u64]) -> Result<()> {
        for (i, v) in versions.iter().enumerate() {
            if *v != from + i as u64 {
                return Err(Error::CorruptLog {
                    path: log::commit_path(&self.log_dir(), from + i as u64),
                    reason: "missing: the log has a gap".into(),
                });
            }
        }
        Ok(())
    }

    /// The latest snapshot: the newest checkpoint plus the commits after it.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot> {
        let hint = match self
            .meta_store()
            .get_opt(&format!("{}/_last_checkpoint", self.log_dir()))
            .await?
        {
            Some(b) => serde_json::from_slice::<LastCheckpoint>(&b).ok().map(|l| l.version),
            None => None,
        };
        if let Some(cp) = hint {
            if let Ok(base) = self.read_checkpoint(cp).await {
                let l = log::list(self.meta_store(), &self.log_dir(), Some(cp)).await?;
                self.check_contiguous(cp + 1, &l.commits)?;
                return self.replay(Some(base), &l.commits).await;
            }
            tracing::warn!(table = %self.ident, checkpoint = cp, "checkpoint unreadable; replaying the log");
        }
        self.snapshot_at_opt(None).await
    }

    /// The snapshot at `version`.
    pub(crate) async fn snapshot_at(&self, version: u64) -> Result<Snapshot> {
        self.snapshot_at_opt(Some(version)).await
    }

    async fn snapshot_at_opt(&self, version: Option<u64>) -> Result<Snapshot> {
        let l = log::list(self.meta_store(), &self.log_dir(), None).await?;
        if l.commits.is_empty() {
            return Err(Error::CorruptLog {
                path: self.log_dir(),
                reason: "no commits: the table's creation did not finish".into(),
            });
        }
        self.check_contiguous(0, &l.commits)?;
        let latest = *l.commits.last().expect("non-empty");
        let target = version.unwrap_or(latest);
        if target > latest {
            return Err(Error::VersionNotFound {
                table: self.ident.to_string(),
                version: target,
                latest,
            });
        }
        // Newest readable checkpoint at or before the target.
        for cp in l.checkpoints.iter().rev().filter(|c| **c <= target) {
            match self.read_checkpoint(*cp).await {
                Ok(base) => {
                    let rest: Vec<u64> = (cp + 1..=target).collect();
                    return self.replay(Some(base), &rest).await;
                }
                Err(e) => {
                    tracing::warn!(table = %self.ident, checkpoint = cp, error = %e, "skipping unreadable checkpoint")
                }
            }
        }
        let all: Vec<u64> = (0..=target).collect();
        self.replay(None, &all).await
    }

    /// The snapshot at `version` replayed from version 0, ignoring checkpoints (for verify).
    pub(crate) async fn snapshot_replayed(&self, version: u64) -> Result<Snapshot> {
        let all: Vec<u64> = (0..=version).collect();
        self.replay(None, &all).await
    }

    /// The snapshot in force at `timestamp_ms`: the newest version committed at or before it.
    pub(crate) async fn snapshot_as_of(&self, timestamp_ms: i64) -> Result<Snapshot> {
        let l = log::list(self.meta_store(), &self.log_dir(), None).await?;
        for v in l.commits.iter().rev() {
            let c = self.read_commit(*v).await?;
            if c.info.timestamp_ms <= timestamp_ms {
                return self.snapshot_at(*v).await;
            }
        }
        Err(Error::TimestampBeforeHistory {
            table: self.ident.to_string(),
            timestamp: crate::clock::fmt_ms(timestamp_ms),
        })
    }

    /// Every commit, newest first (at most `limit`).
    pub(crate) async fn history(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
        let l = log::list(self.meta_store(), &self.log_dir(), None).await?;
        let versions: Vec<u64> = l
            .commits
            .iter()
            .rev()
            .take(limit.unwrap_or(usize::MAX))
            .rev()
            .copied()
            .collect();
        // Rows of removed files need the files' add actions: replay from the start of the window.
        let mut snap = match versions.first() {
            Some(0) | None => None,
            Some(v) => Some(self.snapshot_at(v - 1).await?),
        };
        let mut out = Vec::new();
        for v in versions {
            let c = self.read_commit(v).await?;
            let counts = {
                let s = &snap;
                c.counts(|p| s.as_ref().and_then(|s| s.files.get(p)).map(|f| (f.rows, f.size)))
            };
            let path = log::commit_path(&self.log_dir(), v);
            match &mut snap {
                None => snap = Some(Snapshot::from_first(&c, &path)?),
                Some(s) => s.apply(&c, &path)?,
            }
            out.push(HistoryEntry {
                version: v,
                timestamp_ms: c.info.timestamp_ms,
                operation: c.info.operation.clone(),
                principal: c.info.principal.clone(),
                counts,
                parameters: c.info.parameters.clone(),
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Write the checkpoint of `version` (its snapshot) and point `_last_checkpoint` at it.
    pub(crate) async fn write_checkpoint(&self, version: u64) -> Result<()> {
        let snap = self.snapshot_at(version).await?;
        let path = log::checkpoint_path(&self.log_dir(), version);
        self.meta_store().put(&path, log::encode(&snap)?).await?;
        let last = serde_json::to_vec(&LastCheckpoint { version }).map_err(|e| Error::Internal(e.to_string()))?;
        self.meta_store()
            .put(&format!("{}/_last_checkpoint", self.log_dir()), last.into())
            .await?;
        Ok(())
    }
}
