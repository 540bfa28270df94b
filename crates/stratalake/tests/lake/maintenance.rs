//! Maintenance racing writers: optimize against DELETE on the same partition, vacuum under a
//! reader of an older snapshot and under a staged write.

use stratalake::Lake;
use stratalake::table::keyring::Access;
use stratalake::table::optimize::OptimizeOptions;
use stratalake::table::read::{fetch_checked, read_file};

use super::*;

/// Every row of one live file, decrypted.
async fn read_all(
    t: &stratalake::Table,
    snap: &stratalake::Snapshot,
    f: &stratalake::table::action::AddFile,
) -> Vec<stratalake::arrow::array::RecordBatch> {
    let ctx = t.context();
    let data = fetch_checked(ctx.tiers.get(&f.tier).unwrap(), &t.ident().root(), f)
        .await
        .unwrap();
    read_file(
        data,
        &f.path,
        t.id(),
        f,
        &snap.metadata.schema,
        &ctx.keyring,
        &Access::All,
        None,
    )
    .await
    .unwrap()
}

fn opts(sort: bool) -> OptimizeOptions {
    OptimizeOptions {
        target_size: 64 << 20,
        sort_by: if sort { vec![("id".into(), false)] } else { Vec::new() },
        dry_run: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_compacts_sorts_and_keeps_every_row() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    lake.sql(
        "CREATE TABLE t (id BIGINT, region VARCHAR, secret VARCHAR CLASSIFICATION secret) PARTITIONED BY (region)",
    )
    .await
    .unwrap();
    for i in (0..30).rev() {
        lake.sql(&format!(
            "INSERT INTO t VALUES ({i}, 'r{}', 's{i}'), ({}, 'r{}', NULL)",
            i % 3,
            i + 100,
            i % 3
        ))
        .await
        .unwrap();
    }
    let before = csv(&lake.sql("SELECT * FROM t ORDER BY id").await.unwrap());
    let dry = lake
        .optimize("t")
        .options(OptimizeOptions {
            dry_run: true,
            ..opts(false)
        })
        .await
        .unwrap();
    assert_eq!((dry.files_removed, dry.partitions, dry.version), (30, 3, None));
    let r = lake.optimize("t").options(opts(true)).await.unwrap();
    assert_eq!((r.files_removed, r.files_added, r.rows, r.attempts), (30, 3, 60, 1));
    let t = lake.table("t").await.unwrap();
    let snap = t.snapshot().await.unwrap();
    assert_eq!(snap.files.len(), 3);
    assert_eq!(csv(&lake.sql("SELECT * FROM t ORDER BY id").await.unwrap()), before);
    // each file is sorted by id
    for f in snap.files.values() {
        let b = read_all(&t, &snap, f).await;
        let ids: Vec<i64> = b
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");
    }
    // nothing left to compact; a bad sort column is named
    let again = lake.optimize("t").options(opts(false)).await.unwrap();
    assert_eq!((again.files_removed, again.version), (0, None));
    let e = lake
        .optimize("t")
        .options(OptimizeOptions {
            sort_by: vec![("nope".into(), false)],
            ..opts(false)
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"nope\""), "{e}");
    // time travel before the optimize still reads the old files
    assert_eq!(
        count(
            &lake,
            &format!("SELECT count(*) FROM t VERSION AS OF {}", snap.version - 1)
        )
        .await,
        60
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_and_delete_racing_lose_and_resurrect_nothing() {
    for round in 0..4 {
        let lake = Lake::in_memory().await.unwrap().session("admin");
        lake.sql("CREATE TABLE t (id BIGINT, p VARCHAR) PARTITIONED BY (p)")
            .await
            .unwrap();
        for i in 0..20 {
            let v: Vec<String> = (0..10).map(|k| format!("({}, 'x')", i * 10 + k)).collect();
            lake.sql(&format!("INSERT INTO t VALUES {}", v.join(",")))
                .await
                .unwrap();
        }
        let l2 = lake.clone();
        let delete = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(round * 3)).await;
            // a DELETE that loses the race fails with a conflict; it is then simply retried
            loop {
                match l2.sql("DELETE FROM t WHERE id % 2 = 0").await {
                    Ok(_) => break,
                    Err(e) if e.to_string().contains("conflict") => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let r = lake.optimize("t").options(opts(false)).await.unwrap();
        delete.await.unwrap();
        assert!(r.attempts <= 3);
        assert_eq!(count(&lake, "SELECT count(*) FROM t").await, 100, "round {round}");
        assert_eq!(count(&lake, "SELECT count(*) FROM t WHERE id % 2 = 0").await, 0);
        assert_eq!(count(&lake, "SELECT count(DISTINCT id) FROM t").await, 100);
        let v = lake.verify().await.unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacuum_spares_readers_of_retained_snapshots_and_staged_writes() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let t = lake.create_table("ev", events_schema()).await.unwrap();
    let schema = t.snapshot().await.unwrap().metadata.schema.arrow_schema();
    t.append(&[events(&schema, 0..100, "north")], "w").await.unwrap();
    // a long read holds version 1 ...
    let held = t.snapshot().await.unwrap();
    // ... while the table is overwritten and a writer stages files it has not committed yet
    t.write_batches(
        &[events(&schema, 100..150, "south")],
        "w",
        stratalake::WriteMode::Overwrite,
    )
    .await
    .unwrap();
    let snap = t.snapshot().await.unwrap();
    let mut w = t.writer(&snap).unwrap();
    w.write(events(&schema, 150..160, "east")).await.unwrap();
    let staged = w.finish().await.unwrap();
    let hour = std::time::Duration::from_secs(3600);
    let r = lake.vacuum("ev").retain(hour).force(true).await.unwrap();
    assert_eq!(
        (r.removed_files, r.orphan_files, r.kept_recent_orphans),
        (0, 0, 1),
        "{r:?}"
    );
    // the reader finishes: every file of its snapshot is still there and whole
    let mut rows = 0;
    for f in held.files.values() {
        let b = read_all(&t, &held, f).await;
        rows += b.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    assert_eq!(rows, 100);
    // the staged write commits and reads back
    t.commit_files(&snap, staged, "w", stratalake::WriteMode::Append, Default::default())
        .await
        .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM ev").await, 60);
    let v = lake.verify().await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quarantine_tables_are_created_by_admins_and_carry_the_policies() {
    use stratalake::table::quality::OnError;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("p.csv");
    std::fs::write(&csv, "id,age,region\n1,34,north\n2,-5,south\n").unwrap();
    let admin = Lake::in_memory().await.unwrap().session("admin").session("boss");
    admin.access().bootstrap_admin().await.unwrap();
    admin
        .sql(
            "CREATE TABLE people (id INT NOT NULL, age INT, region VARCHAR); \
             ALTER TABLE people ADD CONSTRAINT sane_age RANGE age BETWEEN 0 AND 150; \
             CREATE PRINCIPAL loader; GRANT INSERT ON TABLE people TO loader; \
             CREATE PRINCIPAL reader; GRANT SELECT ON NAMESPACE default TO reader; \
             CREATE ROW FILTER north ON people FOR reader WHERE region = 'north'",
        )
        .await
        .unwrap();
    let ingest = |lake: stratalake::Session| {
        let csv = csv.clone();
        async move {
            lake.ingest("people", [csv.as_path()])
                .on_error(OnError::Quarantine)
                .await
        }
    };
    // a loader may not create the quarantine table
    let e = ingest(admin.session("loader")).await.unwrap_err().to_string();
    assert!(
        e.contains("may not create the quarantine table default.people_quarantine"),
        "{e}"
    );
    assert_eq!(count(&admin, "SELECT count(*) FROM people").await, 0);
    // an administrator's first quarantining ingest creates it, with the table's row filter
    let r = ingest(admin.clone()).await.unwrap();
    assert_eq!(r.quarantine_table.as_deref(), Some("default.people_quarantine"));
    let reader = admin.session("reader");
    assert_eq!(count(&reader, "SELECT count(*) FROM people_quarantine").await, 0);
    assert_eq!(count(&admin, "SELECT count(*) FROM people_quarantine").await, 1);
    // afterwards a loader with INSERT on it may quarantine
    admin
        .sql("GRANT INSERT ON TABLE people_quarantine TO loader")
        .await
        .unwrap();
    ingest(admin.session("loader")).await.unwrap();
    assert_eq!(count(&admin, "SELECT count(*) FROM people_quarantine").await, 2);
    // a quarantine table that does not match is refused
    admin
        .sql(
            "CREATE TABLE other (id INT NOT NULL, age INT); \
             ALTER TABLE other ADD CONSTRAINT sane_age RANGE age BETWEEN 0 AND 150; \
             CREATE TABLE other_quarantine (id INT, age INT CLASSIFICATION public)",
        )
        .await
        .unwrap();
    let csv2 = dir.path().join("o.csv");
    std::fs::write(&csv2, "id,age\n1,-1\n").unwrap();
    let e = admin
        .ingest("other", [csv2.as_path()])
        .on_error(OnError::Quarantine)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match default.other"), "{e}");
}
