//! # Stratalake
//!
//! An embeddable data lake engine for regulated data: tables are Parquet files encrypted with
//! Parquet Modular Encryption (a key per classification, fresh keys per file, wrapped under
//! master keys), committed atomically through a table log on local disk, in memory, or on any
//! S3-compatible object store, and queried with SQL through Apache DataFusion.
//!
//! ```text
//!   Lake ── config (stratalake.toml) ── tiers (object stores) ── key provider
//!    ├── Catalog: namespaces and tables           (stratalake-table)
//!    ├── Table: log, snapshots, append/overwrite  (stratalake-table)
//!    └── Session: the lake as one principal  ── SqlSession: SQL (stratalake-query, DataFusion)
//! ```
//!
//! ## Quick tour
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
//! use stratalake::Lake;
//! use stratalake::arrow::array::{Int64Array, RecordBatch, StringArray};
//! use std::sync::Arc;
//!
//! let lake = Lake::in_memory().await?;
//! // every operation acts as an explicit principal, checked against its grants
//! let lake = lake.session("records_admin");
//! lake.sql("CREATE TABLE permits (id BIGINT NOT NULL CLASSIFICATION public, \
//!           owner VARCHAR CLASSIFICATION confidential, region VARCHAR CLASSIFICATION public) \
//!           PARTITIONED BY (region)").await?;
//!
//! // Append Arrow batches from Rust ...
//! let table = lake.table("permits").await?;
//! let schema = table.snapshot().await?.metadata.schema.arrow_schema();
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Int64Array::from(vec![1, 2])),
//!     Arc::new(StringArray::from(vec!["Ada", "Grace"])),
//!     Arc::new(StringArray::from(vec!["north", "south"])),
//! ])?;
//! table.append(&[batch], lake.principal()).await?;
//!
//! // ... or with SQL, and query.
//! lake.sql("INSERT INTO permits VALUES (3, 'Alan', 'north')").await?;
//! let rows = lake.sql("SELECT region, count(*) AS n FROM permits GROUP BY region ORDER BY region").await?;
//! let text = stratalake::arrow::util::pretty::pretty_format_batches(&rows)?.to_string();
//! assert!(text.contains("| north  | 2 |"));
//! # Ok(()) }
//! ```

mod access;
mod backups;
mod builder;
mod keys;
mod maintenance;
mod ops;
mod quality;
mod session;
mod tiers;
pub use access::{Access, Audit, parse_securable};
pub use backups::{Backup, Backups, KeySource, Restore};
pub use builder::LakeBuilder;
pub use credentials::{NewToken, TokenInfo};
pub use keys::{KeyStatus, Keys, RotateReport};
pub use maintenance::{Optimize, Vacuum};
pub use quality::{CompareReport, QualityPoint, TableQuality, quality_html};
pub use session::{Ingest, Session, Verify};
pub use tiers::{PendingMoves, TierInfo, TierRun, TierStatus, Tiers};
mod config;
mod credentials;
mod error;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{KeysSection, LakeConfig, LakeSection, QuerySection, ServerSection, TierConfig};
pub use error::{CommitOutcome, Error, ErrorKind, Result};
pub use stratalake_crypto as crypto;
pub use stratalake_query::{AsOf, Output, QueryRuntime, RuntimeOptions, SqlSession};
pub use stratalake_table::ingest::{Format, IngestOptions, IngestReport};
pub use stratalake_table::progress::Progress;
pub use stratalake_table::quality::OnError;
pub use stratalake_table::verify::{Problem, VerifyReport};
pub use stratalake_table::{
    Classifications, ColumnDef, PartitionField, Snapshot, Table, TableIdent, TableSchema, Transform, WriteMode,
};
pub use {
    arrow, datafusion, stratalake_backup as backup, stratalake_query as query, stratalake_table as table,
    stratalake_tiering as tiering,
};

use stratalake_crypto::{KeyProvider, MemoryKeyProvider};
use stratalake_table::catalog::Catalog;
use stratalake_table::write::WriteOptions;
use stratalake_table::{Keyring, StorageContext, Store};

/// Name of the configuration file in a lake folder.
pub const CONFIG_FILE: &str = "stratalake.toml";
/// The namespace every lake starts with; unqualified table names live there.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What a principal may see of a table ([`Session::table_overview`]).
#[derive(Clone, Debug)]
pub struct TableOverview {
    /// The table.
    pub ident: TableIdent,
    /// The version described.
    pub version: u64,
    /// Its metadata at that version (schema, classifications, partitioning, constraints).
    pub metadata: stratalake_table::action::Metadata,
    /// Each column with what reading it gives the principal.
    pub columns: Vec<(ColumnDef, stratalake_table::access::ColumnRead)>,
    /// Names of the row filters that apply to the principal.
    pub row_filters: Vec<String>,
    /// Files, rows and bytes, when the principal may see them.
    pub counts: Option<TableCounts>,
    /// What the principal may know of the table.
    pub sight: stratalake_table::access::TableSight,
}

/// Size of a table at a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    /// Live data files.
    pub files: u64,
    /// Rows.
    pub rows: u64,
    /// Bytes of the live data files.
    pub bytes: u64,
}

/// Where a lake reads the time: the system clock, or one a test or a scheduler controls.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI64, Ordering};
/// let now = Arc::new(AtomicI64::new(1_767_225_600_000)); // 2026-01-01
/// let n = now.clone();
/// let clock = stratalake::Clock::from_fn(move || n.load(Ordering::Relaxed));
/// now.fetch_add(86_400_000, Ordering::Relaxed);
/// assert_eq!(clock.now_ms(), 1_767_312_000_000);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(stratalake_table::write::now_ms))
    }

    /// A clock reading `f` (milliseconds since the epoch).
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// A clock standing still at `ms`.
    pub fn fixed(ms: i64) -> Self {
        Clock(Arc::new(move || ms))
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

/// An open lake.
#[derive(Debug, Clone)]
pub struct Lake {
    dir: Option<PathBuf>,
    config: LakeConfig,
    catalog: Arc<Catalog>,
    /// Tiers, rules, pins and quotas, validated.
    policy: Arc<stratalake_tiering::Policy>,
    /// The read cache of non-local tiers, if any.
    cache: Option<Arc<stratalake_tiering::cache::ReadCache>>,
    /// The memory pool and parallelism every session shares (`[query]`).
    runtime: stratalake_query::QueryRuntime,
    /// What "now" is for plans, forecasts and retention windows.
    clock: Clock,
    /// What logins of unknown users are checked against (so they cost and look the same).
    mock: Arc<credentials::MockCredentials>,
}

impl Lake {
    /// Put a lake together from its configuration, key provider, clock and query runtime
    /// settings (every constructor ends here). Tiers named in `given` use that store instead
    /// of opening their URL.
    pub(crate) fn assemble(
        config: LakeConfig,
        base_dir: Option<&Path>,
        provider: Arc<dyn KeyProvider>,
        clock: Clock,
        runtime: stratalake_query::RuntimeOptions,
        given: &std::collections::BTreeMap<String, Store>,
    ) -> Result<Self> {
        config.classifications.validate()?;
        if let Some(name) = given.keys().find(|n| !config.tiers.iter().any(|t| &t.name == *n)) {
            return Err(Error::Config {
                path: CONFIG_FILE.into(),
                reason: format!("a store was given for tier {name:?}, which the configuration does not declare"),
            });
        }
        let mut stores = std::collections::BTreeMap::new();
        for t in &config.tiers {
            stratalake_table::names::validate_ident("tier", &t.name)?;
            let url = if t.url.contains("://") || Path::new(&t.url).is_absolute() {
                t.url.clone()
            } else {
                match base_dir {
                    Some(b) => b.join(&t.url).display().to_string(),
                    None => t.url.clone(),
                }
            };
            let store = match given.get(&t.name) {
                Some(s) => s.clone(),
                None => Store::open(&url, &t.options)?,
            };
            if stores.insert(t.name.clone(), store).is_some() {
                return Err(Error::Config {
                    path: CONFIG_FILE.into(),
                    reason: format!("tier {:?} declared twice", t.name),
                });
            }
        }
        if stores.is_empty() {
            return Err(Error::Config {
                path: CONFIG_FILE.into(),
                reason: "no [[tier]] declared".into(),
            });
        }
        let policy = config.policy()?;
        // Query reads from tiers that are not local folders go through the read cache.
        let cache_dir = config.tiering.cache_dir.as_deref().unwrap_or("cache");
        let cache_dir = if Path::new(cache_dir).is_absolute() {
            Some(PathBuf::from(cache_dir))
        } else {
            base_dir.map(|b| b.join(cache_dir))
        };
        let mut cache = None;
        for t in &config.tiers {
            let store = stores.get(&t.name).expect("opened above");
            if !t.cache.unwrap_or(!store.is_local()) || policy.cache_size == 0 {
                continue;
            }
            let Some(dir) = &cache_dir else { continue };
            let c = match &cache {
                Some(c) => Arc::clone(c),
                None => {
                    let c = stratalake_tiering::cache::ReadCache::open(dir, policy.cache_size)?;
                    cache = Some(Arc::clone(&c));
                    c
                }
            };
            let cached = stratalake_tiering::cache::CachedStore::new(
                &t.name,
                store.object_store().clone(),
                c,
                store.expected().clone(),
            );
            let s = store.clone().with_read_store(Arc::new(cached));
            stores.insert(t.name.clone(), s);
        }
        let tiers = stratalake_table::Tiers::new(stores, &config.lake.metadata_tier, &config.lake.write_tier)?;
        let mut ctx = StorageContext {
            tiers,
            keyring: Keyring::new(provider, config.classifications.clone()),
            checkpoint_interval: config.lake.checkpoint_interval,
            write: WriteOptions {
                target_file_size: (config.lake.target_file_size_mib.max(1) << 20) as usize,
                ..Default::default()
            },
            guard: None,
            reads: Default::default(),
            commit: config.lake.commit_policy().map_err(|reason| Error::Config {
                path: CONFIG_FILE.into(),
                reason,
            })?,
        };
        let runtime = stratalake_query::QueryRuntime::new(runtime)?;
        if !policy.quotas.is_empty() {
            ctx.guard = Some(Arc::new(stratalake_tiering::quota::QuotaGuard::new(
                policy.quotas.clone(),
                &ctx,
            )));
        }
        Ok(Self {
            dir: base_dir.map(Path::to_path_buf),
            config,
            catalog: Arc::new(Catalog::new(Arc::new(ctx))),
            policy: Arc::new(policy),
            cache,
            runtime,
            clock,
            mock: Arc::new(credentials::MockCredentials::new()?),
        })
    }

    /// A fresh lake in process memory with in-memory keys: for tests and experiments.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// assert_eq!(lake.namespaces().await?, vec!["default"]);
    /// # Ok(()) }
    /// ```
    pub async fn in_memory() -> Result<Self> {
        let name = format!("memory://lake-{}", uuid_like());
        let lake = Self::assemble(
            LakeConfig::single_tier(&name),
            None,
            Arc::new(MemoryKeyProvider::new()),
            Clock::system(),
            Default::default(),
            &Default::default(),
        )?;
        lake.catalog.create_namespace(DEFAULT_NAMESPACE, true, "lake").await?;
        Ok(lake)
    }

    /// What "now" is for this lake ([`LakeBuilder::clock`]), in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The query runtime the lake's sessions share (`[query]`): its memory limit and what the
    /// running statements hold now.
    pub fn query_runtime(&self) -> &QueryRuntime {
        &self.runtime
    }

    /// The lake's folder, if it has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &LakeConfig {
        &self.config
    }

    /// The catalog itself, **with no permission check**: code holding it can open and write any
    /// table, change access and write audit records under any name, and reach the key provider.
    /// For tools that enforce access themselves (tests, benchmarks, the backup engine); a
    /// service answers its users through [`Lake::session`] instead.
    pub fn catalog_unchecked(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// This lake acting as `principal`: every operation through the session (SQL, ingest, DDL,
    /// access changes, tiers, backups, keys) is checked against that principal's grants and
    /// recorded under its name. The principal is not authenticated here: a service embedding
    /// the lake authenticates its users and opens their sessions. A `Session` is not a sandbox
    /// inside a process (through [`Deref`](std::ops::Deref) to `Lake` its holder can open other
    /// principals' sessions): the trust boundary is the process that holds the `Lake`, e.g. the
    /// server, never code a user supplies.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// let alice = lake.session("alice");
    /// alice.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let df = alice.query("SELECT sum(x) AS s FROM t").await?;
    /// assert_eq!(df.collect().await?[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn session(&self, principal: &str) -> Session {
        Session {
            lake: self.clone(),
            principal: principal.to_string(),
        }
    }
}

/// Create the folder of a new lake; refuse one that already holds a lake. Returns the path of
/// its (not yet written) `stratalake.toml`.
fn new_lake_folder(dir: &Path) -> Result<PathBuf> {
    let cfg_path = dir.join(CONFIG_FILE);
    if cfg_path.exists() {
        return Err(Error::LakeExists(dir.display().to_string()));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Config {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(cfg_path)
}

/// Write a new file readable only by its owner (the config may name credentials), whole or not
/// at all: the bytes go to a partial name first and are linked into place, so a process killed
/// half-way leaves no truncated config or key file behind. Fails if `path` exists.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let partial = path.with_file_name(format!(".{name}.partial-{}", uuid_like()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&partial).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&partial, path));
    let _ = std::fs::remove_file(&partial);
    linked
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    let _ = stratalake_crypto::random_bytes(&mut b);
    stratalake_crypto::hex::encode(b)
}
