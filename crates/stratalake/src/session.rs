//! A lake seen by one principal: every operation on data, the catalog, tiers, backups and keys
//! goes through a [`Session`] and is checked against that principal's grants.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use stratalake_table::access::Operation;
use stratalake_table::ingest::{IngestOptions, IngestReport};
use stratalake_table::progress::Progress;
use stratalake_table::quality::OnError;
use stratalake_table::verify::VerifyReport;

use crate::ops::{OnProgress, into_future, quiet};
use crate::{
    AsOf, ColumnDef, DEFAULT_NAMESPACE, Error, Format, Lake, Output, Result, Snapshot, Table, TableCounts, TableIdent,
    TableOverview, TableSchema, WriteMode,
};

/// A lake acting as one principal ([`Lake::session`]). Cheap to clone; sessions of different
/// principals share the lake's catalog, caches and query runtime.
#[derive(Debug, Clone)]
pub struct Session {
    pub(crate) lake: Lake,
    pub(crate) principal: String,
}

/// A session reads everything a [`Lake`] offers without a principal (its configuration, query
/// runtime, clock) and opens sessions of other principals.
impl std::ops::Deref for Session {
    type Target = Lake;
    fn deref(&self) -> &Lake {
        &self.lake
    }
}

impl Session {
    /// The lake this session acts on.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The principal this session acts as.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The SQL engine of this session's principal, on the lake's shared query runtime: for
    /// cancellation, timeouts, streaming results and time travel
    /// ([`SqlSession`](stratalake_query::SqlSession)).
    pub fn sql_session(&self) -> stratalake_query::SqlSession {
        stratalake_query::SqlSession::new(self.lake.catalog.clone(), self.principal.clone())
            .with_default_namespace(DEFAULT_NAMESPACE)
            .with_runtime(self.lake.runtime.clone())
    }

    /// Run SQL (one or more statements) and return each statement's outcome.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        Ok(self.sql_session().execute(sql).await?)
    }

    /// Plan one query as a DataFusion `DataFrame` (row filters, masks and clearances are inside
    /// its scans), to collect or stream.
    pub async fn query(&self, sql: &str) -> Result<datafusion::dataframe::DataFrame> {
        Ok(self.sql_session().sql(sql).await?)
    }

    /// Namespaces.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.lake.catalog.namespaces().await?)
    }

    /// Create a namespace.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.create_namespace("health").await?;
    /// assert!(lake.create_namespace("health").await.is_err());
    /// assert!(lake.create_namespace("../x").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        self.subject().await?.check(&Operation::AdministerLake)?;
        Ok(self.lake.catalog.create_namespace(name, false, &self.principal).await?)
    }

    /// Tables of a namespace that this handle's principal holds a privilege on (as `SHOW
    /// TABLES` lists them; [`Subject::table_sight`](stratalake_table::access::Subject::table_sight)).
    pub async fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        let subject = self.subject().await?;
        Ok(self
            .lake
            .catalog
            .tables(namespace)
            .await?
            .into_iter()
            .filter(|t| subject.table_sight(namespace, t).known)
            .collect())
    }

    /// What this handle's principal may see of a table: its columns with what reading each gives
    /// the principal, the row filters that apply to it, and its file, row and byte counts when the
    /// principal may see them — as of `as_of`, or now. Refused without any privilege on the table.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)").await?;
    /// let o = lake.table_overview("t", None).await?;
    /// assert_eq!((o.version, o.counts.map(|c| c.rows)), (1, Some(2)));
    /// # Ok(()) }
    /// ```
    pub async fn table_overview(&self, name: &str, as_of: Option<AsOf>) -> Result<TableOverview> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        let sight = subject.table_sight(&ident.namespace, &ident.name);
        if !sight.known {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("holds no privilege on table {ident}"),
            }
            .into());
        }
        let t = self.lake.catalog.table(&ident).await?;
        let s = match as_of {
            None => t.snapshot().await?,
            Some(AsOf::Version(v)) => t.snapshot_at(v).await?,
            Some(AsOf::Timestamp(ts)) => t.snapshot_as_of(ts).await?,
        };
        let key = ident.to_string();
        let columns = s
            .metadata
            .schema
            .columns
            .iter()
            .map(|c| (c.clone(), subject.column_read(&key, &c.name, &c.classification)))
            .collect();
        Ok(TableOverview {
            counts: sight.counts.then(|| TableCounts {
                files: s.files.len() as u64,
                rows: s.rows(),
                bytes: s.bytes(),
            }),
            row_filters: subject.row_filter_names.get(&key).cloned().unwrap_or_default(),
            version: s.version,
            columns,
            sight,
            metadata: s.metadata,
            ident,
        })
    }

    /// The commit history of a table, newest first (at most `limit` entries): who committed
    /// what, and how many rows each commit changed. Table or lake administrators only.
    pub async fn history(
        &self,
        name: &str,
        limit: Option<usize>,
    ) -> Result<Vec<stratalake_table::table::HistoryEntry>> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        if !subject.table_sight(&ident.namespace, &ident.name).history {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("has no ADMIN privilege on table {ident} (its history shows every commit)"),
            }
            .into());
        }
        Ok(self.lake.catalog.table(&ident).await?.history(limit).await?)
    }

    /// Create a table (`name` or `namespace.name`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> stratalake::Result<()> {
    /// use stratalake::{ColumnDef, Lake, PartitionField, TableSchema};
    /// use stratalake::arrow::datatypes::{DataType, TimeUnit};
    /// let lake = Lake::in_memory().await?.session("admin");
    /// let schema = TableSchema {
    ///     columns: vec![
    ///         ColumnDef::new("case_id", DataType::Int64, "public").not_null(),
    ///         ColumnDef::new("opened", DataType::Timestamp(TimeUnit::Microsecond, None), "internal"),
    ///         ColumnDef::new("citizen", DataType::Utf8, "secret"),
    ///     ],
    ///     partition_by: vec![PartitionField::parse("month(opened)")?],
    /// };
    /// let t = lake.create_table("cases", schema).await?;
    /// assert_eq!(t.snapshot().await?.version, 0);
    /// # Ok(()) }
    /// ```
    pub async fn create_table(&self, name: &str, schema: TableSchema) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        self.subject()
            .await?
            .check(&Operation::AdministerNamespace(&ident.namespace))?;
        Ok(self
            .lake
            .catalog
            .create_table(&ident, schema, Default::default(), &self.principal)
            .await?)
    }

    /// A table handle by name (`name` or `namespace.name`), for its administrators: a `Table`
    /// reads and writes without further checks, so this handle's principal must hold ADMIN on the
    /// table (or its namespace, or the lake). Analysts read and write through
    /// [`Lake::session`](crate::Lake::session); [`Session::table_overview`] describes a table to anyone who may know it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let t = lake.table("default.t").await?;
    /// assert_eq!(t.snapshot().await?.rows(), 1);
    /// assert_eq!(t.history(None).await?.len(), 2);
    /// assert!(lake.table("nope").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn table(&self, name: &str) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        let subject = self.subject().await?;
        if !subject.may(&Operation::AdministerTable(&ident)) {
            return Err(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!(
                    "has no ADMIN privilege on table {ident} (a table handle bypasses grants; read and write through a session)"
                ),
            }
            .into());
        }
        Ok(self.lake.catalog.table(&ident).await?)
    }

    /// A table handle without any permission check, for a service that enforces access itself
    /// (it holds the lake's keys anyway). Whatever it does is recorded under the principal it
    /// names, unchecked: prefer [`Session::table`] or a session.
    pub async fn table_unchecked(&self, name: &str) -> Result<Table> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        Ok(self.lake.catalog.table(&ident).await?)
    }

    /// Drop a table and delete its files.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let deleted = lake.drop_table("t").await?;
    /// assert!(deleted >= 3); // two log files and one data file
    /// assert!(lake.tables("default").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn drop_table(&self, name: &str) -> Result<usize> {
        let ident = TableIdent::parse(name, DEFAULT_NAMESPACE)?;
        self.subject().await?.check(&Operation::AdministerTable(&ident))?;
        Ok(self.lake.catalog.drop_table(&ident, &self.principal).await?)
    }

    /// Run SQL (one or more statements) as this session's principal and return the last
    /// statement's rows.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// let rows = lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); SELECT sum(x) FROM t").await?;
    /// assert_eq!(rows[0].num_rows(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let out = self.sql_session().execute(sql).await?;
        Ok(match out.into_iter().last() {
            Some(Output::Rows { batches, .. }) => batches,
            _ => Vec::new(),
        })
    }

    /// Ingest files (CSV, TSV, JSON lines, Parquet; chosen by extension unless
    /// [`Ingest::format`] says) into `table` in one commit. Rows are converted to the table's
    /// types as `CAST` does; the table's constraints are checked on every row. Needs INSERT on
    /// the table (and the right to overwrite for [`WriteMode::Overwrite`]); audited.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("people.csv");
    /// std::fs::write(&csv, "id,name\n1,Ada\n2,Grace\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE people (id INT NOT NULL, name VARCHAR)").await?;
    /// let r = lake.ingest("people", [&csv]).progress(|p| eprintln!("{p}")).await?;
    /// assert_eq!(r.rows, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// What rows that break a constraint do is [`Ingest::on_error`]: with [`OnError::Reject`]
    /// (the default) the first one rejects the whole ingest, naming file, line and rule; with
    /// [`OnError::Quarantine`] the good rows are committed and the bad ones appended, with the
    /// rule they broke (`quality_rule`) and the version they belong to (`quality_version`), to
    /// the table `<table>_quarantine` (created on first use, same classifications).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::table::quality::OnError;
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("people.csv");
    /// std::fs::write(&csv, "id,age\n1,34\n2,-5\n3,51\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE people (id INT NOT NULL, age INT); \
    ///           ALTER TABLE people ADD CONSTRAINT sane_age RANGE age BETWEEN 0 AND 150").await?;
    /// let r = lake.ingest("people", [&csv]).on_error(OnError::Quarantine).await?;
    /// assert_eq!((r.rows, r.quarantine_table.as_deref()), (2, Some("default.people_quarantine")));
    /// # Ok(()) }
    /// ```
    ///
    /// Reading options ([`Ingest::options`]): CSV delimiter, quote, header, null text, date and
    /// timestamp formats ([`stratalake_table::csv::CsvOptions`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// use stratalake::table::ingest::IngestOptions;
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("fees.csv");
    /// std::fs::write(&csv, "id;fee;paid\n1;1,5;NA\n2;NA;24.12.2025\n").unwrap();
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE fees (id INT NOT NULL, fee VARCHAR, paid DATE)").await?;
    /// let mut opts = IngestOptions::default();
    /// opts.csv.null = Some("NA".into());
    /// opts.csv.date_format = Some("%d.%m.%Y".into());
    /// let r = lake.ingest("fees", [&csv]).options(opts).await?;
    /// assert_eq!(r.rows, 2); // the `;` delimiter was detected
    /// let rows = lake.sql("SELECT count(fee) AS f, count(paid) AS p FROM fees").await?;
    /// assert!(stratalake::arrow::util::pretty::pretty_format_batches(&rows)?.to_string().contains("| 1 | 1 |"));
    /// # Ok(()) }
    /// ```
    pub fn ingest<'a, P: AsRef<Path>>(&'a self, table: &'a str, files: impl IntoIterator<Item = P>) -> Ingest<'a> {
        Ingest {
            session: self,
            table,
            files: files.into_iter().map(|p| p.as_ref().to_path_buf()).collect(),
            options: IngestOptions::default(),
            mode: WriteMode::Append,
            on_error: OnError::Reject,
            progress: quiet(),
        }
    }

    /// The quarantine table of `t`: `<table>_quarantine` in the same namespace.
    fn quarantine_ident(t: &Table) -> TableIdent {
        TableIdent::new(&t.ident().namespace, format!("{}_quarantine", t.ident().name))
    }

    /// What the quarantine table of a table with schema `snap` looks like: every column nullable
    /// and classified as in the table, plus `quality_rule` and `quality_version`.
    fn quarantine_schema(&self, snap: &Snapshot) -> TableSchema {
        let lowest = self.lake.config.classifications.levels[0].clone();
        let mut columns: Vec<ColumnDef> = snap
            .metadata
            .schema
            .columns
            .iter()
            .map(|c| ColumnDef::new(&c.name, c.data_type.clone(), &c.classification))
            .collect();
        columns.push(ColumnDef::new(
            "quality_rule",
            arrow::datatypes::DataType::Utf8,
            &lowest,
        ));
        columns.push(ColumnDef::new(
            "quality_version",
            arrow::datatypes::DataType::Int64,
            &lowest,
        ));
        TableSchema {
            columns,
            partition_by: Vec::new(),
        }
    }

    /// Before a quarantining ingest: the quarantine table must exist with the expected columns
    /// and at least the table's row filters and masks (or the caller must be able to create it,
    /// which copies them), and the caller needs INSERT on it.
    async fn check_quarantine(
        &self,
        subject: &stratalake_table::access::Subject,
        t: &Table,
        snap: &Snapshot,
    ) -> Result<()> {
        let q = Self::quarantine_ident(t);
        match self.lake.catalog.table(&q).await {
            Err(stratalake_table::Error::TableNotFound(_)) => {
                if !subject.may(&Operation::AdministerNamespace(&q.namespace)) {
                    return Err(stratalake_table::Error::PermissionDenied {
                        principal: subject.principal.clone(),
                        reason: format!(
                            "may not create the quarantine table {q}: an administrator of namespace {} must run the first quarantining ingest (or create it)",
                            q.namespace
                        ),
                    }
                    .into());
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
            Ok(qt) => {
                subject.check(&Operation::WriteRows(&q))?;
                let have = qt.snapshot().await?.metadata.schema;
                let want = self.quarantine_schema(snap);
                let same = have.columns.len() == want.columns.len()
                    && have.columns.iter().zip(&want.columns).all(|(h, w)| {
                        h.name == w.name && h.data_type == w.data_type && h.classification == w.classification
                    });
                if !same {
                    return Err(Error::Config {
                        path: q.to_string(),
                        reason: format!(
                            "the quarantine table does not match {} (columns, types and classifications must be the table's, plus quality_rule and quality_version); rename or drop it",
                            t.ident()
                        ),
                    });
                }
                let state = self.lake.catalog.state().await?;
                let (src, dst) = (t.ident().to_string(), q.to_string());
                let filters_ok = state.access.row_filters.get(&src).is_none_or(|fs| {
                    fs.iter()
                        .all(|(n, f)| state.access.row_filters.get(&dst).and_then(|d| d.get(n)) == Some(f))
                });
                let masks_ok = state.access.masks.get(&src).is_none_or(|ms| {
                    ms.iter().all(|(c, g)| {
                        state
                            .access
                            .masks
                            .get(&dst)
                            .and_then(|d| d.get(c))
                            .is_some_and(|d| g.iter().all(|(k, m)| d.get(k) == Some(m)))
                    })
                });
                if !filters_ok || !masks_ok {
                    return Err(Error::Config {
                        path: q.to_string(),
                        reason: format!(
                            "the quarantine table lacks row filters or masks that {} has: its readers would see rows and values the table hides; set the same policies on it",
                            t.ident()
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Append an ingest's bad rows to `<table>_quarantine`, creating it (with the table's row
    /// filters and masks) on first use.
    async fn quarantine(&self, t: &Table, snap: &Snapshot, report: &IngestReport) -> Result<String> {
        use arrow::array::{ArrayRef, Int64Array};
        let ident = Self::quarantine_ident(t);
        let qt = match self.lake.catalog.table(&ident).await {
            Ok(q) => q,
            Err(stratalake_table::Error::TableNotFound(_)) => {
                let q = self
                    .lake
                    .catalog
                    .create_table(
                        &ident,
                        self.quarantine_schema(snap),
                        Default::default(),
                        &self.principal,
                    )
                    .await?;
                // The table's policies apply to its quarantined rows too.
                use stratalake_table::access::AccessAction;
                let state = self.lake.catalog.state().await?;
                let (src, dst) = (t.ident().to_string(), ident.to_string());
                let mut actions = Vec::new();
                for (name, filter) in state.access.row_filters.get(&src).into_iter().flatten() {
                    actions.push(AccessAction::SetRowFilter {
                        table: dst.clone(),
                        name: name.clone(),
                        filter: filter.clone(),
                    });
                }
                for (column, by) in state.access.masks.get(&src).into_iter().flatten() {
                    for (grantee, mask) in by {
                        actions.push(AccessAction::SetMask {
                            table: dst.clone(),
                            column: column.clone(),
                            grantee: grantee.clone(),
                            mask: mask.clone(),
                        });
                    }
                }
                if !actions.is_empty() {
                    self.lake.catalog.change_access(actions, &self.principal).await?;
                }
                q
            }
            Err(e) => return Err(e.into()),
        };
        let qsnap = qt.snapshot().await?;
        let arrow = qsnap.metadata.schema.arrow_schema();
        let batches = report
            .quarantine
            .iter()
            .map(|b| {
                // by name: the quarantine table's columns are the table's plus the two of its own
                let mut cols: Vec<ArrayRef> = Vec::with_capacity(arrow.fields().len());
                for f in arrow.fields() {
                    cols.push(match f.name().as_str() {
                        "quality_version" => Arc::new(Int64Array::from(vec![report.version as i64; b.num_rows()])),
                        name => b.column_by_name(name).cloned().ok_or_else(|| Error::Config {
                            path: ident.to_string(),
                            reason: format!("quarantined rows have no column {name:?}"),
                        })?,
                    });
                }
                Ok(RecordBatch::try_new(arrow.clone(), cols)?)
            })
            .collect::<Result<Vec<_>>>()?;
        qt.append(&batches, &self.principal)
            .await
            .map_err(|e| Error::PartlyCommitted {
                committed: format!(
                    "the good rows were committed as version {} of {}",
                    report.version,
                    t.ident()
                ),
                failed: format!(
                    "the {} quarantined row(s) could not be written to {ident}: {e}",
                    report.quarantine.iter().map(|b| b.num_rows()).sum::<usize>()
                ),
            })?;
        Ok(ident.to_string())
    }

    /// Verify every table (or those named with [`Verify::tables`]): the whole log, and every
    /// live file's checksum, decryption and row count. Problems are listed in the report, not
    /// returned as errors. Lake administrators only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread")] async fn main() -> stratalake::Result<()> {
    /// let lake = stratalake::Lake::in_memory().await?.session("admin");
    /// lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").await?;
    /// let report = lake.verify().await?;
    /// assert!(report.problems.is_empty());
    /// assert_eq!((report.files, report.rows), (1, 1));
    /// assert_eq!(lake.verify().tables(["t"]).await?.tables, 1);
    /// # Ok(()) }
    /// ```
    pub fn verify(&self) -> Verify<'_> {
        Verify {
            session: self,
            tables: Vec::new(),
            progress: quiet(),
        }
    }
}

/// An ingest of files into one table ([`Session::ingest`]); await it to run it.
#[must_use = "an ingest does nothing until awaited"]
pub struct Ingest<'a> {
    session: &'a Session,
    table: &'a str,
    files: Vec<PathBuf>,
    options: IngestOptions,
    mode: WriteMode,
    on_error: OnError,
    progress: OnProgress<'a>,
}

impl<'a> Ingest<'a> {
    /// Read every file as `format` instead of choosing by extension.
    pub fn format(mut self, format: Format) -> Self {
        self.options.format = Some(format);
        self
    }

    /// Append (the default) or overwrite.
    pub fn mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// What rows that break the table's constraints do (default [`OnError::Reject`]).
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Reading options (format, CSV dialect, null text, date formats).
    pub fn options(mut self, options: IngestOptions) -> Self {
        self.options = options;
        self
    }

    /// Report progress after every batch read (operation `ingest`: input bytes and rows).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    async fn run(self) -> Result<IngestReport> {
        let (table, mode, on_error, options) = (self.table, self.mode, self.on_error, &self.options);
        let files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        let files = &files[..];
        let statement = format!(
            "INGEST {} INTO {table} ({}{})",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            mode.operation(),
            if on_error == OnError::Quarantine {
                ", ON ERROR QUARANTINE"
            } else {
                ""
            }
        );
        let r: Result<IngestReport> = async {
            let t = self.session.table_unchecked(table).await?;
            let subject = self.session.subject().await?;
            subject.check(&Operation::WriteRows(t.ident()))?;
            let snap = t.snapshot().await?;
            stratalake_table::quality::check_write_rights(&subject, t.ident(), &snap, mode)?;
            if on_error == OnError::Quarantine {
                self.session.check_quarantine(&subject, &t, &snap).await?;
            }
            let validator =
                stratalake_query::quality::validator(&t, &snap, on_error, mode != WriteMode::Overwrite).await?;
            let mut report = stratalake_table::ingest::ingest_files(
                &t,
                &snap,
                files,
                options,
                mode,
                &self.session.principal,
                &self.progress,
                validator,
            )
            .await?;
            if !report.quarantine.is_empty() {
                report.quarantine_table = Some(self.session.quarantine(&t, &snap, &report).await?);
            }
            Ok(report)
        }
        .await;
        let tables = TableIdent::parse(table, DEFAULT_NAMESPACE)
            .map(|i| vec![i.to_string()])
            .unwrap_or_default();
        let rows = r.as_ref().ok().map(|r| r.rows);
        self.session.record("ingest", statement, tables, rows, &r).await?;
        r
    }
}

impl std::fmt::Debug for Ingest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("table", &self.table)
            .field("files", &self.files)
            .field("options", &self.options)
            .field("mode", &self.mode)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

into_future!(Ingest => IngestReport);

/// A check of tables and their files ([`Session::verify`]); await it to run it.
#[must_use = "a verify does nothing until awaited"]
pub struct Verify<'a> {
    session: &'a Session,
    tables: Vec<String>,
    progress: OnProgress<'a>,
}

impl<'a> Verify<'a> {
    /// Only these tables (default: every table).
    pub fn tables<S: Into<String>>(mut self, tables: impl IntoIterator<Item = S>) -> Self {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    /// Report progress over each table's files (operation `verify`).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'a) -> Self {
        self.progress = Box::new(f);
        self
    }

    async fn run(self) -> Result<VerifyReport> {
        self.session.subject().await?.check(&Operation::AdministerLake)?;
        let mut report = VerifyReport::default();
        let state = self.session.lake.catalog.state().await?;
        // Shredded levels cannot be decrypted any more: every other column is checked.
        let access =
            stratalake_table::Access::Levels(state.access.readable_levels(&self.session.lake.config.classifications));
        let idents: Vec<TableIdent> = if self.tables.is_empty() {
            state
                .namespaces
                .iter()
                .flat_map(|(ns, ts)| ts.keys().map(move |t| TableIdent::new(ns, t)))
                .collect()
        } else {
            self.tables
                .iter()
                .map(|t| TableIdent::parse(t, DEFAULT_NAMESPACE))
                .collect::<Result<_, _>>()?
        };
        for ident in idents {
            let t = self.session.lake.catalog.table(&ident).await?;
            stratalake_table::verify::verify_table(&t, &mut report, &access, &self.progress).await?;
        }
        Ok(report)
    }
}

impl std::fmt::Debug for Verify<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

into_future!(Verify => VerifyReport);
