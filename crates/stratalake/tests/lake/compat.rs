//! Backward compatibility: `fixtures/lake-v1` and `fixtures/backup-v1` were written once by the
//! format of `docs/format.md` (`stratalake-log/v1`) and are committed. Every build must read
//! them, with the same contents, policies and history, and extend them. See `fixtures/README.md`.
//!
//! The generator below made them (`write_fixtures`, ignored; see the README for the command).
//! It is kept so that the next format generation (`lake-v2`) can be written the same way; it is
//! never re-run to make this test pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stratalake::backup::RestoreOptions;
use stratalake::{KeySource, Lake, Session, TableIdent};

use crate::csv;

/// The folder holding the committed fixtures.
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The administrator every fixture operation runs as.
const ADMIN: &str = "admin";

// The facade's constructors, in one place: everything else is called on the handle they return
// (a lake acting as a principal).
type Handle = Session;

/// A new folder lake at `dir` with `admin` as its administrator, acting as `admin`.
async fn create_lake(dir: &Path) -> Handle {
    Lake::builder(dir).admin(ADMIN).create().await.unwrap().session(ADMIN)
}

/// The folder lake at `dir`, acting as `admin`.
async fn open_lake(dir: &Path) -> Handle {
    Lake::builder(dir).open().await.unwrap().session(ADMIN)
}

/// An empty lake in `dir` with a copy of the master keys of the lake in `source`, to restore
/// into, acting as `admin`.
async fn restore_target(dir: &Path, source: &Path) -> Handle {
    Lake::init_for_restore(dir, KeySource::Copy(source.join("master.keys")))
        .await
        .unwrap()
        .session(ADMIN)
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

async fn run(lake: &Handle, sql: &str) {
    lake.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Write a lake at `root/lake-v1` and a backup repository at `root/backup-v1`.
async fn generate(root: &Path) {
    let lake_dir = root.join("lake-v1");
    let repo_dir = root.join("backup-v1");
    assert!(
        !lake_dir.exists() && !repo_dir.exists(),
        "{} already holds fixtures: they are never regenerated (fixtures/README.md)",
        root.display()
    );
    let lake = create_lake(&lake_dir).await;
    assert_eq!(lake.principal(), ADMIN);

    // Two namespaces; columns of every classification level, so data keys are wrapped under
    // four master keys.
    run(
        &lake,
        "CREATE NAMESPACE registry; \
         CREATE TABLE permits (id BIGINT NOT NULL CLASSIFICATION public, region VARCHAR NOT NULL CLASSIFICATION public, \
           issued DATE CLASSIFICATION internal, fee DECIMAL(12,2) CLASSIFICATION confidential, \
           paid BOOLEAN CLASSIFICATION internal, owner VARCHAR CLASSIFICATION secret, \
           updated_at TIMESTAMP CLASSIFICATION internal) PARTITIONED BY (region); \
         CREATE TABLE registry.cases (case_id INT NOT NULL CLASSIFICATION public, opened TIMESTAMP NOT NULL CLASSIFICATION internal, \
           status VARCHAR CLASSIFICATION public, amount DECIMAL(10,2) CLASSIFICATION confidential, \
           urgent BOOLEAN CLASSIFICATION public, citizen VARCHAR CLASSIFICATION secret) PARTITIONED BY (year(opened)); \
         CREATE TABLE registry.notes (id INT NOT NULL CLASSIFICATION public, body VARCHAR CLASSIFICATION internal, \
           score DOUBLE CLASSIFICATION public)",
    )
    .await;

    // default.permits: v1, v2 appends
    run(
        &lake,
        "INSERT INTO permits VALUES \
           (1, 'north', DATE '2025-01-05', 120.50, true, 'Ada', TIMESTAMP '2025-01-05 09:30:00'), \
           (2, 'south', DATE '2025-01-17', 80.00, false, 'Bo', TIMESTAMP '2025-01-17 14:00:00'), \
           (3, 'north', DATE '2025-02-02', 1999.99, NULL, NULL, TIMESTAMP '2025-02-02 08:15:30'), \
           (4, 'south', NULL, NULL, true, 'Cy', NULL)",
    )
    .await;
    run(
        &lake,
        "INSERT INTO permits VALUES \
           (5, 'east', DATE '2025-03-10', 45.25, true, 'Di', TIMESTAMP '2025-03-10 11:11:11'), \
           (6, 'east', DATE '2025-03-11', 0.01, false, 'Ed', TIMESTAMP '2025-03-11 23:59:59')",
    )
    .await;
    // registry.cases: v1 append
    run(
        &lake,
        "INSERT INTO registry.cases VALUES \
           (100, TIMESTAMP '2024-11-30 10:00:00', 'open', 500.00, false, 'Fay'), \
           (101, TIMESTAMP '2025-01-02 12:30:00', 'open', 75.50, true, 'Gus'), \
           (102, TIMESTAMP '2025-02-14 16:45:00', 'closed', NULL, NULL, NULL)",
    )
    .await;
    // registry.notes: v1 through ingest (CSV)
    let tmp = tempfile::tempdir().unwrap();
    let notes_csv = tmp.path().join("notes.csv");
    std::fs::write(
        &notes_csv,
        "id,body,score\n1,first note,1.5\n2,,-2.25\n3,\"comma, inside\",\n",
    )
    .unwrap();
    lake.ingest("registry.notes", [notes_csv.as_path()]).await.unwrap();

    // Principals, roles, grants, a row filter, masks, a classification policy.
    run(
        &lake,
        "CREATE ROLE regional; \
         CREATE PRINCIPAL ana WITH (region = 'north', clearance = 'internal'); \
         GRANT ROLE regional TO ana; \
         GRANT SELECT ON NAMESPACE default TO ROLE regional; \
         CREATE ROW FILTER own_region ON permits FOR regional WHERE region = current_principal_attribute('region'); \
         CREATE MASK ON permits (fee) FOR ana AS BUCKET(100); \
         CREATE MASK FOR CLASSIFICATION secret AS PARTIAL(1); \
         CREATE PRINCIPAL etl SERVICE WITH (clearance = 'confidential'); \
         GRANT SELECT ON TABLE registry.cases TO etl; \
         GRANT INSERT ON NAMESPACE registry TO etl; \
         CREATE MASK ON registry.cases (citizen) FOR etl AS HASH; \
         GRANT SELECT ON TABLE registry.notes TO etl; \
         REVOKE SELECT ON TABLE registry.notes FROM etl",
    )
    .await;
    // A table dropped again: the catalog replays a drop.
    run(
        &lake,
        "CREATE TABLE registry.scratch (x INT); DROP TABLE registry.scratch",
    )
    .await;

    // First backup: the lake as it is now.
    let repo = lake
        .backups()
        .init(repo_dir.to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    lake.backups().create(&repo).await.unwrap();

    // default.permits: v3 update, v4 delete, v5 add column, v6 append, v7 constraint
    run(
        &lake,
        "UPDATE permits SET fee = fee + 10, paid = true WHERE region = 'south'",
    )
    .await;
    run(&lake, "DELETE FROM permits WHERE id = 6").await;
    run(
        &lake,
        "ALTER TABLE permits ADD COLUMN note VARCHAR CLASSIFICATION internal",
    )
    .await;
    run(
        &lake,
        "INSERT INTO permits VALUES (7, 'east', DATE '2025-04-01', 300.00, false, 'Flo', TIMESTAMP '2025-04-01 00:00:00', 'late')",
    )
    .await;
    run(
        &lake,
        "ALTER TABLE permits ADD CONSTRAINT fee_positive CHECK (fee >= 0)",
    )
    .await;
    // v8: a rotation of the confidential master key re-keys permits and cases (REKEY)
    let rotated = lake.keys().rotate(Some("confidential")).await.unwrap();
    assert_eq!(rotated.new_keys.len(), 1);
    // v9: rename (old files keep the old name, an alias), v10: optimize (checkpoint at 10)
    run(&lake, "ALTER TABLE permits RENAME COLUMN paid TO settled").await;
    lake.optimize("permits").await.unwrap();
    // v11: an append after the checkpoint
    run(
        &lake,
        "INSERT INTO permits VALUES (8, 'north', DATE '2025-05-20', 64.00, true, NULL, TIMESTAMP '2025-05-20 07:07:07', 'after checkpoint')",
    )
    .await;

    // registry.cases: update, widen a type, append as the service principal
    run(
        &lake,
        "UPDATE registry.cases SET status = 'closed', urgent = false WHERE case_id = 101",
    )
    .await;
    run(&lake, "ALTER TABLE registry.cases ALTER COLUMN case_id TYPE BIGINT").await;
    lake.session("etl")
        .sql("INSERT INTO registry.cases VALUES (103, TIMESTAMP '2025-06-01 09:00:00', 'open', 12.34, true, 'Hal')")
        .await
        .unwrap();
    // registry.notes: a delete (copy-on-write)
    run(&lake, "DELETE FROM registry.notes WHERE id = 2").await;

    // Second backup (incremental).
    lake.backups().create(&repo).await.unwrap();

    let v = lake.verify().await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(lake.audit().verify().await.unwrap().is_empty());
    assert!(
        lake_dir
            .join("data/default/permits/_log/00000000000000000010.checkpoint.json")
            .exists(),
        "the optimize was expected at version 10, with a checkpoint"
    );
    drop(lake);
    // The rotation's lock file is empty and not part of the format.
    std::fs::remove_file(lake_dir.join("master.lock")).unwrap();
    // What git keeps: no empty folders.
    remove_empty_dirs(root);
}

/// Remove every empty folder below `dir` (git cannot hold them, so the committed fixtures have none).
fn remove_empty_dirs(dir: &Path) -> bool {
    let mut empty = true;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            if remove_empty_dirs(&e.path()) {
                std::fs::remove_dir(e.path()).unwrap();
            } else {
                empty = false;
            }
        } else {
            empty = false;
        }
    }
    empty
}

/// Writes a new fixture generation. Never re-run to make `lake_v1_*` pass: see fixtures/README.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes fixtures: STRATALAKE_WRITE_FIXTURES=1, see fixtures/README.md"]
async fn write_fixtures() {
    if std::env::var("STRATALAKE_WRITE_FIXTURES").as_deref() != Ok("1") {
        eprintln!("set STRATALAKE_WRITE_FIXTURES=1 to write fixtures (fixtures/README.md)");
        return;
    }
    let root = std::env::var_os("STRATALAKE_FIXTURES_DIR").map_or_else(fixtures_dir, PathBuf::from);
    std::fs::create_dir_all(&root).unwrap();
    generate(&root).await;
}

// ---------------------------------------------------------------------------------------------
// Compatibility
// ---------------------------------------------------------------------------------------------

/// A private copy of the committed fixtures: the tests never touch `fixtures/` itself.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn copy() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["lake-v1", "backup-v1"] {
            let from = fixtures_dir().join(name);
            assert!(from.is_dir(), "{} is missing (fixtures/README.md)", from.display());
            copy_dir(&from, &dir.path().join(name));
        }
        // git keeps no file modes beyond the executable bit; the key file must be 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let keys = dir.path().join("lake-v1/master.keys");
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Self { dir }
    }

    fn lake_dir(&self) -> PathBuf {
        self.dir.path().join("lake-v1")
    }

    fn repo_dir(&self) -> PathBuf {
        self.dir.path().join("backup-v1")
    }

    async fn open(&self) -> Handle {
        open_lake(&self.lake_dir()).await
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

async fn q(lake: &Handle, principal: &str, sql: &str) -> String {
    let rows = lake
        .session(principal)
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{principal}: {sql}: {e}"));
    csv(&rows)
}

// What the fixtures hold. Every value below was read from them once; a build that reads
// anything else has changed the format (fixtures/README.md).

/// `default.permits` at its latest version (11).
const PERMITS: &str = "SELECT id, region, issued, fee, settled, owner, updated_at, note FROM permits ORDER BY id";
const PERMITS_ROWS: &str = "\
1,north,2025-01-05,120.50,true,Ada,2025-01-05T09:30:00,
2,south,2025-01-17,90.00,true,Bo,2025-01-17T14:00:00,
3,north,2025-02-02,1999.99,,,2025-02-02T08:15:30,
4,south,,,true,Cy,,
5,east,2025-03-10,45.25,true,Di,2025-03-10T11:11:11,
7,east,2025-04-01,300.00,false,Flo,2025-04-01T00:00:00,late
8,north,2025-05-20,64.00,true,,2025-05-20T07:07:07,after checkpoint
";
/// Aggregates over every column (some answered from file statistics, some by reading).
const PERMITS_SUMS: &str = "SELECT count(*), sum(id), sum(fee), count(owner), min(issued), max(updated_at), \
     sum(CASE WHEN settled THEN 1 ELSE 0 END), count(note), max(owner), min(region) FROM permits";
const PERMITS_SUMS_ROW: &str = "7,30,2619.74,5,2025-01-05,2025-05-20T07:07:07,5,2,Flo,east\n";
/// `default.permits` at version 2, before the update, the delete, the new column and the rename.
const PERMITS_V2: &str =
    "SELECT id, region, issued, fee, paid, owner, updated_at FROM permits VERSION AS OF 2 ORDER BY id";
const PERMITS_V2_ROWS: &str = "\
1,north,2025-01-05,120.50,true,Ada,2025-01-05T09:30:00
2,south,2025-01-17,80.00,false,Bo,2025-01-17T14:00:00
3,north,2025-02-02,1999.99,,,2025-02-02T08:15:30
4,south,,,true,Cy,
5,east,2025-03-10,45.25,true,Di,2025-03-10T11:11:11
6,east,2025-03-11,0.01,false,Ed,2025-03-11T23:59:59
";
/// Version 9: after the rename, before the optimize and its checkpoint (replayed from version 0).
const PERMITS_V9: &str = "SELECT id, fee, settled, note FROM permits VERSION AS OF 9 ORDER BY id";
const PERMITS_V9_ROWS: &str = "\
1,120.50,true,
2,90.00,true,
3,1999.99,,
4,,true,
5,45.25,true,
7,300.00,false,late
";
const CASES: &str = "SELECT case_id, opened, status, amount, urgent, citizen FROM registry.cases ORDER BY case_id";
const CASES_ROWS: &str = "\
100,2024-11-30T10:00:00,open,500.00,false,Fay
101,2025-01-02T12:30:00,closed,75.50,false,Gus
102,2025-02-14T16:45:00,closed,,,
103,2025-06-01T09:00:00,open,12.34,true,Hal
";
const CASES_SUMS: &str =
    "SELECT count(*), sum(case_id), sum(amount), min(opened), max(opened), count(citizen) FROM registry.cases";
const CASES_SUMS_ROW: &str = "4,406,587.84,2024-11-30T10:00:00,2025-06-01T09:00:00,3\n";
/// `registry.cases` at version 1 (case_id still INT).
const CASES_V1: &str = "SELECT * FROM registry.cases VERSION AS OF 1 ORDER BY case_id";
const CASES_V1_ROWS: &str = "\
100,2024-11-30T10:00:00,open,500.00,false,Fay
101,2025-01-02T12:30:00,open,75.50,true,Gus
102,2025-02-14T16:45:00,closed,,,
";
const NOTES: &str = "SELECT id, body, score FROM registry.notes ORDER BY id";
const NOTES_ROWS: &str = "1,first note,1.5\n3,\"comma, inside\",\n";

/// What `ana` (role `regional`, region north, cleared for internal) sees: the row filter keeps
/// north, `fee` is bucketed to hundreds by her mask, `owner` (secret) shows through the
/// classification policy PARTIAL(1).
const ANA_PERMITS: &str = "SELECT * FROM permits ORDER BY id";
const ANA_PERMITS_ROWS: &str = "\
1,north,2025-01-05,100.00,true,**a,2025-01-05T09:30:00,
3,north,2025-02-02,1900.00,,,2025-02-02T08:15:30,
8,north,2025-05-20,0.00,true,,2025-05-20T07:07:07,after checkpoint
";
/// What the service `etl` (cleared for confidential) sees: `citizen` as HMAC pseudonyms under a
/// key derived from the fixture's public master key.
const ETL_CASES: &str = "SELECT * FROM registry.cases ORDER BY case_id";
const ETL_CASES_ROWS: &str = "\
100,2024-11-30T10:00:00,open,500.00,false,33ec4dcaa436480a2711e53b47c69fec
101,2025-01-02T12:30:00,closed,75.50,false,4100c34ef7b647be01764189f5518486
102,2025-02-14T16:45:00,closed,,,
103,2025-06-01T09:00:00,open,12.34,true,35b7b0b2b22b0ff46363b35a33ea3be7
";

/// The two backups of `backup-v1`: id and the tables with the version each holds.
const BACKUPS: [(&str, [&str; 3]); 2] = [
    (
        "20261203T182411388Z-b22f7c",
        ["default.permits@2", "registry.cases@1", "registry.notes@1"],
    ),
    (
        "20261203T182411766Z-2c3b32",
        ["default.permits@11", "registry.cases@5", "registry.notes@2"],
    ),
];

async fn operations(lake: &Handle, table: &str) -> Vec<String> {
    let mut h = lake.history(table, None).await.unwrap();
    h.reverse();
    h.into_iter().map(|e| e.operation).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lake_v1_reads_as_written() {
    let f = Fixtures::copy();
    let lake = f.open().await;

    // The audit chain first, before this test's own statements extend it.
    assert_eq!(lake.audit().verify().await.unwrap(), Vec::<String>::new());
    let audit = lake.audit().records().await.unwrap();
    assert_eq!(audit.len(), 40);
    assert_eq!(
        (audit[0].event.kind.as_str(), audit[0].event.principal.as_str()),
        ("access", ADMIN)
    );
    assert_eq!(audit[37].event.principal, "etl");
    assert_eq!(audit[39].event.kind, "backup");

    let report = lake.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (report.tables, report.versions, report.files, report.rows),
        (3, 21, 8, 13)
    );

    assert_eq!(lake.namespaces().await.unwrap(), vec!["default", "registry"]);
    assert_eq!(lake.tables("default").await.unwrap(), vec!["permits"]);
    assert_eq!(lake.tables("registry").await.unwrap(), vec!["cases", "notes"]);

    for (sql, want) in [
        (PERMITS, PERMITS_ROWS),
        (PERMITS_SUMS, PERMITS_SUMS_ROW),
        (PERMITS_V2, PERMITS_V2_ROWS),
        (PERMITS_V9, PERMITS_V9_ROWS),
        (CASES, CASES_ROWS),
        (CASES_SUMS, CASES_SUMS_ROW),
        (CASES_V1, CASES_V1_ROWS),
        (NOTES, NOTES_ROWS),
    ] {
        assert_eq!(q(&lake, ADMIN, sql).await, want, "{sql}");
    }
    assert_eq!(
        q(&lake, ADMIN, "SELECT count(*) FROM permits VERSION AS OF 4").await,
        "5\n"
    );
    // Time travel by timestamp lands on the version committed at that time.
    let history = lake.history("permits", None).await.unwrap();
    let v2 = history.iter().find(|h| h.version == 2).unwrap().timestamp_ms;
    let ts = stratalake::arrow::temporal_conversions::timestamp_ms_to_datetime(v2)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3f");
    assert_eq!(
        q(
            &lake,
            ADMIN,
            &format!("SELECT id, region, issued, fee, paid, owner, updated_at FROM permits TIMESTAMP AS OF '{ts}' ORDER BY id")
        )
        .await,
        PERMITS_V2_ROWS
    );

    // The history, commit by commit.
    assert_eq!(
        operations(&lake, "permits").await,
        [
            "CREATE TABLE",
            "APPEND",
            "APPEND",
            "UPDATE",
            "DELETE",
            "ADD COLUMN",
            "APPEND",
            "ADD CONSTRAINT",
            "REKEY",
            "RENAME COLUMN",
            "OPTIMIZE",
            "APPEND"
        ]
    );
    assert_eq!(
        operations(&lake, "registry.cases").await,
        [
            "CREATE TABLE",
            "APPEND",
            "REKEY",
            "UPDATE",
            "ALTER COLUMN TYPE",
            "APPEND"
        ]
    );
    assert_eq!(
        operations(&lake, "registry.notes").await,
        ["CREATE TABLE", "APPEND", "DELETE"]
    );
    assert_eq!(history[0].principal, ADMIN);
    assert_eq!(lake.history("registry.cases", None).await.unwrap()[0].principal, "etl");

    // Schemas: types, classifications, the rename's alias, the constraint, the widened type.
    let permits = lake.table("permits").await.unwrap();
    let snap = permits.snapshot().await.unwrap();
    assert_eq!(snap.version, 11);
    // Types compared as values: the log holds Arrow's display form of the day it was written
    // (`Timestamp(ns)`), which later Arrow versions must still parse.
    use stratalake::arrow::datatypes::{DataType, TimeUnit};
    let cols: Vec<(&str, &DataType, &str, bool)> = snap
        .metadata
        .schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.data_type, c.classification.as_str(), c.nullable))
        .collect();
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    assert_eq!(
        cols,
        [
            ("id", &DataType::Int64, "public", false),
            ("region", &DataType::Utf8, "public", false),
            ("issued", &DataType::Date32, "internal", true),
            ("fee", &DataType::Decimal128(12, 2), "confidential", true),
            ("settled", &DataType::Boolean, "internal", true),
            ("owner", &DataType::Utf8, "secret", true),
            ("updated_at", &ts, "internal", true),
            ("note", &DataType::Utf8, "internal", true),
        ]
    );
    let settled = &snap.metadata.schema.columns[4];
    assert_eq!(settled.aliases, vec!["paid"]);
    assert_eq!(snap.files.len(), 4);
    let constraints = format!("{:?}", snap.metadata.constraints);
    assert!(
        constraints.contains("fee_positive") && constraints.contains("fee >= 0"),
        "{constraints}"
    );
    let cases = lake.table("registry.cases").await.unwrap().snapshot().await.unwrap();
    assert_eq!(cases.metadata.schema.columns[0].data_type, DataType::Int64);

    // The checkpoint at version 10 is read, and says what replaying the log says.
    let log = f.lake_dir().join("data/default/permits/_log");
    assert_eq!(
        std::fs::read_to_string(log.join("_last_checkpoint")).unwrap(),
        r#"{"version":10}"#
    );
    std::fs::remove_file(log.join("_last_checkpoint")).unwrap();
    std::fs::remove_file(log.join("00000000000000000010.checkpoint.json")).unwrap();
    let replayed = f.open().await.table("permits").await.unwrap().snapshot().await.unwrap();
    assert_eq!(replayed, snap);

    // Four levels, five master key versions: confidential was rotated, every live file re-keyed.
    let keys: Vec<(String, bool, u64)> = lake
        .keys()
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id.to_string(), k.current, k.live_files))
        .collect();
    let want = [
        ("public/v1", true, 16),
        ("internal/v1", true, 8),
        ("confidential/v1", false, 0),
        ("confidential/v2", true, 7),
        ("secret/v1", true, 7),
    ];
    let want: Vec<(String, bool, u64)> = want.iter().map(|(k, c, n)| (k.to_string(), *c, *n)).collect();
    assert_eq!(keys, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lake_v1_policies_still_apply() {
    let f = Fixtures::copy();
    let lake = f.open().await;
    let access = lake.access().state().await.unwrap();
    assert_eq!(access.principals.keys().collect::<Vec<_>>(), ["admin", "ana", "etl"]);
    assert_eq!(access.roles.keys().collect::<Vec<_>>(), ["lake_admins", "regional"]);
    assert_eq!(access.level_masks.len(), 1);

    assert_eq!(q(&lake, "ana", ANA_PERMITS).await, ANA_PERMITS_ROWS);
    // aggregates see the filtered, masked rows only
    assert_eq!(
        q(&lake, "ana", "SELECT count(*), sum(fee), count(owner) FROM permits").await,
        "3,2000.00,1\n"
    );
    // the row filter applies to time travel too
    assert_eq!(
        q(&lake, "ana", "SELECT id FROM permits VERSION AS OF 2 ORDER BY id").await,
        "1\n3\n"
    );
    assert_eq!(q(&lake, "etl", ETL_CASES).await, ETL_CASES_ROWS);
    // the pseudonyms are equal for equal values: they still group
    assert_eq!(
        q(&lake, "etl", "SELECT count(DISTINCT citizen) FROM registry.cases").await,
        "3\n"
    );

    let denied = |who: &'static str, sql: &'static str, why: &'static str| {
        let lake = lake.clone();
        async move {
            let e = lake.session(who).sql(sql).await.unwrap_err().to_string();
            assert!(e.contains(why), "{who}: {sql}: {e}");
        }
    };
    denied("ana", "SELECT * FROM registry.cases", "no SELECT privilege").await;
    denied("etl", "SELECT * FROM permits", "no SELECT privilege").await;
    // granted, then revoked
    denied("etl", "SELECT * FROM registry.notes", "no SELECT privilege").await;
    // the row filter and the mask forbid rewrites; ana holds no INSERT anyway
    denied("ana", "DELETE FROM permits WHERE id = 1", "").await;
    denied("mallory", "SELECT * FROM permits", "not a principal").await;
    // the dropped table is gone
    denied(ADMIN, "SELECT * FROM registry.scratch", "").await;
    assert_eq!(q(&lake, ADMIN, "SELECT count(*) FROM permits").await, "7\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_v1_lists_verifies_and_restores() {
    let f = Fixtures::copy();
    let lake = f.open().await;
    let repo = lake
        .backups()
        .open(f.repo_dir().to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let listed: Vec<(String, Vec<String>, String)> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b.tables, b.status))
        .collect();
    let want: Vec<(String, Vec<String>, String)> = BACKUPS
        .iter()
        .map(|(id, tables)| {
            (
                id.to_string(),
                tables.iter().map(|t| t.to_string()).collect(),
                "ok".into(),
            )
        })
        .collect();
    assert_eq!(listed, want);
    let report = repo.verify(true, &|_| {}).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.backups, 2);
    // every data object read back: 13 distinct files, 49 939 bytes
    let data: u64 = repo
        .store()
        .list("data")
        .await
        .unwrap()
        .iter()
        .map(|(_, m)| m.size)
        .sum();
    assert_eq!(data, 49_939);
    assert!(report.bytes_read >= data);

    // The latest backup restored into a new folder with a copy of the keys: the same lake.
    let target = f.dir.path().join("restored");
    let restored = restore_target(&target, &f.lake_dir()).await;
    let (first, latest) = (BACKUPS[0].0, BACKUPS[1].0);
    let s = restored.backups().restore(&repo, latest).await.unwrap();
    let tables: Vec<(String, u64, u64)> = s.tables.iter().map(|t| (t.table.clone(), t.version, t.rows)).collect();
    assert_eq!(
        tables,
        [
            ("default.permits".to_string(), 11, 7),
            ("registry.cases".to_string(), 5, 4),
            ("registry.notes".to_string(), 2, 2)
        ]
    );
    for (sql, want) in [
        (PERMITS, PERMITS_ROWS),
        (PERMITS_SUMS, PERMITS_SUMS_ROW),
        (CASES, CASES_ROWS),
        (CASES_SUMS, CASES_SUMS_ROW),
        (NOTES, NOTES_ROWS),
    ] {
        // (Not time travel: a restore writes the whole log but copies only the files of the
        // version it restores; older versions come back through `RestoreOptions::version`.)
        assert_eq!(q(&restored, ADMIN, sql).await, want, "restored: {sql}");
    }
    // with its principals and policies
    assert_eq!(q(&restored, "ana", ANA_PERMITS).await, ANA_PERMITS_ROWS);
    assert_eq!(q(&restored, "etl", ETL_CASES).await, ETL_CASES_ROWS);
    let v = restored.verify().await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!((v.tables, v.files, v.rows), (3, 8, 13));

    // The first backup's permits (version 2, before the key rotation) under a new name.
    let opts = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        rename: Some(TableIdent::new("default", "permits_b1")),
        ..Default::default()
    };
    let s = restored.backups().restore(&repo, first).options(opts).await.unwrap();
    assert_eq!((s.tables[0].version, s.tables[0].rows), (2, 6));
    assert_eq!(
        q(
            &restored,
            ADMIN,
            "SELECT id, region, issued, fee, paid, owner, updated_at FROM permits_b1 ORDER BY id"
        )
        .await,
        PERMITS_V2_ROWS
    );
    // An older version out of the latest backup: after the delete (4), before the new column.
    let opts = RestoreOptions {
        table: Some(TableIdent::new("default", "permits")),
        rename: Some(TableIdent::new("default", "permits_v4")),
        version: Some(4),
        ..Default::default()
    };
    restored.backups().restore(&repo, latest).options(opts).await.unwrap();
    assert_eq!(
        q(&restored, ADMIN, "SELECT id, fee, paid FROM permits_v4 ORDER BY id").await,
        "1,120.50,true\n2,90.00,true\n3,1999.99,\n4,,true\n5,45.25,true\n"
    );
    // the row filter and mask came with it
    assert_eq!(
        q(&restored, "ana", "SELECT id, fee FROM permits_b1 ORDER BY id").await,
        "1,100.00\n3,1900.00\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lake_v1_takes_new_commits() {
    let f = Fixtures::copy();
    let lake = f.open().await;
    run(
        &lake,
        "INSERT INTO permits VALUES (9, 'north', DATE '2025-07-01', 150.00, false, 'Gil', TIMESTAMP '2025-07-01 12:00:00', 'new')",
    )
    .await;
    // the old constraint still holds
    let e = lake
        .sql("INSERT INTO permits VALUES (10, 'north', NULL, -1.00, NULL, NULL, NULL, NULL)")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("fee_positive"), "{e}");
    lake.session("etl")
        .sql("INSERT INTO registry.cases VALUES (104, TIMESTAMP '2025-07-02 08:00:00', 'open', 1.00, false, 'Ivy')")
        .await
        .unwrap();
    run(
        &lake,
        "ALTER TABLE registry.notes ADD COLUMN tag VARCHAR CLASSIFICATION public",
    )
    .await;
    run(&lake, "INSERT INTO registry.notes VALUES (4, 'fourth', 4.0, 'x')").await;
    lake.optimize("permits").await.unwrap();
    let rotated = lake.keys().rotate(Some("secret")).await.unwrap();
    assert_eq!(rotated.new_keys[0].to_string(), "secret/v2");

    // Read back through a fresh handle, as another process would.
    let lake = f.open().await;
    assert_eq!(
        operations(&lake, "permits").await[11..],
        ["APPEND", "APPEND", "OPTIMIZE", "REKEY"]
    );
    assert_eq!(
        q(&lake, ADMIN, PERMITS).await,
        format!("{PERMITS_ROWS}9,north,2025-07-01,150.00,false,Gil,2025-07-01T12:00:00,new\n")
    );
    assert_eq!(q(&lake, ADMIN, PERMITS_V2).await, PERMITS_V2_ROWS);
    assert_eq!(
        q(&lake, "ana", "SELECT id, fee, owner FROM permits ORDER BY id").await,
        "1,100.00,**a\n3,1900.00,\n8,0.00,\n9,100.00,**l\n"
    );
    assert_eq!(
        q(&lake, ADMIN, "SELECT count(*), sum(case_id) FROM registry.cases").await,
        "5,510\n"
    );
    assert_eq!(
        q(
            &lake,
            ADMIN,
            "SELECT id, body, score, tag FROM registry.notes ORDER BY id"
        )
        .await,
        "1,first note,1.5,\n3,\"comma, inside\",,\n4,fourth,4.0,x\n"
    );
    let v = lake.verify().await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(lake.audit().verify().await.unwrap().is_empty());

    // The old repository takes a new, incremental backup of the extended lake.
    let repo = lake
        .backups()
        .open(f.repo_dir().to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap();
    let m = lake.backups().create(&repo).await.unwrap();
    assert!(m.totals.new_files < m.totals.files, "{:?}", m.totals);
    let report = repo.verify(true, &|_| {}).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.backups, 3);
}
