//! The query runtime a lake's sessions share: one memory pool with a limit, no spilling.
//!
//! Every statement of every session of a lake runs against the same DataFusion [`RuntimeEnv`], so
//! the lake's `[query] memory_limit` bounds what all running statements hold together (sorts,
//! joins, aggregations, buffered batches). A statement that would go over fails with
//! [`crate::Error::OutOfMemory`], and the others go on.
//!
//! Spilling to disk is off: DataFusion's spill files would hold decrypted rows in clear on the
//! machine's temporary folder, outside the lake's keys. A statement that needs more memory than
//! the pool has left fails instead of spilling.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::Result;

/// Settings of a [`QueryRuntime`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Bytes all running statements may hold together; `None`: no limit.
    pub memory_limit: Option<u64>,
    /// Partitions a scan is split into (parallelism of a statement); `None`: the machine's cores.
    pub target_partitions: Option<usize>,
}

/// One memory pool (and no disk for spilling) for every statement of a lake's sessions.
#[derive(Clone)]
pub struct QueryRuntime {
    env: Arc<RuntimeEnv>,
    options: RuntimeOptions,
    target_partitions: usize,
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRuntime")
            .field("memory_limit", &self.options.memory_limit)
            .field("target_partitions", &self.target_partitions)
            .field("memory_reserved", &self.memory_reserved())
            .finish()
    }
}

impl QueryRuntime {
    /// A runtime with `options`.
    ///
    /// ```
    /// use stratalake_query::{QueryRuntime, RuntimeOptions};
    /// let rt = QueryRuntime::new(RuntimeOptions { memory_limit: Some(256 << 20), target_partitions: Some(2) }).unwrap();
    /// assert_eq!(rt.memory_limit(), Some(256 << 20));
    /// assert_eq!(rt.memory_reserved(), 0);
    /// ```
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let pool: Arc<dyn MemoryPool> = match options.memory_limit {
            // the consumers holding most are named when a reservation fails
            Some(limit) => Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(usize::try_from(limit).unwrap_or(usize::MAX)),
                NonZeroUsize::new(3).expect("3 > 0"),
            )),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()?;
        let target_partitions = options
            .target_partitions
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        Ok(Self {
            env,
            options,
            target_partitions,
        })
    }

    /// The memory limit, if any.
    pub fn memory_limit(&self) -> Option<u64> {
        self.options.memory_limit
    }

    /// Bytes the running statements hold now.
    pub fn memory_reserved(&self) -> usize {
        self.env.memory_pool.reserved()
    }

    /// Partitions a scan is split into.
    pub fn target_partitions(&self) -> usize {
        self.target_partitions
    }

    /// The process's runtime without limits, for sessions not given one.
    pub(crate) fn shared_default() -> Self {
        static DEFAULT: std::sync::OnceLock<QueryRuntime> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(QueryRuntime::default).clone()
    }

    pub(crate) fn env(&self) -> Arc<RuntimeEnv> {
        self.env.clone()
    }
}

impl Default for QueryRuntime {
    /// No memory limit, as many partitions as cores, no spilling.
    fn default() -> Self {
        Self::new(RuntimeOptions::default()).expect("a runtime without limits builds")
    }
}
