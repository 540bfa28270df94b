//! The on-disk model's value types that actions and commits carry, and that every layer above
//! names: a table's identity ([`TableIdent`]), how a write relates to existing data
//! ([`WriteMode`]), data quality constraints and the quality figures of a commit
//! ([`Constraint`], [`QualityMetrics`]). The actions themselves are in [`crate::action`].
//!
//! This module depends only on [`crate::schema`], [`crate::names`] and the error type: never on
//! reading, writing or tables.

mod constraint;
mod ident;
mod mode;

pub use constraint::{Constraint, OnDuplicate, QualityMetrics};
pub use ident::TableIdent;
pub use mode::WriteMode;
