//! `stratalake`: the command-line tool.

mod backup;
mod demo;
mod export;
mod keys;
mod output;
mod quality;
mod shell;
mod tier;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use stratalake::{AsOf, Format, Lake, Session, TableIdent, TableSchema, WriteMode};

use crate::output::{Cell, OutFormat, print_json_as, print_rows};

/// Stratalake: an encrypted, embeddable data lake.
#[derive(Parser, Debug)]
#[command(name = "stratalake", version, about, long_about = None)]
struct Cli {
    /// The lake: a folder holding stratalake.toml, or a store URL such as s3://bucket/prefix.
    #[arg(long, global = true, env = "STRATALAKE_LAKE", default_value = "lake")]
    lake: String,
    /// Act as this principal (default: $USER). Every command is checked against its grants.
    #[arg(long = "as", global = true, env = "STRATALAKE_PRINCIPAL")]
    as_principal: Option<String>,
    /// Output format of commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a lake: stratalake.toml, a 0600 master key file, the `hot` tier, namespace `default`.
    Init {
        /// Folder of the new lake, or a store URL (s3://bucket/prefix) to keep the whole lake
        /// there (default: --lake).
        dir: Option<String>,
        /// For a lake at a URL: where to create the local master key file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Put the hot tier on this store: a path, file:///abs, memory://name or s3://bucket/prefix.
        #[arg(long)]
        store: Option<String>,
        /// Store option KEY=VALUE (S3: endpoint, region, allow_http); repeatable.
        #[arg(long = "store-option", value_name = "KEY=VALUE")]
        store_options: Vec<String>,
    },
    /// Namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Tables.
    #[command(subcommand)]
    Table(TableCmd),
    /// Load CSV, JSON lines or Parquet files into a table as one atomic commit.
    Ingest(IngestArgs),
    /// Run SQL: an interactive shell, or -c / -f.
    Sql(SqlArgs),
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
    Principal(PrincipalCmd),
    /// Roles: groups of principals and roles, with an optional clearance.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Give a privilege (select, insert, admin) on the lake, a namespace or a table.
    Grant(GrantArgs),
    /// Take a privilege back; effective from the next statement of every session.
    Revoke(GrantArgs),
    /// List grants.
    Grants,
    /// Row filters: which rows of a table principals may see.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Show the audit log (newest last), or `audit verify` to check its hash chain.
    Audit {
        #[command(subcommand)]
        cmd: Option<AuditCmd>,
        /// Only records of this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only records with this outcome: ok, denied or error.
        #[arg(long)]
        outcome: Option<String>,
        /// Only the last N records.
        #[arg(long)]
        limit: Option<usize>,
        /// Only records that touched this table (`ns.table`, or `table` in `default`).
        #[arg(long)]
        table: Option<String>,
        /// Only records from the last DURATION (e.g. 30m, 24h, 7d).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
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

#[derive(Subcommand, Debug)]
enum PrincipalCmd {
    /// Create a principal.
    Create {
        name: String,
        /// A service identity rather than a user.
        #[arg(long)]
        service: bool,
        /// Attribute KEY=VALUE (e.g. clearance=confidential, region=north); repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Make it a member of this role; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List principals with their roles and attributes.
    List,
    /// Set an attribute (or remove it when no value is given).
    Set {
        name: String,
        key: String,
        value: Option<String>,
    },
    /// Drop a principal with its grants and memberships.
    Drop { name: String },
}

#[derive(Subcommand, Debug)]
enum RoleCmd {
    /// Create a role.
    Create {
        name: String,
        /// Highest classification level its members are cleared for.
        #[arg(long)]
        clearance: Option<String>,
    },
    /// List roles with their clearance and members.
    List,
    /// Add a principal or role to a role.
    Add { role: String, member: String },
    /// Remove a member from a role.
    Remove { role: String, member: String },
    /// Drop a role with its grants and memberships.
    Drop { name: String },
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Create or replace a row filter: principals of GRANTEE see only rows matching WHERE (OR
    /// across the filters that apply to them; none applying means no rows, except for table admins).
    RowFilter {
        /// Policy name.
        name: String,
        /// The table.
        #[arg(long)]
        table: String,
        /// The principal or role it applies to.
        #[arg(long = "to")]
        grantee: String,
        /// SQL condition; may use current_principal() and current_principal_attribute('key').
        #[arg(long = "where")]
        predicate: String,
    },
    /// Drop a row filter.
    Drop {
        name: String,
        #[arg(long)]
        table: String,
    },
    /// Mask a column for a principal or role: null, redact, hash, partial:N, bucket:W, deny or expr:SQL.
    Mask {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The principal or role.
        #[arg(long = "to")]
        grantee: String,
        /// null | redact | hash | partial:N (keep the last N characters) | bucket:W (a number, or day/week/month/quarter/year) | deny | expr:SQL
        #[arg(long)]
        mask: String,
    },
    /// Remove a column mask.
    Unmask {
        table: String,
        column: String,
        #[arg(long = "from")]
        grantee: String,
    },
    /// Classification policy: every session not cleared for LEVEL sees that level's columns, in
    /// every table, through MASK (none: NULL again).
    Classification {
        /// The classification level.
        level: String,
        /// null | redact | hash | partial:N | bucket:W | deny | none
        #[arg(long)]
        mask: String,
    },
    /// List row filters, column masks and classification policies.
    List,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Check the hash chain: every record present, unedited, in order. Exit code 3 if not.
    Verify,
}

#[derive(Args, Debug)]
struct GrantArgs {
    /// select, insert or admin.
    privilege: String,
    /// lake, namespace or table.
    #[arg(long = "on", default_value = "lake")]
    on: String,
    /// The namespace or table (ns.table) name.
    name: Option<String>,
    /// The principal or role.
    #[arg(long = "to", visible_alias = "from")]
    grantee: String,
}

#[derive(Subcommand, Debug)]
enum NamespaceCmd {
    /// Create a namespace.
    Create { name: String },
    /// List namespaces.
    List,
    /// Drop an empty namespace.
    Drop { name: String },
}

#[derive(Subcommand, Debug)]
enum TableCmd {
    /// Create a table.
    Create {
        /// `table` or `namespace.table`.
        name: String,
        /// Columns in SQL: "id BIGINT NOT NULL CLASSIFICATION public, name VARCHAR, ...".
        #[arg(long)]
        columns: Option<String>,
        /// Take the columns from a data file instead (every column gets the default classification).
        #[arg(long, conflicts_with = "columns")]
        from_file: Option<PathBuf>,
        /// Partition fields: "region, day(issued_at)".
        #[arg(long)]
        partition_by: Option<String>,
    },
    /// List tables of a namespace (default: all namespaces).
    List { namespace: Option<String> },
    /// Show a table's columns, classifications, partitioning and size.
    Describe {
        name: String,
        /// Describe the table as of a version or timestamp.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Drop a table and delete its files.
    Drop { name: String },
    /// Delete files no version within the retention window needs (and files stopped writers
    /// left behind); time travel to older versions fails afterwards.
    Vacuum {
        name: String,
        /// Keep what versions of the last DURATION need: 7d, 12h, 30m, 0s.
        #[arg(long, default_value = "7d")]
        retain: String,
        /// Show what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention under [lake] vacuum_min_retention_hours.
        #[arg(long)]
        force: bool,
    },
    /// Compact small files per partition into files of the target size (optionally sorted), in
    /// one commit; the old files stay until vacuum.
    Optimize {
        name: String,
        /// Target file size (default: [lake] target_file_size_mib), e.g. 128MiB.
        #[arg(long)]
        target_size: Option<String>,
        /// Sort each compacted file by these columns: `col[ DESC], ...`.
        #[arg(long)]
        sort_by: Option<String>,
        /// Show what would be compacted, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the table's commits, newest first.
    History {
        name: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Set a column's classification (a metadata commit).
    Classify {
        name: String,
        column: String,
        level: String,
    },
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// `table` or `namespace.table`.
    table: String,
    /// Files to load.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Input format: csv, tsv, json or parquet (default: from each file's extension).
    #[arg(long = "input-format")]
    input_format: Option<String>,
    #[command(flatten)]
    csv: CsvArgs,
    /// What to do with existing rows.
    #[arg(long, value_enum, default_value_t = ModeArg::Append)]
    mode: ModeArg,
    /// Create the table from the first file's columns if it does not exist.
    #[arg(long)]
    create: bool,
    /// With --create: partition fields, e.g. "region".
    #[arg(long)]
    partition_by: Option<String>,
    /// Rows that break the table's constraints: reject the whole ingest, or commit the good
    /// rows and append the bad ones (with the rule) to `<table>_quarantine`.
    #[arg(long, value_enum, default_value_t = OnErrorArg::Reject)]
    on_error: OnErrorArg,
}

/// How CSV and TSV files are read.
#[derive(Args, Debug, Clone, Default)]
struct CsvArgs {
    /// CSV field separator: one character, or `tab` (default: detected from the first line
    /// among `,` `;` tab `|`; tab for .tsv files).
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV quote character.
    #[arg(long, default_value = "\"")]
    quote: String,
    /// CSV escape character inside quotes (default: a doubled quote).
    #[arg(long)]
    escape: Option<String>,
    /// The CSV file has no header line: its fields are the table's columns in order.
    #[arg(long)]
    no_header: bool,
    /// A CSV field equal to this text is NULL (default: an empty field is NULL).
    #[arg(long = "null", value_name = "TEXT")]
    null_text: Option<String>,
    /// Format of DATE fields, chrono/strftime style (e.g. "%d.%m.%Y"; default YYYY-MM-DD).
    #[arg(long)]
    date_format: Option<String>,
    /// Format of TIMESTAMP fields (e.g. "%d.%m.%Y %H:%M"; with %z the offset is read; default
    /// RFC 3339).
    #[arg(long)]
    timestamp_format: Option<String>,
}

impl CsvArgs {
    fn options(&self, format: Option<Format>) -> Result<stratalake::IngestOptions> {
        use stratalake::table::csv::parse_char;
        let csv = stratalake::table::csv::CsvOptions {
            delimiter: self
                .delimiter
                .as_deref()
                .map(|d| parse_char("--delimiter", d))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            quote: parse_char("--quote", &self.quote).map_err(anyhow::Error::msg)?,
            escape: self
                .escape
                .as_deref()
                .map(|d| parse_char("--escape", d))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            header: !self.no_header,
            null: self.null_text.clone(),
            date_format: self.date_format.clone(),
            timestamp_format: self.timestamp_format.clone(),
        };
        Ok(stratalake::IngestOptions { format, csv })
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnErrorArg {
    Reject,
    Quarantine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Append,
    Overwrite,
    OverwritePartitions,
}

#[derive(Args, Debug)]
struct SqlArgs {
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

/// Whether an error comes from writing to a pipe whose reader has gone (`... | head`).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn main() -> ExitCode {
    // `stratalake ... | head`: once the reader is gone, stop quietly (as ripgrep and git do)
    // instead of panicking in a print.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATALAKE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let acting_as_default = cli.as_principal.is_none();
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut msg = chain[0].clone();
            for c in &chain[1..] {
                if !msg.contains(c.as_str()) {
                    msg.push_str(": ");
                    msg.push_str(c);
                }
            }
            // One line, whatever a lower layer put in its message (an S3 error body, say).
            let mut msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            if acting_as_default && msg.contains("is not a principal of this lake") {
                msg.push_str(&format!(
                    " (commands act as {} from $USER unless --as NAME or STRATALAKE_PRINCIPAL names \
                     another; `stratalake init` printed who became the lake's administrator)",
                    default_principal()
                ));
            }
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Who `init` made the lake's administrator, and where the name came from.
fn admin_note(principal: &str, given: bool) -> String {
    if given {
        return format!("{principal} (given with --as)");
    }
    match std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        Some(user) if user == principal => format!("{principal} (you, from $USER)"),
        Some(user) => format!("{principal} (from $USER={user}, made a principal name)"),
        None => format!(
            "{principal} ($USER is not set; run later commands with --as {principal} or \
             STRATALAKE_PRINCIPAL={principal} wherever $USER is set)"
        ),
    }
}

/// The principal used when neither `--as` nor `STRATALAKE_PRINCIPAL` names one: `$USER`
/// (lower-cased, characters other than letters, digits and `_` replaced by `_`), else `local`.
/// Only the command line has such a default: the library always acts as a named principal.
fn default_principal() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into());
    let mut name: String = user
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("u{}", &name[..name.len().min(63)]);
    }
    name
}

/// Who this command acts as: `--as`, `STRATALAKE_PRINCIPAL`, else [`default_principal`].
fn principal(cli: &Cli) -> String {
    cli.as_principal.clone().unwrap_or_else(default_principal)
}

async fn open(cli: &Cli) -> Result<Session> {
    let lake = Lake::builder(&cli.lake)
        .open()
        .await
        .with_context(|| format!("cannot open the lake at {}", cli.lake))?;
    Ok(lake.session(&principal(cli)))
}

/// `--as-of`: a version number or a timestamp.
fn as_of_arg(s: Option<&str>) -> Result<Option<AsOf>> {
    s.map(AsOf::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--as-of: {e}"))
}

fn ident(name: &str) -> Result<TableIdent> {
    Ok(TableIdent::parse(name, stratalake::DEFAULT_NAMESPACE)?)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let fmt = cli.format;
    match &cli.command {
        Command::Init {
            dir,
            key_file,
            store,
            store_options,
        } => {
            let dir = dir.clone().unwrap_or_else(|| cli.lake.clone());
            if dir.contains("://") && !dir.starts_with("file://") {
                let key_file = key_file
                    .as_ref()
                    .context("a lake at a URL needs --key-file PATH for its master keys")?;
                if store.is_some() || !store_options.is_empty() {
                    bail!(
                        "--store and --store-option are for folder lakes; a URL lake's store settings come from AWS_* variables"
                    );
                }
                let admin = principal(&cli);
                Lake::builder(&dir).key_file(key_file).admin(&admin).create().await?;
                println!("created lake at {dir}");
                println!("  admin:   {}", admin_note(&admin, cli.as_principal.is_some()));
                println!(
                    "  keys:    {} (mode 0600; back it up separately from the data)",
                    key_file.display()
                );
                println!(
                    "  open it with --lake {dir} and STRATALAKE_KEY_FILE={}",
                    key_file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let dir = PathBuf::from(dir.strip_prefix("file://").unwrap_or(&dir));
            let mut options = std::collections::BTreeMap::new();
            for kv in store_options {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--store-option {kv:?}: expected KEY=VALUE"))?;
                options.insert(k.trim().to_string(), v.trim().to_string());
            }
            let admin = principal(&cli);
            let mut builder = Lake::builder(&dir).admin(&admin).store_options(options);
            if let Some(store) = store {
                builder = builder.store(store);
            }
            let lake = builder.create().await?;
            println!("created lake at {}", dir.display());
            println!("  admin:   {}", admin_note(&admin, cli.as_principal.is_some()));
            println!("  config:  {}", dir.join(stratalake::CONFIG_FILE).display());
            println!(
                "  keys:    {} (mode 0600; back it up separately from the data)",
                dir.join("master.keys").display()
            );
            for t in &lake.config().tiers {
                println!("  tier:    {} -> {}", t.name, t.url);
            }
        }
        Command::Namespace(c) => {
            let lake = open(&cli).await?;
            match c {
                NamespaceCmd::Create { name } => {
                    lake.create_namespace(name).await?;
                    output::done(fmt, format!("namespace {name} created"))?;
                }
                NamespaceCmd::List => {
                    let rows = lake.namespaces().await?.into_iter().map(|n| vec![n]).collect();
                    print_rows(&["namespace"], rows, fmt)?;
                }
                NamespaceCmd::Drop { name } => {
                    lake.drop_namespace(name).await?;
                    output::done(fmt, format!("namespace {name} dropped"))?;
                }
            }
        }
        Command::Table(c) => table_cmd(&cli, c, fmt).await?,
        Command::Ingest(a) => ingest(&cli, a, fmt).await?,
        Command::Sql(a) => return sql(&cli, a, fmt).await,
        Command::Export(a) => return export::run(&cli, a, fmt).await,
        Command::Verify { tables } => {
            let lake = open(&cli).await?;
            let bar = output::Progress::new("verifying files", false);
            let b2 = bar.clone();
            let report = lake
                .verify(tables, &move |i, n| b2.update(i as u64, n as u64, ""))
                .await?;
            bar.finish();
            if fmt.is_json() {
                print_json_as(&report, fmt)?;
            } else {
                println!(
                    "checked {} table(s), {} log version(s), {} file(s), {} row(s), {} byte(s)",
                    report.tables, report.versions, report.files, report.rows, report.bytes
                );
                if !report.problems.is_empty() {
                    let rows = report
                        .problems
                        .iter()
                        .map(|p| vec![p.table.clone(), p.path.clone(), p.problem.clone()])
                        .collect();
                    print_rows(&["table", "object", "problem"], rows, fmt)?;
                }
            }
            if !report.problems.is_empty() {
                eprintln!("error: verify found {} problem(s)", report.problems.len());
                return Ok(ExitCode::from(3));
            }
            if !fmt.is_json() {
                println!("no problems found");
            }
        }
        Command::Principal(c) => access_cmd(&cli, AccessCmd::Principal(c), fmt).await?,
        Command::Role(c) => access_cmd(&cli, AccessCmd::Role(c), fmt).await?,
        Command::Grant(g) => access_cmd(&cli, AccessCmd::Grant(g, true), fmt).await?,
        Command::Revoke(g) => access_cmd(&cli, AccessCmd::Grant(g, false), fmt).await?,
        Command::Grants => access_cmd(&cli, AccessCmd::List, fmt).await?,
        Command::Policy(PolicyCmd::RowFilter {
            name,
            table,
            grantee,
            predicate,
        }) => {
            let lake = open(&cli).await?;
            lake.set_row_filter(table, name, grantee, predicate).await?;
            output::done(
                fmt,
                format!("row filter {name} on {} applies to {grantee}", ident(table)?),
            )?;
        }
        Command::Policy(PolicyCmd::Drop { name, table }) => {
            let lake = open(&cli).await?;
            let table = ident(table)?.to_string();
            lake.change_access(vec![stratalake::table::access::AccessAction::DropRowFilter {
                table: table.clone(),
                name: name.clone(),
            }])
            .await?;
            output::done(fmt, format!("row filter {name} on {table} dropped"))?;
        }
        Command::Policy(PolicyCmd::Mask {
            table,
            column,
            grantee,
            mask,
        }) => {
            let lake = open(&cli).await?;
            let m = stratalake::table::access::Mask::parse(mask)?;
            lake.set_mask(table, column, grantee, m.clone()).await?;
            output::done(fmt, format!("{}.{column} is shown to {grantee} as {m}", ident(table)?))?;
        }
        Command::Policy(PolicyCmd::Unmask { table, column, grantee }) => {
            let lake = open(&cli).await?;
            let table = ident(table)?.to_string();
            lake.change_access(vec![stratalake::table::access::AccessAction::DropMask {
                table: table.clone(),
                column: column.clone(),
                grantee: grantee.clone(),
            }])
            .await?;
            output::done(fmt, format!("mask of {table}.{column} for {grantee} dropped"))?;
        }
        Command::Policy(PolicyCmd::Classification { level, mask }) => {
            let lake = open(&cli).await?;
            let m = match mask.to_ascii_lowercase().as_str() {
                "none" => None,
                _ => Some(stratalake::table::access::Mask::parse(mask)?),
            };
            lake.change_access(vec![stratalake::table::access::AccessAction::SetLevelMask {
                level: level.to_lowercase(),
                mask: m.clone(),
            }])
            .await?;
            match m {
                Some(m) => output::done(
                    fmt,
                    format!("columns classified {level} are shown as {m} to sessions not cleared for it"),
                )?,
                None => output::done(
                    fmt,
                    format!("columns classified {level} read as NULL to sessions not cleared for it"),
                )?,
            }
        }
        Command::Policy(PolicyCmd::List) => {
            let lake = open(&cli).await?;
            let st = lake.access_state().await?;
            let mut rows = Vec::new();
            for (level, m) in &st.level_masks {
                rows.push(vec![
                    "(every table)".to_string(),
                    format!("classification {level}"),
                    "sessions not cleared for it".to_string(),
                    m.to_string(),
                ]);
            }
            for (table, filters) in &st.row_filters {
                for (name, f) in filters {
                    rows.push(vec![
                        table.clone(),
                        name.clone(),
                        f.grantee.clone(),
                        f.predicate.clone(),
                    ]);
                }
            }
            for (table, cols) in &st.masks {
                for (col, by) in cols {
                    for (g, m) in by {
                        rows.push(vec![table.clone(), format!("mask {col}"), g.clone(), m.to_string()]);
                    }
                }
            }
            print_rows(&["table", "policy", "applies_to", "rule"], rows, fmt)?;
        }
        Command::Audit {
            cmd: Some(AuditCmd::Verify),
            ..
        } => {
            let lake = open(&cli).await?;
            let problems = lake.verify_audit().await?;
            if problems.is_empty() {
                println!("audit log intact");
            } else {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("error: the audit log has {} problem(s)", problems.len());
                return Ok(ExitCode::from(3));
            }
        }
        Command::Audit {
            cmd: None,
            principal,
            outcome,
            limit,
            table,
            since,
        } => {
            let lake = open(&cli).await?;
            let mut records = lake.audit_records().await?;
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
            if fmt.is_json() {
                print_json_as(&records, fmt)?;
            } else {
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
                )?;
            }
        }
        Command::Backup(cmd) => return backup::run(&cli, cmd).await,
        Command::Key(cmd) => return keys::run(&cli, cmd).await,
        Command::Tier(cmd) => return tier::run(&cli, cmd).await,
        Command::Capacity(a) => return tier::capacity(&cli, a).await,
        Command::Quality(cmd) => return quality::run(&cli, cmd).await,
        Command::Demo { rows } => {
            if cli.lake.contains("://") {
                bail!("demo runs on a local lake folder: pass --lake PATH");
            }
            demo::run(Path::new(&cli.lake), *rows, &principal(&cli)).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

enum AccessCmd<'a> {
    Principal(&'a PrincipalCmd),
    Role(&'a RoleCmd),
    Grant(&'a GrantArgs, bool),
    List,
}

/// `7d`, `12h`, `30m`, `45s`.
fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let ms = stratalake::table::units::parse_duration_ms(s).map_err(anyhow::Error::msg)?;
    Ok(std::time::Duration::from_millis(ms.max(0) as u64))
}

fn kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

async fn access_cmd(cli: &Cli, c: AccessCmd<'_>, fmt: OutFormat) -> Result<()> {
    use stratalake::table::access::{AccessAction as A, Grant, Privilege};
    let lake = open(cli).await?;
    let done = |what: String| output::done(fmt, what);
    match c {
        AccessCmd::Principal(PrincipalCmd::Create {
            name,
            service,
            attrs,
            roles,
        }) => {
            let attributes = attrs.iter().map(|a| kv(a)).collect::<Result<_>>()?;
            let kind = if *service { "service" } else { "user" };
            let mut actions = vec![A::CreatePrincipal {
                name: name.clone(),
                kind: kind.into(),
                attributes,
            }];
            actions.extend(roles.iter().map(|r| A::AddMember {
                role: r.clone(),
                member: name.clone(),
            }));
            lake.change_access(actions).await?;
            done(format!("principal {name} created"))?;
        }
        AccessCmd::Principal(PrincipalCmd::Set { name, key, value }) => {
            lake.change_access(vec![A::SetAttribute {
                principal: name.clone(),
                key: key.clone(),
                value: value.clone(),
            }])
            .await?;
            done(format!(
                "principal {name}: {key} {}",
                value.as_deref().map(|v| format!("= {v}")).unwrap_or("removed".into())
            ))?;
        }
        AccessCmd::Principal(PrincipalCmd::Drop { name }) => {
            lake.change_access(vec![A::DropPrincipal { name: name.clone() }])
                .await?;
            done(format!("principal {name} dropped"))?;
        }
        AccessCmd::Principal(PrincipalCmd::List) => {
            let st = lake.access_state().await?;
            let rows = st
                .principals
                .iter()
                .map(|(n, p)| {
                    let attrs: Vec<String> = p.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let roles: Vec<String> = st.member_roles(n).into_iter().collect();
                    vec![n.clone(), p.kind.clone(), roles.join(", "), attrs.join(", ")]
                })
                .collect();
            print_rows(&["principal", "kind", "roles", "attributes"], rows, fmt)?;
        }
        AccessCmd::Role(RoleCmd::Create { name, clearance }) => {
            lake.change_access(vec![A::CreateRole {
                name: name.clone(),
                clearance: clearance.clone(),
            }])
            .await?;
            done(format!("role {name} created"))?;
        }
        AccessCmd::Role(RoleCmd::Add { role, member }) => {
            lake.change_access(vec![A::AddMember {
                role: role.clone(),
                member: member.clone(),
            }])
            .await?;
            done(format!("{member} is a member of {role}"))?;
        }
        AccessCmd::Role(RoleCmd::Remove { role, member }) => {
            lake.change_access(vec![A::RemoveMember {
                role: role.clone(),
                member: member.clone(),
            }])
            .await?;
            done(format!("{member} is no longer a member of {role}"))?;
        }
        AccessCmd::Role(RoleCmd::Drop { name }) => {
            lake.change_access(vec![A::DropRole { name: name.clone() }]).await?;
            done(format!("role {name} dropped"))?;
        }
        AccessCmd::Role(RoleCmd::List) => {
            let st = lake.access_state().await?;
            let rows = st
                .roles
                .iter()
                .map(|(n, r)| {
                    let members: Vec<String> = r.members.iter().cloned().collect();
                    vec![n.clone(), r.clearance.clone().unwrap_or_default(), members.join(", ")]
                })
                .collect();
            print_rows(&["role", "clearance", "members"], rows, fmt)?;
        }
        AccessCmd::Grant(g, give) => {
            let grant = Grant {
                grantee: g.grantee.clone(),
                privilege: Privilege::parse(&g.privilege)?,
                on: stratalake::parse_securable(&g.on, g.name.as_deref())?,
            };
            let text = grant.describe(give);
            if give {
                lake.grant(grant).await?;
                done(format!("granted {text}"))?;
            } else {
                lake.revoke(grant).await?;
                done(format!("revoked {text}"))?;
            }
        }
        AccessCmd::List => {
            let st = lake.access_state().await?;
            let rows = st
                .grants
                .iter()
                .map(|g| vec![g.grantee.clone(), g.privilege.to_string(), g.on.to_string()])
                .collect();
            print_rows(&["grantee", "privilege", "on"], rows, fmt)?;
        }
    }
    Ok(())
}

fn parse_partitions(spec: &Option<String>) -> Result<Vec<stratalake::PartitionField>> {
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

async fn table_cmd(cli: &Cli, c: &TableCmd, fmt: OutFormat) -> Result<()> {
    let lake = open(cli).await?;
    let principal = lake.principal().to_string();
    match c {
        TableCmd::Create {
            name,
            columns,
            from_file,
            partition_by,
        } => {
            let id = ident(name)?;
            if let Some(cols) = columns {
                let parts = partition_by
                    .as_ref()
                    .map(|p| format!(" PARTITIONED BY ({p})"))
                    .unwrap_or_default();
                let sql = format!("CREATE TABLE {id} ({cols}){parts}");
                lake.session(&principal).execute(&sql).await?;
            } else if let Some(f) = from_file {
                let mut schema = stratalake::table::ingest::infer_schema(
                    f,
                    &Default::default(),
                    &lake.config().classifications.default,
                )?;
                schema.partition_by = parse_partitions(partition_by)?;
                lake.create_table(&id.to_string(), schema).await?;
            } else {
                bail!("give the table's columns with --columns \"...\" or --from-file FILE");
            }
            output::done(fmt, format!("table {id} created"))?;
        }
        TableCmd::List { namespace } => {
            let namespaces = match namespace {
                Some(n) => vec![n.clone()],
                None => lake.namespaces().await?,
            };
            // only tables the principal holds a privilege on (as SHOW TABLES); counts only
            // where they cannot reveal rows it may not see
            let mut rows = Vec::new();
            for ns in namespaces {
                // only the tables this principal may know, with counts only where it may see them
                for t in lake.tables(&ns).await? {
                    let o = lake.table_overview(&TableIdent::new(&ns, &t).to_string(), None).await?;
                    rows.push(vec![
                        Cell::from(ns.clone()),
                        Cell::from(t),
                        Cell::from(o.version),
                        Cell::from(o.counts.map(|c| c.files)),
                        Cell::from(o.counts.map(|c| c.rows)),
                        o.counts.map_or(Cell::Null, |c| Cell::Bytes(c.bytes)),
                    ]);
                }
            }
            print_rows(&["namespace", "table", "version", "files", "rows", "bytes"], rows, fmt)?;
        }
        TableCmd::Describe { name, as_of } => {
            let as_of = crate::as_of_arg(as_of.as_deref())?;
            describe_at(&lake, name, as_of, fmt).await?;
        }
        TableCmd::Drop { name } => {
            let n = lake.drop_table(name).await?;
            output::done(fmt, format!("table {} dropped ({n} objects deleted)", ident(name)?))?;
        }
        TableCmd::Vacuum {
            name,
            retain,
            dry_run,
            force,
        } => {
            let r = lake.vacuum(name, parse_duration(retain)?, *dry_run, *force).await?;
            if fmt.is_json() {
                print_json_as(&r, fmt)?;
                return Ok(());
            }
            for p in &r.paths {
                println!("{} {p}", if r.dry_run { "would delete" } else { "deleted" });
            }
            println!(
                "{} {} removed file(s), {} old cop(ies) of moved files and {} unreferenced file(s), {} bytes; kept {} recent unreferenced file(s); versions from {} on stay readable",
                if r.dry_run { "would delete" } else { "deleted" },
                r.removed_files,
                r.moved_copies,
                r.orphan_files,
                r.bytes,
                r.kept_recent_orphans,
                r.oldest_readable_version
            );
        }
        TableCmd::Optimize {
            name,
            target_size,
            sort_by,
            dry_run,
        } => {
            let mut opts = lake.optimize_options();
            opts.dry_run = *dry_run;
            if let Some(t) = target_size {
                opts.target_size = stratalake::tiering::units::parse_size(t)
                    .context("--target-size")?
                    .max(1);
            }
            for part in sort_by.iter().flat_map(|s| s.split(',')) {
                let mut words = part.split_whitespace();
                let col = words.next().context("--sort-by: an empty column")?;
                let desc = match words.next().map(|w| w.to_ascii_lowercase()) {
                    None => false,
                    Some(w) if w == "asc" => false,
                    Some(w) if w == "desc" => true,
                    Some(w) => bail!("--sort-by {part:?}: expected ASC or DESC after the column, not {w:?}"),
                };
                opts.sort_by.push((col.to_string(), desc));
            }
            let bar = output::Progress::new("compacting files", false);
            let b2 = bar.clone();
            let r = lake
                .optimize(name, &opts, &move |done, total| b2.update(done, total, ""))
                .await;
            bar.finish();
            let r = r?;
            if fmt.is_json() {
                print_json_as(&r, fmt)?;
                return Ok(());
            }
            if r.dry_run {
                println!(
                    "would compact {} file(s) ({} bytes) in {} partition(s), {} rows",
                    r.files_removed, r.bytes_removed, r.partitions, r.rows
                );
            } else {
                println!(
                    "compacted {} file(s) ({} bytes) into {} file(s) ({} bytes) in {} partition(s), {} rows{}",
                    r.files_removed,
                    r.bytes_removed,
                    r.files_added,
                    r.bytes_added,
                    r.partitions,
                    r.rows,
                    r.version.map(|v| format!("; version {v}")).unwrap_or_default()
                );
            }
        }
        TableCmd::History { name, limit } => {
            // who wrote what, and how many rows each commit added or removed: administrators
            let h = lake.history(name, *limit).await?;
            if fmt.is_json() {
                print_json_as(&h, fmt)?;
                return Ok(());
            }
            let rows = h
                .iter()
                .map(|e| {
                    vec![
                        Cell::from(e.version),
                        Cell::Time(e.timestamp_ms),
                        Cell::from(&e.operation),
                        Cell::from(&e.principal),
                        Cell::from(e.counts.rows_added),
                        Cell::from(e.counts.rows_removed),
                        Cell::from(e.counts.files_added),
                        Cell::from(e.counts.files_removed),
                        Cell::from(e.counts.files_moved),
                    ]
                })
                .collect();
            print_rows(
                &[
                    "version",
                    "time",
                    "operation",
                    "principal",
                    "rows_added",
                    "rows_removed",
                    "files_added",
                    "files_removed",
                    "files_moved",
                ],
                rows,
                fmt,
            )?;
        }
        TableCmd::Classify { name, column, level } => {
            let v = lake.classify(name, column, level).await?;
            println!(
                "{}.{column} classified {level} (version {v}); files written before keep their keys until rewritten",
                ident(name)?
            );
        }
    }
    Ok(())
}

/// A table's columns; its file, row and byte counts only with `counts` (see [`sight`]).
/// `\\d TABLE` in the shell: the table now.
pub(crate) async fn describe_for(lake: &Session, name: &str, _shell: bool, fmt: OutFormat) -> Result<()> {
    describe_at(lake, name, None, fmt).await
}

/// Describe a table (as of a version or time) as the lake's principal may see it.
async fn describe_at(lake: &Session, name: &str, as_of: Option<AsOf>, fmt: OutFormat) -> Result<()> {
    use stratalake::table::access::ColumnRead;
    let o = lake.table_overview(name, as_of).await?;
    let schema: &TableSchema = &o.metadata.schema;
    let rows = o
        .columns
        .iter()
        .map(|(c, read)| {
            let part: Vec<String> = schema
                .partition_by
                .iter()
                .filter(|p| p.column == c.name)
                .map(|p| p.to_string())
                .collect();
            let read = match read {
                ColumnRead::Values => "values".to_string(),
                ColumnRead::Masked(m) => format!("mask {m}"),
                ColumnRead::MaskedUncleared(m) => format!("mask {m} (not cleared for {})", c.classification),
                ColumnRead::NullUncleared => format!("NULL (not cleared for {})", c.classification),
            };
            vec![
                c.name.clone(),
                c.data_type.to_string(),
                if c.nullable { "yes".into() } else { "no".into() },
                c.classification.clone(),
                part.join(", "),
                read,
            ]
        })
        .collect();
    if fmt == OutFormat::Table {
        let sizes = o
            .counts
            .map(|c| format!(": {} file(s), {} row(s), {}", c.files, c.rows, output::size(c.bytes)))
            .unwrap_or_default();
        println!(
            "table {} (id {}) version {}{sizes}",
            o.ident, o.metadata.table_id, o.version,
        );
        if !o.row_filters.is_empty() {
            println!("rows you see are filtered by: {}", o.row_filters.join(", "));
        }
    }
    print_rows(
        &["column", "type", "nullable", "classification", "partition", "you read"],
        rows,
        fmt,
    )
}

async fn ingest(cli: &Cli, a: &IngestArgs, fmt: OutFormat) -> Result<()> {
    let lake = open(cli).await?;
    let format = a
        .input_format
        .as_deref()
        .map(|f| Format::parse_named(f, "--input-format"))
        .transpose()?;
    let options = a.csv.options(format)?;
    let id = ident(&a.table)?;
    if a.create && !lake.tables(&id.namespace).await?.contains(&id.name) {
        let mut schema =
            stratalake::table::ingest::infer_schema(&a.files[0], &options, &lake.config().classifications.default)?;
        schema.partition_by = parse_partitions(&a.partition_by)?;
        lake.create_table(&id.to_string(), schema).await?;
        eprintln!("created table {id} from {}", a.files[0].display());
    }
    let mode = match a.mode {
        ModeArg::Append => WriteMode::Append,
        ModeArg::Overwrite => WriteMode::Overwrite,
        ModeArg::OverwritePartitions => WriteMode::OverwritePartitions,
    };
    let paths: Vec<&Path> = a.files.iter().map(|p| p.as_path()).collect();
    let bar = output::Progress::new("ingesting", true);
    let b2 = bar.clone();
    let started = std::time::Instant::now();
    let on_error = match a.on_error {
        OnErrorArg::Reject => stratalake::table::quality::OnError::Reject,
        OnErrorArg::Quarantine => stratalake::table::quality::OnError::Quarantine,
    };
    let r = lake
        .ingest_with_options(&id.to_string(), &paths, &options, mode, on_error, &move |p| {
            b2.update(p.bytes, p.total_bytes, &format!("{} rows", p.rows))
        })
        .await;
    bar.finish();
    let r = r.map_err(|e| {
        // Only a commit whose create the store answered with an error, and that could not be
        // read back, may have landed; every other failure committed nothing.
        let note = match e.commit_outcome() {
            stratalake::CommitOutcome::Unknown => {
                format!("the outcome is unknown: check `stratalake table history {id}` before retrying")
            }
            stratalake::CommitOutcome::Partly => return anyhow::Error::from(e),
            stratalake::CommitOutcome::Nothing if e.to_string().contains("nothing was committed") => {
                return anyhow::Error::from(e);
            }
            stratalake::CommitOutcome::Nothing => format!("nothing was committed to {id}"),
        };
        anyhow::Error::from(e).context(note)
    })?;
    if fmt.is_json() {
        print_json_as(&r, fmt)?;
    } else {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "committed version {} of {id}: {} rows in {} encrypted file(s), {} bytes ({:.0} rows/s)",
            r.version,
            r.rows,
            r.files,
            r.bytes,
            r.rows as f64 / secs.max(1e-9)
        );
        if let Some(q) = &r.quality {
            if q.duplicates_removed > 0 || q.replaced > 0 {
                println!(
                    "  {} duplicate row(s) dropped, {} row(s) already in the table replaced",
                    q.duplicates_removed, q.replaced
                );
            }
            if let Some(qt) = &r.quarantine_table {
                let rules: Vec<String> = q.rejected.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                println!("  {} row(s) quarantined in {qt} ({})", q.quarantined, rules.join(", "));
            }
        }
    }
    Ok(())
}

async fn sql(cli: &Cli, a: &SqlArgs, fmt: OutFormat) -> Result<ExitCode> {
    let lake = open(cli).await?;
    let as_of = crate::as_of_arg(a.as_of.as_deref())?;
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
    if let Err(e) = lake.flush_read_stats().await {
        tracing::warn!(error = %e, "could not record read statistics");
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
