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
//!    └── QueryEngine: SQL as a principal          (stratalake-query, DataFusion)
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
//! table.append(&[batch], "etl").await?;
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
mod keys;
mod maintenance;
mod quality;
mod tiers;
pub use access::parse_securable;
pub use backups::KeySource;
pub use keys::{KeyStatus, RotateReport};
pub use quality::{CompareReport, QualityPoint, TableQuality, quality_html};
pub use tiers::{PendingMoves, TierInfo, TierStatus};
mod config;
mod error;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{KeysSection, LakeConfig, LakeSection, QuerySection, TierConfig};
pub use error::{CommitOutcome, Error, Result};
pub use stratalake_crypto as crypto;
pub use stratalake_query::{AsOf, Output, QueryEngine, QueryRuntime, RuntimeOptions};
pub use stratalake_table::ingest::{Format, IngestOptions, IngestReport, Progress};
use stratalake_table::quality::OnError;
pub use stratalake_table::verify::{Problem, VerifyReport};
pub use stratalake_table::{
    Classifications, ColumnDef, PartitionField, Snapshot, Table, TableIdent, TableSchema, Transform, WriteMode,
};
pub use {
    arrow, datafusion, stratalake_backup as backup, stratalake_query as query, stratalake_table as table,
    stratalake_tiering as tiering,
};

use arrow::array::RecordBatch;
use stratalake_crypto::{EnvKeyProvider, KeyFileProvider, KeyProvider, MemoryKeyProvider};
use stratalake_table::access::Privilege;
use stratalake_table::catalog::Catalog;
use stratalake_table::write::WriteOptions;
use stratalake_table::{Keyring, StorageContext, Store, Tiers};

/// Name of the configuration file in a lake folder.
pub const CONFIG_FILE: &str = "stratalake.toml";
/// The namespace every lake starts with; unqualified table names live there.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Options of [`Lake::init`].
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Store URL of the single `hot` tier; default: the folder `data` inside the lake folder.
    pub store: Option<String>,
    /// Store options (S3 endpoint, region, `allow_http`).
    pub store_options: std::collections::BTreeMap<String, String>,
    /// The lake's first administrator; default: [`default_principal`].
    pub admin: Option<String>,
}

/// What a principal may see of a table ([`Lake::table_overview`]).
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

/// An open lake.
#[derive(Debug, Clone)]
pub struct Lake {
    dir: Option<PathBuf>,
    config: LakeConfig,
    catalog: Arc<Catalog>,
    /// Who the facade's own operations act as (see [`Lake::as_principal`]).
    principal: String,
    /// Tiers, rules, pins and quotas, validated.
    policy: Arc<stratalake_tiering::Policy>,
    /// The read cache of non-local tiers, if any.
    cache: Option<Arc<stratalake_tiering::cache::ReadCache>>,
    /// The memory pool and parallelism every session shares (`[query]`).
    runtime: stratalake_query::QueryRuntime,
}

/// The principal used when none is given: `$USER` (lower-cased, characters other than letters,
/// digits and `_` replaced by `_`), else `local`.
pub fn default_principal() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into());
    let mut name: String = user
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("u{}", &name[..name.len().min(63)]);
    }
    name
}

impl Lake {
    /// Create a lake in folder `dir`: `stratalake.toml`, a `master.keys` file (mode 0600) with
    /// a master key per classification, the `hot` tier, and the `default` namespace.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let lake = stratalake::Lake::init(dir.path(), Default::default()).await?;
    /// assert!(dir.path().join("stratalake.toml").exists());
    /// assert_eq!(lake.namespaces().await?, vec!["default"]);
    /// # Ok(()) }
    /// ```
    pub async fn init(dir: impl AsRef<Path>, opts: InitOptions) -> Result<Self> {
        let dir = dir.as_ref();
        if let Some(admin) = &opts.admin {
            stratalake_table::names::validate_ident("principal", admin)?;
        }
        let cfg_path = new_lake_folder(dir)?;
        let mut config = LakeConfig::single_tier(opts.store.as_deref().unwrap_or("data"));
        config.tiers[0].options = opts.store_options;
        // Reach the store before writing anything, and never attach new keys to a store that
        // already holds a lake.
        let tier = &config.tiers[0];
        let url = if tier.url.contains("://") {
            tier.url.clone()
        } else {
            dir.join(&tier.url).display().to_string()
        };
        let store = Store::open(&url, &tier.options)?;
        store.check_conditional_create().await?;
        if !store.list("_catalog").await?.is_empty() {
            return Err(Error::LakeExists(format!(
                "{url} (the store already holds a lake's catalog)"
            )));
        }
        let key_path = dir.join(config.keys.file.as_deref().unwrap_or("master.keys"));
        KeyFileProvider::create(&key_path, &config.classifications.levels)?;
        write_private(&cfg_path, config.to_toml().as_bytes()).map_err(|e| Error::Config {
            path: cfg_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut lake = Self::open(dir).await?;
        if let Some(admin) = opts.admin {
            lake.principal = admin;
        }
        lake.catalog
            .create_namespace(DEFAULT_NAMESPACE, true, &lake.principal)
            .await?;
        lake.bootstrap_admin().await?;
        Ok(lake)
    }

    /// Open the lake in folder `dir` (the folder holding `stratalake.toml`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// stratalake::Lake::init(dir.path(), Default::default()).await?;
    /// let lake = stratalake::Lake::open(dir.path()).await?;
    /// assert!(lake.tables("default").await?.is_empty());
    /// // a folder without a lake is a clear error
    /// let e = stratalake::Lake::open(dir.path().join("nope")).await.unwrap_err();
    /// assert!(e.to_string().contains("stratalake init"));
    /// # Ok(()) }
    /// ```
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::Config {
            path: cfg_path.display().to_string(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "not found: create a lake with `stratalake init` or pass --lake".into()
            } else {
                e.to_string()
            },
        })?;
        let config = LakeConfig::parse(&text).map_err(|reason| Error::Config {
            path: cfg_path.display().to_string(),
            reason,
        })?;
        let provider: Arc<dyn KeyProvider> = match config.keys.provider.as_str() {
            "file" => {
                let f = config.keys.file.as_deref().unwrap_or("master.keys");
                Arc::new(KeyFileProvider::open(dir.join(f))?)
            }
            "env" => Arc::new(EnvKeyProvider::new()),
            other => {
                return Err(Error::Config {
                    path: cfg_path.display().to_string(),
                    reason: format!("[keys] provider {other:?} is not known: use \"file\" or \"env\""),
                });
            }
        };
        Self::open_with(config, Some(dir), provider)
    }

    /// Open a lake given as a folder path or a URL: `file:///path` or a plain path opens the
    /// folder; `s3://bucket/prefix` (or another store URL) opens the lake whose
    /// `stratalake.toml` lies at that prefix (see [`Lake::open_url`]).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let local = stratalake::Lake::open_location("/srv/lake").await?;
    /// // endpoint and credentials from AWS_*; keys from STRATALAKE_KEY_FILE
    /// let remote = stratalake::Lake::open_location("s3://records/lake").await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_location(location: &str) -> Result<Self> {
        match location.strip_prefix("file://") {
            Some(p) => Self::open(p).await,
            None if location.contains("://") => Self::open_url(location).await,
            None => Self::open(location).await,
        }
    }

    /// Open the lake whose `stratalake.toml` is stored at `url` (e.g. `s3://bucket/prefix`; the
    /// S3 endpoint, region and credentials come from the `AWS_*` environment variables).
    /// Relative tier URLs resolve below `url`. Master keys come from the `env` provider, or from
    /// the key file named by `STRATALAKE_KEY_FILE` (else the config's absolute `[keys] file`).
    pub async fn open_url(url: &str) -> Result<Self> {
        Self::open_url_inner(url, None).await
    }

    async fn open_url_inner(url: &str, key_file: Option<&Path>) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let store = Store::open(url, &Default::default())?;
        let cfg_name = format!("{url}/{CONFIG_FILE}");
        let text = store.get_opt(CONFIG_FILE).await?.ok_or_else(|| Error::Config {
            path: cfg_name.clone(),
            reason: "not found: create the lake with `stratalake init URL --key-file PATH`".into(),
        })?;
        let text = String::from_utf8(text.to_vec()).map_err(|_| Error::Config {
            path: cfg_name.clone(),
            reason: "not UTF-8".into(),
        })?;
        let mut config = LakeConfig::parse(&text).map_err(|reason| Error::Config {
            path: cfg_name.clone(),
            reason,
        })?;
        for t in &mut config.tiers {
            if !t.url.contains("://") && !Path::new(&t.url).is_absolute() {
                t.url = format!("{url}/{}", t.url.trim_start_matches("./"));
            }
        }
        let provider: Arc<dyn KeyProvider> = match config.keys.provider.as_str() {
            "env" => Arc::new(EnvKeyProvider::new()),
            "file" => {
                let path = key_file
                    .map(Path::to_path_buf)
                    .or_else(|| std::env::var("STRATALAKE_KEY_FILE").ok().map(PathBuf::from))
                    .or_else(|| config.keys.file.as_ref().map(PathBuf::from).filter(|p| p.is_absolute()))
                    .ok_or_else(|| Error::Config {
                        path: cfg_name.clone(),
                        reason: "a lake at a URL needs its key file: set STRATALAKE_KEY_FILE".into(),
                    })?;
                Arc::new(KeyFileProvider::open(path)?)
            }
            other => {
                return Err(Error::Config {
                    path: cfg_name,
                    reason: format!("[keys] provider {other:?} is not known: use \"file\" or \"env\""),
                });
            }
        };
        Self::open_with(config, None, provider)
    }

    /// Create a lake stored entirely at `url` (e.g. `s3://bucket/prefix`): its
    /// `stratalake.toml` and its `hot` tier (`<url>/data`) live in the store; the master keys go
    /// to the local `key_file` (mode 0600), whose absolute path the config records.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let keys = std::path::Path::new("/etc/stratalake/lake.keys");
    /// let lake = stratalake::Lake::init_url("s3://records/lake", keys, Some("records_admin")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn init_url(url: &str, key_file: &Path, admin: Option<&str>) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if let Some(admin) = admin {
            stratalake_table::names::validate_ident("principal", admin)?;
        }
        let store = Store::open(url, &Default::default())?;
        if store.get_opt(CONFIG_FILE).await?.is_some() {
            return Err(Error::LakeExists(url.to_string()));
        }
        store.check_conditional_create().await?;
        let mut config = LakeConfig::single_tier("data");
        let key_file = std::path::absolute(key_file).map_err(|e| Error::Config {
            path: key_file.display().to_string(),
            reason: e.to_string(),
        })?;
        KeyFileProvider::create(&key_file, &config.classifications.levels)?;
        config.keys.file = Some(key_file.display().to_string());
        if !store.put_create(CONFIG_FILE, config.to_toml().into()).await? {
            return Err(Error::LakeExists(url.to_string()));
        }
        // The key file exists before the config that names it.
        let mut lake = Self::open_url_inner(url, Some(&key_file)).await?;
        if let Some(admin) = admin {
            lake.principal = admin.to_string();
        }
        lake.catalog
            .create_namespace(DEFAULT_NAMESPACE, true, &lake.principal)
            .await?;
        lake.bootstrap_admin().await?;
        Ok(lake)
    }

    /// Open a lake from a configuration and a key provider (for embedding, e.g. with a KMS).
    /// Relative tier URLs resolve against `base_dir`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use std::sync::Arc;
    /// use stratalake::{Lake, LakeConfig};
    /// // master keys from environment-style variables (or a KMS behind the KeyProvider trait)
    /// let provider = Arc::new(stratalake::crypto::EnvKeyProvider::with_lookup(|_| None));
    /// let lake = Lake::open_with(LakeConfig::single_tier("memory://embedded"), None, provider)?;
    /// lake.catalog().create_namespace("default", true, "svc").await?;
    /// # Ok(()) }
    /// ```
    pub fn open_with(config: LakeConfig, base_dir: Option<&Path>, provider: Arc<dyn KeyProvider>) -> Result<Self> {
        config.classifications.validate()?;
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
            if stores.insert(t.name.clone(), Store::open(&url, &t.options)?).is_some() {
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
        let tiers = Tiers::new(stores, &config.lake.metadata_tier, &config.lake.write_tier)?;
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
        let runtime =
            stratalake_query::QueryRuntime::new(config.query.runtime_options().map_err(|reason| Error::Config {
                path: CONFIG_FILE.into(),
                reason,
            })?)?;
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
            principal: default_principal(),
            policy: Arc::new(policy),
            cache,
            runtime,
        })
    }

    /// A fresh lake in process memory with in-memory keys: for tests and experiments.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// assert_eq!(lake.namespaces().await?, vec!["default"]);
    /// # Ok(()) }
    /// ```
    pub async fn in_memory() -> Result<Self> {
        let name = format!("memory://lake-{}", uuid_like());
        let lake = Self::open_with(LakeConfig::single_tier(&name), None, Arc::new(MemoryKeyProvider::new()))?;
        lake.catalog
            .create_namespace(DEFAULT_NAMESPACE, true, &default_principal())
            .await?;
        Ok(lake)
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

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Namespaces.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.catalog.namespaces().await?)
    }

    /// Create a namespace.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.create_namespace("health").await?;
    /// assert!(lake.create_namespace("health").await.is_err());
    /// assert!(lake.create_namespace("../x").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        Ok(self.catalog.create_namespace(name, false, &self.principal).await?)
    }

    /// Tables of a namespace that this handle's principal holds a privilege on (as `SHOW
    /// TABLES` lists them; [`Subject::table_sight`](stratalake_table::access::Subject::table_sight)).
    pub async fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        let subject = self.subject().await?;
        Ok(self
            .catalog
            .tables(namespace)
            .await?
            .into_iter()
            .filter(|t| subject.table_sight(namespace, t).known)
            .collect())
    }

    /// What this handle's principal may see of a table: its columns with what reading each gives
    /// the principal, the row filters that apply to it, and its file, row and byte counts when the
    /// principal may see them — as of `as_of`, or now. Refused without any privilege on the table.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let o = lake.table_overview("t", None).await?;
    /// assert_eq!((o.version, o.counts.map(|c| c.rows)), (1, Some(2)));
    /// # Ok(()) }
    /// ```
    pub async fn table_overview(&self, name: &str, as_of: Option<AsOf>) -> Result<TableOverview> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        let sight = subject.table_sight(&ident.namespace, &ident.name);
        if !sight.known {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("holds no privilege on table {ident}"),
            }
            .into());
        }
        let t = self.catalog.table(&ident).await?;
        let s = match as_of {
            None => t.snapshot().await?,
            Some(AsOf::Version(v)) => t.snapshot_at(v).await?,
            Some(AsOf::Timestamp(ts)) => t.snapshot_as_of(ts).await?,
        };
        let key = ident.to_string();
        let columns = s
            .metadata
            .schema
            .columns
            .iter()
            .map(|c| (c.clone(), subject.column_read(&key, &c.name, &c.classification)))
            .collect();
        Ok(TableOverview {
            counts: sight.counts.then(|| TableCounts {
                files: s.files.len() as u64,
                rows: s.rows(),
                bytes: s.bytes(),
            }),
            row_filters: subject.row_filter_names.get(&key).cloned().unwrap_or_default(),
            version: s.version,
            columns,
            sight,
            metadata: s.metadata,
            ident,
        })
    }

    /// The commit history of a table, newest first (at most `limit` entries): who committed
    /// what, and how many rows each commit changed. Table or lake administrators only.
    pub async fn history(
        &self,
        name: &str,
        limit: Option<usize>,
    ) -> Result<Vec<stratalake_table::table::HistoryEntry>> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        if !subject.table_sight(&ident.namespace, &ident.name).history {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("has no ADMIN privilege on table {ident} (its history shows every commit)"),
            }
            .into());
        }
        Ok(self.catalog.table(&ident).await?.history(limit).await?)
    }

    /// Create a table (`name` or `namespace.name`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use stratalake::{ColumnDef, Lake, PartitionField, TableSchema};
    /// use stratalake::arrow::datatypes::{DataType, TimeUnit};
    /// let lake = Lake::in_memory().await?;
    /// let schema = TableSchema {
    ///     columns: vec![
    ///         ColumnDef::new("case_id", DataType::Int64, "public").not_null(),
    ///         ColumnDef::new("opened", DataType::Timestamp(TimeUnit::Microsecond, None), "internal"),
    ///         ColumnDef::new("citizen", DataType::Utf8, "secret"),
    ///     ],
    ///     partition_by: vec![PartitionField::parse("month(opened)")?],
    /// };
    /// let t = lake.create_table("cases", schema).await?;
    /// assert_eq!(t.snapshot().await?.version, 0);
    /// # Ok(()) }
    /// ```
    pub async fn create_table(&self, name: &str, schema: TableSchema) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        self.subject()
            .await?
            .require(Privilege::Admin, Some(&ident.namespace), None)?;
        Ok(self
            .catalog
            .create_table(&ident, schema, Default::default(), &self.principal)
            .await?)
    }

    /// A table handle by name (`name` or `namespace.name`), for its administrators: a `Table`
    /// reads and writes without further checks, so this handle's principal must hold ADMIN on the
    /// table (or its namespace, or the lake). Analysts read and write through
    /// [`Lake::session`]; [`Lake::table_overview`] describes a table to anyone who may know it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let t = lake.table("default.t").await?;
    /// assert_eq!(t.snapshot().await?.rows(), 1);
    /// assert_eq!(t.history(None).await?.len(), 2);
    /// assert!(lake.table("nope").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn table(&self, name: &str) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        if !subject.allows(Privilege::Admin, Some(&ident.namespace), Some(&ident.name)) {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!(
                    "has no ADMIN privilege on table {ident} (a table handle bypasses grants; read and write through a session)"
                ),
            }
            .into());
        }
        Ok(self.catalog.table(&ident).await?)
    }

    /// A table handle without any permission check, for a service that enforces access itself
    /// (it holds the lake's keys anyway). Whatever it does is recorded under the principal it
    /// names, unchecked: prefer [`Lake::table`] or a session.
    pub async fn table_unchecked(&self, name: &str) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        Ok(self.catalog.table(&ident).await?)
    }

    /// Drop a table and delete its files.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let deleted = lake.drop_table("t").await?;
    /// assert!(deleted >= 3); // two log files and one data file
    /// assert!(lake.tables("default").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn drop_table(&self, name: &str) -> Result<usize> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        self.subject()
            .await?
            .require(Privilege::Admin, Some(&ident.namespace), Some(&ident.name))?;
        Ok(self.catalog.drop_table(&ident, &self.principal).await?)
    }

    /// A SQL session acting as `principal`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// let s = lake.session("alice");
    /// s.execute("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let df = s.sql("SELECT sum(x) AS s FROM t").await?;
    /// assert_eq!(df.collect().await?[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub fn session(&self, principal: &str) -> QueryEngine {
        QueryEngine::new(self.catalog.clone(), principal)
            .with_default_namespace(DEFAULT_NAMESPACE)
            .with_runtime(self.runtime.clone())
    }

    /// Run SQL (one or more statements) as the default principal and return the last
    /// statement's rows.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// let rows = lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); SELECT sum(x) FROM t").await?;
    /// assert_eq!(rows[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let out = self.session(&self.principal).execute(sql).await?;
        Ok(match out.into_iter().last() {
            Some(Output::Rows { batches, .. }) => batches,
            _ => Vec::new(),
        })
    }

    /// Ingest files into a table in one commit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("people.csv");
    /// std::fs::write(&csv, "id,name\n1,Ada\n2,Grace\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE people (id INT NOT NULL, name VARCHAR)").await?;
    /// let r = lake.ingest("people", &[csv.as_path()], None, stratalake::WriteMode::Append, &|_| {}).await?;
    /// assert_eq!(r.rows, 2);
    /// # Ok(()) }
    /// ```
    pub async fn ingest(
        &self,
        table: &str,
        files: &[&Path],
        format: Option<Format>,
        mode: WriteMode,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<IngestReport> {
        self.ingest_with(table, files, format, mode, OnError::Reject, progress)
            .await
    }

    /// [`Lake::ingest`] choosing what rows that break the table's constraints do: with
    /// [`OnError::Reject`] the first one rejects the whole ingest (naming file, line and rule);
    /// with [`OnError::Quarantine`] the good rows are committed and the bad ones appended, with
    /// the rule they broke (`quality_rule`) and the version they belong to
    /// (`quality_version`), to the table `<table>_quarantine` (created on first use, same
    /// classifications).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::table::quality::OnError;
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("people.csv");
    /// std::fs::write(&csv, "id,age\n1,34\n2,-5\n3,51\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE people (id INT NOT NULL, age INT); \
    ///           ALTER TABLE people ADD CONSTRAINT sane_age RANGE age BETWEEN 0 AND 150").await?;
    /// let r = lake.ingest_with("people", &[csv.as_path()], None, stratalake::WriteMode::Append,
    ///                          OnError::Quarantine, &|_| {}).await?;
    /// assert_eq!((r.rows, r.quarantine_table.as_deref()), (2, Some("default.people_quarantine")));
    /// # Ok(()) }
    /// ```
    pub async fn ingest_with(
        &self,
        table: &str,
        files: &[&Path],
        format: Option<Format>,
        mode: WriteMode,
        on_error: OnError,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<IngestReport> {
        self.ingest_with_options(table, files, &IngestOptions::format(format), mode, on_error, progress)
            .await
    }

    /// [`Lake::ingest_with`] with reading options: CSV delimiter, quote, header, null text,
    /// date and timestamp formats ([`stratalake_table::csv::CsvOptions`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::table::ingest::IngestOptions;
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("fees.csv");
    /// std::fs::write(&csv, "id;fee;paid\n1;1,5;NA\n2;NA;24.12.2025\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE fees (id INT NOT NULL, fee VARCHAR, paid DATE)").await?;
    /// let mut opts = IngestOptions::default();
    /// opts.csv.null = Some("NA".into());
    /// opts.csv.date_format = Some("%d.%m.%Y".into());
    /// let r = lake.ingest_with_options("fees", &[csv.as_path()], &opts, stratalake::WriteMode::Append,
    ///                                  stratalake::table::quality::OnError::Reject, &|_| {}).await?;
    /// assert_eq!(r.rows, 2); // the `;` delimiter was detected
    /// let rows = lake.sql("SELECT count(fee) AS f, count(paid) AS p FROM fees").await?;
    /// assert!(stratalake::arrow::util::pretty::pretty_format_batches(&rows)?.to_string().contains("| 1 | 1 |"));
    /// # Ok(()) }
    /// ```
    pub async fn ingest_with_options(
        &self,
        table: &str,
        files: &[&Path],
        options: &IngestOptions,
        mode: WriteMode,
        on_error: OnError,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<IngestReport> {
        let statement = format!(
            "INGEST {} INTO {table} ({}{})",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            mode.operation(),
            if on_error == OnError::Quarantine {
                ", ON ERROR QUARANTINE"
            } else {
                ""
            }
        );
        let r: Result<IngestReport> = async {
            let t = self.table_unchecked(table).await?;
            let subject = self.subject().await?;
            subject.require(Privilege::Insert, Some(&t.ident().namespace), Some(&t.ident().name))?;
            let snap = t.snapshot().await?;
            stratalake_table::quality::check_write_rights(&subject, t.ident(), &snap, mode)?;
            if on_error == OnError::Quarantine {
                self.check_quarantine(&subject, &t, &snap).await?;
            }
            let validator =
                stratalake_query::quality::validator(&t, &snap, on_error, mode != WriteMode::Overwrite).await?;
            let mut report = stratalake_table::ingest::ingest_files(
                &t,
                &snap,
                files,
                options,
                mode,
                &self.principal,
                progress,
                validator,
            )
            .await?;
            if !report.quarantine.is_empty() {
                report.quarantine_table = Some(self.quarantine(&t, &snap, &report).await?);
            }
            Ok(report)
        }
        .await;
        let tables = TableIdent::parse(table, DEFAULT_NAMESPACE)
            .map(|i| vec![i.to_string()])
            .unwrap_or_default();
        let rows = r.as_ref().ok().map(|r| r.rows);
        self.record("ingest", statement, tables, rows, &r).await?;
        r
    }

    /// The quarantine table of `t`: `<table>_quarantine` in the same namespace.
    fn quarantine_ident(t: &Table) -> TableIdent {
        TableIdent::new(&t.ident().namespace, format!("{}_quarantine", t.ident().name))
    }

    /// What the quarantine table of a table with schema `snap` looks like: every column nullable
    /// and classified as in the table, plus `quality_rule` and `quality_version`.
    fn quarantine_schema(&self, snap: &Snapshot) -> TableSchema {
        let lowest = self.config.classifications.levels[0].clone();
        let mut columns: Vec<ColumnDef> = snap
            .metadata
            .schema
            .columns
            .iter()
            .map(|c| ColumnDef::new(&c.name, c.data_type.clone(), &c.classification))
            .collect();
        columns.push(ColumnDef::new(
            "quality_rule",
            arrow::datatypes::DataType::Utf8,
            &lowest,
        ));
        columns.push(ColumnDef::new(
            "quality_version",
            arrow::datatypes::DataType::Int64,
            &lowest,
        ));
        TableSchema {
            columns,
            partition_by: Vec::new(),
        }
    }

    /// Before a quarantining ingest: the quarantine table must exist with the expected columns
    /// and at least the table's row filters and masks (or the caller must be able to create it,
    /// which copies them), and the caller needs INSERT on it.
    async fn check_quarantine(
        &self,
        subject: &stratalake_table::access::Subject,
        t: &Table,
        snap: &Snapshot,
    ) -> Result<()> {
        let q = Self::quarantine_ident(t);
        match self.catalog.table(&q).await {
            Err(stratalake_table::Error::TableNotFound(_)) => {
                if !subject.allows(Privilege::Admin, Some(&q.namespace), None) {
                    return Err(stratalake_table::Error::PermissionDenied {
                        principal: subject.principal.clone(),
                        reason: format!(
                            "may not create the quarantine table {q}: an administrator of namespace {} must run the first quarantining ingest (or create it)",
                            q.namespace
                        ),
                    }
                    .into());
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
            Ok(qt) => {
                subject.require(Privilege::Insert, Some(&q.namespace), Some(&q.name))?;
                let have = qt.snapshot().await?.metadata.schema;
                let want = self.quarantine_schema(snap);
                let same = have.columns.len() == want.columns.len()
                    && have.columns.iter().zip(&want.columns).all(|(h, w)| {
                        h.name == w.name && h.data_type == w.data_type && h.classification == w.classification
                    });
                if !same {
                    return Err(Error::Config {
                        path: q.to_string(),
                        reason: format!(
                            "the quarantine table does not match {} (columns, types and classifications must be the table's, plus quality_rule and quality_version); rename or drop it",
                            t.ident()
                        ),
                    });
                }
                let state = self.catalog.state().await?;
                let (src, dst) = (t.ident().to_string(), q.to_string());
                let filters_ok = state.access.row_filters.get(&src).is_none_or(|fs| {
                    fs.iter()
                        .all(|(n, f)| state.access.row_filters.get(&dst).and_then(|d| d.get(n)) == Some(f))
                });
                let masks_ok = state.access.masks.get(&src).is_none_or(|ms| {
                    ms.iter().all(|(c, g)| {
                        state
                            .access
                            .masks
                            .get(&dst)
                            .and_then(|d| d.get(c))
                            .is_some_and(|d| g.iter().all(|(k, m)| d.get(k) == Some(m)))
                    })
                });
                if !filters_ok || !masks_ok {
                    return Err(Error::Config {
                        path: q.to_string(),
                        reason: format!(
                            "the quarantine table lacks row filters or masks that {} has: its readers would see rows and values the table hides; set the same policies on it",
                            t.ident()
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Append an ingest's bad rows to `<table>_quarantine`, creating it (with the table's row
    /// filters and masks) on first use.
    async fn quarantine(&self, t: &Table, snap: &Snapshot, report: &IngestReport) -> Result<String> {
        use arrow::array::{ArrayRef, Int64Array};
        let ident = Self::quarantine_ident(t);
        let qt = match self.catalog.table(&ident).await {
            Ok(q) => q,
            Err(stratalake_table::Error::TableNotFound(_)) => {
                let q = self
                    .catalog
                    .create_table(
                        &ident,
                        self.quarantine_schema(snap),
                        Default::default(),
                        &self.principal,
                    )
                    .await?;
                // The table's policies apply to its quarantined rows too.
                use stratalake_table::access::AccessAction;
                let state = self.catalog.state().await?;
                let (src, dst) = (t.ident().to_string(), ident.to_string());
                let mut actions = Vec::new();
                for (name, filter) in state.access.row_filters.get(&src).into_iter().flatten() {
                    actions.push(AccessAction::SetRowFilter {
                        table: dst.clone(),
                        name: name.clone(),
                        filter: filter.clone(),
                    });
                }
                for (column, by) in state.access.masks.get(&src).into_iter().flatten() {
                    for (grantee, mask) in by {
                        actions.push(AccessAction::SetMask {
                            table: dst.clone(),
                            column: column.clone(),
                            grantee: grantee.clone(),
                            mask: mask.clone(),
                        });
                    }
                }
                if !actions.is_empty() {
                    self.catalog.change_access(actions, &self.principal).await?;
                }
                q
            }
            Err(e) => return Err(e.into()),
        };
        let qsnap = qt.snapshot().await?;
        let arrow = qsnap.metadata.schema.arrow_schema();
        let batches = report
            .quarantine
            .iter()
            .map(|b| {
                // by name: the quarantine table's columns are the table's plus the two of its own
                let mut cols: Vec<ArrayRef> = Vec::with_capacity(arrow.fields().len());
                for f in arrow.fields() {
                    cols.push(match f.name().as_str() {
                        "quality_version" => Arc::new(Int64Array::from(vec![report.version as i64; b.num_rows()])),
                        name => b.column_by_name(name).cloned().ok_or_else(|| Error::Config {
                            path: ident.to_string(),
                            reason: format!("quarantined rows have no column {name:?}"),
                        })?,
                    });
                }
                Ok(RecordBatch::try_new(arrow.clone(), cols)?)
            })
            .collect::<Result<Vec<_>>>()?;
        qt.append(&batches, &self.principal)
            .await
            .map_err(|e| Error::PartlyCommitted {
                committed: format!(
                    "the good rows were committed as version {} of {}",
                    report.version,
                    t.ident()
                ),
                failed: format!(
                    "the {} quarantined row(s) could not be written to {ident}: {e}",
                    report.quarantine.iter().map(|b| b.num_rows()).sum::<usize>()
                ),
            })?;
        Ok(ident.to_string())
    }

    /// Verify every table (or the named ones): the whole log, and every live file's checksum,
    /// decryption and row count. Problems are listed in the report, not returned as errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?;
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let report = lake.verify(&[], &|_done, _total| {}).await?;
    /// assert!(report.problems.is_empty());
    /// assert_eq!((report.files, report.rows), (1, 1));
    /// # Ok(()) }
    /// ```
    pub async fn verify(
        &self,
        tables: &[String],
        on_file: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<VerifyReport> {
        self.subject().await?.require(Privilege::Admin, None, None)?;
        let mut report = VerifyReport::default();
        let state = self.catalog.state().await?;
        // Shredded levels cannot be decrypted any more: every other column is checked.
        let access = stratalake_table::Access::Levels(state.access.readable_levels(&self.config.classifications));
        let idents: Vec<TableIdent> = if tables.is_empty() {
            state
                .namespaces
                .iter()
                .flat_map(|(ns, ts)| ts.keys().map(move |t| TableIdent::new(ns, t)))
                .collect()
        } else {
            tables
                .iter()
                .map(|t| TableIdent::parse(t, DEFAULT_NAMESPACE))
                .collect::<Result<_, _>>()?
        };
        for ident in idents {
            let t = self.catalog.table(&ident).await?;
            stratalake_table::verify::verify_table(&t, &mut report, &access, on_file).await?;
        }
        Ok(report)
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
    b.iter().map(|x| format!("{x:02x}")).collect()
}
