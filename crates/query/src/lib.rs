//! # stratalake-query
//!
//! SQL over Stratalake tables through Apache DataFusion.
//!
//! ```text
//!  SQL text ─► split into statements ─► Stratalake DDL? ─► catalog / table log
//!                                   └─► time travel rewrite ─► DataFusion plan
//!                                                                 │
//!  LakeCatalogProvider (one schema per namespace) ─► LakeTableProvider::scan
//!      partition pruning from the log, one Parquet scan per tier, per-file keys
//!      unwrapped from the log and handed to parquet-rs through an EncryptionFactory
//! ```
//!
//! Every statement reads the catalog and logs afresh: no plan or data is cached across
//! statements. `INSERT INTO` commits an append (or an overwrite) through the table log.

mod catalog;
pub mod ddl;
mod dml;
mod engine;
mod error;
mod evolution;
pub mod pg_catalog;
mod policy;
mod policy_exec;
pub mod provider;
pub mod quality;
mod runtime;
mod scan_policy;
mod stats;

pub use catalog::AsOf;
pub use engine::{
    CATALOG_NAME, Cancel, Described, Output, Piece, ROW_COUNT_STATEMENTS, Sink, SqlSession, first_word, guarded,
    is_complete, is_query, only_reads, split_statements, statements_with_lines,
};
pub use error::{Error, Result};
pub use policy::{check_mask, check_row_filter};
pub use runtime::{QueryRuntime, RuntimeOptions};
pub use stats::forget_all as forget_cached_statistics;
