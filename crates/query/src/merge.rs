//! `MERGE INTO target USING source ON ... WHEN [NOT] MATCHED [AND ...] THEN ...`: an upsert as one
//! copy-on-write commit.
//!
//! The source (a table or a subquery) is read as the session's principal, so its policies apply.
//! The target's live rows are read whole; each target row may match at most one source row.
//! For each matched pair the first `WHEN MATCHED` clause whose condition holds decides: `UPDATE
//! SET ...` or `DELETE`. Each source row matching no target row goes through the `WHEN NOT
//! MATCHED` clauses: `INSERT [(cols)] VALUES (...)`. The files holding changed rows are
//! rewritten under fresh keys, and inserted rows added, in one `MERGE` commit; a concurrent
//! commit that removed those files is a conflict and nothing is committed. Rows written are
//! checked against the table's constraints like an UPDATE and an INSERT.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{Merge, MergeAction, MergeClauseKind, MergeInsertKind, Statement, TableFactor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use stratalake_table::quality::{Constraint, OnError};
use stratalake_table::read::{fetch_checked, read_file};
use stratalake_table::write::conform_batch;
use stratalake_table::{Access, WriteMode};

use super::{SqlSession, Touched, split_statements};
use crate::{Error, Result};
use stratalake_table::access::Operation;

const FILE: &str = "__sl_file";
const ROW: &str = "__sl_row";

/// Whether `tokens` are a MERGE statement.
pub(crate) fn is_merge(tokens: &[Token]) -> bool {
    tokens
        .iter()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_some_and(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("merge")))
}

fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

fn table_name(f: &TableFactor) -> Result<(Vec<String>, Option<String>)> {
    match f {
        TableFactor::Table { name, alias, .. } => Ok((
            name.0
                .iter()
                .map(|p| p.to_string().trim_matches('"').to_string())
                .collect(),
            alias.as_ref().map(|a| a.name.value.clone()),
        )),
        _ => Err(Error::Sql("MERGE INTO takes a table name".into())),
    }
}

/// A cast that fails on values that do not fit (instead of writing NULL), naming the column.
fn strict_cast(a: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef> {
    let opts = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(a, to, &opts)
        .map_err(|e| Error::Sql(format!("MERGE: cannot store a value of {column:?} as {to}: {e}")))
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

impl SqlSession {
    /// Run a MERGE statement; returns the number of rows inserted, updated or deleted.
    pub(crate) async fn merge(&self, tokens: Vec<Token>, touched: &Touched) -> Result<u64> {
        if self.as_of.is_some() {
            return Err(Error::Sql("MERGE is not allowed in a read-only --as-of session".into()));
        }
        let text: String = tokens.iter().map(|t| t.to_string()).collect();
        let stmt = Parser::new(&GenericDialect {}).try_with_sql(&text)?.parse_statement()?;
        let Statement::Merge(Merge {
            table,
            source,
            on,
            clauses,
            ..
        }) = stmt
        else {
            return Err(Error::Sql("expected a MERGE statement".into()));
        };
        let (target_parts, target_alias) = table_name(&table)?;
        let ident = self.resolve(&target_parts)?;
        touched.lock().expect("touched lock").push(ident.to_string());
        let state = self.catalog.state().await?;
        let subject = self.subject(&state)?;
        // MERGE reads the target's rows (its count and errors answer questions about them) and
        // changes them: SELECT and INSERT are both needed.
        subject.check(&Operation::ReadRows(&ident))?;
        subject.check(&Operation::WriteRows(&ident))?;
        if subject.row_filters.contains_key(&ident.to_string()) || subject.masks.contains_key(&ident.to_string()) {
            return Err(Error::Table(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("has row filters or masks on {ident}, so it may not MERGE into it"),
            }));
        }
        let t = self.catalog.table(&ident).await?;
        let snap = t.snapshot().await?;
        if snap
            .metadata
            .schema
            .columns
            .iter()
            .any(|c| !subject.superuser && !subject.cleared.contains(&c.classification))
        {
            return Err(Error::Table(stratalake_table::Error::PermissionDenied {
                principal: subject.principal.clone(),
                reason: format!("is not cleared for every column of {ident}, which MERGE needs"),
            }));
        }
        // The source, as this principal (its policies apply).
        let (source_sql, source_alias) = match &source {
            TableFactor::Table { name, alias, .. } => (
                format!("SELECT * FROM {name}"),
                alias.as_ref().map(|a| a.name.value.clone()).unwrap_or_else(|| {
                    name.0
                        .last()
                        .map(|p| p.to_string().trim_matches('"').to_string())
                        .unwrap_or_default()
                }),
            ),
            TableFactor::Derived { subquery, alias, .. } => (
                subquery.to_string(),
                alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .ok_or_else(|| Error::Sql("MERGE ... USING (subquery) needs an alias".into()))?,
            ),
            _ => return Err(Error::Sql("MERGE USING takes a table or a (subquery) AS alias".into())),
        };
        let mut stmts = split_statements(&source_sql)?;
        let df = self.plan(stmts.pop().unwrap_or_default(), touched, None).await?;
        let src_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let src_batches = df.collect().await?;
        let target_alias = target_alias.unwrap_or_else(|| ident.name.clone());
        if target_alias.eq_ignore_ascii_case(&source_alias) {
            return Err(Error::Sql(
                "MERGE: give the target and the source different names (aliases)".into(),
            ));
        }

        // The target's rows, with their file and position.
        let arrow = snap.metadata.schema.arrow_schema();
        let mut fields: Vec<Arc<Field>> = arrow.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(FILE, DataType::Utf8, false)));
        fields.push(Arc::new(Field::new(ROW, DataType::UInt64, false)));
        let tschema = Arc::new(Schema::new(fields));
        let ctxs = t.context();
        let root = t.ident().root();
        let mut target_batches = Vec::new();
        let mut by_file: HashMap<String, Vec<RecordBatch>> = HashMap::new();
        for f in snap.files.values() {
            let data = fetch_checked(ctxs.tiers.get(&f.tier)?, &root, f).await?;
            let mut n = 0u64;
            for b in read_file(
                data,
                &f.path,
                t.id(),
                f,
                &snap.metadata.schema,
                &ctxs.keyring,
                &Access::All,
                None,
            )
            .await?
            {
                let rows = b.num_rows();
                let mut cols = b.columns().to_vec();
                cols.push(Arc::new(StringArray::from(vec![f.path.as_str(); rows])));
                cols.push(Arc::new(UInt64Array::from_iter_values(n..n + rows as u64)));
                n += rows as u64;
                target_batches.push(RecordBatch::try_new(tschema.clone(), cols)?);
                by_file.entry(f.path.clone()).or_default().push(b);
            }
        }
        let ctx = SessionContext::new_with_config_rt(datafusion::prelude::SessionConfig::new(), self.runtime.env());
        ctx.register_table(
            target_alias.as_str(),
            Arc::new(MemTable::try_new(tschema.clone(), vec![target_batches])?),
        )?;
        ctx.register_table(
            source_alias.as_str(),
            Arc::new(MemTable::try_new(src_schema, vec![src_batches])?),
        )?;
        let (tq, sq) = (quote(&target_alias), quote(&source_alias));
        let on = on.to_string();
        // A target row may match one source row at most.
        let dup = collect(
            &ctx,
            &format!(
                "SELECT count(*) FROM (SELECT {tq}.{FILE}, {tq}.{ROW} FROM {tq} JOIN {sq} ON {on} GROUP BY 1, 2 HAVING count(*) > 1)"
            ),
        )
        .await?;
        if dup
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0)
            > 0
        {
            return Err(Error::Sql(
                "MERGE: a target row matches more than one source row; make the ON condition match one source row per target row".into(),
            ));
        }
        let cols: Vec<String> = arrow.fields().iter().map(|f| f.name().clone()).collect();
        let mut updated: Vec<RecordBatch> = Vec::new();
        let mut gone: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut inserted: Vec<RecordBatch> = Vec::new();
        let (mut n_upd, mut n_del, mut n_ins) = (0u64, 0u64, 0u64);
        let mut earlier_matched: Vec<String> = Vec::new();
        let mut earlier_not: Vec<String> = Vec::new();
        let unique_keys: BTreeSet<String> = snap
            .metadata
            .constraints
            .iter()
            .flat_map(|c| match c {
                Constraint::Unique { columns, .. } => columns.clone(),
                _ => Vec::new(),
            })
            .collect();
        for clause in &clauses {
            let pred = clause
                .predicate
                .as_ref()
                .map(|p| format!("coalesce(({p}), false)"))
                .unwrap_or_else(|| "true".into());
            let not_earlier = |earlier: &[String]| earlier.iter().map(|e| format!(" AND NOT {e}")).collect::<String>();
            match clause.clause_kind {
                MergeClauseKind::Matched => {
                    let cond = format!("{pred}{}", not_earlier(&earlier_matched));
                    earlier_matched.push(pred.clone());
                    let select = match &clause.action {
                        MergeAction::Delete { .. } => format!("{tq}.{FILE}, {tq}.{ROW}"),
                        MergeAction::Update(u) => {
                            let mut set: HashMap<String, String> = HashMap::new();
                            for a in &u.assignments {
                                let target = a.target.to_string();
                                let col = target
                                    .rsplit('.')
                                    .next()
                                    .unwrap_or(&target)
                                    .trim_matches('"')
                                    .to_string();
                                let Some(real) = cols.iter().find(|c| c.eq_ignore_ascii_case(&col)) else {
                                    return Err(Error::Sql(format!("MERGE: {ident} has no column {col:?} to SET")));
                                };
                                if unique_keys.contains(real) {
                                    return Err(Error::Sql(format!(
                                        "MERGE may not SET {real:?}: it is a key of a UNIQUE constraint"
                                    )));
                                }
                                set.insert(real.clone(), a.value.to_string());
                            }
                            let mut parts: Vec<String> = cols
                                .iter()
                                .map(|c| match set.get(c) {
                                    Some(e) => format!("({e}) AS {}", quote(c)),
                                    None => format!("{tq}.{} AS {}", quote(c), quote(c)),
                                })
                                .collect();
                            parts.push(format!("{tq}.{FILE}"));
                            parts.push(format!("{tq}.{ROW}"));
                            parts.join(", ")
                        }
                        MergeAction::Insert(_) => {
                            return Err(Error::Sql("MERGE: WHEN MATCHED takes UPDATE or DELETE".into()));
                        }
                    };
                    let b = collect(
                        &ctx,
                        &format!("SELECT {select} FROM {tq} JOIN {sq} ON {on} WHERE {cond}"),
                    )
                    .await?;
                    for b in b {
                        let n = b.num_rows();
                        if n == 0 {
                            continue;
                        }
                        let files = cast(b.column_by_name(FILE).expect("file"), &DataType::Utf8)?;
                        let files = files.as_any().downcast_ref::<StringArray>().expect("utf8");
                        let rows = b.column_by_name(ROW).expect("row");
                        let rows = rows.as_any().downcast_ref::<UInt64Array>().expect("u64");
                        for i in 0..n {
                            gone.entry(files.value(i).to_string())
                                .or_default()
                                .insert(rows.value(i));
                        }
                        if matches!(clause.action, MergeAction::Delete { .. }) {
                            n_del += n as u64;
                        } else {
                            n_upd += n as u64;
                            let vals: Vec<ArrayRef> = cols
                                .iter()
                                .enumerate()
                                .map(|(i, _)| {
                                    strict_cast(b.column(i), arrow.field(i).data_type(), arrow.field(i).name())
                                })
                                .collect::<std::result::Result<_, _>>()?;
                            updated.push(RecordBatch::try_new(arrow.clone(), vals)?);
                        }
                    }
                }
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => {
                    let cond = format!("{pred}{}", not_earlier(&earlier_not));
                    earlier_not.push(pred.clone());
                    let MergeAction::Insert(ins) = &clause.action else {
                        return Err(Error::Sql("MERGE: WHEN NOT MATCHED takes INSERT".into()));
                    };
                    let MergeInsertKind::Values(values) = &ins.kind else {
                        return Err(Error::Sql("MERGE: INSERT takes VALUES (...)".into()));
                    };
                    let [row] = values.rows.as_slice() else {
                        return Err(Error::Sql("MERGE: INSERT VALUES takes one row of expressions".into()));
                    };
                    let names: Vec<String> = if ins.columns.is_empty() {
                        cols.clone()
                    } else {
                        ins.columns
                            .iter()
                            .map(|c| {
                                let c = c.to_string().trim_matches('"').to_string();
                                cols.iter()
                                    .find(|x| x.eq_ignore_ascii_case(&c))
                                    .cloned()
                                    .ok_or_else(|| Error::Sql(format!("MERGE: {ident} has no column {c:?} to INSERT")))
                            })
                            .collect::<Result<_>>()?
                    };
                    if names.len() != row.len() {
                        return Err(Error::Sql(format!(
                            "MERGE: INSERT names {} column(s) but gives {} value(s)",
                            names.len(),
                            row.len()
                        )));
                    }
                    let given: HashMap<&String, String> = names.iter().zip(row.iter().map(|e| e.to_string())).collect();
                    let parts: Vec<String> = cols
                        .iter()
                        .map(|c| match given.get(c) {
                            Some(e) => format!("({e}) AS {}", quote(c)),
                            None => format!("NULL AS {}", quote(c)),
                        })
                        .collect();
                    let b = collect(
                        &ctx,
                        &format!(
                            "SELECT {} FROM {sq} WHERE NOT EXISTS (SELECT 1 FROM {tq} WHERE {on}) AND {cond}",
                            parts.join(", ")
                        ),
                    )
                    .await?;
                    for b in b {
                        if b.num_rows() == 0 {
                            continue;
                        }
                        n_ins += b.num_rows() as u64;
                        let vals: Vec<ArrayRef> = (0..cols.len())
                            .map(|i| strict_cast(b.column(i), arrow.field(i).data_type(), arrow.field(i).name()))
                            .collect::<std::result::Result<_, _>>()?;
                        inserted.push(RecordBatch::try_new(
                            Arc::new(Schema::new(
                                arrow
                                    .fields()
                                    .iter()
                                    .map(|f| f.as_ref().clone().with_nullable(true))
                                    .collect::<Vec<_>>(),
                            )),
                            vals,
                        )?);
                    }
                }
                _ => {
                    return Err(Error::Unsupported(
                        "MERGE: WHEN NOT MATCHED BY SOURCE is not supported; use a DELETE afterwards".into(),
                    ));
                }
            }
        }
        let affected = n_upd + n_del + n_ins;
        if affected == 0 {
            return Ok(0);
        }
        // Constraints: updated rows like an UPDATE, inserted rows like an INSERT.
        let validator = |keep: fn(&Constraint) -> bool| {
            let mut probe = snap.clone();
            probe.metadata.constraints.retain(keep);
            let t = t.clone();
            async move { crate::quality::validator(&t, &probe, OnError::Reject, true).await }
        };
        let mut v_upd = validator(|c| !matches!(c, Constraint::Unique { .. } | Constraint::Freshness { .. })).await?;
        // Inserted rows: every rule; a UNIQUE key already in the table (or twice among the
        // inserted rows) is refused whatever the ON DUPLICATE policy, as MERGE decides matching.
        let mut v_ins = {
            let mut probe = snap.clone();
            for c in &mut probe.metadata.constraints {
                if let Constraint::Unique { on_duplicate, .. } = c {
                    *on_duplicate = stratalake_table::quality::OnDuplicate::Reject;
                }
            }
            crate::quality::validator(&t, &probe, OnError::Reject, true).await?
        };
        let mut w = t.writer(&snap)?;
        let target_schema = w.schema().clone();
        let schema = &snap.metadata.schema;
        let mut removed = Vec::new();
        let written: Result<()> = async {
            for (path, rows) in &gone {
                let mut n = 0u64;
                for b in by_file.get(path).map(Vec::as_slice).unwrap_or_default() {
                    let keep: Vec<bool> = (0..b.num_rows() as u64).map(|i| !rows.contains(&(n + i))).collect();
                    n += b.num_rows() as u64;
                    let kept = filter_record_batch(b, &arrow::array::BooleanArray::from(keep))?;
                    if kept.num_rows() > 0 {
                        w.write(conform_batch(&kept, schema, &target_schema, "MERGE", &|r| {
                            format!("row {}", r + 1)
                        })?)
                        .await?;
                    }
                }
                removed.push(snap.files[path].clone());
            }
            for (batches, v, what) in [
                (&updated, &mut v_upd, "an updated row"),
                (&inserted, &mut v_ins, "an inserted row"),
            ] {
                for b in batches {
                    let b = conform_batch(b, schema, &target_schema, "MERGE", &|r| format!("{what} ({})", r + 1))?;
                    let b = match v.as_mut() {
                        Some(v) => v.check(b, "MERGE", &|_| what.to_string())?,
                        None => b,
                    };
                    w.write(b).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            w.abort().await;
            return Err(e);
        }
        let added = w.finish().await?;
        let params = BTreeMap::from([
            ("inserted".to_string(), n_ins.to_string()),
            ("updated".to_string(), n_upd.to_string()),
            ("deleted".to_string(), n_del.to_string()),
            ("files_rewritten".to_string(), removed.len().to_string()),
        ]);
        let exclusive = !unique_keys.is_empty();
        t.commit_write(
            &snap,
            added,
            &removed,
            &self.principal,
            WriteMode::Append,
            params,
            None,
            exclusive,
            Some("MERGE"),
        )
        .await?;
        Ok(affected)
    }
}
