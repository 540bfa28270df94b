//! Statements of an authenticated connection, by the simple query protocol (psql) and the
//! extended one (`extended.rs`: psycopg, JDBC): each runs in the principal's own
//! [`stratalake::SqlSession`], so its grants, row filters, masks and clearances apply and each
//! statement is audited under its name; results go back as PostgreSQL rows, errors with their
//! SQLSTATE.
//!
//! Transaction blocks: the engine commits every statement on its own, so `BEGIN` … `COMMIT`
//! cannot make several writes one. A block is accepted for reads (clients such as psycopg open
//! one before their first statement) and a write inside it is refused before it runs, so a
//! `ROLLBACK` never meets a write it cannot undo. Outside a block every statement commits when
//! it succeeds, as with `autocommit`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::response::TransactionStatus;
use stratalake::arrow::array::{Array, AsArray};
use stratalake::arrow::datatypes::{DataType, SchemaRef, UInt64Type};
use stratalake::datafusion::scalar::ScalarValue;
use stratalake::query::{Piece, ROW_COUNT_STATEMENTS, first_word, only_reads};

use crate::Shared;
use crate::auth::{Conn, error};
use crate::values;

/// The statement handler of one connection (both protocols).
pub(crate) struct Statements {
    pub(crate) shared: Arc<Shared>,
    /// Named prepared statements and portals of this connection (bounded in number).
    pub(crate) names: std::sync::Mutex<crate::extended::Names>,
}

impl Statements {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            names: Default::default(),
        }
    }

    /// The connection's login, checked again: a principal dropped since loses its connection
    /// at its next statement (grants and policies are read afresh by every statement anyway).
    pub(crate) async fn conn<C: ClientInfo>(&self, client: &C) -> PgWireResult<Arc<Conn>> {
        let conn = client
            .session_extensions()
            .get::<Conn>()
            .ok_or_else(|| error("FATAL", "28000", "not logged in"))?;
        match self.shared.lake.principal_exists(&conn.principal).await {
            Ok(true) => Ok(conn),
            Ok(false) => Err(error(
                "FATAL",
                "28000",
                format!(
                    "principal \"{}\" no longer exists",
                    crate::auth::printable(&conn.principal)
                ),
            )),
            Err(e) => Err(to_pg(&e)),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = self.conn(client).await?;
        let statements = match stratalake::query::split_statements(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(info_of(&e.into())))]),
        };
        let mut status = client.transaction_status();
        let mut out = Vec::new();
        let count = statements.len();
        for tokens in statements {
            let text: String = tokens.iter().map(|t| t.to_string()).collect();
            let r = match crate::copy::parse(&text) {
                None => run(&conn, &mut status, &text, Run::default()).await,
                Some(Err((code, message))) => fail(code, message),
                Some(Ok(_)) if count > 1 => fail("0A000", "COPY ... TO STDOUT must be sent as a query of its own"),
                Some(Ok(copy)) => crate::copy::run(&conn, status, client, copy).await?,
            };
            if matches!(r, Response::Error(_)) {
                status = status.to_error_state();
            }
            let failed = matches!(r, Response::Error(_));
            out.push(r);
            if failed {
                // as PostgreSQL: the rest of a multi-statement query is not run
                break;
            }
        }
        Ok(out)
    }
}

/// How a statement runs beyond its text (the extended protocol's part).
#[derive(Default)]
pub(crate) struct Run<'a> {
    /// Its parameters, read into the types its plan wants.
    pub params: Option<Vec<ScalarValue>>,
    /// The result formats the client bound (`None`: text, as the simple protocol).
    pub format: Option<&'a Format>,
    /// The columns announced when it was described: the rows must have these types.
    pub described: Option<&'a SchemaRef>,
}

/// Transaction control, which the server answers itself.
#[derive(Debug, PartialEq)]
pub(crate) enum Control {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE, ROLLBACK TO: not served.
    Savepoint,
}

/// Whether `text` is transaction control, and which.
pub(crate) fn control(text: &str) -> Option<Control> {
    use stratalake::datafusion::sql::sqlparser::tokenizer::Token;
    let stmts = stratalake::query::split_statements(text).ok()?;
    let words: Vec<String> = stmts
        .first()?
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .take(3)
        .collect();
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    match word(0) {
        "BEGIN" => Some(Control::Begin),
        "START" if word(1) == "TRANSACTION" => Some(Control::Begin),
        "COMMIT" | "END" => Some(Control::Commit),
        "ROLLBACK" | "ABORT" if word(1) == "TO" || word(2) == "TO" => Some(Control::Savepoint),
        "ROLLBACK" | "ABORT" => Some(Control::Rollback),
        "SAVEPOINT" | "RELEASE" => Some(Control::Savepoint),
        _ => None,
    }
}

/// Run one statement as the connection's principal, within the connection's transaction state
/// (updated as the client will see it), and give its response.
pub(crate) async fn run(conn: &Conn, status: &mut TransactionStatus, text: &str, how: Run<'_>) -> Response {
    let r = run_inner(conn, status, text, how).await;
    if let Response::Error(_) = &r {
        *status = status.to_error_state();
    }
    r
}

async fn run_inner(conn: &Conn, status: &mut TransactionStatus, text: &str, how: Run<'_>) -> Response {
    let word = first_word(text);
    match (control(text), *status) {
        (Some(Control::Savepoint), _) => {
            return fail(
                "0A000",
                "savepoints are not supported: Stratalake commits each statement on its own",
            );
        }
        (Some(Control::Commit), TransactionStatus::Error) | (Some(Control::Rollback), _) => {
            *status = TransactionStatus::Idle;
            return Response::TransactionEnd(Tag::new("ROLLBACK"));
        }
        (Some(Control::Commit), _) => {
            *status = TransactionStatus::Idle;
            return Response::TransactionEnd(Tag::new("COMMIT"));
        }
        (_, TransactionStatus::Error) => {
            return fail("25P02", ABORTED);
        }
        (Some(Control::Begin), _) => {
            *status = TransactionStatus::Transaction;
            return Response::TransactionStart(Tag::new("BEGIN"));
        }
        // a SET of a connection setting changes no data
        (None, TransactionStatus::Transaction) if !only_reads(text) && crate::settings::parse(text).is_none() => {
            return fail(
                "25006",
                format!(
                    "{word} inside a transaction block is refused: Stratalake commits each statement on its own, so a ROLLBACK could not undo it. Run writes outside BEGIN … COMMIT (autocommit: psycopg autocommit=True, JDBC setAutoCommit(true))"
                ),
            );
        }
        (None, _) => {}
    }
    if let Some(setting) = crate::settings::parse(text) {
        return setting_response(conn, setting, how.format);
    }
    let _running = match conn.start_statement() {
        Ok(r) => r,
        Err(refused) => return Response::Error(refused),
    };
    // a cancel request that came between statements stops nothing (as in PostgreSQL)
    conn.cancel.reset();
    let mut out: Option<Response> = None;
    let mut fields = None;
    let mut rows: Vec<PgWireResult<DataRow>> = Vec::new();
    let limit = conn.limits().max_result_size;
    let mut held = 0u64;
    let mut count: Option<u64> = None;
    let mut problem: Option<PgWireError> = None;
    let mut as_text: Vec<bool> = Vec::new();
    let counted = ROW_COUNT_STATEMENTS.contains(&word.as_str());
    let mut sink = |piece: Piece<'_>| -> stratalake::query::Result<()> {
        let stop = |e: PgWireError, problem: &mut Option<PgWireError>| {
            *problem = Some(e);
            Err(stratalake::query::Error::Unsupported(
                "the result could not be sent to the client".into(),
            ))
        };
        match piece {
            Piece::Start { schema, .. } => {
                if let Some(want) = how.described
                    && !same_types(want, schema)
                {
                    let types = |s: &SchemaRef| {
                        s.fields()
                            .iter()
                            .map(|f| values::pg_type(f.data_type()).name().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return stop(
                        error(
                            "ERROR",
                            "0A000",
                            format!(
                                "cached plan must not change result type (described as ({}), now ({})): prepare the statement again",
                                types(want),
                                types(schema)
                            ),
                        ),
                        &mut problem,
                    );
                }
                // a column described without a type (`SELECT $1`) was announced as text
                as_text = how.described.map_or_else(Vec::new, |d| {
                    d.fields().iter().map(|f| f.data_type() == &DataType::Null).collect()
                });
                let announced = match how.described {
                    Some(d) => values::announced(d),
                    None => schema.clone(),
                };
                fields = Some(values::fields(&announced, how.format));
                rows.clear();
            }
            Piece::Batch(batch) if as_text.contains(&true) => {
                match values::texts(batch, &as_text).and_then(|b| {
                    let f = fields.as_ref().expect("a result starts before its rows");
                    values::encode(f, &b)
                }) {
                    Ok(r) => {
                        held += r.iter().map(|row| row.data.len() as u64 + 7).sum::<u64>();
                        if held > limit {
                            return stop(crate::result_too_large(limit), &mut problem);
                        }
                        rows.extend(r.into_iter().map(Ok));
                    }
                    Err(e) => return stop(e, &mut problem),
                }
            }
            Piece::Batch(batch) => {
                if counted && batch.num_columns() == 1 && batch.column(0).data_type() == &DataType::UInt64 {
                    let c = batch.column(0).as_primitive::<UInt64Type>();
                    if !c.is_empty() && !c.is_null(0) {
                        count = Some(count.unwrap_or(0) + c.value(0));
                    }
                } else if let Some(f) = &fields {
                    match values::encode(f, batch) {
                        Ok(r) => {
                            held += r.iter().map(|row| row.data.len() as u64 + 7).sum::<u64>();
                            if held > limit {
                                return stop(crate::result_too_large(limit), &mut problem);
                            }
                            rows.extend(r.into_iter().map(Ok));
                        }
                        Err(e) => return stop(e, &mut problem),
                    }
                }
            }
            Piece::End { .. } => {
                let f = fields.take().expect("a result starts before it ends");
                out = Some(match count.take() {
                    Some(n) if counted => Response::Execution(count_tag(&word, n)),
                    _ => {
                        let mut q = QueryResponse::new(f, futures::stream::iter(std::mem::take(&mut rows)));
                        q.command_tag = "SELECT".into();
                        Response::Query(q)
                    }
                });
            }
            Piece::Done { message, .. } => out = Some(Response::Execution(Tag::new(&tag_of(message)))),
        }
        Ok(())
    };
    let sql = conn.sql();
    let r = match how.params {
        Some(params) => sql.execute_with_params(text, params, &mut sink).await,
        None => sql.execute_streaming(text, &mut sink).await,
    };
    if let Some(p) = problem {
        return Response::Error(Box::new(p.into()));
    }
    match r {
        Ok(()) => out.unwrap_or(Response::EmptyQuery),
        Err(e) => {
            let e = stratalake::Error::from(e);
            tracing::debug!(peer = %conn.peer, error = %e, "statement failed");
            Response::Error(Box::new(info_of(&e)))
        }
    }
}

/// The answer to a `SET`, `RESET` or `SHOW` of a connection setting (`settings.rs`).
fn setting_response(
    conn: &Conn,
    setting: Result<crate::settings::Setting, crate::Refusal>,
    format: Option<&Format>,
) -> Response {
    use crate::settings::Setting;
    use stratalake::arrow::array::StringArray;
    use stratalake::arrow::record_batch::RecordBatch;
    match setting {
        Err((code, message)) => fail(code, message),
        Ok(Setting::Show(name)) => {
            let schema = show_schema(name);
            let value = conn.settings.get(name);
            let fields = values::fields(&schema, format);
            let rows = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![value]))])
                .map_err(|e| error("ERROR", "XX000", e.to_string()))
                .and_then(|b| values::encode(&fields, &b));
            match rows {
                Ok(rows) => {
                    let mut q = QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
                    q.command_tag = "SHOW".into();
                    Response::Query(q)
                }
                Err(e) => Response::Error(Box::new(e.into())),
            }
        }
        Ok(s) => {
            conn.settings.apply(&s);
            let tag = if matches!(s, Setting::Set(..)) { "SET" } else { "RESET" };
            Response::Execution(Tag::new(tag))
        }
    }
}

/// The one text column `SHOW name` answers with.
pub(crate) fn show_schema(name: &str) -> SchemaRef {
    use stratalake::arrow::datatypes::{Field, Schema};
    Arc::new(Schema::new(vec![Field::new(
        crate::settings::display_name(name),
        DataType::Utf8,
        false,
    )]))
}

/// What a statement in a failed transaction block is told (25P02), as PostgreSQL says it.
pub(crate) const ABORTED: &str = "current transaction is aborted, commands ignored until end of transaction block";

/// An ERROR response with this SQLSTATE and message.
pub(crate) fn fail(code: &str, message: impl Into<String>) -> Response {
    Response::Error(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// Whether rows of `b` can be sent as the columns `a` announced: the same types, where a
/// column announced without a type (as text) takes any.
fn same_types(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.data_type() == &DataType::Null || values::pg_type(x.data_type()) == values::pg_type(y.data_type())
        })
}

/// PostgreSQL's command tag of a write: `INSERT 0 3`, `UPDATE 2`, `DELETE 1`, `MERGE 4`.
fn count_tag(word: &str, n: u64) -> Tag {
    let tag = Tag::new(word).with_rows(n as usize);
    if word == "INSERT" { tag.with_oid(0) } else { tag }
}

/// A command tag for a statement that returned no rows: its message, without control characters.
fn tag_of(message: &str) -> String {
    let t: String = message.chars().take(63).filter(|c| !c.is_control()).collect();
    if t.is_empty() { "OK".into() } else { t }
}

/// The SQLSTATE of an engine error.
pub(crate) fn sqlstate(e: &stratalake::Error) -> &'static str {
    use stratalake::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => "42501",
        K::Unauthenticated => "28P01",
        K::NotFound => "42P01",
        K::AlreadyExists => "42P07",
        K::Conflict => "40001",
        K::InvalidInput => "42601",
        K::Unsupported => "0A000",
        K::Cancelled | K::Timeout => "57014",
        K::ResourceExhausted => "53200",
        K::Locked => "55P03",
        K::Unavailable => "58000",
        K::DataLoss => "XX001",
        K::FailedPrecondition => "55000",
        K::PartlyCommitted | K::OutcomeUnknown => "40003",
        K::Config => "F0000",
        _ => "XX000",
    }
}

pub(crate) fn info_of(e: &stratalake::Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), sqlstate(e).into(), e.to_string())
}

pub(crate) fn to_pg(e: &stratalake::Error) -> PgWireError {
    PgWireError::UserError(Box::new(info_of(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_told_apart() {
        assert_eq!(control("BEGIN"), Some(Control::Begin));
        assert_eq!(control("begin isolation level read committed"), Some(Control::Begin));
        assert_eq!(control("START TRANSACTION READ ONLY"), Some(Control::Begin));
        assert_eq!(control("START"), None);
        assert_eq!(control("commit"), Some(Control::Commit));
        assert_eq!(control("END"), Some(Control::Commit));
        assert_eq!(control("ROLLBACK"), Some(Control::Rollback));
        assert_eq!(control("ABORT"), Some(Control::Rollback));
        assert_eq!(control("ROLLBACK TO SAVEPOINT a"), Some(Control::Savepoint));
        assert_eq!(control("ROLLBACK WORK TO a"), Some(Control::Savepoint));
        assert_eq!(control("SAVEPOINT a"), Some(Control::Savepoint));
        assert_eq!(control("SELECT 1"), None);
        assert_eq!(control("/* x */ BEGIN"), Some(Control::Begin));
    }

    #[test]
    fn tags_of_writes_and_commands() {
        assert_eq!(tag_of("table default.t created"), "table default.t created");
        assert_eq!(tag_of(""), "OK");
    }
}
