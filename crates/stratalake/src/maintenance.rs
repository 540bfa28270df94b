//! Table maintenance through the facade: vacuum and optimize.

use stratalake_table::TableIdent;

use crate::{Error, Result, Session};
use stratalake_table::access::Operation;

impl Session {
    /// Delete data files of `table` that no version committed within `retain` needs, and
    /// unreferenced files (left by stopped writers) older than `retain`; never a live file, and
    /// never a file a running writer has just staged. Time travel to versions older than the
    /// window may fail afterwards, and backups taken later hold only the versions still whole.
    /// A retention under `[lake] vacuum_min_retention_hours` needs `force`. Needs ADMIN on the
    /// table; audited.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1); INSERT OVERWRITE t VALUES (2)").await?;
    /// let week = std::time::Duration::from_secs(7 * 86400);
    /// assert_eq!(lake.vacuum("t", week, false, false).await?.removed_files, 0); // still retained
    /// let r = lake.vacuum("t", std::time::Duration::ZERO, true, true).await?; // dry run
    /// assert_eq!((r.removed_files, r.oldest_readable_version), (1, 2));
    /// # Ok(()) }
    /// ```
    pub async fn vacuum(
        &self,
        table: &str,
        retain: std::time::Duration,
        dry_run: bool,
        force: bool,
    ) -> Result<stratalake_table::vacuum::VacuumReport> {
        let ident = TableIdent::parse(table, crate::DEFAULT_NAMESPACE)?;
        let r = async {
            self.subject()
                .await?
                .check(&Operation::AdministerTable(&ident))?;
            let min = std::time::Duration::from_secs(self.lake.config.lake.vacuum_min_retention_hours * 3600);
            if retain < min && !force {
                return Err(Error::Config {
                    path: "[lake] vacuum_min_retention_hours".into(),
                    reason: format!(
                        "a retention of {}s is shorter than the minimum {}h: readers and time travel within it would lose files; pass --force to vacuum anyway",
                        retain.as_secs(),
                        self.lake.config.lake.vacuum_min_retention_hours
                    ),
                });
            }
            let t = self.lake.catalog.table(&ident).await?;
            let now = self.lake.now_ms();
            // Not while the tier mover runs: it may be bringing a file back to a tier where
            // vacuum sees only an old copy.
            let lock = stratalake_tiering::mover::lock(self.lake.catalog.context(), "vacuum").await?;
            let r = stratalake_table::vacuum::vacuum(&t, retain.as_millis() as i64, now, dry_run).await;
            let r = lock.release_after(r).await?;
            // Deleted files leave the read cache too.
            if let (Some(cache), false) = (&self.lake.cache, dry_run) {
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
        self.record(
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

    /// Compact `table`'s small files per partition (and tier) into files of about
    /// `opts.target_size`, optionally sorted by columns, in one `OPTIMIZE` commit: the same rows
    /// under fresh data keys. Racing writers that remove the same files make it start again (at
    /// most three times), so nothing is lost or resurrected. Needs ADMIN on the table; audited.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT)").await?;
    /// for i in 0..5 {
    ///     lake.sql(&format!("INSERT INTO t VALUES ({i})")).await?;
    /// }
    /// let opts = stratalake::table::optimize::OptimizeOptions {
    ///     target_size: 128 << 20,
    ///     sort_by: vec![("x".into(), true)],
    ///     dry_run: false,
    /// };
    /// let r = lake.optimize("t", &opts, &|_, _| {}).await?;
    /// assert_eq!((r.files_removed, r.files_added, r.rows), (5, 1, 5));
    /// # Ok(()) }
    /// ```
    pub async fn optimize(
        &self,
        table: &str,
        opts: &stratalake_table::optimize::OptimizeOptions,
        on_file: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<stratalake_table::optimize::OptimizeReport> {
        let ident = TableIdent::parse(table, crate::DEFAULT_NAMESPACE)?;
        let r = async {
            self.subject().await?.check(&Operation::AdministerTable(&ident))?;
            let t = self.lake.catalog.table(&ident).await?;
            Ok(stratalake_table::optimize::optimize(&t, opts, &self.principal, on_file).await?)
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
        self.record(
            "optimize",
            format!("OPTIMIZE {ident}{sort}{}", if opts.dry_run { " DRY RUN" } else { "" }),
            vec![ident.to_string()],
            r.as_ref().ok().map(|r| r.rows),
            &r,
        )
        .await?;
        r
    }

    /// Default optimize options: the lake's target file size, no sort.
    pub fn optimize_options(&self) -> stratalake_table::optimize::OptimizeOptions {
        stratalake_table::optimize::OptimizeOptions {
            target_size: self.lake.config.lake.target_file_size_mib.max(1) << 20,
            sort_by: Vec::new(),
            dry_run: false,
        }
    }
}
