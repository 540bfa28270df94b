//! Data quality constraint types: the [`Constraint`]s a table's metadata declares and the
//! [`QualityMetrics`] a checked commit records. Checking rows against them is
//! [`crate::quality`]'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What to do with a row whose key is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// The write fails (or the row is quarantined).
    Reject,
    /// The row already there (or first in the write) stays; later ones are dropped.
    KeepFirst,
    /// The last row wins: earlier rows with the key, in the write or in the table, are replaced.
    KeepLast,
}

/// A rule every row written must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Constraint {
    /// The column is never null.
    NotNull {
        /// Name.
        name: String,
        /// Column.
        column: String,
    },
    /// An SQL predicate over the row; a row where it is false is a violation (null passes, as in SQL).
    Check {
        /// Name.
        name: String,
        /// SQL predicate.
        predicate: String,
    },
    /// No two rows share these columns' values.
    Unique {
        /// Name.
        name: String,
        /// Key columns.
        columns: Vec<String>,
        /// What a duplicate does.
        on_duplicate: OnDuplicate,
    },
    /// The column's value (as text) is one of these.
    AllowedValues {
        /// Name.
        name: String,
        /// Column.
        column: String,
        /// Allowed values.
        values: Vec<String>,
    },
    /// The column's value is within bounds (inclusive; literals in the column's type).
    Range {
        /// Name.
        name: String,
        /// Column.
        column: String,
        /// Lower bound.
        min: Option<String>,
        /// Upper bound.
        max: Option<String>,
    },
    /// The column's text matches a regular expression (anchor it with `^...$` for a full match).
    Pattern {
        /// Name.
        name: String,
        /// Column.
        column: String,
        /// Regular expression.
        regex: String,
    },
    /// The date or timestamp column is not older than this when written.
    Freshness {
        /// Name.
        name: String,
        /// Column.
        column: String,
        /// Most age, ms.
        max_age_ms: i64,
    },
}

impl Constraint {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Constraint::NotNull { name, .. }
            | Constraint::Check { name, .. }
            | Constraint::Unique { name, .. }
            | Constraint::AllowedValues { name, .. }
            | Constraint::Range { name, .. }
            | Constraint::Pattern { name, .. }
            | Constraint::Freshness { name, .. } => name,
        }
    }

    /// The columns it reads (empty for CHECK, whose predicate the SQL engine resolves).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Constraint::Check { .. } => Vec::new(),
            Constraint::Unique { columns, .. } => columns.iter().map(String::as_str).collect(),
            Constraint::NotNull { column, .. }
            | Constraint::AllowedValues { column, .. }
            | Constraint::Range { column, .. }
            | Constraint::Pattern { column, .. }
            | Constraint::Freshness { column, .. } => vec![column],
        }
    }

    /// This constraint with its column names spelled as the table spells them; an unknown column
    /// is an error naming it.
    pub fn normalized(&self, schema: &crate::schema::TableSchema, table: &str) -> Result<Self> {
        let fix = |c: &str| -> Result<String> {
            schema
                .column(c)
                .map(|x| x.name.clone())
                .ok_or_else(|| Error::InvalidSchema {
                    table: table.into(),
                    reason: format!(
                        "constraint {:?} names column {c:?}, which the table does not have",
                        self.name()
                    ),
                })
        };
        let mut out = self.clone();
        match &mut out {
            Constraint::Check { .. } => {}
            Constraint::Unique { columns, .. } => {
                for c in columns.iter_mut() {
                    *c = fix(c)?;
                }
            }
            Constraint::NotNull { column, .. }
            | Constraint::AllowedValues { column, .. }
            | Constraint::Range { column, .. }
            | Constraint::Pattern { column, .. }
            | Constraint::Freshness { column, .. } => *column = fix(column)?,
        }
        Ok(out)
    }

    /// A one-line description (`UNIQUE (id) ON DUPLICATE KEEP LAST`).
    pub fn describe(&self) -> String {
        match self {
            Constraint::NotNull { column, .. } => format!("NOT NULL ({column})"),
            Constraint::Check { predicate, .. } => format!("CHECK ({predicate})"),
            Constraint::Unique {
                columns, on_duplicate, ..
            } => format!(
                "UNIQUE ({}) ON DUPLICATE {}",
                columns.join(", "),
                match on_duplicate {
                    OnDuplicate::Reject => "REJECT",
                    OnDuplicate::KeepFirst => "KEEP FIRST",
                    OnDuplicate::KeepLast => "KEEP LAST",
                }
            ),
            Constraint::AllowedValues { column, values, .. } => format!(
                "{column} IN ({})",
                values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Constraint::Range { column, min, max, .. } => format!(
                "{column} BETWEEN {} AND {}",
                min.as_deref().unwrap_or("-inf"),
                max.as_deref().unwrap_or("+inf")
            ),
            Constraint::Pattern { column, regex, .. } => format!("{column} MATCHES '{}'", regex.replace('\'', "''")),
            Constraint::Freshness { column, max_age_ms, .. } => {
                format!("{column} FRESHER THAN {}s", max_age_ms / 1000)
            }
        }
    }
}

/// Quality figures of one write, stored in its commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityMetrics {
    /// Rows offered.
    pub rows_in: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows that broke each rule (a row counts under the first rule it broke).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, u64>,
    /// Rows sent to the quarantine table.
    #[serde(default)]
    pub quarantined: u64,
    /// Duplicate rows dropped (keep first / keep last).
    #[serde(default)]
    pub duplicates_removed: u64,
    /// Rows already in the table replaced by newer rows with their key (keep last).
    #[serde(default)]
    pub replaced: u64,
    /// Nulls per column among the rows written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nulls: BTreeMap<String, u64>,
    /// Newest value of each freshness column among the rows written, ms since the epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub newest_ms: BTreeMap<String, i64>,
}
