//! Creating a lake (`init`), and opening it as the principal a command acts as.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use stratalake::{Lake, Session};

use crate::args::Cli;

// (no doc comment: clap would show it in place of the command's own)
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Folder of the new lake, or a store URL (s3://bucket/prefix) to keep the whole lake
    /// there (default: --lake).
    pub dir: Option<String>,
    /// For a lake at a URL: where to create the local master key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Put the hot tier on this store: a path, file:///abs, memory://name or s3://bucket/prefix.
    #[arg(long)]
    pub store: Option<String>,
    /// Store option KEY=VALUE (S3: endpoint, region, allow_http); repeatable.
    #[arg(long = "store-option", value_name = "KEY=VALUE")]
    pub store_options: Vec<String>,
}

/// `stratalake init`.
pub async fn init(cli: &Cli, a: &InitArgs) -> Result<()> {
    let InitArgs {
        dir,
        key_file,
        store,
        store_options,
    } = a;
    let dir = dir.clone().unwrap_or_else(|| cli.lake.clone());
    if dir.contains("://") && !dir.starts_with("file://") {
        let key_file = key_file
            .as_ref()
            .context("a lake at a URL needs --key-file PATH for its master keys")?;
        if store.is_some() || !store_options.is_empty() {
            bail!(
                "--store and --store-option are for folder lakes; a URL lake's store settings come from AWS_* variables"
            );
        }
        let admin = principal(cli);
        Lake::builder(&dir).key_file(key_file).admin(&admin).create().await?;
        println!("created lake at {dir}");
        println!("  admin:   {}", admin_note(&admin, cli.as_principal.is_some()));
        println!(
            "  keys:    {} (mode 0600; back it up separately from the data)",
            key_file.display()
        );
        println!(
            "  open it with --lake {dir} and STRATALAKE_KEY_FILE={}",
            key_file.display()
        );
        return Ok(());
    }
    let dir = PathBuf::from(dir.strip_prefix("file://").unwrap_or(&dir));
    let mut options = std::collections::BTreeMap::new();
    for kv in store_options {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--store-option {kv:?}: expected KEY=VALUE"))?;
        options.insert(k.trim().to_string(), v.trim().to_string());
    }
    let admin = principal(cli);
    let mut builder = Lake::builder(&dir).admin(&admin).store_options(options);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    let lake = builder.create().await?;
    println!("created lake at {}", dir.display());
    println!("  admin:   {}", admin_note(&admin, cli.as_principal.is_some()));
    println!("  config:  {}", dir.join(stratalake::CONFIG_FILE).display());
    println!(
        "  keys:    {} (mode 0600; back it up separately from the data)",
        dir.join("master.keys").display()
    );
    for t in &lake.config().tiers {
        println!("  tier:    {} -> {}", t.name, t.url);
    }
    Ok(())
}

/// Who `init` made the lake's administrator, and where the name came from.
fn admin_note(principal: &str, given: bool) -> String {
    if given {
        return format!("{principal} (given with --as)");
    }
    match std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        Some(user) if user == principal => format!("{principal} (you, from $USER)"),
        Some(user) => format!("{principal} (from $USER={user}, made a principal name)"),
        None => format!(
            "{principal} ($USER is not set; run later commands with --as {principal} or \
             STRATALAKE_PRINCIPAL={principal} wherever $USER is set)"
        ),
    }
}

/// The principal used when neither `--as` nor `STRATALAKE_PRINCIPAL` names one: `$USER`
/// (lower-cased, characters other than letters, digits and `_` replaced by `_`), else `local`.
/// Only the command line has such a default: the library always acts as a named principal.
pub fn default_principal() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into());
    let mut name: String = user
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("u{}", &name[..name.len().min(63)]);
    }
    name
}

/// Who this command acts as: `--as`, `STRATALAKE_PRINCIPAL`, else [`default_principal`].
pub fn principal(cli: &Cli) -> String {
    cli.as_principal.clone().unwrap_or_else(default_principal)
}

/// Open `--lake` as the principal this command acts as.
pub async fn open(cli: &Cli) -> Result<Session> {
    let lake = Lake::builder(&cli.lake)
        .open()
        .await
        .with_context(|| format!("cannot open the lake at {}", cli.lake))?;
    Ok(lake.session(&principal(cli)))
}
