//! Opening a table with many live files: checkpoint plus a few commits, against a plain JSON
//! parse of the same checkpoint bytes, measured in one run.
//!
//! `cargo bench -p stratalake-benches --bench open` (live files: STRATALAKE_BENCH_FILES,
//! default 100000; about 100 commits; checkpoint every 10 commits; 5 runs, median).

mod common;

use common::{env_or, median};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch};
use stratalake::table::action::Action;
use stratalake::table::table::{ReadScope, info};
use stratalake::{ColumnDef, LakeConfig, TableSchema};

fn main() {
    let files: usize = env_or("STRATALAKE_BENCH_FILES", 100_000);
    // about 100 commits whatever the size, so that checkpoints (every 10) exist
    let per_commit = (files / 100).clamp(1, 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LakeConfig::single_tier(dir.path().to_str().unwrap());
    cfg.lake.checkpoint_interval = 10;
    let lake = rt.block_on(common::open_lake(cfg, None, common::memory_keys(), "bench"));
    rt.block_on(async {
        lake.catalog_unchecked()
            .create_namespace("default", true, "bench")
            .await
            .unwrap();
        let schema = TableSchema {
            columns: vec![ColumnDef::new("id", arrow::datatypes::DataType::Int64, "public")],
            partition_by: vec![],
        };
        let t = lake.create_table("wide", schema).await.unwrap();
        // One real file gives a realistic add action (wrapped keys, sizes); the log then
        // references `files` such actions. Opening a snapshot reads only the log.
        let s = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
        let b = RecordBatch::try_new(s, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        t.append(&[b], "bench").await.unwrap();
        let template = t.snapshot().await.unwrap().files.into_values().next().unwrap();
        let started = Instant::now();
        let mut made = 1;
        while made < files {
            let n = per_commit.min(files - made);
            let actions: Vec<Action> = (0..n)
                .map(|i| {
                    let mut a = template.clone();
                    a.path = format!("data/{:08}-{i}.parquet", made);
                    Action::Add(a)
                })
                .collect();
            let base = t.snapshot().await.unwrap();
            t.commit(
                &base,
                actions,
                info("bench", "APPEND", BTreeMap::new()),
                &ReadScope::default(),
            )
            .await
            .unwrap();
            made += n;
        }
        eprintln!(
            "wrote a log of {files} live files in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut open = Vec::new();
        let mut version = 0;
        for _ in 0..5 {
            let fresh = lake.table("wide").await.unwrap();
            let started = Instant::now();
            let snap = fresh.snapshot().await.unwrap();
            open.push(started.elapsed());
            assert_eq!(snap.files.len(), files);
            version = snap.version;
        }
        // Baseline: read the newest checkpoint's bytes and parse them as generic JSON.
        let store = t.context().tiers.metadata().clone();
        let cp = (version / 10) * 10;
        let path = format!("default/wide/_log/{cp:020}.checkpoint.json");
        let mut plain = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let bytes = store.get(&path).await.unwrap();
            let nl = bytes.iter().position(|b| *b == b'\n').unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes[nl + 1..]).unwrap();
            plain.push(started.elapsed());
            size = bytes.len();
            assert!(v.is_object());
        }
        let (o, p) = (median(open), median(plain));
        println!(
            "table with {files} live files, version {version}, checkpoint at {cp} ({:.1} MB)",
            size as f64 / 1e6
        );
        println!(
            "open snapshot (checkpoint + {} commits): {:.3} s",
            version - cp,
            o.as_secs_f64()
        );
        println!(
            "baseline: read + generic JSON parse of the checkpoint: {:.3} s",
            p.as_secs_f64()
        );
        println!(
            "ratio (open / baseline): {:.2}x  (target: open < 1 s)",
            o.as_secs_f64() / p.as_secs_f64()
        );
    });
}
