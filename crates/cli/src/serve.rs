//! `stratalake serve`: the lake over the PostgreSQL wire protocol until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use stratalake::Lake;
use stratalake_server::{Limits, Server, ServerConfig, TlsFiles};

use crate::args::Cli;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the PostgreSQL protocol.
    #[arg(long, default_value = "127.0.0.1:5432")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM), readable only by the server's user.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept connections without TLS (only on a loopback --listen address).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Connections at once.
    #[arg(long, default_value_t = 100)]
    pub max_connections: usize,
    /// Time a client has from connecting to a finished login (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub login_timeout: Duration,
    /// Close a logged-in connection that sends nothing for this long (`15m`; default: never).
    #[arg(long, value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// Stop a statement that runs longer (`5m`; default: no limit).
    #[arg(long, value_parser = duration)]
    pub statement_timeout: Option<Duration>,
    /// Connections from one address (IPv4, or IPv6 /64) that may be logging in at once.
    #[arg(long, default_value_t = 10)]
    pub max_pending_per_address: usize,
    /// Failed logins from one address, within a minute, after which its logins are refused for
    /// the rest of that minute.
    #[arg(long, default_value_t = 10)]
    pub max_failed_logins: u32,
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
    let tls = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let config = ServerConfig {
        listen: a.listen,
        tls,
        allow_plaintext: a.allow_plaintext,
        limits: Limits {
            max_connections: a.max_connections,
            login_timeout: a.login_timeout,
            idle_timeout: a.idle_timeout,
            statement_timeout: a.statement_timeout,
            max_pending_per_address: a.max_pending_per_address,
            max_failed_logins: a.max_failed_logins,
            ..Limits::default()
        },
    };
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
