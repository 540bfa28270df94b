//! `stratalake`: the command-line tool.
//!
//! [`args`] defines the global flags and the commands; each command lives in its own module
//! with its flags. Every command prints through [`output`]: results as a [`output::Report`],
//! listings through [`output::print_rows`]. Failures become one line on stderr ([`errors`]).

mod access;
mod args;
mod audit;
mod backup;
mod credentials;
mod demo;
mod errors;
mod export;
mod ingest;
mod keys;
mod lake;
mod output;
mod quality;
mod serve;
mod shell;
mod sql;
mod table;
mod tier;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;

use crate::access::AccessCmd;
use crate::args::{Cli, Command};

fn main() -> ExitCode {
    errors::quiet_on_broken_pipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATALAKE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let acting_as_default = cli.as_principal.is_none();
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => errors::report(&e, acting_as_default),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let cli = &cli;
    match &cli.command {
        Command::Init(a) => lake::init(cli, a).await?,
        Command::Namespace(c) => table::namespace(cli, c).await?,
        Command::Table(c) => table::table(cli, c).await?,
        Command::Ingest(a) => ingest::run(cli, a).await?,
        Command::Sql(a) => return sql::run(cli, a).await,
        Command::Export(a) => return export::run(cli, a).await,
        Command::Verify { tables } => return verify::run(cli, tables).await,
        Command::Principal(c) => access::run(cli, AccessCmd::Principal(c)).await?,
        Command::Token(c) => credentials::token(cli, c).await?,
        Command::Role(c) => access::run(cli, AccessCmd::Role(c)).await?,
        Command::Grant(g) => access::run(cli, AccessCmd::Grant(g, true)).await?,
        Command::Revoke(g) => access::run(cli, AccessCmd::Grant(g, false)).await?,
        Command::Grants => access::run(cli, AccessCmd::List).await?,
        Command::Policy(c) => access::policy(cli, c).await?,
        Command::Audit(a) => return audit::run(cli, a).await,
        Command::Backup(cmd) => return backup::run(cli, cmd).await,
        Command::Key(cmd) => return keys::run(cli, cmd).await,
        Command::Tier(cmd) => return tier::run(cli, cmd).await,
        Command::Capacity(a) => return tier::capacity(cli, a).await,
        Command::Quality(cmd) => return quality::run(cli, cmd).await,
        Command::Serve(a) => serve::run(cli, a).await?,
        Command::Demo { rows } => {
            if cli.lake.contains("://") {
                bail!("demo runs on a local lake folder: pass --lake PATH");
            }
            demo::run(Path::new(&cli.lake), *rows, &lake::principal(cli)).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
