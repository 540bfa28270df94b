//! Backups: round trips on local, memory and S3 repositories, incremental copies, damage, hostile
//! manifests, policies restored with the data, versions, keys, forget and prune.

use std::collections::BTreeMap;
use std::sync::Arc;

use stratalake::backup::{KeepPolicy, Repository, RestoreOptions};
use stratalake::{Lake, LakeConfig, Session, TableIdent};

use crate::csv;

async fn q(lake: &Session, principal: &str, sql: &str) -> String {
    csv(&lake.session(principal).sql(sql).await.unwrap())
}

/// A lake with a partitioned table, principals, a row filter and a mask, as `admin`.
async fn governed_lake(url: &str, options: &[(&str, &str)]) -> Session {
    let mut cfg = LakeConfig::single_tier(url);
    cfg.tiers[0].options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lake = stratalake::LakeBuilder::from_config(cfg)
        .key_provider(Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .open()
        .await
        .unwrap()
        .session("admin")
        .session("admin");
    lake.catalog_unchecked()
        .create_namespace("default", true, "admin")
        .await
        .unwrap();
    lake.access().bootstrap_admin().await.unwrap();
    lake.sql(
        "CREATE TABLE permits (id INT NOT NULL, region VARCHAR, fee INT CLASSIFICATION internal, \
         owner VARCHAR CLASSIFICATION confidential) PARTITIONED BY (region); \
         INSERT INTO permits VALUES (1, 'north', 10, 'Ada'), (2, 'south', 20, 'Bo'), (3, 'north', 30, 'Cy'); \
         CREATE ROLE regional; \
         CREATE PRINCIPAL ana WITH (region = 'north', clearance = 'internal'); \
         GRANT ROLE regional TO ana; \
         GRANT SELECT ON NAMESPACE default TO ROLE regional; \
         CREATE ROW FILTER own_region ON permits FOR regional WHERE region = current_principal_attribute('region'); \
         CREATE MASK ON permits (fee) FOR ana AS EXPR fee - fee % 100",
    )
    .await
    .unwrap();
    lake
}

const ALL: &str = "SELECT id, region, fee, owner FROM permits ORDER BY id";

async fn objects(repo: &Repository, prefix: &str) -> (usize, u64) {
    let l = repo.store().list(prefix).await.unwrap();
    (l.len(), l.iter().map(|(_, m)| m.size).sum())
}

async fn round_trip(lake: Session, repo_url: &str, repo_options: BTreeMap<String, String>, twin_url: &str) {
    let repo = lake.backups().init(repo_url, &repo_options).await.unwrap();
    let before_admin = q(&lake, "admin", ALL).await;
    let before_ana = q(&lake, "ana", ALL).await;
    assert_eq!(before_ana, "1,north,0,\n3,north,0,\n");

    let b1 = lake.backups().create(&repo).await.unwrap();
    assert_eq!((b1.totals.files, b1.totals.new_files), (2, 2));
    let (n1, bytes1) = objects(&repo, "data").await;
    assert_eq!((n1 as u64, bytes1), (2, b1.totals.bytes));

    // Unchanged: no data byte copied.
    let b2 = lake.backups().create(&repo).await.unwrap();
    assert_eq!(
        (b2.totals.new_files, b2.totals.new_bytes, b2.totals.new_meta),
        (0, 0, 0)
    );
    assert_eq!(objects(&repo, "data").await, (n1, bytes1));

    // An append: exactly the new file is copied.
    lake.sql("INSERT INTO permits VALUES (4, 'east', 40, 'Di')")
        .await
        .unwrap();
    let b3 = lake.backups().create(&repo).await.unwrap();
    assert_eq!(b3.totals.new_files, 1);
    let (n3, bytes3) = objects(&repo, "data").await;
    assert_eq!((n3, bytes3 - bytes1), (3, b3.totals.new_bytes));
    let after_admin = q(&lake, "admin", ALL).await;

    let report = repo.verify(true, &|_| {}).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.backups, 3);
    assert_eq!(report.bytes_read, bytes3);

    // Whole-lake restore of the first backup: data and policies as they were.
    let twin = lake.backups().empty_twin(twin_url).await.unwrap();
    let s = twin.backups().restore(&repo, &b1.id).await.unwrap();
    assert_eq!(s.tables.len(), 1);
    assert_eq!(q(&twin, "admin", ALL).await, before_admin);
    assert_eq!(q(&twin, "ana", ALL).await, before_ana);
    assert!(twin.session("mallory").sql(ALL).await.is_err());
    let v = twin.verify().await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);

    // A second whole-lake restore into it is refused without force.
    let e = twin.backups().restore(&repo, &b3.id).await.unwrap_err().to_string();
    assert!(e.contains("already holds default.permits"), "{e}");
    assert_eq!(q(&twin, "admin", ALL).await, before_admin);

    // One table at an older version under a new name, with its policies.
    let opts = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        rename: Some(TableIdent::new("default", "permits_v1")),
        version: Some(1),
        ..Default::default()
    };
    let s = lake.backups().restore(&repo, &b3.id).options(opts).await.unwrap();
    assert_eq!((s.tables[0].version, s.tables[0].rows), (1, 3));
    let v1 = "SELECT id, region, fee, owner FROM permits_v1 ORDER BY id";
    assert_eq!(q(&lake, "admin", v1).await, before_admin);
    assert_eq!(q(&lake, "ana", v1).await, before_ana);
    // the latest version restores everything, with force over the existing name
    let opts = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        force: true,
        ..Default::default()
    };
    twin.backups().restore(&repo, &b3.id).options(opts).await.unwrap();
    assert_eq!(q(&twin, "admin", ALL).await, after_admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_a_local_repository() {
    let dir = tempfile::tempdir().unwrap();
    let lake = governed_lake(dir.path().join("lake").to_str().unwrap(), &[]).await;
    let repo = dir.path().join("repo");
    let twin = dir.path().join("twin");
    round_trip(lake, repo.to_str().unwrap(), BTreeMap::new(), twin.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_an_s3_repository() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests through scripts/test.sh"
        );
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let opts = [
        ("endpoint", endpoint.as_str()),
        ("region", "us-east-1"),
        ("allow_http", "true"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ];
    let pid = std::process::id();
    let lake = governed_lake(&format!("s3://{bucket}/bk-lake-{pid}"), &opts).await;
    let repo_opts = opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    round_trip(
        lake,
        &format!("s3://{bucket}/bk-repo-{pid}"),
        repo_opts,
        &format!("memory://bk-twin-{pid}"),
    )
    .await;
}

/// A repository with two backups, and a handle to damage it.
async fn damaged_setup() -> (tempfile::TempDir, Session, Repository, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let lake = governed_lake(dir.path().join("lake").to_str().unwrap(), &[]).await;
    let repo = lake
        .backups()
        .init(dir.path().join("repo").to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let a = lake.backups().create(&repo).await.unwrap().id;
    lake.sql("INSERT INTO permits VALUES (4, 'east', 40, 'Di')")
        .await
        .unwrap();
    let b = lake.backups().create(&repo).await.unwrap().id;
    (dir, lake, repo, a, b)
}

async fn assert_restore_publishes_nothing(lake: &Session, repo: &Repository, id: &str, url: &str) -> String {
    let twin = lake.backups().empty_twin(url).await.unwrap();
    let e = twin.backups().restore(repo, id).await.unwrap_err().to_string();
    assert!(twin.tables("default").await.is_err() || twin.tables("default").await.unwrap().is_empty());
    assert!(
        twin.catalog_unchecked().state().await.unwrap().namespaces.is_empty(),
        "{e}"
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damage_is_named_and_restore_publishes_nothing() {
    let (dir, lake, repo, _a, b) = damaged_setup().await;
    let root = dir.path().join("repo");
    let m = repo.load_manifest(&b).await.unwrap();
    let files = &m.tables[0].files;
    let obj = |sha: &str| root.join("data").join(&sha[..2]).join(sha);
    let (flip, trunc, gone) = (&files[0].sha256, &files[1].sha256, &files[2].sha256);

    // A flipped byte: only reading the data finds it.
    let mut bytes = std::fs::read(obj(flip)).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(obj(flip), &bytes).unwrap();
    assert!(repo.verify(false, &|_| {}).await.unwrap().problems.is_empty());
    let r = repo.verify(true, &|_| {}).await.unwrap();
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].object.ends_with(flip.as_str()));
    assert!(r.problems[0].problem.contains("sha256"));
    let e = assert_restore_publishes_nothing(&lake, &repo, &b, "memory://bk-dmg-1").await;
    assert!(e.contains(flip.as_str()), "{e}");
    // Replacing the live table (--force) from the damaged backup: refused before the live
    // table is dropped, so it still answers as before.
    let before = q(&lake, "admin", ALL).await;
    let e = lake
        .backups()
        .restore(&repo, &b)
        .options(RestoreOptions {
            table: Some(TableIdent::new("default", "permits")),
            force: true,
            principal: "admin".into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(flip.as_str()), "{e}");
    assert_eq!(q(&lake, "admin", ALL).await, before);
    std::fs::write(obj(flip), {
        bytes[100] ^= 0x40;
        &bytes
    })
    .unwrap();

    // Truncated and deleted objects: found without reading data.
    let t = std::fs::read(obj(trunc)).unwrap();
    std::fs::write(obj(trunc), &t[..t.len() / 2]).unwrap();
    std::fs::remove_file(obj(gone)).unwrap();
    let r = repo.verify(false, &|_| {}).await.unwrap();
    let named: Vec<(&str, &str)> = r
        .problems
        .iter()
        .map(|p| (p.object.as_str(), p.problem.as_str()))
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(
        named
            .iter()
            .any(|(o, p)| o.ends_with(trunc.as_str()) && p.contains("size"))
    );
    assert!(named.iter().any(|(o, p)| o.ends_with(gone.as_str()) && *p == "missing"));
    assert!(r.damaged_backups().contains(&b));
    let e = assert_restore_publishes_nothing(&lake, &repo, &b, "memory://bk-dmg-2").await;
    assert!(e.contains(trunc.as_str()) || e.contains(gone.as_str()), "{e}");
    std::fs::write(obj(trunc), &t).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapped_and_hostile_manifests_are_refused() {
    let (dir, lake, repo, a, b) = damaged_setup().await;
    let snaps = dir.path().join("repo").join("snapshots");
    // The manifest of backup a put in place of b's.
    let b_bytes = std::fs::read(snaps.join(&b)).unwrap();
    std::fs::copy(snaps.join(&a), snaps.join(&b)).unwrap();
    let r = repo.verify(false, &|_| {}).await.unwrap();
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].object, format!("snapshots/{b}"));
    assert!(r.problems[0].problem.contains("not authentic"), "{:?}", r.problems);
    let e = assert_restore_publishes_nothing(&lake, &repo, &b, "memory://bk-host-1").await;
    assert!(e.contains("not authentic"), "{e}");
    std::fs::write(snaps.join(&b), &b_bytes).unwrap();

    // Hostile entries, sealed with the right key: verify names them, restore refuses them.
    for (i, path) in ["data/../../../escape.parquet", "/etc/passwd", "data//x.parquet"]
        .iter()
        .enumerate()
    {
        let mut m = repo.load_manifest(&b).await.unwrap();
        m.id = format!("{b}-hostile{i}");
        m.tables[0].files[0].path = path.to_string();
        repo.put_manifest_unchecked(&m).await.unwrap();
        let r = repo.verify(false, &|_| {}).await.unwrap();
        let p = r
            .problems
            .iter()
            .find(|p| p.object == format!("snapshots/{}", m.id))
            .unwrap_or_else(|| panic!("{path}: {:?}", r.problems));
        assert!(p.problem.contains("hostile"), "{p:?}");
        let e = assert_restore_publishes_nothing(&lake, &repo, &m.id, &format!("memory://bk-host-{i}x")).await;
        assert!(e.contains("hostile"), "{e}");
        repo.forget(std::slice::from_ref(&m.id), &KeepPolicy::default(), false)
            .await
            .unwrap();
    }
    let mut m = repo.load_manifest(&b).await.unwrap();
    m.id = format!("{b}-badname");
    m.tables[0].name = "../etc".into();
    repo.put_manifest_unchecked(&m).await.unwrap();
    let e = assert_restore_publishes_nothing(&lake, &repo, &m.id, "memory://bk-host-name").await;
    assert!(e.contains("../etc"), "{e}");
    assert!(!dir.path().join("escape.parquet").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_needs_the_master_keys_and_names_the_missing_one() {
    let (_dir, lake, repo, _a, b) = damaged_setup().await;
    // A lake with other master keys cannot even open the repository.
    let stranger = stratalake::LakeBuilder::from_config(LakeConfig::single_tier("memory://bk-stranger"))
        .key_provider(Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .open()
        .await
        .unwrap()
        .session("admin");
    let e = stranger
        .backups()
        .open(repo.store().url(), &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("public/v1"), "{e}");
    // A twin whose provider lacks the confidential key: the restore names it, publishes nothing.
    #[derive(Debug)]
    struct Without(Arc<dyn stratalake::crypto::KeyProvider>, &'static str);
    #[async_trait::async_trait]
    impl stratalake::crypto::KeyProvider for Without {
        fn describe(&self) -> String {
            "test provider".into()
        }
        async fn current(
            &self,
            c: &str,
        ) -> stratalake::crypto::Result<(stratalake::crypto::KeyId, stratalake::crypto::MasterKey)> {
            self.0.current(c).await
        }
        async fn get(
            &self,
            id: &stratalake::crypto::KeyId,
        ) -> stratalake::crypto::Result<stratalake::crypto::MasterKey> {
            if id.classification == self.1 {
                return Err(stratalake::crypto::Error::KeyNotFound {
                    id: id.clone(),
                    provider: "test".into(),
                });
            }
            self.0.get(id).await
        }
    }
    let provider = Arc::new(Without(
        lake.catalog_unchecked().context().keyring.provider().clone(),
        "confidential",
    ));
    let twin = stratalake::LakeBuilder::from_config(LakeConfig::single_tier("memory://bk-nokey"))
        .key_provider(provider)
        .open()
        .await
        .unwrap()
        .session("admin");
    let e = twin.backups().restore(&repo, &b).await.unwrap_err().to_string();
    assert!(e.contains("confidential/v1"), "{e}");
    assert!(twin.catalog_unchecked().state().await.unwrap().namespaces.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forget_and_prune_keep_what_remaining_backups_need() {
    let (_dir, lake, repo, a, b) = damaged_setup().await;
    // Overwrite: backup c shares no data file with a.
    lake.sql("INSERT OVERWRITE permits VALUES (9, 'west', 90, 'Zed')")
        .await
        .unwrap();
    let c = lake.backups().create(&repo).await.unwrap();
    assert_eq!(c.totals.new_files, 1);
    let e = repo
        .forget(&[], &KeepPolicy::default(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--keep"), "{e}");
    let d = repo
        .forget(
            &[],
            &KeepPolicy {
                last: 1,
                ..Default::default()
            },
            true,
        )
        .await
        .unwrap();
    let forgotten: Vec<&str> = d.iter().filter(|e| !e.keep).map(|e| e.id.as_str()).collect();
    assert_eq!(forgotten, vec![a.as_str(), b.as_str()]);
    assert_eq!(repo.list().await.unwrap().len(), 3, "a dry run changes nothing");
    repo.forget(&[a.clone(), b.clone()], &KeepPolicy::default(), false)
        .await
        .unwrap();
    // c's manifest still lists the older files (time travel to versions before the
    // overwrite), so prune keeps them.
    let p = repo.prune(false).await.unwrap();
    let (n, _) = objects(&repo, "data").await;
    assert_eq!(n as u64, p.kept_objects - objects(&repo, "meta").await.0 as u64);
    assert_eq!(repo.list().await.unwrap().len(), 1);
    let r = repo.verify(true, &|_| {}).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // A stopped backup's leftovers go with prune.
    repo.store()
        .put("data/ff/ffleftover", bytes::Bytes::from_static(b"partial"))
        .await
        .unwrap();
    let p = repo.prune(false).await.unwrap();
    assert_eq!((p.objects, p.bytes), (1, 7));
    let twin = lake.backups().empty_twin("memory://bk-after-prune").await.unwrap();
    twin.backups().restore(&repo, &c.id).await.unwrap();
    assert_eq!(q(&twin, "admin", ALL).await, "9,west,90,Zed\n");
    let old = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        rename: Some(TableIdent::new("default", "permits_old")),
        version: Some(1),
        ..Default::default()
    };
    twin.backups().restore(&repo, &c.id).options(old).await.unwrap();
    assert_eq!(q(&twin, "admin", "SELECT count(*) FROM permits_old").await, "3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_and_restores_are_for_admins_and_audited() {
    let (_dir, lake, repo, _a, b) = damaged_setup().await;
    let ana = lake.session("ana");
    assert!(ana.backups().create(&repo).await.is_err());
    assert!(ana.backups().open(repo.store().url(), &BTreeMap::new()).await.is_err());
    let opts = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        rename: Some(TableIdent::new("default", "copy")),
        ..Default::default()
    };
    assert!(ana.backups().restore(&repo, &b).options(opts).await.is_err());
    let records = lake.audit().records().await.unwrap();
    let kinds: Vec<(&str, &str, String)> = records
        .iter()
        .filter(|r| r.event.kind == "backup" || r.event.kind == "restore")
        .map(|r| {
            (
                r.event.kind.as_str(),
                r.event.principal.as_str(),
                r.event.outcome.to_string(),
            )
        })
        .collect();
    assert!(kinds.contains(&("backup", "admin", "ok".into())), "{kinds:?}");
    assert!(kinds.contains(&("backup", "ana", "denied".into())), "{kinds:?}");
    assert!(kinds.contains(&("restore", "ana", "denied".into())), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_writers_write_is_consistent_with_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let lake = governed_lake(dir.path().join("lake").to_str().unwrap(), &[]).await;
    let repo = lake
        .backups()
        .init(dir.path().join("repo").to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let writer = {
        let l = lake.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                l.sql(&format!("INSERT INTO permits VALUES ({}, 'east', 1, 'w')", 100 + i))
                    .await
                    .unwrap();
            }
        })
    };
    let mut backups = Vec::new();
    for _ in 0..4 {
        backups.push(lake.backups().create(&repo).await.unwrap());
    }
    writer.await.unwrap();
    for (i, m) in backups.iter().enumerate() {
        let t = &m.tables[0];
        // what the table held at the backed-up version, read from the lake itself
        let expected = q(
            &lake,
            "admin",
            &format!("SELECT count(*) FROM permits VERSION AS OF {}", t.version),
        )
        .await;
        assert_eq!(expected, format!("{}\n", t.rows));
        let twin = lake
            .backups()
            .empty_twin(&format!("memory://bk-concurrent-{i}"))
            .await
            .unwrap();
        twin.backups().restore(&repo, &m.id).await.unwrap();
        assert_eq!(q(&twin, "admin", "SELECT count(*) FROM permits").await, expected);
        assert!(twin.verify().await.unwrap().problems.is_empty());
    }
    assert!(repo.verify(true, &|_| {}).await.unwrap().problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_target_left_half_made_is_taken_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    Lake::builder(&source).admin("admin").create().await.unwrap();
    let keys = source.join("master.keys");
    // a restore stopped after copying the keys, before writing the configuration
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(&keys, target.join("master.keys")).unwrap();
    let lake = Lake::init_for_restore(&target, stratalake::KeySource::Copy(keys.clone()))
        .await
        .unwrap();
    assert!(lake.catalog_unchecked().state().await.unwrap().namespaces.is_empty());
    // no partial files are left behind
    let names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    // a key file of another lake is never overwritten
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("master.keys"), b"not these keys").unwrap();
    let e = Lake::init_for_restore(&other, stratalake::KeySource::Copy(keys))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("a different key file is already there"), "{e}");
    assert_eq!(std::fs::read(other.join("master.keys")).unwrap(), b"not these keys");
}
