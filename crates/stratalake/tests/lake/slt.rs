//! SQL behaviour in `tests/slt/*.slt`, in the sqllogictest format, against a fresh in-memory
//! lake per file.
//!
//! Every file and every record runs, also after an earlier record failed (a failed statement
//! may make later records of its file fail too; they are reported as well). The test fails once
//! at the end and lists every failure: file and line, the SQL, expected and actual, and for
//! results a diff of the lines that differ.
//!
//! The type letters of `query` are checked against the Arrow types of the result, column by
//! column: `I` integers, `R` floats and decimals, `T` text, `B` booleans, `D` dates, times,
//! timestamps, durations and intervals, `?` anything else (binary, nested, null).
//!
//! `STRATALAKE_SLT_REWRITE=1` rewrites in place what the engine now returns: the results and
//! type letters of `query` records, and the message of error-expecting records whose error no
//! longer matches. Only failing records are touched; comments, blank lines and every other
//! record stay byte for byte. A record that flips between success and error (a statement that
//! now fails, an expected error that no longer happens) is never rewritten, since that is a
//! change of behaviour to be looked at, not output drift; it stays a failure.
//! `STRATALAKE_SLT_DIR=path` runs the files of another folder instead, e.g. a copy to try a
//! rewrite on.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqllogictest::{
    ColumnType, Control, DBOutput, ExpectedError, QueryExpect, Record, RecordOutput, ResultMode, StatementExpect,
    default_normalizer, default_validator,
};
use stratalake::arrow::datatypes::DataType;
use stratalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use stratalake::{Lake, Output, Session};

/// A column type letter of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    Integer,
    Float,
    Text,
    Boolean,
    DateTime,
    Other,
}

impl ColumnType for ColType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'I' => Self::Integer,
            'R' => Self::Float,
            'T' => Self::Text,
            'B' => Self::Boolean,
            'D' => Self::DateTime,
            '?' => Self::Other,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::Boolean => 'B',
            Self::DateTime => 'D',
            Self::Other => '?',
        }
    }
}

impl ColType {
    fn of(t: &DataType) -> Self {
        match t {
            DataType::Dictionary(_, values) => Self::of(values),
            t if t.is_integer() => Self::Integer,
            t if t.is_floating() || t.is_decimal() => Self::Float,
            t if t.is_string() => Self::Text,
            DataType::Boolean => Self::Boolean,
            t if t.is_temporal() => Self::DateTime,
            _ => Self::Other,
        }
    }
}

fn letters(types: &[ColType]) -> String {
    types.iter().map(ColType::to_char).collect()
}

struct Db {
    lake: Session,
    /// Who the next statements run as; `SET PRINCIPAL name` (a harness command) switches.
    principal: String,
}

#[derive(Debug)]
struct SltError(String);
impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SltError;
    type ColumnType = ColType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColType>, SltError> {
        let words: Vec<&str> = sql.split_whitespace().collect();
        if words.len() == 3 && words[0].eq_ignore_ascii_case("set") && words[1].eq_ignore_ascii_case("principal") {
            self.principal = words[2].trim_end_matches(';').to_string();
            return Ok(DBOutput::StatementComplete(0));
        }
        let out = self
            .lake
            .session(&self.principal)
            .execute(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        match out.into_iter().last() {
            Some(Output::Rows { schema, batches }) => {
                let opts = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for b in &batches {
                    let fmts: Vec<_> = b
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                        .collect();
                    for r in 0..b.num_rows() {
                        rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
                    }
                }
                Ok(DBOutput::Rows {
                    types: schema.fields().iter().map(|f| ColType::of(f.data_type())).collect(),
                    rows,
                })
            }
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}
}

/// A lake where `slt` is the administrator (bootstrap mode ended), as every file starts.
async fn connect() -> Result<Db, SltError> {
    let lake = Lake::in_memory()
        .await
        .map_err(|e| SltError(e.to_string()))?
        .session("slt");
    lake.access()
        .bootstrap_admin()
        .await
        .map_err(|e| SltError(e.to_string()))?;
    Ok(Db {
        lake,
        principal: "slt".into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Report what differs.
    Check,
    /// Write what the engine returns into the files (see the module docs).
    Rewrite,
}

/// One record that did not do what its file expects.
#[derive(Debug)]
struct Failure {
    /// `file:line` of the record's first line.
    at: String,
    what: String,
    sql: String,
    expected: Vec<String>,
    actual: Vec<String>,
    /// Changed lines of the results (`- ` expected only, `+ ` returned only); empty otherwise.
    diff: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 12;
        let block = |f: &mut fmt::Formatter<'_>, name: &str, lines: &[String]| {
            writeln!(f, "  {name}:")?;
            for l in lines.iter().take(MAX) {
                writeln!(f, "    {l}")?;
            }
            if lines.len() > MAX {
                writeln!(f, "    ... {} more lines", lines.len() - MAX)?;
            }
            Ok(())
        };
        writeln!(f, "{}: {}", self.at, self.what)?;
        for l in self.sql.lines() {
            writeln!(f, "    {l}")?;
        }
        block(f, "expected", &self.expected)?;
        block(f, "actual", &self.actual)?;
        if !self.diff.is_empty() {
            block(f, "diff", &self.diff)?;
        }
        Ok(())
    }
}

/// What a run found.
#[derive(Debug, Default)]
struct Report {
    files: usize,
    /// Statements and queries run (not skipped by `skipif`/`onlyif`).
    records: usize,
    failures: Vec<Failure>,
    /// `file:line` of every record rewritten.
    rewritten: Vec<String>,
}

/// What a record expects.
enum Expect<'a> {
    Success {
        count: Option<u64>,
    },
    Error(&'a ExpectedError),
    Rows {
        types: &'a [ColType],
        results: &'a [String],
    },
}

/// What a record got.
enum Got {
    Done(u64),
    Error(String),
    Rows {
        types: Vec<ColType>,
        rows: Vec<Vec<String>>,
    },
}

impl Got {
    fn from(out: &RecordOutput<ColType>, value_wise: bool) -> Option<Self> {
        Some(match out {
            RecordOutput::Statement { error: Some(e), .. } | RecordOutput::Query { error: Some(e), .. } => {
                Self::Error(e.to_string())
            }
            RecordOutput::Statement { count, .. } => Self::Done(*count),
            RecordOutput::Query { types, rows, .. } => Self::Rows {
                types: types.clone(),
                rows: if value_wise {
                    rows.iter().flatten().map(|v| vec![v.clone()]).collect()
                } else {
                    rows.clone()
                },
            },
            _ => return None,
        })
    }

    fn describe(&self) -> Vec<String> {
        match self {
            Self::Done(n) => vec![format!("success ({n} rows affected)")],
            Self::Error(e) => e.lines().map(String::from).collect(),
            Self::Rows { rows, .. } => lines(rows),
        }
    }
}

/// Result rows as the file writes them: values separated by one space.
fn lines(rows: &[Vec<String>]) -> Vec<String> {
    rows.iter().map(|r| r.join(" ")).collect()
}

fn expect_of(record: &Record<ColType>) -> Option<(&sqllogictest::Location, &str, Expect<'_>)> {
    match record {
        Record::Statement { loc, sql, expected, .. } => Some((
            loc,
            sql,
            match expected {
                StatementExpect::Ok => Expect::Success { count: None },
                StatementExpect::Count(n) => Expect::Success { count: Some(*n) },
                StatementExpect::Error(e) => Expect::Error(e),
            },
        )),
        Record::Query { loc, sql, expected, .. } => Some((
            loc,
            sql,
            match expected {
                QueryExpect::Results { types, results, .. } => Expect::Rows { types, results },
                QueryExpect::Error(e) => Expect::Error(e),
            },
        )),
        _ => None,
    }
}

/// Everything that differs between what `record` expects and what it got.
fn check(record: &Record<ColType>, got: &Got, at: &str) -> Vec<Failure> {
    let Some((_, sql, expect)) = expect_of(record) else {
        return Vec::new();
    };
    let fail = |what: String, expected: Vec<String>| Failure {
        at: at.to_string(),
        what,
        sql: sql.to_string(),
        expected,
        actual: got.describe(),
        diff: Vec::new(),
    };
    match (expect, got) {
        (Expect::Error(e), Got::Error(msg)) => {
            if e.is_match(msg, None) {
                vec![]
            } else {
                vec![fail("the error does not match".into(), vec![e.to_string()])]
            }
        }
        (Expect::Error(e), _) => vec![fail("expected an error, but it succeeded".into(), vec![e.to_string()])],
        (_, Got::Error(_)) => vec![fail("unexpected error".into(), vec!["success".into()])],
        (Expect::Success { count: None }, _) => vec![],
        (Expect::Success { count: Some(n) }, got) => {
            let actual = match got {
                Got::Rows { rows, .. } => rows.len() as u64,
                Got::Done(c) => *c,
                Got::Error(_) => unreachable!("handled above"),
            };
            if actual == n {
                vec![]
            } else {
                vec![fail(
                    format!("expected {n} rows affected, got {actual}"),
                    vec![format!("{n} rows")],
                )]
            }
        }
        (Expect::Rows { results, .. }, Got::Done(_)) => {
            if results.is_empty() {
                vec![]
            } else {
                vec![fail("returned no result set".into(), results.to_vec())]
            }
        }
        (Expect::Rows { types, results }, Got::Rows { types: actual, rows }) => {
            let mut out = Vec::new();
            if types != actual.as_slice() {
                out.push(Failure {
                    actual: vec![letters(actual)],
                    ..fail("wrong column types".into(), vec![letters(types)])
                });
            }
            if !default_validator(default_normalizer, rows, results) {
                out.push(Failure {
                    diff: diff(results, &lines(rows)),
                    ..fail("wrong results".into(), results.to_vec())
                });
            }
            out
        }
    }
}

/// The changed lines between `expected` and `actual` (compared as the validator does, with
/// whitespace collapsed): a longest-common-subsequence diff without the common lines.
fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let e: Vec<String> = expected.iter().map(default_normalizer).collect();
    let a: Vec<String> = actual.iter().map(default_normalizer).collect();
    let (n, m) = (e.len(), a.len());
    // common[i][j]: length of the longest common subsequence of e[i..] and a[j..]
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if e[i] == a[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && e[i] == a[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            out.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    out
}

/// The record with what it got written in, for [`Mode::Rewrite`]; `None` when it cannot be
/// rewritten (see the module docs) or nothing differs.
fn rewritten(record: &Record<ColType>, got: &Got) -> Option<Record<ColType>> {
    let mut new = record.clone();
    match (&mut new, got) {
        (
            Record::Query {
                expected: QueryExpect::Results { types, results, .. },
                ..
            },
            Got::Rows { types: actual, rows },
        ) => {
            let mut changed = false;
            if types != actual {
                *types = actual.clone();
                changed = true;
            }
            if !default_validator(default_normalizer, rows, results) {
                *results = lines(rows);
                changed = true;
            }
            changed.then_some(new)
        }
        (
            Record::Query {
                expected: QueryExpect::Error(e),
                ..
            }
            | Record::Statement {
                expected: StatementExpect::Error(e),
                ..
            },
            Got::Error(msg),
        ) if !e.is_match(msg, None) => {
            *e = ExpectedError::from_actual_error(Some(e), msg);
            Some(new)
        }
        _ => None,
    }
}

fn is_multiline_error(record: &Record<ColType>) -> bool {
    matches!(
        record,
        Record::Query {
            expected: QueryExpect::Error(ExpectedError::Multiline(_)),
            ..
        } | Record::Statement {
            expected: StatementExpect::Error(ExpectedError::Multiline(_)),
            ..
        }
    )
}

/// A record to write over the one starting at `line` (1-based).
struct Edit {
    line: usize,
    old_multiline_error: bool,
    new: Record<ColType>,
}

/// The lines (0-based, end exclusive) the record starting at 1-based `line` takes, without the
/// blank lines that end it; the same rules as the sqllogictest parser.
fn record_span(lines: &[String], line: usize, multiline_error: bool) -> Range<usize> {
    let start = line - 1;
    // the header, the first SQL line whatever it holds, then SQL up to a blank line or `----`
    let mut i = (start + 2).min(lines.len());
    while i < lines.len() && !lines[i].is_empty() && lines[i] != "----" {
        i += 1;
    }
    if i < lines.len() && lines[i] == "----" {
        i += 1;
        // results end at a blank line, a multiline error message at two (or the end)
        while i < lines.len()
            && !(lines[i].is_empty() && (!multiline_error || i + 1 >= lines.len() || lines[i + 1].is_empty()))
        {
            i += 1;
        }
    }
    start..i
}

/// `text` with each edited record replaced by its new form, every other line as it was.
fn apply_edits(text: &str, mut edits: Vec<Edit>) -> String {
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.line));
    for e in edits {
        let span = record_span(&lines, e.line, e.old_multiline_error);
        let text = e.new.to_string();
        let mut new: Vec<String> = text.trim_end_matches('\n').split('\n').map(String::from).collect();
        if is_multiline_error(&e.new) && !e.old_multiline_error {
            // a multiline message ends with two blank lines
            new.push(String::new());
        }
        lines.splice(span, new);
    }
    lines.join("\n")
}

/// `path` as the report names it: relative to the workspace when inside it.
fn shown(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    Path::new(path)
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// Runs every record of `path` on a fresh lake into `report`; rewrites the file in
/// [`Mode::Rewrite`].
async fn run_file(path: &Path, mode: Mode, report: &mut Report) {
    report.files += 1;
    let records = match sqllogictest::parse_file::<ColType>(path) {
        Ok(r) => r,
        Err(e) => {
            report.failures.push(Failure {
                at: shown(&e.location().to_string()),
                what: format!("does not parse: {}", e.kind()),
                sql: String::new(),
                expected: Vec::new(),
                actual: Vec::new(),
                diff: Vec::new(),
            });
            return;
        }
    };
    let mut runner = sqllogictest::Runner::new(connect);
    let mut value_wise = false;
    // edits per file: an `include`d file is rewritten in its own place
    let mut edits: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for record in records {
        let (loc, attempts, backoff) = match &record {
            Record::Halt { .. } => break,
            Record::Control(Control::ResultMode(m)) => {
                value_wise = *m == ResultMode::ValueWise;
                (None, 0, Default::default())
            }
            Record::Statement { loc, retry, .. } | Record::Query { loc, retry, .. } => (
                Some(loc.clone()),
                retry.as_ref().map_or(1, |r| r.attempts),
                retry.as_ref().map(|r| r.backoff).unwrap_or_default(),
            ),
            _ => (None, 0, Default::default()),
        };
        let Some(loc) = loc else {
            // sort mode, hash threshold, system commands, `let`: as the library runs them
            if let Err(e) = runner.run_async(record).await {
                report.failures.push(Failure {
                    at: shown(&e.location().to_string()),
                    what: e.kind().to_string(),
                    sql: String::new(),
                    expected: Vec::new(),
                    actual: Vec::new(),
                    diff: Vec::new(),
                });
            }
            continue;
        };
        let at = format!("{}:{}", shown(loc.file()), loc.line());
        let mut attempt = 0;
        let (got, mut failures) = loop {
            attempt += 1;
            let out = runner.apply_record(record.clone()).await;
            let Some(got) = Got::from(&out, value_wise) else {
                break (None, Vec::new()); // skipped by a condition
            };
            let failures = check(&record, &got, &at);
            if failures.is_empty() || attempt >= attempts {
                break (Some(got), failures);
            }
            tokio::time::sleep(backoff).await;
        };
        let Some(got) = got else { continue };
        report.records += 1;
        if mode == Mode::Rewrite
            && !failures.is_empty()
            && let Some(new) = rewritten(&record, &got)
        {
            failures = check(&new, &got, &at);
            report.rewritten.push(at);
            edits.entry(loc.file().to_string()).or_default().push(Edit {
                line: loc.line() as usize,
                old_multiline_error: is_multiline_error(&record),
                new,
            });
        }
        report.failures.extend(failures);
    }
    runner.shutdown_async().await;
    for (file, edits) in edits {
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, apply_edits(&text, edits)).unwrap();
    }
}

async fn run_files(files: &[PathBuf], mode: Mode) -> Report {
    let mut report = Report::default();
    for f in files {
        run_file(f, mode, &mut report).await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let dir = std::env::var_os("STRATALAKE_SLT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt"),
        PathBuf::from,
    );
    let mode = match std::env::var("STRATALAKE_SLT_REWRITE").as_deref() {
        Ok("1" | "true") => Mode::Rewrite,
        _ => Mode::Check,
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let report = run_files(&files, mode).await;
    println!(
        "slt: {} files, {} records run, {} failures",
        report.files,
        report.records,
        report.failures.len()
    );
    for at in &report.rewritten {
        println!("slt: rewrote {at}");
    }
    if !report.failures.is_empty() {
        let listed: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        panic!(
            "{} of {} records in {} files failed:\n\n{}",
            report.failures.len(),
            report.records,
            report.files,
            listed.join("\n")
        );
    }
}

/// A file with three mistakes; the records after each still run.
const BROKEN: &str = "\
# three mistakes, and records after each that still run
statement ok
CREATE TABLE t (id BIGINT, name VARCHAR)

statement ok
INSERT INTO t VALUES (1, 'a'), (2, 'b')

# wrong value
query I
SELECT count(*) FROM t
----
3

# wrong letter: id is a BIGINT
query TT
SELECT id, name FROM t ORDER BY id
----
1 a
2 b

# an error that does not happen
statement error no such table
SELECT * FROM t

query I
SELECT count(*) FROM t
----
2
";

fn slt_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("case.slt");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_reports_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = slt_file(&dir, BROKEN);
    let report = run_files(std::slice::from_ref(&path), Mode::Check).await;
    assert_eq!((report.files, report.records), (1, 6));
    let found: Vec<(String, &str)> = report
        .failures
        .iter()
        .map(|f| (f.at.rsplit(':').next().unwrap().to_string(), f.what.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("9".to_string(), "wrong results"),
            ("15".to_string(), "wrong column types"),
            ("22".to_string(), "expected an error, but it succeeded"),
        ],
        "{:#?}",
        report.failures
    );
    let value = report.failures[0].to_string();
    assert!(
        value.contains("- 3") && value.contains("+ 2") && value.contains("SELECT count(*)"),
        "{value}"
    );
    let types = &report.failures[1];
    assert_eq!(
        (&types.expected[..], &types.actual[..]),
        (&["TT".to_string()][..], &["IT".to_string()][..])
    );
    assert!(report.failures[0].at.starts_with(&path.display().to_string()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), BROKEN, "checking never writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_fixes_results_letters_and_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BROKEN}\n# a message that no longer matches\nstatement error some old message\nSELECT * FROM nosuch\n"
    );
    let path = slt_file(&dir, &text);
    let report = run_files(std::slice::from_ref(&path), Mode::Rewrite).await;
    assert_eq!(report.rewritten.len(), 3, "{:?}", report.rewritten);
    // the error that does not happen is a change of behaviour: reported, never rewritten
    assert_eq!(report.failures.len(), 1, "{:#?}", report.failures);
    assert!(report.failures[0].at.ends_with(":22"));

    let after = std::fs::read_to_string(&path).unwrap();
    let fixed = text
        .replace("----\n3\n", "----\n2\n")
        .replace("query TT\n", "query IT\n");
    let (head, tail) = after.split_at(fixed.rfind("statement error some old").unwrap());
    assert_eq!(head, &fixed[..head.len()], "only the failing records changed");
    let message = tail.lines().next().unwrap();
    assert!(
        message.starts_with("statement error ") && message != "statement error some old message",
        "{message}"
    );
    assert!(tail.ends_with("\nSELECT * FROM nosuch\n"), "{tail:?}");

    // a second rewrite finds nothing to write
    let again = run_files(std::slice::from_ref(&path), Mode::Rewrite).await;
    assert!(again.rewritten.is_empty(), "{:?}", again.rewritten);
    assert_eq!(again.failures.len(), 1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
}
