//! The same commit-protocol tests against every store: memory, local folder, and a real
//! S3-compatible server (started by scripts/test.sh; its endpoint in STRATALAKE_TEST_S3_ENDPOINT).

use std::collections::HashSet;

use stratalake::arrow::array::Int64Array;
use stratalake::table::Error as TableError;
use stratalake::{Error, WriteMode};
use stratalake::{Lake, Session};

use super::*;

pub(super) async fn suite(lake: Session) {
    lake.create_namespace("conf").await.unwrap();
    let t = lake.create_table("conf.events", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();

    // commit and read back
    let v1 = t.append(&[events(&schema, 0..100, "north")], "w").await.unwrap();
    assert_eq!(v1, 1);
    let v2 = t.append(&[events(&schema, 100..150, "south")], "w").await.unwrap();
    assert_eq!(v2, 2);
    assert_eq!(count(&lake, "SELECT count(*) FROM conf.events").await, 150);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM conf.events WHERE region = 'south'").await,
        50
    );

    // time travel
    assert_eq!(
        count(&lake, "SELECT count(*) FROM conf.events VERSION AS OF 1").await,
        100
    );
    let s1 = t.snapshot_at(1).await.unwrap();
    let ts = s1.timestamp_ms;
    assert_eq!(t.snapshot_as_of(ts).await.unwrap().version, 1);
    assert!(matches!(
        t.snapshot_at(99).await,
        Err(TableError::VersionNotFound { .. })
    ));

    // overwrite of one partition
    t.write_batches(
        &[events(&schema, 1000..1010, "north")],
        "w",
        WriteMode::OverwritePartitions,
    )
    .await
    .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM conf.events").await, 60);

    // conflicting commits: two overwrites of the whole table from the same snapshot
    let base = t.snapshot().await.unwrap();
    let mut w1 = t.writer(&base).unwrap();
    w1.write(events(&schema, 0..5, "east")).await.unwrap();
    let f1 = w1.finish().await.unwrap();
    let mut w2 = t.writer(&base).unwrap();
    w2.write(events(&schema, 0..7, "west")).await.unwrap();
    let f2 = w2.finish().await.unwrap();
    t.commit_files(&base, f1, "a", WriteMode::Overwrite, Default::default())
        .await
        .unwrap();
    let e = t
        .commit_files(&base, f2, "b", WriteMode::Overwrite, Default::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::Conflict { .. }), "{e}");
    assert_eq!(count(&lake, "SELECT count(*) FROM conf.events").await, 5);

    // 8 concurrent appenders: every row exactly once
    let mut handles = Vec::new();
    for w in 0..8i64 {
        let t = t.clone();
        let schema = schema.clone();
        handles.push(tokio::spawn(async move {
            for k in 0..3i64 {
                let start = 10_000 + w * 1000 + k * 100;
                t.append(&[events(&schema, start..start + 100, "conc")], &format!("writer{w}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        count(&lake, "SELECT count(*) FROM conf.events WHERE region = 'conc'").await,
        2400
    );
    let ids = lake
        .sql("SELECT id FROM conf.events WHERE region = 'conc'")
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for b in &ids {
        for v in b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values() {
            assert!(seen.insert(*v), "duplicate id {v}");
        }
    }
    assert_eq!(seen.len(), 2400);

    // checkpoints (interval 5 in these lakes): a fresh handle opens from one and agrees
    let snap = t.snapshot().await.unwrap();
    assert!(snap.version >= 25, "{}", snap.version);
    let again = lake.table("conf.events").await.unwrap().snapshot().await.unwrap();
    assert_eq!(again, snap);
    let hist = t.history(None).await.unwrap();
    assert_eq!(hist.len() as u64, snap.version + 1);

    // a vacuum with no retention at all, forced, while a write is staging its files: the
    // write commits, reports success, and every row of it reads back
    let base = t.snapshot().await.unwrap();
    let mut w = t.writer(&base).unwrap();
    w.write(events(&schema, 50_000..50_100, "inflight")).await.unwrap();
    let staged = w.finish().await.unwrap();
    let r = lake
        .vacuum("conf.events")
        .retain(std::time::Duration::ZERO)
        .force(true)
        .await
        .unwrap();
    assert_eq!((r.orphan_files, r.kept_recent_orphans), (0, 1), "{r:?}");
    t.commit_files(&base, staged, "w", WriteMode::Append, Default::default())
        .await
        .unwrap();
    assert_eq!(
        count(&lake, "SELECT count(*) FROM conf.events WHERE region = 'inflight'").await,
        100
    );
    // a write that staged its files longer ago than the staging grace allows commits nothing
    let base = t.snapshot().await.unwrap();
    let mut w = t.writer(&base).unwrap();
    w.write(events(&schema, 60_000..60_010, "late")).await.unwrap();
    let mut staged = w.finish().await.unwrap();
    staged[0].created_ms -= 6 * 3_600_000;
    let e = t
        .commit_files(&base, staged, "w", WriteMode::Append, Default::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::StagingExpired { .. }), "{e}");
    assert!(e.to_string().contains("nothing was committed"), "{e}");
    assert_eq!(t.snapshot().await.unwrap().version, base.version);

    // verify is clean
    let snap = t.snapshot().await.unwrap();
    let r = lake.verify().await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.rows, snap.rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store() {
    suite(lake_on(&format!("memory://conf-{}", std::process::id()), &[], 5).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store() {
    let dir = tempfile::tempdir().unwrap();
    suite(lake_on(dir.path().to_str().unwrap(), &[], 5).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh for the S3 conformance test");
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let url = format!("s3://{bucket}/conf-{}", std::process::id());
    let lake = lake_on(
        &url,
        &[
            ("endpoint", &endpoint),
            ("region", "us-east-1"),
            ("allow_http", "true"),
            ("access_key_id", "test"),
            ("secret_access_key", "test"),
        ],
        5,
    )
    .await;
    suite(lake).await;
}

#[tokio::test]
async fn bad_batches_commit_nothing() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(&[events(&schema, 0..10, "north")], "w").await.unwrap();
    // a null in the NOT NULL column
    let bad = stratalake::arrow::array::RecordBatch::try_new(
        std::sync::Arc::new(stratalake::arrow::datatypes::Schema::new(vec![
            stratalake::arrow::datatypes::Field::new("id", stratalake::arrow::datatypes::DataType::Int64, true),
            stratalake::arrow::datatypes::Field::new("region", stratalake::arrow::datatypes::DataType::Utf8, true),
            stratalake::arrow::datatypes::Field::new("secret_note", stratalake::arrow::datatypes::DataType::Utf8, true),
        ])),
        vec![
            std::sync::Arc::new(Int64Array::from(vec![Some(1), None])),
            std::sync::Arc::new(stratalake::arrow::array::StringArray::from(vec!["a", "b"])),
            std::sync::Arc::new(stratalake::arrow::array::StringArray::from(vec!["x", "y"])),
        ],
    )
    .unwrap();
    let e = t
        .append(&[events(&schema, 10..20, "south"), bad], "w")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("row 12") && msg.contains("\"id\""), "{msg}");
    assert_eq!(t.snapshot().await.unwrap().version, 1);
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 10);
    // the files of the rejected batch were deleted
    let store = t.context().tiers.metadata().clone();
    let data = store.list("default/ev/data").await.unwrap();
    assert_eq!(data.len(), t.snapshot().await.unwrap().files.len());
}

#[tokio::test]
async fn hostile_names_are_refused() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    for name in ["../x", "a/b", "%2E%2E", "_catalog", "A", "x\0y", "/etc/passwd"] {
        let e = lake.create_table(name, events_schema()).await.unwrap_err();
        assert!(matches!(e, Error::Table(TableError::InvalidName { .. })), "{name}: {e}");
    }
    // partition values are encoded, never path steps
    let t = lake.create_table("p", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(&[events(&schema, 0..3, "../../escape")], "w").await.unwrap();
    let snap = t.snapshot().await.unwrap();
    for f in snap.files.values() {
        assert!(
            f.path.starts_with("data/region=+2E+2E+2F+2E+2E+2Fescape/"),
            "{}",
            f.path
        );
    }
    assert_eq!(
        count(&lake, "SELECT count(*) FROM p WHERE region = '../../escape'").await,
        3
    );
    // drop deletes everything, including files under encoded partition names
    lake.drop_table("p").await.unwrap();
    let left = t.context().tiers.metadata().list("default/p").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_without_some_keys_never_asks_for_them() {
    use stratalake::table::Access;
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(
        &[events(&schema, 0..50, "north"), events(&schema, 50..80, "south")],
        "w",
    )
    .await
    .unwrap();
    let levels = ["public", "internal"].iter().map(|s| s.to_string()).collect();
    let s = lake.session("reader").sql_session().with_access(Access::Levels(levels));
    // WHERE on a readable column works although the secret column's key is withheld
    // (the page index is off for such scans).
    let b = s
        .sql("SELECT count(*) FROM ev WHERE id >= 40 AND region = 'north'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
    assert_eq!(n, 10);
    // the secret column reads as NULL: its key was never unwrapped
    let b = s
        .sql("SELECT secret_note FROM ev")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows: usize = b.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 80);
    assert!(b.iter().all(|b| b.column(0).null_count() == b.num_rows()));
    // and a filter on it sees only NULLs, whatever the raw values
    let b = s
        .sql("SELECT count(*) FROM ev WHERE secret_note = 'note 1'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0),
        0
    );
    // with every key, it reads
    let all = lake.sql("SELECT secret_note FROM ev WHERE id = 7").await.unwrap();
    assert_eq!(all[0].num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_decimal_and_temporal_types_round_trip() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    lake.sql(
        "CREATE TABLE citizens (id INT NOT NULL CLASSIFICATION public, born DATE, seen TIMESTAMP, \
         income DECIMAL(12,2) CLASSIFICATION confidential, tags VARCHAR[], \
         address STRUCT<city VARCHAR, zip INT> CLASSIFICATION secret) PARTITIONED BY (year(seen))",
    )
    .await
    .unwrap();
    lake.sql(
        "INSERT INTO citizens VALUES (1, DATE '1980-02-03', TIMESTAMP '2025-03-04 05:06:07', 1234.56, \
         ['a', 'b'], named_struct('city', 'Bern', 'zip', 3000)), \
         (2, NULL, TIMESTAMP '2024-12-31 23:59:59', NULL, [], NULL)",
    )
    .await
    .unwrap();
    let b = lake
        .sql("SELECT id, born, income, tags, address['city'] AS city FROM citizens ORDER BY id")
        .await
        .unwrap();
    let text = stratalake::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(text.contains("| 1  | 1980-02-03 | 1234.56 | [a, b] | Bern |"), "{text}");
    assert!(text.contains("| 2  |            |         | []     |      |"), "{text}");
    let t = lake.table("citizens").await.unwrap();
    let parts: std::collections::BTreeSet<String> = t
        .snapshot()
        .await
        .unwrap()
        .files
        .values()
        .map(|f| f.partition["seen_year"].clone().unwrap())
        .collect();
    assert_eq!(parts.into_iter().collect::<Vec<_>>(), vec!["2024", "2025"]);
    let r = lake.verify().await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_pruning_uses_identity_and_time_transforms() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let s = lake.session("t").sql_session();
    s.execute(
        "CREATE TABLE ev (id INT NOT NULL, region VARCHAR CLASSIFICATION public, ts TIMESTAMP, d DATE) \
         PARTITIONED BY (region, day(ts)); \
         INSERT INTO ev VALUES \
           (1, 'a', TIMESTAMP '2025-01-01 10:00:00', DATE '2025-01-01'), (2, 'b', TIMESTAMP '2025-01-01 23:59:59', DATE '2025-01-01'), \
           (3, 'a', TIMESTAMP '2025-01-02 00:00:00', DATE '2025-01-02'), (4, 'b', TIMESTAMP '2025-01-02 12:00:00', DATE '2025-01-02'), \
           (5, 'a', TIMESTAMP '2025-01-03 08:00:00', DATE '2025-01-03'), (6, 'b', TIMESTAMP '2025-01-03 09:00:00', DATE '2025-01-03')",
    )
    .await
    .unwrap();
    async fn files_and_count(s: &stratalake::SqlSession, filter: &str) -> (usize, i64) {
        // count(id), not count(*): an unfiltered count(*) is answered from the log's row counts
        let df = s
            .sql(&format!("SELECT count(id) FROM ev WHERE {filter}"))
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let text = stratalake::datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let files = text.matches(".parquet").count();
        let b = df.collect().await.unwrap();
        (
            files,
            b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0),
        )
    }
    // (an unfiltered count(id) is answered from the files' statistics, also without reading)
    assert_eq!(files_and_count(&s, "id > 0").await, (6, 6));
    assert_eq!(
        files_and_count(&s, "ts >= TIMESTAMP '2025-01-02 00:00:00'").await,
        (4, 4)
    );
    assert_eq!(
        files_and_count(&s, "ts < TIMESTAMP '2025-01-02 00:00:00'").await,
        (2, 2)
    );
    assert_eq!(
        files_and_count(&s, "region = 'a' AND ts < TIMESTAMP '2025-01-02 00:00:00'").await,
        (1, 1)
    );
    assert_eq!(
        files_and_count(&s, "region IN ('b') AND ts > TIMESTAMP '2025-01-03 08:30:00'").await,
        (1, 1)
    );
    assert_eq!(files_and_count(&s, "region = 'zzz'").await, (0, 0));
    // count(*) without a filter comes from the row counts in the log: no file is read
    let plan = s
        .sql("SELECT count(*) FROM ev")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let text = stratalake::datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    assert_eq!(text.matches(".parquet").count(), 0, "{text}");
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 6);
    // a filter on a column that is not partitioned prunes nothing and stays correct
    assert_eq!(files_and_count(&s, "id > 4").await, (6, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_material_never_shows_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::builder(dir.path())
        .admin("admin")
        .create()
        .await
        .unwrap()
        .session("admin");
    let keyfile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("master.keys")).unwrap()).unwrap();
    let mut secrets = Vec::new();
    for versions in keyfile["keys"].as_object().unwrap().values() {
        for v in versions.as_array().unwrap() {
            secrets.push(v["key"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(secrets.len(), 4);
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(&[events(&schema, 0..5, "north")], "w").await.unwrap();
    let mut texts = vec![format!("{lake:?}"), format!("{t:?}"), format!("{:?}", t.context())];
    // an error path that handles keys: a wrapped key moved to another file
    let snap = t.snapshot().await.unwrap();
    let mut files = snap.files.values();
    let (a, b) = (files.next().unwrap().clone(), files.next().cloned());
    let mut moved = a.clone();
    moved.path = b.map(|b| b.path).unwrap_or_else(|| "data/other.parquet".into());
    let e = t
        .context()
        .keyring
        .open_file(t.id(), &moved, &schema, &stratalake::table::Access::All)
        .await
        .unwrap_err();
    texts.push(e.to_string());
    texts.push(format!("{e:?}"));
    for text in &texts {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "key material in: {text}");
        }
    }
    assert!(
        texts[0].contains("KeyFileProvider") || texts[0].contains("key file"),
        "{}",
        texts[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_with_a_matching_log_entry_still_fails_to_decrypt() {
    // An attacker who can write the store and the log copies file A to another partition and
    // writes a log entry whose size and crc32 match the copy: the AAD prefix (table id + path)
    // and the wrapped keys (bound to the path) still refuse it.
    use stratalake::table::action::Action;
    use stratalake::table::table::{ReadScope, info};
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(
        &[events(&schema, 0..10, "north"), events(&schema, 10..20, "south")],
        "w",
    )
    .await
    .unwrap();
    let snap = t.snapshot().await.unwrap();
    let a = snap.files.values().find(|f| f.path.contains("north")).unwrap().clone();
    let b = snap.files.values().find(|f| f.path.contains("south")).unwrap().clone();
    let store = t.context().tiers.metadata().clone();
    let bytes = store.get(&format!("default/ev/{}", a.path)).await.unwrap();
    for keys_from in [&a, &b] {
        let mut forged = b.clone();
        forged.path = b
            .path
            .replace(".parquet", &format!("-{}.parquet", keys_from.rows + keys_from.size));
        forged.size = a.size;
        forged.crc32 = a.crc32;
        forged.rows = a.rows;
        forged.keys = keys_from.keys.clone();
        store
            .put(&format!("default/ev/{}", forged.path), bytes.clone())
            .await
            .unwrap();
        let base = t.snapshot().await.unwrap();
        t.commit(
            &base,
            vec![Action::Add(forged.clone())],
            info("mallory", "APPEND", Default::default()),
            &ReadScope::default(),
        )
        .await
        .unwrap();
        let e = lake
            .sql("SELECT count(*), max(secret_note) FROM ev")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unwrap") || e.to_lowercase().contains("decrypt") || e.contains("Parquet"),
            "{e}"
        );
        let r = lake.verify().await.unwrap();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].path.contains(&forged.path), "{:?}", r.problems);
        // remove the forged entry again
        let base = t.snapshot().await.unwrap();
        let rm = stratalake::table::action::RemoveFile {
            path: forged.path.clone(),
            tier: forged.tier.clone(),
            removed_ms: 0,
        };
        t.commit(
            &base,
            vec![Action::Remove(rm)],
            info("admin", "DELETE", Default::default()),
            &ReadScope::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_rows_from_live_files_and_racing_rewrites_conflict() {
    use stratalake::table::Access;
    use stratalake::table::read::{fetch_checked, read_file};
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(&[events(&schema, 0..100, "north")], "w").await.unwrap();
    let s = lake.session("officer").sql_session();
    // two deletes planned on the same snapshot rewrite the same file: one wins, one conflicts
    let d1 = s.sql("DELETE FROM ev WHERE id < 10").await.unwrap();
    let d2 = s.sql("DELETE FROM ev WHERE id >= 90").await.unwrap();
    d1.collect().await.unwrap();
    let e = d2.collect().await.unwrap_err().to_string();
    assert!(e.contains("conflict"), "{e}");
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 90);
    // the loser's staged files were deleted, and no live file holds a deleted row
    let snap = t.snapshot().await.unwrap();
    let store = t.context().tiers.metadata().clone();
    let objects = store.list("default/ev/data").await.unwrap();
    assert_eq!(
        objects.len(),
        2,
        "the old file (kept for time travel) and its rewrite: {objects:?}"
    );
    for f in snap.files.values() {
        let data = fetch_checked(&store, "default/ev", f).await.unwrap();
        let batches = read_file(
            data,
            &f.path,
            t.id(),
            f,
            &snap.metadata.schema,
            &t.context().keyring,
            &Access::All,
            None,
        )
        .await
        .unwrap();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            assert!(ids.values().iter().all(|v| *v >= 10), "deleted ids still live");
            let notes = b
                .column(2)
                .as_any()
                .downcast_ref::<stratalake::arrow::array::StringArray>()
                .unwrap();
            assert!(notes.iter().all(|n| n != Some("note 3")));
        }
    }
    let h = t.history(Some(1)).await.unwrap();
    assert_eq!(
        (
            h[0].operation.as_str(),
            h[0].counts.rows_removed,
            h[0].counts.rows_added
        ),
        ("DELETE", 100, 90)
    );
    // EXPLAIN plans the rewrite without running it
    lake.sql("EXPLAIN DELETE FROM ev").await.unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 90);
}

/// A row filter that the files' own statistics prove true for every row is not evaluated on
/// them (and the columns only it needs are not read); files it may reject are filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row_filters_proven_by_file_statistics_are_skipped() {
    let admin = governed_lake(
        "CREATE TABLE readings (id INT NOT NULL, level INT); \
             INSERT INTO readings VALUES (1, 5), (2, 7); \
             CREATE PRINCIPAL ana WITH (clearance = 'internal'); GRANT SELECT ON TABLE readings TO ana; \
             CREATE ROW FILTER non_negative ON readings FOR ana WHERE level >= 0",
    )
    .await;
    let ana = admin.session("ana").sql_session();
    async fn plan_and_ids(s: &stratalake::SqlSession) -> (String, Vec<i32>) {
        let df = s.sql("SELECT id FROM readings ORDER BY id").await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let text = stratalake::datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let ids = df
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<stratalake::arrow::array::Int32Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        (text, ids)
    }
    // one file, every level >= 0 and none NULL: no filter, and `level` is not read
    let (plan, ids) = plan_and_ids(&ana).await;
    assert_eq!(ids, vec![1, 2], "{plan}");
    assert!(!plan.contains("PolicyFilterExec") && !plan.contains("level"), "{plan}");
    // a file with a negative level and one with a NULL level: both checked, the first not
    let admin_session = admin.session("boss");
    admin_session
        .execute("INSERT INTO readings VALUES (3, -1), (4, 9)")
        .await
        .unwrap();
    admin_session
        .execute("INSERT INTO readings VALUES (5, NULL), (6, 2)")
        .await
        .unwrap();
    let (plan, ids) = plan_and_ids(&ana).await;
    assert_eq!(ids, vec![1, 2, 4, 6]);
    assert_eq!(plan.matches("PolicyFilterExec").count(), 1, "{plan}");
    // the scan under the filter holds the two files it may reject
    let checked = plan.split("PolicyFilterExec").nth(1).unwrap();
    let scan = checked.lines().find(|l| l.contains("DataSourceExec")).unwrap();
    assert_eq!(scan.matches(".parquet").count(), 2, "{plan}");
    assert_eq!(plan.matches(".parquet").count(), 3, "{plan}");
}

/// Time travel reads earlier versions under today's classifications and masks: reclassifying
/// or masking a column also covers its history (followed through renames).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_travel_applies_todays_classification_and_masks() {
    let admin = governed_lake(
        "CREATE TABLE t (id INT NOT NULL CLASSIFICATION public, code VARCHAR CLASSIFICATION public, \
             note VARCHAR CLASSIFICATION internal, memo VARCHAR CLASSIFICATION public); \
             INSERT INTO t VALUES (1, 'abcd', 'private note', 'm1'); \
             CREATE PRINCIPAL ana WITH (clearance = 'internal'); GRANT SELECT ON TABLE t TO ana",
    )
    .await;
    let ana = admin.session("ana");
    let q = |sql: &'static str| {
        let ana = ana.clone();
        async move { csv(&ana.sql(sql).await.unwrap()) }
    };
    assert_eq!(q("SELECT note FROM t VERSION AS OF 1").await, "private note\n");
    admin.access().classify("t", "note", "confidential").await.unwrap();
    admin
        .sql("ALTER TABLE t RENAME COLUMN code TO tag; CREATE MASK ON t (tag) FOR ana AS PARTIAL(1)")
        .await
        .unwrap();
    assert_eq!(q("SELECT tag, note FROM t").await, "***d,\n");
    // version 1 predates the reclassification, the rename and the mask: all three apply
    assert_eq!(q("SELECT code, note FROM t VERSION AS OF 1").await, "***d,\n");
    assert_eq!(
        q("SELECT count(*) AS n FROM t VERSION AS OF 1 WHERE code = 'abcd'").await,
        "0\n"
    );
    // a column dropped since has no policy left to apply: only administrators read its history
    assert_eq!(q("SELECT memo FROM t VERSION AS OF 1").await, "m1\n");
    admin.sql("ALTER TABLE t DROP COLUMN memo").await.unwrap();
    assert_eq!(q("SELECT memo FROM t VERSION AS OF 1").await, "\"\"\n");
    // the administrator still reads the history raw
    let raw = csv(&admin
        .sql("SELECT code, note, memo FROM t VERSION AS OF 1")
        .await
        .unwrap());
    assert_eq!(raw, "abcd,private note,m1\n");
}

/// Sessions as different principals in one process: each sees what its principal may, and a
/// revoke or a new policy applies to an open session's very next statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_sessions_follow_access_changes_at_the_next_statement() {
    let admin = governed_lake(
        "CREATE TABLE t (id INT, region VARCHAR); INSERT INTO t VALUES (1, 'north'), (2, 'south'); \
             CREATE PRINCIPAL ana WITH (region = 'north', clearance = 'internal'); \
             CREATE PRINCIPAL bo WITH (region = 'south', clearance = 'internal'); \
             GRANT SELECT ON TABLE t TO ana; GRANT SELECT ON TABLE t TO bo",
    )
    .await;
    let ana = admin.session("ana").sql_session();
    let bo = admin.session("bo").sql_session();
    let ids = |s: &stratalake::SqlSession| {
        let s = s.clone();
        async move {
            let out = s.execute("SELECT id FROM t ORDER BY id").await?;
            let stratalake::Output::Rows { batches, .. } = &out[0] else {
                panic!("rows expected")
            };
            Ok::<_, stratalake::query::Error>(csv(batches))
        }
    };
    assert_eq!(ids(&ana).await.unwrap(), "1\n2\n");
    admin
        .sql("CREATE ROW FILTER own ON t FOR ana WHERE region = current_principal_attribute('region')")
        .await
        .unwrap();
    assert_eq!(ids(&ana).await.unwrap(), "1\n");
    // a table with row filters shows nothing to whom none applies
    assert_eq!(ids(&bo).await.unwrap(), "");
    admin
        .sql("CREATE ROW FILTER theirs ON t FOR bo WHERE region = current_principal_attribute('region')")
        .await
        .unwrap();
    assert_eq!(ids(&bo).await.unwrap(), "2\n");
    admin.sql("REVOKE SELECT ON TABLE t FROM ana").await.unwrap();
    let e = ids(&ana).await.unwrap_err().to_string();
    assert!(e.contains("no SELECT privilege"), "{e}");
    assert_eq!(ids(&bo).await.unwrap(), "2\n");
}

/// An in-memory lake administered by `boss` (bootstrap mode over), set up with `sql`.
async fn governed_lake(sql: &str) -> Session {
    let admin = Lake::in_memory().await.unwrap().session("boss");
    admin.access().bootstrap_admin().await.unwrap();
    admin.sql(sql).await.unwrap();
    admin
}

/// Writers of separate lake handles (as separate processes would be) appending to one table
/// in a local folder at the same time: no append is refused, none is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_writers_never_starve() {
    let dir = tempfile::tempdir().unwrap();
    let provider: Arc<dyn stratalake::crypto::KeyProvider> = Arc::new(stratalake::crypto::MemoryKeyProvider::new());
    let open = async || {
        let cfg = LakeConfig::single_tier(dir.path().to_str().unwrap());
        stratalake::LakeBuilder::from_config(cfg)
            .key_provider(provider.clone())
            .open()
            .await
            .unwrap()
            .session("admin")
    };
    let lake = open().await;
    lake.create_namespace("conc").await.unwrap();
    let t = lake.create_table("conc.ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    let mut handles = Vec::new();
    for w in 0..16i64 {
        let lake = open().await;
        let schema = schema.clone();
        handles.push(tokio::spawn(async move {
            let t = lake.table("conc.ev").await.unwrap();
            for k in 0..10i64 {
                let start = w * 1000 + k * 10;
                t.append(&[events(&schema, start..start + 10, "conc")], &format!("writer{w}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(count(&lake, "SELECT count(*) FROM conc.ev").await, 1600);
    assert_eq!(count(&lake, "SELECT count(DISTINCT id) FROM conc.ev").await, 1600);
    assert_eq!(t.snapshot().await.unwrap().version, 160);
}

/// Parquet input with more fractional digits than the column: rounded half away from zero, as
/// SQL casts do; a value too large for the precision is an error naming the row and column.
#[tokio::test]
async fn parquet_input_with_a_wider_decimal_scale_rounds() {
    use stratalake::arrow::array::Decimal128Array;
    use stratalake::arrow::datatypes::{Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, values: Vec<i128>| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("fee", DataType::Decimal128(12, 3), true),
        ]));
        let n = values.len() as i64;
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(Decimal128Array::from(values).with_precision_and_scale(12, 3).unwrap()),
            ],
        )
        .unwrap();
        let p = dir.path().join(name);
        let mut w = stratalake::datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&p).unwrap(),
            schema,
            None,
        )
        .unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        p
    };
    let lake = Lake::in_memory().await.unwrap().session("admin");
    lake.sql("CREATE TABLE fees (id BIGINT NOT NULL, fee DECIMAL(10,2))")
        .await
        .unwrap();
    let ok = write("ok.parquet", vec![1509, 1999, -1505, 1504]);
    lake.ingest("fees", [ok.as_path()]).await.unwrap();
    let rows = lake.sql("SELECT fee FROM fees ORDER BY id").await.unwrap();
    assert_eq!(csv(&rows), "1.51\n2.00\n-1.51\n1.50\n");
    let big = write("big.parquet", vec![1000, 123_456_789_500]);
    let e = lake.ingest("fees", [big.as_path()]).await.unwrap_err().to_string();
    assert!(e.contains("big.parquet") && e.contains("row 2, column \"fee\""), "{e}");
    assert_eq!(count(&lake, "SELECT count(*) FROM fees").await, 4);
}
