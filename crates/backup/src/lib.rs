//! # stratalake-backup
//!
//! Backup repositories for Stratalake lakes, on any store (local folder, S3-compatible bucket,
//! memory): content addressed, so every backup is incremental by construction; each backup
//! consistent with one version of each table; manifests and table logs sealed with AES-256-GCM
//! under a repository key that is itself wrapped under the lake's master key; data files kept as
//! the Parquet ciphertext they already are. See `docs/backup.md`.
//!
//! ```text
//!   Lake ── create ──▶ Repository (config.json, data/, meta/, snapshots/, locks/)
//!                        │ list · verify [--read-data] · forget · prune
//!   Lake ◀── restore ────┘ (checked first, published in one catalog commit)
//! ```
//!
//! The facade crate `stratalake` exposes this as `Lake::backup_*`; this crate works on the
//! storage core's [`Catalog`](stratalake_table::catalog::Catalog) directly.

mod create;
mod error;
mod forget;
mod manifest;
mod repo;
mod restore;
mod verify;

pub use create::{BackupOptions, Progress, ProgressFn};
pub use error::{Error, Result};
pub use forget::{BackupInfo, ForgetEntry, KeepPolicy, PruneReport};
pub use manifest::{FileRef, Manifest, TableBackup, Totals};
pub use repo::Repository;
pub use restore::{RestoreOptions, RestoreSummary, RestoredInfo};
pub use verify::{Problem, VerifyReport};
