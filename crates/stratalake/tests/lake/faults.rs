//! Commits through a store that fails at chosen points: a write that lands but whose answer is
//! lost, a write that fails outright. The log stays exact; nothing is committed twice or lost.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use stratalake::table::catalog::Catalog;
use stratalake::table::write::WriteOptions;
use stratalake::table::{Keyring, StorageContext, Store, Tiers};
use stratalake::{Classifications, TableIdent};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The write happens, then the caller gets an error (a lost response).
    AfterWrite,
    /// The write fails; nothing is stored.
    BeforeWrite,
}

/// Fails the next put whose path contains `pattern`, once.
#[derive(Debug, Default)]
struct Faulty {
    inner: InMemory,
    armed: Mutex<Option<(String, Fault)>>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty")
    }
}

impl Faulty {
    fn arm(&self, pattern: &str, fault: Fault) {
        *self.armed.lock().unwrap() = Some((pattern.to_string(), fault));
    }

    fn take(&self, location: &Path) -> Option<Fault> {
        let mut a = self.armed.lock().unwrap();
        match &*a {
            Some((p, f)) if location.as_ref().contains(p.as_str()) => {
                let f = *f;
                *a = None;
                Some(f)
            }
            _ => None,
        }
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: "injected fault: connection reset".into(),
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.take(location) {
            Some(Fault::BeforeWrite) => Err(injected()),
            Some(Fault::AfterWrite) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected())
            }
            None => self.inner.put_opts(location, payload, opts).await,
        }
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
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

async fn faulty_table() -> (Arc<Faulty>, stratalake::Table) {
    let faulty = Arc::new(Faulty::default());
    let store = Store::from_object_store("faulty://", faulty.clone(), Path::default());
    let ctx = Arc::new(StorageContext {
        tiers: Tiers::single("hot", store),
        keyring: Keyring::new(
            Arc::new(stratalake::crypto::MemoryKeyProvider::new()),
            Classifications::default(),
        ),
        checkpoint_interval: 10,
        write: WriteOptions::default(),
    });
    let catalog = Catalog::new(ctx);
    catalog.create_namespace("default", true, "t").await.unwrap();
    let t = catalog
        .create_table(
            &TableIdent::new("default", "ev"),
            events_schema(),
            Default::default(),
            "t",
        )
        .await
        .unwrap();
    (faulty, t)
}

#[tokio::test]
async fn a_lost_commit_response_is_not_a_lost_or_double_commit() {
    let (faulty, t) = faulty_table().await;
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    faulty.arm("_log/00000000000000000001.json", Fault::AfterWrite);
    // the commit landed although the store reported an error: the writer reads it back
    assert_eq!(t.append(&[events(&schema, 0..10, "north")], "w").await.unwrap(), 1);
    let s = t.snapshot().await.unwrap();
    assert_eq!((s.version, s.rows(), s.files.len()), (1, 10, 1));
}

#[tokio::test]
async fn a_failed_commit_write_commits_nothing_and_a_retry_succeeds() {
    let (faulty, t) = faulty_table().await;
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    faulty.arm("_log/00000000000000000001.json", Fault::BeforeWrite);
    let e = t.append(&[events(&schema, 0..10, "north")], "w").await.unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(t.snapshot().await.unwrap().version, 0);
    assert_eq!(t.append(&[events(&schema, 0..10, "north")], "w").await.unwrap(), 1);
    assert_eq!(t.snapshot().await.unwrap().rows(), 10);
}

#[tokio::test]
async fn a_failed_data_upload_commits_nothing_and_leaves_no_files() {
    let (faulty, t) = faulty_table().await;
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    faulty.arm("region=south", Fault::BeforeWrite);
    let e = t
        .append(
            &[events(&schema, 0..10, "north"), events(&schema, 10..20, "south")],
            "w",
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(t.snapshot().await.unwrap().version, 0);
    let store = t.context().tiers.metadata().clone();
    assert!(store.list("default/ev/data").await.unwrap().is_empty());
}
