//! Reading data files back: checksum, decryption with the reader's keys, row counts.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use crate::action::AddFile;
use crate::keyring::{Access, Keyring};
use crate::schema::TableSchema;
use crate::store::Store;
use crate::{Error, Result};

/// Fetch a file's bytes and check its size and crc32 against the log.
pub async fn fetch_checked(store: &Store, table_root: &str, add: &AddFile) -> Result<Bytes> {
    let rel = format!("{table_root}/{}", add.path);
    let data = match store.get(&rel).await {
        Ok(d) => d,
        Err(Error::Store {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            return Err(Error::CorruptData {
                path: store.path(&rel).to_string(),
                reason: format!("missing from tier {}", add.tier),
            });
        }
        Err(e) => return Err(e),
    };
    if data.len() as u64 != add.size {
        return Err(Error::CorruptData {
            path: store.path(&rel).to_string(),
            reason: format!("size is {} bytes, the log says {}", data.len(), add.size),
        });
    }
    let crc = crc32fast::hash(&data);
    if crc != add.crc32 {
        return Err(Error::CorruptData {
            path: store.path(&rel).to_string(),
            reason: format!(
                "checksum mismatch (log {:08x}, file {crc:08x}): the file is damaged or was replaced",
                add.crc32
            ),
        });
    }
    Ok(data)
}

/// Decrypt and decode a whole file (or the named columns) with the keys `access` allows.
#[allow(clippy::too_many_arguments)]
pub async fn read_file(
    data: Bytes,
    display_path: &str,
    table_id: &str,
    add: &AddFile,
    schema: &TableSchema,
    keyring: &Keyring,
    access: &Access,
    columns: Option<&[String]>,
) -> Result<Vec<RecordBatch>> {
    let arrow = schema.arrow_schema();
    let (props, hidden) = keyring.open_file(table_id, add, &arrow, access).await?;
    if let Some(cols) = columns
        && let Some(h) = cols.iter().find(|c| hidden.contains(c))
    {
        return Err(Error::CorruptData {
            path: display_path.into(),
            reason: format!("no key for column {h:?}"),
        });
    }
    let undecryptable = |e: parquet::errors::ParquetError| Error::CorruptData {
        path: display_path.to_string(),
        reason: format!(
            "cannot decrypt or decode ({e}): wrong key, damaged file, or a file moved from another path or table"
        ),
    };
    let opts = ArrowReaderOptions::new().with_file_decryption_properties(props);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(data, opts).map_err(undecryptable)?;
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !hidden.contains(f.name()) && columns.is_none_or(|c| c.contains(f.name())))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder.with_projection(mask).build().map_err(undecryptable)?;
    let mut out = Vec::new();
    for b in reader {
        out.push(b.map_err(|e| Error::CorruptData {
            path: display_path.to_string(),
            reason: format!("cannot decode: {e}"),
        })?);
    }
    let rows: u64 = out.iter().map(|b| b.num_rows() as u64).sum();
    if rows != add.rows {
        return Err(Error::CorruptData {
            path: display_path.into(),
            reason: format!("holds {rows} rows, the log says {}", add.rows),
        });
    }
    Ok(out)
}

/// What a reader without keys gets from a data file: used to show that files are encrypted.
pub fn plain_parquet_check(file: std::fs::File) -> String {
    match ParquetRecordBatchReaderBuilder::try_new(file) {
        Ok(b) => format!(
            "READABLE WITHOUT KEYS ({} rows) - this must not happen",
            b.metadata().file_metadata().num_rows()
        ),
        Err(e) => format!("refused: {e}"),
    }
}
