//! Optimize: a table of 10 000 small files (as many small appends leave behind) compacted into
//! files of the target size. Reports input files per second, and the speedup of a full scan
//! after against before, measured in one run.
//!
//! `cargo bench -p stratalake-benches --bench optimize` (files: STRATALAKE_BENCH_FILES, default
//! 10000; rows per file: STRATALAKE_BENCH_ROWS, default 200; runs: STRATALAKE_BENCH_RUNS, default 3).

mod common;

use common::{env_or, median};

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use stratalake::{ColumnDef, LakeConfig, TableSchema, WriteMode};

fn main() {
    let files: usize = env_or("STRATALAKE_BENCH_FILES", 10_000);
    let rows: usize = env_or("STRATALAKE_BENCH_ROWS", 200);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let (rt, dir) = common::runtime_and_dir();
    let cfg = LakeConfig::single_tier(dir.path().join("lake").to_str().unwrap());
    let lake = rt.block_on(common::open_lake(cfg, None, common::memory_keys(), "bench"));
    let started = Instant::now();
    let t = rt.block_on(async {
        lake.catalog_unchecked()
            .create_namespace("default", true, "bench")
            .await
            .unwrap();
        let schema = TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, "public"),
                ColumnDef::new("amount", DataType::Float64, "internal"),
                ColumnDef::new("owner", DataType::Utf8, "confidential"),
            ],
            partition_by: vec![],
        };
        let t = lake.create_table("events", schema).await.unwrap();
        let arrow = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
        // 10 commits of 1 000 one-batch files each
        let per_commit = files.div_ceil(10).max(1);
        let mut made = 0;
        while made < files {
            let snap = t.snapshot().await.unwrap();
            let mut staged = Vec::new();
            for f in made..(made + per_commit).min(files) {
                let first = (f * rows) as i64;
                let b = RecordBatch::try_new(
                    arrow.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(first..first + rows as i64)),
                        Arc::new(Float64Array::from_iter_values((0..rows).map(|i| (i % 97) as f64 * 1.5))),
                        Arc::new(StringArray::from_iter_values(
                            (0..rows).map(|i| format!("owner {}", (f + i) % 1000)),
                        )),
                    ],
                )
                .unwrap();
                let mut w = t.writer(&snap).unwrap();
                w.write(b).await.unwrap();
                staged.extend(w.finish().await.unwrap());
            }
            made += staged.len();
            t.commit_files(&snap, staged, "bench", WriteMode::Append, Default::default())
                .await
                .unwrap();
        }
        t
    });
    let snap = rt.block_on(t.snapshot()).unwrap();
    println!(
        "table: {} files, {} rows, {:.1} MiB (built in {:.1} s)",
        snap.files.len(),
        snap.rows(),
        snap.bytes() as f64 / (1u64 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let scan = |label: &str| {
        let mut times = Vec::new();
        let mut answer = String::new();
        for _ in 0..runs {
            let s = Instant::now();
            let b = rt
                .block_on(lake.sql("SELECT count(*) AS n, sum(amount) AS s, max(owner) AS m FROM events"))
                .unwrap();
            times.push(s.elapsed());
            answer = arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
        }
        let m = median(times);
        println!("scan {label}: {:.3} s", m.as_secs_f64());
        (m, answer)
    };
    let (before, a1) = scan("before");
    let s = Instant::now();
    let r = rt.block_on(async { lake.optimize("events").await }).unwrap();
    let took = s.elapsed();
    let (after, a2) = scan("after");
    assert_eq!(a1, a2, "optimize changed the answer");
    println!(
        "optimize: {} files ({} rows) into {} file(s) in {:.2} s: {:.0} files/s, {:.0} rows/s; full scan {:.3} s -> {:.3} s: {:.1}x faster",
        r.files_removed,
        r.rows,
        r.files_added,
        took.as_secs_f64(),
        r.files_removed as f64 / took.as_secs_f64(),
        r.rows as f64 / took.as_secs_f64(),
        before.as_secs_f64(),
        after.as_secs_f64(),
        before.as_secs_f64() / after.as_secs_f64()
    );
}
