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
    /// Storage failed.
    #[error(transparent)]
    Table(#[from] stratalake_table::Error),
    /// SQL failed.
    #[error(transparent)]
    Query(#[from] stratalake_query::Error),
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
    Backup(#[from] stratalake_backup::Error),
    /// Tiering (placement, mover, capacity) failed.
    #[error(transparent)]
    Tiering(#[from] stratalake_tiering::Error),
    /// Keys failed.
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
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Query(e.into())
    }
}

impl Error {
    /// The storage core's error inside this one, whichever layer it came through.
    pub fn table_error(&self) -> Option<&stratalake_table::Error> {
        match self {
            Error::Table(t)
            | Error::Query(stratalake_query::Error::Table(t))
            | Error::Tiering(stratalake_tiering::Error::Table(t))
            | Error::Backup(stratalake_backup::Error::Table(t)) => Some(t),
            _ => None,
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
        matches!(
            self.table_error(),
            Some(stratalake_table::Error::PermissionDenied { .. })
        )
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
