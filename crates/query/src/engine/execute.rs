//! Running statements: each statement of the text goes to Stratalake DDL, to MERGE, or to
//! DataFusion, within the session's cancellation and timeout and the panic guard, and is audited;
//! its result is handed over whole ([`SqlSession::execute`]), streamed as [`Piece`]s
//! ([`SqlSession::execute_streaming`]) or planned as a frame ([`SqlSession::sql`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::audit::Touched;
use super::statements::{ROW_COUNT_STATEMENTS, first_word, only_reads, split_statements, statements_with_lines};
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

/// What a statement takes and returns ([`SqlSession::describe`]).
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// The type of each parameter, `$1` first (`None`: the statement leaves it open).
    pub params: Vec<Option<DataType>>,
    /// The columns of its rows; `None` for a statement that returns none.
    pub columns: Option<SchemaRef>,
}

/// Exactly one statement of `sql`, with its line.
fn one_statement(sql: &str) -> Result<(u64, Vec<Token>)> {
    let mut stmts = statements_with_lines(sql)?;
    if stmts.len() != 1 {
        return Err(Error::Sql(format!(
            "expected one statement, found {} (a prepared statement holds one)",
            stmts.len()
        )));
    }
    Ok(stmts.pop().expect("one"))
}

/// The types of a plan's placeholders, `$1` first. Placeholders must be numbered from `$1`
/// without gaps; other spellings (`?`, `$name`) are refused.
fn placeholder_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let found = plan.get_parameter_types()?;
    let mut out = vec![None; found.len()];
    for (id, t) in found {
        let n = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=out.len()).contains(n))
            .ok_or_else(|| {
                Error::Sql(format!(
                    "parameter {id}: parameters are written $1, $2, … numbered from $1 without gaps"
                ))
            })?;
        out[n - 1] = t;
    }
    Ok(out)
}

/// How a statement's parameters appear in its audit record, after its text: each as an SQL
/// literal (`'O''Brien'`, `42`, `NULL`), cut at 200 characters, control and invisible
/// formatting characters (bidi overrides, zero-width) shown as `?`.
fn audit_params(values: &[datafusion::common::metadata::ScalarAndMetadata]) -> String {
    const MAX: usize = 200;
    let shown: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let literal = match &v.value {
                v if v.is_null() => "NULL".to_string(),
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                    let mut out: String = s.chars().take(MAX).map(visible).collect();
                    out = out.replace('\'', "''");
                    let more = if s.chars().nth(MAX).is_some() { "…" } else { "" };
                    format!("'{out}'{more}")
                }
                other => {
                    let text = other.to_string();
                    let out: String = text.chars().take(MAX).map(visible).collect();
                    let more = if text.chars().nth(MAX).is_some() { "…" } else { "" };
                    if matches!(
                        other.data_type(),
                        DataType::Utf8 | DataType::Binary | DataType::Date32 | DataType::Timestamp(..)
                    ) {
                        format!("'{}'{more}", out.replace('\'', "''"))
                    } else {
                        format!("{out}{more}")
                    }
                }
            };
            format!("${} = {literal}", i + 1)
        })
        .collect();
    format!(" -- parameters: {}", shown.join(", "))
}

/// A character as an audit record shows it: control and invisible formatting characters
/// (which could hide or reorder what a reader sees) as `?`.
fn visible(c: char) -> char {
    let invisible = matches!(
        c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    );
    if c.is_control() || invisible { '?' } else { c }
}

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
            Box::pin(self.run_streaming(stmt, line, None, sink)).await?;
        }
        Ok(())
    }

    /// Run one statement whose placeholders (`$1`, `$2`, …) take `params`, in order, handing
    /// its result to `sink` as [`SqlSession::execute_streaming`] does. The values must have the
    /// types [`SqlSession::describe`] gave (cast them first); the audit record shows them after
    /// the statement's text. Stratalake's own statements (DDL, grants, MERGE) take no parameters.
    pub async fn execute_with_params(&self, sql: &str, params: Vec<ScalarValue>, sink: &mut Sink<'_>) -> Result<()> {
        let (line, tokens) = one_statement(sql)?;
        if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(Error::Cancelled);
        }
        Box::pin(self.run_streaming(
            tokens,
            line,
            Some(ParamValues::List(params.into_iter().map(Into::into).collect())),
            sink,
        ))
        .await
    }

    /// What one statement would return, without running it: the types of its parameters
    /// (`$1` first; `None` where the statement does not fix one) and its columns (`None` for a
    /// statement without rows: DDL, INSERT, UPDATE, DELETE, MERGE). Planned as the session's
    /// principal, so a table it may not read fails here as it would when run; such a failure is
    /// audited, a description that succeeds is not (nothing was read).
    pub async fn describe(&self, sql: &str) -> Result<Described> {
        let (_, tokens) = one_statement(sql)?;
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let touched = Touched::default();
        let word = first_word(&text);
        let r = guarded(async {
            if ddl::parse(&tokens)?.is_some() || merge::is_merge(&tokens) {
                if let Some(p) = tokens.iter().find(|t| matches!(t, Token::Placeholder(_))) {
                    return Err(Error::Unsupported(format!(
                        "{word} statements take no parameters (found {p}); write the values into the statement"
                    )));
                }
                return Ok(Described::default());
            }
            let (_, plan) = self.logical_plan(tokens, &touched).await?;
            let params = placeholder_types(&plan)?;
            let columns = if ROW_COUNT_STATEMENTS.contains(&word.as_str()) || plan.schema().fields().is_empty() {
                None
            } else {
                Some(Arc::new(plan.schema().as_arrow().clone()))
            };
            Ok(Described { params, columns })
        })
        .await
        .and_then(|r| r);
        if r.is_err() {
            self.audit(&text, &touched, &r, None, !only_reads(&text)).await?;
        }
        r
    }

    async fn run_streaming(
        &self,
        tokens: Vec<Token>,
        line: u64,
        params: Option<ParamValues>,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        let mut text: String = tokens.iter().map(|t| t.to_string()).collect();
        if let Some(ParamValues::List(values)) = &params {
            text.push_str(&audit_params(values));
        }
        let touched = Touched::default();
        let mut rows: Option<u64> = None;
        let r = self
            .limited(async {
                guarded(async {
                    let stratalake_own = ddl::parse(&tokens)?;
                    if params.is_some() && (stratalake_own.is_some() || merge::is_merge(&tokens)) {
                        return Err(Error::Unsupported(format!(
                            "{} statements take no parameters; write the values into the statement",
                            first_word(&text)
                        )));
                    }
                    if let Some(d) = stratalake_own {
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
                    let df = self.plan(tokens, &touched, params.as_ref()).await?;
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
        let writes = !only_reads(&text);
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
            self.plan(tokens, &touched, None).await
        })
        .await
        .and_then(|r| r);
        // A frame is audited when planned: its rows are not known yet.
        let writes = !only_reads(&text);
        self.audit(&text, &touched, &r, None, writes).await?;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_in_audit_records_are_literals_that_hide_nothing() {
        let v = |s: ScalarValue| datafusion::common::metadata::ScalarAndMetadata::from(s);
        let shown = audit_params(&[
            v(ScalarValue::Int64(Some(42))),
            v(ScalarValue::Utf8(Some("O'Brien\u{202E}, $2 = 1\n".into()))),
            v(ScalarValue::Utf8(None)),
            v(ScalarValue::Utf8(Some("x".repeat(300)))),
        ]);
        assert!(
            shown.starts_with(" -- parameters: $1 = 42, $2 = 'O''Brien?, $2 = 1?', $3 = NULL, $4 = 'xxx"),
            "{shown}"
        );
        assert!(shown.ends_with(&format!("{}'…", "x".repeat(10))), "{shown}");
        assert_eq!(shown.matches('x').count(), 200);
    }
}
