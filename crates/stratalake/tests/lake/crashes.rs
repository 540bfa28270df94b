//! Crash points, chosen deterministically: each operation runs once through stores that record
//! every call (N of them); then, on a fresh copy of the same starting state each time, it runs
//! again with the process stopped before call k, for every k, and just after write k landed
//! (its answer lost), for every write: from there every call fails without reaching any store,
//! and the lake handle is dropped. A lake reopened on what the stores hold must then be whole:
//!
//! * the catalog and every table read, every committed version with all its files (size and
//!   crc32 as the log says), `verify` finds nothing, the audit chain holds;
//! * the state is exactly the one before the operation or the one after it, never a mix: after
//!   it exactly when the operation's commit object (a table or catalog commit, a backup
//!   manifest) reached the store in that run. An operation that reported success has
//!   committed, and one whose commit landed never says that nothing was committed;
//! * running the operation again (when it did not land, or when finishing is its job: the tier
//!   mover, vacuum) succeeds and gives the state of the uninterrupted run, with no object left
//!   over where the operation promises to clean up.
//!
//! Locks a stopped process leaves name a process id that is gone (`u32::MAX`), as after a kill.
//! `CRASH_TRACE=1` prints the counted calls and each crash point's outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::memory::InMemory;
use object_store::path::Path;
use stratalake::backup::{Repository, RestoreOptions};
use stratalake::crypto::MemoryKeyProvider;
use stratalake::table::Store;
use stratalake::tiering::RuleConfig;
use stratalake::{Clock, LakeBuilder, LakeConfig, Session, TableIdent};

use super::faults::{Call, Crash, Faulty, Stop};
use super::{csv, events, events_schema};

/// The stores of a starting state, by name: lake tiers (`hot`, `cold`), a backup repository
/// (`backups`), a restore target (`target`). One master key provider for every copy.
struct World {
    stores: BTreeMap<&'static str, Arc<InMemory>>,
    keys: Arc<MemoryKeyProvider>,
}

impl World {
    fn new(names: &[&'static str]) -> Self {
        World {
            stores: names.iter().map(|n| (*n, Arc::new(InMemory::new()))).collect(),
            keys: Arc::new(MemoryKeyProvider::new()),
        }
    }

    /// A copy of every store's objects (with their modification times).
    fn fork(&self) -> Self {
        World {
            stores: self.stores.iter().map(|(n, m)| (*n, Arc::new(m.fork()))).collect(),
            keys: self.keys.clone(),
        }
    }

    /// The objects of store `name` under `prefix`, relative to its root.
    async fn objects(&self, name: &str, prefix: &str) -> Vec<String> {
        raw(&self.stores[name])
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// A killed process's locks name a process that is gone.
    async fn bury_locks(&self) {
        for mem in self.stores.values() {
            let s = raw(mem);
            for (name, _) in s.list("").await.unwrap() {
                let dir = name.rsplit('/').nth(1).unwrap_or("");
                if !(dir == "_locks" || dir == "locks") || !name.ends_with(".json") {
                    continue;
                }
                let mut lock: serde_json::Value = serde_json::from_slice(&s.get(&name).await.unwrap()).unwrap();
                lock["pid"] = u32::MAX.into();
                s.put(&name, serde_json::to_vec(&lock).unwrap().into()).await.unwrap();
            }
        }
    }
}

fn raw(mem: &Arc<InMemory>) -> Store {
    Store::from_object_store("memory://crash-raw", mem.clone(), Path::default())
}

/// One process on a world: its stores share one [`Crash`].
struct Process {
    crash: Arc<Crash>,
    stores: BTreeMap<&'static str, Store>,
    keys: Arc<MemoryKeyProvider>,
}

/// `hot` (metadata and writes) on store `hot`.
const HOT: &[(&str, &str)] = &[("hot", "hot")];
/// `hot` and `cold`, with a rule moving every file to `cold`.
const HOT_COLD: &[(&str, &str)] = &[("hot", "hot"), ("cold", "cold")];
/// The restore target: its `hot` tier on store `target`.
const TARGET: &[(&str, &str)] = &[("hot", "target")];

impl Process {
    fn new(world: &World) -> Self {
        let crash = Arc::new(Crash::default());
        let stores = world
            .stores
            .iter()
            .map(|(n, mem)| {
                let f = Faulty::new(n, mem.clone(), crash.clone());
                // not a URL anything can open: a store reached around this one would fail
                (
                    *n,
                    Store::from_object_store(format!("faulty://{n}"), Arc::new(f), Path::default()),
                )
            })
            .collect();
        Process {
            crash,
            stores,
            keys: world.keys.clone(),
        }
    }

    /// A builder for a lake on `tiers` (tier name, store name), the first the metadata and
    /// write tier; later ones receive every file by a rule.
    fn builder(&self, tiers: &[(&str, &str)], clock: Clock) -> LakeBuilder {
        let mut cfg = LakeConfig::single_tier(&format!("faulty://{}", tiers[0].1));
        cfg.tiers[0].name = tiers[0].0.into();
        // a checkpoint at every third version: the operations below write one
        cfg.lake.checkpoint_interval = 3;
        for (tier, store) in &tiers[1..] {
            let mut t = cfg.tiers[0].clone();
            (t.name, t.url) = (tier.to_string(), format!("faulty://{store}"));
            cfg.tiers.push(t);
            cfg.rules.push(RuleConfig {
                to: tier.to_string(),
                since_write: Some("0s".into()),
                ..Default::default()
            });
        }
        let mut b = LakeBuilder::from_config(cfg)
            .key_provider(self.keys.clone())
            .clock(clock);
        for (tier, store) in tiers {
            b = b.tier_store(tier, self.stores[store].clone());
        }
        b
    }

    async fn lake(&self, tiers: &[(&str, &str)]) -> Session {
        self.lake_at(tiers, Clock::system()).await
    }

    async fn lake_at(&self, tiers: &[(&str, &str)], clock: Clock) -> Session {
        self.builder(tiers, clock).open().await.unwrap().session("admin")
    }

    async fn repo(&self, lake: &Session) -> stratalake::Result<Repository> {
        let keyring = &lake.catalog_unchecked().context().keyring;
        Ok(Repository::open(self.stores["backups"].clone(), keyring).await?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Ingest,
    Delete,
    Update,
    TierRun,
    Backup,
    Restore,
    Vacuum,
}

/// Every `_log/<v>.json` create of table `default.ev`.
fn table_commit(c: &Call, store: &str) -> bool {
    c.store == store && c.op == "put_create" && c.path.starts_with("default/ev/_log/")
}

impl Op {
    fn stores(self) -> &'static [&'static str] {
        match self {
            Op::TierRun => &["hot", "cold"],
            Op::Backup => &["hot", "backups"],
            Op::Restore => &["hot", "backups", "target"],
            _ => &["hot"],
        }
    }

    fn tiers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Op::TierRun => HOT_COLD,
            _ => HOT,
        }
    }

    /// Whether call `c`, landed, makes the operation's effect visible.
    fn commits(self, c: &Call) -> bool {
        match self {
            Op::Ingest | Op::Delete | Op::Update | Op::TierRun => table_commit(c, "hot"),
            Op::Backup => c.store == "backups" && c.op.starts_with("put") && c.path.starts_with("snapshots/"),
            Op::Restore => c.store == "target" && c.op == "put_create" && c.path.starts_with("_catalog/_log/"),
            // deletions only: nothing to land
            Op::Vacuum => false,
        }
    }

    /// Whether to run it again after it landed: its rerun finishes what the stopped run left
    /// (the mover deletes old copies). Otherwise a rerun would do it twice (an append), so the
    /// operator, seeing it in the history, does not.
    fn rerun_after_landing(self) -> bool {
        matches!(self, Op::TierRun | Op::Vacuum)
    }

    /// The starting state.
    async fn setup(self, world: &World) {
        let p = Process::new(world);
        let lake = p
            .builder(self.tiers(), Clock::system())
            .admin("admin")
            .create()
            .await
            .unwrap();
        let lake = lake.session("admin");
        let t = lake.create_table("ev", events_schema()).await.unwrap();
        let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
        for (i, r) in ["north", "south"].iter().enumerate() {
            let i = i as i64 * 100;
            t.append(&[events(&schema, i..i + 100, r)], "admin").await.unwrap();
        }
        match self {
            Op::Backup | Op::Restore => {
                let keyring = &lake.catalog_unchecked().context().keyring;
                let repo = Repository::init(p.stores["backups"].clone(), keyring).await.unwrap();
                lake.backups().create(&repo).await.unwrap();
                if self == Op::Backup {
                    // the next backup copies one new file
                    t.append(&[events(&schema, 200..250, "east")], "admin").await.unwrap();
                } else {
                    p.builder(TARGET, Clock::system())
                        .admin("admin")
                        .create()
                        .await
                        .unwrap();
                }
            }
            Op::Vacuum => {
                lake.sql("DELETE FROM ev WHERE id % 10 = 0").await.unwrap();
                // a file a stopped writer left
                let orphan = "default/ev/data/region=north/00000000-0000-4000-8000-000000000000.parquet";
                p.stores["hot"].put(orphan, "PAR1 left behind".into()).await.unwrap();
            }
            _ => {}
        }
    }

    /// The operation, as one process runs it.
    async fn run(self, p: &Process, input: &std::path::Path) -> stratalake::Result<()> {
        if self == Op::Restore {
            let target = p.lake(TARGET).await;
            let repo = p.repo(&target).await?;
            let latest = repo.list().await.map_err(stratalake::Error::from)?.pop().unwrap();
            let opts = RestoreOptions {
                concurrency: 1,
                ..Default::default()
            };
            target.backups().restore(&repo, &latest.id).options(opts).await?;
            return Ok(());
        }
        // vacuum reads the time 7 hours on: files left by stopped writers are past the grace
        let clock = match self {
            Op::Vacuum => Clock::from_fn(|| stratalake::table::write::now_ms() + 7 * 3600 * 1000),
            _ => Clock::system(),
        };
        let lake = p.lake_at(self.tiers(), clock).await;
        match self {
            Op::Ingest => {
                let r = lake.ingest("ev", [input]).await?;
                assert_eq!(r.rows, 20);
            }
            Op::Delete => {
                lake.sql("DELETE FROM ev WHERE id % 10 = 0").await?;
            }
            Op::Update => {
                lake.sql("UPDATE ev SET secret_note = 'redacted' WHERE region = 'south'")
                    .await?;
            }
            Op::TierRun => {
                let plan = lake.tiers().plan().await?;
                lake.tiers().run(&plan).retention(Duration::ZERO).concurrency(1).await?;
            }
            Op::Backup => {
                let repo = p.repo(&lake).await?;
                lake.backups().create(&repo).await?;
            }
            Op::Vacuum => {
                lake.vacuum("ev").retain(Duration::ZERO).force(true).await?;
            }
            Op::Restore => unreachable!(),
        }
        Ok(())
    }

    /// The state the operation changes: the logs (every version's operation, rows and files
    /// per tier) and the rows, or the repository's backups.
    async fn state(self, p: &Process) -> String {
        match self {
            Op::Backup => {
                let lake = p.lake(HOT).await;
                let mut out = String::new();
                for b in p.repo(&lake).await.unwrap().list().await.unwrap() {
                    writeln!(out, "{:?} files={} bytes={} {}", b.tables, b.files, b.bytes, b.status).unwrap();
                }
                out
            }
            Op::Restore => tables(&p.lake(TARGET).await).await,
            _ => tables(&p.lake(self.tiers()).await).await,
        }
    }

    /// The lake (or lakes) it touched are whole.
    async fn check_whole(self, p: &Process, at: &str) {
        let lake = match self {
            Op::Restore => p.lake(TARGET).await,
            _ => p.lake(self.tiers()).await,
        };
        let v = lake.verify().await.unwrap();
        assert!(v.problems.is_empty(), "{at}: {:?}", v.problems);
        let audit = lake.catalog_unchecked().audit().verify().await.unwrap();
        assert!(audit.is_empty(), "{at}: {audit:?}");
        // vacuum deletes what only older versions need
        if self != Op::Vacuum {
            every_version_readable(&lake, at).await;
        }
        if self == Op::Backup {
            let r = p.repo(&lake).await.unwrap().verify(true, &|_| {}).await.unwrap();
            assert!(r.problems.is_empty(), "{at}: {:?}", r.problems);
        }
    }

    /// After a finished run: nothing left over that the operation promises to clean up.
    /// `stopped`: the calls of the stopped run, whose staged files may stay behind.
    async fn check_tidy(self, world: &World, finished: &World, stopped: &[Call], at: &str) {
        match self {
            Op::TierRun => {
                assert_eq!(
                    world.objects("hot", "default/ev/data").await,
                    Vec::<String>::new(),
                    "{at}"
                );
                assert_eq!(
                    world.objects("cold", "default/ev/data").await.len(),
                    live_files(world, self).await,
                    "{at}"
                );
            }
            Op::Vacuum => {
                assert_eq!(
                    world.objects("hot", "default/ev/data").await.len(),
                    live_files(world, self).await,
                    "{at}"
                );
            }
            Op::Backup => {
                for prefix in ["data", "meta", "snapshots"] {
                    assert_eq!(
                        world.objects("backups", prefix).await.len(),
                        finished.objects("backups", prefix).await.len(),
                        "{at}: {prefix}"
                    );
                }
            }
            Op::Restore => {
                // the next run removes what a stopped restore left before copying again
                assert_eq!(
                    world.objects("target", "default/ev").await.len(),
                    finished.objects("target", "default/ev").await.len(),
                    "{at}"
                );
            }
            Op::Ingest | Op::Delete | Op::Update => {
                // a stopped writer's staged files stay (invisible; vacuum reclaims them), and
                // nothing else: a rerun leaves none of its own
                let referenced = referenced_files(world, self).await;
                let staged: BTreeSet<&str> = stopped
                    .iter()
                    .filter(|c| c.reached && c.op == "put")
                    .map(|c| c.path.as_str())
                    .collect();
                for o in world.objects("hot", "default/ev/data").await {
                    assert!(
                        referenced.contains(&o) || staged.contains(o.as_str()),
                        "{at}: {o} is neither in the log nor staged by the stopped run"
                    );
                }
            }
        }
    }
}

/// The objects (relative to their store's root) any version of `default.ev` refers to.
async fn referenced_files(world: &World, op: Op) -> BTreeSet<String> {
    let t = Process::new(world).lake(op.tiers()).await.table("ev").await.unwrap();
    let mut out = BTreeSet::new();
    for v in 0..=t.snapshot().await.unwrap().version {
        for f in t.snapshot_at(v).await.unwrap().files.values() {
            out.insert(format!("{}/{}", t.ident().root(), f.path));
        }
    }
    out
}

/// Live files of `default.ev`.
async fn live_files(world: &World, op: Op) -> usize {
    let lake = Process::new(world).lake(op.tiers()).await;
    lake.table("ev").await.unwrap().snapshot().await.unwrap().files.len()
}

/// Every table's versions and rows.
async fn tables(lake: &Session) -> String {
    let cat = lake.catalog_unchecked();
    let mut out = String::new();
    for (ns, ts) in &cat.state().await.unwrap().namespaces {
        for name in ts.keys() {
            let t = cat.table(&TableIdent::new(ns, name)).await.unwrap();
            for v in 0..=t.snapshot().await.unwrap().version {
                let s = t.snapshot_at(v).await.unwrap();
                let op = t.read_commit(v).await.unwrap().info.operation;
                let mut tiers = BTreeMap::<&str, usize>::new();
                for f in s.files.values() {
                    *tiers.entry(&f.tier).or_default() += 1;
                }
                writeln!(out, "{ns}.{name}@{v} {op} rows={} {tiers:?}", s.rows()).unwrap();
            }
            let sql = format!("SELECT count(*), sum(id), min(secret_note), max(secret_note) FROM {ns}.{name}");
            write!(out, "{ns}.{name}: {}", csv(&lake.sql(&sql).await.unwrap())).unwrap();
        }
    }
    out
}

/// Every version of every table, with each of its files as the log records it (or, for a file
/// moved since, on the tier it moved to: the mover deletes old copies after its retention).
async fn every_version_readable(lake: &Session, at: &str) {
    let cat = lake.catalog_unchecked();
    for (ns, ts) in &cat.state().await.unwrap().namespaces {
        for name in ts.keys() {
            let t = cat.table(&TableIdent::new(ns, name)).await.unwrap();
            let latest = t.snapshot().await.unwrap();
            let mut seen = BTreeSet::new();
            for v in 0..=latest.version {
                for f in t.snapshot_at(v).await.unwrap().files.values() {
                    let f = match latest.files.get(&f.path) {
                        Some(now) if now.tier != f.tier => now,
                        _ => f,
                    };
                    if seen.insert((f.tier.clone(), f.path.clone())) {
                        let store = t.context().tiers.get(&f.tier).unwrap();
                        stratalake::table::read::fetch_checked(store, &t.ident().root(), f)
                            .await
                            .unwrap_or_else(|e| panic!("{at}: {ns}.{name}@{v}: {e}"));
                    }
                }
            }
        }
    }
}

fn describe(op: Op, stop: Stop, calls: &[Call]) -> String {
    match calls.iter().position(|c| c.stopped) {
        Some(i) => {
            let c = &calls[i];
            let when = match stop {
                Stop::Before(_) => "before",
                Stop::AfterWrite(_) => "just after",
            };
            format!(
                "{op:?} stopped {when} call {i} ({} {} {}), {stop:?}",
                c.store, c.op, c.path
            )
        }
        None => format!("{op:?} never stopped ({stop:?}, {} calls)", calls.len()),
    }
}

/// The file [`Op::Ingest`] ingests: 20 rows, in partitions `north` and `east`.
fn input_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("more.csv");
    let mut rows = String::from("id,region,secret_note\n");
    for i in 1000..1020 {
        let region = if i % 2 == 0 { "north" } else { "east" };
        writeln!(rows, "{i},{region},note {i}").unwrap();
    }
    std::fs::write(&input, rows).unwrap();
    input
}

async fn crash_at_every_point(op: Op) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let input = input_csv(dir.path());

    let base = World::new(op.stores());
    op.setup(&base).await;
    let before = op.state(&Process::new(&base)).await;

    // The uninterrupted run, counted.
    let finished = base.fork();
    let p = Process::new(&finished);
    p.crash.arm(None);
    op.run(&p, &input).await.unwrap();
    let calls = p.crash.calls();
    drop(p);
    let after = op.state(&Process::new(&finished)).await;
    let commits = calls.iter().filter(|c| c.reached && op.commits(c)).count();
    assert_eq!(commits, usize::from(op != Op::Vacuum), "{op:?}: {calls:#?}");
    if op == Op::Vacuum {
        assert_eq!(before, after);
    } else {
        assert_ne!(before, after);
    }
    op.check_whole(&Process::new(&finished), &format!("{op:?} uninterrupted"))
        .await;
    op.check_tidy(&finished, &finished, &[], &format!("{op:?} uninterrupted"))
        .await;

    let n = calls.len();
    let trace = std::env::var("CRASH_TRACE").is_ok();
    if trace {
        for (i, c) in calls.iter().enumerate() {
            eprintln!("{op:?} {i:3} {} {} {}", c.store, c.op, c.path);
        }
    }
    // Every call is a crash point, and every write lands before its answer is lost at one (N
    // is 20 to 60 here, a point takes about 30 ms). SQL scans do not read the same number of
    // times in every run: the points go on until a run ends before its point.
    // [not landed, landed] x [failed, reported success]
    let mut outcomes = [[0; 2]; 2];
    let mut points = 0;
    let writes = calls.iter().filter(|c| c.is_write()).count();
    for after_write in [false, true] {
        for k in 0.. {
            let stop = match after_write {
                false => Stop::Before(k),
                true => Stop::AfterWrite(k),
            };
            let world = base.fork();
            let p = Process::new(&world);
            p.crash.arm(Some(stop));
            let r = op.run(&p, &input).await;
            let seen = p.crash.calls();
            drop(p);
            points += 1;
            let at = describe(op, stop, &seen);
            let landed = seen.iter().any(|c| c.reached && op.commits(c));
            match &r {
                Ok(()) => assert!(landed || op == Op::Vacuum, "{at}: reported success, committed nothing"),
                Err(e) => {
                    assert!(format!("{e:?}").contains("injected crash"), "{at}: {e}");
                    // the caller is never told "nothing committed" about a commit that landed
                    assert!(
                        !(landed && e.nothing_committed()),
                        "{at}: landed, but the error says nothing was committed: {e}"
                    );
                }
            }
            world.bury_locks().await;
            let p = Process::new(&world);
            let state = op.state(&p).await;
            assert_eq!(&state, if landed { &after } else { &before }, "{at} (landed: {landed})");
            op.check_whole(&p, &at).await;
            if !landed || op.rerun_after_landing() {
                op.run(&p, &input)
                    .await
                    .unwrap_or_else(|e| panic!("{at}: the rerun failed: {e}"));
                assert_eq!(op.state(&p).await, after, "{at}: after the rerun");
                op.check_whole(&p, &format!("{at}, rerun")).await;
            }
            op.check_tidy(&world, &finished, &seen, &at).await;
            outcomes[usize::from(landed)][usize::from(r.is_ok())] += 1;
            if trace {
                eprintln!("{at}: landed {landed}, {:?}", r.as_ref().map_err(|e| e.to_string()));
            }
            let reached = !seen.iter().any(|c| c.stopped);
            if reached && k >= if after_write { writes } else { n } {
                break;
            }
        }
    }
    eprintln!(
        "{op:?}: N = {n} store calls ({commits} commit), {points} crash points \
         (not landed: {} failed, {} ok; landed: {} failed, {} ok), {:.1?}",
        outcomes[0][0],
        outcomes[0][1],
        outcomes[1][0],
        outcomes[1][1],
        started.elapsed()
    );
}

#[tokio::test]
async fn an_ingest_stopped_at_any_store_call_leaves_the_table_whole() {
    crash_at_every_point(Op::Ingest).await;
}

#[tokio::test]
async fn a_delete_stopped_at_any_store_call_leaves_the_table_whole() {
    crash_at_every_point(Op::Delete).await;
}

#[tokio::test]
async fn an_update_stopped_at_any_store_call_leaves_the_table_whole() {
    crash_at_every_point(Op::Update).await;
}

#[tokio::test]
async fn a_tier_run_stopped_at_any_store_call_loses_nothing() {
    crash_at_every_point(Op::TierRun).await;
}

#[tokio::test]
async fn a_backup_stopped_at_any_store_call_leaves_no_half_backup() {
    crash_at_every_point(Op::Backup).await;
}

#[tokio::test]
async fn a_restore_stopped_at_any_store_call_publishes_nothing_or_everything() {
    crash_at_every_point(Op::Restore).await;
}

#[tokio::test]
async fn a_vacuum_stopped_at_any_store_call_deletes_nothing_live() {
    crash_at_every_point(Op::Vacuum).await;
}

/// An ingest that committed, stopped before its audit record could find the log's head, must
/// not say that nothing was committed (the CLI printed "nothing was committed to default.ev",
/// and a rerun appended twice: the audit log's unreadable head was a plain store error).
#[tokio::test]
async fn an_ingest_committed_but_not_audited_does_not_say_nothing_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_csv(dir.path());
    let base = World::new(Op::Ingest.stores());
    Op::Ingest.setup(&base).await;
    let counted = base.fork();
    let p = Process::new(&counted);
    Op::Ingest.run(&p, &input).await.unwrap();
    let calls = p.crash.calls();
    let commit = calls.iter().position(|c| Op::Ingest.commits(c)).unwrap();
    let k = commit
        + calls[commit..]
            .iter()
            .position(|c| c.op == "list" && c.path == "_audit")
            .unwrap();

    let world = base.fork();
    let p = Process::new(&world);
    p.crash.arm(Some(Stop::Before(k)));
    let e = Op::Ingest.run(&p, &input).await.unwrap_err();
    assert!(p.crash.calls()[commit].reached && Op::Ingest.commits(&p.crash.calls()[commit]));
    assert_ne!(e.commit_outcome(), stratalake::CommitOutcome::Nothing, "{e}");
}

/// Stores given in code come with the configuration in code, one per tier.
#[tokio::test]
async fn given_stores_need_the_configuration_and_one_store_per_tier() {
    use stratalake::table::Store;
    let own = Store::from_object_store(
        "memory://given-once",
        Arc::new(object_store::memory::InMemory::new()),
        Default::default(),
    );
    let keys =
        || -> Arc<dyn stratalake::crypto::KeyProvider> { Arc::new(stratalake::crypto::MemoryKeyProvider::new()) };
    // without the configuration in code, it would be read from a store the lake does not use
    let e = stratalake::Lake::builder("memory://given-elsewhere")
        .key_provider(keys())
        .tier_store("hot", own.clone())
        .open()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs its configuration in code"), "{e}");
    // two tiers on one store: vacuum would take one's files for the other's leftovers
    let mut cfg = stratalake::LakeConfig::single_tier("memory://given-hot");
    let mut cold = cfg.tiers[0].clone();
    cold.name = "cold".into();
    cold.url = "memory://given-cold".into();
    cfg.tiers.push(cold);
    let e = stratalake::LakeBuilder::from_config(cfg)
        .key_provider(keys())
        .tier_store("hot", own.clone())
        .tier_store("cold", own)
        .admin("svc")
        .create()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("were given the same store"), "{e}");
}
