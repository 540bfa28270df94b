//! parquet-rs encryption and decryption properties from Stratalake data keys.
//!
//! Every leaf column gets a key (parquet-rs writes columns without a key in plaintext once any
//! column key is set), the footer is encrypted, and the AAD prefix is *not* stored in the file:
//! the reader supplies it from the table log, so a file moved to another path or table fails.

use std::sync::Arc;

use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;

use crate::{DataKey, Error, Result};

/// The AAD prefix binding a data file to its table and its path in that table.
pub fn aad_prefix(table_id: &str, file: &str) -> Vec<u8> {
    format!("stratalake/v1\n{table_id}\n{file}").into_bytes()
}

/// Properties to write one file: `columns` pairs every leaf column path (as parquet names it,
/// e.g. `address.city`) with its data key.
pub fn encryption_properties(
    footer: &DataKey,
    columns: &[(String, &DataKey)],
    aad_prefix: Vec<u8>,
) -> Result<Arc<FileEncryptionProperties>> {
    let mut b = FileEncryptionProperties::builder(footer.expose().to_vec())
        .with_plaintext_footer(false)
        .with_aad_prefix(aad_prefix)
        .with_aad_prefix_storage(false);
    for (path, key) in columns {
        b = b.with_column_key(path, key.expose().to_vec());
    }
    b.build().map_err(|e| Error::Parquet(e.to_string()))
}

/// Properties to read one file with the keys the reader is entitled to. Columns left out of
/// `columns` cannot be read; everything else can.
pub fn decryption_properties(
    footer: &DataKey,
    columns: &[(String, &DataKey)],
    aad_prefix: Vec<u8>,
) -> Result<Arc<FileDecryptionProperties>> {
    let mut b = FileDecryptionProperties::builder(footer.expose().to_vec()).with_aad_prefix(aad_prefix);
    for (path, key) in columns {
        b = b.with_column_key(path, key.expose().to_vec());
    }
    b.build().map_err(|e| Error::Parquet(e.to_string()))
}
