//! # stratalake-table
//!
//! The storage core of Stratalake: stores and tiers, the table log and its commit protocol,
//! snapshots and time travel, encrypted Parquet data files, the catalog, ingest and verify.
//!
//! ```text
//!   Catalog (_catalog/_log)          Table (<ns>/<table>/_log)
//!      │ namespaces, tables              │ versions: metadata, add/remove file
//!      ▼                                 ▼
//!   StorageContext ── Tiers (object stores: file://, memory://, s3://)
//!                 └── Keyring (KeyProvider + classification levels)
//!                                        │
//!   DataWriter ── encrypted Parquet ─────┘ files in <ns>/<table>/data/<partition>/<uuid>.parquet
//! ```
//!
//! This crate does not depend on DataFusion; `stratalake-query` adds SQL on top.
//!
//! ## Layers
//!
//! Module dependencies point one way, down this list: a module uses modules of lower layers, and
//! within its layer only those listed before it. Nothing below the table core knows about
//! [`Table`]; nothing in the model knows about reading, writing or tables. Tests
//! (`module_graph.rs`) read every module's `crate::` references and fail on a cycle (naming it)
//! or on a use against this order (which they hold as `LAYERS`: a new module gets a place in
//! both).
//!
//! 1. **Foundation** — [`error`](Error), [`clock`] (`now_ms`, `fmt_ms`), [`names`], [`units`],
//!    [`checked`], [`csv`], [`progress`] (the one event type of long operations): nothing of this crate but the error type.
//! 2. **Schema and stores** — [`schema`], [`store`] (with `store/cloud.rs`).
//! 3. **Logs** — [`logfile`] (a log file's name and framing), [`logstore`] (the one writer of
//!    numbered log objects), [`log`] (listing, reading, restoring a version), [`lock`].
//! 4. **Model** — [`model`] ([`TableIdent`], [`WriteMode`], the constraint and quality metric
//!    types), then [`action`] (actions, metadata, commits): the on-disk types.
//! 5. **Files, keys and rules** — [`keyring`], [`write`](mod@write) and [`read`] (encrypted Parquet),
//!    [`heat`] (read tracking), [`conflict`] (the commit conflict rules), [`audit`], [`access`].
//! 6. **Table core** — [`context`] ([`StorageContext`], [`Tiers`], [`CommitGuard`]), then
//!    [`snapshot`] ([`Snapshot`], history, checkpoints: reading a table's log), then [`commit`]
//!    (the commit transaction), then [`table`] (the [`Table`] handle and its operations).
//! 7. **Operations** — [`quality`] (validation), [`evolve`], [`ingest`], [`optimize`],
//!    [`vacuum`], [`verify`], [`catalog`].
//!
//! Items that moved between modules stay reachable at their old paths through re-exports
//! (`table::Snapshot`, `quality::Constraint`, `write::now_ms`, `log::encode`, ...).

pub mod access;
pub mod action;
pub mod audit;
pub mod catalog;
pub mod checked;
pub mod clock;
pub mod commit;
pub mod conflict;
pub mod context;
pub mod csv;
mod error;
pub mod evolve;
pub mod heat;
pub mod ingest;
pub mod keyring;
pub mod lock;
pub mod log;
pub mod logfile;
pub mod logstore;
pub mod model;
pub mod names;
pub mod optimize;
pub mod progress;
pub mod quality;
pub mod read;
pub mod schema;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod units;
pub mod vacuum;
pub mod verify;
pub mod write;

pub use context::{CommitGuard, PendingCommit, StorageContext, Tiers};
pub use error::{Error, Result};
pub use keyring::{Access, Keyring};
pub use model::{TableIdent, WriteMode};
pub use schema::{Classifications, ColumnDef, PartitionField, TableSchema, Transform};
pub use snapshot::Snapshot;
pub use store::Store;
pub use table::Table;

#[cfg(test)]
mod module_graph;
