//! What a table needs from its lake: the [`Tiers`] (named stores), the [`Keyring`], the
//! checkpoint interval and writer options, the read tracker, the commit policy, and the
//! [`CommitGuard`] every commit must pass (quotas).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::keyring::Keyring;
use crate::logstore::CommitPolicy;
use crate::model::TableIdent;
use crate::store::Store;
use crate::write::WriteOptions;
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
