//! Writing encrypted Parquet data files: batches are checked against the table schema, split by
//! partition, and rolled into files of a target size. Files are uploaded before any commit
//! refers to them; an aborted write deletes what it uploaded.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{CastOptions, cast_with_options, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use chrono::{Datelike, NaiveDate};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::action::{AddFile, FileKeys, PartitionValues};
pub use crate::clock::{fmt_ms, now_ms};
use crate::keyring::Keyring;
use crate::names::{MAX_SEGMENT_LEN, NULL_SEGMENT, encode_segment};
use crate::schema::{TableSchema, Transform};
use crate::store::Store;
use crate::{Error, Result};

/// Knobs of the data writer.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Roll to a new file once a file reaches this many bytes.
    pub target_file_size: usize,
    /// Rows per row group at most.
    pub row_group_rows: usize,
    /// Open partition files at most; beyond it the largest is finished early.
    pub max_open_files: usize,
    /// zstd level.
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            target_file_size: 128 << 20,
            row_group_rows: 256 * 1024,
            max_open_files: 16,
            zstd_level: 1,
        }
    }
}

/// Where and how to write: the table's identity and the tier receiving files.
#[derive(Clone, Debug)]
pub struct WriteTarget {
    /// Store of the tier receiving new files.
    pub store: Store,
    /// That tier's name.
    pub tier: String,
    /// The table's root relative to the store root, e.g. `default/permits`.
    pub table_root: String,
    /// The table's id.
    pub table_id: String,
    /// The table's schema.
    pub schema: TableSchema,
    /// Keys.
    pub keyring: Keyring,
    /// Options.
    pub options: WriteOptions,
}

struct OpenFile {
    partition: PartitionValues,
    rel_path: String,
    keys: FileKeys,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

/// Streams batches into encrypted data files.
pub struct DataWriter {
    target: WriteTarget,
    arrow: SchemaRef,
    open: HashMap<String, OpenFile>,
    done: Vec<AddFile>,
    /// Finished files still being uploaded (and fsynced) while encoding goes on.
    uploads: std::collections::VecDeque<tokio::task::JoinHandle<Result<()>>>,
    rows: u64,
}

/// Finished files uploading at once at most; bounds the memory held by finished files.
const MAX_PENDING_UPLOADS: usize = 2;

impl std::fmt::Debug for DataWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataWriter")
            .field("table_root", &self.target.table_root)
            .field("rows", &self.rows)
            .finish()
    }
}

/// Fit a batch to the table schema: columns by name, types cast where lossless casting works,
/// NOT NULL checked. `source` names the input in errors; `position` names a row of the batch
/// (e.g. `line 12`).
pub fn conform_batch(
    batch: &RecordBatch,
    schema: &TableSchema,
    target: &SchemaRef,
    source: &str,
    position: &dyn Fn(u64) -> String,
) -> Result<RecordBatch> {
    let bad = |reason: String| Error::BadData {
        source_name: source.to_string(),
        reason,
    };
    let in_schema = batch.schema();
    for f in in_schema.fields() {
        if schema.column(f.name()).is_none() {
            return Err(bad(format!(
                "column {:?} is not in the table (columns: {})",
                f.name(),
                col_list(schema)
            )));
        }
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for (field, def) in target.fields().iter().zip(&schema.columns) {
        let idx = in_schema
            .fields()
            .iter()
            .position(|f| f.name() == &def.name)
            .or_else(|| {
                in_schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(&def.name))
            });
        let col = match idx {
            Some(i) => batch.column(i).clone(),
            None => return Err(bad(format!("column {:?} is missing", def.name))),
        };
        let col = if col.data_type() == field.data_type() {
            col
        } else {
            let opts = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(&col, field.data_type(), &opts).map_err(|e| {
                // Name the first value that does not fit (a lenient cast leaves it NULL), and
                // say why without quoting it.
                let lenient = cast_with_options(&col, field.data_type(), &CastOptions::default()).ok();
                let row = (0..col.len()).find(|i| col.is_valid(*i) && lenient.as_ref().is_none_or(|l| l.is_null(*i)));
                let why = if e.to_string().contains("too large") || e.to_string().contains("Overflow") {
                    "the value does not fit (too many digits or too large)".to_string()
                } else {
                    "the value cannot be converted".to_string()
                };
                match row {
                    Some(r) => bad(format!(
                        "{}, column {:?}: cannot store {} as {}: {why}",
                        position(r as u64),
                        def.name,
                        col.data_type(),
                        field.data_type()
                    )),
                    None => bad(format!(
                        "column {:?}: cannot store {} as {}: {e}",
                        def.name,
                        col.data_type(),
                        field.data_type()
                    )),
                }
            })?
        };
        if !def.nullable && col.null_count() > 0 {
            let row = (0..col.len()).find(|i| col.is_null(*i)).unwrap_or(0) as u64;
            return Err(bad(format!(
                "{}: column {:?} is NOT NULL but the value is null",
                position(row),
                def.name
            )));
        }
        cols.push(col);
    }
    RecordBatch::try_new(target.clone(), cols).map_err(|e| bad(e.to_string()))
}

/// The table's column names, for error messages.
pub(crate) fn col_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn partition_strings(col: &ArrayRef, transform: Transform) -> Result<Vec<Option<String>>> {
    let n = col.len();
    let mut out = Vec::with_capacity(n);
    match transform {
        Transform::Identity => {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            for i in 0..n {
                out.push(if col.is_null(i) {
                    None
                } else {
                    Some(fmt.value(i).to_string())
                });
            }
        }
        t => {
            // Day numbers since the epoch, in UTC.
            let days: Vec<Option<i64>> = match col.data_type() {
                DataType::Date32 | DataType::Date64 => {
                    let d = cast_with_options(col, &DataType::Date32, &CastOptions::default())?;
                    let d = d.as_any().downcast_ref::<arrow::array::Date32Array>().expect("date32");
                    (0..n).map(|i| d.is_valid(i).then(|| d.value(i) as i64)).collect()
                }
                DataType::Timestamp(_, _) => {
                    let ms = cast_with_options(
                        col,
                        &DataType::Timestamp(TimeUnit::Millisecond, None),
                        &CastOptions::default(),
                    )?;
                    let ms = ms
                        .as_any()
                        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                        .expect("ts ms");
                    (0..n)
                        .map(|i| ms.is_valid(i).then(|| ms.value(i).div_euclid(86_400_000)))
                        .collect()
                }
                other => return Err(Error::Internal(format!("{t} partition of {other}"))),
            };
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
            for (row, d) in days.into_iter().enumerate() {
                let Some(d) = d else {
                    out.push(None);
                    continue;
                };
                let date = chrono::Duration::try_days(d)
                    .and_then(|dd| epoch.checked_add_signed(dd))
                    .ok_or_else(|| Error::BadData {
                        source_name: "partitioning".into(),
                        reason: format!(
                            "row {}: a date or timestamp outside the supported range (years -262143..262143)",
                            row + 1
                        ),
                    })?;
                out.push(Some(match t {
                    Transform::Day => date.format("%Y-%m-%d").to_string(),
                    Transform::Month => format!("{:04}-{:02}", date.year(), date.month()),
                    _ => format!("{:04}", date.year()),
                }));
            }
        }
    }
    Ok(out)
}

impl DataWriter {
    /// A writer into `target`.
    pub fn new(target: WriteTarget) -> Self {
        let arrow = target.schema.arrow_schema();
        Self {
            target,
            arrow,
            open: HashMap::new(),
            done: Vec::new(),
            uploads: Default::default(),
            rows: 0,
        }
    }

    /// The Arrow schema batches are conformed to.
    pub fn schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Write a batch already conformed to [`DataWriter::schema`] (see [`conform_batch`]).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let parts = self.target.schema.partition_by.clone();
        if parts.is_empty() {
            self.write_part(String::new(), PartitionValues::new(), batch).await?;
        } else {
            let mut per_field = Vec::with_capacity(parts.len());
            for p in &parts {
                let idx = self
                    .arrow
                    .index_of(&self.target.schema.column(&p.column).expect("validated").name)?;
                per_field.push(partition_strings(batch.column(idx), p.transform)?);
            }
            let mut groups: HashMap<Vec<Option<String>>, Vec<u32>> = HashMap::new();
            for row in 0..batch.num_rows() {
                let key: Vec<Option<String>> = per_field.iter().map(|v| v[row].clone()).collect();
                groups.entry(key).or_default().push(row as u32);
            }
            let mut groups: Vec<_> = groups.into_iter().collect();
            groups.sort();
            for (key, rows) in groups {
                let sub = if rows.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    take_record_batch(&batch, &UInt32Array::from(rows))?
                };
                let ordered: Vec<(String, Option<String>)> =
                    parts.iter().map(|p| p.name()).zip(key.iter().cloned()).collect();
                let k = partition_dir(&ordered)?;
                let values: PartitionValues = ordered.into_iter().collect();
                self.write_part(k, values, sub).await?;
            }
        }
        Ok(())
    }

    async fn write_part(&mut self, key: String, values: PartitionValues, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        if !self.open.contains_key(&key) {
            if self.open.len() >= self.target.options.max_open_files.max(1) {
                let largest = self
                    .open
                    .iter()
                    .max_by_key(|(_, f)| f.writer.in_progress_size() + f.writer.bytes_written())
                    .map(|(k, _)| k.clone())
                    .expect("non-empty");
                self.finish_file(&largest).await?;
            }
            let f = start_file(&self.target, &self.arrow, &key, values).await?;
            self.open.insert(key.clone(), f);
        }
        let f = self.open.get_mut(&key).expect("just opened");
        f.writer.write(&batch)?;
        f.rows += rows;
        self.rows += rows;
        if f.writer.bytes_written() + f.writer.in_progress_size() >= self.target.options.target_file_size {
            self.finish_file(&key).await?;
        }
        Ok(())
    }

    async fn finish_file(&mut self, key: &str) -> Result<()> {
        let mut f = self.open.remove(key).expect("open file");
        f.writer.flush()?;
        // Bytes per classification, for capacity reports: sum of each column's chunks.
        for rg in f.writer.flushed_row_groups() {
            for cc in rg.columns() {
                let top = cc.column_path().parts().first().cloned().unwrap_or_default();
                if let Some(g) = f.keys.groups.iter_mut().find(|g| g.columns.contains(&top)) {
                    g.bytes += cc.compressed_size().max(0) as u64;
                }
            }
        }
        let buf = f.writer.into_inner()?;
        let crc32 = crc32fast::hash(&buf);
        let size = buf.len() as u64;
        let rel = format!("{}/{}", self.target.table_root, f.rel_path);
        let store = self.target.store.clone();
        let rows = f.rows;
        // Before the upload starts: the object's modification time is never earlier (vacuum's
        // staging grace is measured from it).
        let created_ms = now_ms();
        self.uploads.push_back(tokio::spawn(async move {
            store.put(&rel, Bytes::from(buf)).await?;
            tracing::debug!(file = %rel, size, rows, "data file written");
            Ok(())
        }));
        // Listed before its upload ends, so that an abort deletes it whatever happens.
        self.done.push(AddFile {
            path: f.rel_path,
            tier: self.target.tier.clone(),
            size,
            rows: f.rows,
            crc32,
            partition: f.partition,
            keys: f.keys,
            created_ms,
        });
        while self.uploads.len() > MAX_PENDING_UPLOADS {
            let h = self.uploads.pop_front().expect("non-empty");
            join_upload(h).await?;
        }
        Ok(())
    }

    /// Finish every open file and return the files to commit. They are uploaded and durable.
    pub async fn finish(mut self) -> Result<Vec<AddFile>> {
        let mut keys: Vec<String> = self.open.keys().cloned().collect();
        keys.sort();
        let mut result = Ok(());
        for k in keys {
            result = self.finish_file(&k).await;
            if result.is_err() {
                break;
            }
        }
        while let Some(h) = self.uploads.pop_front() {
            let r = join_upload(h).await;
            if result.is_ok() {
                result = r;
            }
        }
        match result {
            Ok(()) => Ok(std::mem::take(&mut self.done)),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Delete every file this writer uploaded (best effort) and drop open ones.
    pub async fn abort(mut self) {
        self.open.clear();
        while let Some(h) = self.uploads.pop_front() {
            let _ = join_upload(h).await;
        }
        delete_files(&self.target.store, &self.target.table_root, &self.done).await;
        self.done.clear();
    }
}

async fn join_upload(h: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
    h.await
        .map_err(|e| Error::Internal(format!("upload task failed: {e}")))?
}

async fn start_file(
    target: &WriteTarget,
    arrow: &SchemaRef,
    dir: &str,
    partition: PartitionValues,
) -> Result<OpenFile> {
    let name = format!("{}.parquet", uuid::Uuid::new_v4());
    let rel_path = if dir.is_empty() {
        format!("data/{name}")
    } else {
        format!("data/{dir}/{name}")
    };
    let (keys, enc) = target
        .keyring
        .seal_file(&target.table_id, &rel_path, &target.schema)
        .await?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(target.options.zstd_level)?))
        .set_max_row_group_row_count(Some(target.options.row_group_rows))
        .with_file_encryption_properties(enc)
        .build();
    let writer = ArrowWriter::try_new(Vec::with_capacity(1 << 20), arrow.clone(), Some(props))?;
    Ok(OpenFile {
        partition,
        rel_path,
        keys,
        writer,
        rows: 0,
    })
}

/// Best-effort deletion of uploaded but uncommitted files.
pub async fn delete_files(store: &Store, table_root: &str, files: &[AddFile]) {
    for f in files {
        let rel = format!("{table_root}/{}", f.path);
        if let Err(e) = store.delete(&rel).await {
            tracing::warn!(file = %rel, error = %e, "could not delete uncommitted data file");
        }
    }
}

/// The directory of a partition: `field=value/...` in partition order, both encoded.
pub fn partition_dir(values: &[(String, Option<String>)]) -> Result<String> {
    let mut parts = Vec::with_capacity(values.len());
    for (k, v) in values {
        let seg = format!(
            "{}={}",
            encode_segment(k),
            v.as_deref()
                .map(encode_segment)
                .unwrap_or_else(|| NULL_SEGMENT.to_string())
        );
        if seg.len() > MAX_SEGMENT_LEN {
            return Err(Error::BadData {
                source_name: "partitioning".into(),
                reason: format!(
                    "partition value of {k:?} is too long for a path segment ({} bytes encoded, at most {MAX_SEGMENT_LEN})",
                    seg.len()
                ),
            });
        }
        parts.push(seg);
    }
    Ok(parts.join("/"))
}

/// A batch of the given schema, for tests and callers building data by hand.
pub fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}
