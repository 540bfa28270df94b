//! Commits through a store that fails at chosen points: a write that lands but whose answer is
//! lost, a write that fails outright, a delete that fails. The log stays exact; nothing is
//! committed twice or lost; the tier mover stopped at any step loses no row.
//!
//! The store, [`Faulty`], also stops a simulated process at a chosen call ([`Crash`]); the
//! crash-point tests are in `crashes.rs`.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
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
    /// The write happens, its answer is lost and the client retries it: the retry finds the
    /// object there (what an S3 client does with a create whose response was lost).
    LostThenExists,
    /// The write fails with "no space left on device"; nothing is stored.
    DiskFull,
    /// A read answers with the first half of the bytes asked for.
    ShortRead,
    /// A read answers with one byte flipped.
    FlipByte,
}

impl Fault {
    fn on_read(self) -> bool {
        matches!(self, Fault::ShortRead | Fault::FlipByte)
    }
}

/// Armed faults: path pattern, fault, how many more times it fires.
type Armed = Arc<Mutex<Vec<(String, Fault, u32)>>>;

/// Fails the next puts (or, with [`Fault::BeforeWrite`], deletes; with read faults, gets) whose
/// path contains an armed pattern, as many times as armed; and every call from its [`Crash`]
/// point on.
#[derive(Debug, Default)]
pub(crate) struct Faulty {
    inner: Arc<InMemory>,
    armed: Armed,
    /// Its name in the calls [`Crash`] records.
    name: String,
    crash: Arc<Crash>,
}

/// One call a [`Crash`] saw.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The [`Faulty`] store's name.
    pub store: String,
    /// `put`, `put_create`, `get`, `head`, `list`, `delete`, `copy`, ...
    pub op: &'static str,
    pub path: String,
    /// Whether the store carried it out.
    pub reached: bool,
    /// Whether the caller got the crash error instead of the answer.
    pub stopped: bool,
}

impl Call {
    /// A put, delete or copy.
    pub fn is_write(&self) -> bool {
        is_write(self.op)
    }
}

fn is_write(op: &str) -> bool {
    matches!(op, "put" | "put_create" | "put_multipart" | "delete" | "copy")
}

/// Where a [`Crash`] stops the process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Stop {
    /// Just before call `k` (of all calls): it never reaches the store.
    Before(usize),
    /// Just after write `k` (of the puts, deletes and copies) was carried out, before its answer
    /// came back.
    AfterWrite(usize),
}

/// What a [`Crash`] lets one call do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Go {
    Yes,
    Refused,
    /// Carry it out, then fail.
    Lost,
}

/// A simulated process stop, shared by the stores one process uses: from its [`Stop`] on
/// (calls counted from 0 since [`Crash::arm`], across those stores) every call fails, as if
/// the process had died there. Records every call.
#[derive(Debug, Default)]
pub(crate) struct Crash {
    state: Mutex<CrashState>,
}

#[derive(Debug, Default)]
struct CrashState {
    stop: Option<Stop>,
    calls: Vec<Call>,
    writes: usize,
    stopped: bool,
}

fn crashed() -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: "injected crash: the process stopped here".into(),
    }
}

impl Crash {
    /// Start counting from 0; stop there (`None`: never).
    pub fn arm(&self, stop: Option<Stop>) {
        *self.state.lock().unwrap() = CrashState {
            stop,
            ..Default::default()
        };
    }

    /// The calls since [`Crash::arm`].
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    fn call(&self, store: &str, op: &'static str, path: &Path) -> Go {
        let mut st = self.state.lock().unwrap();
        let write = is_write(op);
        let go = match st.stop {
            _ if st.stopped => Go::Refused,
            Some(Stop::Before(k)) if st.calls.len() >= k => Go::Refused,
            Some(Stop::AfterWrite(k)) if write && st.writes == k => Go::Lost,
            _ => Go::Yes,
        };
        st.stopped = go != Go::Yes;
        st.writes += usize::from(write);
        st.calls.push(Call {
            store: store.to_string(),
            op,
            path: path.to_string(),
            reached: go != Go::Refused,
            stopped: go != Go::Yes,
        });
        go
    }
}

fn take_fault(armed: &Armed, location: &Path, read: bool) -> Option<Fault> {
    let mut a = armed.lock().unwrap();
    let i = a
        .iter()
        .position(|(p, f, n)| *n > 0 && f.on_read() == read && location.as_ref().contains(p.as_str()))?;
    a[i].2 -= 1;
    let f = a[i].1;
    a.retain(|(_, _, n)| *n > 0);
    Some(f)
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty")
    }
}

impl Faulty {
    /// A store named `name` over `inner`, stopping with `crash`.
    pub(crate) fn new(name: &str, inner: Arc<InMemory>, crash: Arc<Crash>) -> Self {
        Self {
            inner,
            armed: Default::default(),
            name: name.to_string(),
            crash,
        }
    }

    /// For a call that changes nothing: fail if the process has stopped.
    fn stop(&self, op: &'static str, location: &Path) -> object_store::Result<()> {
        match self.crash.call(&self.name, op, location) {
            Go::Yes => Ok(()),
            Go::Refused | Go::Lost => Err(crashed()),
        }
    }

    /// Fire `fault` once at the next operation on a path containing `pattern`.
    fn arm(&self, pattern: &str, fault: Fault) {
        self.arm_n(pattern, fault, 1);
    }

    fn arm_n(&self, pattern: &str, fault: Fault, times: u32) {
        self.armed.lock().unwrap().push((pattern.to_string(), fault, times));
    }

    fn disarm(&self) {
        self.armed.lock().unwrap().clear();
    }

    fn take(&self, location: &Path) -> Option<Fault> {
        take_fault(&self.armed, location, false)
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: "injected fault: connection reset".into(),
    }
}

fn disk_full() -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: Box::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
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
        let op = match opts.mode {
            object_store::PutMode::Create => "put_create",
            _ => "put",
        };
        match self.crash.call(&self.name, op, location) {
            Go::Yes => {}
            Go::Refused => return Err(crashed()),
            Go::Lost => {
                self.inner.put_opts(location, payload, opts).await?;
                return Err(crashed());
            }
        }
        match self.take(location) {
            Some(Fault::BeforeWrite) => Err(injected()),
            Some(Fault::DiskFull) => Err(disk_full()),
            Some(Fault::AfterWrite) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected())
            }
            Some(Fault::LostThenExists) => {
                self.inner.put_opts(location, payload.clone(), opts.clone()).await?;
                self.inner.put_opts(location, payload, opts).await
            }
            Some(Fault::ShortRead | Fault::FlipByte) | None => self.inner.put_opts(location, payload, opts).await,
        }
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // counted once: the parts are not (nothing here uploads in parts)
        self.stop("put_multipart", location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let head = options.head;
        self.stop(if head { "head" } else { "get" }, location)?;
        let r = self.inner.get_opts(location, options).await?;
        let fault = if head {
            None
        } else {
            take_fault(&self.armed, location, true)
        };
        let Some(fault) = fault else { return Ok(r) };
        let (range, meta) = (r.range.clone(), r.meta.clone());
        let body = r.bytes().await?;
        let body = match fault {
            Fault::ShortRead => body.slice(..body.len() / 2),
            _ => {
                let mut b = body.to_vec();
                let mid = b.len() / 2;
                b[mid] ^= 0x40;
                bytes::Bytes::from(b)
            }
        };
        Ok(GetResult {
            payload: object_store::GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
            meta,
            range,
            attributes: Default::default(),
        })
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (armed, crash, name) = (self.armed.clone(), self.crash.clone(), self.name.clone());
        // deletions whose answer is lost (carried out, then failed)
        let lost = Arc::new(Mutex::new(Vec::new()));
        let lost2 = lost.clone();
        let checked = locations
            .map(move |l| match l {
                Ok(p) => match crash.call(&name, "delete", &p) {
                    Go::Refused => Err(crashed()),
                    Go::Yes if take_fault(&armed, &p, false) == Some(Fault::BeforeWrite) => Err(injected()),
                    Go::Yes => Ok(p),
                    Go::Lost => {
                        lost.lock().unwrap().push(p.clone());
                        Ok(p)
                    }
                },
                other => other,
            })
            .boxed();
        self.inner
            .delete_stream(checked)
            .map(move |r| match r {
                Ok(p) if lost2.lock().unwrap().contains(&p) => Err(crashed()),
                other => other,
            })
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.stop("list", prefix.unwrap_or(&Path::default())) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.stop("list", prefix.unwrap_or(&Path::default()))?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        match self.crash.call(&self.name, "copy", to) {
            Go::Yes => self.inner.copy_opts(from, to, options).await,
            Go::Refused => Err(crashed()),
            Go::Lost => {
                self.inner.copy_opts(from, to, options).await?;
                Err(crashed())
            }
        }
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
    let (_, t) = events_table(Tiers::new(stores, "hot", "hot").unwrap()).await;
    (faulty, t)
}

/// The catalog of a lake on `tiers` (memory keys) and its table `default.ev`.
async fn events_table(tiers: Tiers) -> (Arc<Catalog>, stratalake::Table) {
    let ctx = Arc::new(StorageContext {
        tiers,
        keyring: Keyring::new(
            Arc::new(stratalake::crypto::MemoryKeyProvider::new()),
            Classifications::default(),
        ),
        checkpoint_interval: 10,
        write: WriteOptions::default(),
        guard: None,
        reads: Default::default(),
        commit: Default::default(),
    });
    let catalog = Arc::new(Catalog::new(ctx));
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
    (catalog, t)
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
            stratalake::table::verify::verify_table(&t, &mut r, &Access::All, &|_| {})
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

/// A lake whose `hot` tier holds the catalog and logs (memory) and whose data files go to a
/// faulty `cold` tier, read by queries through `read` (given the faulty store and the tier's
/// expected sizes and checksums).
async fn faulty_data_tier(
    read: impl FnOnce(Arc<Faulty>, &Store) -> Option<Arc<dyn ObjectStore>>,
) -> (Arc<Faulty>, Arc<Catalog>, stratalake::Table) {
    let faulty = Arc::new(Faulty::default());
    let mut cold = Store::from_object_store("faulty://cold", faulty.clone(), Path::default());
    if let Some(r) = read(faulty.clone(), &cold) {
        cold = cold.with_read_store(r);
    }
    let hot = Store::open(&format!("memory://faulty-hot-{}", uuid_like()), &Default::default()).unwrap();
    let stores = std::collections::BTreeMap::from([("hot".to_string(), hot), ("cold".to_string(), cold)]);
    let (catalog, t) = events_table(Tiers::new(stores, "hot", "cold").unwrap()).await;
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    for (i, r) in ["north", "south"].iter().enumerate() {
        let i = i as i64 * 1000;
        t.append(&[events(&schema, i..i + 1000, r)], "w").await.unwrap();
    }
    (faulty, catalog, t)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `count(*), sum(id)` of the table through SQL, or the error's text.
async fn totals(catalog: &Arc<Catalog>) -> Result<String, String> {
    let q = stratalake::SqlSession::new(catalog.clone(), "t");
    match q
        .execute("SELECT count(*), sum(id), min(secret_note) FROM default.ev")
        .await
    {
        Ok(out) => match &out[0] {
            stratalake::Output::Rows { batches, .. } => Ok(csv(batches)),
            other => Err(format!("{other:?}")),
        },
        Err(e) => Err(e.to_string()),
    }
}

const TOTALS: &str = "2000,1999000,note 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_read_is_retried_and_a_persistent_one_fails_the_query_not_the_process() {
    let (faulty, catalog, _t) = faulty_data_tier(|_, _| None).await;
    assert_eq!(totals(&catalog).await.unwrap(), TOTALS);
    // one truncated answer per file: retried, the answer is exact
    faulty.arm_n("default/ev/data/", Fault::ShortRead, 2);
    assert_eq!(totals(&catalog).await.unwrap(), TOTALS);
    // a store that keeps cutting answers short: the query fails naming it; nothing panics
    faulty.arm_n("default/ev/data/", Fault::ShortRead, 1000);
    let e = totals(&catalog).await.unwrap_err();
    assert!(e.contains("short read of default/ev/data/"), "{e}");
    // healthy again: the next query answers
    faulty.disarm();
    assert_eq!(totals(&catalog).await.unwrap(), TOTALS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_answer_does_not_poison_the_read_cache() {
    for fault in [Fault::ShortRead, Fault::FlipByte] {
        let dir = tempfile::tempdir().unwrap();
        let cache = stratalake::tiering::cache::ReadCache::open(dir.path(), 64 << 20).unwrap();
        let c2 = cache.clone();
        // the cache reads the faulty store directly (no length check below it): its own checks
        // against the log are all that keeps a bad copy out
        let (faulty, catalog, _t) = faulty_data_tier(move |raw, store| {
            let raw: Arc<dyn ObjectStore> = raw;
            Some(Arc::new(stratalake::tiering::cache::CachedStore::new(
                "cold",
                raw,
                c2,
                store.expected().clone(),
            )))
        })
        .await;
        faulty.arm("default/ev/data/", fault);
        // the bad answer meets the first read of a file (the planner's footer read, which
        // gives up quietly, or the scan, which fails): either way it is not kept
        if let Err(e) = totals(&catalog).await {
            assert!(e.contains("not cached"), "{fault:?}: {e}");
        }
        assert!(faulty.armed.lock().unwrap().is_empty(), "{fault:?} never fired");
        // every later query reads a good copy: the bad one was never kept
        for _ in 0..3 {
            assert_eq!(totals(&catalog).await.unwrap(), TOTALS, "{fault:?}");
        }
        assert_eq!(cache.stats().files, 2, "{fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_names_the_cause_commits_nothing_and_reads_say_why_they_stop() {
    let (faulty, catalog, t) = faulty_data_tier(|_, _| None).await;
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    let before = t.snapshot().await.unwrap();
    // the data tier fills up mid-write
    faulty.arm("region=east", Fault::DiskFull);
    let e = t
        .append(
            &[events(&schema, 5000..5010, "west"), events(&schema, 6000..6010, "east")],
            "w",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, stratalake::table::Error::StoreFull { .. }), "{e:?}");
    assert!(e.to_string().starts_with("no space left on the store writing"), "{e}");
    assert!(e.nothing_committed());
    let after = t.snapshot().await.unwrap();
    assert_eq!((after.version, after.rows()), (before.version, before.rows()));
    let cold = t.context().tiers.get("cold").unwrap().clone();
    assert_eq!(
        cold.list("default/ev/data").await.unwrap().len(),
        2,
        "the write's files are gone"
    );
    // nothing committed is lost, and reads go on
    assert_eq!(totals(&catalog).await.unwrap(), TOTALS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_audit_log_stops_statements_with_one_line_and_a_lost_answer_writes_one_record() {
    let (faulty, t) = faulty_table().await;
    let catalog = Arc::new(Catalog::new(t.context().clone()));
    let q = stratalake::SqlSession::new(catalog.clone(), "t");
    q.execute("SELECT count(*) FROM default.ev").await.unwrap();
    let n = catalog.audit().records().await.unwrap().len();
    faulty.arm("_audit/", Fault::DiskFull);
    let e = q
        .execute("SELECT count(*) FROM default.ev")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("the audit log cannot be written (no space left on the store"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(catalog.audit().records().await.unwrap().len(), n);
    // the client retried a create whose answer was lost: one record, the chain intact
    faulty.arm("_audit/", Fault::LostThenExists);
    q.execute("SELECT count(*) FROM default.ev").await.unwrap();
    let recs = catalog.audit().records().await.unwrap();
    assert_eq!(recs.len(), n + 1);
    // the same for a lost answer that comes back as an error
    faulty.arm("_audit/", Fault::AfterWrite);
    q.execute("SELECT count(*) FROM default.ev").await.unwrap();
    assert_eq!(catalog.audit().records().await.unwrap().len(), n + 2);
    assert!(catalog.audit().verify().await.unwrap().is_empty());
    // and for table commits and catalog changes
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    faulty.arm("_log/00000000000000000001.json", Fault::LostThenExists);
    assert_eq!(t.append(&[events(&schema, 0..10, "north")], "w").await.unwrap(), 1);
    assert_eq!(t.snapshot().await.unwrap().version, 1);
    faulty.arm("_catalog/_log/", Fault::LostThenExists);
    catalog.create_namespace("other", false, "t").await.unwrap();
    faulty.arm("_catalog/_log/", Fault::AfterWrite);
    catalog.create_namespace("third", false, "t").await.unwrap();
    let state = catalog.state().await.unwrap();
    assert!(state.namespaces.contains_key("other") && state.namespaces.contains_key("third"));
}

#[tokio::test]
async fn a_write_that_committed_but_could_not_be_audited_says_so() {
    let (faulty, t) = faulty_table().await;
    let catalog = Arc::new(Catalog::new(t.context().clone()));
    let q = stratalake::SqlSession::new(catalog.clone(), "t");
    faulty.arm("_audit/", Fault::DiskFull);
    let e = q
        .execute("INSERT INTO default.ev VALUES (1, 'north', 'n')")
        .await
        .unwrap_err();
    let outer = stratalake::Error::from(e);
    assert_eq!(outer.commit_outcome(), stratalake::CommitOutcome::Partly, "{outer}");
    assert!(outer.to_string().contains("is committed"), "{outer}");
    assert_eq!(t.snapshot().await.unwrap().rows(), 1);
}
