//! `stratalake serve`: the lake over the PostgreSQL wire protocol until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use stratalake::Lake;
use stratalake_server::{Limits, Server, ServerConfig, TlsFiles};

use crate::args::Cli;

/// Flags override the lake's `[server]` section of `stratalake.toml`, setting by setting; the
/// defaults named here apply when neither gives one.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the PostgreSQL protocol [default: 127.0.0.1:5432].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM), readable only by the server's user.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept connections without TLS (only on a loopback --listen address).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Connections at once [default: 100].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Statements one principal may have running at once, over all its connections [default: no limit].
    #[arg(long)]
    pub max_queries_per_principal: Option<usize>,
    /// Largest result of one statement the server holds before sending it (`256MiB`, `2GiB`);
    /// a larger one stops the statement with ERROR 54000 [default: 1GiB].
    #[arg(long, value_parser = size)]
    pub max_result_size: Option<u64>,
    /// Time a client has from connecting to a finished login (`10s`, `1m`) [default: 10s].
    #[arg(long, value_parser = duration)]
    pub login_timeout: Option<Duration>,
    /// Close a logged-in connection that sends nothing for this long (`15m`) [default: never].
    #[arg(long, value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// Stop a statement that runs longer (`5m`) [default: no limit].
    #[arg(long, value_parser = duration)]
    pub statement_timeout: Option<Duration>,
    /// Connections from one address (IPv4, or IPv6 /64) that may be logging in at once [default: 10].
    #[arg(long)]
    pub max_pending_per_address: Option<usize>,
    /// Failed logins from one address, within a minute, after which its logins are refused for
    /// the rest of that minute [default: 10].
    #[arg(long)]
    pub max_failed_logins: Option<u32>,
    /// On Ctrl-C or SIGTERM, how long running statements may take to finish before they are
    /// canceled [default: 30s].
    #[arg(long, value_parser = duration)]
    pub shutdown_grace: Option<Duration>,
}

fn size(s: &str) -> Result<u64, String> {
    stratalake::tiering::units::parse_size(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::args::parse_duration(s).map_err(|e| e.to_string())
}

pub async fn run(cli: &Cli, a: &ServeArgs) -> Result<()> {
    if cli.as_principal.is_some() {
        bail!("serve acts as no principal: each client logs in as its own (drop --as)");
    }
    let lake = Lake::builder(&cli.lake)
        .open()
        .await
        .with_context(|| format!("cannot open the lake at {}", cli.lake))?;
    // relative certificate paths of the section are the lake folder's; a lake at a URL has none
    let base = if cli.lake.contains("://") && !cli.lake.starts_with("file://") {
        PathBuf::from(".")
    } else {
        PathBuf::from(cli.lake.trim_start_matches("file://"))
    };
    let mut section = lake.config().server.clone();
    if a.cert.is_some() {
        // --cert and --key (given together) stand for the file's pair, even a half one
        section.cert = None;
        section.key = None;
    }
    let config = overlay(ServerConfig::from_section(&section, &base)?, a);
    let server = Server::bind(lake, config).await?;
    match server.certificate() {
        Some(c) => println!(
            "listening on {} (PostgreSQL protocol, TLS with {})",
            server.local_addr(),
            c.display()
        ),
        None => println!(
            "listening on {} (PostgreSQL protocol, plaintext on loopback)",
            server.local_addr()
        ),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run(shutdown()).await;
    println!("stopped");
    Ok(())
}

/// The flags given, over the configuration from the lake's `[server]` section.
fn overlay(mut c: ServerConfig, a: &ServeArgs) -> ServerConfig {
    if let Some(l) = a.listen {
        c.listen = l;
    }
    if let (Some(cert), Some(key)) = (&a.cert, &a.key) {
        c.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    c.allow_plaintext |= a.allow_plaintext;
    let l: &mut Limits = &mut c.limits;
    if let Some(n) = a.max_connections {
        l.max_connections = n;
    }
    if a.max_queries_per_principal.is_some() {
        l.max_queries_per_principal = a.max_queries_per_principal;
    }
    if let Some(s) = a.max_result_size {
        l.max_result_size = s;
    }
    if let Some(d) = a.login_timeout {
        l.login_timeout = d;
    }
    if a.idle_timeout.is_some() {
        l.idle_timeout = a.idle_timeout;
    }
    if a.statement_timeout.is_some() {
        l.statement_timeout = a.statement_timeout;
    }
    if let Some(n) = a.max_pending_per_address {
        l.max_pending_per_address = n;
    }
    if let Some(n) = a.max_failed_logins {
        l.max_failed_logins = n;
    }
    if let Some(d) = a.shutdown_grace {
        l.shutdown_grace = d;
    }
    c
}
/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
