//! Running statements: each statement of the text goes to Stratalake DDL, to MERGE, or to
//! DataFusion, within the session's cancellation and timeout and the panic guard, and is audited;
//! its result is handed over whole ([`SqlSession::execute`]), streamed as [`Piece`]s
//! ([`SqlSession::execute_streaming`]) or planned as a frame ([`SqlSession::sql`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::audit::Touched;
use super::statements::{is_read_only, split_statements, statements_with_lines, tokens_first_word};
use super::{Cancel, SqlSession, guarded, merge};
use crate::ddl;
use crate::{Error, Result};

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
}
