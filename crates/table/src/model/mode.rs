//! [`WriteMode`]: how a write relates to the data already in the table.

use serde::{Deserialize, Serialize};

/// How a write relates to existing data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace the whole table.
    Overwrite,
    /// Replace the partitions the new data touches.
    OverwritePartitions,
}

impl WriteMode {
    /// The operation name in history.
    pub fn operation(self) -> &'static str {
        match self {
            WriteMode::Append => "APPEND",
            WriteMode::Overwrite => "OVERWRITE",
            WriteMode::OverwritePartitions => "OVERWRITE PARTITIONS",
        }
    }
}
