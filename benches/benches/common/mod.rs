//! Pieces every benchmark shares: the medians reported, the plain parquet-rs baseline writer,
//! and the knobs read from the environment.

#![allow(dead_code)] // each benchmark uses a subset

use std::time::Duration;

use arrow::array::RecordBatch;
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
