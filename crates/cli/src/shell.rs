//! `stratalake sql`: scripts (`-c`, `-f FILE`, `-f -`, stdin) and the interactive shell.
//!
//! Scripts run statement by statement, results streaming to stdout; the first failing statement
//! stops the script (unless `--continue-on-error`) with its line, and the exit code says so.
//! The shell reads statements until a `;` outside strings and comments, runs them with results
//! streaming, cancels the running statement on Ctrl-C (and stays open), saves its history after
//! every statement, completes keywords, tables and columns, and knows psql's meta-commands.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use stratalake::Session;
use stratalake::query::{Cancel, SqlSession};

use crate::output::{OutFormat, ResultWriter};

/// Settings of a run of `stratalake sql`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Output format.
    pub format: OutFormat,
    /// Rows an aligned table shows at most (0: all).
    pub maxrows: usize,
    /// Go on after a failing statement.
    pub continue_on_error: bool,
}

/// Run the statements of `text` (from `source`, for messages). `Ok(false)` when one failed (it
/// was reported on stderr as `error: SOURCE:LINE: ...`).
pub async fn run_script(
    engine: &SqlSession,
    text: &str,
    source: &str,
    settings: &Settings,
    out: Box<dyn Write + Send>,
) -> Result<bool> {
    // `\q` on a line of its own ends a script, as in psql
    let text = match text.lines().position(|l| l.trim() == "\\q") {
        Some(n) => text.lines().take(n).collect::<Vec<_>>().join("\n"),
        None => text.to_string(),
    };
    if text.trim().is_empty() {
        return Ok(true);
    }
    let statements = stratalake::query::statements_with_lines(&text)?;
    let mut w = ResultWriter::new(settings.format, out, statements.len());
    w.maxrows = settings.maxrows;
    let mut ok = true;
    for (line, tokens) in statements {
        let stmt: String = tokens.iter().map(|t| t.to_string()).collect();
        let r = engine
            .execute_streaming(&stmt, &mut |p| w.piece(p).map_err(io_error))
            .await;
        if let Err(e) = r {
            eprintln!("error: {source}:{line}: {}", one_line(&e.to_string()));
            ok = false;
            if !settings.continue_on_error {
                break;
            }
        }
    }
    w.finish()?;
    Ok(ok)
}

/// A writer's failure as an error the engine's sink can return (the pipe was closed, ...).
fn io_error(e: anyhow::Error) -> stratalake::query::Error {
    if crate::errors::broken_pipe(&e) {
        // the reader has gone (`... | head`): nothing more to say
        std::process::exit(0);
    }
    stratalake::query::Error::Sql(format!("writing the result failed: {e}"))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Read a script from a file, or from stdin for `-`.
pub fn read_script(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the script from stdin")?;
        return Ok((s, "<stdin>".into()));
    }
    let s = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((s, path.display().to_string()))
}

/// Whether stdin is an interactive terminal (the shell), or a script piped in.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

const HELP: &str = "\
Statements end with ';' (a ';' inside quotes or comments does not end one).
  \\?             this help
  \\q             quit (also: quit, exit, Ctrl-D)
  \\d             tables you may see
  \\d TABLE       its columns: types, classifications, and what applies to you
  \\dn            namespaces
  \\timing [on|off]  show how long each statement takes
  \\x [on|off]    expanded output: one block per row
  \\maxrows N     rows an aligned table shows at most (0: all)
  \\o [FILE]      send results to FILE (no FILE: back to the terminal)
  \\i FILE        run the statements of FILE
Ctrl-C cancels the running statement; the shell stays open.";

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT JOIN",
    "INNER JOIN",
    "ON",
    "AS",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "INSERT INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE FROM",
    "MERGE INTO",
    "USING",
    "CREATE TABLE",
    "CREATE NAMESPACE",
    "DROP TABLE",
    "ALTER TABLE",
    "VERSION AS OF",
    "TIMESTAMP AS OF",
    "EXPLAIN",
    "SHOW TABLES",
    "WITH",
    "UNION",
    "ALL",
    "CAST",
    "CLASSIFICATION",
    "PARTITIONED BY",
    "TRUNCATE",
];

/// What the shell completes: keywords, and the tables and columns the principal may see.
#[derive(Default)]
struct Completions {
    tables: Vec<String>,
    columns: Vec<String>,
}

struct Helper {
    names: Arc<Mutex<Completions>>,
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let lower = word.to_lowercase();
        let names = self.names.lock().expect("completions");
        let mut out: Vec<String> = names
            .tables
            .iter()
            .chain(names.columns.iter())
            .filter(|n| n.starts_with(&lower))
            .cloned()
            .collect();
        let upper = word.to_uppercase();
        out.extend(KEYWORDS.iter().filter(|k| k.starts_with(&upper)).map(|k| {
            if word.chars().all(|c| c.is_lowercase()) {
                k.to_lowercase()
            } else {
                k.to_string()
            }
        }));
        out.sort();
        out.dedup();
        Ok((start, out))
    }
}

impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

/// Tables and columns the principal may see, for completion.
async fn load_names(engine: &SqlSession) -> Completions {
    let mut c = Completions::default();
    let Ok(outs) = engine
        .execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns WHERE table_catalog = 'lake'",
        )
        .await
    else {
        return c;
    };
    for o in outs {
        if let stratalake::Output::Rows { batches, .. } = o {
            for b in batches {
                let text = |i: usize| {
                    stratalake::arrow::compute::cast(b.column(i), &stratalake::arrow::datatypes::DataType::Utf8)
                        .ok()
                        .and_then(|a| {
                            a.as_any()
                                .downcast_ref::<stratalake::arrow::array::StringArray>()
                                .map(|s| s.iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>())
                        })
                        .unwrap_or_default()
                };
                let (ns, t, col) = (text(0), text(1), text(2));
                for i in 0..ns.len() {
                    if ns[i] == stratalake::DEFAULT_NAMESPACE {
                        c.tables.push(t[i].clone());
                    }
                    c.tables.push(format!("{}.{}", ns[i], t[i]));
                    c.columns.push(col[i].to_lowercase());
                }
            }
        }
    }
    c.tables.sort();
    c.tables.dedup();
    c.columns.sort();
    c.columns.dedup();
    c
}

/// What a meta-command asks for.
enum Meta {
    Quit,
    Sql(String),
    Describe(String),
    Script(PathBuf),
    Done,
}

fn on_off(arg: Option<&str>, cur: bool) -> std::result::Result<bool, String> {
    match arg {
        None => Ok(!cur),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(x) => Err(format!("expected on or off, not {x:?}")),
    }
}

struct ShellState {
    timing: bool,
    writer: ResultWriter,
}

fn meta(line: &str, st: &mut ShellState) -> std::result::Result<Meta, String> {
    let mut parts = line.split_whitespace();
    let cmd = parts.next().unwrap_or("");
    let arg = parts.next();
    Ok(match cmd {
        "\\q" => Meta::Quit,
        "\\?" | "\\h" | "help" => {
            println!("{HELP}");
            Meta::Done
        }
        "\\d" => match arg {
            None => Meta::Sql("SHOW TABLES".into()),
            Some(t) => Meta::Describe(t.to_string()),
        },
        "\\dn" => Meta::Sql(
            "SELECT DISTINCT table_schema AS namespace FROM information_schema.tables WHERE table_catalog = 'lake' AND table_schema <> 'information_schema' ORDER BY 1".into(),
        ),
        "\\timing" => {
            st.timing = on_off(arg, st.timing)?;
            println!("timing is {}", if st.timing { "on" } else { "off" });
            Meta::Done
        }
        "\\x" => {
            st.writer.expanded = on_off(arg, st.writer.expanded)?;
            println!("expanded output is {}", if st.writer.expanded { "on" } else { "off" });
            Meta::Done
        }
        "\\maxrows" => {
            let n = arg
                .and_then(|a| a.parse().ok())
                .ok_or("give a number of rows (0: all)")?;
            st.writer.maxrows = n;
            Meta::Done
        }
        "\\o" => {
            match arg {
                None => st.writer.redirect(Box::new(std::io::stdout())),
                Some(f) => {
                    let file = std::fs::File::create(f).map_err(|e| format!("cannot write {f}: {e}"))?;
                    st.writer.redirect(Box::new(std::io::BufWriter::new(file)));
                }
            }
            Meta::Done
        }
        "\\i" => Meta::Script(PathBuf::from(arg.ok_or("give a file")?)),
        other => return Err(format!("unknown command {other}: \\? lists them")),
    })
}

/// Statements that may change which tables and columns exist.
fn changes_names(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(first.as_str(), "CREATE" | "DROP" | "ALTER")
}

/// The interactive shell.
pub async fn shell(lake: &Session, engine: SqlSession, settings: &Settings) -> Result<()> {
    use rustyline::error::ReadlineError;
    let cancel = Cancel::default();
    let engine = engine.with_cancel(cancel.clone());
    let names = Arc::new(Mutex::new(load_names(&engine).await));
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut rl: rustyline::Editor<Helper, rustyline::history::FileHistory> = rustyline::Editor::with_config(config)?;
    // In the line editor Ctrl-C is a key; while a statement runs it is a signal, which cancels
    // it. Registered after the editor, which installs a SIGINT handler of its own when created
    // (signal registrations chain to the handler they find).
    #[cfg(unix)]
    {
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let c2 = cancel.clone();
        tokio::spawn(async move {
            while sigint.recv().await.is_some() {
                c2.cancel();
            }
        });
    }
    rl.set_helper(Some(Helper { names: names.clone() }));
    let history = lake.dir().map(|d| d.join(".sql_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!(
        "stratalake SQL shell as {}: end statements with ';', \\? for help, \\q to quit",
        engine.principal()
    );
    let mut st = ShellState {
        timing: false,
        writer: ResultWriter::new(settings.format, Box::new(std::io::stdout()), 1),
    };
    st.writer.maxrows = settings.maxrows;
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "stratalake> "
        } else {
            "        ...> "
        };
        let line = match rl.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let t = line.trim();
        let mut sql = None;
        if buf.is_empty() && (t.starts_with('\\') || t == "quit" || t == "exit" || t == "help") {
            let _ = rl.add_history_entry(t);
            save_history(&mut rl, history.as_deref());
            let m = if t == "quit" || t == "exit" {
                Ok(Meta::Quit)
            } else {
                meta(t, &mut st)
            };
            match m {
                Ok(Meta::Quit) => break,
                Ok(Meta::Done) => {}
                Ok(Meta::Sql(s)) => sql = Some(s),
                Ok(Meta::Describe(name)) => {
                    if let Err(e) = crate::table::describe(lake, &name, None, st.writer.format()).await {
                        eprintln!("error: {}", one_line(&format!("{e:#}")));
                    }
                }
                Ok(Meta::Script(path)) => match read_script(&path) {
                    Ok((text, source)) => {
                        cancel.reset();
                        let mut s2 = settings.clone();
                        s2.format = st.writer.format();
                        if let Err(e) = run_script(&engine, &text, &source, &s2, Box::new(std::io::stdout())).await {
                            eprintln!("error: {}", one_line(&format!("{e:#}")));
                        }
                    }
                    Err(e) => eprintln!("error: {}", one_line(&format!("{e:#}"))),
                },
                Err(e) => eprintln!("error: {e}"),
            }
            if sql.is_none() {
                continue;
            }
        }
        let sql = match sql {
            Some(s) => s,
            None => {
                buf.push_str(&line);
                buf.push('\n');
                if !stratalake::query::is_complete(&buf) {
                    continue;
                }
                let _ = rl.add_history_entry(buf.trim());
                save_history(&mut rl, history.as_deref());
                std::mem::take(&mut buf)
            }
        };
        cancel.reset();
        let started = std::time::Instant::now();
        let w = &mut st.writer;
        let r = engine
            .execute_streaming(&sql, &mut |p| w.piece(p).map_err(io_error))
            .await;
        match r {
            Ok(()) => {}
            Err(stratalake::query::Error::Cancelled) => eprintln!("cancelled"),
            Err(e) => eprintln!("error: {}", one_line(&e.to_string())),
        }
        if st.timing {
            eprintln!("Time: {:.3} s", started.elapsed().as_secs_f64());
        }
        if changes_names(&sql) {
            *names.lock().expect("completions") = load_names(&engine).await;
        }
    }
    save_history(&mut rl, history.as_deref());
    Ok(())
}

/// Save the history now (not only on a clean exit), private to its owner: statements may hold
/// literal values.
fn save_history(rl: &mut rustyline::Editor<Helper, rustyline::history::FileHistory>, path: Option<&Path>) {
    let Some(h) = path else { return };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(h);
    }
    if rl.save_history(h).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(h, std::fs::Permissions::from_mode(0o600));
        }
    }
}
