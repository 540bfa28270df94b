//! `stratalake ingest`: CSV, JSON lines or Parquet files into a table, in one commit.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};
use stratalake::{Format, WriteMode};

use crate::args::{Cli, ident, parse_partitions};
use crate::lake::open;
use crate::output::{self, made, show};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// `table` or `namespace.table`.
    table: String,
    /// Files to load.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Input format: csv, tsv, json or parquet (default: from each file's extension).
    #[arg(long = "input-format")]
    input_format: Option<String>,
    #[command(flatten)]
    csv: CsvArgs,
    /// What to do with existing rows.
    #[arg(long, value_enum, default_value_t = ModeArg::Append)]
    mode: ModeArg,
    /// Create the table from the first file's columns if it does not exist.
    #[arg(long)]
    create: bool,
    /// With --create: partition fields, e.g. "region".
    #[arg(long)]
    partition_by: Option<String>,
    /// Rows that break the table's constraints: reject the whole ingest, or commit the good
    /// rows and append the bad ones (with the rule) to `<table>_quarantine`.
    #[arg(long, value_enum, default_value_t = OnErrorArg::Reject)]
    on_error: OnErrorArg,
}

/// How CSV and TSV files are read.
#[derive(Args, Debug, Clone, Default)]
struct CsvArgs {
    /// CSV field separator: one character, or `tab` (default: detected from the first line
    /// among `,` `;` tab `|`; tab for .tsv files).
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV quote character.
    #[arg(long, default_value = "\"")]
    quote: String,
    /// CSV escape character inside quotes (default: a doubled quote).
    #[arg(long)]
    escape: Option<String>,
    /// The CSV file has no header line: its fields are the table's columns in order.
    #[arg(long)]
    no_header: bool,
    /// A CSV field equal to this text is NULL (default: an empty field is NULL).
    #[arg(long = "null", value_name = "TEXT")]
    null_text: Option<String>,
    /// Format of DATE fields, chrono/strftime style (e.g. "%d.%m.%Y"; default YYYY-MM-DD).
    #[arg(long)]
    date_format: Option<String>,
    /// Format of TIMESTAMP fields (e.g. "%d.%m.%Y %H:%M"; with %z the offset is read; default
    /// RFC 3339).
    #[arg(long)]
    timestamp_format: Option<String>,
}

impl CsvArgs {
    fn options(&self, format: Option<Format>) -> Result<stratalake::IngestOptions> {
        use stratalake::table::csv::parse_char;
        let csv = stratalake::table::csv::CsvOptions {
            delimiter: self
                .delimiter
                .as_deref()
                .map(|d| parse_char("--delimiter", d))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            quote: parse_char("--quote", &self.quote).map_err(anyhow::Error::msg)?,
            escape: self
                .escape
                .as_deref()
                .map(|d| parse_char("--escape", d))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            header: !self.no_header,
            null: self.null_text.clone(),
            date_format: self.date_format.clone(),
            timestamp_format: self.timestamp_format.clone(),
        };
        Ok(stratalake::IngestOptions { format, csv })
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnErrorArg {
    Reject,
    Quarantine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Append,
    Overwrite,
    OverwritePartitions,
}

/// `stratalake ingest`.
pub async fn run(cli: &Cli, a: &IngestArgs) -> Result<()> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    let format = a
        .input_format
        .as_deref()
        .map(|f| Format::parse_named(f, "--input-format"))
        .transpose()?;
    let options = a.csv.options(format)?;
    let id = ident(&a.table)?;
    if a.create && !lake.tables(&id.namespace).await?.contains(&id.name) {
        let mut schema =
            stratalake::table::ingest::infer_schema(&a.files[0], &options, &lake.config().classifications.default)?;
        schema.partition_by = parse_partitions(&a.partition_by)?;
        lake.create_table(&id.to_string(), schema).await?;
        eprintln!("created table {id} from {}", a.files[0].display());
    }
    let mode = match a.mode {
        ModeArg::Append => WriteMode::Append,
        ModeArg::Overwrite => WriteMode::Overwrite,
        ModeArg::OverwritePartitions => WriteMode::OverwritePartitions,
    };
    let paths: Vec<&Path> = a.files.iter().map(|p| p.as_path()).collect();
    let bar = output::Progress::new("ingesting", true);
    let started = std::time::Instant::now();
    let on_error = match a.on_error {
        OnErrorArg::Reject => stratalake::table::quality::OnError::Reject,
        OnErrorArg::Quarantine => stratalake::table::quality::OnError::Quarantine,
    };
    let r = lake
        .ingest(&id.to_string(), paths)
        .options(options.clone())
        .mode(mode)
        .on_error(on_error)
        .progress(bar.callback())
        .await;
    bar.finish();
    let r = r.map_err(|e| {
        // Only a commit whose create the store answered with an error, and that could not be
        // read back, may have landed; every other failure committed nothing.
        let note = match e.commit_outcome() {
            stratalake::CommitOutcome::Unknown => {
                format!("the outcome is unknown: check `stratalake table history {id}` before retrying")
            }
            stratalake::CommitOutcome::Partly => return anyhow::Error::from(e),
            stratalake::CommitOutcome::Nothing if e.to_string().contains("nothing was committed") => {
                return anyhow::Error::from(e);
            }
            stratalake::CommitOutcome::Nothing => format!("nothing was committed to {id}"),
        };
        anyhow::Error::from(e).context(note)
    })?;
    let human = |_| {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "committed version {} of {id}: {} rows in {} encrypted file(s), {} bytes ({:.0} rows/s)",
            r.version,
            r.rows,
            r.files,
            r.bytes,
            r.rows as f64 / secs.max(1e-9)
        );
        if let Some(q) = &r.quality {
            if q.duplicates_removed > 0 || q.replaced > 0 {
                println!(
                    "  {} duplicate row(s) dropped, {} row(s) already in the table replaced",
                    q.duplicates_removed, q.replaced
                );
            }
            if let Some(qt) = &r.quarantine_table {
                let rules: Vec<String> = q.rejected.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                println!("  {} row(s) quarantined in {qt} ({})", q.quarantined, rules.join(", "));
            }
        }
        Ok(())
    };
    show(fmt, &made(&r, human))
}
