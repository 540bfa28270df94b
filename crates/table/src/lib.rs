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

pub mod access;
pub mod action;
pub mod audit;
pub mod catalog;
pub mod checked;
pub mod conflict;
pub mod csv;
mod error;
pub mod evolve;
pub mod heat;
pub mod ingest;
pub mod keyring;
pub mod lock;
pub mod log;
pub mod logstore;
pub mod names;
pub mod optimize;
pub mod quality;
pub mod read;
pub mod schema;
pub mod store;
pub mod table;
pub mod units;
pub mod vacuum;
pub mod verify;
pub mod write;

pub use error::{Error, Result};
pub use keyring::{Access, Keyring};
pub use schema::{Classifications, ColumnDef, PartitionField, TableSchema, Transform};
pub use store::Store;
pub use table::{CommitGuard, PendingCommit, Snapshot, StorageContext, Table, TableIdent, Tiers, WriteMode};
