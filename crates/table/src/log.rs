//! Versioned, write-once logs (table logs, the catalog): listing a log directory ([`list`]),
//! reading a version ([`read`]) and restoring one ([`try_write`], a single attempt through the
//! log store). Each file's name and framing (a checksum header) are [`crate::logfile`]'s,
//! re-exported here.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
pub use crate::logfile::{checkpoint_path, commit_path, decode, encode, parse_checkpoint_name, parse_commit_name};
use crate::store::Store;

/// What a log directory holds.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Commit versions, ascending.
    pub commits: Vec<u64>,
    /// Checkpoint versions, ascending.
    pub checkpoints: Vec<u64>,
}

/// List a log directory, optionally only the entries after version `after`.
pub async fn list(store: &Store, dir: &str, after: Option<u64>) -> Result<Listing> {
    let entries = match after {
        Some(v) => store.list_after(dir, &format!("{dir}/{v:020}.json")).await?,
        None => store.list(dir).await?,
    };
    let mut l = Listing::default();
    for (rel, _) in entries {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if let Some(v) = parse_commit_name(name) {
            l.commits.push(v);
        } else if let Some(v) = parse_checkpoint_name(name) {
            l.checkpoints.push(v);
        }
    }
    l.commits.sort_unstable();
    l.checkpoints.sort_unstable();
    if let Some(v) = after {
        l.commits.retain(|c| *c > v);
        l.checkpoints.retain(|c| *c > v);
    }
    Ok(l)
}

/// Write version `version` if no one else has, in one attempt through the log store
/// ([`crate::logstore::LogStore::create_at`]). `Ok(false)` if another entry holds it; one holding
/// these very bytes (an earlier attempt whose answer was lost) counts as written.
pub async fn try_write<T: Serialize>(store: &Store, dir: &str, version: u64, body: &T) -> Result<bool> {
    use crate::logstore::{CommitPolicy, Created, LogStore};
    let body = encode(body)?;
    let log = LogStore::new(store.clone(), dir, CommitPolicy::default());
    let created = log
        .create_at(version, body.clone(), |found| Some(found == body.as_ref()))
        .await?;
    Ok(matches!(created, Created::Ours))
}

/// Read and check version `version`.
pub async fn read<T: DeserializeOwned>(store: &Store, dir: &str, version: u64) -> Result<T> {
    let path = commit_path(dir, version);
    let data = store.get(&path).await?;
    decode(store.path(&path).as_ref(), &data)
}
