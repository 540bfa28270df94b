/// Errors of the storage core. Messages name the table, file, version or input that was wrong
/// and never carry key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name (namespace, table, column, tier) is not allowed.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// The namespace does not exist.
    #[error("namespace {0:?} does not exist")]
    NamespaceNotFound(String),
    /// The namespace exists already.
    #[error("namespace {0:?} already exists")]
    NamespaceExists(String),
    /// The namespace still holds tables.
    #[error("namespace {name:?} is not empty: it holds {tables} table(s); drop them first")]
    NamespaceNotEmpty { name: String, tables: usize },
    /// The table does not exist.
    #[error("table {0} does not exist")]
    TableNotFound(String),
    /// The table exists already.
    #[error("table {0} already exists")]
    TableExists(String),
    /// A schema or partition spec is not valid.
    #[error("invalid schema for {table}: {reason}")]
    InvalidSchema { table: String, reason: String },
    /// Data does not fit the table: the batch is rejected whole, nothing is committed.
    #[error("{source_name}: {reason}")]
    BadData { source_name: String, reason: String },
    /// The requested version does not exist.
    #[error("table {table} has no version {version} (versions 0..={latest})")]
    VersionNotFound { table: String, version: u64, latest: u64 },
    /// No version at or before the requested time.
    #[error("table {table} has no version at or before {timestamp}")]
    TimestampBeforeHistory { table: String, timestamp: String },
    /// Another writer committed a conflicting change first. Nothing of this write was committed.
    #[error("commit conflict on {table} at version {version}: {reason}; nothing was committed, retry the operation")]
    Conflict {
        table: String,
        version: u64,
        reason: String,
    },
    /// A write would take a table or namespace over its quota. Nothing was committed.
    #[error(
        "quota exceeded for {scope}: {used} used + {adding} in this write > limit {limit}; nothing was committed (free space with DELETE and `table vacuum`, or raise the quota in stratalake.toml)"
    )]
    QuotaExceeded {
        scope: String,
        limit: String,
        used: String,
        adding: String,
    },
    /// A log or checkpoint file is damaged or malformed.
    #[error("corrupt log file {path}: {reason}")]
    CorruptLog { path: String, reason: String },
    /// A data file is damaged, missing, swapped or undecryptable.
    #[error("data file {path}: {reason}")]
    CorruptData { path: String, reason: String },
    /// The store refuses the conditional create that safe commits need.
    #[error("store {store} does not support atomic create-if-absent; refusing to commit on it")]
    UnsafeStore { store: String },
    /// A store URL or configuration is not usable.
    #[error("store {url}: {reason}")]
    StoreConfig { url: String, reason: String },
    /// An object store call failed.
    #[error("object store error on {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Key handling failed.
    #[error(transparent)]
    Crypto(#[from] stratalake_crypto::Error),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Local I/O failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A query touched a column whose classification was crypto-shredded.
    #[error(
        "column {column:?} of {table} cannot be read: the master keys of classification {level:?} were destroyed (shredded); a NULL or REDACT mask for {level:?} (CREATE MASK FOR CLASSIFICATION {level} AS NULL) shows it as NULL, or drop the column"
    )]
    Shredded {
        table: String,
        column: String,
        level: String,
    },
    /// The principal may not do this.
    #[error("permission denied: {principal} {reason}")]
    PermissionDenied { principal: String, reason: String },
    /// A bug: an invariant of the engine does not hold.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn store(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        Error::Store {
            path: path.to_string(),
            source,
        }
    }
}
