//! Backups: a full backup of a multi-GB table into a local-folder repository against a plain copy
//! (read, write, fsync) of the same bytes, measured in one run; then an incremental backup after a
//! 1% append (bytes copied against the table's bytes); then a restore against the same plain copy.
//!
//! `cargo bench -p stratalake-benches --bench backup` (table size: STRATALAKE_BENCH_BACKUP_MB,
//! default 2048; runs: STRATALAKE_BENCH_RUNS, default 3; medians).

mod common;

use common::{BATCH_ROWS, ROW_BYTES, blob_batch as batch, blob_table, env_or, files_under, median, plain_copy};

use std::time::Instant;

use arrow::array::RecordBatch;
use stratalake::LakeConfig;

fn main() {
    let mb: usize = env_or("STRATALAKE_BENCH_BACKUP_MB", 2048);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let (rt, dir) = common::runtime_and_dir();
    let lake_dir = dir.path().join("lake");
    let cfg = LakeConfig::single_tier(lake_dir.to_str().unwrap());
    let lake = rt.block_on(common::open_lake(cfg, None, common::memory_keys(), "bench"));
    let batches = mb * 1024 * 1024 / (ROW_BYTES * BATCH_ROWS);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let t = rt.block_on(blob_table(&lake, batches, &mut seed));
    let snap = rt.block_on(t.snapshot()).unwrap();
    let bytes = snap.bytes();
    let mut files = Vec::new();
    files_under(&lake_dir.join("default/blobs/data"), &mut files);
    println!(
        "table: {} files, {:.2} GiB, {} rows",
        snap.files.len(),
        bytes as f64 / (1u64 << 30) as f64,
        snap.rows()
    );

    let mut copy_t = Vec::new();
    let mut backup_t = Vec::new();
    for run in 0..runs {
        let c = dir.path().join(format!("copy{run}"));
        copy_t.push(plain_copy(&files, &c));
        std::fs::remove_dir_all(&c).unwrap();
        let repo_dir = dir.path().join(format!("repo{run}"));
        let (d, m) = rt.block_on(async {
            let repo = lake
                .backups()
                .init(repo_dir.to_str().unwrap(), &Default::default())
                .await
                .unwrap();
            let started = Instant::now();
            let m = lake.backups().create(&repo).await.unwrap();
            (started.elapsed(), m)
        });
        assert_eq!(m.totals.new_bytes, bytes);
        backup_t.push(d);
        if run + 1 < runs {
            std::fs::remove_dir_all(&repo_dir).unwrap();
        }
    }
    let (copy, full) = (median(copy_t), median(backup_t));
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "full backup: plain copy {:.2} s ({:.0} MiB/s), backup {:.2} s ({:.0} MiB/s): {:.2}x of plain copy",
        copy.as_secs_f64(),
        gib * 1024.0 / copy.as_secs_f64(),
        full.as_secs_f64(),
        gib * 1024.0 / full.as_secs_f64(),
        copy.as_secs_f64() / full.as_secs_f64()
    );

    // 1% append, then an incremental backup into the last repository.
    let repo_dir = dir.path().join(format!("repo{}", runs - 1));
    let (inc, m) = rt.block_on(async {
        let s = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
        let n = (batches / 100).max(1);
        let bs: Vec<RecordBatch> = (0..n)
            .map(|i| batch(&s, ((batches + i) * BATCH_ROWS) as i64, &mut seed))
            .collect();
        t.append(&bs, "bench").await.unwrap();
        let repo = lake
            .backups()
            .open(repo_dir.to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let started = Instant::now();
        let m = lake.backups().create(&repo).await.unwrap();
        (started.elapsed(), m)
    });
    println!(
        "incremental backup after a 1% append: copied {} of {} bytes ({:.2}%), {} of {} files, in {:.2} s",
        m.totals.new_bytes,
        m.totals.bytes,
        100.0 * m.totals.new_bytes as f64 / m.totals.bytes as f64,
        m.totals.new_files,
        m.totals.files,
        inc.as_secs_f64()
    );

    // Restore the full backup into a new lake, against the plain copy.
    let target = dir.path().join("restored");
    let restore = rt.block_on(async {
        let repo = lake
            .backups()
            .open(repo_dir.to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let twin = lake.backups().empty_twin(target.to_str().unwrap()).await.unwrap();
        let started = Instant::now();
        twin.backups().restore(&repo, &m.id).await.unwrap();
        started.elapsed()
    });
    println!(
        "restore: {:.2} s ({:.0} MiB/s): {:.2}x of plain copy",
        restore.as_secs_f64(),
        m.totals.bytes as f64 / (1u64 << 20) as f64 / restore.as_secs_f64(),
        copy.as_secs_f64() * (m.totals.bytes as f64 / bytes as f64) / restore.as_secs_f64()
    );
}
