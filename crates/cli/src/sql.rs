//! `stratalake sql`: statements from the command line, a file or stdin, or the shell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::args::{Cli, as_of_arg};
use crate::lake::open;
use crate::shell;

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Run one or more statements and exit.
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Run the statements of a file and exit (`-` reads them from stdin, as does a script piped
    /// in without -c or -f).
    #[arg(short = 'f', long = "file", conflicts_with = "command")]
    file: Option<PathBuf>,
    /// Read every table as of a version number or a timestamp (read-only).
    #[arg(long)]
    as_of: Option<String>,
    /// Rows an aligned table shows at most, the rest counted (0: all). CSV and JSON output
    /// always stream every row.
    #[arg(long, default_value_t = 40)]
    maxrows: usize,
    /// Run the remaining statements of a script after one fails (the exit code still says so).
    #[arg(long)]
    continue_on_error: bool,
    /// Stop a statement that runs longer than this (e.g. 30s, 10m).
    #[arg(long)]
    timeout: Option<String>,
}

/// `stratalake sql`: a script (`-c`, `-f`, or piped in), else the interactive shell.
pub async fn run(cli: &Cli, a: &SqlArgs) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    let as_of = as_of_arg(a.as_of.as_deref())?;
    let timeout = a
        .timeout
        .as_deref()
        .map(|t| {
            stratalake::table::units::parse_duration_ms(t)
                .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64))
                .map_err(|e| anyhow::anyhow!("--timeout: {e}"))
        })
        .transpose()?;
    let engine = lake.sql_session().with_as_of(as_of).with_timeout(timeout);
    let settings = shell::Settings {
        format: fmt,
        maxrows: a.maxrows,
        continue_on_error: a.continue_on_error,
    };
    let script = match (&a.command, &a.file) {
        (Some(c), _) => Some((c.clone(), "-c".to_string())),
        (None, Some(f)) => Some(shell::read_script(f)?),
        (None, None) if !shell::interactive() => Some(shell::read_script(Path::new("-"))?),
        (None, None) => None,
    };
    let ok = match script {
        Some((text, source)) => {
            let out = Box::new(std::io::BufWriter::new(std::io::stdout()));
            shell::run_script(&engine, &text, &source, &settings, out).await?
        }
        None => {
            shell::shell(&lake, engine, &settings).await?;
            true
        }
    };
    // Which partitions were read, for placement rules by time since last read.
    if let Err(e) = lake.tiers().flush_read_stats().await {
        tracing::warn!(error = %e, "could not record read statistics");
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
