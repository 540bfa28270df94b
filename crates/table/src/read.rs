//! Reading data files back: checksum, decryption with the reader's keys, row counts.

use std::sync::Arc;

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
    // The file holds the columns under the names they had when it was written.
    let physical = add.physical_columns();
    let file_arrow = schema.file_arrow_schema(&physical);
    let (props, hidden) = keyring.open_file(table_id, add, &file_arrow, access).await?;
    let logical: Vec<&crate::schema::ColumnDef> = schema
        .columns
        .iter()
        .filter(|c| columns.is_none_or(|cols| cols.contains(&c.name)))
        .collect();
    let phys_of =
        |c: &crate::schema::ColumnDef| crate::schema::TableSchema::physical_name(c, &physical).map(String::from);
    if let Some(cols) = columns
        && let Some(h) = cols
            .iter()
            .find(|c| schema.column(c).and_then(phys_of).is_some_and(|p| hidden.contains(&p)))
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
    let want_phys: Vec<String> = logical.iter().filter_map(|c| phys_of(c)).collect();
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !hidden.contains(f.name()) && want_phys.contains(f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder.with_projection(mask).build().map_err(undecryptable)?;
    // Columns in the table's current form: renamed ones under their new name, widened ones cast,
    // ones added after the file was written as their default (or NULL); hidden ones left out.
    let out_cols: Vec<(&crate::schema::ColumnDef, Option<String>)> = logical
        .iter()
        .map(|c| (*c, phys_of(c)))
        .filter(|(_, p)| p.as_ref().is_none_or(|p| !hidden.contains(p)))
        .collect();
    let out_schema = Arc::new(arrow::datatypes::Schema::new(
        out_cols
            .iter()
            .map(|(c, _)| arrow::datatypes::Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ));
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| Error::CorruptData {
            path: display_path.to_string(),
            reason: format!("cannot decode: {e}"),
        })?;
        let mut arrays = Vec::with_capacity(out_cols.len());
        for (c, p) in &out_cols {
            let a = match p.as_ref().and_then(|p| b.column_by_name(p)) {
                Some(a) if a.data_type() == &c.data_type => a.clone(),
                Some(a) => arrow::compute::cast(a, &c.data_type)?,
                None => missing_column(c, b.num_rows())?,
            };
            arrays.push(a);
        }
        out.push(RecordBatch::try_new_with_options(
            out_schema.clone(),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
        )?);
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

/// The values of a column a file predates: its default, or NULL.
pub fn missing_column(c: &crate::schema::ColumnDef, rows: usize) -> Result<arrow::array::ArrayRef> {
    Ok(match &c.default {
        Some(d) => {
            let one = arrow::compute::cast(
                &(Arc::new(arrow::array::StringArray::from(vec![d.as_str()])) as arrow::array::ArrayRef),
                &c.data_type,
            )?;
            let idx = arrow::array::UInt32Array::from(vec![0u32; rows]);
            arrow::compute::take(&one, &idx, None)?
        }
        None => arrow::array::new_null_array(&c.data_type, rows),
    })
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
