//! `stratalake serve` through a real client against the same queries in process, in one run:
//! a 10 000-row and a 1 M-row SELECT of TPC-H lineitem (encrypted, read by an administrator)
//! through psycopg 3 (text and binary results) against `SqlSession::sql(...).collect()`; the
//! time to connect and log in (SCRAM-SHA-256, plaintext on loopback); and statements per second
//! with 16 clients, each on its own connection, against 16 tasks in process.
//!
//! `cargo bench -p stratalake-benches --bench server` (scale factor: STRATALAKE_BENCH_SF, default
//! 0.2, which holds 1.2 M lineitem rows; runs: STRATALAKE_BENCH_RUNS, default 3, medians; the
//! concurrent part: STRATALAKE_BENCH_SECONDS, default 10). The client is the venv
//! `scripts/test.sh` makes (`target/client-venv`, or STRATALAKE_TEST_CLIENT_PYTHON).

mod common;

use common::{env_or, median};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use stratalake::TableSchema;
use stratalake_server::{Server, ServerConfig};
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;

const COLUMNS: &str =
    "l_orderkey, l_partkey, l_suppkey, l_quantity, l_extendedprice, l_discount, l_shipdate, l_comment";

fn main() {
    let sf: f64 = env_or("STRATALAKE_BENCH_SF", 0.2);
    let runs: usize = env_or("STRATALAKE_BENCH_RUNS", 3);
    let seconds: f64 = env_or("STRATALAKE_BENCH_SECONDS", 10.0);
    let python = std::env::var_os("STRATALAKE_TEST_CLIENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/client-venv/bin/python"));
    if !python.exists() {
        eprintln!(
            "{} not found: run scripts/test.sh once (it makes the client venv with psycopg) or set STRATALAKE_TEST_CLIENT_PYTHON",
            python.display()
        );
        std::process::exit(2);
    }
    let batches: Vec<RecordBatch> = LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))
        .with_batch_size(8192)
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let big = rows.min(1_000_000);
    let queries = [
        "SELECT l_returnflag, count(*) FROM lineitem WHERE l_orderkey < 2000 GROUP BY l_returnflag".to_string(),
        format!("SELECT {COLUMNS} FROM lineitem LIMIT 10000"),
        format!("SELECT {COLUMNS} FROM lineitem LIMIT {big}"),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let lake = stratalake::Lake::builder(dir.path().join("lake"))
            .admin("admin")
            .create()
            .await
            .unwrap();
        let admin = lake.session("admin");
        let t = admin
            .create_table("lineitem", TableSchema::from_arrow(&batches[0].schema(), "internal"))
            .await
            .unwrap();
        t.append(&batches, "admin").await.unwrap();
        admin.access().set_password("admin", "bench pass").await.unwrap();
        let sql = admin.sql_session();

        // in process
        let mut local = Vec::new();
        for q in &queries {
            let mut times = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let got: usize = sql
                    .sql(q)
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap()
                    .iter()
                    .map(|b| b.num_rows())
                    .sum();
                times.push(t.elapsed());
                assert!(got > 0, "{q}");
            }
            local.push(median(times));
        }
        let done = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (sql, done, q) = (admin.sql_session(), done.clone(), queries[0].clone());
                tokio::spawn(async move {
                    while Instant::now() < until {
                        sql.sql(&q).await.unwrap().collect().await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let local_qps = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();

        // through the server
        let server = Server::bind(
            lake.clone(),
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                allow_plaintext: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let port = server.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/server_client.py");
        let conninfo =
            format!("host=127.0.0.1 port={port} user=admin password='bench pass' dbname=lake sslmode=disable");
        let mut args = vec![
            script.display().to_string(),
            conninfo,
            runs.to_string(),
            "16".into(),
            seconds.to_string(),
        ];
        args.extend(queries.iter().cloned());
        let o = tokio::task::spawn_blocking(move || Command::new(python).args(args).output().unwrap())
            .await
            .unwrap();
        assert!(o.status.success(), "client: {}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let _ = stop.send(());
        running.await.unwrap();

        println!("lineitem SF {sf}: {rows} rows; medians of {runs} runs");
        println!("| query | rows | in process | psycopg text | ratio | psycopg binary | ratio |");
        println!("|---|---|---|---|---|---|---|");
        for (q, local) in queries.iter().zip(&local).skip(1) {
            let r = &report["queries"][q];
            let (text, binary) = (r["text"].as_f64().unwrap(), r["binary"].as_f64().unwrap());
            let l = local.as_secs_f64();
            println!(
                "| {} | {} | {:.3} s | {:.3} s | {:.2}x | {:.3} s | {:.2}x |",
                if q.ends_with("LIMIT 10000") {
                    "SELECT 8 columns LIMIT 10 000"
                } else {
                    "SELECT 8 columns LIMIT 1 M"
                },
                r["rows"],
                l,
                text,
                text / l,
                binary,
                binary / l
            );
        }
        let qps = report["qps"].as_f64().unwrap();
        println!(
            "connect and log in (SCRAM-SHA-256, no TLS): {:.1} ms",
            report["connect"].as_f64().unwrap() * 1000.0
        );
        println!(
            "16 clients, a grouped count: {qps:.1} statements/s through psycopg, {local_qps:.1}/s in process ({:.2}x)",
            local_qps / qps
        );
    });
}
