//! Master keys: rotation re-wraps without rewriting data, retirement, crypto-shredding, and how
//! each meets time travel and backups.

use std::collections::BTreeMap;

use stratalake::crypto::KeyId;
use stratalake::{Lake, Session};

use crate::csv;

async fn q(lake: &Session, sql: &str) -> String {
    csv(&lake.sql(sql).await.unwrap())
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

fn data_files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    walkdir(dir)
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

const ALL: &str = "SELECT id, region, owner FROM permits ORDER BY id";

async fn lake_with_data(dir: &std::path::Path) -> Session {
    let lake = Lake::builder(dir.join("lake"))
        .admin("admin")
        .create()
        .await
        .unwrap()
        .session("admin");
    lake.sql(
        "CREATE TABLE permits (id INT NOT NULL, region VARCHAR, owner VARCHAR CLASSIFICATION confidential) PARTITIONED BY (region); \
         INSERT INTO permits VALUES (1, 'north', 'Ada'), (2, 'south', 'Bo')",
    )
    .await
    .unwrap();
    lake
}

fn status(s: &[stratalake::KeyStatus], level: &str, v: u32) -> (bool, bool, u64, u64) {
    let k = s.iter().find(|k| k.id == KeyId::new(level, v)).unwrap();
    (k.current, k.destroyed, k.live_files, k.history_files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_rewraps_keys_without_touching_data_and_retirement_is_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_data(dir.path()).await;
    let repo = lake
        .backups()
        .init(dir.path().join("repo").to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let before_rotation = lake.backups().create(&repo).await.unwrap();
    let before = q(&lake, ALL).await;
    let files = data_files(&dir.path().join("lake"));

    let r = lake.keys().rotate(Some("confidential")).await.unwrap();
    assert_eq!(r.new_keys, vec![KeyId::new("confidential", 2)]);
    assert_eq!(r.tables, vec![("default.permits".to_string(), 2, 2)]);
    // no data file read back into a new one: same paths, same bytes
    assert_eq!(data_files(&dir.path().join("lake")), files);
    assert_eq!(q(&lake, ALL).await, before);
    let h = lake.table("permits").await.unwrap().history(None).await.unwrap();
    assert_eq!(h.first().unwrap().operation, "REKEY");
    let s = lake.keys().status().await.unwrap();
    assert_eq!(status(&s, "confidential", 1), (false, false, 0, 2));
    assert_eq!(status(&s, "confidential", 2), (true, false, 2, 2));
    // other levels untouched
    assert_eq!(status(&s, "public", 1), (true, false, 2, 2));
    // rotating again makes v3 current and re-keys the same files once more
    let r = lake.keys().rotate(Some("confidential")).await.unwrap();
    assert_eq!((r.new_keys[0].version, r.tables[0].2), (3, 2));

    // retiring: never the current version, never while history needs it unless told
    let e = lake
        .keys()
        .retire(&KeyId::new("confidential", 3), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("current version"), "{e}");
    let e = lake
        .keys()
        .retire(&KeyId::new("confidential", 1), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--drop-history"), "{e}");
    // while v1 exists, the backup from before the rotation restores
    let twin = lake.backups().empty_twin("memory://keys-twin-1").await.unwrap();
    twin.backups().restore(&repo, &before_rotation.id).await.unwrap();
    assert_eq!(q(&twin, ALL).await, before);
    lake.keys().retire(&KeyId::new("confidential", 1), true).await.unwrap();
    assert_eq!(q(&lake, ALL).await, before);
    let e = lake
        .sql("SELECT owner FROM permits VERSION AS OF 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("confidential/v1") && e.contains("destroyed"), "{e}");
    // ... and now fails naming the version it needs, publishing nothing
    let twin = lake.backups().empty_twin("memory://keys-twin-2").await.unwrap();
    let e = twin
        .backups()
        .restore(&repo, &before_rotation.id)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("confidential/v1"), "{e}");
    assert!(twin.catalog_unchecked().state().await.unwrap().namespaces.is_empty());
    // a backup taken after the rotation restores
    let after = lake.backups().create(&repo).await.unwrap();
    twin.backups().restore(&repo, &after.id).await.unwrap();
    assert_eq!(q(&twin, ALL).await, before);
    assert!(lake.verify().await.unwrap().problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retiring_the_lowest_level_never_strands_a_backup_repository() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_data(dir.path()).await;
    let url = dir.path().join("repo").to_str().unwrap().to_string();
    let gone = dir.path().join("gone").to_str().unwrap().to_string();
    let repo = lake.backups().init(&url, &BTreeMap::new()).await.unwrap();
    let b = lake.backups().create(&repo).await.unwrap();
    lake.backups().init(&gone, &BTreeMap::new()).await.unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    // the repository key is wrapped under public/v1 only
    assert_eq!(repo.key_slots().await.unwrap(), vec![KeyId::new("public", 1)]);
    lake.keys().rotate(Some("public")).await.unwrap();
    // retiring v1 opens each repository the lake used (adding a slot under v2); one it cannot
    // open stops it, until detached on purpose
    let e = lake
        .keys()
        .retire(&KeyId::new("public", 1), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&gone) && e.contains("backup detach"), "{e}");
    assert_eq!(lake.backups().detach(&gone).await.unwrap(), 1);
    lake.keys().retire(&KeyId::new("public", 1), true).await.unwrap();
    let reopened = lake.backups().open(&url, &BTreeMap::new()).await.unwrap();
    assert_eq!(
        reopened.key_slots().await.unwrap(),
        vec![KeyId::new("public", 1), KeyId::new("public", 2)]
    );
    assert!(reopened.verify(true, &|_| {}).await.unwrap().problems.is_empty());
    let noted: Vec<String> = walkdir(&dir.path().join("lake"))
        .into_iter()
        .filter(|p| p.contains("_backup/repositories/"))
        .collect();
    assert_eq!(noted.len(), 1, "the detached repository is no longer noted: {noted:?}");
    // the backup taken before the rotation needs public/v1 for its files' footers
    let twin = lake.backups().empty_twin("memory://keys-lowest-twin").await.unwrap();
    let e = twin.backups().restore(&reopened, &b.id).await.unwrap_err().to_string();
    assert!(e.contains("public/v1"), "{e}");
    let after = lake.backups().create(&reopened).await.unwrap();
    twin.backups().restore(&reopened, &after.id).await.unwrap();
    assert_eq!(q(&twin, ALL).await, q(&lake, ALL).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_and_concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_data(dir.path()).await;
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let l = lake.clone();
            tokio::spawn(async move {
                for j in 0..3 {
                    l.sql(&format!(
                        "INSERT INTO permits VALUES ({}, 'east', 'w')",
                        100 + i * 10 + j
                    ))
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    lake.keys().rotate(None).await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(q(&lake, "SELECT count(*) FROM permits").await, "14\n");
    // writers that started before the rotation may have used v1: a second run catches them
    lake.keys().rotate(Some("confidential")).await.unwrap();
    let s = lake.keys().status().await.unwrap();
    assert_eq!(status(&s, "confidential", 1).2, 0);
    assert_eq!(status(&s, "confidential", 2).2, 0);
    assert_eq!(status(&s, "confidential", 3).2, 14);
    assert!(lake.verify().await.unwrap().problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shredding_makes_a_classification_unreadable_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_data(dir.path()).await;
    let repo = lake
        .backups()
        .init(dir.path().join("repo").to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let b = lake.backups().create(&repo).await.unwrap();
    let e = lake.keys().shred("public").await.unwrap_err().to_string();
    assert!(e.contains("footer"), "{e}");
    let ids = lake.keys().shred("confidential").await.unwrap();
    assert_eq!(ids, vec![KeyId::new("confidential", 1)]);
    // every session, admins included: a query touching the column is refused, naming it;
    // the other columns are intact
    let unreadable = |e: String| {
        assert!(
            e.contains("\"owner\"") && e.contains("shredded") && e.contains("confidential"),
            "{e}"
        )
    };
    unreadable(lake.sql(ALL).await.unwrap_err().to_string());
    unreadable(
        lake.sql("SELECT id FROM permits WHERE owner IS NULL")
            .await
            .unwrap_err()
            .to_string(),
    );
    assert_eq!(
        q(&lake, "SELECT id, region FROM permits ORDER BY id").await,
        "1,north\n2,south\n"
    );
    // a mask computing from the raw value cannot apply; a NULL or REDACT mask shows NULL
    lake.sql("CREATE MASK FOR CLASSIFICATION confidential AS PARTIAL(2)")
        .await
        .unwrap();
    unreadable(lake.sql(ALL).await.unwrap_err().to_string());
    lake.sql("CREATE MASK FOR CLASSIFICATION confidential AS REDACT")
        .await
        .unwrap();
    assert_eq!(q(&lake, ALL).await, "1,north,\n2,south,\n");
    let e = lake
        .sql("INSERT INTO permits VALUES (3, 'east', 'Cy')")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("confidential") && e.contains("destroyed"), "{e}");
    assert!(lake.keys().rotate(Some("confidential")).await.is_err());
    assert!(lake.verify().await.unwrap().problems.is_empty());
    // the raw bytes left on disk cannot be opened with any remaining key
    let keys = std::fs::read_to_string(dir.path().join("lake/master.keys")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(
        v["keys"]["confidential"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("key").is_none())
    );
    // backups included: the restored table still has its other columns, never the shredded one
    let twin = lake.backups().empty_twin("memory://shred-twin").await.unwrap();
    twin.backups().restore(&repo, &b.id).await.unwrap();
    unreadable(twin.sql(ALL).await.unwrap_err().to_string());
    assert_eq!(
        q(&twin, "SELECT id, region FROM permits ORDER BY id").await,
        "1,north\n2,south\n"
    );
}
