//! Per-file data keys: generated, wrapped under master keys, and unwrapped for readers.
//!
//! Every wrap and unwrap goes through the [`KeyProvider`] ([`wrap_data_key`] /
//! [`unwrap_data_key`]): this module never sees master key bytes, so a KMS that never releases
//! them works as well as the key file.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::Schema;
use parquet::arrow::ArrowSchemaConverter;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use stratalake_crypto::parquet_props::{aad_prefix, decryption_properties, encryption_properties};
use stratalake_crypto::{DataKey, KeyContext, KeyProvider, WrappedKey, unwrap_data_key, wrap_data_key};

use crate::action::{AddFile, FileKeys, KeyGroup};
use crate::schema::{Classifications, TableSchema};
use crate::{Error, Result};

/// Which classifications a reader may decrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every classification (administrative reads, verify, maintenance).
    All,
    /// Only these classifications; other columns' keys are never requested.
    Levels(BTreeSet<String>),
}

impl Access {
    /// Whether `level` may be decrypted.
    pub fn allows(&self, level: &str) -> bool {
        match self {
            Access::All => true,
            Access::Levels(l) => l.contains(level),
        }
    }
}

/// The lake's key provider and classification levels.
#[derive(Clone)]
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    classes: Classifications,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider.describe())
            .field("levels", &self.classes.levels)
            .finish()
    }
}

/// Leaf column paths (as parquet names them) of each top-level column, in schema order.
pub fn leaf_columns(schema: &Schema) -> Result<Vec<(String, String)>> {
    let descr = ArrowSchemaConverter::new().convert(schema)?;
    Ok((0..descr.num_columns())
        .map(|i| {
            (
                descr.get_column_root(i).name().to_string(),
                descr.column(i).path().string(),
            )
        })
        .collect())
}

impl Keyring {
    /// A keyring over a provider and the lake's levels.
    pub fn new(provider: Arc<dyn KeyProvider>, classes: Classifications) -> Self {
        Self { provider, classes }
    }

    /// The classification levels.
    pub fn classifications(&self) -> &Classifications {
        &self.classes
    }

    /// The key provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Fresh keys for a new file: a footer key and one key per classification present, wrapped;
    /// plus the parquet encryption properties that use them.
    pub(crate) async fn seal_file(
        &self,
        table_id: &str,
        file: &str,
        schema: &TableSchema,
    ) -> Result<(FileKeys, Arc<FileEncryptionProperties>)> {
        let arrow = schema.arrow_schema();
        let leaves = leaf_columns(&arrow)?;
        let footer_level = self.classes.lowest().to_string();
        let ctx = |role: &str| KeyContext {
            table_id: table_id.into(),
            file: file.into(),
            role: role.into(),
        };
        let provider = self.provider.as_ref();
        let footer = DataKey::generate()?;
        let footer_wrapped = wrap_data_key(provider, &footer_level, &footer, &ctx("footer")).await?;

        let mut groups = Vec::new();
        let mut keys: Vec<(String, DataKey)> = Vec::new();
        for level in &self.classes.levels {
            let cols: Vec<String> = schema
                .columns
                .iter()
                .filter(|c| &c.classification == level)
                .map(|c| c.name.clone())
                .collect();
            if cols.is_empty() {
                continue;
            }
            let dk = DataKey::generate()?;
            groups.push(KeyGroup {
                classification: level.clone(),
                columns: cols,
                key: wrap_data_key(provider, level, &dk, &ctx(level)).await?,
                bytes: 0,
            });
            keys.push((level.clone(), dk));
        }
        let mut column_keys: Vec<(String, &DataKey)> = Vec::with_capacity(leaves.len());
        for (root, leaf) in &leaves {
            let level = &schema
                .column(root)
                .ok_or_else(|| Error::Internal(format!("leaf {leaf} has no column")))?
                .classification;
            let dk = &keys
                .iter()
                .find(|(l, _)| l == level)
                .ok_or_else(|| Error::InvalidSchema {
                    table: table_id.to_string(),
                    reason: format!(
                        "column {root:?} is classified {level:?}, which is not a level of this lake ({})",
                        self.classes.levels.join(", ")
                    ),
                })?
                .1;
            column_keys.push((leaf.clone(), dk));
        }
        let props = encryption_properties(&footer, &column_keys, aad_prefix(table_id, file))?;
        Ok((
            FileKeys {
                footer: footer_wrapped,
                groups,
            },
            props,
        ))
    }

    /// The keys of `add` re-wrapped under the current master key version of each level in
    /// `levels` (every level when `None`) that they are not wrapped under yet; `None` when
    /// nothing changes. The data keys stay the same, so the file is not touched. Levels whose
    /// key was destroyed (shredded) are left as they are.
    pub async fn rewrap(
        &self,
        table_id: &str,
        add: &AddFile,
        levels: Option<&BTreeSet<String>>,
    ) -> Result<Option<FileKeys>> {
        let mut keys = add.keys.clone();
        let mut changed = false;
        let mut slots: Vec<(&mut WrappedKey, String)> = vec![(&mut keys.footer, "footer".to_string())];
        for g in keys.groups.iter_mut() {
            let role = g.classification.clone();
            slots.push((&mut g.key, role));
        }
        for (wrapped, role) in slots {
            let level = wrapped.key.classification.clone();
            if levels.is_some_and(|l| !l.contains(&level)) {
                continue;
            }
            let cur = match self.provider.current_id(&level).await {
                Ok(c) => c,
                Err(stratalake_crypto::Error::KeyDestroyed { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if wrapped.key.version >= cur.version {
                continue;
            }
            let ctx = KeyContext {
                table_id: table_id.into(),
                file: add.path.clone(),
                role,
            };
            let dk = unwrap_data_key(self.provider.as_ref(), wrapped, &ctx).await?;
            let rewrapped = wrap_data_key(self.provider.as_ref(), &level, &dk, &ctx).await?;
            if rewrapped.key.version <= wrapped.key.version {
                // The current version went back between the two calls (a provider answering
                // from a stale copy): keep what the file has.
                continue;
            }
            *wrapped = rewrapped;
            changed = true;
        }
        Ok(changed.then_some(keys))
    }

    /// Decryption properties for `add` holding only the keys `access` allows. Returns also the
    /// top-level columns that cannot be decrypted.
    pub async fn open_file(
        &self,
        table_id: &str,
        add: &AddFile,
        file_schema: &Schema,
        access: &Access,
    ) -> Result<(Arc<FileDecryptionProperties>, Vec<String>)> {
        self.open_file_for(table_id, add, file_schema, access, None).await
    }

    /// Like [`Keyring::open_file`], but hands parquet the keys of `columns` only (top-level
    /// names), even where a data key also covers other columns of the file.
    pub async fn open_file_for(
        &self,
        table_id: &str,
        add: &AddFile,
        file_schema: &Schema,
        access: &Access,
        columns: Option<&std::collections::HashSet<&str>>,
    ) -> Result<(Arc<FileDecryptionProperties>, Vec<String>)> {
        let ctx = |role: &str| KeyContext {
            table_id: table_id.into(),
            file: add.path.clone(),
            role: role.into(),
        };
        let provider = self.provider.as_ref();
        let footer = unwrap_data_key(provider, &add.keys.footer, &ctx("footer")).await?;
        let leaves = leaf_columns(file_schema)?;
        let mut granted: Vec<(Vec<String>, DataKey)> = Vec::new();
        let mut hidden = Vec::new();
        for g in &add.keys.groups {
            if access.allows(&g.classification) {
                let dk = unwrap_data_key(provider, &g.key, &ctx(&g.classification)).await?;
                granted.push((g.columns.clone(), dk));
            } else {
                hidden.extend(g.columns.iter().cloned());
            }
        }
        let mut column_keys: Vec<(String, &DataKey)> = Vec::new();
        for (root, leaf) in &leaves {
            if columns.is_some_and(|c| !c.contains(root.as_str())) {
                continue;
            }
            if let Some((_, k)) = granted.iter().find(|(cols, _)| cols.iter().any(|c| c == root)) {
                column_keys.push((leaf.clone(), k));
            }
        }
        let props = decryption_properties(&footer, &column_keys, aad_prefix(table_id, &add.path))?;
        Ok((props, hidden))
    }
}
