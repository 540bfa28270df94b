//! The key glue between a scan and parquet-rs: an [`EncryptionFactory`] that owns only the
//! decryption properties of the files of one scan (unwrapped from the log's wrapped keys while
//! the scan was planned) and hands each file its own. It never encrypts, and a path that is not
//! a live file of the scanned snapshot gets no keys.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::Result as DFResult;
use datafusion::config::EncryptionFactoryOptions;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::parquet::encryption::decrypt::FileDecryptionProperties;
use datafusion::parquet::encryption::encrypt::FileEncryptionProperties;
use object_store::path::Path;

/// Decryption properties for the files of one scan, keyed by object path.
#[derive(Default)]
pub(super) struct ScanKeys {
    pub(super) files: HashMap<String, Arc<FileDecryptionProperties>>,
}

impl fmt::Debug for ScanKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScanKeys({} files, <redacted>)", self.files.len())
    }
}

#[async_trait]
impl EncryptionFactory for ScanKeys {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &SchemaRef,
        file_path: &Path,
    ) -> DFResult<Option<Arc<FileEncryptionProperties>>> {
        Err(datafusion::error::DataFusionError::Plan(format!(
            "scan keys cannot write {file_path}"
        )))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &Path,
    ) -> DFResult<Option<Arc<FileDecryptionProperties>>> {
        match self.files.get(file_path.as_ref()) {
            Some(p) => Ok(Some(p.clone())),
            None => Err(datafusion::error::DataFusionError::Execution(format!(
                "no keys for {file_path}: it is not a live file of the scanned snapshot"
            ))),
        }
    }
}
