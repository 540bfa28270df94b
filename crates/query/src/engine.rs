//! Running SQL against the lake as one principal.
//!
//! [`SqlSession`] (this module) is who runs the SQL and under which limits: the principal and
//! what it may decrypt, the session-wide `AS OF`, the default namespace, the shared runtime, the
//! cancellation token and timeout, and how its statements are audited. The work is done in
//! submodules, each adding an `impl SqlSession` block where it needs one:
//!
//! * `execute`: running statements: which path each takes (Stratalake DDL, MERGE, DataFusion)
//!   and how its result is handed over ([`Output`], [`Piece`], [`Sink`]);
//! * `statements`: SQL text split into statements, and their kind by their first word;
//! * `plan`: planning one statement with DataFusion, and the statements refused there;
//! * `time_travel`: the `AS OF` rewrite, and [`AsOf`] parsing;
//! * `ddl_run`: running Stratalake DDL;
//! * `cancel`: [`Cancel`], the timeout, and [`guarded`] (a panic is an error of its statement);
//! * `audit`: audit records, and the `_system` schema (the audit log as a table);
//! * `merge` (`merge.rs`): `MERGE INTO`.

mod audit;
mod cancel;
mod ddl_run;
mod execute;
// `MERGE INTO`; its file is `src/merge.rs`
#[path = "merge.rs"]
mod merge;
mod plan;
mod statements;
mod time_travel;

use std::sync::Arc;

use stratalake_table::access::Subject;
use stratalake_table::catalog::{Catalog, CatalogState};
use stratalake_table::{Access, TableIdent};

use crate::catalog::{AsOf, Ctx};
use crate::runtime::QueryRuntime;
use crate::{Error, Result};

pub(crate) use audit::Touched;
pub use cancel::{Cancel, guarded};
pub use execute::{Described, Output, Piece, Sink};
pub use statements::{
    ROW_COUNT_STATEMENTS, first_word, is_complete, is_query, only_reads, split_statements, statements_with_lines,
};

/// Name of the DataFusion catalog the lake is registered as.
pub const CATALOG_NAME: &str = "lake";

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

    /// What the table providers of one statement share, acting as `subject`.
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

    /// A table name as written (`t`, `ns.t` or `lake.ns.t`), unqualified names in the default
    /// namespace.
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
}
