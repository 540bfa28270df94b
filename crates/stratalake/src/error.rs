/// Errors of the Stratalake facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lake's configuration is missing or wrong.
    #[error("lake configuration {path}: {reason}")]
    Config {
        /// The file or setting.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The lake exists already.
    #[error("a lake already exists at {0}")]
    LakeExists(String),
    /// Storage failed (whichever layer met the error: a storage error never arrives wrapped in
    /// [`Error::Query`], [`Error::Backup`] or [`Error::Tiering`]).
    #[error(transparent)]
    Table(#[from] stratalake_table::Error),
    /// SQL failed for a reason of its own (parsing, planning, cancellation, timeout, memory).
    #[error(transparent)]
    Query(stratalake_query::Error),
    /// A master key version cannot be retired yet.
    #[error("refusing to retire master key {id}: {reason}")]
    KeyInUse {
        /// The key version.
        id: String,
        /// What still uses it, and what to do.
        reason: String,
    },
    /// A backup repository operation failed.
    #[error(transparent)]
    Backup(stratalake_backup::Error),
    /// Tiering (placement, mover, capacity) failed.
    #[error(transparent)]
    Tiering(stratalake_tiering::Error),
    /// Keys failed (key errors met while reading or writing data arrive as [`Error::Table`]).
    #[error(transparent)]
    Crypto(#[from] stratalake_crypto::Error),
    /// Part of an operation was committed and the rest failed.
    #[error("{committed}, but {failed}")]
    PartlyCommitted {
        /// What was committed.
        committed: String,
        /// What failed.
        failed: String,
    },
    /// Arrow failed (building or printing batches).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A login failed: unknown user, wrong password, unknown, expired or revoked token. The
    /// message is the same for each (it must not tell which), and never repeats the secret.
    #[error("authentication failed for {user:?}")]
    AuthenticationFailed {
        /// The user name claimed (for a token: its id, or `"token"` for a malformed one).
        user: String,
    },
}

// The layers below wrap storage errors; at the facade there is one way to meet one.
impl From<stratalake_query::Error> for Error {
    fn from(e: stratalake_query::Error) -> Self {
        match e {
            stratalake_query::Error::Table(t) => Error::Table(t),
            other => Error::Query(other),
        }
    }
}

impl From<stratalake_backup::Error> for Error {
    fn from(e: stratalake_backup::Error) -> Self {
        match e {
            stratalake_backup::Error::Table(t) => Error::Table(t),
            stratalake_backup::Error::Crypto(c) => Error::Crypto(c),
            other => Error::Backup(other),
        }
    }
}

impl From<stratalake_tiering::Error> for Error {
    fn from(e: stratalake_tiering::Error) -> Self {
        match e {
            stratalake_tiering::Error::Table(t) => Error::Table(t),
            stratalake_tiering::Error::PartlyDone { done, source } => Error::PartlyCommitted {
                committed: format!("{done} and are committed"),
                failed: Error::from(*source).to_string(),
            },
            other => Error::Tiering(other),
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        stratalake_query::Error::from(e).into()
    }
}

/// What kind of failure an [`Error`] is, for callers that act on it (a server mapping errors to
/// protocol codes, a job deciding whether to retry) without matching every variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A namespace, table, version, backup or key that does not exist.
    NotFound,
    /// Something to create exists already.
    AlreadyExists,
    /// The principal may not do this.
    PermissionDenied,
    /// A login failed (who logs in could not be proven).
    Unauthenticated,
    /// Another writer committed first; nothing was committed: retry.
    Conflict,
    /// The request itself is wrong: a name, schema, SQL text, setting or row that breaks a rule.
    InvalidInput,
    /// Something the operation needs is not supported (a SQL feature, a store without atomic
    /// create, a key provider that cannot rotate).
    Unsupported,
    /// The operation's changes are committed, wholly or in part (its audit record or its second
    /// part failed): never retry it blindly, see [`Error::commit_outcome`].
    PartlyCommitted,
    /// The store did not tell whether the commit was written: check the history first.
    OutcomeUnknown,
    /// The lake is not in the state the operation needs (a key still in use, a backup sealed
    /// under keys this lake does not hold); waiting does not help, another operation first does.
    FailedPrecondition,
    /// A quota, the query memory pool or the store's space ran out.
    ResourceExhausted,
    /// The statement was cancelled.
    Cancelled,
    /// The statement ran past its timeout.
    Timeout,
    /// Another process holds a lock (a mover, a backup); try again when it is done.
    Locked,
    /// The store, the audit log or the key provider cannot be reached or written now.
    Unavailable,
    /// Stored data, a log, a key or a backup object is damaged, or a key was destroyed.
    DataLoss,
    /// The lake's configuration is missing or wrong.
    Config,
    /// An invariant of the engine does not hold (a bug).
    Internal,
}

impl Error {
    /// The storage core's error inside this one, whichever layer it came through.
    pub fn table_error(&self) -> Option<&stratalake_table::Error> {
        match self {
            Error::Table(t) => Some(t),
            _ => None,
        }
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::ErrorKind;
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// let e = lake.sql("SELECT * FROM nowhere").await.unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    /// let e = lake.sql("SELEC 1").await.unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        use stratalake_table::Error as T;
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::LakeExists(_) => ErrorKind::AlreadyExists,
            Error::KeyInUse { .. } => ErrorKind::FailedPrecondition,
            Error::PartlyCommitted { .. } => ErrorKind::PartlyCommitted,
            Error::Arrow(_) => ErrorKind::Internal,
            Error::AuthenticationFailed { .. } => ErrorKind::Unauthenticated,
            Error::Crypto(c) => crypto_kind(c),
            Error::Tiering(t) => match t {
                stratalake_tiering::Error::Config(_) => ErrorKind::Config,
                stratalake_tiering::Error::Locked { .. } => ErrorKind::Locked,
                _ => ErrorKind::Internal,
            },
            Error::Backup(b) => match b {
                stratalake_backup::Error::Repository { .. } => ErrorKind::InvalidInput,
                stratalake_backup::Error::KeyUnavailable { .. } => ErrorKind::FailedPrecondition,
                stratalake_backup::Error::Damaged { .. } => ErrorKind::DataLoss,
                stratalake_backup::Error::BackupNotFound(_) => ErrorKind::NotFound,
                stratalake_backup::Error::Refused(_) => ErrorKind::InvalidInput,
                stratalake_backup::Error::Locked { .. } => ErrorKind::Locked,
                _ => ErrorKind::Internal,
            },
            Error::Query(q) => match q {
                stratalake_query::Error::Sql(_) => ErrorKind::InvalidInput,
                stratalake_query::Error::Unsupported(_) => ErrorKind::Unsupported,
                stratalake_query::Error::Cancelled => ErrorKind::Cancelled,
                stratalake_query::Error::Timeout(_) => ErrorKind::Timeout,
                stratalake_query::Error::OutOfMemory(_) => ErrorKind::ResourceExhausted,
                stratalake_query::Error::DataFusion(d) => datafusion_kind(d),
                _ => ErrorKind::Internal,
            },
            Error::Table(t) => match t {
                T::InvalidName { .. } | T::InvalidSchema { .. } | T::BadData { .. } => ErrorKind::InvalidInput,
                T::NamespaceNotFound(_)
                | T::TableNotFound(_)
                | T::VersionNotFound { .. }
                | T::TimestampBeforeHistory { .. } => ErrorKind::NotFound,
                T::NamespaceExists(_) | T::TableExists(_) => ErrorKind::AlreadyExists,
                T::NamespaceNotEmpty { .. } => ErrorKind::InvalidInput,
                T::Conflict { .. } => ErrorKind::Conflict,
                T::StagingExpired { .. } => ErrorKind::Timeout,
                T::QuotaExceeded { .. } | T::StoreFull { .. } => ErrorKind::ResourceExhausted,
                T::CorruptLog { .. } | T::CorruptData { .. } | T::Shredded { .. } => ErrorKind::DataLoss,
                T::UnsafeStore { .. } => ErrorKind::Unsupported,
                T::StoreConfig { .. } => ErrorKind::Config,
                T::Store { source, .. } => match source {
                    // an object the log names is gone
                    object_store::Error::NotFound { .. } => ErrorKind::DataLoss,
                    object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                        ErrorKind::Config
                    }
                    _ => ErrorKind::Unavailable,
                },
                T::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                T::StoreNotWritable { .. } | T::AuditUnavailable { .. } | T::Io { .. } => ErrorKind::Unavailable,
                T::CommitUnknown { .. } => ErrorKind::OutcomeUnknown,
                T::NotAudited { .. } => ErrorKind::PartlyCommitted,
                // a key that data needs is missing: the data cannot be read, it is not "not found"
                T::Crypto(stratalake_crypto::Error::KeyNotFound { .. }) => ErrorKind::DataLoss,
                T::Crypto(c) => crypto_kind(c),
                // reading stored files; input files fail as BadData, naming the file
                T::Parquet(_) => ErrorKind::DataLoss,
                T::Arrow(_) => ErrorKind::Internal,
                T::PermissionDenied { .. } => ErrorKind::PermissionDenied,
                T::Internal(_) => ErrorKind::Internal,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// What the failed operation left committed.
    pub fn commit_outcome(&self) -> CommitOutcome {
        match (self, self.table_error()) {
            (Error::PartlyCommitted { .. }, _) | (_, Some(stratalake_table::Error::NotAudited { .. })) => {
                CommitOutcome::Partly
            }
            (_, Some(stratalake_table::Error::CommitUnknown { .. })) => CommitOutcome::Unknown,
            _ => CommitOutcome::Nothing,
        }
    }

    /// Whether the operation certainly committed nothing ([`CommitOutcome::Nothing`]).
    pub fn nothing_committed(&self) -> bool {
        self.commit_outcome() == CommitOutcome::Nothing
    }

    /// Whether another writer's commit conflicted with this operation (retry it).
    pub fn is_conflict(&self) -> bool {
        self.table_error().is_some_and(stratalake_table::Error::is_conflict)
    }

    /// Whether a permission check refused the operation.
    pub fn is_permission_denied(&self) -> bool {
        self.kind() == ErrorKind::PermissionDenied
    }

    /// Whether something named does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

fn crypto_kind(e: &stratalake_crypto::Error) -> ErrorKind {
    use stratalake_crypto::Error as C;
    match e {
        C::KeyNotFound { .. } => ErrorKind::NotFound,
        C::KeyDestroyed { .. } | C::UnwrapFailed { .. } | C::Malformed { .. } => ErrorKind::DataLoss,
        C::KeyFile { .. } | C::Env { .. } => ErrorKind::Config,
        C::Unsupported { .. } => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    }
}

/// DataFusion's own errors: planning and SQL errors are the caller's, the rest ours.
fn datafusion_kind(e: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::NotImplemented(_) => ErrorKind::Unsupported,
        D::Plan(m) if m.contains("not found") => ErrorKind::NotFound,
        D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::ArrowError(..) | D::Execution(_) => ErrorKind::InvalidInput,
        D::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        D::IoError(_) | D::ObjectStore(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// What a failed operation left committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Nothing: retrying it is safe.
    Nothing,
    /// Some of it, as the error says (committed but not audited; good rows committed and
    /// quarantined ones not).
    Partly,
    /// The store did not tell whether the commit was written: check the table's history before
    /// retrying.
    Unknown,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use stratalake_table::Error as T;

    fn denied() -> T {
        T::PermissionDenied {
            principal: "ana".into(),
            reason: "has no SELECT privilege on default.t".into(),
        }
    }

    #[test]
    fn a_storage_error_arrives_one_way_whatever_layer_met_it() {
        for e in [
            Error::from(denied()),
            Error::from(stratalake_query::Error::Table(denied())),
            Error::from(stratalake_backup::Error::Table(denied())),
            Error::from(stratalake_tiering::Error::Table(denied())),
            Error::from(datafusion::error::DataFusionError::External(Box::new(denied()))),
        ] {
            assert!(matches!(e, Error::Table(T::PermissionDenied { .. })), "{e:?}");
            assert!(e.is_permission_denied());
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn kinds_say_what_a_caller_may_do() {
        let conflict = Error::from(T::Conflict {
            table: "default.t".into(),
            version: 3,
            reason: "a file it rewrote was removed".into(),
        });
        assert!(conflict.is_conflict() && conflict.nothing_committed());
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        let not_audited = Error::from(T::NotAudited {
            source: Box::new(T::Internal("audit store full".into())),
        });
        assert_eq!(not_audited.kind(), ErrorKind::PartlyCommitted);
        assert_eq!(not_audited.commit_outcome(), CommitOutcome::Partly);
        let unknown = Error::from(T::CommitUnknown {
            path: "default/t/_log/4.json".into(),
            source: Box::new(T::Internal("connection reset".into())),
        });
        assert_eq!(unknown.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(unknown.commit_outcome(), CommitOutcome::Unknown);
        let missing_key = Error::from(T::Crypto(stratalake_crypto::Error::KeyNotFound {
            id: stratalake_crypto::KeyId::new("secret", 2),
            provider: "key file".into(),
        }));
        assert_eq!(missing_key.kind(), ErrorKind::DataLoss);
        let missing_input = Error::from(T::Io {
            path: "in.csv".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(missing_input.is_not_found());
        let timeout = Error::from(stratalake_query::Error::Timeout(std::time::Duration::from_secs(1)));
        assert!(matches!(timeout, Error::Query(_)));
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        let oom = Error::from(datafusion::error::DataFusionError::ResourcesExhausted("sort".into()));
        assert_eq!(oom.kind(), ErrorKind::ResourceExhausted);
    }
}
