use crate::KeyId;

/// Errors of the key hierarchy. None of them ever carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider has no key for this classification and version.
    #[error("no master key {id} in the key provider ({provider})")]
    KeyNotFound { id: KeyId, provider: String },
    /// The classification's master key was destroyed (crypto-shredded).
    #[error("master key {id} was destroyed: data protected by it can no longer be read")]
    KeyDestroyed { id: KeyId },
    /// A wrapped key failed authentication: wrong master key, or it was moved to another
    /// file, table or classification, or it was altered.
    #[error(
        "wrapped data key for {context} failed to unwrap under master key {id}: wrong key, altered, or moved from another file"
    )]
    UnwrapFailed { id: KeyId, context: String },
    /// A wrapped key's stored form is malformed.
    #[error("malformed wrapped key: {reason}")]
    Malformed { reason: String },
    /// The key file could not be read or written.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// An environment variable holding a key is malformed (its value is never shown).
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    /// The provider cannot do this itself (keys managed outside Stratalake); `hint` says how.
    #[error("{provider} cannot {operation}: {hint}")]
    Unsupported {
        provider: String,
        operation: String,
        hint: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// parquet-rs refused the encryption properties.
    #[error("parquet encryption properties: {0}")]
    Parquet(String),
    /// A credential given is not acceptable (empty or oversized password, malformed verifier);
    /// the message never quotes it.
    #[error("{0}")]
    InvalidInput(String),
    /// A primitive failed (the message names it, never a secret).
    #[error("{0}")]
    Crypto(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
