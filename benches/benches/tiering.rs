//! Tier moves: a multi-GB table moved between two local-folder tiers by the mover (copy, crc32
//! check of the bytes read and of the copy read back, fsync, MOVE commit), against a plain copy
//! (read, write, fsync) of the same bytes, measured in one run; also the move back (a recall).
//!
//! `cargo bench -p stratalake-benches --bench tiering` (table size: STRATALAKE_BENCH_TIER_MB,
//! default 2048; runs: STRATALAKE_BENCH_RUNS, default 3; medians; folder: STRATALAKE_BENCH_DIR).

mod common;

use common::{blob_table, env_or, files_under, median, plain_copy};

use std::time::Instant;

use stratalake::LakeConfig;

fn main() {
    let mb: usize = env_or("STRATALAKE_BENCH_TIER_MB", 2048);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let (rt, dir) = common::runtime_and_dir();
    let mut cfg = LakeConfig::single_tier("hot");
    let mut cold = cfg.tiers[0].clone();
    (cold.name, cold.url) = ("cold".into(), "cold".into());
    cfg.tiers.push(cold);
    // old copies go at the end of each run, as they would after the retention window
    cfg.tiering.move_retention = Some("0s".into());
    let lake = rt.block_on(common::open_lake(cfg, Some(dir.path()), common::memory_keys(), "bench"));
    let batches = mb * 1024 * 1024 / (common::ROW_BYTES * common::BATCH_ROWS);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let t = rt.block_on(blob_table(&lake, batches, &mut seed));
    let snap = rt.block_on(t.snapshot()).unwrap();
    let bytes = snap.bytes();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "table: {} files, {:.2} GiB, {} rows",
        snap.files.len(),
        gib,
        snap.rows()
    );
    let mut copy_t = Vec::new();
    let mut down_t = Vec::new();
    let mut up_t = Vec::new();
    for run in 0..runs {
        let mut files = Vec::new();
        files_under(&dir.path().join("hot/default/blobs/data"), &mut files);
        let c = dir.path().join(format!("copy{run}"));
        copy_t.push(plain_copy(&files, &c));
        std::fs::remove_dir_all(&c).unwrap();
        for (to, times) in [("cold", &mut down_t), ("hot", &mut up_t)] {
            let d = rt.block_on(async {
                let plan = lake.tiers().recall_plan("blobs", to, &[]).await.unwrap();
                assert_eq!(plan.bytes(), bytes);
                let started = Instant::now();
                let r = lake.tiers().run(&plan).await.unwrap();
                let d = started.elapsed();
                assert_eq!(r.bytes_moved, bytes);
                d
            });
            times.push(d);
        }
    }
    let rows = rt.block_on(lake.sql("SELECT count(*) FROM blobs")).unwrap();
    assert_eq!(
        rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0) as u64,
        snap.rows()
    );
    let (copy, down, up) = (median(copy_t), median(down_t), median(up_t));
    let rate = |d: std::time::Duration| gib * 1024.0 / d.as_secs_f64();
    println!(
        "plain copy {:.2} s ({:.0} MiB/s); move hot->cold {:.2} s ({:.0} MiB/s): {:.2}x; move cold->hot {:.2} s ({:.0} MiB/s): {:.2}x of plain copy",
        copy.as_secs_f64(),
        rate(copy),
        down.as_secs_f64(),
        rate(down),
        copy.as_secs_f64() / down.as_secs_f64(),
        up.as_secs_f64(),
        rate(up),
        copy.as_secs_f64() / up.as_secs_f64()
    );
}
