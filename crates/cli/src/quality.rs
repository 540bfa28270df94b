//! `stratalake quality ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::args::Cli;
use crate::lake::open;
use crate::output::{JsonStyle, made, print_rows, show};

#[derive(Subcommand, Debug)]
pub enum QualityCmd {
    /// Completeness, validity, uniqueness and timeliness per table, now and per checked commit.
    Report {
        /// One table (default: every table).
        table: Option<String>,
        /// Also write an HTML report with charts to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Compare two tables matched on key columns: rows missing on either side, values that
    /// differ. Exit code 3 when they differ.
    Compare {
        /// Left table.
        left: String,
        /// Right table.
        right: String,
        /// Key columns, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        key: Vec<String>,
    },
    /// The constraints of a table (add and drop them with ALTER TABLE ... ADD|DROP CONSTRAINT).
    Constraints {
        /// The table.
        table: String,
    },
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

pub async fn run(cli: &Cli, cmd: &QualityCmd) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    match cmd {
        QualityCmd::Report { table, html } => {
            let r = lake.quality_report(table.as_deref()).await?;
            if let Some(path) = html {
                std::fs::write(path, stratalake::quality_html(&r))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let human = |fmt| {
                let rows = r
                    .iter()
                    .map(|t| {
                        vec![
                            t.table.clone(),
                            t.rows.to_string(),
                            pct(t.completeness_overall),
                            t.validity.map(pct).unwrap_or_else(|| "-".into()),
                            t.uniqueness
                                .values()
                                .copied()
                                .reduce(f64::min)
                                .map(pct)
                                .unwrap_or_else(|| "-".into()),
                            t.timeliness
                                .values()
                                .filter_map(|(_, age)| *age)
                                .max()
                                .map(|a| format!("{}s", a / 1000))
                                .unwrap_or_else(|| "-".into()),
                            t.history.len().to_string(),
                            t.checked_rows_rejected.to_string(),
                        ]
                    })
                    .collect();
                print_rows(
                    &[
                        "table",
                        "rows",
                        "completeness",
                        "validity",
                        "uniqueness",
                        "newest_age",
                        "checked_commits",
                        "rows_rejected",
                    ],
                    rows,
                    fmt,
                )?;
                if let [t] = r.as_slice() {
                    let rows = t
                        .history
                        .iter()
                        .map(|p| {
                            vec![
                                p.version.to_string(),
                                stratalake::table::write::fmt_ms(p.timestamp_ms),
                                p.rows_in.to_string(),
                                p.rows_written.to_string(),
                                p.rejected
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                p.quarantined.to_string(),
                                p.duplicates_removed.to_string(),
                                pct(p.completeness),
                            ]
                        })
                        .collect();
                    print_rows(
                        &[
                            "version",
                            "time",
                            "rows_in",
                            "written",
                            "rejected",
                            "quarantined",
                            "duplicates",
                            "completeness",
                        ],
                        rows,
                        fmt,
                    )?;
                }
                Ok(())
            };
            show(fmt, &made(&r, human).with_style(JsonStyle::Pretty))?;
        }
        QualityCmd::Compare { left, right, key } => {
            let r = lake.quality_compare(left, right, key).await?;
            let human = |fmt| {
                println!(
                    "{} rows in {}, {} in {}; {} missing in {}, {} missing in {}, {} matched rows differ",
                    r.left_rows,
                    r.left,
                    r.right_rows,
                    r.right,
                    r.missing_in_right,
                    r.right,
                    r.missing_in_left,
                    r.left,
                    r.differing_rows
                );
                let rows = r
                    .differing
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| vec![c.clone(), n.to_string()])
                    .collect();
                print_rows(&["column", "differing_rows"], rows, fmt)?;
                for (kind, keys) in r.samples.iter().filter(|(_, k)| !k.is_empty()) {
                    println!("{kind}: {}", keys.join(" | "));
                }
                Ok(())
            };
            show(fmt, &made(&r, human).with_style(JsonStyle::Pretty))?;
            if !r.identical() {
                return Ok(ExitCode::from(3));
            }
        }
        QualityCmd::Constraints { table } => {
            let cs = lake.constraints(table).await?;
            let human = |fmt| {
                let rows = cs.iter().map(|c| vec![c.name().to_string(), c.describe()]).collect();
                print_rows(&["constraint", "rule"], rows, fmt)
            };
            show(fmt, &made(&cs, human).with_style(JsonStyle::Pretty))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
