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

/// One value of a command's listing, typed so that JSON gets numbers, booleans and `null`,
/// and every size and time is written one way.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// Yes or no.
    Bool(bool),
    /// A size in bytes: `1.5 MiB` in tables, the number of bytes in CSV and JSON.
    Bytes(u64),
    /// A point in time (ms since the epoch): RFC 3339 in UTC with milliseconds everywhere.
    Time(i64),
    /// Nothing (not known, or not shown to this principal): empty in tables and CSV, `null` in JSON.
    Null,
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<&String> for Cell {
    fn from(v: &String) -> Self {
        Cell::Text(v.clone())
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(v)
    }
}
macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(v: $t) -> Self {
                i64::try_from(v).map(Cell::Int).unwrap_or(Cell::Float(v as f64))
            }
        }
    )*};
}
int_cell!(i32, i64, u32, u64, usize);
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Cell::Null)
    }
}

impl Cell {
    fn text(&self, fmt: OutFormat) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Bytes(b) if fmt == OutFormat::Table => stratalake::tiering::units::fmt_bytes(*b),
            Cell::Bytes(b) => b.to_string(),
            Cell::Time(ms) => stratalake::table::write::fmt_ms(*ms),
            Cell::Null => String::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(n) => Value::from(*n),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Bytes(b) => Value::from(*b),
            Cell::Time(ms) => Value::String(stratalake::table::write::fmt_ms(*ms)),
            Cell::Null => Value::Null,
        }
    }
}

/// What a command prints, in every output format: the JSON formats get the document of
/// [`Report::json`], written as [`Report::style`] says; `table` and `csv` get
/// [`Report::human`]. Commands hand their result to [`show`] and never test the format
/// themselves, so that each format is written one way.
pub trait Report {
    /// How the JSON formats write the document.
    fn style(&self) -> JsonStyle {
        JsonStyle::Document
    }

    /// The document of `--format json` and `--format ndjson`.
    fn json(&self) -> impl serde::Serialize + '_;

    /// What `--format table` and `--format csv` print: sentences, and rows through
    /// [`print_rows`] (which writes them as the format asks).
    fn human(&self, fmt: OutFormat) -> Result<()>;
}

/// How the JSON formats write a [`Report`]'s document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonStyle {
    /// As [`print_json_as`]: points in time in RFC 3339; pretty for `json`, one line (one per
    /// element of a list) for `ndjson`.
    Document,
    /// Fields in the order the type declares them: pretty for `json`, one line for `ndjson`
    /// (a line-oriented reader gets one document per line).
    Pretty,
    /// One line, in both JSON formats.
    Line,
}

/// Print a command's report in the chosen format.
pub fn show(fmt: OutFormat, r: &impl Report) -> Result<()> {
    if !fmt.is_json() {
        return r.human(fmt);
    }
    let doc = r.json();
    match r.style() {
        JsonStyle::Document => print_json_as(&doc, fmt),
        JsonStyle::Pretty if fmt == OutFormat::Ndjson => print_line(serde_json::to_string(&doc)?),
        JsonStyle::Pretty => print_line(serde_json::to_string_pretty(&doc)?),
        JsonStyle::Line => print_line(serde_json::to_string(&doc)?),
    }
}

fn print_line(text: impl std::fmt::Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(out.flush()?)
}

/// A report put together where it is printed: its document, and a closure that prints it
/// for people (a result that needs the command's arguments or timing to be read).
pub struct Made<D, H> {
    style: JsonStyle,
    doc: D,
    human: H,
}

/// A [`Made`] report written as a [`JsonStyle::Document`].
pub fn made<D: serde::Serialize, H: Fn(OutFormat) -> Result<()>>(doc: D, human: H) -> Made<D, H> {
    Made {
        style: JsonStyle::Document,
        doc,
        human,
    }
}

impl<D, H> Made<D, H> {
    /// Write the document in this style instead.
    pub fn with_style(mut self, style: JsonStyle) -> Self {
        self.style = style;
        self
    }
}

impl<D: serde::Serialize, H: Fn(OutFormat) -> Result<()>> Report for Made<D, H> {
    fn style(&self) -> JsonStyle {
        self.style
    }

    fn json(&self) -> impl serde::Serialize + '_ {
        &self.doc
    }

    fn human(&self, fmt: OutFormat) -> Result<()> {
        (self.human)(fmt)
    }
}

/// Say what a command did: the sentence, or `{"done": "..."}` in JSON formats.
pub fn done(fmt: OutFormat, what: impl std::fmt::Display) -> Result<()> {
    let what = what.to_string();
    let doc = serde_json::json!({ "done": &what });
    show(fmt, &made(doc, |_| print_line(&what)).with_style(JsonStyle::Line))
}

/// A size the way every command writes it (binary units, one decimal).
pub fn size(b: u64) -> String {
    stratalake::tiering::units::fmt_bytes(b)
}

/// Print rows under headers in the chosen format: an aligned table, CSV with a header line, a
/// JSON array of objects (one per row, typed), or one JSON object per line.
pub fn print_rows<C: Into<Cell>>(headers: &[&str], rows: Vec<Vec<C>>, fmt: OutFormat) -> Result<()> {
    let rows: Vec<Vec<Cell>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(Into::into).collect())
        .collect();
    if fmt.is_json() {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    headers
                        .iter()
                        .zip(r)
                        .map(|(h, c)| (h.replace(' ', "_"), c.json()))
                        .collect(),
                )
            })
            .collect();
        let mut out = std::io::stdout().lock();
        if fmt == OutFormat::Ndjson {
            for o in objects {
                writeln!(out, "{o}")?;
            }
        } else {
            writeln!(out, "{}", serde_json::Value::Array(objects))?;
        }
        return Ok(out.flush()?);
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..headers.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[i].text(fmt)).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    print_batches(&schema, &[batch], fmt)
}

/// What a check found, one row per problem under `headers`; `no problems found` when there
/// are none.
pub fn print_problems(headers: &[&str], rows: Vec<Vec<String>>, fmt: OutFormat) -> Result<()> {
    if rows.is_empty() {
        println!("no problems found");
        return Ok(());
    }
    print_rows(headers, rows, fmt)
}

/// Keys of the library's JSON documents that hold points in time (ms since the epoch), and
/// the names they get in the CLI's JSON: every point in time is `time` or ends in `_at`, in RFC
/// 3339 (UTC, milliseconds). Durations keep their unit in the name (`lag_ms`).
const TIME_KEYS: &[(&str, &str)] = &[
    ("timestamp_ms", "time"),
    ("time_ms", "time"),
    ("created_ms", "created_at"),
    ("removed_ms", "removed_at"),
    ("copied_ms", "copied_at"),
    ("generated_ms", "generated_at"),
];

fn times_to_rfc3339(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (from, to) in TIME_KEYS {
                if let Some(ms) = map.get(*from).and_then(serde_json::Value::as_i64) {
                    map.remove(*from);
                    let text = if ms > 0 {
                        serde_json::Value::String(stratalake::table::write::fmt_ms(ms))
                    } else {
                        serde_json::Value::Null
                    };
                    map.insert((*to).to_string(), text);
                }
            }
            map.values_mut().for_each(times_to_rfc3339);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(times_to_rfc3339),
        _ => {}
    }
}

/// Print a command's JSON document with its points in time in RFC 3339 (`TIME_KEYS`): pretty
/// for `--format json`; for `--format ndjson` one line per element of a list, else one line.
pub fn print_json_as(doc: &impl serde::Serialize, fmt: OutFormat) -> Result<()> {
    let mut v = serde_json::to_value(doc)?;
    times_to_rfc3339(&mut v);
    let mut out = std::io::stdout().lock();
    match (&v, fmt) {
        (serde_json::Value::Array(items), OutFormat::Ndjson) => {
            for i in items {
                writeln!(out, "{i}")?;
            }
        }
        (_, OutFormat::Ndjson) => writeln!(out, "{v}")?,
        _ => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
    }
    Ok(out.flush()?)
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

    /// A callback showing an operation's [`stratalake::Progress`] events on this bar: bytes (with
    /// files and rows as a note) for a bar counted in bytes, files otherwise.
    pub fn callback(&self) -> impl Fn(stratalake::Progress) + Send + Sync + 'static + use<> {
        let bar = self.clone();
        move |p: stratalake::Progress| {
            let mut note = p.phase.to_string();
            if bar.bytes {
                if p.files_total > 0 {
                    note.push_str(&format!(" {}/{} files", p.files_done, p.files_total));
                }
                if p.rows_done > 0 {
                    note.push_str(&format!(" {} rows", p.rows_done));
                }
                bar.update(p.bytes_done, p.bytes_total, note.trim_start());
            } else {
                bar.update(p.files_done, p.files_total, "");
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
