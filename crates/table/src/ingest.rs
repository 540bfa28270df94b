//! Ingest of CSV, JSON lines and Parquet files as one atomic commit, in bounded memory.
//!
//! Every input is checked against the table's schema while it streams: an unknown or missing
//! column, a value of the wrong type, a null in a NOT NULL column or invalid UTF-8 rejects the
//! whole ingest with an error naming the file, line and column; nothing is committed and the
//! data files already written are deleted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::csv::{self as csvin, CsvOptions};
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
    /// Delimited text (comma, or the delimiter given or detected), with a header line unless
    /// told otherwise ([`CsvOptions`]).
    Csv,
    /// Tab-separated values: CSV with a tab delimiter.
    Tsv,
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
            "tsv" | "tab" => Ok(Format::Tsv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" | "pq" => Ok(Format::Parquet),
            _ => Err(Error::BadData {
                source_name: path.display().to_string(),
                reason: "unknown file type: name it .csv, .tsv, .jsonl or .parquet, or give the format (CLI: --input-format)"
                    .into(),
            }),
        }
    }

    /// Parse a format name (`flag` names where it came from, for the error).
    pub fn parse_named(s: &str, flag: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(Error::BadData {
                source_name: flag.into(),
                reason: format!("unknown format {other:?}: use csv, tsv, json or parquet"),
            }),
        }
    }

    /// Parse a format name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_named(s, "format")
    }
}

/// How input files are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOptions {
    /// The format of every file; `None`: from each file's extension.
    pub format: Option<Format>,
    /// CSV and TSV reading.
    pub csv: CsvOptions,
}

impl IngestOptions {
    /// The options for one format and otherwise the defaults.
    pub fn format(format: Option<Format>) -> Self {
        Self {
            format,
            ..Default::default()
        }
    }
}

/// Progress of an ingest (operation `ingest`, phase `reading`), reported after every batch:
/// input bytes read of all, rows read.
pub use crate::progress::Progress;

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
pub fn infer_schema(path: &Path, options: &IngestOptions, level: &str) -> Result<TableSchema> {
    let format = match options.format {
        Some(f) => f,
        None => Format::from_path(path)?,
    };
    let name = path.display().to_string();
    let bad = |e: arrow::error::ArrowError| Error::BadData {
        source_name: name.clone(),
        reason: e.to_string(),
    };
    let schema = match format {
        Format::Csv | Format::Tsv => {
            let f = File::open(path).map_err(|e| io_err(path, e))?;
            csv_format(path, format, &options.csv)?
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

/// The delimiter of a CSV or TSV file: given, tab for TSV, else detected from its first line.
fn delimiter(path: &Path, format: Format, opts: &CsvOptions) -> Result<u8> {
    if let Some(d) = opts.delimiter {
        return Ok(d);
    }
    if format == Format::Tsv {
        return Ok(b'\t');
    }
    let mut first = Vec::new();
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    BufReader::new(f)
        .take(1 << 20)
        .read_until(b'\n', &mut first)
        .map_err(|e| io_err(path, e))?;
    Ok(csvin::detect_delimiter(&first, opts.quote))
}

/// arrow-csv's reading options for a file.
fn csv_format(path: &Path, format: Format, opts: &CsvOptions) -> Result<arrow::csv::reader::Format> {
    let mut f = arrow::csv::reader::Format::default()
        .with_header(opts.header)
        .with_delimiter(delimiter(path, format, opts)?)
        .with_quote(opts.quote);
    if let Some(e) = opts.escape {
        f = f.with_escape(e);
    }
    if let Some(n) = &opts.null {
        f = f.with_null_regex(null_regex(n)?);
    }
    Ok(f)
}

fn null_regex(text: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^{}$", regex::escape(text))).map_err(|e| Error::BadData {
        source_name: "--null".into(),
        reason: e.to_string(),
    })
}

/// Read the files and commit their rows in one commit with `mode`. With constraints on the
/// table, pass a [`Validator`] made at `snap` (the version the write goes on).
#[allow(clippy::too_many_arguments)]
pub async fn ingest_files(
    table: &Table,
    snap: &Snapshot,
    paths: &[&Path],
    options: &IngestOptions,
    mode: WriteMode,
    principal: &str,
    progress: &(dyn Fn(Progress) + Send + Sync),
    mut validator: Option<Validator>,
) -> Result<IngestReport> {
    let format = options.format;
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
            &options.csv,
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
    csv_opts: &CsvOptions,
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
            operation: "ingest",
            phase: "reading",
            bytes_done: counter.load(Ordering::Relaxed),
            bytes_total: total,
            rows_done: rows,
            ..Default::default()
        })
    };
    match format {
        Format::Csv | Format::Tsv => {
            let (file_schema, columns) = csv_file_schema(path, format, csv_opts, schema)?;
            let fields: Vec<String> = file_schema.fields().iter().map(|f| f.name().clone()).collect();
            let reader = open_counting(path, counter)?;
            let mut builder = arrow::csv::ReaderBuilder::new(file_schema)
                .with_format(csv_format(path, format, csv_opts)?)
                .with_batch_size(BATCH_ROWS);
            if let Some(n) = &csv_opts.null {
                builder = builder.with_null_regex(null_regex(n)?);
            }
            let csv = builder.build(reader).map_err(|e| Error::BadData {
                source_name: name.clone(),
                reason: e.to_string(),
            })?;
            // file lines of data records: after the header, if there is one
            let first_line = if csv_opts.header { 2 } else { 1 };
            let mut in_file = 0u64;
            for b in csv {
                let b = b.map_err(|e| Error::BadData {
                    source_name: name.clone(),
                    reason: csv_error(&e.to_string(), &fields, csv_opts.header),
                })?;
                let base = in_file;
                let line = |r: u64| format!("line {}", base + r + first_line);
                let b = typed(&b, &columns, &target, csv_opts).map_err(|(row, col, why)| Error::BadData {
                    source_name: name.clone(),
                    reason: format!("{}, column {col:?}: {why}", line(row as u64)),
                })?;
                let b = conform_batch(&b, schema, &target, &name, &line)?;
                in_file += b.num_rows() as u64;
                let b = match validator.as_deref_mut() {
                    Some(v) => v.check(b, &name, &|r| line(r as u64))?,
                    None => b,
                };
                *rows += b.num_rows() as u64;
                w.write(b).await?;
                report(*rows);
            }
        }
        Format::Json => {
            let json_schema = json_read_schema(&target);
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

/// Say arrow-csv's errors as a person reading the file would: file line and column name, and
/// never the row's values.
fn csv_error(msg: &str, fields: &[String], header: bool) -> String {
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
    if msg.contains("invalid UTF-8")
        && let (Some((_, _, line)), Some((_, _, field))) = (num_after(" for line "), num_after(" and field "))
    {
        // arrow-csv counts lines of the file (the header included) and fields from 1
        return match fields.get((field as usize).wrapping_sub(1)) {
            Some(col) => format!("line {line}, column {col:?}: invalid UTF-8"),
            None => format!("line {line}: invalid UTF-8"),
        };
    }
    if msg.contains("incorrect number of fields")
        && let Some((_, _, line)) = num_after(" for line ")
    {
        let found = num_after(" got ")
            .map(|(_, _, n)| format!(" ({n})"))
            .unwrap_or_default();
        return format!(
            "line {line}: a different number of fields{found} than the {} column(s) {} (check the delimiter and quotes)",
            fields.len(),
            if header { "of the header" } else { "of the table" }
        );
    }
    msg.to_string()
}

/// The CSV file's columns in header order (or the table's, without a header), all read as
/// text; and, per field, the table column it fills.
fn csv_file_schema(
    path: &Path,
    format: Format,
    opts: &CsvOptions,
    schema: &TableSchema,
) -> Result<(SchemaRef, Vec<String>)> {
    let name = path.display().to_string();
    let columns: Vec<String> = if opts.header {
        let mut f = File::open(path).map_err(|e| io_err(path, e))?;
        let (header, _) = csv_format(path, format, opts)?
            .infer_schema(&mut f, Some(0))
            .map_err(|e| Error::BadData {
                source_name: name.clone(),
                reason: format!("line 1 (header): {e}"),
            })?;
        let mut columns = Vec::new();
        for h in header.fields() {
            let col = schema.column(h.name()).ok_or_else(|| Error::BadData {
                source_name: name.clone(),
                reason: format!(
                    "line 1 (header): column {:?} is not in the table (columns: {}){}",
                    h.name(),
                    col_list(schema),
                    if header.fields().len() == 1 && h.name().contains([';', '\t', '|', ',']) {
                        " - is the delimiter right? (--delimiter)".to_string()
                    } else {
                        String::new()
                    }
                ),
            })?;
            if columns.contains(&col.name) {
                return Err(Error::BadData {
                    source_name: name,
                    reason: format!("line 1 (header): column {:?} appears twice", col.name),
                });
            }
            columns.push(col.name.clone());
        }
        for c in &schema.columns {
            if !columns.contains(&c.name) {
                return Err(Error::BadData {
                    source_name: name,
                    reason: format!("line 1 (header): column {:?} is missing", c.name),
                });
            }
        }
        columns
    } else {
        schema.columns.iter().map(|c| c.name.clone()).collect()
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c, arrow::datatypes::DataType::Utf8, true))
        .collect();
    Ok((Arc::new(Schema::new(fields)), columns))
}

/// Convert a batch of text fields to the table's types, column by column. `Err((row, column,
/// reason))` names the first field that does not convert.
fn typed(
    batch: &RecordBatch,
    columns: &[String],
    target: &SchemaRef,
    opts: &CsvOptions,
) -> std::result::Result<RecordBatch, (usize, String, String)> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let field = target
            .field_with_name(c)
            .map_err(|_| (0, c.clone(), "not in the table".to_string()))?;
        let text = batch
            .column(i)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| (0, c.clone(), "not read as text".to_string()))?;
        let a = csvin::convert(text, field.data_type(), opts).map_err(|(row, why)| (row, c.clone(), why))?;
        fields.push(Field::new(c, field.data_type().clone(), true));
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| (0, String::new(), e.to_string()))
}

/// The schema JSON lines are decoded with: every column nullable (NOT NULL is checked with line
/// numbers), and decimals read with one more digit of scale than the column has, because
/// arrow-json's decimal parser cuts off extra digits: the cast to the column then rounds half
/// away from zero, as SQL does (the first cut digit decides, so cutting after it is exact).
fn json_read_schema(schema: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::DataType as D;
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    D::Decimal32(_, s) | D::Decimal64(_, s) | D::Decimal128(_, s) | D::Decimal256(_, s)
                        if *s >= 0 && *s < 76 =>
                    {
                        D::Decimal256(76, s + 1)
                    }
                    t => t.clone(),
                };
                Field::new(f.name(), t, true)
            })
            .collect::<Vec<_>>(),
    ))
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
