//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`: a query's rows to the
//! client in PostgreSQL's text, CSV or binary COPY format (psql's `\copy ... to`, the ADBC and
//! JDBC drivers' bulk reads), run by the principal's session under its policies and audited as
//! an export. COPY FROM and COPY to a file on the server are refused.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::response::TransactionStatus;
use stratalake::datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use stratalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use stratalake::datafusion::sql::sqlparser::parser::Parser;
use stratalake::query::{Piece, first_word, is_query};

use crate::auth::Conn;
use crate::values;

/// The format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Form {
    Text,
    Csv,
    Binary,
}

/// A `COPY ... TO STDOUT` to run.
#[derive(Debug, Clone)]
pub(crate) struct CopyOut {
    /// The query whose rows are copied.
    pub query: String,
    form: Form,
    header: bool,
    delimiter: char,
    null: String,
    quote: char,
    escape: char,
}

use crate::Refusal;

/// Whether `text` is a COPY statement, and if so what to copy, or why it is refused.
pub(crate) fn parse(text: &str) -> Option<Result<CopyOut, Refusal>> {
    if first_word(text) != "COPY" {
        return None;
    }
    Some(parse_copy(text))
}

fn unsupported(what: impl Into<String>) -> Refusal {
    ("0A000", what.into())
}

fn parse_copy(text: &str) -> Result<CopyOut, Refusal> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, text).map_err(|e| ("42601", e.to_string()))?;
    let Some(Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    }) = stmts.pop()
    else {
        return Err(("42601", "not a COPY statement".into()));
    };
    if !to {
        return Err(unsupported(
            "COPY FROM is not served: load data with INSERT or `stratalake ingest`",
        ));
    }
    if target != CopyTarget::Stdout {
        return Err(unsupported(
            "COPY TO a file or program on the server is refused: copy TO STDOUT (psql: \\copy ... to 'file')",
        ));
    }
    let query = match source {
        CopySource::Query(q) => q.to_string(),
        CopySource::Table { table_name, columns } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table { table_name, columns } => {
            let cols: Vec<String> = columns.iter().map(ToString::to_string).collect();
            format!("SELECT {} FROM {table_name}", cols.join(", "))
        }
    };
    let mut c = CopyOut {
        query,
        form: Form::Text,
        header: false,
        delimiter: '\t',
        null: "\\N".into(),
        quote: '"',
        escape: '"',
    };
    let (mut delimiter, mut null, mut escape) = (None, None, None);
    for o in options {
        match o {
            CopyOption::Format(f) => {
                c.form = match f.value.to_ascii_lowercase().as_str() {
                    "text" => Form::Text,
                    "csv" => Form::Csv,
                    "binary" => Form::Binary,
                    other => return Err(("22023", format!("COPY format \"{other}\" not recognized"))),
                }
            }
            CopyOption::Delimiter(d) => delimiter = Some(d),
            CopyOption::Null(n) => null = Some(n),
            CopyOption::Header(h) => c.header = h,
            CopyOption::Quote(q) => c.quote = q,
            CopyOption::Escape(e) => escape = Some(e),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    for o in legacy_options {
        match o {
            CopyLegacyOption::Binary => c.form = Form::Binary,
            CopyLegacyOption::Delimiter(d) => delimiter = Some(d),
            CopyLegacyOption::Null(n) => null = Some(n),
            CopyLegacyOption::Header => c.header = true,
            CopyLegacyOption::Csv(csv) => {
                c.form = Form::Csv;
                for o in csv {
                    match o {
                        CopyLegacyCsvOption::Header => c.header = true,
                        CopyLegacyCsvOption::Quote(q) => c.quote = q,
                        CopyLegacyCsvOption::Escape(e) => escape = Some(e),
                        other => return Err(unsupported(format!("COPY option {other} is not supported"))),
                    }
                }
            }
            other => return Err(unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    if c.form == Form::Csv {
        c.delimiter = ',';
        c.null = String::new();
    }
    c.delimiter = delimiter.unwrap_or(c.delimiter);
    c.null = null.unwrap_or(c.null);
    c.escape = escape.unwrap_or(c.quote);
    if c.header && c.form != Form::Csv {
        return Err(unsupported("COPY HEADER is available only in CSV mode"));
    }
    if matches!(c.delimiter, '\r' | '\n' | '\\') || c.form == Form::Csv && c.delimiter == c.quote {
        return Err((
            "22023",
            "COPY delimiter cannot be a newline, a backslash or the quote".into(),
        ));
    }
    if !is_query(&c.query) {
        return Err(unsupported("COPY TO STDOUT copies the rows of a query or a table"));
    }
    Ok(c)
}

/// The PGCOPY binary header: signature, flags, header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl CopyOut {
    /// One row's COPY bytes from its fields (each as `values::encode` wrote it).
    fn row(&self, fields: &[Option<&[u8]>], out: &mut BytesMut) {
        match self.form {
            Form::Binary => {
                out.put_i16(fields.len() as i16);
                for f in fields {
                    match f {
                        Some(v) => {
                            out.put_i32(v.len() as i32);
                            out.put_slice(v);
                        }
                        None => out.put_i32(-1),
                    }
                }
            }
            Form::Text | Form::Csv => {
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.put_slice(self.delimiter.to_string().as_bytes());
                    }
                    match f {
                        None => out.put_slice(self.null.as_bytes()),
                        Some(v) => self.value(&String::from_utf8_lossy(v), out),
                    }
                }
                out.put_u8(b'\n');
            }
        }
    }

    /// A text value as the text or CSV format writes it.
    fn value(&self, v: &str, out: &mut BytesMut) {
        if self.form == Form::Text {
            for c in v.chars() {
                match c {
                    '\\' => out.put_slice(b"\\\\"),
                    '\n' => out.put_slice(b"\\n"),
                    '\r' => out.put_slice(b"\\r"),
                    '\t' => out.put_slice(b"\\t"),
                    c if c == self.delimiter => {
                        out.put_u8(b'\\');
                        out.put_slice(c.to_string().as_bytes());
                    }
                    c => out.put_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            return;
        }
        let needs = v.is_empty()
            || v == self.null
            || v.contains([self.delimiter, self.quote, '\n', '\r'])
            || v.contains(self.escape);
        if !needs {
            out.put_slice(v.as_bytes());
            return;
        }
        let mut s = String::with_capacity(v.len() + 2);
        s.push(self.quote);
        for c in v.chars() {
            if c == self.quote || c == self.escape {
                s.push(self.escape);
            }
            s.push(c);
        }
        s.push(self.quote);
        out.put_slice(s.as_bytes());
    }
}

/// The fields of an encoded row (length-prefixed, -1 for NULL).
fn split_fields(data: &[u8]) -> Vec<Option<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = (at + len as usize).min(data.len());
            out.push(Some(&data[at..end]));
            at = end;
        }
    }
    out
}

/// Run a COPY TO STDOUT: the query runs to its end (an error sends no partial copy), then the
/// rows go to the client, and the answer is `COPY n`.
pub(crate) async fn run<C>(
    conn: &Conn,
    status: TransactionStatus,
    client: &mut C,
    copy: CopyOut,
) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if status == TransactionStatus::Error {
        return Ok(crate::query::fail("25P02", crate::query::ABORTED));
    }
    let running = match conn.start_statement() {
        Ok(r) => r,
        Err(refused) => return Ok(Response::Error(refused)),
    };
    conn.cancel.reset();
    let form = match copy.form {
        Form::Text => "text",
        Form::Csv => "csv",
        Form::Binary => "binary",
    };
    let sql = conn
        .sql()
        .with_audit_as("export", &format!("{} -- COPY TO STDOUT ({form})", conn.note));
    let format = if copy.form == Form::Binary {
        pgwire::api::portal::Format::UnifiedBinary
    } else {
        pgwire::api::portal::Format::UnifiedText
    };
    let mut fields: Option<std::sync::Arc<Vec<FieldInfo>>> = None;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut rows = 0usize;
    let mut problem: Option<PgWireError> = None;
    let mut buf = BytesMut::new();
    let limit = conn.limits().max_result_size;
    let mut held = 0u64;
    let r = sql
        .execute_streaming(&copy.query, &mut |piece: Piece<'_>| {
            match piece {
                Piece::Start { schema, .. } => {
                    fields = Some(values::fields(schema, Some(&format)));
                    if copy.form == Form::Binary {
                        buf.put_slice(BINARY_HEADER);
                    }
                    if copy.header {
                        let names: Vec<&[u8]> = schema.fields().iter().map(|f| f.name().as_bytes()).collect();
                        let names: Vec<Option<&[u8]>> = names.into_iter().map(Some).collect();
                        copy.row(&names, &mut buf);
                        chunks.push(buf.split().freeze());
                    }
                }
                Piece::Batch(batch) => {
                    let f = fields.as_ref().expect("a result starts before its rows");
                    match values::encode(f, batch) {
                        Ok(encoded) => {
                            // one CopyData per row, as PostgreSQL sends them (drivers parse
                            // a row per message); the binary header goes with the first
                            for row in encoded {
                                copy.row(&split_fields(&row.data), &mut buf);
                                rows += 1;
                                held += buf.len() as u64;
                                chunks.push(buf.split().freeze());
                            }
                            if held > limit {
                                problem = Some(crate::result_too_large(limit));
                                return Err(stratalake::query::Error::Unsupported(
                                    "the copy is larger than the server's max_result_size".into(),
                                ));
                            }
                        }
                        Err(e) => {
                            problem = Some(e);
                            return Err(stratalake::query::Error::Unsupported(
                                "the rows could not be written in the COPY format".into(),
                            ));
                        }
                    }
                }
                Piece::End { .. } | Piece::Done { .. } => {}
            }
            Ok(())
        })
        .await;
    // the statement is over: sending its rows (as slow as the client reads) holds no place
    // among the principal's running statements
    drop(running);
    if let Some(p) = problem {
        return Ok(Response::Error(Box::new(p.into())));
    }
    if let Err(e) = r {
        let e = stratalake::Error::from(e);
        return Ok(Response::Error(Box::new(crate::query::info_of(&e))));
    }
    let columns = fields.as_ref().map_or(0, |f| f.len());
    if copy.form == Form::Binary {
        // the trailer in a message of its own (with the header when there were no rows)
        buf.put_i16(-1);
        chunks.push(buf.split().freeze());
    }
    let code = i16::from(copy.form == Form::Binary);
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            code as i8,
            columns as i16,
            vec![code; columns],
        )))
        .await?;
    for c in chunks.into_iter().filter(|c| !c.is_empty()) {
        client.feed(PgWireBackendMessage::CopyData(CopyData::new(c))).await?;
    }
    client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_statements_are_read_with_their_options_or_refused_by_name() {
        let c = parse("COPY (SELECT 1) TO STDOUT").unwrap().unwrap();
        assert_eq!((c.form, c.delimiter, c.null.as_str()), (Form::Text, '\t', "\\N"));
        let c = parse("copy permits (id, owner) to stdout with (format csv, header)")
            .unwrap()
            .unwrap();
        assert_eq!((c.form, c.header, c.delimiter), (Form::Csv, true, ','));
        assert_eq!(c.query, "SELECT id, owner FROM permits");
        let c = parse("COPY (SELECT 1) TO STDOUT csv header").unwrap().unwrap();
        assert_eq!((c.form, c.header), (Form::Csv, true));
        let c = parse("COPY (SELECT 1) TO STDOUT (FORMAT binary)").unwrap().unwrap();
        assert_eq!(c.form, Form::Binary);
        assert!(parse("SELECT 1").is_none());
        for (sql, code) in [
            ("COPY permits FROM STDIN", "0A000"),
            ("COPY permits TO '/etc/passwd'", "0A000"),
            ("COPY permits TO PROGRAM 'sh'", "0A000"),
            ("COPY (SELECT 1) TO STDOUT (FORMAT xml)", "22023"),
            ("COPY (SELECT 1) TO STDOUT (HEADER)", "0A000"),
            ("COPY (SELECT 1) TO STDOUT (FREEZE)", "0A000"),
            ("COPY (SELECT 1 TO STDOUT", "42601"),
        ] {
            let e = parse(sql).unwrap().unwrap_err();
            assert_eq!(e.0, code, "{sql}: {e:?}");
        }
    }

    #[test]
    fn rows_are_written_in_text_and_csv_with_their_escapes() {
        let text = parse("COPY (SELECT 1) TO STDOUT").unwrap().unwrap();
        let mut out = BytesMut::new();
        text.row(&[Some(b"a\tb\\c\nd"), None, Some(b"")], &mut out);
        assert_eq!(&out[..], b"a\\tb\\\\c\\nd\t\\N\t\n");
        let csv = parse("COPY (SELECT 1) TO STDOUT (FORMAT csv)").unwrap().unwrap();
        let mut out = BytesMut::new();
        csv.row(
            &[
                Some(b"plain"),
                Some(b"with, comma"),
                Some(b"say \"hi\""),
                None,
                Some(b""),
            ],
            &mut out,
        );
        assert_eq!(&out[..], b"plain,\"with, comma\",\"say \"\"hi\"\"\",,\"\"\n");
        let bin = parse("COPY (SELECT 1) TO STDOUT (FORMAT binary)").unwrap().unwrap();
        let mut out = BytesMut::new();
        bin.row(&[Some(&[0, 0, 0, 7]), None], &mut out);
        assert_eq!(&out[..], &[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]);
    }
}
