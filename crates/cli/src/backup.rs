//! `stratalake backup ...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use stratalake::backup::{KeepPolicy, Progress, Repository, RestoreOptions};
use stratalake::{KeySource, Lake, Session};

use crate::args::{Cli, ident, kv};
use crate::lake::{open, principal};
use crate::output::{self, Cell, JsonStyle, made, print_problems, print_rows, show};

#[derive(Args, Debug)]
pub struct RepoArgs {
    /// The backup repository: a folder, file:///abs, memory://name or s3://bucket/prefix.
    #[arg(long, env = "STRATALAKE_BACKUP_REPO")]
    repo: String,
    /// Repository store option KEY=VALUE (S3: endpoint, region, allow_http); repeatable.
    #[arg(long = "repo-option", value_name = "KEY=VALUE")]
    repo_options: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Create a backup repository keyed to this lake's master keys.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Back up the whole lake (default) or some tables; only new files are copied.
    Create {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this table; repeatable.
        #[arg(long = "table")]
        tables: Vec<String>,
        /// The whole lake with its principals, roles, grants and policies (the default).
        #[arg(long, conflicts_with = "tables")]
        all: bool,
    },
    /// List the backups of a repository.
    List {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Check every backup: manifests' authenticity and every object's presence and size; with
    /// --read-data also every byte. Exit status 3 when something is damaged.
    Verify {
        #[command(flatten)]
        repo: RepoArgs,
        /// Read every data object back and recompute its checksums.
        #[arg(long)]
        read_data: bool,
    },
    /// Restore a backup: the whole lake into a new lake (--target), or one table (--table),
    /// optionally under a new name (--into) and at an older version (--version).
    Restore {
        /// The backup id (see `backup list`); `latest` for the newest.
        backup: String,
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this table of the backup.
        #[arg(long)]
        table: Option<String>,
        /// Restore the table under this name.
        #[arg(long, requires = "table")]
        into: Option<String>,
        /// Restore this version of the table (default: the backed-up version).
        #[arg(long, requires = "table")]
        version: Option<u64>,
        /// The lake to restore into (default: --lake). A folder without a lake gets a new one,
        /// with a copy of the master keys of --key-file (default: --lake's key file) in its
        /// folder, so that it depends on nothing outside it.
        #[arg(long)]
        target: Option<String>,
        /// Master key file for a new target lake (copied into it).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Use --key-file in place instead of copying it: both lakes then share one key file
        /// (a rotation or shred in one changes the other's keys too).
        #[arg(long, requires = "key_file")]
        shared_key_file: bool,
        /// Drop target tables of the same names first.
        #[arg(long)]
        force: bool,
    },
    /// Forget backups: the ones named, or all that no --keep-* option keeps.
    Forget {
        /// Backup ids to forget.
        ids: Vec<String>,
        #[command(flatten)]
        repo: RepoArgs,
        /// Keep the newest N backups.
        #[arg(long, default_value_t = 0)]
        keep_last: usize,
        /// Keep the newest backup of each of the last N days.
        #[arg(long, default_value_t = 0)]
        keep_daily: usize,
        /// Keep the newest backup of each of the last N weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: usize,
        /// Keep the newest backup of each of the last N months.
        #[arg(long, default_value_t = 0)]
        keep_monthly: usize,
        /// Show what would be forgotten, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop tracking a repository deleted on purpose (key retirement otherwise insists on
    /// opening every repository this lake used, to keep its key slots current).
    Detach {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Remove objects no backup references (after forget, or left by a stopped backup).
    Prune {
        #[command(flatten)]
        repo: RepoArgs,
        /// Show what would be removed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl RepoArgs {
    fn url(&self) -> Result<String> {
        let r = &self.repo;
        if r.contains("://") {
            return Ok(r.clone());
        }
        Ok(std::path::absolute(Path::new(r))
            .with_context(|| format!("repository path {r}"))?
            .display()
            .to_string())
    }

    fn options(&self) -> Result<BTreeMap<String, String>> {
        self.repo_options.iter().map(|s| kv(s)).collect()
    }

    async fn open(&self, lake: &Session) -> Result<Repository> {
        let url = self.url()?;
        lake.backups()
            .open(&url, &self.options()?)
            .await
            .with_context(|| format!("cannot open backup repository {url}"))
    }
}

fn rate(bytes: u64, started: std::time::Instant) -> String {
    let s = started.elapsed().as_secs_f64().max(1e-6);
    format!("{}/s", output::size((bytes as f64 / s) as u64))
}

/// A command's JSON report with how long it took and its throughput (`bytes` moved).
fn timed_json(report: impl serde::Serialize, bytes: u64, started: std::time::Instant) -> Result<serde_json::Value> {
    let secs = started.elapsed().as_secs_f64();
    let mut v = serde_json::to_value(report)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("seconds".into(), serde_json::json!((secs * 1000.0).round() / 1000.0));
        o.insert(
            "bytes_per_second".into(),
            serde_json::json!((bytes as f64 / secs.max(1e-6)).round() as u64),
        );
    }
    Ok(v)
}

fn bar(what: &str) -> (output::Progress, impl Fn(Progress) + Send + Sync + 'static) {
    let bar = output::Progress::new(what, true);
    let cb = bar.callback();
    (bar, cb)
}

pub async fn run(cli: &Cli, cmd: &BackupCmd) -> Result<ExitCode> {
    let fmt = cli.format;
    match cmd {
        BackupCmd::Init { repo } => {
            let lake = open(cli).await?;
            let url = repo.url()?;
            let r = lake.backups().init(&url, &repo.options()?).await?;
            let doc = serde_json::json!({ "id": r.id(), "url": url });
            let human = |_| {
                println!("created backup repository {} at {url}", r.id());
                Ok(())
            };
            show(fmt, &made(doc, human).with_style(JsonStyle::Line))?;
        }
        BackupCmd::Create { repo, tables, all: _ } => {
            let lake = open(cli).await?;
            let r = repo.open(&lake).await?;
            let (bar, cb) = bar("backing up");
            let started = std::time::Instant::now();
            let mut backup = lake.backups().create(&r).progress(cb);
            if !tables.is_empty() {
                backup = backup.tables(tables.iter().cloned());
            }
            let m = backup.await;
            bar.finish();
            let m = m.context("the backup was not recorded (no manifest written); run it again")?;
            let report = serde_json::json!({ "id": m.id, "totals": m.totals });
            let doc = timed_json(report, m.totals.new_bytes, started)?;
            let human = |_| {
                println!(
                    "backup {}: {} table(s), {} file(s), {}; copied {} new file(s), {} ({}), {} log object(s)",
                    m.id,
                    m.totals.tables,
                    m.totals.files,
                    output::size(m.totals.bytes),
                    m.totals.new_files,
                    output::size(m.totals.new_bytes),
                    rate(m.totals.new_bytes, started),
                    m.totals.new_meta
                );
                Ok(())
            };
            show(fmt, &made(doc, human))?;
        }
        BackupCmd::List { repo } => {
            let lake = open(cli).await?;
            let r = repo.open(&lake).await?;
            let list = r.list().await?;
            let human = |fmt| {
                let rows = list
                    .iter()
                    .map(|b| {
                        vec![
                            Cell::from(&b.id),
                            if b.created_ms > 0 {
                                Cell::Time(b.created_ms)
                            } else {
                                Cell::Null
                            },
                            Cell::from(b.tables.join(", ")),
                            Cell::from(b.files),
                            Cell::Bytes(b.bytes),
                            Cell::Bytes(b.new_bytes),
                            Cell::from(&b.status),
                        ]
                    })
                    .collect();
                print_rows(
                    &["id", "time", "tables", "files", "bytes", "new_bytes", "status"],
                    rows,
                    fmt,
                )
            };
            show(fmt, &made(&list, human))?;
        }
        BackupCmd::Verify { repo, read_data } => {
            let lake = open(cli).await?;
            let r = repo.open(&lake).await?;
            let (bar, cb) = bar("verifying");
            let started = std::time::Instant::now();
            let report = r.verify(*read_data, &cb).await;
            bar.finish();
            let report = report?;
            let doc = timed_json(&report, report.bytes_read, started)?;
            let human = |fmt| {
                println!(
                    "checked {} backup(s), {} object(s), read {} ({})",
                    report.backups,
                    report.objects,
                    output::size(report.bytes_read),
                    rate(report.bytes_read, started)
                );
                let rows = report
                    .problems
                    .iter()
                    .map(|p| vec![p.object.clone(), p.problem.clone(), p.backups.join(", ")])
                    .collect();
                print_problems(&["object", "problem", "backups"], rows, fmt)
            };
            show(fmt, &made(doc, human))?;
            if !report.problems.is_empty() {
                eprintln!(
                    "error: {} damaged object(s); backups affected: {}",
                    report.problems.len(),
                    report.damaged_backups().into_iter().collect::<Vec<_>>().join(", ")
                );
                return Ok(ExitCode::from(3));
            }
        }
        BackupCmd::Restore {
            backup,
            repo,
            table,
            into,
            version,
            target,
            key_file,
            shared_key_file,
            force,
        } => {
            let target_lake = open_target(cli, target.as_deref(), key_file.as_deref(), *shared_key_file).await?;
            let r = repo.open(&target_lake).await?;
            let id = if backup == "latest" {
                r.list()
                    .await?
                    .into_iter()
                    .rev()
                    .find(|b| b.status == "ok")
                    .map(|b| b.id)
                    .context("the repository holds no backup")?
            } else {
                backup.clone()
            };
            let opts = RestoreOptions {
                table: table.as_deref().map(ident).transpose()?,
                rename: into.as_deref().map(ident).transpose()?,
                version: *version,
                force: *force,
                ..Default::default()
            };
            let (bar, cb) = bar("restoring");
            let started = std::time::Instant::now();
            let s = target_lake.backups().restore(&r, &id).options(opts).progress(cb).await;
            bar.finish();
            let s = s.context("nothing was published to the target lake")?;
            let doc = timed_json(&s, s.bytes, started)?;
            let human = |_| {
                for t in &s.tables {
                    println!("restored {} at version {} ({} rows)", t.table, t.version, t.rows);
                }
                println!(
                    "restored backup {}: {} file(s), {} ({})",
                    s.backup,
                    s.files,
                    output::size(s.bytes),
                    rate(s.bytes, started)
                );
                Ok(())
            };
            show(fmt, &made(doc, human))?;
        }
        BackupCmd::Forget {
            ids,
            repo,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            dry_run,
        } => {
            let lake = open(cli).await?;
            let r = repo.open(&lake).await?;
            let policy = KeepPolicy {
                last: *keep_last,
                daily: *keep_daily,
                weekly: *keep_weekly,
                monthly: *keep_monthly,
            };
            let d = r.forget(ids, &policy, *dry_run).await?;
            let human = |fmt| {
                let rows = d
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            match (e.keep, dry_run) {
                                (true, _) => "keep".into(),
                                (false, true) => "would forget".into(),
                                (false, false) => "forgotten".into(),
                            },
                            e.reasons.join(", "),
                        ]
                    })
                    .collect();
                print_rows(&["id", "action", "kept_by"], rows, fmt)
            };
            show(fmt, &made(&d, human))?;
        }
        BackupCmd::Detach { repo } => {
            let lake = open(cli).await?;
            let url = repo.url()?;
            let n = lake.backups().detach(&url).await?;
            if n == 0 {
                bail!("this lake does not track a backup repository at {url}");
            }
            let doc = serde_json::json!({ "detached": url });
            let human = |_| {
                println!("no longer tracking backup repository {url}");
                Ok(())
            };
            show(fmt, &made(doc, human).with_style(JsonStyle::Line))?;
        }
        BackupCmd::Prune { repo, dry_run } => {
            let lake = open(cli).await?;
            let r = repo.open(&lake).await?;
            let p = r.prune(*dry_run).await?;
            let human = |_| {
                println!(
                    "{} {} object(s), {}; {} object(s), {} still referenced",
                    if *dry_run { "would remove" } else { "removed" },
                    p.objects,
                    output::size(p.bytes),
                    p.kept_objects,
                    output::size(p.kept_bytes)
                );
                Ok(())
            };
            show(fmt, &made(&p, human))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lake a restore writes into: `--target` (created when it holds no lake yet, with the
/// master keys of `--key-file` or of `--lake`), else `--lake`.
async fn open_target(cli: &Cli, target: Option<&str>, key_file: Option<&Path>, shared: bool) -> Result<Session> {
    let Some(t) = target else {
        return open(cli).await;
    };
    if t.contains("://") && !t.starts_with("file://") {
        bail!(
            "a new restore target is a local folder; to restore into a lake at a URL, create it and pass it as --lake"
        );
    }
    let dir = Path::new(t.strip_prefix("file://").unwrap_or(t));
    let lake = if dir.join(stratalake::CONFIG_FILE).exists() {
        Lake::builder(dir)
            .open()
            .await
            .with_context(|| format!("cannot open the target lake {}", dir.display()))?
    } else {
        let keys = match key_file {
            Some(k) if shared => KeySource::File(k.to_path_buf()),
            Some(k) => KeySource::Copy(k.to_path_buf()),
            None => {
                let source = open(cli)
                    .await
                    .context("a new target lake needs master keys: pass --key-file (the backed-up lake's key file)")?;
                let k = &source.config().keys;
                match (k.provider.as_str(), &k.file, source.dir()) {
                    ("env", _, _) => KeySource::Env,
                    (_, Some(f), Some(d)) => KeySource::Copy(d.join(f)),
                    (_, Some(f), None) => KeySource::Copy(PathBuf::from(f)),
                    _ => bail!("cannot tell where --lake's master keys are: pass --key-file"),
                }
            }
        };
        let how = match &keys {
            KeySource::Copy(p) => format!("with a copy of the master keys of {}", p.display()),
            KeySource::File(p) => format!("sharing the key file {}", p.display()),
            KeySource::Env => "with master keys from STRATALAKE_KEY_* variables".into(),
        };
        let lake = Lake::init_for_restore(dir, keys).await?;
        eprintln!("created lake {} to restore into, {how}", dir.display());
        lake
    };
    Ok(lake.session(&principal(cli)))
}
