//! Checking a repository: manifests' authenticity, every object's presence, size and content.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use stratalake_table::action::Commit;

use crate::Result;
use crate::create::{Progress, ProgressFn};
use crate::repo::{Repository, data_path, meta_path, snapshot_path};

/// One damaged thing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The repository object (e.g. `data/ab/ab12...`, `snapshots/<id>`).
    pub object: String,
    /// What is wrong.
    pub problem: String,
    /// Backups that need the object.
    pub backups: Vec<String>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Backups whose manifest opened.
    pub backups: u64,
    /// Objects checked.
    pub objects: u64,
    /// Bytes read back (with `read_data`).
    pub bytes_read: u64,
    /// Problems, each naming an object.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Backups that cannot be restored in full.
    pub fn damaged_backups(&self) -> BTreeSet<String> {
        self.problems.iter().flat_map(|p| p.backups.iter().cloned()).collect()
    }
}

struct DataRef {
    size: u64,
    crc32: u32,
    backups: BTreeSet<String>,
}

impl Repository {
    /// Check every backup: each manifest must be authentic and sound, and every object it names
    /// present with the right size; metadata objects are always opened and parsed. With
    /// `read_data`, every data object is read back and its sha256 and crc32 recomputed.
    pub async fn verify(&self, read_data: bool, progress: ProgressFn<'_>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut problems: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        let mut note = |object: String, problem: String, backup: Option<&str>| {
            let e = problems.entry(object).or_insert_with(|| (problem, BTreeSet::new()));
            if let Some(b) = backup {
                e.1.insert(b.to_string());
            }
        };
        let listing: HashMap<String, u64> = self
            .store
            .list("")
            .await?
            .into_iter()
            .map(|(n, m)| (n, m.size))
            .collect();
        let mut data: BTreeMap<String, DataRef> = BTreeMap::new();
        let mut meta: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
        for (id, m) in self.manifests().await? {
            report.objects += 1;
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    note(snapshot_path(&id), strip_object(&e.to_string()), Some(&id));
                    continue;
                }
            };
            report.backups += 1;
            for p in m.problems() {
                note(
                    snapshot_path(&id),
                    format!("hostile or malformed entry: {p}"),
                    Some(&id),
                );
            }
            for t in &m.tables {
                for (v, c) in t.commits.iter().enumerate() {
                    let e = meta.entry(c.clone()).or_default();
                    e.0.insert(id.clone());
                    e.1 = v as u64;
                }
                for f in &t.files {
                    let e = data.entry(f.sha256.clone()).or_insert_with(|| DataRef {
                        size: f.size,
                        crc32: f.crc32,
                        backups: BTreeSet::new(),
                    });
                    e.backups.insert(id.clone());
                }
            }
        }
        let total_objects = (data.len() + meta.len()) as u64;
        let total_bytes: u64 = if read_data {
            data.values().map(|d| d.size).sum()
        } else {
            0
        };
        let done = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let tick = || {
            progress(Progress {
                operation: "backup verify",
                phase: "verifying",
                files_done: done.load(Ordering::Relaxed),
                files_total: total_objects,
                bytes_done: bytes.load(Ordering::Relaxed),
                bytes_total: total_bytes,
                rows_done: 0,
            })
        };
        // Metadata objects: opened (authenticity) and parsed as the commit they should be.
        let meta_results: Vec<(String, Option<String>)> = futures::stream::iter(meta.iter().map(|(mid, (_, v))| {
            let (done, tick) = (&done, &tick);
            async move {
                let name = meta_path(mid);
                let r = match self.get_sealed(&name).await {
                    Ok(plain) => match serde_json::from_slice::<Commit>(&plain) {
                        Ok(c) if c.version == *v => None,
                        Ok(c) => Some(format!("holds version {} where version {v} is expected", c.version)),
                        Err(e) => Some(format!("does not parse as a log commit: {e}")),
                    },
                    Err(e) => Some(strip_object(&e.to_string())),
                };
                done.fetch_add(1, Ordering::Relaxed);
                tick();
                (name, r)
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
        for (name, r) in meta_results {
            report.objects += 1;
            if let Some(p) = r {
                let mid = name.rsplit('/').next().unwrap_or_default().to_string();
                let backups = meta.get(&mid).map(|m| m.0.clone()).unwrap_or_default();
                for b in &backups {
                    note(name.clone(), p.clone(), Some(b));
                }
            }
        }
        // Data objects.
        let data_results: Vec<(String, Option<String>)> = futures::stream::iter(data.iter().map(|(sha, d)| {
            let (done, bytes, tick, listing) = (&done, &bytes, &tick, &listing);
            async move {
                let name = data_path(sha);
                let r = match listing.get(&name) {
                    None => Some("missing".to_string()),
                    Some(size) if *size != d.size => Some(format!("size is {size} bytes, the backup says {}", d.size)),
                    Some(_) if !read_data => None,
                    Some(_) => match self.store.get(&name).await {
                        Err(e) => Some(format!("cannot be read: {e}")),
                        Ok(b) => {
                            bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                            if stratalake_crypto::hex::encode(Sha256::digest(&b)) != *sha {
                                Some("content does not match its sha256 (damaged)".to_string())
                            } else if crc32fast::hash(&b) != d.crc32 {
                                Some("crc32 differs from the table log's".to_string())
                            } else {
                                None
                            }
                        }
                    },
                };
                done.fetch_add(1, Ordering::Relaxed);
                tick();
                (name, r)
            }
        }))
        .buffer_unordered(4)
        .collect()
        .await;
        for (name, r) in data_results {
            report.objects += 1;
            if let Some(p) = r {
                let sha = name.rsplit('/').next().unwrap_or_default().to_string();
                for b in data.get(&sha).map(|d| d.backups.clone()).unwrap_or_default() {
                    note(name.clone(), p.clone(), Some(&b));
                }
            }
        }
        report.bytes_read = bytes.load(Ordering::Relaxed);
        report.problems = problems
            .into_iter()
            .map(|(object, (problem, backups))| Problem {
                object,
                problem,
                backups: backups.into_iter().collect(),
            })
            .collect();
        Ok(report)
    }
}

/// `backup object X: reason` → `reason` (the report names the object itself).
fn strip_object(s: &str) -> String {
    match s.strip_prefix("backup object ") {
        Some(rest) => rest
            .split_once(": ")
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| rest.into()),
        None => s.to_string(),
    }
}
