//! Tables: the [`Table`] handle and its operations — create, snapshots and history (read
//! through [`crate::snapshot`]), appends and overwrites, copy-on-write rewrites, moves between
//! tiers, key rotation and metadata changes. Each operation ends in one [`Table::commit`], whose
//! protocol is in [`crate::commit`].
//!
//! The types a table is made of live in their own modules and are re-exported here:
//! [`StorageContext`], [`Tiers`] and [`CommitGuard`] ([`crate::context`]), [`TableIdent`] and
//! [`WriteMode`] ([`crate::model`]), [`Snapshot`] and [`HistoryEntry`] ([`crate::snapshot`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::action::{Action, AddFile, Commit, CommitInfo, Metadata, RemoveFile};
use crate::clock::now_ms;
pub use crate::commit::info;
use crate::commit::{TableCommit, delete_staged};
pub use crate::conflict::ReadScope;
pub use crate::context::{CommitGuard, PendingCommit, StorageContext, Tiers};
use crate::log;
use crate::logstore::{Created, LogStore, carries_token};
pub use crate::model::{TableIdent, WriteMode};
use crate::snapshot::TableLog;
pub use crate::snapshot::{HistoryEntry, Snapshot};
use crate::store::Store;
use crate::write::{DataWriter, WriteTarget, conform_batch};
use crate::{Error, Result};

/// A handle on one table. Cheap to clone; holds no snapshot.
#[derive(Clone, Debug)]
pub struct Table {
    ctx: Arc<StorageContext>,
    ident: TableIdent,
    table_id: String,
}

impl Table {
    /// A handle on an existing table (the catalog resolves `table_id`).
    pub fn new(ctx: Arc<StorageContext>, ident: TableIdent, table_id: String) -> Self {
        Self { ctx, ident, table_id }
    }

    /// Create the table's log (version 0) from its metadata. Fails if a log exists.
    pub async fn create_log(
        ctx: Arc<StorageContext>,
        ident: TableIdent,
        metadata: Metadata,
        principal: &str,
    ) -> Result<Self> {
        metadata
            .schema
            .validate(&ident.to_string(), ctx.keyring.classifications())?;
        let t = Self {
            ctx,
            ident,
            table_id: metadata.table_id.clone(),
        };
        let commit = Commit {
            version: 0,
            info: info(principal, "CREATE TABLE", BTreeMap::new()),
            actions: vec![Action::Metadata(metadata)],
        };
        let log = t.log_store();
        let ours = |b: &[u8]| carries_token(&log.path(0), b, &commit.info.token);
        match log.create_at(0, log::encode(&commit)?, ours).await? {
            Created::Ours => Ok(t),
            Created::Theirs(_) => Err(Error::TableExists(format!(
                "{} (a log already exists at {})",
                t.ident,
                t.log_dir()
            ))),
        }
    }

    /// The table's identifier.
    pub fn ident(&self) -> &TableIdent {
        &self.ident
    }

    /// The table's id.
    pub fn id(&self) -> &str {
        &self.table_id
    }

    /// The lake context.
    pub fn context(&self) -> &Arc<StorageContext> {
        &self.ctx
    }

    fn meta_store(&self) -> &Store {
        self.ctx.tiers.metadata()
    }

    /// The table's log, the only writer of its commits.
    fn log_store(&self) -> LogStore {
        LogStore::new(self.meta_store().clone(), self.log_dir(), self.ctx.commit.clone())
    }

    /// The log directory relative to the metadata tier's root.
    pub fn log_dir(&self) -> String {
        self.log().log_dir()
    }

    /// The table's log, read as commits and snapshots.
    fn log(&self) -> TableLog<'_> {
        TableLog {
            ctx: &self.ctx,
            ident: &self.ident,
            table_id: &self.table_id,
        }
    }

    /// The commit that made version `v`, checked to hold that version.
    pub async fn read_commit(&self, v: u64) -> Result<Commit> {
        self.log().read_commit(v).await
    }

    /// The latest snapshot: the newest checkpoint plus the commits after it.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        self.log().snapshot().await
    }

    /// The snapshot at `version`.
    pub async fn snapshot_at(&self, version: u64) -> Result<Snapshot> {
        self.log().snapshot_at(version).await
    }

    /// The snapshot at `version` replayed from version 0, ignoring checkpoints (for verify).
    pub async fn snapshot_replayed(&self, version: u64) -> Result<Snapshot> {
        self.log().snapshot_replayed(version).await
    }

    /// The snapshot in force at `timestamp_ms`: the newest version committed at or before it.
    pub async fn snapshot_as_of(&self, timestamp_ms: i64) -> Result<Snapshot> {
        self.log().snapshot_as_of(timestamp_ms).await
    }

    /// Every commit, newest first (at most `limit`).
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
        self.log().history(limit).await
    }

    /// A writer for new data files under `snapshot`'s schema.
    pub fn writer(&self, snapshot: &Snapshot) -> Result<DataWriter> {
        self.writer_on(snapshot, self.ctx.tiers.write_tier())
    }

    /// A writer whose files go to tier `tier` (rewrites that keep data on its tier).
    pub fn writer_on(&self, snapshot: &Snapshot, tier: &str) -> Result<DataWriter> {
        let tier = tier.to_string();
        Ok(DataWriter::new(WriteTarget {
            store: self.ctx.tiers.get(&tier)?.clone(),
            tier,
            table_root: self.ident.root(),
            table_id: self.table_id.clone(),
            schema: snapshot.metadata.schema.clone(),
            keyring: self.ctx.keyring.clone(),
            options: self.ctx.write.clone(),
        }))
    }

    /// Commit `actions` on top of `base`. Retries on concurrent commits that do not conflict,
    /// for at most the lake's
    /// [`CommitPolicy::retry_for`](crate::logstore::CommitPolicy::retry_for). On failure, the
    /// caller's staged files are left for it to delete.
    pub async fn commit(
        &self,
        base: &Snapshot,
        actions: Vec<Action>,
        info: CommitInfo,
        scope: &ReadScope,
    ) -> Result<u64> {
        let mut entry = TableCommit::new(self.log(), base, &actions, scope, info);
        self.log_store().commit(&mut entry).await
    }

    /// Append batches as one commit. Returns the new version.
    pub async fn append(&self, batches: &[RecordBatch], principal: &str) -> Result<u64> {
        self.write_batches(batches, principal, WriteMode::Append).await
    }

    /// Replace the table's content (or, with [`WriteMode::OverwritePartitions`], the partitions
    /// the batches touch) with the batches, in one commit.
    pub async fn write_batches(&self, batches: &[RecordBatch], principal: &str, mode: WriteMode) -> Result<u64> {
        let snap = self.snapshot().await?;
        let mut w = self.writer(&snap)?;
        let target = w.schema().clone();
        let mut first = 0u64;
        for b in batches {
            let base = first;
            let b = match conform_batch(b, &snap.metadata.schema, &target, "batch", &|r| {
                format!("row {}", base + r + 1)
            }) {
                Ok(b) => b,
                Err(e) => {
                    w.abort().await;
                    return Err(e);
                }
            };
            first += b.num_rows() as u64;
            if let Err(e) = w.write(b).await {
                w.abort().await;
                return Err(e);
            }
        }
        let files = w.finish().await?;
        self.commit_files(&snap, files, principal, mode, BTreeMap::new()).await
    }

    /// Commit a copy-on-write rewrite: `removed` live files of `snap` are replaced by `added`
    /// staged files (rows deleted or updated). A concurrent commit that removed any of the same
    /// files, or changed the metadata, is a conflict; the staged files are then deleted.
    pub async fn commit_rewrite(
        &self,
        snap: &Snapshot,
        removed: &[AddFile],
        added: Vec<AddFile>,
        principal: &str,
        operation: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<u64> {
        let now = now_ms();
        let mut actions: Vec<Action> = removed
            .iter()
            .map(|f| {
                Action::Remove(RemoveFile {
                    path: f.path.clone(),
                    tier: f.tier.clone(),
                    removed_ms: now,
                })
            })
            .collect();
        actions.extend(added.iter().cloned().map(Action::Add));
        let result = self
            .commit(
                snap,
                actions,
                info(principal, operation, parameters),
                &ReadScope::default(),
            )
            .await;
        if result.as_ref().is_err_and(Error::nothing_committed) {
            delete_staged(&self.ctx, &self.ident.root(), &added).await;
        }
        result
    }

    /// Commit staged files with the given mode; deletes them if the commit fails.
    pub async fn commit_files(
        &self,
        snap: &Snapshot,
        files: Vec<AddFile>,
        principal: &str,
        mode: WriteMode,
        parameters: BTreeMap<String, String>,
    ) -> Result<u64> {
        self.commit_write(snap, files, &[], principal, mode, parameters, None, false, None)
            .await
    }

    /// Commit staged files with the given mode, also removing `removed` live files (rows they
    /// held were rewritten into `files`), with the write's quality figures. `exclusive` makes
    /// any concurrent commit a conflict (writes to tables with a UNIQUE constraint). Deletes the
    /// staged files if the commit is refused. `operation` names it in history (default: the mode's).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_write(
        &self,
        snap: &Snapshot,
        files: Vec<AddFile>,
        removed: &[AddFile],
        principal: &str,
        mode: WriteMode,
        mut parameters: BTreeMap<String, String>,
        quality: Option<crate::model::QualityMetrics>,
        exclusive: bool,
        operation: Option<&str>,
    ) -> Result<u64> {
        let mut actions = Vec::new();
        let mut scope = ReadScope {
            whole_table: exclusive,
            ..Default::default()
        };
        let now = now_ms();
        let remove = |f: &AddFile| {
            Action::Remove(RemoveFile {
                path: f.path.clone(),
                tier: f.tier.clone(),
                removed_ms: now,
            })
        };
        match mode {
            WriteMode::Append => actions.extend(removed.iter().map(remove)),
            WriteMode::Overwrite => {
                scope.whole_table = true;
                actions.extend(snap.files.values().map(remove));
            }
            WriteMode::OverwritePartitions => {
                scope.partitions = files.iter().map(|f| f.partition.clone()).collect();
                actions.extend(
                    snap.files
                        .values()
                        .filter(|f| scope.partitions.contains(&f.partition) || removed.iter().any(|r| r.path == f.path))
                        .map(remove),
                );
            }
        }
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        parameters.insert("rows".into(), rows.to_string());
        actions.extend(files.iter().cloned().map(Action::Add));
        let mut info = info(principal, operation.unwrap_or(mode.operation()), parameters);
        info.quality = quality;
        let result = self.commit(snap, actions, info, &scope).await;
        // Every failure but one whose outcome the store left unknown proves the commit did not
        // land; after that one the staged files stay (the commit may refer to them; if it does
        // not, a later vacuum removes them).
        if result.as_ref().is_err_and(Error::nothing_committed) {
            delete_staged(&self.ctx, &self.ident.root(), &files).await;
        }
        result
    }
}

impl Table {
    /// Re-wrap the keys of every live file under the current master key version of `levels`
    /// (every level when `None`), in one log-only commit: no data file is read or rewritten.
    /// Returns the new version and the number of files re-keyed, or `None` when every key is
    /// current already.
    pub async fn rekey(&self, levels: Option<&BTreeSet<String>>, principal: &str) -> Result<Option<(u64, usize)>> {
        let snap = self.snapshot().await?;
        let mut actions = Vec::new();
        for add in snap.files.values() {
            if let Some(keys) = self.ctx.keyring.rewrap(&self.table_id, add, levels).await? {
                actions.push(Action::Rekey(crate::action::RekeyFile {
                    path: add.path.clone(),
                    keys,
                }));
            }
        }
        if actions.is_empty() {
            return Ok(None);
        }
        let n = actions.len();
        let mut params = BTreeMap::new();
        params.insert("files".into(), n.to_string());
        if let Some(l) = levels {
            params.insert("levels".into(), l.iter().cloned().collect::<Vec<_>>().join(","));
        }
        let v = self
            .commit(&snap, actions, info(principal, "REKEY", params), &ReadScope::default())
            .await?;
        Ok(Some((v, n)))
    }

    /// Record moves of live files of `snap` to other tiers, in one log-only commit. The caller
    /// has copied each file to its target tier and checked its crc32. A concurrent commit that
    /// removed or moved one of the files is a conflict.
    pub async fn commit_moves(
        &self,
        snap: &Snapshot,
        moves: Vec<crate::action::MoveFile>,
        principal: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<u64> {
        for m in &moves {
            match snap.files.get(&m.path) {
                Some(f) if f.tier == m.from && self.ctx.tiers.get(&m.to).is_ok() => {}
                _ => {
                    return Err(Error::Internal(format!(
                        "move of {} from {} to {} does not fit version {}",
                        m.path, m.from, m.to, snap.version
                    )));
                }
            }
        }
        self.commit(
            snap,
            moves.into_iter().map(Action::Move).collect(),
            info(principal, "MOVE", parameters),
            &ReadScope::default(),
        )
        .await
    }

    /// Change the schema's metadata (e.g. a column's classification) in a metadata-only commit.
    /// Data files are not rewritten: each keeps the keys it was written with.
    pub async fn update_schema(
        &self,
        operation: &str,
        parameters: BTreeMap<String, String>,
        principal: &str,
        change: impl FnOnce(&mut crate::schema::TableSchema) -> Result<()>,
    ) -> Result<u64> {
        self.update_metadata(operation, parameters, principal, |m| change(&mut m.schema))
            .await
    }

    /// Change the table's metadata (schema, constraints) in a metadata-only commit. A
    /// concurrent commit makes it fail with a conflict.
    pub async fn update_metadata(
        &self,
        operation: &str,
        parameters: BTreeMap<String, String>,
        principal: &str,
        change: impl FnOnce(&mut crate::action::Metadata) -> Result<()>,
    ) -> Result<u64> {
        let snap = self.snapshot().await?;
        let mut meta = snap.metadata.clone();
        change(&mut meta)?;
        meta.schema
            .validate(&self.ident.to_string(), self.ctx.keyring.classifications())?;
        let scope = ReadScope {
            whole_table: true,
            ..Default::default()
        };
        self.commit(
            &snap,
            vec![Action::Metadata(meta)],
            info(principal, operation, parameters),
            &scope,
        )
        .await
    }

    /// Set a column's classification.
    pub async fn classify(&self, column: &str, level: &str, principal: &str) -> Result<u64> {
        self.ctx.keyring.classifications().rank(level)?;
        let params = BTreeMap::from([
            ("column".to_string(), column.to_string()),
            ("classification".to_string(), level.to_string()),
        ]);
        self.update_schema("CLASSIFY", params, principal, |s| {
            let name = s
                .column(column)
                .map(|c| c.name.clone())
                .ok_or_else(|| Error::InvalidSchema {
                    table: self.ident.to_string(),
                    reason: format!("no column {column:?}"),
                })?;
            let c = s.columns.iter_mut().find(|c| c.name == name).expect("found above");
            c.classification = level.to_string();
            Ok(())
        })
        .await
    }
}
