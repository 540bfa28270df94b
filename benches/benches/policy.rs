//! TPC-H queries 1, 3, 5, 6 and 10 through Stratalake — encrypted tables, a session as a
//! non-administrator principal under a row filter (on lineitem) and a column mask (on customer)
//! — against DataFusion reading the same data as plain Parquet, in one run.
//!
//! `cargo bench -p stratalake-benches --bench policy` (scale factor: STRATALAKE_BENCH_SF,
//! default 0.1; runs per query and side: STRATALAKE_BENCH_RUNS, default 5; medians).
//!
//! Two restricted principals, each under a row filter on lineitem that keeps every row and a
//! mask on a column no query filters on, so every side returns the same results:
//! `analyst` (`l_quantity >= 0`: the files' statistics prove it true for every row, so it is
//! skipped, as Iceberg's residual evaluation would) and `checker` (`l_returnflag IN ('A', 'N',
//! 'R')`: no statistic proves it, so it is evaluated on every row). What is measured is the
//! cost of enforcement and decryption.

mod common;

use common::{env_or, median, write_plain};

use std::time::Instant;

use arrow::array::RecordBatch;
use stratalake::datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use stratalake::{LakeConfig, TableSchema};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{CustomerArrow, LineItemArrow, NationArrow, OrderArrow, RegionArrow, SupplierArrow};

const QUERIES: [(&str, &str); 5] = [
    (
        "Q1",
        "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, \
            sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, \
            avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order \
            from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day \
            group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus",
    ),
    (
        "Q3",
        "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority \
            from customer, orders, lineitem \
            where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey \
            and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' \
            group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10",
    ),
    (
        "Q5",
        "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue \
            from customer, orders, lineitem, supplier, nation, region \
            where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey \
            and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey \
            and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' and o_orderdate < date '1995-01-01' \
            group by n_name order by revenue desc",
    ),
    (
        "Q6",
        "select sum(l_extendedprice * l_discount) as revenue from lineitem \
            where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
            and l_discount between 0.05 and 0.07 and l_quantity < 24",
    ),
    (
        "Q10",
        "select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name, c_address, c_phone, c_comment \
            from customer, orders, lineitem, nation \
            where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date '1993-10-01' \
            and o_orderdate < date '1994-01-01' and l_returnflag = 'R' and c_nationkey = n_nationkey \
            group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment order by revenue desc limit 20",
    ),
];

fn main() {
    let sf: f64 = env_or("STRATALAKE_BENCH_SF", 0.1);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 5);
    let b = 8192;
    let tables: Vec<(&str, Vec<RecordBatch>)> = vec![
        (
            "lineitem",
            LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
        (
            "orders",
            OrderArrow::new(OrderGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
        (
            "customer",
            CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
        (
            "supplier",
            SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
        (
            "nation",
            NationArrow::new(NationGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
        (
            "region",
            RegionArrow::new(RegionGenerator::new(sf, 1, 1))
                .with_batch_size(b)
                .collect::<Result<_, _>>()
                .unwrap(),
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain_dir = tempfile::tempdir().unwrap();
    let lake_dir = tempfile::tempdir().unwrap();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    rt.block_on(async {
        // Baseline: DataFusion over plain Parquet files.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads));
        for (name, batches) in &tables {
            let path = plain_dir.path().join(format!("{name}.parquet"));
            write_plain(&path, batches);
            ctx.register_parquet(*name, path.to_str().unwrap(), ParquetReadOptions::default())
                .await
                .unwrap();
        }
        // Stratalake: the same batches as encrypted tables, read by a restricted principal.
        let admin = common::open_lake(
            LakeConfig::single_tier(lake_dir.path().to_str().unwrap()),
            None,
            common::memory_keys(),
            "admin",
        )
        .await;
        admin
            .catalog_unchecked()
            .create_namespace("default", true, "admin")
            .await
            .unwrap();
        admin.access().bootstrap_admin().await.unwrap();
        for (name, batches) in &tables {
            let mut ts = TableSchema::from_arrow(&batches[0].schema(), "internal");
            for c in ts
                .columns
                .iter_mut()
                .filter(|c| c.name == "c_phone" || c.name == "c_address")
            {
                c.classification = "confidential".into();
            }
            let t = admin.create_table(name, ts).await.unwrap();
            t.append(batches, "admin").await.unwrap();
        }
        admin
            .sql(
                "CREATE PRINCIPAL analyst WITH (clearance = 'internal'); \
                  GRANT SELECT ON NAMESPACE default TO analyst; \
                  CREATE ROW FILTER all_quantities ON lineitem FOR analyst WHERE l_quantity >= 0; \
                  CREATE MASK ON customer (c_phone) FOR analyst AS PARTIAL(4); \
                  CREATE PRINCIPAL checker WITH (clearance = 'internal'); \
                  GRANT SELECT ON NAMESPACE default TO checker; \
                  CREATE ROW FILTER known_flags ON lineitem FOR checker WHERE l_returnflag IN ('A', 'N', 'R'); \
                  CREATE MASK ON customer (c_phone) FOR checker AS PARTIAL(4)",
            )
            .await
            .unwrap();
        let analyst = admin.session("analyst");
        let session = analyst.sql_session();
        let checker = admin.session("checker").sql_session();
        // the same encrypted tables read by the administrator (no policies): separates the cost
        // of encryption from the cost of enforcement
        let admin_session = admin.sql_session();

        if let Ok(q) = std::env::var("STRATALAKE_BENCH_EXPLAIN") {
            // Show the physical plans of one query on each side, for investigating a ratio.
            let sql = QUERIES
                .iter()
                .find(|(n, _)| *n == q)
                .map(|(_, s)| *s)
                .unwrap_or(QUERIES[0].1);
            for (side, df) in [
                ("datafusion", ctx.sql(sql).await.unwrap()),
                ("stratalake admin", admin_session.sql(sql).await.unwrap()),
                ("stratalake analyst", session.sql(sql).await.unwrap()),
                ("stratalake checker", checker.sql(sql).await.unwrap()),
            ] {
                let plan = df.create_physical_plan().await.unwrap();
                println!(
                    "-- {side}\n{}",
                    stratalake::datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
                );
            }
        }
        println!("TPC-H SF {sf}, {threads} threads, {runs} runs per query and side (medians)");
        println!(
            "{:<5} {:>10} {:>14} {:>16} {:>17} {:>25}",
            "query", "datafusion", "admin", "analyst (proven)", "checker (per row)", "datafusion + filter"
        );
        let sides = [&admin_session, &session, &checker];
        let mut logs = [0.0f64; 3];
        // DataFusion with the checker's filter written into the query: what evaluating that
        // predicate costs by itself, to tell it apart from the cost of enforcing it
        let mut log_enforcement = 0.0f64;
        for (name, sql) in QUERIES {
            let with_filter = sql.replace(
                " lineitem",
                " (select * from lineitem where l_returnflag in ('A', 'N', 'R')) lineitem",
            );
            let (mut plain, mut inlined) = (Vec::new(), Vec::new());
            let mut times: [Vec<std::time::Duration>; 3] = Default::default();
            for _ in 0..runs {
                let started = Instant::now();
                let a = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                plain.push(started.elapsed());
                let started = Instant::now();
                ctx.sql(&with_filter).await.unwrap().collect().await.unwrap();
                inlined.push(started.elapsed());
                let n = |b: &[RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
                for (k, s) in sides.iter().enumerate() {
                    let started = Instant::now();
                    let r = s.sql(sql).await.unwrap().collect().await.unwrap();
                    times[k].push(started.elapsed());
                    assert_eq!(n(&a), n(&r), "{name}: every side must return the same number of rows");
                }
            }
            let p = median(plain).as_secs_f64();
            let f = median(inlined).as_secs_f64();
            let mut line = format!("{name:<5} {p:>8.3} s");
            let mut checker_time = 0.0;
            for (k, t) in times.into_iter().enumerate() {
                let t = median(t).as_secs_f64();
                logs[k] += (t / p).ln();
                checker_time = t;
                line.push_str(&format!(" {t:>6.3} s {:>5.2}x", t / p));
            }
            log_enforcement += (checker_time / f).ln();
            line.push_str(&format!(" {f:>8.3} s (checker {:.2}x)", checker_time / f));
            println!("{line}");
        }
        // The fixed cost of a statement (catalog and log reads, audit record): a one-row table.
        let probe = "select r_name from region where r_regionkey = 0";
        let (mut p0, mut s0) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let started = Instant::now();
            ctx.sql(probe).await.unwrap().collect().await.unwrap();
            p0.push(started.elapsed());
            let started = Instant::now();
            session.sql(probe).await.unwrap().collect().await.unwrap();
            s0.push(started.elapsed());
        }
        println!(
            "fixed cost probe (one row of region): datafusion {:.1} ms, stratalake analyst {:.1} ms",
            median(p0).as_secs_f64() * 1e3,
            median(s0).as_secs_f64() * 1e3
        );
        let n = QUERIES.len() as f64;
        println!(
            "geometric mean, administrator (encryption, no policies): {:.2}x",
            (logs[0] / n).exp()
        );
        println!(
            "geometric mean, analyst (row filter proven by statistics + mask): {:.2}x  (target <= 1.10x)",
            (logs[1] / n).exp()
        );
        println!(
            "geometric mean, checker (row filter evaluated on every row + mask): {:.2}x  (target <= 1.10x)",
            (logs[2] / n).exp()
        );
        println!(
            "geometric mean, checker against DataFusion running the same filter: {:.2}x",
            (log_enforcement / n).exp()
        );
    });
}
