//! Printing rows as aligned tables, CSV or JSON, and progress bars.

use std::sync::Arc;

use anyhow::Result;
use clap::ValueEnum;
use stratalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
use stratalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// Aligned table.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

pub fn print_batches(schema: &SchemaRef, batches: &[RecordBatch], fmt: OutFormat) -> Result<()> {
    match fmt {
        OutFormat::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                println!(
                    "{}",
                    stratalake::arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(schema.clone())])?
                );
                if header.is_empty() {
                    return Ok(());
                }
                println!("(0 rows)");
            } else {
                println!("{}", stratalake::arrow::util::pretty::pretty_format_batches(batches)?);
                let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                println!("({n} row{})", if n == 1 { "" } else { "s" });
            }
        }
        OutFormat::Csv => {
            let mut w = stratalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        OutFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = stratalake::arrow::json::ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            println!("{}", String::from_utf8_lossy(&buf));
        }
    }
    Ok(())
}

/// Print string rows under headers in the chosen format.
pub fn print_rows(headers: &[&str], rows: Vec<Vec<String>>, fmt: OutFormat) -> Result<()> {
    let schema: SchemaRef = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..headers.len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    print_batches(&schema, &[batch], fmt)
}

/// Progress on stderr: a bar on a terminal, otherwise a plain line every few seconds, so that
/// logs of scripted runs show long operations advancing.
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: String,
    bytes: bool,
    last: Arc<std::sync::Mutex<std::time::Instant>>,
}

impl Progress {
    /// Progress of `what`, counted in bytes or in items.
    pub fn new(what: &str, bytes: bool) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let counts = if bytes { "{bytes}/{total_bytes}" } else { "{pos}/{len}" };
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!("{what} [{{bar:30}}] {counts} {{msg}} {{elapsed}}"))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            what: what.to_string(),
            bytes,
            last: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        }
    }

    /// Report `done` of `total`, with a note.
    pub fn update(&self, done: u64, total: u64, note: &str) {
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
                b.set_message(note.to_string());
            }
            None => {
                let mut last = self.last.lock().expect("progress lock");
                if last.elapsed() >= std::time::Duration::from_secs(5) {
                    *last = std::time::Instant::now();
                    let unit = if self.bytes { " bytes" } else { "" };
                    eprintln!("{}: {done}/{total}{unit} {note}", self.what);
                }
            }
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
