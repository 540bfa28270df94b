//! Commit throughput and latency under contention: 1, 4 and 16 writers appending to one table
//! in a local folder, each through a lake handle of its own (as separate processes would), against
//! the store's own create-if-absent of numbered objects by one writer, measured in the same run.
//!
//! `STRATALAKE_BENCH_DIR=/tmp cargo bench -p stratalake-benches --bench commits`
//! (appends per writer: STRATALAKE_BENCH_APPENDS, default 25; writer counts:
//! STRATALAKE_BENCH_WRITERS, default `1,4,16`).

mod common;

use common::env_or;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use stratalake::table::Store;
use stratalake::{ColumnDef, LakeConfig, TableSchema};

fn main() {
    let appends: usize = env_or("STRATALAKE_BENCH_APPENDS", 25);
    let writer_counts: Vec<usize> = std::env::var("STRATALAKE_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var("STRATALAKE_BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Baseline: one writer creating numbered objects with create-if-absent (the floor of a
        // commit: one conditional create, fsynced with its directory).
        let dir = tempfile::tempdir_in(&base).unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let n = appends * 4;
        let started = Instant::now();
        for v in 0..n {
            assert!(
                store
                    .put_create(&format!("log/{v:020}.json"), vec![b'x'; 900].into())
                    .await
                    .unwrap()
            );
        }
        let raw = n as f64 / started.elapsed().as_secs_f64();
        println!("baseline: create-if-absent of numbered objects, 1 writer: {raw:.0} creates/s");
        println!();
        println!("| writers | appends | commits/s | vs baseline | median latency | worst latency |");
        println!("|---|---|---|---|---|---|");
        for writers in writer_counts {
            let r = run(&base, writers, appends).await;
            println!(
                "| {writers} | {} | {:.0} | {:.2}x | {:.1} ms | {:.1} ms |",
                writers * appends,
                r.per_second,
                r.per_second / raw,
                r.median.as_secs_f64() * 1e3,
                r.worst.as_secs_f64() * 1e3,
            );
        }
    });
}

struct Figures {
    per_second: f64,
    median: Duration,
    worst: Duration,
}

async fn run(base: &str, writers: usize, appends: usize) -> Figures {
    let dir = tempfile::tempdir_in(base).unwrap();
    let provider: Arc<dyn stratalake::crypto::KeyProvider> = Arc::new(stratalake::crypto::MemoryKeyProvider::new());
    let open = async || {
        common::open_lake(
            LakeConfig::single_tier(dir.path().to_str().unwrap()),
            None,
            provider.clone(),
            "bench",
        )
        .await
    };
    let lake = open().await;
    lake.catalog_unchecked()
        .create_namespace("default", true, "bench")
        .await
        .unwrap();
    let schema = TableSchema {
        columns: vec![ColumnDef::new("id", arrow::datatypes::DataType::Int64, "public")],
        partition_by: vec![],
    };
    let t = lake.create_table("ev", schema).await.unwrap();
    let arrow_schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let lake = open().await;
        let s = arrow_schema.clone();
        handles.push(tokio::spawn(async move {
            let t = lake.table("ev").await.unwrap();
            let mut latencies = Vec::with_capacity(appends);
            for k in 0..appends {
                let id = (w * appends + k) as i64;
                let b = RecordBatch::try_new(s.clone(), vec![Arc::new(Int64Array::from(vec![id]))]).unwrap();
                let t0 = Instant::now();
                t.append(&[b], "bench")
                    .await
                    .expect("an append never fails for contention");
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    let snap = t.snapshot().await.unwrap();
    assert_eq!(snap.rows(), (writers * appends) as u64, "every append landed once");
    assert_eq!(snap.version, (writers * appends) as u64);
    all.sort();
    Figures {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        median: all[all.len() / 2],
        worst: *all.last().unwrap(),
    }
}
