//! `stratalake verify`: re-read the log and every live file.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Cli;
use crate::lake::open;
use crate::output::{self, made, print_problems, show};

/// Verify `tables` (all when empty); exit code 3 when something is damaged.
pub async fn run(cli: &Cli, tables: &[String]) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    let bar = output::Progress::new("verifying files", false);
    let report = lake
        .verify()
        .tables(tables.iter().cloned())
        .progress(bar.callback())
        .await?;
    bar.finish();
    let human = |fmt| {
        println!(
            "checked {} table(s), {} log version(s), {} file(s), {} row(s), {} byte(s)",
            report.tables, report.versions, report.files, report.rows, report.bytes
        );
        let rows = report
            .problems
            .iter()
            .map(|p| vec![p.table.clone(), p.path.clone(), p.problem.clone()])
            .collect();
        print_problems(&["table", "object", "problem"], rows, fmt)
    };
    show(fmt, &made(&report, human))?;
    if !report.problems.is_empty() {
        eprintln!("error: verify found {} problem(s)", report.problems.len());
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
