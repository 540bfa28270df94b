//! Printing rows as aligned tables, CSV or JSON, and progress bars.

use std::sync::Arc;

use std::io::Write;

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
    /// A JSON array of objects (several SQL statements: an array of their results).
    Json,
    /// One JSON object per line (rows of SQL results; other commands print their JSON document).
    Ndjson,
}

impl OutFormat {
    /// JSON of either kind.
    pub fn is_json(self) -> bool {
        matches!(self, OutFormat::Json | OutFormat::Ndjson)
    }
}

/// How NULL is shown in aligned tables (never as an empty string, which is a value).
pub const NULL_TEXT: &str = "NULL";

fn table_options() -> stratalake::arrow::util::display::FormatOptions<'static> {
    stratalake::arrow::util::display::FormatOptions::default().with_null(NULL_TEXT)
}

/// Writes SQL results as they arrive: CSV, JSON and NDJSON row by row; aligned tables up to
/// `maxrows` rows (the rest counted, not kept), or one record per block when expanded.
pub struct ResultWriter {
    fmt: OutFormat,
    /// Rows an aligned table shows at most (0: all).
    pub maxrows: usize,
    /// Aligned output as one block per row (`\x`).
    pub expanded: bool,
    out: Box<dyn std::io::Write + Send>,
    /// JSON of several statements: an array of their results.
    multi: bool,
    results: usize,
    cur: Option<Current>,
}

struct Current {
    schema: SchemaRef,
    kept: Vec<RecordBatch>,
    kept_rows: usize,
    rows: usize,
}

impl ResultWriter {
    /// Results of one command to `out`; `statements` is how many it runs (JSON of several is
    /// an array of their results).
    pub fn new(fmt: OutFormat, out: Box<dyn std::io::Write + Send>, statements: usize) -> Self {
        Self {
            fmt,
            maxrows: 0,
            expanded: false,
            out,
            multi: statements > 1,
            results: 0,
            cur: None,
        }
    }

    /// Send results elsewhere from now on (`\o`).
    pub fn redirect(&mut self, out: Box<dyn std::io::Write + Send>) {
        let _ = self.out.flush();
        self.out = out;
    }

    /// The output format.
    pub fn format(&self) -> OutFormat {
        self.fmt
    }

    fn begin_result(&mut self) -> Result<()> {
        if self.fmt.is_json() && self.multi {
            self.out.write_all(if self.results == 0 { b"[" } else { b"," })?;
        }
        self.results += 1;
        Ok(())
    }

    /// Take one piece of a statement's result.
    pub fn piece(&mut self, p: stratalake::query::Piece<'_>) -> Result<()> {
        use stratalake::query::Piece;
        match p {
            Piece::Start { schema, .. } => {
                self.begin_result()?;
                self.cur = Some(Current {
                    schema: schema.clone(),
                    kept: Vec::new(),
                    kept_rows: 0,
                    rows: 0,
                });
                match self.fmt {
                    OutFormat::Csv => {
                        let mut w = stratalake::arrow::csv::WriterBuilder::new()
                            .with_header(true)
                            .build(&mut self.out);
                        w.write(&RecordBatch::new_empty(schema.clone()))?;
                    }
                    OutFormat::Json => self.out.write_all(b"[")?,
                    _ => {}
                }
            }
            Piece::Batch(b) => {
                let Some(cur) = &mut self.cur else { return Ok(()) };
                let first = cur.rows == 0;
                cur.rows += b.num_rows();
                match self.fmt {
                    OutFormat::Csv => {
                        let mut w = stratalake::arrow::csv::WriterBuilder::new()
                            .with_header(false)
                            .build(&mut self.out);
                        w.write(b)?;
                    }
                    OutFormat::Json => {
                        let mut buf = Vec::new();
                        {
                            let mut w = stratalake::arrow::json::WriterBuilder::new()
                                .with_explicit_nulls(true)
                                .build::<_, stratalake::arrow::json::writer::JsonArray>(&mut buf);
                            w.write(b)?;
                            w.finish()?;
                        }
                        // the rows without the array's brackets, joined to those before
                        let inner = buf
                            .strip_prefix(b"[")
                            .and_then(|b| b.strip_suffix(b"]"))
                            .unwrap_or(&buf);
                        if !inner.is_empty() {
                            if !first {
                                self.out.write_all(b",")?;
                            }
                            self.out.write_all(inner)?;
                        }
                    }
                    OutFormat::Ndjson => {
                        let mut w = stratalake::arrow::json::WriterBuilder::new()
                            .with_explicit_nulls(true)
                            .build::<_, stratalake::arrow::json::writer::LineDelimited>(&mut self.out);
                        w.write(b)?;
                        w.finish()?;
                    }
                    OutFormat::Table => {
                        let room = if self.maxrows == 0 {
                            b.num_rows()
                        } else {
                            self.maxrows.saturating_sub(cur.kept_rows).min(b.num_rows())
                        };
                        if room > 0 {
                            cur.kept.push(b.slice(0, room));
                            cur.kept_rows += room;
                        }
                    }
                }
            }
            Piece::End { .. } => {
                let Some(cur) = self.cur.take() else { return Ok(()) };
                match self.fmt {
                    OutFormat::Json => self.out.write_all(if self.multi { b"]" } else { b"]\n" })?,
                    OutFormat::Table => self.table(&cur)?,
                    _ => {}
                }
            }
            Piece::Done { message, .. } => match self.fmt {
                OutFormat::Table => writeln!(self.out, "{message}")?,
                OutFormat::Csv => {}
                OutFormat::Json => {
                    self.begin_result()?;
                    let doc = serde_json::json!({ "done": message }).to_string();
                    self.out.write_all(doc.as_bytes())?;
                    if !self.multi {
                        self.out.write_all(b"\n")?;
                    }
                }
                OutFormat::Ndjson => writeln!(self.out, "{}", serde_json::json!({ "done": message }))?,
            },
        }
        self.out.flush()?;
        Ok(())
    }

    fn table(&mut self, cur: &Current) -> Result<()> {
        use stratalake::arrow::util::pretty::pretty_format_batches_with_options;
        if self.expanded {
            let mut n = 0;
            for b in &cur.kept {
                let cols: Vec<_> = (0..b.num_columns())
                    .map(|i| {
                        stratalake::arrow::util::display::ArrayFormatter::try_new(
                            b.column(i).as_ref(),
                            &table_options(),
                        )
                    })
                    .collect::<std::result::Result<_, _>>()?;
                let width = cur.schema.fields().iter().map(|f| f.name().len()).max().unwrap_or(0);
                for r in 0..b.num_rows() {
                    n += 1;
                    writeln!(self.out, "-[ RECORD {n} ]-")?;
                    for (f, c) in cur.schema.fields().iter().zip(&cols) {
                        writeln!(self.out, "{:width$} | {}", f.name(), c.value(r))?;
                    }
                }
            }
        } else if cur.kept_rows == 0 {
            writeln!(
                self.out,
                "{}",
                pretty_format_batches_with_options(&[RecordBatch::new_empty(cur.schema.clone())], &table_options())?
            )?;
        } else {
            writeln!(
                self.out,
                "{}",
                pretty_format_batches_with_options(&cur.kept, &table_options())?
            )?;
        }
        if cur.schema.fields().is_empty() {
            return Ok(());
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if cur.kept_rows < cur.rows {
            writeln!(
                self.out,
                "({} row{}, the first {} shown: --maxrows 0 or \\maxrows 0 shows all, --format csv|json streams all)",
                cur.rows,
                plural(cur.rows),
                cur.kept_rows
            )?;
        } else {
            writeln!(self.out, "({} row{})", cur.rows, plural(cur.rows))?;
        }
        Ok(())
    }

    /// End the command's output (closes the array of several JSON results).
    pub fn finish(&mut self) -> Result<()> {
        if self.fmt.is_json() && self.multi && self.results > 0 {
            self.out.write_all(b"]\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Print a whole result to stdout in the chosen format (every row: listings are never cut).
pub fn print_batches(schema: &SchemaRef, batches: &[RecordBatch], fmt: OutFormat) -> Result<()> {
    use stratalake::query::Piece;
    let mut w = ResultWriter::new(fmt, Box::new(std::io::stdout()), 1);
    w.piece(Piece::Start { schema, line: 1 })?;
    for b in batches {
        w.piece(Piece::Batch(b))?;
    }
    w.piece(Piece::End {
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
    })?;
    w.finish()
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
