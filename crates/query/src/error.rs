use datafusion::error::DataFusionError;

/// Errors of the SQL layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage core failed.
    #[error(transparent)]
    Table(#[from] stratalake_table::Error),
    /// The statement is not valid Stratalake SQL.
    #[error("SQL: {0}")]
    Sql(String),
    /// The statement is valid SQL but not supported here.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The statement was cancelled.
    #[error(
        "the statement was cancelled (a read returned nothing more; a write that had reached its commit may have committed: check the table's history)"
    )]
    Cancelled,
    /// The statement ran longer than the session's timeout and was stopped.
    #[error(
        "the statement ran longer than the statement timeout of {0:?} and was stopped (a write that had reached its commit may have committed: check the table's history)"
    )]
    Timeout(std::time::Duration),
    /// The statement needed more memory than the lake's query memory pool had left.
    #[error(
        "out of query memory: {0} (the lake's [query] memory_limit is shared by all running statements and spilling to disk is off: raise the limit, run it when fewer statements run, or narrow the query)"
    )]
    OutOfMemory(String),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // Surface our own errors carried through DataFusion as themselves.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<stratalake_table::Error>() {
                Ok(t) => Error::Table(*t),
                Err(other) => match other.downcast::<Error>() {
                    Ok(q) => *q,
                    Err(other) => Error::DataFusion(Box::new(DataFusionError::External(other))),
                },
            },
            DataFusionError::Context(ctx, inner) => match Error::from(*inner) {
                Error::DataFusion(d) => Error::DataFusion(Box::new(DataFusionError::Context(ctx, d))),
                other => other,
            },
            DataFusionError::ResourcesExhausted(detail) => Error::OutOfMemory(detail),
            other => match other.find_root() {
                DataFusionError::ResourcesExhausted(detail) => Error::OutOfMemory(detail.clone()),
                _ => Error::DataFusion(Box::new(other)),
            },
        }
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        Error::Sql(e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn external(e: stratalake_table::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Table(e.into())
    }
}
