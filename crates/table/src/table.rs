//! Tables: snapshots from the log, the commit protocol, appends and overwrites.
//!
//! Commit lifecycle:
//! 1. read a snapshot at version `v`;
//! 2. stage data files (uploaded, durable, not yet referenced);
//! 3. create `_log/<v+1>.json` with create-if-absent;
//! 4. if another writer won `v+1`: read the winning commits; if one carries our token, our
//!    commit already landed; if one conflicts with what we read ([`crate::conflict`]), fail with
//!    [`Error::Conflict`] (and delete staged files); otherwise retry after the newest.
//!
//! Steps 3 and 4 are the log store's ([`LogStore`]); this module's `TableCommit` is what a
//! table commit adds to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::action::{Action, AddFile, Commit, CommitCounts, CommitInfo, Metadata, RemoveFile};
use crate::conflict::ConflictCheck;
pub use crate::conflict::ReadScope;
use crate::keyring::Keyring;
use crate::log;
use crate::logstore::{Attempt, CommitPolicy, Created, LogEntry, LogStore, carries_token};
use crate::store::Store;
use crate::write::{DataWriter, WriteOptions, WriteTarget, conform_batch, delete_files, now_ms};
use crate::{Error, Result};

/// The lake's tiers: name to store, which one holds metadata, which one receives new files.
#[derive(Clone, Debug)]
pub struct Tiers {
    stores: BTreeMap<String, Store>,
    metadata: String,
    write: String,
}

impl Tiers {
    /// Tiers from stores; `metadata` holds logs and catalog, `write` receives new data files.
    pub fn new(stores: BTreeMap<String, Store>, metadata: &str, write: &str) -> Result<Self> {
        for t in [metadata, write] {
            if !stores.contains_key(t) {
                return Err(Error::StoreConfig {
                    url: t.to_string(),
                    reason: format!("no tier named {t:?}"),
                });
            }
        }
        Ok(Self {
            stores,
            metadata: metadata.into(),
            write: write.into(),
        })
    }

    /// A single-tier lake.
    pub fn single(name: &str, store: Store) -> Self {
        Self {
            stores: BTreeMap::from([(name.to_string(), store)]),
            metadata: name.into(),
            write: name.into(),
        }
    }

    /// The store of a tier.
    pub fn get(&self, tier: &str) -> Result<&Store> {
        self.stores.get(tier).ok_or_else(|| Error::StoreConfig {
            url: tier.to_string(),
            reason: format!("no tier named {tier:?} in this lake"),
        })
    }

    /// The metadata tier's store.
    pub fn metadata(&self) -> &Store {
        &self.stores[&self.metadata]
    }

    /// Name of the tier receiving new files.
    pub fn write_tier(&self) -> &str {
        &self.write
    }

    /// All tiers.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Store)> {
        self.stores.iter()
    }
}

/// Everything a table needs from its lake.
#[derive(Clone, Debug)]
pub struct StorageContext {
    /// Tiers.
    pub tiers: Tiers,
    /// Keys.
    pub keyring: Keyring,
    /// Write a checkpoint every this many commits.
    pub checkpoint_interval: u64,
    /// Data writer options.
    pub write: WriteOptions,
    /// Checked before every commit attempt (quotas); `None` checks nothing.
    pub guard: Option<Arc<dyn CommitGuard>>,
    /// Which partitions queries read, for placement rules by time since last read.
    pub reads: Arc<crate::heat::ReadTracker>,
    /// Retries of lost races and the staging grace.
    pub commit: CommitPolicy,
}

/// What a commit is about to change, for a [`CommitGuard`].
#[derive(Clone, Debug)]
pub struct PendingCommit<'a> {
    /// The table.
    pub table: &'a TableIdent,
    /// The table's live bytes at the version the commit goes on top of.
    pub bytes_before: u64,
    /// Bytes the commit adds, minus bytes it removes.
    pub bytes_delta: i64,
    /// The operation (`APPEND`, `OVERWRITE`, ...).
    pub operation: &'a str,
}

/// A check every commit must pass before it is written (quotas). A refusal commits nothing and
/// the writer deletes its staged files.
#[async_trait::async_trait]
pub trait CommitGuard: Send + Sync + std::fmt::Debug {
    /// `Err` refuses the commit with that error.
    async fn check(&self, commit: &PendingCommit<'_>) -> Result<()>;
}

/// A table's identity in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableIdent {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl TableIdent {
    /// An identifier.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parse `table` (in namespace `default_ns`) or `namespace.table`.
    pub fn parse(s: &str, default_ns: &str) -> Result<Self> {
        let (ns, name) = match s.split_once('.') {
            Some((ns, n)) => (ns, n),
            None => (default_ns, s),
        };
        crate::names::validate_ident("namespace", ns)?;
        crate::names::validate_ident("table", name)?;
        Ok(Self::new(ns, name))
    }

    /// `namespace/name`, the table's root in every tier.
    pub fn root(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for TableIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

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
        format!("{}/_log", self.ident.root())
    }

    /// The commit that made version `v`, checked to hold that version.
    pub async fn read_commit(&self, v: u64) -> Result<Commit> {
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

    fn check_contiguous(&self, from: u64, versions: &[u64]) -> Result<()> {
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
    pub async fn snapshot(&self) -> Result<Snapshot> {
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
    pub async fn snapshot_at(&self, version: u64) -> Result<Snapshot> {
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
    pub async fn snapshot_replayed(&self, version: u64) -> Result<Snapshot> {
        let all: Vec<u64> = (0..=version).collect();
        self.replay(None, &all).await
    }

    /// The snapshot in force at `timestamp_ms`: the newest version committed at or before it.
    pub async fn snapshot_as_of(&self, timestamp_ms: i64) -> Result<Snapshot> {
        let l = log::list(self.meta_store(), &self.log_dir(), None).await?;
        for v in l.commits.iter().rev() {
            let c = self.read_commit(*v).await?;
            if c.info.timestamp_ms <= timestamp_ms {
                return self.snapshot_at(*v).await;
            }
        }
        Err(Error::TimestampBeforeHistory {
            table: self.ident.to_string(),
            timestamp: crate::write::fmt_ms(timestamp_ms),
        })
    }

    /// Every commit, newest first (at most `limit`).
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
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
    /// for at most the lake's [`CommitPolicy::retry_for`]. On failure, the caller's staged files
    /// are left for it to delete.
    pub async fn commit(
        &self,
        base: &Snapshot,
        actions: Vec<Action>,
        info: CommitInfo,
        scope: &ReadScope,
    ) -> Result<u64> {
        let mut entry = TableCommit::new(self, base, &actions, scope, info);
        self.log_store().commit(&mut entry).await
    }

    async fn write_checkpoint(&self, version: u64) -> Result<()> {
        let snap = self.snapshot_at(version).await?;
        let path = log::checkpoint_path(&self.log_dir(), version);
        self.meta_store().put(&path, log::encode(&snap)?).await?;
        let last = serde_json::to_vec(&LastCheckpoint { version }).map_err(|e| Error::Internal(e.to_string()))?;
        self.meta_store()
            .put(&format!("{}/_last_checkpoint", self.log_dir()), last.into())
            .await?;
        Ok(())
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
        quality: Option<crate::quality::QualityMetrics>,
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

/// A table commit as a [`LogEntry`]: the quota and staging-grace checks before every attempt,
/// commit times that never go backwards along the log (so `TIMESTAMP AS OF` is exact), the
/// conflict rules against every commit it lost to, and a checkpoint after it lands.
struct TableCommit<'a> {
    table: &'a Table,
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
    fn new(
        table: &'a Table,
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
                    table: &self.table.ident,
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

/// How a write relates to existing data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace the whole table.
    Overwrite,
    /// Replace the partitions the new data touches.
    OverwritePartitions,
}

impl WriteMode {
    /// The operation name in history.
    pub fn operation(self) -> &'static str {
        match self {
            WriteMode::Append => "APPEND",
            WriteMode::Overwrite => "OVERWRITE",
            WriteMode::OverwritePartitions => "OVERWRITE PARTITIONS",
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
