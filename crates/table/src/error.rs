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
    /// The store has no space left (a full disk or quota). Nothing of the write that met it was
    /// committed.
    #[error("no space left on the store writing {path}: {source}")]
    StoreFull {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The store refuses writes (a read-only folder or mount, missing permission).
    #[error("cannot write {path}: {source} (this process may not write the lake's store)")]
    StoreNotWritable {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Creating a log object failed and the store did not tell whether it was written.
    #[error(
        "the store failed while creating {path} and did not tell whether it was written: {source}; check `stratalake table history` (or `stratalake audit`) before retrying"
    )]
    CommitUnknown {
        path: String,
        #[source]
        source: Box<Error>,
    },
    /// A write's staged files waited longer than the lake's staging grace; nothing was committed.
    #[error(
        "the write to {table} staged its first file {age_s} s ago, more than the {limit_s} s a write may take (the lake's staging grace less the clock-skew margin); nothing was committed, because vacuum may delete staged files after that: retry, or raise `staging_grace` in stratalake.toml"
    )]
    StagingExpired { table: String, age_s: i64, limit_s: i64 },
    /// The audit log cannot be written: statements do not run unaudited.
    #[error(
        "the audit log cannot be written ({source}); every statement is recorded there first, so none runs until the lake's store is writable again"
    )]
    AuditUnavailable {
        #[source]
        source: Box<Error>,
    },
    /// The operation ran, and what it changed is committed, but its audit record could not be
    /// written; its result is withheld.
    #[error(
        "the operation ran (anything it changed is committed) but its audit record could not be written ({source}); its result is withheld"
    )]
    NotAudited {
        #[source]
        source: Box<Error>,
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

    /// An object store error writing `path`, classified: a full store, a store that refuses
    /// writes, or any other failure.
    pub(crate) fn store_write(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        let path = path.to_string();
        match io_kind(&source) {
            Some(IoKind::Full) => Error::StoreFull { path, source },
            Some(IoKind::NotWritable) => Error::StoreNotWritable { path, source },
            None if matches!(source, object_store::Error::PermissionDenied { .. }) => {
                Error::StoreNotWritable { path, source }
            }
            None => Error::Store { path, source },
        }
    }

    /// Whether the store refused the request outright, so that it cannot have been applied.
    pub fn is_definite_refusal(&self) -> bool {
        matches!(
            self,
            Error::StoreFull { .. }
                | Error::StoreNotWritable { .. }
                | Error::Store {
                    source: object_store::Error::Unauthenticated { .. } | object_store::Error::NotImplemented { .. },
                    ..
                }
        )
    }

    /// Whether this is a commit conflict (another writer changed what this write depends on).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether nothing of the failed operation can have been committed: every error except one
    /// whose outcome the store left unknown, or one raised after the operation committed.
    pub fn nothing_committed(&self) -> bool {
        !matches!(self, Error::CommitUnknown { .. } | Error::NotAudited { .. })
    }

    /// The error to report when the operation itself succeeded and writing its audit record
    /// failed: an unwritable audit log then means "committed, not audited".
    pub fn after_success(self) -> Error {
        match self {
            Error::AuditUnavailable { source } => Error::NotAudited { source },
            already @ Error::NotAudited { .. } => already,
            // whatever stopped the record (a give-up under contention, a damaged record at
            // the head), what ran is committed: never "nothing committed"
            e => Error::NotAudited { source: Box::new(e) },
        }
    }
}

enum IoKind {
    Full,
    NotWritable,
}

/// The kind of the I/O error an object store error carries, if it is one we name.
fn io_kind(e: &object_store::Error) -> Option<IoKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match (io.kind(), io.raw_os_error()) {
                (K::StorageFull | K::QuotaExceeded, _) | (_, Some(28 | 122)) => Some(IoKind::Full),
                (K::PermissionDenied | K::ReadOnlyFilesystem, _) | (_, Some(13 | 30)) => Some(IoKind::NotWritable),
                _ => None,
            };
        }
        cur = err.source();
    }
    None
}
