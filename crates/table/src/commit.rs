//! The commit transaction of a table.
//!
//! Commit lifecycle:
//! 1. read a snapshot at version `v`;
//! 2. stage data files (uploaded, durable, not yet referenced);
//! 3. create `_log/<v+1>.json` with create-if-absent;
//! 4. if another writer won `v+1`: read the winning commits; if one carries our token, our
//!    commit already landed; if one conflicts with what we read ([`crate::conflict`]), fail with
//!    [`Error::Conflict`] (and delete staged files); otherwise retry after the newest.
//!
//! Steps 3 and 4 are the log store's ([`LogStore::commit`](crate::logstore::LogStore::commit));
//! this module's `TableCommit` is what a table commit adds to them: the checks before every
//! attempt (the lake's [`CommitGuard`](crate::context::CommitGuard), the staging grace), commit
//! times that never go backwards, the conflict rules against every commit it lost to, and a
//! checkpoint after it lands. [`Table::commit`](crate::table::Table::commit) runs it; [`info`]
//! makes an operation's commit info.

use std::collections::BTreeMap;

use crate::action::{Action, AddFile, Commit, CommitInfo};
use crate::clock::now_ms;
use crate::conflict::{ConflictCheck, ReadScope};
use crate::context::{PendingCommit, StorageContext};
use crate::log;
use crate::logstore::{Attempt, LogEntry, carries_token};
use crate::snapshot::{Snapshot, TableLog};
use crate::write::delete_files;
use crate::{Error, Result};

/// A table commit as a [`LogEntry`]: the quota and staging-grace checks before every attempt,
/// commit times that never go backwards along the log (so `TIMESTAMP AS OF` is exact), the
/// conflict rules against every commit it lost to, and a checkpoint after it lands.
pub(crate) struct TableCommit<'a> {
    table: TableLog<'a>,
    base: &'a Snapshot,
    actions: &'a [Action],
    info: CommitInfo,
    check: ConflictCheck<'a>,
    /// The version of the next attempt.
    version: u64,
    /// The newest commit time read; ours is later.
    last_ts: i64,
    /// Bytes the commit adds, minus bytes it removes.
    delta: i64,
    /// The table's live bytes at `version - 1`.
    bytes_before: i64,
    /// The oldest object this commit makes referenced that was unreferenced until now: new
    /// files, and the copies a move made on its target tier.
    oldest_staged: Option<i64>,
}

impl<'a> TableCommit<'a> {
    pub(crate) fn new(
        table: TableLog<'a>,
        base: &'a Snapshot,
        actions: &'a [Action],
        scope: &'a ReadScope,
        info: CommitInfo,
    ) -> Self {
        let oldest_staged = actions
            .iter()
            .filter_map(|a| match a {
                Action::Add(f) => Some(f.created_ms),
                Action::Move(m) => m.copied_ms,
                _ => None,
            })
            .min();
        Self {
            table,
            base,
            actions,
            info,
            check: ConflictCheck::new(actions, scope),
            version: base.version + 1,
            last_ts: base.timestamp_ms,
            delta: bytes_changed(&base.files, actions),
            bytes_before: base.bytes() as i64,
            oldest_staged,
        }
    }

    /// The quota check of the lake's [`CommitGuard`], for commits that add bytes.
    async fn check_guard(&self) -> Result<()> {
        match &self.table.ctx.guard {
            Some(g) if self.delta > 0 => {
                g.check(&PendingCommit {
                    table: self.table.ident,
                    bytes_before: self.bytes_before.max(0) as u64,
                    bytes_delta: self.delta,
                    operation: &self.info.operation,
                })
                .await
            }
            _ => Ok(()),
        }
    }

    /// Vacuum may delete unreferenced files older than the staging grace: never commit files
    /// that old (see `vacuum.rs`).
    fn check_staging(&self, now: i64) -> Result<()> {
        let limit = self.table.ctx.commit.staging_limit_ms();
        match self.oldest_staged {
            Some(oldest) if now - oldest > limit => Err(Error::StagingExpired {
                table: self.table.ident.to_string(),
                age_s: (now - oldest) / 1000,
                limit_s: limit / 1000,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl LogEntry for TableCommit<'_> {
    type Output = u64;

    fn log(&self) -> String {
        self.table.ident.to_string()
    }

    async fn attempt(&mut self) -> Result<Attempt> {
        self.check_guard().await?;
        let now = now_ms();
        self.check_staging(now)?;
        self.info.timestamp_ms = now.max(self.last_ts + 1);
        let commit = Commit {
            version: self.version,
            info: self.info.clone(),
            actions: self.actions.to_vec(),
        };
        Ok(Attempt {
            number: self.version,
            body: log::encode(&commit)?,
        })
    }

    fn is_ours(&self, found: &[u8]) -> Option<bool> {
        carries_token(
            &log::commit_path(&self.table.log_dir(), self.version),
            found,
            &self.info.token,
        )
    }

    async fn landed(&mut self, version: u64) -> Result<u64> {
        let t = self.table;
        tracing::info!(table = %t.ident, version, operation = %self.info.operation, "committed");
        if t.ctx.checkpoint_interval > 0
            && version.is_multiple_of(t.ctx.checkpoint_interval)
            && let Err(e) = t.write_checkpoint(version).await
        {
            tracing::warn!(table = %t.ident, version, error = %e, "checkpoint failed; the log stays complete");
        }
        Ok(version)
    }

    /// Check the winner, and every commit that landed after it, then go on top of the newest
    /// (rebasing instead of trying one version at a time, which starves a writer under
    /// contention).
    async fn lost(&mut self, version: u64, theirs: bytes::Bytes) -> Result<()> {
        let t = self.table;
        let mut winners = vec![log::decode::<Commit>(
            &log::commit_path(&t.log_dir(), version),
            &theirs,
        )?];
        let later = log::list(t.meta_store(), &t.log_dir(), Some(version)).await?;
        t.check_contiguous(version + 1, &later.commits)?;
        for v in later.commits {
            winners.push(t.read_commit(v).await?);
        }
        for w in &winners {
            self.check.against(w, &t.ident.to_string())?;
            self.bytes_before += bytes_changed(&self.base.files, &w.actions);
            self.last_ts = self.last_ts.max(w.info.timestamp_ms);
        }
        self.version = version + winners.len() as u64;
        Ok(())
    }
}

/// Bytes `actions` add, minus the bytes of the files of `files` they remove.
fn bytes_changed(files: &BTreeMap<String, AddFile>, actions: &[Action]) -> i64 {
    actions
        .iter()
        .map(|a| match a {
            Action::Add(f) => f.size as i64,
            Action::Remove(r) => -(files.get(&r.path).map_or(0, |f| f.size) as i64),
            _ => 0,
        })
        .sum()
}

/// Delete staged files that will not be committed, each from its own tier (best effort).
pub(crate) async fn delete_staged(ctx: &StorageContext, table_root: &str, files: &[AddFile]) {
    let mut by_tier: BTreeMap<&str, Vec<AddFile>> = BTreeMap::new();
    for f in files {
        by_tier.entry(f.tier.as_str()).or_default().push(f.clone());
    }
    for (tier, files) in by_tier {
        if let Ok(store) = ctx.tiers.get(tier) {
            delete_files(store, table_root, &files).await;
        }
    }
}

/// A commit info for `principal` doing `operation` now, with a fresh token.
pub fn info(principal: &str, operation: &str, parameters: BTreeMap<String, String>) -> CommitInfo {
    CommitInfo {
        timestamp_ms: now_ms(),
        principal: principal.to_string(),
        operation: operation.to_string(),
        token: uuid::Uuid::new_v4().to_string(),
        parameters,
        quality: None,
    }
}
