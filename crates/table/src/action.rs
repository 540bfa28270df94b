//! The actions a table commit is made of. See `docs/format.md` for the on-disk form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stratalake_crypto::WrappedKey;

use crate::schema::TableSchema;

/// Partition values of a file: partition field name to value (`None` = null).
pub type PartitionValues = BTreeMap<String, Option<String>>;

/// One group of columns sharing a data key (the columns of one classification in one file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroup {
    /// The classification whose master key wraps this group's data key.
    pub classification: String,
    /// Top-level columns encrypted with this key (all their leaf columns).
    pub columns: Vec<String>,
    /// The wrapped data key.
    pub key: WrappedKey,
    /// Compressed bytes of these columns in the file (capacity by classification; 0 in files
    /// written before it was recorded).
    #[serde(default)]
    pub bytes: u64,
}

/// The keys of one data file, wrapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKeys {
    /// The footer key, wrapped under the lowest classification's master key.
    pub footer: WrappedKey,
    /// One group per classification present in the file.
    pub groups: Vec<KeyGroup>,
}

/// A data file added to the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFile {
    /// Path relative to the table's root, e.g. `data/region=north/<uuid>.parquet`.
    pub path: String,
    /// The tier holding the file.
    pub tier: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of rows.
    pub rows: u64,
    /// crc32 (IEEE) of the whole file.
    pub crc32: u32,
    /// Partition values.
    #[serde(default)]
    pub partition: PartitionValues,
    /// Wrapped data keys.
    pub keys: FileKeys,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl AddFile {
    /// The file's top-level column names as written (the key groups list them).
    pub fn physical_columns(&self) -> Vec<&str> {
        self.keys
            .groups
            .iter()
            .flat_map(|g| g.columns.iter().map(String::as_str))
            .collect()
    }
}

/// A data file removed from the table (its object stays until vacuum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveFile {
    /// Path relative to the table's root.
    pub path: String,
    /// The tier that held it.
    pub tier: String,
    /// Removal time, milliseconds since the Unix epoch.
    pub removed_ms: i64,
}

/// New wrapped keys for a live file after a master key rotation: the same data keys, wrapped under
/// newer master key versions. The file itself is not touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyFile {
    /// Path relative to the table's root.
    pub path: String,
    /// The re-wrapped keys.
    pub keys: FileKeys,
}

/// A live file moved to another tier: copied there as ciphertext, verified against its crc32,
/// then recorded. The copy on `from` stays until the move retention window has passed, so
/// readers of older snapshots still find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveFile {
    /// Path relative to the table's root (the same on every tier).
    pub path: String,
    /// The tier that held it.
    pub from: String,
    /// The tier holding it now.
    pub to: String,
    /// Why it moved (the rule, pin or command), shown in history.
    #[serde(default)]
    pub reason: String,
    /// When the copy on `to` was started (ms): until this commit that copy is an unreferenced
    /// object, and the commit is refused once it is older than the staging grace allows (as
    /// for new files). Absent in moves written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_ms: Option<i64>,
}

/// Table metadata: identity, schema, properties. The first commit holds one; later ones replace it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The table's id (a UUID), bound into every file's encryption.
    pub table_id: String,
    /// Namespace.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Schema and partitioning.
    pub schema: TableSchema,
    /// Free-form properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Data quality constraints every write is checked against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<crate::model::Constraint>,
    /// Names of dropped columns (and their earlier names): never given to a new column, since old
    /// files still hold them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_columns: Vec<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// Who did what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Commit time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The principal that committed.
    pub principal: String,
    /// Operation: `CREATE TABLE`, `APPEND`, `OVERWRITE`, `CLASSIFY`, ...
    pub operation: String,
    /// Unique token of this logical commit: a retried commit that already landed is found by it.
    pub token: String,
    /// Operation parameters shown in history (never secrets).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Quality figures of the rows this commit wrote (writes checked against constraints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::model::QualityMetrics>,
}

/// One action of a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Set the table's metadata.
    Metadata(Metadata),
    /// Add a data file.
    Add(AddFile),
    /// Remove a data file.
    Remove(RemoveFile),
    /// Re-wrap a live file's keys (key rotation; a log-only change).
    Rekey(RekeyFile),
    /// Record that a live file now lives on another tier.
    Move(MoveFile),
}

/// A commit: the content of one `_log/<version>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The version this commit creates.
    pub version: u64,
    /// Commit information.
    pub info: CommitInfo,
    /// Actions, applied in order.
    pub actions: Vec<Action>,
}

impl Commit {
    /// Rows added and removed, files added, removed and moved. `before` gives (rows, bytes) of a
    /// file live before this commit.
    pub fn counts(&self, before: impl Fn(&str) -> Option<(u64, u64)>) -> CommitCounts {
        let mut c = CommitCounts::default();
        for a in &self.actions {
            match a {
                Action::Add(f) => {
                    c.files_added += 1;
                    c.rows_added += f.rows;
                    c.bytes_added += f.size;
                }
                Action::Remove(r) => {
                    c.files_removed += 1;
                    c.rows_removed += before(&r.path).map_or(0, |b| b.0);
                }
                Action::Metadata(_) => c.metadata = true,
                Action::Rekey(_) => c.files_rekeyed += 1,
                Action::Move(m) => {
                    c.files_moved += 1;
                    c.bytes_moved += before(&m.path).map_or(0, |b| b.1);
                }
            }
        }
        c
    }
}

/// Summary counts of a commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommitCounts {
    /// Files added.
    pub files_added: u64,
    /// Files removed.
    pub files_removed: u64,
    /// Rows added.
    pub rows_added: u64,
    /// Rows removed.
    pub rows_removed: u64,
    /// Bytes added.
    pub bytes_added: u64,
    /// Whether the commit changed metadata.
    pub metadata: bool,
    /// Files whose keys were re-wrapped.
    pub files_rekeyed: u64,
    /// Files moved to another tier.
    pub files_moved: u64,
    /// Bytes moved to another tier.
    pub bytes_moved: u64,
}
