//! Reads whose length is checked before the bytes go anywhere.
//!
//! An object store answers a ranged GET with a body; a truncated body (a connection cut short,
//! a proxy that drops the tail) is not always an error at the HTTP layer, and object_store
//! passes what arrived. The Parquet reader then sees fewer bytes than it asked for and trips an
//! assertion: a panic, not an error. [`CheckedStore`] wraps every tier's object store and checks
//! each answer against the range it asked for: a short answer is retried a few times, then
//! reported as an error naming the object. Streams too large to buffer are checked as they end.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Answers up to this size are buffered, checked and retried whole; larger ones are checked
/// when their stream ends (the reader sees an error then).
const BUFFER_LIMIT: u64 = 32 << 20;
/// Attempts at a read whose answer keeps coming back short.
const ATTEMPTS: u32 = 4;

/// A read returned fewer (or more) bytes than the range it asked for.
#[derive(Debug)]
pub struct ShortRead {
    /// The object.
    pub path: String,
    /// The range asked for.
    pub range: Range<u64>,
    /// Bytes received.
    pub received: u64,
    /// Attempts made.
    pub attempts: u32,
}

impl fmt::Display for ShortRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "short read of {}: asked for bytes {}..{} ({} bytes), received {} ({} attempt{}); the store or the network cut the answer short",
            self.path,
            self.range.start,
            self.range.end,
            self.range.end - self.range.start,
            self.received,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ShortRead {}

fn short(path: &Path, range: Range<u64>, received: u64, attempts: u32) -> object_store::Error {
    object_store::Error::Generic {
        store: "stratalake",
        source: Box::new(ShortRead {
            path: path.to_string(),
            range,
            received,
            attempts,
        }),
    }
}

/// Whether an object store error (or something it wraps) is a [`ShortRead`].
pub fn is_short_read(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<ShortRead>() {
            return true;
        }
        cur = err.source();
    }
    false
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
}

/// An object store whose reads are checked for length (see the module documentation).
pub struct CheckedStore {
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Debug for CheckedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the inner store's Display names it; its Debug may print credentials (object_store's
        // Azure access key, for one)
        f.debug_struct("CheckedStore")
            .field("inner", &format_args!("{}", self.inner))
            .finish()
    }
}

impl CheckedStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

impl fmt::Display for CheckedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checked({})", self.inner)
    }
}

/// A stream that fails at its end unless it yielded exactly `expected` bytes.
fn checked_stream(
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    path: Path,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let expected = range.end - range.start;
    let state = (stream, 0u64, false);
    futures::stream::unfold(state, move |(mut s, seen, done)| {
        let path = path.clone();
        let range = range.clone();
        async move {
            if done {
                return None;
            }
            match s.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > expected {
                        return Some((Err(short(&path, range, seen, 1)), (s, seen, true)));
                    }
                    Some((Ok(chunk), (s, seen, false)))
                }
                Some(Err(e)) => Some((Err(e), (s, seen, true))),
                None if seen != expected => Some((Err(short(&path, range, seen, 1)), (s, seen, true))),
                None => None,
            }
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for CheckedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.inner.get_opts(location, options.clone()).await?;
            if options.head {
                return Ok(r);
            }
            let range = r.range.clone();
            // The range the store says it answers must be the one asked for.
            if let Some(want) = options.range.as_ref().and_then(|g| g.as_range(r.meta.size).ok())
                && want != range
            {
                if attempt >= ATTEMPTS {
                    return Err(short(location, want, range.end - range.start, attempt));
                }
                pause(attempt).await;
                continue;
            }
            let expected = range.end - range.start;
            let stream = match r.payload {
                // A local file: read with read_exact, which fails on a short file.
                GetResultPayload::File(..) => return Ok(r),
                GetResultPayload::Stream(s) => s,
            };
            if expected > BUFFER_LIMIT {
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(checked_stream(stream, location.clone(), range)),
                    ..r
                });
            }
            let mut chunks = Vec::new();
            let mut stream = stream;
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => chunks.push(c),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let received: u64 = chunks.iter().map(|c| c.len() as u64).sum();
            if failed.is_none() && received == expected {
                let body = match chunks.len() {
                    1 => chunks.pop().expect("one chunk"),
                    _ => {
                        let mut buf = BytesMut::with_capacity(expected as usize);
                        chunks.iter().for_each(|c| buf.extend_from_slice(c));
                        buf.freeze()
                    }
                };
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
                    ..r
                });
            }
            if attempt >= ATTEMPTS {
                return Err(match failed {
                    Some(e) => e,
                    None => short(location, range, received, attempt),
                });
            }
            tracing::warn!(path = %location, expected, received, attempt, "short or failed read; retrying");
            pause(attempt).await;
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let got = self.inner.get_ranges(location, ranges).await?;
            let bad = (got.len() != ranges.len())
                .then(|| (ranges.first().cloned().unwrap_or(0..0), 0))
                .or_else(|| {
                    ranges
                        .iter()
                        .zip(&got)
                        .find(|(r, b)| b.len() as u64 != r.end - r.start)
                        .map(|(r, b)| (r.clone(), b.len() as u64))
                });
            match bad {
                None => return Ok(got),
                Some((range, received)) if attempt >= ATTEMPTS => {
                    return Err(short(location, range, received, attempt));
                }
                Some((range, received)) => {
                    tracing::warn!(path = %location, ?range, received, attempt, "short read; retrying");
                    pause(attempt).await;
                }
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    // Retries and errors of short answers are tested through a fault-injecting store in the
    // facade's integration tests (`faults.rs`).
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn a_large_stream_is_checked_at_its_end() {
        let path = Path::from("x");
        let stream = futures::stream::iter(vec![Ok(Bytes::from(vec![0u8; 10])), Ok(Bytes::from(vec![0u8; 5]))]).boxed();
        let r: Vec<_> = checked_stream(stream, path.clone(), 0..20).collect().await;
        assert!(r[0].is_ok() && r[1].is_ok());
        let e = r[2].as_ref().unwrap_err();
        assert!(is_short_read(e), "{e}");
        assert!(
            e.to_string().contains("short read of x") && e.to_string().contains("received 15"),
            "{e}"
        );
        let stream = futures::stream::iter(vec![Ok(Bytes::from(vec![0u8; 20]))]).boxed();
        let ok: Vec<Bytes> = checked_stream(stream, path.clone(), 0..20).try_collect().await.unwrap();
        assert_eq!(ok.len(), 1);
        let stream = futures::stream::iter(vec![Ok(Bytes::from(vec![0u8; 21]))]).boxed();
        assert!(
            checked_stream(stream, path, 0..20)
                .try_collect::<Vec<_>>()
                .await
                .is_err()
        );
    }
}
