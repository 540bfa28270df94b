//! `stratalake export`: a query's result, or a table, as a local Parquet, CSV or JSON-lines file,
//! read as the calling principal (its grants, row filters, masks and clearances apply).
//!
//! The file holds only what the principal could read with `sql`, but it is written in clear: the
//! lake's keys do not protect it. It is created private (mode 0600) next to its destination and
//! appears there only when complete; the audit log records the export with its destination.
//! SQL `COPY ... TO` stays refused: a statement must never choose files on the machine that runs
//! it (in the coming server, that is the server's own disk).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use stratalake::arrow::array::RecordBatch;
use stratalake::arrow::datatypes::SchemaRef;
use stratalake::query::Piece;

use crate::args::{Cli, as_of_arg, ident};
use crate::lake::open;
use crate::output::{self, JsonStyle, made, show};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A query (`SELECT ...`, `WITH ...`) or a table name (`gov.permits`).
    source: String,
    /// The file to write.
    #[arg(long, short = 'o')]
    to: PathBuf,
    /// parquet, csv or jsonl (default: from the file's extension).
    #[arg(long = "file-format")]
    file_format: Option<String>,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
    /// Read as of a version number or a timestamp.
    #[arg(long)]
    as_of: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum FileFormat {
    Parquet,
    Csv,
    Jsonl,
}

impl FileFormat {
    fn of(explicit: Option<&str>, path: &Path) -> Result<Self> {
        let name = match explicit {
            Some(f) => f.to_ascii_lowercase(),
            None => path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .with_context(|| {
                    format!(
                        "{}: cannot tell the format from the name; pass --file-format parquet|csv|jsonl",
                        path.display()
                    )
                })?,
        };
        Ok(match name.as_str() {
            "parquet" | "pq" => FileFormat::Parquet,
            "csv" => FileFormat::Csv,
            "jsonl" | "ndjson" | "json" => FileFormat::Jsonl,
            other => bail!("--file-format {other:?}: use parquet, csv or jsonl"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }
}

enum Writer {
    Parquet(parquet::arrow::ArrowWriter<std::fs::File>),
    Csv(stratalake::arrow::csv::Writer<std::io::BufWriter<std::fs::File>>),
    Jsonl(stratalake::arrow::json::LineDelimitedWriter<std::io::BufWriter<std::fs::File>>),
}

impl Writer {
    fn new(format: FileFormat, file: std::fs::File, schema: &SchemaRef) -> Result<Self> {
        Ok(match format {
            FileFormat::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build();
                Writer::Parquet(parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?)
            }
            FileFormat::Csv => Writer::Csv(
                stratalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(std::io::BufWriter::new(file)),
            ),
            FileFormat::Jsonl => Writer::Jsonl(
                stratalake::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(std::io::BufWriter::new(file)),
            ),
        })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<()> {
        match self {
            Writer::Parquet(w) => w.write(b)?,
            Writer::Csv(w) => w.write(b)?,
            Writer::Jsonl(w) => w.write(b)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<std::fs::File> {
        Ok(match self {
            Writer::Parquet(mut w) => {
                w.flush()?;
                w.into_inner()?
            }
            Writer::Csv(w) => w.into_inner().into_inner().map_err(|e| e.into_error())?,
            Writer::Jsonl(mut w) => {
                w.finish()?;
                w.into_inner().into_inner().map_err(|e| e.into_error())?
            }
        })
    }
}

/// The partly written file: removed unless the export completes.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// `stratalake export`.
pub async fn run(cli: &Cli, a: &ExportArgs) -> Result<ExitCode> {
    let fmt = cli.format;
    let format = FileFormat::of(a.file_format.as_deref(), &a.to)?;
    let query = if stratalake::query::is_query(&a.source) {
        a.source.clone()
    } else if !a.source.contains(char::is_whitespace) {
        // a table name, checked as one (no SQL slipped in through it)
        format!("SELECT * FROM {}", ident(&a.source)?)
    } else {
        bail!(
            "export takes one query (SELECT ..., WITH ...) or a table name; statements that change data cannot be exported"
        );
    };
    if !a.force && a.to.exists() {
        bail!("{} exists; pass --force to replace it", a.to.display());
    }
    let dir = match a.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name =
        a.to.file_name()
            .with_context(|| format!("{}: not a file name", a.to.display()))?
            .to_string_lossy()
            .to_string();
    let as_of = as_of_arg(a.as_of.as_deref())?;
    let lake = open(cli).await?;
    let dest = std::path::absolute(&a.to).unwrap_or_else(|_| a.to.clone());
    let engine = lake
        .sql_session()
        .with_as_of(as_of)
        .with_audit_as("export", &format!("-- to {} ({})", dest.display(), format.name()));

    let mut suffix = [0u8; 6];
    stratalake::crypto::random_bytes(&mut suffix).map_err(anyhow::Error::msg)?;
    let hex = stratalake::crypto::hex::encode(suffix);
    let partial = Partial {
        path: dir.join(format!(".{file_name}.partial-{hex}")),
        keep: false,
    };
    let file = create_private(&partial.path).with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut file = Some(file);
    let mut writer: Option<Writer> = None;
    let mut rows = 0u64;
    let mut failed: Option<anyhow::Error> = None;
    let bar = output::Progress::new("exporting rows", false);
    let r = engine
        .execute_streaming(&query, &mut |p| {
            let step = (|| -> Result<()> {
                match p {
                    Piece::Start { schema, .. } => {
                        writer = Some(Writer::new(format, file.take().context("one result")?, schema)?);
                    }
                    Piece::Batch(b) => {
                        writer.as_mut().context("rows before columns")?.write(b)?;
                        rows += b.num_rows() as u64;
                        bar.update(rows, 0, "");
                    }
                    Piece::End { .. } | Piece::Done { .. } => {}
                }
                Ok(())
            })();
            step.map_err(|e| {
                let msg = format!("writing {} failed: {e:#}", a.to.display());
                failed = Some(e);
                stratalake::query::Error::Sql(msg)
            })
        })
        .await;
    bar.finish();
    if let Some(e) = failed {
        return Err(e.context(format!("nothing was exported to {}", a.to.display())));
    }
    r.with_context(|| format!("nothing was exported to {}", a.to.display()))?;
    let file = writer
        .context("the statement returned no rows to export")?
        .finish()
        .with_context(|| format!("writing {} failed", a.to.display()))?;
    file.sync_all()?;
    drop(file);
    if a.force {
        std::fs::rename(&partial.path, &a.to)
    } else {
        // appears only if nothing took the name meanwhile
        std::fs::hard_link(&partial.path, &a.to).map(|_| ())
    }
    .with_context(|| format!("cannot put the export at {}", a.to.display()))?;
    let mut partial = partial;
    if a.force {
        partial.keep = true;
    }
    drop(partial);
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let size = std::fs::metadata(&a.to).map(|m| m.len()).unwrap_or(0);
    let doc = serde_json::json!({
        "done": format!("exported {rows} row(s) to {}", a.to.display()),
        "file": a.to.display().to_string(),
        "format": format.name(),
        "rows": rows,
        "bytes": size,
    });
    let human = |_| {
        println!(
            "exported {rows} row(s) to {} ({}, {}; not encrypted: protect it like the data)",
            a.to.display(),
            format.name(),
            output::size(size)
        );
        Ok(())
    };
    show(fmt, &made(doc, human).with_style(JsonStyle::Line))?;
    Ok(ExitCode::SUCCESS)
}
