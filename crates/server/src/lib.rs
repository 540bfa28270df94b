//! # stratalake-server
//!
//! `stratalake serve`: the lake behind the PostgreSQL wire protocol. The server is the trust
//! boundary: it alone holds the key provider, clients prove who they are with SCRAM-SHA-256
//! (their password never crosses the wire, and the server stores only verifiers), and each
//! connection gets a [`stratalake::Session`] of the authenticated principal, so its grants, row
//! filters, masks and clearances apply to every statement, and every statement is audited under
//! its name with the client's address.
//!
//! ```text
//!   TCP ── TLS (rustls, required unless plaintext is allowed on loopback)
//!    └── pgwire: startup ── auth::Login (SCRAM-SHA-256 against Lake::scram_verifier)
//!                 query  ── query::Statements (simple query protocol → SqlSession of the principal)
//!                 extended ─ Parse/Bind/Execute (described at Parse, parameters read by values)
//! ```
//!
//! What is here today: TLS, SCRAM logins, per-principal sessions, the simple and extended query
//! protocols (parameters, text and binary results), transaction blocks for reads, SQLSTATE codes,
//! cancel requests, a connection limit, login, idle and statement timeouts, a cap on what an
//! unauthenticated client can send, a limit on statements running per principal, settings from
//! the lake's `[server]` section ([`ServerConfig::from_section`]) and a graceful shutdown. `pg_catalog` and Flight SQL come next (`docs/server.md`).

mod auth;
mod conn;
mod copy;
mod door;
mod extended;
mod query;
mod settings;
mod tls;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

pub use tls::TlsFiles;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TLS certificate or key could not be used (the file and what is wrong; never key bytes).
    #[error("TLS {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The settings do not fit together.
    #[error("server configuration: {0}")]
    Config(String),
    /// The lake could not give what the server needs (e.g. the secret for logins of unknown users).
    #[error("the lake: {0}")]
    Lake(#[from] stratalake::Error),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the server listens and whom it lets in.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the PostgreSQL protocol listens (port 0: any free port).
    pub listen: SocketAddr,
    /// Certificate chain and private key (PEM). Required unless [`ServerConfig::allow_plaintext`].
    pub tls: Option<TlsFiles>,
    /// Accept connections without TLS (with or without a certificate). Only on a loopback
    /// address: in clear, results can be read and the SCRAM exchange relayed or used for
    /// offline guessing of the password.
    pub allow_plaintext: bool,
    /// How much, how long.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5432)),
            tls: None,
            allow_plaintext: false,
            limits: Limits::default(),
        }
    }
}

/// The server's limits: past one, the client gets an error naming it and the server goes on.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections at once; more are refused with SQLSTATE 53300. A connection holds its slot
    /// from the TCP accept, so [`Limits::login_timeout`] bounds how long a silent one keeps it.
    pub max_connections: usize,
    /// Time from the TCP accept to a finished login (PostgreSQL's `authentication_timeout`).
    pub login_timeout: Duration,
    /// A logged-in connection that sends nothing this long is closed (FATAL 57P05).
    pub idle_timeout: Option<Duration>,
    /// A statement running longer is stopped (ERROR 57014); the connection stays.
    pub statement_timeout: Option<Duration>,
    /// Connections from one address (an IPv4 address, an IPv6 /64) that have not finished their
    /// login yet; more are refused with SQLSTATE 53300, so one host cannot hold every slot.
    pub max_pending_per_address: usize,
    /// Failed logins from one address within [`Limits::failed_login_window`] after which its
    /// logins are refused (FATAL 28000) until the window has passed, right password or not.
    pub max_failed_logins: u32,
    /// See [`Limits::max_failed_logins`]; the window starts at an address's first failure.
    pub failed_login_window: Duration,
    /// How long a failed login waits before it is answered (PostgreSQL's `auth_delay`).
    pub failed_login_delay: Duration,
    /// Statements one principal may have running at once over all its connections; one more
    /// is refused at once with SQLSTATE 53400 (`None`: no limit).
    pub max_queries_per_principal: Option<usize>,
    /// On shutdown, how long running statements may take to finish before they are canceled.
    /// Idle connections are closed at once (FATAL 57P01).
    pub shutdown_grace: Duration,
    /// Bytes of one statement's result (as sent: rows in the wire format, or COPY data) the
    /// server holds before sending it; a larger result stops the statement (ERROR 54000).
    /// Results are collected before they are sent, so this bounds the memory one statement's
    /// rows take outside the query memory pool.
    pub max_result_size: u64,
}

/// [`Limits::max_result_size`]'s default: 1 GiB.
pub const DEFAULT_MAX_RESULT_SIZE: u64 = 1 << 30;

/// The error of a result over [`Limits::max_result_size`].
pub(crate) fn result_too_large(limit: u64) -> pgwire::error::PgWireError {
    crate::auth::error(
        "ERROR",
        "54000",
        format!(
            "the result is larger than the server's max_result_size ({limit} bytes): ask for fewer rows or columns (LIMIT, WHERE, aggregates), or in parts"
        ),
    )
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 100,
            login_timeout: Duration::from_secs(10),
            idle_timeout: None,
            statement_timeout: None,
            max_pending_per_address: 10,
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(60),
            failed_login_delay: Duration::from_millis(200),
            max_queries_per_principal: None,
            shutdown_grace: Duration::from_secs(30),
            max_result_size: DEFAULT_MAX_RESULT_SIZE,
        }
    }
}

impl ServerConfig {
    /// The settings of a lake's `[server]` section over the defaults. Relative certificate
    /// paths are taken from `base` (the lake folder); an error names the setting.
    pub fn from_section(section: &stratalake::ServerSection, base: &std::path::Path) -> Result<Self> {
        let bad = |name: &str, e: &dyn std::fmt::Display| Error::Config(format!("[server] {name}: {e}"));
        let duration = |name: &str, v: &Option<String>| -> Result<Option<Duration>> {
            v.as_deref()
                .map(|t| {
                    stratalake::table::units::parse_duration_ms(t)
                        .map(|ms| Duration::from_millis(ms.max(0) as u64))
                        .map_err(|e| bad(name, &e))
                })
                .transpose()
        };
        let mut c = Self::default();
        if let Some(l) = &section.listen {
            c.listen = l
                .parse()
                .map_err(|e| bad("listen", &format!("{l:?} is not an address with a port ({e})")))?;
        }
        let path = |p: &String| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        c.tls = match (&section.cert, &section.key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: path(cert),
                key: path(key),
            }),
            (None, None) => None,
            (Some(_), None) => return Err(bad("cert", &"given without key")),
            (None, Some(_)) => return Err(bad("key", &"given without cert")),
        };
        c.allow_plaintext = section.allow_plaintext.unwrap_or(false);
        let l = &mut c.limits;
        if let Some(n) = section.max_connections {
            l.max_connections = n;
        }
        l.max_queries_per_principal = section.max_queries_per_principal;
        if let Some(s) = &section.max_result_size {
            l.max_result_size =
                stratalake::tiering::units::parse_size(s).map_err(|e| bad("max_result_size", &e.to_string()))?;
        }
        if let Some(n) = section.max_pending_per_address {
            l.max_pending_per_address = n;
        }
        if let Some(n) = section.max_failed_logins {
            l.max_failed_logins = n;
        }
        if let Some(d) = duration("login_timeout", &section.login_timeout)? {
            l.login_timeout = d;
        }
        l.idle_timeout = duration("idle_timeout", &section.idle_timeout)?;
        l.statement_timeout = duration("statement_timeout", &section.statement_timeout)?;
        if let Some(d) = duration("shutdown_grace", &section.shutdown_grace)? {
            l.shutdown_grace = d;
        }
        Ok(c)
    }
}

/// A statement the server refuses before it runs: its SQLSTATE and why.
pub(crate) type Refusal = (&'static str, String);

/// What every connection shares.
pub(crate) struct Shared {
    pub lake: stratalake::Lake,
    pub tls_required: bool,
    pub limits: Limits,
    pub connections: AtomicUsize,
    /// The running connections' cancel keys (pid → secret and the session's cancel token).
    pub cancels: std::sync::Mutex<HashMap<i32, ([u8; 4], stratalake::query::Cancel)>>,
    /// Connections not logged in yet and failed logins, per address.
    pub door: door::Door,
    /// Statements running now, per principal ([`Limits::max_queries_per_principal`]).
    pub running: std::sync::Mutex<HashMap<String, usize>>,
    /// Cancelled when the server stops: idle connections close, running ones finish first.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// A place for one statement of `principal` among its running ones, or the SQLSTATE and
    /// message to send. Once the server is stopping no statement starts (57P01), so a
    /// multi-statement query cannot outrun the shutdown.
    pub(crate) fn start_statement(self: &Arc<Self>, principal: &str) -> std::result::Result<Running, Refusal> {
        if self.stopping.is_cancelled() {
            return Err(("57P01", "the server is shutting down: no new statement starts".into()));
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(principal.to_string()).or_insert(0);
        if let Some(limit) = self.limits.max_queries_per_principal
            && *n >= limit
        {
            return Err((
                "53400",
                format!(
                    "principal \"{}\" already has {limit} statements running, the server's limit per principal (max_queries_per_principal): wait for one to finish",
                    auth::printable(principal)
                ),
            ));
        }
        *n += 1;
        Ok(Running {
            shared: self.clone(),
            principal: principal.to_string(),
        })
    }
}

/// One running statement's place in [`Limits::max_queries_per_principal`], given back on drop.
pub(crate) struct Running {
    shared: Arc<Shared>,
    principal: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.shared.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.principal);
            }
        }
    }
}

/// One connection's place in [`Limits::max_connections`].
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A bound server: [`Server::local_addr`] tells where, [`Server::run`] serves until told to stop.
pub struct Server {
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    certificate: Option<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .field("tls", &self.acceptor.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Check the configuration, load the certificate and open the listening socket.
    pub async fn bind(lake: stratalake::Lake, config: ServerConfig) -> Result<Self> {
        if config.tls.is_none() && !config.allow_plaintext {
            return Err(Error::Config(
                "TLS is required: give a certificate and key (--cert / --key), or allow plaintext on a loopback address".into(),
            ));
        }
        if config.allow_plaintext && !config.listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "plaintext is only allowed on a loopback address, not {}: serve it with TLS alone (drop allow_plaintext / --allow-plaintext)",
                config.listen.ip()
            )));
        }
        for (name, n) in [
            ("max_connections", config.limits.max_connections),
            ("max_pending_per_address", config.limits.max_pending_per_address),
            ("max_failed_logins", config.limits.max_failed_logins as usize),
            (
                "max_queries_per_principal",
                config.limits.max_queries_per_principal.unwrap_or(1),
            ),
            ("max_result_size", config.limits.max_result_size.min(1) as usize),
        ] {
            if n == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        for (name, d) in [
            ("login_timeout", Some(config.limits.login_timeout)),
            ("failed_login_window", Some(config.limits.failed_login_window)),
            ("idle_timeout", config.limits.idle_timeout),
            ("statement_timeout", config.limits.statement_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::Config(format!("{name} must be longer than zero")));
            }
        }
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        lake.prepare_logins().await?;
        let listener = TcpListener::bind(config.listen).await.map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            acceptor,
            certificate: config.tls.as_ref().map(|t| t.cert.clone()),
            shared: Arc::new(Shared {
                lake,
                tls_required: config.tls.is_some() && !config.allow_plaintext,
                limits: config.limits.clone(),
                connections: AtomicUsize::new(0),
                cancels: Default::default(),
                door: Default::default(),
                running: Default::default(),
                stopping: Default::default(),
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The certificate file it presents, if TLS is on.
    pub fn certificate(&self) -> Option<&std::path::Path> {
        self.certificate.as_deref()
    }

    /// Serve connections until `shutdown` completes, then stop: accept no more connections,
    /// close idle ones (FATAL 57P01) and those still logging in, start no new statement
    /// (57P01), let running statements finish within [`Limits::shutdown_grace`], then cancel
    /// those still running (they end with 57014; a commit already under way completes or fails
    /// whole, never half), and return once every connection has closed, or 10 s after the
    /// cancel with a warning naming how many were left (a client that stopped reading).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // e.g. too many open files: keep serving the others
                            tracing::warn!(error = %e, "server: accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let shared = self.shared.clone();
                    let acceptor = self.acceptor.clone();
                    let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                    // the slot is given back however the task ends (a panic included)
                    let slot = Slot(shared.clone());
                    let pending = door::Door::admit(&shared, peer);
                    tokio::spawn(async move {
                        conn::serve(socket, peer, acceptor, shared, open, pending).await;
                        drop(slot);
                    });
                }
            }
        }
        let Self { listener, shared, .. } = self;
        drop(listener);
        shared.stopping.cancel();
        let open = || shared.connections.load(Ordering::Acquire);
        let grace = shared.limits.shutdown_grace;
        tracing::info!(
            connections = open(),
            grace_ms = grace.as_millis() as u64,
            "server: stopping: no new connections, idle ones closed, running statements may finish"
        );
        if !wait_for_no_connections(&open, grace).await {
            let cancels: Vec<stratalake::query::Cancel> = shared
                .cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|(_, c)| c.clone())
                .collect();
            tracing::warn!(
                connections = open(),
                "server: the shutdown grace period is over: canceling running statements"
            );
            for c in cancels {
                c.cancel();
            }
            if !wait_for_no_connections(&open, AFTER_CANCEL).await {
                tracing::warn!(
                    connections = open(),
                    "server: connections still open after canceling them; leaving them"
                );
            }
        }
        tracing::info!("server: stopped");
    }
}

/// How long canceled statements have to end after the grace period (a commit under way
/// finishes in this time).
const AFTER_CANCEL: Duration = Duration::from_secs(10);

/// Whether every connection closed within `limit`.
async fn wait_for_no_connections(open: &impl Fn() -> usize, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while open() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
