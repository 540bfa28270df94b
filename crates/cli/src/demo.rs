//! `stratalake demo`: a building-permit register of a city administration, ingested encrypted
//! and queried.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use stratalake::arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use stratalake::arrow::datatypes::SchemaRef;
use stratalake::table::access::{AccessAction, Grant, Privilege, Securable};
use stratalake::{Lake, Output, Session};

const DISTRICTS: [&str; 8] = [
    "altstadt",
    "hafen",
    "nordend",
    "ostpark",
    "suedhang",
    "westfeld",
    "muehlbach",
    "seeufer",
];
const TYPES: [&str; 6] = [
    "new_building",
    "renovation",
    "demolition",
    "extension",
    "change_of_use",
    "signage",
];
const STATUS: [&str; 4] = ["submitted", "under_review", "approved", "rejected"];
const FIRST: [&str; 12] = [
    "Anna", "Ben", "Clara", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca",
];
const LAST: [&str; 10] = [
    "Schmidt", "Yilmaz", "Novak", "Rossi", "Berg", "Kowalski", "Haas", "Dubois", "Jensen", "Weber",
];
const STREETS: [&str; 8] = [
    "Lindenweg",
    "Hafenstrasse",
    "Marktplatz",
    "Bergstrasse",
    "Am Ufer",
    "Ringstrasse",
    "Schulgasse",
    "Parkallee",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic data, same on every machine
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn permits(schema: &SchemaRef, rng: &mut Rng, first_id: i64, n: usize) -> Result<RecordBatch> {
    let start_us: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
    let year_us: i64 = 2 * 365 * 86_400 * 1_000_000;
    let mut ids = Vec::with_capacity(n);
    let (mut issued, mut district, mut ptype, mut status) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut name, mut nid, mut addr, mut cost, mut fee) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        ids.push(first_id + i as i64);
        issued.push(start_us + (rng.next() % year_us as u64) as i64);
        district.push(rng.pick(&DISTRICTS));
        let t = rng.pick(&TYPES);
        ptype.push(t);
        status.push(rng.pick(&STATUS));
        name.push(format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST)));
        nid.push(format!("L{:02}{:07}", rng.next() % 100, rng.next() % 10_000_000));
        addr.push(format!("{} {}", rng.pick(&STREETS), 1 + rng.next() % 180));
        let base: i64 = match t {
            "new_building" => 35_000_000,
            "extension" => 9_000_000,
            "renovation" => 4_000_000,
            "demolition" => 2_500_000,
            "change_of_use" => 1_000_000,
            _ => 150_000,
        };
        let c = base + (rng.next() % base as u64) as i64; // cents
        cost.push(c as i128);
        fee.push((c / 200 + 5_000) as i128);
    }
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)) as ArrayRef,
            Arc::new(TimestampNanosecondArray::from(
                issued.iter().map(|us| us * 1000).collect::<Vec<i64>>(),
            )),
            Arc::new(StringArray::from(district)),
            Arc::new(StringArray::from(ptype)),
            Arc::new(StringArray::from(status)),
            Arc::new(StringArray::from(name)),
            Arc::new(StringArray::from(nid)),
            Arc::new(StringArray::from(addr)),
            Arc::new(Decimal128Array::from(cost).with_precision_and_scale(14, 2)?),
            Arc::new(Decimal128Array::from(fee).with_precision_and_scale(12, 2)?),
        ],
    )?)
}

async fn query(lake: &Session, title: &str, sql: &str) -> Result<()> {
    println!("\n-- {title}\n{sql}");
    let started = Instant::now();
    for out in lake
        .sql_session()
        .execute(sql)
        .await
        .with_context(|| format!("demo query failed: {sql}"))?
    {
        if let Output::Rows { batches, .. } = out {
            println!("{}", stratalake::arrow::util::pretty::pretty_format_batches(&batches)?);
        }
    }
    println!("({:.3} s)", started.elapsed().as_secs_f64());
    Ok(())
}

pub async fn run(dir: &Path, rows: usize, principal: &str) -> Result<()> {
    let total = Instant::now();
    let lake = if dir.join(stratalake::CONFIG_FILE).exists() {
        println!("using the lake at {}", dir.display());
        Lake::builder(dir).open().await?
    } else {
        println!(
            "creating a lake at {} (one local `hot` tier, master keys in master.keys, mode 0600)",
            dir.display()
        );
        Lake::builder(dir).admin(principal).create().await?
    };
    let lake = lake.session(principal);
    let s = lake.sql_session();
    s.execute("CREATE NAMESPACE IF NOT EXISTS city; DROP TABLE IF EXISTS city.building_permits")
        .await?;
    let ddl = "CREATE TABLE city.building_permits (
    permit_id      BIGINT NOT NULL    CLASSIFICATION public,
    issued_at      TIMESTAMP NOT NULL CLASSIFICATION public,
    district       VARCHAR NOT NULL   CLASSIFICATION public,
    permit_type    VARCHAR NOT NULL   CLASSIFICATION public,
    status         VARCHAR NOT NULL   CLASSIFICATION internal,
    applicant_name VARCHAR            CLASSIFICATION confidential,
    national_id    VARCHAR            CLASSIFICATION secret,
    site_address   VARCHAR            CLASSIFICATION confidential,
    estimated_cost DECIMAL(14,2)      CLASSIFICATION internal,
    fee            DECIMAL(12,2)      CLASSIFICATION internal
) PARTITIONED BY (district, year(issued_at))";
    println!("\n{ddl}");
    s.execute(ddl).await?;
    let table = lake.table("city.building_permits").await?;
    let schema = table.snapshot().await?.metadata.schema.arrow_schema();

    let mut rng = Rng(0x5EED_CAFE_F00D_1234);
    let loads = 4usize;
    let per = rows.div_ceil(loads);
    println!("\ningesting {rows} permits in {loads} commits (fresh data keys per file, one key per classification):");
    let mut next_id = 1i64;
    for l in 0..loads {
        let n = per.min(rows.saturating_sub(l * per));
        if n == 0 {
            break;
        }
        let started = Instant::now();
        let b = permits(&schema, &mut rng, next_id, n)?;
        next_id += n as i64;
        let v = table.append(&[b], lake.principal()).await?;
        let snap = table.snapshot().await?;
        println!(
            "  load {}: {n} rows -> version {v} ({} files, {:.1} MB encrypted, {:.0} rows/s)",
            l + 1,
            snap.files.len(),
            snap.bytes() as f64 / 1e6,
            n as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
    }

    let snap = table.snapshot().await?;
    let one = snap.files.values().next().context("no files were written")?;
    let path = lake
        .dir()
        .unwrap_or(dir)
        .join("data")
        .join("city/building_permits")
        .join(&one.path);
    let plain = std::fs::File::open(&path)
        .map_err(anyhow::Error::from)
        .map(stratalake::table::read::plain_parquet_check);
    println!(
        "\nA data file read without keys ({}):\n  {}",
        one.path,
        match plain {
            Ok(msg) => msg,
            Err(e) => format!("cannot open: {e}"),
        }
    );

    query(&lake, "permits per district (partition columns, public)", "SELECT district, count(*) AS permits, sum(fee) AS fees FROM city.building_permits GROUP BY district ORDER BY permits DESC").await?;
    query(&lake, "approval rate by permit type", "SELECT permit_type, round(avg(CASE WHEN status = 'approved' THEN 1.0 ELSE 0.0 END) * 100, 1) AS approved_pct, CAST(avg(estimated_cost) AS DECIMAL(14,2)) AS avg_cost FROM city.building_permits GROUP BY permit_type ORDER BY approved_pct DESC").await?;
    query(&lake, "partition pruning: one district, one year", "SELECT count(*) AS n, min(issued_at) AS first, max(issued_at) AS last FROM city.building_permits WHERE district = 'hafen' AND issued_at >= TIMESTAMP '2025-01-01 00:00:00'").await?;
    query(
        &lake,
        "time travel: the table after the first load",
        "SELECT count(*) AS rows_at_version_1 FROM city.building_permits VERSION AS OF 1",
    )
    .await?;
    query(&lake, "SQL writes commit like ingest", "INSERT INTO city.building_permits VALUES (999999, TIMESTAMP '2025-06-01 09:30:00', 'hafen', 'signage', 'submitted', 'Test Person', 'L000000000', 'Hafenstrasse 1', 1500.00, 57.50)").await?;

    // Access control: an analyst cleared for `internal` data, with read access to the namespace.
    let state = lake.access().state().await?;
    let mut actions = Vec::new();
    if !state.principals.contains_key("analyst") {
        actions.push(AccessAction::CreatePrincipal {
            name: "analyst".into(),
            kind: "user".into(),
            attributes: [("clearance".to_string(), "internal".to_string())].into(),
        });
    }
    let grant = Grant {
        grantee: "analyst".into(),
        privilege: Privilege::Select,
        on: Securable::Namespace { name: "city".into() },
    };
    if !state.grants.contains(&grant) {
        actions.push(AccessAction::Grant(grant));
    }
    if !actions.is_empty() {
        lake.access().change(actions).await?;
    }
    println!("\n-- principal `analyst`: cleared for internal, SELECT on namespace city");
    let analyst = lake.session("analyst");
    query(&analyst, "the analyst's view: confidential and secret columns come back NULL, their keys never unwrapped", "SELECT permit_id, district, status, applicant_name, national_id, fee FROM city.building_permits ORDER BY permit_id LIMIT 3").await?;
    match analyst.sql("INSERT INTO city.building_permits VALUES (1, TIMESTAMP '2025-01-01 00:00:00', 'hafen', 'signage', 'submitted', NULL, NULL, NULL, 1.00, 1.00)").await {
        Ok(_) => anyhow::bail!("the analyst must not be able to write"),
        Err(e) => println!("\n-- the analyst tries to write:\n{e}"),
    }

    println!("\n-- history");
    for h in table.history(None).await? {
        println!(
            "  v{:<3} {:<21} {:<14} {:<12} +{} rows, +{} files",
            h.version,
            stratalake::table::write::fmt_ms(h.timestamp_ms),
            h.operation,
            h.principal,
            h.counts.rows_added,
            h.counts.files_added
        );
    }
    let report = lake.verify().tables(["city.building_permits"]).await?;
    println!(
        "\n-- verify: {} log versions, {} files, {} rows re-read and decrypted; {} problem(s)",
        report.versions,
        report.files,
        report.rows,
        report.problems.len()
    );
    println!(
        "\ndemo finished in {:.1} s. Try: stratalake --lake {} sql",
        total.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}
