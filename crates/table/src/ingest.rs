//! Ingest of CSV, JSON lines and Parquet files as one atomic commit, in bounded memory.
//!
//! Every input is checked against the table's schema while it streams: an unknown or missing
//! column, a value of the wrong type, a null in a NOT NULL column or invalid UTF-8 rejects the
//! whole ingest with an error naming the file, line and column; nothing is committed and the
//! data files already written are deleted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::quality::Validator;
use crate::schema::TableSchema;
use crate::table::{Snapshot, Table, WriteMode};
use crate::write::{DataWriter, col_list, conform_batch};
use crate::{Error, Result};

const BATCH_ROWS: usize = 8192;

/// Input file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Json,
    /// Parquet.
    Parquet,
}

impl Format {
    /// Guess from the file extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" | "pq" => Ok(Format::Parquet),
            _ => Err(Error::BadData {
                source_name: path.display().to_string(),
                reason: "unknown file type: name it .csv, .jsonl or .parquet, or give the format (CLI: --input-format)"
                    .into(),
            }),
        }
    }

    /// Parse a format name.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(Error::BadData {
                source_name: "--format".into(),
                reason: format!("unknown format {other:?}: use csv, json or parquet"),
            }),
        }
    }
}

/// Progress of an ingest, reported after every batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Input bytes read so far.
    pub bytes: u64,
    /// Input bytes in total.
    pub total_bytes: u64,
    /// Rows read so far.
    pub rows: u64,
}

/// What an ingest did.
#[derive(Clone, Debug, Serialize)]
pub struct IngestReport {
    /// The table version committed.
    pub version: u64,
    /// Rows committed.
    pub rows: u64,
    /// Data files written.
    pub files: usize,
    /// Bytes of data files written.
    pub bytes: u64,
    /// Input bytes read.
    pub input_bytes: u64,
    /// Quality figures, when the table has constraints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::QualityMetrics>,
    /// Rows that broke a constraint, with the rule (`quality_rule`), for the quarantine table.
    #[serde(skip)]
    pub quarantine: Vec<RecordBatch>,
    /// The table the bad rows went to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_table: Option<String>,
}

struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn open_counting(path: &Path, n: &Arc<AtomicU64>) -> Result<BufReader<Counting<File>>> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    Ok(BufReader::with_capacity(1 << 20, Counting { inner: f, n: n.clone() }))
}

/// Infer a table schema from a file (every column classified `level`).
pub fn infer_schema(path: &Path, format: Option<Format>, level: &str) -> Result<TableSchema> {
    let format = match format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let name = path.display().to_string();
    let bad = |e: arrow::error::ArrowError| Error::BadData {
        source_name: name.clone(),
        reason: e.to_string(),
    };
    let schema = match format {
        Format::Csv => {
            let f = File::open(path).map_err(|e| io_err(path, e))?;
            arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(f, Some(10_000))
                .map_err(bad)?
                .0
        }
        Format::Json => {
            let f = BufReader::new(File::open(path).map_err(|e| io_err(path, e))?);
            arrow::json::reader::infer_json_schema(f, Some(10_000)).map_err(bad)?.0
        }
        Format::Parquet => {
            let f = File::open(path).map_err(|e| io_err(path, e))?;
            ParquetRecordBatchReaderBuilder::try_new(f)?.schema().as_ref().clone()
        }
    };
    Ok(TableSchema::from_arrow(&schema, level))
}

/// Read the files and commit their rows in one commit with `mode`. With constraints on the
/// table, pass a [`Validator`] made at `snap` (the version the write goes on).
#[allow(clippy::too_many_arguments)]
pub async fn ingest_files(
    table: &Table,
    snap: &Snapshot,
    paths: &[&Path],
    format: Option<Format>,
    mode: WriteMode,
    principal: &str,
    progress: &(dyn Fn(Progress) + Send + Sync),
    mut validator: Option<Validator>,
) -> Result<IngestReport> {
    let mut total = 0;
    for p in paths {
        total += std::fs::metadata(p).map_err(|e| io_err(p, e))?.len();
        match format {
            Some(_) => {}
            None => {
                Format::from_path(p)?;
            }
        }
    }
    let counter = Arc::new(AtomicU64::new(0));
    let mut w = table.writer(snap)?;
    let mut rows = 0u64;
    for p in paths {
        let fmt = match format {
            Some(f) => f,
            None => Format::from_path(p)?,
        };
        let r = ingest_one(
            &mut w,
            &snap.metadata.schema,
            p,
            fmt,
            &counter,
            total,
            &mut rows,
            progress,
            validator.as_mut(),
        )
        .await;
        if let Err(e) = r {
            w.abort().await;
            return Err(e);
        }
    }
    let mut params = BTreeMap::new();
    params.insert(
        "source".into(),
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let out = crate::quality::finish_write(table, snap, w, validator, principal, mode, params).await?;
    Ok(IngestReport {
        version: out.version,
        rows: out.metrics.as_ref().map_or(rows, |m| m.rows_written),
        files: out.files.len(),
        bytes: out.files.iter().map(|f| f.size).sum(),
        input_bytes: counter.load(Ordering::Relaxed),
        quality: out.metrics,
        quarantine: out.quarantine,
        quarantine_table: None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn ingest_one(
    w: &mut DataWriter,
    schema: &TableSchema,
    path: &Path,
    format: Format,
    counter: &Arc<AtomicU64>,
    total: u64,
    rows: &mut u64,
    progress: &(dyn Fn(Progress) + Send + Sync),
    mut validator: Option<&mut Validator>,
) -> Result<()> {
    let name = path.display().to_string();
    let target = w.schema().clone();
    let report = |rows: u64| {
        progress(Progress {
            bytes: counter.load(Ordering::Relaxed),
            total_bytes: total,
            rows,
        })
    };
    match format {
        Format::Csv => {
            let file_schema = csv_file_schema(path, schema)?;
            let fields: Vec<String> = file_schema.fields().iter().map(|f| f.name().clone()).collect();
            let reader = open_counting(path, counter)?;
            let csv = arrow::csv::ReaderBuilder::new(file_schema)
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(reader)
                .map_err(|e| Error::BadData {
                    source_name: name.clone(),
                    reason: e.to_string(),
                })?;
            let mut in_file = 0u64;
            for b in csv {
                let b = b.map_err(|e| Error::BadData {
                    source_name: name.clone(),
                    reason: csv_error(&e.to_string(), &fields),
                })?;
                let base = in_file;
                // line 1 is the header
                let b = conform_batch(&b, schema, &target, &name, &|r| format!("line {}", base + r + 2))?;
                in_file += b.num_rows() as u64;
                let b = match validator.as_deref_mut() {
                    Some(v) => v.check(b, &name, &|r| format!("line {}", base + r as u64 + 2))?,
                    None => b,
                };
                *rows += b.num_rows() as u64;
                w.write(b).await?;
                report(*rows);
            }
        }
        Format::Json => {
            let json_schema = nullable(&target);
            let mut reader = open_counting(path, counter)?;
            let mut line_no = 0u64;
            loop {
                let (chunk, first_line, n) = read_lines(&mut reader, &mut line_no, BATCH_ROWS, &name)?;
                if n == 0 {
                    break;
                }
                let b = decode_json(&json_schema, &chunk, first_line, &name)?;
                if let Some(b) = b {
                    let b = conform_batch(&b, schema, &target, &name, &|r| format!("line {}", first_line + r))?;
                    let b = match validator.as_deref_mut() {
                        Some(v) => v.check(b, &name, &|r| format!("line {}", first_line + r as u64))?,
                        None => b,
                    };
                    *rows += b.num_rows() as u64;
                    w.write(b).await?;
                    report(*rows);
                }
            }
        }
        Format::Parquet => {
            let f = File::open(path).map_err(|e| io_err(path, e))?;
            let len = f.metadata().map_err(|e| io_err(path, e))?.len();
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| Error::BadData {
                    source_name: name.clone(),
                    reason: format!("not a readable Parquet file: {e}"),
                })?
                .with_batch_size(BATCH_ROWS)
                .build()?;
            let mut in_file = 0u64;
            for b in reader {
                let b = b.map_err(|e| Error::BadData {
                    source_name: name.clone(),
                    reason: e.to_string(),
                })?;
                let base = in_file;
                let b = conform_batch(&b, schema, &target, &name, &|r| format!("row {}", base + r + 1))?;
                in_file += b.num_rows() as u64;
                let b = match validator.as_deref_mut() {
                    Some(v) => v.check(b, &name, &|r| format!("row {}", base + r as u64 + 1))?,
                    None => b,
                };
                *rows += b.num_rows() as u64;
                w.write(b).await?;
                report(*rows);
            }
            counter.fetch_add(len, Ordering::Relaxed);
            report(*rows);
        }
    }
    Ok(())
}

/// arrow-csv numbers data records from 1 (without the header) and columns from 0; say it as a
/// person reading the file would: file line and column name.
fn csv_error(msg: &str, fields: &[String]) -> String {
    let num_after = |key: &str| -> Option<(usize, usize, u64)> {
        let i = msg.find(key)? + key.len();
        let digits: String = msg[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
        Some((i - key.len(), i + digits.len(), digits.parse().ok()?))
    };
    // arrow-csv appends the whole row ("Row data: '[...]'"): never echo values of other
    // (possibly secret) columns into errors and logs.
    let msg = match msg.find(". Row data:") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let mut out = msg.to_string();
    if let Some((a, b, line)) = num_after(" at line ") {
        out = format!("{} at line {}{}", &msg[..a], line + 1, &msg[b..]);
    }
    let col = num_after(" for column ")
        .or_else(|| num_after(" field "))
        .and_then(|(_, _, c)| fields.get(c as usize));
    if let Some(col) = col {
        out = format!("column {col:?}: {out}");
    }
    out
}

fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The CSV file's columns in header order, typed from the table; all nullable so that NOT NULL
/// is checked with line numbers.
fn csv_file_schema(path: &Path, schema: &TableSchema) -> Result<SchemaRef> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let (header, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(&mut f, Some(0))
        .map_err(|e| Error::BadData {
            source_name: name.clone(),
            reason: format!("line 1 (header): {e}"),
        })?;
    f.seek(SeekFrom::Start(0)).map_err(|e| io_err(path, e))?;
    let mut fields = Vec::new();
    for h in header.fields() {
        let col = schema.column(h.name()).ok_or_else(|| Error::BadData {
            source_name: name.clone(),
            reason: format!(
                "line 1 (header): column {:?} is not in the table (columns: {})",
                h.name(),
                col_list(schema)
            ),
        })?;
        fields.push(Field::new(col.name.clone(), col.data_type.clone(), true));
    }
    for c in &schema.columns {
        if !fields.iter().any(|f| f.name() == &c.name) {
            return Err(Error::BadData {
                source_name: name,
                reason: format!("line 1 (header): column {:?} is missing", c.name),
            });
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Read up to `max` non-empty lines. Returns the bytes, the line number of the first, and the count.
fn read_lines(reader: &mut impl BufRead, line_no: &mut u64, max: usize, name: &str) -> Result<(Vec<u8>, u64, usize)> {
    let mut buf = Vec::new();
    let mut first = 0;
    let mut n = 0;
    let mut line = Vec::new();
    while n < max {
        line.clear();
        let k = reader.read_until(b'\n', &mut line).map_err(|e| Error::Io {
            path: name.to_string(),
            source: e,
        })?;
        if k == 0 {
            break;
        }
        *line_no += 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            if n == 0 {
                continue;
            }
            // A blank line inside a chunk would shift line numbers: end the chunk here.
            break;
        }
        if n == 0 {
            first = *line_no;
        }
        buf.extend_from_slice(&line);
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        n += 1;
    }
    Ok((buf, first, n))
}

fn decode_json(schema: &SchemaRef, chunk: &[u8], first_line: u64, name: &str) -> Result<Option<RecordBatch>> {
    let build = || {
        arrow::json::ReaderBuilder::new(schema.clone())
            .with_strict_mode(true)
            .with_batch_size(BATCH_ROWS + 1)
            .build_decoder()
    };
    let whole = (|| {
        let mut d = build()?;
        let mut off = 0;
        while off < chunk.len() {
            let k = d.decode(&chunk[off..])?;
            if k == 0 {
                break;
            }
            off += k;
        }
        d.flush()
    })();
    match whole {
        Ok(b) => Ok(b),
        Err(whole_err) => {
            // Find the line at fault.
            for (i, line) in chunk.split(|b| *b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let r = (|| {
                    if std::str::from_utf8(line).is_err() {
                        return Err(arrow::error::ArrowError::ParseError("invalid UTF-8".into()));
                    }
                    let mut d = build()?;
                    d.decode(line)?;
                    d.decode(b"\n")?;
                    d.flush()
                })();
                if let Err(e) = r {
                    return Err(Error::BadData {
                        source_name: name.into(),
                        reason: format!("line {}: {e}", first_line + i as u64),
                    });
                }
            }
            Err(Error::BadData {
                source_name: name.into(),
                reason: format!("lines {first_line}..: {whole_err}"),
            })
        }
    }
}
