//! Stores: a tier's object store and the prefix under which the lake lives in it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::checked::CheckedStore;
use crate::{Error, Result};

mod cloud;

pub use cloud::{check_untrusted_options, redact_url};

/// One object store and the lake's root inside it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    url: String,
    inner: Arc<dyn ObjectStore>,
    /// What queries read through (a read cache over `inner` for remote tiers); `None`: `inner`.
    read: Option<Arc<dyn ObjectStore>>,
    root: Path,
    /// Set for local folders: writes are fsynced (file and directory) before they count.
    local: Option<(Arc<LocalFileSystem>, std::path::PathBuf)>,
    /// Size and crc32 the log records for data objects being read (see [`ExpectedObjects`]).
    expected: Arc<ExpectedObjects>,
    /// Set for cloud stores: the bucket or container and its endpoint, for errors naming them.
    remote: Option<Arc<cloud::Remote>>,
}

/// Size and crc32 that the log records for data objects of a store, registered by scans before
/// they read them, so that a read cache between the scan and the store keeps only copies that
/// match the log. Bounded: when full it starts over (a missing entry only means the cache
/// checks the length alone).
#[derive(Debug, Default)]
pub struct ExpectedObjects {
    entries: Mutex<HashMap<String, (u64, u32)>>,
}

impl ExpectedObjects {
    const MAX: usize = 1 << 20;

    /// Record that `location` (a full object path) holds `size` bytes with CRC-32 `crc32`.
    pub fn expect(&self, location: &Path, size: u64, crc32: u32) {
        let mut e = self.entries.lock().expect("expected objects");
        if e.len() >= Self::MAX {
            e.clear();
        }
        e.insert(location.to_string(), (size, crc32));
    }

    /// What the log records for `location`, if a scan registered it.
    pub fn get(&self, location: &Path) -> Option<(u64, u32)> {
        self.entries
            .lock()
            .expect("expected objects")
            .get(location.as_ref())
            .copied()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL holds no credentials: those live in options, which are not kept here.
        f.debug_struct("Store").field("url", &self.url).finish_non_exhaustive()
    }
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl Store {
    /// Open a store from a URL:
    /// * `file:///abs/path` or a plain path: a local folder (created if missing);
    /// * `memory://NAME`: an in-process store, shared by every `Store` of the same NAME;
    /// * `s3://bucket/prefix`: any S3-compatible store. `options` are object_store's S3 keys
    ///   (`endpoint`, `region`, `allow_http`, ...) and `profile`; the usual `AWS_*` environment
    ///   variables, then the AWS profile (`~/.aws/credentials`, `~/.aws/config`) fill in what
    ///   they do not give. Plain HTTP (an `http://` endpoint) is only used to this machine
    ///   (127.0.0.0/8, `::1`, `localhost`) unless `allow_http=true` is set;
    /// * `gs://bucket/prefix`: Google Cloud Storage (object_store's GCS keys, `GOOGLE_*`);
    /// * `az://container/prefix`, `abfs[s]://container/prefix` or
    ///   `abfs[s]://container@account.dfs.core.windows.net/prefix`: Azure Blob storage
    ///   (object_store's Azure keys, `AZURE_*`).
    ///
    /// Where cloud credentials are searched, and when an instance-metadata service is asked, is
    /// described in docs/operations.md §1. When none are found, the first request fails at once
    /// with a [`Error::StoreConfig`] naming the places searched; a missing bucket is reported as
    /// one too. Neither message holds a secret, and a URL with credentials in it is refused
    /// without repeating them. Options read from the store itself must pass
    /// [`check_untrusted_options`] first.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        Self::open_in(url, options, &cloud::Env::process())
    }

    /// [`Self::open`], with cloud settings and credentials looked up in `env`.
    fn open_in(url: &str, options: &BTreeMap<String, String>, env: &cloud::Env) -> Result<Self> {
        let cfg = |reason: String| Error::StoreConfig {
            url: cloud::redact_url(url),
            reason,
        };
        if let Some(name) = url.strip_prefix("memory://") {
            let name = name.trim_end_matches('/').to_string();
            let mut stores = memory_stores().lock().expect("memory store registry");
            let inner = stores.entry(name).or_insert_with(|| Arc::new(InMemory::new())).clone();
            return Ok(Self::from_object_store(url, inner, Path::default()));
        }
        if let Some(opened) = cloud::open(url, options, env).map_err(cfg)? {
            let root = Path::parse(opened.prefix.trim_matches('/')).map_err(|e| cfg(e.to_string()))?;
            let mut s = Self::from_object_store(url, opened.store, root);
            s.remote = Some(Arc::new(opened.remote));
            return Ok(s);
        }
        let dir = match url.strip_prefix("file://") {
            Some(p) => std::path::PathBuf::from(p),
            None if url.contains("://") => {
                return Err(cfg(
                    "unsupported scheme: use file://, memory://, s3://, gs://, az:// or abfs://".into(),
                ));
            }
            None => std::path::PathBuf::from(url),
        };
        std::fs::create_dir_all(&dir).map_err(|e| cfg(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| cfg(e.to_string()))?;
        let inner = Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| cfg(e.to_string()))?);
        let mut s = Self::from_object_store(format!("file://{}", dir.display()), inner.clone(), Path::default());
        s.local = Some((inner, dir.clone()));
        Ok(s)
    }

    /// Wrap an existing object store (for example a fault-injecting one in tests). Reads
    /// through it are checked for length ([`CheckedStore`]).
    pub fn from_object_store(url: impl Into<String>, inner: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self {
            url: url.into(),
            inner: Arc::new(CheckedStore::new(inner)),
            read: None,
            root,
            local: None,
            expected: Default::default(),
            remote: None,
        }
    }

    /// Whether `url` names a store [`Store::open`] opens as a cloud store (not a folder).
    pub fn is_cloud_url(url: &str) -> bool {
        ["s3://", "gs://", "az://", "abfs://", "abfss://"]
            .iter()
            .any(|s| url.starts_with(s))
    }

    /// An object store error on `p`: a missing bucket or missing credentials become one line
    /// naming the store ([`Error::StoreConfig`]); anything else [`Error::Store`].
    fn fail(&self, p: &Path, e: object_store::Error) -> Error {
        match self.explain(&e) {
            Some(err) => err,
            None => Error::store(p, e),
        }
    }

    /// As [`Self::fail`], for writes ([`Error::store_write`]).
    fn fail_write(&self, p: &Path, e: object_store::Error) -> Error {
        match self.explain(&e) {
            Some(err) => err,
            None => Error::store_write(p, e),
        }
    }

    fn explain(&self, e: &object_store::Error) -> Option<Error> {
        let reason = self.remote.as_ref()?.explain(e)?;
        Some(Error::StoreConfig {
            url: self.url.clone(),
            reason,
        })
    }

    /// Size and crc32 of data objects as the log records them, for read caches.
    pub fn expected(&self) -> &Arc<ExpectedObjects> {
        &self.expected
    }

    /// The store's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The object store queries read data files through: the read cache when one is set.
    pub fn read_store(&self) -> &Arc<dyn ObjectStore> {
        self.read.as_ref().unwrap_or(&self.inner)
    }

    /// Whether query reads go through a read cache ([`Self::with_read_store`]).
    pub fn has_read_store(&self) -> bool {
        self.read.is_some()
    }

    /// Route query reads through `read` (a cache wrapping [`Self::object_store`]).
    pub fn with_read_store(mut self, read: Arc<dyn ObjectStore>) -> Self {
        self.read = Some(read);
        self
    }

    /// Whether this is a local folder.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The local folder of a local store.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(|(_, d)| d.as_path())
    }

    /// Absolute location of `rel` (a `/`-separated path relative to the lake root).
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Read a whole object.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let p = self.path(rel);
        let r = self.inner.get(&p).await.map_err(|e| self.fail(&p, e))?;
        r.bytes().await.map_err(|e| self.fail(&p, e))
    }

    /// Read an object if it exists.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write (or replace) an object.
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        let p = self.path(rel);
        self.inner
            .put(&p, PutPayload::from(data))
            .await
            .map_err(|e| self.fail_write(&p, e))?;
        self.sync(&p).await
    }

    /// On a local folder, flush a file written outside this store (e.g. copied in place) and its
    /// directories to disk; a no-op elsewhere.
    pub async fn sync_file(&self, rel: &str) -> Result<()> {
        self.sync(&self.path(rel)).await
    }

    /// On a local folder, flush a written file and its directory to disk: object_store's local
    /// store does not, and a commit must never refer to data a power loss can take back.
    async fn sync(&self, p: &Path) -> Result<()> {
        let Some((local, root)) = &self.local else {
            return Ok(());
        };
        let file = local.path_to_filesystem(p).map_err(|e| Error::store(p, e))?;
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            let io = |path: &std::path::Path, e: std::io::Error| Error::Io {
                path: path.display().to_string(),
                source: e,
            };
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&file, e))?;
            // Every directory up to the store root: a new partition or log directory must be
            // durable in its parent too.
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io(d, e))?;
                if d == root {
                    break;
                }
                dir = d.parent().filter(|p| p.starts_with(&root));
            }
            Ok::<(), Error>(())
        })
        .await
        .map_err(|e| Error::Internal(format!("fsync task: {e}")))?
    }

    /// Create an object only if it does not exist. `Ok(false)` when it already existed.
    pub async fn put_create(&self, rel: &str, data: Bytes) -> Result<bool> {
        let p = self.path(rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.inner.put_opts(&p, PutPayload::from(data), opts).await {
            Ok(_) => self.sync(&p).await.map(|_| true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(Error::UnsafeStore {
                store: self.url.clone(),
            }),
            Err(e) => Err(self.fail_write(&p, e)),
        }
    }

    /// Whether a failed write is known not to have happened once a read finds nothing (local
    /// folders and memory answer synchronously; a remote store may still apply a request whose
    /// answer was lost).
    pub fn is_synchronous(&self) -> bool {
        self.local.is_some() || self.url.starts_with("memory://")
    }

    /// Check that create-if-absent really refuses a second create (some S3-compatible servers
    /// accept the header and ignore it, which would let concurrent commits overwrite each other).
    pub async fn check_conditional_create(&self) -> Result<()> {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let probe = format!("_probe/{}", stratalake_crypto::hex::encode(n));
        let first = self.put_create(&probe, Bytes::from_static(b"1")).await?;
        let second = self.put_create(&probe, Bytes::from_static(b"2")).await;
        let _ = self.delete(&probe).await;
        match (first, second?) {
            (true, false) => Ok(()),
            _ => Err(Error::UnsafeStore {
                store: self.url.clone(),
            }),
        }
    }

    /// Delete an object; a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        let p = self.path(rel);
        match self.inner.delete(&p).await {
            Err(e) if self.explain(&e).is_some() => Err(self.fail_write(&p, e)),
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail_write(&p, e)),
        }
    }

    /// List objects below a prefix, returning paths relative to the lake root.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let p = self.path(rel_prefix);
        let metas: Vec<ObjectMeta> = self
            .inner
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| self.fail(&p, e))?;
        Ok(metas.into_iter().map(|m| (self.relative(&m.location), m)).collect())
    }

    /// List objects below a prefix whose location sorts after `rel_offset`.
    pub async fn list_after(&self, rel_prefix: &str, rel_offset: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let p = self.path(rel_prefix);
        let off = self.path(rel_offset);
        let metas: Vec<ObjectMeta> = self
            .inner
            .list_with_offset(Some(&p), &off)
            .try_collect()
            .await
            .map_err(|e| self.fail(&p, e))?;
        Ok(metas.into_iter().map(|m| (self.relative(&m.location), m)).collect())
    }

    /// Delete everything below a prefix. Returns the number of objects deleted.
    pub async fn delete_prefix(&self, rel_prefix: &str) -> Result<usize> {
        let objs = self.list(rel_prefix).await?;
        for (_, meta) in &objs {
            // Delete by the listed location itself: re-deriving it from the relative path
            // would escape already-escaped characters a second time.
            match self.inner.delete(&meta.location).await {
                Err(e) if self.explain(&e).is_some() => return Err(self.fail(&meta.location, e)),
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.fail(&meta.location, e)),
            }
        }
        Ok(objs.len())
    }

    fn relative(&self, p: &Path) -> String {
        let s = p.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(root)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_stores_are_shared_by_name() {
        let a = Store::open("memory://shared-test", &BTreeMap::new()).unwrap();
        let b = Store::open("memory://shared-test", &BTreeMap::new()).unwrap();
        a.put("x/y", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(b.get("x/y").await.unwrap(), Bytes::from_static(b"1"));
        assert!(!b.put_create("x/y", Bytes::from_static(b"2")).await.unwrap());
        assert_eq!(a.get("x/y").await.unwrap(), Bytes::from_static(b"1"));
    }

    #[tokio::test]
    async fn local_create_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        assert!(s.put_create("a/b.json", Bytes::from_static(b"1")).await.unwrap());
        assert!(!s.put_create("a/b.json", Bytes::from_static(b"2")).await.unwrap());
        assert_eq!(s.list("a").await.unwrap().len(), 1);
        assert!(Store::open("ftp://x", &BTreeMap::new()).is_err());
    }

    #[test]
    fn cloud_stores_show_no_credentials_in_debug() {
        let o = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // not this machine's environment
        let sys = tempfile::tempdir().unwrap();
        let env = cloud::Env::new(&[], sys.path());
        let s3 = Store::open_in(
            "s3://bkt/p",
            &o(&[("access_key_id", "AKIDVISIBLE"), ("secret_access_key", "sEcReTvalue")]),
            &env,
        )
        .unwrap();
        // a 32-byte key whose bytes, printed as a list, would start with "[115, 101, 99"
        let key = "c2VjcmV0LWtleS1ieXRlcy1mb3ItdGhlLXRlc3QtMTI=";
        let az = Store::open_in("az://ctr/p", &o(&[("account_name", "acct"), ("access_key", key)]), &env).unwrap();
        for s in [&s3, &az] {
            let d = format!("{s:?} {:?} {:?}", s.object_store(), s.read_store());
            assert!(
                !d.contains("sEcReT") && !d.contains(key) && !d.contains("115, 101, 99"),
                "{d}"
            );
        }
    }
}
