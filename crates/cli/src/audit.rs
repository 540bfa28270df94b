//! `stratalake audit`: the audit log, filtered, and the check of its hash chain.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::args::{Cli, ident, parse_duration};
use crate::lake::open;
use crate::output::{Cell, made, print_rows, show};

// (no doc comment: clap would show it in place of the command's own)
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub cmd: Option<AuditCmd>,
    /// Only records of this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only records with this outcome: ok, denied or error.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only the last N records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only records that touched this table (`ns.table`, or `table` in `default`).
    #[arg(long)]
    pub table: Option<String>,
    /// Only records from the last DURATION (e.g. 30m, 24h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the hash chain: every record present, unedited, in order. Exit code 3 if not.
    Verify,
}

/// `stratalake audit [verify]`.
pub async fn run(cli: &Cli, a: &AuditArgs) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    let AuditArgs {
        cmd,
        principal,
        outcome,
        limit,
        table,
        since,
    } = a;
    if let Some(AuditCmd::Verify) = cmd {
        let problems = lake.audit().verify().await?;
        if problems.is_empty() {
            println!("audit log intact");
        } else {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("error: the audit log has {} problem(s)", problems.len());
            return Ok(ExitCode::from(3));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut records = lake.audit().records().await?;
    records.retain(|r| principal.as_ref().is_none_or(|p| &r.event.principal == p));
    if let Some(t) = table {
        let t = ident(t)?.to_string();
        records.retain(|r| r.event.tables.contains(&t));
    }
    if let Some(d) = since {
        let from = chrono::Utc::now().timestamp_millis() - parse_duration(d)?.as_millis() as i64;
        records.retain(|r| r.time_ms >= from);
    }
    records.retain(|r| {
        outcome
            .as_ref()
            .is_none_or(|o| r.event.outcome.to_string() == o.to_lowercase())
    });
    if let Some(n) = limit {
        let skip = records.len().saturating_sub(*n);
        records.drain(..skip);
    }
    let human = |fmt| {
        let rows = records
            .iter()
            .map(|r| {
                vec![
                    Cell::from(r.seq),
                    Cell::Time(r.time_ms),
                    Cell::from(&r.event.principal),
                    Cell::from(&r.event.kind),
                    Cell::from(&r.event.statement),
                    Cell::from(r.event.tables.join(", ")),
                    Cell::from(r.event.policies.join("; ")),
                    Cell::from(r.event.rows),
                    Cell::from(r.event.outcome.to_string()),
                    Cell::from(r.event.error.clone()),
                ]
            })
            .collect();
        print_rows(
            &[
                "seq",
                "time",
                "principal",
                "kind",
                "statement",
                "tables",
                "policies",
                "rows",
                "outcome",
                "error",
            ],
            rows,
            fmt,
        )
    };
    show(fmt, &made(&records, human))?;
    Ok(ExitCode::SUCCESS)
}
