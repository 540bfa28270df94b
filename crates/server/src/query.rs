//! Statements of an authenticated connection (simple query protocol): run by the principal's
//! own [`stratalake::SqlSession`], so its grants, row filters, masks and clearances apply and each
//! statement is audited under its name; results go back as PostgreSQL text rows, errors with
//! their SQLSTATE.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use stratalake::arrow::array::{Array, RecordBatch};
use stratalake::arrow::datatypes::{DataType, SchemaRef};
use stratalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use stratalake::query::Piece;

use crate::Shared;
use crate::auth::{Conn, error};

/// The statement handler of one connection.
pub(crate) struct Statements {
    shared: Arc<Shared>,
}

impl Statements {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// The columns and encoded rows of the result being collected.
type Pending = (Arc<Vec<FieldInfo>>, Vec<PgWireResult<DataRow>>);

/// What one statement gave, collected as pgwire responses.
struct Collect {
    out: Vec<Response>,
    current: Option<Pending>,
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
        let conn = client
            .session_extensions()
            .get::<Conn>()
            .ok_or_else(|| error("FATAL", "28000", "not logged in"))?;
        // A principal dropped since the login loses its connection at its next statement (grants
        // and policies are read afresh by every statement anyway).
        match self.shared.lake.principal_exists(&conn.principal).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(error(
                    "FATAL",
                    "28000",
                    format!(
                        "principal \"{}\" no longer exists",
                        crate::auth::printable(&conn.principal)
                    ),
                ));
            }
            Err(e) => return Err(to_pg(&e)),
        }
        // a cancel request that came between statements stops nothing (as in PostgreSQL)
        conn.cancel.reset();
        let mut c = Collect {
            out: Vec::new(),
            current: None,
        };
        let r = conn
            .sql
            .execute_streaming(query, &mut |piece: Piece<'_>| {
                match piece {
                    Piece::Start { schema, .. } => c.current = Some((fields(schema), Vec::new())),
                    Piece::Batch(batch) => {
                        if let Some((fields, rows)) = &mut c.current {
                            rows.extend(encode(fields, batch));
                        }
                    }
                    Piece::End { .. } => {
                        if let Some((fields, rows)) = c.current.take() {
                            c.out
                                .push(Response::Query(QueryResponse::new(fields, futures::stream::iter(rows))));
                        }
                    }
                    Piece::Done { message, .. } => c.out.push(Response::Execution(Tag::new(&tag_of(message)))),
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            let e = stratalake::Error::from(e);
            tracing::debug!(peer = %conn.peer, error = %e, "statement failed");
            c.out.push(Response::Error(Box::new(info_of(&e))));
        }
        Ok(c.out)
    }
}

/// A command tag for a statement that returned no rows: its first words in capitals.
fn tag_of(message: &str) -> String {
    let t: String = message.chars().take(63).filter(|c| !c.is_control()).collect();
    if t.is_empty() { "OK".into() } else { t }
}

/// The PostgreSQL type a column is announced as (values are sent as text).
fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::VARCHAR,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        _ => Type::TEXT,
    }
}

fn fields(schema: &SchemaRef) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        schema
            .fields()
            .iter()
            .map(|f| FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), FieldFormat::Text))
            .collect(),
    )
}

/// Every row of `batch` as text, the way PostgreSQL writes each type.
fn encode(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> Vec<PgWireResult<DataRow>> {
    let options = FormatOptions::new()
        .with_null("")
        .with_date_format(Some("%Y-%m-%d"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    let formatters: Result<Vec<ArrayFormatter<'_>>, _> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect();
    let formatters = match formatters {
        Ok(f) => f,
        Err(e) => return vec![Err(error("ERROR", "XX000", format!("cannot send the result: {e}")))],
    };
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut r = Ok(());
        for (col, f) in batch.columns().iter().zip(&formatters) {
            let value: Option<String> = if col.is_null(row) {
                None
            } else {
                Some(text(col.data_type(), f.value(row).to_string()))
            };
            if let Err(e) = encoder.encode_field(&value) {
                r = Err(e);
                break;
            }
        }
        rows.push(r.map(|()| encoder.take_row()));
    }
    rows
}

/// Arrow's text of a value in PostgreSQL's spelling where the two differ.
fn text(t: &DataType, s: String) -> String {
    match t {
        DataType::Boolean => if s == "true" { "t" } else { "f" }.into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            format!("\\x{s}")
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => match s.as_str() {
            "inf" => "Infinity".into(),
            "-inf" => "-Infinity".into(),
            _ => s,
        },
        _ => s,
    }
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

fn info_of(e: &stratalake::Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), sqlstate(e).into(), e.to_string())
}

fn to_pg(e: &stratalake::Error) -> PgWireError {
    PgWireError::UserError(Box::new(info_of(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spellings_of_values() {
        assert_eq!(text(&DataType::Boolean, "true".into()), "t");
        assert_eq!(text(&DataType::Boolean, "false".into()), "f");
        assert_eq!(text(&DataType::Binary, "00ff".into()), "\\x00ff");
        assert_eq!(text(&DataType::Float64, "inf".into()), "Infinity");
        assert_eq!(text(&DataType::Utf8, "inf".into()), "inf");
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), Type::NUMERIC);
        assert_eq!(tag_of("table default.t created"), "table default.t created");
        assert_eq!(tag_of(""), "OK");
    }
}
