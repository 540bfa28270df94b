//! Namespaces and tables: create, list, describe, drop, vacuum, optimize, history, classify.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use stratalake::{AsOf, Session, TableIdent, TableSchema};

use crate::args::{Cli, as_of_arg, ident, parse_duration, parse_partitions};
use crate::lake::open;
use crate::output::{self, Cell, OutFormat, made, print_rows, show};

#[derive(Subcommand, Debug)]
pub enum NamespaceCmd {
    /// Create a namespace.
    Create { name: String },
    /// List namespaces.
    List,
    /// Drop an empty namespace.
    Drop { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TableCmd {
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

/// `stratalake namespace ...`.
pub async fn namespace(cli: &Cli, c: &NamespaceCmd) -> Result<()> {
    let fmt = cli.format;
    let lake = open(cli).await?;
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
    Ok(())
}

/// `stratalake table ...`.
pub async fn table(cli: &Cli, c: &TableCmd) -> Result<()> {
    let fmt = cli.format;
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
            let as_of = as_of_arg(as_of.as_deref())?;
            describe(&lake, name, as_of, fmt).await?;
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
            let r = lake
                .vacuum(name)
                .retain(parse_duration(retain)?)
                .dry_run(*dry_run)
                .force(*force)
                .await?;
            let human = |_| {
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
                Ok(())
            };
            show(fmt, &made(&r, human))?;
        }
        TableCmd::Optimize {
            name,
            target_size,
            sort_by,
            dry_run,
        } => {
            let bar = output::Progress::new("compacting files", false);
            let mut optimize = lake.optimize(name).dry_run(*dry_run).progress(bar.callback());
            if let Some(t) = target_size {
                optimize = optimize.target_size(stratalake::tiering::units::parse_size(t).context("--target-size")?);
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
                optimize = optimize.sort_by(col, desc);
            }
            let r = optimize.await;
            bar.finish();
            let r = r?;
            let human = |_| {
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
                Ok(())
            };
            show(fmt, &made(&r, human))?;
        }
        TableCmd::History { name, limit } => {
            // who wrote what, and how many rows each commit added or removed: administrators
            let h = lake.history(name, *limit).await?;
            let human = |fmt| {
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
                )
            };
            show(fmt, &made(&h, human))?;
        }
        TableCmd::Classify { name, column, level } => {
            let v = lake.access().classify(name, column, level).await?;
            println!(
                "{}.{column} classified {level} (version {v}); files written before keep their keys until rewritten",
                ident(name)?
            );
        }
    }
    Ok(())
}

/// Describe a table (as of a version or time) as the lake's principal may see it.
pub async fn describe(lake: &Session, name: &str, as_of: Option<AsOf>, fmt: OutFormat) -> Result<()> {
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
