//! Restoring a backup into a lake: everything is fetched and checked before one catalog commit
//! publishes the restored tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use stratalake_crypto::{KeyContext, KeyId, WrappedKey, unwrap_data_key};
use stratalake_table::access::{AccessAction, AccessState, Securable};
use stratalake_table::action::{Action, AddFile, Commit};
use stratalake_table::catalog::{Catalog, RestoredTable};
use stratalake_table::{Snapshot, TableIdent};

use crate::create::{Progress, ProgressFn};
use crate::manifest::{FileRef, Manifest, TableBackup};
use crate::repo::{Repository, data_path, meta_path};
use crate::{Error, Result};

/// What to restore, and where.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Only this table of the backup (`None`: every table it holds, with the lake's principals,
    /// roles, grants and policies).
    pub table: Option<TableIdent>,
    /// Restore the table under this name (with its grants, row filters and masks).
    pub rename: Option<TableIdent>,
    /// Restore this version of the table instead of the backed-up one (needs `table`).
    pub version: Option<u64>,
    /// Drop target tables of the same names first (otherwise a non-empty target is refused).
    pub force: bool,
    /// Who restores (recorded in the target's logs).
    pub principal: String,
    /// Files fetched at once (default 4).
    pub concurrency: usize,
}

/// What a restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreSummary {
    /// The backup restored.
    pub backup: String,
    /// Each table restored: name, version, rows.
    pub tables: Vec<RestoredInfo>,
    /// Data files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The target catalog's version that published them.
    pub catalog_version: u64,
}

/// One restored table.
#[derive(Clone, Debug, Serialize)]
pub struct RestoredInfo {
    /// Name in the target.
    pub table: String,
    /// Version restored.
    pub version: u64,
    /// Rows at that version.
    pub rows: u64,
}

struct Job<'m> {
    source: &'m TableBackup,
    target: TableIdent,
    commits: Vec<Commit>,
    files: Vec<(AddFile, &'m FileRef)>,
    rows: u64,
}

impl Repository {
    /// Restore backup `id` into the lake behind `target`. Refuses a target already holding a
    /// table of the same name unless `force`; checks every object and that the target's key
    /// provider holds every master key needed before writing anything; publishes the tables in
    /// one catalog commit at the end, so a restore stopped at any point leaves nothing visible
    /// (and running it again finishes it).
    pub async fn restore(
        &self,
        id: &str,
        target: &Catalog,
        opts: RestoreOptions,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreSummary> {
        let m = self.load_manifest(id).await?;
        let problems = m.problems();
        if !problems.is_empty() {
            return Err(Error::Refused(format!(
                "backup {id} has hostile or malformed entries, refusing to restore it: {}",
                problems.join("; ")
            )));
        }
        if opts.table.is_none() && (opts.rename.is_some() || opts.version.is_some()) {
            return Err(Error::Refused(
                "a new name or a version applies to one table: name it with --table".into(),
            ));
        }
        let selected: Vec<(&TableBackup, TableIdent, u64)> = match &opts.table {
            Some(t) => {
                let tb = m.table(&t.to_string())?;
                let v = opts.version.unwrap_or(tb.version);
                if v > tb.version || v < tb.restorable_from {
                    return Err(Error::Refused(format!(
                        "backup {id} holds versions {}..={} of {t}, not version {v}",
                        tb.restorable_from, tb.version
                    )));
                }
                vec![(tb, opts.rename.clone().unwrap_or_else(|| t.clone()), v)]
            }
            None => m
                .tables
                .iter()
                .map(|t| (t, TableIdent::new(&t.namespace, &t.name), t.version))
                .collect(),
        };
        let state = target.state().await?;
        let existing: Vec<String> = selected
            .iter()
            .filter(|(_, ident, _)| state.table(ident).is_some())
            .map(|(_, ident, _)| ident.to_string())
            .collect();
        if !existing.is_empty() && !opts.force {
            return Err(Error::Refused(format!(
                "the target already holds {}; restore into an empty lake or under another name (--into), or pass --force to drop and replace",
                existing.join(", ")
            )));
        }
        if opts.table.is_none() && !opts.force {
            let others: usize = state.namespaces.values().map(|t| t.len()).sum();
            if others > 0 {
                return Err(Error::Refused(format!(
                    "the target lake is not empty ({others} table(s)); a whole-lake restore replaces its principals and policies: restore into a new lake, or pass --force"
                )));
            }
        }

        // Everything is read and checked before the target is touched.
        let mut jobs = Vec::new();
        for (tb, ident, version) in &selected {
            jobs.push(self.plan_restore(&m, tb, ident.clone(), *version).await?);
        }
        let shredded = check_keys(&jobs, target).await?;
        let (namespaces, access, mut table_access) = if opts.table.is_none() {
            let mut access = m.catalog.access.clone();
            access.shredded.extend(shredded.iter().cloned());
            // Credentials are not restored: a backup holds the passwords and tokens of its day,
            // and bringing them back would revive a token revoked or a password changed since.
            // A principal the target already has keeps the target's credentials; any other
            // comes back without a password or token (set them again after the restore).
            for (name, entry) in access.principals.iter_mut() {
                entry.credentials = state
                    .access
                    .principals
                    .get(name)
                    .map(|p| p.credentials.clone())
                    .unwrap_or_default();
            }
            (m.catalog.namespaces.keys().cloned().collect(), Some(access), Vec::new())
        } else {
            let job = &jobs[0];
            (
                vec![job.target.namespace.clone()],
                None,
                table_policies(&m.catalog.access, &state.access, job.source, &job.target)?,
            )
        };
        if opts.table.is_some() {
            for level in shredded.iter().filter(|l| !state.access.shredded.contains(*l)) {
                table_access.push(AccessAction::ShredLevel { level: level.clone() });
            }
        }

        // Replacing tables drops them first (the restored table takes their place): every
        // object the restore needs is read and checked before anything is dropped, so a
        // damaged backup leaves the target as it was.
        if !existing.is_empty() {
            let all: Vec<&(AddFile, &FileRef)> = jobs.iter().flat_map(|j| j.files.iter()).collect();
            let (files_total, bytes_total) = (all.len() as u64, all.iter().map(|f| f.0.size).sum());
            let (done_files, done_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
            futures::stream::iter(
                all.into_iter()
                    .map(|(add, fref)| {
                        let (done_files, done_bytes) = (&done_files, &done_bytes);
                        async move {
                            self.fetch_checked(add, fref).await?;
                            done_files.fetch_add(1, Ordering::Relaxed);
                            done_bytes.fetch_add(add.size, Ordering::Relaxed);
                            progress(Progress {
                                operation: "restore",
                                phase: "checking",
                                files_done: done_files.load(Ordering::Relaxed),
                                files_total,
                                bytes_done: done_bytes.load(Ordering::Relaxed),
                                bytes_total,
                                rows_done: 0,
                            });
                            Ok::<_, Error>(())
                        }
                    })
                    .collect::<Vec<_>>(),
            )
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        }
        for ident in &existing {
            let ident = TableIdent::parse(ident, "default")?;
            target.drop_table(&ident, &opts.principal).await?;
        }
        let ctx = target.context().clone();
        let tier_for = |t: &str| {
            if ctx.tiers.get(t).is_ok() {
                t.to_string()
            } else {
                ctx.tiers.write_tier().to_string()
            }
        };
        let files_total = jobs.iter().map(|j| j.files.len() as u64).sum();
        let bytes_total = jobs.iter().flat_map(|j| j.files.iter().map(|f| f.0.size)).sum();
        let (done_files, done_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
        let tick = || {
            progress(Progress {
                operation: "restore",
                phase: "restoring",
                files_done: done_files.load(Ordering::Relaxed),
                files_total,
                bytes_done: done_bytes.load(Ordering::Relaxed),
                bytes_total,
                rows_done: 0,
            })
        };
        let mut summary = RestoreSummary {
            backup: id.to_string(),
            ..Default::default()
        };
        for job in &jobs {
            let root = job.target.root();
            // Nothing the catalog lists lives here: leftovers of a stopped restore go.
            for (_, store) in ctx.tiers.iter() {
                let n = store.delete_prefix(&format!("{root}/")).await?;
                if n > 0 {
                    tracing::info!(table = %job.target, objects = n, "removed leftovers of an earlier restore");
                }
            }
            futures::stream::iter(
                job.files
                    .iter()
                    .map(|(add, fref)| {
                        let (ctx, root, tick, done_files, done_bytes) = (&ctx, &root, &tick, &done_files, &done_bytes);
                        let tier = tier_for(&add.tier);
                        async move {
                            let bytes = self.fetch_checked(add, fref).await?;
                            ctx.tiers
                                .get(&tier)?
                                .put(&format!("{root}/{}", add.path), bytes)
                                .await?;
                            done_files.fetch_add(1, Ordering::Relaxed);
                            done_bytes.fetch_add(add.size, Ordering::Relaxed);
                            tick();
                            Ok::<_, Error>(())
                        }
                    })
                    .collect::<Vec<_>>(),
            )
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
            let dir = format!("{root}/_log");
            // Each file is restored once, on the tier it was on when backed up: every action
            // of its history names that tier (moves become moves within it).
            let placed: HashMap<&str, String> = job
                .files
                .iter()
                .map(|(add, _)| (add.path.as_str(), tier_for(&add.tier)))
                .collect();
            let tier_of = |path: &str, tier: &str| placed.get(path).cloned().unwrap_or_else(|| tier_for(tier));
            for c in &job.commits {
                let c = retarget(c, &job.target, &tier_of);
                if !stratalake_table::log::try_write(ctx.tiers.metadata(), &dir, c.version, &c).await? {
                    return Err(Error::Refused(format!(
                        "{}: a log appeared at {dir} while restoring; nothing was published",
                        job.target
                    )));
                }
            }
            summary.files += job.files.len() as u64;
            summary.bytes += job.files.iter().map(|f| f.0.size).sum::<u64>();
            summary.tables.push(RestoredInfo {
                table: job.target.to_string(),
                version: job.commits.len() as u64 - 1,
                rows: job.rows,
            });
        }

        // Publish.
        let tables: Vec<RestoredTable> = jobs
            .iter()
            .map(|j| RestoredTable {
                namespace: j.target.namespace.clone(),
                name: j.target.name.clone(),
                table_id: j.source.table_id.clone(),
            })
            .collect();
        summary.catalog_version = target
            .publish_restore(namespaces, tables, access, table_access, &opts.principal)
            .await?;
        tick();
        tracing::info!(backup = %id, tables = summary.tables.len(), "restore published");
        Ok(summary)
    }

    /// One data object of a backup, read whole and checked against the sizes and hashes the
    /// manifest and the log recorded for it.
    async fn fetch_checked(&self, add: &AddFile, fref: &FileRef) -> Result<Bytes> {
        let name = data_path(&fref.sha256);
        let Some(bytes) = self.store.get_opt(&name).await? else {
            return Err(Error::Damaged {
                object: name,
                reason: "missing; nothing was published".into(),
            });
        };
        if bytes.len() as u64 != add.size
            || stratalake_crypto::hex::encode(Sha256::digest(&bytes)) != fref.sha256
            || crc32fast::hash(&bytes) != add.crc32
        {
            return Err(Error::Damaged {
                object: name,
                reason: "content does not match the backup (damaged); nothing was published".into(),
            });
        }
        Ok(bytes)
    }

    async fn plan_restore<'m>(
        &self,
        m: &'m Manifest,
        tb: &'m TableBackup,
        target: TableIdent,
        version: u64,
    ) -> Result<Job<'m>> {
        let commits: Vec<Commit> = futures::stream::iter(
            tb.commits[..=version as usize]
                .iter()
                .enumerate()
                .map(|(v, mid)| async move {
                    let name = meta_path(mid);
                    let plain = self.get_sealed(&name).await?;
                    let c: Commit = serde_json::from_slice(&plain).map_err(|e| Error::Damaged {
                        object: name.clone(),
                        reason: format!("does not parse as a log commit: {e}"),
                    })?;
                    if c.version != v as u64 {
                        return Err(Error::Damaged {
                            object: name,
                            reason: format!("holds version {} where {v} is expected", c.version),
                        });
                    }
                    Ok(c)
                })
                .collect::<Vec<_>>(),
        )
        .buffered(16)
        .try_collect()
        .await?;
        let snap = Snapshot::replay(&commits, &format!("backup {} table {}", m.id, tb.ident()))?;
        if snap.metadata.table_id != tb.table_id {
            return Err(Error::Damaged {
                object: format!("backup {} table {}", m.id, tb.ident()),
                reason: "log belongs to another table".into(),
            });
        }
        let by_path: HashMap<&str, &FileRef> = tb.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut files = Vec::with_capacity(snap.files.len());
        for add in snap.files.values() {
            crate::manifest::check_file_path(&add.path).map_err(|reason| Error::Damaged {
                object: format!("backup {} table {}", m.id, tb.ident()),
                reason,
            })?;
            let fref = by_path.get(add.path.as_str()).ok_or_else(|| {
                Error::Refused(format!(
                    "version {version} of {} needs file {} that backup {} does not hold (it holds versions {}..={})",
                    tb.ident(),
                    add.path,
                    m.id,
                    tb.restorable_from,
                    tb.version
                ))
            })?;
            if fref.size != add.size || fref.crc32 != add.crc32 {
                return Err(Error::Damaged {
                    object: format!("backup {} table {}", m.id, tb.ident()),
                    reason: format!("file {} differs between the log and the manifest", add.path),
                });
            }
            files.push((add.clone(), *fref));
        }
        Ok(Job {
            source: tb,
            target,
            rows: snap.rows(),
            commits,
            files,
        })
    }
}

/// Every master key version the restored files need must open with the target's provider:
/// one wrapped key per version is unwrapped to prove it. Returns the levels found shredded
/// (every version destroyed): their columns stay unreadable, and the target records them.
async fn check_keys(jobs: &[Job<'_>], target: &Catalog) -> Result<BTreeSet<String>> {
    let mut shredded_levels = BTreeSet::new();
    let mut probes: BTreeMap<KeyId, (String, WrappedKey, KeyContext)> = BTreeMap::new();
    for j in jobs {
        for (add, _) in &j.files {
            let ctx = |role: &str| KeyContext {
                table_id: j.source.table_id.clone(),
                file: add.path.clone(),
                role: role.to_string(),
            };
            probes
                .entry(add.keys.footer.key.clone())
                .or_insert_with(|| (j.source.ident(), add.keys.footer.clone(), ctx("footer")));
            for g in &add.keys.groups {
                probes
                    .entry(g.key.key.clone())
                    .or_insert_with(|| (j.source.ident(), g.key.clone(), ctx(&g.classification)));
            }
        }
    }
    let provider = target.context().keyring.provider();
    for (kid, (table, wrapped, ctx)) in probes {
        let opened = unwrap_data_key(provider.as_ref(), &wrapped, &ctx).await.map(|_| ());
        if let Err(e) = opened {
            let shredded = matches!(e, stratalake_crypto::Error::KeyDestroyed { .. })
                && matches!(
                    provider.current_id(&kid.classification).await,
                    Err(stratalake_crypto::Error::KeyDestroyed { .. })
                );
            if shredded {
                // Crypto-shredded: those columns stay unreadable in the restored table too.
                tracing::warn!(key = %kid, table = %table, "restoring data whose master key was destroyed; those columns stay unreadable");
                shredded_levels.insert(kid.classification.clone());
                continue;
            }
            return Err(Error::Refused(format!(
                "restoring {table} needs master key {kid}, which the target's key provider ({}) cannot supply: {e}; nothing was restored",
                provider.describe()
            )));
        }
    }
    Ok(shredded_levels)
}

/// The commit as the target stores it: each file's tier mapped by `tier_of(path, tier)`, its
/// metadata renamed.
fn retarget(c: &Commit, target: &TableIdent, tier_of: &dyn Fn(&str, &str) -> String) -> Commit {
    let mut c = c.clone();
    for a in &mut c.actions {
        match a {
            Action::Add(f) => f.tier = tier_of(&f.path, &f.tier),
            Action::Remove(r) => r.tier = tier_of(&r.path, &r.tier),
            Action::Move(m) => {
                m.from = tier_of(&m.path, &m.from);
                m.to = m.from.clone();
            }
            Action::Rekey(_) => {}
            Action::Metadata(md) => {
                md.namespace = target.namespace.clone();
                md.name = target.name.clone();
            }
        }
    }
    c
}

/// Grants, row filters and masks of the backed-up table, for the restored one, limited to
/// grantees the target knows (a filter or mask for an unknown grantee restricts nobody who can
/// log in, and a grant to one gives nothing).
fn table_policies(
    backup: &AccessState,
    target: &AccessState,
    source: &TableBackup,
    ident: &TableIdent,
) -> Result<Vec<AccessAction>> {
    let known = |g: &str| target.principals.contains_key(g) || target.roles.contains_key(g);
    let key = source.ident();
    let new_key = ident.to_string();
    let mut out = Vec::new();
    for g in &backup.grants {
        if let Securable::Table { namespace, name } = &g.on
            && *namespace == source.namespace
            && *name == source.name
            && known(&g.grantee)
        {
            let mut g = g.clone();
            g.on = Securable::Table {
                namespace: ident.namespace.clone(),
                name: ident.name.clone(),
            };
            out.push(AccessAction::Grant(g));
        }
    }
    // Filters and masks are never dropped: a table restored without one of them would show
    // more than it did.
    let mut missing = BTreeSet::new();
    if let Some(filters) = backup.row_filters.get(&key) {
        for (name, f) in filters {
            if !known(&f.grantee) {
                missing.insert(format!("row filter {name} applies to {}", f.grantee));
            }
            out.push(AccessAction::SetRowFilter {
                table: new_key.clone(),
                name: name.clone(),
                filter: f.clone(),
            });
        }
    }
    if let Some(cols) = backup.masks.get(&key) {
        for (column, by) in cols {
            for (grantee, mask) in by {
                if !known(grantee) {
                    missing.insert(format!("the mask of column {column} applies to {grantee}"));
                }
                out.push(AccessAction::SetMask {
                    table: new_key.clone(),
                    column: column.clone(),
                    grantee: grantee.clone(),
                    mask: mask.clone(),
                });
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::Refused(format!(
            "{key}'s policies name principals or roles the target lake lacks ({}); create them first, nothing was published",
            missing.into_iter().collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(out)
}
