//! SQL behaviour in `tests/slt/*.slt`, run with the sqllogictest crate against a fresh
//! in-memory lake per file.

use std::path::PathBuf;

use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use stratalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use stratalake::{Lake, Output};

struct Db {
    lake: Lake,
    /// Who the next statements run as; `SET PRINCIPAL name` (a harness command) switches.
    principal: String,
}

#[derive(Debug)]
struct SltError(String);
impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let words: Vec<&str> = sql.split_whitespace().collect();
        if words.len() == 3 && words[0].eq_ignore_ascii_case("set") && words[1].eq_ignore_ascii_case("principal") {
            self.principal = words[2].trim_end_matches(';').to_string();
            return Ok(DBOutput::StatementComplete(0));
        }
        let out = self
            .lake
            .session(&self.principal)
            .execute(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        match out.into_iter().last() {
            Some(Output::Rows { schema, batches }) => {
                let opts = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for b in &batches {
                    let fmts: Vec<_> = b
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                        .collect();
                    for r in 0..b.num_rows() {
                        rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
                    }
                }
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; schema.fields().len()],
                    rows,
                })
            }
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    for f in files {
        let mut runner = sqllogictest::Runner::new(|| async {
            // every file starts with `slt` as the lake's administrator (bootstrap mode ended)
            let lake = Lake::in_memory()
                .await
                .map_err(|e| SltError(e.to_string()))?
                .as_principal("slt");
            lake.bootstrap_admin().await.map_err(|e| SltError(e.to_string()))?;
            Ok(Db {
                lake,
                principal: "slt".into(),
            })
        });
        runner
            .run_file_async(&f)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}
