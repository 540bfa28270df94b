//! Tiered storage through the library: rules, pins, watermarks, recall, the read cache and
//! quotas, on local + memory and local + S3 tiers; the mover stopped at each step.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use stratalake::tiering::{PinConfig, QuotaConfig, RuleConfig};
use stratalake::{Lake, LakeConfig, Session, TierConfig};

use super::*;

const DAY: i64 = 86_400_000;

fn day_ms(s: &str) -> i64 {
    stratalake::tiering::plan::period_end_ms(s).unwrap() - DAY
}

fn tier(name: &str, url: &str) -> TierConfig {
    let mut t = LakeConfig::single_tier(url).tiers.remove(0);
    t.name = name.into();
    t
}

/// A lake in `dir` (hot tier `dir/hot`) with the extra tiers given, in memory keys.
async fn tiered_lake(dir: &std::path::Path, extra: Vec<TierConfig>, edit: impl FnOnce(&mut LakeConfig)) -> Session {
    tiered_lake_at(dir, extra, edit, Arc::default()).await
}

/// [`tiered_lake`] whose clock reads `now` (milliseconds; 0 is the system clock).
async fn tiered_lake_at(
    dir: &std::path::Path,
    extra: Vec<TierConfig>,
    edit: impl FnOnce(&mut LakeConfig),
    now: Arc<AtomicI64>,
) -> Session {
    let mut cfg = LakeConfig::single_tier("hot");
    cfg.tiers.extend(extra);
    edit(&mut cfg);
    let clock = stratalake::Clock::from_fn(move || match now.load(Ordering::Relaxed) {
        0 => stratalake::Clock::system().now_ms(),
        t => t,
    });
    let lake = Lake::builder(dir)
        .config(cfg)
        .key_provider(Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .clock(clock)
        .open()
        .await
        .unwrap();
    lake.catalog_unchecked()
        .create_namespace("default", true, "t")
        .await
        .unwrap();
    lake.session("t")
}

/// The lake in `dir` opened again with `cfg` and the master keys of `lake`, as `admin`.
async fn reopen(lake: &Session, dir: &std::path::Path, cfg: LakeConfig) -> Session {
    Lake::builder(dir)
        .config(cfg)
        .key_provider(lake.catalog_unchecked().context().keyring.provider().clone())
        .open()
        .await
        .unwrap()
        .session("admin")
}

async fn fill_logs(lake: &Session) {
    lake.sql(
        "CREATE TABLE logs (id BIGINT NOT NULL, day DATE, note VARCHAR CLASSIFICATION secret) PARTITIONED BY (day)",
    )
    .await
    .unwrap();
    for (k, d) in ["2026-01-01", "2026-01-02", "2026-01-03", "2026-03-01"]
        .iter()
        .enumerate()
    {
        let values: Vec<String> = (0..200)
            .map(|i| format!("({}, DATE '{d}', 'note {k}-{i}')", k * 1000 + i))
            .collect();
        lake.sql(&format!("INSERT INTO logs VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    lake.sql("CREATE TABLE plain (x INT); INSERT INTO plain VALUES (1), (2)")
        .await
        .unwrap();
}

async fn all_rows(lake: &Session) -> String {
    csv(&lake.sql("SELECT id, day, note FROM logs ORDER BY id").await.unwrap())
}

async fn tiers_of(lake: &Session) -> Vec<(String, u64)> {
    lake.tiers()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.files))
        .collect()
}

async fn verify_clean(lake: &Session) -> u64 {
    let r = lake.verify().await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    r.rows
}

/// A lake whose `cold` tier is `memory://<name>-<pid>` and whose one rule sends every file there.
async fn all_to_cold(dir: &std::path::Path, name: &str) -> Session {
    let cold = format!("memory://{name}-{}", std::process::id());
    tiered_lake(dir, vec![tier("cold", &cold)], |c| {
        c.rules.push(RuleConfig {
            to: "cold".into(),
            since_write: Some("0s".into()),
            ..Default::default()
        });
    })
    .await
}

/// Rules by partition age, pins, recall, time travel across a move; results never change.
async fn rules_pins_and_recall(lake: &Session, now: &AtomicI64) {
    fill_logs(lake).await;
    let before = all_rows(lake).await;
    // On January 20 no day is 30 days old; on March 10 the January days are (March 1 is not),
    // and the pinned January 2 stays.
    now.store(day_ms("2026-01-20"), Ordering::Relaxed);
    let plan = lake.tiers().plan().await.unwrap();
    assert!(plan.moves.is_empty(), "{:?}", plan.moves);
    now.store(day_ms("2026-03-10"), Ordering::Relaxed);
    let plan = lake.tiers().plan().await.unwrap();
    let mut parts: Vec<&str> = plan.moves.iter().map(|m| m.partition.as_str()).collect();
    parts.sort();
    assert_eq!(parts, ["day=2026-01-01", "day=2026-01-03"]);
    assert!(
        plan.moves
            .iter()
            .all(|m| m.to == "cold" && m.reason.contains("old-days"))
    );
    let v_before = lake.table("logs").await.unwrap().snapshot().await.unwrap().version;
    let r = lake.tiers().run(&plan).await.unwrap();
    assert_eq!((r.files_moved, r.files_skipped, r.commits), (2, 0, 1));
    assert_eq!(tiers_of(lake).await, [("hot".to_string(), 3), ("cold".to_string(), 2)]);
    assert_eq!(all_rows(lake).await, before);
    // a reader of the version before the move still finds its files (old copies are kept)
    assert_eq!(
        count(lake, &format!("SELECT count(*) FROM logs VERSION AS OF {v_before}")).await,
        800
    );
    // the same plan again finds nothing to do
    assert!(lake.tiers().plan().await.unwrap().moves.is_empty());
    // recall one day to hot; the rule would send it down again, so the plan shows it
    let recall = lake
        .tiers()
        .recall_plan("logs", "hot", &[("day".into(), "2026-01-03".into())])
        .await
        .unwrap();
    assert_eq!(recall.moves.len(), 1);
    lake.tiers().run(&recall).await.unwrap();
    assert_eq!(tiers_of(lake).await, [("hot".to_string(), 4), ("cold".to_string(), 1)]);
    assert_eq!(all_rows(lake).await, before);
    assert_eq!(verify_clean(lake).await, 802);
    let history = lake.table("logs").await.unwrap().history(Some(2)).await.unwrap();
    assert_eq!(history[0].operation, "MOVE");
    assert_eq!(history[0].counts.files_moved, 1);
    now.store(0, Ordering::Relaxed);
    // a vacuum with no retention drops the old copies; every live file stays readable
    let r = lake
        .vacuum("logs")
        .retain(std::time::Duration::ZERO)
        .force(true)
        .await
        .unwrap();
    // hot kept 2026-01-01's old copy, cold kept 2026-01-03's (recalled: its hot copy is live)
    assert_eq!(r.moved_copies, 2, "{:?}", r.paths);
    assert_eq!(all_rows(lake).await, before);
    assert_eq!(verify_clean(lake).await, 802);
    // time travel to before the moves still works: each file is read where it is now
    assert_eq!(
        count(lake, &format!("SELECT count(*) FROM logs VERSION AS OF {v_before}")).await,
        800
    );
}

fn age_rules(cfg: &mut LakeConfig) {
    cfg.rules.push(RuleConfig {
        name: Some("old-days".into()),
        table: Some("logs".into()),
        to: "cold".into(),
        partition_age: Some("30d".into()),
        partition_column: Some("day".into()),
        ..Default::default()
    });
    cfg.pins.push(PinConfig {
        table: "logs".into(),
        partition: Some("day=2026-01-02".into()),
        tier: "hot".into(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_and_memory_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let cold = format!("memory://tiering-{}", std::process::id());
    let now = Arc::new(AtomicI64::new(0));
    let lake = tiered_lake_at(dir.path(), vec![tier("cold", &cold)], age_rules, now.clone()).await;
    rules_pins_and_recall(&lake, &now).await;
    // the memory tier is read through the cache
    let c = lake.tiers().cache_stats().unwrap();
    assert!(c.misses >= 1 && c.hits >= 1, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_and_s3_tiers() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let mut cold = tier("cold", &format!("s3://{bucket}/tiers-{}", std::process::id()));
    for (k, v) in [
        ("endpoint", endpoint.as_str()),
        ("region", "us-east-1"),
        ("allow_http", "true"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ] {
        cold.options.insert(k.into(), v.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(0));
    let lake = tiered_lake_at(dir.path(), vec![cold], age_rules, now.clone()).await;
    rules_pins_and_recall(&lake, &now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_read_cache_stays_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = all_to_cold(dir.path(), "cache").await;
    fill_logs(&lake).await;
    let before = all_rows(&lake).await;
    let plan = lake.tiers().plan().await.unwrap();
    assert_eq!(plan.moves.len(), 5);
    lake.tiers().run(&plan).await.unwrap();
    let biggest = plan.moves.iter().map(|m| m.bytes).max().unwrap();
    let total: u64 = plan.moves.iter().map(|m| m.bytes).sum();
    // A cache that holds about two files: reading everything twice evicts, and stays bounded.
    let limit = 2 * biggest + biggest / 2;
    assert!(limit < total);
    let mut cfg = lake.config().clone();
    cfg.tiering.cache_size = Some(limit.to_string());
    cfg.tiering.cache_dir = Some("small-cache".into());
    let small = reopen(&lake, dir.path(), cfg).await;
    for _ in 0..2 {
        assert_eq!(all_rows(&small).await, before);
        let c = small.tiers().cache_stats().unwrap();
        assert!(c.bytes <= limit, "{c:?}");
    }
    let c = small.tiers().cache_stats().unwrap();
    assert!(c.evictions >= 1 && c.misses >= 4, "{c:?}");
    let on_disk: u64 = std::fs::read_dir(dir.path().join("small-cache"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".obj"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= limit, "{on_disk} > {limit}");
    // one file's query twice in a row: the second is a hit
    small.tiers().flush_read_stats().await.unwrap();
    let h = small.tiers().cache_stats().unwrap().hits;
    small
        .sql("SELECT count(note) FROM logs WHERE day = DATE '2026-03-01'")
        .await
        .unwrap();
    small
        .sql("SELECT count(note) FROM logs WHERE day = DATE '2026-03-01'")
        .await
        .unwrap();
    assert!(small.tiers().cache_stats().unwrap().hits > h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watermarks_and_classification_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cold = format!("memory://wm-{}", std::process::id());
    let lake = tiered_lake(dir.path(), vec![tier("cold", &cold)], |_| {}).await;
    fill_logs(&lake).await;
    let sizes: std::collections::BTreeMap<String, u64> = lake
        .table("logs")
        .await
        .unwrap()
        .snapshot()
        .await
        .unwrap()
        .files
        .values()
        .map(|f| (f.partition["day"].clone().unwrap(), f.size))
        .collect();
    let logs: u64 = sizes.values().sum();
    let plain = lake.table("plain").await.unwrap().snapshot().await.unwrap().bytes();
    // Capacity such that moving the two coldest days brings hot exactly to its low watermark.
    let used = logs + plain;
    let after = used - sizes["2026-01-01"] - sizes["2026-01-02"];
    let cap = 2 * after;
    assert!(used as f64 > 0.9 * cap as f64, "test setup: {used} vs {cap}");
    let mut cfg = lake.config().clone();
    cfg.tiers[0].capacity = Some(cap.to_string());
    cfg.tiers[0].low_watermark = Some(0.5);
    cfg.pins.push(PinConfig {
        table: "plain".into(),
        partition: None,
        tier: "hot".into(),
    });
    let wm = reopen(&lake, dir.path(), cfg.clone()).await;
    // queries read the newest days, so the oldest-read files are the coldest
    wm.sql("SELECT count(note) FROM logs WHERE day >= DATE '2026-01-03'")
        .await
        .unwrap();
    let plan = wm.tiers().plan().await.unwrap();
    let mut parts: Vec<&str> = plan.moves.iter().map(|m| m.partition.as_str()).collect();
    parts.sort();
    assert_eq!(parts, ["day=2026-01-01", "day=2026-01-02"], "{plan:?}");
    assert!(
        plan.moves[0].reason.contains("high watermark"),
        "{}",
        plan.moves[0].reason
    );
    let status = wm.tiers().status().await.unwrap();
    assert_eq!((status.pending[0].files_out, status.pending[1].files_in), (2, 2));
    // a classification rule sends every file holding secret columns down (not `plain`)
    cfg.tiers[0].capacity = None;
    cfg.rules.push(RuleConfig {
        to: "cold".into(),
        classification: Some("secret".into()),
        ..Default::default()
    });
    let cl = reopen(&lake, dir.path(), cfg).await;
    let plan = cl.tiers().plan().await.unwrap();
    assert_eq!(plan.moves.len(), 4);
    assert!(plan.moves.iter().all(|m| m.table == "default.logs"));
    // capacity: per tier, table, classification; from the logs only
    let r = cl.tiers().capacity(30).await.unwrap();
    assert_eq!(r.tables["default.logs"].rows, 800);
    assert_eq!(r.tables["default.logs"].bytes, logs);
    assert_eq!(r.classifications["secret"].files, 4);
    assert!(r.classifications["secret"].bytes > 0 && r.classifications["secret"].bytes < logs);
    assert_eq!(r.partitions.iter().filter(|p| p.table == "default.logs").count(), 4);
    assert_eq!(r.history["hot"].last().unwrap().bytes, r.tiers[0].usage.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_refuse_writes_that_would_exceed_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = tiered_lake(dir.path(), vec![], |_| {}).await;
    lake.sql("CREATE NAMESPACE sales").await.unwrap();
    lake.sql("CREATE TABLE sales.a (x BIGINT, s VARCHAR); CREATE TABLE sales.b (x BIGINT, s VARCHAR)")
        .await
        .unwrap();
    let insert = |t: &str, n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("({i}, 'row {i} of {t}')")).collect();
        format!("INSERT INTO {t} VALUES {}", v.join(","))
    };
    lake.sql(&insert("sales.a", 500)).await.unwrap();
    let a_bytes = lake.table("sales.a").await.unwrap().snapshot().await.unwrap().bytes();
    let mut cfg = lake.config().clone();
    cfg.quotas.push(QuotaConfig {
        table: Some("sales.a".into()),
        max_bytes: (a_bytes + a_bytes / 2).to_string(),
        ..Default::default()
    });
    cfg.quotas.push(QuotaConfig {
        namespace: Some("sales".into()),
        max_bytes: (3 * a_bytes).to_string(),
        ..Default::default()
    });
    let q = reopen(&lake, dir.path(), cfg).await;
    let files_before = std::fs::read_dir(dir.path().join("hot/sales/a/data")).unwrap().count();
    let e = q.sql(&insert("sales.a", 500)).await.unwrap_err().to_string();
    assert!(
        e.contains("quota exceeded for table sales.a") && e.contains("nothing was committed"),
        "{e}"
    );
    assert_eq!(count(&q, "SELECT count(*) FROM sales.a").await, 500);
    // the refused write's staged file is gone
    assert_eq!(
        std::fs::read_dir(dir.path().join("hot/sales/a/data")).unwrap().count(),
        files_before
    );
    // b may take about one more table's worth, then the namespace is full
    q.sql(&insert("sales.b", 500)).await.unwrap();
    let e = q.sql(&insert("sales.b", 1000)).await.unwrap_err().to_string();
    assert!(e.contains("quota exceeded for namespace sales"), "{e}");
    // deleting is always allowed, and frees room
    q.sql("DELETE FROM sales.a WHERE x < 400").await.unwrap();
    q.sql(&insert("sales.a", 300)).await.unwrap();
    let r = q.tiers().capacity(30).await.unwrap();
    assert_eq!(r.quotas.len(), 2);
    assert!(r.quotas.iter().all(|u| u.used <= u.limit), "{:?}", r.quotas);
}

#[tokio::test]
async fn bad_tiering_settings_are_named() {
    let base = async |edit: &dyn Fn(&mut LakeConfig)| {
        let mut cfg = LakeConfig::single_tier("memory://bad-tiering");
        cfg.tiers.push(tier("cold", "memory://bad-tiering-cold"));
        edit(&mut cfg);
        stratalake::LakeBuilder::from_config(cfg)
            .key_provider(Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
            .open()
            .await
            .unwrap_err()
            .to_string()
    };
    let e = base(&|c| {
        c.rules.push(RuleConfig {
            name: Some("archive".into()),
            to: "glacier".into(),
            since_write: Some("1d".into()),
            ..Default::default()
        })
    })
    .await;
    assert!(e.contains("[[rule]] 1 (\"archive\")") && e.contains("glacier"), "{e}");
    let e = base(&|c| {
        c.rules.push(RuleConfig {
            to: "cold".into(),
            ..Default::default()
        })
    })
    .await;
    assert!(e.contains("at least one condition"), "{e}");
    let e = base(&|c| c.tiers[0].capacity = Some("lots".into())).await;
    assert!(e.contains("tier \"hot\": capacity") && e.contains("lots"), "{e}");
    let e = base(&|c| {
        c.tiers[0].high_watermark = Some(0.5);
        c.tiers[0].low_watermark = Some(0.7);
    })
    .await;
    assert!(e.contains("watermarks"), "{e}");
    let e = base(&|c| {
        c.rules.push(RuleConfig {
            to: "cold".into(),
            partition_age: Some("30d".into()),
            ..Default::default()
        })
    })
    .await;
    assert!(e.contains("partition_column"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_the_mover_lose_nothing_of_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let lake = all_to_cold(dir.path(), "concurrent").await;
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    for (k, r) in ["r0", "r1", "r2", "r3", "r4", "r5"].iter().enumerate() {
        let k = k as i64 * 100;
        t.append(&[events(&schema, k..k + 100, r)], "w").await.unwrap();
    }
    let (t2, s2) = (t.clone(), schema.clone());
    let writer = tokio::spawn(async move {
        for i in 0..20i64 {
            let first = 10_000 + i * 50;
            t2.append(&[events(&s2, first..first + 50, &format!("w{}", i % 3))], "w")
                .await
                .unwrap();
        }
    });
    let l2 = lake.clone();
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        l2.sql("DELETE FROM ev WHERE region = 'r0'").await.unwrap();
    });
    let mut moved = 0;
    for _ in 0..6 {
        let plan = lake.tiers().plan().await.unwrap();
        moved += lake.tiers().run(&plan).await.unwrap().files_moved;
    }
    writer.await.unwrap();
    deleter.await.unwrap();
    let plan = lake.tiers().plan().await.unwrap();
    moved += lake.tiers().run(&plan).await.unwrap().files_moved;
    assert!(moved >= 5, "{moved}");
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 500 + 1000);
    assert_eq!(count(&lake, "SELECT count(DISTINCT id) FROM ev").await, 1500);
    assert_eq!(count(&lake, "SELECT count(*) FROM ev WHERE region = 'r0'").await, 0);
    let tiers = lake.tiers().list().await.unwrap();
    assert_eq!(tiers[0].files, 0, "{tiers:?}");
    verify_clean(&lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacuum_keeps_a_copy_written_after_its_file_left_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let cold = format!("memory://recopy-{}", std::process::id());
    let lake = tiered_lake(dir.path(), vec![tier("cold", &cold)], |c| {
        c.tiering.move_retention = Some("1h".into())
    })
    .await;
    lake.sql("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    let plan = lake.tiers().recall_plan("t", "cold", &[]).await.unwrap();
    lake.tiers().run(&plan).await.unwrap();
    // A mover bringing the file back has just written its copy to hot (not committed yet).
    let t = lake.table("t").await.unwrap();
    let f = t.snapshot().await.unwrap().files.into_values().next().unwrap();
    let hot = t.context().tiers.get("hot").unwrap().clone();
    let rel = format!("{}/{}", t.ident().root(), f.path);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let bytes = t.context().tiers.get("cold").unwrap().get(&rel).await.unwrap();
    hot.put(&rel, bytes).await.unwrap();
    // vacuum with no retention must not take it for the old copy
    let r = lake
        .vacuum("t")
        .retain(std::time::Duration::ZERO)
        .force(true)
        .await
        .unwrap();
    assert_eq!(r.moved_copies, 0, "{r:?}");
    assert!(hot.get_opt(&rel).await.unwrap().is_some());
}
