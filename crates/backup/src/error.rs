/// Errors of backup repositories. Messages name the repository object, backup or table that
/// was wrong and never carry key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage core failed.
    #[error(transparent)]
    Table(#[from] stratalake_table::Error),
    /// Key handling failed.
    #[error(transparent)]
    Crypto(#[from] stratalake_crypto::Error),
    /// The repository is missing, not a repository, or cannot be opened.
    #[error("backup repository {repo}: {reason}")]
    Repository { repo: String, reason: String },
    /// No master key the lake's provider holds opens the repository.
    #[error(
        "backup repository {repo}: none of its key slots opens with the lake's master keys ({needed}); restore the key version named or use the lake the repository belongs to"
    )]
    KeyUnavailable { repo: String, needed: String },
    /// An object of the repository is damaged, missing or not authentic.
    #[error("backup object {object}: {reason}")]
    Damaged { object: String, reason: String },
    /// The backup does not exist.
    #[error("backup {0} does not exist in this repository (see `stratalake backup list`)")]
    BackupNotFound(String),
    /// The operation is refused as asked (non-empty target, missing key, version not held, ...).
    #[error("{0}")]
    Refused(String),
    /// Another backup or prune holds the repository.
    #[error("backup repository {repo} is locked by {holder}; {hint}")]
    Locked { repo: String, holder: String, hint: String },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
