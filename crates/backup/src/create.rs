//! Taking a backup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use stratalake_table::action::{Action, AddFile, Commit};
use stratalake_table::catalog::Catalog;
use stratalake_table::read::fetch_checked;
use stratalake_table::{Table, TableIdent};

use crate::manifest::{FileRef, MANIFEST_FORMAT, Manifest, TableBackup, Totals};
use crate::repo::{Repository, data_path, meta_path, snapshot_path};
use crate::{Error, Result};

/// What to back up.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Only these tables (`None`: every table of the lake).
    pub tables: Option<Vec<TableIdent>>,
    /// Who takes the backup (recorded in the manifest).
    pub principal: String,
    /// Files copied at once (default 4).
    pub concurrency: usize,
}

pub use stratalake_table::progress::{Progress, ProgressFn};

/// Identity of a lake file: paths are never reused, so this names its content.
type FileIdentity = (String, String, u64, u32);

/// What the repository already holds, from the manifests of earlier backups.
#[derive(Default)]
struct Known {
    files: HashMap<FileIdentity, String>,
    meta: HashSet<String>,
    data: HashMap<String, u64>,
}

fn backup_id() -> Result<String> {
    let mut r = [0u8; 3];
    stratalake_crypto::random_bytes(&mut r)?;
    Ok(format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
        stratalake_crypto::hex::encode(r)
    ))
}

impl Repository {
    /// Every backup's id with its manifest, or the reason it cannot be opened, oldest first.
    pub async fn manifests(&self) -> Result<Vec<(String, Result<Manifest>)>> {
        let mut names: Vec<String> = self
            .store
            .list("snapshots")
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        let loaded = futures::stream::iter(names.into_iter().map(|name| async move {
            let id = name.trim_start_matches("snapshots/").to_string();
            let m = self.load_manifest(&id).await;
            (id, m)
        }))
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
        Ok(loaded)
    }

    /// Open one backup's manifest, checking its authenticity.
    pub async fn load_manifest(&self, id: &str) -> Result<Manifest> {
        let name = snapshot_path(id);
        let raw = match self.store.get_opt(&name).await? {
            Some(r) => r,
            None => return Err(Error::BackupNotFound(id.to_string())),
        };
        let plain = self.open_sealed(&name, &raw)?;
        let m: Manifest = serde_json::from_slice(&plain).map_err(|e| Error::Damaged {
            object: name.clone(),
            reason: format!("manifest does not parse: {e}"),
        })?;
        if m.id != id {
            return Err(Error::Damaged {
                object: name,
                reason: format!("holds the manifest of backup {}", m.id),
            });
        }
        Ok(m)
    }

    async fn known(&self) -> Result<Known> {
        let mut k = Known::default();
        for (id, m) in self.manifests().await? {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(backup = %id, error = %e, "skipping a damaged manifest; run `backup verify`");
                    continue;
                }
            };
            for t in &m.tables {
                k.meta.extend(t.commits.iter().cloned());
                for f in &t.files {
                    k.files
                        .insert((t.table_id.clone(), f.path.clone(), f.size, f.crc32), f.sha256.clone());
                }
            }
        }
        for (name, meta) in self.store.list("data").await? {
            if let Some(sha) = name.rsplit('/').next() {
                k.data.insert(sha.to_string(), meta.size);
            }
        }
        Ok(k)
    }

    /// Take a backup of the lake behind `catalog`: each table consistent with its version when
    /// the backup reached it, while writers keep writing. Files already in the repository are
    /// not copied again. The backup exists once its manifest is written, last.
    pub async fn create(&self, catalog: &Catalog, opts: BackupOptions, progress: ProgressFn<'_>) -> Result<Manifest> {
        let lock = self.lock("backup", false).await?;
        let r = self.create_locked(catalog, opts, progress).await;
        lock.release_after(r).await
    }

    async fn create_locked(
        &self,
        catalog: &Catalog,
        opts: BackupOptions,
        progress: ProgressFn<'_>,
    ) -> Result<Manifest> {
        let id = backup_id()?;
        let state = catalog.state().await?;
        let idents: Vec<TableIdent> = match &opts.tables {
            Some(t) => t.clone(),
            None => state
                .namespaces
                .iter()
                .flat_map(|(ns, tables)| tables.keys().map(move |t| TableIdent::new(ns, t)))
                .collect(),
        };
        let known = self.known().await?;
        let concurrency = opts.concurrency.max(1);
        let mut totals = Totals::default();
        let mut plans = Vec::new();
        for ident in &idents {
            let table = catalog.table(ident).await?;
            let plan = self.plan_table(&table, &known).await?;
            totals.files += plan.files.len() as u64;
            totals.bytes += plan.files.iter().map(|(f, _)| f.size).sum::<u64>();
            plans.push((table, plan));
        }
        let bytes_total: u64 = plans
            .iter()
            .flat_map(|(_, p)| p.files.iter().filter(|(_, k)| k.is_none()).map(|(f, _)| f.size))
            .sum();
        let files_total: u64 = plans
            .iter()
            .map(|(_, p)| p.files.iter().filter(|(_, k)| k.is_none()).count() as u64)
            .sum();
        let done_files = AtomicU64::new(0);
        let done_bytes = AtomicU64::new(0);
        let new_files = AtomicU64::new(0);
        let new_bytes = AtomicU64::new(0);
        let report = |phase| {
            progress(Progress {
                operation: "backup",
                phase,
                files_done: done_files.load(Ordering::Relaxed),
                files_total,
                bytes_done: done_bytes.load(Ordering::Relaxed),
                bytes_total,
                ..Default::default()
            })
        };
        report("copying");
        let data_present: Arc<HashMap<String, u64>> = Arc::new(known.data);
        let mut tables = Vec::new();
        for (table, plan) in plans {
            let mut meta_written = 0u64;
            // Log commits: sealed, deduplicated by keyed id.
            let mut commit_ids = Vec::with_capacity(plan.commits.len());
            for c in &plan.commits {
                let plain = serde_json::to_vec(c).map_err(|e| stratalake_table::Error::Internal(e.to_string()))?;
                let mid = self.meta_id(&plain);
                if !known.meta.contains(&mid) {
                    let name = meta_path(&mid);
                    if self.store.get_opt(&name).await?.is_none() {
                        self.store.put(&name, self.seal(&name, &plain)?).await?;
                        meta_written += 1;
                    }
                }
                commit_ids.push(mid);
            }
            totals.new_meta += meta_written;
            let root = table.ident().root();
            let ctx = table.context().clone();
            let refs: Vec<FileRef> = futures::stream::iter(plan.files.into_iter().map(|(add, known_sha)| {
                let root = root.clone();
                let ctx = ctx.clone();
                let present = data_present.clone();
                let (done_files, done_bytes, new_files, new_bytes, report) =
                    (&done_files, &done_bytes, &new_files, &new_bytes, &report);
                async move {
                    if let Some(sha) = known_sha
                        && present.get(&sha) == Some(&add.size)
                    {
                        return Ok::<_, Error>(FileRef {
                            path: add.path,
                            size: add.size,
                            crc32: add.crc32,
                            sha256: sha,
                        });
                    }
                    let store = ctx.tiers.get(&add.tier)?;
                    let bytes = fetch_checked(store, &root, &add).await?;
                    let sha = stratalake_crypto::hex::encode(Sha256::digest(&bytes));
                    if present.get(&sha) != Some(&add.size) {
                        self.store.put(&data_path(&sha), bytes).await?;
                        new_files.fetch_add(1, Ordering::Relaxed);
                        new_bytes.fetch_add(add.size, Ordering::Relaxed);
                    }
                    done_files.fetch_add(1, Ordering::Relaxed);
                    done_bytes.fetch_add(add.size, Ordering::Relaxed);
                    report("copying");
                    Ok(FileRef {
                        path: add.path,
                        size: add.size,
                        crc32: add.crc32,
                        sha256: sha,
                    })
                }
            }))
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
            let mut refs = refs;
            refs.sort_by(|a, b| a.path.cmp(&b.path));
            tables.push(TableBackup {
                namespace: table.ident().namespace.clone(),
                name: table.ident().name.clone(),
                table_id: table.id().to_string(),
                version: plan.version,
                restorable_from: plan.restorable_from,
                rows: plan.rows,
                commits: commit_ids,
                files: refs,
            });
        }
        totals.tables = tables.len() as u64;
        totals.new_files = new_files.load(Ordering::Relaxed);
        totals.new_bytes = new_bytes.load(Ordering::Relaxed);
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            id: id.clone(),
            created_ms: stratalake_table::write::now_ms(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            principal: opts.principal.clone(),
            whole_lake: opts.tables.is_none(),
            catalog: state,
            tables,
            totals,
        };
        let name = snapshot_path(&id);
        let plain = serde_json::to_vec(&manifest).map_err(|e| stratalake_table::Error::Internal(e.to_string()))?;
        // The backup exists once this object does: an answer lost on the way is read back (a
        // sealed body is unique), and an outcome that stays unknown says so.
        let sealed = self.seal(&name, &plain)?;
        let created = stratalake_table::logstore::create(&self.store, &name, sealed.clone(), |found| {
            Some(found == sealed.as_ref())
        })
        .await?;
        if matches!(created, stratalake_table::logstore::Created::Theirs(_)) {
            return Err(Error::Repository {
                repo: self.store.url().to_string(),
                reason: format!("backup id {id} is taken"),
            });
        }
        report("done");
        tracing::info!(backup = %id, files = manifest.totals.files, new_bytes = manifest.totals.new_bytes, "backup created");
        Ok(manifest)
    }

    /// Which commits and files of `table` a backup holds.
    async fn plan_table(&self, table: &Table, known: &Known) -> Result<TablePlan> {
        let snap = table.snapshot().await?;
        let version = snap.version;
        let commits: Vec<Commit> = futures::stream::iter((0..=version).map(|v| table.read_commit(v)))
            .buffered(16)
            .try_collect()
            .await?;
        // Lifetime of every file ever added: [added, removed).
        let mut life: BTreeMap<String, (AddFile, u64, Option<u64>)> = BTreeMap::new();
        for c in &commits {
            for a in &c.actions {
                match a {
                    Action::Add(f) => {
                        life.insert(f.path.clone(), (f.clone(), c.version, None));
                    }
                    Action::Remove(r) => {
                        if let Some(e) = life.get_mut(&r.path) {
                            e.2 = Some(c.version);
                        }
                    }
                    // The file is copied from the tier that holds it last.
                    Action::Move(m) => {
                        if let Some(e) = life.get_mut(&m.path) {
                            e.0.tier = m.to.clone();
                        }
                    }
                    Action::Metadata(_) | Action::Rekey(_) => {}
                }
            }
        }
        // Which files still exist: one listing per tier.
        let root = table.ident().root();
        let mut present: HashSet<(String, String)> = HashSet::new();
        for (tier, store) in table.context().tiers.iter() {
            for (rel, _) in store.list(&format!("{root}/data")).await? {
                if let Some(p) = rel.strip_prefix(&format!("{root}/")) {
                    present.insert((tier.clone(), p.to_string()));
                }
            }
        }
        let mut restorable_from = 0u64;
        for (path, (add, _, removed)) in &life {
            if present.contains(&(add.tier.clone(), path.clone())) {
                continue;
            }
            match removed {
                None => {
                    return Err(Error::Refused(format!(
                        "table {}: live file {path} is missing from tier {}; run `stratalake verify` and repair the table before backing it up",
                        table.ident(),
                        add.tier
                    )));
                }
                Some(r) => restorable_from = restorable_from.max(*r),
            }
        }
        let files = life
            .into_values()
            .filter(|(_, _, removed)| removed.is_none_or(|r| r > restorable_from))
            .map(|(add, _, _)| {
                let k = known
                    .files
                    .get(&(table.id().to_string(), add.path.clone(), add.size, add.crc32))
                    .cloned();
                (add, k)
            })
            .collect();
        Ok(TablePlan {
            version,
            restorable_from,
            rows: snap.rows(),
            commits,
            files,
        })
    }
}

struct TablePlan {
    version: u64,
    restorable_from: u64,
    rows: u64,
    commits: Vec<Commit>,
    /// Each file with its sha256 when an earlier backup already holds it.
    files: Vec<(AddFile, Option<String>)>,
}

impl Repository {
    /// Seal and store `m` as backup `m.id` without any check. For tests of `verify` and
    /// `restore` against hostile manifests (whoever holds the repository key could do the same).
    #[doc(hidden)]
    pub async fn put_manifest_unchecked(&self, m: &Manifest) -> Result<()> {
        let name = snapshot_path(&m.id);
        let plain = serde_json::to_vec(m).map_err(|e| stratalake_table::Error::Internal(e.to_string()))?;
        self.store.put(&name, self.seal(&name, &plain)?).await?;
        Ok(())
    }
}
