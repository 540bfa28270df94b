//! The manifest of one backup: sealed in `snapshots/<id>`, it names every object the backup needs.

use serde::{Deserialize, Serialize};
use stratalake_table::catalog::CatalogState;

use crate::{Error, Result};

/// One backup's manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// `stratalake-backup-manifest/v1`.
    pub format: String,
    /// The backup's id (also its object name).
    pub id: String,
    /// When the backup was taken (milliseconds since the epoch).
    pub created_ms: i64,
    /// Host and principal that took it.
    pub host: String,
    /// Principal that took it.
    pub principal: String,
    /// Whether every table of the lake was included.
    pub whole_lake: bool,
    /// The catalog when the backup started: namespaces, tables, principals, roles, grants,
    /// row filters, masks and classification policies.
    pub catalog: CatalogState,
    /// The tables backed up.
    pub tables: Vec<TableBackup>,
    /// Totals.
    pub totals: Totals,
}

/// One table in a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableBackup {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The table's id.
    pub table_id: String,
    /// The version the backup is consistent with.
    pub version: u64,
    /// The oldest version whose files the backup holds in full (older files had been vacuumed).
    pub restorable_from: u64,
    /// Live rows at `version`.
    pub rows: u64,
    /// Log commits `0..=version`, as metadata object ids, in order.
    pub commits: Vec<String>,
    /// Every data file of versions `restorable_from..=version`.
    pub files: Vec<FileRef>,
}

impl TableBackup {
    /// `namespace.name`.
    pub fn ident(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// A data file in a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the table root (as in the log).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// crc32 from the log.
    pub crc32: u32,
    /// sha256 of the bytes: the object's name in `data/`.
    pub sha256: String,
}

/// Totals of a backup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Tables.
    pub tables: u64,
    /// Data files referenced.
    pub files: u64,
    /// Bytes of data files referenced.
    pub bytes: u64,
    /// Data files this backup copied (the rest were already in the repository).
    pub new_files: u64,
    /// Bytes this backup copied.
    pub new_bytes: u64,
    /// Metadata objects written.
    pub new_meta: u64,
}

pub(crate) const MANIFEST_FORMAT: &str = "stratalake-backup-manifest/v1";

/// A path from a manifest must stay inside its table: relative, no `.`/`..`/empty segments,
/// no backslashes, below `data/`.
pub(crate) fn check_file_path(p: &str) -> Result<(), String> {
    if !p.starts_with("data/") {
        return Err(format!("file path {p:?} is not below data/"));
    }
    if p.contains('\\') || p.contains('\0') {
        return Err(format!("file path {p:?} holds a backslash or NUL"));
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("file path {p:?} has an empty, . or .. segment"));
    }
    Ok(())
}

fn check_hex(s: &str, what: &str) -> Result<(), String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("{what} {s:?} is not a sha256 in lower-case hex"))
    }
}

impl Manifest {
    /// Every reason this manifest cannot be trusted to restore from (hostile or malformed
    /// entries). Empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != MANIFEST_FORMAT {
            out.push(format!("format {:?} is not {MANIFEST_FORMAT:?}", self.format));
        }
        for t in &self.tables {
            let name = t.ident();
            for (kind, n) in [("namespace", &t.namespace), ("table", &t.name)] {
                if let Err(e) = stratalake_table::names::validate_ident(kind, n) {
                    out.push(format!("table {name:?}: {e}"));
                }
            }
            if t.commits.len() as u64 != t.version + 1 {
                out.push(format!(
                    "table {name}: {} log commits for version {}",
                    t.commits.len(),
                    t.version
                ));
            }
            for c in &t.commits {
                if let Err(e) = check_hex(c, "log object") {
                    out.push(format!("table {name}: {e}"));
                }
            }
            for f in &t.files {
                if let Err(e) = check_file_path(&f.path).and_then(|_| check_hex(&f.sha256, "data object")) {
                    out.push(format!("table {name}: {e}"));
                }
            }
        }
        out
    }

    /// The table named `ns.name`.
    pub fn table(&self, ident: &str) -> Result<&TableBackup> {
        self.tables.iter().find(|t| t.ident() == ident).ok_or_else(|| {
            Error::Refused(format!(
                "backup {} holds no table {ident} (it holds: {})",
                self.id,
                self.tables.iter().map(|t| t.ident()).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}
