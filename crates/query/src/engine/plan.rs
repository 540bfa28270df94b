//! Planning one statement with DataFusion: a fresh `SessionContext` on the lake's shared runtime,
//! the lake registered as its catalog (with the time-travel tables and, for administrators, the
//! `_system` schema), and the refusals: statements that would read or write outside the lake's
//! keys and log, and `EXPLAIN` for principals under row filters or masks.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::audit::{SYSTEM_SCHEMA, Touched};
use super::time_travel::{ASOF_SCHEMA, rewrite_time_travel};
use super::{CATALOG_NAME, SqlSession};
use crate::catalog::LakeCatalogProvider;
use crate::pg_catalog::{self, PG_CATALOG, PgCatalogSchema, PgSnapshot};
use crate::{Error, Result};

impl SqlSession {
    /// A DataFusion session for one statement: catalog `lake`, the default namespace as its
    /// default schema, `information_schema` on, on the lake's shared runtime.
    pub(super) fn session(&self) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, &self.default_namespace)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(self.runtime.target_partitions());
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.env());
        // `current_user` / `session_user` (without parentheses, as in PostgreSQL): the principal
        for name in ["current_user", "session_user"] {
            ctx.register_udf(ScalarUDF::new_from_impl(PrincipalName {
                name,
                principal: self.principal().to_string(),
                signature: Signature::nullary(Volatility::Stable),
            }));
        }
        Ok(ctx)
    }

    /// Plan one statement (not Stratalake DDL or MERGE) as the session's principal, its
    /// placeholders (`$1`, …) bound to `params`. The frame runs nothing until executed, except
    /// statements DataFusion runs when planned (`SET`, `CREATE VIEW`).
    pub(super) async fn plan(
        &self,
        tokens: Vec<Token>,
        touched: &Touched,
        params: Option<&ParamValues>,
    ) -> Result<DataFrame> {
        let (ctx, plan) = self.logical_plan(tokens, touched).await?;
        let plan = match params {
            Some(p) => plan.with_param_values(p.clone())?,
            None => plan,
        };
        Ok(ctx.execute_logical_plan(plan).await?)
    }

    /// The logical plan of one statement (not Stratalake DDL or MERGE) as the session's
    /// principal, and the context it was planned in. Nothing runs: this is also how a
    /// statement is described (its columns, its parameters' types) before it is executed.
    pub(super) async fn logical_plan(
        &self,
        tokens: Vec<Token>,
        touched: &Touched,
    ) -> Result<(SessionContext, LogicalPlan)> {
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
        let words = || {
            tokens.iter().filter_map(|t| match t {
                Token::Word(w) => Some(w.value.to_ascii_lowercase()),
                _ => None,
            })
        };
        // psql's and JDBC tools' catalog queries: `pg_catalog` as this principal may see it.
        let pg = if pg_catalog::mentioned(words()) {
            let mut snapshot = PgSnapshot::new(&state, &c.subject, &self.default_namespace);
            if words().any(|w| pg_catalog::READS_TABLES.contains(&w.as_str())) {
                snapshot.load_tables(&self.catalog).await?;
            }
            let snapshot = Arc::new(snapshot);
            pg_catalog::register_functions(&ctx, &snapshot);
            Some(snapshot)
        } else {
            None
        };
        let pg_statement = pg.is_some();
        let mut lake_catalog = LakeCatalogProvider::new(c.clone(), state).with_schema(ASOF_SCHEMA, asof);
        if let Some(snapshot) = pg {
            lake_catalog = lake_catalog.with_schema(PG_CATALOG, Arc::new(PgCatalogSchema::new(snapshot)));
        }
        if words().any(|w| w == SYSTEM_SCHEMA) {
            lake_catalog = lake_catalog.with_schema(SYSTEM_SCHEMA, self.system_schema(&c.subject).await?);
        }
        ctx.register_catalog(CATALOG_NAME, Arc::new(lake_catalog));
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let mut stmts = DFParser::parse_sql_with_dialect(&text, &GenericDialect {})?;
        if stmts.len() != 1 {
            return Err(Error::Sql(format!("expected one statement, found {}", stmts.len())));
        }
        let mut stmt = stmts.pop_front().expect("one");
        refuse_unsafe(&stmt)?;
        pg_catalog::rewrite(&mut stmt, pg_statement);
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
        Ok((ctx, plan))
    }
}

/// `current_user` and `session_user`: the name of the principal the statement runs as (the
/// server's authenticated login, the library's session principal). There is no `SET ROLE`, so
/// the two are always the same.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PrincipalName {
    name: &'static str,
    principal: String,
    signature: Signature,
}

impl ScalarUDFImpl for PrincipalName {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(self.principal.clone()))))
    }
}

/// Refuse statements that read or write files outside the lake's keys and log.
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
