//! Commits through a store that fails at chosen points: a write that lands but whose answer is
//! lost, a write that fails outright, a delete that fails. The log stays exact; nothing is
//! committed twice or lost; the tier mover stopped at any step loses no row.

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

type Armed = Arc<Mutex<Option<(String, Fault)>>>;

/// Fails the next put (or, with [`Fault::BeforeWrite`], delete) whose path contains `pattern`,
/// once.
#[derive(Debug, Default)]
struct Faulty {
    inner: InMemory,
    armed: Armed,
}

fn take_fault(armed: &Armed, location: &Path) -> Option<Fault> {
    let mut a = armed.lock().unwrap();
    match &*a {
        Some((p, f)) if location.as_ref().contains(p.as_str()) => {
            let f = *f;
            *a = None;
            Some(f)
        }
        _ => None,
    }
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
        take_fault(&self.armed, location)
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
        use futures::StreamExt;
        let armed = self.armed.clone();
        let checked = locations
            .map(move |l| match l {
                Ok(p) if take_fault(&armed, &p) == Some(Fault::BeforeWrite) => Err(injected()),
                other => other,
            })
            .boxed();
        self.inner.delete_stream(checked)
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

/// Table `default.ev` in a lake whose `hot` tier (metadata and writes) is a faulty store, plus
/// the other tiers given.
async fn faulty_table_with(others: Vec<(&str, Store)>) -> (Arc<Faulty>, stratalake::Table) {
    let faulty = Arc::new(Faulty::default());
    let mut stores = std::collections::BTreeMap::new();
    stores.insert(
        "hot".to_string(),
        Store::from_object_store("faulty://", faulty.clone(), Path::default()),
    );
    for (name, store) in others {
        stores.insert(name.to_string(), store);
    }
    let ctx = Arc::new(StorageContext {
        tiers: Tiers::new(stores, "hot", "hot").unwrap(),
        keyring: Keyring::new(
            Arc::new(stratalake::crypto::MemoryKeyProvider::new()),
            Classifications::default(),
        ),
        checkpoint_interval: 10,
        write: WriteOptions::default(),
        guard: None,
        reads: Default::default(),
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

async fn faulty_table() -> (Arc<Faulty>, stratalake::Table) {
    faulty_table_with(Vec::new()).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mover_stopped_at_any_step_loses_nothing() {
    use std::collections::BTreeMap;
    use stratalake::table::heat::ReadHeat;
    use stratalake::table::keyring::Access;
    use stratalake::tiering::config::TierFields;
    use stratalake::tiering::mover::{MoveOptions, run};
    use stratalake::tiering::plan::{TableState, plan};
    use stratalake::tiering::{Policy, RuleConfig};

    let cold = Store::open(
        &format!("memory://mover-faults-{}", std::process::id()),
        &Default::default(),
    )
    .unwrap();
    let (faulty, t) = faulty_table_with(vec![("cold", cold.clone())]).await;
    let ctx = t.context().clone();
    let hot = ctx.tiers.get("hot").unwrap().clone();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    for (i, r) in ["north", "south", "east"].iter().enumerate() {
        let i = i as i64 * 100;
        t.append(&[events(&schema, i..i + 100, r)], "w").await.unwrap();
    }
    let policy = Policy::new(
        &[
            TierFields {
                name: "hot",
                ..Default::default()
            },
            TierFields {
                name: "cold",
                ..Default::default()
            },
        ],
        &Default::default(),
        &[RuleConfig {
            to: "cold".into(),
            since_write: Some("0s".into()),
            ..Default::default()
        }],
        &[],
        &[],
    )
    .unwrap();
    let tables = BTreeMap::from([("default.ev".to_string(), t.clone())]);
    let opts = MoveOptions {
        retention_ms: 0,
        ..Default::default()
    };
    let make_plan = || async {
        let states = vec![TableState {
            table: t.clone(),
            snapshot: t.snapshot().await.unwrap(),
        }];
        plan(
            &policy,
            &states,
            &ReadHeat::default(),
            stratalake::table::write::now_ms() + 1,
        )
    };
    // Every row readable exactly once, every live file where the log says, with its crc32.
    let check = |tier_of_all: &'static str| {
        let t = t.clone();
        async move {
            let s = t.snapshot().await.unwrap();
            assert_eq!(s.rows(), 300);
            assert!(s.files.values().all(|f| f.tier == tier_of_all), "{:?}", s.files);
            let mut r = stratalake::VerifyReport::default();
            stratalake::table::verify::verify_table(&t, &mut r, &Access::All, &|_, _| {})
                .await
                .unwrap();
            assert!(r.problems.is_empty(), "{:?}", r.problems);
            assert_eq!(r.rows, 300);
        }
    };
    let data_on = |store: Store| async move { store.list("default/ev/data").await.unwrap().len() };

    // 1. Stopped after the copies, before the commit: the log still says hot.
    let p = make_plan().await;
    assert_eq!(p.moves.len(), 3);
    faulty.arm("_log/00000000000000000004.json", Fault::BeforeWrite);
    let e = run(&ctx, &tables, &p, &opts).await.unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    check("hot").await;
    assert_eq!(data_on(cold.clone()).await, 3); // unreferenced copies, overwritten by a rerun

    // 2. Stopped after the commit, before the old copies are deleted.
    let p = make_plan().await;
    assert_eq!(p.moves.len(), 3);
    faulty.arm("default/ev/data/", Fault::BeforeWrite);
    let e = run(&ctx, &tables, &p, &opts).await.unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    check("cold").await;
    assert_eq!(data_on(hot.clone()).await, 3);

    // 3. A rerun has nothing to move and finishes the cleanup.
    let p = make_plan().await;
    assert!(p.moves.is_empty());
    let r = run(&ctx, &tables, &p, &opts).await.unwrap();
    assert_eq!(r.old_copies_deleted, 3);
    assert_eq!(data_on(hot.clone()).await, 0);
    check("cold").await;

    // 4. A lost commit response: the mover reads its commit back and counts it once.
    let p = stratalake::tiering::plan::plan_explicit(
        &TableState {
            table: t.clone(),
            snapshot: t.snapshot().await.unwrap(),
        },
        "hot",
        &[],
        "recall",
    );
    let v = t.snapshot().await.unwrap().version;
    faulty.arm(&format!("_log/{:020}.json", v + 1), Fault::AfterWrite);
    let r = run(&ctx, &tables, &p, &opts).await.unwrap();
    assert_eq!((r.files_moved, r.commits), (3, 1));
    assert_eq!(t.snapshot().await.unwrap().version, v + 1);
    check("hot").await;
}
