//! Backups: a full backup of a multi-GB table into a local-folder repository against a plain copy
//! (read, write, fsync) of the same bytes, measured in one run; then an incremental backup after a
//! 1% append (bytes copied against the table's bytes); then a restore against the same plain copy.
//!
//! `cargo bench -p stratalake-benches --bench backup` (table size: STRATALAKE_BENCH_BACKUP_MB,
//! default 2048; runs: STRATALAKE_BENCH_RUNS, default 3; medians).

mod common;

use common::{env_or, median};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BinaryArray, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use stratalake::backup::RestoreOptions;
use stratalake::{ColumnDef, Lake, LakeConfig, TableSchema};

const ROW_BYTES: usize = 1024;
const BATCH_ROWS: usize = 8192;

/// Incompressible rows: the table's bytes are what the benchmark copies.
fn batch(schema: &arrow::datatypes::SchemaRef, first: i64, seed: &mut u64) -> RecordBatch {
    let mut payload = vec![0u8; ROW_BYTES * BATCH_ROWS];
    for chunk in payload.chunks_mut(8) {
        // xorshift64*: fast, and zstd finds nothing to compress
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        let v = seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let values: Vec<&[u8]> = payload.chunks(ROW_BYTES).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(first..first + BATCH_ROWS as i64)),
            Arc::new(BinaryArray::from(values)),
        ],
    )
    .unwrap()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The baseline: copy every data file to `to` and make it durable, as the repository does.
fn plain_copy(files: &[std::path::PathBuf], to: &Path) -> Duration {
    std::fs::create_dir_all(to).unwrap();
    let started = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let dst = to.join(format!("{i}.parquet"));
        std::fs::copy(f, &dst).unwrap();
        std::fs::File::open(&dst).unwrap().sync_all().unwrap();
    }
    std::fs::File::open(to).unwrap().sync_all().unwrap();
    started.elapsed()
}

fn main() {
    let mb: usize = env_or("STRATALAKE_BENCH_BACKUP_MB", 2048);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(std::env::var("STRATALAKE_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let lake_dir = dir.path().join("lake");
    let cfg = LakeConfig::single_tier(lake_dir.to_str().unwrap());
    let lake = Lake::open_with(cfg, None, Arc::new(stratalake::crypto::MemoryKeyProvider::new())).unwrap();
    let batches = mb * 1024 * 1024 / (ROW_BYTES * BATCH_ROWS);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let t = rt.block_on(async {
        lake.catalog().create_namespace("default", true, "bench").await.unwrap();
        let schema = TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, "public"),
                ColumnDef::new("payload", DataType::Binary, "confidential"),
            ],
            partition_by: vec![],
        };
        let t = lake.create_table("blobs", schema).await.unwrap();
        let s = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
        // commits of 256 MiB
        let per_commit = (256 * 1024 * 1024 / (ROW_BYTES * BATCH_ROWS)).max(1);
        let mut made = 0;
        while made < batches {
            let n = per_commit.min(batches - made);
            let bs: Vec<RecordBatch> = (0..n)
                .map(|i| batch(&s, ((made + i) * BATCH_ROWS) as i64, &mut seed))
                .collect();
            t.append(&bs, "bench").await.unwrap();
            made += n;
        }
        t
    });
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
                .backup_init(repo_dir.to_str().unwrap(), &Default::default())
                .await
                .unwrap();
            let started = Instant::now();
            let m = lake.backup(&repo, None, &|_| {}).await.unwrap();
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
            .backup_repository(repo_dir.to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let started = Instant::now();
        let m = lake.backup(&repo, None, &|_| {}).await.unwrap();
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
            .backup_repository(repo_dir.to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let twin = lake.empty_twin(target.to_str().unwrap()).unwrap();
        let started = Instant::now();
        twin.restore(&repo, &m.id, RestoreOptions::default(), &|_| {})
            .await
            .unwrap();
        started.elapsed()
    });
    println!(
        "restore: {:.2} s ({:.0} MiB/s): {:.2}x of plain copy",
        restore.as_secs_f64(),
        m.totals.bytes as f64 / (1u64 << 20) as f64 / restore.as_secs_f64(),
        copy.as_secs_f64() * (m.totals.bytes as f64 / bytes as f64) / restore.as_secs_f64()
    );
}
