//! `stratalake tier ...` and `stratalake capacity`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use stratalake::tiering::mover::MoveReport;
use stratalake::tiering::plan::Plan;
use stratalake::tiering::units::{fmt_bytes, parse_size};

use crate::args::{Cli, kv};
use crate::lake::open;
use crate::output::{self, JsonStyle, OutFormat, Report, made, print_rows, show};

#[derive(Subcommand, Debug)]
pub enum TierCmd {
    /// The tiers, hottest first, with used and free space.
    List,
    /// Declare a tier in stratalake.toml: the coldest, unless --before. Its folder or store
    /// prefix must be empty; credentials come from the environment (AWS_*), never from here.
    Add(AddArgs),
    /// Remove a tier from stratalake.toml: refused while it holds any file, or while a rule, a
    /// pin or [lake] names it.
    Remove {
        /// The tier.
        name: String,
    },
    /// What the rules, pins and watermarks would move now, and why (nothing is moved).
    Plan,
    /// Move what `tier plan` shows: copy, verify, commit, then delete old copies past the
    /// move retention.
    Run(RunArgs),
    /// Files and bytes per tier, moves pending, and the read cache.
    Status,
    /// Move a table's files (or some partitions) to a tier now: e.g. a recall to `hot`.
    Move {
        /// Target tier.
        #[arg(long)]
        to: String,
        /// The table.
        table: String,
        /// Only partitions matching FIELD=VALUE (repeat to narrow).
        #[arg(long = "partition", value_name = "FIELD=VALUE")]
        partition: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Tier name: lower-case letters, digits and `_` (e.g. cold, archive).
    name: String,
    /// Where its files go: a folder (a relative path is inside the lake folder), file:///abs,
    /// or s3://bucket/prefix.
    #[arg(long)]
    url: String,
    /// Store option KEY=VALUE (S3: endpoint, region, allow_http); repeatable.
    #[arg(long = "option", visible_alias = "store-option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Capacity, e.g. 500GiB: fill-level placement, free space and the forecast use it.
    #[arg(long)]
    capacity: Option<String>,
    /// Fill fraction above which the coldest files move to the next tier (default 0.9).
    #[arg(long, value_name = "FRACTION")]
    high_watermark: Option<f64>,
    /// Fill fraction those moves bring it down to (default 0.8).
    #[arg(long, value_name = "FRACTION")]
    low_watermark: Option<f64>,
    /// Read it through the local read cache: true or false (default: true unless a local folder).
    #[arg(long, value_name = "BOOL")]
    cache: Option<bool>,
    /// Place it just before (hotter than) this tier instead of last.
    #[arg(long, value_name = "TIER")]
    before: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Files copied at once (default: `[tiering] concurrency`, else 4).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Bandwidth limit per second over all copies, e.g. 100MiB (default: `[tiering] bandwidth`).
    #[arg(long)]
    bandwidth: Option<String>,
    /// Show the plan and stop.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CapacityArgs {
    /// Days of history the growth rate and forecast look at.
    #[arg(long, default_value_t = 30)]
    window: u32,
    /// Also list every partition.
    #[arg(long)]
    partitions: bool,
    /// Write an HTML report with a chart of usage per tier over time to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

fn opt_bytes(b: Option<u64>) -> String {
    b.map(fmt_bytes).unwrap_or_else(|| "-".into())
}

fn pct(f: Option<f64>) -> String {
    f.map(|f| format!("{:.1}%", f * 100.0)).unwrap_or_else(|| "-".into())
}

impl Report for Plan {
    fn style(&self) -> JsonStyle {
        JsonStyle::Pretty
    }

    fn json(&self) -> impl serde::Serialize + '_ {
        self
    }

    fn human(&self, fmt: OutFormat) -> Result<()> {
        let plan = self;
        let rows = plan
            .moves
            .iter()
            .map(|m| {
                vec![
                    m.table.clone(),
                    m.partition.clone(),
                    m.path.rsplit('/').next().unwrap_or_default().to_string(),
                    m.from.clone(),
                    m.to.clone(),
                    m.bytes.to_string(),
                    m.reason.clone(),
                ]
            })
            .collect();
        print_rows(
            &["table", "partition", "file", "from", "to", "bytes", "reason"],
            rows,
            fmt,
        )?;
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        if fmt == OutFormat::Table {
            println!("{} file(s), {} to move", plan.moves.len(), fmt_bytes(plan.bytes()));
        }
        Ok(())
    }
}

impl Report for MoveReport {
    fn style(&self) -> JsonStyle {
        JsonStyle::Pretty
    }

    fn json(&self) -> impl serde::Serialize + '_ {
        self
    }

    fn human(&self, _: OutFormat) -> Result<()> {
        let r = self;
        println!(
            "moved {} file(s), {} in {} commit(s) in {:.1}s ({}/s); {} skipped (changed meanwhile); {} old cop(ies) deleted ({})",
            r.files_moved,
            fmt_bytes(r.bytes_moved),
            r.commits,
            r.seconds,
            fmt_bytes(r.bytes_per_second() as u64),
            r.files_skipped,
            r.old_copies_deleted,
            fmt_bytes(r.old_copy_bytes)
        );
        Ok(())
    }
}

async fn execute(lake: &stratalake::Session, plan: &Plan, a: &RunArgs, fmt: OutFormat) -> Result<()> {
    if a.dry_run || plan.moves.is_empty() {
        return show(fmt, plan);
    }
    let bar = output::Progress::new("moving", true);
    let mut run = lake.tiers().run(plan).progress(bar.callback());
    if let Some(c) = a.concurrency {
        run = run.concurrency(c);
    }
    if let Some(b) = &a.bandwidth {
        run = run.bandwidth(Some(parse_size(b).context("--bandwidth")?));
    }
    let r = run.await;
    bar.finish();
    show(fmt, &r?)
}

pub async fn run(cli: &Cli, cmd: &TierCmd) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    match cmd {
        TierCmd::List => {
            let tiers = lake.tiers().list().await?;
            let human = |fmt| {
                let rows = tiers
                    .iter()
                    .map(|t| {
                        let mut role = Vec::new();
                        if t.write_tier {
                            role.push("writes");
                        }
                        if t.metadata_tier {
                            role.push("metadata");
                        }
                        if t.cached {
                            role.push("cached");
                        }
                        vec![
                            t.order.to_string(),
                            t.name.clone(),
                            t.url.clone(),
                            t.files.to_string(),
                            fmt_bytes(t.used),
                            opt_bytes(t.capacity),
                            opt_bytes(t.free),
                            pct(t.fill),
                            role.join(","),
                        ]
                    })
                    .collect();
                print_rows(
                    &[
                        "order", "tier", "url", "files", "used", "capacity", "free", "fill", "role",
                    ],
                    rows,
                    fmt,
                )
            };
            show(fmt, &made(&tiers, human).with_style(JsonStyle::Pretty))?;
        }
        TierCmd::Add(a) => {
            let tier = stratalake::TierConfig {
                name: a.name.clone(),
                url: a.url.clone(),
                options: a.options.iter().map(|o| kv(o)).collect::<Result<_>>()?,
                capacity: a.capacity.clone(),
                high_watermark: a.high_watermark,
                low_watermark: a.low_watermark,
                cache: a.cache,
            };
            let url = lake.tiers().add(tier, a.before.as_deref()).await?;
            let place = match &a.before {
                Some(b) => format!("before {b}"),
                None => "the coldest".into(),
            };
            output::done(
                fmt,
                format!(
                    "tier {} added to {} ({place}) at {url}; `tier plan` shows what rules move there",
                    a.name,
                    stratalake::CONFIG_FILE
                ),
            )?;
        }
        TierCmd::Remove { name } => {
            lake.tiers().remove(name).await?;
            output::done(fmt, format!("tier {name} removed from {}", stratalake::CONFIG_FILE))?;
        }
        TierCmd::Plan => show(fmt, &lake.tiers().plan().await?)?,
        TierCmd::Run(a) => {
            let plan = lake.tiers().plan().await?;
            execute(&lake, &plan, a, fmt).await?;
        }
        TierCmd::Move {
            to,
            table,
            partition,
            run,
        } => {
            let filter = partition.iter().map(|p| kv(p)).collect::<Result<Vec<_>>>()?;
            let plan = lake.tiers().recall_plan(table, to, &filter).await?;
            execute(&lake, &plan, run, fmt).await?;
        }
        TierCmd::Status => {
            let s = lake.tiers().status().await?;
            let human = |fmt| {
                let rows = s
                    .tiers
                    .iter()
                    .zip(&s.pending)
                    .map(|(t, p)| {
                        vec![
                            t.name.clone(),
                            t.files.to_string(),
                            fmt_bytes(t.used),
                            pct(t.fill),
                            format!("{} ({})", p.files_in, fmt_bytes(p.bytes_in)),
                            format!("{} ({})", p.files_out, fmt_bytes(p.bytes_out)),
                        ]
                    })
                    .collect();
                print_rows(
                    &["tier", "files", "bytes", "fill", "pending in", "pending out"],
                    rows,
                    fmt,
                )?;
                if let Some(c) = s.cache {
                    println!(
                        "read cache: {} file(s), {} of {}; {} hit(s), {} miss(es), {} eviction(s)",
                        c.files,
                        fmt_bytes(c.bytes),
                        fmt_bytes(c.max_bytes),
                        c.hits,
                        c.misses,
                        c.evictions
                    );
                }
                for w in &s.warnings {
                    eprintln!("warning: {w}");
                }
                Ok(())
            };
            show(fmt, &made(&s, human).with_style(JsonStyle::Pretty))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn capacity(cli: &Cli, a: &CapacityArgs) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    let r = lake.tiers().capacity(a.window).await?;
    if let Some(path) = &a.html {
        std::fs::write(path, stratalake::tiering::html::render(&r))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let human = |fmt| {
        let rows = r
            .tiers
            .iter()
            .map(|t| {
                vec![
                    t.tier.clone(),
                    t.usage.files.to_string(),
                    t.usage.rows.to_string(),
                    t.usage.bytes.to_string(),
                    opt_bytes(t.capacity),
                    pct(t.fill),
                    t.growth_bytes_per_day
                        .map(|g| format!("{g:.0}"))
                        .unwrap_or_else(|| "-".into()),
                    t.full_on.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print_rows(
            &[
                "tier",
                "files",
                "rows",
                "bytes",
                "capacity",
                "fill",
                "growth_bytes_per_day",
                "full_on",
            ],
            rows,
            fmt,
        )?;
        let usage_rows = |m: &std::collections::BTreeMap<String, stratalake::tiering::capacity::Usage>| {
            m.iter()
                .map(|(k, u)| vec![k.clone(), u.files.to_string(), u.rows.to_string(), u.bytes.to_string()])
                .collect::<Vec<_>>()
        };
        print_rows(&["namespace", "files", "rows", "bytes"], usage_rows(&r.namespaces), fmt)?;
        print_rows(&["table", "files", "rows", "bytes"], usage_rows(&r.tables), fmt)?;
        let cls = r
            .classifications
            .iter()
            .map(|(k, u)| vec![k.clone(), u.files.to_string(), u.bytes.to_string()])
            .collect();
        print_rows(&["classification", "files", "column_bytes"], cls, fmt)?;
        if a.partitions {
            let rows = r
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.table.clone(),
                        p.partition.clone(),
                        p.tier.clone(),
                        p.usage.files.to_string(),
                        p.usage.rows.to_string(),
                        p.usage.bytes.to_string(),
                    ]
                })
                .collect();
            print_rows(&["table", "partition", "tier", "files", "rows", "bytes"], rows, fmt)?;
        }
        if !r.quotas.is_empty() {
            let rows = r
                .quotas
                .iter()
                .map(|q| vec![q.scope.clone(), q.used.to_string(), q.limit.to_string()])
                .collect();
            print_rows(&["quota", "used", "limit"], rows, fmt)?;
        }
        if let Some(path) = &a.html {
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    };
    show(fmt, &made(&r, human).with_style(JsonStyle::Pretty))?;
    Ok(ExitCode::SUCCESS)
}
