//! The mover: copy, verify, commit, and — after the retention window — delete the old copy.
//!
//! For each planned file: copy it to the target tier as it is (ciphertext: nothing is decrypted
//! or re-encrypted), check the copy's size and crc32 against the log, then record the moves of a
//! table in one `MOVE` commit (in batches, so a long run keeps what it did). The old copy stays
//! until the move is older than the move retention, so a query holding an older snapshot still
//! finds its files; every run deletes the old copies whose window has passed.
//!
//! A stop at any point leaves every row readable exactly once: before the commit the log still
//! names the old tier (the new copy is an unreferenced object that a rerun overwrites or vacuum
//! removes); after it, the new tier. A rerun plans again from the log and finishes the job.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use stratalake_table::action::{AddFile, MoveFile};
use stratalake_table::{Snapshot, StorageContext, Store, Table};

use crate::plan::{Plan, PlannedMove};
use crate::{Error, Result};

pub use stratalake_table::progress::Progress;

/// Called as files finish copying (operation `tier run`, phase `copying`).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How to run moves.
#[derive(Clone)]
pub struct MoveOptions {
    /// Files copied at once.
    pub concurrency: usize,
    /// Bytes per second over all copies, if limited.
    pub bandwidth: Option<u64>,
    /// Old copies of moves older than this are deleted at the end of the run.
    pub retention_ms: i64,
    /// Who moves (in the log's commit info).
    pub principal: String,
    /// Files per `MOVE` commit.
    pub batch: usize,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for MoveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveOptions")
            .field("concurrency", &self.concurrency)
            .field("bandwidth", &self.bandwidth)
            .field("retention_ms", &self.retention_ms)
            .field("principal", &self.principal)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            bandwidth: None,
            retention_ms: 3_600_000,
            principal: "stratalake".into(),
            batch: 256,
            progress: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MoveReport {
    /// Files moved (copied, verified and committed).
    pub files_moved: u64,
    /// Bytes moved.
    pub bytes_moved: u64,
    /// Planned files that had changed meanwhile (removed, or moved by someone else): not moved.
    pub files_skipped: u64,
    /// `MOVE` commits written.
    pub commits: u64,
    /// Old copies deleted because their retention had passed.
    pub old_copies_deleted: u64,
    /// Their bytes.
    pub old_copy_bytes: u64,
    /// Wall time of the copies and commits, seconds.
    pub seconds: f64,
}

impl MoveReport {
    /// Copy throughput, bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes_moved as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A shared bandwidth budget: callers are delayed so the average rate stays under the limit.
#[derive(Debug)]
struct Limiter {
    rate: Option<u64>,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Limiter {
    fn new(rate: Option<u64>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0),
            state: Mutex::new((None, 0)),
        }
    }

    /// How long to wait before sending `n` more bytes.
    fn delay_for(&self, n: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let mut s = self.state.lock().expect("limiter");
        let start = *s.0.get_or_insert_with(Instant::now);
        s.1 += n;
        let due = Duration::from_secs_f64(s.1 as f64 / rate as f64);
        due.saturating_sub(start.elapsed())
    }
}

fn mismatch(tier: &str, f: &AddFile, size: u64, crc: u32, what: &str) -> Error {
    Error::Table(stratalake_table::Error::CorruptData {
        path: f.path.clone(),
        reason: format!(
            "{what} on tier {tier} does not match the log ({size} bytes, crc32 {crc:08x}; the log says {} bytes, crc32 {:08x}); not moved",
            f.size, f.crc32
        ),
    })
}

/// Copy one file between local folders, streaming, with crc32 checked on the bytes read and
/// again on the copy read back; the copy appears under its name only when whole and synced.
fn copy_local(
    src: &std::path::Path,
    dst: &std::path::Path,
    from: &str,
    to: &str,
    f: &AddFile,
    limiter: &Limiter,
) -> Result<()> {
    let io = |p: &std::path::Path, e: std::io::Error| {
        Error::Table(stratalake_table::Error::Io {
            path: p.display().to_string(),
            source: e,
        })
    };
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let tmp = dst.with_extension(format!("{}.moving", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut r = std::fs::File::open(src).map_err(|e| io(src, e))?;
        let mut w = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut buf = vec![0u8; 4 << 20];
        let mut h = crc32fast::Hasher::new();
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).map_err(|e| io(src, e))?;
            if k == 0 {
                break;
            }
            std::thread::sleep(limiter.delay_for(k as u64));
            h.update(&buf[..k]);
            w.write_all(&buf[..k]).map_err(|e| io(&tmp, e))?;
            n += k as u64;
        }
        let crc = h.finalize();
        if n != f.size || crc != f.crc32 {
            return Err(mismatch(from, f, n, crc, "the source copy"));
        }
        w.sync_all().map_err(|e| io(&tmp, e))?;
        drop(w);
        // Read the copy back: what the target holds is what the log says.
        let mut r = std::fs::File::open(&tmp).map_err(|e| io(&tmp, e))?;
        let mut h = crc32fast::Hasher::new();
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).map_err(|e| io(&tmp, e))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        let crc = h.finalize();
        if n != f.size || crc != f.crc32 {
            return Err(mismatch(to, f, n, crc, "the copy"));
        }
        std::fs::rename(&tmp, dst).map_err(|e| io(dst, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copy one file of `root` from `src` to `dst` and verify it against its log entry.
async fn copy_file(
    src: &Store,
    dst: &Store,
    from: &str,
    to: &str,
    root: &str,
    f: &AddFile,
    limiter: Option<&Arc<Limiter>>,
) -> Result<()> {
    let rel = format!("{root}/{}", f.path);
    let no_limit = Arc::new(Limiter::new(None));
    let limiter = limiter.cloned().unwrap_or(no_limit);
    if let (Some(sd), Some(dd)) = (src.local_dir(), dst.local_dir()) {
        let (s, d) = (sd.join(&rel), dd.join(&rel));
        let (from, to, f2) = (from.to_string(), to.to_string(), f.clone());
        tokio::task::spawn_blocking(move || copy_local(&s, &d, &from, &to, &f2, &limiter))
            .await
            .map_err(|e| Error::Table(stratalake_table::Error::Internal(format!("copy task: {e}"))))??;
        dst.sync_file(&rel).await?;
        return Ok(());
    }
    let data = src.get(&rel).await?;
    tokio::time::sleep(limiter.delay_for(data.len() as u64)).await;
    let crc = crc32fast::hash(&data);
    if data.len() as u64 != f.size || crc != f.crc32 {
        return Err(mismatch(from, f, data.len() as u64, crc, "the source copy"));
    }
    dst.put(&rel, data).await?;
    let back = dst.get(&rel).await?;
    let crc = crc32fast::hash(&back);
    if back.len() as u64 != f.size || crc != f.crc32 {
        return Err(mismatch(to, f, back.len() as u64, crc, "the copy"));
    }
    Ok(())
}

/// Take the lake's mover lock (refused while another mover or a vacuum runs).
pub async fn lock(ctx: &StorageContext, kind: &str) -> Result<stratalake_table::lock::LockGuard> {
    let conflicts = |other: &str| matches!(other, "mover" | "vacuum");
    match stratalake_table::lock::take(ctx.tiers.metadata(), "_locks", kind, conflicts).await? {
        Ok(g) => Ok(g),
        Err(held) => Err(Error::Locked {
            holder: held.lock.describe(),
            hint: format!(
                "retry when it has finished, or delete _locks/{} on the metadata tier if that process is gone",
                held.path.rsplit('/').next().unwrap_or_default()
            ),
        }),
    }
}

/// Run `plan` over `tables` (by `namespace.table`), then delete old copies whose retention has
/// passed in every table of `tables`. Takes the mover lock for the whole run.
pub async fn run(
    ctx: &Arc<StorageContext>,
    tables: &BTreeMap<String, Table>,
    plan: &Plan,
    opts: &MoveOptions,
) -> Result<MoveReport> {
    let guard = lock(ctx, "mover").await?;
    let result = run_locked(ctx, tables, plan, opts).await;
    guard.release_after(result).await
}

async fn run_locked(
    ctx: &Arc<StorageContext>,
    tables: &BTreeMap<String, Table>,
    plan: &Plan,
    opts: &MoveOptions,
) -> Result<MoveReport> {
    let started = Instant::now();
    let mut report = MoveReport::default();
    let limiter = Arc::new(Limiter::new(opts.bandwidth));
    let total = Progress {
        operation: "tier run",
        phase: "copying",
        files_total: plan.moves.len() as u64,
        bytes_total: plan.bytes(),
        ..Default::default()
    };
    let (files_done, bytes_done) = (AtomicU64::new(0), AtomicU64::new(0));
    let tick = |f: u64, b: u64| {
        let files = files_done.fetch_add(f, Ordering::Relaxed) + f;
        let bytes = bytes_done.fetch_add(b, Ordering::Relaxed) + b;
        if let Some(p) = &opts.progress {
            p(Progress {
                files_done: files,
                bytes_done: bytes,
                ..total
            });
        }
    };
    // Once a move is committed, a later failure must say so: the commits stand.
    let r =
        async {
            let mut by_table: BTreeMap<&str, Vec<&PlannedMove>> = BTreeMap::new();
            for m in &plan.moves {
                by_table.entry(m.table.as_str()).or_default().push(m);
            }
            for (name, moves) in by_table {
                let table = tables.get(name).ok_or_else(|| {
                    Error::Table(stratalake_table::Error::TableNotFound(format!(
                        "{name} (planned, then dropped)"
                    )))
                })?;
                for chunk in moves.chunks(opts.batch.max(1)) {
                    let snap = table.snapshot().await?;
                    let mut todo = Vec::new();
                    for m in chunk {
                        match snap.files.get(&m.path) {
                            Some(f) if f.tier == m.from => todo.push((*m, f.clone())),
                            _ => {
                                report.files_skipped += 1;
                                tick(1, m.bytes);
                            }
                        }
                    }
                    let root = table.ident().root();
                    let copied: Vec<(&PlannedMove, AddFile, i64)> =
                    futures::stream::iter(todo.into_iter().map(|(m, f)| {
                        let (root, limiter, tick) = (&root, &limiter, &tick);
                        async move {
                            let src = ctx.tiers.get(&m.from)?;
                            let dst = ctx.tiers.get(&m.to)?;
                            let started = stratalake_table::write::now_ms();
                            copy_file(src, dst, &m.from, &m.to, root, &f, Some(limiter)).await?;
                            tracing::debug!(table = %m.table, file = %m.path, from = %m.from, to = %m.to, "copied");
                            tick(1, f.size);
                            Ok::<_, Error>((m, f, started))
                        }
                    }).collect::<Vec<_>>())
                    .buffer_unordered(opts.concurrency.max(1))
                    .try_collect()
                    .await?;
                    if copied.is_empty() {
                        continue;
                    }
                    let (n, bytes, v) = commit_batch(table, snap, &copied, &opts.principal).await?;
                    report.files_moved += n;
                    report.bytes_moved += bytes;
                    report.files_skipped += copied.len() as u64 - n;
                    if n > 0 {
                        report.commits += 1;
                        tracing::info!(table = %table.ident(), version = v, files = n, bytes, "moved");
                    }
                }
            }
            report.seconds = started.elapsed().as_secs_f64();
            let now = stratalake_table::write::now_ms();
            for table in tables.values() {
                let r = stratalake_table::vacuum::clean_moved_copies(table, opts.retention_ms, now, false).await?;
                report.old_copies_deleted += r.moved_copies;
                report.old_copy_bytes += r.bytes;
            }
            Ok::<_, Error>(())
        }
        .await;
    match r {
        Ok(()) => Ok(report),
        Err(e) if report.commits > 0 => Err(Error::PartlyDone {
            done: format!("{} file(s) moved in {} commit(s)", report.files_moved, report.commits),
            source: Box::new(e),
        }),
        Err(e) => Err(e),
    }
}

/// Commit the copied moves; on a conflict, drop the files that changed meanwhile and commit the
/// rest. Copies no commit references are left to vacuum, which knows whether an older snapshot
/// still needs an object at that place. Returns (files, bytes, version).
async fn commit_batch(
    table: &Table,
    mut snap: Snapshot,
    copied: &[(&PlannedMove, AddFile, i64)],
    principal: &str,
) -> Result<(u64, u64, u64)> {
    let mut live: Vec<&(&PlannedMove, AddFile, i64)> = copied.iter().collect();
    for _ in 0..8 {
        live.retain(|(m, _, _)| snap.files.get(&m.path).is_some_and(|f| f.tier == m.from));
        if live.is_empty() {
            break;
        }
        let moves: Vec<MoveFile> = live
            .iter()
            .map(|(m, _, started)| MoveFile {
                path: m.path.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                reason: m.reason.clone(),
                copied_ms: Some(*started),
            })
            .collect();
        let bytes: u64 = live.iter().map(|(_, f, _)| f.size).sum();
        let mut reasons: Vec<&str> = live.iter().map(|(m, _, _)| m.reason.as_str()).collect();
        reasons.sort();
        reasons.dedup();
        let params = BTreeMap::from([
            ("files".to_string(), live.len().to_string()),
            ("bytes".to_string(), bytes.to_string()),
            ("reason".to_string(), reasons.join("; ")),
        ]);
        match table.commit_moves(&snap, moves, principal, params).await {
            Ok(v) => return Ok((live.len() as u64, bytes, v)),
            Err(stratalake_table::Error::Conflict { reason, .. }) => {
                tracing::info!(table = %table.ident(), %reason, "move raced another commit; retrying without the changed files");
                snap = table.snapshot().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((0, 0, snap.version))
}
