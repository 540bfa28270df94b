//! Sessions: cancellation and statement timeouts stop a running statement, which is audited.

use std::time::{Duration, Instant};

use stratalake::Lake;
use stratalake::query::{Cancel, Error as QueryError};

const LONG: &str = "SELECT sum(value) FROM generate_series(1, 1000000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stops_at_its_timeout_and_when_cancelled() {
    let lake = Lake::in_memory().await.unwrap();
    let started = Instant::now();
    let e = lake
        .session("ana")
        .with_timeout(Some(Duration::from_millis(300)))
        .execute(LONG)
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    let cancel = Cancel::default();
    let session = lake.session("ana").with_cancel(cancel.clone());
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

    let records = lake.audit_records().await.unwrap();
    let stopped: Vec<_> = records
        .iter()
        .filter(|r| r.event.statement.contains("generate_series"))
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped[0].event.error.as_deref().unwrap().contains("statement timeout"));
    assert!(stopped[1].event.error.as_deref().unwrap().contains("cancelled"));
}
