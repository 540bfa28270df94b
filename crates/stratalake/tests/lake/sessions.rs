//! Sessions: cancellation and statement timeouts stop a running statement, which is audited.

use std::time::{Duration, Instant};

use stratalake::query::{Cancel, Error as QueryError};
use stratalake::{Lake, Session};

const LONG: &str = "SELECT sum(value) FROM generate_series(1, 1000000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stops_at_its_timeout_and_when_cancelled() {
    let lake = Lake::in_memory().await.unwrap().session("admin");
    let started = Instant::now();
    let e = lake
        .session("ana")
        .sql_session()
        .with_timeout(Some(Duration::from_millis(300)))
        .execute(LONG)
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    let cancel = Cancel::default();
    let session = lake.session("ana").sql_session().with_cancel(cancel.clone());
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let started = Instant::now();
    let e = session.execute(LONG).await.unwrap_err();
    assert!(matches!(e, QueryError::Cancelled), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    // the next statement runs once the token is reset; until then nothing runs
    assert!(matches!(session.execute("SELECT 1").await, Err(QueryError::Cancelled)));
    cancel.reset();
    assert_eq!(session.execute("SELECT 1").await.unwrap().len(), 1);

    let records = lake.audit().records().await.unwrap();
    let stopped: Vec<_> = records
        .iter()
        .filter(|r| r.event.statement.contains("generate_series"))
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped[0].event.error.as_deref().unwrap().contains("statement timeout"));
    assert!(stopped[1].event.error.as_deref().unwrap().contains("cancelled"));
}

async fn lake_with_query(memory_limit: Option<&str>) -> stratalake::Result<Session> {
    let mut config = stratalake::LakeConfig::single_tier(&format!("memory://sessions-{}", rand_suffix()));
    config.query.memory_limit = memory_limit.map(str::to_string);
    config.query.target_partitions = Some(2);
    stratalake::LakeBuilder::from_config(config)
        .key_provider(std::sync::Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .open()
        .await
        .map(|lake| lake.session("admin"))
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    stratalake::crypto::random_bytes(&mut b).unwrap();
    stratalake::crypto::hex::encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lakes_sessions_share_one_memory_limit_and_never_spill() {
    let lake = lake_with_query(Some("4MiB")).await.unwrap();
    assert_eq!(lake.query_runtime().memory_limit(), Some(4 << 20));
    // a sort of 3 million numbers needs ~24 MiB: refused, not spilled to disk in clear
    let e = lake
        .session("ana")
        .execute("SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC")
        .await
        .unwrap_err();
    assert!(
        matches!(e, stratalake::Error::Query(QueryError::OutOfMemory(_))),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("out of query memory: ") && msg.contains("[query] memory_limit"),
        "{msg}"
    );
    // nothing stays reserved, and statements that stream run in the same limit
    assert_eq!(lake.query_runtime().memory_reserved(), 0);
    let out = lake
        .session("bo")
        .execute("SELECT count(*) AS n FROM generate_series(1, 3000000)")
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    // every session of the lake draws on the same pool: two handles, one runtime
    let other = lake.session("ana");
    assert_eq!(other.query_runtime().memory_limit(), Some(4 << 20));
    let e = other
        .session("ana")
        .execute("SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC")
        .await
        .unwrap_err();
    assert!(
        matches!(e, stratalake::Error::Query(QueryError::OutOfMemory(_))),
        "{e:?}"
    );
    // the failure is audited like any other
    let records = lake.audit().records().await.unwrap();
    assert!(records.iter().any(|r| {
        r.event
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("out of query memory"))
    }));
    // without a limit the same sort runs
    let free = lake_with_query(None).await.unwrap();
    let out = free
        .session("ana")
        .execute("SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC")
        .await
        .unwrap();
    assert!(
        matches!(&out[0], stratalake::Output::Rows { batches: b, .. } if b.iter().map(|b| b.num_rows()).sum::<usize>() == 3_000_000)
    );
    // bad settings name themselves
    for (bad, why) in [("lots", "[query] memory_limit"), ("0", "[query] memory_limit: 0")] {
        let e = lake_with_query(Some(bad)).await.unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_listings_and_descriptions_answer_only_what_the_principal_may_know() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Lake::builder(dir.path().join("lake"))
        .admin("dba")
        .create()
        .await
        .unwrap()
        .session("dba");
    admin
        .sql(
            "CREATE TABLE t (id INT, region VARCHAR, name VARCHAR CLASSIFICATION secret); \
             CREATE TABLE hidden (x INT); \
             INSERT INTO t VALUES (1, 'n', 'Ada'), (2, 's', 'Bo'); \
             CREATE PRINCIPAL ana WITH (clearance = 'internal'); GRANT SELECT ON TABLE t TO ana; \
             CREATE ROW FILTER north ON t FOR ana WHERE region = 'n'",
        )
        .await
        .unwrap();
    let ana = admin.session("ana");
    // listings: only tables ana holds a privilege on, like SHOW TABLES
    assert_eq!(admin.tables("default").await.unwrap(), vec!["hidden", "t"]);
    assert_eq!(ana.tables("default").await.unwrap(), vec!["t"]);
    // a Table handle bypasses grants: administrators only; the unchecked one says so by name
    let e = ana.table("t").await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    assert!(e.to_string().contains("read and write through a session"), "{e}");
    assert!(admin.table("t").await.is_ok());
    assert_eq!(
        ana.table_unchecked("t").await.unwrap().snapshot().await.unwrap().rows(),
        2
    );
    // an overview: columns and what reading each gives; no counts under a row filter
    let o = ana.table_overview("t", None).await.unwrap();
    assert_eq!(o.row_filters, vec!["north"]);
    assert!(o.counts.is_none());
    use stratalake::table::access::ColumnRead;
    assert_eq!(o.columns[0].1, ColumnRead::Values);
    assert_eq!(o.columns[2].1, ColumnRead::NullUncleared);
    let full = admin
        .table_overview("t", Some(stratalake::AsOf::Version(1)))
        .await
        .unwrap();
    assert_eq!(full.counts.map(|c| (c.files, c.rows)), Some((1, 2)));
    assert!(
        ana.table_overview("hidden", None)
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    // history: administrators only
    assert!(ana.history("t", None).await.unwrap_err().is_permission_denied());
    assert_eq!(admin.history("t", Some(1)).await.unwrap().len(), 1);
}
