//! Read heat: when each partition of each table was last read by a query, for placement rules
//! by time since last read.
//!
//! Scans record the partitions they read in memory ([`ReadTracker::record`]); a flush writes
//! them as one small object `_tiering/reads/<ms>-<uuid>.json` on the metadata tier, so readers
//! in many processes never contend on one object. [`load`] merges them; [`compact`] folds them
//! into one. Only table ids, partition keys and times are kept: no values, no principals.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::action::{AddFile, PartitionValues};
use crate::clock::now_ms;
use crate::store::Store;
use crate::{Error, Result};

const DIR: &str = "_tiering/reads";

/// Last read time (ms since the epoch) per table id, per partition key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadHeat {
    /// table id -> partition key ([`partition_key`]) -> last read.
    pub tables: BTreeMap<String, BTreeMap<String, i64>>,
}

impl ReadHeat {
    /// When a partition of a table was last read, if ever (since tracking began).
    pub fn last_read(&self, table_id: &str, partition: &PartitionValues) -> Option<i64> {
        self.tables.get(table_id)?.get(&partition_key(partition)).copied()
    }

    /// Fold `other` in, keeping the later time per partition.
    pub fn merge(&mut self, other: ReadHeat) {
        for (t, parts) in other.tables {
            let mine = self.tables.entry(t).or_default();
            for (k, ms) in parts {
                let e = mine.entry(k).or_insert(ms);
                *e = (*e).max(ms);
            }
        }
    }
}

/// A stable key for a partition: its values as JSON (`{}` for an unpartitioned table).
pub fn partition_key(values: &PartitionValues) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// Reads recorded in this process and not yet flushed.
#[derive(Debug, Default)]
pub struct ReadTracker {
    pending: Mutex<(ReadHeat, Option<i64>)>,
}

impl ReadTracker {
    /// Record that a query read these files of table `table_id` now.
    pub fn record<'a>(&self, table_id: &str, files: impl IntoIterator<Item = &'a AddFile>) {
        let now = now_ms();
        let mut p = self.pending.lock().expect("read tracker");
        let parts = p.0.tables.entry(table_id.to_string()).or_default();
        for f in files {
            parts.insert(partition_key(&f.partition), now);
        }
        p.1.get_or_insert(now);
    }

    /// Write pending reads to the metadata tier (nothing when none are pending).
    pub async fn flush(&self, store: &Store) -> Result<()> {
        let heat = {
            let mut p = self.pending.lock().expect("read tracker");
            p.1 = None;
            std::mem::take(&mut p.0)
        };
        if heat.tables.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&heat).map_err(|e| Error::Internal(e.to_string()))?;
        let name = format!("{DIR}/{:020}-{}.json", now_ms(), uuid::Uuid::new_v4());
        if let Err(e) = store.put(&name, body.into()).await {
            // Put the reads back so a later flush carries them.
            self.pending.lock().expect("read tracker").0.merge(heat);
            return Err(e);
        }
        Ok(())
    }

    /// Pending reads, not yet flushed (merged into [`load`]'s answer by callers in-process).
    pub fn pending(&self) -> ReadHeat {
        self.pending.lock().expect("read tracker").0.clone()
    }
}

/// Every flushed read, merged. Objects that do not parse are skipped with a warning.
pub async fn load(store: &Store) -> Result<ReadHeat> {
    Ok(load_with_names(store).await?.0)
}

async fn load_with_names(store: &Store) -> Result<(ReadHeat, Vec<String>)> {
    let mut heat = ReadHeat::default();
    let mut names = Vec::new();
    for (name, _) in store.list(DIR).await? {
        let Some(raw) = store.get_opt(&name).await? else {
            continue;
        };
        match serde_json::from_slice::<ReadHeat>(&raw) {
            Ok(h) => heat.merge(h),
            Err(e) => tracing::warn!(object = %name, error = %e, "skipping an unreadable read-heat object"),
        }
        names.push(name);
    }
    Ok((heat, names))
}

/// Fold every read-heat object into one, dropping entries of tables not in `live_tables`.
pub async fn compact(store: &Store, live_tables: &[String]) -> Result<ReadHeat> {
    let (mut heat, names) = load_with_names(store).await?;
    heat.tables.retain(|t, _| live_tables.contains(t));
    if names.len() > 1 || (names.len() == 1 && heat.tables.is_empty()) {
        if !heat.tables.is_empty() {
            let body = serde_json::to_vec(&heat).map_err(|e| Error::Internal(e.to_string()))?;
            let name = format!("{DIR}/{:020}-{}.json", now_ms(), uuid::Uuid::new_v4());
            store.put(&name, body.into()).await?;
        }
        for n in names {
            store.delete(&n).await?;
        }
    }
    Ok(heat)
}
