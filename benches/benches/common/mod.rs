//! Pieces every benchmark shares: the medians reported, the plain parquet-rs baseline writer,
//! and the knobs read from the environment.

#![allow(dead_code)] // each benchmark uses a subset

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BinaryArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// The median of the measurements.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A numeric knob from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Write `batches` as one plain Parquet file with the settings Stratalake's writer uses
/// (zstd level 1, 256 Ki-row row groups): the baseline of the benchmarks.
pub fn write_plain(path: &std::path::Path, batches: &[RecordBatch]) {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
        .set_max_row_group_row_count(Some(256 * 1024))
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// Bytes of a blob row's payload.
pub const ROW_BYTES: usize = 1024;
/// Rows per blob batch.
pub const BATCH_ROWS: usize = 8192;

/// A batch of incompressible rows (`id`, 1 KiB `payload`): the table's bytes are what a copy moves.
pub fn blob_batch(schema: &SchemaRef, first: i64, seed: &mut u64) -> RecordBatch {
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

/// Table `blobs` (id public, payload confidential) of `batches` blob batches, in commits of 256 MiB.
pub async fn blob_table(lake: &stratalake::Session, batches: usize, seed: &mut u64) -> stratalake::Table {
    lake.catalog_unchecked()
        .create_namespace("default", true, "bench")
        .await
        .unwrap();
    let schema = stratalake::TableSchema {
        columns: vec![
            stratalake::ColumnDef::new("id", DataType::Int64, "public"),
            stratalake::ColumnDef::new("payload", DataType::Binary, "confidential"),
        ],
        partition_by: vec![],
    };
    let t = lake.create_table("blobs", schema).await.unwrap();
    let s = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    let per_commit = (256 * 1024 * 1024 / (ROW_BYTES * BATCH_ROWS)).max(1);
    let mut made = 0;
    while made < batches {
        let n = per_commit.min(batches - made);
        let bs: Vec<RecordBatch> = (0..n)
            .map(|i| blob_batch(&s, ((made + i) * BATCH_ROWS) as i64, seed))
            .collect();
        t.append(&bs, "bench").await.unwrap();
        made += n;
    }
    t
}

/// Every file under `dir`.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The baseline of copies: copy every file to `to` and make it durable (file and folder).
pub fn plain_copy(files: &[PathBuf], to: &Path) -> Duration {
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

/// A multi-threaded runtime, and a fresh folder under `STRATALAKE_BENCH_DIR` (default `.`).
pub fn runtime_and_dir() -> (tokio::runtime::Runtime, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(std::env::var("STRATALAKE_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    (rt, dir)
}

/// The lake of `cfg` (relative tier URLs under `dir`) with master keys in memory, as `principal`.
pub async fn open_lake(
    cfg: stratalake::LakeConfig,
    dir: Option<&std::path::Path>,
    keys: std::sync::Arc<dyn stratalake::crypto::KeyProvider>,
    principal: &str,
) -> stratalake::Session {
    let builder = match dir {
        Some(d) => stratalake::Lake::builder(d).config(cfg),
        None => stratalake::LakeBuilder::from_config(cfg),
    };
    builder.key_provider(keys).open().await.unwrap().session(principal)
}

/// Fresh in-memory master keys.
pub fn memory_keys() -> std::sync::Arc<dyn stratalake::crypto::KeyProvider> {
    std::sync::Arc::new(stratalake::crypto::MemoryKeyProvider::new())
}
