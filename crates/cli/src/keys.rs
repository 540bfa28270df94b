//! `stratalake key ...`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use stratalake::crypto::KeyId;

use crate::args::Cli;
use crate::lake::open;
use crate::output::{Cell, made, print_rows, show};

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Master key versions per classification, and how many live and historical files use each.
    List,
    /// Create a new master key version and re-wrap every live file's data keys under it
    /// (log-only commits; no data file is rewritten).
    Rotate {
        /// Only this classification (default: every level not shredded).
        #[arg(long)]
        classification: Option<String>,
    },
    /// Destroy an old master key version once nothing live uses it.
    Retire {
        /// Classification.
        classification: String,
        /// Version (see `key list`).
        version: u32,
        /// Also when older table versions use it: time travel to them, and restores of backups
        /// taken before the rotation, will fail naming this key.
        #[arg(long)]
        drop_history: bool,
    },
    /// Crypto-shred a classification: destroy every version of its master key, so its columns
    /// are unreadable everywhere, backups included. Irreversible.
    Shred {
        /// The classification to destroy.
        #[arg(long)]
        classification: String,
        /// Repeat the classification's name to confirm.
        #[arg(long)]
        confirm: String,
    },
}

pub async fn run(cli: &Cli, cmd: &KeyCmd) -> Result<ExitCode> {
    let fmt = cli.format;
    let lake = open(cli).await?;
    match cmd {
        KeyCmd::List => {
            let s = lake.keys().status().await?;
            let human = |fmt| {
                let rows = s
                    .iter()
                    .map(|k| {
                        vec![
                            Cell::from(&k.id.classification),
                            Cell::from(k.id.version),
                            Cell::from(if k.destroyed {
                                "destroyed"
                            } else if k.current {
                                "current"
                            } else {
                                "old"
                            }),
                            Cell::from(k.live_files),
                            Cell::from(k.history_files),
                        ]
                    })
                    .collect();
                print_rows(
                    &["classification", "version", "state", "live_files", "history_files"],
                    rows,
                    fmt,
                )
            };
            show(fmt, &made(&s, human))?;
        }
        KeyCmd::Rotate { classification } => {
            let r = lake.keys().rotate(classification.as_deref()).await?;
            let human = |_| {
                for k in &r.new_keys {
                    println!("created master key {k}");
                }
                for n in &r.notes {
                    eprintln!("note: {n}");
                }
                for (t, v, n) in &r.tables {
                    println!("re-keyed {n} file(s) of {t} in version {v}");
                }
                if r.tables.is_empty() {
                    println!("every live file's keys are wrapped under the current versions");
                }
                Ok(())
            };
            show(fmt, &made(&r, human))?;
        }
        KeyCmd::Retire {
            classification,
            version,
            drop_history,
        } => {
            let id = KeyId::new(classification.as_str(), *version);
            lake.keys().retire(&id, *drop_history).await?;
            println!("master key {id} destroyed");
        }
        KeyCmd::Shred {
            classification,
            confirm,
        } => {
            if confirm != classification {
                bail!("--confirm must repeat the classification ({classification}) to shred it");
            }
            let ids = lake.keys().shred(classification).await?;
            let list: Vec<String> = ids.iter().map(|k| k.to_string()).collect();
            println!(
                "classification {classification} shredded: master key version(s) {} destroyed; its columns read as NULL or its classification mask from now on",
                list.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
