//! End-to-end tests of the `stratalake` binary on real folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Lake {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stratalake"));
    c.env_remove("STRATALAKE_LAKE").env("USER", "tester");
    c
}

fn run(lake: &Path, args: &[&str]) -> Output {
    bin().arg("--lake").arg(lake).args(args).output().unwrap()
}

fn ok(lake: &Path, args: &[&str]) -> String {
    let o = run(lake, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(lake: &Path, args: &[&str]) -> String {
    let o = run(lake, args);
    assert!(
        !o.status.success(),
        "{args:?} should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(e.starts_with("error: "), "{e}");
    e
}

fn new_lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lake");
    let out = bin().args(["init"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Lake { _dir: dir, path }
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn version(lake: &Path, table: &str) -> String {
    let out = ok(lake, &["--format", "json", "table", "list"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .find(|r| format!("{}.{}", r["namespace"].as_str().unwrap(), r["table"].as_str().unwrap()) == table)
        .unwrap()["version"]
        .as_u64()
        .unwrap()
        .to_string()
}

#[test]
fn init_creates_config_and_private_key_file() {
    let l = new_lake();
    assert!(l.path.join("stratalake.toml").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(l.path.join("master.keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // a key file others can read is refused
        std::fs::set_permissions(l.path.join("master.keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = fails(&l.path, &["namespace", "list"]);
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(l.path.join("master.keys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let e = String::from_utf8(bin().arg("init").arg(&l.path).output().unwrap().stderr).unwrap();
    assert!(e.contains("already exists"), "{e}");
    let e = fails(&l.path.join("nope"), &["table", "list"]);
    assert!(e.contains("stratalake init"), "{e}");
}

#[test]
fn tables_ingest_sql_history_verify() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    ok(&l.path, &["namespace", "create", "gov"]);
    ok(
        &l.path,
        &[
            "table",
            "create",
            "gov.permits",
            "--columns",
            "id BIGINT NOT NULL CLASSIFICATION public, region VARCHAR CLASSIFICATION public, owner VARCHAR CLASSIFICATION confidential, fee DOUBLE",
            "--partition-by",
            "region",
        ],
    );
    let d = ok(&l.path, &["table", "describe", "gov.permits"]);
    assert!(
        d.contains("confidential") && d.contains("internal") && d.contains("region"),
        "{d}"
    );

    let csv = write(
        dir,
        "p.csv",
        b"id,region,owner,fee\n1,north,Ada,10.5\n2,south,Grace,20\n3,north,,5\n",
    );
    let out = ok(&l.path, &["ingest", "gov.permits", csv.to_str().unwrap()]);
    assert!(out.contains("3 rows"), "{out}");
    let json = write(
        dir,
        "p.jsonl",
        b"{\"id\": 4, \"region\": \"east\", \"owner\": \"Alan\", \"fee\": 1.0}\n\n{\"id\": 5, \"region\": \"east\"}\n",
    );
    ok(&l.path, &["ingest", "gov.permits", json.to_str().unwrap()]);

    let out = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT region, count(*) AS n FROM gov.permits GROUP BY region ORDER BY region",
        ],
    );
    assert_eq!(out, "region,n\neast,2\nnorth,2\nsouth,1\n");
    let out = ok(
        &l.path,
        &["--format", "json", "sql", "-c", "SELECT count(*) AS n FROM gov.permits"],
    );
    assert_eq!(out.trim(), "[{\"n\":5}]");
    // time travel, both forms
    let out = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "--as-of",
            "1",
            "-c",
            "SELECT count(*) AS n FROM gov.permits",
        ],
    );
    assert_eq!(out, "n\n3\n");
    let out = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT count(*) AS n FROM gov.permits VERSION AS OF 1",
        ],
    );
    assert_eq!(out, "n\n3\n");
    // -f and INSERT
    let f = write(
        dir,
        "s.sql",
        b"INSERT INTO gov.permits VALUES (6, 'west', 'Kim', 2.5);\nSELECT count(*) AS n FROM gov.permits;\n",
    );
    let out = ok(&l.path, &["--format", "csv", "sql", "-f", f.to_str().unwrap()]);
    assert!(out.ends_with("n\n6\n"), "{out}");

    ok(&l.path, &["table", "classify", "gov.permits", "fee", "secret"]);
    let d = ok(&l.path, &["--format", "csv", "table", "describe", "gov.permits"]);
    assert!(d.contains("fee,Float64,yes,secret"), "{d}");

    let h = ok(&l.path, &["--format", "json", "table", "history", "gov.permits"]);
    let h: Vec<serde_json::Value> = serde_json::from_str(&h).unwrap();
    let ops: Vec<&str> = h.iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["CLASSIFY", "APPEND", "APPEND", "APPEND", "CREATE TABLE"]);
    assert_eq!(h[1]["rows_added"], 1);
    assert_eq!(h[0]["principal"], "tester");

    let v = ok(&l.path, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
    ok(&l.path, &["table", "drop", "gov.permits"]);
    let t = ok(&l.path, &["--format", "csv", "table", "list"]);
    assert_eq!(t, "namespace,table,version,files,rows,bytes\n");
}

#[test]
fn bad_input_is_rejected_whole_with_file_line_and_column() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    ok(
        &l.path,
        &[
            "table",
            "create",
            "t",
            "--columns",
            "id INT NOT NULL, name VARCHAR, amount DOUBLE",
        ],
    );
    let good = write(dir, "good.csv", b"id,name,amount\n1,a,1.5\n");
    ok(&l.path, &["ingest", "t", good.to_str().unwrap()]);
    let before = version(&l.path, "default.t");

    let cases: Vec<(&str, &[u8], &[&str])> = vec![
        (
            "wrong_type.csv",
            b"id,name,amount\n2,b,2.0\n3,c,lots\n",
            &["wrong_type.csv", "line 3, column \"amount\"", "not a number"],
        ),
        (
            "null.csv",
            b"id,name,amount\n2,b,2.0\n,c,3.0\n",
            &["null.csv", "line 3", "\"id\"", "NOT NULL"],
        ),
        (
            "extra.csv",
            b"id,name,amount,extra\n2,b,2.0,x\n",
            &["extra.csv", "line 1", "\"extra\""],
        ),
        (
            "missing.csv",
            b"id,name\n2,b\n",
            &["missing.csv", "line 1", "\"amount\"", "missing"],
        ),
        (
            "utf8.csv",
            b"id,name,amount\n2,b\xff\xfe,2.0\n",
            &["utf8.csv", "line 2, column \"name\": invalid UTF-8"],
        ),
        (
            "ragged.csv",
            b"id,name,amount\n2,b,2.0\n2,b,2.0,9\n",
            &["ragged.csv", "line 3: a different number of fields"],
        ),
        (
            "bad.jsonl",
            b"{\"id\": 2, \"name\": \"b\"}\n{\"id\": \"x\"}\n",
            &["bad.jsonl", "line 2"],
        ),
        (
            "extra.jsonl",
            b"{\"id\": 2, \"nope\": 1}\n",
            &["extra.jsonl", "line 1", "nope"],
        ),
        (
            "nulls.jsonl",
            b"{\"id\": 2}\n{\"name\": \"z\"}\n",
            &["nulls.jsonl", "line 2", "\"id\""],
        ),
    ];
    for (name, content, expect) in cases {
        let f = write(dir, name, content);
        // a good file first: the whole ingest must still commit nothing
        let e = fails(&l.path, &["ingest", "t", good.to_str().unwrap(), f.to_str().unwrap()]);
        for x in expect {
            assert!(e.contains(x), "{name}: {x:?} missing in: {e}");
        }
        assert!(e.contains("nothing was committed"), "{e}");
        assert_eq!(version(&l.path, "default.t"), before, "{name}");
    }
    let out = ok(
        &l.path,
        &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"],
    );
    assert_eq!(out, "n\n1\n");
    // no data files of rejected ingests remain
    let files = walk(&l.path.join("data/default/t/data"));
    assert_eq!(files.len(), 1, "{files:?}");
    let e = fails(&l.path, &["sql", "-c", "SELEC 1"]);
    assert!(e.contains("SELEC"), "{e}");
    let e = fails(&l.path, &["ingest", "nosuch", good.to_str().unwrap()]);
    assert!(e.contains("default.nosuch does not exist"), "{e}");
}

#[test]
fn ingest_rounds_decimals_as_sql_does_and_reads_the_csv_people_have() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    ok(
        &l.path,
        &[
            "table",
            "create",
            "fees",
            "--columns",
            "id INT NOT NULL, fee DECIMAL(10,2), paid DATE, at TIMESTAMP, note VARCHAR",
        ],
    );
    let sum = |l: &Lake| {
        ok(
            &l.path,
            &["--format", "csv", "sql", "-c", "SELECT id, fee FROM fees ORDER BY id"],
        )
    };
    // more fractional digits than the scale: rounded half away from zero, as CAST does
    let csv = write(
        dir,
        "fees.csv",
        b"id,fee,paid,at,note\n1,1.509,,,\n2,1.999,,,\n3,-1.505,,,\n",
    );
    ok(&l.path, &["ingest", "fees", csv.to_str().unwrap()]);
    let json = write(
        dir,
        "fees.jsonl",
        b"{\"id\": 4, \"fee\": 2.345}\n{\"id\": 5, \"fee\": \"0.005\"}\n",
    );
    ok(&l.path, &["ingest", "fees", json.to_str().unwrap()]);
    assert_eq!(sum(&l), "id,fee\n1,1.51\n2,2.00\n3,-1.51\n4,2.35\n5,0.01\n");
    let cast = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT CAST('1.509' AS DECIMAL(10,2)) AS c",
        ],
    );
    assert_eq!(cast, "c\n1.51\n");
    // too many digits for the precision: an error with file, line and column, nothing committed
    let big = write(dir, "big.csv", b"id,fee,paid,at,note\n6,1.00,,,\n7,123456789.5,,,\n");
    let e = fails(&l.path, &["ingest", "fees", big.to_str().unwrap()]);
    assert!(
        e.contains("big.csv") && e.contains("line 3, column \"fee\"") && e.contains("more than DECIMAL(10, 2) holds"),
        "{e}"
    );
    let big = write(
        dir,
        "big.jsonl",
        b"{\"id\": 6, \"fee\": 1}\n{\"id\": 7, \"fee\": 123456789.5}\n",
    );
    let e = fails(&l.path, &["ingest", "fees", big.to_str().unwrap()]);
    assert!(e.contains("big.jsonl") && e.contains("line 2, column \"fee\""), "{e}");
    let e = fails(
        &l.path,
        &[
            "ingest",
            "fees",
            write(dir, "x.csv", b"id,fee,paid,at,note\n8,x1,,,\n").to_str().unwrap(),
        ],
    );
    assert!(
        e.contains("line 2, column \"fee\": the value is not a number") && !e.contains("x1"),
        "{e}"
    );

    // semicolons detected; a null text; day-first dates and timestamps
    let semi = write(
        dir,
        "semi.csv",
        b"id;fee;paid;at;note\n10;NA;24.12.2025;24.12.2025 18:30;\"a;b\"\n11;3.5;NA;NA;\n",
    );
    ok(
        &l.path,
        &[
            "ingest",
            "fees",
            semi.to_str().unwrap(),
            "--null",
            "NA",
            "--date-format",
            "%d.%m.%Y",
            "--timestamp-format",
            "%d.%m.%Y %H:%M",
        ],
    );
    let out = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT id, fee, paid, at, note, note IS NULL AS n FROM fees WHERE id >= 10 ORDER BY id",
        ],
    );
    assert_eq!(
        out,
        "id,fee,paid,at,note,n\n10,,2025-12-24,2025-12-24T18:30:00,a;b,false\n11,3.50,,,,false\n"
    );
    // a .tsv file, a tab given by name, no header line
    let tsv = write(dir, "t.tsv", b"id\tfee\tpaid\tat\tnote\n20\t1\t\t\t\n");
    ok(&l.path, &["ingest", "fees", tsv.to_str().unwrap()]);
    let txt = write(dir, "t.txt", b"21\t2\t\t\tx\n");
    ok(
        &l.path,
        &[
            "ingest",
            "fees",
            txt.to_str().unwrap(),
            "--input-format",
            "tsv",
            "--no-header",
        ],
    );
    let piped = write(dir, "p.csv", b"22|3|||y\n");
    ok(
        &l.path,
        &[
            "ingest",
            "fees",
            piped.to_str().unwrap(),
            "--delimiter",
            "|",
            "--no-header",
        ],
    );
    let out = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT count(*) AS n FROM fees WHERE id >= 20",
        ],
    );
    assert_eq!(out, "n\n3\n");
    let e = fails(
        &l.path,
        &["ingest", "fees", txt.to_str().unwrap(), "--input-format", "xlsx"],
    );
    assert!(e.contains("--input-format") && e.contains("tsv"), "{e}");
    let e = fails(&l.path, &["ingest", "fees", semi.to_str().unwrap(), "--delimiter", ","]);
    assert!(e.contains("is the delimiter right?"), "{e}");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e));
            } else {
                out.push(e);
            }
        }
    }
    out
}

#[test]
fn damage_and_swaps_are_detected() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    ok(
        &l.path,
        &[
            "table",
            "create",
            "t",
            "--columns",
            "id INT NOT NULL, region VARCHAR CLASSIFICATION public, v VARCHAR",
            "--partition-by",
            "region",
        ],
    );
    let csv = write(dir, "a.csv", b"id,region,v\n1,north,a\n2,south,b\n3,south,c\n");
    ok(&l.path, &["ingest", "t", csv.to_str().unwrap()]);
    let files = walk(&l.path.join("data/default/t/data"));
    assert_eq!(files.len(), 2);
    let north = files
        .iter()
        .find(|p| p.to_str().unwrap().contains("region=north"))
        .unwrap()
        .clone();
    let south = files
        .iter()
        .find(|p| p.to_str().unwrap().contains("region=south"))
        .unwrap()
        .clone();

    // two encrypted files swapped between partitions: the crc32 differs, and even with the
    // log's crc matched the AAD (bound to the path) would refuse
    let (a, b) = (std::fs::read(&north).unwrap(), std::fs::read(&south).unwrap());
    std::fs::write(&north, &b).unwrap();
    std::fs::write(&south, &a).unwrap();
    let o = run(&l.path, &["verify"]);
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("region=north") && out.contains("region=south"), "{out}");
    let e = fails(&l.path, &["sql", "-c", "SELECT * FROM t"]);
    assert!(
        e.contains("parquet") || e.contains("decrypt") || e.contains("checksum"),
        "{e}"
    );
    std::fs::write(&north, &a).unwrap();
    std::fs::write(&south, &b).unwrap();
    ok(&l.path, &["verify"]);

    // a flipped byte in a data file
    let mut d = a.clone();
    let mid = d.len() / 2;
    d[mid] ^= 0x40;
    std::fs::write(&north, &d).unwrap();
    let o = run(&l.path, &["verify"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("checksum mismatch"));
    std::fs::write(&north, &a).unwrap();

    // a flipped byte in a log file
    let log = l.path.join("data/default/t/_log/00000000000000000001.json");
    let orig = std::fs::read(&log).unwrap();
    let mut bad = orig.clone();
    let k = bad.len() - 10;
    bad[k] ^= 0x01;
    std::fs::write(&log, &bad).unwrap();
    let e = fails(&l.path, &["sql", "-c", "SELECT count(*) FROM t"]);
    assert!(e.contains("00000000000000000001.json") && e.contains("checksum"), "{e}");
    let o = run(&l.path, &["verify"]);
    assert_ne!(o.status.code(), Some(0));
    std::fs::write(&log, &orig).unwrap();
    ok(&l.path, &["verify"]);
}

#[test]
fn demo_runs_on_a_fresh_default_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = ok(&lake, &["demo", "--rows", "2000"]);
    assert!(out.contains("refused: Parquet error"), "{out}");
    assert!(out.contains("0 problem(s)"), "{out}");
    assert!(out.contains("rows_at_version_1"), "{out}");
    // the lake stays usable
    let n = ok(
        &lake,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT count(*) AS n FROM city.building_permits",
        ],
    );
    assert_eq!(n, "n\n2001\n");
}

#[test]
fn sql_shell_reads_statements_from_stdin() {
    use std::io::Write;
    let l = new_lake();
    let mut child = bin()
        .arg("--lake")
        .arg(&l.path)
        .arg("sql")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"CREATE TABLE t (x INT);\nINSERT INTO t\n  VALUES (41), (1);\nSELECT sum(x) AS total FROM t;\nSELECT nope FROM t;\n\\q\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // a script piped in: no banner or prompts, statements across lines, and the first failing
    // statement stops it with its line and a non-zero exit code
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.starts_with("table default.t created"), "{stdout}");
    assert!(
        stdout.contains("| 42    |") && !stdout.contains("stratalake>"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("error: <stdin>:5: ") && stderr.contains("nope"),
        "{stderr}"
    );
}

/// Run `stratalake sql` on `script` through stdin (or as the arguments say).
fn sql_stdin(lake: &Path, args: &[&str], script: &str) -> Output {
    use std::io::Write;
    let mut child = bin()
        .arg("--lake")
        .arg(lake)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn scripts_split_statements_stop_at_errors_and_stream_results() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    // ';' inside strings and comments does not end a statement; a comment after ';' does not wait
    let script = "CREATE TABLE t (x INT, s VARCHAR); -- a table\n\
                  INSERT INTO t VALUES (1, 'a;b'), (2, ''), /* ; */ (3, NULL);\n\
                  SELECT x, s, s IS NULL AS n FROM t ORDER BY x; -- done\n";
    let out = sql_stdin(&l.path, &["--format", "csv", "sql"], script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.ends_with("x,s,n\n1,a;b,false\n2,,false\n3,,true\n"), "{stdout}");
    // -f FILE: the failing statement's file and line; the rest does not run
    let f = write(
        dir,
        "s.sql",
        b"INSERT INTO t VALUES (4, 'd');\n\nSELECT nope\n  FROM t;\nINSERT INTO t VALUES (5, 'e');\n",
    );
    let o = run(&l.path, &["sql", "-f", f.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        e.starts_with(&format!("error: {}:3: ", f.display())) && e.contains("nope"),
        "{e}"
    );
    let count = |l: &Lake| {
        ok(
            &l.path,
            &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"],
        )
    };
    assert_eq!(count(&l), "n\n4\n");
    // --continue-on-error runs the rest, and still fails
    let o = run(&l.path, &["sql", "--continue-on-error", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(count(&l), "n\n6\n");
    // -f - reads stdin
    let out = sql_stdin(
        &l.path,
        &["--format", "csv", "sql", "-f", "-"],
        "SELECT max(x) AS m FROM t;",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "m\n5\n");
    // aligned tables: NULL is not the empty string; long results are cut with a note
    let out = ok(
        &l.path,
        &["sql", "-c", "SELECT x, s FROM t WHERE x IN (2, 3) ORDER BY x"],
    );
    assert!(out.contains("| 2 |      |") && out.contains("| 3 | NULL |"), "{out}");
    let out = ok(&l.path, &["sql", "--maxrows", "2", "-c", "SELECT x FROM t ORDER BY x"]);
    assert!(
        out.contains("(6 rows, the first 2 shown") && !out.contains("| 3 |"),
        "{out}"
    );
    // one JSON document for several statements; NDJSON a row per line, NULLs present
    let out = ok(
        &l.path,
        &[
            "--format",
            "json",
            "sql",
            "-c",
            "SELECT x FROM t WHERE x < 3 ORDER BY x; SELECT count(*) AS n FROM t",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!([[{"x": 1}, {"x": 2}], [{"n": 6}]]));
    let out = ok(
        &l.path,
        &[
            "--format",
            "ndjson",
            "sql",
            "-c",
            "SELECT x, s FROM t WHERE x >= 3 ORDER BY x",
        ],
    );
    assert_eq!(out.lines().next().unwrap(), r#"{"x":3,"s":null}"#, "{out}");
    // a reader that goes away early: no panic, exit 0
    let mut child = bin()
        .arg("--lake")
        .arg(&l.path)
        .args([
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT value FROM generate_series(1, 2000000)",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        stdout.read_exact(&mut first).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !e.contains("panicked"), "{:?} {e}", o.status);
}

#[test]
fn lake_on_an_s3_compatible_store() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh");
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let url = format!("s3://{bucket}/cli-{}", std::process::id());
    let out = bin()
        .arg("init")
        .arg(&lake)
        .args([
            "--store",
            &url,
            "--store-option",
            &format!("endpoint={endpoint}"),
            "--store-option",
            "allow_http=true",
        ])
        .args(["--store-option", "region=us-east-1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = std::fs::read_to_string(lake.join("stratalake.toml")).unwrap();
    assert!(toml.contains(&url) && !toml.contains("secret_access_key"), "{toml}");
    let csv = write(dir.path(), "a.csv", b"id,name\n1,a\n2,b\n");
    ok(&lake, &["ingest", "--create", "t", csv.to_str().unwrap()]);
    ok(&lake, &["ingest", "t", csv.to_str().unwrap()]);
    let n = ok(&lake, &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"]);
    assert_eq!(n, "n\n4\n");
    assert!(ok(&lake, &["verify"]).contains("no problems found"));
    // nothing of the table is on local disk
    assert!(!lake.join("data").exists());
}

#[test]
fn whole_lake_at_an_s3_url() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh");
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/urllake-{}", std::process::id());
    let keys = dir.path().join("lake.keys");
    let s3 = |args: &[&str]| {
        let o = bin()
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("STRATALAKE_KEY_FILE", &keys)
            .args(["--lake", &url])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (okk, _, err) = s3(&["init"]);
    assert!(!okk && err.contains("--key-file"), "{err}");
    let (okk, out, err) = s3(&["init", "--key-file", keys.to_str().unwrap()]);
    assert!(okk, "{err}");
    assert!(out.contains("STRATALAKE_KEY_FILE"), "{out}");
    let (okk, _, err) = s3(&[
        "sql",
        "-c",
        "CREATE TABLE t (x INT NOT NULL); INSERT INTO t VALUES (1), (2), (3)",
    ]);
    assert!(okk, "{err}");
    let (okk, out, err) = s3(&["--format", "csv", "sql", "-c", "SELECT sum(x) AS s FROM t"]);
    assert!(okk, "{err}");
    assert_eq!(out, "s\n6\n");
    let (okk, _, err) = s3(&["init", "--key-file", dir.path().join("other.keys").to_str().unwrap()]);
    assert!(!okk && err.contains("already exists"), "{err}");
}

#[test]
fn parquet_ingest_checks_columns_and_types() {
    use std::sync::Arc;
    use stratalake::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    ok(
        &l.path,
        &["table", "create", "t", "--columns", "id BIGINT NOT NULL, name VARCHAR"],
    );
    let write_pq = |name: &str, cols: Vec<(&str, ArrayRef)>| {
        let b = RecordBatch::try_from_iter(cols).unwrap();
        let p = dir.join(name);
        let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), b.schema(), None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        p
    };
    // int32 ids widen to the table's int64
    let good = write_pq(
        "good.parquet",
        vec![
            ("id", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
        ],
    );
    ok(&l.path, &["ingest", "t", good.to_str().unwrap()]);
    let extra = write_pq(
        "extra.parquet",
        vec![
            ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec!["c"]))),
            ("ssn", Arc::new(StringArray::from(vec!["x"]))),
        ],
    );
    let e = fails(&l.path, &["ingest", "t", extra.to_str().unwrap()]);
    assert!(e.contains("extra.parquet") && e.contains("\"ssn\""), "{e}");
    let badtype = write_pq(
        "badtype.parquet",
        vec![
            ("id", Arc::new(StringArray::from(vec!["4", "four"])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec!["d", "e"]))),
        ],
    );
    let e = fails(&l.path, &["ingest", "t", badtype.to_str().unwrap()]);
    assert!(
        e.contains("badtype.parquet") && e.contains("row 2, column \"id\"") && !e.contains("four"),
        "{e}"
    );
    let out = ok(
        &l.path,
        &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"],
    );
    assert_eq!(out, "n\n2\n");
    // --create infers the table from the file
    ok(&l.path, &["ingest", "--create", "inferred", good.to_str().unwrap()]);
    let d = ok(&l.path, &["--format", "csv", "table", "describe", "inferred"]);
    assert!(d.contains("id,Int32,no,internal"), "{d}");
}

#[test]
fn ingest_modes_namespaces_and_options() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    let csv = |name: &str, body: &str| write(dir, name, body.as_bytes());
    let a = csv("a.csv", "id,region\n1,north\n2,south\n3,north\n");
    ok(
        &l.path,
        &[
            "table",
            "create",
            "t",
            "--from-file",
            a.to_str().unwrap(),
            "--partition-by",
            "region",
        ],
    );
    let d = ok(&l.path, &["--format", "csv", "table", "describe", "t"]);
    assert!(
        d.contains("id,Int64,yes,internal,") && d.contains("region,Utf8,yes,internal,region"),
        "{d}"
    );
    let out = ok(&l.path, &["--format", "json", "ingest", "t", a.to_str().unwrap()]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["version"].as_u64(), r["rows"].as_u64(), r["files"].as_u64()),
        (Some(1), Some(3), Some(2))
    );

    // overwrite the partitions the data touches
    let b = csv("b.csv", "id,region\n10,north\n");
    ok(
        &l.path,
        &["ingest", "--mode", "overwrite-partitions", "t", b.to_str().unwrap()],
    );
    let q = |sql: &str| ok(&l.path, &["--format", "csv", "sql", "-c", sql]);
    assert_eq!(
        q("SELECT region, count(*) AS n FROM t GROUP BY region ORDER BY region"),
        "region,n\nnorth,1\nsouth,1\n"
    );
    // a format named explicitly for a file without a known extension
    let c = write(dir, "c.data", b"{\"id\": 20, \"region\": \"east\"}\n");
    let e = fails(&l.path, &["ingest", "t", c.to_str().unwrap()]);
    assert!(e.contains("c.data") && e.contains("--input-format"), "{e}");
    ok(&l.path, &["ingest", "--input-format", "json", "t", c.to_str().unwrap()]);
    // overwrite everything; a null partition value
    let n = csv("n.csv", "id,region\n30,\n31,west\n");
    ok(&l.path, &["ingest", "--mode", "overwrite", "t", n.to_str().unwrap()]);
    assert_eq!(q("SELECT id FROM t WHERE region IS NULL"), "id\n30\n");
    assert_eq!(q("SELECT count(*) AS n FROM t"), "n\n2\n");
    // describe and history at earlier versions
    let d = ok(&l.path, &["table", "describe", "t", "--as-of", "1"]);
    assert!(d.contains("version 1: 2 file(s), 3 row(s)"), "{d}");
    let h = ok(&l.path, &["--format", "json", "table", "history", "t", "--limit", "2"]);
    let h: Vec<serde_json::Value> = serde_json::from_str(&h).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["operation"], "OVERWRITE");
    assert_eq!(h[0]["rows_removed"], 3);
    // time travel by timestamp from the CLI
    // times are RFC 3339 in UTC with milliseconds, and --as-of takes them as they are
    let when = h[1]["time"].as_str().unwrap().to_string();
    assert!(
        when.ends_with('Z') && when.len() == "2026-12-03T12:00:00.000Z".len(),
        "{when}"
    );
    assert_eq!(
        ok(
            &l.path,
            &[
                "--format",
                "csv",
                "sql",
                "--as-of",
                &when,
                "-c",
                "SELECT count(*) AS n FROM t"
            ]
        ),
        "n\n3\n"
    );
    let e = fails(
        &l.path,
        &["sql", "--as-of", "2000-01-01", "-c", "SELECT count(*) FROM t"],
    );
    assert!(e.contains("no version at or before"), "{e}");
    // namespaces
    ok(&l.path, &["namespace", "create", "archive"]);
    let e = fails(&l.path, &["namespace", "create", "archive"]);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        ok(&l.path, &["--format", "csv", "namespace", "list"]),
        "namespace\narchive\ndefault\n"
    );
    ok(&l.path, &["namespace", "drop", "archive"]);
    let e = fails(&l.path, &["namespace", "drop", "default"]);
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn an_ingest_killed_at_any_point_leaves_the_table_whole() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    let mut body = String::from("id,region,note\n");
    for i in 0..200_000 {
        body.push_str(&format!("{i},r{},note number {i}\n", i % 7));
    }
    let big = write(dir, "big.csv", body.as_bytes());
    ok(
        &l.path,
        &[
            "table",
            "create",
            "t",
            "--columns",
            "id INT NOT NULL, region VARCHAR CLASSIFICATION public, note VARCHAR",
            "--partition-by",
            "region",
        ],
    );
    let mut committed = 0i64;
    for delay_ms in [5u64, 40, 120, 300, 700] {
        let mut child = bin()
            .arg("--lake")
            .arg(&l.path)
            .args(["ingest", "t", big.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            committed += 200_000;
        }
        // all or nothing, whatever the moment
        let n: i64 = ok(
            &l.path,
            &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"],
        )
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
        assert!(
            n == committed || n == committed + 200_000,
            "delay {delay_ms}: {n} rows, {committed} committed"
        );
        committed = n;
        let v = ok(&l.path, &["verify"]);
        assert!(v.contains("no problems found"), "{v}");
    }
    // and a run to the end still works
    ok(&l.path, &["ingest", "t", big.to_str().unwrap()]);
    let n = ok(
        &l.path,
        &["--format", "csv", "sql", "-c", "SELECT count(*) AS n FROM t"],
    );
    assert_eq!(n, format!("n\n{}\n", committed + 200_000));
}

#[test]
fn principals_roles_grants_and_clearance() {
    let l = new_lake();
    let p = &l.path;
    ok(p, &["namespace", "create", "gov"]);
    let cols = "id INT NOT NULL CLASSIFICATION public, region VARCHAR CLASSIFICATION public, \
                note VARCHAR CLASSIFICATION confidential, ssn VARCHAR CLASSIFICATION secret";
    ok(p, &["table", "create", "gov.cases", "--columns", cols]);
    ok(
        p,
        &[
            "sql",
            "-c",
            "INSERT INTO gov.cases VALUES (1, 'north', 'n1', '111'), (2, 'south', 'n2', '222')",
        ],
    );
    // the creator is the first administrator
    let who = ok(p, &["--format", "csv", "principal", "list"]);
    assert!(who.contains("tester,user,lake_admins,"), "{who}");
    ok(p, &["role", "create", "caseworker", "--clearance", "confidential"]);
    ok(
        p,
        &[
            "principal",
            "create",
            "ana",
            "--attr",
            "region=north",
            "--role",
            "caseworker",
        ],
    );
    ok(p, &["principal", "create", "etl", "--service"]);
    let as_ana = |args: &[&str]| {
        let mut a = vec!["--as", "ana"];
        a.extend_from_slice(args);
        run(p, &a)
    };
    // no grant: refused, and the message says why
    let o = as_ana(&["sql", "-c", "SELECT * FROM gov.cases"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("permission denied: ana has no SELECT privilege on table gov.cases")
    );
    ok(
        p,
        &["grant", "select", "--on", "namespace", "gov", "--to", "caseworker"],
    );
    // cleared for confidential through the role: ssn (secret) reads as NULL
    let o = as_ana(&[
        "--format",
        "csv",
        "sql",
        "-c",
        "SELECT id, note, ssn FROM gov.cases ORDER BY id",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "id,note,ssn\n1,n1,\n2,n2,\n");
    // a filter on the hidden column sees NULLs only
    let o = as_ana(&[
        "--format",
        "csv",
        "sql",
        "-c",
        "SELECT count(*) AS n FROM gov.cases WHERE ssn = '111'",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "n\n0\n");
    // writes need INSERT; a rewrite needs clearance for every column
    let o = as_ana(&["sql", "-c", "INSERT INTO gov.cases VALUES (3, 'east', NULL, NULL)"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no INSERT privilege"));
    ok(p, &["grant", "insert", "--on", "table", "gov.cases", "--to", "ana"]);
    let o = as_ana(&["sql", "-c", "INSERT INTO gov.cases VALUES (3, 'east', NULL, NULL)"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = as_ana(&["sql", "-c", "DELETE FROM gov.cases WHERE ssn = '111'"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not cleared for every column"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // no DDL, no access management for non-administrators
    assert!(!as_ana(&["sql", "-c", "CREATE TABLE gov.x (a INT)"]).status.success());
    assert!(
        String::from_utf8_lossy(&as_ana(&["grant", "admin", "--to", "ana"]).stderr)
            .contains("no ADMIN privilege on the lake")
    );
    // revoke takes effect at once
    ok(
        p,
        &["revoke", "select", "--on", "namespace", "gov", "--from", "caseworker"],
    );
    assert!(!as_ana(&["sql", "-c", "SELECT id FROM gov.cases"]).status.success());
    // the same in SQL
    ok(p, &["sql", "-c", "GRANT SELECT ON NAMESPACE gov TO ROLE caseworker"]);
    assert!(as_ana(&["sql", "-c", "SELECT id FROM gov.cases"]).status.success());
    let o = as_ana(&["sql", "-c", "GRANT ADMIN ON LAKE TO ana"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no ADMIN privilege on the lake"));
    ok(p, &["sql", "-c", "REVOKE SELECT ON NAMESPACE gov FROM ROLE caseworker"]);
    assert!(!as_ana(&["sql", "-c", "SELECT id FROM gov.cases"]).status.success());
    ok(
        p,
        &[
            "sql",
            "-c",
            "REVOKE ROLE caseworker FROM ana; GRANT ROLE caseworker TO ana",
        ],
    );
    // unknown principals are refused, never served
    let o = run(p, &["--as", "mallory", "sql", "-c", "SELECT 1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("mallory is not a principal of this lake"));
    let grants = ok(p, &["--format", "csv", "grants"]);
    assert!(
        grants.contains("lake_admins,ADMIN,LAKE") && grants.contains("ana,INSERT,TABLE gov.cases"),
        "{grants}"
    );
    let roles = ok(p, &["--format", "csv", "role", "list"]);
    assert!(roles.contains("caseworker,confidential,ana"), "{roles}");
    // table metadata follows privileges too: a table is listed and described only for its
    // grantees, its counts only where they reveal no hidden row, its history to administrators
    let o = run(p, &["--as", "mallory", "table", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("mallory is not a principal"));
    let o = run(p, &["--as", "etl", "--format", "csv", "table", "list", "gov"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("cases"));
    let o = as_ana(&["--format", "csv", "table", "list", "gov"]);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listed.contains("gov,cases,") && listed.ends_with(",,,\n"), "{listed}");
    let o = as_ana(&["table", "describe", "gov.cases"]);
    assert!(o.status.success());
    let described = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        described.contains("ssn") && !described.contains("row(s)"),
        "{described}"
    );
    assert!(ok(p, &["table", "describe", "gov.cases"]).contains("3 row(s)"));
    let o = run(p, &["--as", "etl", "table", "describe", "gov.cases"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no privilege on table gov.cases"));
    let o = as_ana(&["table", "history", "gov.cases"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no ADMIN privilege on table gov.cases"));
    let o = as_ana(&["quality", "constraints", "gov.cases"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no SELECT privilege"));
    // attributes and role membership from the CLI
    ok(p, &["principal", "set", "ana", "region", "south"]);
    assert!(ok(p, &["--format", "csv", "principal", "list"]).contains("region=south"));
    ok(p, &["principal", "set", "ana", "region"]);
    assert!(!ok(p, &["--format", "csv", "principal", "list"]).contains("region="));
    ok(p, &["role", "create", "auditors"]);
    ok(p, &["role", "add", "auditors", "etl"]);
    assert!(ok(p, &["--format", "csv", "role", "list"]).contains("auditors,,etl"));
    ok(p, &["role", "remove", "auditors", "etl"]);
    ok(p, &["role", "drop", "auditors"]);
    assert!(!ok(p, &["--format", "csv", "role", "list"]).contains("auditors"));
    ok(p, &["principal", "drop", "ana"]);
    assert!(!ok(p, &["--format", "csv", "grants"]).contains("ana,"));
}

#[test]
fn every_statement_is_audited_and_tampering_is_detected() {
    let l = new_lake();
    let p = &l.path;
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); SELECT * FROM t",
        ],
    );
    let o = run(p, &["--as", "mallory", "sql", "-c", "SELECT * FROM t"]);
    assert!(!o.status.success());
    let o = run(p, &["sql", "-c", "SELECT nope FROM t"]);
    assert!(!o.status.success());
    let csv = write(l.path.parent().unwrap(), "x.csv", b"x\n3\n");
    ok(p, &["ingest", "t", csv.to_str().unwrap()]);
    let log: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "audit"])).unwrap();
    let summary: Vec<(String, String, String)> = log
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |p: &str, k: &str, o: &str| {
        summary
            .iter()
            .any(|s| s == &(p.to_string(), k.to_string(), o.to_string()))
    };
    assert!(want("tester", "access", "ok"), "{summary:?}"); // init's first administrator
    assert!(
        want("tester", "sql", "ok") && want("mallory", "sql", "denied") && want("tester", "sql", "error"),
        "{summary:?}"
    );
    assert!(want("tester", "ingest", "ok"), "{summary:?}");
    let select = log
        .iter()
        .find(|r| r["statement"] == "SELECT * FROM t" && r["principal"] == "tester")
        .unwrap();
    assert_eq!(select["rows"], 2);
    assert_eq!(select["tables"][0], "default.t");
    let denied = ok(p, &["--format", "csv", "audit", "--outcome", "denied"]);
    assert!(
        denied.contains("mallory") && denied.contains("not a principal"),
        "{denied}"
    );
    assert!(ok(p, &["audit", "verify"]).contains("intact"));
    // administrators can query it in SQL
    let q = ok(
        p,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT principal, outcome FROM _system.audit WHERE outcome = 'denied'",
        ],
    );
    assert_eq!(q, "principal,outcome\nmallory,denied\n");
    // an analyst may not read the audit log
    ok(p, &["principal", "create", "ana"]);
    let o = run(p, &["--as", "ana", "audit"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no ADMIN privilege"));
    let o = run(p, &["--as", "ana", "sql", "-c", "SELECT * FROM _system.audit"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no ADMIN privilege"));

    // edit one record: detected, naming it
    let dir = l.path.join("data/_audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let victim = files[2].clone();
    let orig = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, orig.replacen("\"tester\"", "\"someone\"", 1)).unwrap();
    let o = run(p, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(3));
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&name),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    std::fs::write(&victim, &orig).unwrap();
    assert!(ok(p, &["audit", "verify"]).contains("intact"));
    // remove one: detected
    std::fs::remove_file(&files[1]).unwrap();
    let o = run(p, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("missing"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn row_filters_follow_the_principal() {
    let l = new_lake();
    let p = &l.path;
    let cols = "id INT NOT NULL CLASSIFICATION public, region VARCHAR CLASSIFICATION public, \
                amount INT CLASSIFICATION internal, ssn VARCHAR CLASSIFICATION secret";
    ok(
        p,
        &[
            "table",
            "create",
            "cases",
            "--columns",
            cols,
            "--partition-by",
            "region",
        ],
    );
    ok(
        p,
        &[
            "sql",
            "-c",
            "INSERT INTO cases VALUES (1,'north',10,'a'), (2,'north',20,'b'), (3,'south',30,'c'), (4,'east',40,'d')",
        ],
    );
    ok(p, &["role", "create", "regional"]);
    ok(
        p,
        &[
            "principal",
            "create",
            "ana",
            "--attr",
            "region=north",
            "--attr",
            "clearance=internal",
            "--role",
            "regional",
        ],
    );
    ok(
        p,
        &[
            "principal",
            "create",
            "bo",
            "--attr",
            "region=south",
            "--role",
            "regional",
        ],
    );
    ok(p, &["principal", "create", "cy", "--attr", "clearance=secret"]);
    ok(p, &["grant", "select", "--on", "table", "cases", "--to", "regional"]);
    ok(p, &["grant", "select", "--on", "table", "cases", "--to", "cy"]);
    ok(
        p,
        &[
            "policy",
            "row-filter",
            "own_region",
            "--table",
            "cases",
            "--to",
            "regional",
            "--where",
            "region = current_principal_attribute('region')",
        ],
    );
    // a filter over a secret column: cy sees only rows whose ssn is 'd', without being told ssn values
    ok(
        p,
        &[
            "policy",
            "row-filter",
            "only_d",
            "--table",
            "cases",
            "--to",
            "cy",
            "--where",
            "ssn = 'd' OR amount < 15",
        ],
    );
    let q = |who: &str, sql: &str| {
        let o = run(p, &["--as", who, "--format", "csv", "sql", "-c", sql]);
        assert!(o.status.success(), "{who}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(
        q("ana", "SELECT id, amount, ssn FROM cases ORDER BY id"),
        "id,amount,ssn\n1,10,\n2,20,\n"
    );
    assert_eq!(q("bo", "SELECT id FROM cases"), "id\n3\n");
    // counts, aggregates and LIMIT see only the visible rows
    assert_eq!(
        q("ana", "SELECT count(*) AS n, sum(amount) AS s FROM cases"),
        "n,s\n2,30\n"
    );
    assert_eq!(q("ana", "SELECT id FROM cases ORDER BY id LIMIT 1"), "id\n1\n");
    assert_eq!(
        q("ana", "SELECT count(*) AS n FROM cases WHERE region = 'south'"),
        "n\n0\n"
    );
    assert_eq!(q("cy", "SELECT id, ssn FROM cases ORDER BY id"), "id,ssn\n1,a\n4,d\n");
    // the administrator sees everything
    assert_eq!(q("tester", "SELECT count(*) AS n FROM cases"), "n\n4\n");
    // no rewrites under a row filter
    ok(p, &["grant", "insert", "--on", "table", "cases", "--to", "ana"]);
    let o = run(p, &["--as", "ana", "sql", "-c", "DELETE FROM cases WHERE id = 1"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("row filters"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // a broken predicate is refused when created
    let e = fails(
        p,
        &[
            "policy",
            "row-filter",
            "bad",
            "--table",
            "cases",
            "--to",
            "cy",
            "--where",
            "nosuch > 1",
        ],
    );
    assert!(e.contains("row filter"), "{e}");
    let list = ok(p, &["--format", "csv", "policy", "list"]);
    assert!(
        list.contains("default.cases,own_region,regional,region = current_principal_attribute('region')"),
        "{list}"
    );
    // dropping the filter restores the grant's full view; a principal without any applicable
    // filter on a filtered table sees nothing
    ok(p, &["policy", "drop", "own_region", "--table", "cases"]);
    assert_eq!(q("ana", "SELECT count(*) AS n FROM cases"), "n\n0\n");
    ok(p, &["policy", "drop", "only_d", "--table", "cases"]);
    assert_eq!(q("ana", "SELECT count(*) AS n FROM cases"), "n\n4\n");
}

#[test]
fn column_masks_are_applied_inside_the_scan() {
    let l = new_lake();
    let p = &l.path;
    let cols = "id INT NOT NULL CLASSIFICATION public, name VARCHAR CLASSIFICATION internal, \
                iban VARCHAR CLASSIFICATION confidential, income INT CLASSIFICATION confidential, \
                ssn VARCHAR CLASSIFICATION secret";
    ok(p, &["table", "create", "people", "--columns", cols]);
    ok(
        p,
        &[
            "sql",
            "-c",
            "INSERT INTO people VALUES (1,'Ada','DE89370400440532013000',52340,'111-22-3333'), (2,'Bob','FR1420041010050500013M02606',81990,NULL)",
        ],
    );
    ok(p, &["principal", "create", "ana", "--attr", "clearance=internal"]);
    ok(p, &["grant", "select", "--on", "table", "people", "--to", "ana"]);
    ok(
        p,
        &["policy", "mask", "people", "iban", "--to", "ana", "--mask", "partial:4"],
    );
    ok(
        p,
        &[
            "policy",
            "mask",
            "people",
            "income",
            "--to",
            "ana",
            "--mask",
            "expr:round(income, -4)",
        ],
    );
    ok(
        p,
        &["policy", "mask", "people", "ssn", "--to", "ana", "--mask", "redact"],
    );
    ok(
        p,
        &["policy", "mask", "people", "name", "--to", "ana", "--mask", "null"],
    );
    let q = |sql: &str| {
        let o = run(p, &["--as", "ana", "--format", "csv", "sql", "-c", sql]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // masks compute from raw values even above the clearance (iban, income, ssn)
    assert_eq!(
        q("SELECT id, name, iban, income, ssn FROM people ORDER BY id"),
        "id,name,iban,income,ssn\n1,,******************3000,50000,****\n2,,***********************2606,80000,\n"
    );
    // every operator above the scan sees masked values only
    assert_eq!(q("SELECT count(*) AS n FROM people WHERE income = 52340"), "n\n0\n");
    assert_eq!(q("SELECT count(*) AS n FROM people WHERE income = 50000"), "n\n1\n");
    assert_eq!(
        q("SELECT income, count(*) AS n FROM people GROUP BY income ORDER BY income"),
        "income,n\n50000,1\n80000,1\n"
    );
    assert_eq!(q("SELECT max(ssn) AS m FROM people"), "m\n****\n");
    // the administrator sees raw values
    let raw = ok(
        p,
        &["--format", "csv", "sql", "-c", "SELECT income FROM people WHERE id = 1"],
    );
    assert_eq!(raw, "income\n52340\n");
    // a mask that does not fit is refused
    let e = fails(
        p,
        &[
            "policy",
            "mask",
            "people",
            "income",
            "--to",
            "ana",
            "--mask",
            "expr:nosuch + 1",
        ],
    );
    assert!(e.contains("mask"), "{e}");
    let e = fails(
        p,
        &["policy", "mask", "people", "nosuch", "--to", "ana", "--mask", "null"],
    );
    assert!(e.contains("nosuch"), "{e}");
    ok(p, &["policy", "unmask", "people", "income", "--from", "ana"]);
    // unmasked and above the clearance: NULL again
    // (a lone empty CSV field is written as "")
    assert_eq!(q("SELECT income FROM people WHERE id = 1"), "income\n\"\"\n");
    let list = ok(p, &["--format", "csv", "policy", "list"]);
    assert!(list.contains("default.people,mask iban,ana,partial(4)"), "{list}");
    // the audit log names the policies each statement was read under (kinds, not parameters)
    let audit = ok(
        p,
        &[
            "--format",
            "json",
            "audit",
            "--principal",
            "ana",
            "--table",
            "people",
            "--since",
            "1h",
            "--limit",
            "1",
        ],
    );
    let records: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["statement"], "SELECT income FROM people WHERE id = 1");
    let policies = records[0]["policies"].to_string();
    assert!(policies.contains("clearance hides default.people.income"), "{policies}");
    let first = ok(
        p,
        &["--format", "json", "audit", "--principal", "ana", "--table", "people"],
    );
    let first: Vec<serde_json::Value> = serde_json::from_str(&first).unwrap();
    let policies = first[0]["policies"].to_string();
    assert!(
        policies.contains("mask partial on default.people.iban")
            && policies.contains("mask null on default.people.name")
            && !policies.contains("partial(4)"),
        "{policies}"
    );
    let none = ok(p, &["--format", "json", "audit", "--table", "other", "--since", "1h"]);
    assert_eq!(none.trim(), "[]");
    // classification policies from the CLI: income (confidential, above ana's clearance, no
    // column mask any more) is shown through the level's mask, in every table
    ok(p, &["policy", "classification", "confidential", "--mask", "redact"]);
    assert_eq!(q("SELECT income FROM people WHERE id = 1"), "income\n\"\"\n");
    let list = ok(p, &["--format", "csv", "policy", "list"]);
    assert!(
        list.contains("classification confidential,sessions not cleared for it,redact"),
        "{list}"
    );
    let e = fails(
        p,
        &["policy", "classification", "confidential", "--mask", "expr:upper(x)"],
    );
    assert!(e.contains("expression"), "{e}");
    ok(p, &["policy", "classification", "confidential", "--mask", "none"]);
    assert!(!ok(p, &["--format", "csv", "policy", "list"]).contains("classification confidential"));
}

fn csv_count(lake: &Path, table: &str) -> i64 {
    ok(
        lake,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            &format!("SELECT count(*) AS n FROM {table}"),
        ],
    )
    .lines()
    .nth(1)
    .unwrap()
    .parse()
    .unwrap()
}

#[test]
fn backup_create_list_verify_restore_forget_prune() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    let repo = dir.join("repo");
    let repo_s = repo.to_str().unwrap();
    ok(
        &l.path,
        &[
            "sql",
            "-c",
            "CREATE TABLE permits (id INT NOT NULL, region VARCHAR, owner VARCHAR CLASSIFICATION confidential) PARTITIONED BY (region); \
             INSERT INTO permits VALUES (1, 'north', 'Ada'), (2, 'south', 'Bo'); \
             CREATE PRINCIPAL ana WITH (region = 'north', clearance = 'internal'); \
             GRANT SELECT ON TABLE permits TO ana; \
             CREATE ROW FILTER own ON permits FOR ana WHERE region = current_principal_attribute('region')",
        ],
    );
    let out = ok(&l.path, &["backup", "init", "--repo", repo_s]);
    assert!(out.contains("created backup repository"), "{out}");
    let e = fails(&l.path, &["backup", "init", "--repo", repo_s]);
    assert!(e.contains("already holds a backup repository"), "{e}");
    let spare = dir.join("spare");
    ok(&l.path, &["backup", "init", "--repo", spare.to_str().unwrap()]);
    let out = ok(&l.path, &["backup", "detach", "--repo", spare.to_str().unwrap()]);
    assert!(out.contains("no longer tracking"), "{out}");
    let e = fails(&l.path, &["backup", "detach", "--repo", spare.to_str().unwrap()]);
    assert!(e.contains("does not track"), "{e}");
    let out = ok(&l.path, &["backup", "create", "--repo", repo_s]);
    assert!(out.contains("copied 2 new file(s)"), "{out}");
    let out = ok(&l.path, &["--format", "json", "backup", "create", "--repo", repo_s]);
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let totals = &created["totals"];
    assert_eq!(
        (totals["files"].as_u64(), totals["new_files"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(created["seconds"].as_f64().is_some() && created["bytes_per_second"].as_u64().is_some());
    let second_id = created["id"].as_str().unwrap().to_string();
    ok(&l.path, &["sql", "-c", "INSERT INTO permits VALUES (3, 'north', 'Cy')"]);
    ok(&l.path, &["backup", "create", "--repo", repo_s, "--table", "permits"]);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&l.path, &["--format", "json", "backup", "list", "--repo", repo_s])).unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|b| b["status"] == "ok"));
    assert_eq!(list[1]["id"], second_id.as_str());
    let first = list[0]["id"].as_str().unwrap().to_string();
    let out = ok(&l.path, &["backup", "verify", "--repo", repo_s, "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");

    // Whole lake into a new folder: data and the row filter come back.
    let target = dir.join("restored");
    let t = target.to_str().unwrap();
    let out = ok(&l.path, &["backup", "restore", &first, "--repo", repo_s, "--target", t]);
    assert!(out.contains("restored default.permits at version 1 (2 rows)"), "{out}");
    assert_eq!(csv_count(&target, "permits"), 2);
    let ana = ok(
        &target,
        &["--as", "ana", "--format", "csv", "sql", "-c", "SELECT id FROM permits"],
    );
    assert_eq!(ana, "id\n1\n");
    let e = fails(&l.path, &["backup", "restore", &first, "--repo", repo_s, "--target", t]);
    assert!(e.contains("already holds default.permits"), "{e}");
    // One table, older version, new name, into the source lake.
    ok(
        &l.path,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo_s,
            "--table",
            "permits",
            "--into",
            "permits_old",
            "--version",
            "1",
        ],
    );
    assert_eq!(csv_count(&l.path, "permits_old"), 2);
    let e = fails(
        &l.path,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo_s,
            "--table",
            "permits",
            "--version",
            "9",
            "--into",
            "x",
        ],
    );
    assert!(e.contains("not version 9"), "{e}");
    let e = fails(
        &l.path,
        &["backup", "restore", "nosuch", "--repo", repo_s, "--target", t],
    );
    assert!(e.contains("backup nosuch does not exist"), "{e}");

    // Damage: verify names the object and exits 3.
    let data = walk(&repo.join("data"));
    let victim = data.iter().find(|p| p.is_file()).unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(victim, &bytes).unwrap();
    let o = run(&l.path, &["backup", "verify", "--repo", repo_s, "--read-data"]);
    assert_eq!(o.status.code(), Some(3));
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(name));
    bytes[10] ^= 1;
    std::fs::write(victim, &bytes).unwrap();

    // Forget all but the newest, then prune.
    let out = ok(
        &l.path,
        &["backup", "forget", "--repo", repo_s, "--keep-last", "1", "--dry-run"],
    );
    assert!(out.contains("would forget"), "{out}");
    ok(&l.path, &["backup", "forget", "--repo", repo_s, "--keep-last", "1"]);
    let out = ok(&l.path, &["backup", "prune", "--repo", repo_s]);
    assert!(out.starts_with("removed "), "{out}");
    let out = ok(&l.path, &["backup", "list", "--repo", repo_s]);
    assert!(out.contains("(1 row)"), "{out}");
    let out = ok(&l.path, &["backup", "verify", "--repo", repo_s, "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");
    // Non-admins cannot touch backups.
    let e = fails(&l.path, &["--as", "ana", "backup", "list", "--repo", repo_s]);
    assert!(e.contains("ADMIN"), "{e}");

    // A restored lake holds a copy of the keys: it keeps working when the source's key file is
    // gone. Sharing the key file in place is explicit.
    let shared = dir.join("shared");
    let keys = l.path.join("master.keys");
    let o = bin()
        .arg("--lake")
        .arg(&l.path)
        .args(["backup", "restore", "latest", "--repo", repo_s, "--target"])
        .arg(&shared)
        .arg("--key-file")
        .arg(&keys)
        .arg("--shared-key-file")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sharing the key file"));
    assert!(!shared.join("master.keys").exists());
    let config = std::fs::read_to_string(shared.join("stratalake.toml")).unwrap();
    assert!(config.contains(keys.to_str().unwrap()), "{config}");
    let own = std::fs::read_to_string(target.join("stratalake.toml")).unwrap();
    assert!(own.contains("file = \"master.keys\""), "{own}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("master.keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::rename(&keys, dir.join("moved.keys")).unwrap();
    assert_eq!(csv_count(&target, "permits"), 2);
    let e = fails(&shared, &["sql", "-c", "SELECT count(*) FROM permits"]);
    assert!(e.contains("master.keys"), "{e}");
}

#[test]
fn a_backup_or_restore_killed_at_any_point_leaves_nothing_half_done() {
    let l = new_lake();
    let dir = l.path.parent().unwrap();
    let mut body = String::from("id,region,note\n");
    for i in 0..300_000u64 {
        body.push_str(&format!("{i},r{},note number {i} {}\n", i % 5, i * 7919 % 100_003));
    }
    let big = write(dir, "big.csv", body.as_bytes());
    ok(
        &l.path,
        &[
            "ingest",
            "t",
            "--create",
            "--partition-by",
            "region",
            big.to_str().unwrap(),
        ],
    );
    ok(&l.path, &["ingest", "t", big.to_str().unwrap()]);
    let repo = dir.join("repo");
    let repo_s = repo.to_str().unwrap();
    ok(&l.path, &["backup", "init", "--repo", repo_s]);
    let kill_after = |args: &[&str], ms: u64| {
        let mut child = bin()
            .arg("--lake")
            .arg(&l.path)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap().success()
    };
    // Random kill points (shown on failure), spread over the span of a run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut points = || -> Vec<u64> {
        let mut v: Vec<u64> = (0..5)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                i * 80 + seed % 80
            })
            .collect();
        v.sort();
        eprintln!("kill points (ms): {v:?}");
        v
    };
    let mut finished = 0;
    for ms in points() {
        let exited = kill_after(&["backup", "create", "--repo", repo_s], ms);
        // Every listed backup is whole. A run killed after writing its
        // manifest (the last step) but before exiting counts as finished.
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&ok(&l.path, &["--format", "json", "backup", "list", "--repo", repo_s])).unwrap();
        if exited {
            assert_eq!(list.len(), finished + 1);
        } else {
            assert!(list.len() == finished || list.len() == finished + 1, "{list:?}");
        }
        finished = list.len();
        let out = ok(&l.path, &["backup", "verify", "--repo", repo_s, "--read-data"]);
        assert!(out.contains("no problems found"), "{out}");
    }
    // rerunning succeeds, and prune clears what stopped runs left
    ok(&l.path, &["backup", "create", "--repo", repo_s]);
    ok(&l.path, &["backup", "prune", "--repo", repo_s]);
    let out = ok(&l.path, &["backup", "verify", "--repo", repo_s, "--read-data"]);
    assert!(out.contains("no problems found"), "{out}");

    let target = dir.join("restored");
    let t = target.to_str().unwrap();
    for ms in points() {
        if kill_after(&["backup", "restore", "latest", "--repo", repo_s, "--target", t], ms) {
            break;
        }
        // Stopped: the target shows no table (or no lake at all), or, when the
        // kill came after the one catalog commit, the whole table.
        if target.join("stratalake.toml").exists() {
            let out = ok(&target, &["table", "list"]);
            if out.contains("| t ") {
                assert_eq!(csv_count(&target, "t"), 600_000);
                break;
            }
        }
    }
    if !target.join("stratalake.toml").exists() || !ok(&target, &["table", "list"]).contains(" t ") {
        ok(
            &l.path,
            &["backup", "restore", "latest", "--repo", repo_s, "--target", t],
        );
    }
    assert_eq!(csv_count(&target, "t"), 600_000);
    let v = ok(&target, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
}

#[test]
fn key_list_rotate_retire_shred() {
    let l = new_lake();
    ok(
        &l.path,
        &[
            "sql",
            "-c",
            "CREATE TABLE people (id INT NOT NULL, name VARCHAR CLASSIFICATION confidential); \
             INSERT INTO people VALUES (1, 'Ada'), (2, 'Bo')",
        ],
    );
    let keys: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&l.path, &["--format", "json", "key", "list"])).unwrap();
    let conf: Vec<&serde_json::Value> = keys
        .iter()
        .filter(|k| k["id"]["classification"] == "confidential")
        .collect();
    assert_eq!(conf.len(), 1);
    assert_eq!(
        (conf[0]["current"].as_bool(), conf[0]["live_files"].as_u64()),
        (Some(true), Some(1))
    );

    let out = ok(&l.path, &["key", "rotate", "--classification", "confidential"]);
    assert!(out.contains("created master key confidential/v2"), "{out}");
    assert!(
        out.contains("re-keyed 1 file(s) of default.people in version 2"),
        "{out}"
    );
    let out = ok(&l.path, &["--format", "csv", "key", "list"]);
    assert!(out.contains("confidential,1,old,0,1\n"), "{out}");
    assert!(out.contains("confidential,2,current,1,1\n"), "{out}");
    let e = fails(&l.path, &["key", "retire", "confidential", "2"]);
    assert!(e.contains("current version"), "{e}");
    let e = fails(&l.path, &["key", "retire", "confidential", "1"]);
    assert!(e.contains("--drop-history"), "{e}");
    ok(&l.path, &["key", "retire", "confidential", "1", "--drop-history"]);
    let rows = ok(
        &l.path,
        &["--format", "csv", "sql", "-c", "SELECT name FROM people ORDER BY id"],
    );
    assert_eq!(rows, "name\nAda\nBo\n");

    let e = fails(
        &l.path,
        &["key", "shred", "--classification", "confidential", "--confirm", "oops"],
    );
    assert!(e.contains("--confirm"), "{e}");
    let e = fails(
        &l.path,
        &["key", "shred", "--classification", "public", "--confirm", "public"],
    );
    assert!(e.contains("footer"), "{e}");
    ok(
        &l.path,
        &[
            "key",
            "shred",
            "--classification",
            "confidential",
            "--confirm",
            "confidential",
        ],
    );
    let e = fails(&l.path, &["sql", "-c", "SELECT id, name FROM people ORDER BY id"]);
    assert!(e.contains("\"name\"") && e.contains("shredded"), "{e}");
    ok(
        &l.path,
        &["sql", "-c", "CREATE MASK FOR CLASSIFICATION confidential AS NULL"],
    );
    let rows = ok(
        &l.path,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT id, name FROM people ORDER BY id",
        ],
    );
    assert_eq!(rows, "id,name\n1,\n2,\n");
    let v = ok(&l.path, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
    let audit = ok(&l.path, &["--format", "csv", "audit"]);
    assert!(
        audit.contains("KEY SHRED confidential") && audit.contains("KEY ROTATE confidential"),
        "{audit}"
    );
}

#[test]
fn vacuum_keeps_what_the_window_needs_and_refuses_short_retention() {
    let l = new_lake();
    ok(
        &l.path,
        &[
            "sql",
            "-c",
            "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); INSERT OVERWRITE t VALUES (3)",
        ],
    );
    let data = l.path.join("data/default/t/data");
    std::fs::create_dir_all(&data).unwrap();
    // a crashed writer's file from two days ago, and one a running writer just staged
    let old = write(&data, "old-orphan.parquet", b"partial");
    let status = std::process::Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(status.success());
    write(&data, "fresh-orphan.parquet", b"staged");

    let e = fails(&l.path, &["table", "vacuum", "t", "--retain", "0s"]);
    assert!(e.contains("--force") && e.contains("168h"), "{e}");
    let e = fails(&l.path, &["table", "vacuum", "t", "--retain", "7x"]);
    assert!(e.contains("unit"), "{e}");
    // a day's window: the file removed just now stays, the old orphan goes
    let out = ok(
        &l.path,
        &["table", "vacuum", "t", "--retain", "1d", "--force", "--dry-run"],
    );
    assert!(out.contains("would delete hot:data/old-orphan.parquet"), "{out}");
    assert!(out.contains("kept 1 recent unreferenced"), "{out}");
    assert!(old.exists());
    let out = ok(&l.path, &["table", "vacuum", "t", "--retain", "1d", "--force"]);
    assert!(
        out.contains("deleted 0 removed file(s), 0 old cop(ies) of moved files and 1 unreferenced"),
        "{out}"
    );
    assert!(!old.exists());
    assert_eq!(
        ok(
            &l.path,
            &[
                "--format",
                "csv",
                "sql",
                "-c",
                "SELECT sum(x) AS n FROM t VERSION AS OF 1"
            ]
        ),
        "n\n3\n"
    );
    // no window: the overwritten file goes, and version 1 can no longer be read
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ok(&l.path, &["table", "vacuum", "t", "--retain", "0s", "--force"]);
    assert!(out.contains("deleted 1 removed file(s)"), "{out}");
    assert!(out.contains("versions from 2 on stay readable"), "{out}");
    assert_eq!(
        ok(&l.path, &["--format", "csv", "sql", "-c", "SELECT x FROM t"]),
        "x\n3\n"
    );
    let e = fails(&l.path, &["sql", "-c", "SELECT sum(x) FROM t VERSION AS OF 1"]);
    assert!(e.contains("missing") || e.contains("not found"), "{e}");
    let v = ok(&l.path, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
    let audit = ok(&l.path, &["--format", "csv", "audit"]);
    assert!(audit.contains("VACUUM default.t RETAIN 0s"), "{audit}");
}

/// Create table `t` from `csv`, partitioned by its `region` column.
fn ingest_by_region(lake: &Path, csv: &Path) {
    ok(
        lake,
        &[
            "ingest",
            "t",
            "--create",
            "--partition-by",
            "region",
            csv.to_str().unwrap(),
        ],
    );
}

/// Append tiering settings to a lake's stratalake.toml.
fn add_config(lake: &Path, toml: &str) {
    let p = lake.join("stratalake.toml");
    let mut s = std::fs::read_to_string(&p).unwrap();
    s.push('\n');
    s.push_str(toml);
    std::fs::write(&p, s).unwrap();
}

#[test]
fn tiers_plan_run_move_status_and_capacity() {
    let l = new_lake();
    let p = &l.path;
    let dir = p.parent().unwrap();
    add_config(
        p,
        r#"
[[tier]]
name = "cold"
url = "cold"
capacity = "1GiB"

[[rule]]
name = "all-to-cold"
table = "t"
to = "cold"
since_write = "0s"
"#,
    );
    let mut body = String::from("id,region,amount\n");
    for i in 0..3000 {
        body.push_str(&format!("{i},r{},{}\n", i % 3, i * 7 % 1000));
    }
    let csv = write(dir, "t.csv", body.as_bytes());
    ingest_by_region(p, &csv);
    let query = [
        "--format",
        "csv",
        "sql",
        "-c",
        "SELECT region, count(*) AS n, sum(amount) AS s FROM t GROUP BY region ORDER BY region",
    ];
    let before = ok(p, &query);

    let out = ok(p, &["tier", "list"]);
    assert!(out.contains("| 1     | cold |") && out.contains("1.0 GiB"), "{out}");
    let plan: serde_json::Value = serde_json::from_str(&ok(p, &["--format", "json", "tier", "plan"])).unwrap();
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 3);
    assert!(
        moves
            .iter()
            .all(|m| m["to"] == "cold" && m["reason"] == "rule \"all-to-cold\""),
        "{plan}"
    );
    assert_eq!(ok(p, &query), before); // a second reader: two read-statistics objects
    assert_eq!(std::fs::read_dir(p.join("data/_tiering/reads")).unwrap().count(), 2);
    let out = ok(p, &["tier", "run", "--dry-run"]);
    assert!(out.contains("3 file(s)"), "{out}");
    let out = ok(p, &["tier", "run", "--concurrency", "2", "--bandwidth", "100MiB"]);
    assert!(out.starts_with("moved 3 file(s)"), "{out}");
    assert_eq!(std::fs::read_dir(p.join("cold/default/t/data")).unwrap().count(), 3);
    // the read statistics every `sql` wrote are folded into one object by the run
    assert_eq!(std::fs::read_dir(p.join("data/_tiering/reads")).unwrap().count(), 1);
    let tiers: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "tier", "list"])).unwrap();
    assert_eq!(
        (tiers[0]["files"].as_u64(), tiers[1]["files"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(ok(p, &query), before);

    // recall one partition; the rule would send it down again
    let out = ok(p, &["tier", "move", "--to", "hot", "t", "--partition", "region=r1"]);
    assert!(out.starts_with("moved 1 file(s)"), "{out}");
    assert_eq!(ok(p, &query), before);
    let status: serde_json::Value = serde_json::from_str(&ok(p, &["--format", "json", "tier", "status"])).unwrap();
    assert_eq!(status["tiers"][0]["files"], 1);
    assert_eq!(status["pending"][0]["files_out"], 1);
    // ndjson: every report is one document on one line
    for cmd in [&["tier", "status"][..], &["tier", "list"], &["capacity"]] {
        let out = ok(p, &[&["--format", "ndjson"][..], cmd].concat());
        assert_eq!(out.lines().count(), 1, "{cmd:?}: {out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }
    let e = fails(p, &["tier", "move", "--to", "glacier", "t"]);
    assert!(e.contains("no tier named \"glacier\""), "{e}");
    let history = ok(p, &["table", "history", "t"]);
    assert!(history.contains("| MOVE "), "{history}");
    let v = ok(p, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");

    // capacity from the logs; an HTML report with a chart
    let report = dir.join("capacity.html");
    let cap: serde_json::Value = serde_json::from_str(&ok(
        p,
        &["--format", "json", "capacity", "--html", report.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(cap["tables"]["default.t"]["rows"], 3000);
    assert_eq!(cap["tiers"][1]["tier"], "cold");
    assert_eq!(cap["tiers"][1]["files"], 2);
    let html = std::fs::read_to_string(&report).unwrap();
    // one day of history: no chart yet, the tables (chart: crates/tiering/src/html.rs tests)
    assert!(
        html.contains("Not enough history yet") && html.contains("<td>cold</td>"),
        "{html}"
    );
    let out = ok(p, &["capacity", "--partitions"]);
    assert!(out.contains("region=r1") && out.contains("internal"), "{out}");

    // quotas are checked at commit time
    add_config(p, "[[quota]]\ntable = \"t\"\nmax_bytes = \"1KiB\"\n");
    let e = fails(p, &["ingest", "t", csv.to_str().unwrap()]);
    assert!(e.contains("quota exceeded for table default.t"), "{e}");
    assert_eq!(csv_count(p, "t"), 3000);

    // bad settings are named; tiers are for administrators
    ok(p, &["principal", "create", "ana"]);
    let e = fails(p, &["--as", "ana", "tier", "list"]);
    assert!(e.contains("ADMIN"), "{e}");
    add_config(p, "[[rule]]\nto = \"nowhere\"\nsince_read = \"30d\"\n");
    let e = fails(p, &["tier", "plan"]);
    assert!(e.contains("[[rule]] 2") && e.contains("nowhere"), "{e}");
}

#[test]
fn a_tier_run_killed_at_any_point_loses_nothing() {
    let l = new_lake();
    let p = &l.path;
    let dir = p.parent().unwrap();
    add_config(
        p,
        r#"
[tiering]
bandwidth = "3MiB"
move_retention = "0s"

[[tier]]
name = "cold"
url = "cold"

[[rule]]
to = "cold"
since_write = "0s"
"#,
    );
    let mut body = String::from("id,region,note\n");
    for i in 0..200_000u64 {
        body.push_str(&format!("{i},r{},note {} {i}\n", i % 6, i * 7919 % 100_003));
    }
    let csv = write(dir, "big.csv", body.as_bytes());
    ingest_by_region(p, &csv);
    let mut finished = false;
    for ms in [100u64, 400, 800, 1200] {
        let mut child = bin()
            .arg("--lake")
            .arg(p)
            .args(["tier", "run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        finished |= child.wait().unwrap().success();
        assert_eq!(csv_count(p, "t"), 200_000, "after a kill at {ms} ms");
        let v = ok(p, &["verify"]);
        assert!(v.contains("no problems found"), "{v}");
    }
    // a rerun finishes the job (a stale lock of a killed run is taken over)
    let out = ok(p, &["tier", "run"]);
    assert!(finished || out.starts_with("moved "), "{out}");
    let tiers: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "tier", "list"])).unwrap();
    assert_eq!(tiers[0]["files"], 0);
    assert_eq!(csv_count(p, "t"), 200_000);
    let v = ok(p, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
    // with no retention, no old copy is left on hot; stray copies of killed runs go with vacuum
    ok(p, &["table", "vacuum", "t", "--retain", "0s", "--force"]);
    let left = walk(&p.join("data/default/t/data"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn optimize_compacts_small_files() {
    let l = new_lake();
    let p = &l.path;
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE t (id BIGINT, region VARCHAR) PARTITIONED BY (region)",
        ],
    );
    for i in 0..8 {
        ok(
            p,
            &[
                "sql",
                "-c",
                &format!("INSERT INTO t VALUES ({i}, 'a'), ({}, 'b')", i + 100),
            ],
        );
    }
    let query = ["--format", "csv", "sql", "-c", "SELECT * FROM t ORDER BY id"];
    let before = ok(p, &query);
    let out = ok(p, &["table", "optimize", "t", "--dry-run"]);
    assert!(
        out.starts_with("would compact 16 file(s)") && out.contains("2 partition(s), 16 rows"),
        "{out}"
    );
    let e = fails(p, &["table", "optimize", "t", "--sort-by", "id sideways"]);
    assert!(e.contains("ASC or DESC"), "{e}");
    let out = ok(
        p,
        &[
            "table",
            "optimize",
            "t",
            "--sort-by",
            "id DESC",
            "--target-size",
            "64MiB",
        ],
    );
    assert!(
        out.starts_with("compacted 16 file(s)") && out.contains("into 2 file(s)"),
        "{out}"
    );
    assert_eq!(ok(p, &query), before);
    let h = ok(p, &["table", "history", "t", "--limit", "1"]);
    assert!(h.contains("| OPTIMIZE "), "{h}");
    let out = ok(p, &["table", "optimize", "t"]);
    assert!(out.starts_with("compacted 0 file(s)"), "{out}");
    let v = ok(p, &["verify"]);
    assert!(v.contains("no problems found"), "{v}");
}

#[test]
fn constraints_quarantine_quality_report_and_compare() {
    let l = new_lake();
    let p = &l.path;
    let dir = p.parent().unwrap();
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE people (id BIGINT NOT NULL, age INT, email VARCHAR CLASSIFICATION confidential, seen TIMESTAMP); \
             ALTER TABLE people ADD CONSTRAINT sane_age RANGE age BETWEEN 0 AND 150; \
             ALTER TABLE people ADD CONSTRAINT email_shape PATTERN email MATCHES '^[^@ ]+@[^@ ]+$'; \
             ALTER TABLE people ADD CONSTRAINT one_id UNIQUE (id) ON DUPLICATE KEEP LAST; \
             ALTER TABLE people ADD CONSTRAINT recent FRESHNESS seen WITHIN '3650d'",
        ],
    );
    let out = ok(p, &["quality", "constraints", "people"]);
    assert!(
        out.contains("UNIQUE (id) ON DUPLICATE KEEP LAST") && out.contains("recent"),
        "{out}"
    );
    let now = chrono_like_now();
    let csv = write(
        dir,
        "people.csv",
        format!(
            "id,age,email,seen\n1,34,ada@example.org,{now}\n2,-5,bo@example.org,{now}\n3,51,not an email,{now}\n4,40,,{now}\n1,35,ada@new.example.org,{now}\n5,20,old@example.org,1990-01-01T00:00:00\n"
        )
        .as_bytes(),
    );
    // by default the first bad row rejects the whole file, naming line and rule
    let e = fails(p, &["ingest", "people", csv.to_str().unwrap()]);
    assert!(
        e.contains("line 3") && e.contains("\"sane_age\"") && e.contains("nothing was committed"),
        "{e}"
    );
    assert_eq!(csv_count(p, "people"), 0);
    let out = ok(
        p,
        &["ingest", "people", "--on-error", "quarantine", csv.to_str().unwrap()],
    );
    assert!(out.contains("committed version") && out.contains("2 rows"), "{out}");
    assert!(
        out.contains("3 row(s) quarantined in default.people_quarantine"),
        "{out}"
    );
    assert!(out.contains("1 duplicate row(s) dropped"), "{out}");
    let rows = ok(
        p,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT id, age, email FROM people ORDER BY id",
        ],
    );
    assert_eq!(rows, "id,age,email\n1,35,ada@new.example.org\n4,40,\n");
    let q = ok(
        p,
        &[
            "--format",
            "csv",
            "sql",
            "-c",
            "SELECT id, quality_rule FROM people_quarantine ORDER BY id",
        ],
    );
    assert_eq!(q, "id,quality_rule\n2,sane_age\n3,email_shape\n5,recent\n");
    // keep last over rows already there: an upsert
    let csv2 = write(
        dir,
        "people2.csv",
        format!("id,age,email,seen\n4,41,di@example.org,{now}\n").as_bytes(),
    );
    let out = ok(p, &["ingest", "people", csv2.to_str().unwrap()]);
    assert!(out.contains("1 row(s) already in the table replaced"), "{out}");
    assert_eq!(csv_count(p, "people"), 2);

    // the report: figures now and per checked commit
    let html = dir.join("quality.html");
    let r: Vec<serde_json::Value> = serde_json::from_str(&ok(
        p,
        &[
            "--format",
            "json",
            "quality",
            "report",
            "people",
            "--html",
            html.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(r[0]["rows"], 2);
    assert_eq!(r[0]["completeness"]["email"], 1.0);
    assert_eq!(r[0]["uniqueness"]["one_id"], 1.0);
    let h = r[0]["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0]["rows_in"].as_u64(), h[0]["rows_written"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(h[0]["rejected"]["recent"], 1);
    assert_eq!(h[1]["replaced"], 1);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("validity %"), "{page}");
    let out = ok(p, &["quality", "report"]);
    assert!(
        out.contains("default.people_quarantine") && out.contains("default.people "),
        "{out}"
    );

    // compare against a copy with differences: exit code 3
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE copy (id BIGINT, age INT, email VARCHAR); \
             INSERT INTO copy VALUES (1, 36, 'ada@new.example.org'), (9, 1, 'x@y')",
        ],
    );
    let o = run(p, &["quality", "compare", "people", "copy", "--key", "id"]);
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("1 missing in default.copy, 1 missing in default.people, 1 matched rows differ"),
        "{out}"
    );
    assert!(out.contains("| age ") && out.contains("missing_in_right: 4"), "{out}");
    let same = ok(p, &["quality", "compare", "people", "people", "--key", "id"]);
    assert!(same.contains("0 matched rows differ"), "{same}");
    let e = fails(p, &["quality", "compare", "people", "copy", "--key", "nope"]);
    assert!(e.contains("no column \"nope\""), "{e}");
}

/// Now as `YYYY-MM-DDTHH:MM:SS` (UTC).
fn chrono_like_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The interactive shell in a pseudo-terminal (driven by Python's `pty`, which the test script
/// installs anyway): Ctrl-C cancels the running statement and the shell stays open; the history
/// is written as it goes (private); tab completes table names; `\d T` says what the user reads.
#[test]
fn the_shell_cancels_on_ctrl_c_completes_names_and_keeps_history() {
    let l = new_lake();
    ok(
        &l.path,
        &[
            "sql",
            "-c",
            "CREATE TABLE permits (id INT, owner VARCHAR CLASSIFICATION confidential)",
        ],
    );
    let driver = r#"
import os, pty, select, sys, time
binary, lake = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["USER"] = "tester"
    os.execv(binary, [binary, "--lake", lake, "sql"])
seen = b""
def until(pat, timeout=60):
    global seen
    end = time.time() + timeout
    while time.time() < end:
        if pat in seen:
            seen = seen[seen.index(pat) + len(pat):]
            return
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                break
            seen += d
    sys.exit("timed out waiting for %r; output: %r" % (pat, seen))
until(b"stratalake> ")
os.write(fd, b"SELECT sum(value) FROM generate_series(1, 1000000000000);\r")
time.sleep(2)
os.write(fd, b"\x03")
until(b"cancelled")
until(b"stratalake> ")
history = os.path.join(lake, ".sql_history")
if not os.path.exists(history) or b"generate_series" not in open(history, "rb").read():
    sys.exit("history not written as it goes")
if os.stat(history).st_mode & 0o077:
    sys.exit("history readable by others")
os.write(fd, b"SELECT 6 * 7 AS answer;\r")
until(b"| 42     |")
until(b"stratalake> ")
os.write(fd, b"SELECT count(*) AS n FROM permi\t")
time.sleep(0.5)
os.write(fd, b";\r")
until(b"| 0 |")
until(b"stratalake> ")
os.write(fd, b"\\d permits\r")
until(b"you read")
os.write(fd, b"\\q\r")
_, status = os.waitpid(pid, 0)
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else "shell exited with %r" % status)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(driver)
        .arg(env!("CARGO_BIN_EXE_stratalake"))
        .arg(&l.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_names_the_administrator_and_output_is_typed_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    // USER unset: the administrator is `local`, and init says so and how to act as it.
    let lake = dir.path().join("nouser");
    let o = bin().env_remove("USER").arg("init").arg(&lake).output().unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("admin:   local ($USER is not set; run later commands with --as local"),
        "{out}"
    );
    let e = fails(&lake, &["table", "list"]);
    assert!(
        e.contains("tester: is not a principal of this lake") || e.contains("tester"),
        "{e}"
    );
    assert!(e.contains("commands act as tester from $USER unless --as NAME"), "{e}");
    ok(&lake, &["--as", "local", "table", "list"]);
    // --as names the administrator; a bad name is refused before anything is created
    let named = dir.path().join("named");
    let o = bin().args(["--as", "dba", "init"]).arg(&named).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("admin:   dba (given with --as)"));
    ok(&named, &["--as", "dba", "table", "list"]);
    let o = bin()
        .args(["--as", "Bad Name", "init"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!dir.path().join("bad").join("stratalake.toml").exists());

    // Typed JSON: numbers, null for what is not shown, RFC 3339 times, {"done": ...}.
    let l = new_lake();
    let p = &l.path;
    let out = ok(p, &["--format", "json", "namespace", "create", "gov"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["done"], "namespace gov created");
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE gov.t (id INT, region VARCHAR); INSERT INTO gov.t VALUES (1, 'n'), (2, 's'); \
             CREATE PRINCIPAL ana; GRANT SELECT ON TABLE gov.t TO ana; \
             CREATE ROW FILTER f ON gov.t FOR ana WHERE region = 'n'",
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "table", "list"])).unwrap();
    let t = rows.iter().find(|r| r["table"] == "t").unwrap();
    assert_eq!((t["version"].as_u64(), t["rows"].as_u64()), (Some(1), Some(2)));
    assert!(t["bytes"].as_u64().unwrap() > 100);
    let seen: Vec<serde_json::Value> =
        serde_json::from_str(&ok(p, &["--as", "ana", "--format", "json", "table", "list"])).unwrap();
    assert!(seen[0]["rows"].is_null() && seen[0]["bytes"].is_null(), "{seen:?}");
    let table = ok(p, &["table", "list"]);
    assert!(table.contains(" KiB") || table.contains(" B "), "{table}");
    let csv = ok(p, &["--format", "csv", "table", "list"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .next_back()
            .unwrap()
            .parse::<u64>()
            .is_ok(),
        "{csv}"
    );
    let nd = ok(p, &["--format", "ndjson", "table", "history", "gov.t"]);
    for line in nd.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = v["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert!(v["version"].is_u64());
    }
    let keys: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "key", "list"])).unwrap();
    assert!(
        keys.iter()
            .all(|k| k["id"]["version"].is_u64() && k["live_files"].is_u64())
    );
    let audit: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "audit"])).unwrap();
    assert!(
        audit
            .iter()
            .all(|r| r["time"].as_str().is_some_and(|t| t.ends_with('Z')) && r.get("time_ms").is_none())
    );
}

#[test]
fn export_writes_what_the_principal_may_read_to_a_private_local_file() {
    let l = new_lake();
    let p = &l.path;
    let dir = p.parent().unwrap();
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE TABLE people (id INT, region VARCHAR, name VARCHAR CLASSIFICATION confidential); \
             INSERT INTO people VALUES (1, 'north', 'Ada'), (2, 'south', 'Bo'), (3, 'north', NULL); \
             CREATE PRINCIPAL ana WITH (clearance = 'internal'); GRANT SELECT ON TABLE people TO ana; \
             CREATE ROW FILTER n ON people FOR ana WHERE region = 'north'",
        ],
    );
    ok(
        p,
        &["policy", "mask", "people", "name", "--to", "ana", "--mask", "redact"],
    );
    let csv = dir.join("north.csv");
    let out = ok(p, &["--as", "ana", "export", "people", "--to", csv.to_str().unwrap()]);
    assert!(
        out.contains("exported 2 row(s)") && out.contains("not encrypted"),
        "{out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("id,region,name\n1,north,"), "{text}");
    assert!(!text.contains("Ada") && !text.contains("south"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&csv).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Parquet and JSON lines, from a query; the administrator sees every row.
    let pq = dir.join("all.parquet");
    ok(
        p,
        &[
            "export",
            "SELECT id, name FROM people ORDER BY id",
            "-o",
            pq.to_str().unwrap(),
        ],
    );
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&pq).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 3);
    let jl = dir.join("x.jsonl");
    let out = ok(
        p,
        &[
            "--format",
            "json",
            "export",
            "SELECT id, name FROM people WHERE id = 3",
            "-o",
            jl.to_str().unwrap(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((doc["rows"].as_u64(), doc["format"].as_str()), (Some(1), Some("jsonl")));
    assert_eq!(std::fs::read_to_string(&jl).unwrap(), "{\"id\":3,\"name\":null}\n");
    // Refusals: an existing file, a statement that writes, a bad format, a query that fails.
    let e = fails(p, &["export", "people", "-o", csv.to_str().unwrap()]);
    assert!(e.contains("exists; pass --force"), "{e}");
    ok(p, &["export", "people", "-o", csv.to_str().unwrap(), "--force"]);
    assert!(std::fs::read_to_string(&csv).unwrap().contains("Ada"));
    let e = fails(
        p,
        &[
            "export",
            "DELETE FROM people",
            "-o",
            dir.join("d.csv").to_str().unwrap(),
        ],
    );
    assert!(e.contains("statements that change data cannot be exported"), "{e}");
    assert_eq!(csv_count(p, "people"), 3);
    let e = fails(p, &["export", "people", "-o", dir.join("d.xlsx").to_str().unwrap()]);
    assert!(e.contains("use parquet, csv or jsonl"), "{e}");
    let e = fails(
        p,
        &[
            "--as",
            "ana",
            "export",
            "SELECT * FROM nosuch",
            "-o",
            dir.join("d.csv").to_str().unwrap(),
        ],
    );
    assert!(e.contains("nothing was exported"), "{e}");
    let e = fails(
        p,
        &[
            "export",
            "SELECT 1/0 AS x FROM people",
            "-o",
            dir.join("z.csv").to_str().unwrap(),
        ],
    );
    assert!(e.contains("nothing was exported"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("partial") || n.starts_with("d.") || n.starts_with("z."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The audit log records each export with its destination.
    let audit: Vec<serde_json::Value> =
        serde_json::from_str(&ok(p, &["--format", "json", "audit", "--principal", "ana"])).unwrap();
    let exports: Vec<&serde_json::Value> = audit.iter().filter(|r| r["kind"] == "export").collect();
    assert_eq!(exports.len(), 2, "{audit:?}");
    assert!(exports[0]["statement"].as_str().unwrap().contains("north.csv (csv)"));
}

/// Lines of the README's command block that need what a test machine lacks end with this
/// comment text, and are not run by [`readme_cli_block_runs_as_written`].
const README_SKIP: &str = "(needs S3)";

/// Where a shell command line leaves its quoting: `Some('"')` or `Some('\'')` while a quote is
/// open, `None` when closed. Comments (`#` after a blank, outside quotes) are skipped.
fn open_quote(text: &str) -> Option<char> {
    let (mut quote, mut comment, mut escaped, mut prev) = (None, false, false, ' ');
    for c in text.chars() {
        match (quote, c) {
            _ if comment => comment = c != '\n',
            _ if escaped => escaped = false,
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some('"'), '"') => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => comment = true,
            _ => {}
        }
        prev = c;
    }
    quote
}

/// The shell commands of the first ```sh block under `## Using the CLI` in the README: a
/// command continues over lines ending in `\` and over newlines inside quotes; blank and
/// comment-only lines are not commands.
fn readme_commands(readme: &str) -> Vec<String> {
    let section = &readme[readme
        .find("\n## Using the CLI\n")
        .expect("a `## Using the CLI` section")..];
    let start = section
        .find("\n```sh\n")
        .expect("a ```sh block under `## Using the CLI`")
        + 7;
    let block = &section[start..start + section[start..].find("\n```").expect("the block's end")];
    let mut commands = Vec::new();
    let mut cur = String::new();
    for line in block.lines() {
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
        if open_quote(&cur).is_none() && !cur.trim_end().ends_with('\\') {
            let c = std::mem::take(&mut cur);
            if !c.trim().is_empty() && !c.trim_start().starts_with('#') {
                commands.push(c);
            }
        }
    }
    assert!(
        cur.is_empty(),
        "the README's command block ends inside a command: {cur}"
    );
    commands
}

#[test]
fn readme_commands_are_parsed_as_a_shell_reads_them() {
    let cmds = readme_commands(
        "x\n## Using the CLI\n\n```sh\na --x \"1,\n  2\" \\\n  --y 'it''s' # it's a comment\n\n# only a comment\nb 'q\"' # (needs S3)\n```\n",
    );
    assert_eq!(
        cmds,
        [
            "a --x \"1,\n  2\" \\\n  --y 'it''s' # it's a comment",
            "b 'q\"' # (needs S3)"
        ]
    );
}

/// The README's "Using the CLI" block, run as a newcomer runs it: every command in order, in an
/// empty folder, through `sh`, with this build's `stratalake` first on the PATH. Only lines
/// ending in [`README_SKIP`] are left out, and only S3 lines may carry it.
#[test]
fn readme_cli_block_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(commands.len() >= 10, "{commands:?}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_stratalake")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut skipped = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        if cmd.trim_end().ends_with(README_SKIP) {
            assert!(cmd.contains("s3://"), "only S3 lines may be skipped: {cmd}");
            skipped.push(cmd);
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("USER", "tester")
            .env_remove("STRATALAKE_LAKE")
            .env_remove("STRATALAKE_PRINCIPAL")
            .env_remove("STRATALAKE_KEY_FILE")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README command {} of {} failed ({}):\n{cmd}\n--- stdout\n{}\n--- stderr\n{}",
            i + 1,
            commands.len(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(skipped.len() <= 1, "{skipped:?}");
}

/// `tier add` and `tier remove`: stratalake.toml changed by the administrator only, checked,
/// replaced atomically (kept private, its comments kept when a tier is appended), audited; a
/// tier with files or objects, or named by a rule, stays. Plus the capacity chart of a new lake.
#[test]
fn tier_add_and_remove_change_the_config_safely() {
    let l = new_lake();
    let p = &l.path;
    let dir = p.parent().unwrap();
    let cfg = p.join("stratalake.toml");
    add_config(p, "# hand-written: ask the storage team before changing tiers");
    let out = ok(p, &["tier", "add", "cold", "--url", "cold", "--capacity", "1GiB"]);
    assert!(out.contains("tier cold added") && out.contains("/lake/cold"), "{out}");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        toml.contains("# hand-written") && toml.contains("name = \"cold\""),
        "{toml}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let tiers: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "tier", "list"])).unwrap();
    assert_eq!((tiers.len(), tiers[1]["name"].as_str()), (2, Some("cold")), "{tiers:?}");

    // refused: a name taken, a bad name, a place taken or inside another, a folder in use,
    // credentials, a bad capacity; nothing written
    let before = std::fs::read_to_string(&cfg).unwrap();
    for (args, why) in [
        (vec!["cold", "--url", "elsewhere"], "exists already"),
        (vec!["Cold2", "--url", "c2"], "invalid tier name"),
        (vec!["warm", "--url", "cold"], "every tier needs a place of its own"),
        (
            vec!["warm", "--url", "data/warm"],
            "every tier needs a place of its own",
        ),
        (vec!["warm", "--url", "."], "every tier needs a place of its own"),
        (vec!["warm", "--url", "memory://w"], "memory://"),
        (
            vec!["warm", "--url", "w", "--option", "secret_access_key=x"],
            "belongs in the environment",
        ),
        (vec!["warm", "--url", "w", "--capacity", "lots"], "capacity"),
        (vec!["warm", "--url", "w", "--before", "nope"], "no tier of that name"),
    ] {
        let e = fails(p, &[&["tier", "add"][..], &args].concat());
        assert!(e.contains(why), "{args:?}: {e}");
    }
    std::fs::create_dir_all(dir.join("used")).unwrap();
    write(&dir.join("used"), "other.parquet", b"");
    let e = fails(p, &["tier", "add", "warm", "--url", dir.join("used").to_str().unwrap()]);
    assert!(e.contains("holds objects already"), "{e}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);
    assert!(!p.join("w").exists() && !p.join("data/warm").exists());
    ok(p, &["principal", "create", "ana"]);
    let e = fails(p, &["--as", "ana", "tier", "add", "warm", "--url", "warm"]);
    assert!(e.contains("ADMIN"), "{e}");
    let e = fails(p, &["--as", "ana", "tier", "remove", "cold"]);
    assert!(e.contains("ADMIN"), "{e}");

    // --before places it in the order (the file is rendered anew)
    ok(
        p,
        &[
            "tier", "add", "warm", "--url", "warm", "--before", "cold", "--cache", "false",
        ],
    );
    let tiers: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "tier", "list"])).unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hot", "warm", "cold"]);
    ok(p, &["tier", "remove", "warm"]);

    // a tier with files, or with objects left, or named by a rule stays
    let csv = write(dir, "t.csv", b"id,region\n1,a\n2,b\n3,a\n");
    ingest_by_region(p, &csv);
    ok(p, &["tier", "move", "--to", "cold", "t"]);
    assert_eq!(csv_count(p, "t"), 3);
    let e = fails(p, &["tier", "remove", "cold"]);
    assert!(e.contains("2 live file(s) of default.t"), "{e}");
    ok(p, &["tier", "move", "--to", "hot", "t"]);
    let e = fails(p, &["tier", "remove", "cold"]);
    assert!(e.contains("still holds objects"), "{e}"); // the old copies the moves left
    ok(p, &["table", "vacuum", "t", "--retain", "0s", "--force"]);
    assert!(walk(&p.join("cold")).is_empty());
    add_config(p, "[[rule]]\nname = \"down\"\nto = \"cold\"\nsince_write = \"30d\"\n");
    let e = fails(p, &["tier", "remove", "cold"]);
    assert!(e.contains("[[rule]] 1 (\"down\")"), "{e}");
    let e = fails(p, &["tier", "remove", "hot"]);
    assert!(e.contains("metadata_tier"), "{e}");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, &toml[..toml.find("[[rule]]").unwrap()]).unwrap();
    ok(p, &["tier", "remove", "cold"]);
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("cold"));
    assert_eq!(csv_count(p, "t"), 3);
    let audit: Vec<serde_json::Value> = serde_json::from_str(&ok(p, &["--format", "json", "audit"])).unwrap();
    let tier: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["kind"] == "tier" && !r["statement"].as_str().unwrap().starts_with("TIER RUN"))
        .map(|r| (r["statement"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert!(tier.contains(&("TIER ADD cold cold", "ok")), "{tier:?}");
    assert!(tier.contains(&("TIER ADD warm warm", "denied")), "{tier:?}");
    assert!(tier.contains(&("TIER REMOVE cold", "ok")), "{tier:?}");
    assert!(
        tier.iter().all(|(s, _)| !s.contains("=x")),
        "option values are not audited: {tier:?}"
    );

    // a lake with one day of history: a sentence instead of an empty chart
    let html = dir.join("capacity.html");
    ok(p, &["capacity", "--html", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("Not enough history yet") && !page.contains("<svg"),
        "{page}"
    );

    // an S3 tier, with its options (credentials from the environment)
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: the S3 tier is not tried (run through scripts/test.sh)");
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let url = format!(
        "s3://{bucket}/cli-tier-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let endpoint = format!("endpoint={endpoint}");
    ok(
        p,
        &[
            "tier",
            "add",
            "archive",
            "--url",
            &url,
            "--option",
            &endpoint,
            "--option",
            "allow_http=true",
            "--option",
            "region=us-east-1",
        ],
    );
    let e = fails(
        p,
        &[
            "tier",
            "add",
            "again",
            "--url",
            &format!("{url}/inner"),
            "--option",
            &endpoint,
        ],
    );
    assert!(e.contains("every tier needs a place of its own"), "{e}");
    ok(p, &["tier", "move", "--to", "archive", "t"]);
    assert_eq!(csv_count(p, "t"), 3);
    assert!(ok(p, &["verify"]).contains("no problems found"));
    let e = fails(p, &["tier", "remove", "archive"]);
    assert!(e.contains("live file(s)"), "{e}");
}

/// The binary with nothing of this process's environment but `vars` (and USER): no `AWS_*`,
/// `GOOGLE_*` or `AZURE_*` leaks in from scripts/test.sh.
fn bin_with_only(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stratalake"));
    c.env_clear().env("USER", "tester");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// (success, stdout, stderr) of a command.
fn outcome(c: &mut Command) -> (bool, String, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Whether this machine says it is an EC2 instance (then instance metadata is asked, by design).
fn on_ec2() -> bool {
    ["sys_vendor", "board_vendor", "bios_vendor"].iter().any(|f| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{f}"))
            .is_ok_and(|v| v.trim().to_ascii_lowercase().starts_with("amazon"))
    })
}

#[test]
fn s3_credentials_and_endpoint_from_aws_profiles() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh");
        return;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    // moto takes any keys; these are recognisable so that no output may show them
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = AKIDPROFILEDEFAULT\naws_secret_access_key = sEcReT/default+value\n\
         [other]\naws_access_key_id = AKIDPROFILEOTHER\naws_secret_access_key = sEcReT/other+value\n\
         [half]\naws_secret_access_key = sEcReT/half+value\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n\
             [profile other]\nregion = us-east-1\nservices = local\n\
             [services local]\ns3 =\n  endpoint_url = {endpoint}\n"
        ),
    )
    .unwrap();
    let h = home.path().to_str().unwrap();
    let keys = home.path().join("lake.keys");
    let url = format!("s3://{bucket}/profilelake-{}", std::process::id());
    let k = keys.to_str().unwrap();
    // the default profile, no AWS_* variable at all, an http:// endpoint without allow_http
    let s3 = |extra: &[(&str, &str)], args: &[&str]| {
        let mut vars = vec![("HOME", h), ("STRATALAKE_KEY_FILE", k)];
        vars.extend_from_slice(extra);
        outcome(bin_with_only(&vars).args(["--lake", &url]).args(args))
    };
    let (okk, _, err) = s3(&[], &["init", "--key-file", k]);
    assert!(okk, "{err}");
    let (okk, _, err) = s3(
        &[],
        &[
            "sql",
            "-c",
            "CREATE TABLE t (x INT NOT NULL); INSERT INTO t VALUES (1), (2)",
        ],
    );
    assert!(okk, "{err}");
    // a named profile whose endpoint is in a services section
    let (okk, out, err) = s3(
        &[("AWS_PROFILE", "other")],
        &["--format", "csv", "sql", "-c", "SELECT sum(x) AS s FROM t"],
    );
    assert!(okk, "{err}");
    assert_eq!(out, "s\n3\n");
    // a profile that does not exist, and one with half a key pair: one line, no secret
    for (profile, expect) in [
        ("nope", "AWS profile \"nope\" not found"),
        ("half", "has aws_secret_access_key but no aws_access_key_id"),
    ] {
        let (okk, out, err) = s3(&[("AWS_PROFILE", profile)], &["table", "list"]);
        assert!(!okk && err.contains(expect) && err.lines().count() == 1, "{err}");
        assert!(!format!("{out}{err}").contains("sEcReT"), "{err}");
    }
}

#[test]
fn no_cloud_credentials_fail_at_once_in_one_line() {
    if on_ec2() {
        eprintln!("an EC2 instance: instance metadata is asked there, by design");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let keys = home.path().join("k.keys");
    // nothing listens on port 9: were a request sent, the error would be another one
    for (url, vars, expect) in [
        (
            "s3://bucket/lake",
            vec![("HOME", h), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
            "no S3 credentials found (looked in: environment AWS_ACCESS_KEY_ID",
        ),
        (
            "gs://bucket/lake",
            vec![("HOME", h)],
            "no GCS credentials found (looked in: ",
        ),
        (
            "az://container/lake",
            vec![("HOME", h), ("AZURE_STORAGE_ACCOUNT_NAME", "acct")],
            "no Azure credentials found (looked in: ",
        ),
    ] {
        let started = std::time::Instant::now();
        let (okk, _, err) = outcome(
            bin_with_only(&vars)
                .args(["--lake", url, "init", "--key-file"])
                .arg(&keys),
        );
        let took = started.elapsed();
        assert!(!okk && err.starts_with("error: ") && err.contains(expect), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(took < std::time::Duration::from_secs(2), "{url}: {took:?}");
        assert!(!keys.exists(), "nothing is written when the store cannot be reached");
    }
    let (_, _, err) = outcome(
        bin_with_only(&[("HOME", h)])
            .args(["--lake", "s3://bucket/lake", "init", "--key-file"])
            .arg(&keys),
    );
    assert!(
        err.contains(&format!("{h}/.aws/credentials profile \"default\" (no such file)"))
            && err.contains("instance metadata (skipped: not an EC2 instance"),
        "{err}"
    );
    let (_, _, err) = outcome(
        bin_with_only(&[("HOME", h), ("AWS_EC2_METADATA_DISABLED", "true")]).args([
            "--lake",
            "s3://bucket/lake",
            "table",
            "list",
        ]),
    );
    assert!(
        err.contains("AWS_EC2_METADATA_DISABLED is set") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_missing_bucket_is_one_line_naming_it() {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("k.keys");
    let bucket = format!("stratalake-missing-{}", std::process::id());
    let url = format!("s3://{bucket}/lake");
    let vars = [
        ("HOME", home.path().to_str().unwrap()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let expect = format!("bucket \"{bucket}\" does not exist at {endpoint}");
    for args in [&["init", "--key-file", keys.to_str().unwrap()][..], &["table", "list"]] {
        let (okk, _, err) = outcome(bin_with_only(&vars).args(["--lake", &url]).args(args));
        assert!(!okk && err.contains(&expect), "{err}");
        assert!(err.lines().count() == 1 && !err.contains("<?xml"), "{err}");
    }
    // a folder lake whose hot tier is in the missing bucket
    let lake = home.path().join("lake");
    let (okk, _, err) = outcome(bin_with_only(&vars).arg("init").arg(&lake).args(["--store", &url]));
    assert!(!okk && err.contains(&expect) && err.lines().count() == 1, "{err}");
    assert!(!lake.join("stratalake.toml").exists());
}

#[test]
fn whole_lake_in_azure_blob_storage() {
    let Ok(azurite) = std::env::var("AZURITE_BLOB_STORAGE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the Azure tests: run them through scripts/test.sh"
        );
        eprintln!("AZURITE_BLOB_STORAGE_URL not set: run through scripts/test.sh");
        return;
    };
    let container = std::env::var("STRATALAKE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "stratalake-test".into());
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("lake.keys");
    let k = keys.to_str().unwrap();
    let vars = [
        ("HOME", home.path().to_str().unwrap()),
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", azurite.as_str()),
        ("STRATALAKE_KEY_FILE", k),
    ];
    let url = format!("az://{container}/urllake-{}", std::process::id());
    let az = |args: &[&str]| outcome(bin_with_only(&vars).args(["--lake", &url]).args(args));
    let (okk, _, err) = az(&["init", "--key-file", k]);
    assert!(okk, "{err}");
    let (okk, _, err) = az(&[
        "sql",
        "-c",
        "CREATE TABLE t (x INT NOT NULL); INSERT INTO t VALUES (1), (2), (3)",
    ]);
    assert!(okk, "{err}");
    let (okk, out, err) = az(&["--format", "csv", "sql", "-c", "SELECT sum(x) AS s FROM t"]);
    assert!(okk, "{err}");
    assert_eq!(out, "s\n6\n");
    let (okk, out, err) = az(&["verify"]);
    assert!(okk && out.contains("no problems found"), "{out}{err}");
}

#[test]
fn passwords_and_tokens_are_set_listed_and_revoked_and_never_stored_in_clear() {
    let l = new_lake();
    let p = &l.path;
    ok(p, &["principal", "create", "ana"]);
    // no terminal and no --password-stdin: refused, nothing changed
    let o = bin()
        .arg("--lake")
        .arg(p)
        .args(["principal", "passwd", "ana"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--password-stdin"));
    let o = sql_stdin(p, &["principal", "passwd", "ana", "--password-stdin"], "\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("is empty"), "{o:?}");
    let o = sql_stdin(p, &["principal", "passwd", "ana", "--password-stdin"], "pw for ana 1\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("principal ana: password set"));
    // someone else may not set it
    let o = bin()
        .arg("--lake")
        .arg(p)
        .args(["--as", "ana", "principal", "passwd", "tester", "--password-stdin"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());

    // a token: printed once on stdout, its id in the listing, gone after revoke
    let out = ok(p, &["token", "create", "ana", "--expires", "30d", "--label", "laptop"]);
    let token = out.trim().to_string();
    assert!(token.starts_with("slk_") && !token.contains(' '), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(p, &["--format", "json", "token", "create", "ana"])).unwrap();
    assert!(json["token"].as_str().unwrap().starts_with("slk_"));
    let list = ok(p, &["--format", "csv", "token", "list", "ana"]);
    let id = &token[4..16];
    assert!(
        list.contains(id) && list.contains("laptop") && list.contains("valid"),
        "{list}"
    );
    assert!(!list.contains(&token), "the secret is listed: {list}");
    let e = fails(p, &["token", "create", "ana", "--expires", "soon"]);
    assert!(e.contains("--expires"), "{e}");
    ok(p, &["token", "revoke", "ana", id]);
    assert!(!ok(p, &["--format", "csv", "token", "list", "ana"]).contains(id));
    let e = fails(p, &["token", "revoke", "ana", id]);
    assert!(e.contains("no such token"), "{e}");

    // the password and the token are nowhere in the lake folder; the audit says what was done
    let mut all = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.extend(std::fs::read(path).unwrap());
            }
        }
    }
    let all = String::from_utf8_lossy(&all);
    assert!(!all.contains("pw for ana 1") && !all.contains(&token));
    let audit = ok(p, &["--format", "csv", "audit"]);
    assert!(
        audit.contains("SET PASSWORD FOR ana") && audit.contains(&format!("REVOKE TOKEN {id} FOR ana")),
        "{audit}"
    );
}

#[test]
fn serve_takes_its_settings_from_the_lake_configuration_and_stops_cleanly_on_sigterm() {
    use std::io::BufRead;
    let l = new_lake();
    let p = &l.path;
    ok(
        p,
        &[
            "sql",
            "-c",
            "CREATE PRINCIPAL ana; CREATE TABLE t (id BIGINT CLASSIFICATION public); \
             INSERT INTO t VALUES (1), (2); GRANT SELECT ON TABLE t TO ana",
        ],
    );
    let o = sql_stdin(p, &["principal", "passwd", "ana", "--password-stdin"], "ana's pw\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = p.join("stratalake.toml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    // a bad setting in [server] is named, and nothing is served
    std::fs::write(
        &cfg,
        format!("{original}\n[server]\nallow_plaintext = true\nidle_timeout = \"soon\"\n"),
    )
    .unwrap();
    let e = fails(p, &["serve"]);
    assert!(e.contains("[server] idle_timeout"), "{e}");
    // --cert and --key stand for the file's pair, even half of one
    std::fs::write(&cfg, format!("{original}\n[server]\ncert = \"half.pem\"\n")).unwrap();
    let e = fails(p, &["serve"]);
    assert!(e.contains("[server] cert: given without key"), "{e}");
    let e = fails(p, &["serve", "--cert", "flag.pem", "--key", "flag.key"]);
    assert!(e.contains("flag.pem") && !e.contains("[server]"), "{e}");
    std::fs::write(
        &cfg,
        format!("{original}\n[server]\nlisten = \"127.0.0.1:0\"\nallow_plaintext = true\nshutdown_grace = \"2s\"\n"),
    )
    .unwrap();
    let mut child = bin()
        .arg("--lake")
        .arg(p)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // the address comes from the section (port 0: a free one), plaintext as it allows
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.strip_suffix(" (PostgreSQL protocol, plaintext on loopback)\n"))
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    let port = addr.strip_prefix("127.0.0.1:").unwrap();
    let psql = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM t"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=ana dbname=lake sslmode=disable connect_timeout=10"
        ))
        .env("PGPASSWORD", "ana's pw")
        .output()
        .expect("psql (Debian's postgresql-client) is installed by scripts/test.sh");
    assert!(psql.status.success(), "{}", String::from_utf8_lossy(&psql.stderr));
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "2");
    // SIGTERM: it stops accepting, closes its (idle) connections and ends with success
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(rest, "stopped\n");
}
