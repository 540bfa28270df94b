//! The command line: global flags, the commands, and parsers of argument values shared by
//! several commands. Each command's own flags live with the command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use stratalake::{AsOf, TableIdent};

use crate::output::OutFormat;
use crate::{access, audit, backup, export, ingest, keys, lake, quality, sql, table, tier};

/// Stratalake: an encrypted, embeddable data lake.
#[derive(Parser, Debug)]
#[command(name = "stratalake", version, about, long_about = None)]
pub struct Cli {
    /// The lake: a folder holding stratalake.toml, or a store URL such as s3://bucket/prefix.
    #[arg(long, global = true, env = "STRATALAKE_LAKE", default_value = "lake")]
    pub lake: String,
    /// Act as this principal (default: $USER). Every command is checked against its grants.
    #[arg(long = "as", global = true, env = "STRATALAKE_PRINCIPAL")]
    pub as_principal: Option<String>,
    /// Output format of commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = OutFormat::Table)]
    pub format: OutFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a lake: stratalake.toml, a 0600 master key file, the `hot` tier, namespace `default`.
    Init(lake::InitArgs),
    /// Namespaces.
    #[command(subcommand)]
    Namespace(table::NamespaceCmd),
    /// Tables.
    #[command(subcommand)]
    Table(table::TableCmd),
    /// Load CSV, JSON lines or Parquet files into a table as one atomic commit.
    Ingest(ingest::IngestArgs),
    /// Run SQL: an interactive shell, or -c / -f.
    Sql(sql::SqlArgs),
    /// Write a query's result or a table to a local Parquet, CSV or JSON-lines file, read as
    /// the principal (its row filters, masks and clearances apply); the file is not encrypted.
    Export(export::ExportArgs),
    /// Re-read the log and every live file: checksums, decryption, row counts.
    Verify {
        /// Tables to verify (default: all).
        tables: Vec<String>,
    },
    /// Principals: users and services.
    #[command(subcommand)]
    Principal(access::PrincipalCmd),
    /// API tokens of principals: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(crate::credentials::TokenCmd),
    /// Roles: groups of principals and roles, with an optional clearance.
    #[command(subcommand)]
    Role(access::RoleCmd),
    /// Give a privilege (select, insert, admin) on the lake, a namespace or a table.
    Grant(access::GrantArgs),
    /// Take a privilege back; effective from the next statement of every session.
    Revoke(access::GrantArgs),
    /// List grants.
    Grants,
    /// Row filters: which rows of a table principals may see.
    #[command(subcommand)]
    Policy(access::PolicyCmd),
    /// Show the audit log (newest last), or `audit verify` to check its hash chain.
    Audit(audit::AuditArgs),
    /// Backups: init, create, list, verify, restore, forget, prune.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Master keys: list, rotate, retire, shred.
    #[command(subcommand)]
    Key(keys::KeyCmd),
    /// Storage tiers: list, add, remove, plan, run, status, move.
    #[command(subcommand)]
    Tier(tier::TierCmd),
    /// Capacity per tier, namespace, table, partition and classification; growth and forecast.
    Capacity(tier::CapacityArgs),
    /// Serve the lake over the PostgreSQL wire protocol: TLS, SCRAM-SHA-256 logins with the
    /// passwords set by `principal passwd`, one session per authenticated principal.
    Serve(crate::serve::ServeArgs),
    /// Data quality: report, compare, constraints.
    #[command(subcommand)]
    Quality(quality::QualityCmd),
    /// Generate a realistic public-sector dataset, ingest it encrypted, and query it.
    Demo {
        /// Rows of building permits to generate.
        #[arg(long, default_value_t = 50_000)]
        rows: usize,
    },
}

/// `--as-of`: a version number or a timestamp.
pub fn as_of_arg(s: Option<&str>) -> Result<Option<AsOf>> {
    s.map(AsOf::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--as-of: {e}"))
}

/// A table name: `table` (in `default`) or `namespace.table`.
pub fn ident(name: &str) -> Result<TableIdent> {
    Ok(TableIdent::parse(name, stratalake::DEFAULT_NAMESPACE)?)
}

/// `7d`, `12h`, `30m`, `45s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let ms = stratalake::table::units::parse_duration_ms(s).map_err(anyhow::Error::msg)?;
    Ok(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// `KEY=VALUE`, both trimmed.
pub fn kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// `--partition-by`: partition fields separated by commas, e.g. `region, day(issued_at)`.
pub fn parse_partitions(spec: &Option<String>) -> Result<Vec<stratalake::PartitionField>> {
    let Some(spec) = spec else { return Ok(vec![]) };
    // split on commas outside parentheses
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in spec.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| Ok(stratalake::PartitionField::parse(p)?))
        .collect()
}
