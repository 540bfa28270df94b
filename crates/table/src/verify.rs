//! `verify`: re-read a table's whole log and every live file.

use serde::Serialize;

use crate::Result;
use crate::keyring::Access;
use crate::read::{fetch_checked, read_file};
use crate::table::Table;

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The table.
    pub table: String,
    /// The object at fault.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// What `verify` checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Tables checked.
    pub tables: usize,
    /// Log versions read.
    pub versions: u64,
    /// Live files checked.
    pub files: usize,
    /// Rows read back.
    pub rows: u64,
    /// Bytes read back.
    pub bytes: u64,
    /// Problems; empty when all is well.
    pub problems: Vec<Problem>,
}

/// Verify one table: every commit from version 0 (checksums, order), then every live file
/// (size, crc32, decryption of every column, row count). Adds to `report`. Reports progress
/// over the table's live files (operation `verify`, phase `checking`; counts start again at 0
/// for each table).
pub async fn verify_table(
    table: &Table,
    report: &mut VerifyReport,
    access: &Access,
    progress: crate::progress::ProgressFn<'_>,
) -> Result<()> {
    report.tables += 1;
    let name = table.ident().to_string();
    let mut problem = |path: String, p: String| {
        report.problems.push(Problem {
            table: name.clone(),
            path,
            problem: p,
        })
    };
    // Full replay from version 0: reads and checks every commit, ignoring checkpoints.
    let l = crate::log::list(table.context().tiers.metadata(), &table.log_dir(), None).await?;
    let latest = match l.commits.last() {
        Some(v) => *v,
        None => {
            problem(table.log_dir(), "the log is empty".into());
            return Ok(());
        }
    };
    let snap = match table.snapshot_at(latest).await {
        Ok(s) => s,
        Err(e) => {
            problem(table.log_dir(), e.to_string());
            return Ok(());
        }
    };
    // That read starts from the newest checkpoint: replay every commit from version 0 as well,
    // and check that the checkpoint agrees with the log.
    match table.snapshot_replayed(latest).await {
        Ok(full) if full != snap => problem(
            table.log_dir(),
            format!("a checkpoint disagrees with the commits it summarizes (version {latest})"),
        ),
        Ok(_) => {}
        Err(e) => problem(table.log_dir(), e.to_string()),
    }
    report.versions += latest + 1;
    let ctx = table.context();
    let root = table.ident().root();
    let n = snap.files.len() as u64;
    let bytes_total = snap.files.values().map(|f| f.size).sum();
    let mut bytes_done = 0;
    let tick = |files_done: u64, bytes_done: u64| {
        progress(crate::progress::Progress {
            operation: "verify",
            phase: "checking",
            files_done,
            files_total: n,
            bytes_done,
            bytes_total,
            rows_done: 0,
        })
    };
    for (i, add) in snap.files.values().enumerate() {
        tick(i as u64, bytes_done);
        bytes_done += add.size;
        report.files += 1;
        let store = match ctx.tiers.get(&add.tier) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(Problem {
                    table: name.clone(),
                    path: add.path.clone(),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        let display = store.path(&format!("{root}/{}", add.path)).to_string();
        let data = match fetch_checked(store, &root, add).await {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(Problem {
                    table: name.clone(),
                    path: display,
                    problem: e.to_string(),
                });
                continue;
            }
        };
        report.bytes += data.len() as u64;
        match read_file(
            data,
            &display,
            table.id(),
            add,
            &snap.metadata.schema,
            &ctx.keyring,
            access,
            None,
        )
        .await
        {
            Ok(b) => report.rows += b.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            Err(e) => report.problems.push(Problem {
                table: name.clone(),
                path: display,
                problem: e.to_string(),
            }),
        }
    }
    tick(n, bytes_done);
    Ok(())
}
