//! The extended query protocol (Parse, Bind, Describe, Execute, Close, Sync): prepared
//! statements with parameters and results in text or binary, as psycopg 3 and JDBC drivers use.
//!
//! A statement is described when it is parsed: planned (not run) by the principal's session,
//! which gives its parameters' types and its columns, and refuses a table the principal may not
//! read right there. Bind checks what the client sent against that description (the number of
//! parameters, the format codes); Execute reads each parameter into the type the plan wants and
//! runs the statement through the same path as the simple protocol, audited with its
//! parameters. A connection keeps at most [`MAX_STATEMENTS`] named statements and
//! [`MAX_PORTALS`] named portals, holding [`MAX_NAMED_BYTES`] of text and parameters in all.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{Bind, BindComplete, Close, Describe, Parse, ParseComplete};
use pgwire::messages::extendedquery::{TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::TransactionStatus;
use stratalake::query::Described;

use crate::auth::{Conn, error};
use crate::query::{Run, Statements, control, run, to_pg};
use crate::values::{self, Params};

/// Named prepared statements a connection may hold at once.
pub(crate) const MAX_STATEMENTS: usize = 1_000;
/// Named portals a connection may hold at once (each may keep a suspended result).
pub(crate) const MAX_PORTALS: usize = 100;
/// The statement text and parameter bytes a connection's named statements and portals may hold.
pub(crate) const MAX_NAMED_BYTES: usize = 64 << 20;

/// A parsed statement: its text and what it takes and returns.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    sql: String,
    described: Described,
}

/// A connection's named prepared statements and portals, with the bytes each holds.
#[derive(Default)]
pub(crate) struct Names {
    statements: HashMap<String, usize>,
    portals: HashMap<String, usize>,
}

/// What a name belongs to.
#[derive(Clone, Copy)]
enum Kind {
    Statement,
    Portal,
}

impl Names {
    /// Whether a new named statement or portal `name` holding `bytes` may be made.
    fn check(&self, kind: Kind, name: &str, bytes: usize) -> PgWireResult<()> {
        let (names, most, taken, what) = match kind {
            Kind::Statement => (&self.statements, MAX_STATEMENTS, "42P05", "prepared statement"),
            Kind::Portal => (&self.portals, MAX_PORTALS, "42P03", "portal"),
        };
        if names.contains_key(name) {
            return Err(error(
                "ERROR",
                taken,
                format!("{what} \"{}\" already exists", crate::auth::printable(name)),
            ));
        }
        if names.len() >= most {
            return Err(error(
                "ERROR",
                "54000",
                format!("this connection holds {most} named {what}s, the most it may: close some first"),
            ));
        }
        self.room(bytes)
    }

    fn bytes(&self) -> usize {
        self.statements.values().chain(self.portals.values()).sum()
    }

    /// Whether `more` bytes fit, or the error that says they do not.
    fn room(&self, more: usize) -> PgWireResult<()> {
        if self.bytes().saturating_add(more) > MAX_NAMED_BYTES {
            return Err(error(
                "ERROR",
                "54000",
                format!(
                    "this connection's named statements and portals would hold more than {} MiB: close some first",
                    MAX_NAMED_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }
}

/// Describes statements at Parse as the connection's principal.
pub(crate) struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let conn = client
            .session_extensions()
            .get::<Conn>()
            .ok_or_else(|| error("FATAL", "28000", "not logged in"))?;
        if crate::copy::parse(sql).is_some() {
            return Err(error(
                "ERROR",
                "0A000",
                "COPY ... TO STDOUT is served by the simple query protocol (as psql and libpq send it)",
            ));
        }
        let described = if let Some(setting) = crate::settings::parse(sql) {
            match setting {
                Err((code, message)) => return Err(error("ERROR", code, message)),
                Ok(crate::settings::Setting::Show(name)) => Described {
                    params: Vec::new(),
                    columns: Some(crate::query::show_schema(name)),
                },
                Ok(_) => Described::default(),
            }
        } else if control(sql).is_some() {
            if stratalake::query::split_statements(sql).map_or(0, |s| s.len()) > 1 {
                return Err(error(
                    "ERROR",
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
            Described::default()
        } else {
            // planning is work too: it counts among the principal's running statements
            let _running = conn.start_statement().map_err(PgWireError::UserError)?;
            let session = conn.sql();
            let describe = session.describe(sql);
            let described = match conn.statement_timeout() {
                Some(limit) => tokio::time::timeout(limit, describe).await.map_err(|_| {
                    error(
                        "ERROR",
                        "57014",
                        "canceling statement due to statement timeout (while planning it)",
                    )
                })?,
                None => describe.await,
            };
            described.map_err(|e| to_pg(&stratalake::Error::from(e)))?
        };
        Ok(Some(Prepared {
            sql: sql.to_string(),
            described,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .described
            .params
            .iter()
            .map(|t| t.as_ref().map_or(Type::UNKNOWN, values::pg_type))
            .collect())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.described.columns {
            Some(schema) => values::fields(schema, format).as_ref().clone(),
            None => Vec::new(),
        })
    }
}

/// What a Bind makes a portal hold: its parameters' bytes.
fn bind_bytes(b: &Bind) -> usize {
    b.parameters.iter().map(|p| p.as_ref().map_or(0, |v| v.len())).sum()
}

fn aborted() -> PgWireError {
    error("ERROR", "25P02", crate::query::ABORTED)
}

/// A Bind's format codes: none (all text), one for all, or one per item; each 0 or 1.
fn check_formats(codes: &[i16], n: usize, what: &str) -> PgWireResult<()> {
    if codes.len() > 1 && codes.len() != n {
        return Err(error(
            "ERROR",
            "08P01",
            format!(
                "bind message has {} {what} formats but there are {n} {what}s",
                codes.len()
            ),
        ));
    }
    if let Some(c) = codes.iter().find(|c| !matches!(c, 0 | 1)) {
        return Err(error("ERROR", "22023", format!("unsupported format code: {c}")));
    }
    Ok(())
}

impl Statements {
    fn names(&self) -> PgWireResult<std::sync::MutexGuard<'_, Names>> {
        self.names.lock().map_err(|_| error("FATAL", "XX000", "internal lock"))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Statements {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser)
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.conn(client).await?;
        if client.transaction_status() == TransactionStatus::Error {
            return Err(aborted());
        }
        let name = message.name.clone().filter(|n| !n.is_empty());
        if let Some(n) = &name {
            self.names()?.check(Kind::Statement, n, message.query.len())?;
        }
        match StoredStatement::parse(client, &message, Parser).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client
                .portal_store()
                .put_empty_statement(name.as_deref().unwrap_or(DEFAULT_NAME)),
        }
        if let Some(n) = name {
            self.names()?.statements.insert(n, message.query.len());
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = message.portal_name.clone().filter(|n| !n.is_empty());
        if let Some(p) = &portal {
            self.names()?.check(Kind::Portal, p, bind_bytes(&message))?;
        }
        let (params, columns) = match client.portal_store().get_statement(statement_name) {
            Some(pgwire::api::store::Entry::Value(stmt)) => (
                stmt.statement.described.params.len(),
                stmt.statement
                    .described
                    .columns
                    .as_ref()
                    .map_or(0, |c| c.fields().len()),
            ),
            Some(pgwire::api::store::Entry::Empty) => (0, 0),
            None => {
                return Err(error(
                    "ERROR",
                    "26000",
                    format!(
                        "prepared statement \"{}\" does not exist",
                        crate::auth::printable(statement_name)
                    ),
                ));
            }
        };
        if message.parameters.len() != params {
            return Err(error(
                "ERROR",
                "08P01",
                format!(
                    "bind message supplies {} parameters, but the prepared statement requires {params}",
                    message.parameters.len()
                ),
            ));
        }
        check_formats(&message.parameter_format_codes, params, "parameter")?;
        check_formats(&message.result_column_format_codes, columns, "result column")?;
        match client.portal_store().get_statement(statement_name) {
            Some(pgwire::api::store::Entry::Value(stmt)) => {
                client
                    .portal_store()
                    .put_portal(Arc::new(Portal::try_new(&message, stmt)?));
            }
            _ => client
                .portal_store()
                .put_empty_portal(portal.as_deref().unwrap_or(DEFAULT_NAME)),
        }
        if let Some(p) = portal {
            self.names()?.portals.insert(p, bind_bytes(&message));
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::store::Entry;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        // (parameter types for a statement, columns with their formats)
        let (params, fields): (Option<Vec<Type>>, Vec<FieldInfo>) = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let ours = Parser.get_parameter_types(&stmt.statement)?;
                    let types = (0..ours.len())
                        .map(|i| {
                            stmt.parameter_types
                                .get(i)
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| ours[i].clone())
                        })
                        .collect();
                    (Some(types), Parser.get_result_schema(&stmt.statement, None)?)
                }
                Some(Entry::Empty) => (Some(Vec::new()), Vec::new()),
                None => {
                    return Err(error(
                        "ERROR",
                        "26000",
                        format!("prepared statement \"{}\" does not exist", crate::auth::printable(name)),
                    ));
                }
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => (
                    None,
                    Parser.get_result_schema(&portal.statement.statement, Some(&portal.result_column_format))?,
                ),
                Some(Entry::Empty) => (None, Vec::new()),
                None => {
                    return Err(error(
                        "ERROR",
                        "34000",
                        format!("portal \"{}\" does not exist", crate::auth::printable(name)),
                    ));
                }
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        if let Some(types) = params {
            client
                .feed(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(
                    types.iter().map(Type::oid).collect(),
                )))
                .await?;
        }
        // a statement without rows is NoData, with or without parameters
        if fields.is_empty() {
            client.send(PgWireBackendMessage::NoData(NoData::new())).await?;
        } else {
            client
                .send(PgWireBackendMessage::RowDescription(RowDescription::new(
                    fields.iter().map(Into::into).collect(),
                )))
                .await?;
        }
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        {
            let mut names = self.names()?;
            match message.target_type {
                TARGET_TYPE_BYTE_STATEMENT => {
                    names.statements.remove(name);
                    client.portal_store().rm_statement(name);
                }
                TARGET_TYPE_BYTE_PORTAL => {
                    names.portals.remove(name);
                    client.portal_store().rm_portal(name);
                }
                _ => {}
            }
        }
        client
            .send(PgWireBackendMessage::CloseComplete(
                pgwire::messages::extendedquery::CloseComplete::new(),
            ))
            .await?;
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = self.conn(client).await?;
        // a portal runs once: Execute again after its command finished answers nothing more
        if matches!(*portal.state().lock().await, PortalExecutionState::Finished) {
            return Ok(Response::EmptyQuery);
        }
        let stmt = &portal.statement.statement;
        let params = Params {
            values: &portal.parameters,
            declared: &portal.statement.parameter_types,
            format: &portal.parameter_format,
            wanted: &stmt.described.params,
        }
        .read()?;
        let mut status = client.transaction_status();
        let how = Run {
            params: (!params.is_empty()).then_some(params),
            format: Some(&portal.result_column_format),
            described: stmt.described.columns.as_ref(),
        };
        match run(&conn, &mut status, &stmt.sql, how).await {
            // as an error: pgwire then skips the client's messages up to its Sync, so the rest of
            // a pipeline (executemany, a batch) does not run after a failed statement
            Response::Error(e) => Err(PgWireError::UserError(e)),
            r => {
                if !matches!(r, Response::Query(_)) {
                    *portal.state().lock().await = PortalExecutionState::Finished;
                }
                Ok(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_codes_are_checked() {
        assert!(check_formats(&[], 3, "parameter").is_ok());
        assert!(check_formats(&[1], 3, "parameter").is_ok());
        assert!(check_formats(&[0, 1, 0], 3, "parameter").is_ok());
        assert!(check_formats(&[0, 1], 3, "parameter").is_err());
        assert!(check_formats(&[2], 1, "parameter").is_err());
        assert!(check_formats(&[-1], 0, "parameter").is_err());
    }
}
