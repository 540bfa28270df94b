//! Table maintenance through the facade: vacuum and optimize, as builders.

use std::time::Duration;

use stratalake_table::TableIdent;
use stratalake_table::access::Operation;
use stratalake_table::optimize::{OptimizeOptions, OptimizeReport};
use stratalake_table::progress::Progress;
use stratalake_table::vacuum::VacuumReport;

use crate::ops::{OnProgress, into_future, quiet};
use crate::{Error, Result, Session};

impl Session {
    /// Delete data files of `table` that no version committed within the retention window
    /// needs, and unreferenced files (left by stopped writers) older than it; never a live file,
    /// and never a file a running writer has just staged. Time travel to versions older than
    /// the window may fail afterwards, and backups taken later hold only the versions still
    /// whole. The window defaults to `[lake] vacuum_min_retention_hours`; a shorter one needs
    /// [`Vacuum::force`]. Needs ADMIN on the table; audited.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1); INSERT OVERWRITE t VALUES (2)").await?;
    /// assert_eq!(lake.vacuum("t").await?.removed_files, 0); // still within the window
    /// let r = lake.vacuum("t").retain(std::time::Duration::ZERO).force(true).dry_run(true).await?;
    /// assert_eq!((r.removed_files, r.oldest_readable_version), (1, 2));
    /// // a window under the minimum is refused without force
    /// assert!(lake.vacuum("t").retain(std::time::Duration::ZERO).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn vacuum<'a>(&'a self, table: &'a str) -> Vacuum<'a> {
        Vacuum {
            session: self,
            table,
            retain: Duration::from_secs(self.lake.config.lake.vacuum_min_retention_hours * 3600),
            dry_run: false,
            force: false,
        }
    }

    /// Compact `table`'s small files per partition (and tier) into files of about the lake's
    /// target file size (`[lake] target_file_size_mib`), optionally sorted by columns, in one
    /// `OPTIMIZE` commit: the same rows under fresh data keys. Racing writers that remove the
    /// same files make it start again (at most three times), so nothing is lost or
    /// resurrected. Needs ADMIN on the table; audited.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT)").await?;
    /// for i in 0..5 {
    ///     lake.sql(&format!("INSERT INTO t VALUES ({i})")).await?;
    /// }
    /// let r = lake.optimize("t").sort_by("x", true).progress(|p| println!("{p}")).await?;
    /// assert_eq!((r.files_removed, r.files_added, r.rows), (5, 1, 5));
    /// # Ok(()) }
    /// ```
    pub fn optimize<'a>(&'a self, table: &'a str) -> Optimize<'a> {
        Optimize {
            session: self,
            table,
            options: OptimizeOptions {
                target_size: self.lake.config.lake.target_file_size_mib.max(1) << 20,
                sort_by: Vec::new(),
                dry_run: false,
            },
            progress: quiet(),
        }
    }
}

/// A vacuum of one table ([`Session::vacuum`]); await it to run it.
#[derive(Debug)]
#[must_use = "a vacuum does nothing until awaited"]
pub struct Vacuum<'a> {
    session: &'a Session,
    table: &'a str,
    retain: Duration,
    dry_run: bool,
    force: bool,
}

impl<'a> Vacuum<'a> {
    /// Keep what versions committed within `retain` need (default: the lake's minimum).
    pub fn retain(mut self, retain: Duration) -> Self {
        self.retain = retain;
        self
    }

    /// Only report what would be deleted.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Allow a window shorter than `[lake] vacuum_min_retention_hours`. Files a running writer
    /// has just staged are kept all the same.
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    async fn run(self) -> Result<VacuumReport> {
        let (retain, dry_run, force) = (self.retain, self.dry_run, self.force);
        let ident = TableIdent::parse(self.table, crate::DEFAULT_NAMESPACE)?;
        let r = async {
            self.session.subject()
                .await?
                .check(&Operation::AdministerTable(&ident))?;
            let min = std::time::Duration::from_secs(self.session.lake.config.lake.vacuum_min_retention_hours * 3600);
            if retain < min && !force {
                return Err(Error::Config {
                    path: "[lake] vacuum_min_retention_hours".into(),
                    reason: format!(
                        "a retention of {}s is shorter than the minimum {}h: readers and time travel within it would lose files; pass --force to vacuum anyway",
                        retain.as_secs(),
                        self.session.lake.config.lake.vacuum_min_retention_hours
                    ),
                });
            }
            let t = self.session.lake.catalog.table(&ident).await?;
            let now = self.session.lake.now_ms();
            // Not while the tier mover runs: it may be bringing a file back to a tier where
            // vacuum sees only an old copy.
            let lock = stratalake_tiering::mover::lock(self.session.lake.catalog.context(), "vacuum").await?;
            let r = stratalake_table::vacuum::vacuum(&t, retain.as_millis() as i64, now, dry_run).await;
            let r = lock.release_after(r).await?;
            // Deleted files leave the read cache too.
            if let (Some(cache), false) = (&self.session.lake.cache, dry_run) {
                for tp in &r.paths {
                    if let Some((tier, path)) = tp.split_once(':')
                        && let Ok(store) = t.context().tiers.get(tier)
                    {
                        cache.evict_object(tier, &store.path(&format!("{}/{path}", ident.root())));
                    }
                }
            }
            Ok(r)
        }
        .await;
        let rows = r.as_ref().ok().map(|r| r.paths.len() as u64);
        self.session
            .record(
                "vacuum",
                format!(
                    "VACUUM {ident} RETAIN {}s{}",
                    retain.as_secs(),
                    if dry_run { " DRY RUN" } else { "" }
                ),
                vec![ident.to_string()],
                rows,
                &r,
            )
            .await?;
        r
    }
}

into_future!(Vacuum => VacuumReport);

/// A compaction of one table ([`Session::optimize`]); await it to run it.
#[must_use = "an optimize does nothing until awaited"]
pub struct Optimize<'a> {
    session: &'a Session,
    table: &'a str,
    options: OptimizeOptions,
    progress: OnProgress<'a>,
}

impl<'a> Optimize<'a> {
    /// Aim for files of about `bytes` (files at 3/4 of it or more are left alone unless
    /// sorting).
    pub fn target_size(mut self, bytes: u64) -> Self {
        self.options.target_size = bytes.max(1);
        self
    }

    /// Sort each compacted file by `column` (after the columns given before); with a sort,
    /// every file of a partition is rewritten.
    pub fn sort_by(mut self, column: impl Into<String>, descending: bool) -> Self {
        self.options.sort_by.push((column.into(), descending));
        self
    }

    /// Only report what would be compacted.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.options.dry_run = yes;
        self
    }

    /// All options at once (target size, sort columns, dry run).
    pub fn options(mut self, options: OptimizeOptions) -> Self {
        self.options = options;
        self
    }

    /// Report progress over the input files (operation `optimize`).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    async fn run(self) -> Result<OptimizeReport> {
        let opts = &self.options;
        let ident = TableIdent::parse(self.table, crate::DEFAULT_NAMESPACE)?;
        let r = async {
            self.session
                .subject()
                .await?
                .check(&Operation::AdministerTable(&ident))?;
            let t = self.session.lake.catalog.table(&ident).await?;
            Ok(stratalake_table::optimize::optimize(&t, opts, &self.session.principal, &self.progress).await?)
        }
        .await;
        let sort = if opts.sort_by.is_empty() {
            String::new()
        } else {
            format!(
                " SORT BY {}",
                opts.sort_by
                    .iter()
                    .map(|(c, d)| format!("{c}{}", if *d { " DESC" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.session
            .record(
                "optimize",
                format!("OPTIMIZE {ident}{sort}{}", if opts.dry_run { " DRY RUN" } else { "" }),
                vec![ident.to_string()],
                r.as_ref().ok().map(|r| r.rows),
                &r,
            )
            .await?;
        r
    }
}

impl std::fmt::Debug for Optimize<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimize")
            .field("table", &self.table)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

into_future!(Optimize => OptimizeReport);
