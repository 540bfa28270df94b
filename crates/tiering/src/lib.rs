//! # stratalake-tiering
//!
//! Tiered storage for Stratalake: placement rules and pins ([`plan`]), the mover that copies
//! files between tiers as ciphertext and records each move in the table log ([`mover`]), a
//! bounded local read cache for non-local tiers ([`cache`]), capacity reports with growth and
//! forecast ([`capacity`], [`html`]) and quotas checked at commit time ([`quota`]).
//!
//! ```text
//!   stratalake.toml ── Policy (tiers, rules, pins, quotas)
//!                          │
//!   table logs ── plan ──► moves ── mover: copy ─► verify crc32 ─► MOVE commit ─► (later) delete old copy
//!        │
//!        └──────── capacity: usage per tier/namespace/table/partition/classification, trend, forecast
//! ```

pub mod cache;
pub mod capacity;
pub mod config;
pub mod html;
pub mod mover;
pub mod plan;
pub mod quota;
pub mod units;

pub use config::{PinConfig, Policy, QuotaConfig, RuleConfig, TieringSection};

/// Errors of tiering. Messages name the setting, table, file or tier that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tiering setting in `stratalake.toml` (or an argument) is not valid.
    #[error("tiering configuration: {0}")]
    Config(String),
    /// Another mover or a vacuum is running.
    #[error("the tier mover is locked by {holder}; {hint}")]
    Locked { holder: String, hint: String },
    /// A storage error.
    #[error(transparent)]
    Table(#[from] stratalake_table::Error),
    /// Part of the work is committed (what `done` says), then it failed.
    #[error("{done} and are committed, but then: {source}")]
    PartlyDone { done: String, source: Box<Error> },
}

/// Result of tiering operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
