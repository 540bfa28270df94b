//! Running SQL against the lake as one principal.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};
use stratalake_table::access::{Privilege, Subject};
use stratalake_table::catalog::{Catalog, CatalogState};
use stratalake_table::{Access, ColumnDef, TableIdent, TableSchema};

use crate::catalog::{AsOf, Ctx, LakeCatalogProvider};
use crate::ddl::{self, Ddl};
use crate::quality::AlterTable;
use crate::runtime::QueryRuntime;
use crate::{Error, Result};
use stratalake_table::access::Operation;

/// What a statement touched, for its audit record: tables, and the policies applied to them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    tables: Arc<std::sync::Mutex<Vec<String>>>,
    pub(crate) policies: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Touched {
    /// The tables.
    pub(crate) fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, Vec<String>>> {
        self.tables.lock()
    }
}

/// Run a future that executes a plan, turning a panic anywhere inside it (a bug in a reader,
/// DataFusion, or our own operators) into an error of this statement instead of a crash of the
/// process. The panic's message goes to the log, not to the session: it may quote a value.
pub async fn guarded<F: std::future::Future>(f: F) -> Result<F::Output> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(v) => Ok(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(panic = %msg, "a statement panicked; it failed, the process goes on");
            Err(Error::Table(stratalake_table::Error::Internal(
                "the statement stopped on an unexpected failure inside the engine (a panic; details in the log); a write it was making was not committed, but a statement of several commits may have made some: check the table's history".into(),
            )))
        }
    }
}

/// The first word of a statement, upper-cased (after leading comments and parentheses).
fn tokens_first_word(text: &str) -> String {
    let mut t = text.trim_start();
    loop {
        if let Some(rest) = t.strip_prefix("--") {
            t = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = t.strip_prefix("/*") {
            t = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = t.strip_prefix('(') {
            t = rest.trim_start();
        } else {
            break;
        }
    }
    t.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Whether a statement starting with `word` only reads.
fn is_read_only(word: &str) -> bool {
    matches!(
        word,
        "SELECT" | "WITH" | "VALUES" | "EXPLAIN" | "SHOW" | "DESCRIBE" | "TABLE"
    )
}

/// Whether `sql` is one query that only reads (`SELECT`, `WITH`, `VALUES`, `TABLE`): what a client
/// may export.
pub fn is_query(sql: &str) -> bool {
    matches!(split_statements(sql).map(|s| s.len()), Ok(1))
        && matches!(tokens_first_word(sql).as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
}

/// Name of the DataFusion catalog the lake is registered as.
pub const CATALOG_NAME: &str = "lake";
const ASOF_SCHEMA: &str = "__asof";
/// Schema of the lake's own tables (`_system.audit`); names starting with `_` are reserved.
pub const SYSTEM_SCHEMA: &str = "_system";

fn audit_table(records: &[stratalake_table::audit::Record]) -> Result<datafusion::datasource::MemTable> {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("principal", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("policies", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("hash", DataType::Utf8, false),
    ]));
    let col = |f: &dyn Fn(&stratalake_table::audit::Record) -> String| -> ArrayRef {
        Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(records.iter().map(|r| r.seq).collect::<Vec<_>>())),
            Arc::new(
                TimestampMillisecondArray::from(records.iter().map(|r| r.time_ms).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            col(&|r| r.event.principal.clone()),
            col(&|r| r.event.kind.clone()),
            col(&|r| r.event.statement.clone()),
            col(&|r| r.event.tables.join(", ")),
            col(&|r| r.event.policies.join("; ")),
            Arc::new(Int64Array::from(
                records
                    .iter()
                    .map(|r| r.event.rows.map(|n| n as i64))
                    .collect::<Vec<_>>(),
            )),
            col(&|r| r.event.outcome.to_string()),
            Arc::new(StringArray::from(
                records.iter().map(|r| r.event.error.clone()).collect::<Vec<_>>(),
            )),
            col(&|r| r.hash.clone()),
        ],
    )
    .map_err(|e| Error::DataFusion(Box::new(e.into())))?;
    Ok(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?)
}

/// What one statement produced.
#[derive(Debug, Clone)]
pub enum Output {
    /// Rows (a query, or the count of an INSERT).
    Rows {
        /// Schema of the rows.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A statement without rows (DDL).
    Done(String),
}

/// Runs SQL as one principal. Every statement reads the catalog and table logs afresh, so a
/// change committed by anyone is visible to the next statement; nothing is cached across
/// statements or principals.
#[derive(Debug, Clone)]
pub struct SqlSession {
    catalog: Arc<Catalog>,
    principal: String,
    access: Access,
    as_of: Option<AsOf>,
    default_namespace: String,
    pub(crate) runtime: QueryRuntime,
    cancel: Option<Cancel>,
    timeout: Option<std::time::Duration>,
    /// What the audit log records the statements as (`sql`, or e.g. `export`) and a note
    /// appended to each statement's text (where its result went).
    audit_as: Option<(String, String)>,
}

/// Stops the statement running in the sessions that hold it ([`SqlSession::with_cancel`]):
/// cheap to clone, shared by whoever may cancel (a Ctrl-C handler, a protocol's cancel request).
/// A cancelled statement fails with [`Error::Cancelled`] and is audited as such; the next
/// statement starts after [`Cancel::reset`].
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Cancel the running statement (and every later one until [`Cancel::reset`]).
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Let statements run again.
    pub fn reset(&self) {
        self.inner.cancelled.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until it is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A piece of a statement's result, as [`SqlSession::execute_streaming`] hands it over.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A statement with rows starts: its columns. The text of the statement and the line of
    /// the input it starts on come with it.
    Start {
        /// Columns.
        schema: &'a SchemaRef,
        /// Line (from 1) of the statement in the text given.
        line: u64,
    },
    /// Rows of the current statement.
    Batch(&'a RecordBatch),
    /// The statement with rows ended.
    End {
        /// Rows it produced.
        rows: u64,
    },
    /// A statement without rows (DDL) finished, with its message.
    Done {
        /// What it did.
        message: &'a str,
        /// Line (from 1) of the statement in the text given.
        line: u64,
    },
}

/// The receiver of a streamed result: an error from it stops the statement.
pub type Sink<'s> = dyn FnMut(Piece<'_>) -> Result<()> + Send + 's;

impl SqlSession {
    /// An engine over `catalog` acting as `principal`, reading every classification.
    pub fn new(catalog: Arc<Catalog>, principal: impl Into<String>) -> Self {
        Self {
            catalog,
            principal: principal.into(),
            access: Access::All,
            as_of: None,
            default_namespace: "default".into(),
            runtime: QueryRuntime::shared_default(),
            cancel: None,
            timeout: None,
            audit_as: None,
        }
    }

    /// Statements of this session stop when `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Run this session's statements in `runtime` (its memory pool and parallelism), shared with
    /// the lake's other sessions.
    pub fn with_runtime(mut self, runtime: QueryRuntime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Statements of this session that run longer than `timeout` fail with [`Error::Timeout`].
    pub fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Audit this session's statements as `kind` (instead of `sql`), with `note` appended to
    /// each statement's text: e.g. `export` and `-- to /srv/out.parquet`, for a client that
    /// writes the results somewhere.
    pub fn with_audit_as(mut self, kind: &str, note: &str) -> Self {
        self.audit_as = Some((kind.to_string(), note.to_string()));
        self
    }

    /// Run `fut` within this session's cancellation and timeout.
    async fn limited<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let cancelled = async {
            match &self.cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let timed_out = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => r,
            _ = cancelled => Err(Error::Cancelled),
            _ = timed_out => Err(Error::Timeout(self.timeout.unwrap_or_default())),
        }
    }

    /// Read every table as of a version or time (read-only).
    pub fn with_as_of(mut self, as_of: Option<AsOf>) -> Self {
        self.as_of = as_of;
        self
    }

    /// The namespace of unqualified table names.
    pub fn with_default_namespace(mut self, ns: impl Into<String>) -> Self {
        self.default_namespace = ns.into();
        self
    }

    /// Restrict the classifications this engine can decrypt.
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The principal.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Resolve the principal against the catalog's current access state. Fails closed: an
    /// unknown principal (outside bootstrap mode) is refused.
    fn subject(&self, state: &CatalogState) -> Result<Subject> {
        Ok(state
            .access
            .resolve(&self.principal, self.catalog.context().keyring.classifications())?)
    }

    fn ctx(&self, subject: Subject) -> Ctx {
        // Decrypt only what both the subject's clearance and this engine's own limit allow.
        let access = Access::Levels(
            subject
                .cleared
                .iter()
                .filter(|l| self.access.allows(l))
                .cloned()
                .collect(),
        );
        Ctx {
            catalog: self.catalog.clone(),
            access,
            subject,
            as_of: self.as_of,
            touched: Default::default(),
        }
    }

    /// Run every statement of `sql` in order, collecting each one's output.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        let mut cur: Option<(SchemaRef, Vec<RecordBatch>)> = None;
        self.execute_streaming(sql, &mut |p: Piece<'_>| {
            match p {
                Piece::Start { schema, .. } => cur = Some((schema.clone(), Vec::new())),
                Piece::Batch(b) => {
                    if let Some((_, v)) = &mut cur {
                        v.push(b.clone());
                    }
                }
                Piece::End { .. } => {
                    if let Some((schema, batches)) = cur.take() {
                        out.push(Output::Rows { schema, batches });
                    }
                }
                Piece::Done { message, .. } => out.push(Output::Done(message.to_string())),
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Run every statement of `sql` in order, handing each one's result to `sink` as it is
    /// produced (rows are never collected here: memory is bounded by what the sink keeps).
    /// Stops at the first failing statement; the error names the line it starts on.
    pub async fn execute_streaming(&self, sql: &str, sink: &mut Sink<'_>) -> Result<()> {
        for (line, stmt) in statements_with_lines(sql)? {
            if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                return Err(Error::Cancelled);
            }
            // boxed: a statement's future is large (planning, execution, audit) and would
            // otherwise sit on the caller's stack
            Box::pin(self.run_streaming(stmt, line, sink)).await?;
        }
        Ok(())
    }

    async fn run_streaming(&self, tokens: Vec<Token>, line: u64, sink: &mut Sink<'_>) -> Result<()> {
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let touched = Touched::default();
        let mut rows: Option<u64> = None;
        let r = self
            .limited(async {
                guarded(async {
                    if let Some(d) = ddl::parse(&tokens)? {
                        let message = self.run_ddl(d, &touched).await?;
                        return sink(Piece::Done {
                            message: &message,
                            line,
                        });
                    }
                    if merge::is_merge(&tokens) {
                        let n = self.merge(tokens, &touched).await?;
                        let schema: SchemaRef =
                            Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
                                "count",
                                arrow::datatypes::DataType::UInt64,
                                false,
                            )]));
                        let batch = RecordBatch::try_new(
                            schema.clone(),
                            vec![Arc::new(arrow::array::UInt64Array::from(vec![n]))],
                        )?;
                        rows = Some(1);
                        sink(Piece::Start { schema: &schema, line })?;
                        sink(Piece::Batch(&batch))?;
                        return sink(Piece::End { rows: 1 });
                    }
                    let df = self.plan(tokens, &touched).await?;
                    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                    let mut stream = df.execute_stream().await?;
                    sink(Piece::Start { schema: &schema, line })?;
                    let mut n = 0u64;
                    while let Some(b) = futures::StreamExt::next(&mut stream).await {
                        let b = b?;
                        n += b.num_rows() as u64;
                        rows = Some(n);
                        sink(Piece::Batch(&b))?;
                    }
                    rows = Some(n);
                    sink(Piece::End { rows: n })
                })
                .await
                .and_then(|r| r)
            })
            .await;
        let writes = !is_read_only(&tokens_first_word(&text));
        self.audit(&text, &touched, &r, rows, writes).await?;
        r
    }

    /// Plan exactly one statement. Queries come back unexecuted; DDL runs now and returns an
    /// empty frame; INSERT runs when the frame is collected.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut stmts = split_statements(sql)?;
        if stmts.len() != 1 {
            return Err(Error::Sql(format!("expected one statement, found {}", stmts.len())));
        }
        let tokens = stmts.pop().expect("one");
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let touched = Touched::default();
        let r = guarded(async {
            if let Some(d) = ddl::parse(&tokens)? {
                self.run_ddl(d, &touched).await?;
                return Ok(SessionContext::new().read_empty()?);
            }
            if merge::is_merge(&tokens) {
                let n = self.merge(tokens, &touched).await?;
                return Ok(SessionContext::new()
                    .sql(&format!("SELECT CAST({n} AS BIGINT UNSIGNED) AS count"))
                    .await?);
            }
            self.plan(tokens, &touched).await
        })
        .await
        .and_then(|r| r);
        // A frame is audited when planned: its rows are not known yet.
        let writes = !is_read_only(&tokens_first_word(&text));
        self.audit(&text, &touched, &r, None, writes).await?;
        r
    }

    /// Record the statement in the audit log. A statement whose record cannot be written fails:
    /// nothing is answered unaudited (a write that committed says so; a statement that failed
    /// anyway keeps its own error, and the missing record is logged).
    /// `writes`: whether the statement can change anything (then an audit failure after it ran
    /// says that its changes are committed).
    async fn audit<T>(
        &self,
        text: &str,
        touched: &Touched,
        r: &Result<T>,
        rows: Option<u64>,
        writes: bool,
    ) -> Result<()> {
        let failure = r.as_ref().err().map(|e| {
            let denied = matches!(e, Error::Table(stratalake_table::Error::PermissionDenied { .. }));
            (e.to_string(), denied)
        });
        let tables = touched.lock().expect("touched lock").clone();
        let policies = touched.policies.lock().expect("touched lock").clone();
        let failed = failure.is_some();
        let ran = !failed && writes;
        let (kind, text) = match &self.audit_as {
            Some((kind, note)) => (kind.as_str(), std::borrow::Cow::Owned(format!("{text} {note}"))),
            None => ("sql", std::borrow::Cow::Borrowed(text)),
        };
        let written = self
            .catalog
            .audit()
            .record_with_policies(&self.principal, kind, &text, tables, policies, rows, failure)
            .await;
        match written {
            Ok(_) => Ok(()),
            // the statement failed on its own: its error (perhaps "the commit may have landed")
            // says more than the audit log's, which usually failed for the same reason
            Err(e) if failed => {
                tracing::warn!(kind, error = %e, "the audit record of a failed statement could not be written");
                Ok(())
            }
            // what it changed is committed: the caller must hear that its record is missing
            Err(e) if ran => Err(e.after_success().into()),
            // a read is not answered unaudited
            Err(e) => Err(e.into()),
        }
    }

    fn session(&self) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, &self.default_namespace)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(self.runtime.target_partitions());
        Ok(SessionContext::new_with_config_rt(config, self.runtime.env()))
    }

    async fn plan(&self, tokens: Vec<Token>, touched: &Touched) -> Result<DataFrame> {
        let state = self.catalog.state().await?;
        let ctx = self.session()?;
        let (tokens, travels) = rewrite_time_travel(tokens)?;
        let asof = Arc::new(MemorySchemaProvider::new());
        let mut c = self.ctx(self.subject(&state)?);
        c.touched = touched.clone();
        for (temp, parts, as_of) in travels {
            if self.as_of.is_some() {
                return Err(Error::Sql(
                    "a table's AS OF cannot be combined with a session-wide --as-of".into(),
                ));
            }
            let ident = self.resolve(&parts)?;
            let p = c.provider(&ident, Some(as_of)).await?;
            asof.register_table(temp, Arc::new(p))?;
        }
        let mut lake_catalog = LakeCatalogProvider::new(c.clone(), state).with_schema(ASOF_SCHEMA, asof);
        let mentions_system = tokens
            .iter()
            .any(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(SYSTEM_SCHEMA)));
        if mentions_system {
            // The audit log as a table, for lake administrators only.
            c.subject.check(&Operation::AdministerLake)?;
            let system = Arc::new(MemorySchemaProvider::new());
            system.register_table(
                "audit".into(),
                Arc::new(audit_table(&self.catalog.audit().records().await?)?),
            )?;
            lake_catalog = lake_catalog.with_schema(SYSTEM_SCHEMA, system);
        }
        ctx.register_catalog(CATALOG_NAME, Arc::new(lake_catalog));
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let mut stmts = DFParser::parse_sql_with_dialect(&text, &GenericDialect {})?;
        if stmts.len() != 1 {
            return Err(Error::Sql(format!("expected one statement, found {}", stmts.len())));
        }
        let stmt = stmts.pop_front().expect("one");
        refuse_unsafe(&stmt)?;
        let level_masked = c.subject.level_masks.keys().any(|l| !c.subject.cleared.contains(l));
        if matches!(stmt, DFStatement::Explain(_))
            && (!c.subject.row_filters.is_empty() || !c.subject.masks.is_empty() || level_masked)
        {
            // Plans show policy conditions and mask expressions (with the principal's attribute
            // values bound in): not for principals those policies restrict.
            return Err(Error::Table(stratalake_table::Error::PermissionDenied {
                principal: c.subject.principal.clone(),
                reason: "is under row filters or masks, and may not EXPLAIN".into(),
            }));
        }
        let plan = ctx.state().statement_to_plan(stmt).await?;
        Ok(ctx.execute_logical_plan(plan).await?)
    }

    fn resolve(&self, parts: &[String]) -> Result<TableIdent> {
        match parts {
            [t] => Ok(TableIdent::parse(t, &self.default_namespace)?),
            [ns, t] => Ok(TableIdent::parse(&format!("{ns}.{t}"), &self.default_namespace)?),
            [cat, ns, t] if cat == CATALOG_NAME => {
                Ok(TableIdent::parse(&format!("{ns}.{t}"), &self.default_namespace)?)
            }
            _ => Err(Error::Sql(format!("not a table name: {}", parts.join(".")))),
        }
    }

    async fn run_ddl(&self, d: Ddl, touched: &Touched) -> Result<String> {
        let p = &self.principal;
        if self.as_of.is_some() {
            return Err(Error::Sql("DDL is not allowed in a read-only --as-of session".into()));
        }
        let subject = self.subject(&self.catalog.state().await?)?;
        match &d {
            Ddl::CreateNamespace { .. }
            | Ddl::DropNamespace { .. }
            | Ddl::Grant { .. }
            | Ddl::Membership { .. }
            | Ddl::CreatePrincipal { .. }
            | Ddl::CreateRole { .. }
            | Ddl::DropPrincipalOrRole { .. }
            | Ddl::CreateRowFilter { .. }
            | Ddl::DropRowFilter { .. }
            | Ddl::DropMask { .. }
            | Ddl::CreateMask { .. }
            | Ddl::SetLevelMask { .. } => subject.check(&Operation::AdministerLake)?,
            Ddl::CreateTable { name, .. } => {
                let ident = self.resolve(name)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                subject.check(&Operation::AdministerNamespace(&ident.namespace))?
            }
            Ddl::DropTable { name, .. }
            | Ddl::Constraint(AlterTable::Add { table: name, .. })
            | Ddl::Constraint(AlterTable::Drop { table: name, .. })
            | Ddl::Constraint(AlterTable::AddColumn { table: name, .. })
            | Ddl::Constraint(AlterTable::RenameColumn { table: name, .. })
            | Ddl::Constraint(AlterTable::AlterType { table: name, .. })
            | Ddl::Constraint(AlterTable::DropColumn { table: name, .. }) => {
                let ident = self.resolve(name)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                subject.check(&Operation::AdministerTable(&ident))?
            }
        }
        match d {
            Ddl::Grant {
                privilege,
                on_kind,
                on_name,
                grantee,
                give,
            } => {
                use stratalake_table::access::{AccessAction, Grant, Securable};
                let on = match (on_kind.as_str(), on_name) {
                    ("lake", _) => Securable::Lake,
                    ("namespace", Some(n)) => {
                        stratalake_table::names::validate_ident("namespace", &n)?;
                        Securable::Namespace { name: n }
                    }
                    (_, Some(t)) => {
                        let id = self.resolve(&t.split('.').map(String::from).collect::<Vec<_>>())?;
                        touched.lock().expect("touched lock").push(id.to_string());
                        Securable::Table {
                            namespace: id.namespace,
                            name: id.name,
                        }
                    }
                    _ => return Err(Error::Sql("GRANT needs what it is on".into())),
                };
                let grant = Grant {
                    grantee,
                    privilege: Privilege::parse(&privilege)?,
                    on,
                };
                let text = grant.describe(give);
                let action = if give {
                    AccessAction::Grant(grant)
                } else {
                    AccessAction::Revoke(grant)
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("{} {text}", if give { "granted" } else { "revoked" }))
            }
            Ddl::CreatePrincipal {
                name,
                service,
                attributes,
            } => {
                use stratalake_table::access::AccessAction;
                let kind = if service { "service" } else { "user" };
                let action = AccessAction::CreatePrincipal {
                    name: name.clone(),
                    kind: kind.into(),
                    attributes: attributes.into_iter().collect(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("principal {name} created"))
            }
            Ddl::CreateRole { name, clearance } => {
                use stratalake_table::access::AccessAction;
                self.catalog
                    .change_access(
                        vec![AccessAction::CreateRole {
                            name: name.clone(),
                            clearance,
                        }],
                        p,
                    )
                    .await?;
                Ok(format!("role {name} created"))
            }
            Ddl::DropPrincipalOrRole { name, role } => {
                use stratalake_table::access::AccessAction;
                let a = if role {
                    AccessAction::DropRole { name: name.clone() }
                } else {
                    AccessAction::DropPrincipal { name: name.clone() }
                };
                self.catalog.change_access(vec![a], p).await?;
                Ok(format!("{} {name} dropped", if role { "role" } else { "principal" }))
            }
            Ddl::CreateRowFilter {
                name,
                table,
                grantee,
                predicate,
            } => {
                use stratalake_table::access::{AccessAction, RowFilter};
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let t = self.catalog.table(&ident).await?;
                crate::policy::check_row_filter(&t.snapshot().await?.metadata.schema.arrow_schema(), &predicate)?;
                let action = AccessAction::SetRowFilter {
                    table: ident.to_string(),
                    name: name.clone(),
                    filter: RowFilter { grantee, predicate },
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("row filter {name} on {ident} created"))
            }
            Ddl::CreateMask {
                table,
                column,
                grantee,
                mask,
            } => {
                use stratalake_table::access::{AccessAction, Mask};
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let mask = Mask::parse(&mask)?;
                let t = self.catalog.table(&ident).await?;
                crate::policy::check_mask(&t.snapshot().await?.metadata.schema.arrow_schema(), &column, &mask)?;
                let action = AccessAction::SetMask {
                    table: ident.to_string(),
                    column: column.clone(),
                    grantee,
                    mask,
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("mask on {ident}({column}) created"))
            }
            Ddl::DropRowFilter { name, table } => {
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let action = stratalake_table::access::AccessAction::DropRowFilter {
                    table: ident.to_string(),
                    name: name.clone(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("row filter {name} on {ident} dropped"))
            }
            Ddl::DropMask { table, column, grantee } => {
                let ident = self.resolve(&table)?;
                touched.lock().expect("touched lock").push(ident.to_string());
                let action = stratalake_table::access::AccessAction::DropMask {
                    table: ident.to_string(),
                    column: column.clone(),
                    grantee: grantee.clone(),
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(format!("mask on {ident}({column}) for {grantee} dropped"))
            }
            Ddl::SetLevelMask { level, mask } => {
                use stratalake_table::access::{AccessAction, Mask};
                let m = if mask == "none" {
                    None
                } else {
                    Some(Mask::parse(&mask)?)
                };
                let text = m
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "NULL (no policy)".into());
                self.catalog
                    .change_access(
                        vec![AccessAction::SetLevelMask {
                            level: level.clone(),
                            mask: m,
                        }],
                        p,
                    )
                    .await?;
                Ok(format!(
                    "columns classified {level} are shown as {text} to sessions not cleared for it"
                ))
            }
            Ddl::Membership { role, member, give } => {
                use stratalake_table::access::AccessAction;
                let action = if give {
                    AccessAction::AddMember {
                        role: role.clone(),
                        member: member.clone(),
                    }
                } else {
                    AccessAction::RemoveMember {
                        role: role.clone(),
                        member: member.clone(),
                    }
                };
                self.catalog.change_access(vec![action], p).await?;
                Ok(if give {
                    format!("{member} is a member of {role}")
                } else {
                    format!("{member} is no longer a member of {role}")
                })
            }
            Ddl::CreateNamespace { name, if_not_exists } => {
                self.catalog.create_namespace(&name, if_not_exists, p).await?;
                Ok(format!("namespace {name} created"))
            }
            Ddl::DropNamespace { name, if_exists } => match self.catalog.drop_namespace(&name, p).await {
                Err(stratalake_table::Error::NamespaceNotFound(_)) if if_exists => {
                    Ok(format!("namespace {name} does not exist"))
                }
                r => r.map(|_| format!("namespace {name} dropped")).map_err(Into::into),
            },
            Ddl::Constraint(AlterTable::Add { table, constraint }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let what = format!("{} {}", constraint.name(), constraint.describe());
                let v = crate::quality::add_constraint(&t, constraint, p).await?;
                Ok(format!("constraint {what} added to {ident} (version {v})"))
            }
            Ddl::Constraint(AlterTable::AddColumn { table, column, default }) => {
                use stratalake_table::evolve::SchemaChange;
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let ty = self
                    .resolve_types(std::slice::from_ref(&column.sql_type))
                    .await?
                    .remove(0);
                let level = match column.classification {
                    Some(l) => l,
                    None => t.context().keyring.classifications().default.clone(),
                };
                let mut c = ColumnDef::new(&column.name, ty, level);
                c.nullable = !column.not_null;
                c.default = default;
                let v = stratalake_table::evolve::evolve(&t, SchemaChange::AddColumn(c), p).await?;
                Ok(format!("column {} added to {ident} (version {v})", column.name))
            }
            Ddl::Constraint(AlterTable::RenameColumn { table, from, to }) => {
                let ident = self.resolve(&table)?;
                self.refuse_if_policies_use(&ident, &from).await?;
                let t = self.catalog.table(&ident).await?;
                let change = stratalake_table::evolve::SchemaChange::RenameColumn {
                    from: from.clone(),
                    to: to.clone(),
                };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {from} of {ident} renamed to {to} (version {v})"))
            }
            Ddl::Constraint(AlterTable::AlterType {
                table,
                column,
                sql_type,
            }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let to = self.resolve_types(std::slice::from_ref(&sql_type)).await?.remove(0);
                let change = stratalake_table::evolve::SchemaChange::WidenColumn {
                    column: column.clone(),
                    to: to.clone(),
                };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {column} of {ident} is now {to} (version {v})"))
            }
            Ddl::Constraint(AlterTable::DropColumn { table, column }) => {
                let ident = self.resolve(&table)?;
                self.refuse_if_policies_use(&ident, &column).await?;
                let t = self.catalog.table(&ident).await?;
                let change = stratalake_table::evolve::SchemaChange::DropColumn { column: column.clone() };
                let v = stratalake_table::evolve::evolve(&t, change, p).await?;
                Ok(format!("column {column} dropped from {ident} (version {v})"))
            }
            Ddl::Constraint(AlterTable::Drop { table, name }) => {
                let ident = self.resolve(&table)?;
                let t = self.catalog.table(&ident).await?;
                let v = crate::quality::drop_constraint(&t, &name, p).await?;
                Ok(format!("constraint {name} dropped from {ident} (version {v})"))
            }
            Ddl::DropTable { name, if_exists } => {
                let ident = self.resolve(&name)?;
                match self.catalog.drop_table(&ident, p).await {
                    Err(stratalake_table::Error::TableNotFound(_)) if if_exists => {
                        Ok(format!("table {ident} does not exist"))
                    }
                    r => r
                        .map(|n| format!("table {ident} dropped ({n} objects deleted)"))
                        .map_err(Into::into),
                }
            }
            Ddl::CreateTable {
                name,
                if_not_exists,
                columns,
                partition_by,
            } => {
                let ident = self.resolve(&name)?;
                let types = self
                    .resolve_types(&columns.iter().map(|c| c.sql_type.clone()).collect::<Vec<_>>())
                    .await?;
                let default_level = self.catalog.context().keyring.classifications().default.clone();
                let schema = TableSchema {
                    columns: columns
                        .into_iter()
                        .zip(types)
                        .map(|(c, t)| ColumnDef {
                            name: c.name,
                            data_type: t,
                            nullable: !c.not_null,
                            classification: c.classification.unwrap_or_else(|| default_level.clone()),
                            aliases: Vec::new(),
                            default: None,
                        })
                        .collect(),
                    partition_by,
                };
                match self.catalog.create_table(&ident, schema, Default::default(), p).await {
                    Err(stratalake_table::Error::TableExists(_)) if if_not_exists => {
                        Ok(format!("table {ident} already exists"))
                    }
                    r => r.map(|_| format!("table {ident} created")).map_err(Into::into),
                }
            }
        }
    }

    /// Turn SQL type names into Arrow types exactly as DataFusion's SQL planner does.
    /// A column that a mask or row filter names cannot be renamed or dropped: the policy would
    /// stop applying (a mask) or stop planning (a filter).
    async fn refuse_if_policies_use(&self, ident: &TableIdent, column: &str) -> Result<()> {
        let state = self.catalog.state().await?;
        let key = ident.to_string();
        if let Some(cols) = state.access.masks.get(&key)
            && cols.keys().any(|c| c.eq_ignore_ascii_case(column))
        {
            return Err(Error::Sql(format!(
                "column {column:?} of {ident} has a mask: remove the mask first (and create it again afterwards)"
            )));
        }
        if let Some(filters) = state.access.row_filters.get(&key)
            && let Some((name, _)) = filters.iter().find(|(_, f)| {
                f.predicate
                    .to_lowercase()
                    .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                    .any(|w| w == column.to_lowercase())
            })
        {
            return Err(Error::Sql(format!(
                "row filter {name:?} on {ident} uses column {column:?}: drop it first (and create it again afterwards)"
            )));
        }
        Ok(())
    }

    async fn resolve_types(&self, sql_types: &[String]) -> Result<Vec<arrow::datatypes::DataType>> {
        // Tables store plain Utf8/Binary; DataFusion's view types are a query-time choice.
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false),
        );
        let mut out = Vec::with_capacity(sql_types.len());
        for t in sql_types {
            let df = ctx
                .sql(&format!("SELECT CAST(NULL AS {t}) AS c"))
                .await
                .map_err(|e| Error::Sql(format!("unknown column type {t}: {e}")))?;
            out.push(df.schema().field(0).data_type().clone());
        }
        Ok(out)
    }
}

fn refuse_unsafe(stmt: &DFStatement) -> Result<()> {
    match stmt {
        DFStatement::CreateExternalTable(_) => Err(Error::Unsupported(
            "CREATE EXTERNAL TABLE reads files outside the lake's keys and log; load them with `stratalake ingest`"
                .into(),
        )),
        DFStatement::CopyTo(_) => Err(Error::Unsupported(
            "COPY ... TO writes unencrypted files outside the lake; query with --format csv|json instead".into(),
        )),
        DFStatement::Explain(e) => refuse_unsafe(&e.statement),
        _ => Ok(()),
    }
}

/// Split SQL text into statements at top-level semicolons (strings and comments respected).
/// The statements of `sql` with the line (from 1) each starts on.
pub fn statements_with_lines(sql: &str) -> Result<Vec<(u64, Vec<Token>)>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let mut out = Vec::new();
    let mut cur: Vec<Token> = Vec::new();
    let mut first_line: Option<u64> = None;
    for t in tokens {
        if t.token == Token::SemiColon {
            out.push((first_line.take().unwrap_or(1), std::mem::take(&mut cur)));
            continue;
        }
        if first_line.is_none() && !matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            first_line = Some(t.span.start.line);
        }
        cur.push(t.token);
    }
    out.push((first_line.unwrap_or(1), cur));
    out.retain(|(_, s)| s.iter().any(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)));
    if out.is_empty() {
        return Err(Error::Sql("no statement given".into()));
    }
    Ok(out)
}

/// Whether `sql` ends a statement: it tokenizes (no string or comment left open) and its last
/// token other than whitespace and comments is `;` (what a shell waits for before running).
pub fn is_complete(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).with_unescape(false).tokenize() else {
        return false;
    };
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .is_some_and(|t| *t == Token::SemiColon)
}

/// Split `sql` into its statements (`;` inside strings and comments does not end one).
pub fn split_statements(sql: &str) -> Result<Vec<Vec<Token>>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        // keep escapes as written ('O''Brien'): the text is re-assembled from these tokens
        .with_unescape(false)
        .tokenize()
        .map_err(|e| Error::Sql(e.to_string()))?;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in tokens {
        if t == Token::SemiColon {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(t);
        }
    }
    out.push(cur);
    out.retain(|s| s.iter().any(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)));
    if out.is_empty() {
        return Err(Error::Sql("no statement given".into()));
    }
    Ok(out)
}

fn is_kw(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

fn word(value: &str) -> Token {
    Token::Word(Word {
        value: value.to_string(),
        quote_style: None,
        keyword: Keyword::NoKeyword,
    })
}

/// Find `name VERSION AS OF n`, `name TIMESTAMP AS OF 'ts'` and `name FOR SYSTEM_TIME AS OF 'ts'`,
/// replace each with a temporary table name (aliased to the original name), and return them.
#[allow(clippy::type_complexity)]
fn rewrite_time_travel(tokens: Vec<Token>) -> Result<(Vec<Token>, Vec<(String, Vec<String>, AsOf)>)> {
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let mut travels = Vec::new();
    let mut replace: Vec<(usize, usize, Vec<Token>)> = Vec::new(); // token range [a, b) -> new tokens
    let mut k = 0;
    while k < sig.len() {
        let t = &tokens[sig[k]];
        let clause_len = if (is_kw(t, Keyword::VERSION) || is_kw(t, Keyword::TIMESTAMP))
            && sig.get(k + 2).is_some_and(|i| is_kw(&tokens[*i], Keyword::OF))
            && sig.get(k + 1).is_some_and(|i| is_kw(&tokens[*i], Keyword::AS))
        {
            3
        } else if is_kw(t, Keyword::FOR)
            && sig.get(k + 1).is_some_and(|i| is_kw(&tokens[*i], Keyword::SYSTEM_TIME))
            && sig.get(k + 2).is_some_and(|i| is_kw(&tokens[*i], Keyword::AS))
            && sig.get(k + 3).is_some_and(|i| is_kw(&tokens[*i], Keyword::OF))
        {
            4
        } else {
            0
        };
        // The clause must follow a table name: Word (. Word)*
        let follows_name = k > 0 && matches!(tokens[sig[k - 1]], Token::Word(_));
        if clause_len == 0 || !follows_name {
            k += 1;
            continue;
        }
        // Walk back over the name.
        let mut start = k - 1;
        while start >= 2 && tokens[sig[start - 1]] == Token::Period && matches!(tokens[sig[start - 2]], Token::Word(_))
        {
            start -= 2;
        }
        let parts: Vec<String> = (start..k)
            .step_by(2)
            .map(|j| match &tokens[sig[j]] {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_lowercase(),
                Token::Word(w) => w.value.clone(),
                _ => unreachable!("checked above"),
            })
            .collect();
        if start > 0
            && [Keyword::INTO, Keyword::UPDATE, Keyword::TABLE]
                .iter()
                .any(|kw| is_kw(&tokens[sig[start - 1]], *kw))
        {
            return Err(Error::Sql(format!(
                "cannot write to {} as of an earlier version: time travel is read-only",
                parts.join(".")
            )));
        }
        let lit_idx = k + clause_len;
        let lit = sig
            .get(lit_idx)
            .map(|i| tokens[*i].clone())
            .ok_or_else(|| Error::Sql("AS OF needs a value".into()))?;
        let as_of = match (&lit, is_kw(t, Keyword::VERSION)) {
            (Token::Number(n, _), true) => {
                AsOf::Version(n.parse().map_err(|_| Error::Sql(format!("bad version {n}")))?)
            }
            (Token::SingleQuotedString(s), false) => AsOf::parse_timestamp(s).map_err(Error::Sql)?,
            (other, true) => {
                return Err(Error::Sql(format!(
                    "VERSION AS OF needs a version number, found {other}"
                )));
            }
            (other, false) => {
                return Err(Error::Sql(format!(
                    "TIMESTAMP AS OF needs a quoted timestamp, found {other}"
                )));
            }
        };
        let temp = format!("t{}", travels.len());
        let mut new = vec![
            word(CATALOG_NAME),
            Token::Period,
            word(ASOF_SCHEMA),
            Token::Period,
            word(&temp),
        ];
        // Keep the original name usable as a qualifier unless an alias follows.
        let next = sig.get(lit_idx + 1).map(|i| &tokens[*i]);
        let has_alias =
            matches!(next, Some(Token::Word(w)) if w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword);
        if !has_alias {
            new.push(Token::Whitespace(Whitespace::Space));
            new.push(word("AS"));
            new.push(Token::Whitespace(Whitespace::Space));
            new.push(Token::Word(Word {
                value: parts.last().cloned().unwrap_or_default(),
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }));
        }
        replace.push((sig[start], sig[lit_idx] + 1, new));
        travels.push((temp, parts, as_of));
        k = lit_idx + 1;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    for (a, b, new) in replace {
        out.extend_from_slice(&tokens[i..a]);
        out.extend(new);
        i = b;
    }
    out.extend_from_slice(&tokens[i..]);
    Ok((out, travels))
}

impl AsOf {
    /// Parse a version number or a timestamp (`2026-11-25T10:00:00Z`, `2026-11-25 10:00:00`
    /// taken as UTC, or a date `2026-11-25` meaning its midnight UTC).
    pub fn parse(s: &str) -> std::result::Result<AsOf, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(AsOf::Version).map_err(|_| format!("bad version {s:?}"));
        }
        Self::parse_timestamp(s)
    }

    /// Parse a timestamp only (see [`AsOf::parse`]).
    pub fn parse_timestamp(s: &str) -> std::result::Result<AsOf, String> {
        let s = s.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(AsOf::Timestamp(t.timestamp_millis()));
        }
        for f in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                return Ok(AsOf::Timestamp(t.and_utc().timestamp_millis()));
            }
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(AsOf::Timestamp(
                d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis(),
            ));
        }
        Err(format!(
            "{s:?} is neither a version number nor a timestamp like 2026-11-25T10:00:00Z"
        ))
    }
}

#[path = "merge.rs"]
mod merge;
