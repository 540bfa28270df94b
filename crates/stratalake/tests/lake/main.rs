//! Library integration tests: one binary, modules per area.

mod backup;
mod compat;
mod conformance;
mod crashes;
mod credentials;
mod faults;
mod keys;
mod logins;
mod maintenance;
mod sessions;
mod slt;
mod tiering;

use std::sync::Arc;

use stratalake::arrow::array::{Int64Array, RecordBatch, StringArray};
use stratalake::arrow::datatypes::{DataType, SchemaRef};
use stratalake::{ColumnDef, LakeConfig, PartitionField, Session, TableSchema};

/// A lake on the given store URL with in-memory keys.
pub async fn lake_on(url: &str, options: &[(&str, &str)], checkpoint_interval: u64) -> Session {
    let mut cfg = LakeConfig::single_tier(url);
    cfg.lake.checkpoint_interval = checkpoint_interval;
    cfg.tiers[0].options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    stratalake::LakeBuilder::from_config(cfg)
        .key_provider(Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .open()
        .await
        .unwrap()
        .session("admin")
}

/// Rows as CSV without a header line, for comparing query results.
pub fn csv(batches: &[RecordBatch]) -> String {
    let mut out = Vec::new();
    {
        let mut w = stratalake::arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut out);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    String::from_utf8(out).unwrap()
}

pub fn events_schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, "public").not_null(),
            ColumnDef::new("region", DataType::Utf8, "internal"),
            ColumnDef::new("secret_note", DataType::Utf8, "secret"),
        ],
        partition_by: vec![PartitionField::parse("region").unwrap()],
    }
}

pub fn events(schema: &SchemaRef, ids: std::ops::Range<i64>, region: &str) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from(vec![region; n])),
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("note {i}")))),
        ],
    )
    .unwrap()
}

pub async fn count(lake: &Session, sql: &str) -> i64 {
    let b = lake.sql(sql).await.unwrap();
    b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}
