//! Encrypted ingest of TPC-H lineitem through Stratalake against plain parquet-rs writing the
//! same batches (zstd level 1, same row-group size), measured in one run.
//!
//! `cargo bench -p stratalake-benches --bench ingest` (scale factor: STRATALAKE_BENCH_SF, default 0.1;
//! runs per side: STRATALAKE_BENCH_RUNS, default 3). Prints rows/s of both and their ratio.

mod common;

use common::{env_or, median, write_plain};

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use stratalake::{LakeConfig, TableSchema};
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;

fn main() {
    let sf: f64 = env_or("STRATALAKE_BENCH_SF", 0.1);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let batches: Vec<RecordBatch> = LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))
        .with_batch_size(8192)
        .collect::<Result<_, _>>()
        .expect("generate lineitem");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let schema = batches[0].schema();
    println!(
        "TPC-H lineitem SF {sf}: {rows} rows, {} batches; {runs} runs per side",
        batches.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut plain = Vec::new();
    let mut lake_t = Vec::new();
    for run in 0..runs {
        // baseline: parquet-rs, same codec and row-group size, one local file
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        write_plain(&dir.path().join("lineitem.parquet"), &batches);
        plain.push(started.elapsed());

        // Stratalake: encrypted files, keys wrapped, committed through the log
        let dir = tempfile::tempdir().unwrap();
        let lake = rt.block_on(common::open_lake(
            LakeConfig::single_tier(dir.path().to_str().unwrap()),
            None,
            common::memory_keys(),
            "bench",
        ));
        let elapsed = rt.block_on(async {
            lake.catalog_unchecked()
                .create_namespace("default", true, "bench")
                .await
                .unwrap();
            let mut ts = TableSchema::from_arrow(&schema, "internal");
            for c in ts.columns.iter_mut().filter(|c| c.name.ends_with("comment")) {
                c.classification = "confidential".into();
            }
            let t = lake.create_table(&format!("lineitem_{run}"), ts).await.unwrap();
            let started = Instant::now();
            t.append(&batches, "bench").await.unwrap();
            started.elapsed()
        });
        lake_t.push(elapsed);
    }
    let (p, s) = (median(plain), median(lake_t));
    let rps = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "plain parquet-rs:      {:>12.0} rows/s ({:.3} s)",
        rps(p),
        p.as_secs_f64()
    );
    println!(
        "stratalake encrypted:  {:>12.0} rows/s ({:.3} s)",
        rps(s),
        s.as_secs_f64()
    );
    println!("ratio (stratalake / plain): {:.2}x  (target >= 0.90x)", rps(s) / rps(p));
}
