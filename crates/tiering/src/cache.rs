//! A bounded local read cache for data files on non-local tiers.
//!
//! [`CachedStore`] wraps a tier's object store for query reads. The first read of a data file
//! fetches the whole object into the cache folder; later reads (footer, row groups, other
//! queries, other processes sharing the folder) are served from the local copy. Data files are
//! immutable (every path is a fresh UUID), so a cached copy never goes stale; what is cached is
//! the ciphertext, exactly as stored. The folder is kept under its size limit by evicting the
//! least recently used files. Objects larger than the limit are read directly.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use stratalake_table::store::ExpectedObjects;

use crate::{Error, Result};

/// Cache counters and fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that had to fetch (or bypass) the object.
    pub misses: u64,
    /// Files evicted to stay under the limit.
    pub evictions: u64,
    /// Files cached now.
    pub files: u64,
    /// Bytes cached now.
    pub bytes: u64,
    /// The size limit.
    pub max_bytes: u64,
}

#[derive(Debug, Default)]
struct Index {
    /// file name -> (size, last use tick)
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    tick: u64,
}

/// The cache folder and its LRU index. Share one per lake.
#[derive(Debug)]
pub struct ReadCache {
    dir: PathBuf,
    max: u64,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    /// Counts already written to `stats.json`.
    persisted: Mutex<(u64, u64, u64)>,
    fills: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn io_err(p: &FsPath, e: std::io::Error) -> Error {
    Error::Table(stratalake_table::Error::Io {
        path: p.display().to_string(),
        source: e,
    })
}

impl ReadCache {
    /// Open (creating) the cache folder `dir` with a limit of `max_bytes`. Files already there
    /// are indexed (oldest modification first) and the folder trimmed to the limit.
    pub fn open(dir: &FsPath, max_bytes: u64) -> Result<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let e = e.map_err(|e| io_err(dir, e))?;
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(meta) = e.metadata() else { continue };
            if name.ends_with(".tmp") {
                // Left by a stopped fill; only remove ones no live fill could still own.
                if meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|a| a.as_secs() > 3600)
                {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            if name.ends_with(".obj") {
                found.push((meta.modified().ok(), name, meta.len()));
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, name, size) in found {
            index.tick += 1;
            index.total += size;
            index.entries.insert(name, (size, index.tick));
        }
        let c = Arc::new(Self {
            dir: dir.to_path_buf(),
            max: max_bytes,
            index: Mutex::new(index),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            persisted: Mutex::new((0, 0, 0)),
            fills: Default::default(),
        });
        c.evict();
        Ok(c)
    }

    /// Counters of this process plus those persisted by earlier ones, and the current fill.
    pub fn stats(&self) -> CacheStats {
        let saved = self.saved_stats();
        let idx = self.index.lock().expect("cache index");
        let persisted = *self.persisted.lock().expect("cache stats");
        CacheStats {
            hits: saved.hits + self.hits.load(Ordering::Relaxed) - persisted.0,
            misses: saved.misses + self.misses.load(Ordering::Relaxed) - persisted.1,
            evictions: saved.evictions + self.evictions.load(Ordering::Relaxed) - persisted.2,
            files: idx.entries.len() as u64,
            bytes: idx.total,
            max_bytes: self.max,
        }
    }

    fn saved_stats(&self) -> CacheStats {
        std::fs::read(self.dir.join("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Add this process's counters to `stats.json` in the folder (counts from processes that
    /// write at the same moment may be lost: they are indicative).
    pub fn persist_stats(&self) -> Result<()> {
        let mut persisted = self.persisted.lock().expect("cache stats");
        let now = (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.evictions.load(Ordering::Relaxed),
        );
        if now == *persisted {
            return Ok(());
        }
        let mut saved = self.saved_stats();
        saved.hits += now.0 - persisted.0;
        saved.misses += now.1 - persisted.1;
        saved.evictions += now.2 - persisted.2;
        let path = self.dir.join("stats.json");
        let tmp = self.dir.join(format!("stats.{}.tmp", uuid::Uuid::new_v4().simple()));
        let body = serde_json::to_vec(&saved).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        *persisted = now;
        Ok(())
    }

    /// Drop the cached copy of an object (after vacuum deleted it: deleted data must not linger
    /// on local disk).
    pub fn evict_object(&self, tier: &str, location: &Path) {
        self.evict_key(&Self::key(tier, location));
    }

    fn evict_key(&self, key: &str) {
        self.forget(key);
        let _ = std::fs::remove_file(self.dir.join(key));
    }

    fn key(tier: &str, location: &Path) -> String {
        let mut h = Sha256::new();
        h.update(tier.as_bytes());
        h.update([0]);
        h.update(location.as_ref().as_bytes());
        format!("{}.obj", stratalake_crypto::hex::encode(h.finalize()))
    }

    fn touch(&self, key: &str) -> Option<u64> {
        let mut idx = self.index.lock().expect("cache index");
        idx.tick += 1;
        let t = idx.tick;
        let e = idx.entries.get_mut(key)?;
        e.1 = t;
        Some(e.0)
    }

    fn forget(&self, key: &str) {
        let mut idx = self.index.lock().expect("cache index");
        if let Some((size, _)) = idx.entries.remove(key) {
            idx.total -= size;
        }
    }

    fn insert(&self, key: String, size: u64) {
        {
            let mut idx = self.index.lock().expect("cache index");
            idx.tick += 1;
            let t = idx.tick;
            if let Some((old, _)) = idx.entries.insert(key.clone(), (size, t)) {
                idx.total -= old;
            }
            idx.total += size;
        }
        self.evict();
    }

    /// Evict least recently used files until the folder is under the limit; the most recently
    /// used one (being read now) stays.
    fn evict(&self) {
        let victims: Vec<String> = {
            let mut idx = self.index.lock().expect("cache index");
            let mut order: Vec<(u64, String, u64)> =
                idx.entries.iter().map(|(k, (s, t))| (*t, k.clone(), *s)).collect();
            order.sort();
            // never evict the most recent entry: it is being read now
            order.pop();
            let mut out = Vec::new();
            for (_, k, s) in order {
                if idx.total <= self.max {
                    break;
                }
                idx.entries.remove(&k);
                idx.total -= s;
                out.push(k);
            }
            out
        };
        for k in victims {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(self.dir.join(&k));
        }
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> std::io::Result<Bytes> {
        let mut f = std::fs::File::open(self.dir.join(key))?;
        f.seek(SeekFrom::Start(range.start))?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        f.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }
}

/// A tier's object store with query reads going through a [`ReadCache`].
#[derive(Debug)]
pub struct CachedStore {
    tier: String,
    inner: Arc<dyn ObjectStore>,
    cache: Arc<ReadCache>,
    expected: Arc<ExpectedObjects>,
}

fn cache_error(reason: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "read cache",
        source: reason.into(),
    }
}

impl CachedStore {
    /// Wrap `inner`, the store of `tier`. `expected` holds the size and crc32 the log records for
    /// the objects scans read (`Store::expected`): only copies that match are kept.
    pub fn new(tier: &str, inner: Arc<dyn ObjectStore>, cache: Arc<ReadCache>, expected: Arc<ExpectedObjects>) -> Self {
        Self {
            tier: tier.into(),
            inner,
            cache,
            expected,
        }
    }

    /// Fetch the whole object into the cache. Returns its size, or `None` when it is larger than
    /// the cache. A copy whose length differs from the object's (a truncated answer) or, when
    /// the log's figures are known, whose size or crc32 differs from them, is never kept.
    async fn fill(&self, key: &str, location: &Path) -> object_store::Result<Option<u64>> {
        let r = self.inner.get_opts(location, GetOptions::default()).await?;
        let size = r.meta.size;
        if size > self.cache.max {
            return Ok(None);
        }
        let expected = self.expected.get(location);
        if let Some((want, _)) = expected
            && want != size
        {
            return Err(cache_error(format!(
                "{location} holds {size} bytes, the table log records {want}: not cached (run `stratalake verify`)"
            )));
        }
        let tmp = self
            .cache
            .dir
            .join(format!("{key}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let generic = |e: std::io::Error| object_store::Error::Generic {
            store: "read cache",
            source: Box::new(e),
        };
        let mut file = std::fs::File::create(&tmp).map_err(generic)?;
        let mut stream = r.into_stream();
        let mut n = 0u64;
        let mut crc = crc32fast::Hasher::new();
        let written: object_store::Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                crc.update(&chunk);
                file.write_all(&chunk).map_err(generic)?;
            }
            if n != size {
                return Err(cache_error(format!(
                    "{location}: received {n} of {size} bytes; the short copy is not cached"
                )));
            }
            if let Some((_, want)) = expected {
                let got = crc.clone().finalize();
                if got != want {
                    return Err(cache_error(format!(
                        "{location}: crc32 {got:08x} of the bytes received differs from the log's {want:08x}; not cached"
                    )));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        drop(file);
        std::fs::rename(&tmp, self.cache.dir.join(key)).map_err(generic)?;
        self.cache.insert(key.to_string(), n);
        Ok(Some(n))
    }
}

impl std::fmt::Display for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedStore({}, {})", self.tier, self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
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
        let conditional = options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some();
        if conditional {
            return self.inner.get_opts(location, options).await;
        }
        let key = ReadCache::key(&self.tier, location);
        let mut size = self.cache.touch(&key);
        if let (Some(have), Some((want, _))) = (size, self.expected.get(location))
            && have != want
        {
            // A copy that does not match the log (left by an older version that cached short
            // answers): drop it and fetch again.
            self.cache.evict_key(&key);
            size = None;
        }
        if size.is_none() {
            if options.head {
                return self.inner.get_opts(location, options).await;
            }
            let lock = {
                let mut fills = self.cache.fills.lock().await;
                fills.entry(key.clone()).or_default().clone()
            };
            let _g = lock.lock().await;
            size = self.cache.touch(&key);
            if size.is_none() {
                self.cache.misses.fetch_add(1, Ordering::Relaxed);
                match self.fill(&key, location).await? {
                    Some(n) => size = Some(n),
                    None => return self.inner.get_opts(location, options).await,
                }
            } else {
                self.cache.hits.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
        }
        let size = size.expect("set above");
        let range = match &options.range {
            Some(r) => match r.as_range(size) {
                Ok(r) => r,
                Err(e) => {
                    // Either the caller asked past the end, or the copy is not the whole object:
                    // never serve it again.
                    self.cache.evict_key(&key);
                    return Err(object_store::Error::Generic {
                        store: "read cache",
                        source: Box::new(e),
                    });
                }
            },
            None => 0..size,
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        };
        let body = if options.head {
            Bytes::new()
        } else {
            match self.cache.read_range(&key, range.clone()) {
                Ok(b) => b,
                Err(_) => {
                    // evicted meanwhile (by another process sharing the folder) or damaged on
                    // local disk: drop it and read directly
                    self.cache.evict_key(&key);
                    return self.inner.get_opts(location, options).await;
                }
            }
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
            meta,
            range,
            attributes: Default::default(),
        })
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

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cache files are named by this key and found again by it after a restart: the name is
    /// pinned (computed by the previous release's code, and with Python's `hashlib`).
    #[test]
    fn cache_file_names_are_pinned() {
        assert_eq!(
            ReadCache::key("hot", &Path::from("lake/default/t/data/part-0.parquet")),
            "7f237947e1ca56081adf6eb9d40fd9e08fd08ce327a09dcf20cabc4af76302fb.obj"
        );
    }
}
