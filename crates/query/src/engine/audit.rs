//! Audit records and the system tables: what a statement touched ([`Touched`]), the record
//! each statement leaves in the lake's audit log (a statement whose record cannot be written
//! fails), and the `_system` schema, where lake administrators read the audit log as a table.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use stratalake_table::access::{Operation, Subject};

use super::SqlSession;
use crate::{Error, Result};

/// What a statement touched, for its audit record: tables, and the policies applied to them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    tables: Arc<std::sync::Mutex<Vec<String>>>,
    pub(crate) policies: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Touched {
    /// The tables.
    pub(crate) fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, Vec<String>>> {
        self.tables.lock()
    }
}

/// Schema of the lake's own tables (`_system.audit`); names starting with `_` are reserved.
pub const SYSTEM_SCHEMA: &str = "_system";

/// The audit log's records as an in-memory table (`_system.audit`).
fn audit_table(records: &[stratalake_table::audit::Record]) -> Result<datafusion::datasource::MemTable> {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("principal", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("policies", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("hash", DataType::Utf8, false),
    ]));
    let col = |f: &dyn Fn(&stratalake_table::audit::Record) -> String| -> ArrayRef {
        Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(records.iter().map(|r| r.seq).collect::<Vec<_>>())),
            Arc::new(
                TimestampMillisecondArray::from(records.iter().map(|r| r.time_ms).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            col(&|r| r.event.principal.clone()),
            col(&|r| r.event.kind.clone()),
            col(&|r| r.event.statement.clone()),
            col(&|r| r.event.tables.join(", ")),
            col(&|r| r.event.policies.join("; ")),
            Arc::new(Int64Array::from(
                records
                    .iter()
                    .map(|r| r.event.rows.map(|n| n as i64))
                    .collect::<Vec<_>>(),
            )),
            col(&|r| r.event.outcome.to_string()),
            Arc::new(StringArray::from(
                records.iter().map(|r| r.event.error.clone()).collect::<Vec<_>>(),
            )),
            col(&|r| r.hash.clone()),
        ],
    )
    .map_err(|e| Error::DataFusion(Box::new(e.into())))?;
    Ok(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?)
}

impl SqlSession {
    /// Record the statement in the audit log. A statement whose record cannot be written fails:
    /// nothing is answered unaudited (a write that committed says so; a statement that failed
    /// anyway keeps its own error, and the missing record is logged).
    /// `writes`: whether the statement can change anything (then an audit failure after it ran
    /// says that its changes are committed).
    pub(super) async fn audit<T>(
        &self,
        text: &str,
        touched: &Touched,
        r: &Result<T>,
        rows: Option<u64>,
        writes: bool,
    ) -> Result<()> {
        let failure = r.as_ref().err().map(|e| {
            let denied = matches!(e, Error::Table(stratalake_table::Error::PermissionDenied { .. }));
            (e.to_string(), denied)
        });
        let tables = touched.lock().expect("touched lock").clone();
        let policies = touched.policies.lock().expect("touched lock").clone();
        let failed = failure.is_some();
        let ran = !failed && writes;
        let (kind, text) = match &self.audit_as {
            Some((kind, note)) => (kind.as_str(), std::borrow::Cow::Owned(format!("{text} {note}"))),
            None => ("sql", std::borrow::Cow::Borrowed(text)),
        };
        let written = self
            .catalog
            .audit()
            .record_with_policies(&self.principal, kind, &text, tables, policies, rows, failure)
            .await;
        match written {
            Ok(_) => Ok(()),
            // the statement failed on its own: its error (perhaps "the commit may have landed")
            // says more than the audit log's, which usually failed for the same reason
            Err(e) if failed => {
                tracing::warn!(kind, error = %e, "the audit record of a failed statement could not be written");
                Ok(())
            }
            // what it changed is committed: the caller must hear that its record is missing
            Err(e) if ran => Err(e.after_success().into()),
            // a read is not answered unaudited
            Err(e) => Err(e.into()),
        }
    }

    /// The `_system` schema: the audit log as a table, for lake administrators only.
    pub(super) async fn system_schema(&self, subject: &Subject) -> Result<Arc<MemorySchemaProvider>> {
        subject.check(&Operation::AdministerLake)?;
        let system = Arc::new(MemorySchemaProvider::new());
        system.register_table(
            "audit".into(),
            Arc::new(audit_table(&self.catalog.audit().records().await?)?),
        )?;
        Ok(system)
    }
}
